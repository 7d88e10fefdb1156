"""Short-audio classification data: readers for every source the app takes, and the DataModule.

Sources (``--data.dataset``):

* ``synthetic`` (the ``quick.yaml`` default, no download): generated DTMF key presses, the 12
  keys of a phone pad, each a pair of tones of random length and onset, with slightly detuned
  frequencies, random level and white noise at a random SNR.
* ``fsdd``: the Free Spoken Digit Dataset, ``{digit}_{speaker}_{index}.wav`` files from
  ``--data.root`` or ``$ATTNLAB_DATA_DIR/fsdd`` (the folder or its ``recordings/``). The
  official split: recording index 0-4 is the test set.
* ``speech_commands``: Speech Commands v2 through torchaudio's checksummed downloader (into
  ``--data.root`` or ``$ATTNLAB_DATA/speech_commands``), its own validation/testing lists;
  ``--data.subset 35`` (all words) or ``12`` (ten words + ``_unknown_`` + ``_silence_``, the
  silence cut from the background-noise recordings, different stretches for each split).
* ``folder``: one sub-folder of WAV files per class; with ``train/`` and ``test/`` sub-folders
  those are the splits, otherwise a test share is carved with a fixed seed.

Every clip is read as mono (channels averaged), resampled to ``sample_rate``, padded or cropped
to ``duration`` (a random offset in training, centred otherwise) and turned into log-mel dB.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import Dataset, Subset

from attnlab.data import AttnlabDataModule, read_text, split_indices
from attnlab.datasets import cache_dir, data_root

from .audio_io import check_length, fit_length, read_wav, resample
from .features import FrontEnd, FrontEndConfig

__all__ = [
    "DATASETS",
    "DTMF_KEYS",
    "AudioData",
    "Clip",
    "ClipDataset",
    "list_wavs",
    "make_dtmf",
    "scan_fsdd",
    "scan_speech_commands",
    "scan_wav_folder",
]

DATASETS = ("synthetic", "fsdd", "speech_commands", "folder")
DTMF_KEYS = ["1", "2", "3", "4", "5", "6", "7", "8", "9", "*", "0", "#"]
_DTMF_LOW = (697.0, 770.0, 852.0, 941.0)
_DTMF_HIGH = (1209.0, 1336.0, 1477.0)
DIGITS = [str(i) for i in range(10)]
SC_TEN = ["yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go"]
SC_UNKNOWN, SC_SILENCE = "_unknown_", "_silence_"
_FSDD_NAME = re.compile(r"^(\d)_([A-Za-z]+)_(\d+)\.wav$")


# --------------------------------------------------------------------------------------------
# readers
# --------------------------------------------------------------------------------------------


def make_dtmf(n: int, sample_rate: int, duration: float, seed: int) -> tuple[Tensor, Tensor]:
    """``n`` generated DTMF clips -> (waveforms (n, samples), labels (n,) in 0..11)."""
    if sample_rate < 2 * 1600:
        raise ValueError(
            f"DTMF tones reach 1477 Hz; sample_rate {sample_rate} is too low (>= 3200)"
        )
    g = torch.Generator().manual_seed(seed)
    length = round(sample_rate * duration)
    t = torch.arange(length, dtype=torch.float64) / sample_rate  # (T,)
    labels = torch.randint(0, 12, (n,), generator=g)
    out = torch.empty(n, length)
    for i, key in enumerate(labels.tolist()):
        r = torch.rand(8, generator=g, dtype=torch.float64)
        low = _DTMF_LOW[key // 3] * (1 + 0.03 * (r[0] - 0.5))  # +-1.5 % detuning
        high = _DTMF_HIGH[key % 3] * (1 + 0.03 * (r[1] - 0.5))
        press = duration * (0.2 + 0.4 * r[2])  # 20-60 % of the clip
        onset = (duration - press) * r[3]
        env = ((t >= onset) & (t < onset + press)).double()  # (T,)
        phase = 2 * math.pi * r[4]
        tone = torch.sin(2 * math.pi * low * t + phase) + (0.6 + 0.4 * r[5]) * torch.sin(
            2 * math.pi * high * t
        )
        snr_db = 0.0 + 20.0 * r[6]
        level = 0.1 + 0.4 * r[7]
        noise = torch.randn(length, generator=g, dtype=torch.float64)
        signal = tone * env
        power = signal.pow(2).sum() / env.sum().clamp_min(1.0)
        noise = noise * (power / 10 ** (snr_db / 10)).sqrt()
        clip = signal + noise
        out[i] = (level * clip / clip.abs().max().clamp_min(1e-9)).float()
    return out, labels


@dataclass(frozen=True)
class Clip:
    """One labelled clip on disk; ``start``/``stop`` (seconds) cut a stretch out of a long
    recording (Speech Commands' background noise), None reads the whole file."""

    path: str
    label: int
    start: float | None = None
    stop: float | None = None


def list_wavs(path: str | Path) -> list[Path]:
    """A WAV file, or every ``*.wav`` under a folder (sorted)."""
    p = Path(path)
    if p.is_file():
        return [p]
    if not p.is_dir():
        raise FileNotFoundError(f"{p}: no such WAV file or folder")
    files = sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() == ".wav")
    if not files:
        raise FileNotFoundError(f"{p} holds no .wav files")
    return files


