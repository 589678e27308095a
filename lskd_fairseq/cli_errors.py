"""One line instead of a traceback for lskd's errors inside fairseq's own commands.

fairseq-train and fairseq-generate run the plugin's criteria and task inside fairseq's ``main``, which lskd
does not wrap; a bad setting there (``T <= 0``, a stale teacher cache, a teacher on other dictionaries)
raises an ``LskdError`` that ends the process. The hook prints it as ``lskd error: ...`` and the exit status
stays non-zero (1, Python's for an uncaught exception); any other exception keeps its traceback.
"""

import sys

from lskd.errors import LskdError


def install() -> None:
    """Chain ``sys.excepthook`` (``lskd_fairseq.install_process_hooks`` calls this once)."""
    previous = sys.excepthook

    def one_line_lskd_errors(exc_type, exc, tb):
        if issubclass(exc_type, LskdError):
            print(f"lskd error: {exc}", file=sys.stderr)
        else:
            previous(exc_type, exc, tb)

    sys.excepthook = one_line_lskd_errors
