"""Adaptive parallel decoding: the model decides how many tokens each step commits (docs/decoding.md,
"Adaptive steps").

Why: a fixed schedule spends as many forward passes on an easy image (a plain bag) as on a hard one,
and picks each step's cells by geometry alone. Here every step queries a *candidate set* - the group
the locality-aware rule would take next, of at most ``candidates`` cells - reads each candidate's
predictive entropy and commits the most certain ones: sorted by entropy, a candidate is committed while
the entropies of those committed before it sum to less than the bound gamma (the lowest-entropy one
always). The others are asked again at the next step, with the new tokens as context.

How that maps onto the cached step: the KV cache is indexed by *cell* here (slot 1 + raster cell,
slot 0 the class token), not by generation order, because the order is only known afterwards. Every
slot carries a group id: 0 the class token, 1 the known cells of an edit, k + 1 the cells committed at
step k. A context row sees the slots of its own group and earlier ones, a query sees every committed
slot and the other candidates of its step - the training rule (:func:`lpdgen.masks.visible`) on the
realised schedule, in which step k's queries are its candidates and its group is what it commits. The
queries of candidates that are not committed are discarded; their slots are masked until a token
fills them. Rows of a batch commit different numbers of cells, so each step pads its context and
queries to the widest row by repeating a real row (same input, same mask: identical K/V written to
the same slot), and rows that have finished are dropped from the batch (and their KV cache) at once.

Randomness comes per image: each step draws one seed for the candidate rule and ``N`` uniforms for
sampling from the image's own generator, so an image does not depend on the batch it is decoded in.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from .model import LPD, KVCache
from .orders import locality_aware
from .sampling import Generators, draw_uniform, guidance_scales, guide, sample_tokens
from .settings import DEFAULT_ENTROPY_BOUND
from .utils import eval_mode


def default_candidates(num_tokens: int) -> int:
    """Cells queried per adaptive step: a quarter of the image, so that a step costs about what a fixed
    step of the same size costs (context + queries rows) and at least 4 steps decode an image."""
    return max(1, math.ceil(num_tokens / 4))


def predictive_entropy(logits: torch.Tensor) -> torch.Tensor:
    """Entropy in nats of softmax(logits) over the last axis, in fp32 (0 log 0 = 0)."""
    return torch.special.entr(torch.softmax(logits.float(), dim=-1)).sum(dim=-1)


def entropy_commit(entropy: torch.Tensor, valid: torch.Tensor, bound: float) -> torch.Tensor:
    """(R, M) bool: which candidates a step commits. Per row, the valid candidates sorted by entropy
    (ascending, ties by position) are committed while the entropies committed before each sum to less
    than ``bound`` - equivalently, the committed entropies minus the largest stay under the bound - and
    the lowest-entropy candidate always is. ``bound`` 0: one per step; ``inf``: every valid candidate."""
    key = entropy.float().masked_fill(~valid, math.inf)
    sorted_key, idx = key.sort(dim=1, stable=True)
    before = torch.cumsum(sorted_key, dim=1) - sorted_key  # sum of the lower entropies (inf past the valid ones)
    first = torch.zeros_like(valid)
    first[:, 0] = True
    take = ((before < bound) | first) & valid.gather(1, idx)
    return torch.zeros_like(valid).scatter(1, idx, take)


@dataclass
class AdaptiveResult:
    """``codes`` (B, N) raster; ``commit_step`` (B, N): the step that committed each cell (0 = known);
    ``num_steps`` (B,): forward passes per image; ``trace``: per step, what :func:`adaptive_loop`'s
    ``choose`` saw (filled when asked, for tests)."""

    codes: torch.Tensor
    commit_step: torch.Tensor
    num_steps: torch.Tensor
    trace: list[dict] = field(default_factory=list)

    def orders(self) -> torch.Tensor:
        """(B, N) the realised generation orders: known cells, then step 1's cells, ... (raster within a step)."""
        n = self.commit_step.shape[1]
        return (self.commit_step * n + torch.arange(n, device=self.commit_step.device)).argsort(dim=1)

    def group_sizes(self) -> list[list[int]]:
        """Per image, the realised schedule: tokens committed at each step."""
        return [
            torch.bincount(row[row > 0], minlength=int(k) + 1)[1:].tolist()
            for row, k in zip(self.commit_step.cpu(), self.num_steps.tolist())
        ]


