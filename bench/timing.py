"""Wall-clock timing shared by the benchmarks."""
import time

import torch


def timed(fn, steps: int, device: torch.device) -> float:
    """Mean seconds per call; CUDA is synchronised so queued kernels are counted."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    for _ in range(steps):
        fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return (time.perf_counter() - start) / steps
