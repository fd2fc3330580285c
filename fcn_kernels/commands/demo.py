"""`fcn-kernels demo`: train a narrow FCN-8s on generated shapes, on the CPU, with no download."""
import argparse
import time

NAME = "demo"
HELP = "train a narrow FCN-8s on synthetic data on the CPU (< 5 min)"
DESCRIPTION = ("Train a narrow FCN-8s on the synthetic shapes set and print the validation metrics and where "
               "the overlay picture is.")

# The demo's recipe: tuned to reach validation mean IU >= 0.80 on 2 CPU cores within 5 minutes.
DEMO = dict(
    model="fcn8s", n_class=4, width=0.0625, dropout=0.0, image_size=64, train_size=4096, val_size=64,
    max_shapes=3, batch_size=4, optimizer="adam", lr=1e-3, momentum=0.9, weight_decay=0.0,
    lr_schedule="poly-time", iters=3000, init="kaiming", flip=True, max_seconds=240.0, seed=0, data_seed=0,
)


def add_arguments(p):
    p.add_argument("--out", default="fcn-kernels-demo", help="output folder (default: fcn-kernels-demo)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--fused", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--amp", action="store_true", help="bfloat16 autocast")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=True)
    for name, typ in (("iters", int), ("max_seconds", float), ("width", float), ("image_size", int),
                      ("n_class", int), ("train_size", int), ("val_size", int), ("batch_size", int),
                      ("lr", float), ("seed", int)):
        p.add_argument("--" + name.replace("_", "-"), type=typ, default=None,
                       help=f"(default {DEMO[name]})")
    p.add_argument("--overwrite", action="store_true", help="replace an existing checkpoint in --out")


def run(args) -> int:
    from ..engine import train

    t0 = time.perf_counter()
    train_args = argparse.Namespace(**vars(args))
    for k, v in DEMO.items():
        if getattr(train_args, k, None) is None:
            setattr(train_args, k, v)
    train_args.data = "synthetic"
    defaults = dict(preprocess="rgb_norm", train_split="train", val_split="val", sample_p=1.0,
                    class_weights="none", init_from=None, resume=None, val_every=0, checkpoint_every=0,
                    log_every=10, num_workers=0, overlay_images=4)
    for k, v in defaults.items():
        if not hasattr(train_args, k):
            setattr(train_args, k, v)
    print(f"fcn-kernels demo: {train_args.model} width {train_args.width} on {train_args.image_size}px synthetic "
          f"shapes ({train_args.n_class} classes), {train_args.iters} steps of batch {train_args.batch_size}, "
          f"budget {train_args.max_seconds:g} s, device {train_args.device or 'cpu'}", flush=True)
    result = train(train_args)
    wall = time.perf_counter() - t0
    ok = result["mean_iu"] >= 0.80
    print(f"demo: mean IU {result['mean_iu']:.4f} ({'>=' if ok else '<'} 0.80) after {result['step']} steps, "
          f"{wall:.1f} s wall (training {result['train_seconds']:.1f} s); overlay written to {result['overlay']}")
    return 0
