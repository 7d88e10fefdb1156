"""attention_core tests run on tiny tensors: one intra-op thread is faster than two.

On a loaded 2-core machine OpenMP's spin-waiting makes small LAPACK and matmul calls several
times slower with two threads, so the core tests pin torch to one and restore it afterwards.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_torch_thread() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)
