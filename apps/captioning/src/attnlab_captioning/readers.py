"""Caption files and images on disk: Karpathy's ``dataset_{flickr8k,flickr30k,coco}.json``
(``images[].filename``, optional ``filepath``, ``split`` in train/restval/val/test,
``sentences[].raw``; images under ``<root>/<image_dir>/[<filepath>/]<filename>``) and Flickr8k's
``captions.txt`` (CSV ``image,caption``) + ``Flickr_8k.{train,dev,test}Images.txt`` + ``images/``.

Captions whose image file is absent are counted and reported; ``drop_missing`` goes on without
them only when told to (the shared Flickr8k copy has 1,000 of 8,091 images). Every file is
size-checked before it is parsed and every image before it is decoded.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from attnlab.data import csv_rows, delimiter_hint, read_text

from .vocab import normalize_caption

__all__ = [
    "MAX_CAPTION_JSON_BYTES",
    "MAX_CAPTION_TEXT_BYTES",
    "SPLITS",
    "ImageRecord",
    "ReadResult",
    "drop_missing",
    "load_image",
    "read_flickr8k_csv",
    "read_karpathy",
]

SPLITS = ("train", "val", "test")


@dataclass
class ImageRecord:
    """One image and its reference captions (tokenized); ``boxes`` rows are (digit, x0, y0, x1, y1)."""

    name: str
    captions: list[list[str]]
    path: Path | None = None
    image: np.ndarray | None = None  # (H, W) in [0, 1] for generated scenes
    boxes: list[tuple[int, int, int, int, int]] = field(default_factory=list)


@dataclass
class ReadResult:
    """Records per split and what the reader left out."""

    splits: dict[str, list[ImageRecord]]
    dropped_captions: int = 0
    dropped_images: int = 0
    total_captions: int = 0
    source: str = ""


# Caption files are read whole (JSON) or kept whole in memory (captions.txt): parsed, they take
# several times their size, so a file past these limits is refused before it is opened. Karpathy's
# dataset_coco.json, the largest in use, is 150 MB.
MAX_CAPTION_JSON_BYTES = 512 << 20
MAX_CAPTION_TEXT_BYTES = 256 << 20


def _check_size(path: Path, limit: int) -> None:
    size = path.stat().st_size
    if size > limit:
        raise ValueError(
            f"{path}: {size / 2**20:.0f} MiB, over the {limit >> 20} MiB this reader takes; "
            "is it the caption file? Keep the images you train on in a smaller one"
        )


def _split_list(path: Path) -> list[str]:
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} not found: the Flickr8k layout needs the split lists Flickr_8k.{{train,dev,test}}Images.txt next to captions.txt"
        )
    return [line.strip() for line in read_text(path).splitlines() if line.strip()]


def _inside(name: str, where: str, what: str = "image") -> str:
    """``name`` if it stays inside the image folder: an absolute path, a drive letter or a
    '..' part would read a file the dataset does not own."""
    if (
        name.startswith(("/", "\\"))
        or re.match(r"[A-Za-z]:", name)
        or ".." in re.split(r"[\\/]", name)
    ):
        raise ValueError(
            f"{where}: {what} {name!r} points outside the image folder (absolute or '..' path); "
            "use names relative to the image folder"
        )
    return name


def read_flickr8k_csv(root: Path, image_dir: str = "images", max_words: int = 20) -> ReadResult:
    """``captions.txt`` (``image,caption``; unquoted commas in a caption are kept) and the split lists."""
    path = root / "captions.txt"
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} not found; the Flickr8k layout is captions.txt + Flickr_8k.*Images.txt + {image_dir}/"
        )
    _check_size(path, MAX_CAPTION_TEXT_BYTES)
    captions: dict[str, list[list[str]]] = {}
    with open(path, encoding="utf-8", newline="") as fh:
        reader = csv_rows(fh, path)
        header = [h.strip().lower() for h in next(reader, [])]
        for column in ("image", "caption"):
            if column not in header:
                raise ValueError(
                    f"{path}, line 1: the header has no {column!r} column (found {header})"
                    f"{delimiter_hint(header)}; the file must start with the line 'image,caption'"
                )
        i_img, i_cap = header.index("image"), header.index("caption")
        for line, row in enumerate(reader, start=2):
            if not row:
                continue
            if len(row) <= max(i_img, i_cap):
                raise ValueError(f"{path}, line {line}: expected the columns {header}, got {row}")
            text = ",".join(row[i_cap:]) if i_cap == len(header) - 1 else row[i_cap]
            image = _inside(row[i_img].strip(), f"{path}, line {line}")
            captions.setdefault(image, []).append(normalize_caption(text, max_words))
    lists = {
        "train": "Flickr_8k.trainImages.txt",
        "val": "Flickr_8k.devImages.txt",
        "test": "Flickr_8k.testImages.txt",
    }
    splits: dict[str, list[ImageRecord]] = {}
    for split, name in lists.items():
        recs = []
        for image in _split_list(root / name):
            if image not in captions:
                raise ValueError(f"{root / name}: image {image} has no caption in {path}")
            recs.append(ImageRecord(image, captions[image], root / image_dir / image))
        splits[split] = recs
    return ReadResult(splits, source=str(path))


def read_karpathy(json_path: Path, image_root: Path, max_words: int = 20) -> ReadResult:
    """Karpathy's split file; ``restval`` images join the training split."""
    _check_size(json_path, MAX_CAPTION_JSON_BYTES)
    try:
        data = json.loads(read_text(json_path))
    except (json.JSONDecodeError, RecursionError) as exc:
        detail = str(exc) if isinstance(exc, json.JSONDecodeError) else "nested too deeply"
        raise ValueError(
            f"{json_path}: not valid JSON ({detail}); expected Karpathy's dataset_*.json"
        ) from None
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        raise ValueError(
            f"{json_path}: expected an object with an 'images' list (Karpathy's layout)"
        )
    splits: dict[str, list[ImageRecord]] = {s: [] for s in SPLITS}
    for i, entry in enumerate(data["images"]):
        where = f"{json_path}: images[{i}]"
        if not isinstance(entry, dict):
            raise ValueError(
                f"{where} is not an object; each image is {{filename, split, sentences}}"
            )
        for key in ("filename", "split", "sentences"):
            if key not in entry:
                raise ValueError(
                    f"{where} has no {key!r} field; each image needs filename, split and sentences"
                )
        raw_split = entry["split"]
        split = (
            {"restval": "train"}.get(raw_split, raw_split) if isinstance(raw_split, str) else None
        )
        if split not in splits:
            raise ValueError(
                f"{where} has split {raw_split!r}; expected train, restval, val or test"
            )
        filename, filepath = entry["filename"], entry.get("filepath", "")
        for key, value in (("filename", filename), ("filepath", filepath)):
            if not isinstance(value, str) or (key == "filename" and not value):
                raise ValueError(f"{where}: {key!r} is not a file name (got {value!r})")
            _inside(value, where, key)
        if not isinstance(entry["sentences"], list):
            raise ValueError(f"{where}: 'sentences' is not a list of {{raw: caption}} objects")
        caps = []
        for k, sent in enumerate(entry["sentences"]):
            if not isinstance(sent, dict):
                raise ValueError(f"{where}.sentences[{k}] is not an object like {{raw: caption}}")
            text, tokens = sent.get("raw"), sent.get("tokens")
            if isinstance(text, str) and text:
                caps.append(normalize_caption(text, max_words))
            elif isinstance(tokens, list) and all(isinstance(t, str) for t in tokens):
                caps.append([t.lower() for t in tokens][:max_words])
            else:
                raise ValueError(
                    f"{where}.sentences[{k}] has no text: 'raw' must be a caption string or "
                    "'tokens' a list of words"
                )
        splits[split].append(ImageRecord(filename, caps, image_root / filepath / filename))
    return ReadResult(splits, source=str(json_path))