def scan_fsdd(root: str | Path) -> dict[str, list[Clip]]:
    """FSDD file names -> {"train": [...], "test": [...]} with the official split (index 0-4 test)."""
    root = Path(root)
    folder = root / "recordings" if (root / "recordings").is_dir() else root
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: FSDD folder not found; pass --data.root")
    splits: dict[str, list[Clip]] = {"train": [], "test": []}
    for f in sorted(folder.iterdir()):
        if f.suffix.lower() != ".wav":
            continue
        m = _FSDD_NAME.match(f.name)
        if not m:
            raise ValueError(
                f"{f}: not an FSDD file name ({{digit}}_{{speaker}}_{{index}}.wav); remove it or "
                "use --data.dataset folder"
            )
        split = "test" if int(m.group(3)) <= 4 else "train"
        splits[split].append(Clip(str(f), int(m.group(1))))
    if not splits["train"] or not splits["test"]:
        raise FileNotFoundError(
            f"{folder}: no FSDD recordings for both splits (train {len(splits['train'])}, test "
            f"{len(splits['test'])}); check --data.root"
        )
    return splits


def scan_wav_folder(root: str | Path) -> tuple[dict[str, list[Clip]], list[str]]:
    """Class sub-folders of WAV files -> ({"train"/"test" or "all": clips}, class names)."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no such folder of class sub-folders")

    def classes_in(base: Path) -> list[str]:
        return sorted(d.name for d in base.iterdir() if d.is_dir() and not d.name.startswith("."))

    bases = {"train": root / "train", "test": root / "test"}
    if all(b.is_dir() for b in bases.values()):
        names = classes_in(bases["train"])
        if classes_in(bases["test"]) != names:
            raise ValueError(f"{root}: train/ and test/ must hold the same class folders")
    else:
        bases = {"all": root}
        names = classes_in(root)
    if not names:
        raise ValueError(
            f"{root} holds no class folders; expected one sub-folder of WAVs per class"
        )
    splits: dict[str, list[Clip]] = {}
    for split, base in bases.items():
        items = []
        for c, name in enumerate(names):
            wavs = sorted(f for f in (base / name).rglob("*") if f.suffix.lower() == ".wav")
            if not wavs:
                raise ValueError(f"class folder {base / name} holds no .wav files")
            items += [Clip(str(f), c) for f in wavs]
        splits[split] = items
    return splits, names


def _read_list(path: Path) -> set[str]:
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found; the Speech Commands folder is incomplete")
    return {line.strip() for line in read_text(path).splitlines() if line.strip()}


def scan_speech_commands(
    folder: str | Path, subset: str = "35"
) -> tuple[dict[str, list[Clip]], list[str]]:
    """An extracted Speech Commands v2 folder -> clips per split and class names."""
    folder = Path(folder)
    if subset not in ("35", "12"):
        raise ValueError(f"--data.subset must be '35' or '12', got {subset!r}")
    val_list = _read_list(folder / "validation_list.txt")
    test_list = _read_list(folder / "testing_list.txt")
    words = sorted(
        d.name for d in folder.iterdir() if d.is_dir() and not d.name.startswith(("_", "."))
    )
    if not words:
        raise FileNotFoundError(f"{folder} holds no word folders; the download is incomplete")
    names = words if subset == "35" else [*SC_TEN, SC_UNKNOWN, SC_SILENCE]
    index = {w: i for i, w in enumerate(names)}
    splits: dict[str, list[Clip]] = {"train": [], "val": [], "test": []}
    for word in words:
        label = index.get(word, index.get(SC_UNKNOWN, -1))
        for f in sorted((folder / word).glob("*.wav")):
            rel = f"{word}/{f.name}"
            split = "val" if rel in val_list else "test" if rel in test_list else "train"
            splits[split].append(Clip(str(f), label))
    if subset == "12":
        noise = sorted((folder / "_background_noise_").glob("*.wav"))
        if not noise:
            raise FileNotFoundError(f"{folder}/_background_noise_ holds no WAVs for '_silence_'")
        share = {"train": (0.0, 0.8), "val": (0.8, 0.9), "test": (0.9, 1.0)}
        for split, (lo, hi) in share.items():
            want = max(1, len(splits[split]) // 11)  # about 1/12 of the split, as usual
            for k in range(want):
                f = noise[k % len(noise)]
                frac = lo + (hi - lo) * ((k // len(noise)) * 0.618034 % 1.0)  # spread the cuts
                splits[split].append(Clip(str(f), index[SC_SILENCE], start=frac, stop=hi))
    return splits, names


# --------------------------------------------------------------------------------------------
# datasets
# --------------------------------------------------------------------------------------------


class ClipDataset(Dataset[tuple[Tensor, int]]):
    """Clips (in memory or on disk) -> (log-mel dB (1, n_mels, frames), label).

    ``train`` draws a random position of the clip inside the window (time shift); evaluation
    centres it. The draw uses torch's global generator, like torchvision's transforms: seeded by
    ``seed_everything``, saved in checkpoints by the Lightning layer (so a resumed run draws the
    same shifts as an uninterrupted one) and reseeded per DataLoader worker and epoch (a private
    generator would be copied into every worker and repeat the same shifts each epoch). Files are
    cached after the first read when ``cache`` is set.
    """

    def __init__(
        self,
        clips: Sequence[Clip] | Tensor,
        labels: Tensor | None,
        front: FrontEnd,
        *,
        train: bool,
        max_length_factor: float,
        cache: bool = True,
    ):
        self.clips = clips
        self.labels = labels
        self.front = front
        self.train = train
        self.max_length_factor = max_length_factor
        self.cache = cache
        self._store: dict[int, Tensor] = {}

    def __len__(self) -> int:
        return len(self.clips)

    def waveform(self, i: int) -> Tensor:
        """The i-th clip at the front end's sample rate, unpadded: (T,)."""
        if isinstance(self.clips, Tensor):
            return self.clips[i]
        if i in self._store:
            return self._store[i]
        clip = self.clips[i]
        wave, rate = read_wav(clip.path)
        sr = self.front.cfg.sample_rate
        if clip.start is not None:  # a stretch of a long recording, as long as one clip
            first = int(clip.start * len(wave))
            last = int((clip.stop if clip.stop is not None else 1.0) * len(wave))
            wave = wave[first : min(last, first + int(rate * self.front.cfg.duration))]
        # Checked before resampling: a long file at a low rate would otherwise blow up first.
        length = self.front.cfg.num_samples
        check_length(round(len(wave) * sr / rate), length, clip.path, self.max_length_factor)
        wave = resample(wave, rate, sr, clip.path)
        if self.cache:
            self._store[i] = wave
        return wave

    def label(self, i: int) -> int:
        if self.labels is not None:
            return int(self.labels[i])
        return self.clips[i].label  # type: ignore[union-attr]

    def features(self, i: int, train: bool | None = None) -> Tensor:
        wave = self.waveform(i)
        length = self.front.cfg.num_samples
        offset = None
        if self.train if train is None else train:
            slack = abs(length - wave.shape[0])
            offset = int(torch.randint(0, slack + 1, (1,))) if slack else 0
        source = self.clips[i].path if not isinstance(self.clips, Tensor) else f"clip {i}"
        wave = fit_length(wave, length, offset, source=source, max_factor=self.max_length_factor)
        return self.front(wave)  # (1, n_mels, frames)

    def __getitem__(self, i: int) -> tuple[Tensor, int]:
        return self.features(i), self.label(i)


