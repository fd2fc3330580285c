"""The `fcn-kernels` command line: every command is a module of fcn_kernels.app.commands, listed here."""

import argparse
import os
import sys

from .._malloc import keep_memory
from ..errors import CLIError, DataError
from .commands import bench, demo, doctor, evaluate, export, predict, train
from .config import HelpFormatter
from .distributed import PeerLost

COMMANDS = (demo, train, evaluate, predict, export, bench, doctor)


def build_parser():
    parser = argparse.ArgumentParser(
        prog="fcn-kernels",
        description="Fused kernels and reference models for Fully Convolutional Networks "
        "(Long, Shelhamer, Darrell, CVPR 2015).",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for cmd in COMMANDS:
        p = sub.add_parser(
            cmd.NAME, help=cmd.HELP, description=getattr(cmd, "DESCRIPTION", cmd.HELP), formatter_class=HelpFormatter
        )
        cmd.add_arguments(p)
        p.set_defaults(run=cmd.run)
    return parser


def main(argv=None):
    # Every command (predict, bench, eval, train ...): glibc's malloc keeps freed memory, so the big tensors
    # of each call do not come back as fresh pages (fcn_kernels._malloc; FCN_KERNELS_KEEP_MEMORY=0 opts out).
    keep_memory()
    args = build_parser().parse_args(argv)
    try:
        return args.run(args) or 0
    except (CLIError, DataError) as exc:
        print(f"fcn-kernels {args.command}: error: {exc}", file=sys.stderr)
        if isinstance(exc, PeerLost):
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(2)
        return 2


if __name__ == "__main__":
    sys.exit(main())
