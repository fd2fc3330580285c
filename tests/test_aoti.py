"""AOTInductor: a fused FCN-8s compiled ahead of time (export_aoti), loaded with aoti_load_package, gives the
model's outputs; our C++ kernels are called from the package (found because `import fcn_kernels` loaded
them)."""

import pytest
import torch

from fcn_kernels.export import export_aoti
from fcn_kernels.models import FCN8s

pytestmark = pytest.mark.slow  # one C++ compilation of the whole model: about a minute on 2 cores


def test_package_gives_the_models_outputs(tmp_path, seed):
    model = FCN8s(n_class=5, width=1 / 16).eval()
    with torch.no_grad():
        for name in model.score_layer_names():
            getattr(model, name).weight.normal_(0, 0.1)
    path = export_aoti(model, torch.randn(1, 3, 48, 48), tmp_path / "fcn8s.pt2")
    assert [p.name for p in tmp_path.iterdir()] == ["fcn8s.pt2"]
    loaded = torch._inductor.aoti_load_package(str(path))
    x = torch.randn(1, 3, 48, 48)
    with torch.no_grad():
        expected = model(x)
    out = loaded(x)
    assert out.shape == expected.shape
    err = (out - expected).abs().max().item()
    assert err <= 1e-4 * expected.abs().max().item(), f"max error {err:.3g}"


def test_the_export_keeps_our_ops(tmp_path):
    model = FCN8s(n_class=3, width=1 / 16).eval()
    program = torch.export.export(model, (torch.randn(1, 3, 32, 32),))
    assert sum(n.target == torch.ops.fcn_kernels.upsample_skip.default for n in program.graph.nodes) == 3


def test_path_must_be_pt2(tmp_path):
    with pytest.raises(ValueError, match="must end in .pt2"):
        export_aoti(FCN8s(n_class=3, width=1 / 16), torch.randn(1, 3, 32, 32), tmp_path / "m.so")
