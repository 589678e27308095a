"""Stop fairseq's data prefetch threads before the interpreter exits.

With ``--data-buffer-size > 0`` (the default), fairseq prefetches batches on a daemon thread
(``fairseq.data.iterators.BackgroundConsumer``). When training stops before that thread has drained its
epoch — ``--max-update``, early stopping, or the next epoch's iterator — the thread is still running
torch code while the interpreter shuts down, and the C++ runtime aborts the process with
"terminate called without an active exception" (SIGABRT) after training has already finished.
An exit hook tells each live consumer to stop after the batch in hand, empties its queue so it is not
blocked on a full buffer, and joins it.
"""

import atexit
import queue
import threading

from fairseq.data.iterators import BackgroundConsumer

JOIN_SECONDS = 30.0


def _drain(consumer_queue) -> None:
    try:
        while True:
            consumer_queue.get_nowait()
    except queue.Empty:
        pass


def stop_prefetch_threads(timeout: float = JOIN_SECONDS) -> None:
    for thread in threading.enumerate():
        if not isinstance(thread, BackgroundConsumer) or not thread.is_alive():
            continue
        thread._max_len = thread.count  # the consumer loop stops once it has queued the batch in hand
        waited = 0.0
        while thread.is_alive() and waited < timeout:
            _drain(thread._queue)
            thread.join(0.05)
            waited += 0.05


def register() -> None:
    """Run ``stop_prefetch_threads`` at interpreter exit (``lskd_fairseq.install_process_hooks`` calls this)."""
    atexit.register(stop_prefetch_threads)
