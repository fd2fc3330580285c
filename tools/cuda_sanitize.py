"""Small calls of every CUDA kernel (upsample_skip and rarefied_conv2d forward and backward, upsample_argmax on
the doctor's three cases with and without bias and skip; the fused losses forward and backward, interpolate_argmax;
float64, float32, bfloat16; odd and 16-byte-multiple
widths, a multi-slab and an untiled filter, 32- and 64-bit offsets), for
compute-sanitizer, without PyTorch's caching allocator (else a read past a small tensor lands in cached
memory and goes unreported):
    PYTORCH_NO_CUDA_MEMORY_CACHING=1 compute-sanitizer --tool memcheck --error-exitcode 1 python tools/cuda_sanitize.py
(and --tool racecheck, --tool initcheck). Exits non-zero if an op fails or disagrees with the reference.
`--device cpu` makes the same calls on the cpu backend (benchmarks/gpu_check.sh --cpu-smoke: the script
itself is exercised without a GPU)."""
import argparse
import os
import sys

import torch

import fcn_kernels
from fcn_kernels import reference
from fcn_kernels.app.doctor import UPSAMPLE, _inputs


def upsample_calls(dtype):
    # (x, weight, stride, groups, out_offset, out_size, skip, skip_offset)
    g = torch.Generator().manual_seed(0)
    r = lambda *s: torch.randn(*s, generator=g, dtype=torch.float64).to(dtype)
    yield r(2, 3, 5, 7), r(3, 1, 4, 4), 2, 3, (1, 1), (9, 13), r(2, 3, 12, 17), (2, 3)
    yield r(1, 4, 4, 4), r(4, 1, 16, 16), 8, 4, (5, 3), (32, 32), None, (0, 0)
    yield r(1, 40, 3, 2), r(40, 40, 16, 16), 8, 1, (0, 0), (24, 17), None, (0, 0)
    yield r(1, 1, 1, 2), r(1, 1, 1, 9000), 1, 1, (0, 3), (1, 11), None, (0, 0)


def rarefied_calls(dtype):
    # (x, weight, rarefaction, padding, groups)
    g = torch.Generator().manual_seed(1)
    r = lambda *s: torch.randn(*s, generator=g, dtype=torch.float64).to(dtype)
    yield r(2, 3, 9, 11), r(3, 1, 3, 3), 2, 2, 3
    yield r(1, 4, 8, 16), r(4, 1, 3, 3), 4, 4, 4
    yield r(1, 1000, 3, 5), r(2, 1000, 3, 3), 1, 1, 1
    yield r(1, 1, 1, 8300), r(1, 1, 1, 8200), 1, 0, 1


def argmax_calls(dtype):
    # (x, weight, bias, skip, kwargs): each of the doctor's cases as it is (bias, skip or both), and bare
    for i, case in enumerate(UPSAMPLE):
        x, w, b, skip = (t.to(dtype) if t is not None else None
                         for t in _inputs(case, torch.Generator().manual_seed(2 + i)))
        yield x, w, b, skip, case.kwargs
        yield x, w, None, None, {k: v for k, v in case.kwargs.items() if k != "skip_offset"}


def loss_calls(dtype):
    # (op, inputs, kwargs, target size): upsample_cross_entropy's (x, weight, bias, skip), interpolate's (x,)
    g = torch.Generator().manual_seed(3)
    r = lambda *s: torch.randn(*s, generator=g, dtype=torch.float64).to(dtype)
    geo = dict(stride=2, groups=3, out_offset=(1, 1), skip_offset=(2, 3))
    yield "upsample", (r(2, 3, 5, 7), r(3, 1, 4, 4), r(3), r(2, 3, 12, 17)), geo, (9, 13)
    geo = dict(stride=8, groups=2, out_offset=(5, 3))
    yield "upsample", (r(1, 4, 4, 4), r(4, 2, 16, 16), None, None), geo, (32, 32)
    yield "interpolate", (r(2, 5, 6, 7),), dict(align_corners=False), (13, 29)
    yield "interpolate", (r(1, 3, 9, 8),), dict(align_corners=True), (4, 5)


