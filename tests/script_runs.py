"""Run this environment's console scripts (fairseq-train, lskd-dump-teacher, ...) as users do, minus the import.

Why a fork server instead of one ``subprocess.run`` per run: importing fairseq costs about 3.5 seconds, most of
a tiny run, and the suite makes dozens of such runs, so a fresh interpreter for each would add minutes. A fork
of an interpreter that has already imported the script starts at once and is otherwise a fresh run.

Each script is served by one process that has imported the script's module (``script_server.py``); a run is a
fork of it with its own argv, environment, working folder, stdout, stderr and exit status, calling the same
entry function as the installed wrapper. Whatever the run imports beyond that module (the ``--user-dir``
plugin, say) it imports itself. Tests of import-time behaviour (warnings, what a module pulls in) start a fresh
interpreter instead.
"""

import atexit
import functools
import json
import os
import shutil
import subprocess
import sys
import tempfile
from importlib.metadata import entry_points
from pathlib import Path

SERVER = Path(__file__).with_name("script_server.py")


class _Server:
    def __init__(self, entry_point: str, env: dict):
        read_fd, write_fd = os.pipe()
        self.folder = Path(tempfile.mkdtemp(prefix="script-server-"))
        self.process = subprocess.Popen(
            [sys.executable, str(SERVER), entry_point, str(write_fd), str(self.folder)],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            text=True,
            env=env,
            pass_fds=(write_fd,),
        )
        os.close(write_fd)
        self.replies = os.fdopen(read_fd)
        self._reply("ready")
        self.import_stdout = (self.folder / "import.stdout").read_text()
        self.import_stderr = (self.folder / "import.stderr").read_text()

    def _reply(self, key: str):
        line = self.replies.readline()
        if not line:
            printed = (self.folder / "import.stderr").read_text()[-3000:]
            raise RuntimeError(f"the script server ({' '.join(self.process.args)}) ended:\n{printed}")
        return json.loads(line)[key]

    def run(self, argv: list[str], env: dict, cwd: Path) -> subprocess.CompletedProcess:
        with tempfile.TemporaryDirectory() as folder:
            out, err = Path(folder, "stdout"), Path(folder, "stderr")
            request = {"argv": argv, "env": env, "cwd": str(cwd), "stdout": str(out), "stderr": str(err)}
            self.process.stdin.write(json.dumps(request) + "\n")
            self.process.stdin.flush()
            returncode = self._reply("returncode")
            stdout, stderr = self.import_stdout + out.read_text(), self.import_stderr + err.read_text()
            return subprocess.CompletedProcess(argv, returncode, stdout, stderr)

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait()
        shutil.rmtree(self.folder)


_servers: dict[tuple, _Server] = {}


@atexit.register
def _close_servers() -> None:
    for server in _servers.values():
        server.close()


@functools.cache
def _entry_point(name: str) -> str:
    """``module:function`` of the installed console script ``name``."""
    (entry,) = entry_points(group="console_scripts", name=name)
    return entry.value


def run_script(name: str, *args, env: dict | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """``name ARGS...`` as ``subprocess.run(..., capture_output=True, text=True)`` would run it."""
    env = dict(os.environ if env is None else env)
    key = (_entry_point(name), env.get("PYTHONWARNINGS"))  # warning filters are set when an interpreter starts
    if key not in _servers:
        _servers[key] = _Server(key[0], env)
    argv = [str(Path(sys.executable).parent / name), *map(str, args)]
    return _servers[key].run(argv, env, Path.cwd() if cwd is None else cwd)
