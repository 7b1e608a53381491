"""Editing (inpainting, outpainting, class-conditional edits): known tokens prefilled in one pass equal
the training forward with them as the first context group, come back bit for bit, and only the unknown
cells are generated, in the steps of their own schedule; orders over the unknown cells; the pipeline and
the `lpdgen edit` command."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import TINY_CFG, TINY_N, random_orders, random_schedule

from lpdgen.editing import box_mask, cell_mask
from lpdgen.engine import Engine
from lpdgen.generation import decode_logits, generate
from lpdgen.masks import decode_steps
from lpdgen.orders import build_orders, group_sizes, known_first, locality_aware
from lpdgen.orders.reference import locality_aware_reference
from lpdgen.sampling import guidance_scales, guide

CFG, N = TINY_CFG, TINY_N


def known_prefix_orders(known: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """(B, N) orders listing the known cells first (random order), then the unknown ones (random order)."""
    rows = []
    for mask in known:
        cells = torch.randperm(N, generator=gen)
        rows.append(torch.cat([cells[mask[cells]], cells[~mask[cells]]]))
    return torch.stack(rows)


def random_known(batch: int, count: int, gen: torch.Generator) -> torch.Tensor:
    known = torch.zeros(batch, N, dtype=torch.bool)
    for row in known:
        row[torch.randperm(N, generator=gen)[:count]] = True
    return known


# ---- the cached path ------------------------------------------------------------------------------------


def test_prefill_without_known_tokens_is_ordinary_decoding():
    gen = torch.Generator().manual_seed(0)
    for _ in range(10):
        sizes = tuple(random_schedule(N, gen))
        assert all(
            torch.equal(a.mask, b.mask)
            and (a.slot_start, a.slot_end, a.q_start) == (b.slot_start, b.slot_end, b.q_start)
            for a, b in zip(decode_steps(sizes, 0), decode_steps(sizes))
        )


def test_prefilled_logits_equal_training_forward_with_known_tokens_as_first_group(model):
    """The acceptance contract: one prefill pass (class + P known tokens as context, first group's queries)
    gives the training forward's logits on the schedule [P, g_1, ...]; so does every later step."""
    gen = torch.Generator().manual_seed(1)
    for p in (1, 3, 7, 12, N - 1):
        for _ in range(3):
            sizes = random_schedule(N - p, gen)
            tokens = torch.randint(0, CFG["vocab_size"], (3, N), generator=gen)
            labels = torch.randint(0, CFG["num_classes"], (3,), generator=gen)
            orders = random_orders(3, N, gen)
            train = model.forward_logits(tokens, labels, [p, *sizes], orders)[:, p:]  # (B, N - P, V)
            cached = decode_logits(model, tokens, labels, sizes, orders, num_known=p)
            assert cached.shape == train.shape
            first = sizes[0]
            assert (train[:, :first] - cached[:, :first]).abs().max() <= 1e-4, (p, sizes)
            assert (train - cached).abs().max() <= 1e-4, (p, sizes)


def greedy_reference(model, known_tokens, labels, sizes, orders, p, cfg):
    """Greedy guided generation through the training forward, known tokens as the first group."""
    tokens = known_tokens.clone()
    ordered_pos = orders[:, p:]
    scales = guidance_scales(torch.arange(N), N, cfg, "linear")
    start = p
    b = labels.shape[0]
    for g in sizes:
        cond = model.forward_logits(tokens, labels, [p, *sizes], orders, null=torch.zeros(b, dtype=torch.bool))
        uncond = model.forward_logits(tokens, labels, [p, *sizes], orders, null=torch.ones(b, dtype=torch.bool))
        logits = guide(cond[:, start : start + g], uncond[:, start : start + g], scales[start : start + g])
        tokens.scatter_(1, orders[:, start : start + g], logits.argmax(-1))
        start += g
    assert ordered_pos.shape[1] == start - p
    return tokens


def test_prefilled_greedy_generation_matches_training_forward_and_keeps_known_tokens(model):
    gen = torch.Generator().manual_seed(2)
    for p, cfg in ((5, 1.0), (9, 2.5), (1, 4.0)):
        sizes = random_schedule(N - p, gen)
        known = random_known(2, p, gen)
        orders = known_prefix_orders(known, gen)
        tokens = torch.randint(0, CFG["vocab_size"], (2, N), generator=gen)
        labels = torch.tensor([1, 4])
        with torch.no_grad():
            want = greedy_reference(model, tokens, labels, sizes, orders, p, cfg)
        got = generate(model, labels, sizes, orders, num_known=p, known_tokens=tokens, guidance_scale=cfg, top_k=1)
        assert torch.equal(got, want), (p, cfg)
        assert torch.equal(got[known], tokens[known])  # bit for bit


def test_known_tokens_come_back_bit_for_bit_when_sampling(model):
    gen = torch.Generator().manual_seed(3)
    known = random_known(4, 8, gen)
    orders = known_prefix_orders(known, gen)
    tokens = torch.randint(0, CFG["vocab_size"], (4, N), generator=gen)
    out = generate(
        model,
        torch.tensor([0, 1, 2, 3]),
        [1, 2, 4, 5],
        orders,
        num_known=8,
        known_tokens=tokens,
        guidance_scale=3.0,
        generator=[torch.Generator().manual_seed(i) for i in range(4)],
    )
    assert torch.equal(out[known], tokens[known])
    assert (out[~known] != tokens[~known]).any()  # the unknown cells were generated (random weights: differ)


def test_step_count_is_the_unknown_schedule(model):
    """One forward pass per group of the unknown cells: the known tokens cost no step of their own."""
    gen = torch.Generator().manual_seed(4)
    engine = Engine(model)
    calls = []
    step = engine.step
    engine.step = lambda *a: calls.append(a[0].shape[1]) or step(*a)  # context rows fed per step
    known = random_known(1, 6, gen)
    sizes = group_sizes(N - 6, 5)
    generate(
        model,
        torch.tensor([2]),
        sizes,
        known_prefix_orders(known, gen),
        num_known=6,
        known_tokens=torch.zeros(1, N, dtype=torch.long),
        engine=engine,
        generator=gen,
    )
    assert len(calls) == len(sizes) == 5
    assert calls[0] == 1 + 6  # class token and the 6 known tokens, in one pass
    assert calls[1:] == sizes[:-1]


def test_prefill_errors_are_clear(model):
    orders = torch.arange(N)[None]
    with pytest.raises(ValueError, match="sum to"):
        generate(
            model,
            torch.tensor([0]),
            group_sizes(N, 4),
            orders,
            num_known=3,
            known_tokens=torch.zeros(1, N, dtype=torch.long),
        )
    with pytest.raises(ValueError, match="known_tokens"):
        generate(model, torch.tensor([0]), group_sizes(N - 3, 4), orders, num_known=3)
    with pytest.raises(ValueError, match="num_known"):
        generate(
            model, torch.tensor([0]), [1], orders, num_known=N - 1 + 1, known_tokens=torch.zeros(1, N, dtype=torch.long)
        )


# ---- orders over the unknown cells ----------------------------------------------------------------------


def test_locality_order_with_known_cells_equals_the_reference():
    rng = np.random.default_rng(0)
    for _ in range(40):
        h, w = (int(v) for v in rng.integers(2, 9, 2))
        n, b = h * w, int(rng.integers(1, 4))
        p = int(rng.integers(0, n))
        known = np.zeros((b, n), dtype=bool)
        for row in known:
            row[rng.choice(n, p, replace=False)] = True
        sizes = group_sizes(n - p, int(rng.integers(1, n - p + 1)))
        tau, rho, seed = float(rng.choice([0.5, 1.0, 2.0])), float(rng.choice([0, 1, 2, 3])), int(rng.integers(1000))
        fast = locality_aware((h, w), sizes, tau, rho, batch=b, seed=seed, known=known)
        assert torch.equal(fast, locality_aware_reference(h, w, sizes, tau, rho, batch=b, seed=seed, known=known))
        assert torch.equal(
            locality_aware((h, w), sizes, tau, rho, seed=list(range(b)), known=known),
            locality_aware_reference(h, w, sizes, tau, rho, seed=list(range(b)), known=known),
        )


def test_locality_order_lists_known_cells_first_and_grows_from_them():
    known = np.zeros((8, 8), dtype=bool)
    known[:4] = True  # upper half known
    orders = locality_aware(8, group_sizes(32, 8), seed=list(range(6)), known=known)
    assert (orders[:, :32] == torch.arange(32)).all()  # known cells first, raster order
    assert (orders.sort(dim=1).values == torch.arange(64)).all()
    assert (orders[:, 32] // 8 == 4).all()  # step 1 (one cell) is next to the known half
    # no known cell: the ordinary order of the same seed
    plain = locality_aware(8, group_sizes(64, 8), seed=[3, 4])
    assert torch.equal(plain, locality_aware(8, group_sizes(64, 8), seed=[3, 4], known=np.zeros((8, 8), dtype=bool)))


@pytest.mark.parametrize("kind", ["raster", "random", "halton"])
def test_simple_orders_keep_their_order_of_the_unknown_cells(kind):
    known = np.zeros(64, dtype=bool)
    known[[3, 9, 40, 41]] = True
    full = build_orders(kind, 8, None, seed=[5])
    edit = build_orders(kind, 8, None, seed=[5], known=known)
    assert edit[0, :4].tolist() == [3, 9, 40, 41]
    assert edit[0, 4:].tolist() == [c for c in full[0].tolist() if not known[c]]


def test_known_masks_must_know_equally_many_cells_per_row():
    known = np.zeros((2, 16), dtype=bool)
    known[0, 0] = True
    with pytest.raises(ValueError, match="equally many"):
        known_first(torch.arange(16).repeat(2, 1), known, 4)
    with pytest.raises(ValueError, match="mask of the 4x4 cells"):
        locality_aware(4, [1], known=np.zeros(15, dtype=bool))


# ---- masks in pixels ------------------------------------------------------------------------------------


def test_pixel_masks_regenerate_every_cell_they_touch():
    mask = np.zeros((1, 32, 32), dtype=bool)
    mask[0, 5, 9] = True  # one pixel -> the cell (1, 2) of 4x4-pixel cells
    cells = cell_mask(mask, 1, (8, 8), 4)
    assert cells.sum() == 1 and cells[0, 1, 2]
    assert torch.equal(cell_mask(cells.numpy(), 1, (8, 8), 4), cells)  # token resolution passes through
    boxes = box_mask((4, 4, 10, 12), 2, (32, 32))  # x 4..9, y 4..11
    assert boxes.shape == (2, 32, 32) and boxes[:, 4:12, 4:10].all() and boxes.sum() == 2 * 6 * 8
    kept = ~cell_mask(~boxes, 2, (8, 8), 4)  # cells the box covers completely: x cells 1, y cells 1-2
    assert kept.sum() == 2 * 2 and kept[:, 1:3, 1].all()
    with pytest.raises(ValueError, match="mask must be"):
        cell_mask(np.zeros((1, 30, 32), dtype=bool), 1, (8, 8), 4)
    with pytest.raises(ValueError, match="boolean"):
        cell_mask(np.zeros((1, 32, 32), dtype=np.uint8), 1, (8, 8), 4)
    with pytest.raises(ValueError, match="out of range"):
        box_mask((0, 0, 33, 4), 1, (32, 32))


# ---- the pipeline, with the embedded model --------------------------------------------------------------


@pytest.fixture(scope="module")
def images(pipe) -> np.ndarray:
    """Three 32x32 uint8 test-like images: the embedded model's own samples (no dataset needed)."""
    return pipe([0, 7, 9], seeds=[1, 2, 3], output_type="np").images[..., 0]


def test_inpaint_keeps_the_unmasked_codes_and_uses_the_unknown_schedule(pipe, images):
    mask = np.zeros((3, 32, 32), dtype=bool)
    mask[:, 16:] = True  # lower half: 32 of 64 cells
    mask[2, :4, :4] = True  # image 2 regenerates one more cell
    out = pipe.inpaint(images, mask, ["dress", "bag", 0], num_inference_steps=5, seeds=[7, 8, 9], output_type="codes")
    codes = pipe.encode(images)
    assert torch.equal(out.codes[out.known], codes[out.known])
    assert out.known.sum(dim=(1, 2)).tolist() == [32, 32, 31]
    assert out.group_sizes == [group_sizes(32, 5), group_sizes(32, 5), group_sizes(33, 5)]
    assert out.labels == [3, 8, 0]
    for i in range(3):  # a batch with different counts: each image as if edited alone
        alone = pipe.inpaint(
            images[i : i + 1], mask[i : i + 1], out.labels[i], num_inference_steps=5, seeds=[7 + i], output_type="codes"
        )
        assert torch.equal(alone.codes[0], out.codes[i])
        assert torch.equal(alone.orders[0], out.orders[i])


def test_default_steps_are_capped_by_the_masked_count(pipe, images):
    cells = np.zeros((1, 8, 8), dtype=bool)
    cells[0, 3, 3:6] = True  # 3 cells; the model's default is 8 steps
    out = pipe.inpaint(images[:1], cells, 0, seeds=[0], output_type="codes")
    assert out.group_sizes == [1, 1, 1]
    with pytest.raises(ValueError, match="4 steps for 3 token cells to regenerate: use at most 3 steps"):
        pipe.inpaint(images[:1], cells, 0, num_inference_steps=4, seeds=[0], output_type="codes")


def test_empty_mask_returns_the_input_codes_and_full_mask_is_ordinary_generation(pipe, images):
    empty = pipe.inpaint(images, np.zeros((32, 32), dtype=bool), 0, seeds=[1, 2, 3], output_type="codes")
    assert torch.equal(empty.codes, pipe.encode(images))
    full = pipe.inpaint(images, np.ones((3, 8, 8), dtype=bool), [4, 5, 6], seeds=[11, 12, 13], output_type="codes")
    plain = pipe([4, 5, 6], seeds=[11, 12, 13], output_type="codes")
    assert torch.equal(full.codes, plain.codes) and torch.equal(full.orders, plain.orders)


def test_outpaint_keeps_the_box_cells(pipe, images):
    from PIL import Image

    pil = [Image.fromarray(im) for im in images[:2]]
    out = pipe.outpaint(pil, (8, 8, 24, 24), "sneaker", seeds=[1, 2], output_type="np")
    want = np.zeros((8, 8), dtype=bool)
    want[2:6, 2:6] = True
    assert (out.known.numpy() == want).all()
    assert torch.equal(out.codes[out.known], pipe.encode(images[:2])[out.known])
    assert out.images.shape == (2, 32, 32, 1)


def test_wrong_inputs_are_one_clear_error(pipe, images):
    with pytest.raises(
        ValueError,
        match=r"28x28 pixels; this model edits 32x32 images: pad them first, e\.g\. "
        r"lpdgen\.editing\.pad_to\(images, \(32, 32\)\)",
    ):
        pipe.inpaint(np.zeros((1, 28, 28), np.uint8), np.ones((1, 28, 28), bool), 0)
    with pytest.raises(ValueError, match="mask must be"):
        pipe.inpaint(images, np.ones((2, 32, 32), bool), 0)
    with pytest.raises(ValueError, match="uint8"):
        pipe.inpaint(images.astype(np.float32), np.ones((32, 32), bool), 0)
    with pytest.raises(ValueError, match="3 channels"):
        pipe.inpaint(np.repeat(images[..., None], 3, -1), np.ones((32, 32), bool), 0)
    with pytest.raises(ValueError, match="2 class labels for 3 images"):
        pipe.inpaint(images, np.ones((32, 32), bool), [0, 1])
    with pytest.raises(ValueError, match="out of range"):
        pipe.outpaint(images, (0, 0, 32, 40), 0)
    with pytest.raises(ValueError, match="covers no whole token cell"):  # would keep nothing of the input
        pipe.outpaint(images, (2, 2, 7, 7), 0)
    with pytest.raises(ValueError, match="covers no whole token cell"):  # one box per image: the second keeps nothing
        pipe.outpaint(images, [(0, 0, 4, 4), (1, 0, 5, 4), (0, 0, 4, 4)], 0)
    pipe.outpaint(images[:1], (0, 0, 4, 4), 0, num_inference_steps=1, output_type="codes")  # one whole cell is enough


def test_pad_to_centers_images_and_masks_on_a_black_canvas():
    from lpdgen.editing import pad_to

    raw = np.arange(2 * 28 * 28, dtype=np.uint8).reshape(2, 28, 28)
    padded, (top, left) = pad_to(raw, (32, 32))
    assert padded.shape == (2, 32, 32) and padded.dtype == np.uint8 and (top, left) == (2, 2)
    assert (padded[:, 2:30, 2:30] == raw).all() and padded.sum() == raw.sum()  # the rest is black
    mask, _ = pad_to(np.ones((1, 28, 28, 1), bool), (32, 32))
    assert mask.shape == (1, 32, 32, 1) and mask.sum() == 28 * 28
    with pytest.raises(ValueError, match="do not fit"):
        pad_to(raw, (16, 32))


# ---- lpdgen edit -----------------------------------------------------------------------------------------


SMALL_MODEL = ("--model", "fmnist-64")  # the `pipe` fixture's model, whose 4x4-pixel cells the boxes below assume


@pytest.fixture(scope="module")
def edit_files(tmp_path_factory, images):
    from lpdgen.images import save_png

    d = tmp_path_factory.mktemp("edit")
    mask = np.zeros((32, 32), np.uint8)
    mask[16:] = 255
    return {
        "image": save_png(images[0], d / "in.png"),
        "mask": save_png(mask, d / "mask.png"),
        "small": save_png(np.zeros((28, 28), np.uint8), d / "small.png"),
        "big": save_png(np.zeros((40, 40), np.uint8), d / "big.png"),
        "dir": d,
    }


def test_edit_command_writes_the_edit_and_its_gif(edit_files, pipe, capsys):
    from PIL import Image

    from lpdgen.cli import main

    d = edit_files["dir"]
    rc = main(
        [
            "edit",
            "inpaint",
            *SMALL_MODEL,
            "--image",
            str(edit_files["image"]),
            "--mask",
            str(edit_files["mask"]),
            "--class",
            "bag",
            "--out",
            str(d / "out.png"),
            "--gif",
            str(d / "edit.gif"),
            "--steps",
            "4",
            "--seed",
            "3",
        ]
    )
    assert rc == 0
    assert "kept 32 of 64 token cells, generated 32 in 4 steps" in capsys.readouterr().out
    assert Image.open(d / "out.png").size == (32, 32)
    assert Image.open(d / "edit.gif").n_frames == 1 + 4  # the kept tokens, then one frame per step
    # the command is the pipeline call with image seed 0 of --seed
    from lpdgen.rng import image_seeds

    mask = np.zeros((32, 32), bool)
    mask[16:] = True
    want = pipe.inpaint(
        [Image.open(edit_files["image"])],
        mask,
        "bag",
        num_inference_steps=4,
        seeds=image_seeds(3, [0]),
        output_type="np",
    )
    assert (np.asarray(Image.open(d / "out.png")) == want.images[0, ..., 0]).all()


def test_edit_command_with_adaptive_steps_reports_the_realised_steps_and_animates_them(edit_files, pipe, capsys):
    """`--steps auto`: the output holds one schedule per image; the summary and the GIF use this image's."""
    from PIL import Image

    from lpdgen.cli import main
    from lpdgen.rng import image_seeds

    d = edit_files["dir"]
    argv = ["edit", "inpaint", *SMALL_MODEL, "--image", str(edit_files["image"]), "--mask", str(edit_files["mask"])]
    argv += ["--class", "bag", "--out", str(d / "auto.png"), "--gif", str(d / "auto.gif"), "--steps", "auto"]
    assert main([*argv, "--entropy-bound", "8", "--seed", "3"]) == 0
    mask = np.zeros((32, 32), bool)
    mask[16:] = True
    want = pipe.inpaint(
        [Image.open(edit_files["image"])],
        mask,
        "bag",
        num_inference_steps="auto",
        entropy_bound=8,
        seeds=image_seeds(3, [0]),
        output_type="np",
    )
    steps = want.num_steps[0]
    assert steps > 1 and sum(want.schedule(0)) == 32 and len(want.schedule(0)) == steps
    assert f"kept 32 of 64 token cells, generated 32 in {steps} steps" in capsys.readouterr().out
    assert Image.open(d / "auto.gif").n_frames == 1 + steps
    assert (np.asarray(Image.open(d / "auto.png")) == want.images[0, ..., 0]).all()


def test_edit_command_pads_a_28x28_image_and_crops_the_result_back(edit_files, pipe, capsys):
    """A raw Fashion-MNIST image (28x28) edits as the 32x32 one the model was trained on: centered on
    black, with --box on the input's pixels, and the result at the input's size."""
    from PIL import Image

    from lpdgen.cli import main
    from lpdgen.editing import pad_to
    from lpdgen.rng import image_seeds

    d = edit_files["dir"]
    raw = np.asarray(Image.open(edit_files["image"]))[2:30, 2:30]  # the 28x28 original of a padded test image
    Image.fromarray(raw).save(d / "raw28.png")
    assert (
        main(
            [
                "edit",
                "inpaint",
                *SMALL_MODEL,
                "--image",
                str(d / "raw28.png"),
                "--box",
                "0",
                "0",
                "14",
                "28",
                "--class",
                "bag",
                "--out",
                str(d / "out28.png"),
                "--steps",
                "4",
                "--seed",
                "3",
            ]
        )
        == 0
    )
    assert "kept 32 of 64 token cells" in capsys.readouterr().out  # box x 0..14 on the input = 2..16 padded: 4 columns
    got = np.asarray(Image.open(d / "out28.png"))
    mask = np.zeros((1, 28, 28), bool)
    mask[:, :, :14] = True
    want = pipe.inpaint(
        pad_to(raw[None], (32, 32))[0],
        pad_to(mask, (32, 32))[0],
        "bag",
        num_inference_steps=4,
        seeds=image_seeds(3, [0]),
        output_type="np",
    ).images[0, 2:30, 2:30, 0]
    assert got.shape == (28, 28) and (got == want).all()


def test_edit_outpaint_box_under_one_cell_is_an_error(edit_files, capsys):
    from lpdgen.cli import EXIT_USER_ERROR, main

    rc = main(
        [
            "edit",
            "outpaint",
            *SMALL_MODEL,
            "--image",
            str(edit_files["image"]),
            "--box",
            "1",
            "1",
            "3",
            "3",
            "--class",
            "0",
            "--out",
            str(edit_files["dir"] / "o.png"),
        ]
    )
    err = capsys.readouterr().err.strip()
    assert rc == EXIT_USER_ERROR and err.count("\n") == 0
    assert err.startswith("lpdgen edit outpaint: error: --box: the box covers no whole token cell (4x4 pixels"), err


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--image", "{big}", "--box", "0", "0", "4", "4"], "is 40x40 pixels; this model edits 32x32"),
        (["--image", "{image}", "--box", "0", "0", "40", "4"], "--box: box (0, 0, 40, 4) is out of range"),
        (["--image", "{image}", "--box", "5", "0", "5", "4"], "out of range"),
        (["--image", "{image}", "--mask", "{small}"], "--mask"),
        (["--image", "{dir}/missing.png", "--box", "0", "0", "4", "4"], "file not found"),
        (["--image", "{image}", "--box", "0", "0", "4", "4", "--class", "dres"], "did you mean 'dress'"),
        (
            ["--image", "{image}", "--box", "0", "0", "4", "4", "--steps", "5"],
            "5 steps for 1 token cell to regenerate: use at most 1 step",
        ),
        (["--image", "{mask}", "--box", "0", "0", "4", "4", "--out", "{dir}/o.txt"], "unsupported file type"),
    ],
)
def test_edit_command_errors_are_one_line(edit_files, argv, message, capsys):
    from lpdgen.cli import EXIT_USER_ERROR, main

    argv = [a.format(**{k: str(v) for k, v in edit_files.items()}) for a in argv]
    if "--class" not in argv:
        argv += ["--class", "0"]
    if "--out" not in argv:
        argv += ["--out", str(edit_files["dir"] / "o.png")]
    rc = main(["edit", "inpaint", *SMALL_MODEL, *argv])
    err = capsys.readouterr().err.strip()
    assert rc == EXIT_USER_ERROR
    assert err.count("\n") == 0 and err.startswith("lpdgen edit inpaint: error:") and message in err, err
