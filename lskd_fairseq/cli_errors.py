"""Print lskd's user errors (``LskdError``) as one line on the command line instead of a traceback."""
import sys

from lskd.errors import LskdError

_default_hook = sys.excepthook


def _one_line_config_errors(exc_type, exc, tb):
    if issubclass(exc_type, LskdError):
        print(f"lskd error: {exc}", file=sys.stderr)
    else:
        _default_hook(exc_type, exc, tb)


sys.excepthook = _one_line_config_errors
