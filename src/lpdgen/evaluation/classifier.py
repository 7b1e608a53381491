"""A small Fashion-MNIST classifier: class accuracy of conditional samples, a fast domain metric
next to FID (Inception features were made for ImageNet photographs, not 28x28 clothing).

The project trains it (:func:`train_classifier`, ``lpdgen eval train-classifier``) and ships the
weights as package data (``assets/fmnist_classifier.safetensors`` + ``.json``, about 0.1 MB).

Input convention: float ``(B, C, H, W)`` in ``[-1, 1]`` or uint8 ``(B, H, W[, C])`` in ``[0, 255]``;
C = 1, or 3 (averaged to gray); 28x28, or 32x32 zero-padded Fashion-MNIST (the centre 28x28 is used).
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from .. import rng
from ..images import uint8_to_float
from ..io import load_state_dict_file, load_strict, read_checkpoint_config, save_checkpoint
from ..utils import get_logger

log = get_logger(__name__)

ASSET = Path(__file__).parent.parent / "assets" / "fmnist_classifier.safetensors"
IMAGE_SIZE = 28
PADDED_SIZE = 32  # the tokenizer's padded Fashion-MNIST
CHECKPOINT_KIND = "FMNISTClassifier"  # what the checkpoint files say they hold (lpdgen.io.save_checkpoint)


@dataclass
class ClassifierConfig:
    """Widths of the three conv stages (each conv3x3-BN-ReLU-maxpool: 28 -> 14 -> 7 -> 3)."""

    channels: tuple[int, int, int] = (16, 32, 64)
    num_classes: int = 10

    def __post_init__(self) -> None:
        self.channels = tuple(int(c) for c in self.channels)  # JSON round trips give lists
        if len(self.channels) != 3 or min(self.channels) < 1 or self.num_classes < 2:
            raise ValueError(
                f"need 3 positive channel widths and >= 2 classes, got {self.channels}, {self.num_classes}"
            )


class FMNISTClassifier(nn.Module):
    """conv stages -> flatten -> linear (no dropout: training draws all randomness from one generator)."""

    def __init__(self, config: ClassifierConfig | None = None):
        super().__init__()
        self.config = config or ClassifierConfig()
        layers, c_in = [], 1
        for c in self.config.channels:
            layers += [nn.Conv2d(c_in, c, 3, padding=1, bias=False), nn.BatchNorm2d(c), nn.ReLU(), nn.MaxPool2d(2)]
            c_in = c
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(c_in * 3 * 3, self.config.num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 1, 28, 28) float in [-1, 1] -> (B, num_classes) logits."""
        return self.head(self.features(x).flatten(1))  # (B, C, 3, 3) -> (B, 9C)

    @torch.no_grad()
    def logits(self, images: torch.Tensor | np.ndarray, batch_size: int = 1000) -> torch.Tensor:
        """Eval-mode logits of images in either input convention (see the module docstring)."""
        self.eval()
        x = to_classifier_input(images)
        device = next(self.parameters()).device
        return torch.cat([self(chunk.to(device)).cpu() for chunk in torch.split(x, batch_size)])

    @torch.no_grad()
    def penultimate(self, images: torch.Tensor | np.ndarray, batch_size: int = 1000) -> np.ndarray:
        """float64 ``(N, 576)`` penultimate features (the flattened last conv stage, the linear head's
        input) of images in either input convention: a Fashion-MNIST-specific space for Frechet
        distances, next to Inception's ImageNet one."""
        self.eval()
        x = to_classifier_input(images)
        device = next(self.parameters()).device
        return (
            torch.cat([self.features(c.to(device)).flatten(1).cpu() for c in torch.split(x, batch_size)])
            .double()
            .numpy()
        )

    def accuracy(self, images: torch.Tensor | np.ndarray, labels: torch.Tensor | np.ndarray) -> float:
        """Fraction of images whose predicted class equals ``labels``."""
        pred = self.logits(images).argmax(1)
        return float((pred == torch.as_tensor(labels, dtype=torch.long)).double().mean())

    def save(self, path: str | os.PathLike, **info) -> Path:
        """``<path>.safetensors`` plus ``<path>.json`` (the project's checkpoint convention, see
        :func:`lpdgen.io.save_checkpoint`; ``info`` is kept in the JSON, e.g. the test accuracy)."""
        return save_checkpoint(self, CHECKPOINT_KIND, asdict(self.config), path, **info)

    @classmethod
    def from_checkpoint(
        cls, path: str | os.PathLike | None = None, device: str | torch.device = "cpu"
    ) -> FMNISTClassifier:
        """Load weights saved by :meth:`save` (default: the shipped asset) strictly, in eval mode."""
        path = Path(path) if path is not None else ASSET
        config = read_checkpoint_config(path, CHECKPOINT_KIND)
        if config is None:
            raise FileNotFoundError(
                f"no classifier config saved with {path} (save() writes it to "
                f"{path.with_suffix('.json').name} and the safetensors metadata)"
            )
        model = cls(ClassifierConfig(**config))
        return load_strict(model, load_state_dict_file(path), what=f"classifier {path.name}").to(device)


