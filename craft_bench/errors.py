"""The one exception type that means "the user asked for something that cannot be done"."""


class UserError(Exception):
    """Bad input or a missing resource. The CLI prints it as one line and exits with status 2."""