# choose(rows, cells, valid, logits) -> (codes, commit): rows (b,) original batch rows; cells (b, M) the
# candidates (padded by repeats), valid (b, M), logits (b', M, V) of the step; returns (b, M) codes and
# the (b, M) bool commit mask (a subset of valid, at least one per row).
Choose = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


def _pad_rows(mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(b, N) bool, >= 1 True per row -> the True columns of each row (b, P), padded by repeating the
    row's first one, and (b, P) validity."""
    counts = mask.sum(dim=1)
    width = int(counts.max())
    cols = torch.argsort((~mask).to(torch.int8), dim=1, stable=True)[:, :width]  # True columns first, in order
    valid = torch.arange(width, device=mask.device)[None, :] < counts[:, None]
    return torch.where(valid, cols, cols[:, :1]), valid


def _candidates(
    grid: tuple[int, int], committed: np.ndarray, limit: int, seeds: list[int], tau: float, rho: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """The next group of the locality-aware rule, of min(limit, free cells) cells, per row given its
    committed cells (b, N): (b, M) cells padded by repeats and (b, M) validity. Rows with equally many
    committed cells are built in one call; each row's group depends on its own seed only."""
    b, n = committed.shape
    counts = committed.sum(axis=1)
    width = int(min(limit, n - counts.min()))
    cells = np.zeros((b, width), dtype=np.int64)
    valid = np.zeros((b, width), dtype=bool)
    for count in np.unique(counts):
        rows = np.flatnonzero(counts == count)
        free = n - int(count)
        m = min(limit, free)
        sizes = [m] if m == free else [m, free - m]
        order = locality_aware(
            grid, sizes, tau, rho, seed=[seeds[r] for r in rows], known=committed[rows] if count else None
        ).numpy()
        group = order[:, int(count) : int(count) + m]
        cells[rows] = np.concatenate([group, np.repeat(group[:, :1], width - m, axis=1)], axis=1)
        valid[rows, :m] = True
    return torch.from_numpy(cells), torch.from_numpy(valid)


def _draw_seeds(generator: Generators, rows: list[int], batch: int) -> list[int]:
    """One 62-bit seed per active row, from that row's own generator (or the shared one)."""
    if generator is None or isinstance(generator, torch.Generator):
        return torch.randint(0, 2**62, (len(rows),), generator=generator).tolist()
    return [int(torch.randint(0, 2**62, (1,), generator=generator[r])) for r in rows]


def _draw_uniforms(generator: Generators, rows: list[int], n: int, device: torch.device) -> torch.Tensor:
    if generator is None or isinstance(generator, torch.Generator):
        return draw_uniform((len(rows), n), generator, device)
    return draw_uniform((len(rows), n), [generator[r] for r in rows], device)


def adaptive_loop(
    model: LPD,
    labels: torch.Tensor,
    choose: Choose,
    *,
    candidates: int,
    tau: float,
    rho: float,
    guided: bool,
    generator: Generators,
    known: torch.Tensor | None = None,
    known_tokens: torch.Tensor | None = None,
) -> AdaptiveResult:
    """The adaptive decoding loop (module docstring): one forward pass per step until every cell of
    every image is committed; ``choose`` turns a step's logits into codes and a commit mask. ``known``
    (B, N) bool with ``known_tokens`` (B, N) raster codes: editing, the known cells fed with the class
    token at step 1 (rows may know different numbers of cells)."""
    b, n, grid = labels.shape[0], model.cfg.num_tokens, model.cfg.grid
    device = model.pos_embed.device
    labels = labels.to(device)
    big = n + 2  # group id of an uncommitted slot: above every real one
    group = torch.full((b, 1 + n), big, dtype=torch.long, device=device)
    group[:, 0] = 0
    codes = torch.zeros(b, n, dtype=torch.long, device=device)
    commit_step = torch.full((b, n), -1, dtype=torch.long, device=device)
    num_steps = torch.zeros(b, dtype=torch.long, device=device)
    if known is not None:
        known = known.to(device)
        group[:, 1:][known] = 1
        codes[known] = known_tokens.to(device)[known]
        commit_step[known] = 0
    rows = torch.arange(b, device=device)  # original index of each active row
    both = (lambda t: torch.cat([t, t])) if guided else (lambda t: t)
    null = torch.cat([torch.zeros(b, dtype=torch.bool), torch.ones(b, dtype=torch.bool)]).to(device)
    cls_tok = model.class_tokens(both(labels), null if guided else None)  # (b', 1, D)
    cache: KVCache = model.new_cache(cls_tok.shape[0], device)
    pos_table = model.pos_embed[0]  # (1 + N, D): slot s has position embedding row s
    # step 1's context: the class token, then the known cells (padded by repeats of the class token)
    if known is not None and bool(known.any()):
        kcells, kvalid = _pad_rows(torch.cat([torch.ones(b, 1, dtype=torch.bool, device=device), known], dim=1))
        ctx_slots = kcells
        tok = model.token_emb(codes.gather(1, (kcells - 1).clamp(min=0))) + pos_table[kcells]
        ctx = torch.where((kcells == 0)[..., None], cls_tok[:b].expand_as(tok), tok)
        ctx = (
            torch.cat([ctx, torch.where((kcells == 0)[..., None], cls_tok[b:].expand_as(tok), tok)]) if guided else ctx
        )
    else:
        ctx_slots = torch.zeros(b, 1, dtype=torch.long, device=device)
        ctx = cls_tok
    trace: list[dict] = []
    step = 0
    with eval_mode(model):
        while rows.numel():
            step += 1
            active = rows.tolist()
            committed = (group[rows, 1:] < big).cpu().numpy()
            cells, valid = _candidates(grid, committed, candidates, _draw_seeds(generator, active, b), tau, rho)
            cells, valid = cells.to(device), valid.to(device)
            q_slots = 1 + cells
            g = group[rows]  # (b, 1 + N)
            row_group = g.gather(1, ctx_slots)  # (b, P) group of each context row
            is_cand = torch.zeros_like(g, dtype=torch.bool).scatter(1, q_slots, True)
            ctx_mask = g[:, None, :] <= row_group[:, :, None]  # (b, P, S): own group and earlier
            q_mask = ((g < big) | is_cand)[:, None, :].expand(-1, cells.shape[1], -1)  # (b, M, S)
            mask = torch.cat([ctx_mask, q_mask], dim=1)[:, None]  # (b, 1, P + M, S)
            slots = torch.cat([ctx_slots, q_slots], dim=1)
            q_pos = pos_table[q_slots]  # (b, M, D)
            logits = model.decode_step(ctx, both(q_pos), cache, both(slots), both(mask))
            new_codes, commit = choose(rows, cells, valid, logits)
            # commit: group ids, codes and steps of the chosen cells (padding repeats a real candidate,
            # so scattering its duplicates writes the same values)
            commit = torch.where(valid, commit, commit[:, :1])  # pads say what their original says
            new_codes = torch.where(commit, new_codes, codes[rows].gather(1, cells))
            new_codes = torch.where(valid, new_codes, new_codes[:, :1])
            trace.append(dict(rows=rows, cells=cells, valid=valid, commit=commit, codes=new_codes))
            hit = torch.zeros(rows.numel(), n, dtype=torch.bool, device=device).scatter(1, cells, commit)
            codes[rows] = codes[rows].scatter(1, cells, new_codes)
            group[rows] = torch.where(torch.cat([torch.zeros_like(hit[:, :1]), hit], dim=1), step + 1, g)
            commit_step[rows] = torch.where(hit, step, commit_step[rows])
            left = (group[rows, 1:] == big).any(dim=1)
            num_steps[rows[~left]] = step
            # the next step's context: this step's committed cells, of the rows still decoding
            if not bool(left.all()):  # drop finished rows from the batch and its cache
                keep = torch.nonzero(left).squeeze(1)
                keep2 = torch.cat([keep, keep + rows.numel()]) if guided else keep
                cache.k = [t[keep2] for t in cache.k]
                cache.v = [t[keep2] for t in cache.v]
                rows, hit = rows[keep], hit[keep]
            if not rows.numel():
                break
            cols, _ = _pad_rows(hit)
            ctx_slots = 1 + cols
            ctx = both(model.embed_context(codes[rows].gather(1, cols), pos_table[ctx_slots]))
    return AdaptiveResult(codes, commit_step, num_steps, trace)


@torch.inference_mode()
def generate_adaptive(
    model: LPD,
    labels: torch.Tensor,
    *,
    entropy_bound: float = DEFAULT_ENTROPY_BOUND,
    candidates: int | None = None,
    tau: float,
    rho: float,
    guidance_scale: float = 1.0,
    guidance_schedule: str = "linear",
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    generator: Generators = None,
    known: torch.Tensor | None = None,
    known_tokens: torch.Tensor | None = None,
) -> AdaptiveResult:
    """Sample images with adaptive steps (module docstring). Settings as in
    :func:`lpdgen.generation.generate` (checked by the caller: the pipeline validates a
    :class:`~lpdgen.settings.SamplingConfig`); ``entropy_bound`` gamma >= 0 in nats; ``candidates``:
    cells queried per step (default :func:`default_candidates`); ``generator``: one or one per image.
    The guidance scale of a step's tokens is s_t with t = cells committed before the step. Entropies are
    those of the guided distribution at temperature 1 (the model's own uncertainty, whatever the
    sampling temperature)."""
    model.check_labels(labels)
    b, n = labels.shape[0], model.cfg.num_tokens
    if not (entropy_bound >= 0):  # also refuses NaN
        raise ValueError(f"entropy_bound must be >= 0 (nats; 0 = one token per step), got {entropy_bound}")
    limit = default_candidates(n) if candidates is None else int(candidates)
    if limit < 1:
        raise ValueError(f"candidates must be >= 1, got {candidates}")
    if known is not None:
        model.check_tokens(known_tokens)
        if known.shape != (b, n) or known.dtype != torch.bool:
            raise ValueError(f"known must be a (B, N) = ({b}, {n}) bool mask, got {tuple(known.shape)} {known.dtype}")
        if bool(known.all(dim=1).any()):
            raise ValueError("every image needs at least one cell to generate")
    guided = guidance_scale != 1.0
    device = model.pos_embed.device

    def choose(rows, cells, valid, logits):
        logits = logits.float()
        if guided:
            cond, uncond = logits.chunk(2)
            done = (commit_count[rows])[:, None].expand_as(cells)
            logits = guide(cond, uncond, guidance_scales(done, n, guidance_scale, guidance_schedule))
        commit = entropy_commit(predictive_entropy(logits), valid, entropy_bound)
        uniform = _draw_uniforms(generator, rows.tolist(), n, device)[:, : cells.shape[1]]
        codes = sample_tokens(logits, uniform, temperature, top_k, top_p)
        commit_count[rows] += commit.sum(dim=1)
        return codes, commit

    commit_count = torch.zeros(b, dtype=torch.long, device=device)
    if known is not None:
        commit_count += known.to(device).sum(dim=1)
    return adaptive_loop(
        model,
        labels,
        choose,
        candidates=limit,
        tau=tau,
        rho=rho,
        guided=guided,
        generator=generator,
        known=known,
        known_tokens=known_tokens,
    )
