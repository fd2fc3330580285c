"""`fcn-kernels eval`: evaluate a checkpoint (metrics JSON and overlay PNG).

    fcn-kernels eval --checkpoint runs/a/checkpoint.pt --data synthetic --out runs/a/eval
"""
from ._options import common

NAME = "eval"
HELP = "evaluate a checkpoint: metrics JSON and overlay PNG"
DESCRIPTION = "Evaluate a checkpoint; writes metrics.json and overlay.png to --out."


def add_arguments(p):
    common(p)
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--split", default="val")


def run(args):
    from ..engine import run_eval

    if args.out is None:
        args.out = "fcn-kernels-eval"
    if args.batch_size is None:
        args.batch_size = 1
    run_eval(args)
    return 0
