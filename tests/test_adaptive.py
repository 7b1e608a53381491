"""Adaptive decoding: the commit rule, cached decoding == the training forward on the realised
schedule, per-image determinism, and the errors of bad settings."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import TINY_CFG, TINY_N

from lpdgen.adaptive import adaptive_loop, entropy_commit, generate_adaptive, predictive_entropy
from lpdgen.masks import visible

CFG, N = TINY_CFG, TINY_N


def gens(seeds):
    return [torch.Generator().manual_seed(s) for s in seeds]


def run(model, labels, bound, **kw):
    kw.setdefault("guidance_scale", 2.0)
    return generate_adaptive(
        model, labels, entropy_bound=bound, tau=1.0, rho=2.0, generator=gens(range(len(labels))), **kw
    )


def test_entropy_commit_rule_on_hand_made_rows():
    entropy = torch.tensor([[3.0, 0.5, 1.0, 2.0], [0.1, 0.1, 9.0, 2.5]])
    valid = torch.tensor([[True, True, True, True], [True, False, True, True]])
    # row 0 sorted: 0.5, 1.0, 2.0, 3.0; sums before: 0, 0.5, 1.5, 3.5 -> bound 2 takes three
    # row 1 (0.1 at column 1 is padding): 0.1, 2.5, 9.0; sums before: 0, 0.1, 2.6 -> two
    got = entropy_commit(entropy, valid, 2.0)
    assert got.tolist() == [[False, True, True, True], [True, False, False, True]]
    assert entropy_commit(entropy, valid, 0.0).sum(dim=1).tolist() == [1, 1]
    assert entropy_commit(entropy, valid, math.inf).tolist() == valid.tolist()


def test_predictive_entropy_of_uniform_and_certain_rows():
    logits = torch.tensor([[0.0] * 8, [0.0] + [-math.inf] * 7])
    assert torch.allclose(predictive_entropy(logits), torch.tensor([math.log(8), 0.0]))


def test_bound_zero_commits_one_token_per_step(model):
    out = run(model, torch.tensor([0, 3, 5]), 0.0)
    assert out.num_steps.tolist() == [N] * 3
    assert out.group_sizes() == [[1] * N] * 3


def test_infinite_bound_commits_everything_queried(model):
    out = run(model, torch.tensor([1, 2]), math.inf, candidates=7)
    first = out.trace[0]
    assert torch.equal(first["commit"], first["valid"]) and int(first["valid"].sum()) == 2 * 7
    assert out.group_sizes() == [[7, 7, 6]] * 2
    assert run(model, torch.tensor([1]), math.inf, candidates=N).num_steps.tolist() == [1]


def test_committed_tokens_never_change_and_each_cell_is_committed_once(model):
    out = run(model, torch.tensor([0, 1, 2, 3]), 3.0)
    seen = torch.zeros(4, N, dtype=torch.long)
    for step, t in enumerate(out.trace, 1):
        for r, cells, valid, commit, codes in zip(t["rows"], t["cells"], t["valid"], t["commit"], t["codes"]):
            c = cells[valid & commit]
            assert (out.commit_step[r, c] == step).all()  # committed cells were free before: never re-queried
            assert torch.equal(out.codes[r, c], codes[valid & commit])  # and keep the code drawn at commit
            seen[r, c] += 1
    assert (seen == 1).all()
    assert (out.num_steps > 1).all() and (out.num_steps < N).all()  # a real mix of step sizes


def reference_logits(model, tokens, label, steps):
    """The training forward (full sequence, no cache) on a realised adaptive schedule: the class token,
    each step's committed cells as context of group k, and each step's queried cells as queries of group
    k, under the training rule :func:`lpdgen.masks.visible`. Returns {(step, cell): logits}."""
    ctx_cells = [c for _, _, committed in steps for c in committed]
    ctx_group = [k for k, _, committed in steps for _ in committed]
    q_cells = [c for _, queried, _ in steps for c in queried]
    q_group = [k for k, queried, _ in steps for _ in queried]
    pos = model.pos_embed[0, 1:]
    x = torch.cat(
        [
            model.class_tokens(label[None])[0],
            model.token_emb(tokens[ctx_cells]) + pos[ctx_cells],
            model.mask_token[0] + pos[q_cells],
        ]
    )[None]
    group = torch.tensor([0, *ctx_group, *q_group])
    query = torch.tensor([False] * (1 + len(ctx_cells)) + [True] * len(q_cells))
    mask = visible(group[:, None], query[:, None], group[None, :], query[None, :])
    x = model.z_proj_ln(x)
    for block in model.blocks:
        x = block(x, mask)
    logits = model.head(model.norm(x[0, 1 + len(ctx_cells) :]))
    return {(k, c): logits[i] for i, (k, c) in enumerate(zip(q_group, q_cells))}


@pytest.mark.parametrize("guided", [False, True])
def test_cached_adaptive_decoding_equals_the_training_forward_on_the_realised_schedule(model, guided):
    """Teacher forcing through the adaptive loop with random commit sets (rows finishing at different
    steps, padded queries and contexts): every queried cell's logits equal the full forward's on the
    realised schedule, fp32, to 1e-4 (the conditional half with guidance)."""
    gen = torch.Generator().manual_seed(3)
    b = 4
    tokens = torch.randint(0, CFG["vocab_size"], (b, N), generator=gen)
    labels = torch.randint(0, CFG["num_classes"], (b,), generator=gen)
    cached: dict = {}
    history: list[list] = [[] for _ in range(b)]

    def choose(rows, cells, valid, logits):
        commit = valid & (torch.rand(cells.shape, generator=gen) < 0.4)
        commit[:, 0] = True
        for i, r in enumerate(rows.tolist()):
            k = len(history[r]) + 1
            cs = cells[i][valid[i]].tolist()
            for j, c in enumerate(cells[i].tolist()):
                if valid[i, j]:
                    cached[(r, k, c)] = logits[i, j]
            history[r].append((k, cs, cells[i][commit[i]].tolist()))
        return tokens[rows].gather(1, cells), commit

    out = adaptive_loop(model, labels, choose, candidates=6, tau=1.0, rho=2.0, guided=guided, generator=gens(range(b)))
    assert len(set(out.num_steps.tolist())) > 1  # rows finished at different steps
    assert torch.equal(out.codes, tokens)
    for r in range(b):
        ref = reference_logits(model, tokens[r], labels[r], history[r])
        assert ref.keys() == {key[1:] for key in cached if key[0] == r}
        worst = max((ref[k] - cached[(r, *k)]).abs().max().item() for k in ref)
        assert worst <= 1e-4, (r, worst)


def test_committing_everything_queried_is_the_standard_training_forward(model):
    """With nothing discarded the realised schedule is an ordinary one: the logits equal
    ``LPD.forward_logits`` on the realised group sizes and order."""
    gen = torch.Generator().manual_seed(4)
    tokens = torch.randint(0, CFG["vocab_size"], (2, N), generator=gen)
    labels = torch.tensor([1, 4])
    rows_logits: dict = {}

    def choose(rows, cells, valid, logits):
        for i, r in enumerate(rows.tolist()):
            rows_logits.setdefault(r, []).extend(
                (c, logits[i, j]) for j, c in enumerate(cells[i].tolist()) if valid[i, j]
            )
        return tokens[rows].gather(1, cells), valid

    out = adaptive_loop(model, labels, choose, candidates=6, tau=1.0, rho=2.0, guided=False, generator=gens([0, 1]))
    sizes = out.group_sizes()
    assert sizes == [[6, 6, 6, 2]] * 2
    for r in range(2):
        order = torch.tensor([c for c, _ in rows_logits[r]])
        train = model.forward_logits(tokens[r : r + 1], labels[r : r + 1], sizes[r], order[None])[0]
        cached = torch.stack([lg for _, lg in rows_logits[r]])
        assert (train - cached).abs().max() <= 1e-4


def test_each_image_depends_on_its_own_seed_only(model):
    labels = torch.tensor([0, 1, 2, 5])
    batch = generate_adaptive(
        model, labels, entropy_bound=3.0, tau=1.0, rho=2.0, guidance_scale=2.0, generator=gens([10, 11, 12, 13])
    )
    for i in range(4):
        alone = generate_adaptive(
            model, labels[i : i + 1], entropy_bound=3.0, tau=1.0, rho=2.0, guidance_scale=2.0, generator=gens([10 + i])
        )
        assert torch.equal(alone.codes[0], batch.codes[i])
        assert alone.num_steps.item() == batch.num_steps[i].item()


def test_editing_keeps_the_known_cells(model):
    gen = torch.Generator().manual_seed(5)
    tokens = torch.randint(0, CFG["vocab_size"], (2, N), generator=gen)
    known = torch.zeros(2, N, dtype=torch.bool)
    known[0, :8], known[1, 5:17] = True, True  # different numbers of known cells per row
    out = run(model, torch.tensor([0, 1]), 2.0, known=known, known_tokens=tokens)
    assert torch.equal(out.codes[known], tokens[known])
    assert (out.commit_step[known] == 0).all() and (out.commit_step[~known] > 0).all()


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        (dict(entropy_bound=-1.0), "entropy_bound must be >= 0"),
        (dict(entropy_bound=float("nan")), "entropy_bound must be >= 0"),
        (dict(entropy_bound=1.0, candidates=0), "candidates must be >= 1"),
    ],
)
def test_bad_settings_give_one_clear_error(model, kw, message):
    with pytest.raises(ValueError, match=message):
        generate_adaptive(model, torch.tensor([0]), tau=1.0, rho=2.0, **kw)


def test_pipeline_auto_steps_report_steps_and_repeat_per_seed(pipe):
    out = pipe(["bag", "sneaker"], num_inference_steps="auto", entropy_bound=8.0, seeds=[3, 4], output_type="codes")
    assert len(out.num_steps) == 2 and all(1 <= k <= 64 for k in out.num_steps)
    assert [len(s) for s in out.group_sizes] == out.num_steps and all(sum(s) == 64 for s in out.group_sizes)
    again = pipe(["sneaker"], num_inference_steps="auto", entropy_bound=8.0, seeds=[4], output_type="codes")
    assert torch.equal(again.codes[0], out.codes[1]) and again.num_steps == out.num_steps[1:]
    fixed = pipe(["bag"], seeds=[3], output_type="codes")
    assert fixed.num_steps == [pipe.sampling.num_inference_steps]


def test_pipeline_auto_inpaint_keeps_the_kept_cells(pipe):
    images = pipe(["shirt", "bag"], seeds=[0, 1], output_type="np").images
    mask = torch.zeros(2, 8, 8, dtype=torch.bool)
    mask[0, 4:], mask[1, :, :3] = True, True  # 32 and 24 cells: one batch all the same
    out = pipe.inpaint(images, mask, "dress", seeds=[5, 6], num_inference_steps="auto", output_type="codes")
    kept = pipe.encode(images)
    assert torch.equal(out.codes[~mask], kept[~mask]) and len(out.num_steps) == 2


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        (dict(num_inference_steps="auto", entropy_bound=-0.5), "entropy_bound must be a finite number >= 0"),
        (dict(num_inference_steps=8, entropy_bound=2.0), "entropy_bound applies to num_inference_steps='auto' only"),
        (dict(num_inference_steps="auto", order="raster"), "picks its cells with the locality-aware rule"),
        (dict(num_inference_steps="often"), r"must be an integer in \[1, number of tokens\].* or 'auto'"),
    ],
)
def test_pipeline_bad_adaptive_settings_give_one_clear_error(pipe, kw, message):
    with pytest.raises(ValueError, match=message):
        pipe(["bag"], seeds=[0], output_type="codes", **kw)


def test_generate_refuses_auto_as_a_fixed_schedule(model):
    from lpdgen.generation import generate

    with pytest.raises(ValueError, match="decodes a fixed schedule"):
        generate(model, torch.tensor([0]), "auto", torch.arange(N)[None])
