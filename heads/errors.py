"""Errors meant for the person at the keyboard: the CLI prints their message without a traceback."""


class UserError(Exception):
    """Bad input, missing files or a stopped run: something the user can act on from the message alone."""
