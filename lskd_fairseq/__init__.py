"""fairseq ``--user-dir`` plugin: the label-smoothed teacher criterion, the word-level KD criterion and
the ``translation_kd`` task that feeds a frozen teacher's outputs to it.

fairseq imports this package once per process (train, generate, validate); importing it also lets fairseq
checkpoints load under torch's ``weights_only=True`` and prints configuration errors as one line.
"""
from lskd_fairseq import checkpoints, cli_errors  # noqa: F401  (side effects: allow-list, excepthook)
from lskd_fairseq import label_smoothed_teacher, translation_kd, word_kd  # noqa: F401  (registration)
