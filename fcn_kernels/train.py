"""`fcn-kernels train`, `fcn-kernels eval` and `fcn-kernels demo`.

    fcn-kernels demo                      # synthetic data, narrow FCN-8s, CPU, < 5 minutes
    fcn-kernels train --data synthetic --n-class 4 --width 0.125 --iters 500 --out runs/a
    fcn-kernels train --data VOCdevkit/VOC2012 --init-from vgg16.pth --iters 100000 --out runs/voc
    torchrun --nproc-per-node 2 -m fcn_kernels.cli train ...   # DistributedDataParallel
    fcn-kernels eval --checkpoint runs/a/checkpoint.pt --data synthetic --out runs/a/eval

Each writes, under --out: checkpoint.pt (train), metrics.json and overlay.png
(image | ground truth | prediction for the first validation images).
"""
from __future__ import annotations

import argparse
import sys
import time

from .data import DataError, PREPROCESS_MODES
from .engine import ARCHS, CLIError

__all__ = ["register_commands", "cmd_train", "cmd_eval", "cmd_demo", "DEMO"]

# The demo's recipe: tuned to reach validation mean IU >= 0.80 on 2 CPU cores within 5 minutes.
DEMO = dict(
    model="fcn8s", n_class=4, width=0.0625, dropout=0.0, image_size=64, train_size=4096, val_size=64,
    max_shapes=3, batch_size=4, optimizer="adam", lr=1e-3, momentum=0.9, weight_decay=0.0,
    lr_schedule="poly-time", iters=3000, init="kaiming", flip=True, max_seconds=240.0, seed=0, data_seed=0,
)


def _run(func, args) -> int:
    try:
        func(args)
    except (CLIError, DataError) as exc:
        print(f"fcn-kernels {args.command}: error: {exc}", file=sys.stderr)
        return 2
    return 0


def cmd_train(args) -> int:
    from .engine import train
    return _run(train, args)


def cmd_eval(args) -> int:
    from .engine import run_eval
    return _run(run_eval, args)


def cmd_demo(args) -> int:
    from .engine import train

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
    try:
        result = train(train_args)
    except (CLIError, DataError) as exc:
        print(f"fcn-kernels demo: error: {exc}", file=sys.stderr)
        return 2
    wall = time.perf_counter() - t0
    ok = result["mean_iu"] >= 0.80
    print(f"demo: mean IU {result['mean_iu']:.4f} ({'>=' if ok else '<'} 0.80) after {result['step']} steps, "
          f"{wall:.1f} s wall (training {result['train_seconds']:.1f} s); overlay written to {result['overlay']}")
    return 0


def _common(p, device_default=None):
    p.add_argument("--data", default="synthetic",
                   help="'synthetic' (generated, no download) or a VOC-format directory (default: synthetic)")
    p.add_argument("--n-class", type=int, default=None, help="classes incl. background (VOC 21; synthetic 2-7)")
    p.add_argument("--model", choices=ARCHS, default=None, help="architecture (default fcn8s; from the checkpoint "
                   "when resuming or evaluating)")
    p.add_argument("--width", type=float, default=None, help="trunk channel multiplier (default 1.0)")
    p.add_argument("--device", default=device_default, help="cpu, cuda, cuda:1 ... (default: cuda if available)")
    p.add_argument("--fused", action=argparse.BooleanOptionalAction, default=True,
                   help="fused upsample+crop+skip kernels (--no-fused: the stock composition)")
    p.add_argument("--amp", action="store_true", help="bfloat16 autocast")
    p.add_argument("--batch-size", type=int, default=None, help="global batch (split across ranks)")
    p.add_argument("--out", default=None, help="output folder")
    p.add_argument("--preprocess", choices=PREPROCESS_MODES, default=None,
                   help="input preprocessing (default: bgr_mean, the reference's, for VOC; rgb_norm for synthetic)")
    p.add_argument("--image-size", type=int, default=64, help="synthetic: image side")
    p.add_argument("--max-shapes", type=int, default=3, help="synthetic: at most this many shapes an image")
    p.add_argument("--train-size", type=int, default=1024, help="synthetic: training images")
    p.add_argument("--val-size", type=int, default=64, help="synthetic: validation images")
    p.add_argument("--data-seed", type=int, default=0, help="synthetic: seed of the data")
    p.add_argument("--num-workers", type=int, default=0, help="data-loader worker processes")
    p.add_argument("--overlay-images", type=int, default=4, help="rows in overlay.png")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=True, help="progress bars")


