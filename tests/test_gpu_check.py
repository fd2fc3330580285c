"""benchmarks/gpu_check.sh: the budget (--plan), the stage selections (--count, under --cpu-smoke's semantics),
and the staging with a stand-in interpreter (fast): every stage runs and logs, a failing stage does not stop
the later ones, every GPU stage pins Triton's autotuning, the summary has each stage's rc and seconds, the
tarball holds the folder, the exit status tells. The real stages run on CPU in CI:
`bash benchmarks/gpu_check.sh --cpu-smoke` (scripts/test.sh)."""

import os
import re
import shutil
import subprocess
import sys
import tarfile

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "benchmarks", "gpu_check.sh")
STAGES = [
    "build",
    "doctor",
    "cuda-tests",
    "triton-tests",
    "memcheck",
    "racecheck",
    "initcheck",
    "head-bench",
    "rarefied-bench",
    "loss-bench",
]
SMOKE_STAGES = [s for s in STAGES if s not in ("racecheck", "initcheck")]
AIM = 420  # seconds: the aim of one GPU call (its hard limit is 590 s)

pytestmark = pytest.mark.skipif(
    shutil.which("bash") is None or shutil.which("timeout") is None, reason="needs bash and timeout"
)


def fake_tools(tmp_path, fail_on):
    """An 'interpreter' and a 'compute-sanitizer' that record the stage, the autotune switch and their
    arguments, and fail when the arguments contain `fail_on`."""
    calls = tmp_path / "calls.txt"
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    record = (
        f'#!/usr/bin/env bash\necho "${{STAGE:-}}|${{FCN_KERNELS_TRITON_AUTOTUNE:-unset}}|$(basename $0) $*" '
        f'>> {calls}\ncase "$*" in *{fail_on}*) echo "planted failure"; exit 3 ;; esac\nexit 0\n'
    )
    for name in ("python", "compute-sanitizer"):
        (bin_dir / name).write_text(record)
        (bin_dir / name).chmod(0o755)
    return bin_dir / "python", calls


