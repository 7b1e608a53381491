"""The LPD network: a pre-norm ViT decoder over [class, context tokens, position queries].

Reads top to bottom: config and size registry, the KV cache, attention, MLP, block, then the model with
its training forward and the cached decoding step used by :mod:`lpdgen.generation`. Parameter names
equal those of the published checkpoints, so their state dicts load as they are.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.attention.flex_attention import BlockMask, flex_attention

from .io import PathLike, check_state_dict, load_state_dict_file, read_checkpoint_config, save_checkpoint
from .masks import flex_block_mask, training_mask
from .orders import validate_group_sizes, validate_orders
from .quantize import quantize_model
from .sampling import draw_uniform
from .utils import get_logger

log = get_logger(__name__)

LN_EPS = 1e-6  # LayerNorm eps of the published model
INIT_STD = 0.02  # std of the normal init of embeddings, fake_latent, mask_token, pos_embed
TOKENIZER_DOWNSAMPLE = 16  # LlamaGen VQ-16: one token per 16x16 pixels


@dataclass
class LPDConfig:
    """Size of an LPD network. Named sizes come from :meth:`named`; any other values make a free-form
    model (tests, small-scale work). ``grid`` is the (h, w) token grid and need not be square."""

    width: int = 1024  # D
    depth: int = 24
    heads: int = 16  # H; head dim D / H
    vocab_size: int = 16384  # V: LlamaGen VQ-16 codebook
    num_classes: int = 1000  # ImageNet-1k; the null class for CFG is the separate `fake_latent`
    grid: tuple[int, int] = (16, 16)  # 256px / 16
    mlp_ratio: float = 4.0
    dropout: float = 0.1  # after attn.proj and after both MLP layers (training only)
    label_drop: float = 0.1  # per-sample probability of training with the null class
    name: str = "custom"
    num_tokens: int = field(init=False)  # N = h * w

    def __post_init__(self) -> None:
        if isinstance(self.grid, int):
            self.grid = (self.grid, self.grid)
        self.grid = tuple(int(g) for g in self.grid)  # JSON round trips give lists
        if len(self.grid) != 2 or min(self.grid) < 1:
            raise ValueError(f"grid must be (h, w) with h, w >= 1, got {self.grid}")
        for key in ("width", "depth", "heads", "vocab_size", "num_classes"):
            if getattr(self, key) < 1:
                raise ValueError(f"{key} must be >= 1, got {getattr(self, key)}")
        if self.width % self.heads:
            raise ValueError(f"width {self.width} is not divisible by heads {self.heads}")
        if not 0.0 <= self.dropout < 1.0 or not 0.0 <= self.label_drop <= 1.0:
            raise ValueError(f"dropout {self.dropout} / label_drop {self.label_drop} out of range")
        self.num_tokens = self.grid[0] * self.grid[1]

    @property
    def head_dim(self) -> int:
        return self.width // self.heads

    @property
    def hidden_dim(self) -> int:
        return int(self.width * self.mlp_ratio)

    @classmethod
    def named(cls, name: str, image_size: int = 256, **overrides) -> LPDConfig:
        """A published size (``lpd-l``, ``lpd-xl``, ``lpd-xxl``) at 256 or 512 px (16x16 / 32x32 tokens)."""
        if name not in NAMED_CONFIGS:
            raise ValueError(f"unknown config {name!r}; known: {', '.join(NAMED_CONFIGS)}")
        if image_size % TOKENIZER_DOWNSAMPLE or image_size <= 0:
            raise ValueError(f"image_size must be a positive multiple of {TOKENIZER_DOWNSAMPLE}, got {image_size}")
        side = image_size // TOKENIZER_DOWNSAMPLE
        return cls(**{**NAMED_CONFIGS[name], "grid": (side, side), "name": name, **overrides})

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d.pop("num_tokens")
        d["grid"] = list(self.grid)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> LPDConfig:
        known = {f.name for f in dataclasses.fields(cls) if f.init}
        unknown = set(d) - known - {"num_tokens"}
        if unknown:
            raise ValueError(f"unknown LPDConfig fields: {sorted(unknown)}")
        return cls(**{k: v for k, v in d.items() if k in known})


NAMED_CONFIGS: dict[str, dict] = {
    "lpd-l": dict(width=1024, depth=24, heads=16),
    "lpd-xl": dict(width=1280, depth=36, heads=20),
    "lpd-xxl": dict(width=1536, depth=48, heads=24),
}


def count_parameters(cfg: LPDConfig) -> int:
    """Parameter count from the config alone (no allocation), e.g. 337,157,120 for lpd-l at 256px."""
    d, v, n = cfg.width, cfg.vocab_size, cfg.num_tokens
    ln = 2 * d
    block = (
        2 * ln + (3 * d * d + 3 * d) + (d * d + d) + (d * cfg.hidden_dim + cfg.hidden_dim) + (cfg.hidden_dim * d + d)
    )
    embeddings = cfg.num_classes * d + v * d + d + d + (n + 1) * d  # class, token, fake_latent, mask_token, pos
    return embeddings + ln + cfg.depth * block + ln + d * v  # + z_proj_ln, blocks, norm, head


class KVCache:
    """Preallocated keys and values, one (B, H, 1 + N, Dh) tensor per layer each.

    Slot 0 holds the class token, slot t the t-th token in generation order. A decoding step attends over
    a fixed span of slots under a mask that hides the slots not yet written, so its shapes do not depend
    on how far decoding has got (it can be compiled or captured as a CUDA graph), and the buffers can be
    reused across calls (:class:`lpdgen.engine.Engine`). Zero-filled once: hidden slots
    must hold finite numbers, since a masked weight of 0 times NaN would still be NaN. It lives outside
    the model so that generation never mutates the module. Every layer has tensors of its own rather
    than a view into one (depth, ...) buffer: a compiled step then writes whole graph inputs in place,
    where writes into views of one buffer were compiled into two copies of the whole layer per write.
    """

    def __init__(
        self, depth: int, batch: int, heads: int, slots: int, head_dim: int, *, dtype: torch.dtype, device: torch.device
    ):
        shape = (batch, heads, slots, head_dim)
        self.k = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(depth)]
        self.v = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(depth)]

    @property
    def batch(self) -> int:
        return self.k[0].shape[0]

    @property
    def dtype(self) -> torch.dtype:
        return self.k[0].dtype

    @property
    def device(self) -> torch.device:
        return self.k[0].device

    def write(
        self, layer: int, slots: torch.Tensor, k: torch.Tensor, v: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Write k, v (B, H, L, Dh) into the cache slots ``slots`` (L,) (a device tensor, so that the step
        does not depend on a host integer) and return the layer's (B, H, 1 + N, Dh) keys and values.
        ``slots`` (B, L): a row of slots per sequence (adaptive decoding, where rows commit different
        cells); a slot repeated in a row must come with identical k, v (padding rows duplicate a real one)."""
        keys, values = self.k[layer], self.v[layer]
        if slots.dim() == 2:
            index = slots[:, None, :, None].expand_as(k)
            keys.scatter_(2, index, k)
            values.scatter_(2, index, v)
            return keys, values
        keys.index_copy_(2, slots, k)
        values.index_copy_(2, slots, v)
        return keys, values


