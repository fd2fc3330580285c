"""`fcn-kernels demo`: train a narrow FCN-8s on generated shapes, on the CPU, with no download."""

from ..config import TrainConfig, add_arguments as _add, with_defaults

NAME = "demo"
HELP = "train a narrow FCN-8s on synthetic data on the CPU (about 2 minutes)"
DESCRIPTION = (
    "Train a narrow FCN-8s on the synthetic shapes set, a fixed number of seeded steps (the same "
    "metrics every run on a machine), and print the validation metrics and where the overlay "
    "picture is. --out is the demo's own folder: each run replaces the checkpoint, metrics and "
    "overlay a previous demo wrote there (another run's checkpoint only with --overwrite)."
)

# The demo's recipe: a fixed 1600 seeded steps that reach validation mean IU >= 0.80 in under 3 minutes
# on one core. One thread: at width 1/16 every op is too small to share, and two threads cost up to 10x
# the CPU time of one (waiting at OpenMP barriers), far worse when other jobs run.
DemoConfig = with_defaults(
    TrainConfig,
    "DemoConfig",
    out="fcn-kernels-demo",
    device="cpu",
    threads=1,
    model="fcn8s",
    n_class=4,
    width=0.0625,
    dropout=0.0,
    image_size=96,
    train_size=4096,
    val_size=64,
    max_shapes=3,
    batch_size=2,
    optimizer="adam",
    lr=1e-3,
    weight_decay=0.0,
    lr_schedule="poly",
    iters=1600,
    init="kaiming",
    flip=True,
)
OPTIONS = (
    "out",
    "device",
    "threads",
    "fused",
    "amp",
    "progress",
    "iters",
    "width",
    "image_size",
    "n_class",
    "train_size",
    "val_size",
    "batch_size",
    "lr",
    "seed",
    "overwrite",
)


def add_arguments(p):
    _add(p, DemoConfig, only=OPTIONS)


def run(args) -> int:
    import functools
    import time

    from ..distributed import run_distributed
    from ..training import configure, train

    t0 = time.perf_counter()
    cfg, _ = configure(DemoConfig, args, default_out=DemoConfig.out)
    print(
        f"fcn-kernels demo: {cfg.model} width {cfg.width} on {cfg.image_size}px synthetic shapes "
        f"({cfg.n_class} classes), {cfg.iters} steps of batch {cfg.batch_size}, device {cfg.device}",
        flush=True,
    )
    result = run_distributed(functools.partial(train, written_by="demo"), cfg, cfg.device)
    wall = time.perf_counter() - t0
    ok = result["mean_iu"] >= 0.80
    print(
        f"demo: mean IU {result['mean_iu']:.4f} ({'>=' if ok else '<'} 0.80) after {result['step']} steps, "
        f"{wall:.1f} s wall (training {result['train_seconds']:.1f} s); overlay written to {result['overlay']}"
    )
    return 0
