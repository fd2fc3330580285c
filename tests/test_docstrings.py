"""The library's docstrings are reference (issue 21): every public name has Args: (naming each parameter),
Returns: and a runnable Example::; every example runs here, on the CPU; and no docstring of the library
holds a measurement (those live in docs/DESIGN.md and docs/performance.md)."""

import ast
import doctest
import importlib
import importlib.util
import inspect
import pathlib
import re

import pytest
import torch

from fcn_kernels import _ext

ROOT = pathlib.Path(__file__).resolve().parent.parent / "fcn_kernels"
# Besides Args: naming every parameter (a class's: its constructor's), which every name below needs that has one:
FULL = ("Returns:", "Example::")
CLASS = ("Example::",)  # the class documents its constructor; its forward (or compute) what a call returns
CALL = ("Returns:",)

# (module, qualified name) -> the sections its docstring must have.
PUBLIC = {
    ("fcn_kernels.ops.upsample_skip", "upsample_skip"): FULL,
    ("fcn_kernels.ops.upsample_argmax", "upsample_argmax"): FULL,
    ("fcn_kernels.ops.rarefied_conv2d", "rarefied_conv2d"): FULL,
    ("fcn_kernels.ops.upsample_cross_entropy", "upsample_cross_entropy"): FULL,
    ("fcn_kernels.ops.interpolate_cross_entropy", "interpolate_cross_entropy"): FULL,
    ("fcn_kernels.ops.interpolate_cross_entropy", "interpolate_argmax"): FULL,
    ("fcn_kernels.reference", "rarefy_filter"): FULL,
    ("fcn_kernels.shift_stitch", "rarefy"): FULL,
    ("fcn_kernels.shift_stitch", "shift_and_stitch"): FULL,
    ("fcn_kernels.convolutionalize", "convolutionalize"): FULL,
    ("fcn_kernels.modules.upsample", "bilinear_kernel"): FULL,
    ("fcn_kernels.modules.upsample", "FusedUpsampleSkip"): CLASS,
    ("fcn_kernels.modules.upsample", "FusedUpsampleSkip.forward"): CALL,
    ("fcn_kernels.modules.upsample", "FusedUpsampleSkip.from_conv_transpose"): FULL,
    ("fcn_kernels.modules.rarefied", "RarefiedConv2d"): CLASS,
    ("fcn_kernels.modules.rarefied", "RarefiedConv2d.forward"): CALL,
    ("fcn_kernels.modules.rarefied", "RarefiedConv2d.from_conv"): FULL,
    ("fcn_kernels.models.fcn", "FCN32s"): CLASS,
    ("fcn_kernels.models.fcn", "FCN16s"): CLASS,
    ("fcn_kernels.models.fcn", "FCN8s"): CLASS,
    ("fcn_kernels.models.fcn", "FCN8sAtOnce"): CLASS,
    ("fcn_kernels.models.fcn", "FCN8s.forward"): CALL,
    ("fcn_kernels.models.fcn", "FCN8s.predict"): FULL,
    ("fcn_kernels.models.fcn", "FCN8s.loss"): FULL,
    ("fcn_kernels.models.loading", "load_vgg16"): FULL,
    ("fcn_kernels.models.loading", "load_torchfcn"): FULL,
    ("fcn_kernels.models.inference", "optimize_for_inference"): FULL,
    ("fcn_kernels.export", "export_onnx"): FULL,
    ("fcn_kernels.export", "onnx_translations"): FULL,
    ("fcn_kernels.export", "export_aoti"): FULL,
    ("fcn_kernels.backends", "available_backends"): FULL,
    ("fcn_kernels.backends", "choose"): FULL,
    ("fcn_kernels.backends", "explain"): FULL,
    ("fcn_kernels.backends", "resolve"): FULL,
    ("fcn_kernels.losses", "pixelwise_cross_entropy"): FULL,
    ("fcn_kernels.losses", "PixelwiseCrossEntropy"): CLASS,
    ("fcn_kernels.losses", "PixelwiseCrossEntropy.forward"): CALL,
    ("fcn_kernels.losses", "class_frequencies"): FULL,
    ("fcn_kernels.losses", "class_weights"): FULL,
    ("fcn_kernels.metrics", "segmentation_scores"): FULL,
    ("fcn_kernels.metrics", "ConfusionMatrix"): CLASS,
    ("fcn_kernels.metrics", "ConfusionMatrix.update"): CALL,
    ("fcn_kernels.metrics", "ConfusionMatrix.compute"): CALL,
}
MODULES = sorted({module for module, _ in PUBLIC})
# The files whose docstrings must hold no measurement.
LIBRARY_FILES = sorted(
    [
        *ROOT.glob("ops/*.py"),
        *ROOT.glob("modules/*.py"),
        *ROOT.glob("models/*.py"),
        *(
            ROOT / f
            for f in (
                "reference.py",
                "shift_stitch.py",
                "convolutionalize.py",
                "export.py",
                "backends.py",
                "losses.py",
                "metrics.py",
            )
        ),
    ]
)
# A date, a speed ratio ("1.4x", "3x") or a percentage.
MEASUREMENT = re.compile(r"\b\d{4}-\d{2}-\d{2}\b|\b\d+(?:\.\d+)?x\b|\b\d+(?:\.\d+)?%")


