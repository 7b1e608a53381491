"""Where every random number in lpdgen comes from.

Two rules, so that a seed means the same thing in every command:

- **Image i of a run with base seed s** is drawn from its own generator seeded by
  :func:`image_seed` ``(s, i)``. That seed drives the image's generation order and its sampling noise,
  so ``lpdgen sample --seed s``, ``lpdgen eval sample --seed s`` and training previews of a run with
  ``--seed s`` give the same image i (same model, class, steps and guidance), whatever the batch size or
  the number of processes.
- **Training draws** (data order, schedules, per-sample orders, label drop) come from
  :func:`derive_seed` of a tuple naming the draw, e.g. ``(seed, "sample", step, j)``, never from the
  state of a long-lived generator, which is what makes a resumed run bit-exact.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

import numpy as np
import torch


def image_seed(seed: int, index: int) -> int:
    """The seed of image ``index`` in a run with base ``seed``.

    numpy's ``SeedSequence`` hashes the pair (a documented, platform-independent mix), so neighbouring
    indices get unrelated streams and the result depends on nothing but ``(seed, index)``.
    """
    if seed < 0 or index < 0:
        raise ValueError(f"seed and index must be >= 0, got seed={seed}, index={index}")
    state = np.random.SeedSequence([int(seed), int(index)]).generate_state(1, dtype=np.uint64)
    return int(state[0]) >> 1  # 63 bits: valid for torch.Generator.manual_seed


def image_seeds(seed: int, indices: Iterable[int]) -> list[int]:
    """:func:`image_seed` for each index (the per-image seeds a pipeline call takes)."""
    return [image_seed(seed, int(i)) for i in indices]


def derive_seed(*parts: int | str) -> int:
    """A 63-bit seed that is a fixed function of ``parts`` (stable across processes, runs and platforms)."""
    digest = hashlib.blake2b(repr(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


def generator(seed: int | None, device: str | torch.device = "cpu") -> torch.Generator:
    """A ``torch.Generator`` seeded with ``seed`` (None: from OS entropy). The only place lpdgen makes
    one. CPU by default: draws are made on the CPU and moved, so a seed gives the same numbers on every
    device; ``device`` is for draws that must stay on an accelerator (benchmarks)."""
    gen = torch.Generator(device=torch.device(device))
    if seed is None:
        gen.seed()
    else:
        gen.manual_seed(int(seed))
    return gen


def derived_generator(*parts: int | str) -> torch.Generator:
    """:func:`generator` of :func:`derive_seed` ``(*parts)``: the generator of one named training draw."""
    return generator(derive_seed(*parts))


def fresh_seed() -> int:
    """A seed drawn from torch's default stream, so that ``torch.manual_seed`` still governs calls that
    were given no seed."""
    return int(torch.randint(0, 2**62, (1,)))
