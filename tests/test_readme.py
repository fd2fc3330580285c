"""The README and docs/ stay true: the two commands are what CI and the console script run, every
relative link (and its #anchor) reaches something that exists, every CLI line names real commands and
options, every public name in the table resolves, and the Python examples run."""

import importlib.util
import re
from pathlib import Path

import pytest

import fcn_kernels

tomllib = pytest.importorskip("tomllib")  # Python >= 3.11

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.M | re.S)
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")


def _blocks(text, lang):
    return [body for tag, body in FENCE.findall(text) if tag == lang]


def _section(text, title):
    start = text.index(f"\n## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end >= 0 else len(text)]


def _commands(script):
    """The command lines of a shell script: comments and blank lines left out."""
    lines = (line.strip() for line in script.read_text().splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def _slug(heading):
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces as hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def _anchors(md):
    text = FENCE.sub("", md.read_text())
    return {_slug(h) for h in re.findall(r"^#+ (.+)$", text, re.M)}


def test_readme_commands_are_what_ci_and_the_console_script_run():
    text = README.read_text()
    bash = [body.strip() for body in _blocks(text, "bash")]
    assert "bash scripts/setup.sh && .venv/bin/fcn-kernels demo" in bash
    assert "bash scripts/test.sh" in bash
    # CI runs the README's test command, and nothing else
    assert _commands(ROOT / ".ci/run")[-1] in ("exec bash scripts/test.sh", "bash scripts/test.sh")
    # test.sh sets up the same environment as the main job
    assert "bash scripts/setup.sh" in _commands(ROOT / "scripts/test.sh")
    setup = (ROOT / "scripts/setup.sh").read_text()
    assert re.search(r"^venv=\$\{FCN_VENV:-\.venv\}$", setup, re.M), "setup.sh's default venv is not .venv"
    assert re.search(r"pip install .*--no-build-isolation -e", setup), "setup.sh does not install this checkout"
    # .venv/bin/fcn-kernels is the console script, and demo one of its commands
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts == {"fcn-kernels": "fcn_kernels.app.cli:main"}
    assert "demo" in _subcommands()


@pytest.mark.parametrize("md", [README, *DOCS], ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_relative_link_exists(md):
    text = FENCE.sub("", md.read_text())
    targets = [t for t in LINK.findall(text) if not re.match(r"[a-z]+:", t)]
    assert targets, f"no links found in {md.name}: the pattern is wrong"
    for target in targets:
        path, _, anchor = target.partition("#")
        dest = (md.parent / path).resolve() if path else md
        assert dest.exists(), f"{md.relative_to(ROOT)}: link to a missing file: {target}"
        assert ROOT in dest.parents or dest == ROOT, f"{md.relative_to(ROOT)}: link leaves the repository: {target}"
        if anchor:
            assert dest.suffix == ".md", f"{md.relative_to(ROOT)}: an anchor into a non-Markdown file: {target}"
            assert anchor in _anchors(dest), f"{md.relative_to(ROOT)}: no heading for #{anchor} in {path or md.name}"


def test_the_slug_rule():
    assert _slug("4.1 Never slower than the vendor library") == "41-never-slower-than-the-vendor-library"
    assert _slug("2.2 `upsample_argmax` (inference)") == "22-upsample_argmax-inference"


def _subcommands():
    from fcn_kernels.app.cli import build_parser

    parser = build_parser()
    (sub,) = [a for a in parser._actions if a.dest == "command"]
    return sub.choices


def test_every_cli_line_names_real_commands_and_options():
    block = _blocks(_section(README.read_text(), "Command line"), "bash")[0]
    subcommands = _subcommands()
    seen = set()
    for line in block.splitlines():
        words = line.split()
        assert words[0] == "fcn-kernels", line
        command = words[1]
        assert command in subcommands, f"no command {command!r}: {line}"
        seen.add(command)
        options = {o for a in subcommands[command]._actions for o in a.option_strings}
        for flag in re.findall(r"(?<![\w-])--[a-z][\w-]*", line):  # in the comment too
            assert flag in options, f"fcn-kernels {command} has no option {flag}"
    assert seen == set(subcommands), f"commands missing from the README: {set(subcommands) - seen}"


def test_the_gpu_check_and_doctor_as_the_readme_calls_them():
    text = _section(README.read_text(), "Command line")
    assert importlib.util.find_spec("fcn_kernels.app.doctor") is not None
    assert 'if __name__ == "__main__":' in (ROOT / "fcn_kernels/app/doctor.py").read_text()
    assert "bash benchmarks/gpu_check.sh" in text
    script = (ROOT / "benchmarks/gpu_check.sh").read_text()
    usage = re.search(r"^usage\(\) \{ echo \"(.*?)\"", script, re.M).group(1)
    flags = set(re.findall(r"`(--[a-z][\w-]*)`", text[text.index("gpu_check.sh") :]))
    assert {"--plan", "--count", "--cpu-smoke"} <= flags
    for flag in flags:
        assert flag in usage, f"gpu_check.sh takes no {flag}"
    assert "results.tar.gz" in script and "benchmarks/results/" in script


def test_every_public_name_in_the_table_resolves():
    rows = re.findall(r"^\| `([\w.]+)` \| (\w[\w ]*) \|", _section(README.read_text(), "Public names"), re.M)
    assert len(rows) >= 15, rows
    for name, kind in rows:
        obj = fcn_kernels
        for part in name.split("."):
            obj = getattr(obj, part)  # AttributeError names what the table claims and the package lacks
        assert kind in ("op", "module", "model", "function", "data set"), (name, kind)
        if kind in ("op", "function"):
            assert callable(obj), name


def test_readme_python_examples_run():
    code = "\n".join(_blocks(README.read_text(), "python"))
    assert code.count("assert_close") >= 3  # the examples check what they claim
    exec(compile(code, str(README), "exec"), {"__name__": "readme"})