def drop_missing(result: ReadResult, allow: bool) -> ReadResult:
    """Remove images whose file is absent; without ``allow`` that is an error naming the counts."""
    kept: dict[str, list[ImageRecord]] = {}
    missing: list[ImageRecord] = []
    total = 0
    for split, recs in result.splits.items():
        kept[split] = []
        for rec in recs:
            total += len(rec.captions)
            (kept[split] if rec.path is not None and rec.path.is_file() else missing).append(rec)
    n_caps = sum(len(r.captions) for r in missing)
    if missing and not allow:
        raise FileNotFoundError(
            f"{result.source}: {n_caps} of {total} captions ({len(missing)} images) refer to image "
            f"files that are absent, e.g. {missing[0].path}; pass --data.allow_missing_images true "
            "to go on without them"
        )
    if missing:
        print(
            f"captioning data: dropped {n_caps} of {total} captions ({len(missing)} images without a "
            f"file) from {result.source}; kept "
            + ", ".join(f"{s} {len(r)} images" for s, r in kept.items()),
            flush=True,
        )
    return ReadResult(kept, n_caps, len(missing), total, result.source)


def load_image(path: Path, size: int) -> Tensor:
    """RGB image resized to (size, size) as uint8 (3, size, size); a clear error if unreadable."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            img = img.convert("RGB").resize((size, size), Image.BILINEAR)
            array = np.asarray(img, dtype=np.uint8).copy()
    except FileNotFoundError:
        raise FileNotFoundError(f"image {path} not found") from None
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as exc:
        detail = " ".join(str(exc).split())
        raise ValueError(
            f"{path}: cannot read the image ({type(exc).__name__}: {detail}); replace the file or "
            "remove it from the caption file"
        ) from None
    return torch.from_numpy(array).permute(2, 0, 1)  # (3, H, W)