class PredictClips(Dataset[tuple[Tensor, int]]):
    """WAV files for `predict`: (features, index into ``paths``)."""

    def __init__(self, paths: Sequence[Path], front: FrontEnd, max_length_factor: float):
        self.inner = ClipDataset(
            [Clip(str(p), -1) for p in paths], None, front, train=False,
            max_length_factor=max_length_factor, cache=False,
        )  # fmt: skip

    def __len__(self) -> int:
        return len(self.inner)

    def __getitem__(self, i: int) -> tuple[Tensor, int]:
        return self.inner.features(i), i


# --------------------------------------------------------------------------------------------
# the DataModule
# --------------------------------------------------------------------------------------------


class AudioData(AttnlabDataModule):
    """Clips -> log-mel dB features, with seeded splits and the training set's statistics.

    ``feature_stats`` (mean, std of the training features) is what the models normalize with;
    the module copies it into its buffers at the start of `fit`. ``max_length_factor``: a clip
    longer than that many times ``duration`` is an error (0 crops anything). ``max_train`` caps
    the training clips (quick runs, overfit tests). ``predict_path`` is a WAV or a folder.

    Args:
        dataset: where the clips come from:
            - synthetic = generated DTMF key presses (offline).
            - fsdd = Free Spoken Digit Dataset WAVs from --data.root or $ATTNLAB_DATA_DIR/fsdd.
            - speech_commands = Speech Commands v2 (checksummed download, --data.subset 35 or
              12).
            - folder = your own WAVs at --data.root, one sub-folder a class, with train/ and
              test/ sub-folders or a seeded test share.
        root: the folder of the dataset (folder: class sub-folders of .wav files).
        subset: speech_commands only: 35 (all words) or 12 (ten words, unknown, silence).
        duration: seconds a clip is padded or cropped to; sample_rate: Hz it is resampled to.
        max_length_factor: a clip longer than this many durations is an error (0: crop).
        predict_path: a WAV or a folder of WAVs for `predict`.
    """

    def __init__(
        self,
        dataset: str = "synthetic",
        root: str | None = None,
        subset: str = "35",
        sample_rate: int = 8000,
        duration: float = 1.0,
        n_fft: int = 256,
        win_length: int | None = None,
        hop_length: int = 128,
        n_mels: int = 40,
        f_min: float = 20.0,
        f_max: float | None = None,
        top_db: float = 80.0,
        max_length_factor: float = 4.0,
        n_synthetic: int = 1200,
        val_fraction: float = 0.1,
        test_fraction: float = 0.2,
        max_train: int | None = None,
        predict_path: str | None = None,
        download: bool = True,
        batch_size: int = 64,
        num_workers: int = 0,
        seed: int = 0,
        eval_batch_size: int | None = None,
    ):
        super().__init__(
            batch_size=batch_size,
            num_workers=num_workers,
            seed=seed,
            eval_batch_size=eval_batch_size,
        )
        if dataset not in DATASETS:
            raise ValueError(f"unknown --data.dataset {dataset!r}; choose one of {list(DATASETS)}")
        if dataset == "folder" and not root:
            raise ValueError("dataset 'folder' needs --data.root (a folder of class sub-folders)")
        if not 0.0 < test_fraction < 1.0:
            raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
        self.dataset = dataset
        self.root = root
        self.subset = str(subset)
        self.front_cfg = FrontEndConfig(
            sample_rate=sample_rate, duration=duration, n_fft=n_fft, win_length=win_length,
            hop_length=hop_length, n_mels=n_mels, f_min=f_min, f_max=f_max, top_db=top_db,
        )  # fmt: skip
        self.front = FrontEnd(self.front_cfg)
        self.max_length_factor = max_length_factor
        self.n_synthetic = n_synthetic
        self.val_fraction = val_fraction
        self.test_fraction = test_fraction
        self.max_train = max_train
        self.predict_path = predict_path
        self.download = download
        self.class_names: list[str] = self._known_class_names()
        self.predict_paths: list[Path] = []
        self.feature_stats: tuple[float, float] | None = None

    # ------------------------------------------------------------------ geometry
    @property
    def n_mels(self) -> int:
        return self.front_cfg.n_mels

    @property
    def n_frames(self) -> int:
        return self.front_cfg.num_frames

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def _known_class_names(self) -> list[str]:
        if self.dataset == "synthetic":
            return list(DTMF_KEYS)
        if self.dataset == "fsdd":
            return list(DIGITS)
        if self.dataset == "speech_commands" and self.subset == "12":
            return [*SC_TEN, SC_UNKNOWN, SC_SILENCE]
        return []

    # ------------------------------------------------------------------ sources
    def _speech_commands_folder(self) -> Path:
        base = Path(self.root) if self.root else cache_dir() / "speech_commands"
        folder = base / "SpeechCommands" / "speech_commands_v0.02"
        if not (folder / "testing_list.txt").is_file():
            if not self.download:
                raise FileNotFoundError(
                    f"Speech Commands v2 not found in {folder}; set --data.download true or put "
                    "the extracted archive there"
                )
            from torchaudio.datasets import SPEECHCOMMANDS

            base.mkdir(parents=True, exist_ok=True)
            try:  # torchaudio's downloader checks the archive's sha256 before extracting
                SPEECHCOMMANDS(str(base), download=True)
            except (OSError, RuntimeError) as exc:
                raise FileNotFoundError(
                    f"cannot download Speech Commands v2 into {base} ({exc}); connect to the "
                    "internet, or extract speech_commands_v0.02.tar.gz into "
                    f"{folder} by hand"
                ) from None
        return folder

    def _clip_splits(self) -> dict[str, list[Clip]]:
        """Clips per split ("train", optional "val", "test") from the disk sources."""
        if self.dataset == "fsdd":
            root = data_root(self.root, "fsdd")
            if root is None:
                raise FileNotFoundError(
                    "FSDD needs --data.root (the fsdd folder or its recordings/) or "
                    "ATTNLAB_DATA_DIR with an fsdd/ folder"
                )
            return scan_fsdd(root)
        if self.dataset == "speech_commands":
            splits, self.class_names = scan_speech_commands(
                self._speech_commands_folder(), self.subset
            )
            return splits
        assert self.root is not None
        splits, self.class_names = scan_wav_folder(self.root)
        if "all" in splits:
            everything = splits.pop("all")
            rest, test_idx = split_indices(len(everything), self.test_fraction, self.seed + 1)
            splits["train"] = [everything[i] for i in rest]
            splits["test"] = [everything[i] for i in test_idx]
        return splits

    # ------------------------------------------------------------------ setup
    def _make(self, clips: Any, labels: Tensor | None, train: bool, cache: bool) -> ClipDataset:
        return ClipDataset(
            clips, labels, self.front, train=train, max_length_factor=self.max_length_factor,
            cache=cache,
        )  # fmt: skip

    def _capped(self, items: list[Any]) -> list[Any]:
        """At most ``max_train`` of ``items``, a seeded random draw kept in order: the lists are
        sorted by file name, i.e. by class for FSDD and folders, so their head holds few classes."""
        if not self.max_train or self.max_train >= len(items):
            return items
        g = torch.Generator().manual_seed(self.seed + 2)
        keep = sorted(torch.randperm(len(items), generator=g)[: self.max_train].tolist())
        return [items[i] for i in keep]

    def setup(self, stage: str | None = None) -> None:
        if stage == "predict":
            self._setup_predict()
            return
        if self.train_set is not None:
            return
        if self.dataset == "synthetic":
            sr, dur = self.front_cfg.sample_rate, self.front_cfg.duration
            n_test = max(1, round(self.n_synthetic * self.test_fraction))
            waves, labels = make_dtmf(self.n_synthetic, sr, dur, seed=1234 + self.seed)
            test_waves, test_labels = make_dtmf(n_test, sr, dur, seed=4321 + self.seed)
            train_idx, val_idx = split_indices(len(labels), self.val_fraction, self.seed)
            train_idx = self._capped(train_idx)
            train_full = self._make(waves, labels, train=True, cache=False)
            eval_full = self._make(waves, labels, train=False, cache=False)
            self.train_set = Subset(train_full, train_idx)
            self.val_set = Subset(eval_full, val_idx)
            self.test_set = self._make(test_waves, test_labels, train=False, cache=False)
        else:
            splits = self._clip_splits()
            cache = self.dataset != "speech_commands"  # 100k clips would not fit in memory
            pool = splits["train"]
            if "val" in splits:
                train_clips, val_clips = pool, splits["val"]
            else:
                train_idx, val_idx = split_indices(len(pool), self.val_fraction, self.seed)
                train_clips = [pool[i] for i in train_idx]
                val_clips = [pool[i] for i in val_idx]
            train_clips = self._capped(train_clips)
            self.train_set = self._make(train_clips, None, train=True, cache=cache)
            self.val_set = self._make(val_clips, None, train=False, cache=cache)
            self.test_set = self._make(splits["test"], None, train=False, cache=cache)
        self.feature_stats = self._stats()
        if self.predict_path:
            self._setup_predict()

    def _stats(self, limit: int = 2000) -> tuple[float, float]:
        """Mean and std of the training features (centred clips; at most ``limit`` of them)."""
        ds = self.train_set
        base, idx = (ds.dataset, ds.indices) if isinstance(ds, Subset) else (ds, range(len(ds)))  # type: ignore[union-attr,arg-type]
        idx = list(idx)
        if len(idx) > limit:
            step = len(idx) / limit
            idx = [idx[int(k * step)] for k in range(limit)]
        total, total_sq, count = 0.0, 0.0, 0
        for i in idx:
            f = base.features(i, train=False).double()
            total += float(f.sum())
            total_sq += float(f.pow(2).sum())
            count += f.numel()
        mean = total / count
        std = math.sqrt(max(total_sq / count - mean * mean, 1e-12))
        return mean, std

    def _setup_predict(self) -> None:
        if not self.predict_path:
            raise ValueError("predict needs --data.predict_path (a WAV file or a folder of WAVs)")
        self.predict_paths = list_wavs(self.predict_path)
        self.predict_set = PredictClips(self.predict_paths, self.front, self.max_length_factor)

    def state_summary(self) -> dict[str, int]:
        """Sizes of the splits, for logs and tests."""
        return {
            name: len(ds)  # type: ignore[arg-type]
            for name, ds in (
                ("train", self.train_set),
                ("val", self.val_set),
                ("test", self.test_set),
            )
            if ds is not None
        }


def data_dir_has(subdir: str) -> bool:
    """Whether ``$ATTNLAB_DATA_DIR/<subdir>`` exists (tests and benchmarks use it)."""
    env = os.environ.get("ATTNLAB_DATA_DIR")
    return bool(env) and (Path(env) / subdir).exists()
