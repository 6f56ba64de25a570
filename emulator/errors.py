"""Errors a user can cause: the CLI prints them as one line and exits with code 2."""


class UserError(ValueError):
    """Bad input (unknown name, impossible value, wrong file), reported without a traceback."""
