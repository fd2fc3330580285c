"""benchmarks/gpu_check.sh's staging, with a stand-in interpreter (fast): every stage runs and logs, a failing
stage does not stop the later ones, the summary has each stage's rc and seconds, the exit status tells.
The real stages run on CPU in CI: `bash benchmarks/gpu_check.sh --cpu-smoke` (scripts/test.sh)."""
import os
import re
import shutil
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "benchmarks", "gpu_check.sh")
SMOKE_STAGES = ["build", "doctor", "cuda-tests", "triton-tests", "memcheck", "head-bench", "rarefied-bench"]

pytestmark = pytest.mark.skipif(shutil.which("bash") is None or shutil.which("timeout") is None,
                                reason="needs bash and timeout")


def fake_python(tmp_path, fail_on):
    """An 'interpreter' that records its arguments and fails when they contain `fail_on`."""
    calls = tmp_path / "calls.txt"
    exe = tmp_path / "python"
    exe.write_text(f'#!/usr/bin/env bash\necho "$*" >> {calls}\n'
                   f'case "$*" in *{fail_on}*) echo "planted failure"; exit 3 ;; esac\nexit 0\n')
    exe.chmod(0o755)
    return exe, calls


def run_smoke(tmp_path, python):
    out = tmp_path / "results"
    env = dict(os.environ, PYTHON=str(python), FCN_GPU_CHECK_OUT=str(out))
    r = subprocess.run(["bash", SCRIPT, "--cpu-smoke"], cwd=ROOT, env=env, capture_output=True, text=True,
                       timeout=300)
    return r, out


def summary(out):
    lines = (out / "summary.txt").read_text().splitlines()
    rows = {}
    for line in lines:
        m = re.fullmatch(r"(\S+)\s+rc=(\d+)\s+(\d+)s", line.strip())
        if m:
            rows[m[1]] = int(m[2])
    return rows


def test_a_failing_stage_does_not_stop_the_others(tmp_path):
    python, calls = fake_python(tmp_path, "fcn_kernels.app.doctor")
    r, out = run_smoke(tmp_path, python)
    assert r.returncode == 1, r.stdout + r.stderr
    rows = summary(out)
    assert list(rows) == SMOKE_STAGES
    assert rows["doctor"] == 3 and all(rc == 0 for name, rc in rows.items() if name != "doctor")
    for name in SMOKE_STAGES:
        assert (out / f"{name}.log").exists(), name
    assert "planted failure" in (out / "doctor.log").read_text()
    recorded = calls.read_text()
    # the later stages ran, each through the given interpreter (`-m pytest`, never a bare console script)
    assert "-m pytest -q -p no:cacheprovider -m cuda tests" in recorded
    assert "tools/cuda_sanitize.py --device cpu" in recorded
    assert "-m fcn_kernels.app.cli bench --device cpu" in recorded
    assert "benchmarks/bench_rarefied_conv2d.py --benchmark-disable" in recorded


def test_all_stages_pass(tmp_path):
    python, _ = fake_python(tmp_path, "no-such-argument")
    r, out = run_smoke(tmp_path, python)
    assert r.returncode == 0, r.stdout + r.stderr
    assert summary(out) == {name: 0 for name in SMOKE_STAGES}


def test_unknown_option(tmp_path):
    r = subprocess.run(["bash", SCRIPT, "--gpu"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "usage" in r.stderr
