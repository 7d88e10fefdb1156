"""The forecasting datasets attnlab knows: where each comes from, its split and its frequency.

``etth1`` and ``ili`` are in the project manifest (``shared/datasets.yaml``) with verified sha256
and download through ``attnlab.datasets.fetch``. The others list their upstream URL; their
``sha256`` stays ``None`` until someone computes it from a verified copy, and until then the
downloader refuses to use the file (a file nobody checked could be anything).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from attnlab.datasets import DownloadError, cache_dir, download, fetch, load_manifest

__all__ = ["DATASETS", "DatasetInfo", "fetch_dataset"]

_ETT = "https://raw.githubusercontent.com/zhouhaoyi/ETDataset/1d16c8f4f943005d613b5bc962e9eeb06058cf07/ETT-small"
# Autoformer's collection (Wu et al., NeurIPS 2021), mirrored on the Hugging Face hub.
_TSLIB = "https://huggingface.co/datasets/thuml/Time-Series-Library/resolve/main"


@dataclass(frozen=True)
class DatasetInfo:
    """One CSV dataset: the file, its folder under the data root, split and calendar facts."""

    name: str
    file: str
    subdir: str
    url: str
    sha256: str | None
    split: str  # "ett_hour", "ett_minute" or "ratio" (7:1:2 by time)
    freq: str
    season: int  # steps per season: the seasonal-naive period and the MASE denominator's lag
    manifest: str | None = None  # name in shared/datasets.yaml, when it is there


DATASETS: dict[str, DatasetInfo] = {
    d.name: d
    for d in (
        DatasetInfo(
            "etth1",
            "ETTh1.csv",
            "ett",
            f"{_ETT}/ETTh1.csv",
            "f18de3ad269cef59bb07b5438d79bb3042d3be49bdeecf01c1cd6d29695ee066",
            "ett_hour",
            "h",
            24,
            manifest="etth1",
        ),
        DatasetInfo("etth2", "ETTh2.csv", "ett", f"{_ETT}/ETTh2.csv", None, "ett_hour", "h", 24),
        DatasetInfo(
            "ettm1", "ETTm1.csv", "ett", f"{_ETT}/ETTm1.csv", None, "ett_minute", "15min", 96
        ),
        DatasetInfo(
            "ettm2", "ETTm2.csv", "ett", f"{_ETT}/ETTm2.csv", None, "ett_minute", "15min", 96
        ),
        DatasetInfo(
            "weather",
            "weather.csv",
            "weather",
            f"{_TSLIB}/weather/weather.csv",
            None,
            "ratio",
            "10min",
            144,
        ),
        DatasetInfo(
            "electricity",
            "electricity.csv",
            "electricity",
            f"{_TSLIB}/electricity/electricity.csv",
            None,
            "ratio",
            "h",
            24,
        ),
        DatasetInfo(
            "exchange",
            "exchange_rate.csv",
            "exchange_rate",
            f"{_TSLIB}/exchange_rate/exchange_rate.csv",
            None,
            "ratio",
            "d",
            1,
        ),
        DatasetInfo(
            "ili",
            "national_illness.csv",
            "ili",
            "https://raw.githubusercontent.com/junwoopark92/Self-Supervised-Contrastive-Forecsating/f394705adbf5217811276f5e59576c6e7ea7586c/dataset/illness/national_illness.csv",
            "8594cecb98c6f2f9dc014eca11c4d5d1e38ad5ce6ed0592d4abe65b146fce395",
            "ratio",
            "w",
            52,
            manifest="ili",
        ),
        DatasetInfo(
            "traffic",
            "traffic.csv",
            "traffic",
            f"{_TSLIB}/traffic/traffic.csv",
            None,
            "ratio",
            "h",
            24,
        ),
    )
}


def fetch_dataset(name: str, folder: Path | None = None, *, progress: bool = True) -> Path:
    """Download dataset ``name`` (verified by sha256) and return the path of its CSV."""
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; the registry lists {sorted(DATASETS)}")
    info = DATASETS[name]
    if info.sha256 is None:
        raise DownloadError(
            f"dataset {name!r} has no verified sha256 yet, so attnlab will not download or trust "
            f"{info.url}; get {info.file} yourself, check it, put it in "
            f"<data root>/{info.subdir}/ and pass --data.root, or add its sha256 to "
            "attnlab_forecasting/registry.py (and shared/datasets.yaml) once verified"
        )
    if info.manifest is not None and folder is None:
        try:
            manifest = load_manifest()
        except FileNotFoundError:
            manifest = None
        if manifest is not None and info.manifest in manifest:
            return fetch(info.manifest, manifest=manifest, progress=progress) / info.file
    target = (folder or cache_dir() / name) / info.file
    return download(info.url, target, info.sha256, progress=progress, dataset=name)
