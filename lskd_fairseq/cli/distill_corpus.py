"""``lskd-distill-corpus``: translate a subset's sources with a teacher's beam search into a seq-KD data folder.

Sequence-level KD (Kim & Rush 2016) trains the student on the teacher's translations instead of the
references. The hypotheses come from fairseq's own ``SequenceGenerator`` through the task's
``build_generator``/``inference_step``, with the batches, length limits and output symbols of
``fairseq-generate``, so the distilled targets are exactly what ``fairseq-generate`` prints for the subset.
"""

import logging
import math
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Optional

import torch
from fairseq import utils
from fairseq.dataclass.configs import GenerationConfig
from tqdm import tqdm

import lskd_fairseq  # noqa: F401  (checkpoint allow-list)
from lskd.checks import check_at_least
from lskd.errors import InvalidConfig
from lskd_fairseq.binarised import load_subset, too_long_sentences, translation_task
from lskd_fairseq.checkpoints import load_frozen_model
from lskd_fairseq.distilled_corpus import (
    Counts,
    Settings,
    TargetWriter,
    check_output,
    copy_files,
    input_fingerprint,
    metadata_files,
    other_subset_files,
    publish,
    read_manifest,
    start_staging,
    subset_prefix,
)
from lskd_tools.cli import console_script, option, parse_config
from lskd_tools.files import file_digest

PROG = "lskd-distill-corpus"
logger = logging.getLogger(PROG)
GENERATE_SEED = 1  # fairseq-generate's default --seed: it breaks length ties when batches are formed


@dataclass
class DistillConfig:
    data: str = option(positional=True, help="fairseq-preprocess output folder")
    teacher_path: str = option(help="teacher checkpoint (same dictionaries as DATA)")
    out: str = option(help="new data folder to write (must not exist, or be empty)")
    subset: str = option("train", help="subset whose targets are replaced")
    beam: int = option(5, help="beam size")
    lenpen: float = option(1.0, help="length penalty, as fairseq-generate's")
    max_tokens: int = option(12000, help="tokens per batch, as fairseq-generate's --max-tokens (same default)")
    max_len_a: float = option(0.0, help="hypotheses stop at max-len-a * source length + max-len-b tokens")
    max_len_b: int = option(200, help="see --max-len-a")
    min_len: int = option(1, help="shortest hypothesis, in tokens")
    fallback_to_reference: bool = option(
        True, help="keep the reference target where the hypothesis is empty or stopped at the length limit"
    )
    fp16: bool = option(False, help="run the teacher in half precision (GPU)")
    cpu: bool = option(False, help="run on CPU even when a GPU is present")
    source_lang: Optional[str] = option(
        None, flags=("-s", "--source-lang"), default_text="inferred from DATA", help="source language"
    )
    target_lang: Optional[str] = option(
        None, flags=("-t", "--target-lang"), default_text="inferred from DATA", help="target language"
    )


def parse_args(argv=None) -> DistillConfig:
    """The command's settings from ``argv``; a bad flag raises ``InvalidConfig`` (one error line)."""
    return parse_config(DistillConfig, argv, prog=PROG, description=__doc__.splitlines()[0])


def check_args(args: DistillConfig) -> None:
    check_at_least("--beam", args.beam, 1)
    if not math.isfinite(args.lenpen):
        raise InvalidConfig(f"--lenpen must be a finite number, got {args.lenpen}")
    check_at_least("--max-tokens", args.max_tokens, 1)
    if not (math.isfinite(args.max_len_a) and args.max_len_a >= 0):
        raise InvalidConfig(f"--max-len-a must be a finite number >= 0, got {args.max_len_a}")
    check_at_least("--min-len", args.min_len, 0)
    if args.max_len_b < max(args.min_len, 1):
        raise InvalidConfig(f"--max-len-b must be >= 1 and >= --min-len ({args.min_len}), got {args.max_len_b}")
    if args.fp16 and (args.cpu or not torch.cuda.is_available()):
        raise InvalidConfig("--fp16 needs a GPU; drop it to run the teacher in fp32 on CPU")


def length_limit(generator, sample) -> int:
    """The longest hypothesis (tokens before EOS) the generator allowed in this batch; at that length it
    forces EOS. Same rule as ``SequenceGenerator._generate``: from the batch's padded source length."""
    source_length = sample["net_input"]["src_tokens"].size(1)
    return min(int(generator.max_len_a * source_length + generator.max_len_b), generator.max_len - 1)


