"""Word-level KD against its physical limits, on the fairseq objects a training run uses.

Online KD cannot cost less than a label-smoothed step plus one teacher forward; cached KD reads the
teacher from disk and should cost what a label-smoothed step costs. Reported, as medians over repeats
whose configurations are interleaved (so machine noise hits them alike):

- ``kd_online_over_limit`` = t_kd_online / (t_ls + t_fwd)   goal <= 1.05
- ``kd_cached_over_ls``    = t_kd_cached / t_ls             goal <= 1.05
- loss memory (peak of one loss forward + backward, see ``bench.loss_memory``): KD online and cached at
  or below LS's own
- teacher cache: throughput of the dump's scoring loop (teacher forward, top-k, writes to the memory-mapped
  cache) over a plain teacher forward on the same batches (goal >= 0.9), the whole command's time (with
  loading and hashing) and bytes per target token
- scaling of the loss alone (forward + backward) with vocabulary size and tokens per batch, the losses
  interleaved in every repeat: ``loss_kd_online_over_ls_v{V}_t{tokens}`` goal <= 2 (KD needs about
  twice the softmax passes of LS), ``loss_kd_cached_over_ls_v{V}_t{tokens}``, both with the loss's default
  passes (``loss_passes``: the compiled row kernel on CPU where it builds), and the same two with the
  eager passes (``..._eager_over_ls_...``), which the loss falls back to
- every transfer (``lskd.divergences``) at the same scaling sizes: each divergence's loss from a full
  (online) and a top-4 (cached) teacher over LS, goal <= 2 (``kl``: the fused loss, <= 1.2), peak memory
  at or below LS's, and the forward KL with the tail bucket over the top-4 forward KL, goal <= 1.1

    python -m bench.nmt_kd                          # CPU size, a few minutes
    python -m bench.nmt_kd --only-divergences       # the transfers' section alone: results-divergences.md
    python -m bench.nmt_kd --size iwslt --device cuda --fp16
"""

import argparse
import copy
import ctypes
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

import lskd_fairseq  # noqa: F401  (registers the criteria and the task)
from bench.fairseq_training import build_training
from bench.loss_memory import TRANSFER_MODES, transfer_loss
from bench.timing import device_name, timed
from lskd import cpu_kernel
from lskd.checks import DIVERGENCES
from lskd.divergences import Transfer
from lskd.losses import kd_objective, label_smoothed_nll, topk_teacher
from lskd.transfer_loss import teacher_log_normalizer
from lskd_fairseq.binarised import load_subset, translation_task
from lskd_fairseq.checkpoints import load_frozen_model
from lskd_fairseq.cli.dump_teacher import DumpConfig, dump, score_batches
from lskd_fairseq.teacher_cache import CacheWriter, Fingerprint, target_lengths
from lskd_nmt.toy_corpus import write_corpus

GOAL = 1.05
DUMP_GOAL = 0.9
SIZES = {
    "cpu": {
        "model": [
            "--arch",
            "transformer",
            "--encoder-layers",
            "2",
            "--decoder-layers",
            "2",
            "--encoder-embed-dim",
            "256",
            "--decoder-embed-dim",
            "256",
            "--encoder-ffn-embed-dim",
            "1024",
            "--decoder-ffn-embed-dim",
            "1024",
            "--encoder-attention-heads",
            "4",
            "--decoder-attention-heads",
            "4",
        ],
        "vocab": 8000,
        "tokens": 2048,
        "length": 32,
    },
    "iwslt": {"model": ["--arch", "transformer_iwslt_de_en"], "vocab": 10000, "tokens": 4096, "length": 32},
}
SCALING_VOCABS = (2000, 8000, 32000)
SCALING_TOKENS = (1024, 4096)
SCALING_MODES = ("ls", "kd_online", "kd_cached", "kd_online_eager", "kd_cached_eager")
SCALING_GOAL = 2.0
SCALING_SECONDS = 0.1  # loss calls per timed repeat: enough for one LS measurement to take about this long
KL_GOAL = 1.2
TAIL_GOAL = 1.1
TOPK = 4
PAD, EOS = 1, 2


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", choices=sorted(SIZES), default="cpu")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--fp16", action="store_true", help="student and teacher in fp16 (GPU)")
    parser.add_argument("--temperature", type=float, default=2.0)
    parser.add_argument("--batches", type=int, default=3, help="batches per timed measurement")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1, help="CPU threads; 1 keeps timings steady on shared machines")
    parser.add_argument("--skip-scaling", action="store_true")
    parser.add_argument("--skip-divergences", action="store_true", help="leave out the transfers' section")
    parser.add_argument(
        "--only-divergences", action="store_true", help="run the transfers' section alone (results-divergences.md)"
    )
    parser.add_argument("--out-dir", type=Path, default=Path(__file__).parent)
    return parser.parse_args(argv)


