"""``AttnlabDataModule``: what every app's DataModule shares (loaders, seeded splits, data root),
and the text-reading helpers every app's readers use so a bad file is a one-line error."""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

__all__ = [
    "AttnlabDataModule",
    "LengthBucketSampler",
    "csv_rows",
    "delimiter_hint",
    "not_utf8",
    "read_text",
    "split_indices",
]


def not_utf8(path: str | Path, exc: UnicodeDecodeError) -> ValueError:
    """The error for a file that is not UTF-8 (latin-1, UTF-16, binary): names the file, not
    the codec's internals."""
    byte = exc.object[exc.start : exc.start + 1].hex() or "??"
    return ValueError(
        f"{path}: not UTF-8 text (byte 0x{byte} does not decode); save the file as UTF-8, "
        "e.g. `iconv -f latin1 -t utf-8 IN > OUT`"
    )


def read_text(path: str | Path, encoding: str = "utf-8") -> str:
    """The whole file as text; a file that is not UTF-8 is a ``ValueError`` naming it."""
    try:
        return Path(path).read_text(encoding=encoding)
    except UnicodeDecodeError as exc:
        raise not_utf8(path, exc) from None


def csv_rows(lines: Iterable[str], path: str | Path, **fmt: Any) -> Iterator[list[str]]:
    """``csv.reader(lines, **fmt)`` whose decoding and parsing errors (a binary file, a cell
    beyond the field size limit, ...) are ``ValueError``s naming the file and the line."""
    reader = csv.reader(lines, **fmt)
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except UnicodeDecodeError as exc:
            raise not_utf8(path, exc) from None
        except csv.Error as exc:
            raise ValueError(
                f"{path}: line {reader.line_num}: unreadable CSV ({exc}); check the quoting"
            ) from None
        yield row


def delimiter_hint(header: list[str], expected: str = ",") -> str:
    """A hint for a header read as one cell because the file uses another delimiter."""
    if len(header) != 1:
        return ""
    for sep, word in (("\t", "tabs"), (";", "';'"), ("|", "'|'"), (",", "','"), (" ", "spaces")):
        if sep != expected and sep in header[0].strip():
            return f" (the header is one cell: the file seems to use {word} as the delimiter)"
    return ""


