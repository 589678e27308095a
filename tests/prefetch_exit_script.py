"""Exit while fairseq's prefetch thread is busy in torch code, as fairseq-train does after --max-update.

Run as ``python prefetch_exit_script.py [--with-plugin]``; the plugin's exit hook must make it exit 0.
"""

import sys

import torch
from fairseq.data.iterators import BufferedIterator

if "--with-plugin" in sys.argv:
    import lskd_fairseq  # noqa: F401


class BusyBatches:
    def __len__(self):
        return 1000

    def __iter__(self):
        for _ in range(1000):
            batch = torch.randn(600, 600)
            for _ in range(40):
                batch = batch @ batch
                batch = batch / batch.norm()
            yield batch


batches = BufferedIterator(1, BusyBatches())
next(batches)  # the thread is now computing the next batch, which takes far longer than exiting
