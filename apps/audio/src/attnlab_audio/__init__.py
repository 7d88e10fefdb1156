"""attnlab-audio: short audio classification with an Audio Spectrogram Transformer (`attnlab audio`)."""

from __future__ import annotations

from pathlib import Path

from attnlab.app import App, MatrixDomain, SuiteCase, lazy_exports

# Imported on first use (they import torch): `attnlab list` reads `app` without them.
__getattr__ = lazy_exports(
    __name__,
    {
        **dict.fromkeys(("load_audio", "read_wav", "write_wav"), "audio_io"),
        **dict.fromkeys(
            ("AudioData", "make_dtmf", "scan_fsdd", "scan_speech_commands", "scan_wav_folder"),
            "data",
        ),
        **dict.fromkeys(("FrontEnd", "FrontEndConfig", "SpecAugment"), "features"),
        **dict.fromkeys(
            (
                "ASTConfig",
                "AudioSpectrogramTransformer",
                "CNNBaseline",
                "CNNConfig",
                "create_model",
            ),
            "model",
        ),
        "AudioModule": "module",
    },
)

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
    module="attnlab_audio.module:AudioModule",
    datamodule="attnlab_audio.data:AudioData",
    config_dir=Path(__file__).resolve().parents[2] / "configs",
    monitor="val/acc",
    mode="max",
    headline="test/acc",
    draw="attnlab_audio.draw:draw",
    atlas="attnlab_audio.draw:atlas",
    description="short audio classification: Audio Spectrogram Transformer vs a CNN on log-mels",
    bench_order=50,
    matrix=MatrixDomain(
        config="quick",
        data=None,
        label="built-in DTMF-style tones",
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
