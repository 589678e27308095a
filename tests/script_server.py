"""Serve one console script of this environment: import its module once, then fork once per run.

Started by ``script_runs`` as ``python script_server.py MODULE:FUNCTION REPLY_FD FOLDER``; what the import
prints goes to ``FOLDER/import.stdout`` and ``FOLDER/import.stderr``, for the client to put in front of each
run's own output, as a fresh start would print it every time. Each line on stdin is
a JSON run request (argv, environment, working folder, stdout and stderr files). The fork sets those and
calls the entry function the way the installed wrapper does (``sys.exit(FUNCTION())``), then leaves through
the interpreter's normal exit: atexit hooks, thread shutdown, an uncaught exception's traceback. On the
reply descriptor the server writes the fork's exit status as ``subprocess`` reports it.
"""

import functools
import gc
import importlib
import json
import os
import sys


def _redirect(stdin: str, stdout: str, stderr: str) -> None:
    sys.stdout.flush()
    sys.stderr.flush()
    written = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
    for fd, path, flags in ((0, stdin, os.O_RDONLY), (1, stdout, written), (2, stderr, written)):
        opened = os.open(path, flags, 0o644)
        os.dup2(opened, fd)
        os.close(opened)


def _become(request: dict) -> None:
    """Turn this fork into the requested run: its files on 0/1/2, its environment, folder and argv."""
    _redirect(os.devnull, request["stdout"], request["stderr"])
    os.environ.clear()
    os.environ.update(request["env"])
    os.chdir(request["cwd"])
    sys.argv = request["argv"]


def main() -> None:
    entry_point, reply_fd, folder = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    replies = os.fdopen(reply_fd, "w", buffering=1)
    sys.path[0] = os.path.dirname(sys.executable)  # as for the installed wrapper: its folder, not tests/
    requests = os.fdopen(os.dup(0))
    _redirect(os.devnull, os.path.join(folder, "import.stdout"), os.path.join(folder, "import.stderr"))
    module_name, _, attribute = entry_point.partition(":")
    entry = functools.reduce(getattr, attribute.split("."), importlib.import_module(module_name))
    _redirect(os.devnull, os.devnull, os.devnull)
    gc.freeze()  # the forks' collections skip what the import built, instead of copying all of it on write
    replies.write(json.dumps({"ready": os.getpid()}) + "\n")
    for line in requests:
        pid = os.fork()
        if pid == 0:
            replies.close()
            requests.close()
            _become(json.loads(line))
            sys.exit(entry())
        _, status = os.waitpid(pid, 0)
        replies.write(json.dumps({"returncode": os.waitstatus_to_exitcode(status)}) + "\n")


if __name__ == "__main__":
    main()
