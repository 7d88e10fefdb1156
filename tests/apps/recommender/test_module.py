import json
import os
import subprocess
import sys
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
from attnlab_recommender import RecDataModule, RecModule

from attnlab.export import export_model

TINY = {"max_len": 12, "dim": 16, "depth": 1, "dropout": 0.0, "attn_dropout": 0.0}


@pytest.mark.parametrize(
    ("model", "loss"), [("sasrec", "ce"), ("sasrec", "bce"), ("sasrec", "gbce"), ("bert4rec", "ce")]
)
def test_losses_finite_with_gradients(model: str, loss: str) -> None:
    module = RecModule(model=model, loss=loss, num_items=30, num_negatives=4, **TINY)
    seq = torch.tensor([[1, 2, 3, 4, 0], [5, 6, 7, 8, 9], [10, 11, 0, 0, 0]])
    value = module._bert4rec_loss(seq) if model == "bert4rec" else module._sasrec_loss(seq)
    assert torch.isfinite(value) and value > 0
    value.backward()
    assert module.net.item_embedding.weight.grad is not None


def test_the_loss_divides_by_the_running_mean_of_positions_a_batch() -> None:
    """Not by the batch's own count: a position weighs the same in a batch of short histories
    as in one of long histories (batches bucketed by length hold very different counts)."""
    torch.manual_seed(0)
    module = RecModule(num_items=30, **TINY).train()
    short = torch.tensor([[1, 2, 3, 0, 0, 0]] * 2)  # 2 x 2 target positions
    long = torch.tensor([[4, 5, 6, 7, 8, 9]] * 3)  # 3 x 5 target positions
    # each batch's summed cross-entropy, from a fresh module (first batch: the plain mean)
    fresh = RecModule(num_items=30, **TINY)
    fresh.load_state_dict(module.state_dict())
    sum_short = fresh._sasrec_loss(short).item() * 4
    fresh.positions_seen = fresh.batches_seen = 0
    sum_long = fresh._sasrec_loss(long).item() * 15

    assert module._sasrec_loss(short).item() == pytest.approx(sum_short / 4)
    assert module._sasrec_loss(long).item() == pytest.approx(sum_long / ((4 + 15) / 2))
    assert module._sasrec_loss(short).item() == pytest.approx(sum_short / ((4 + 15 + 4) / 3))
    assert (module.positions_seen, module.batches_seen) == (23, 3)
    module.eval()  # evaluation neither counts nor changes the denominator
    assert module._sasrec_loss(long).item() == pytest.approx(sum_long / (23 / 3))
    assert (module.positions_seen, module.batches_seen) == (23, 3)


@pytest.mark.parametrize("model", ["sasrec", "bert4rec"])
def test_sampled_items_replace_the_full_softmax(model: str) -> None:
    module = RecModule(model=model, num_items=30, ce_sampled_items=8, **TINY)
    seq = torch.tensor([[1, 2, 3, 4, 0], [5, 6, 7, 8, 9]])
    calls: list[int] = []
    net = module.net
    original = net.sampled_cross_entropy
    net.sampled_cross_entropy = lambda h, t, k, s: calls.append(k) or original(h, t, k, s)  # type: ignore[method-assign]
    loss = module._bert4rec_loss(seq) if model == "bert4rec" else module._sasrec_loss(seq)
    assert calls == [8] and torch.isfinite(loss)
    with pytest.raises(ValueError, match="ce_sampled_items must be >= 0"):
        RecModule(ce_sampled_items=-1)


@pytest.mark.parametrize("sampled", [0, 12])
def test_label_smoothing_reaches_the_loss(sampled: int) -> None:
    seq = torch.tensor([[1, 2, 3, 4, 0], [5, 6, 7, 8, 9]])
    plain = RecModule(num_items=30, ce_sampled_items=sampled, **TINY)
    smooth = RecModule(num_items=30, ce_sampled_items=sampled, label_smoothing=0.3, **TINY)
    smooth.load_state_dict(plain.state_dict())
    plain.eval(), smooth.eval()  # no dropout: the two see the same scores
    torch.manual_seed(0)
    loss_plain = plain._sasrec_loss(seq)
    torch.manual_seed(0)
    loss_smooth = smooth._sasrec_loss(seq)
    # a near-uniform untrained model: smoothing changes the loss, but only a little
    assert loss_smooth.item() != pytest.approx(loss_plain.item(), abs=1e-6)
    assert loss_smooth.item() == pytest.approx(loss_plain.item(), rel=0.1)
    with pytest.raises(ValueError, match="label_smoothing must be in"):
        RecModule(label_smoothing=1.0)
    with pytest.raises(ValueError, match="use loss: ce"):
        RecModule(loss="bce", label_smoothing=0.1)


def test_bad_hyperparameters() -> None:
    with pytest.raises(ValueError, match="unknown loss"):
        RecModule(loss="hinge")
    with pytest.raises(ValueError, match="BERT4Rec"):
        RecModule(model="bert4rec", loss="bce")
    with pytest.raises(ValueError, match="unknown model"):
        RecModule(model="gru4rec", num_items=5)


@pytest.mark.slow
@pytest.mark.parametrize("model", ["sasrec", "bert4rec"])
def test_tiny_overfit_memorizes_20_sequences(model: str) -> None:
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    seqs = torch.stack([torch.randperm(40, generator=g)[:6] + 1 for _ in range(20)])  # (20, 6)
    module = RecModule(model=model, num_items=40, lr=1e-2, mask_prob=0.3, **TINY)
    opt = torch.optim.Adam(module.parameters(), lr=1e-2)
    loss_fn = module._bert4rec_loss if model == "bert4rec" else module._sasrec_loss
    for _ in range(300):
        loss = loss_fn(seqs)
        opt.zero_grad()
        loss.backward()
        opt.step()
    module.eval()
    with torch.no_grad():
        top = module(seqs[:, :-1]).argmax(1)
    assert (top == seqs[:, -1]).float().mean() >= 0.9


