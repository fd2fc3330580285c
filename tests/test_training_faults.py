"""Faults during training: a killed run resumes to the same weights, a NaN loss stops without writing
over the last good checkpoint, a broken data file is one line even from worker processes."""

import math

import pytest
import torch

import fcn_kernels.app.training as training
from _helpers.cli_args import TINY_MODEL, cli
from _helpers.voc_tree import write_voc
from fcn_kernels.app.cli import main
from fcn_kernels.app.factory import build_model, weight_digest

TINY = cli(f"{TINY_MODEL} --train-size 6 --val-size 2 --batch-size 2 --no-progress")
# every random stream in play: dropout, loss sampling, flips, epochs (6 images / batch 2: 3 steps an epoch)
RUN = [*TINY, *cli("--iters 8 --optimizer adam --lr 1e-3 --dropout 0.5 --sample-p 0.5 --flip --checkpoint-every 2")]


def digest(path):
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    model = build_model(ckpt["model_config"])
    model.load_state_dict(ckpt["model"])
    return ckpt["step"], weight_digest(model)


class Killed(BaseException):
    """Stands for the process dying (BaseException: nothing in the loop may catch it)."""


@pytest.mark.parametrize("after_saves", [1, 3])
def test_killed_run_resumes_to_the_same_weights(tmp_path, monkeypatch, after_saves):
    assert main(["train", *RUN, "--out", str(tmp_path / "whole")]) == 0
    want = digest(tmp_path / "whole" / "checkpoint.pt")

    real = training.save_checkpoint
    saves = []

    def save_then_die(path, payload):
        real(path, payload)
        saves.append(payload["step"])
        if len(saves) == after_saves:
            raise Killed  # dies after this checkpoint, anywhere before the next one

    monkeypatch.setattr(training, "save_checkpoint", save_then_die)
    with pytest.raises(Killed):
        main(["train", *RUN, "--out", str(tmp_path / "cut")])
    monkeypatch.setattr(training, "save_checkpoint", real)
    ckpt = tmp_path / "cut" / "checkpoint.pt"
    assert digest(ckpt)[0] == 2 * after_saves
    assert main(["train", "--resume", str(ckpt), "--no-progress"]) == 0
    assert digest(ckpt) == want == (8, want[1])


def test_nan_loss_stops_and_keeps_the_good_checkpoint(tmp_path, monkeypatch, capsys):
    real = training.ModelLoss.forward
    calls = []

    def nan_at_step_5(*args, **kwargs):
        calls.append(1)
        out = real(*args, **kwargs)
        return out * math.nan if len(calls) == 5 else out

    monkeypatch.setattr(training.ModelLoss, "forward", nan_at_step_5)
    out = tmp_path / "run"
    assert main(["train", *RUN, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert "the loss is nan at step 5" in err and "the checkpoint on disk is the one of step 4" in err
    ckpt = torch.load(out / "checkpoint.pt", map_location="cpu", weights_only=True)
    assert ckpt["step"] == 4 and all(torch.isfinite(v).all() for v in ckpt["model"].values())
    assert not (out / "metrics.json").exists()


def test_diverging_lr_never_writes_non_finite_weights(tmp_path, capsys):
    out = tmp_path / "run"
    rc = main(
        [
            "train",
            *TINY,
            "--iters",
            "6",
            "--optimizer",
            "sgd",
            "--lr",
            "1e30",
            "--checkpoint-every",
            "1",
            "--out",
            str(out),
        ]
    )
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1, err
    assert "at step" in err and ("the loss is" in err or "weights are not finite" in err)
    if (out / "checkpoint.pt").exists():
        ckpt = torch.load(out / "checkpoint.pt", map_location="cpu", weights_only=True)
        assert all(torch.isfinite(v).all() for v in ckpt["model"].values())


@pytest.mark.parametrize("workers", ["0", "2"])
def test_broken_image_is_one_line_from_workers_too(tmp_path, capsys, workers):
    root = tmp_path / "voc"
    ids = write_voc(root, n_train=4, n_val=2)
    broken = root / "JPEGImages" / f"{ids['train'][2]}.jpg"
    broken.write_bytes(broken.read_bytes()[:150])
    argv = cli("train --width 0.03125 --batch-size 2 --iters 4 --no-progress --num-workers", workers)
    rc = main([*argv, "--data", str(root), "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1, err
    assert err.startswith(f"fcn-kernels train: error: {broken}: cannot read the image"), err
    assert "worker" not in err and "Traceback" not in err
    assert not (tmp_path / "run" / "checkpoint.pt").exists()