def run_script(tmp_path, python, *args):
    out = tmp_path / "results"
    env = dict(
        os.environ,
        PYTHON=str(python),
        FCN_GPU_CHECK_OUT=str(out),
        PATH=f"{python.parent}{os.pathsep}{os.environ['PATH']}",
    )
    r = subprocess.run(["bash", SCRIPT, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    return r, out


def summary(out):
    rows = {}
    for line in (out / "summary.txt").read_text().splitlines():
        m = re.fullmatch(r"(\S+)\s+rc=(\d+)\s+(\d+)s", line.strip())
        if m:
            rows[m[1]] = int(m[2])
    return rows


def recorded(calls):
    """[(stage, autotune switch, command line)] of every recorded call."""
    return [tuple(line.split("|", 2)) for line in calls.read_text().splitlines()]


def test_a_failing_stage_does_not_stop_the_others(tmp_path):
    python, calls = fake_tools(tmp_path, "fcn_kernels.app.doctor")
    r, out = run_script(tmp_path, python, "--cpu-smoke")
    assert r.returncode == 1, r.stdout + r.stderr
    rows = summary(out)
    assert list(rows) == SMOKE_STAGES
    assert rows["doctor"] == 3 and all(rc == 0 for name, rc in rows.items() if name != "doctor")
    for name in SMOKE_STAGES:
        assert (out / f"{name}.log").exists(), name
    assert "planted failure" in (out / "doctor.log").read_text()
    lines = [cmd for _, _, cmd in recorded(calls)]
    # the later stages ran, each through the given interpreter (`-m pytest`, never a bare console script),
    # the test stages selected by marker only (-k strings rot)
    assert any(
        cmd.startswith("python -m pytest") and "-m gpu_check and cuda and not triton tests" in cmd for cmd in lines
    )
    assert any(cmd.startswith("python -m pytest") and "-m gpu_check and triton tests" in cmd for cmd in lines)
    assert not any("-m gpu_check" in cmd and " -k " in cmd for cmd in lines)
    assert "python tools/cuda_sanitize.py --device cpu" in lines
    assert any(cmd.startswith("python -m fcn_kernels.app.cli bench --device cpu") for cmd in lines)
    assert any("benchmarks/bench_rarefied_conv2d.py --benchmark-disable" in cmd for cmd in lines)


def test_all_stages_pass_and_the_tarball_holds_every_file(tmp_path):
    python, _ = fake_tools(tmp_path, "no-such-argument")
    r, out = run_script(tmp_path, python, "--cpu-smoke")
    assert r.returncode == 0, r.stdout + r.stderr
    assert summary(out) == {name: 0 for name in SMOKE_STAGES}
    tarball = out / "results.tar.gz"
    assert f"results: {tarball}" in r.stdout
    with tarfile.open(tarball) as tar:
        names = {os.path.normpath(n) for n in tar.getnames()}
    assert {"summary.txt"} | {f"{name}.log" for name in SMOKE_STAGES} <= names and "results.tar.gz" not in names


def test_every_gpu_stage_pins_triton_autotuning(tmp_path):
    """The GPU run (no GPU needed with the stand-ins): every stage runs, and every call in it, the sanitizers'
    included, has FCN_KERNELS_TRITON_AUTOTUNE=0."""
    python, calls = fake_tools(tmp_path, "no-such-argument")
    r, out = run_script(tmp_path, python)
    assert r.returncode == 0, r.stdout + r.stderr
    assert list(summary(out)) == STAGES
    calls = [c for c in recorded(calls) if c[0]]  # (the calls outside any stage: versions, the summary)
    assert {stage for stage, _, _ in calls} == set(STAGES)
    assert all(switch == "0" for _, switch, _ in calls), [c for c in calls if c[1] != "0"]
    assert {stage for stage, _, cmd in calls if cmd.startswith("compute-sanitizer")} == {
        "memcheck",
        "racecheck",
        "initcheck",
    }
    head = [cmd for stage, _, cmd in calls if stage == "head-bench"]
    assert head and all("--device cuda" in cmd and "--backend cuda triton" in cmd for cmd in head)
    assert all("--no-compile" in cmd for cmd in head if "bfloat16" in cmd)
    rarefied = [cmd for stage, _, cmd in calls if stage == "rarefied-bench"]
    assert rarefied and all("not compiled" in cmd for cmd in rarefied)
    losses = [cmd for stage, _, cmd in calls if stage == "loss-bench"]
    assert losses and all("benchmarks/bench_losses.py" in cmd for cmd in losses)


def test_only_runs_the_stages_named(tmp_path):
    python, _ = fake_tools(tmp_path, "no-such-argument")
    r, out = run_script(tmp_path, python, "--only", "doctor,head-bench")
    assert r.returncode == 0, r.stdout + r.stderr
    assert list(summary(out)) == ["doctor", "head-bench"]
    r, _ = run_script(tmp_path, python, "--cpu-smoke", "--only", "racecheck")  # not a smoke stage
    assert r.returncode == 2 and "no stage racecheck" in r.stderr


def test_plan_totals_within_the_aim():
    r = subprocess.run(["bash", SCRIPT, "--plan"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    rows = {m[1]: (int(m[2]), m[3]) for m in re.finditer(r"^(\S+)\s+(\d+)s\s+\S+\s+(.*)$", r.stdout, re.M)}
    total = rows.pop("total")[0]
    assert list(rows) == ["setup"] + STAGES
    assert total == sum(secs for secs, _ in rows.values()) <= AIM
    assert all(len(reason) > 20 for _, reason in rows.values())  # every budget has its estimate beside it


@pytest.mark.slow
def test_stage_selections_are_curated_and_within_budget():
    """The pytest stages' selections (marker gpu_check), collected as --cpu-smoke runs them (the Triton one
    under TRITON_INTERPRET=1): each non-empty and within the test count its budget allows."""
    env = dict(os.environ, PYTHON=sys.executable)
    r = subprocess.run(["bash", SCRIPT, "--count"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    counts = {
        m[1]: (int(m[2]), int(m[3]))
        for m in re.finditer(r"^(\S+): (\d+) tests selected \(budget: at most (\d+)\)", r.stdout, re.M)
    }
    assert set(counts) == {"cuda-tests", "triton-tests"}, r.stdout + r.stderr
    assert all(0 < n <= most for n, most in counts.values()), r.stdout
    assert r.returncode == 0, r.stdout + r.stderr


def test_unknown_option(tmp_path):
    r = subprocess.run(["bash", SCRIPT, "--gpu"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "usage" in r.stderr
