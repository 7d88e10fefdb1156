"""Attention maps that work under any backend, and attention rollout.

Fused kernels never materialize the attention matrix, so reading it from a hook is impossible.
``capture_attention`` asks the chosen ``MultiHeadAttention`` layers to recompute their
probabilities from the same queries and keys (without gradients) while the layer itself keeps
running its configured backend: the model's output is unchanged and only captured layers pay.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from .mha import MultiHeadAttention

__all__ = ["AttentionMaps", "attention_layers", "attention_rollout", "capture_attention"]


@dataclass
class AttentionMaps:
    """Captured (B, H, Lq, Lk) probabilities per layer, in model order.

    ``maps[i]`` or ``maps["blocks.3.attn"]`` is that layer's map from the last forward call;
    ``maps.calls(name)`` lists one map per call (decoding steps, say).
    """

    records: dict[str, list[Tensor]] = field(default_factory=dict)

    @property
    def layers(self) -> list[str]:
        return [name for name, maps in self.records.items() if maps]

    def calls(self, name: str) -> list[Tensor]:
        return self.records[name]

    def __len__(self) -> int:
        return len(self.layers)

    def __getitem__(self, key: int | str) -> Tensor:
        name = self.layers[key] if isinstance(key, int) else key
        return self.records[name][-1]

    def __iter__(self) -> Iterator[Tensor]:
        return (self[name] for name in self.layers)

    def clear(self) -> None:
        for maps in self.records.values():
            maps.clear()


def attention_layers(model: nn.Module) -> list[tuple[str, MultiHeadAttention]]:
    """Every ``MultiHeadAttention`` in ``model`` with its qualified name, in model order."""
    return [(n, m) for n, m in model.named_modules() if isinstance(m, MultiHeadAttention)]


@contextmanager
def capture_attention(
    model: nn.Module, layers: Sequence[int | str] | None = None
) -> Iterator[AttentionMaps]:
    """Record attention probabilities of ``layers`` (indices or names; None = all).

    Usage::

        with capture_attention(vit, layers=[-1]) as maps:
            logits = vit(images)
        last = maps[0]  # (B, H, N, N)
    """
    found = attention_layers(model)
    if not found:
        raise ValueError(f"{type(model).__name__} has no MultiHeadAttention layer to capture")
    names = [n for n, _ in found]
    if layers is None:
        chosen = found
    else:
        chosen = []
        for key in layers:
            if isinstance(key, int):
                if not -len(found) <= key < len(found):
                    raise ValueError(f"layer index {key} out of range: model has {len(found)}")
                chosen.append(found[key])
            elif key in names:
                chosen.append(found[names.index(key)])
            else:
                raise ValueError(f"no attention layer named {key!r}; layers are {names}")
    maps = AttentionMaps({n: [] for n, _ in chosen})
    previous = [(m, m._attention_sink) for _, m in chosen]
    try:
        for name, module in chosen:
            module._attention_sink = maps.records[name]
        yield maps
    finally:
        for module, sink in previous:
            module._attention_sink = sink


def attention_rollout(
    maps: AttentionMaps | Sequence[Tensor],
    *,
    head_fusion: str = "mean",
    discard_ratio: float = 0.0,
    residual: bool = True,
) -> Tensor:
    """Attention rollout (Abnar & Zuidema, 2020) through a stack of (B, H, L, L) self-attention maps.

    Heads are fused ("mean", "max" or "min"); the weakest ``discard_ratio`` of each fused map is
    zeroed (never the diagonal); with ``residual`` the identity is added for the skip connection;
    rows are renormalized and the layers multiplied, first layer first. Returns (B, L, L): row i
    is how much each input token flows into output token i.
    """
    tensors = list(maps)
    if not tensors:
        raise ValueError("attention_rollout needs at least one attention map")
    if not 0.0 <= discard_ratio < 1.0:
        raise ValueError(f"discard_ratio must be in [0, 1), got {discard_ratio}")
    result: Tensor | None = None
    for layer, a in enumerate(tensors):
        if a.dim() != 4 or a.shape[-1] != a.shape[-2]:
            raise ValueError(
                f"rollout needs square self-attention maps (B, H, L, L); layer {layer} is "
                f"{tuple(a.shape)}"
            )
        if head_fusion == "mean":
            fused = a.mean(1)
        elif head_fusion == "max":
            fused = a.amax(1)
        elif head_fusion == "min":
            fused = a.amin(1)
        else:
            raise ValueError(f"head_fusion must be 'mean', 'max' or 'min', got {head_fusion!r}")
        fused = fused.float()  # (B, L, L)
        n = fused.shape[-1]
        eye = torch.eye(n, device=fused.device, dtype=fused.dtype)
        if discard_ratio > 0:
            flat = fused.reshape(fused.shape[0], -1)  # (B, L*L)
            k = int(flat.shape[1] * discard_ratio)
            if k > 0:
                idx = flat.topk(k, dim=-1, largest=False).indices
                keep_diag = eye.reshape(-1).bool()
                drop = torch.zeros_like(flat, dtype=torch.bool).scatter_(1, idx, True) & ~keep_diag
                fused = flat.masked_fill(drop, 0.0).reshape_as(fused)
        if residual:
            fused = fused + eye
        fused = fused / fused.sum(-1, keepdim=True).clamp_min(1e-12)
        result = fused if result is None else torch.bmm(fused, result)
    assert result is not None
    return result