def _trainer(tmp_path: Path, **kw: object) -> pl.Trainer:
    return pl.Trainer(
        default_root_dir=str(tmp_path),
        accelerator="cpu",
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
        **kw,  # type: ignore[arg-type]
    )


def test_fast_dev_run_and_checkpoint_keeps_item_ids(seq_file: Path, tmp_path: Path) -> None:
    dm = RecDataModule(dataset="sequences", path=str(seq_file), batch_size=2)
    module = RecModule(**TINY)  # num_items comes from the data
    trainer = _trainer(tmp_path, max_epochs=1)
    trainer.fit(module, datamodule=dm)
    assert module.hparams["num_items"] == 7 and module.item_ids == [str(i) for i in range(10, 17)]
    ckpt = tmp_path / "m.ckpt"
    trainer.save_checkpoint(ckpt)
    loaded = RecModule.from_checkpoint(ckpt)
    assert loaded.item_ids == module.item_ids
    # the loss's running position count resumes where it was
    assert module.batches_seen >= 1 and module.positions_seen > module.batches_seen
    assert (loaded.positions_seen, loaded.batches_seen) == (
        module.positions_seen,
        module.batches_seen,
    )
    hist = torch.tensor([[1, 2, 3]])
    torch.testing.assert_close(loaded(hist), module.eval()(hist))
    other = RecDataModule(dataset="sequences", path=str(seq_file))
    other.load().item_ids[0] = "999"  # a dataset with different raw ids must be refused
    with pytest.raises(ValueError, match="item ids differ"):
        _trainer(tmp_path).validate(loaded, datamodule=other)


def test_checkpoint_from_before_the_embedding_scale_loads_unscaled(
    seq_file: Path, tmp_path: Path
) -> None:
    dm = RecDataModule(dataset="sequences", path=str(seq_file), batch_size=2)
    module = RecModule(scale_item_embeddings=False, **TINY)
    trainer = _trainer(tmp_path, max_epochs=1)
    trainer.fit(module, datamodule=dm)
    ckpt = tmp_path / "old.ckpt"
    trainer.save_checkpoint(ckpt)
    state = torch.load(ckpt, weights_only=False)
    del state["hyper_parameters"]["scale_item_embeddings"]  # as written before the option
    torch.save(state, ckpt)
    loaded = RecModule.from_checkpoint(ckpt)
    assert loaded.net.cfg.scale_item_embeddings is False
    hist = torch.tensor([[1, 2, 3]])
    torch.testing.assert_close(loaded(hist), module.eval()(hist))


def test_predict_history_file_excludes_seen_items(seq_file: Path, tmp_path: Path) -> None:
    hist = tmp_path / "h.json"
    hist.write_text(json.dumps({"alice": ["10", "11"], "bob": [16]}))
    dm = RecDataModule(dataset="sequences", path=str(seq_file), predict_history=str(hist))
    module = RecModule(top_k=3, **TINY)
    trainer = _trainer(tmp_path)
    trainer.predict(module, datamodule=dm)
    lines = (tmp_path / "predictions.csv").read_text().splitlines()
    assert lines[0] == "user,rank,item,score" and len(lines) == 1 + 6
    alice = [line.split(",")[2] for line in lines[1:] if line.startswith("alice")]
    assert len(alice) == 3 and not {"10", "11"} & set(alice)


def test_bert4rec_exports_with_parity(tmp_path: Path) -> None:
    module = RecModule(model="bert4rec", num_items=30, **TINY).eval()
    diff = export_model(
        module.export_model(), module.example_inputs(), "torch-export", tmp_path / "m.pt2"
    )
    assert diff < 1e-4


def _cli(args: list[str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-m", "attnlab.cli", "recsys", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=300,
    )


@pytest.mark.slow
def test_cli_fit_predict_export(tmp_path: Path) -> None:
    run = tmp_path / "run"
    common = ["--data.synthetic", '{"num_users": 200}', "--trainer.limit_train_batches", "3"]
    fit = _cli(
        ["fit", "--config", "quick", "--trainer.max_epochs", "1", "--run_dir", str(run), *common],
        tmp_path,
    )
    assert fit.returncode == 0, fit.stderr[-2000:]
    metrics = json.loads((run / "metrics.json").read_text())
    assert 0 <= metrics["test"]["test/ndcg@10"] <= metrics["test"]["test/hr@10"] <= 1
    assert "test/oracle_ndcg@10" in metrics["test"] and "oracle NDCG@10" in fit.stdout
    assert (run / "checkpoints" / "best.ckpt").is_file()
    assert list((run / "figures").glob("history_attention_*.png"))
    hist = tmp_path / "h.csv"
    hist.write_text("history,item\nh1,5\nh1,17\n")
    pred_dir = tmp_path / "pred"
    pred = _cli(
        [
            "predict",
            "--config",
            "quick",
            "--ckpt_path",
            str(run / "checkpoints" / "best.ckpt"),
            "--run_dir",
            str(pred_dir),
            "--data.predict_history",
            str(hist),
            *common,
        ],
        tmp_path,
    )
    assert pred.returncode == 0, pred.stderr[-2000:]
    rows = (pred_dir / "predictions.csv").read_text().splitlines()
    assert len(rows) == 11 and all(r.split(",")[2] not in ("5", "17") for r in rows[1:])
    module = RecModule.from_checkpoint(run / "checkpoints" / "best.ckpt")
    diff = export_model(
        module.export_model(), module.example_inputs(), "torch-export", tmp_path / "m.pt2"
    )
    assert diff < 1e-4
