"""The one error hierarchy of every lskd command (stdlib only, so light tools can raise it too).

A console script catches ``LskdError`` and prints it as one ``PROG: error: ...`` line with exit status 2
(``lskd_tools.cli``); any other exception is a bug and keeps its traceback.
"""


class LskdError(Exception):
    """A problem with what the user asked for or gave; the message names the bad value and what was expected."""


class InvalidConfig(LskdError, ValueError):
    """A user-supplied setting is out of range or inconsistent with another."""


class DataError(LskdError, ValueError):
    """A dataset, checkpoint or cache file is missing, malformed or does not match the run."""


class ToolError(LskdError, RuntimeError):
    """An external tool lskd runs (fairseq-preprocess, fairseq-generate) failed or gave incomplete output."""