def synthetic_dictionary(folder: Path, vocab: int) -> None:
    """dict files of ``vocab`` entries in all (fairseq adds 4 special symbols)."""
    words = "".join(f"w{i} 1\n" for i in range(vocab - 4))
    for lang in ("src", "tgt"):
        (folder / f"dict.{lang}.txt").write_text(words)


def synthetic_batches(count: int, vocab: int, tokens: int, length: int, device) -> list[dict]:
    generator = torch.Generator().manual_seed(0)
    rows = tokens // length
    batches = []
    for index in range(count):
        source = torch.randint(4, vocab, (rows, length), generator=generator)
        target = torch.randint(4, vocab, (rows, length), generator=generator)
        target[:, -1] = EOS
        previous = torch.cat([torch.full((rows, 1), EOS), target[:, :-1]], dim=1)
        batch = {
            "id": torch.arange(index * rows, (index + 1) * rows),
            "nsentences": rows,
            "ntokens": rows * length,
            "net_input": {
                "src_tokens": source,
                "src_lengths": torch.full((rows,), length),
                "prev_output_tokens": previous,
            },
            "target": target,
        }
        batches.append(move(batch, device))
    return batches


def move(batch, device):
    if isinstance(batch, dict):
        return {key: move(value, device) for key, value in batch.items()}
    return batch.to(device) if torch.is_tensor(batch) else batch


def step_timings(args, size: dict, device, dtype) -> dict:
    work = Path(tempfile.mkdtemp(prefix="lskd-bench-"))
    synthetic_dictionary(work, size["vocab"])
    common = [
        work,
        "--source-lang",
        "src",
        "--target-lang",
        "tgt",
        *size["model"],
        "--dropout",
        "0.1",
        "--share-all-embeddings",
        "--max-tokens",
        str(size["tokens"]),
    ]
    _, model, ls = build_training([*common, "--criterion", "label_smoothed_teacher", "--label-smoothing", "0.1"])
    task, _, kd = build_training(
        [
            *common,
            "--task",
            "translation_kd",
            "--criterion",
            "word_kd",
            "--kd-temperature",
            str(args.temperature),
            "--kd-weight",
            "0.9",
            "--label-smoothing",
            "0.1",
        ]
    )
    model = model.to(device=device, dtype=dtype)
    teacher = copy.deepcopy(model).eval().requires_grad_(False)
    task.teacher = teacher
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-5, eps=1e-4)
    batches = synthetic_batches(args.batches, size["vocab"], size["tokens"], size["length"], device)
    with torch.no_grad():
        cached = []
        for batch in batches:
            indices, values = topk_teacher(teacher(**batch["net_input"])[0], TOPK)
            cached.append({**batch, "teacher": {"topk_indices": indices, "topk_logits": values.float()}})

    def train(criterion, samples, online=False):
        def run():
            for sample in samples:
                if online:
                    sample = dict(sample)
                    task.attach_teacher_outputs(sample, model)
                optimizer.zero_grad(set_to_none=True)
                loss, _, _ = criterion(model, sample)
                loss.backward()
                optimizer.step()

        return run

    def teacher_forward():
        with torch.no_grad():
            for sample in batches:
                teacher(**sample["net_input"])

    model.train()
    runs = {
        "t_ls": train(ls, batches),
        "t_fwd": teacher_forward,
        "t_kd_online": train(kd, batches, online=True),
        "t_kd_cached": train(kd, cached),
    }
    times = interleaved(runs, args.repeats, 1, device)
    times = {name: [value / args.batches for value in values] for name, values in times.items()}
    online = [o / (ls + f) for o, ls, f in zip(times["t_kd_online"], times["t_ls"], times["t_fwd"])]
    cached_ratio = [c / ls for c, ls in zip(times["t_kd_cached"], times["t_ls"])]
    return {
        "seconds_per_batch": {name: statistics.median(values) for name, values in times.items()},
        "kd_online_over_limit": statistics.median(online),
        "kd_cached_over_ls": statistics.median(cached_ratio),
        "kd_online_over_limit_range": [min(online), max(online)],
        "kd_cached_over_ls_range": [min(cached_ratio), max(cached_ratio)],
    }


