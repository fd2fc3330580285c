"""`fcn-kernels train`: train an FCN (single process or under torchrun).

    fcn-kernels train --data synthetic --n-class 4 --width 0.125 --iters 500 --out runs/a
    fcn-kernels train --data VOCdevkit/VOC2012 --init-from vgg16.pth --iters 100000 --out runs/voc
    torchrun --nproc-per-node 2 -m fcn_kernels.cli train ...   # DistributedDataParallel

Writes checkpoint.pt, metrics.json and overlay.png under --out.
"""
import argparse
from pathlib import Path

from ._options import common, train_opts

NAME = "train"
HELP = "train an FCN (single process or under torchrun)"
DESCRIPTION = "Train an FCN; writes checkpoint.pt, metrics.json, overlay.png to --out."

def add_arguments(p):
    common(p)
    train_opts(p)
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


# Options a resumed run takes from its checkpoint unless given again on the command line.
_NOT_INHERITED = {"resume", "out", "overwrite", "progress", "device", "num_workers", "max_seconds", "run",
                  "command", "help"}


def _parser_defaults():
    p = argparse.ArgumentParser()
    add_arguments(p)
    return {a.dest: a.default for a in p._actions}


def run(args):
    from ..engine import is_own_checkpoint, load_checkpoint, train

    if args.resume:
        ckpt = load_checkpoint(args.resume)
        if is_own_checkpoint(ckpt):
            defaults = _parser_defaults()
            for k, v in ckpt.get("args", {}).items():
                if k not in _NOT_INHERITED and k in defaults and getattr(args, k) == defaults[k]:
                    setattr(args, k, v)
            if args.out is None:
                args.out = str(Path(args.resume).parent)
    if args.out is None:
        args.out = "fcn-kernels-run"
    if args.batch_size is None:
        args.batch_size = 1
    if args.lr is None:
        args.lr = 1e-4
    if args.seed is None:
        args.seed = 0
    train(args)
    return 0
