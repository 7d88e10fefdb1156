"""Class-folder image sets in the layouts people ship them in, read in place (never extracted).

Accepted layouts (each may sit inside wrapping folders, as zips often are):

* ``CLASS/IMAGE``: one folder per class, torchvision's ``ImageFolder`` layout; a directory or a
  ``.zip``. The test and validation shares are carved from it (``splits.py``).
* ``train/CLASS/IMAGE`` beside ``test/`` and/or ``val/`` (``valid/``, ``validation/``): those
  are the splits; ``train/`` alone has its test share carved. A directory or a ``.zip``.
* ``train.zip`` beside ``test.zip`` and/or ``val.zip`` in one folder: each archive holds the
  class folders of its split (directly or under a ``train/`` ... folder of its own).

Anything else is an error naming what was found and these layouts.
"""

from __future__ import annotations

import re
import zipfile
from dataclasses import dataclass
from pathlib import Path

from .readers import IMAGE_EXTENSIONS, ImageSource, check_member, is_image_name

__all__ = ["ACCEPTED_LAYOUTS", "FolderScan", "FolderSplit", "scan_image_folder"]

ACCEPTED_LAYOUTS = (
    "accepted layouts: CLASS/IMAGE (one folder per class, as torchvision's ImageFolder; test "
    "and validation are carved from it), train/CLASS/IMAGE beside test/ or val/, train.zip "
    "beside test.zip or val.zip; a folder or a .zip (apps/vit/README.md shows each)"
)
# Folder (or archive) names of a split, and the split they hold.
SPLIT_NAMES = {
    "train": "train", "training": "train",
    "test": "test", "testing": "test",
    "val": "val", "valid": "val", "validation": "val",
}  # fmt: skip


@dataclass
class FolderSplit:
    """One split's images: where they are read from, and ``(file name, class index)`` pairs."""

    source: ImageSource
    items: list[tuple[str, int]]


@dataclass
class FolderScan:
    """A scanned image set: its layout (for the log), class names, and its splits (``"all"``, or
    ``"train"`` with any of ``"val"`` and ``"test"``)."""

    layout: str
    classes: list[str]
    splits: dict[str, FolderSplit]


@dataclass
class _Tree:
    """The files and folders of a directory or a zip, by relative '/'-separated name."""

    source: ImageSource
    files: list[str]
    dirs: set[str]

    def children(self, base: str) -> list[str]:
        return sorted(Path(d).name for d in self.dirs if _parent(d) == base)

    def loose_files(self, base: str) -> list[str]:
        return [f for f in self.files if _parent(f) == base]

    def images_under(self, folder: str) -> list[str]:
        prefix = folder + "/" if folder else ""
        return sorted(f for f in self.files if f.startswith(prefix) and is_image_name(f))


def _parent(name: str) -> str:
    parent = str(Path(name).parent)
    return "" if parent == "." else parent


def _join(*parts: str) -> str:
    return "/".join(p for p in parts if p)


def _ignored(name: str) -> bool:
    return any(part.startswith((".", "__MACOSX")) for part in Path(name).parts)


def _outside_archive(name: str) -> bool:
    """An absolute member name, a drive letter or a '..' part: a path outside the archive."""
    parts = re.split(r"[\\/]", name)
    return name.startswith(("/", "\\")) or bool(re.match(r"[A-Za-z]:", name)) or ".." in parts


def _read_tree(path: Path) -> _Tree:
    """The tree of a directory, or of a zip whose image members all pass ``check_member``."""
    if path.is_dir():
        found = [p.relative_to(path) for p in sorted(path.rglob("*"))]
        files = [p.as_posix() for p in found if (path / p).is_file() and not _ignored(str(p))]
        dirs = {p.as_posix() for p in found if (path / p).is_dir() and not _ignored(str(p))}
        return _Tree(ImageSource(path), files, dirs)
    if not zipfile.is_zipfile(path):
        raise ValueError(f"{path} is neither a folder nor a zip archive of class folders")
    try:
        with zipfile.ZipFile(path) as zf:
            infos = zf.infolist()
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
        raise ValueError(f"{path}: damaged zip archive ({exc}); fetch or zip it again") from None
    for info in infos:
        if _outside_archive(info.filename):
            raise ValueError(
                f"{path}: member {info.filename!r} points outside the archive (absolute or '..' "
                "path); rebuild the zip with relative member names"
            )
    members = [i for i in infos if not _ignored(i.filename)]
    for info in members:
        if is_image_name(info.filename):
            check_member(path, info)  # a bomb is refused before any training starts
    files = [i.filename for i in members if not i.filename.endswith("/")]
    dirs = {i.filename.rstrip("/") for i in members if i.filename.endswith("/")}
    for f in files:  # zips may omit directory entries
        dirs.update(p.as_posix() for p in Path(f).parents if str(p) != ".")
    return _Tree(ImageSource(path, zip_path=path), files, dirs)


def _descend(tree: _Tree, base: str = "") -> str:
    """Through single wrapping folders (``set/`` in ``set/cat/0.png``), stopping at a split."""
    while True:
        kids = tree.children(base)
        if len(kids) != 1 or tree.loose_files(base) or kids[0].lower() in SPLIT_NAMES:
            return base
        base = _join(base, kids[0])