def _train_opts(p, demo=False):
    p.add_argument("--iters", type=int, default=None, help="optimizer steps" + ("" if demo else " (required)"))
    p.add_argument("--max-seconds", type=float, default=None, help="stop training after this many seconds")
    p.add_argument("--lr", type=float, default=None)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--overwrite", action="store_true", help="replace an existing checkpoint in --out")


def register_commands(subparsers) -> None:
    # ---- train
    p = subparsers.add_parser("train", help="train an FCN (single process or under torchrun)",
                              description="Train an FCN; writes checkpoint.pt, metrics.json, overlay.png to --out.")
    _common(p)
    _train_opts(p)
    p.add_argument("--train-split", default="train")
    p.add_argument("--val-split", default="val")
    p.add_argument("--optimizer", choices=("sgd", "adam"), default="sgd", help="sgd (momentum) or adam (AdamW)")
    p.add_argument("--momentum", type=float, default=0.9)
    p.add_argument("--weight-decay", type=float, default=5e-4)
    p.add_argument("--lr-schedule", choices=("constant", "poly", "poly-time"), default="constant",
                   help="poly: (1 - step/iters)^0.9; poly-time: (1 - t/max_seconds)^0.9, for a time budget")
    p.add_argument("--dropout", type=float, default=None, help="drop6/drop7 probability (default 0.5)")
    p.add_argument("--init", choices=("reference", "kaiming"), default="reference",
                   help="reference: the model's own init (for fine-tuning); kaiming: He init of the trunk "
                   "(training from scratch)")
    p.add_argument("--init-from", default=None, help="torchvision VGG16 or torchfcn weights to start from")
    p.add_argument("--flip", action=argparse.BooleanOptionalAction, default=False, help="random mirroring")
    p.add_argument("--sample-p", type=float, default=1.0, help="loss sampling: keep each pixel's loss with "
                   "probability p (unbiased, paper 3.4)")
    p.add_argument("--class-weights", choices=("none", "inverse", "median"), default="none",
                   help="class-balanced loss weights computed from the training labels")
    p.add_argument("--resume", default=None, help="checkpoint to continue (exactly) from")
    p.add_argument("--val-every", type=int, default=0, help="evaluate every N steps (0: only at the end)")
    p.add_argument("--checkpoint-every", type=int, default=0, help="save every N steps (0: only at the end)")
    p.add_argument("--log-every", type=int, default=10)
    p.set_defaults(func=_fill_train_defaults(cmd_train, {a.dest: a.default for a in p._actions}))

    # ---- eval
    p = subparsers.add_parser("eval", help="evaluate a checkpoint: metrics JSON and overlay PNG",
                              description="Evaluate a checkpoint; writes metrics.json and overlay.png to --out.")
    _common(p)
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--split", default="val")
    p.set_defaults(func=_fill_eval_defaults(cmd_eval))

    # ---- demo
    p = subparsers.add_parser("demo", help="train a narrow FCN-8s on synthetic data on the CPU (< 5 min)",
                              description="Train a narrow FCN-8s on the synthetic shapes set and print the "
                              "validation metrics and where the overlay picture is.")
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
    p.set_defaults(func=cmd_demo)


# Options a resumed run takes from its checkpoint unless given again on the command line.
_NOT_INHERITED = {"resume", "out", "overwrite", "progress", "device", "num_workers", "max_seconds", "func",
                  "command", "help"}


def _fill_train_defaults(func, parser_defaults):
    def run(args):
        if args.resume:
            from .engine import is_own_checkpoint, load_checkpoint
            try:
                ckpt = load_checkpoint(args.resume)
            except CLIError as exc:
                print(f"fcn-kernels train: error: {exc}", file=sys.stderr)
                return 2
            if is_own_checkpoint(ckpt):
                for k, v in ckpt.get("args", {}).items():
                    if k not in _NOT_INHERITED and k in parser_defaults and getattr(args, k) == parser_defaults[k]:
                        setattr(args, k, v)
                if args.out is None:
                    from pathlib import Path
                    args.out = str(Path(args.resume).parent)
        if args.out is None:
            args.out = "fcn-kernels-run"
        if args.batch_size is None:
            args.batch_size = 1
        if args.lr is None:
            args.lr = 1e-4
        if args.seed is None:
            args.seed = 0
        return func(args)
    return run


def _fill_eval_defaults(func):
    def run(args):
        if args.out is None:
            args.out = "fcn-kernels-eval"
        if args.batch_size is None:
            args.batch_size = 1
        return func(args)
    return run