def split_indices(n: int, val_fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Shuffle ``range(n)`` with a fixed seed and cut a validation share off it."""
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()
    n_val = round(n * val_fraction)
    if val_fraction > 0 and n_val == 0 and n > 1:
        n_val = 1
    return sorted(order[n_val:]), sorted(order[:n_val])


class LengthBucketSampler(Sampler[int]):
    """A shuffled order whose consecutive ``batch_size`` chunks hold samples of similar length.

    Why: variable-length samples are padded to the longest in their batch, and a random batch of
    short item histories is padded to its one long outlier (on Beauty the median history is 4
    items, a random batch of 128 is padded to 45 on average), so most of the encoder's work is
    padding.
    Each epoch: a random permutation, cut into pools of ``pool_batches * batch_size`` samples;
    each pool is sorted by length and cut into batches; the full batches are shuffled, and the
    one partial batch (if ``len(lengths)`` is not a multiple of ``batch_size``) comes last so the
    loader's chunks stay aligned with the batches made here. Every sample appears once an epoch,
    as with ``shuffle=True``. ``generator`` is the data module's shuffling generator, whose state
    goes into checkpoints, so a resumed run continues the same order.
    """

    def __init__(
        self,
        lengths: Iterable[int],
        batch_size: int,
        generator: torch.Generator,
        pool_batches: int = 64,
    ):
        self.lengths = torch.as_tensor(list(lengths), dtype=torch.long)  # (N,)
        if len(self.lengths) == 0:
            raise ValueError("a length-bucketed order needs at least one sample")
        if batch_size < 1 or pool_batches < 1:
            raise ValueError(
                f"batch_size and pool_batches must be >= 1, got {batch_size} and {pool_batches}"
            )
        self.batch_size = batch_size
        self.pool_batches = pool_batches
        self.generator = generator

    def __len__(self) -> int:
        return len(self.lengths)

    def batches(self) -> list[list[int]]:
        """One epoch's batches, in training order (draws from ``generator``)."""
        n, size = len(self.lengths), self.batch_size
        perm = torch.randperm(n, generator=self.generator)  # (N,)
        pool = size * self.pool_batches
        full: list[list[int]] = []
        partial: list[list[int]] = []
        for start in range(0, n, pool):
            chunk = perm[start : start + pool]
            chunk = chunk[torch.argsort(self.lengths[chunk], stable=True)]
            for batch in chunk.split(size):
                (full if len(batch) == size else partial).append(batch.tolist())
        order = torch.randperm(len(full), generator=self.generator).tolist()
        return [full[i] for i in order] + partial

    def __iter__(self) -> Iterator[int]:
        for batch in self.batches():
            yield from batch


class AttnlabDataModule(pl.LightningDataModule):
    """Loaders with a seeded shuffle (so `--trainer.deterministic true` repeats runs exactly, and a
    run resumed from a checkpoint sees the same order of batches as an uninterrupted one).

    Subclasses set ``self.train_set``/``val_set``/``test_set``/``predict_set`` in ``setup`` and may
    pass a ``collate_fn``. ``eval_batch_size`` (default: ``batch_size``) is the batch size of the
    validation, test and predict loaders; a subclass forwards it to ``super().__init__``. ``has_test_split`` tells `fit` whether to test the best checkpoint.
    """

    def __init__(
        self,
        batch_size: int = 64,
        num_workers: int = 0,
        seed: int = 0,
        eval_batch_size: int | None = None,
    ):
        super().__init__()
        if eval_batch_size is not None and (
            isinstance(eval_batch_size, bool) or eval_batch_size < 1
        ):
            raise ValueError(
                f"--data.eval_batch_size must be a positive integer, got {eval_batch_size!r}"
            )
        self.batch_size = batch_size
        # Validation, test and predict loaders: no gradients to hold, so they can take bigger
        # batches than training (None: the training batch size).
        self.eval_batch_size = eval_batch_size
        self.num_workers = num_workers
        self.seed = seed
        self.train_set: Dataset[Any] | None = None
        self.val_set: Dataset[Any] | None = None
        self.test_set: Dataset[Any] | None = None
        self.predict_set: Dataset[Any] | None = None
        self.collate_fn: Callable[[list[Any]], Any] | None = None
        self._train_order: torch.Generator | None = None

    @property
    def has_test_split(self) -> bool:
        return True

    def _shuffle_generator(self) -> torch.Generator:
        """One generator for the training order, seeded once: each epoch draws the next order,
        and its state goes into checkpoints (``state_dict``) so a resumed run continues it."""
        if self._train_order is None:
            self._train_order = torch.Generator().manual_seed(self.seed)
        return self._train_order

    def state_dict(self) -> dict[str, Any]:
        if self._train_order is None:
            return {}
        return {"train_order": self._train_order.get_state()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if "train_order" in state_dict:
            self._shuffle_generator().set_state(state_dict["train_order"])

    def _loader(
        self,
        dataset: Dataset[Any] | None,
        stage: str,
        shuffle: bool = False,
        sampler: Sampler[int] | None = None,
    ) -> DataLoader[Any]:
        """The stage's loader; ``sampler`` replaces the shuffled order (e.g. a curriculum)."""
        if dataset is None:
            raise ValueError(f"{type(self).__name__} has no {stage} data; check its setup()")
        # The loader draws its workers' base seed from this generator too; without one it would
        # draw from torch's global RNG, and a resumed run's dropout would differ from the
        # uninterrupted run's.
        generator = self._shuffle_generator() if shuffle or sampler is not None else None
        eval_batch_size = getattr(self, "eval_batch_size", None)
        batch_size = (
            self.batch_size if stage == "train" or eval_batch_size is None else eval_batch_size
        )
        return DataLoader(
            dataset,
            batch_size=batch_size,
            shuffle=shuffle and sampler is None,
            sampler=sampler,
            num_workers=self.num_workers,
            collate_fn=self.collate_fn,
            generator=generator,
            persistent_workers=self.num_workers > 0,
            drop_last=False,
        )

    def train_dataloader(self) -> DataLoader[Any]:
        return self._loader(self.train_set, "train", shuffle=True)

    def val_dataloader(self) -> DataLoader[Any]:
        return self._loader(self.val_set, "validation")

    def test_dataloader(self) -> DataLoader[Any]:
        return self._loader(self.test_set, "test")

    def predict_dataloader(self) -> DataLoader[Any]:
        return self._loader(self.predict_set, "predict")
