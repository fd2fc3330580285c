"""upsample_argmax one call at a time on the doctor's upsample cases (fcn_kernels.app.doctor.UPSAMPLE, the
doctor's inputs), each as given and without its bias and/or skip (an absent operand reaches the CUDA
kernel as a null pointer), in float64, float32, bfloat16 and float16, on the CUDA kernel's 32- and 64-bit
index paths. torch.cuda.synchronize() follows every call, so a fault is reported by the call that made
it. One line per call: ok, FAIL (a label farther from the float64 reference's argmax than the doctor's
near-tie rule allows) or the error raised. A few seconds, also under compute-sanitizer:

    PYTORCH_NO_CUDA_MEMORY_CACHING=1 compute-sanitizer --tool memcheck python tools/argmax_probe.py
    python tools/argmax_probe.py --device cpu      the same calls on the cpu backend (runs in CI)

(Without the caching allocator a read past a small tensor lands outside any allocation.) A CUDA error
loses the context: the calls after it are reported as not run; --case, --dtype and --variant pick calls to
rerun alone. Exits 1 if any call failed or was not run.
"""
import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch

import fcn_kernels
from fcn_kernels.app.doctor import UPSAMPLE, _inputs, argmax_error

DTYPES = {"float64": torch.float64, "float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
INDEX64 = "FCN_KERNELS_CUDA_INDEX64"  # read by the CUDA launcher at every call


def variants(case):
    """(name, keep bias, keep skip): the case as given, then without each operand it has, then without both."""
    out = [("as given", True, True)]
    if case.bias:
        out.append(("no bias", False, True))
    if case.skip:
        out.append(("no skip", True, False))
    if case.bias and case.skip:
        out.append(("no bias, no skip", False, False))
    return out


def calls(device, only_case=None, only_dtype=None, only_variant=None):
    paths = ("int32", "int64") if device == "cuda" else ("-",)
    for case in UPSAMPLE:
        for dtype_name, dtype in DTYPES.items():
            for variant, keep_bias, keep_skip in variants(case):
                for path in paths:
                    if (only_case in (None, case.name) and only_dtype in (None, dtype_name)
                            and only_variant in (None, variant)):
                        yield case, dtype_name, dtype, variant, keep_bias, keep_skip, path


def check(case, dtype, keep_bias, keep_skip, device, path, seed=0):
    """None if the labels pass the doctor's near-tie rule, else what is wrong; raises what the call raises."""
    x, w, b, s = [t.to(dtype) if t is not None else None for t in _inputs(case, torch.Generator().manual_seed(seed))]
    b, s = (b if keep_bias else None), (s if keep_skip else None)
    kwargs = dict(case.kwargs)
    if s is None:
        kwargs.pop("skip_offset", None)
    on = [t.to(device) if t is not None else None for t in (x, w, b, s)]
    if device == "cuda":
        torch.cuda.synchronize()  # the copies in; a fault after this is the kernel's
        os.environ[INDEX64] = "1" if path == "int64" else "0"
    labels = fcn_kernels.upsample_argmax(*on, backend=device, **kwargs)
    if device == "cuda":
        torch.cuda.synchronize()
    try:  # the doctor's rule (fcn_kernels/app/doctor.py, argmax_error)
        ratio, err, bound = argmax_error(labels.cpu(), (x, w, b, s), kwargs, case.terms(), dtype)
    except RuntimeError as e:
        return str(e)
    return None if ratio <= 1.0 else f"a label's score {err:.1e} below the maximum, bound {bound:.1e}"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", choices=("cuda", "cpu"), default="cuda",
                   help="cuda: the CUDA kernel (default); cpu: the same calls on the cpu backend")
    p.add_argument("--case", choices=[c.name for c in UPSAMPLE], help="only this doctor case")
    p.add_argument("--dtype", choices=list(DTYPES), help="only this dtype")
    p.add_argument("--variant", choices=("as given", "no bias", "no skip", "no bias, no skip"),
                   help="only this variant")
    args = p.parse_args(argv)
    available = fcn_kernels.available_backends()
    if args.device not in available or (args.device == "cuda" and not torch.cuda.is_available()):
        print(f"argmax_probe: backend {args.device!r} is not available here (available: {', '.join(available)})")
        return 1
    where = torch.cuda.get_device_name() if args.device == "cuda" else "cpu"
    print(f"argmax_probe: upsample_argmax, backend {args.device} on {where}, torch {torch.__version__}, "
          f"extension {fcn_kernels._ext._C.__file__}")
    saved = os.environ.get(INDEX64)
    bad = run = 0
    lost = None  # the CUDA error after which nothing more can run
    try:
        for case, dtype_name, dtype, variant, keep_bias, keep_skip, path in calls(
                args.device, args.case, args.dtype, args.variant):
            head = f"{case.name:<32} {dtype_name:<8} {variant:<17} {path:<5}"
            if lost:
                print(f"{head} not run: the CUDA context was lost to the error above")
                bad += 1
                continue
            run += 1
            try:
                problem = check(case, dtype, keep_bias, keep_skip, args.device, path)
            except Exception as exc:  # reported per call; a CUDA error ends the run of calls
                msg = (str(exc).strip().splitlines() or [""])[0]
                print(f"{head} ERROR {type(exc).__name__}: {msg}")
                bad += 1
                if args.device == "cuda" and "CUDA error" in msg:
                    lost = msg
                continue
            print(f"{head} {'ok' if problem is None else 'FAIL ' + problem}")
            bad += problem is not None
    finally:
        if saved is None:
            os.environ.pop(INDEX64, None)
        else:
            os.environ[INDEX64] = saved
    print(f"argmax_probe: {run} calls run, {bad} failed or not run: {'PASS' if bad == 0 else 'FAIL'}")
    return 0 if bad == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
