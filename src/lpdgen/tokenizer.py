"""The LlamaGen VQ tokenizer family: conv encoder / decoder around an L2-normalised vector quantizer.

With the default :class:`VQConfig` the module's ``state_dict()`` has exactly the names and shapes of the
published LlamaGen VQ-16 checkpoint (``vq_ds16_c2i.pt``, stored as ``{"model": state_dict}``), so that
file loads unchanged. Smaller members of the family (e.g. the shipped Fashion-MNIST tokenizer) are the
same code with another config.

The file reads bottom-up: normalisation and resampling layers, residual and attention blocks, encoder,
decoder, quantizer, then the tokenizer with its image helpers and the size registry.
Images are float NCHW in [-1, 1]; code grids are (B, h, w) LongTensors in raster order.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .embedded import SHIPPED_TOKENIZERS, tokenizer_weights
from .images import float_to_uint8, uint8_to_float
from .io import PathLike, check_state_dict, load_state_dict_file, load_strict, read_checkpoint_config, save_checkpoint

GROUPNORM_EPS = 1e-6  # LlamaGen's GroupNorm epsilon (taming-transformers heritage)
FMNIST_WEIGHTS = tokenizer_weights("fmnist")  # + vq_fmnist.json (config)
CHECKPOINT_KIND = "VQTokenizer"  # what the checkpoint files say they hold (lpdgen.io.save_checkpoint)


@dataclass
class VQConfig:
    """Size of a tokenizer of the LlamaGen VQ family. Defaults are VQ-16 (``vq_ds16_c2i.pt``)."""

    image_channels: int = 3  # 3 for RGB; 1 for grayscale datasets (half the first/last conv, same net)
    base_channels: int = 128  # channels of the first level; level i has base * channel_mult[i]
    channel_mult: tuple[int, ...] = (1, 1, 2, 2, 4)  # one entry per resolution; len-1 downsamplings
    num_res_blocks: int = 2  # encoder res-blocks per level (the decoder has one more, as in LlamaGen)
    z_channels: int = 256  # encoder output / decoder input width around the 1x1 quant convs
    codebook_size: int = 16384
    codebook_dim: int = 8  # small dim + L2 norm keeps codebook usage high (LlamaGen's finding)
    norm_groups: int = 32  # GroupNorm groups; every level's channel count must divide by it
    usage_window: int = 65536  # rolling record of the most recent training codes (`quantize.codebook_used`)
    image_size: int = 256  # nominal input size, used by helpers and documentation, not by the weights
    dropout: float = 0.0

    def __post_init__(self) -> None:
        self.channel_mult = tuple(int(m) for m in self.channel_mult)
        if not self.channel_mult:
            raise ValueError("VQConfig.channel_mult must have at least one level")
        for m in self.channel_mult:
            if (self.base_channels * m) % self.norm_groups:
                raise ValueError(
                    f"VQConfig: level width {self.base_channels * m} is not divisible by norm_groups={self.norm_groups}"
                )
        if self.image_size % self.downsample:
            raise ValueError(
                f"VQConfig: image_size {self.image_size} is not a multiple of the downsampling {self.downsample}"
            )

    @property
    def downsample(self) -> int:
        """Spatial reduction factor image -> code grid (16 for VQ-16)."""
        return 2 ** (len(self.channel_mult) - 1)

    @property
    def grid(self) -> tuple[int, int]:
        """Code grid (h, w) of a nominal ``image_size`` image."""
        side = self.image_size // self.downsample
        return (side, side)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["channel_mult"] = list(self.channel_mult)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> VQConfig:
        unknown = sorted(set(d) - set(cls.__dataclass_fields__))
        if unknown:
            raise ValueError(f"VQConfig: unknown fields {unknown}")
        return cls(**d)

    @classmethod
    def from_file(cls, path: PathLike) -> VQConfig:
        """The config in a JSON file: a checkpoint's ``<stem>.json`` (see :meth:`VQTokenizer.save`) or a
        bare config object."""
        saved = read_checkpoint_config(Path(path).with_suffix(".json"), CHECKPOINT_KIND)
        if saved is None:
            raise FileNotFoundError(f"tokenizer config not found: {path}")
        return cls.from_dict(saved)

    @classmethod
    def named(cls, name: str) -> VQConfig:
        """A config from :data:`NAMED_CONFIGS` (``vq-16``, ``fmnist``, ``tiny``)."""
        try:
            return cls(**NAMED_CONFIGS[name])
        except KeyError:
            raise ValueError(f"unknown tokenizer config {name!r}; choose one of {sorted(NAMED_CONFIGS)}") from None


NAMED_CONFIGS: dict[str, dict] = {
    "vq-16": {},
    # 28x28 grayscale padded to 32x32 -> 8x8 codes. Sized to train in ~half an hour on 2 CPU cores.
    "fmnist": dict(
        image_channels=1,
        base_channels=16,
        channel_mult=(1, 2, 3),
        num_res_blocks=1,
        z_channels=64,
        codebook_size=512,
        codebook_dim=8,
        norm_groups=8,
        usage_window=8192,
        image_size=32,
    ),
    # 16x16 codes of 2x2-pixel cells: one downsampling, 1,024 entries (chosen by measuring 256 / 1024 / 4096)
    "fmnist-256": dict(
        image_channels=1,
        base_channels=32,
        channel_mult=(1, 2),
        num_res_blocks=1,
        z_channels=32,
        codebook_size=1024,
        codebook_dim=8,
        norm_groups=8,
        usage_window=16384,
        image_size=32,
    ),
    # A few thousand parameters: for unit tests and examples that only need the plumbing.
    "tiny": dict(
        image_channels=1,
        base_channels=8,
        channel_mult=(1, 2),
        num_res_blocks=1,
        z_channels=8,
        codebook_size=32,
        codebook_dim=4,
        norm_groups=4,
        usage_window=256,
        image_size=16,
    ),
}


def swish(x: torch.Tensor) -> torch.Tensor:
    return x * torch.sigmoid(x)


def group_norm(channels: int, groups: int) -> nn.GroupNorm:
    return nn.GroupNorm(num_groups=groups, num_channels=channels, eps=GROUPNORM_EPS, affine=True)


class Downsample(nn.Module):
    """Stride-2 3x3 conv after zero-padding right and bottom by one (LlamaGen / taming)."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, kernel_size=3, stride=2, padding=0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.pad(x, (0, 1, 0, 1), mode="constant", value=0.0))


