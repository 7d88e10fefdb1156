"""``AttentionConfig``: the one attention setting every block and every app takes.

A dataclass, so LightningCLI turns it into ``--model.attention.backend local
--model.attention.window 16 --model.attention.pos rope`` in every app alike, and ``--print_config``
shows it as one block. It holds the backend's name, the options of the built-in backends as
typed fields (``options`` carries those of a registered third-party backend), the position
scheme and the global tokens. Invalid combinations fail when the config is made, or when a model
checks it against what it is (causal, a 2-D grid, cross-attention), with one line saying why.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from torch import nn

from .positional import (
    ALiBi,
    AttentionPosition,
    LearnedPositionalEncoding,
    RotaryEmbedding,
    RotaryEmbedding2D,
    SinCos2DPositionalEncoding,
    SinusoidalPositionalEncoding,
)
from .registry import get_backend

__all__ = ["POSITIONS", "AttentionConfig", "build_position"]

POSITIONS = ("none", "learned", "sincos", "sincos2d", "rope", "rope2d", "alibi")
# Positions applied inside attention (AttentionPosition), the rest are added to the embeddings.
IN_ATTENTION_POSITIONS = ("rope", "rope2d", "alibi")
GRID_POSITIONS = ("sincos2d", "rope2d")

# Typed fields that are options of the built-in backends.
_OPTION_FIELDS = (
    "window",
    "block_size",
    "global_tokens",
    "feature_map",
    "num_features",
    "chunk_size",
    "proj_dim",
)


@dataclass
class AttentionConfig:
    """Which attention a model runs, and how.

    Args:
        backend: any name of ``list_backends()`` (``sdpa``, ``math``, ``flex``, ``local``,
            ``linear``, ``linformer``, or one registered with ``register_backend``).
        window: ``local``: keys on each side of a query (required for ``local``).
        block_size: ``local``: queries per block.
        global_tokens: ``local``: the first positions that attend to, and are attended by,
            every position (Longformer). None: the model's choice (its class token).
        feature_map: ``linear``: ``elu`` or ``favor`` (Performer random features).
        num_features: ``linear`` with ``favor``: random features (default 4 x head_dim).
        chunk_size: ``linear``: causal chunk length.
        proj_dim: ``linformer``: projected sequence length (default min(64, seq_len)).
        pos: ``none``, ``learned``, ``sincos``, ``sincos2d``, ``rope``, ``rope2d`` or ``alibi``.
            None: the model's default.
        options: options of a third-party backend, by name.
    """

    backend: str = "sdpa"
    window: int | None = None
    block_size: int | None = None
    global_tokens: int | None = None
    feature_map: str | None = None
    num_features: int | None = None
    chunk_size: int | None = None
    proj_dim: int | None = None
    pos: str | None = None
    options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        spec = get_backend(self.backend)
        if self.pos is not None and self.pos not in POSITIONS:
            raise ValueError(f"attention pos {self.pos!r} is not one of {list(POSITIONS)}")
        given = self._given_options()
        takes = {o.name for o in spec.options}
        wrong = sorted(set(given) - takes)
        if wrong:
            if wrong == ["global_tokens"]:
                raise ValueError(
                    f"global_tokens={self.global_tokens} applies to backends that restrict who "
                    f"attends to whom (local); {self.backend!r} already attends globally"
                )
            raise ValueError(
                f"attention backend {self.backend!r} does not take {wrong} "
                f"(it takes {sorted(takes) or 'no options'})"
            )
        # Check values and required options now, except those the model fills in (seq_len).
        model_filled = {o.name: 1 for o in spec.options if o.from_model}
        spec.resolve_options({**model_filled, **given})

    # ------------------------------------------------------------------ reading
    def _given_options(self) -> dict[str, Any]:
        given = {name: getattr(self, name) for name in _OPTION_FIELDS}
        given = {k: v for k, v in given.items() if v is not None}
        return {**given, **dict(self.options or {})}

    def backend_options(self, **from_model: Any) -> dict[str, Any]:
        """The options to pass the backend: those set here, plus what the model knows (e.g.
        ``seq_len`` for ``linformer``) for the options the backend takes from the model."""
        spec = get_backend(self.backend)
        options = self._given_options()
        for o in spec.options:
            if o.from_model and o.name not in options and from_model.get(o.name) is not None:
                options[o.name] = from_model[o.name]
        spec.resolve_options(options)
        return options

    @property
    def exact(self) -> bool:
        return get_backend(self.backend).exact

    def takes(self, option: str) -> bool:
        return get_backend(self.backend).option(option) is not None

    # ------------------------------------------------------------------ defaults and checks
    def resolved(self, *, pos: str, global_tokens: int = 0) -> AttentionConfig:
        """This config with the model's defaults filled in: its position scheme, and (for a
        backend with global tokens) how many leading tokens are global, e.g. a class token."""
        return replace(
            self,
            pos=self.pos if self.pos is not None else pos,
            global_tokens=(
                self.global_tokens
                if self.global_tokens is not None or not self.takes("global_tokens")
                else global_tokens
            ),
        )

    def check(
        self,
        *,
        where: str = "attention",
        causal: bool = False,
        grid: bool = False,
        kv_cache: bool = False,
        positions: Iterable[str] | None = None,
    ) -> AttentionConfig:
        """Refuse what this backend or position cannot do in a model of this kind.

        ``where`` names the attention in the message (``decoder self-attention``); ``causal``,
        ``grid`` (tokens on a 2-D grid) and ``kv_cache`` say what the model is; ``positions``
        lists the schemes the model can apply. Returns self, for chaining.
        """
        spec = get_backend(self.backend)
        if causal and not spec.causal:
            raise ValueError(
                f"{where}: backend {self.backend!r} cannot be causal (it mixes every position, "
                "so future tokens would leak); use sdpa, math, local or linear"
            )
        if kv_cache and not spec.kv_cache:
            raise ValueError(
                f"{where}: backend {self.backend!r} has no KV cache for incremental decoding; "
                "use sdpa, math, local or linear"
            )
        pos = self.pos
        if pos is None:
            return self
        if positions is not None and pos not in tuple(positions):
            raise ValueError(
                f"{where}: pos {pos!r} is not available here; choose one of {list(positions)}"
            )
        if pos == "alibi" and grid:
            raise ValueError(
                f"{where}: pos 'alibi' biases by 1-D distance, which a 2-D grid of tokens does "
                "not have; use rope2d or sincos2d"
            )
        if pos in GRID_POSITIONS and not grid:
            raise ValueError(
                f"{where}: pos {pos!r} needs tokens on a 2-D grid; use rope, alibi or sincos"
            )
        if pos == "alibi" and spec.masks != "any":
            raise ValueError(
                f"{where}: pos 'alibi' is an additive bias on the scores, which backend "
                f"{self.backend!r} cannot apply; use rope or a learned/sincos table"
            )
        return self

    # ------------------------------------------------------------------ conversions
    def to_dict(self) -> dict[str, Any]:
        """Plain data, for hyper-parameters and checkpoints (loaded weights-only)."""
        return asdict(self)

    @classmethod
    def coerce(cls, value: AttentionConfig | Mapping[str, Any] | str | None) -> AttentionConfig:
        """An ``AttentionConfig`` from itself, a dict (a checkpoint's hyper-parameters), a
        backend name, or None (the default)."""
        if value is None:
            return cls()
        if isinstance(value, cls):
            return value
        if isinstance(value, str):
            return cls(backend=value)
        if isinstance(value, Mapping):
            names = {f.name for f in fields(cls)}
            unknown = sorted(set(value) - names)
            if unknown:
                raise ValueError(
                    f"attention settings {unknown} are unknown; known: {sorted(names)}"
                )
            return cls(**dict(value))
        raise ValueError(f"attention must be an AttentionConfig, a dict or a name, got {value!r}")


def build_position(
    pos: str,
    *,
    dim: int,
    num_heads: int,
    max_len: int | None = None,
    grid: tuple[int, int] | None = None,
    num_prefix_tokens: int = 0,
) -> tuple[nn.Module | None, AttentionPosition | None]:
    """(module added to the embeddings, position applied inside attention) for ``pos``.

    ``max_len`` bounds 1-D tables; ``grid`` is the (H, W) token grid of images and
    spectrograms, after ``num_prefix_tokens`` (class tokens) that get no 2-D position.
    """
    if pos not in POSITIONS:
        raise ValueError(f"pos {pos!r} is not one of {list(POSITIONS)}")
    head_dim = dim // num_heads
    if pos in GRID_POSITIONS and grid is None:
        raise ValueError(f"pos {pos!r} needs a 2-D token grid")
    if pos in ("learned", "sincos") and not max_len:
        raise ValueError(f"pos {pos!r} needs max_len, the longest sequence")
    if pos == "none":
        return None, None
    if pos == "learned":
        return LearnedPositionalEncoding(dim, int(max_len or 0)), None
    if pos == "sincos":
        return SinusoidalPositionalEncoding(dim, int(max_len or 0)), None
    if pos == "sincos2d":
        assert grid is not None
        return SinCos2DPositionalEncoding(dim, grid, num_prefix_tokens), None
    if pos == "rope":
        return None, RotaryEmbedding(head_dim)
    if pos == "rope2d":
        assert grid is not None
        return None, RotaryEmbedding2D(head_dim, grid, num_prefix_tokens)
    if grid is not None:
        raise ValueError("pos 'alibi' biases by 1-D distance; a 2-D grid needs rope2d or sincos2d")
    return None, ALiBi(num_heads)
