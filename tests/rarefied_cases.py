"""Random rarefied_conv2d problems and a forward + backward runner, shared by the CPU and CUDA tests."""
import torch


def random_case(rng, *, n=None, k=None, r=None, groups=None, dtype=torch.float64):
    """A random valid geometry: returns x, weight, bias and the kwargs."""
    g = groups if groups is not None else rng.choice([1, 1, 1, 2, 3])
    cin = g * rng.randint(1, 6 if g > 1 else 12)
    cout = g * rng.randint(1, 6 if g > 1 else 12)
    kh = k if k is not None else rng.choice([1, 2, 3, 5])
    kw = k if k is not None else rng.choice([1, 3, 4])
    rh = r if r is not None else rng.randint(1, 8)
    rw = r if r is not None else rng.randint(1, 8)
    ph, pw = rng.randint(0, 2 * rh), rng.randint(0, 2 * rw)
    h = max(1, (kh - 1) * rh + 1 - 2 * ph) + rng.randint(0, 7)
    w = max(1, (kw - 1) * rw + 1 - 2 * pw) + rng.randint(0, 7)
    n = n if n is not None else rng.randint(1, 3)
    x = torch.randn(n, cin, h, w, dtype=dtype)
    weight = torch.randn(cout, cin // g, kh, kw, dtype=dtype)
    bias = torch.randn(cout, dtype=dtype) if rng.random() < 0.7 else None
    return x, weight, bias, dict(rarefaction=(rh, rw), padding=(ph, pw), groups=g)


def describe(x, weight, bias, kw):
    return f"x {tuple(x.shape)} weight {tuple(weight.shape)} bias {bias is not None} {kw}"


def forward_backward(fn, x, weight, bias, kw, grad=None):
    """Output and the gradients of x, weight, bias (fresh leaves) under fn."""
    leaves = [t.detach().clone().requires_grad_() if t is not None else None for t in (x, weight, bias)]
    y = fn(leaves[0], leaves[1], leaves[2], **kw)
    if grad is None:
        grad = torch.randn_like(y)
    y.backward(grad)
    return [y.detach()] + [t.grad if t is not None else None for t in leaves], grad
