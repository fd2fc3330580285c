"""fcn_kernels.export_onnx: standard ONNX ops only, ONNX Runtime and OpenVINO give PyTorch's outputs at
batch and image sizes other than the export's (dynamic shapes)."""

import os

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import fcn_kernels
from fcn_kernels.export import TRAINING_ONLY, TRANSLATIONS, export_onnx, onnx_translations
from fcn_kernels.models import FCN8s

onnx = pytest.importorskip("onnx", reason="onnx is not installed (the deploy extra)")
pytest.importorskip("onnxscript", reason="onnxscript is not installed (the deploy extra)")
ort = pytest.importorskip("onnxruntime", reason="onnxruntime is not installed (the deploy extra)")

RTOL = 1e-4  # the bound for fp32, relative to the output's scale
SIZES = ((2, 3, 50, 77), (1, 3, 97, 61))  # the export uses (1, 3, 64, 64)


def small_fcn8s():
    m = FCN8s(n_class=5, width=1 / 16).eval()
    with torch.no_grad():  # score layers random, so both skips reach the output
        for name in m.score_layer_names():
            getattr(m, name).weight.normal_(0, 0.1)
            getattr(m, name).bias.normal_(0, 0.1)
    return m


def assert_close(actual, expected):
    expected = expected.detach().numpy()
    assert actual.shape == expected.shape
    err = abs(actual - expected).max()
    assert err <= RTOL * abs(expected).max(), f"max error {err:.3g}, output scale {abs(expected).max():.3g}"


def ort_run(path, *inputs):
    s = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    return s.run(None, {i.name: x.numpy() for i, x in zip(s.get_inputs(), inputs)})[0]


def domains_and_ops(path):
    g = onnx.load(path).graph
    return {n.domain for n in g.node}, {n.op_type for n in g.node}


@pytest.fixture(scope="module")
def fcn_file(tmp_path_factory):
    torch.manual_seed(0)
    model = small_fcn8s()
    path = str(tmp_path_factory.mktemp("onnx") / "fcn8s.onnx")
    export_onnx(model, torch.randn(1, 3, 64, 64), path)
    return model, path


