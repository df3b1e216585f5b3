"""Errors raised for bad user input."""


class InputError(ValueError):
    """Bad user input: a missing, corrupt or inconsistent file, row or tile.

    The message always names the file and the row, tile or key concerned and
    says what was expected, so that a user can fix the input and rerun.
    """
