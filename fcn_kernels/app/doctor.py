"""`fcn-kernels doctor` (also `python -m fcn_kernels.app.doctor`): what was built, then every available backend
on every device present checked against the float64 reference, then one timing of the FCN-8s head per
backend. Exits 0 only if every check passes.

Results go out as they come: each line printed as its check ends, and with --jsonl one JSON line per check
(flushed), so a run cut short keeps everything already checked. A CUDA error that leaves the device's
context unusable (an illegal memory access: every later CUDA call fails with it) is reported once, as the
failure it is; the remaining checks on that device are reported as not run, not as failures of their own.

Each check runs an op forward and backward on a small case (one with 16 channels per group each way, the
size at which the Triton kernels use tl.dot) and compares the output and every gradient with the float64
reference on the same rounded inputs, at the bound of fcn_kernels._tolerance. Float32 runs with TF32 off:
the bound is that of IEEE float32 (cuDNN's TF32 default would not meet it).
"""

import argparse
import importlib.metadata
import platform
import struct
import sys
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch

from .. import _ext, backends, reference
from .._args import pair
from .._io import write_json
from .._tolerance import worst_error
from . import bench


@dataclass(frozen=True)
class Case:
    """One call: op, input shapes (x, weight, skip or None) and keyword arguments, bias or not."""

    op: str
    name: str
    x: tuple
    weight: tuple
    kwargs: dict = field(default_factory=dict)
    skip: tuple = None
    bias: bool = True

    def terms(self):
        """Most products summed into one element by any pass (forward, grad x, weight, bias, skip)."""
        n, cin, h, w = self.x
        groups = self.kwargs.get("groups", 1)
        if self.op == "rarefied_conv2d":
            cout, cin_g, kh, kw = self.weight
            (ry, rx), (py, px) = (pair(self.kwargs.get(k, d), k) for k, d in (("rarefaction", 1), ("padding", 0)))
            positions = n * (h + 2 * py - (kh - 1) * ry) * (w + 2 * px - (kw - 1) * rx)
            return max(cin_g * kh * kw + 1, cout // groups * kh * kw, positions)
        _, cout_g, kh, kw = self.weight
        s = self.kwargs["stride"]
        taps = -(-kh // s) * -(-kw // s)
        full = ((h - 1) * s + kh) * ((w - 1) * s + kw)
        return max(cin // groups * taps + 2, cout_g * kh * kw, n * h * w, n * full, 1)


UPSAMPLE = (
    Case(
        "upsample_skip",
        "depthwise s2 k4, skip",
        (2, 3, 5, 7),
        (3, 1, 4, 4),
        dict(stride=2, groups=3, out_offset=(1, 2), out_size=(9, 13), skip_offset=(2, 1)),
        skip=(2, 3, 12, 15),
    ),
    Case(
        "upsample_skip",
        "grouped s4 k9, crop at the end",
        (1, 4, 3, 2),
        (4, 3, 9, 9),
        dict(stride=4, groups=2, out_offset=(5, 3), out_size=(12, 10)),
    ),
    Case(
        "upsample_skip",
        "dense 16->16 s2 k4, skip",
        (1, 16, 3, 4),
        (16, 16, 4, 4),
        dict(stride=2, groups=1, skip_offset=(1, 0)),
        skip=(1, 16, 9, 10),
        bias=False,
    ),
)
RAREFIED = (
    Case("rarefied_conv2d", "depthwise 3x3 r2", (2, 3, 9, 8), (3, 1, 3, 3), dict(rarefaction=2, padding=2, groups=3)),
    Case(
        "rarefied_conv2d",
        "grouped 3x2 r(2,3)",
        (1, 4, 7, 8),
        (6, 2, 3, 2),
        dict(rarefaction=(2, 3), padding=(1, 2), groups=2),
    ),
    Case("rarefied_conv2d", "dense 16->16 3x3 r2", (1, 16, 6, 7), (16, 16, 3, 3), dict(rarefaction=2, padding=2)),
)


def devices():
    return [torch.device("cpu")] + [torch.device("cuda", i) for i in range(torch.cuda.device_count())]


def backends_on(device):
    """(backend, dtypes checked) for every backend that runs on this device."""
    if device.type == "cpu":
        out = [("reference", (torch.float32,))]
        if "cpu" in backends.available_backends():
            out.append(("cpu", (torch.float64, torch.float32)))
        if "triton" in backends.available_backends() and backends.triton_interpret():
            out.append(("triton", (torch.float32,)))
        return out
    # the stock ops in float64 only: cuDNN's float32 algorithms (Winograd, FFT) are not held to our bound
    out = [("reference", (torch.float64,))]
    if "cuda" in backends.available_backends():
        out.append(("cuda", (torch.float64, torch.float32, torch.bfloat16)))
    if "triton" in backends.available_backends():  # float32 only: every dtype costs compiles, and the
        out.append(("triton", (torch.float32,)))  # tests cover the others (benchmarks/gpu_check.sh)
    return out


def _op(name):
    import fcn_kernels

    return getattr(fcn_kernels, name)


def _inputs(case, g):
    def r(shape):
        return torch.randn(*shape, generator=g, dtype=torch.float64)

    cout = case.weight[0] if case.op == "rarefied_conv2d" else case.weight[1] * case.kwargs.get("groups", 1)
    return [r(case.x), r(case.weight), r((cout,)) if case.bias else None, r(case.skip) if case.skip else None]


def _call(op, inputs, kwargs, backend=None):
    fn = _op(op) if backend is not None else getattr(reference, op)
    args = inputs if op == "upsample_skip" else inputs[:3]
    return fn(*args, **kwargs, **({} if backend is None else dict(backend=backend)))


def _forward_backward(op, inputs, kwargs, seed, dtype, backend=None, absolute=False):
    """The output and the gradient of every input given, for a random grad_out rounded to `dtype` (the
    same values for the kernel and the reference; |grad_out| if absolute)."""
    leaves = [t.detach().requires_grad_() if t is not None else None for t in inputs]
    y = _call(op, leaves, kwargs, backend)
    go = torch.randn(y.shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64).to(dtype)
    go = go.abs() if absolute else go
    wanted = [t for t in leaves if t is not None]
    grads = torch.autograd.grad(y, wanted, go.to(y), allow_unused=True)
    grads = [torch.zeros_like(t) if gr is None else gr for t, gr in zip(wanted, grads)]
    return y.detach(), grads


def check_case(case, backend, device, dtype, seed=0):
    """[(pass, worst ratio, its error, its bound)] for the forward and the worst gradient."""
    inputs = [t.to(dtype) if t is not None else None for t in _inputs(case, torch.Generator().manual_seed(seed))]
    exact_in = [t.double() if t is not None else None for t in inputs]
    y, grads = _forward_backward(
        case.op, [t.to(device) if t is not None else None for t in inputs], case.kwargs, seed + 1, dtype, backend
    )
    exact, exact_grads = _forward_backward(case.op, exact_in, case.kwargs, seed + 1, dtype)
    # the same op on |inputs| and |grad_out|: every element's sum of |products|
    abs_y, abs_grads = _forward_backward(
        case.op, [t.abs() if t is not None else None for t in exact_in], case.kwargs, seed + 1, dtype, absolute=True
    )
    n = case.terms()
    names = [nm for nm, t in zip(("x", "weight", "bias", "skip"), inputs) if t is not None]
    fwd = worst_error(y.cpu(), exact, abs_y, n, dtype)
    bwd, name = max(
        ((worst_error(a.cpu(), e, m, n, dtype), nm) for a, e, m, nm in zip(grads, exact_grads, abs_grads, names)),
        key=lambda r: r[0][0],
    )
    return [("forward", *fwd), (f"backward (worst: grad {name})", *bwd)]


def argmax_error(labels, inputs, kwargs, terms, dtype):
    """(worst ratio, its error, its bound) of upsample_argmax's labels (on the CPU) against the float64 scores
    of `inputs` (x, weight, bias, skip; None where absent): a label may differ from the exact argmax only
    where its exact score is within the bound of the maximum (a near-tie; the bound of two scores of
    `terms` products). RuntimeError for labels of another dtype or shape, or outside the classes."""
    exact_in = [t.double() if t is not None else None for t in inputs]
    scores = reference.upsample_skip(*exact_in, **kwargs)
    abs_scores = reference.upsample_skip(*[t.abs() if t is not None else None for t in exact_in], **kwargs)
    if labels.dtype != torch.int64 or labels.shape != scores[:, 0].shape:
        raise RuntimeError(f"labels {labels.dtype} {tuple(labels.shape)}, want int64 {tuple(scores[:, 0].shape)}")
    if ((labels < 0) | (labels >= scores.shape[1])).any():
        raise RuntimeError(f"labels outside [0, {scores.shape[1]})")
    picked = scores.gather(1, labels.unsqueeze(1)).squeeze(1)
    return worst_error(picked, scores.amax(1), abs_scores.amax(1), 2 * terms, dtype)


def check_argmax(case, backend, device, dtype, seed=0):
    """upsample_argmax against the float64 scores (argmax_error)."""
    inputs = [t.to(dtype) if t is not None else None for t in _inputs(case, torch.Generator().manual_seed(seed))]
    labels = _op("upsample_argmax")(
        *[t.to(device) if t is not None else None for t in inputs], **case.kwargs, backend=backend
    ).cpu()
    return [("labels", *argmax_error(labels, inputs, case.kwargs, case.terms(), dtype))]


@contextmanager
def ieee_float32():
    """TF32 off for the checks (restored after)."""
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


def cuda_architectures(path=None):
    """The GPU code in the built extension, from its ELF .nv_fatbin section: ['sm_80', 'sm_90',
    'compute_90' (PTX)...]; [] when there is none (or no extension)."""
    if path is None and _ext.HAS_EXTENSION:
        path = _ext._C.__file__
    if not path:
        return []
    with open(path, "rb") as f:
        data = f.read()
    if data[:4] != b"\x7fELF" or data[4] != 2:
        return []
    (shoff,) = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, 0x3A)
    sections = [struct.unpack_from("<IIQQQQ", data, shoff + i * shentsize) for i in range(shnum)]
    names = sections[shstrndx][4]
    found = set()
    for name_at, _, _, _, offset, size in sections:
        if data[names + name_at : data.index(b"\0", names + name_at)] != b".nv_fatbin":
            continue
        p = offset
        while p + 16 <= offset + size:
            magic, _, header, fat = struct.unpack_from("<IHHQ", data, p)
            if magic != 0xBA55ED50:  # fatbins are 8-byte aligned in the section, with padding between
                p += 8
                continue
            q = p + header
            while q < p + header + fat:  # entries: kind (1 PTX, 2 cubin), header size, padded payload, sm
                kind, _, entry_header, payload = struct.unpack_from("<HHII", data, q)
                (sm,) = struct.unpack_from("<I", data, q + 28)
                if kind in (1, 2):
                    found.add(("compute_" if kind == 1 else "sm_") + str(sm))
                q += entry_header + payload
            p += header + fat
    return sorted(found, key=lambda a: (int(a.split("_")[1]), a))


def build_info():
    try:
        triton = importlib.metadata.version("triton")
    except importlib.metadata.PackageNotFoundError:
        triton = None
    info = dict(
        python=platform.python_version(),
        torch=torch.__version__,
        torch_cuda=torch.version.cuda,
        triton=triton,
        triton_interpret=backends.triton_interpret(),
        extension=str(_ext._C.__file__) if _ext.HAS_EXTENSION else f"not loaded: {_ext.EXTENSION_ERROR}",
        cpu_kernels=[op for op in backends._OPS if backends._built("cpu", op)],
        cuda_kernels=[op for op in backends._OPS if backends._built("cuda", op)],
        missing_kernels={b: backends._missing_kernels(b) for b in ("cpu", "cuda")},
        cuda_architectures=cuda_architectures(),
        available_backends=backends.available_backends(),
        cpu=platform.processor() or platform.machine(),
        threads=torch.get_num_threads(),
        gpus=[],
    )
    for i in range(torch.cuda.device_count()):
        cap = torch.cuda.get_device_capability(i)
        info["gpus"].append(dict(name=torch.cuda.get_device_name(i), capability=f"{cap[0]}.{cap[1]}"))
    return info


def _gpu_code_check(info):
    """Whether the extension holds code each GPU runs: a cubin of its major version at or below its
    minor, or PTX at or below it (JIT-compiled)."""
    out = []
    if not info["cuda_kernels"]:
        return out
    for i, gpu in enumerate(info["gpus"]):
        major, minor = map(int, gpu["capability"].split("."))
        sm = major * 10 + minor
        ok = any(
            (a.startswith("sm_") and int(a[3:]) // 10 == major and int(a[3:]) <= sm)
            or (a.startswith("compute_") and int(a[8:]) <= sm)
            for a in info["cuda_architectures"]
        )
        out.append(
            dict(
                device=f"cuda:{i}",
                backend="cuda",
                op="build",
                case=f"GPU code for sm_{sm}",
                dtype="",
                what=", ".join(info["cuda_architectures"]) or "none",
                ok=ok,
            )
        )
    return out


def _context_usable(device):
    """Whether the device still runs work: False once a CUDA error (an illegal memory access, a device-side
    assert) has left its context broken, where every later call fails with that error."""
    try:
        ok = torch.ones(2, device=device).add_(1).sum().item() == 4.0
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return ok
    except Exception:
        return False


def _not_run(base, lost):
    return dict(
        base,
        what="not run",
        message=f"skipped: {base['device']} failed earlier with {lost}, which left it unusable",
        ok=False,
        not_run=True,
    )


def run_checks(out=print, record=None, lost=None):
    """Every check, each row printed (and given to record) as it ends. lost: {device: the error that broke
    its CUDA context}, filled here; the checks after that error on that device are rows marked not run."""
    import fcn_kernels

    argmax = hasattr(fcn_kernels, "upsample_argmax")  # (inference op, forward only)
    calls = [(c, False) for c in UPSAMPLE + RAREFIED] + [(c, True) for c in UPSAMPLE if argmax]
    lost = {} if lost is None else lost
    results = []
    with ieee_float32():
        for device in devices():
            for backend, dtypes in backends_on(device):
                for dtype in dtypes:
                    for case, is_argmax in calls:
                        results += _run_one(case, backend, device, dtype, out, is_argmax, record, lost)
    return results


def _run_one(case, backend, device, dtype, out, argmax=False, record=None, lost=None):
    op = "upsample_argmax" if argmax else case.op
    base = dict(device=str(device), backend=backend, op=op, case=case.name, dtype=str(dtype).replace("torch.", ""))
    lost = {} if lost is None else lost
    record = record or (lambda row: None)
    if str(device) in lost:
        row = _not_run(base, lost[str(device)])
        out(_format(row))
        record(row)
        return [row]
    try:
        lines = (check_argmax if argmax else check_case)(case, backend, device, dtype)
    except Exception as exc:  # a backend that raises is a failed check, reported, not a crash of the doctor
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if "was built without" in msg:
            return []
        row = dict(base, what="raised", message=f"{type(exc).__name__}: {msg}", ok=False)
        out(_format(row))
        record(row)
        if not _context_usable(device):
            lost[str(device)] = f"{type(exc).__name__}: {msg} ({backend} {op}, {case.name}, {base['dtype']})"
        return [row]
    rows = []
    for what, ratio, err, bound in lines:
        row = dict(base, what=what, error=err, bound=bound, ratio=ratio, ok=ratio <= 1.0)
        out(_format(row))
        record(row)
        rows.append(row)
    return rows


def _format(row):
    head = f"{row['device']:<7} {row['backend']:<9} {row['op']:<16} {row['case']:<32} {row['dtype']:<8}"
    status = "NOT RUN" if row.get("not_run") else "PASS" if row["ok"] else "FAIL"
    if "bound" in row:
        return f"{head} {row['what']:<28} err {row['error']:8.1e}  bound {row['bound']:8.1e}  {status}"
    return f"{head} {row['what']} {row.get('message', '')}  {status}"


def head_timings(out=print, repeat=3, record=None, lost=None):
    """One forward of the FCN-8s head (batch 1, 21 classes, depthwise bilinear) per backend and device;
    Triton's interpreter at a tiny image. Not run on a device in `lost` (see run_checks)."""
    rows = []
    lost = {} if lost is None else lost
    record = record or (lambda row: None)
    for device in devices():
        sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)
        for backend, _ in backends_on(device):
            image = 32 if device.type == "cpu" and backend == "triton" else 500  # the interpreter is slow
            base = dict(device=str(device), backend=backend, image=image)
            if str(device) in lost:
                rows.append(
                    dict(
                        base, error=f"not run: {device} failed earlier with {lost[str(device)]}", ok=False, not_run=True
                    )
                )
                out(
                    f"{str(device):<7} {backend:<9} FCN-8s head {image}x{image}: not run (the device failed "
                    f"earlier)  NOT RUN"
                )
                record(rows[-1])
                continue
            try:
                scores, weights, groups = bench.head_inputs(1, image=image, device=device)
                fn = (
                    (lambda: bench.stock_head(scores, weights, groups, image))
                    if backend == "reference"
                    else (lambda: bench.fused_head(scores, weights, groups, image, backend))
                )
                with torch.no_grad():
                    interpreted = device.type == "cpu" and backend == "triton"
                    ms = (
                        bench.timeit(
                            lambda: (fn(), sync()), repeat=1 if interpreted else repeat, warmup=0 if interpreted else 1
                        )
                        * 1e3
                    )
            except Exception as exc:
                msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                rows.append(dict(base, error=f"{type(exc).__name__}: {msg}", ok=False))
                out(f"{str(device):<7} {backend:<9} FCN-8s head {image}x{image}: {type(exc).__name__}: {msg}  FAIL")
                record(rows[-1])
                if not _context_usable(device):
                    lost[str(device)] = f"{type(exc).__name__}: {msg} ({backend} FCN-8s head)"
                continue
            rows.append(dict(base, batch=1, ms=ms, ok=True))
            record(rows[-1])
            label = "stock ops" if backend == "reference" else "fused"
            out(
                f"{str(device):<7} {backend:<9} FCN-8s head {image}x{image}, batch 1, float32 forward "
                f"({label}): {ms:9.2f} ms"
            )
    return rows


def doctor(json_path=None, out=print, jsonl_path=None):
    """Prints the report; returns it (a dict, also written to json_path at the end). report["passed"]: every
    check. jsonl_path: the same rows as they come, one JSON line each: {"kind": "build", ...}, then
    {"kind": "check", ...} and {"kind": "timing", ...} rows, last {"kind": "summary", ...}."""
    lines = bench.JsonLines(jsonl_path)
    try:
        return _doctor(json_path, out, lines)
    finally:
        lines.close()


def _doctor(json_path, out, lines):
    info = build_info()
    lines(dict(kind="build", **info))
    out(
        f"fcn-kernels doctor: torch {info['torch']} (CUDA {info['torch_cuda'] or 'none'}), triton "
        f"{info['triton'] or 'not installed'}{' (TRITON_INTERPRET=1)' if info['triton_interpret'] else ''}, "
        f"Python {info['python']}"
    )
    out(f"  extension: {info['extension']}")
    out(
        f"  CPU kernels: {', '.join(info['cpu_kernels']) or 'none'}; CUDA kernels: "
        f"{', '.join(info['cuda_kernels']) or 'none'}; CUDA architectures: "
        f"{', '.join(info['cuda_architectures']) or 'none'}"
    )
    for backend, missing in info["missing_kernels"].items():
        if missing and _ext.HAS_EXTENSION and any(info[f"{b}_kernels"] for b in ("cpu", "cuda")):
            out(f"  {backend} kernels missing from the build: {', '.join(missing)}")
    gpus = ", ".join(f"cuda:{i} {g['name']} (sm {g['capability']})" for i, g in enumerate(info["gpus"]))
    out(
        f"  devices: cpu ({info['cpu']}, {info['threads']} threads){', ' + gpus if gpus else ''}; "
        f"backends available: {', '.join(info['available_backends'])}"
    )
    out("checks against the float64 reference (forward, and the worst gradient; float32 with TF32 off):")

    def check_row(row):
        lines(dict(kind="check", **row))

    checks = _gpu_code_check(info)
    for row in checks:
        out(_format(row))
        check_row(row)
    lost = {}
    checks += run_checks(out, check_row, lost)
    out("timings:")
    timings = head_timings(out, record=lambda row: lines(dict(kind="timing", **row)), lost=lost)
    not_run = [c for c in checks + timings if c.get("not_run")]
    failed = [c for c in checks + timings if not c["ok"] and not c.get("not_run")]
    passed = not failed and not not_run
    skipped = f", {len(not_run)} not run (after the CUDA error above)" if not_run else ""
    out(f"{len(checks)} checks, {len(failed)} failed{skipped}: {'PASS' if passed else 'FAIL'}")
    report = dict(build=info, checks=checks, timings=timings, passed=passed, lost=lost)
    lines(dict(kind="summary", checks=len(checks), failed=len(failed), not_run=len(not_run), lost=lost, passed=passed))
    if json_path:
        write_json(json_path, report)
        out(f"wrote {json_path}")
    return report


def add_arguments(p):
    p.add_argument("--json", metavar="PATH", default=None, help="also write the report as JSON (at the end)")
    p.add_argument(
        "--jsonl",
        metavar="PATH",
        default=None,
        help="also write every check as it ends, one JSON line each (flushed: a run cut short keeps the lines written)",
    )


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m fcn_kernels.app.doctor", description=__doc__.split("\n\n")[0])
    add_arguments(p)
    args = p.parse_args(argv)
    return 0 if doctor(args.json, jsonl_path=args.jsonl)["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
