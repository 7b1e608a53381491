"""benchmarks/adaptive.py: --fid names are checked before anything loads, and --report prints the Inception rows."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).parents[1] / "benchmarks" / "adaptive.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("adaptive_benchmark", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    yield module
    del sys.modules[spec.name]


def test_unknown_fid_setting_is_one_error_listing_the_known_ones(bench, tmp_path, monkeypatch):
    monkeypatch.setattr(bench.LPDPipeline, "from_pretrained", lambda *a, **k: pytest.fail("loaded a model"))
    with pytest.raises(SystemExit) as e:
        bench.main(["--json", str(tmp_path / "a.json"), "--fid", "auto/16", "auto/7"])
    message = str(e.value)
    assert "unknown setting(s) auto/7;" in message and "fixed/locality/8/seed0" in message
    assert not (tmp_path / "a.json").exists()


def row(passes: float, fd: float) -> dict:
    return dict(mean_steps=passes, accuracy=0.9, fd_test=fd, fd_train=fd - 0.5, seconds_per_image_batch=0.1, batch=10)


def test_report_prints_the_inception_rows(bench, tmp_path, capsys):
    data = {
        "meta": {"model": "fmnist-64", "num": 10},
        "rows": {"fixed/locality/8/seed0": row(8, 30.0), "auto/16": row(8.5, 29.0), "fixed/random/8": row(8, 31.0)},
        "fid": {"auto/16": {**row(8.5, 29.0), "num_fid": 2000, "fid": 78.4321, "fid_recon": 21.8}},
    }
    path = tmp_path / "a.json"
    path.write_text(json.dumps(data))
    bench.main(["--json", str(path), "--report", "--plot", str(tmp_path / "p.png")])
    out = capsys.readouterr().out
    assert "| auto/16 | 2,000 | 8.50 | 0.900 | 29.00 | 78.43 | 21.80 |" in out
    assert (tmp_path / "p.png").stat().st_size > 0
