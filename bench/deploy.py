"""The deployed student against fairseq-generate: sentences/s, target tokens/s and BLEU, CTranslate2 float32 and
int8 (fp16 and int8_float16 with ``--device cuda``) on the same subset, beam and batches.

Two clocks, both interleaved (each repeat runs every engine, in alternating order, so machine noise hits them
alike; ratios are medians of per-repeat ratios):

- **loop**: the translation loop alone, in this process: fairseq's ``SequenceGenerator`` through the task's
  ``inference_step`` (what fairseq-generate runs per batch) against ``lskd_deploy.translate``, both over
  fairseq-generate's batches, prepared beforehand; model loading and scoring excluded.
- **command**: ``lskd-evaluate`` with each engine, as users run it (a new process each: imports, loading,
  decoding, scoring).

Each at 1 thread and at all the machine's threads (``torch.set_num_threads`` / CTranslate2's
``intra_threads``; ``OMP_NUM_THREADS`` and ``--threads`` for the commands).

    python -m bench.deploy                                   # trains a toy student first (a few minutes)
    python -m bench.deploy --checkpoint CKPT --data-bin DIR --references TEXT
    python -m bench.deploy --device cuda                     # fairseq fp16 against float16 and int8_float16

On a GPU the loop clock runs fairseq in fp16; the command clock's fairseq-generate runs in float32 (lskd-evaluate
has no fp16 switch), so read the loop for the GPU comparison.
"""

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import lskd_fairseq
from bench.seq_kd import TEACHER, prepare
from lskd_deploy.export import ExportConfig, export
from lskd_deploy.translate import Decoding, open_translator, read_subset, translate
from lskd_nmt.bleu import sacrebleu_score

HERE = Path(__file__).parent
BIN = Path(sys.executable).parent
PLUGIN = str(Path(lskd_fairseq.__file__).parent)
GOAL_SPEED, GOAL_BLEU = 5.0, 0.5
COMPUTE_TYPES = {"cpu": ("float32", "int8"), "cuda": ("float16", "int8_float16")}
SHARED_MACHINE = (
    "Measured on a 2-core machine shared with four other jobs of this project's development (tests, training) "
    "running at the same time: absolute times are noisy and the lead may rerun it on a quiet machine; the "
    "interleaved ratios are the numbers to read."
)


def train_student(root: Path, data: Path, updates: int, width: int, layers: int) -> Path:
    """A label-smoothed toy student; 64 dimensions and 2+2 layers are the README's and the demo's."""
    save_dir = root / "student"
    size = {"--encoder-layers": layers, "--decoder-layers": layers, "--encoder-embed-dim": width}
    size.update(
        {"--decoder-embed-dim": width, "--encoder-ffn-embed-dim": 4 * width, "--decoder-ffn-embed-dim": 4 * width}
    )
    arguments = [str(size.get(flag, value)) for flag, value in zip([None, *TEACHER], TEACHER)]
    subprocess.run(
        [str(BIN / "fairseq-train"), str(data), "--user-dir", PLUGIN, *arguments]
        + ["--max-update", str(updates), "--save-dir", str(save_dir), "--disable-validation"],
        check=True,
        capture_output=True,
    )
    return save_dir / "checkpoint_last.pt"


