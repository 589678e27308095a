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

from lskd.losses import kd_objective, label_smoothed_nll, topk_teacher

PAD = 1


def inputs(tokens: int, vocab: int, k: int, device: str, dtype: torch.dtype):
    """Allocated in place, so that building them leaves no high-water mark above their own size."""
    generator = torch.Generator(device=device).manual_seed(0)
    student = torch.empty(tokens, vocab, device=device, dtype=dtype).normal_(0, 3, generator=generator)
    teacher = torch.empty(tokens, vocab, device=device, dtype=dtype).normal_(0, 3, generator=generator)
    target = torch.randint(2, vocab, (tokens,), generator=generator, device=device)
    indices, values = topk_teacher(teacher, k)
    return student.requires_grad_(), teacher, target, indices.contiguous(), values.contiguous()


def loss(mode: str, student, teacher, target, indices, values):
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
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        loss(mode, *tensors).backward()
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() - before
    before = resident_high_water_bytes()
    loss(mode, *tensors).backward()
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
    parser.add_argument("--mode", choices=["ls", "kd_online", "kd_cached"], required=True)
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
