"""Dependencies run one way (issue 21), read from the sources' import statements (ast, nothing imported):

fcn_kernels/_autograd/    each op family's one autograd and the op naming rule: imports neither backend
fcn_kernels/ops/          the public ops: may import triton/ (backend "triton") and _autograd/
fcn_kernels/triton/       never imports ops/; an op module (upsample_skip.py, ...) imports the shared
                          modules (utils.py, _tiles.py, bias_grad.py), never another op module
fcn_kernels/app/          the application (CLI, doctor, benchmarks, training): imports the library,
                          never the reverse, and is no attribute of the package root
"""

import ast
import os
import pkgutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "fcn_kernels"
# triton/ modules that are not op modules: the helpers every op module may import, and the package and AOT
# tool that gather the op modules. Every other module of triton/ is an op module (a new one is covered).
TRITON_SHARED = {"utils", "_tiles", "_interpreter", "bias_grad"}
TRITON_GATHER = {"__init__", "aot"}


def module_name(path):
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path):
    """Every fcn_kernels module that `path` imports anywhere (functions included), relative imports resolved;
    `from a import b` counts as importing a and a.b (b may be a submodule)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = ".".join(base[: len(base) - (node.level - 1)])
                mod = f"{base}.{node.module}" if node.module else base
            else:
                mod = node.module
            found.add(mod)
            found.update(f"{mod}.{a.name}" for a in node.names)
    return {m for m in found if m == "fcn_kernels" or m.startswith("fcn_kernels.")}


def within(module, package):
    return module == package or module.startswith(package + ".")


def sources(folder=PKG):
    return sorted(folder.rglob("*.py"))


def test_the_import_reader_sees_known_imports():
    # so that the rules below cannot pass by finding no imports at all
    assert "fcn_kernels._autograd" in imports(PKG / "ops" / "upsample_skip.py")
    assert "fcn_kernels.triton.upsample_skip" in imports(PKG / "ops" / "upsample_skip.py")  # inside a function
    assert "fcn_kernels.triton.utils" in imports(PKG / "triton" / "upsample_skip.py")
    assert "fcn_kernels.app.bench" in imports(PKG / "app" / "doctor.py")
    assert "fcn_kernels.errors" in imports(PKG / "app" / "commands" / "predict.py")
    assert "fcn_kernels.app.training" in imports(PKG / "app" / "commands" / "train.py")


def test_triton_never_imports_ops():
    bad = {
        str(p.relative_to(ROOT)): sorted(m for m in imports(p) if within(m, "fcn_kernels.ops"))
        for p in sources(PKG / "triton")
    }
    assert not {k: v for k, v in bad.items() if v}


def test_autograd_imports_neither_backend():
    bad = {
        str(p.relative_to(ROOT)): sorted(
            m for m in imports(p) if within(m, "fcn_kernels.ops") or within(m, "fcn_kernels.triton")
        )
        for p in sources(PKG / "_autograd")
    }
    assert bad and not {k: v for k, v in bad.items() if v}


def test_no_triton_op_module_imports_another():
    ops = {p.stem: p for p in (PKG / "triton").glob("*.py") if p.stem not in TRITON_SHARED | TRITON_GATHER}
    assert {"upsample_skip", "rarefied_conv2d", "upsample_argmax"} <= set(ops)
    allowed = {f"fcn_kernels.triton.{m}" for m in TRITON_SHARED} | {"fcn_kernels.triton"}
    bad = {}
    for stem, path in ops.items():
        inside = {m for m in imports(path) if within(m, "fcn_kernels.triton")}
        # `from .utils import launch` reads as utils and utils.launch: judge by the module under triton/
        modules = {".".join(m.split(".")[:3]) for m in inside}
        if modules - allowed:
            bad[stem] = sorted(modules - allowed)
    assert not bad, f"Triton op modules import other op modules: {bad}"


def test_the_library_never_imports_the_application():
    bad = {
        str(p.relative_to(ROOT)): sorted(m for m in imports(p) if within(m, "fcn_kernels.app"))
        for p in sources()
        if not within(module_name(p), "fcn_kernels.app")
    }
    assert not {k: v for k, v in bad.items() if v}


def test_the_tools_live_in_the_application():
    root = {m.name for m in pkgutil.iter_modules([str(PKG)])}
    assert not root & {"cli", "doctor", "bench", "peers", "commands"}
    app = {m.name for m in pkgutil.iter_modules([str(PKG / "app")])}
    assert {"cli", "doctor", "bench", "peers", "commands", "training"} <= app


def test_the_application_is_no_attribute_of_the_package_root():
    app = sorted(m.name for m in pkgutil.iter_modules([str(PKG / "app")]))
    script = f"""
import sys, fcn_kernels
loaded = [m for m in sys.modules if m == "fcn_kernels.app" or m.startswith("fcn_kernels.app.")]
assert not loaded, f"import fcn_kernels loaded the application: {{loaded}}"
for name in ["app"] + {app!r}:
    assert not hasattr(fcn_kernels, name) and name not in dir(fcn_kernels), name
import fcn_kernels.app.cli
assert callable(fcn_kernels.app.cli.main)
for name in {app!r}:
    assert not hasattr(fcn_kernels, name), name
print("ok")
"""
    env = {k: v for k, v in os.environ.items() if k != "FCN_KERNELS_BACKEND"}
    env["PYTHONPATH"] = str(ROOT)
    out = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr
