"""The package as a new user meets it: a complete sdist, the version written once, every public
submodule reachable, a clear warning (once) when the source tree shadows the built package, and one
sentence instead of a traceback when setup.py runs without torch (pip's build isolation). The
install itself (sdist -> wheel -> fresh venv -> smoke test) is scripts/check_package.sh."""

import os
import re
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

import fcn_kernels

tomllib = pytest.importorskip("tomllib")  # Python >= 3.11

ROOT = Path(__file__).resolve().parents[1]


def _env(**extra):
    env = {k: v for k, v in os.environ.items() if k not in ("FCN_KERNELS_BACKEND", "PYTHONPATH")}
    env.update(extra)
    return env


def _isolated(*paths):
    """-S (no .pth files: an editable install of this checkout in the running environment cannot supply
    fcn_kernels._C) with torch's site directory put on the path by hand, after `paths`."""
    import torch

    return [sys.executable, "-S"], _env(
        PYTHONPATH=os.pathsep.join([*map(str, paths), str(Path(torch.__file__).parents[1])])
    )


def test_version_written_once():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert "version" not in project and "version" in project["dynamic"]
    from fcn_kernels import _version

    assert fcn_kernels.__version__ == _version.__version__
    assert re.fullmatch(r"\d+\.\d+\.\d+\S*", fcn_kernels.__version__)


def test_license_is_an_spdx_string():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["license"] == "BSD-3-Clause"


def test_every_public_submodule_is_reachable_lazily():
    # every public entry of the package root but the application (fcn_kernels.app: tests/test_layers.py)
    names = sorted(
        p.stem if p.is_file() else p.name
        for p in (ROOT / "fcn_kernels").iterdir()
        if not p.name.startswith("_") and (p.suffix == ".py" or (p / "__init__.py").exists()) and p.name != "app"
    )
    assert {"metrics", "data", "losses", "models", "reference"} <= set(names)
    script = f"""
import sys, fcn_kernels
lazy = [n for n in {names!r} if f"fcn_kernels.{{n}}" not in sys.modules]
assert "metrics" in lazy and "data" in lazy, lazy  # not loaded by `import fcn_kernels` (losses is: the ops use it)
for name in {names!r}:
    if name == "triton":
        try:
            import triton  # noqa: F401
        except ImportError:
            continue
    getattr(fcn_kernels, name)
    assert name in dir(fcn_kernels), name
fcn_kernels.metrics.segmentation_scores, fcn_kernels.data, fcn_kernels.losses
try:
    fcn_kernels.no_such_module
except AttributeError as e:
    assert "no_such_module" in str(e)
else:
    raise AssertionError("a missing attribute must raise AttributeError")
print("ok")
"""
    out = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        env=_env(PYTHONPATH=str(ROOT)),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


def test_source_tree_without_extension_warns_once(tmp_path):
    # A clone (csrc/ beside the package, no _C.so) run from its root, shadowing an installed copy.
    clone, site = tmp_path / "clone", tmp_path / "site"
    shutil.copytree(ROOT / "fcn_kernels", clone / "fcn_kernels", ignore=shutil.ignore_patterns("_C*", "__pycache__"))
    (clone / "csrc").mkdir()
    (site / "fcn_kernels").mkdir(parents=True)
    (site / "fcn_kernels" / "_C.so").write_bytes(b"")  # only its presence is looked at
    script = """
import fcn_kernels, fcn_kernels.ops, importlib
importlib.reload(fcn_kernels)  # a second import of the package must not warn again
assert fcn_kernels.available_backends() == ["reference"], fcn_kernels.available_backends()
print("ERROR:", fcn_kernels._ext.EXTENSION_ERROR)
"""
    python, env = _isolated(site)
    out = subprocess.run(python + ["-c", script], cwd=clone, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stderr.count("imported from the source tree") == 1, out.stderr
    for words in (
        str(clone),
        "has no built C++ extension",
        str(site / "fcn_kernels" / "_C.so"),
        "Run Python from another directory",
        "build the extension in place",
    ):
        assert words in out.stderr, (words, out.stderr)
    assert "circular import" not in out.stdout and "imported from the source tree" in out.stdout, out.stdout


def test_installed_copy_without_source_tree_is_silent(tmp_path):
    # A pure-Python install (FCN_KERNELS_NO_EXT=1): no _C on purpose, nothing to warn about.
    site = tmp_path / "site"
    shutil.copytree(ROOT / "fcn_kernels", site / "fcn_kernels", ignore=shutil.ignore_patterns("_C*", "__pycache__"))
    python, env = _isolated(site)
    out = subprocess.run(
        python + ["-W", "error::RuntimeWarning", "-c", "import fcn_kernels"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0 and not out.stderr.strip(), out.stderr


def test_setup_without_torch_fails_in_one_sentence(tmp_path):
    # pip's isolated build environment has no torch: a stand-in `torch` that cannot be imported.
    (tmp_path / "torch.py").write_text("raise ImportError('No module named torch')\n")
    out = subprocess.run(
        [sys.executable, "setup.py", "--name"],
        cwd=ROOT,
        env=_env(PYTHONPATH=str(tmp_path)),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode != 0
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "--no-build-isolation" in lines[0] and "Traceback" not in out.stderr, out.stderr


@pytest.mark.slow
def test_sdist_holds_everything_setup_py_reads(tmp_path):
    subprocess.run(
        [sys.executable, "-m", "build", "--sdist", "--no-isolation", "--outdir", str(tmp_path), str(ROOT)],
        check=True,
        capture_output=True,
        env=_env(),
        timeout=600,
    )
    (sdist,) = tmp_path.glob("*.tar.gz")
    assert sdist.name == f"fcn_kernels-{fcn_kernels.__version__}.tar.gz"
    with tarfile.open(sdist) as tar:
        names = {n.split("/", 1)[1] for n in tar.getnames() if "/" in n}
    listed = [
        line.split()[1]
        for line in (ROOT / "csrc" / "SOURCES").read_text().splitlines()
        if len(line.split("#", 1)[0].split()) == 2
    ]
    headers = [str(p.relative_to(ROOT)) for p in (ROOT / "csrc").rglob("*") if p.suffix in (".h", ".cuh")]
    needed = (
        [
            "setup.py",
            "pyproject.toml",
            "csrc/SOURCES",
            "tools/cuda_toolkit.py",
            "CMakeLists.txt",
            "README.md",
            "fcn_kernels/__init__.py",
            "fcn_kernels/_version.py",
        ]
        + listed
        + headers
    )
    missing = [n for n in needed if n not in names]
    assert not missing, f"the sdist lacks {missing}"
    assert not [n for n in names if n.endswith((".so", ".pyc"))], "the sdist must not carry built files"
