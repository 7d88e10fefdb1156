"""The forecast benchmark's budget setting (the benchmark itself needs ETTh1 and an hour)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `benchmarks` is a folder of the checkout, not an installed package
    sys.path.insert(0, str(ROOT))

from benchmarks.forecast import DEFAULT_BUDGETS_S, _budgets  # noqa: E402

MODELS = ["patchtst", "itransformer", "dlinear", "dlinear_revin"]


def test_budget_defaults_one_number_and_per_model() -> None:
    assert _budgets("", MODELS) == {m: DEFAULT_BUDGETS_S[m] for m in MODELS}
    assert _budgets("60", MODELS) == dict.fromkeys(MODELS, 60.0)
    per_model = _budgets("patchtst=480, itransformer=240", MODELS)
    assert per_model == {**DEFAULT_BUDGETS_S, "patchtst": 480.0, "itransformer": 240.0}
    # a model named but not selected by ATTNLAB_BENCH_MODELS is not added
    assert _budgets("patchtst=480", ["dlinear"]) == {"dlinear": DEFAULT_BUDGETS_S["dlinear"]}


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("patchtsx=3", "unknown model 'patchtsx'"),
        ("ten", "'ten' is not a positive number of seconds"),
        ("patchtst=", "'' is not a positive number of seconds"),
        ("dlinear=-5", "'-5' is not a positive number of seconds"),
        ("nan", "'nan' is not a positive number of seconds"),
    ],
)
def test_bad_budget_is_one_clear_error(spec: str, message: str) -> None:
    with pytest.raises(SystemExit, match=message):
        _budgets(spec, MODELS)