class FairseqLoop:
    """fairseq-generate's per-batch work: the task's ``inference_step`` with its ``SequenceGenerator``."""

    def __init__(self, checkpoint: Path, data_bin: Path, subset: str, decoding: Decoding, device: str):
        import torch
        from fairseq import utils
        from fairseq.dataclass.configs import GenerationConfig

        from lskd_deploy.translate import FAIRSEQ_GENERATE_SEED
        from lskd_fairseq.binarised import load_subset, translation_task
        from lskd_fairseq.checkpoints import load_frozen_model

        self.torch = torch
        self.task = translation_task(str(data_bin), "src", "tgt")
        dataset = load_subset(self.task, subset)
        self.model = load_frozen_model(str(checkpoint), self.task)
        if device == "cuda":
            self.model = self.model.half().cuda()
        generation = GenerationConfig(beam=decoding.beam, max_len_a=decoding.max_len_a, max_len_b=decoding.max_len_b)
        self.generator = self.task.build_generator([self.model], generation)
        iterator = self.task.get_batch_iterator(
            dataset,
            max_sentences=decoding.batch_size,
            max_positions=self.task.max_positions(),
            ignore_invalid_inputs=False,
            required_batch_size_multiple=1,
            seed=FAIRSEQ_GENERATE_SEED,
        ).next_epoch_itr(shuffle=False)
        self.batches = [utils.move_to_cuda(b) if device == "cuda" else b for b in iterator]
        self.device = device

    def run(self) -> list[list[int]]:
        """Hypothesis token ids (with the end-of-sentence token) per sentence, in corpus order."""
        hypotheses = {}
        with self.torch.no_grad():
            for batch in self.batches:
                outputs = self.task.inference_step(self.generator, [self.model], batch)
                for sentence, output in zip(batch["id"].tolist(), outputs):
                    hypotheses[sentence] = output[0]["tokens"].tolist()
        if self.device == "cuda":
            self.torch.cuda.synchronize()
        return [hypotheses[i] for i in range(len(hypotheses))]

    def text(self, hypotheses: list[list[int]]) -> list[str]:
        return [self.task.target_dictionary.string(tokens) for tokens in hypotheses]


def model_size(checkpoint: Path) -> str:
    from lskd_fairseq.checkpoints import read_fairseq_checkpoint

    model = read_fairseq_checkpoint(checkpoint)["cfg"]["model"]
    return (
        f"{model.encoder_layers}+{model.decoder_layers}-layer, {model.encoder_embed_dim}-dim {model.arch} "
        f"({checkpoint.parent.name}/{checkpoint.name})"
    )


def timed(run) -> tuple[float, object]:
    start = time.perf_counter()
    output = run()
    return time.perf_counter() - start, output


def loop_clock(args, subset, references, threads: int) -> dict:
    """Interleaved repeats of each engine's translation loop at ``threads`` threads."""
    import torch

    torch.set_num_threads(threads)
    fairseq = FairseqLoop(args.checkpoint, args.data_bin, args.subset, args.decoding, args.device)
    engines = {"fairseq": fairseq.run}
    translators = {}
    for compute_type, folder in args.models.items():
        translators[compute_type] = open_translator(folder, args.device, compute_type, threads)
        engines[f"ctranslate2 {compute_type}"] = (
            lambda t=translators[compute_type]: translate(t, subset, args.decoding)  # noqa: B023
        )
    seconds = {name: [] for name in engines}
    outputs = {}
    for name, run in engines.items():  # warm-up: first-call allocations and caches
        outputs[name] = run()
    for repeat in range(args.repeats):
        for name in list(engines) if repeat % 2 == 0 else list(engines)[::-1]:
            seconds[name].append(timed(engines[name])[0])
    fairseq_ids = outputs.pop("fairseq")
    texts, tokens = {"fairseq": fairseq.text(fairseq_ids)}, {"fairseq": sum(len(ids) for ids in fairseq_ids)}
    for name, hypotheses in outputs.items():
        texts[name] = [" ".join(h.tokens) for h in hypotheses]
        tokens[name] = sum(len(h.tokens) + 1 for h in hypotheses)
    return summarise(seconds, texts, tokens, references, len(subset.sources))


def summarise(seconds: dict, texts: dict, tokens: dict, references: list[str], sentences: int) -> dict:
    row = {}
    for name, times in seconds.items():
        median = statistics.median(times)
        bleu = sacrebleu_score(texts[name], references, "the toy test references", lowercase=False)
        row[name] = {
            "seconds": times,
            "median_seconds": median,
            "sentences_per_second": sentences / median,
            "target_tokens_per_second": tokens[name] / median,
            "sacrebleu": bleu.score,
            "same_hypotheses_as_fairseq": sum(a == b for a, b in zip(texts[name], texts["fairseq"])),
            "speedup_over_fairseq": statistics.median(base / ours for base, ours in zip(seconds["fairseq"], times)),
        }
    return row


