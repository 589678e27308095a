"""The one way every lskd console script starts and fails.

A user error (``lskd.errors.LskdError``) prints one line ``PROG: error: ...`` and exits with status 2, as
argparse does for a bad flag; any other exception is a bug and keeps its traceback.
"""
import functools
import sys
from typing import Callable, Optional, Sequence

from lskd.errors import LskdError


def run_command(prog: str, main: Callable[[Optional[Sequence[str]]], object], argv=None) -> int:
    try:
        main(argv)
    except LskdError as error:
        print(f"{prog}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    return 0


def console_script(prog: str):
    """Decorate ``main(argv)`` so that calling it as a console script exits through ``run_command``."""

    def wrap(main):
        @functools.wraps(main)
        def entry(argv=None):
            sys.exit(run_command(prog, main, argv))

        entry.main = main
        return entry

    return wrap
