"""Tests of the `lpdgen orders` command and of the order pictures."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from lpdgen import orders as O
from lpdgen.cli import main
from lpdgen.orders.draw import draw_order, ramp, step_map


def test_orders_command_writes_seeded_json_orders(tmp_path):
    out = tmp_path / "orders.json"
    args = ["orders", "--grid", "8", "--steps", "10", "--rho", "2", "--count", "70", "--batch", "32", "--seed", "4"]
    assert main([*args, "--out", str(out)]) == 0
    orders = O.load_orders(out)
    assert orders.shape == (70, 64)
    assert len({tuple(r) for r in orders.tolist()}) == 70
    # the same command gives the same file
    again = tmp_path / "again.json"
    assert main([*args, "--out", str(again)]) == 0
    assert json.loads(out.read_text()) == json.loads(again.read_text())


@pytest.mark.parametrize("kind", O.ORDER_TYPES)
def test_orders_command_writes_npy_for_every_type_on_non_square_grids(tmp_path, kind):
    out = tmp_path / "o.npy"
    assert main(["orders", "--grid", "4x6", "--steps", "5", "--type", kind, "--count", "3", "--out", str(out)]) == 0
    orders = O.load_orders(out)
    assert orders.shape == (3, 24)
    if kind == "raster":
        assert torch.equal(orders[0], torch.arange(24))


def test_orders_command_draws_a_picture(tmp_path):
    png = tmp_path / "order.png"
    assert main(["orders", "--grid", "16", "--steps", "20", "--draw", str(png), "--cell", "10"]) == 0
    image = Image.open(png)
    assert image.format == "PNG" and image.width >= 160 and image.height >= 160


@pytest.mark.parametrize(
    "argv, message",
    [
        (["orders", "--grid", "4", "--steps", "20", "--out", "x.json"], "steps"),
        (["orders", "--grid", "4", "--steps", "4"], "nothing to do"),
        (["orders", "--grid", "4", "--steps", "4", "--out", "x.txt"], ".json or .npy"),
        (["orders", "--grid", "4", "--steps", "4", "--count", "0", "--out", "x.json"], "--count"),
    ],
)
def test_orders_command_reports_bad_input(tmp_path, monkeypatch, capsys, argv, message):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_step_map_and_picture_follow_the_order():
    order = O.raster((2, 3))[0]
    assert step_map(order, [1, 2, 3], (2, 3)).tolist() == [[1, 2, 2], [3, 3, 3]]
    image = np.asarray(draw_order(order, [1, 2, 3], (2, 3), cell=20))
    # top-left cell is step 1 (first ramp colour), bottom-right is step 3 (last ramp colour)
    first, last = ramp(np.array([0.0, 1.0]))
    assert tuple(image[10 + 14 + 15, 10 + 15]) == tuple(first)  # margin 10, title 14, below the number
    assert tuple(image[10 + 14 + 35, 10 + 55]) == tuple(last)
    with pytest.raises(ValueError, match="sum to"):
        step_map(order, [1, 2], (2, 3))


def test_ramp_runs_dark_to_bright():
    colours = ramp(np.linspace(0, 1, 11)).astype(int)
    assert colours[0].tolist() == [68, 1, 84] and colours[-1].tolist() == [253, 231, 37]
    assert np.all(np.diff(colours.sum(axis=1)[4:]) > 0)  # brighter towards the end
