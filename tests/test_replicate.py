"""benchmarks/replicate.py: the result file a long run resumes from, the subset flags and the run order."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).parents[1] / "benchmarks" / "replicate.py"


@pytest.fixture(scope="module")
def rep():
    spec = importlib.util.spec_from_file_location("replicate", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    yield module
    del sys.modules[spec.name]


def test_store_keeps_every_finished_row_across_reopen(rep, tmp_path):
    path = tmp_path / "r.json"
    store = rep.ResultStore(path)
    store.add("a", {"fd_test": 1.5})
    store.set_meta(num=50)
    store.add("b", {"fd_test": 2.5})
    again = rep.ResultStore(path)  # what a resumed run sees
    assert "a" in again and "b" in again and "c" not in again
    assert again.results == {"a": {"fd_test": 1.5}, "b": {"fd_test": 2.5}} and again.data["meta"] == {"num": 50}
    assert json.loads(path.read_text())["results"]["b"] == {"fd_test": 2.5}


def test_two_stores_on_one_file_keep_each_others_rows(rep, tmp_path):
    path = tmp_path / "r.json"
    first, second = rep.ResultStore(path), rep.ResultStore(path)  # two runs on disjoint subsets
    first.add("a", {"fd_test": 1.0})
    second.add("b", {"fd_test": 2.0})
    first.add("c", {"fd_test": 3.0})
    assert set(rep.ResultStore(path).results) == {"a", "b", "c"}


def test_store_rejects_a_foreign_json(rep, tmp_path):
    path = tmp_path / "x.json"
    path.write_text(json.dumps({"rows": []}))
    with pytest.raises(ValueError, match="not a replication result file"):
        rep.ResultStore(path)


def test_only_and_skip_patterns(rep):
    assert rep.selected("main/random/steps=8/seed=0", [], [])
    assert rep.selected("main/random/steps=8/seed=0", ["main/*/steps=8/*"], [])
    assert not rep.selected("main/random/steps=16/seed=0", ["main/*/steps=8/*"], [])
    assert not rep.selected("latency/batch=1", [], ["latency/*"])


@pytest.mark.parametrize("model", ["fmnist-64", "fmnist-256"])
def test_settings_cover_the_issue_with_headline_rows_first(rep, model):
    grid = rep.GRIDS[model]
    n, h = grid.tokens, grid.headline
    settings = rep.settings(rep.SWEEP_SCALES, grid)
    names = [s.name for s in settings]
    assert len(names) == len(set(names))
    required = {rep.gen_name("random", n), rep.gen_name("raster", n)}
    required |= {rep.gen_name(o, k) for o in rep.ORDERS for k in grid.steps}
    required |= {rep.gen_name("locality", h, 0, *t) for t in (rep.PROXIMITY_ONLY, rep.REPULSION_ONLY)}
    required |= {rep.gen_name(o, h, rep.SECOND_SEED) for o in ("locality", "random")}
    assert required <= set(names)
    headline = [names.index(rep.gen_name(o, h)) for o in rep.ORDERS] + [names.index(rep.gen_name("random", n))]
    assert max(headline) < min(names.index(rep.gen_name(o, k)) for o in rep.ORDERS for k in grid.steps if k != h)
    by_name = {s.name: s for s in settings}
    assert all(by_name[rep.gen_name(o, h)].inception for o in rep.ORDERS)
    # every generation row's guidance comes from a sweep at its own step count
    sweeps = {s.steps for s in settings if s.kind == "sweep"}
    assert {s.steps for s in settings if s.kind == "generate"} <= sweeps


def test_list_flag_prints_names_without_running(rep, capsys, tmp_path):
    rep.main(["--list", "--only", "latency/*", "--json", str(tmp_path / "r.json")])
    assert capsys.readouterr().out.split() == [f"latency/batch={b}" for b in rep.LATENCY_BATCHES]
    assert not (tmp_path / "r.json").exists()


@pytest.fixture(scope="module")
def report(rep):
    sys.path.insert(0, str(SCRIPT.parent))
    spec = importlib.util.spec_from_file_location("replicate_report", SCRIPT.parent / "replicate_report.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    yield module
    sys.path.remove(str(SCRIPT.parent))


def test_report_marks_unmeasured_rows_pending_and_plots_measured_ones(rep, report, tmp_path):
    row = {
        "order": "locality",
        "steps": 8,
        "seed": 0,
        "guidance": 4.0,
        "tau": 1.0,
        "rho": 2.0,
        "fd_test": 31.68,
        "fd_train": 31.03,
        "accuracy": 0.9394,
        "fid": 67.92,
        "sec_per_image": 0.0128,
        "elapsed_s": 3600.0,
    }
    data = {"results": {rep.gen_name("locality", 8): row, rep.gen_name("random", 8): {**row, "fd_test": 29.54}}}
    grid = rep.GRIDS["fmnist-64"]
    text = report.tables(data, grid)
    assert "| 8 | locality | 4 | 93.9% | 31.68 | 31.03 | 67.92 | 0.013 |" in text
    assert "| 8 | raster | pending |" in text and "2 settings measured" in text
    assert "| 8 | 4 | 31.68 (93.9%) | 29.54 (93.9%) | pending | pending |" in text
    from PIL import Image

    path = report.quality_plot(data["results"], tmp_path / "q.png", grid)
    with Image.open(path) as img:
        colours = {c for _, c in img.getcolors(maxcolors=1 << 16)}
    assert report.COLOURS[0] in colours and report.COLOURS[1] in colours  # locality and random points drawn
    assert report.speedup_plot(data["results"], tmp_path / "s.png", grid) is None  # no latency rows yet


def test_thresholds_go_with_each_call_and_leave_the_pipeline_defaults_alone(rep):
    """An 8-step grid point must not become the default of the settings that run after it."""
    from types import SimpleNamespace

    import numpy as np

    calls = []

    class FakePipe:
        model = SimpleNamespace(cfg=SimpleNamespace(num_classes=10))
        sampling = SimpleNamespace(tau=1.0, rho=2.0)

        def __call__(self, labels, **kw):
            calls.append(kw)
            return SimpleNamespace(images=np.zeros((len(labels), 4, 4), np.uint8))

    pipe = FakePipe()
    ctx = SimpleNamespace(pipe=pipe, args=SimpleNamespace(batch=10))
    grid_point = rep.gen("locality", 8, tau=1.7, rho=3.0)
    images, labels, _ = rep.sample(ctx, grid_point, 20, 4.0, 1.7, 3.0)
    assert images.shape == (20, 4, 4) and labels.tolist() == [i % 10 for i in range(20)]
    assert [(c["tau"], c["rho"]) for c in calls] == [(1.7, 3.0), (1.7, 3.0)]
    assert (pipe.sampling.tau, pipe.sampling.rho) == (1.0, 2.0)
