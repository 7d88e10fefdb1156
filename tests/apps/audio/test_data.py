"""Readers and the DataModule on generated fixtures; the real FSDD when present."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from attnlab_audio.audio_io import write_wav
from attnlab_audio.data import (
    DTMF_KEYS,
    AudioData,
    ClipDataset,
    list_wavs,
    make_dtmf,
    scan_fsdd,
    scan_speech_commands,
    scan_wav_folder,
)
from attnlab_audio.features import FrontEnd, FrontEndConfig
from torch.utils.data import DataLoader

from .conftest import data_dir, tone


def test_dtmf_keys_have_their_two_tones() -> None:
    waves, labels = make_dtmf(24, 8000, 0.5, seed=3)
    assert waves.shape == (24, 4000) and labels.max() < 12
    again, _ = make_dtmf(24, 8000, 0.5, seed=3)
    assert torch.equal(waves, again)
    low, high = (697, 770, 852, 941), (1209, 1336, 1477)
    for wave, key in zip(waves, labels.tolist()):
        spectrum = torch.fft.rfft(wave).abs()  # 2 Hz per bin
        lo_peak = int(spectrum[: 1100 // 2].argmax()) * 2
        hi_peak = int(spectrum[1100 // 2 :].argmax()) * 2 + 1100
        assert abs(lo_peak - low[key // 3]) < 0.02 * low[key // 3], DTMF_KEYS[key]
        assert abs(hi_peak - high[key % 3]) < 0.02 * high[key % 3], DTMF_KEYS[key]


def test_scan_fsdd_uses_the_official_split(fsdd_fixture: Path) -> None:
    splits = scan_fsdd(fsdd_fixture)
    assert len(splits["test"]) == 3 * 2 * 5 and len(splits["train"]) == 3 * 2 * 2
    assert all(int(Path(c.path).stem.split("_")[2]) <= 4 for c in splits["test"])
    assert {c.label for c in splits["train"]} == {0, 1, 2}


def test_scan_fsdd_refuses_foreign_names(fsdd_fixture: Path) -> None:
    write_wav(fsdd_fixture / "recordings" / "hello.wav", tone(300.0), 8000)
    with pytest.raises(ValueError, match=r"hello\.wav: not an FSDD file name"):
        scan_fsdd(fsdd_fixture)


def test_fsdd_datamodule(fsdd_fixture: Path) -> None:
    dm = AudioData(
        dataset="fsdd", root=str(fsdd_fixture), duration=0.5, val_fraction=0.25, batch_size=4
    )
    dm.setup("fit")
    assert dm.state_summary() == {"train": 9, "val": 3, "test": 30}
    assert dm.class_names == [str(i) for i in range(10)]
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (4, 1, 40, dm.n_frames) and y.dtype == torch.int64
    mean, std = dm.feature_stats  # type: ignore[misc]
    assert -100 < mean < 0 < std


def test_max_train_draws_across_classes(fsdd_fixture: Path) -> None:
    """The training list is sorted by file name, i.e. by digit: a cap must not keep its head
    (which held only the first digits and trained a model that never saw the others)."""
    dm = AudioData(dataset="fsdd", root=str(fsdd_fixture), duration=0.5, val_fraction=0.0)
    dm.setup("fit")
    full = [dm.train_set.label(i) for i in range(len(dm.train_set))]  # type: ignore[union-attr]
    assert full == sorted(full)  # the premise: 4 clips of digit 0, then 1, then 2
    capped = AudioData(
        dataset="fsdd", root=str(fsdd_fixture), duration=0.5, val_fraction=0.0, max_train=6
    )
    capped.setup("fit")
    labels = [capped.train_set.label(i) for i in range(6)]  # type: ignore[union-attr]
    assert len(capped.train_set) == 6 and set(labels) == {0, 1, 2}  # type: ignore[arg-type]


def test_folder_carves_a_test_split_and_resamples(class_folder: Path) -> None:
    splits, names = scan_wav_folder(class_folder)
    assert names == ["high", "low"] and len(splits["all"]) == 20
    dm = AudioData(
        dataset="folder", root=str(class_folder), sample_rate=8000, duration=0.5, test_fraction=0.25
    )
    dm.setup("fit")
    assert sum(dm.state_summary().values()) == 20 and dm.state_summary()["test"] == 5
    x, y = dm.test_set[0]
    band = x[0].mean(-1).argmax()  # 400 Hz is a low band, 3000 Hz a high one
    assert (int(band) > 20) == (dm.class_names[y] == "high")


def test_folder_with_a_class_without_wavs(class_folder: Path) -> None:
    (class_folder / "empty").mkdir()
    with pytest.raises(ValueError, match=r"empty holds no .wav files"):
        scan_wav_folder(class_folder)


def test_clip_far_longer_than_duration_is_an_error(class_folder: Path) -> None:
    write_wav(class_folder / "low" / "long.wav", tone(400.0, sr=16000, seconds=3.0), 16000)
    dm = AudioData(
        dataset="folder",
        root=str(class_folder),
        duration=0.5,
        max_length_factor=4.0,
        test_fraction=0.5,
    )
    dm.setup("fit")
    datasets = [dm.train_set, dm.val_set, dm.test_set]
    with pytest.raises(ValueError, match=r"long\.wav: .* 6\.0x the configured clip length"):
        for ds in datasets:
            for i in range(len(ds)):  # type: ignore[arg-type]
                ds[i]  # type: ignore[index]


def test_bad_files_in_predict_are_named(tmp_path: Path) -> None:
    write_wav(tmp_path / "ok.wav", tone(500.0), 8000)
    (tmp_path / "broken.wav").write_bytes(b"not audio at all")
    dm = AudioData(predict_path=str(tmp_path))
    dm.setup("predict")
    assert [p.name for p in dm.predict_paths] == ["broken.wav", "ok.wav"]
    with pytest.raises(ValueError, match=r"broken\.wav: not a RIFF WAV"):
        dm.predict_set[0]  # type: ignore[index]
    assert list_wavs(tmp_path / "ok.wav") == [tmp_path / "ok.wav"]
    (tmp_path / "nothing").mkdir()
    with pytest.raises(FileNotFoundError, match=r"nothing holds no .wav files"):
        list_wavs(tmp_path / "nothing")


def _fake_speech_commands(root: Path) -> Path:
    folder = root / "SpeechCommands" / "speech_commands_v0.02"
    for word in ("yes", "no", "bird", "cat"):
        for i in range(4):
            (folder / word).mkdir(parents=True, exist_ok=True)
            write_wav(
                folder / word / f"spk{i}_nohash_0.wav",
                tone(300.0 + 50 * i, sr=16000, seconds=1.0),
                16000,
            )
    (folder / "_background_noise_").mkdir()
    write_wav(
        folder / "_background_noise_" / "white.wav", 0.1 * torch.randn(16000 * 20).numpy(), 16000
    )
    (folder / "validation_list.txt").write_text("yes/spk1_nohash_0.wav\nbird/spk1_nohash_0.wav\n")
    (folder / "testing_list.txt").write_text(
        "yes/spk2_nohash_0.wav\nno/spk2_nohash_0.wav\ncat/spk2_nohash_0.wav\n"
    )
    return folder


def test_speech_commands_35_and_12(tmp_path: Path) -> None:
    folder = _fake_speech_commands(tmp_path)
    splits, names = scan_speech_commands(folder, "35")
    assert names == ["bird", "cat", "no", "yes"]
    assert (len(splits["train"]), len(splits["val"]), len(splits["test"])) == (11, 2, 3)
    splits, names = scan_speech_commands(folder, "12")
    assert names[-2:] == ["_unknown_", "_silence_"] and len(names) == 12
    unknown = {c.label for c in splits["test"] if "cat" in c.path}
    assert unknown == {10}
    silence = [c for c in splits["train"] if c.label == 11]
    assert silence and all(0.0 <= c.start < 0.8 for c in silence)  # type: ignore[operator]
    dm = AudioData(
        dataset="speech_commands",
        root=str(tmp_path),
        subset="12",
        sample_rate=16000,
        download=False,
    )
    dm.setup("fit")
    x, y = dm.train_set[len(dm.train_set) - 1]  # type: ignore[arg-type]
    assert y == 11 and x.shape == (1, 40, dm.n_frames)


def test_speech_commands_absent_without_download(tmp_path: Path) -> None:
    dm = AudioData(dataset="speech_commands", root=str(tmp_path), download=False)
    with pytest.raises(FileNotFoundError, match="Speech Commands v2 not found"):
        dm.setup("fit")


def test_unknown_dataset_and_missing_fsdd(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError, match=r"unknown --data.dataset"):
        AudioData(dataset="esc50")
    monkeypatch.delenv("ATTNLAB_DATA_DIR", raising=False)
    with pytest.raises(FileNotFoundError, match=r"FSDD needs --data.root"):
        AudioData(dataset="fsdd").setup("fit")


@pytest.mark.data
def test_real_fsdd_split() -> None:
    splits = scan_fsdd(data_dir("fsdd"))
    assert len(splits["train"]) == 2700 and len(splits["test"]) == 300
    assert sorted({c.label for c in splits["test"]}) == list(range(10))


def _short_clips() -> ClipDataset:
    """Eight 0.25 s clips in a 1 s window: training draws where each one sits (the time shift)."""
    front = FrontEnd(FrontEndConfig(sample_rate=8000, duration=1.0))
    clips = torch.stack(
        [
            torch.as_tensor(tone(300.0 + 100 * i, seconds=0.25), dtype=torch.float32)
            for i in range(8)
        ]
    )  # (8, 2000)
    return ClipDataset(clips, torch.arange(8), front, train=True, max_length_factor=4.0)


def _shifts(batches: list[torch.Tensor]) -> torch.Tensor:
    """The first loud frame of each clip: where the shift put it."""
    features = torch.cat(batches)[:, 0]  # (N, n_mels, frames)
    return (features.amax(dim=1) > features.amin() + 40).float().argmax(dim=1)


def test_time_shift_replays_from_a_restored_random_state() -> None:
    """A resumed run restores torch's generator from the checkpoint: the shifts must follow it."""
    ds = _short_clips()
    torch.manual_seed(0)
    state = torch.get_rng_state()
    first = _shifts([ds[i][0][None] for i in range(len(ds))])
    torch.set_rng_state(state)
    again = _shifts([ds[i][0][None] for i in range(len(ds))])
    assert torch.equal(first, again)
    assert len(set(first.tolist())) > 1  # really shifted, not all at one offset


def test_time_shift_differs_across_epochs_with_workers() -> None:
    """Each epoch's workers draw new shifts (a generator copied into the workers would repeat)."""
    torch.manual_seed(0)
    loader = DataLoader(_short_clips(), batch_size=4, num_workers=2)
    epochs = [_shifts([x for x, _ in loader]) for _ in range(2)]
    assert not torch.equal(epochs[0], epochs[1])