def loss_memory(mode: str, tokens: int, vocab: int, device: str, fp16: bool) -> int:
    command = [
        sys.executable,
        "-m",
        "bench.loss_memory",
        "--mode",
        mode,
        "--tokens",
        str(tokens),
        "--vocab",
        str(vocab),
        "--k",
        str(TOPK),
        "--device",
        device,
    ] + (["--fp16"] if fp16 else [])
    # A fixed mmap threshold keeps glibc from serving freed large blocks out of its heap, where they would
    # stay resident and count towards the peak although torch no longer holds them.
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "131072"}
    result = subprocess.run(command, capture_output=True, text=True, check=True, cwd=Path(__file__).parents[1], env=env)
    return json.loads(result.stdout)["peak_bytes"]


def memory(tokens: int, vocab: int, device: str, fp16: bool) -> dict:
    peaks = {mode: loss_memory(mode, tokens, vocab, device, fp16) for mode in ("ls", "kd_online", "kd_cached")}
    buffer = tokens * vocab * 4
    return {
        "peak_bytes": peaks,
        "tokens_x_vocab_fp32_bytes": buffer,
        "kd_online_extra_loss_memory_bytes": peaks["kd_online"] - peaks["ls"],
        "kd_cached_extra_loss_memory_bytes": peaks["kd_cached"] - peaks["ls"],
    }


