"""Shared fixtures: deterministic torch, tiny random schedules/orders, and the published-fact files in tests/data."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from lpdgen import LPD, LPDConfig

REPO = Path(__file__).resolve().parents[1]
DATA = Path(__file__).resolve().parent / "data"  # state-dict names and shapes of the published checkpoints
# the tiny decoder of the generation and engine tests: 4x5 = 20 tokens, fast enough to fuzz schedules
TINY_CFG = dict(width=48, depth=3, heads=4, vocab_size=37, num_classes=6, grid=(4, 5))
TINY_N = 20


@pytest.fixture(autouse=True)
def _deterministic_torch():
    """Every test starts from the same global seed and one thread (fast and repeatable on 2 cores)."""
    torch.manual_seed(0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def model() -> LPD:
    """A random :data:`TINY_CFG` model in eval mode (seed 0: the same weights in every test): the
    decoder of the generation, engine, editing and sampling tests."""
    torch.manual_seed(0)
    return LPD(LPDConfig(**TINY_CFG)).eval()


@pytest.fixture(scope="session")
def pipe():
    """The small embedded pipeline (fmnist-64: 32-pixel images, 64 tokens, 8 steps), loaded once per session:
    the fastest real model for tests of behaviour. Tests call it and read it; none changes it (a test that
    needs another pipeline, or the default one, builds its own)."""
    from lpdgen.pipeline import LPDPipeline

    return LPDPipeline.from_pretrained("fmnist-64")


@pytest.fixture
def published_data() -> Path:
    return DATA


def random_schedule(n: int, gen: torch.Generator) -> list[int]:
    """A random group-size list summing to n, first group 1 (as in the published schedules)."""
    if n == 1:
        return [1]
    cuts = torch.randperm(n - 2, generator=gen)[: int(torch.randint(0, n - 1, (1,), generator=gen))] + 2
    bounds = [0, 1, *sorted(cuts.tolist()), n]
    return [b - a for a, b in zip(bounds[:-1], bounds[1:]) if b > a]


def random_orders(batch: int, n: int, gen: torch.Generator) -> torch.Tensor:
    return torch.stack([torch.randperm(n, generator=gen) for _ in range(batch)])
