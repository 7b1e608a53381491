"""The sampling settings, defined and validated in one place.

Why a module of its own: the same nine settings (steps, guidance, order, ...) reach the decoding math
from the pipeline, from every sampling command of the CLI, from the demo and from evaluation runs. Each
of those used to spell them out, default them and check them again, and they drifted (a command
defaulting to 20 steps where another used the model's own). Here each setting is one dataclass field
that carries its default, its CLI flag and help text, and its check; the pipeline resolves a call's
settings with :meth:`SamplingConfig.override`, the CLI builds its flags from :func:`dataclasses.fields`
and the decoding loop receives values that were checked once, before the first step.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .orders import ORDER_TYPES, PUBLISHED_RHO, PUBLISHED_TAU
from .sampling import GUIDANCE_SCHEDULES

DEFAULT_STEPS = 20  # the published step count of the 256px models; capped at the token count of smaller ones
AUTO_STEPS = "auto"  # num_inference_steps="auto": adaptive decoding, the model decides (lpdgen.adaptive)
# gamma of adaptive decoding (nats): chosen on the 64-token model with benchmarks/adaptive.py (docs/decoding.md)
DEFAULT_ENTROPY_BOUND = 32.0  # 5.4 passes instead of 8, FD +2 (the table in docs/decoding.md)

# A check takes (value, number of tokens or None) and returns what is wrong with it, or None.
Check = Callable[[Any, "int | None"], "str | None"]


def _steps(v: Any, num_tokens: int | None) -> str | None:
    if v == AUTO_STEPS:
        return None
    if isinstance(v, str) or isinstance(v, bool) or int(v) != v or v < 1 or (num_tokens is not None and v > num_tokens):
        limit = f" (this model has {num_tokens} tokens per image)" if num_tokens is not None else ""
        return f"must be an integer in [1, number of tokens]{limit} or {AUTO_STEPS!r}, got {v!r}"
    return None


def _at_least_zero(meaning: str) -> Check:
    def check(v: Any, _: int | None) -> str | None:
        return None if math.isfinite(v) and v >= 0 else f"must be a finite number >= 0 ({meaning}), got {v}"

    return check


def _one_of(choices: tuple[str, ...]) -> Check:
    def check(v: Any, _: int | None) -> str | None:
        return None if v in choices else f"must be one of {', '.join(choices)}; got {v!r}"

    return check


def _top_k(v: Any, _: int | None) -> str | None:
    return None if not isinstance(v, bool) and int(v) == v and v >= 0 else f"must be an integer >= 0 (0 = off), got {v}"


def _top_p(v: Any, _: int | None) -> str | None:
    return None if 0.0 < v <= 1.0 else f"must be in (0, 1] (1 = off), got {v}"  # also refuses NaN


def setting(
    default: Any,
    check: Check,
    help: str,
    *,
    flag: str,
    aliases: tuple[str, ...] = (),
    metavar: str | None = None,
    choices: tuple[str, ...] | None = None,
    parse: Callable[[str], Any] | None = None,
) -> Any:
    """A :class:`SamplingConfig` field: its default, its check and how the CLI spells it (``parse``: how
    a flag's text becomes a value, when that is not the default's type)."""
    meta = {"check": check, "help": help, "flag": flag, "aliases": aliases, "metavar": metavar, "choices": choices}
    meta["parse"] = parse
    return field(default=default, metadata=meta)


def parse_steps(text: str) -> int | str:
    """``--steps``: an integer, or "auto" for adaptive steps."""
    return AUTO_STEPS if text == AUTO_STEPS else int(text)


@dataclass(frozen=True)
class SamplingConfig:
    """How a model samples unless told otherwise; stored with the model (``pipeline.json``) so that
    ``pipe(labels)`` and ``lpdgen sample`` use the settings its authors measured to work best.
    Constructing one validates it (the step count against the token count: :meth:`validate`)."""

    num_inference_steps: int | str = setting(
        DEFAULT_STEPS,
        _steps,
        "decoding steps = forward passes; fewer is faster, each then places more tokens; "
        "'auto': the model decides, per image, by its own certainty (--entropy-bound)",
        flag="--steps",
        metavar="K",
        parse=parse_steps,
    )
    guidance_scale: float = setting(
        1.0,
        _at_least_zero("1 = no guidance"),
        "classifier-free guidance scale: 1 = none, larger = closer to the class, less varied; "
        "0 <= S < 1 pushes away from the class",
        flag="--guidance-scale",
        aliases=("--cfg",),
        metavar="S",
    )
    guidance_schedule: str = setting(
        GUIDANCE_SCHEDULES[0],
        _one_of(GUIDANCE_SCHEDULES),
        "how guidance grows over the order: linear (weak early, full at the end) or constant",
        flag="--guidance-schedule",
        aliases=("--cfg-schedule",),
        choices=GUIDANCE_SCHEDULES,
    )
    order: str = setting(
        ORDER_TYPES[0],
        _one_of(ORDER_TYPES),
        "generation order of the token positions (locality = the locality-aware order)",
        flag="--order",
        choices=ORDER_TYPES,
    )
    temperature: float = setting(
        1.0,
        _at_least_zero("0 = greedy"),
        "softmax temperature: < 1 sharper, > 1 more varied, 0 = always the most likely code",
        flag="--temperature",
        metavar="T",
    )
    top_k: int = setting(
        0, _top_k, "sample among the N most likely codes only (0 = no limit, 1 = greedy)", flag="--top-k", metavar="N"
    )
    top_p: float = setting(
        1.0,
        _top_p,
        "sample within the smallest set of codes whose probability reaches P (1 = no limit)",
        flag="--top-p",
        metavar="P",
    )
    tau: float = setting(
        PUBLISHED_TAU,
        _at_least_zero("proximity threshold"),
        "locality order: a free position counts as next to the decoded ones when its proximity "
        "(sum of 1/distance to decoded neighbours) is at least this",
        flag="--tau",
    )
    rho: float = setting(
        PUBLISHED_RHO,
        _at_least_zero("< 1 disables the repulsion"),
        "locality order: positions decoded in the same step keep at least this (Chebyshev) distance; "
        "< 1 disables the repulsion",
        flag="--rho",
    )

    entropy_bound: float = setting(
        DEFAULT_ENTROPY_BOUND,
        _at_least_zero("nats; 0 = one token per step"),
        "with --steps auto: a step commits its most certain candidates while the sum of their predictive "
        "entropies, less the largest, stays under G nats; larger = fewer steps",
        flag="--entropy-bound",
        metavar="G",
    )

    def __post_init__(self) -> None:
        self.validate()

    def validate(self, num_tokens: int | None = None) -> SamplingConfig:
        """Raise ``ValueError`` naming the first setting that makes no sense (negative guidance, top-p 0,
        more steps than ``num_tokens`` ...); returns self, so a resolved config reads in one line."""
        check_values(dataclasses.asdict(self), num_tokens)
        return self

    def override(self, num_tokens: int | None = None, **overrides: Any) -> SamplingConfig:
        """These settings with every override that is not None put in, validated against ``num_tokens``.
        Unknown names raise ``TypeError``, as an unknown keyword argument would."""
        unknown = set(overrides) - set(FIELDS)
        if unknown:
            raise TypeError(f"unknown sampling settings {sorted(unknown)}; known: {list(FIELDS)}")
        given = {k: v for k, v in overrides.items() if v is not None}
        check_values(given, num_tokens)  # a bad override is named before it meets the other settings
        return dataclasses.replace(self, **given).validate(num_tokens)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> SamplingConfig:
        unknown = set(d) - set(FIELDS)
        if unknown:
            raise ValueError(f"unknown sampling settings {sorted(unknown)}; known: {list(FIELDS)}")
        return cls(**d)


FIELDS: dict[str, dataclasses.Field] = {f.name: f for f in dataclasses.fields(SamplingConfig)}


def check_values(
    values: Mapping[str, Any], num_tokens: int | None = None, names: Mapping[str, str] | None = None
) -> None:
    """Check the given settings alone (a subset of the fields); the error names a setting as ``names``
    spells it (the CLI passes its flags), else by its field name."""
    for key, value in values.items():
        problem = FIELDS[key].metadata["check"](value, num_tokens)
        if problem is not None:
            raise ValueError(f"{(names or {}).get(key, key)} {problem}")


def check_combination(
    sampling: SamplingConfig,
    given: Mapping[str, Any],
    default_bound: float,
    names: Mapping[str, str] | None = None,
) -> None:
    """Refuse resolved settings that are valid one by one but would not do what they say together: an
    entropy bound given for a fixed step count (ignored there; ``default_bound``, the model's own, passes
    since callers forward whole resolved configs) and adaptive steps in another order than the
    locality-aware rule they draw their cells from. Named as ``names`` spells them (the CLI's flags)."""

    def setting(key: str, value: str) -> str:
        return f"{key}={value!r}" if names is None else f"{names[key]} {value}"

    bound = given.get("entropy_bound")
    if bound is not None and bound != default_bound and sampling.num_inference_steps != AUTO_STEPS:
        what = "entropy_bound" if names is None else names["entropy_bound"]
        raise ValueError(
            f"{what} applies to {setting('num_inference_steps', AUTO_STEPS)} only, "
            f"got {sampling.num_inference_steps} steps"
        )
    if sampling.num_inference_steps == AUTO_STEPS and sampling.order != "locality":
        order = "order" if names is None else names["order"]
        raise ValueError(
            f"{setting('num_inference_steps', AUTO_STEPS)} picks its cells with the locality-aware rule; "
            f"{order} {sampling.order!r} is a fixed order (use {setting('order', 'locality')})"
        )


# Published sampling settings of the released ImageNet models: (config, image size) -> settings.
PUBLISHED_SAMPLING: dict[tuple[str, int], SamplingConfig] = {
    ("lpd-l", 256): SamplingConfig(num_inference_steps=20, guidance_scale=4.8, rho=2.0),
    ("lpd-xl", 256): SamplingConfig(num_inference_steps=20, guidance_scale=4.9, rho=2.0),
    ("lpd-xxl", 256): SamplingConfig(num_inference_steps=20, guidance_scale=5.9, rho=3.0),
    ("lpd-l", 512): SamplingConfig(num_inference_steps=48, guidance_scale=7.3, rho=4.0),
    ("lpd-xl", 512): SamplingConfig(num_inference_steps=48, guidance_scale=6.0, rho=4.0),
}
