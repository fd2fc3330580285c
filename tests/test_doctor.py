"""`fcn-kernels doctor`: passes on this build, fails (exit 1) when a backend is wrong, writes the report."""

import json
import os
import subprocess
import sys

import pytest
import torch

from fcn_kernels import _ext
from fcn_kernels.app import doctor
from fcn_kernels.app.cli import main

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_passes_and_writes_json(tmp_path, capsys):
    path = tmp_path / "doctor.json"
    assert main(["doctor", "--json", str(path)]) == 0
    printed = capsys.readouterr().out
    assert "FAIL" not in printed and printed.rstrip().endswith(f"wrote {path}")
    report = json.loads(path.read_text())
    assert report["passed"] is True
    assert report["build"]["torch"] == torch.__version__
    checks = report["checks"]
    runs = {(c["device"], c["backend"], c["op"], c["dtype"]) for c in checks}
    for backend in ("reference", "cpu"):
        for op in ("upsample_skip", "rarefied_conv2d"):
            assert ("cpu", backend, op, "float32") in runs
    assert ("cpu", "cpu", "rarefied_conv2d", "float64") in runs
    # every case forward and backward, the dense (tl.dot-sized) ones included
    for op in ("upsample_skip", "rarefied_conv2d"):
        cpu = [c for c in checks if c["backend"] == "cpu" and c["op"] == op and c["dtype"] == "float32"]
        assert {c["what"].split()[0] for c in cpu} == {"forward", "backward"}
        assert any(c["case"].startswith("dense 16->16") for c in cpu)
    assert all(c["ok"] and c["error"] <= c["bound"] for c in checks if "bound" in c)
    assert {(t["device"], t["backend"]) for t in report["timings"]} >= {("cpu", "reference"), ("cpu", "cpu")}
    assert all(t["ms"] > 0 for t in report["timings"])


@pytest.mark.skipif(not _ext.has_kernel("upsample_skip", "CPU"), reason="needs the CPU kernels")
def test_fails_when_a_kernel_is_wrong(monkeypatch, tmp_path, capsys):
    ops = torch.ops.fcn_kernels
    real = ops.upsample_skip  # (the namespace holds the op once looked up; monkeypatch restores it)

    def wrong(y):  # a wrong forward; the gradients stay right
        return y + (1e-3 * y.detach().abs() + 1e-3)

    monkeypatch.setattr(ops, "upsample_skip", lambda *a: wrong(real(*a)))
    path = tmp_path / "doctor.json"
    assert doctor.main(["--json", str(path)]) == 1
    assert capsys.readouterr().out.rstrip().splitlines()[-2].endswith("FAIL")
    failed = [c for c in json.loads(path.read_text())["checks"] if not c["ok"]]
    # the forward of the cpu backend's upsample_skip, every case and dtype; its gradients are right
    assert failed and {(c["backend"], c["op"], c["what"]) for c in failed} == {("cpu", "upsample_skip", "forward")}
    assert len(failed) == 2 * len(doctor.UPSAMPLE)


