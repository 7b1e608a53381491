"""Every random draw of a training step, each a pure function of ``(seed, step, ...)`` through
:func:`lpdgen.rng.derived_generator` (never the state of a long-lived generator): the data order of an
epoch, the slice of a global batch a rank reads, the group-size schedule of a step, and each sample's
order and label drop. That is what makes the global batch independent of the number of processes and
a resumed run bit-exact (docs/training.md)."""

from __future__ import annotations

import torch
from torch.utils.data import Dataset

from ..rng import derived_generator


def epoch_permutation(num_items: int, seed: int, epoch: int) -> torch.Tensor:
    """(num_items,) data order of ``epoch``: a function of (seed, epoch) alone."""
    return torch.randperm(num_items, generator=derived_generator(seed, "data", epoch))


def batch_position(step: int, num_items: int, global_batch: int) -> tuple[int, int]:
    """(epoch, index of the batch within the epoch) of ``step``; the last partial batch of an epoch is dropped."""
    per_epoch = num_items // global_batch
    if per_epoch == 0:
        raise ValueError(f"the dataset has {num_items} items, fewer than one global batch of {global_batch}")
    return divmod(step, per_epoch)


def rank_batch(
    step: int, num_items: int, global_batch: int, rank: int, world_size: int, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Dataset indices of this rank's share of global batch ``step`` and their positions in that batch.

    Rank r takes the r-th contiguous slice of the global batch, so concatenating the ranks' slices in
    rank order gives the same batch as one process with the same global batch.
    """
    if global_batch % world_size:
        raise ValueError(f"global batch {global_batch} is not divisible by the {world_size} processes")
    epoch, i = batch_position(step, num_items, global_batch)
    local = global_batch // world_size
    start = i * global_batch + rank * local
    positions = torch.arange(rank * local, (rank + 1) * local)
    return epoch_permutation(num_items, seed, epoch)[start : start + local], positions


def draw_schedule(schedules: list[list[int]], seed: int, step: int) -> tuple[int, ...]:
    """The group-size list of ``step``, uniform over ``schedules`` and identical on every rank."""
    k = int(torch.randint(len(schedules), (1,), generator=derived_generator(seed, "schedule", step)))
    return tuple(schedules[k])


def sample_randomness(
    seed: int, step: int, positions: torch.Tensor, num_tokens: int, label_drop: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample random orders (B, N) and null-class flags (B,) for the samples at ``positions`` of the
    global batch of ``step``. Each sample draws from its own generator seeded by (seed, step, position),
    so a sample's randomness does not depend on how the batch is split over processes."""
    orders = torch.empty(len(positions), num_tokens, dtype=torch.long)
    null = torch.empty(len(positions), dtype=torch.bool)
    for row, j in enumerate(positions.tolist()):  # one generator per sample, never per token
        g = derived_generator(seed, "sample", step, j)
        orders[row] = torch.randperm(num_tokens, generator=g)
        null[row] = torch.rand((), generator=g) < label_drop
    return orders, null


def load_batch(dataset: Dataset, indices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(codes (B, N) long, labels (B,) long) of ``indices``; uses the dataset's vectorised ``batch``
    when it has one, else stacks items."""
    if hasattr(dataset, "batch"):
        codes, labels = dataset.batch(indices)
    else:
        items = [dataset[int(i)] for i in indices]
        codes = torch.stack([torch.as_tensor(c) for c, _ in items])
        labels = torch.tensor([int(y) for _, y in items])
    return torch.as_tensor(codes).long().flatten(1), torch.as_tensor(labels).long()
