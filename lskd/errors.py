"""Errors shared by every lskd command (no torch import, so lightweight tools can raise them too)."""


class InvalidConfig(ValueError):
    """A user-supplied setting is out of range; command-line front-ends print it as one line."""
