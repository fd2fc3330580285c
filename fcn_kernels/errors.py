"""Errors that reach the user as one line, never a traceback (the CLI prints them and exits 2)."""


class CLIError(Exception):
    """A command-line request that cannot be carried out (bad option, missing file, wrong checkpoint)."""


class DataError(ValueError):
    """A data directory or file that is missing or malformed; the message names the file."""


__all__ = ["CLIError", "DataError"]
