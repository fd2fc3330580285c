"""`fcn-kernels train / eval / demo` end to end, on a tiny model and tiny images."""

import json

import pytest
import torch
from PIL import Image

from _helpers.cli_args import TINY_MODEL, cli
from _helpers.voc_tree import write_voc
from fcn_kernels.app.cli import main

TINY = cli(f"{TINY_MODEL} --no-progress")
DEMO_TINY = cli("--iters 3 --width 0.03125 --image-size 32 --train-size 8 --val-size 3 --no-progress")


def train(out, *extra):
    argv = cli("train --data synthetic --train-size 6 --val-size 2 --batch-size 2 --iters 4 --optimizer adam --lr 1e-3")
    return main([*argv, *TINY, "--out", str(out), *extra])


def sd(path):
    return torch.load(path, map_location="cpu", weights_only=True)


def test_demo_pipeline_shortened(tmp_path, capsys):
    out = tmp_path / "demo"
    rc = main(["demo", "--out", str(out), *DEMO_TINY, "--batch-size", "2"])
    assert rc == 0
    text = capsys.readouterr().out
    m = json.loads((out / "metrics.json").read_text())
    for k in ("pixel_acc", "mean_acc", "mean_iu", "fw_iu"):
        assert 0.0 <= m[k] <= 1.0
    assert m["step"] == 3 and m["n_images"] == 3 and m["n_pixels"] == 3 * 32 * 32
    assert set(m["per_class_iu"]) == {"background", "disk", "square", "triangle"}
    assert m["model"]["arch"] == "fcn8s" and m["fused"] is True
    assert (out / "checkpoint.pt").is_file()
    pic = Image.open(out / "overlay.png")
    assert pic.mode == "RGB" and pic.width > 2 * pic.height / 3  # 3 panels side by side, 3 rows
    assert f"overlay written to {out / 'overlay.png'}" in text and "mean IU" in text


def test_resume_is_exact(tmp_path):
    extra = ["--dropout", "0.5", "--sample-p", "0.5", "--flip", "--train-size", "4"]  # every RNG in play
    assert train(tmp_path / "a", *extra) == 0
    # stop after the first step (a zero time budget), then continue to the end
    assert train(tmp_path / "b", *extra, "--max-seconds", "0") == 0
    b = sd(tmp_path / "b" / "checkpoint.pt")
    assert b["step"] == 1
    # the options come back from the checkpoint, the output folder is the checkpoint's
    assert main(["train", "--resume", str(tmp_path / "b" / "checkpoint.pt"), "--no-progress"]) == 0
    a, b = sd(tmp_path / "a" / "checkpoint.pt"), sd(tmp_path / "b" / "checkpoint.pt")
    assert a["step"] == b["step"] == 4 and a["epoch"] == b["epoch"] == 1
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    ma = json.loads((tmp_path / "a" / "metrics.json").read_text())
    mb = json.loads((tmp_path / "b" / "metrics.json").read_text())
    assert ma["mean_iu"] == mb["mean_iu"] and ma["final_loss"] == mb["final_loss"]