def run_loss(op, inputs, kw, size, device, backend, dtype):
    """The loss and its gradients (checked: the loss) and, for interpolate, the labels (checked as above)."""
    x = inputs[0]
    classes = inputs[1].shape[1] * kw["groups"] if op == "upsample" else x.shape[1]
    target = torch.randint(0, classes, (x.shape[0], *size), generator=torch.Generator().manual_seed(4))
    target[:, 0] = 255  # ignored pixels
    leaves = [t.to(device).requires_grad_() if t is not None else None for t in inputs]
    fused = fcn_kernels.upsample_cross_entropy if op == "upsample" else fcn_kernels.interpolate_cross_entropy
    stock = reference.upsample_cross_entropy if op == "upsample" else reference.interpolate_cross_entropy
    loss = fused(leaves[0], target.to(device), *leaves[1:], backend=backend, **kw)
    loss.backward()
    check(f"{op}_cross_entropy", loss.detach(), stock(x.double(), target, *(t.double() if t is not None else None
                                                                           for t in inputs[1:]), **kw), dtype)
    if op == "interpolate":
        labels = fcn_kernels.interpolate_argmax(x.to(device), size, backend=backend, **kw).cpu()
        exact = torch.nn.functional.interpolate(x.double(), size=size, mode="bilinear", **kw)
        check("interpolate_argmax", exact.gather(1, labels.unsqueeze(1)).squeeze(1), exact.amax(1), dtype)


def check_labels(got, x, w, b, skip, kw, dtype):
    """Each label's exact score within the tolerance of the row's maximum (a near-tie may pick either)."""
    exact = reference.upsample_skip(*(t.double() if t is not None else None for t in (x, w, b, skip)), **kw)
    got = got.cpu()
    if got.dtype != torch.int64 or got.shape != exact[:, 0].shape:
        sys.exit(f"upsample_argmax {dtype}: labels {got.dtype} {tuple(got.shape)}, want int64 "
                 f"{tuple(exact[:, 0].shape)}")
    check("upsample_argmax", exact.gather(1, got.unsqueeze(1)).squeeze(1), exact.amax(1), dtype)


def check(name, got, want, dtype):
    tol = 1e-9 if dtype == torch.float64 else (1e-3 if dtype == torch.float32 else 5e-2)
    err = (got.double().cpu() - want).abs().max().item() if want.numel() else 0.0
    scale = want.abs().max().item() if want.numel() else 0.0
    if err > tol * (1 + scale):
        sys.exit(f"{name} {dtype}: max error {err} (scale {scale})")


def main(device):
    backend = "cuda" if device == "cuda" else "cpu"
    for index64 in ("0", "1"):  # (read by the CUDA launchers only)
        os.environ["FCN_KERNELS_CUDA_INDEX64"] = index64
        for dtype in (torch.float64, torch.float32, torch.bfloat16):
            for x, w, s, groups, off, size, skip, soff in upsample_calls(dtype):
                kw = dict(stride=s, groups=groups, out_offset=off, out_size=size, skip_offset=soff)
                leaves = [t.to(device).requires_grad_() if t is not None else None for t in (x, w, skip)]
                y = fcn_kernels.upsample_skip(leaves[0], leaves[1], None, leaves[2], backend=backend, **kw)
                y.backward(torch.ones_like(y))
                want = reference.upsample_skip(x.double(), w.double(), None,
                                               skip.double() if skip is not None else None, **kw)
                check("upsample_skip", y.detach(), want, dtype)
            for x, w, r, pad, groups in rarefied_calls(dtype):
                xc, wc = x.to(device).requires_grad_(), w.to(device).requires_grad_()
                y = fcn_kernels.rarefied_conv2d(xc, wc, None, rarefaction=r, padding=pad, groups=groups,
                                                backend=backend)
                y.backward(torch.ones_like(y))
                want = reference.rarefied_conv2d(x.double(), w.double(), None, rarefaction=r, padding=pad,
                                                 groups=groups)
                check("rarefied_conv2d", y.detach(), want, dtype)
            for x, w, b, skip, kw in argmax_calls(dtype):
                on_device = [t.to(device) if t is not None else None for t in (x, w, b, skip)]
                labels = fcn_kernels.upsample_argmax(*on_device, backend=backend, **kw)
                check_labels(labels, x, w, b, skip, kw, dtype)
            for op, inputs, kw, size in loss_calls(dtype):
                run_loss(op, inputs, kw, size, device, backend, dtype)
    if device == "cuda":
        torch.cuda.synchronize()
    print(f"cuda_sanitize: all calls done ({backend} backend)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="small calls of every CUDA kernel, for compute-sanitizer")
    parser.add_argument("--device", choices=["cuda", "cpu"], default="cuda",
                        help="cpu: the same calls on the cpu backend, to check this script without a GPU")
    device = parser.parse_args().device
    if device == "cuda" and (not torch.cuda.is_available() or "cuda" not in fcn_kernels.available_backends()):
        sys.exit("cuda_sanitize: needs a GPU and the CUDA kernels")
    main(device)
