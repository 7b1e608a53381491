"""Shared fixtures: tiny LPD configs and paths to the published-fact files in ../shared."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(autouse=True)
def _deterministic_torch():
    """Every test starts from the same global seed and one thread (fast and repeatable on 2 cores)."""
    torch.manual_seed(0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.fail(f"../shared/data not found beside the repository (looked in {SHARED_DATA})")
    return SHARED_DATA


def random_schedule(n: int, gen: torch.Generator) -> list[int]:
    """A random group-size list summing to n, first group 1 (as in the published schedules)."""
    if n == 1:
        return [1]
    cuts = torch.randperm(n - 2, generator=gen)[: int(torch.randint(0, n - 1, (1,), generator=gen))] + 2
    bounds = [0, 1, *sorted(cuts.tolist()), n]
    return [b - a for a, b in zip(bounds[:-1], bounds[1:]) if b > a]


def random_orders(batch: int, n: int, gen: torch.Generator) -> torch.Tensor:
    return torch.stack([torch.randperm(n, generator=gen) for _ in range(batch)])
