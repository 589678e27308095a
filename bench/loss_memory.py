"""Peak memory of one loss forward + backward, measured alone in a fresh process (CPU) or by the CUDA
allocator's statistics (GPU).

CPU: run with ``MALLOC_MMAP_THRESHOLD_=131072`` (``bench.nmt_kd`` does), so that every large tensor is
mmapped and returned when freed; the process's peak resident set size then rises by the peak of what
the loss allocates on top of its inputs, which are allocated and touched first.
"""

import argparse
import json
import sys
from pathlib import Path

import torch

from lskd.checks import DIVERGENCES
from lskd.divergences import Transfer
from lskd.losses import kd_objective, label_smoothed_nll, topk_teacher
from lskd.transfer_loss import TeacherRows, teacher_log_normalizer, transfer_objective

PAD = 1
TEMPERATURE = 2.0
# Every transfer's loss as the criteria run it: each divergence from a full (online) and a top-k (cached)
# teacher, and the forward KL from a top-k teacher with its tail bucket.
TRANSFER_MODES = tuple(f"{name}_{teacher}" for name in DIVERGENCES for teacher in ("online", "cached")) + (
    "kl_cached_tail",
)
MODES = ("ls", "kd_online", "kd_cached", *TRANSFER_MODES)


def transfer_loss(mode: str, student, teacher, target, indices, values, log_normalizer=None, kernel="auto"):
    """The loss of one of ``TRANSFER_MODES``; ``log_normalizer`` is the cached tail statistic."""
    name, _, rest = mode.partition("_online") if mode.endswith("_online") else mode.partition("_cached")
    tail = rest == "_tail"
    transfer = Transfer(name, TEMPERATURE, tail=tail)
    if mode.endswith("_online"):
        rows = TeacherRows(logits=teacher)
    else:
        rows = TeacherRows(topk_indices=indices, topk_logits=values)
        if tail:
            rows.log_normalizer = (
                log_normalizer if log_normalizer is not None else teacher_log_normalizer(teacher, transfer)
            )
    return transfer_objective(student, target, rows, transfer, 0.9, 0.1, PAD, kernel=kernel).loss


def inputs(tokens: int, vocab: int, k: int, device: str, dtype: torch.dtype):
    """Allocated in place, so that building them leaves no high-water mark above their own size."""
    generator = torch.Generator(device=device).manual_seed(0)
    student = torch.empty(tokens, vocab, device=device, dtype=dtype).normal_(0, 3, generator=generator)
    teacher = torch.empty(tokens, vocab, device=device, dtype=dtype).normal_(0, 3, generator=generator)
    target = torch.randint(2, vocab, (tokens,), generator=generator, device=device)
    indices, values = topk_teacher(teacher, k)
    return student.requires_grad_(), teacher, target, indices.contiguous(), values.contiguous()


def loss(mode: str, student, teacher, target, indices, values):
    if mode in TRANSFER_MODES:
        return transfer_loss(mode, student, teacher, target, indices, values)
    if mode == "ls":
        lprobs = torch.log_softmax(student.float(), -1)
        return label_smoothed_nll(lprobs, target, 0.1, PAD)[0].sum()
    teacher_kwargs = (
        {"teacher_logits": teacher}
        if mode == "kd_online"
        else {"teacher_topk_indices": indices, "teacher_topk_logits": values}
    )
    return kd_objective(student, target, 2.0, 0.9, 0.1, ignore_index=PAD, **teacher_kwargs).loss


def peak_bytes(mode: str, tokens: int, vocab: int, k: int, device: str, dtype: torch.dtype) -> int:
    # One tiny call first: loading code on first use (the KD row kernel's library, its builder's imports)
    # is not the loss's memory.
    loss(mode, *inputs(8, max(k, 16), k, device, dtype)).backward()
    tensors = inputs(tokens, vocab, k, device, dtype)
    if mode == "kl_cached_tail":  # the cache's statistic, read with the batch: an input, not the loss's memory
        transfer = Transfer("kl", TEMPERATURE, tail=True)
        normalizer = torch.cat([teacher_log_normalizer(rows, transfer) for rows in tensors[1].split(64)])
        tensors = (*tensors, normalizer)

        def run():
            return transfer_loss(mode, *tensors)
    else:

        def run():
            return loss(mode, *tensors)

    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        run().backward()
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() - before
    before = resident_high_water_bytes()
    run().backward()
    return resident_high_water_bytes() - before


def resident_high_water_bytes() -> int:
    """This process's peak resident set size (VmHWM). Unlike getrusage's ru_maxrss, which Linux carries
    over from the parent across fork and exec, it starts afresh in every new process."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc/self/status: CPU loss memory needs Linux")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=MODES, required=True)
    parser.add_argument("--tokens", type=int, required=True)
    parser.add_argument("--vocab", type=int, required=True)
    parser.add_argument("--k", type=int, default=4)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--fp16", action="store_true")
    args = parser.parse_args(argv)
    dtype = torch.float16 if args.fp16 else torch.float32
    json.dump({"peak_bytes": peak_bytes(args.mode, args.tokens, args.vocab, args.k, args.device, dtype)}, sys.stdout)


if __name__ == "__main__":
    main()