def test_no_overwrite_and_errors(tmp_path, capsys):
    out = tmp_path / "run"
    assert train(out) == 0
    before = (out / "checkpoint.pt").read_bytes()
    capsys.readouterr()
    assert train(out, "--seed", "1") == 2
    assert "already exists; pass --overwrite" in capsys.readouterr().err
    assert (out / "checkpoint.pt").read_bytes() == before
    assert train(out, "--seed", "1", "--overwrite") == 0
    assert (out / "checkpoint.pt").read_bytes() != before
    ckpt = str(out / "checkpoint.pt")

    # a checkpoint of another architecture
    assert main(["eval", "--checkpoint", ckpt, "--model", "fcn16s", "--out", str(tmp_path / "e"), *TINY[4:]]) == 2
    err = capsys.readouterr().err
    assert "another architecture" in err and "arch: checkpoint has 'fcn8s', asked for 'fcn16s'" in err
    assert train(tmp_path / "r", "--resume", ckpt, "--width", "0.0625") == 2
    assert "another architecture" in capsys.readouterr().err
    # weights that do not fit the model
    bad = sd(ckpt)
    bad["model"]["score_fr.weight"] = torch.zeros(5, 1, 1, 1)
    torch.save(bad, tmp_path / "bad.pt")
    assert main(["eval", "--checkpoint", str(tmp_path / "bad.pt"), "--out", str(tmp_path / "e")]) == 2
    assert "does not fit the model" in capsys.readouterr().err
    torch.save({"foo": 1}, tmp_path / "other.pt")
    assert train(tmp_path / "r", "--resume", str(tmp_path / "other.pt")) == 2
    assert "is not an fcn-kernels checkpoint" in capsys.readouterr().err
    assert main(["eval", "--checkpoint", str(tmp_path / "missing.pt"), "--out", str(tmp_path / "e")]) == 2
    assert "does not exist" in capsys.readouterr().err

    # missing or malformed data directories
    assert main(["train", "--data", str(tmp_path / "nowhere"), "--iters", "1", "--out", str(tmp_path / "v")]) == 2
    assert "does not exist" in capsys.readouterr().err
    (tmp_path / "notvoc").mkdir()
    assert main(["train", "--data", str(tmp_path / "notvoc"), "--iters", "1", "--out", str(tmp_path / "v")]) == 2
    assert "not a VOC-format directory" in capsys.readouterr().err


def test_eval_fused_and_stock_agree(tmp_path):
    assert train(tmp_path / "run") == 0
    trained = json.loads((tmp_path / "run" / "metrics.json").read_text())
    for flag in ("--fused", "--no-fused"):
        out = tmp_path / flag
        assert (
            main(
                [
                    "eval",
                    "--checkpoint",
                    str(tmp_path / "run" / "checkpoint.pt"),
                    "--data",
                    "synthetic",
                    "--image-size",
                    "32",
                    "--val-size",
                    "2",
                    "--out",
                    str(out),
                    "--no-progress",
                    flag,
                ]
            )
            == 0
        )
        m = json.loads((out / "metrics.json").read_text())
        assert m["mean_iu"] == pytest.approx(trained["mean_iu"], abs=1e-6)
        assert m["fused"] is (flag == "--fused") and (out / "overlay.png").is_file()


def test_train_on_voc_tree(tmp_path, capsys):
    root = tmp_path / "voc"
    write_voc(root, n_train=4, n_val=2, size=(24, 30))
    args = cli("train --width 0.03125 --batch-size 2 --iters 2 --no-progress --lr 1e-3 --data", root)
    assert main([*args, "--out", str(tmp_path / "run")]) == 0  # images of different sizes, padded batches
    m = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert m["model"]["n_class"] == 21 and len(m["per_class_iu"]) == 21 and "aeroplane" in m["per_class_iu"]
    capsys.readouterr()
    # with fewer classes, VOC's labels fall outside [0, n_class)
    assert main([*args, "--n-class", "5", "--out", str(tmp_path / "run5")]) == 2
    assert "are outside [0, 5)" in capsys.readouterr().err


@pytest.mark.parametrize("fused", ["--fused", "--no-fused"])
def test_amp_bf16(tmp_path, fused):
    assert train(tmp_path / "amp", "--amp", "--iters", "2", fused) == 0
    m = json.loads((tmp_path / "amp" / "metrics.json").read_text())
    assert m["amp"] is True and m["final_loss"] == m["final_loss"]  # not NaN


def test_train_fused_takes_the_loss_from_the_coarse_scores(tmp_path, monkeypatch):
    """--fused trains through FCN*.loss's upsample_cross_entropy (no full-resolution scores), --no-fused through
    the stock composition; the same seed gives both the same first loss, sampled and class-weighted."""
    from fcn_kernels.models import fcn as fcn_module

    calls, fused_op = [], fcn_module.upsample_cross_entropy

    def counted(*args, **kwargs):
        calls.append(kwargs["reduction"])
        return fused_op(*args, **kwargs)

    monkeypatch.setattr(fcn_module, "upsample_cross_entropy", counted)
    first = {}
    for flag in ("--fused", "--no-fused"):
        calls.clear()
        extra = ("--iters", "2", "--log-every", "1", "--sample-p", "0.5", "--class-weights", "median")
        assert train(tmp_path / flag, flag, *extra) == 0
        m = json.loads((tmp_path / flag / "metrics.json").read_text())
        assert m["fused"] is (flag == "--fused") and len(m["loss_history"]) == 2
        assert calls == (["sum", "sum"] if flag == "--fused" else [])
        first[flag] = m["loss_history"][0]["loss"]
    assert first["--fused"] == pytest.approx(first["--no-fused"], rel=1e-4)


