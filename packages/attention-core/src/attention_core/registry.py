"""The attention backends, one entry each.

A backend is a ``Backend``: its name, the options it takes (with defaults and checks), what it
supports, and one function. ``attention()``, ``MultiHeadAttention``, ``list_backends()`` and the
docs all read this table, so adding a backend is one ``register_backend`` call::

    def my_kernel(q, k, v, *, mask, causal, dropout_p, scale, return_weights, module, **options):
        ...  # q (B, H, Lq, D), k/v (B, H, Lk, D) (key/value heads already expanded)
        return out, None  # out (B, H, Lq, Dv); weights (B, H, Lq, Lk) when return_weights

    register_backend(Backend(name="mine", fn=my_kernel, doc="...", exact=False))

The function receives the mask already checked and broadcastable to (B, H, Lq, Lk) (bool: True =
may attend, or additive float), ``causal`` not folded into it, ``scale`` as a float, and
``module``: the ``MultiHeadAttention`` calling it (None from the functional ``attention``), which
is where a backend with learned parameters or fixed buffers keeps them (created by ``init_module``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any, cast

from torch import Tensor, nn

__all__ = [
    "Backend",
    "BackendFn",
    "BackendOption",
    "backend_table",
    "get_backend",
    "list_backends",
    "register_backend",
    "unregister_backend",
]

MASK_SUPPORT = ("any", "key_padding", "none")


# fn(q, k, v, *, mask, causal, dropout_p, scale, return_weights, module, **options)
#   -> (out (B, H, Lq, Dv), weights (B, H, Lq, Lk) or None); the options are the backend's own
#   keyword arguments, so the signature differs per backend.
BackendFn = Callable[..., tuple[Tensor, Tensor | None]]


@dataclass(frozen=True)
class BackendOption:
    """One option of a backend: ``window`` of ``local``, ``feature_map`` of ``linear``, ..."""

    name: str
    type: type | tuple[type, ...]
    default: Any = None
    doc: str = ""
    required: bool = False
    choices: tuple[Any, ...] | None = None
    minimum: float | None = None
    # Options a model fills in from its own shape (linformer's seq_len), not the user.
    from_model: bool = False

    def check(self, backend: str, value: Any) -> Any:
        if value is None:
            if self.required:
                raise ValueError(f"backend {backend!r} needs {self.name}=<{self.doc or self.name}>")
            return self.default
        kinds = self.type if isinstance(self.type, tuple) else (self.type,)
        if float in kinds and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
            names = "/".join(k.__name__ for k in kinds)
            raise ValueError(
                f"backend {backend!r}: {self.name} must be {names}, got {value!r} "
                f"({type(value).__name__})"
            )
        if self.choices is not None and value not in self.choices:
            raise ValueError(
                f"backend {backend!r}: {self.name}={value!r} is not one of {list(self.choices)}"
            )
        if self.minimum is not None and cast(float, value) < self.minimum:
            raise ValueError(
                f"backend {backend!r}: {self.name} must be >= {self.minimum}, got {value!r}"
            )
        return value


@dataclass(frozen=True)
class Backend:
    """An attention backend and what it supports.

    ``masks``: "any" (bool and additive masks of any shape, so ALiBi biases too),
    "key_padding" (boolean (B, 1, 1, Lk) masks only) or "none". ``learned``: it owns parameters,
    so it runs only inside a module (``MultiHeadAttention``). ``init_module(module, options)``
    creates what the backend keeps on a module and returns the attribute names it created.
    """

    name: str
    fn: BackendFn
    doc: str = ""
    options: tuple[BackendOption, ...] = ()
    exact: bool = True
    causal: bool = True
    masks: str = "any"
    dropout: bool = True
    gqa: bool = True
    kv_cache: bool = True
    cross: bool = True
    export: bool = True
    learned: bool = False
    init_module: Callable[[nn.Module, dict[str, Any]], list[str]] | None = None
    available: Callable[[], bool] = field(default=lambda: True, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.masks not in MASK_SUPPORT:
            raise ValueError(f"backend {self.name!r}: masks must be one of {MASK_SUPPORT}")

    def option(self, name: str) -> BackendOption | None:
        return next((o for o in self.options if o.name == name), None)

    def resolve_options(self, given: Mapping[str, Any]) -> dict[str, Any]:
        """Every option of this backend, checked, with defaults filled in; unknown names refused."""
        known = {o.name for o in self.options}
        extra = sorted(set(given) - known)
        if extra:
            takes = ", ".join(sorted(known)) or "no options"
            raise ValueError(
                f"backend {self.name!r} does not take options {extra} (it takes {takes})"
            )
        return {o.name: o.check(self.name, given.get(o.name)) for o in self.options}

    def capabilities(self) -> dict[str, Any]:
        skip = {"name", "fn", "doc", "options", "init_module", "available"}
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name not in skip}


_REGISTRY: dict[str, Backend] = {}


def register_backend(backend: Backend, *, replace: bool = False) -> Backend:
    """Make ``backend`` available to ``attention``, ``MultiHeadAttention`` and every app."""
    if backend.name == "auto":
        raise ValueError("'auto' is reserved: it means the fused SDPA backend")
    if backend.name in _REGISTRY and not replace:
        raise ValueError(f"backend {backend.name!r} is already registered (pass replace=True)")
    _REGISTRY[backend.name] = backend
    return backend


def unregister_backend(name: str) -> None:
    _REGISTRY.pop(name, None)


def _ensure_builtins() -> None:
    if "sdpa" not in _REGISTRY:
        from . import attention  # noqa: F401  (registers the built-in backends on import)


def list_backends() -> list[str]:
    """Backends usable here, in registration order (``flex`` only where torch ships it)."""
    _ensure_builtins()
    return [name for name, b in _REGISTRY.items() if b.available()]


def get_backend(name: str) -> Backend:
    """The registered backend called ``name`` ("auto" is ``sdpa``); a clear error otherwise."""
    _ensure_builtins()
    key = "sdpa" if name == "auto" else name
    backend = _REGISTRY.get(key)
    if backend is None or not backend.available():
        raise ValueError(f"unknown attention backend {name!r}; choose one of {list_backends()}")
    return backend


def backend_table() -> str:
    """A plain-text table of every backend, its options and what it supports (for ``--help``)."""
    _ensure_builtins()
    lines = []
    for name in list_backends():
        b = _REGISTRY[name]
        caps = b.capabilities()
        flags = ", ".join(
            k.replace("_", " ")
            for k in ("causal", "dropout", "gqa", "kv_cache", "cross", "export", "learned")
            if caps[k]
        )
        opts = ", ".join(
            f"{o.name}"
            + ("" if o.required else f"={o.default!r}")
            + (" (from the model)" if o.from_model else "")
            for o in b.options
            if o.type is not Tensor
        )
        kind = "exact" if b.exact else "approximate"
        lines.append(f"{name:10s} {kind:11s} masks: {b.masks:11s} supports: {flags}")
        if opts:
            lines.append(f"{'':10s} options: {opts}")
        if b.doc:
            lines.append(f"{'':10s} {b.doc}")
    return "\n".join(lines)
