"""The `fcn-kernels` commands, one module each, all listed in fcn_kernels/app/cli.py.

A command module defines
    NAME: str                      the subcommand ("train")
    HELP: str                      one line for `fcn-kernels --help`
    DESCRIPTION: str               (optional) the paragraph of `fcn-kernels NAME --help`
    add_arguments(parser)          its options (each with a help text that shows its default)
    run(args) -> int               the work; exit status. User errors raise fcn_kernels.errors.CLIError
                                   (or DataError): the CLI prints one line and exits 2.
It imports heavy dependencies inside run(), so that `fcn-kernels --help` stays fast.
"""