class Attention(nn.Module):
    """Multi-head self-attention with a fused qkv projection (published layout: qkv viewed as (B, L, 3, H, Dh))."""

    def __init__(self, cfg: LPDConfig):
        super().__init__()
        self.heads = cfg.heads
        self.qkv = nn.Linear(cfg.width, 3 * cfg.width, bias=True)
        self.proj = nn.Linear(cfg.width, cfg.width)
        self.proj_drop = nn.Dropout(cfg.dropout)

    def _qkv(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        b, length, d = x.shape
        qkv = self.qkv(x).view(b, length, 3, self.heads, d // self.heads)  # (B, L, 3, H, Dh)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # 3 x (B, H, L, Dh)
        return q, k, v

    def _out(self, y: torch.Tensor) -> torch.Tensor:
        b, h, length, dh = y.shape
        y = y.transpose(1, 2).reshape(b, length, h * dh)  # (B, H, L, Dh) -> (B, L, D)
        return self.proj_drop(self.proj(y))

    def forward(self, x: torch.Tensor, mask: torch.Tensor | BlockMask) -> torch.Tensor:
        """Full-sequence attention (training / teacher forcing) under a boolean (L, L) mask, or a
        FlexAttention ``BlockMask`` (:func:`lpdgen.masks.flex_block_mask`, for CUDA training)."""
        q, k, v = self._qkv(x)
        if isinstance(mask, BlockMask):
            attend = _compiled_flex_attention() if q.is_cuda else flex_attention  # eager is a slow reference
            return self._out(attend(q, k, v, block_mask=mask))
        return self._out(F.scaled_dot_product_attention(q, k, v, attn_mask=mask))

    def forward_cached(
        self, x: torch.Tensor, cache: KVCache, layer: int, slots: torch.Tensor, mask: torch.Tensor, queries: int | None
    ) -> torch.Tensor:
        """One decoding step: write this block's K/V into cache slots ``slots`` and attend over the first
        S slots under ``mask`` (L, S), or (B, 1, L, S) per sequence. With ``queries`` (the last layer) only the last ``queries`` rows are
        computed: context tokens only ever contribute their K/V."""
        q, k, v = self._qkv(x)
        keys, values = cache.write(layer, slots, k, v)
        span = mask.shape[-1]
        keys, values = keys[:, :, :span], values[:, :, :span]  # (B, H, S, Dh)
        if queries is not None:
            q, mask = q[:, :, -queries:], mask[..., -queries:, :]
        return self._out(F.scaled_dot_product_attention(q, keys, values, attn_mask=mask))


@lru_cache(maxsize=1)
def _compiled_flex_attention():
    """FlexAttention only runs fused kernels when compiled; compile it once per process."""
    return torch.compile(flex_attention, dynamic=False)


class MLP(nn.Module):
    def __init__(self, cfg: LPDConfig):
        super().__init__()
        self.fc1 = nn.Linear(cfg.width, cfg.hidden_dim)
        self.act = nn.GELU()  # exact (erf) GELU, as published
        self.drop1 = nn.Dropout(cfg.dropout)
        self.fc2 = nn.Linear(cfg.hidden_dim, cfg.width)
        self.drop2 = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop2(self.fc2(self.drop1(self.act(self.fc1(x)))))


class Block(nn.Module):
    """Pre-norm transformer block: x + attn(norm1(x)), then x + mlp(norm2(x))."""

    def __init__(self, cfg: LPDConfig):
        super().__init__()
        self.norm1 = nn.LayerNorm(cfg.width, eps=LN_EPS)
        self.attn = Attention(cfg)
        self.norm2 = nn.LayerNorm(cfg.width, eps=LN_EPS)
        self.mlp = MLP(cfg)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x), mask)
        return x + self.mlp(self.norm2(x))

    def forward_cached(
        self, x: torch.Tensor, cache: KVCache, layer: int, slots: torch.Tensor, mask: torch.Tensor, queries: int | None
    ) -> torch.Tensor:
        """Cached step; with ``queries`` only the last ``queries`` rows are kept once their K/V are written."""
        y = self.attn.forward_cached(self.norm1(x), cache, layer, slots, mask, queries)
        if queries is not None:
            x = x[:, -queries:]
        x = x + y
        return x + self.mlp(self.norm2(x))


