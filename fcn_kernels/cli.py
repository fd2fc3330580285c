"""The `fcn-kernels` command. Each command module adds its subcommands through
register_commands(subparsers), setting `func` to the callable that runs it."""
import argparse
import importlib
import sys

# Modules that contribute subcommands; a module that is not there yet is skipped.
COMMAND_MODULES = ("fcn_kernels.bench", "fcn_kernels.train")


def build_parser():
    parser = argparse.ArgumentParser(prog="fcn-kernels", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
            continue
        module.register_commands(sub)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    return args.func(args) or 0


if __name__ == "__main__":
    sys.exit(main())
