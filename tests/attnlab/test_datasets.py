"""Downloads against a local HTTP server on 127.0.0.1: success, resume, sha256 mismatch,
interrupted transfer, offline, and archives that try to write outside their folder."""

from __future__ import annotations

import hashlib
import io
import re
import tarfile
import threading
import zipfile
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

from attnlab.cli import shared_dir
from attnlab.datasets import DownloadError, download, extract, fetch, load_manifest

PAYLOAD = bytes(range(256)) * 400  # 102,400 bytes
SHA = hashlib.sha256(PAYLOAD).hexdigest()


class Server:
    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.truncate: set[str] = set()
        self.ranges: list[str] = []
        files, truncate, ranges = self.files, self.truncate, self.ranges

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                name = self.path.lstrip("/")
                if name not in files:
                    self.send_error(404)
                    return
                data = files[name]
                start = 0
                header = self.headers.get("Range")
                if header:
                    ranges.append(header)
                    start = int(re.match(r"bytes=(\d+)-", header).group(1))
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                else:
                    self.send_response(200)
                self.send_header("Content-Length", str(len(data) - start))
                self.end_headers()
                body = data[start:]
                if name in truncate:
                    body = body[: len(body) // 3]  # the connection drops a third of the way in
                self.wfile.write(body)
                self.wfile.flush()

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> Server:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server() -> Iterator[Server]:
    with Server() as s:
        yield s


def test_download_verifies_and_reuses(server: Server, tmp_path: Path) -> None:
    server.files["data.bin"] = PAYLOAD
    dest = download(
        f"{server.url}/data.bin", tmp_path / "data.bin", SHA, len(PAYLOAD), progress=False
    )
    assert dest.read_bytes() == PAYLOAD
    server.files.clear()  # a second call must not need the network
    assert download(f"{server.url}/data.bin", tmp_path / "data.bin", SHA, progress=False) == dest


def test_sha256_mismatch_discards_the_file(server: Server, tmp_path: Path) -> None:
    server.files["data.bin"] = PAYLOAD[:-1] + b"x"
    with pytest.raises(DownloadError, match=f"sha256 mismatch.*expected {SHA}"):
        download(f"{server.url}/data.bin", tmp_path / "data.bin", SHA, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_interrupted_transfer_is_never_taken_as_complete_and_resumes(
    server: Server, tmp_path: Path
) -> None:
    server.files["data.bin"] = PAYLOAD
    server.truncate.add("data.bin")
    with pytest.raises(DownloadError, match=r"interrupted|incomplete"):
        download(f"{server.url}/data.bin", tmp_path / "data.bin", SHA, len(PAYLOAD), progress=False)
    assert not (tmp_path / "data.bin").exists()
    part = tmp_path / "data.bin.part"
    assert 0 < part.stat().st_size < len(PAYLOAD)
    server.truncate.clear()
    download(f"{server.url}/data.bin", tmp_path / "data.bin", SHA, len(PAYLOAD), progress=False)
    assert (tmp_path / "data.bin").read_bytes() == PAYLOAD
    assert server.ranges and server.ranges[-1].startswith("bytes=")
    assert not part.exists()


def test_offline_error_names_dataset_url_and_folder(tmp_path: Path) -> None:
    url = "http://127.0.0.1:9/ETTh1.csv"  # the discard port: nothing listens
    with pytest.raises(DownloadError) as info:
        download(
            url, tmp_path / "etth1" / "ETTh1.csv", SHA, dataset="etth1", progress=False, timeout=5
        )
    message = str(info.value)
    assert "etth1" in message and url in message and str(tmp_path / "etth1") in message


def _zip_with(member: str) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("ok.txt", "fine")
        zf.writestr(member, "evil")
    return buf.getvalue()


def _tar_with(member: str, symlink: str | None = None) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        info = tarfile.TarInfo(member)
        if symlink:
            info.type, info.linkname = tarfile.SYMTYPE, symlink
            tf.addfile(info)
        else:
            info.size = 4
            tf.addfile(info, io.BytesIO(b"evil"))
    return buf.getvalue()


@pytest.mark.parametrize(
    "kind,data",
    [
        ("zip", _zip_with("../evil.txt")),
        ("zip", _zip_with("/tmp/evil-absolute.txt")),
        ("tar", _tar_with("../evil.txt")),
        ("tar", _tar_with("link", symlink="../../outside")),
    ],
    ids=["zip-dotdot", "zip-absolute", "tar-dotdot", "tar-symlink"],
)
def test_archive_members_outside_the_target_are_refused(
    tmp_path: Path, kind: str, data: bytes
) -> None:
    archive = tmp_path / f"a.{kind}"
    archive.write_bytes(data)
    target = tmp_path / "out"
    with pytest.raises(DownloadError, match="refusing to extract"):
        extract(archive, target)
    assert not (tmp_path / "evil.txt").exists()
    assert list(target.iterdir()) == []  # nothing extracted at all


def test_fetch_downloads_and_extracts_from_a_manifest(server: Server, tmp_path: Path) -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("toy/train.csv", "a,b\n1,2\n")
    server.files["toy.zip"] = buf.getvalue()
    manifest = tmp_path / "datasets.yaml"
    manifest.write_text(
        yaml.safe_dump(
            {
                "datasets": {
                    "toy": {
                        "license": "CC0",
                        "citation": "none",
                        "files": [
                            {
                                "name": "toy.zip",
                                "url": f"{server.url}/toy.zip",
                                "sha256": hashlib.sha256(buf.getvalue()).hexdigest(),
                                "size": len(buf.getvalue()),
                                "extract": True,
                            }
                        ],
                    }
                }
            }
        )
    )
    folder = fetch("toy", manifest=load_manifest(manifest), root=tmp_path / "cache", progress=False)
    assert (folder / "toy" / "train.csv").read_text() == "a,b\n1,2\n"
    with pytest.raises(ValueError, match="unknown dataset 'nope'"):
        fetch("nope", manifest=load_manifest(manifest), root=tmp_path / "cache")


def test_project_manifest_entries_are_complete() -> None:
    shared = shared_dir()
    assert shared is not None
    manifest = load_manifest(shared / "datasets.yaml")
    assert manifest
    for name, entry in manifest.items():
        assert entry.license and entry.citation, name
        for f in entry.files:
            assert f.url.startswith("https://"), (name, f.url)
            assert re.fullmatch(r"[0-9a-f]{64}", f.sha256), (name, f.name)
