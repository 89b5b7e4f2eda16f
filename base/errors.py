"""Errors meant for the person at the keyboard or the browser: their message is the whole story, no traceback.

They live at the bottom of the layers so that library code at any depth can raise them without importing the CLI
or the app; `heads` turns them into one line and exit code 2, the app into a message on the page.
"""


class UserError(Exception):
    """Bad input, missing files or a stopped run: something the user can act on from the message alone."""


class InputError(UserError):
    """An upload or input file that cannot be used: missing, too large, unreadable, or without a usable face."""


class ConfigError(UserError):
    """An option value out of range, raised by a config's own check (`__post_init__`).

    Not a ValueError on purpose: tyro wraps ValueErrors from constructors in a box of its own, while this one reaches
    the `heads` CLI, which prints it as one line with exit status 2, as it prints every other UserError.
    """
