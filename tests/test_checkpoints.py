"""Checkpoint files: nothing a user loads runs code; a save killed midway leaves the previous file intact."""

import os
import signal
import subprocess
import sys
import textwrap

import pytest
import torch

from fcn_kernels._io import atomic_write, load_weights
from fcn_kernels.app.checkpoint import load_checkpoint, save_checkpoint
from fcn_kernels.app.cli import main

TINY = ["--width", "0.03125", "--image-size", "32", "--n-class", "3", "--val-size", "2", "--no-progress"]


class _MakesAFile:
    """Unpickling this calls open(path, "w"): a stand-in for any code a crafted .pth could run."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


@pytest.fixture
def crafted(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "crafted.pth"
    torch.save({"model_state_dict": {"conv1_1.weight": _MakesAFile(marker)}}, path)
    assert not marker.exists()
    return path, marker


@pytest.mark.parametrize("command", ["init-from", "eval", "resume"])
def test_crafted_pickle_is_refused_not_run(tmp_path, capsys, crafted, command):
    path, marker = crafted
    argv = {
        "init-from": ["train", "--init-from", str(path), "--iters", "1", "--train-size", "2"],
        "eval": ["eval", "--checkpoint", str(path), "--model", "fcn8s"],
        "resume": ["train", "--resume", str(path)],
    }[command]
    assert main([*argv, *TINY, "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"refused to load {str(path)!r}" in err and "nothing was executed" in err
    assert "builtins.open" in err or "io.open" in err  # names what it refused
    assert not marker.exists()
    with pytest.raises(ValueError, match="refused to load"):
        load_weights(path)
    assert not marker.exists()


def test_own_checkpoint_loads_with_weights_only(tmp_path):
    out = tmp_path / "run"
    assert (
        main(
            [
                "train",
                *TINY,
                "--train-size",
                "2",
                "--batch-size",
                "2",
                "--iters",
                "2",
                "--sample-p",
                "0.5",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    ckpt = torch.load(out / "checkpoint.pt", map_location="cpu", weights_only=True)
    assert ckpt["step"] == 2 and isinstance(ckpt["rng"][0]["torch"], torch.Tensor)
    assert ckpt["config"]["iters"] == 2 and ckpt["written_by"] == "train"
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint.pt", "metrics.json", "overlay.png"]


def test_text_file_is_unreadable_not_refused(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(ValueError, match="not a complete file written by torch.save"):
        load_weights(tmp_path / "notes.txt")


def test_killed_save_leaves_the_previous_checkpoint(tmp_path):
    path = tmp_path / "checkpoint.pt"
    good = {"step": 3, "w": torch.arange(10.0)}
    save_checkpoint(path, good)
    # a process that dies (SIGKILL) halfway through writing a large checkpoint over it
    script = textwrap.dedent(f"""
        import os, signal, torch
        import fcn_kernels.app.checkpoint as ck
        real_save = torch.save
        def dying_save(obj, f):
            real_save(obj, f)
            f.flush()
            f.truncate(f.tell() // 2)
            os.fsync(f.fileno())
            os.kill(os.getpid(), signal.SIGKILL)
        ck.torch.save = dying_save
        ck.save_checkpoint({str(path)!r}, {{"step": 4, "w": torch.zeros(2_000_000)}})
    """)
    proc = subprocess.run(
        [sys.executable, "-c", script],
        env=dict(os.environ, PYTHONPATH=os.getcwd()),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    left = [p for p in tmp_path.iterdir() if p.name != "checkpoint.pt"]
    assert len(left) == 1 and left[0].name.startswith(".checkpoint.pt.") and left[0].suffix == ".tmp"
    assert left[0].stat().st_size > 1_000_000  # it did die in the middle of the big write
    back = load_checkpoint(path)
    assert back["step"] == 3 and torch.equal(back["w"], good["w"])


def test_atomic_write_error_keeps_old_file(tmp_path):
    path = tmp_path / "metrics.json"
    path.write_text("old")
    with pytest.raises(RuntimeError, match="boom"):
        with atomic_write(path, "w") as f:
            f.write("half")
            raise RuntimeError("boom")
    assert path.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["metrics.json"]


@pytest.mark.parametrize("umask", [0o022, 0o077], ids=["umask022", "umask077"])
@pytest.mark.parametrize("read_by", ["proc", "os.umask"])
def test_written_files_follow_the_umask(tmp_path, monkeypatch, umask, read_by):
    """Checkpoints, metrics (JSON), overlays, label PNGs and exports (atomic_path) get 0o666 less the umask
    like any new file, not the temporary file's 0o600; the umask read through /proc or, where there is none,
    through os.umask (which must be left as it was)."""
    import numpy as np

    from fcn_kernels import _io
    from fcn_kernels.data import save_overlay, write_voc_label

    if read_by == "os.umask":
        monkeypatch.setattr(_io, "_STATUS", str(tmp_path / "no-proc"))
    written = {
        "checkpoint.pt": lambda p: save_checkpoint(p, {"model": {"w": torch.zeros(2)}}),
        "metrics.json": lambda p: _io.write_json(p, {"miou": 0.5}),
        "overlay.png": lambda p: save_overlay(p, [[np.zeros((4, 4, 3), np.uint8)]]),
        "label.png": lambda p: _write_label(p, write_voc_label),
        "model.onnx": lambda p: _write_by_name(p, _io),
    }
    before = os.umask(umask)
    try:
        for name, write in written.items():
            write(tmp_path / name)
        assert os.umask(umask) == umask  # reading it left it as it was
    finally:
        os.umask(before)
    modes = {name: oct((tmp_path / name).stat().st_mode & 0o777) for name in written}
    assert modes == {name: oct(0o666 & ~umask) for name in written}


def _write_label(path, write_voc_label):
    import numpy as np

    with atomic_write(path) as f:
        write_voc_label(f, np.zeros((3, 3), np.uint8))


def _write_by_name(path, io):
    with io.atomic_path(path) as tmp:  # the ONNX and AOTInductor writers want a name
        with open(tmp, "wb") as f:
            f.write(b"model")
