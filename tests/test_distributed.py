"""`fcn-kernels train` under torchrun: 2 CPU processes (gloo, loopback) against one process."""

import json
import os
import socket
import subprocess
import sys

import torch

from _helpers.cli_args import TINY_MODEL, cli

TIMEOUT = 300  # seconds for the whole torchrun launch


def _free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


ARGS = cli(
    f"train --data synthetic {TINY_MODEL} --train-size 8 --val-size 3 --batch-size 4 --iters 3 --dropout 0"
    " --optimizer sgd --lr 0.05 --momentum 0.9 --device cpu --no-progress"
)


def test_ddp_two_ranks_match_single_process(tmp_path):
    env = dict(os.environ, GLOO_SOCKET_IFNAME="lo", MASTER_ADDR="127.0.0.1", OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    port = _free_port()
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nnodes",
        "1",
        "--nproc-per-node",
        "2",
        "--master-addr",
        "127.0.0.1",
        "--master-port",
        str(port),
        "-m",
        "fcn_kernels.app.cli",
        *ARGS,
        "--out",
        str(tmp_path / "ddp"),
    ]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=TIMEOUT)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    m = json.loads((tmp_path / "ddp" / "metrics.json").read_text())
    assert m["world_size"] == 2 and m["step"] == 3 and m["n_images"] == 3  # eval sharded, nothing counted twice
    digests = m["rank_weight_digests"]
    assert len(digests) == 2 and digests[0] == digests[1], "the ranks' weights differ"

    from fcn_kernels.app.cli import main

    assert main([*ARGS, "--out", str(tmp_path / "single")]) == 0
    ddp = torch.load(tmp_path / "ddp" / "checkpoint.pt", map_location="cpu", weights_only=True)
    one = torch.load(tmp_path / "single" / "checkpoint.pt", map_location="cpu", weights_only=True)
    assert ddp["world"] == 2 and one["world"] == 1
    assert ddp["model"].keys() == one["model"].keys()
    for k, v in one["model"].items():
        torch.testing.assert_close(ddp["model"][k], v, rtol=1e-4, atol=1e-6, msg=k)
    # training did change the weights (the score layers start at zero)
    assert ddp["model"]["score_fr.weight"].abs().sum() > 0


def test_a_dead_rank_makes_the_other_fail_not_hang(tmp_path):
    """Two ranks started as torchrun would (env://), without torchrun's agent (which would kill the
    survivor itself): SIGKILL rank 1 mid-training; rank 0 must exit with a one-line error in bounded time."""
    import signal
    import time

    port = _free_port()
    procs = []
    for rank in (0, 1):
        env = dict(
            os.environ,
            GLOO_SOCKET_IFNAME="lo",
            MASTER_ADDR="127.0.0.1",
            MASTER_PORT=str(port),
            WORLD_SIZE="2",
            RANK=str(rank),
            LOCAL_RANK=str(rank),
            OMP_NUM_THREADS="1",
            PYTHONUNBUFFERED="1",
        )
        args = [a if a != "3" or i != ARGS.index("--iters") + 1 else "100000" for i, a in enumerate(ARGS)]
        procs.append(
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "fcn_kernels.app.cli",
                    *args,
                    "--dist-timeout",
                    "30",
                    "--out",
                    str(tmp_path / "run"),
                ],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    try:
        line = ""
        deadline = time.monotonic() + 120
        while "training " not in line and time.monotonic() < deadline:
            line = procs[0].stdout.readline()  # rank 0 logs once the process group and DDP are up
        assert "training " in line, procs[0].stderr.read()[-2000:] if procs[0].poll() is not None else "no start"
        time.sleep(1.0)
        procs[1].send_signal(signal.SIGKILL)
        t0 = time.monotonic()
        rc = procs[0].wait(timeout=90)
        waited = time.monotonic() - t0
        err = procs[0].stderr.read().strip()
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    assert rc == 2, err[-2000:]
    last = err.splitlines()[-1]
    assert last.startswith("fcn-kernels train: error: rank 0 of 2: lost the other processes"), err[-2000:]
    assert waited < 60, waited
