"""Class names <-> class ids, so that people can ask for "sneaker" or "golden retriever".

A model knows its classes by id; the names travel with it (the embedded Fashion-MNIST model carries its
10 names, published ImageNet models get the 1,000 ImageNet names shipped here). A name matches a class
when it equals, ignoring case, the class's name or one of its comma-separated synonyms
("lesser panda, red panda, panda, ..."); an unknown name is an error that suggests close names.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Sequence
from functools import lru_cache
from importlib import resources

import torch


@lru_cache(maxsize=1)
def imagenet_class_names() -> tuple[str, ...]:
    """The 1,000 ImageNet-1k class names in id order (WordNet synonyms, comma-separated)."""
    data = json.loads((resources.files("lpdgen") / "assets" / "imagenet_classes.json").read_text())
    return tuple(data["names"])


def default_class_names(num_classes: int) -> tuple[str, ...] | None:
    """Names for a model that carries none: ImageNet's for 1,000 classes, else None (ids only)."""
    return imagenet_class_names() if num_classes == 1000 else None


def short_name(name: str) -> str:
    """The first synonym: what a picture's label shows ("lesser panda, red panda, ..." -> "lesser panda")."""
    return name.split(",")[0].strip()


def _synonyms(name: str) -> list[str]:
    return [s.strip().lower() for s in name.split(",") if s.strip()]


def class_id(label: int | str, num_classes: int, names: Sequence[str] | None = None) -> int:
    """One label (an id, a string of digits, or a class name) as a class id in ``[0, num_classes)``."""
    if isinstance(label, bool):
        raise ValueError(f"class label must be an id or a name, got {label!r}")
    if isinstance(label, str) and label.strip().lstrip("-").isdigit():
        label = int(label)
    if isinstance(label, int):
        if not 0 <= label < num_classes:
            raise ValueError(f"class id {label} is out of range: this model has classes 0..{num_classes - 1}")
        return label
    if not isinstance(label, str):
        raise ValueError(f"class label must be an id or a name, got {type(label).__name__}")
    if not names:
        raise ValueError(f"class name {label!r} given, but this model has no class names: use ids 0..{num_classes - 1}")
    wanted = label.strip().lower()
    index: dict[str, int] = {}
    for i, name in enumerate(names):
        for syn in [name.strip().lower(), *_synonyms(name)]:
            index.setdefault(syn, i)
    if wanted in index:
        return index[wanted]
    close = _suggestions(wanted, list(index))
    hint = (
        f"; did you mean {', '.join(repr(c) for c in close)}?"
        if close
        else f"; known: {', '.join(short_name(n) for n in names[:12])}{' ...' if len(names) > 12 else ''}"
    )
    raise ValueError(f"unknown class name {label!r}{hint}")


def _suggestions(wanted: str, known: list[str], n: int = 3) -> list[str]:
    """Known names close to ``wanted``: first those that contain it as a word ("boot" -> "ankle boot",
    which spelling similarity alone misses: the strings differ too much in length), then near spellings
    ("snaker" -> "sneaker")."""
    words = [k for k in known if "," not in k and wanted in k.replace("/", " ").replace("-", " ").split()]
    close = difflib.get_close_matches(wanted, known, n=n, cutoff=0.6)
    return list(dict.fromkeys(words + close))[:n]


def class_ids(
    labels: Sequence[int | str] | torch.Tensor | int | str, num_classes: int, names: Sequence[str] | None = None
) -> list[int]:
    """Labels (ids, names or a tensor of ids) as a list of class ids, each checked against the model."""
    if isinstance(labels, torch.Tensor):
        labels = labels.reshape(-1).tolist()
    elif isinstance(labels, (int, str)):
        labels = [labels]
    return [class_id(lab, num_classes, names) for lab in labels]
