"""Decompression bombs and lying headers in the image readers: refused from their headers, in
one line naming the file, before anything near their claimed size is allocated.

Bombs are generated cheaply: megabytes of zeros streamed through deflate in 1 MiB chunks (a
zip member or a gzip that inflates ~1000:1). ``tracemalloc`` measures what the reader allocated
(numpy and Python buffers both report to it), so the assertion is on bytes, not time.
"""

from __future__ import annotations

import gzip
import struct
import tracemalloc
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from attnlab_vit import readers
from attnlab_vit.data import ImageData, read_idx, scan_image_folder

from attnlab.cli import main

from .conftest import make_idx_folder, make_image_folder

MIB = 1 << 20
ZEROS = bytes(MIB)


def zip_with_bomb(path: Path, member: str, mebibytes: int) -> Path:
    """Valid class folders plus ``member``: ``mebibytes`` MiB of zeros, deflated (~1 KiB/MiB)."""
    folder = make_image_folder(path.parent / "pics", per_class=2, size=8)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for image in sorted(folder.rglob("*.png")):
            zf.write(image, f"set/{image.relative_to(folder)}")
        with zf.open(member, "w") as fh:
            for _ in range(mebibytes):
                fh.write(ZEROS)
    return path


def idx_gz_bomb(path: Path, dims: tuple[int, ...], payload_mebibytes: int) -> Path:
    """An IDX .gz whose header says ``dims`` and whose payload is that many MiB of zeros."""
    with gzip.open(path, "wb") as fh:
        fh.write(bytes([0, 0, 0x08, len(dims)]) + struct.pack(f">{len(dims)}I", *dims))
        for _ in range(payload_mebibytes):
            fh.write(ZEROS)
    return path


def peak_allocation(call: Callable[[], Any]) -> tuple[BaseException, int]:
    """The exception ``call`` raised and the peak bytes allocated while it ran."""
    tracemalloc.start()
    try:
        call()
    except Exception as exc:
        return exc, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    raise AssertionError("the reader accepted a bomb")


def test_zip_member_over_the_size_limit_is_refused_from_its_header(tmp_path: Path) -> None:
    size = readers.MAX_IMAGE_FILE_BYTES // MIB + 16  # 80 MiB of zeros, ~80 KiB on disk
    bomb = zip_with_bomb(tmp_path / "bomb.zip", "set/dog/huge.png", size)
    assert bomb.stat().st_size < 2 * MIB
    exc, peak = peak_allocation(lambda: scan_image_folder(bomb))
    message = str(exc)
    assert isinstance(exc, ValueError) and "\n" not in message
    assert f"{bomb}:set/dog/huge.png inflates to 80.0 MiB, over the 64.0 MiB limit" in message
    assert peak < 4 * MIB  # nothing of the member was inflated


def test_zip_member_with_a_bomb_ratio_is_refused(tmp_path: Path) -> None:
    bomb = zip_with_bomb(tmp_path / "bomb.zip", "set/cat/flat.bmp", 4)  # 4 MiB, ~1000:1
    exc, peak = peak_allocation(lambda: scan_image_folder(bomb))
    assert isinstance(exc, ValueError)
    assert "set/cat/flat.bmp inflates" in str(exc) and "over 100:1" in str(exc)
    assert peak < 2 * MIB


