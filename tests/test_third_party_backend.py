"""A backend registered from outside attnlab runs in every installed app through the command.

The core's promise: a third-party backend is one ``register_backend`` call, and then
``--model.attention.backend NAME --model.attention.options '{...}'`` selects it in any app.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from attention_core import Backend, BackendOption, attention, register_backend, unregister_backend
from attnlab.app import load_apps
from attnlab.cli import main

CALLS: list[float] = []


def _tempered(q, k, v, *, mask, causal, dropout_p, scale, return_weights, module, temperature):
    """Exact attention with its scores divided by a temperature."""
    CALLS.append(temperature)
    return attention(
        q, k, v, mask=mask, causal=causal, dropout_p=dropout_p, scale=scale / temperature,
        backend="math", return_weights=return_weights,
    ), None  # fmt: skip


@pytest.fixture
def tempered_backend():
    register_backend(
        Backend(
            "tempered",
            _tempered,
            doc="math attention at a temperature (a test backend)",
            options=(BackendOption("temperature", float, 1.0, minimum=1e-3),),
        )
    )
    CALLS.clear()
    yield
    unregister_backend("tempered")


APPS = load_apps()


@pytest.mark.parametrize("name", sorted(APPS))
def test_a_registered_backend_trains_in_every_app(name: str, tempered_backend, tmp_path: Path):
    app = APPS[name]
    # The app's default attention model (the captioner's quick config is an LSTM decoder).
    overrides = app.matrix.overrides if app.matrix is not None else ()
    rc = main(
        [
            name, "fit", "--config", "quick", *overrides,
            "--trainer.fast_dev_run=1",
            "--model.attention.backend", "tempered",
            "--model.attention.options", json.dumps({"temperature": 2.0}),
            "--run_dir", str(tmp_path / "run"),
        ]
    )  # fmt: skip
    assert rc == 0
    assert CALLS and set(CALLS) == {2.0}  # the app's attention ran through it, with its option
