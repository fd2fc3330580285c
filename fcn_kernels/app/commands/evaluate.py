"""`fcn-kernels eval`: evaluate a checkpoint (metrics JSON and overlay PNG).

fcn-kernels eval --checkpoint runs/a/checkpoint.pt --data synthetic --out runs/a/eval
"""

from ..config import EvalConfig, add_arguments as _add

NAME = "eval"
HELP = "evaluate a checkpoint: metrics JSON and overlay PNG"
DESCRIPTION = "Evaluate a checkpoint; writes metrics.json and overlay.png to --out."


def add_arguments(p):
    _add(p, EvalConfig)


def run(args):
    import functools

    from .. import config
    from ..distributed import run_distributed
    from ..evaluation import run_eval

    cfg = config.from_args(EvalConfig, args)
    run_distributed(functools.partial(run_eval, given=config.given(args)), cfg, cfg.device)
    return 0