def test_fcn8s_standard_ops_only(fcn_file):
    _, path = fcn_file
    proto = onnx.load(path)
    onnx.checker.check_model(proto)
    assert max(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")) >= 17
    domains, ops = domains_and_ops(path)
    assert domains <= {"", "ai.onnx"}, domains
    assert {"ConvTranspose", "Slice", "Add"} <= ops


@pytest.mark.parametrize("shape", SIZES)
def test_fcn8s_onnxruntime_any_size(fcn_file, shape, seed):
    model, path = fcn_file
    x = torch.randn(shape)
    with torch.no_grad():
        assert_close(ort_run(path, x), model(x))


@pytest.mark.parametrize("precision", ["f32"])
def test_fcn8s_openvino_reads_the_file(fcn_file, precision, seed):
    ov = pytest.importorskip("openvino", reason="openvino is not installed (the test extra)")
    model, path = fcn_file
    core = ov.Core()
    compiled = core.compile_model(core.read_model(path), "CPU", {"INFERENCE_PRECISION_HINT": precision})
    for shape in SIZES:
        x = torch.randn(shape)
        with torch.no_grad():
            assert_close(compiled(x.numpy())[0], model(x))


class Ops(nn.Module):
    """Both ops with everything on: bias, groups, a skip, crops at both edges, a rarefied conv. The skip
    is made from x, so every size in the graph follows the input's."""

    def __init__(self):
        super().__init__()
        self.w_up = nn.Parameter(torch.randn(6, 2, 5, 3))  # groups 3: 6 -> 6 channels
        self.b_up = nn.Parameter(torch.randn(6))
        self.w_skip = nn.Parameter(torch.randn(6, 2, 4, 4))
        self.w_conv = nn.Parameter(torch.randn(6, 2, 3, 2))
        self.b_conv = nn.Parameter(torch.randn(6))

    def forward(self, x):
        h = fcn_kernels.rarefied_conv2d(x, self.w_conv, self.b_conv, rarefaction=(2, 3), padding=(2, 1), groups=3)
        skip = fcn_kernels.upsample_skip(x, self.w_skip, stride=3, groups=3)
        # rows: from the first row, skip window at 1; cols: from 1 to the full output's last column
        full_w = (h.shape[3] - 1) * 2 + 3
        y = fcn_kernels.upsample_skip(
            h,
            self.w_up,
            self.b_up,
            skip,
            stride=(3, 2),
            groups=3,
            out_offset=(0, 1),
            out_size=(skip.shape[2] - 1, full_w - 1),
            skip_offset=(1, 0),
        )
        return fcn_kernels.upsample_skip(y, self.w_up, None, None, stride=1, groups=3, out_offset=(4, 2))


def test_ops_onnxruntime(tmp_path, seed):
    m = Ops()
    path = str(tmp_path / "ops.onnx")
    export_onnx(m, torch.randn(1, 6, 9, 8), path)
    domains, ops = domains_and_ops(path)
    assert domains <= {"", "ai.onnx"} and {"Conv", "ConvTranspose", "Slice", "Add"} <= ops
    conv = next(n for n in onnx.load(path).graph.node if n.op_type == "Conv")
    assert {a.name: list(a.ints) for a in conv.attribute}["dilations"] == [2, 3]
    for shape in ((3, 6, 7, 11), (1, 6, 12, 5)):
        x = torch.randn(shape)
        with torch.no_grad():
            assert_close(ort_run(path, x), m(x))


@pytest.mark.skipif(
    not hasattr(torch.ops.fcn_kernels, "upsample_argmax"), reason="fcn_kernels::upsample_argmax is not in this build"
)
def test_upsample_argmax_onnxruntime(tmp_path, seed):
    class Labels(nn.Module):
        def __init__(self):
            super().__init__()
            self.fcn = small_fcn8s()

        def forward(self, x):
            return self.fcn.predict(x)

    m = Labels().eval()
    path = str(tmp_path / "labels.onnx")
    export_onnx(m, torch.randn(1, 3, 64, 64), path)
    domains, ops = domains_and_ops(path)
    assert domains <= {"", "ai.onnx"} and "ArgMax" in ops
    for shape in SIZES:
        x = torch.randn(shape)
        with torch.no_grad():
            scores, labels = m.fcn(x), m(x)
        out = ort_run(path, x)
        assert out.dtype.name == "int64" and out.shape == tuple(labels.shape)
        # Labels may differ only where two classes' scores are within rounding of each other.
        top2 = scores.topk(2, dim=1).values
        near_tie = (top2[:, 0] - top2[:, 1]) <= 1e-4 * scores.abs().max()
        assert ((torch.from_numpy(out) == labels) | near_tie).all()


@pytest.mark.skipif(
    not hasattr(torch.ops.fcn_kernels, "interpolate_argmax"),
    reason="no interpolate_argmax in this build",
)
@pytest.mark.parametrize("align_corners", [False, True])
def test_interpolate_argmax_onnxruntime(tmp_path, seed, align_corners):
    class Labels(nn.Module):
        def forward(self, x):
            return fcn_kernels.interpolate_argmax(x, (37, 50), align_corners=align_corners, backend="cpu")

    path = str(tmp_path / "labels.onnx")
    export_onnx(Labels(), torch.randn(1, 5, 9, 12), path)
    domains, ops = domains_and_ops(path)
    assert domains <= {"", "ai.onnx"} and {"Resize", "ArgMax"} <= ops
    for shape in ((1, 5, 9, 12), (2, 5, 7, 13)):
        x = torch.randn(shape)
        scores = F.interpolate(x.double(), size=(37, 50), mode="bilinear", align_corners=align_corners)
        out = torch.from_numpy(ort_run(path, x))
        assert out.dtype == torch.int64 and out.shape == scores[:, 0].shape
        # a label may differ from the exact argmax only at a near tie of the exact scores
        picked = scores.gather(1, out.unsqueeze(1)).squeeze(1)
        assert (scores.amax(1) - picked <= 1e-5 * (1 + scores.abs().amax(1))).all()


def test_every_forward_op_has_a_translation():
    ops = [n.split("::")[1] for n in torch._C._dispatch_get_all_op_names() if n.startswith("fcn_kernels::")]
    # backward ops and the losses' forward ops are never exported (inference graphs)
    forward = [n for n in ops if "backward" not in n and n not in TRAINING_ONLY]
    assert {n for n in TRAINING_ONLY if not n.endswith("_triton")} <= set(ops)  # Triton's: once imported
    assert "upsample_skip" in forward and "rarefied_conv2d" in forward
    assert set(forward) <= set(TRANSLATIONS), set(forward) - set(TRANSLATIONS)
    table = onnx_translations()
    assert all(getattr(torch.ops.fcn_kernels, n).default in table for n in forward)


def test_failed_export_keeps_the_old_file(tmp_path):
    class Broken(nn.Module):
        def forward(self, x):
            raise RuntimeError("broken model")

    path = tmp_path / "model.onnx"
    path.write_bytes(b"a good file")
    with pytest.raises(Exception, match="broken model"):
        export_onnx(Broken(), torch.randn(1, 3, 8, 8), path)
    assert path.read_bytes() == b"a good file"
    assert os.listdir(tmp_path) == ["model.onnx"]


def test_export_keeps_training_mode(tmp_path):
    m = small_fcn8s().train()
    export_onnx(m, torch.randn(1, 3, 32, 32), tmp_path / "m.onnx", dynamic=False)
    assert m.training


def test_opset_too_old(tmp_path):
    with pytest.raises(ValueError, match="opset must be >= 17, got 13"):
        export_onnx(small_fcn8s(), torch.randn(1, 3, 32, 32), tmp_path / "m.onnx", opset=13)


def checkpoint(tmp_path, model):
    from fcn_kernels.app.checkpoint import FORMAT, VERSION, save_checkpoint

    path = tmp_path / "checkpoint.pt"
    save_checkpoint(
        path,
        {
            "format": FORMAT,
            "version": VERSION,
            "model": model.state_dict(),
            "model_config": {"arch": "fcn8s", "n_class": model.n_class, "width": model.width},
        },
    )
    return path


def test_cli_export_onnx(tmp_path, seed, capsys):
    from fcn_kernels.app.cli import main

    model = small_fcn8s()
    out = tmp_path / "fcn8s.onnx"
    assert (
        main(
            [
                "export",
                "--checkpoint",
                str(checkpoint(tmp_path, model)),
                "--format",
                "onnx",
                "--out",
                str(out),
                "--image-size",
                "40",
                "36",
            ]
        )
        == 0
    )
    assert "any batch and image size" in capsys.readouterr().out
    x = torch.randn(2, 3, 57, 33)
    with torch.no_grad():
        assert_close(ort_run(str(out), x), model(x))


def test_cli_export_errors(tmp_path, capsys):
    from fcn_kernels.app.cli import main

    plain = tmp_path / "plain.pt"
    torch.save(small_fcn8s().state_dict(), plain)
    assert main(["export", "--checkpoint", str(plain), "--out", str(tmp_path / "m.onnx")]) == 2
    assert "is not an fcn-kernels checkpoint" in capsys.readouterr().err
    assert main(["export", "--checkpoint", str(plain), "--format", "aoti", "--out", str(tmp_path / "m.so")]) == 2
    assert "must end in .pt2" in capsys.readouterr().err
    assert main(["export", "--checkpoint", str(plain), "--out", "m.onnx", "--image-size", "1", "2", "3"]) == 2
    assert "--image-size takes one or two positive sizes" in capsys.readouterr().err
