"""Dataset files: the manifest, the cache, verified downloads and safe extraction.

* The manifest (``shared/datasets.yaml``) lists every downloadable dataset: name, files with URL,
  sha256 and size, license and citation.
* ``fetch(name)`` puts a dataset's files in ``$ATTNLAB_DATA/<name>`` (default
  ``~/.cache/attnlab``): streamed to a ``.part`` file with a progress bar, resumed with an HTTP
  range request when a partial file is there, checked against its size and sha256 and only then
  renamed, so a partial download is never taken for a complete one.
* Archives are extracted only after every member was checked to land inside the target folder.
* Offline with the files absent, the error names the dataset, the URL and the folder where the
  files can be put by hand.
* ``data_root(...)`` finds real datasets provided locally (``--data.root`` or ``ATTNLAB_DATA_DIR``);
  ``data_root_hint(...)`` says why it found none (the variable's value, the path looked for).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
import tarfile
import time
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .paths import cache_dir, data_root, data_root_hint, shared_dir

__all__ = [
    "Dataset",
    "DatasetFile",
    "DownloadError",
    "cache_dir",
    "data_root",
    "data_root_hint",
    "download",
    "extract",
    "fetch",
    "load_manifest",
    "sha256sum",
]


class DownloadError(RuntimeError):
    """A dataset file could not be obtained or verified; the message says what to do."""


@dataclass(frozen=True)
class DatasetFile:
    name: str
    url: str
    sha256: str
    size: int | None = None
    extract: bool = False


@dataclass(frozen=True)
class Dataset:
    name: str
    files: tuple[DatasetFile, ...]
    license: str = ""
    citation: str = ""
    homepage: str = ""
    description: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def manifest_path() -> Path:
    shared = shared_dir()
    if shared is None or not (shared / "datasets.yaml").is_file():
        raise FileNotFoundError(
            "dataset manifest shared/datasets.yaml not found; set ATTNLAB_SHARED to the project's shared/ folder"
        )
    return shared / "datasets.yaml"


def load_manifest(path: str | Path | None = None) -> dict[str, Dataset]:
    import yaml

    path = Path(path) if path else manifest_path()
    raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    out: dict[str, Dataset] = {}
    for name, entry in (raw.get("datasets") or {}).items():
        files = []
        for f in entry.get("files") or []:
            sha = str(f.get("sha256") or "")
            if len(sha) != 64:
                raise ValueError(
                    f"{path}: dataset {name!r} file {f.get('name')!r} has no valid sha256"
                )
            files.append(
                DatasetFile(
                    name=f["name"],
                    url=f["url"],
                    sha256=sha.lower(),
                    size=f.get("size"),
                    extract=bool(f.get("extract", False)),
                )
            )
        known = {"files", "license", "citation", "homepage", "description"}
        out[name] = Dataset(
            name=name,
            files=tuple(files),
            license=str(entry.get("license", "")),
            citation=str(entry.get("citation", "")),
            homepage=str(entry.get("homepage", "")),
            description=str(entry.get("description", "")),
            extra={k: v for k, v in entry.items() if k not in known},
        )
    return out


def sha256sum(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


class _Progress:
    """A rich bar on a terminal; a few plain lines otherwise."""

    def __init__(self, label: str, total: int | None, enabled: bool):
        self.label, self.total, self.enabled = label, total, enabled
        self.done = 0
        self._bar: Any = None
        self._last = 0.0
        if enabled and sys.stderr.isatty():
            from rich.progress import DownloadColumn, Progress, TransferSpeedColumn

            self._bar = Progress(
                *Progress.get_default_columns(),
                DownloadColumn(),
                TransferSpeedColumn(),
                transient=True,
            )
            self._bar.start()
            self._task = self._bar.add_task(label, total=total)

    def advance(self, n: int) -> None:
        self.done += n
        if self._bar is not None:
            self._bar.update(self._task, advance=n)
        elif self.enabled and time.monotonic() - self._last > 5:
            self._last = time.monotonic()
            total = f"/{self.total / 1e6:.1f}" if self.total else ""
            print(f"{self.label}: {self.done / 1e6:.1f}{total} MB", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()


def download(
    url: str,
    dest: Path,
    sha256: str,
    size: int | None = None,
    *,
    progress: bool = True,
    timeout: float = 60.0,
    dataset: str | None = None,
) -> Path:
    """Download ``url`` to ``dest`` and verify it; returns ``dest``.

    A verified ``dest`` is reused. Bytes arrive in ``dest.part``; an existing ``.part`` is resumed
    with a range request. ``dest`` appears only once size and sha256 match.
    """
    dest = Path(dest)
    label = dataset or dest.name
    if dest.exists():
        if sha256sum(dest) == sha256:
            return dest
        raise DownloadError(
            f"{dest} exists but its sha256 is not the expected {sha256}; delete it to download again"
        )
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    have = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"User-Agent": "attnlab"})
    if have:
        request.add_header("Range", f"bytes={have}-")
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise DownloadError(
            f"cannot download {label} from {url} ({reason}); put {dest.name} (sha256 {sha256}) "
            f"in {dest.parent} by hand and run again"
        ) from None
    with response:
        status = getattr(response, "status", 200)
        mode = "ab" if have and status == 206 else "wb"
        if mode == "wb":
            have = 0
        length = response.headers.get("Content-Length")
        expected_total = size or (int(length) + have if length else None)
        bar = _Progress(f"downloading {label}", expected_total, progress)
        bar.advance(have)
        try:
            with open(part, mode) as fh:
                while True:
                    try:
                        block = response.read(1 << 16)
                    except (OSError, ValueError) as exc:  # connection dropped mid-transfer
                        raise DownloadError(
                            f"download of {label} from {url} was interrupted after {fh.tell()} bytes ({exc}); "
                            f"run again to resume ({part} is kept)"
                        ) from None
                    if not block:
                        break
                    fh.write(block)
                    bar.advance(len(block))
        finally:
            bar.close()
    got = part.stat().st_size
    if expected_total is not None and got < expected_total:
        raise DownloadError(
            f"download of {label} from {url} is incomplete: {got} of {expected_total} bytes; "
            f"run again to resume ({part} is kept)"
        )
    digest = sha256sum(part)
    if digest != sha256:
        part.unlink()
        raise DownloadError(
            f"sha256 mismatch for {label} from {url}: expected {sha256}, got {digest}; the file was "
            "discarded. The source may have changed: check the URL, or put a verified copy in "
            f"{dest.parent}"
        )
    os.replace(part, dest)
    return dest


def _check_inside(target: Path, path: Path, member: str) -> None:
    resolved = path.resolve()
    if not (resolved == target or str(resolved).startswith(str(target) + os.sep)):
        raise DownloadError(
            f"archive member {member!r} points outside {target}; refusing to extract"
        )


def _safe_target(target: Path, member: str) -> Path:
    if os.path.isabs(member):
        raise DownloadError(f"archive member {member!r} has an absolute path; refusing to extract")
    _check_inside(target, target / member, member)
    return target / member


def extract(archive: Path, target: Path) -> Path:
    """Extract a zip or tar archive into ``target`` after checking that no member escapes it."""
    archive, target = Path(archive), Path(target).resolve()
    target.mkdir(parents=True, exist_ok=True)
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf:
            for info in zf.infolist():
                _safe_target(target, info.filename)
                if (info.external_attr >> 16) & 0o170000 == 0o120000:
                    raise DownloadError(
                        f"archive {archive} holds a symlink {info.filename!r}; refusing to extract"
                    )
            zf.extractall(target)
        return target
    if tarfile.is_tarfile(archive):
        with tarfile.open(archive) as tf:
            members = tf.getmembers()
            for m in members:
                _safe_target(target, m.name)
                if m.issym():
                    _check_inside(target, target / Path(m.name).parent / m.linkname, m.name)
                elif m.islnk():
                    _check_inside(target, target / m.linkname, m.name)
                if m.isdev():
                    raise DownloadError(
                        f"archive {archive} holds a device file {m.name!r}; refusing to extract"
                    )
            if hasattr(tarfile, "data_filter"):
                tf.extractall(target, members=members, filter="data")
            else:  # Python < 3.11.4: members were checked above
                tf.extractall(target, members=members)
        return target
    raise DownloadError(f"{archive} is neither a zip nor a tar archive")


def fetch(
    name: str,
    *,
    manifest: dict[str, Dataset] | None = None,
    root: Path | None = None,
    progress: bool = True,
) -> Path:
    """Make sure every file of dataset ``name`` is in its cache folder; return the folder."""
    manifest = manifest if manifest is not None else load_manifest()
    if name not in manifest:
        raise ValueError(f"unknown dataset {name!r}; the manifest lists {sorted(manifest)}")
    entry = manifest[name]
    folder = Path(root or cache_dir()) / name
    for f in entry.files:
        path = download(f.url, folder / f.name, f.sha256, f.size, progress=progress, dataset=name)
        marker = folder / f".{f.name}.extracted"
        if f.extract and not marker.exists():
            staging = folder / f".{f.name}.staging"
            if staging.exists():
                shutil.rmtree(staging)
            extract(path, staging)
            for item in staging.iterdir():
                dest = folder / item.name
                if dest.exists():
                    shutil.rmtree(dest) if dest.is_dir() else dest.unlink()
                item.rename(dest)
            staging.rmdir()
            marker.write_text("ok\n")
    return folder
