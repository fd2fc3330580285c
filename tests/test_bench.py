"""`fcn-kernels bench`: the FCN-8s geometry from the models, one-line errors, documented options, a quiet table."""

import os
import subprocess
import sys

import pytest
import torch

from fcn_kernels.app import bench
from fcn_kernels.app.cli import build_parser, main
from fcn_kernels.models import FCN8s, FCN16s, FCN32s

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _tiny_bench(path, *args):
    """The argv of a quick CPU bench (small image, one repeat, no compile) writing its rows to `path`."""
    argv = "bench --device cpu --weights depthwise --image 40 --repeat 1 --no-compile"
    return [*argv.split(), *args, "--json", str(path)]


def test_fcn8s_stages_are_the_models():
    s1, s2, s3 = bench.fcn8s_stages(500)  # VOC: the Caffe reference's offsets 5, 9 and 31
    assert (s1.in_hw, s1.skip_hw, s1.skip_offset, s1.kernel, s1.stride) == ((16, 16), (44, 44), (5, 5), 4, 2)
    assert (s2.in_hw, s2.skip_hw, s2.skip_offset) == ((34, 34), (88, 88), (9, 9))
    assert (s3.in_hw, s3.out_offset, s3.out_size, s3.kernel, s3.stride) == ((70, 70), (31, 31), (500, 500), 16, 8)
    # any size: the maps a real (narrow) FCN8s computes
    model = FCN8s(n_class=3, width=1 / 32).eval()
    with torch.no_grad():
        score_fr, pool4, pool3 = model.scores(torch.zeros(1, 3, 77, 77))
    s1, s2, s3 = bench.fcn8s_stages(77)
    assert (s1.in_hw, s1.skip_hw, s2.skip_hw) == (score_fr.shape[2:], pool4.shape[2:], pool3.shape[2:])
    assert (s1.skip_offset, s2.skip_offset, s3.out_offset) == (
        model.offsets["pool4"],
        model.offsets["pool3"],
        model.offsets["output"],
    )


def test_fcn_stages_of_the_other_models():
    # VOC, the Caffe references' crops: FCN-16s's upscore16 at 27, FCN-32s's upscore at 19
    p4, up16 = bench.fcn_stages(FCN16s, 500)
    assert (p4.in_hw, p4.skip_hw, p4.skip_offset, p4.kernel, p4.stride) == ((16, 16), (44, 44), (5, 5), 4, 2)
    assert (up16.in_hw, up16.out_offset, up16.out_size, up16.kernel, up16.stride) == (
        (34, 34),
        (27, 27),
        (500, 500),
        32,
        16,
    )
    (up32,) = bench.fcn_stages(FCN32s, 500)
    assert (up32.in_hw, up32.out_offset, up32.out_size, up32.kernel, up32.stride) == (
        (16, 16),
        (19, 19),
        (500, 500),
        64,
        32,
    )
    assert bench.fcn_stages(FCN8s, 77) == bench.fcn8s_stages(77)


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is present")
def test_cuda_without_a_gpu_is_one_line(capsys):
    assert main(["bench", "--device", "cuda", "--no-compile", "--repeat", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "--device cuda" in err and "no CUDA GPU" in err


def test_backend_that_cannot_run_is_one_line(capsys):
    if os.environ.get("TRITON_INTERPRET") == "1":
        pytest.skip("Triton runs on CPU under the interpreter")
    assert main(["bench", "--device", "cpu", "--backend", "triton", "--no-compile", "--repeat", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("fcn-kernels bench: error: --backend triton")


def test_bad_device_is_one_line(capsys):
    assert main(["bench", "--device", "gpu0", "--no-compile"]) == 2
    assert "--device 'gpu0'" in capsys.readouterr().err


def test_every_option_is_documented():
    sub = next(a for a in build_parser()._actions if a.dest == "command").choices["bench"]
    for action in sub._actions:
        assert action.help, f"bench {action.option_strings} has no help"
    text = sub.format_help()
    assert "(default: 500)" in text and "(default: 10)" in text


def test_tiny_table_and_json(tmp_path, capsys):
    path = tmp_path / "b.json"
    assert main(_tiny_bench(path, "--batch", "1")) == 0
    out, err = capsys.readouterr()
    assert err == "" and "fused: IEEE float32; stock: IEEE float32" in out
    import json

    result = json.loads(path.read_text())
    [row] = result["rows"]
    assert result["device_name"].strip() and "bf16:" in result["device_name"]  # the CPU named (peers.cpu_name)
    assert row["arithmetic"] == {"fused": "IEEE float32", "eager": "IEEE float32"} and row["max_err"] < 1e-4


def test_compile_import_logs_nothing():
    """torch.compile imports torch.utils.cpp_extension, which logs "No CUDA runtime is found" on a CUDA build
    without a GPU; the bench imports it quietly first."""
    code = "from fcn_kernels.app import bench; bench._import_cpp_extension_quietly()"
    r = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env=dict(os.environ, PYTHONPATH=ROOT),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0 and r.stdout == "" and "CUDA runtime" not in r.stderr, r.stderr


def test_json_keeps_the_rows_of_a_run_cut_short(tmp_path, monkeypatch, capsys):
    """--json is rewritten as each row is measured: a run cut short (a timeout) keeps the rows before."""
    import json

    real, calls = bench.head_inputs, []

    def inputs(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt  # as a timeout's signal would end the run, during the second row
        return real(*args, **kwargs)

    monkeypatch.setattr(bench, "head_inputs", inputs)
    path = tmp_path / "b.json"
    with pytest.raises(KeyboardInterrupt):
        main(_tiny_bench(path, "--batch", "1", "2"))
    saved = json.loads(path.read_text())
    assert saved["complete"] is False and [row["batch"] for row in saved["rows"]] == [1]
    monkeypatch.setattr(bench, "head_inputs", real)
    assert main(_tiny_bench(path, "--batch", "1", "2", "--backward")) == 0
    saved = json.loads(path.read_text())
    assert saved["complete"] is True and [(r["batch"], r["backward"]) for r in saved["rows"]] == [
        (1, False),
        (2, False),
        (1, True),
        (2, True),
    ]