def test_class_weights_option(tmp_path, capsys):
    assert train(tmp_path / "cw", "--class-weights", "median", "--iters", "1") == 0
    assert "class weights:" in capsys.readouterr().out


def test_demo_runs_twice_and_is_deterministic(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), *DEMO_TINY]) == 0
    first = json.loads((out / "metrics.json").read_text())
    assert main(["demo", "--out", str(out), *DEMO_TINY]) == 0  # replaces its own outputs
    second = json.loads((out / "metrics.json").read_text())
    for k in ("pixel_acc", "mean_acc", "mean_iu", "fw_iu", "final_loss", "rank_weight_digests"):
        assert first[k] == second[k], k
    assert [h["loss"] for h in first["loss_history"]] == [h["loss"] for h in second["loss_history"]]
    # a train run's checkpoint is not the demo's to replace
    assert train(tmp_path / "mine") == 0
    before = (tmp_path / "mine" / "checkpoint.pt").read_bytes()
    capsys.readouterr()
    assert main(["demo", "--out", str(tmp_path / "mine"), *DEMO_TINY]) == 2
    assert "was not written by the demo" in capsys.readouterr().err
    assert (tmp_path / "mine" / "checkpoint.pt").read_bytes() == before


def test_help_shows_every_default_once(capsys):
    import dataclasses

    from fcn_kernels.app.commands.demo import DemoConfig
    from fcn_kernels.app.config import TrainConfig, flag

    for cmd in ("train", "eval", "demo"):
        with pytest.raises(SystemExit):
            main([cmd, "--help"])
        text = " ".join(capsys.readouterr().out.split())
        assert "(default: " in text
        if cmd == "train":
            for f in dataclasses.fields(TrainConfig):
                assert flag(f.name) in text, f.name
            assert "--lr LR learning rate (default: 0.0001)" in text
            assert "--n-class N_CLASS classes incl. background (synthetic: 2 to 7) (default: 4 on synthetic" in text
        if cmd == "demo":
            assert f"(default: {DemoConfig.iters})" in text and "(default: fcn-kernels-demo)" in text


@pytest.mark.parametrize(
    "argv, words",
    [
        (["--n-class", "30"], "--n-class 30: the synthetic set has 2 to 7 classes"),
        (["--n-class", "1"], "--n-class 1: must be >= 2"),
        (["--batch-size", "0"], "--batch-size 0: must be >= 1"),
        (["--width", "0"], "--width 0.0: must be > 0"),
        (["--iters", "0"], "--iters 0: must be >= 1"),
        (["--log-every", "0"], "--log-every 0: must be >= 1"),
        (["--sample-p", "1.5"], "--sample-p 1.5: must be <= 1"),
        (["--val-split", "bogus"], "--val-split 'bogus': the synthetic set's splits are train, val, test"),
        (["--device", "mps"], "--device mps: only cpu and cuda devices are supported"),
        (["--init-from", "/nonexistent.pth"], "'/nonexistent.pth' does not exist"),
    ],
)
def test_bad_options_are_one_line(tmp_path, capsys, argv, words):
    assert train(tmp_path / "run", *argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and words in err, err
    assert not (tmp_path / "run" / "checkpoint.pt").exists()


def test_eval_bad_options_are_one_line(tmp_path, capsys):
    assert train(tmp_path / "run") == 0
    ckpt = str(tmp_path / "run" / "checkpoint.pt")
    capsys.readouterr()
    for argv, words in (
        (["--split", "bogus"], "--split 'bogus'"),
        (["--n-class", "30"], "another architecture"),
        (["--data", str(tmp_path / "nowhere")], "does not exist"),
    ):
        assert main(["eval", "--checkpoint", ckpt, "--out", str(tmp_path / "e"), "--no-progress", *argv]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and words in err, err