def command_clock(args, threads: int, root: Path) -> dict:
    """Interleaved repeats of ``lskd-evaluate`` with each engine, process start-up included."""
    common = [str(args.data_bin), "--source-lang", "src", "--target-lang", "tgt", "--subset", args.subset]
    common += ["--beam", str(args.decoding.beam), "--batch-size", str(args.decoding.batch_size)]
    common += ["--profile", "modern", "--subword", "none", "--references", str(args.references)]
    common += ["--device", args.device]
    commands = {"fairseq": ["--path", str(args.checkpoint)]}
    for compute_type, folder in args.models.items():
        commands[f"ctranslate2 {compute_type}"] = ["--engine", "ctranslate2", "--model", str(folder)]
        commands[f"ctranslate2 {compute_type}"] += ["--threads", str(threads)]
    environment = {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONWARNINGS": "ignore"}
    seconds, scores = {name: [] for name in commands}, {}
    for repeat in range(args.command_repeats):
        for name in list(commands) if repeat % 2 == 0 else list(commands)[::-1]:
            out = root / name.replace(" ", "-") / "bleu.json"
            command = [str(BIN / "lskd-evaluate"), *common, *commands[name], "--out", str(out)]
            elapsed, result = timed(
                lambda c=command: subprocess.run(c, capture_output=True, text=True, env=environment)
            )
            if result.returncode != 0:
                raise RuntimeError(f"{' '.join(command)} failed: {result.stderr[-2000:]}")
            seconds[name].append(elapsed)
            scores[name] = json.loads(out.read_text())["sacrebleu"]["score"]
    return {
        name: {
            "seconds": times,
            "median_seconds": statistics.median(times),
            "sacrebleu": scores[name],
            "speedup_over_fairseq": statistics.median(base / ours for base, ours in zip(seconds["fairseq"], times)),
        }
        for name, times in seconds.items()
    }


def device_line(device: str, threads: list[int]) -> str:
    if device == "cuda":
        import torch

        return torch.cuda.get_device_name(0)
    return f"cpu ({platform.processor() or platform.machine()}, {os.cpu_count()} cores; runs at {threads} threads)"


def markdown(results: dict) -> str:
    config = results["config"]
    lines = [
        "# Deploying a student: CTranslate2 against fairseq-generate",
        "",
        f"`python -m bench.deploy` on {results['device']}: {config['model']}, {config['sentences']} test sentences "
        f"of the toy corpus, beam {config['beam']}, batches of {config['batch_size']} sentences (fairseq-generate's "
        f"batches for both engines), {config['repeats']} interleaved repeats; CTranslate2 {config['ctranslate2']}.",
        "",
        "**Translation loop alone** (in one process, model loaded, batches prepared; ratio: median of per-repeat "
        f"ratios; goal: int8 ≥ {GOAL_SPEED:g}× fairseq at a sacreBLEU within {GOAL_BLEU} of fairseq's, float32 "
        "hypotheses identical):",
        "",
        "| threads | engine | s (median) | sentences/s | target tokens/s | × fairseq | sacreBLEU | same hypotheses |",
        "|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for threads, rows in results["loop"].items():
        for name, row in rows.items():
            lines.append(
                f"| {threads} | {name} | {row['median_seconds']:.3f} | {row['sentences_per_second']:.0f} "
                f"| {row['target_tokens_per_second']:.0f} | {row['speedup_over_fairseq']:.2f} | {row['sacrebleu']:.2f} "
                f"| {row['same_hypotheses_as_fairseq']}/{config['sentences']} |"
            )
    lines += [
        "",
        "**Whole command** (`lskd-evaluate --engine fairseq|ctranslate2`, a new process each: imports, loading, "
        "decoding, scoring):",
        "",
        "| threads | engine | s (median) | × fairseq | sacreBLEU |",
        "|---:|---|---:|---:|---:|",
    ]
    for threads, rows in results["command"].items():
        for name, row in rows.items():
            lines.append(
                f"| {threads} | {name} | {row['median_seconds']:.2f} | {row['speedup_over_fairseq']:.2f} "
                f"| {row['sacrebleu']:.2f} |"
            )
    lines += ["", "Goals:", ""]
    lines += [f"- {goal}" for goal in results["goals"]]
    lines += ["", results["note"], ""]
    return "\n".join(lines)


def goals(results: dict, device: str) -> list[str]:
    quantised = f"ctranslate2 {COMPUTE_TYPES[device][1]}"
    exact = f"ctranslate2 {COMPUTE_TYPES[device][0]}"
    verdicts = []
    for threads, rows in results["loop"].items():
        speed, fairseq = rows[quantised]["speedup_over_fairseq"], rows["fairseq"]["sacrebleu"]
        delta = rows[quantised]["sacrebleu"] - fairseq
        met = speed >= GOAL_SPEED and abs(delta) <= GOAL_BLEU
        same = rows[exact]["same_hypotheses_as_fairseq"]
        verdicts.append(
            f"{threads} thread(s): {quantised} loop {speed:.1f}× fairseq at sacreBLEU {delta:+.2f}: "
            f"{'met' if met else 'NOT met'}; {exact} hypotheses identical to fairseq's on {same}/"
            f"{results['config']['sentences']} sentences"
        )
    return verdicts


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, help="student to deploy (default: train a toy student)")
    parser.add_argument("--data-bin", type=Path, help="its fairseq-preprocess folder (with --checkpoint)")
    parser.add_argument("--references", type=Path, help="the subset's reference text (with --checkpoint)")
    parser.add_argument("--subset", default="test")
    parser.add_argument("--train-sentences", type=int, default=4000)
    parser.add_argument("--student-updates", type=int, default=300)
    parser.add_argument("--student-width", type=int, default=64, help="embedding dimension (ffn: 4x)")
    parser.add_argument("--student-layers", type=int, default=2, help="encoder and decoder layers")
    parser.add_argument("--beam", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--command-repeats", type=int, default=2, help="repeats of the whole commands")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, os.cpu_count()])
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--out", type=Path, default=HERE / "results-deploy")
    args = parser.parse_args(argv)
    args.decoding = Decoding(beam=args.beam, batch_size=args.batch_size)
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        if args.checkpoint is None:
            args.data_bin = prepare(root, args.train_sentences)
            args.references = root / f"text-{args.train_sentences}" / f"{args.subset}.tgt"
            args.checkpoint = train_student(
                root, args.data_bin, args.student_updates, args.student_width, args.student_layers
            )
        args.models = {}
        for compute_type in COMPUTE_TYPES[args.device]:
            out = root / f"ct2-{compute_type}"
            quantization = "float16" if compute_type == "float16" else compute_type.split("_")[0]
            export(ExportConfig(args.checkpoint, args.data_bin, out, quantization=quantization))
            args.models[compute_type] = out
        subset = read_subset(args.data_bin, args.subset, "src", "tgt", args.batch_size)
        references = args.references.read_text(encoding="utf-8").splitlines()
        threads = [1] if args.device == "cuda" else sorted(set(args.threads))
        results = {"loop": {}, "command": {}}
        for count in threads:
            results["loop"][count] = loop_clock(args, subset, references, count)
        for count in threads:
            results["command"][count] = command_clock(args, count, root)
        manifest = json.loads((args.models[COMPUTE_TYPES[args.device][0]] / "lskd-export.json").read_text())
        described = model_size(args.checkpoint)
    results["device"] = device_line(args.device, threads)
    results["config"] = {
        "model": f"{described}, vocabulary {manifest['vocabulary_sizes']['target']}",
        "sentences": len(subset.sources),
        "beam": args.beam,
        "batch_size": args.batch_size,
        "repeats": args.repeats,
        "command_repeats": args.command_repeats,
        "ctranslate2": manifest["ctranslate2_version"],
    }
    results["goals"] = goals(results, args.device)
    results["note"] = SHARED_MACHINE if args.device == "cpu" else "GPU run."
    args.out.with_suffix(".json").write_text(json.dumps(results, indent=2) + "\n")
    args.out.with_suffix(".md").write_text(markdown(results))
    print(markdown(results))


if __name__ == "__main__":
    main()
