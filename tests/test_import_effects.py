"""Importing lskd modules changes nothing process-wide, except the plugin's one documented hook installer."""

import os
import subprocess
import sys

from repo_root import REPO


def python(code: str, **env) -> str:
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONWARNINGS": "ignore", **env},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout.strip()


def test_importing_the_plot_module_leaves_the_callers_matplotlib_backend():
    code = "import matplotlib, lskd_report.diffusion_report; print(matplotlib.get_backend())"
    assert python(code, MPLBACKEND="svg") == "svg"


def test_evaluation_tools_do_not_import_fairseq():
    assert python("import sys, lskd_nmt.evaluate, lskd_nmt.prepare_iwslt; print('fairseq' in sys.modules)") == "False"


def test_planning_a_grid_does_not_import_torch():
    """The recipes run these once per stage (a run's manifest, the settings); torch's import alone costs about
    1.5 s of CPU each time."""
    modules = "lskd_grid.runs, lskd_grid.settle, lskd_grid.stages"
    assert python(f"import sys, {modules}; print('torch' in sys.modules)") == "False"


def test_plugin_hooks_are_installed_once():
    code = """
import sys
import lskd_fairseq
hook = sys.excepthook
lskd_fairseq.install_process_hooks()
print(sys.excepthook is hook, hook.__name__)
"""
    assert python(code) == "True one_line_lskd_errors"


def test_the_suites_fixtures_leave_the_plugins_process_hooks_uninstalled():
    """The hooks are the plugin's to install in fairseq's processes; a test that needs them imports the plugin."""
    code = f"""
import sys
sys.path.insert(0, {str(REPO / "tests")!r})
import conftest
for plugin in conftest.pytest_plugins:
    __import__(plugin)
print(sorted(name for name in ("fairseq", "lskd_fairseq") if name in sys.modules), sys.excepthook is sys.__excepthook__)
"""
    assert python(code) == "[] True"
