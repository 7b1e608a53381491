"""Generation orders and group-size schedules: what LPD generates at each step, and where.

An *order* is a (B, N) LongTensor of raster indices: row b lists the N = h*w grid cells of image b in
generation order. A *schedule* (group-size list) g_1..g_K says how many of them each step generates.
Both are pure data, so the model, the sampler and the trainer all take them as arguments.

Where each idea lives:

- :mod:`.schedules`: group-size lists (published ones, the cosine rule, validation);
- :mod:`.simple`: raster, random and Halton orders, grid shapes, per-row seeds, order validation and
  order files (.json / .npy);
- :mod:`.reference`: the locality-aware rule as a plain loop, one image at a time - read this one;
- :mod:`.locality`: the same rule vectorised over a batch (what the library runs; tested cell for cell
  against the reference), with the published thresholds :data:`PUBLISHED_TAU` / :data:`PUBLISHED_RHO`;
- :mod:`.build`: :func:`build_orders`, one entry point for every order type;
- :mod:`.draw`: pictures of orders (pillow; imported on demand, not by this package).
"""

from __future__ import annotations

from .build import ORDER_TYPES, build_orders
from .locality import (
    PROXIMITY_EPS,
    PUBLISHED_RHO,
    PUBLISHED_TAU,
    ROW_CHUNK,
    locality_aware,
    tie_break_keys,
    tie_break_rng,
)
from .schedules import (
    STEP_FRACTIONS,
    all_group_sizes,
    cosine_group_sizes,
    group_sizes,
    published_group_sizes,
    validate_group_sizes,
)
from .simple import (
    HALTON_BASES,
    Seeds,
    grid_shape,
    halton,
    known_cells,
    known_first,
    load_orders,
    make_rng,
    random,
    raster,
    row_seeds,
    save_orders,
    validate_orders,
)

__all__ = [
    "HALTON_BASES",
    "ORDER_TYPES",
    "PROXIMITY_EPS",
    "PUBLISHED_RHO",
    "PUBLISHED_TAU",
    "ROW_CHUNK",
    "STEP_FRACTIONS",
    "Seeds",
    "all_group_sizes",
    "build_orders",
    "cosine_group_sizes",
    "grid_shape",
    "group_sizes",
    "halton",
    "known_cells",
    "known_first",
    "load_orders",
    "locality_aware",
    "make_rng",
    "published_group_sizes",
    "random",
    "raster",
    "row_seeds",
    "save_orders",
    "tie_break_keys",
    "tie_break_rng",
    "validate_group_sizes",
    "validate_orders",
]
