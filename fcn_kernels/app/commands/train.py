"""`fcn-kernels train`: train an FCN (single process or under torchrun).

    fcn-kernels train --data synthetic --n-class 4 --width 0.125 --iters 500 --out runs/a
    fcn-kernels train --data VOCdevkit/VOC2012 --init-from vgg16.pth --iters 100000 --out runs/voc
    torchrun --nproc-per-node 2 -m fcn_kernels.app.cli train ...   # DistributedDataParallel

Writes checkpoint.pt, metrics.json and overlay.png under --out.
"""

from ..config import TrainConfig, add_arguments as _add

NAME = "train"
HELP = "train an FCN (single process or under torchrun)"
DESCRIPTION = (
    "Train an FCN; writes checkpoint.pt, metrics.json, overlay.png to --out. An existing checkpoint "
    "is replaced only with --overwrite. --resume continues a run exactly, with its options unless "
    "given again."
)


def add_arguments(p):
    _add(p, TrainConfig)


def run(args):
    import functools

    from ..distributed import run_distributed
    from ..training import configure, train

    cfg, ckpt = configure(TrainConfig, args, default_out="fcn-kernels-run")
    run_distributed(functools.partial(train, ckpt=ckpt), cfg, cfg.device)
    return 0