def _found(tree: _Tree, base: str, where: str) -> str:
    """What a folder holds, in words, for a wrong-layout message."""
    loose = [f for f in tree.loose_files(base) if is_image_name(f)]
    kids = tree.children(base)
    if loose:
        return f"{len(loose)} image(s) directly in {where} and no class folders"
    if kids:
        return f"folders {', '.join(kids[:5])}{', ...' if len(kids) > 5 else ''} without images"
    return f"{where} holds nothing (no images, no folders)"


def _class_items(tree: _Tree, base: str, where: str) -> tuple[list[str], list[tuple[str, int]]]:
    """Class names (sub-folders of ``base``) and ``(file, class index)`` under them."""
    classes = tree.children(base)
    if not classes:
        raise ValueError(
            f"{where} holds no class folders (found: {_found(tree, base, where)}); "
            f"{ACCEPTED_LAYOUTS}"
        )
    items: list[tuple[str, int]] = []
    for index, name in enumerate(classes):
        folder = _join(base, name)
        members = tree.images_under(folder)
        if not members:
            raise ValueError(
                f"class folder {tree.source.describe(folder)} holds no images "
                f"({', '.join(IMAGE_EXTENSIONS[:4])}, ...); add images or remove the folder"
            )
        items += [(m, index) for m in members]
    return classes, items


def _split_folders(tree: _Tree, base: str) -> dict[str, str]:
    """Split name -> folder for the split-named sub-folders of ``base`` (first spelling wins)."""
    out: dict[str, str] = {}
    for kid in tree.children(base):
        out.setdefault(SPLIT_NAMES.get(kid.lower(), ""), kid)
    out.pop("", None)
    return out


def _same_classes(path: Path, split: str, classes: list[str], train: list[str]) -> None:
    if classes != train:
        raise ValueError(
            f"{path}: {split} classes {classes} differ from train classes {train}; both splits "
            "need the same class folders"
        )


def _split_archives(folder: Path) -> dict[str, Path]:
    """Split name -> archive for ``train.zip``, ``test.zip``, ``val.zip``, ... in ``folder``."""
    out: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        split = SPLIT_NAMES.get(path.stem.lower()) if path.suffix.lower() == ".zip" else None
        if split and path.is_file():
            out.setdefault(split, path)
    return out


def _scan_archives(folder: Path, archives: dict[str, Path]) -> FolderScan:
    if "train" not in archives:
        raise ValueError(
            f"{folder} holds no class folders (found: {', '.join(p.name for p in archives.values())}"
            f" but no train.zip); {ACCEPTED_LAYOUTS}"
        )
    splits: dict[str, FolderSplit] = {}
    classes: list[str] = []
    for split in ("train", "val", "test"):
        if split not in archives:
            continue
        tree = _read_tree(archives[split])
        base = _descend(tree)
        kids = tree.children(base)
        if len(kids) == 1 and SPLIT_NAMES.get(kids[0].lower()) == split:
            base = _descend(tree, _join(base, kids[0]))  # train.zip holding train/CLASS/...
        names, items = _class_items(tree, base, str(archives[split]))
        if split == "train":
            classes = names
        _same_classes(archives[split], split, names, classes)
        splits[split] = FolderSplit(tree.source, items)
    names = " + ".join(archives[s].name for s in ("train", "val", "test") if s in archives)
    return FolderScan(f"one archive per split ({names})", classes, splits)


def scan_image_folder(path: str | Path) -> FolderScan:
    """Class folders in a directory or a ``.zip``, in any of the accepted layouts (module doc)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"image folder {path} does not exist; check --data.root")
    tree = _read_tree(path)
    base = _descend(tree)
    split_dirs = _split_folders(tree, base)
    if len(split_dirs) == 1 and len(tree.children(base)) > 1:
        split_dirs = {}  # one class happens to be called "train" (or "test"): class folders
    if path.is_dir() and not tree.children(""):
        archives = _split_archives(path)
        if archives:
            return _scan_archives(path, archives)
    where = tree.source.describe(base) if base else str(path)
    if not split_dirs:
        classes, items = _class_items(tree, base, where)
        return FolderScan("class folders", classes, {"all": FolderSplit(tree.source, items)})
    if "train" not in split_dirs:
        found = "/, ".join(split_dirs.values()) + "/"
        raise ValueError(
            f"{where} holds no class folders for training (found: {found} but no train/); "
            f"{ACCEPTED_LAYOUTS}"
        )
    splits: dict[str, FolderSplit] = {}
    classes = []
    for split in ("train", "val", "test"):
        if split not in split_dirs:
            continue
        folder = _join(base, split_dirs[split])
        names, items = _class_items(tree, folder, tree.source.describe(folder))
        if split == "train":
            classes = names
        _same_classes(path, split, names, classes)
        splits[split] = FolderSplit(tree.source, items)
    layout = " + ".join(f"{split_dirs[s]}/" for s in ("train", "val", "test") if s in split_dirs)
    return FolderScan(f"split folders ({layout})", classes, splits)
