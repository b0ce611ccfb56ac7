"""The one exception type that means "the user asked for something that cannot be done", and the argument parser
every command line uses, which reports bad usage as that error."""

import argparse


class UserError(Exception):
    """Bad input or a missing resource. The CLI prints it as one line and exits with status 2."""


class OneLineParser(argparse.ArgumentParser):
    """argparse that reports bad usage as one line and exit status 2 (argparse's default status too)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UserError(f"{message} (see `{self.prog} --help`)")