class Upsample(nn.Module):
    """Nearest-neighbour x2 then a 3x3 conv."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, kernel_size=3, stride=1, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class ResnetBlock(nn.Module):
    """norm-swish-conv twice plus a residual; a 1x1 ``nin_shortcut`` when the width changes."""

    def __init__(self, in_channels: int, out_channels: int, groups: int, dropout: float = 0.0):
        super().__init__()
        self.norm1 = group_norm(in_channels, groups)
        self.conv1 = nn.Conv2d(in_channels, out_channels, kernel_size=3, stride=1, padding=1)
        self.norm2 = group_norm(out_channels, groups)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(out_channels, out_channels, kernel_size=3, stride=1, padding=1)
        self.nin_shortcut = nn.Conv2d(in_channels, out_channels, kernel_size=1) if in_channels != out_channels else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(swish(self.norm1(x)))
        h = self.conv2(self.dropout(swish(self.norm2(h))))
        if self.nin_shortcut is not None:
            x = self.nin_shortcut(x)
        return x + h


class AttnBlock(nn.Module):
    """Single-head self-attention over all spatial positions, with 1x1-conv projections."""

    def __init__(self, channels: int, groups: int):
        super().__init__()
        self.norm = group_norm(channels, groups)
        self.q = nn.Conv2d(channels, channels, kernel_size=1)
        self.k = nn.Conv2d(channels, channels, kernel_size=1)
        self.v = nn.Conv2d(channels, channels, kernel_size=1)
        self.proj_out = nn.Conv2d(channels, channels, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, C, H, W = x.shape
        h = self.norm(x)
        # (B, C, H, W) -> (B, 1, H*W, C): one head over the H*W positions; SDPA's default scale is C**-0.5
        q, k, v = (proj(h).reshape(B, 1, C, H * W).transpose(2, 3) for proj in (self.q, self.k, self.v))
        out = F.scaled_dot_product_attention(q, k, v)
        out = out.transpose(2, 3).reshape(B, C, H, W)  # (B, 1, H*W, C) -> (B, C, H, W)
        return x + self.proj_out(out)


def _level(res: list[nn.Module], attn: list[nn.Module], resample: nn.Module | None, resample_name: str) -> nn.Module:
    """One resolution level: ``res.i``, ``attn.i`` and an optional ``downsample`` / ``upsample`` (checkpoint names)."""
    level = nn.Module()
    level.res = nn.ModuleList(res)
    level.attn = nn.ModuleList(attn)
    if resample is not None:
        setattr(level, resample_name, resample)
    return level


def _run_level(level: nn.Module, h: torch.Tensor) -> torch.Tensor:
    """Res-blocks (each followed by its attention block, at the lowest resolution), then any resampling."""
    for i, res in enumerate(level.res):
        h = res(h)
        if len(level.attn):
            h = level.attn[i](h)
    for name in ("downsample", "upsample"):
        if hasattr(level, name):
            h = getattr(level, name)(h)
    return h


def _middle(channels: int, groups: int, dropout: float) -> nn.ModuleList:
    return nn.ModuleList(
        [
            ResnetBlock(channels, channels, groups, dropout),
            AttnBlock(channels, groups),
            ResnetBlock(channels, channels, groups, dropout),
        ]
    )


class Encoder(nn.Module):
    """Image (B, C_img, H, W) -> features (B, z_channels, H/ds, W/ds). Attention only at the lowest level."""

    def __init__(self, cfg: VQConfig):
        super().__init__()
        g, ch, mult = cfg.norm_groups, cfg.base_channels, cfg.channel_mult
        self.conv_in = nn.Conv2d(cfg.image_channels, ch, kernel_size=3, stride=1, padding=1)
        levels = []
        block_in = ch
        for i, m in enumerate(mult):
            last = i == len(mult) - 1
            res, attn = [], []
            for _ in range(cfg.num_res_blocks):
                res.append(ResnetBlock(block_in, ch * m, g, cfg.dropout))
                block_in = ch * m
                if last:
                    attn.append(AttnBlock(block_in, g))
            levels.append(_level(res, attn, None if last else Downsample(block_in), "downsample"))
        self.conv_blocks = nn.ModuleList(levels)
        self.mid = _middle(block_in, g, cfg.dropout)
        self.norm_out = group_norm(block_in, g)
        self.conv_out = nn.Conv2d(block_in, cfg.z_channels, kernel_size=3, stride=1, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv_in(x)
        for level in self.conv_blocks:
            h = _run_level(level, h)
        for block in self.mid:
            h = block(h)
        return self.conv_out(swish(self.norm_out(h)))


class Decoder(nn.Module):
    """Features (B, z_channels, h, w) -> image (B, C_img, h*ds, w*ds); one more res-block per level than the encoder."""

    def __init__(self, cfg: VQConfig):
        super().__init__()
        g, ch, mult = cfg.norm_groups, cfg.base_channels, cfg.channel_mult
        block_in = ch * mult[-1]
        self.conv_in = nn.Conv2d(cfg.z_channels, block_in, kernel_size=3, stride=1, padding=1)
        self.mid = _middle(block_in, g, cfg.dropout)
        levels = []
        for i in reversed(range(len(mult))):
            first = i == len(mult) - 1  # the lowest resolution, processed first
            res, attn = [], []
            for _ in range(cfg.num_res_blocks + 1):
                res.append(ResnetBlock(block_in, ch * mult[i], g, cfg.dropout))
                block_in = ch * mult[i]
                if first:
                    attn.append(AttnBlock(block_in, g))
            levels.append(_level(res, attn, Upsample(block_in) if i != 0 else None, "upsample"))
        self.conv_blocks = nn.ModuleList(levels)
        self.norm_out = group_norm(block_in, g)
        self.conv_out = nn.Conv2d(block_in, cfg.image_channels, kernel_size=3, stride=1, padding=1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.conv_in(z)
        for block in self.mid:
            h = block(h)
        for level in self.conv_blocks:
            h = _run_level(level, h)
        return self.conv_out(swish(self.norm_out(h)))


@dataclass
class QuantizerOutput:
    """What one quantizer pass returns in training."""

    z: torch.Tensor  # (B, D, h, w) unit-norm encoder features (the candidates for dead-entry restarts)
    z_q: torch.Tensor  # (B, D, h, w) straight-through quantized features (gradients flow to the encoder)
    codes: torch.Tensor  # (B, h, w) codebook indices
    codebook_loss: torch.Tensor  # ||sg(z) - e||^2: moves the entries towards the encoder outputs
    commit_loss: torch.Tensor  # ||z - sg(e)||^2 (unweighted): keeps the encoder near its entries


class VectorQuantizer(nn.Module):
    """L2-normalised codebook: features and entries are unit vectors, so nearest = highest cosine."""

    def __init__(self, cfg: VQConfig):
        super().__init__()
        self.embedding = nn.Embedding(cfg.codebook_size, cfg.codebook_dim)
        nn.init.uniform_(self.embedding.weight, -1.0 / cfg.codebook_size, 1.0 / cfg.codebook_size)
        with torch.no_grad():
            self.embedding.weight.copy_(F.normalize(self.embedding.weight, dim=-1))
        # Rolling window of recent training codes (a float buffer in the published checkpoint); -1 = empty.
        self.register_buffer("codebook_used", torch.full((cfg.usage_window,), -1.0))

    def codebook(self) -> torch.Tensor:
        """(V, D) unit-norm entries."""
        return F.normalize(self.embedding.weight, dim=-1)

    def nearest(self, z: torch.Tensor) -> torch.Tensor:
        """(B, D, h, w) features -> (B, h, w) indices of the cosine-nearest entries."""
        B, D, h, w = z.shape
        flat = z.permute(0, 2, 3, 1).reshape(-1, D)  # (B*h*w, D)
        # argmax cosine == argmin L2 distance between unit vectors; the norm of z does not change the argmax
        return (flat @ self.codebook().t()).argmax(dim=1).view(B, h, w)

    def lookup(self, codes: torch.Tensor) -> torch.Tensor:
        """(B, h, w) indices -> (B, D, h, w) unit-norm entries."""
        if codes.dim() != 3:
            raise ValueError(f"codes must be (B, h, w), got shape {tuple(codes.shape)}")
        if codes.numel() and (int(codes.min()) < 0 or int(codes.max()) >= self.embedding.num_embeddings):
            raise ValueError(
                f"codes must lie in [0, {self.embedding.num_embeddings}), got [{int(codes.min())}, {int(codes.max())}]"
            )
        return self.codebook()[codes].permute(0, 3, 1, 2)  # (B, h, w, D) -> (B, D, h, w)

    def forward(self, z: torch.Tensor) -> QuantizerOutput:
        z = F.normalize(z, dim=1)
        codes = self.nearest(z)
        e = self.lookup(codes)
        codebook_loss = F.mse_loss(e, z.detach())
        commit_loss = F.mse_loss(z, e.detach())
        if self.training:
            self.record_usage(codes)
        return QuantizerOutput(
            z=z, z_q=z + (e - z).detach(), codes=codes, codebook_loss=codebook_loss, commit_loss=commit_loss
        )

    @torch.no_grad()
    def record_usage(self, codes: torch.Tensor) -> None:
        """Shift the newest codes into the rolling ``codebook_used`` window (as LlamaGen does)."""
        new = codes.reshape(-1)[-self.codebook_used.numel() :].to(self.codebook_used.dtype)
        n = new.numel()
        self.codebook_used.copy_(torch.cat([self.codebook_used[n:], new]))

    def recent_usage_counts(self) -> torch.Tensor:
        """(V,) how often each entry occurs in the usage window."""
        used = self.codebook_used[self.codebook_used >= 0].long()
        return torch.bincount(used, minlength=self.embedding.num_embeddings)


class VQTokenizer(nn.Module):
    """Images <-> grids of codebook indices. ``VQTokenizer()`` is LlamaGen VQ-16 with random weights.

    Its ``state_dict`` names are the published ones (``encoder.*``, ``decoder.*``, ``quantize.embedding``,
    ``quantize.codebook_used``, ``quant_conv``, ``post_quant_conv``), so ``load_state_dict`` takes the
    state dict of ``vq_ds16_c2i.pt`` as-is; :meth:`from_checkpoint` does that with strict checks.
    """

    def __init__(self, config: VQConfig | None = None):
        super().__init__()
        self.config = cfg = config if config is not None else VQConfig()
        self.encoder = Encoder(cfg)
        self.decoder = Decoder(cfg)
        self.quantize = VectorQuantizer(cfg)
        self.quant_conv = nn.Conv2d(cfg.z_channels, cfg.codebook_dim, kernel_size=1)
        self.post_quant_conv = nn.Conv2d(cfg.codebook_dim, cfg.z_channels, kernel_size=1)

    @property
    def device(self) -> torch.device:
        return self.quantize.embedding.weight.device

    def _check_images(self, images: torch.Tensor) -> None:
        c, ds = self.config.image_channels, self.config.downsample
        if images.dim() != 4 or images.shape[1] != c:
            raise ValueError(f"images must be (B, {c}, H, W) floats in [-1, 1], got shape {tuple(images.shape)}")
        if images.shape[2] % ds or images.shape[3] % ds:
            raise ValueError(f"image size {tuple(images.shape[2:])} is not a multiple of the downsampling {ds}")

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) images -> (B, D, h, w) pre-quantization features."""
        self._check_images(images)
        return self.quant_conv(self.encoder(images))

    def decode_features(self, z_q: torch.Tensor) -> torch.Tensor:
        """(B, D, h, w) quantized features -> (B, C, H, W) images (not clamped)."""
        return self.decoder(self.post_quant_conv(z_q))

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, QuantizerOutput]:
        """Training pass: (reconstruction, quantizer output with codes and losses)."""
        q = self.quantize(self.features(images))
        return self.decode_features(q.z_q), q

    @torch.no_grad()
    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) float images in [-1, 1] -> (B, H/ds, W/ds) LongTensor codes."""
        return self.quantize.nearest(self.features(images.to(self.device)))

    @torch.no_grad()
    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """(B, h, w) codes (or (B, h*w) with a square grid) -> (B, C, H, W) images, roughly in [-1, 1]."""
        codes = codes.to(self.device)
        if codes.dim() == 2:
            side = int(round(codes.shape[1] ** 0.5))
            if side * side != codes.shape[1]:
                raise ValueError(f"flat codes of length {codes.shape[1]} are not a square grid; pass (B, h, w)")
            codes = codes.view(codes.shape[0], side, side)
        return self.decode_features(self.quantize.lookup(codes.long()))

    # --- uint8 / PIL helpers --------------------------------------------------------------------------

    def encode_uint8(self, images: np.ndarray | torch.Tensor) -> torch.Tensor:
        """(B, H, W) or (B, H, W, C) uint8 images -> (B, h, w) codes."""
        return self.encode(uint8_to_float(images))

    def decode_uint8(self, codes: torch.Tensor) -> np.ndarray:
        """(B, h, w) codes -> (B, H, W, C) uint8 images."""
        return float_to_uint8(self.decode(codes))

    def encode_pil(self, images: Sequence) -> torch.Tensor:
        """A list of same-sized PIL images -> (B, h, w) codes (converted to L or RGB to match the config)."""
        mode = "L" if self.config.image_channels == 1 else "RGB"
        return self.encode_uint8(np.stack([np.asarray(im.convert(mode)) for im in images]))

    def decode_pil(self, codes: torch.Tensor) -> list:
        """(B, h, w) codes -> list of PIL images."""
        from PIL import Image

        arr = self.decode_uint8(codes)
        return [Image.fromarray(a[..., 0] if a.shape[-1] == 1 else a) for a in arr]

    # --- files ----------------------------------------------------------------------------------------

    def save(self, path: PathLike) -> Path:
        """Write ``<path>.safetensors`` and ``<path>.json`` (the project's checkpoint convention, see
        :func:`lpdgen.io.save_checkpoint`) atomically; returns the weights path."""
        return save_checkpoint(self, CHECKPOINT_KIND, self.config.to_dict(), path)

    @classmethod
    def from_checkpoint(
        cls, path: PathLike, config: VQConfig | None = None, *, map_location: str | torch.device = "cpu"
    ) -> VQTokenizer:
        """Load weights strictly (names and shapes must match), in eval mode.

        The config is ``config`` if given, else the one saved with the weights by :meth:`save`. Weights
        without a saved config load only as the published LlamaGen VQ-16 (``vq_ds16_c2i.pt``, a
        ``{"model": state_dict}`` pickle whose config is the default :class:`VQConfig`), checked name by
        name and shape by shape; anything else raises ``ValueError`` asking for ``config``.
        """
        path = Path(path)
        if config is None:
            saved = read_checkpoint_config(path, CHECKPOINT_KIND)
            config = VQConfig.from_dict(saved) if saved is not None else None
        state = load_state_dict_file(path, key="model", map_location=map_location)
        what = f"tokenizer checkpoint {path}"
        if config is None:
            _check_published_vq16(state, path)
            config = VQConfig()
        return load_strict(cls(config), state, what=what)

    @classmethod
    def from_pretrained_fmnist(cls) -> VQTokenizer:
        """The Fashion-MNIST tokenizer trained in this project and shipped as package data
        (1x32x32 padded images -> 8x8 codes, 512 entries; see docs/tokenizer.md)."""
        return cls.from_checkpoint(FMNIST_WEIGHTS)


def _check_published_vq16(state: dict[str, torch.Tensor], path: Path) -> None:
    """Raise ``ValueError`` unless ``state`` (weights without a saved config) has exactly the names and
    shapes of the published VQ-16, the one config a checkpoint may leave unsaid."""
    if path.suffix == ".safetensors":  # the published weights are a pickle; lpdgen's own files carry a config
        raise ValueError(
            f"{path}: no config saved with these weights ({path.with_suffix('.json').name} or the "
            "safetensors metadata); pass config= (a VQConfig, e.g. VQConfig.named('vq-16'))"
        )
    with torch.device("meta"):  # shapes only, no memory
        expected = {k: v.shape for k, v in VQTokenizer(VQConfig()).state_dict().items()}
    try:
        check_state_dict(expected, state, what="the published LlamaGen VQ-16")
    except ValueError as e:
        raise ValueError(
            f"{path}: no config saved with these weights ({path.with_suffix('.json').name}), and "
            f"they are not the published VQ-16 either; pass config= (a VQConfig). {e}"
        ) from None


def load_tokenizer(spec: str, config: VQConfig | None = None) -> VQTokenizer:
    """A shipped tokenizer by name (``"fmnist"`` = ``"fmnist-64"``: 8x8 codes, ``"fmnist-256"``: 16x16 codes);
    anything else -> :meth:`VQTokenizer.from_checkpoint`."""
    if spec in SHIPPED_TOKENIZERS:
        return VQTokenizer.from_checkpoint(tokenizer_weights(spec))
    return VQTokenizer.from_checkpoint(spec, config)


def tokenizer_source(spec: PathLike) -> str:
    """A tokenizer spec as runs and token caches record it: a shipped name as is, a file by its absolute
    path (so that ``lpdgen train`` and ``lpdgen sample`` find it from any folder)."""
    return str(spec) if str(spec) in SHIPPED_TOKENIZERS else str(Path(spec).resolve())


def shipped_tokenizer_for(vocab_size: int, grid: Sequence[int], config: VQConfig | None = None) -> str | None:
    """The name of a shipped tokenizer that a model of ``vocab_size`` codes on a ``grid`` of tokens can
    decode with: the one whose config is ``config`` when that is known (e.g. a token cache's), else the
    first whose codebook is the vocabulary and whose code grid is ``grid``; None when none fits. Read
    from the configs beside the weights: no weights are loaded."""
    seen = set()
    for name, stem in SHIPPED_TOKENIZERS.items():
        if stem in seen:
            continue
        seen.add(stem)
        shipped = VQConfig.from_file(tokenizer_weights(name))
        if config is not None:
            if shipped.to_dict() == config.to_dict():
                return name
        elif shipped.codebook_size == vocab_size and tuple(shipped.grid) == tuple(grid):
            return name
    return None
