"""The suite's fixtures live in ``tests/fixtures/``, one module per concern, registered here as plugins.

pytest puts this folder (``tests/``, no ``__init__.py``) on ``sys.path`` when it imports this file, so the
fixture modules and the plain helper modules beside the tests (``repo_root``, ``environment``,
``script_runs``, ...) import by name. Tests import helpers from those modules, never from this file.
"""

pytest_plugins = ["fixtures.fairseq_runs", "fixtures.iwslt_release", "fixtures.loss_paths"]


def pytest_configure(config):
    config.addinivalue_line(
        "markers",
        "slow: end to end, or training through the CLIs (recipes, demo, README block, "
        "DDP, data prep, clean-exit reproduction); -m 'not slow' is the fast layer",
    )