def test_a_backend_that_raises_is_a_failed_check(monkeypatch, capsys):
    def broken(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(torch.ops.fcn_kernels, "rarefied_conv2d", broken)
    rows = doctor.run_checks(out=lambda line: None)
    failed = [r for r in rows if not r["ok"]]
    assert failed and all(
        r["op"] == "rarefied_conv2d" and r["backend"] == "cpu" and "boom" in r["message"] for r in failed
    )


@pytest.mark.skipif(not _ext.has_kernel("upsample_skip", "CUDA"), reason="built without CUDA kernels")
def test_cuda_architectures_of_the_build():
    archs = doctor.cuda_architectures()
    assert archs and all(a.startswith(("sm_", "compute_")) for a in archs)
    info = dict(
        cuda_kernels=["upsample_skip"], cuda_architectures=archs, gpus=[dict(name="a future GPU", capability="12.0")]
    )
    # a GPU newer than every cubin runs only with PTX (TORCH_CUDA_ARCH_LIST "...+PTX")
    [row] = doctor._gpu_code_check(info)
    assert row["ok"] == any(a.startswith("compute_") for a in archs)


def test_gpu_code_rule():
    def check(archs, cap):
        info = dict(cuda_kernels=["x"], cuda_architectures=archs, gpus=[dict(name="g", capability=cap)])
        return doctor._gpu_code_check(info)[0]["ok"]

    assert check(["sm_80", "sm_90"], "9.0") and check(["sm_80"], "8.6") and check(["compute_90"], "10.0")
    assert not check(["sm_80", "sm_90"], "10.0") and not check(["sm_90"], "8.0") and not check(["sm_86"], "8.0")


def test_module_entry_point(tmp_path):
    env = dict(os.environ, PYTHONPATH=ROOT, OMP_NUM_THREADS="1")
    env.pop("TRITON_INTERPRET", None)
    r = subprocess.run(
        [sys.executable, "-m", "fcn_kernels.app.doctor", "--json", str(tmp_path / "d.json")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert "checks, 0 failed: PASS" in r.stdout and (tmp_path / "d.json").exists()


@pytest.mark.parametrize("right", [True, False])
def test_upsample_argmax_is_checked_when_present(monkeypatch, right):
    import fcn_kernels

    def argmax(*args, backend=None, **kwargs):
        scores = fcn_kernels.upsample_skip(*args, backend=backend, **kwargs)
        return scores.argmax(1) if right else scores.argmin(1)

    monkeypatch.setattr(fcn_kernels, "upsample_argmax", argmax, raising=False)
    rows = [r for r in doctor.run_checks(out=lambda line: None) if r["op"] == "upsample_argmax"]
    assert {r["backend"] for r in rows} >= {"reference", "cpu"}
    assert len({r["case"] for r in rows}) == len(doctor.UPSAMPLE)
    assert all(r["ok"] == right for r in rows)


def _jsonl(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_jsonl_has_every_row_as_it_came(tmp_path, capsys):
    path, full = tmp_path / "d.jsonl", tmp_path / "d.json"
    assert doctor.main(["--jsonl", str(path), "--json", str(full)]) == 0
    lines, report = _jsonl(path), json.loads(full.read_text())
    assert [line["kind"] for line in lines] == (
        ["build"] + ["check"] * len(report["checks"]) + ["timing"] * len(report["timings"]) + ["summary"]
    )

    def strip(line):
        return {k: v for k, v in line.items() if k != "kind"}

    assert [strip(line) for line in lines if line["kind"] == "check"] == report["checks"]
    assert lines[0]["torch"] == torch.__version__ and lines[-1]["passed"] is True and lines[-1]["not_run"] == 0


def test_a_run_cut_short_keeps_the_lines_written(monkeypatch, tmp_path, capsys):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt  # as a timeout's signal would end the run: no report at the end

    monkeypatch.setattr(doctor, "check_argmax", interrupted)
    path = tmp_path / "d.jsonl"
    with pytest.raises(KeyboardInterrupt):
        doctor.main(["--jsonl", str(path)])
    lines = _jsonl(path)
    assert lines[0]["kind"] == "build" and lines[-1]["kind"] == "check"
    assert len(lines) - 1 == 2 * len(doctor.UPSAMPLE + doctor.RAREFIED)  # the reference's checks up to argmax
    assert all(line["ok"] for line in lines[1:])


def test_after_an_unusable_device_the_rest_is_not_run(monkeypatch, tmp_path, capsys):
    """A CUDA error that breaks the device's context (an illegal memory access) fails one check; every later
    check on that device is reported as not run, not as one more failure (simulated here on the CPU)."""
    broken = []

    def illegal_access(*args, **kwargs):
        broken.append(1)
        raise RuntimeError("CUDA error: an illegal memory access was encountered")

    monkeypatch.setattr(torch.ops.fcn_kernels, "rarefied_conv2d", illegal_access)
    monkeypatch.setattr(doctor, "_context_usable", lambda device: not broken)
    path = tmp_path / "d.jsonl"
    assert doctor.main(["--jsonl", str(path)]) == 1
    printed = capsys.readouterr().out.splitlines()
    rows = [line for line in _jsonl(path) if line["kind"] in ("check", "timing")]
    first = next(i for i, r in enumerate(rows) if not r["ok"])
    assert rows[first]["what"] == "raised" and "illegal memory access" in rows[first]["message"]
    assert rows[first]["backend"] == "cpu" and rows[first]["op"] == "rarefied_conv2d"
    assert all(r["ok"] for r in rows[:first])
    later = rows[first + 1 :]
    assert later and all(r.get("not_run") and not r["ok"] for r in later)
    assert {r["kind"] for r in later} == {"check", "timing"}
    summary = _jsonl(path)[-1]
    assert summary["failed"] == 1 and summary["not_run"] == len(later) and not summary["passed"]
    assert "cpu" in summary["lost"] and "illegal memory access" in summary["lost"]["cpu"]
    assert sum(line.endswith("  FAIL") for line in printed) == 1  # the one check that failed
    assert sum(line.endswith("NOT RUN") for line in printed) == len(later)
    assert printed[-1].endswith(f"1 failed, {len(later)} not run (after the CUDA error above): FAIL")


def test_triton_is_checked_in_float32_only_on_a_gpu(monkeypatch):
    monkeypatch.setattr(doctor.backends, "available_backends", lambda: ["reference", "cuda", "triton"])
    assert dict(doctor.backends_on(torch.device("cuda", 0)))["triton"] == (torch.float32,)