class LPD(nn.Module):
    """Locality-aware Parallel Decoding network.

    Input tokens (all through ``z_proj_ln``): the class token ``class_emb[y] + pos_embed[0]`` (or
    ``fake_latent`` for the null class), context tokens ``token_emb[c] + pos_embed[1 + p]`` and position
    queries ``mask_token + pos_embed[1 + p]``. Logits are ``head(norm(.))`` of the query outputs.
    """

    def __init__(self, cfg: LPDConfig):
        super().__init__()
        self.cfg = cfg
        d = cfg.width
        self.class_emb = nn.Embedding(cfg.num_classes, d)
        self.token_emb = nn.Embedding(cfg.vocab_size, d)
        # Registration order reproduces the published state-dict order.
        self.fake_latent = nn.Parameter(torch.empty(1, d))  # the null class of classifier-free guidance
        self.pos_embed = nn.Parameter(torch.empty(1, cfg.num_tokens + 1, d))  # slot 0 class, 1 + p raster p
        self.mask_token = nn.Parameter(torch.empty(1, 1, d))  # the one shared position-query embedding
        self.z_proj_ln = nn.LayerNorm(d, eps=LN_EPS)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.depth))
        self.norm = nn.LayerNorm(d, eps=LN_EPS)
        self.head = nn.Linear(d, cfg.vocab_size, bias=False)
        self.gradient_checkpointing = False  # trainers switch these on; they change speed, not results
        self.use_flex_attention = False
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Published init: normal(0.02) embeddings, xavier-uniform Linear weights, zero biases, unit LayerNorms."""
        for p in (self.class_emb.weight, self.token_emb.weight, self.fake_latent, self.mask_token, self.pos_embed):
            nn.init.normal_(p, std=INIT_STD)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    # ----------------------------------------------------------------------------------------------
    # input checks (shapes are never broadcast silently)

    def check_labels(self, labels: torch.Tensor) -> None:
        if labels.dim() != 1 or labels.dtype not in (torch.int32, torch.int64):
            raise ValueError(f"labels must be a 1-D integer tensor (B,), got {tuple(labels.shape)} {labels.dtype}")
        if (
            _host_checked(labels)
            and labels.numel()
            and (int(labels.min()) < 0 or int(labels.max()) >= self.cfg.num_classes)
        ):
            raise ValueError(
                f"labels must lie in [0, {self.cfg.num_classes}), got range [{int(labels.min())}, {int(labels.max())}]"
            )

    def check_schedule(
        self, group_sizes, orders: torch.Tensor | None, batch: int, num_known: int = 0
    ) -> tuple[int, ...]:
        """Validate group sizes and orders against this model's token count; returns sizes as a tuple.
        With ``num_known`` (editing), the first ``num_known`` cells of each order are known and the group
        sizes cover the rest."""
        if not 0 <= num_known < self.cfg.num_tokens:
            raise ValueError(f"num_known must be in [0, {self.cfg.num_tokens}), got {num_known}")
        sizes = tuple(int(g) for g in group_sizes)
        validate_group_sizes(sizes, self.cfg.num_tokens - num_known)
        if orders is not None:
            validate_orders(orders, self.cfg.num_tokens)
            if orders.shape[0] != batch:
                raise ValueError(f"orders has {orders.shape[0]} rows for a batch of {batch}")
        return sizes

    # ----------------------------------------------------------------------------------------------
    # embeddings

    def class_tokens(self, labels: torch.Tensor, null: torch.Tensor | None = None) -> torch.Tensor:
        """(B, 1, D) class tokens before ``z_proj_ln``; rows where ``null`` is True use ``fake_latent``."""
        emb = self.class_emb(labels)  # (B, D)
        if null is not None:
            emb = torch.where(null[:, None], self.fake_latent.to(emb.dtype), emb)
        return (emb + self.pos_embed[0, 0])[:, None]

    def position_embeddings(self, orders: torch.Tensor) -> torch.Tensor:
        """(B, N, D) position embeddings in generation order: row j is ``pos_embed[1 + orders[:, j]]``."""
        return self.pos_embed[0, 1:][orders]

    # ----------------------------------------------------------------------------------------------
    # training forward (teacher forcing)

    def forward_logits(
        self,
        tokens: torch.Tensor,
        labels: torch.Tensor,
        group_sizes,
        orders: torch.Tensor,
        *,
        null: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Per-query logits (B, N, V) of the teacher-forcing forward: row j predicts ``tokens`` at raster
        position ``orders[:, j]``. ``null`` (B,) bool selects the null class per sample; in training mode
        it defaults to a draw with probability ``label_drop`` (from ``generator``)."""
        b, n = self.check_tokens(tokens)
        self.check_labels(labels)
        if labels.shape[0] != b:
            raise ValueError(f"labels has {labels.shape[0]} entries for {b} token rows")
        sizes = self.check_schedule(group_sizes, orders, b)
        if null is None and self.training and self.cfg.label_drop > 0:
            null = draw_uniform((b,), generator, tokens.device) < self.cfg.label_drop

        n_ctx = n - sizes[-1]  # the last group is never context
        pos = self.position_embeddings(orders)  # (B, N, D)
        ordered_tokens = torch.gather(tokens, 1, orders)  # (B, N) codes in generation order
        x = torch.cat(
            [
                self.class_tokens(labels, null),  # (B, 1, D)
                self.token_emb(ordered_tokens[:, :n_ctx]) + pos[:, :n_ctx],  # (B, N - g_K, D)
                self.mask_token + pos,  # (B, N, D) position queries
            ],
            dim=1,
        )
        x = self.z_proj_ln(x)
        mask = flex_block_mask(sizes, x.device) if self.use_flex_attention else training_mask(sizes, device=x.device)
        for block in self.blocks:
            if self.gradient_checkpointing and self.training:
                x = torch.utils.checkpoint.checkpoint(block, x, mask, use_reentrant=False)
            else:
                x = block(x, mask)
        return self.head(self.norm(x[:, 1 + n_ctx :]))  # (B, N, V)

    def forward(
        self,
        tokens: torch.Tensor,
        labels: torch.Tensor,
        group_sizes,
        orders: torch.Tensor | None = None,
        *,
        null: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Mean cross-entropy of every position query against its true token (the training loss).
        ``orders`` default to independent uniform permutations and ``null`` to label drop,
        both drawn from ``generator``."""
        if orders is None:
            self.check_tokens(tokens)
            orders = draw_uniform(tuple(tokens.shape), generator, tokens.device).argsort(dim=1)  # (B, N)
        logits = self.forward_logits(tokens, labels, group_sizes, orders, null=null, generator=generator)
        targets = torch.gather(tokens, 1, orders)  # (B, N) in generation order
        return F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten())

    def check_tokens(self, tokens: torch.Tensor) -> tuple[int, int]:
        """(B, N) raster-order integer codes of this model's vocabulary, else ``ValueError``; returns (B, N).
        Public because the decoding loop checks its teacher-forced and known tokens with it."""
        if tokens.dim() != 2 or tokens.shape[1] != self.cfg.num_tokens:
            raise ValueError(f"tokens must be (B, {self.cfg.num_tokens}) raster-order codes, got {tuple(tokens.shape)}")
        if tokens.dtype not in (torch.int32, torch.int64):
            raise ValueError(f"tokens must be integer codes, got {tokens.dtype}")
        if (
            _host_checked(tokens)
            and tokens.numel()
            and (int(tokens.min()) < 0 or int(tokens.max()) >= self.cfg.vocab_size)
        ):
            raise ValueError(f"token codes must lie in [0, {self.cfg.vocab_size})")
        return tokens.shape[0], tokens.shape[1]

    # ----------------------------------------------------------------------------------------------
    # cached decoding; the loop lives in lpdgen.generation

    def cache_dtype(self, device: torch.device) -> torch.dtype:
        """dtype of decoding's K/V: the autocast dtype when autocast is on, else that of the weights."""
        if torch.is_autocast_enabled(device.type):
            return torch.get_autocast_dtype(device.type)
        return self.pos_embed.dtype

    def new_cache(self, batch: int, device: torch.device, dtype: torch.dtype | None = None) -> KVCache:
        """A zero-filled KV cache for ``batch`` sequences (dtype: :meth:`cache_dtype` unless given)."""
        c = self.cfg
        dtype = self.cache_dtype(device) if dtype is None else dtype
        return KVCache(c.depth, batch, c.heads, c.num_tokens + 1, c.head_dim, dtype=dtype, device=device)

    def decode_step(
        self, context: torch.Tensor, queries_pos: torch.Tensor, cache: KVCache, slots: torch.Tensor, mask: torch.Tensor
    ) -> torch.Tensor:
        """One forward pass of decoding: ``context`` (B, c, D) embedded context tokens (the class token at
        step 1) and ``queries_pos`` (B, g, D) position embeddings of this step's targets, written into cache
        slots ``slots`` (c + g,). ``mask`` (c + g, S) says which of the first S slots each row sees
        (:func:`lpdgen.masks.decode_plan`). Returns the logits (B, g, V) of the queries. Shapes
        depend on (c, g, S) only, never on the step index."""
        g = queries_pos.shape[1]
        x = self.z_proj_ln(torch.cat([context, self.mask_token + queries_pos], dim=1))  # (B, c + g, D)
        last = len(self.blocks) - 1
        for i, block in enumerate(self.blocks):
            x = block.forward_cached(x, cache, i, slots, mask, g if i == last else None)
        return self.head(self.norm(x))  # (B, g, V): only query rows survive the last layer

    def embed_context(self, codes: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        """(B, n, D) context tokens from codes (B, n) and their position embeddings (B, n, D)."""
        return self.token_emb(codes) + pos

    def quantize(self, mode: str = "int8") -> LPD:
        """Quantize the Linear layers in place for inference and return the model: ``"int8"`` (CPU, int8
        weights and activations), ``"int8-weight"`` / ``"int4-weight"`` (GPU, needs torchao). See
        :func:`lpdgen.quantize.quantize_model`. A quantized model decodes but cannot be trained or saved."""
        return quantize_model(self, mode)

    # ----------------------------------------------------------------------------------------------
    # checkpoints

    def save(self, path: PathLike, **info: Any) -> Path:
        """Write ``<path>.safetensors`` with the weights and ``<path>.json`` with the config (atomically;
        the project's checkpoint convention, :func:`lpdgen.io.save_checkpoint`); ``info`` goes into the
        JSON too (a training run records its tokenizer and sampling settings there, :mod:`lpdgen.runs`)."""
        if getattr(self, "quantized", None):
            raise ValueError(
                f"cannot save a {self.quantized}-quantized model: save the fp32 weights and quantize after loading"
            )
        return save_checkpoint(self, "LPD", self.cfg.to_dict(), path, **info)

    @classmethod
    def from_checkpoint(
        cls,
        path: PathLike,
        config: LPDConfig | str | None = None,
        *,
        image_size: int = 256,
        device: torch.device | str = "cpu",
    ) -> LPD:
        """Load weights from a published checkpoint (``{"model": state_dict}``), a bare state dict or a
        ``.safetensors`` file saved by :meth:`save`.

        ``config``: an :class:`LPDConfig`, a config name (with ``image_size``), or None to read the JSON
        config saved beside the weights (published checkpoints carry none: pass the name). A checkpoint
        whose ``pos_embed`` has a different square grid is resized bicubically (the class slot is kept),
        e.g. 256px weights into a 512px model. Any other mismatch raises one ValueError listing the keys.
        """
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"checkpoint not found: {path}")
        if isinstance(config, str):
            config = LPDConfig.named(config, image_size=image_size)
        elif config is None:
            config = _read_saved_config(path)
        state = load_state_dict_file(path, map_location="cpu")
        with torch.device("meta"):
            model = cls(config)
        expected = {k: v.shape for k, v in model.state_dict().items()}
        if "pos_embed" in state and state["pos_embed"].shape != expected["pos_embed"]:
            state["pos_embed"] = resize_pos_embed(state["pos_embed"], config.grid)
        check_state_dict(expected, state, what=f"checkpoint {path.name}")
        model.load_state_dict(state, strict=True, assign=True)
        return model.to(device).eval()


def _host_checked(t: torch.Tensor) -> bool:
    """Whether to range-check ``t`` on the host. Not on CUDA: the check would stall every training step,
    and an out-of-range index there is a device-side assert anyway (loud, never a silent wrong result)."""
    return t.device.type != "cuda"


def _read_saved_config(path: Path) -> LPDConfig:
    """Config of a checkpoint written by :meth:`LPD.save`: the JSON beside it, else safetensors metadata."""
    saved = read_checkpoint_config(path, "LPD")
    if saved is not None:
        return LPDConfig.from_dict(saved)
    raise ValueError(
        f"{path}: no config found beside the weights; pass config= (an LPDConfig or a name such as 'lpd-l')"
    )


def resize_pos_embed(pos_embed: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """Resize (1, 1 + h*w, D) position embeddings from a square grid to ``grid`` bicubically, keeping
    the class slot - how the paper fine-tunes 512px models from 256px ones."""
    if pos_embed.dim() != 3 or pos_embed.shape[0] != 1:
        raise ValueError(f"pos_embed must be (1, 1 + N, D), got {tuple(pos_embed.shape)}")
    n_old = pos_embed.shape[1] - 1
    side = math.isqrt(n_old)
    if side * side != n_old:
        raise ValueError(f"cannot resize pos_embed of {n_old} positions: not a square grid")
    cls_slot, grid_pos = pos_embed[:, :1], pos_embed[:, 1:]
    d = pos_embed.shape[-1]
    img = grid_pos.reshape(1, side, side, d).permute(0, 3, 1, 2).float()  # (1, D, h, w)
    img = F.interpolate(img, size=tuple(grid), mode="bicubic", align_corners=False)
    resized = img.permute(0, 2, 3, 1).reshape(1, grid[0] * grid[1], d).to(pos_embed.dtype)  # (1, N', D)
    log.info("resized pos_embed from %dx%d to %dx%d (bicubic, class slot kept)", side, side, *grid)
    return torch.cat([cls_slot, resized], dim=1)
