"""attnlab-audio: short audio classification with an Audio Spectrogram Transformer (`attnlab audio`)."""

from __future__ import annotations

from pathlib import Path

from attnlab import App
from attnlab.app import MatrixDomain, SuiteCase

from .audio_io import load_audio, read_wav, write_wav
from .data import AudioData, make_dtmf, scan_fsdd, scan_speech_commands, scan_wav_folder
from .draw import atlas, draw
from .features import FrontEnd, FrontEndConfig, SpecAugment
from .model import ASTConfig, AudioSpectrogramTransformer, CNNBaseline, CNNConfig, create_model
from .module import AudioModule

__all__ = [
    "ASTConfig",
    "AudioData",
    "AudioModule",
    "AudioSpectrogramTransformer",
    "CNNBaseline",
    "CNNConfig",
    "FrontEnd",
    "FrontEndConfig",
    "SpecAugment",
    "app",
    "create_model",
    "load_audio",
    "make_dtmf",
    "read_wav",
    "scan_fsdd",
    "scan_speech_commands",
    "scan_wav_folder",
    "write_wav",
]

app = App(
    name="audio",
    module=AudioModule,
    datamodule=AudioData,
    config_dir=Path(__file__).resolve().parents[2] / "configs",
    monitor="val/acc",
    mode="max",
    headline="test/acc",
    draw=draw,
    atlas=atlas,
    description="short audio classification: Audio Spectrogram Transformer vs a CNN on log-mels",
    bench_order=50,
    matrix=MatrixDomain(
        config="quick",
        data=None,
        label="built-in DTMF-style tones",
        fallback_label="built-in DTMF-style tones",
        metric="test/acc",
        mode="max",
        budget_cpu_s=10.0,  # the quick config's whole run: ~10 CPU s of training
        window=6,
    ),
    suite=SuiteCase(
        small_data=("--data.n_synthetic", "200"),  # 20 validation clips
        ddp_metric="val/loss",
        side_data="class_names",
    ),
)
