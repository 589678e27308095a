"""fairseq ``--user-dir`` plugin: the label-smoothed teacher criterion, the word-level KD criterion and
the ``translation_kd`` task that feeds a teacher's outputs to it.

fairseq imports this package once per process (train, generate, validate). Importing it registers the
criteria and the task and calls ``install_process_hooks()``, the one place for the plugin's process-wide
effects; no other module of the plugin changes anything outside itself when imported.
"""

import logging
import warnings

_hooks_installed = False


def _import_fairseq_quietly() -> None:
    """Import fairseq without its import-time side effects on lskd's own commands.

    fairseq's speech tasks call ``logging.basicConfig`` when imported, which would send every later log
    line of any library to stderr at DEBUG level, and its TorchScript decorators raise deprecation
    warnings on current torch. A placeholder handler turns that ``basicConfig`` into a no-op.
    """
    root = logging.getLogger()
    placeholder = logging.NullHandler()
    root.addHandler(placeholder)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            import fairseq.models  # noqa: F401
            import fairseq.tasks  # noqa: F401
    finally:
        root.removeHandler(placeholder)


def install_process_hooks() -> None:
    """Install the plugin's process-wide effects, once per process (later calls do nothing):

    1. fairseq is imported quietly (``_import_fairseq_quietly``);
    2. the known third-party warnings of a run are filtered, among them the one torch raises on every forward
       for fairseq's float attention mask beside a bool padding mask (``quiet``, the one warning filter);
    3. fairseq checkpoints load under torch's ``weights_only=True``: the one non-tensor type they hold is
       allow-listed, and fairseq's own loader refuses anything else as lskd does, in one line
       (``checkpoints.allow_fairseq_checkpoints``);
    4. an exit hook stops fairseq's prefetch threads, so fairseq-train does not abort at exit
       (``clean_exit.register``);
    5. an ``LskdError`` that ends fairseq's own commands (fairseq-train, fairseq-generate) prints as one line
       ``lskd error: ...`` with a non-zero exit instead of a traceback (``cli_errors.install``). lskd's own
       console scripts report errors through ``lskd_tools.cli`` before this hook could see them.
    """
    global _hooks_installed
    if _hooks_installed:
        return
    _import_fairseq_quietly()
    from lskd_fairseq import checkpoints, clean_exit, cli_errors
    from lskd_fairseq.quiet import silence_third_party_warnings

    silence_third_party_warnings()

    checkpoints.allow_fairseq_checkpoints()
    clean_exit.register()
    cli_errors.install()
    _hooks_installed = True


install_process_hooks()

from lskd_fairseq.criterions import label_smoothed_teacher, word_kd  # noqa: E402,F401  (registration)
from lskd_fairseq.tasks import translation_kd  # noqa: E402,F401  (registration)
