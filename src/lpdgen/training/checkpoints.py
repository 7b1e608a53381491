"""What differs between a saved run's config and the current one (the check before a resume). The
checkpoint files themselves - names, format, reading one safely - are :mod:`lpdgen.runs`, shared with
the commands that sample a run; writing them is the loop's job (atomic,
:class:`lpdgen.training.trainer.Trainer`)."""

from __future__ import annotations


def config_differences(saved: dict, current: dict, ignore: frozenset = frozenset()) -> list[str]:
    """Human-readable ``key: saved -> current`` lines for every differing key not in ``ignore``."""
    keys = sorted((set(saved) | set(current)) - ignore)
    return [f"{k}: {saved.get(k)!r} -> {current.get(k)!r}" for k in keys if saved.get(k) != current.get(k)]
