"""Let fairseq checkpoints load with torch's ``weights_only=True`` (the default since torch 2.6).

fairseq pickles its legacy ``argparse.Namespace`` config into every checkpoint; that class is the only
non-tensor type a fairseq-fixed checkpoint needs. It is allow-listed here instead of turning the safety
check off, so any other pickled object is still refused.
"""
import argparse

import torch

SAFE_CHECKPOINT_GLOBALS = [argparse.Namespace]


def allow_fairseq_checkpoints() -> None:
    """Allow-list fairseq's checkpoint types process-wide (``lskd_fairseq.install_process_hooks`` calls this)."""
    torch.serialization.add_safe_globals(SAFE_CHECKPOINT_GLOBALS)
