"""fairseq ``--user-dir`` plugin: the label-smoothed teacher criterion, the word-level KD criterion and
the ``translation_kd`` task that feeds a teacher's outputs to it.

fairseq imports this package once per process (train, generate, validate); importing it also lets fairseq
checkpoints load under torch's ``weights_only=True``, prints configuration errors as one line and lets
fairseq-train exit cleanly when its prefetch thread is still running (``clean_exit``).
"""
import logging
import warnings


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


_import_fairseq_quietly()
from lskd_fairseq.quiet import silence_third_party_warnings  # noqa: E402

silence_third_party_warnings()

from lskd_fairseq import checkpoints, clean_exit, cli_errors  # noqa: E402,F401  (allow-list, exit hook, excepthook)
from lskd_fairseq.criterions import label_smoothed_teacher, word_kd  # noqa: E402,F401  (registration)
from lskd_fairseq.tasks import translation_kd  # noqa: E402,F401  (registration)
