"""attnlab.options: old option names map onto the shared vocabulary, loudly, never silently."""

from __future__ import annotations

import warnings

import pytest

from attention_core import AttentionConfig
from attnlab.options import attention_from_old_flags, renamed


def test_renamed_takes_the_old_value_with_a_warning() -> None:
    with pytest.warns(FutureWarning, match=r"--model\.arch is deprecated; use --model\.model"):
        assert renamed("arch", "cnn", "model", "ast", "ast") == "cnn"
    # Both names given with the same value: fine (a config and its command line agreeing).
    with pytest.warns(FutureWarning):
        assert renamed("arch", "cnn", "model", "cnn", "ast") == "cnn"


def test_renamed_without_the_old_name_is_silent() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert renamed("arch", None, "model", "cnn", "ast") == "cnn"
        assert renamed("embed_dim", None, "dim", None, None) is None


def test_renamed_refuses_two_different_values() -> None:
    with pytest.warns(FutureWarning), pytest.raises(ValueError) as err:
        renamed("embed_dim", 40, "dim", 48, 96)
    assert str(err.value) == (
        "--model.embed_dim=40 (the old name of --model.dim) and --model.dim=48 disagree; "
        "give only --model.dim"
    )


def test_old_attention_flags_fold_into_the_config() -> None:
    with pytest.warns(FutureWarning) as caught:
        cfg = attention_from_old_flags(
            None, backend="linear", backend_kwargs={"feature_map": "elu", "seq_len": 9}
        )
    # seq_len was linformer's (the model fills it in now): dropped.
    assert (cfg.backend, cfg.feature_map, cfg.options) == ("linear", "elu", {})
    assert [str(w.message).split(" is")[0] for w in caught] == [
        "--model.backend",
        "--model.backend_kwargs",
    ]
    assert attention_from_old_flags(None, backend="auto").backend == "sdpa"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert attention_from_old_flags({"backend": "math"}) == AttentionConfig("math")


def test_old_attention_flag_contradicting_the_new_setting_is_an_error() -> None:
    with pytest.warns(FutureWarning), pytest.raises(ValueError, match="disagree"):
        attention_from_old_flags(AttentionConfig("linear"), backend="math")