def interleaved(runs: dict, repeats: int, calls: int, device) -> dict:
    """Seconds per call of every run, ``repeats`` times, the runs taking turns within each repeat so that
    machine noise hits them alike; every run is called once first to warm up."""
    for run in runs.values():
        run()
    times = {name: [] for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            times[name].append(timed(run, calls, device))
    return times


def loss_steps(tokens: int, vocab: int, device, dtype) -> dict:
    """One forward + backward of each loss as the criteria compute it, on shared random logits."""
    generator = torch.Generator().manual_seed(0)
    student = (torch.randn(tokens, vocab, generator=generator) * 3).to(device, dtype).requires_grad_()
    teacher = (torch.randn(tokens, vocab, generator=generator) * 3).to(device, dtype)
    target = torch.randint(4, vocab, (tokens,), generator=generator).to(device)
    indices, values = topk_teacher(teacher, TOPK)
    teachers = {
        "kd_online": {"teacher_logits": teacher},
        "kd_cached": {"teacher_topk_indices": indices, "teacher_topk_logits": values.float()},
    }

    def step(mode):
        teacher_mode = mode.removesuffix("_eager")
        kernel = "eager" if mode.endswith("_eager") else "auto"

        def run():
            if mode == "ls":
                loss = label_smoothed_nll(torch.log_softmax(student.float(), -1), target, 0.1, PAD)[0].sum()
            else:
                kwargs = teachers[teacher_mode]
                loss = kd_objective(student, target, 2.0, 0.9, 0.1, ignore_index=PAD, kernel=kernel, **kwargs).loss
            loss.backward()
            student.grad = None

        return run

    return {mode: step(mode) for mode in SCALING_MODES}


def transfer_steps(tokens: int, vocab: int, device, dtype) -> dict:
    """One forward + backward of LS and of every transfer's loss (``bench.loss_memory.TRANSFER_MODES``) on
    shared random logits; the top-k teacher's tail statistic is an input, as a cache gives it."""
    generator = torch.Generator().manual_seed(0)
    student = (torch.randn(tokens, vocab, generator=generator) * 3).to(device, dtype).requires_grad_()
    teacher = (torch.randn(tokens, vocab, generator=generator) * 3).to(device, dtype)
    target = torch.randint(4, vocab, (tokens,), generator=generator).to(device)
    indices, values = topk_teacher(teacher, TOPK)
    values = values.float()
    normalizer = teacher_log_normalizer(teacher, Transfer("kl", 2.0, tail=True))

    def step(mode):
        def run():
            if mode == "ls":
                loss = label_smoothed_nll(torch.log_softmax(student.float(), -1), target, 0.1, PAD)[0].sum()
            else:
                loss = transfer_loss(mode, student, teacher, target, indices, values, normalizer)
            loss.backward()
            student.grad = None

        return run

    return {mode: step(mode) for mode in ("ls", *TRANSFER_MODES)}


def divergence_scaling(args, device, dtype) -> list[dict]:
    """Every transfer's loss over LS at the scaling sizes, interleaved per repeat; memory at the larger batch."""
    rows = []
    for vocab in SCALING_VOCABS:
        for tokens in SCALING_TOKENS:
            runs = transfer_steps(tokens, vocab, device, dtype)
            runs["ls"]()
            calls = max(1, round(SCALING_SECONDS / timed(runs["ls"], 1, device)))
            times = interleaved(runs, args.repeats, calls, device)
            row = {"vocab": vocab, "tokens": tokens, "calls_per_repeat": calls}
            for mode, values in times.items():
                row[f"{mode}_ms"] = 1000 * statistics.median(values)
                if mode != "ls":
                    row[f"{mode}_over_ls"] = statistics.median(m / ls for m, ls in zip(values, times["ls"]))
            tail = zip(times["kl_cached_tail"], times["kl_cached"])
            row["tail_over_topk"] = statistics.median(t / k for t, k in tail)
            del runs
            if tokens == SCALING_TOKENS[-1]:
                modes = ("ls", *TRANSFER_MODES)
                row["peak_bytes"] = {mode: loss_memory(mode, tokens, vocab, args.device, args.fp16) for mode in modes}
            rows.append(row)
    return rows


def divergence_goals(rows: list[dict]) -> list[str]:
    """Which of the transfers' goals this run met, and why the generic path misses its time goal."""
    others = [f"{n}_{t}" for n in DIVERGENCES[1:] for t in ("online", "cached")]
    worst = max((row[f"{mode}_over_ls"], mode, row["vocab"], row["tokens"]) for row in rows for mode in others)
    kl_worst = max(row[f"kl_{t}_over_ls"] for row in rows for t in ("online", "cached"))
    tail_worst = max(row["tail_over_topk"] for row in rows)
    memory_ok = all(
        peak <= row["peak_bytes"]["ls"] for row in rows if "peak_bytes" in row for peak in row["peak_bytes"].values()
    )

    def verdict(ok):
        return "met" if ok else "missed"

    return [
        f"Goals: `kl` <= {KL_GOAL} x LS {verdict(kl_worst <= KL_GOAL)} (worst {kl_worst:.2f}); every other divergence "
        f"<= {SCALING_GOAL} x LS {verdict(worst[0] <= SCALING_GOAL)} (worst {worst[0]:.2f}, {worst[1]} at V = "
        f"{worst[2]}, {worst[3]} tokens); tail <= {TAIL_GOAL} x top-k {verdict(tail_worst <= TAIL_GOAL)} (worst "
        f"{tail_worst:.2f}); peak memory at or below LS's {verdict(memory_ok)}. The forward KL, with or without "
        "the tail bucket, runs the fused loss (the tail adds one pass, the student's mass outside the k tokens). "
        "The generic path runs each other divergence as plain torch operations over L2-sized row chunks, "
        "forward and backward by autograd: about thirty passes over every [rows x V] chunk (several with exp or "
        "log; one separate operation each) where LS makes about five and the fused forward KL three, so on a "
        "CPU it costs several times LS from a full-vocabulary teacher (the divergence runs over V outcomes) and "
        "less from a top-k teacher (over k; the LS-NLL's softmax, the gradient's passes over V and autograd's "
        "per-chunk overhead remain). The tail's extra pass reads a [rows x V] buffer that is no longer in cache, "
        "beside a top-k forward KL that makes only three. Fusing a divergence's passes into one kernel, as the "
        "forward KL's are fused, is what would meet the remaining time goals; the memory goal holds because the "
        "path keeps one "
        "gradient buffer and a chunk's temporaries.",
    ]


def divergence_markdown(rows: list[dict], allocator: str) -> list[str]:
    mib = 1024 * 1024
    lines = [
        "Every transfer's loss over LS's (forward + backward, median of per-repeat ratios; docs/transfers.md). "
        f"`kl` runs the fused loss (goal <= {KL_GOAL}), every other divergence the generic chunked autograd path "
        f"(goal <= {SCALING_GOAL}); 'tail' is the forward KL with the tail bucket over the top-4 forward KL (goal "
        f"<= {TAIL_GOAL}). CPU allocations: {allocator}.",
        "",
        "| V | tokens | LS (ms) | "
        + " | ".join(f"{name} online / cached" for name in DIVERGENCES)
        + " | tail / top-k |",
        "|---:|---:|---:|" + "---:|" * (len(DIVERGENCES) + 1),
    ]
    for row in rows:
        cells = [f"{row[f'{n}_online_over_ls']:.2f} / {row[f'{n}_cached_over_ls']:.2f}" for n in DIVERGENCES]
        lines.append(
            f"| {row['vocab']} | {row['tokens']} | {row['ls_ms']:.1f} | "
            + " | ".join(cells)
            + f" | {row['tail_over_topk']:.2f} |"
        )
    lines += ["", *divergence_goals(rows)]
    memory_rows = [row for row in rows if "peak_bytes" in row]
    if memory_rows:
        lines += [
            "",
            "Peak memory of one loss forward + backward beyond its inputs (MiB; goal: at or below LS's):",
            "",
            "| V | tokens | LS | " + " | ".join(f"{name} online / cached" for name in DIVERGENCES) + " | kl tail |",
            "|---:|---:|---:|" + "---:|" * (len(DIVERGENCES) + 1),
        ]
        for row in memory_rows:
            peak = {mode: value / mib for mode, value in row["peak_bytes"].items()}
            cells = [f"{peak[f'{n}_online']:.1f} / {peak[f'{n}_cached']:.1f}" for n in DIVERGENCES]
            lines.append(
                f"| {row['vocab']} | {row['tokens']} | {peak['ls']:.1f} | "
                + " | ".join(cells)
                + f" | {peak['kl_cached_tail']:.1f} |"
            )
    return lines


def steady_cpu_allocator() -> str:
    """Serve every CPU allocation from glibc's heap and never hand it back, for the rest of the process.

    By default glibc maps large blocks afresh (page faults on first touch, the loss that allocates more
    buffers pays more) below a threshold that moves with what the process freed before, so the same loss
    timed early or late in a run differs by up to 10x at [1024 x 2000]. On a GPU, torch's caching allocator
    removes that cost for both losses; this does the same on the CPU, so the loss scaling times arithmetic
    and memory traffic only."""
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return "the C library's default (not glibc)"
    m_trim_threshold, m_mmap_max = -1, -4
    if libc.mallopt(m_mmap_max, 0) != 1 or libc.mallopt(m_trim_threshold, 2**31 - 1) != 1:
        return "glibc's default (mallopt refused)"
    return "glibc heap, no mmap, no trimming"


def scaling(args, device, dtype) -> list[dict]:
    rows = []
    for vocab in SCALING_VOCABS:
        for tokens in SCALING_TOKENS:
            runs = loss_steps(tokens, vocab, device, dtype)
            runs["ls"]()  # the first call at a new size grows the heap; the calibration call then times LS itself
            calls = max(1, round(SCALING_SECONDS / timed(runs["ls"], 1, device)))
            times = interleaved(runs, args.repeats, calls, device)
            row = {"vocab": vocab, "tokens": tokens, "calls_per_repeat": calls}
            for mode in SCALING_MODES:
                row[f"{mode}_ms"] = 1000 * statistics.median(times[mode])
            for mode in SCALING_MODES[1:]:
                row[f"{mode}_over_ls"] = statistics.median(k / ls for k, ls in zip(times[mode], times["ls"]))
            del runs
            if tokens == SCALING_TOKENS[-1]:
                row["memory"] = memory(tokens, vocab, args.device, args.fp16)
            rows.append(row)
    return rows


def cache_benchmark(args, device) -> dict:
    """Dump throughput vs a plain teacher forward over the same binarised split, and cache bytes per token."""
    work = Path(tempfile.mkdtemp(prefix="lskd-bench-cache-"))
    write_corpus(work / "text", train=4000, valid=50, test=50)
    bin_dir = work / "bin"
    tools = Path(sys.executable).parent
    subprocess.run(
        [
            tools / "fairseq-preprocess",
            "--source-lang",
            "src",
            "--target-lang",
            "tgt",
            "--joined-dictionary",
            "--trainpref",
            work / "text/train",
            "--validpref",
            work / "text/valid",
            "--destdir",
            bin_dir,
            "--workers",
            "1",
        ],
        check=True,
        capture_output=True,
    )
    subprocess.run(
        [
            tools / "fairseq-train",
            bin_dir,
            "--user-dir",
            lskd_fairseq.__path__[0],
            *SIZES["cpu"]["model"],
            "--share-all-embeddings",
            "--optimizer",
            "adam",
            "--lr",
            "1e-4",
            "--max-tokens",
            "4096",
            "--criterion",
            "label_smoothed_teacher",
            "--max-update",
            "1",
            "--save-dir",
            work / "teacher",
            "--no-epoch-checkpoints",
            "--disable-validation",
        ],
        check=True,
        capture_output=True,
    )
    checkpoint = work / "teacher" / "checkpoint_last.pt"
    task = translation_task(str(bin_dir), "src", "tgt")
    dataset = load_subset(task, "train")
    teacher = load_frozen_model(str(checkpoint), task).to(device)
    max_tokens = 4096

    def batches():
        iterator = task.get_batch_iterator(dataset, max_tokens=max_tokens, max_positions=teacher.max_positions())
        return iterator.next_epoch_itr(shuffle=False)

    def forward_only():
        with torch.no_grad():
            for sample in batches():
                teacher(**move(sample["net_input"], device))

    fingerprint = Fingerprint.of_data("train", dataset, task.target_dictionary, "", TOPK, "fp16")

    def score():
        writer = CacheWriter(work / "cache", fingerprint, target_lengths(dataset))
        score_batches(teacher, batches(), writer, TOPK, task.target_dictionary.pad(), device)
        writer.close()

    forward_only()
    ratios = []
    for _ in range(args.repeats):
        forward_seconds = timed(forward_only, 1, device)
        ratios.append(forward_seconds / timed(score, 1, device))
    start = time.perf_counter()
    dump(
        DumpConfig(
            data=str(bin_dir),
            teacher_path=str(checkpoint),
            out=str(work / "cache"),
            topk=TOPK,
            source_lang="src",
            target_lang="tgt",
            max_tokens=max_tokens,
            device=args.device,
            force=True,
        )
    )
    command_seconds = time.perf_counter() - start
    tokens = int(sum(dataset.tgt_sizes))
    size = sum((work / "cache" / f"train.{part}.npy").stat().st_size for part in ("indices", "logits", "offsets"))
    return {
        "dump_throughput_over_forward": statistics.median(ratios),
        "dump_throughput_range": [min(ratios), max(ratios)],
        "dump_command_seconds": command_seconds,
        "plain_forward_seconds": forward_seconds,
        "cache_bytes_per_target_token": size / tokens,
        "target_tokens": tokens,
        "topk": TOPK,
        "dtype": "fp16",
    }


def markdown(results: dict) -> str:
    steps = results["steps"]
    t = {name: 1000 * value for name, value in steps["seconds_per_batch"].items()}
    memory_row = results["memory"]
    mib = 1024 * 1024
    memory_below_ls = (
        max(memory_row["kd_online_extra_loss_memory_bytes"], memory_row["kd_cached_extra_loss_memory_bytes"]) <= 0
    )
    lines = [
        f"# NMT KD benchmark ({results['size']} size)",
        "",
        f"Device: {results['device']}, torch {results['torch']}, fp16 {results['fp16']}; {results['config']}.",
        "",
        f"Every number on this page was measured on the {'GPU' if results['gpu'] else 'CPU'} in one run of "
        f"`{results['command']}`; "
        + (
            "the CPU run writes bench/results.md."
            if results["gpu"]
            else "a GPU run (`python -m bench.nmt_kd --size iwslt --device cuda --fp16`) writes bench/results-cuda.md."
        ),
        "",
        "| t_ls (ms) | t_fwd (ms) | t_kd_online (ms) | t_kd_cached (ms) | online / (ls + fwd) | cached / ls "
        "| goal <= 1.05 |",
        "|---:|---:|---:|---:|---:|---:|:---:|",
        f"| {t['t_ls']:.1f} | {t['t_fwd']:.1f} | {t['t_kd_online']:.1f} | {t['t_kd_cached']:.1f} | "
        f"{steps['kd_online_over_limit']:.3f} | {steps['kd_cached_over_ls']:.3f} | "
        f"{'yes' if max(steps['kd_online_over_limit'], steps['kd_cached_over_ls']) <= GOAL else 'no'} |",
        "",
        "Loss memory (peak of one loss forward + backward beyond its inputs):",
        "",
        "| LS (MiB) | KD online (MiB) | KD cached (MiB) | one [tokens x V] fp32 buffer (MiB) | online extra over LS "
        "| cached extra over LS | goal: both <= 0 |",
        "|---:|---:|---:|---:|---:|---:|:---:|",
        f"| {memory_row['peak_bytes']['ls'] / mib:.1f} | {memory_row['peak_bytes']['kd_online'] / mib:.1f} | "
        f"{memory_row['peak_bytes']['kd_cached'] / mib:.1f} | {memory_row['tokens_x_vocab_fp32_bytes'] / mib:.1f} | "
        f"{memory_row['kd_online_extra_loss_memory_bytes'] / mib:.1f} | "
        f"{memory_row['kd_cached_extra_loss_memory_bytes'] / mib:.1f} | "
        f"{'yes' if memory_below_ls else 'no'} |",
    ]
    cache = results.get("cache")
    if cache:
        lines += [
            "",
            "Teacher cache (top-4, fp16 logits):",
            "",
            "| scoring loop throughput / plain forward | goal >= 0.9 | plain forward (s) | whole dump command (s) "
            "| bytes per target token |",
            "|---:|:---:|---:|---:|---:|",
            f"| {cache['dump_throughput_over_forward']:.3f} | "
            f"{'yes' if cache['dump_throughput_over_forward'] >= DUMP_GOAL else 'no'} | "
            f"{cache['plain_forward_seconds']:.2f} | {cache['dump_command_seconds']:.2f} | "
            f"{cache['cache_bytes_per_target_token']:.1f} |",
        ]
    if results.get("divergences"):
        lines += ["", *divergence_markdown(results["divergences"], results.get("scaling_allocator", "default"))]
    if results.get("scaling"):
        lines += [
            "",
            "Scaling of the loss alone (forward + backward, ms, median of the interleaved repeats; ratios "
            "are medians of the per-repeat ratios; memory at the larger batch). KD runs its default passes, "
            f"here {results['loss_passes']}; the last two columns are the eager passes it falls back to where "
            "the row kernel cannot be built. CPU allocations: "
            f"{results.get('scaling_allocator', 'the CUDA caching allocator')} (see `steady_cpu_allocator`):",
            "",
            "| V | tokens | LS | KD online | KD cached | KD online / LS | goal <= 2 | KD cached / LS "
            "| memory over LS, KD online / cached (MiB) | eager KD online / LS | eager KD cached / LS |",
            "|---:|---:|---:|---:|---:|---:|:---:|---:|---:|---:|---:|",
        ]
        for row in results["scaling"]:
            extra = None
            if "memory" in row:
                extra = " / ".join(
                    f"{row['memory'][f'kd_{mode}_extra_loss_memory_bytes'] / mib:.1f}" for mode in ("online", "cached")
                )
            lines.append(
                f"| {row['vocab']} | {row['tokens']} | {row['ls_ms']:.1f} | {row['kd_online_ms']:.1f} | "
                f"{row['kd_cached_ms']:.1f} | {row['kd_online_over_ls']:.2f} | "
                f"{'yes' if row['kd_online_over_ls'] <= SCALING_GOAL else 'no'} | "
                f"{row['kd_cached_over_ls']:.2f} | {extra or ''} | {row['kd_online_eager_over_ls']:.2f} | "
                f"{row['kd_cached_eager_over_ls']:.2f} |"
            )
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    args = parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cpu":
        torch.set_num_threads(args.threads)
    dtype = torch.float16 if args.fp16 else torch.float32
    size = SIZES[args.size]
    command = " ".join(["python -m bench.nmt_kd", *(argv if argv is not None else sys.argv[1:])])
    results = {
        "size": args.size,
        "device": device_name(device),
        "gpu": device.type == "cuda",
        "command": command,
        "torch": torch.__version__,
        "fp16": args.fp16,
        "config": f"vocab {size['vocab']}, {size['tokens']} target tokens per batch, T = {args.temperature}, "
        f"top-{TOPK} cache, median of {args.repeats} interleaved repeats x {args.batches} batches",
    }
    kernel = cpu_kernel.row_kernel("auto", torch.empty(1, 1, device=device, dtype=dtype), None)
    results["loss_passes"] = "the compiled row kernel" if kernel is not None else "eager"
    suffix = "" if args.device == "cpu" else f"-{args.device}"
    if args.only_divergences:
        divergences_only(args, results, device, dtype, suffix)
        return
    results["steps"] = step_timings(args, size, device, dtype)
    results["memory"] = memory(size["tokens"], size["vocab"], args.device, args.fp16)
    results["cache"] = cache_benchmark(args, device)
    if not args.skip_scaling:
        if device.type == "cpu":
            results["scaling_allocator"] = steady_cpu_allocator()  # last section: the others keep the default
        results["scaling"] = scaling(args, device, dtype)
        for row in results["scaling"]:
            for mode in SCALING_MODES[1:]:
                results[f"loss_{mode}_over_ls_v{row['vocab']}_t{row['tokens']}"] = row[f"{mode}_over_ls"]
        if not args.skip_divergences:
            results["divergences"] = divergence_scaling(args, device, dtype)
    results["kd_online_over_limit"] = results["steps"]["kd_online_over_limit"]
    results["kd_cached_over_ls"] = results["steps"]["kd_cached_over_ls"]
    results["kd_online_extra_loss_memory_bytes"] = results["memory"]["kd_online_extra_loss_memory_bytes"]
    args.out_dir.mkdir(parents=True, exist_ok=True)
    (args.out_dir / f"results{suffix}.json").write_text(json.dumps(results, indent=2) + "\n")
    (args.out_dir / f"results{suffix}.md").write_text(markdown(results))
    print(markdown(results))


def divergences_only(args, results: dict, device, dtype, suffix: str) -> None:
    """The transfers' section alone, written to results-divergences{suffix}.md and .json."""
    if device.type == "cpu":
        results["scaling_allocator"] = steady_cpu_allocator()
    results["divergences"] = divergence_scaling(args, device, dtype)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    (args.out_dir / f"results-divergences{suffix}.json").write_text(json.dumps(results, indent=2) + "\n")
    write_divergence_page(results, args.out_dir / f"results-divergences{suffix}.md")


def write_divergence_page(results: dict, path: Path) -> None:
    """results-divergences.md from a run's JSON (``python -c`` can re-render a saved run)."""
    lines = [
        f"# Transfers' loss benchmark ({'GPU' if results['gpu'] else 'CPU'})",
        "",
        f"Device: {results['device']}, torch {results['torch']}, fp16 {results['fp16']}; T = 2, top-{TOPK} "
        f"teacher; every number from one run of `{results['command']}`.",
        "",
        *divergence_markdown(results["divergences"], results.get("scaling_allocator", "the CUDA caching allocator")),
    ]
    path.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