def to_classifier_input(images: torch.Tensor | np.ndarray) -> torch.Tensor:
    """Either input convention -> float ``(B, 1, 28, 28)`` in ``[-1, 1]``."""
    if isinstance(images, np.ndarray) and not images.flags.writeable:
        images = images.copy()  # torch warns on read-only arrays (np.load, npz slices)
    x = torch.as_tensor(images)
    if x.dtype == torch.uint8:
        x = uint8_to_float(x)  # (B, H, W[, C]) -> (B, C, H, W)
    if x.ndim != 4 or x.shape[1] not in (1, 3):
        raise ValueError(f"expected images (B, 1|3, H, W) float or (B, H, W[, 1|3]) uint8, got {tuple(x.shape)}")
    x = x.float().mean(dim=1, keepdim=True) if x.shape[1] == 3 else x.float()
    size = tuple(x.shape[-2:])
    if size == (PADDED_SIZE, PADDED_SIZE):
        pad = (PADDED_SIZE - IMAGE_SIZE) // 2
        x = x[..., pad : pad + IMAGE_SIZE, pad : pad + IMAGE_SIZE]
    elif size != (IMAGE_SIZE, IMAGE_SIZE):
        raise ValueError(f"the Fashion-MNIST classifier takes 28x28 or 32x32 (padded) images, got {size[1]}x{size[0]}")
    return x


def train_classifier(
    images: np.ndarray,
    labels: np.ndarray,
    *,
    epochs: int = 4,
    batch_size: int = 128,
    lr: float = 3e-3,
    seed: int = 0,
    config: ClassifierConfig | None = None,
    device: str | torch.device = "cpu",
    progress: bool = True,
) -> FMNISTClassifier:
    """Train on uint8 ``(N, 28, 28)`` images: AdamW with a one-cycle schedule, random horizontal flips
    (clothes are left-right symmetric), label smoothing 0.1. A few CPU minutes give ~92% test accuracy."""
    gen = rng.generator(seed)
    model = FMNISTClassifier(config)
    _init_weights(model, gen)
    model.to(device)
    x_all = to_classifier_input(images)
    y_all = torch.as_tensor(labels, dtype=torch.long)
    steps_per_epoch = (len(x_all) + batch_size - 1) // batch_size
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=epochs * steps_per_epoch)
    model.train()
    for epoch in range(epochs):
        perm = torch.randperm(len(x_all), generator=gen)
        total = 0.0
        for idx in tqdm(torch.split(perm, batch_size), desc=f"epoch {epoch + 1}/{epochs}", disable=not progress):
            x, y = x_all[idx], y_all[idx]
            flip = torch.rand(len(x), generator=gen) < 0.5
            x = torch.where(flip[:, None, None, None], x.flip(-1), x).to(device)
            loss = F.cross_entropy(model(x), y.to(device), label_smoothing=0.1)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item() * len(x)
        log.info("epoch %d: train loss %.4f", epoch + 1, total / len(x_all))
    return model.eval()


def _init_weights(model: nn.Module, gen: torch.Generator) -> None:
    """PyTorch's default conv/linear init (kaiming-uniform, a = sqrt 5), drawn from ``gen``."""
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.kaiming_uniform_(m.weight, a=math.sqrt(5), generator=gen)
            if m.bias is not None:
                bound = 1.0 / math.sqrt(m.weight[0].numel())
                nn.init.uniform_(m.bias, -bound, bound, generator=gen)