@torch.no_grad()
def translate_batches(
    task, generator, teacher, batches, dataset, writer: TargetWriter, fallback: bool, device: torch.device, progress
) -> Counts:
    """Best beam hypothesis of every sentence, written as its new target (or its reference, on fallback)."""
    eos = task.target_dictionary.eos()
    strip = torch.tensor(sorted(generator.symbols_to_strip_from_output), dtype=torch.long)
    counts = Counts()
    for sample in batches:
        if "net_input" not in sample:
            continue
        if device.type == "cuda":
            sample = utils.move_to_cuda(sample)
        hypotheses = task.inference_step(generator, [teacher], sample)
        limit = length_limit(generator, sample)
        for sentence_id, beam in zip(sample["id"].tolist(), hypotheses):
            tokens = beam[0]["tokens"].cpu().long()
            words = tokens[~torch.isin(tokens, strip)]  # what fairseq-generate prints on the H- line
            empty, at_limit = words.numel() == 0, tokens.numel() - 1 >= limit
            counts.empty_hypotheses += empty
            counts.length_limit_hypotheses += at_limit
            if fallback and (empty or at_limit):
                target = dataset.tgt[sentence_id]
                counts.fell_back += 1
            else:
                target = torch.cat([words, words.new_tensor([eos])])
            writer.add(sentence_id, target)
            counts.sentences += 1
            counts.hypothesis_tokens += words.numel()
        progress.update(len(hypotheses))
    return counts


def keep_references(sentence_ids: list[int], dataset, writer: TargetWriter, counts: Counts) -> None:
    """Pairs too long for the teacher: fairseq-generate skips them; here they keep their reference target
    (counted as ``too_long``), so the distilled subset keeps every sentence and its source."""
    for sentence_id in sentence_ids:
        writer.add(sentence_id, dataset.tgt[sentence_id])
    counts.too_long += len(sentence_ids)
    counts.sentences += len(sentence_ids)


def build_generator(task, teacher, args: DistillConfig):
    """fairseq-generate's generator for these settings, after the same inference preparation of the model."""
    generation = GenerationConfig(
        beam=args.beam, lenpen=args.lenpen, max_len_a=args.max_len_a, max_len_b=args.max_len_b, min_len=args.min_len
    )
    teacher.prepare_for_inference_(SimpleNamespace(generation=generation))
    return task.build_generator([teacher], generation)


def distill(args: DistillConfig) -> dict:
    """Check everything, then write the folder; returns its manifest (the existing one if already done)."""
    check_args(args)
    data, out = Path(args.data), Path(args.out)
    task = translation_task(args.data, args.source_lang, args.target_lang, train_subset=args.subset)
    source, target = task.cfg.source_lang, task.cfg.target_lang
    dataset = load_subset(task, args.subset)
    prefix = subset_prefix(data, args.subset, source, target)
    teacher = load_frozen_model(args.teacher_path, task)
    settings = Settings(
        subset=args.subset,
        source_lang=source,
        target_lang=target,
        input_files_sha256=input_fingerprint(data, prefix, source, target),
        teacher_checkpoint_sha256=file_digest(args.teacher_path),
        beam=args.beam,
        lenpen=args.lenpen,
        max_tokens=args.max_tokens,
        max_len_a=args.max_len_a,
        max_len_b=args.max_len_b,
        min_len=args.min_len,
        fp16=args.fp16,
        fallback_to_reference=args.fallback_to_reference,
    )
    if check_output(out, data, settings):
        logger.info("%s already holds this distillation; nothing to do", out)
        return read_manifest(out)

    device = torch.device("cuda" if torch.cuda.is_available() and not args.cpu else "cpu")
    teacher.to(device=device, dtype=torch.float16 if args.fp16 else torch.float32)
    generator = build_generator(task, teacher, args)
    max_positions = utils.resolve_max_positions(task.max_positions(), teacher.max_positions())
    too_long = too_long_sentences(dataset, max_positions)
    batches = task.get_batch_iterator(
        dataset,
        max_tokens=args.max_tokens,
        max_positions=max_positions,
        ignore_invalid_inputs=True,
        required_batch_size_multiple=1,
        seed=GENERATE_SEED,
    ).next_epoch_itr(shuffle=False)

    stage = start_staging(out, settings)
    try:
        copy_files(
            metadata_files(data, source, target)
            + other_subset_files(data, args.subset, source, target)
            + [data / f"{prefix}.{source}.{ext}" for ext in ("bin", "idx")],
            stage,
        )
        writer = TargetWriter(stage / f"{prefix}.{target}", len(dataset), len(task.target_dictionary))
        with tqdm(total=len(dataset), desc=f"beam {args.beam} on {args.subset}", unit="sentence") as progress:
            counts = translate_batches(
                task, generator, teacher, batches, dataset, writer, args.fallback_to_reference, device, progress
            )
        keep_references(too_long, dataset, writer, counts)
        writer.close()
        details = {
            "teacher_path": str(Path(args.teacher_path).resolve()),
            "data": str(data.resolve()),
            "device": str(device),
            "teacher_max_positions": list(max_positions),
        }
        return publish(stage, out, settings, counts, details)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise


@console_script(PROG)
def main(argv=None) -> None:
    logging.basicConfig(
        format="%(asctime)s | %(levelname)s | %(name)s | %(message)s", level=logging.INFO, stream=sys.stdout
    )
    args = parse_args(argv)
    counts = distill(args)["counts"]
    logger.info(
        "%s: %d %s sentences, %d empty hypotheses, %d at the length limit, %d kept their reference, "
        "%d too long for the teacher kept their reference",
        args.out,
        counts["sentences"],
        args.subset,
        counts["empty_hypotheses"],
        counts["length_limit_hypotheses"],
        counts["fell_back"],
        counts.get("too_long", 0),
    )


if __name__ == "__main__":
    main()
