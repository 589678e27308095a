"""Building a seq-KD corpus against its physical limit: ``fairseq-generate`` on the same subset.

``lskd-distill-corpus`` runs the same generator over the same batches as ``fairseq-generate`` and writes a
binarised folder instead of text, so the whole command should cost no more than ``fairseq-generate
--gen-subset train`` with the same beam and batch size (goal: ratio <= 1.05). Both commands run as users run
them (a new process each, start-up included), interleaved in alternating order so machine noise hits them
alike; the ratio is the median of the per-repeat ratios. Peak resident memory of each process is reported
for two corpus sizes: a streamed writer keeps the distiller's memory flat as the corpus grows.

    python -m bench.seq_kd                      # CPU, a few minutes
    python -m bench.seq_kd --device cuda --fp16
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

import lskd_fairseq
from bench.timing import device_name
from lskd_fairseq.distilled_corpus import MANIFEST
from lskd_nmt.toy_corpus import write_corpus

GOAL = 1.05
NOTE = (
    "Each time includes process start-up (torch and fairseq imports, a few seconds). Where fairseq-generate "
    "formats and prints five text lines per sentence and scores BLEU, the distiller writes binary targets, "
    "hence ratios below 1. CPU time is the steadier clock on a loaded machine; wall time waits for the cores."
)
HERE = Path(__file__).parent
BIN = Path(sys.executable).parent
PLUGIN = str(Path(lskd_fairseq.__file__).parent)
TEACHER = [
    "--arch",
    "transformer",
    "--share-all-embeddings",
    "--encoder-layers",
    "2",
    "--decoder-layers",
    "2",
    "--encoder-embed-dim",
    "64",
    "--decoder-embed-dim",
    "64",
    "--encoder-ffn-embed-dim",
    "256",
    "--decoder-ffn-embed-dim",
    "256",
    "--encoder-attention-heads",
    "4",
    "--decoder-attention-heads",
    "4",
    "--optimizer",
    "adam",
    "--adam-betas",
    "(0.9,0.98)",
    "--lr",
    "0.005",
    "--lr-scheduler",
    "inverse_sqrt",
    "--warmup-updates",
    "50",
    "--max-tokens",
    "2048",
    "--criterion",
    "label_smoothed_teacher",
    "--label-smoothing",
    "0.1",
    "--seed",
    "1",
    "--no-epoch-checkpoints",
    "--no-progress-bar",
    "--num-workers",
    "0",
    "--data-buffer-size",
    "0",
    "--log-format",
    "simple",
]


# Runs a command as its only child and prints, as the last stderr line, the peak resident memory (KiB) and the
# CPU seconds of it and the processes it waited for (fairseq-generate's data-loader worker included).
USAGE_WRAPPER = (
    "import resource, subprocess, sys; code = subprocess.call(sys.argv[1:]); "
    "u = resource.getrusage(resource.RUSAGE_CHILDREN); "
    "print(u.ru_maxrss, u.ru_utime + u.ru_stime, file=sys.stderr); sys.exit(code)"
)


def run_measured(command: list[str], stdout) -> dict:
    """Wall seconds, CPU seconds and peak resident MiB of one command."""
    start = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-c", USAGE_WRAPPER, *command],
        stdout=stdout,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        raise RuntimeError(f"{command[0]} failed ({result.returncode}): {result.stderr[-2000:]}")
    peak, cpu = result.stderr.strip().splitlines()[-1].split()
    return {"wall": seconds, "cpu": float(cpu), "peak_mib": int(peak) / 1024}


def prepare(root: Path, sentences: int, dictionary: Path = None) -> Path:
    """A binarised toy corpus; ``dictionary`` makes it share another corpus's (and so its teacher's) symbols."""
    text = root / f"text-{sentences}"
    write_corpus(text, train=sentences, valid=200, test=50, seed=7)
    data = root / f"bin-{sentences}"
    shared = ["--srcdict", str(dictionary)] if dictionary else []
    subprocess.run(
        [
            str(BIN / "fairseq-preprocess"),
            "--source-lang",
            "src",
            "--target-lang",
            "tgt",
            "--joined-dictionary",
            "--destdir",
            str(data),
            "--workers",
            "1",
            "--trainpref",
            str(text / "train"),
            "--validpref",
            str(text / "valid"),
            "--testpref",
            str(text / "test"),
            *shared,
        ],
        check=True,
        capture_output=True,
    )
    return data


def train_teacher(root: Path, data: Path, updates: int) -> Path:
    save_dir = root / "teacher"
    subprocess.run(
        [
            str(BIN / "fairseq-train"),
            str(data),
            "--user-dir",
            PLUGIN,
            *TEACHER,
            "--max-update",
            str(updates),
            "--save-dir",
            str(save_dir),
        ],
        check=True,
        capture_output=True,
    )
    return save_dir / "checkpoint_last.pt"


def commands(data: Path, teacher: Path, out: Path, args) -> dict[str, list[str]]:
    shared = ["--beam", str(args.beam), "--max-tokens", str(args.max_tokens)]
    device = ["--fp16"] if args.fp16 else (["--cpu"] if args.device == "cpu" else [])
    return {
        "fairseq-generate": [
            str(BIN / "fairseq-generate"),
            str(data),
            "--user-dir",
            PLUGIN,
            "--path",
            str(teacher),
            "--gen-subset",
            "train",
            "--required-batch-size-multiple",
            "1",
            *shared,
            *device,
        ],
        "lskd-distill-corpus": [
            str(BIN / "lskd-distill-corpus"),
            str(data),
            "--teacher-path",
            str(teacher),
            "--subset",
            "train",
            "--out",
            str(out),
            *shared,
            *device,
        ],
    }


def measure(data: Path, teacher: Path, root: Path, args) -> dict:
    runs = {"fairseq-generate": [], "lskd-distill-corpus": []}
    for repeat in range(args.repeats):
        out = root / f"distilled-{data.name}-{repeat}"
        for name in list(runs) if repeat % 2 == 0 else list(runs)[::-1]:
            with open(root / "generate.txt", "w") as stdout:  # generate's text goes to disk, as users keep it
                runs[name].append(run_measured(commands(data, teacher, out, args)[name], stdout))
        counts = json.loads((out / MANIFEST).read_text())["counts"]
        shutil.rmtree(out)
    row = {
        "sentences": counts["sentences"],
        "counts": counts,
        "runs": runs,
        "peak_rss_mib": {name: max(run["peak_mib"] for run in values) for name, values in runs.items()},
    }
    for clock in ("wall", "cpu"):
        row[f"median_{clock}_seconds"] = {
            name: statistics.median(run[clock] for run in values) for name, values in runs.items()
        }
        row[f"{clock}_ratio"] = statistics.median(
            distill[clock] / generate[clock]
            for distill, generate in zip(runs["lskd-distill-corpus"], runs["fairseq-generate"])
        )
    return row


def markdown(results: dict) -> str:
    config = results["config"]
    lines = [
        "# Sequence-level KD: building the distilled corpus",
        "",
        f"`python -m bench.seq_kd` on {results['device']}: toy corpus, teacher {config['teacher']}, "
        f"beam {config['beam']}, --max-tokens {config['max_tokens']}, {config['repeats']} interleaved repeats "
        f"per size; whole commands, process start-up included.",
        "",
        "| train sentences | clock | fairseq-generate (s) | lskd-distill-corpus (s) | ratio (median of repeats) "
        "| goal |",
        "|---:|---|---:|---:|---:|---|",
    ]
    for row in results["sizes"]:
        for clock in ("wall", "cpu"):
            seconds = row[f"median_{clock}_seconds"]
            lines.append(
                f"| {row['sentences']} | {clock} | {seconds['fairseq-generate']:.1f} "
                f"| {seconds['lskd-distill-corpus']:.1f} | {row[f'{clock}_ratio']:.3f} | ≤ {GOAL} |"
            )
    lines += [
        "",
        "| train sentences | peak RSS generate (MiB) | peak RSS distill (MiB) | at length limit | empty |",
        "|---:|---:|---:|---:|---:|",
    ]
    for row in results["sizes"]:
        peaks, counts = row["peak_rss_mib"], row["counts"]
        lines.append(
            f"| {row['sentences']} | {peaks['fairseq-generate']:.0f} | {peaks['lskd-distill-corpus']:.0f} "
            f"| {counts['length_limit_hypotheses']} | {counts['empty_hypotheses']} |"
        )
    lines += ["", results["note"], ""]
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 4000], help="train sentences per corpus")
    parser.add_argument("--teacher-updates", type=int, default=300)
    parser.add_argument("--beam", type=int, default=5)
    parser.add_argument("--max-tokens", type=int, default=4096)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--fp16", action="store_true")
    parser.add_argument("--out", type=Path, default=HERE / "results-seq-kd")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        largest = prepare(root, max(args.sizes))
        datasets = [
            largest if n == max(args.sizes) else prepare(root, n, largest / "dict.src.txt") for n in sorted(args.sizes)
        ]
        teacher = train_teacher(root, largest, args.teacher_updates)
        sizes = [measure(data, teacher, root, args) for data in datasets]
    results = {
        "device": device_name(torch.device(args.device)) + (", fp16" if args.fp16 else ""),
        "config": {
            "beam": args.beam,
            "max_tokens": args.max_tokens,
            "repeats": args.repeats,
            "teacher": f"2+2-layer transformer, 64 dim, {args.teacher_updates} updates",
        },
        "goal": GOAL,
        "sizes": sizes,
        "note": NOTE
        + (
            " These numbers are CPU: one command at a time, each on the thread count above, on a shared 2-core machine."
            if args.device == "cpu"
            else " GPU run."
        ),
    }
    args.out.with_suffix(".json").write_text(json.dumps(results, indent=2) + "\n")
    args.out.with_suffix(".md").write_text(markdown(results))
    print(markdown(results))


if __name__ == "__main__":
    main()
