"""attention_core: attention mechanisms with swappable backends, for PyTorch only.

The pieces: ``attention`` (functional, backends ``sdpa``/``math``/``flex``/``local``/``linear``),
``MultiHeadAttention`` (adds ``linformer``, grouped-query heads, positions and a ``KVCache``),
Bahdanau and Luong attention, positional encodings, transformer blocks, and attention maps that
work under fused kernels (``capture_attention``, ``attention_rollout``).
"""

from .attention import (
    attention,
    attention_weights,
    causal_mask,
    favor_projection,
    list_backends,
    normalize_mask,
)
from .blocks import (
    DropPath,
    LayerScale,
    Mlp,
    TransformerDecoder,
    TransformerDecoderBlock,
    TransformerEncoder,
    TransformerEncoderBlock,
    drop_path,
)
from .classic import AdditiveAttention, DotProductAttention
from .config import POSITIONS, AttentionConfig, build_position
from .dropout import Dropout, dropout
from .kv_cache import KVCache
from .maps import AttentionMaps, attention_layers, attention_rollout, capture_attention
from .mha import MultiHeadAttention, set_backend
from .positional import (
    ALiBi,
    AttentionPosition,
    LearnedPositionalEncoding,
    RotaryEmbedding,
    RotaryEmbedding2D,
    SinCos2DPositionalEncoding,
    SinusoidalPositionalEncoding,
    alibi_slopes,
    sincos_2d_table,
    sinusoidal_table,
)
from .registry import (
    Backend,
    BackendOption,
    backend_table,
    get_backend,
    register_backend,
    unregister_backend,
)

__version__ = "0.1.0"

__all__ = [
    "POSITIONS",
    "ALiBi",
    "AdditiveAttention",
    "AttentionConfig",
    "AttentionMaps",
    "AttentionPosition",
    "Backend",
    "BackendOption",
    "DotProductAttention",
    "DropPath",
    "Dropout",
    "KVCache",
    "LayerScale",
    "LearnedPositionalEncoding",
    "Mlp",
    "MultiHeadAttention",
    "RotaryEmbedding",
    "RotaryEmbedding2D",
    "SinCos2DPositionalEncoding",
    "SinusoidalPositionalEncoding",
    "TransformerDecoder",
    "TransformerDecoderBlock",
    "TransformerEncoder",
    "TransformerEncoderBlock",
    "alibi_slopes",
    "attention",
    "attention_layers",
    "attention_rollout",
    "attention_weights",
    "backend_table",
    "build_position",
    "capture_attention",
    "causal_mask",
    "drop_path",
    "dropout",
    "favor_projection",
    "get_backend",
    "list_backends",
    "normalize_mask",
    "register_backend",
    "set_backend",
    "sincos_2d_table",
    "sinusoidal_table",
    "unregister_backend",
]