def _resolve(module, qualname):
    obj = importlib.import_module(module)  # the module (a package attribute may be a function of its name)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return obj


def _section(doc, header):
    """The lines of the section `header` (e.g. "Args:"): those after it indented deeper than it."""
    lines = doc.splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip() == header)
    indent = len(lines[start]) - len(lines[start].lstrip())
    body = []
    for line in lines[start + 1 :]:
        if line.strip() and len(line) - len(line.lstrip()) <= indent:
            break
        body.append(line)
    return "\n".join(body)


def _documented(args):
    """The names an Args: section documents: each entry starts "name (type): ..." or "a, b: ..."."""
    lines = [line for line in args.splitlines() if line.strip()]
    indent = min(len(line) - len(line.lstrip()) for line in lines)
    names = set()
    for line in lines:
        head = re.match(r"\s*([\w*]+(?:, [\w*]+)*)(?: \(|:)", line)
        if len(line) - len(line.lstrip()) == indent and head:
            names.update(head.group(1).split(", "))
    return names


def _parameters(obj):
    """The documented parameters: the signature's (the constructor's for a class), less self and cls."""
    fn = obj.__init__ if inspect.isclass(obj) else obj
    names = []
    for p in inspect.signature(fn).parameters.values():
        if p.name in ("self", "cls"):
            continue
        names.append({p.VAR_KEYWORD: "**", p.VAR_POSITIONAL: "*"}.get(p.kind, "") + p.name)
    return names


@pytest.mark.parametrize("module,qualname", sorted(PUBLIC), ids=lambda v: v)
def test_reference_docstring(module, qualname):
    obj = _resolve(module, qualname)
    doc = inspect.getdoc(obj) or ""
    params = _parameters(obj)
    required = (("Args:",) if params else ()) + PUBLIC[module, qualname]
    lines = {line.strip() for line in doc.splitlines()}
    missing = [h for h in required if h not in lines]
    assert not missing, f"{module}.{qualname}: no {missing} section in its docstring"
    summary = doc.splitlines()[0]
    assert summary.rstrip().endswith("."), f"{module}.{qualname}: the first line is not a one-line summary"
    if params:
        documented = _documented(_section(doc, "Args:"))
        undocumented = [p for p in params if p not in documented]
        assert not undocumented, f"{module}.{qualname}: Args: does not name {undocumented}"
        assert documented <= set(params), f"{module}.{qualname}: Args: names {documented - set(params)}, not parameters"
    if "Example::" in PUBLIC[module, qualname]:
        examples = doctest.DocTestParser().get_examples(_section(doc, "Example::"))
        assert examples, f"{module}.{qualname}: Example:: holds no >>> lines"


def _doctests():
    finder = doctest.DocTestFinder()
    return [test for module in MODULES for test in finder.find(importlib.import_module(module)) if test.examples]


DOCTESTS = _doctests()


def test_every_public_example_is_collected():
    names = {test.name for test in DOCTESTS}
    for (module, qualname), sections in PUBLIC.items():
        if "Example::" in sections:
            obj = _resolve(module, qualname)
            # A method documented on a base class (FCN8s.predict is _FCN.predict) is collected under the base.
            where = f"{obj.__module__}.{obj.__qualname__}"
            assert where in names, f"{where}'s example was not collected"


@pytest.mark.parametrize("test", DOCTESTS, ids=lambda t: t.name)
def test_example_runs(test, monkeypatch):
    if "export_onnx" in test.name and importlib.util.find_spec("onnxscript") is None:
        pytest.skip("export_onnx needs the deploy extra (onnx, onnxscript)")
    if "onnx_translations" in test.name and not _ext.HAS_EXTENSION:
        pytest.skip("the translation table lists the ops the C++ extension registers")
    monkeypatch.delenv("FCN_KERNELS_BACKEND", raising=False)  # the examples show the automatic choice
    torch.manual_seed(0)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    report = []
    runner.run(test, out=report.append, clear_globs=True)
    assert runner.failures == 0, "".join(report)
    assert runner.tries > 0


def _docstrings(path):
    tree = ast.parse(path.read_text())
    for node in [tree, *ast.walk(tree)]:
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            doc = ast.get_docstring(node)
            if doc:
                yield getattr(node, "name", "<module>"), doc


@pytest.mark.parametrize("path", LIBRARY_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_measurement_in_docstrings(path):
    found = [
        f"{name}: {line.strip()}"
        for name, doc in _docstrings(path)
        for line in doc.splitlines()
        if MEASUREMENT.search(line)
    ]
    assert not found, (
        f"{path.name}: measurements belong in docs/DESIGN.md or docs/performance.md, not in docstrings: {found}"
    )