def test_zip_member_read_is_capped_even_past_the_scan(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Reading a member checks its header again (a source built without the scan)."""
    bomb = zip_with_bomb(tmp_path / "bomb.zip", "set/dog/huge.png", 8)
    monkeypatch.setattr(readers, "MAX_IMAGE_FILE_BYTES", 4 * MIB)
    source = readers.ImageSource(bomb, zip_path=bomb)
    exc, peak = peak_allocation(lambda: readers.load_image(source, "set/dog/huge.png", "L"))
    assert "cannot read image" in str(exc) and "over the 4.0 MiB limit" in str(exc)
    assert peak < 2 * MIB


def test_idx_gz_bomb_is_refused_before_inflating(tmp_path: Path) -> None:
    """64 MiB of zeros behind an honest header: a ~64 KiB file claiming 1000:1."""
    n = 64 * MIB // (28 * 28)
    bomb = idx_gz_bomb(tmp_path / "train-images-idx3-ubyte.gz", (n, 28, 28), 64)
    exc, peak = peak_allocation(lambda: read_idx(bomb))
    assert isinstance(exc, ValueError) and "\n" not in str(exc)
    assert str(bomb) in str(exc) and "decompression bomb" in str(exc) and "over 100:1" in str(exc)
    assert peak < 20 * MIB  # a bounded look at the stream, never the 64 MiB array


def test_idx_header_claiming_gigabytes_is_refused(tmp_path: Path) -> None:
    bomb = idx_gz_bomb(tmp_path / "train-images-idx3-ubyte.gz", (3_000_000, 28, 28), 1)
    exc, peak = peak_allocation(lambda: read_idx(bomb))
    assert "header says shape (3000000, 28, 28)" in str(exc) and "1,024.0 MiB limit" in str(exc)
    assert peak < 20 * MIB


def test_idx_stream_longer_than_its_header_stops_at_the_header(tmp_path: Path) -> None:
    """A small header over a long stream: counted up to the claimed size, never kept."""
    bomb = idx_gz_bomb(tmp_path / "train-images-idx3-ubyte.gz", (10, 28, 28), 48)
    exc, peak = peak_allocation(lambda: read_idx(bomb))
    assert "header says shape (10, 28, 28) (7840 bytes) but the file holds more than 7840" in str(
        exc
    )
    assert peak < 4 * MIB


def test_raw_idx_header_is_checked_against_the_file_size(tmp_path: Path) -> None:
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(bytes([0, 0, 0x08, 3]) + struct.pack(">3I", 50_000, 28, 28) + bytes(100))
    exc, peak = peak_allocation(lambda: read_idx(path))
    assert "header says shape (50000, 28, 28)" in str(exc) and "holds 100" in str(exc)
    assert peak < MIB


def test_bombs_through_the_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """What the user sees: one `error:` line naming the archive member / the IDX file."""
    zip_bomb = zip_with_bomb(tmp_path / "bomb.zip", "set/dog/huge.png", 80)
    idx = make_idx_folder(tmp_path / "idx", n_train=4, n_test=2)
    idx_gz_bomb(idx / "train-images-idx3-ubyte.gz", (64 * MIB // 784, 28, 28), 64)
    base = ["vit", "fit", "--config", "quick", "--config", "debug"]
    for data, named in (
        (["--data.dataset", "folder", "--data.root", str(zip_bomb)], f"{zip_bomb}:set/dog/huge"),
        (["--data.dataset", "idx", "--data.root", str(idx)], "train-images-idx3-ubyte.gz"),
    ):
        assert main([*base, *data, "--run_dir", str(tmp_path / named[-8:])]) == 1
        out = capsys.readouterr()
        errors = [line for line in (out.out + out.err).splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and named in errors[0], out.out + out.err
        assert "bomb" in errors[0] or "limit" in errors[0]


def test_png_claiming_too_many_pixels_is_refused_before_decoding(tmp_path: Path) -> None:
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    header = struct.pack(">IIBBBBB", 8000, 8000, 8, 2, 0, 0, 0)  # 64 M pixels, under PIL's limit
    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
    png += chunk(b"IEND", b"")
    (tmp_path / "big.png").write_bytes(png)
    source = readers.ImageSource(tmp_path)
    exc, peak = peak_allocation(lambda: readers.load_image(source, "big.png", "RGB"))
    assert "cannot read image" in str(exc) and "8000x8000 pixels, over the limit" in str(exc)
    assert peak < 4 * MIB


def test_datamodule_with_a_bomb_is_refused_at_setup(tmp_path: Path) -> None:
    bomb = zip_with_bomb(tmp_path / "bomb.zip", "set/dog/huge.png", 80)
    dm = ImageData(dataset="folder", root=str(bomb))
    with pytest.raises(ValueError, match=r"huge\.png inflates to 80\.0 MiB"):
        dm.setup("fit")


def test_mnist_csv_gz_bomb_stops_at_the_text_limit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The gzipped CSV is read up to a limit (lowered here to keep the test small)."""
    monkeypatch.setattr(readers, "MAX_CSV_CHARS", 2 * MIB)
    path = tmp_path / "mnist.csv.gz"
    with gzip.open(path, "wb") as fh:
        for _ in range(32):
            fh.write(b"0," * (MIB // 2))
    exc, peak = peak_allocation(lambda: readers.read_mnist_csv(path))
    assert str(path) in str(exc) and "more than 2.0 MiB of text" in str(exc)
    assert peak < 16 * MIB  # the 32 MiB of text was never held
