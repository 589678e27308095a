"""``lskd-dump-teacher``: run a teacher once over a binarised split and cache its top-k logits per token.

The teacher sees the gold targets (teacher forcing) in eval mode, exactly as it does during online KD,
so a student trained from the cache gets the same targets as one trained next to the live teacher. On
request it also stores, per token, what the transfers need of the full row (the log-sum-exp at listed
temperatures for the tail bucket, the mean and std for standardisation), and it always reports the mass
its top k drops (docs/transfers.md).
"""

import json
import logging
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from tqdm import tqdm

import lskd_fairseq  # noqa: F401  (the plugin's process hooks: checkpoint allow-list)
from lskd.checks import check_at_least, check_temperature
from lskd.errors import InvalidConfig
from lskd.transfer_loss import row_moments, standardized
from lskd_fairseq.binarised import load_subset, too_long_sentences, translation_task
from lskd_fairseq.checkpoints import load_frozen_model
from lskd_fairseq.teacher_cache import (
    DTYPES,
    CacheWriter,
    Fingerprint,
    cache_paths,
    mass_temperatures,
    target_lengths,
)
from lskd_tools.cli import console_script, device_option, option, parse_config, torch_device
from lskd_tools.files import check_writable, file_digest

PROG = "lskd-dump-teacher"
logger = logging.getLogger(PROG)


@dataclass
class DumpConfig:
    data: str = option(positional=True, help="fairseq-preprocess output folder")
    teacher_path: str = option(help="teacher checkpoint (same dictionaries as DATA)")
    out: str = option(help="cache folder (one cache per subset inside)")
    teacher_dict_dir: Optional[str] = option(
        None,
        default_text="none",
        help="folder with the dict.*.txt the teacher was trained with, for a "
        "teacher that does not record its dictionaries and whose data "
        "folder is gone",
    )
    subset: str = option("train", help="split to score")
    topk: int = option(4, help="teacher entries kept per token")
    source_lang: Optional[str] = option(
        None, flags=("-s", "--source-lang"), default_text="inferred from DATA", help="source language"
    )
    target_lang: Optional[str] = option(
        None, flags=("-t", "--target-lang"), default_text="inferred from DATA", help="target language"
    )
    max_tokens: int = option(4096, help="tokens per teacher batch")
    dtype: str = option("fp16", choices=tuple(sorted(DTYPES)), help="storage type of the logits")
    tail_temperatures: tuple[float, ...] = option(
        (),
        metavar="T",
        default_text="none",
        help="also store each token's full-row log-sum-exp at these teacher temperatures (4 bytes each), "
        "for word_kd --kd-topk-tail",
    )
    standardization_stats: bool = option(
        False,
        help="also store each token's full-row mean and std (and, with --tail-temperatures, the standardised "
        "row's log-sum-exp), for word_kd --kd-logit-standardization",
    )
    fp16: bool = option(False, help="run the teacher in half precision (GPU)")
    device: str = device_option("where the teacher runs: auto picks cuda when a GPU is visible")
    force: bool = option(False, help="replace an existing cache of this subset")


def check_args(args: DumpConfig) -> torch.device:
    """Every refusal before the teacher loads; returns the device the teacher runs on."""
    check_at_least("--topk", args.topk, 1)
    check_at_least("--max-tokens", args.max_tokens, 1)
    for temperature in args.tail_temperatures:
        try:
            check_temperature(temperature)
        except InvalidConfig as error:
            raise InvalidConfig(f"--tail-temperatures: {error}") from None
    if len(set(args.tail_temperatures)) != len(args.tail_temperatures):
        raise InvalidConfig(f"--tail-temperatures lists a temperature twice: {list(args.tail_temperatures)}")
    device = torch_device(args.device)
    if args.fp16 and device.type != "cuda":
        raise InvalidConfig("--fp16 needs a GPU; drop it to run the teacher in fp32 on CPU")
    check_writable(args.out, "--out")
    existing = cache_paths(args.out, args.subset)["fingerprint"]
    if existing.exists() and not args.force:
        raise InvalidConfig(f"{existing} exists; pass --force to replace that cache")
    return device


def row_statistics(rows, tail_temperatures, standardization: bool) -> dict:
    """The per-token statistics of full teacher rows [tokens, V] that a cache stores, by file part."""
    statistics = {}
    if tail_temperatures:
        statistics["log_normalizers"] = torch.stack([torch.logsumexp(rows / t, -1) for t in tail_temperatures], -1)
    if standardization:
        mean, std = row_moments(rows)
        statistics["moments"] = torch.stack([mean, std], -1)
        if tail_temperatures:
            z = standardized(rows, mean, std)
            statistics["standardized_log_normalizers"] = torch.stack(
                [torch.logsumexp(z / t, -1) for t in tail_temperatures], -1
            )
    return {part: values.cpu().numpy().astype(np.float32) for part, values in statistics.items()}


def dropped_mass(rows, indices, temperatures):
    """[tokens, temperatures]: the teacher's probability outside its top-k ``indices`` at each temperature,
    as exp(log-sum-exp over the other tokens − over all), accurate however small it is."""
    rest = rows.scatter(-1, indices, float("-inf"))
    masses = [torch.exp(torch.logsumexp(rest / t, -1) - torch.logsumexp(rows / t, -1)) for t in temperatures]
    return torch.stack(masses, -1).double().cpu().numpy()


@torch.no_grad()
def score_batches(teacher, batches, writer: CacheWriter, topk: int, pad: int, device) -> None:
    """Teacher-forced top-k logits of every target token of ``batches`` (and the statistics the cache's
    fingerprint asks for, and the dropped mass), written to ``writer``."""
    storage = writer.logits.dtype
    fingerprint = writer.fingerprint
    for sample in batches:
        net_input = {key: value.to(device) for key, value in sample["net_input"].items()}
        logits, _ = teacher(**net_input)
        keep = sample["target"].ne(pad).to(device)
        rows = logits.float()[keep]
        values, indices = rows.topk(topk, dim=-1)
        writer.write_batch(
            sample["id"].numpy(),
            keep.sum(-1).cpu().numpy(),
            indices.cpu().numpy().astype(np.int32),
            values.cpu().numpy().astype(storage),
            row_statistics(rows, fingerprint.tail_temperatures, fingerprint.standardization),
            dropped_mass(rows, indices, writer.dropped.temperatures),
        )


@torch.no_grad()
def dump(args: DumpConfig) -> Fingerprint:
    device = check_args(args)
    task = translation_task(args.data, args.source_lang, args.target_lang, train_subset=args.subset)
    dataset = load_subset(task, args.subset)
    vocab = len(task.target_dictionary)
    if args.topk > vocab:
        raise InvalidConfig(f"--topk {args.topk} exceeds the target vocabulary ({vocab} symbols)")
    teacher = load_frozen_model(args.teacher_path, task, args.teacher_dict_dir)
    teacher.to(device=device, dtype=torch.float16 if args.fp16 else torch.float32)

    fingerprint = Fingerprint.of_data(
        args.subset,
        dataset,
        task.target_dictionary,
        file_digest(args.teacher_path),
        args.topk,
        args.dtype,
        sorted(args.tail_temperatures),
        args.standardization_stats,
    )
    fingerprint.too_long_sentences = too_long_sentences(dataset, teacher.max_positions())
    writer = CacheWriter(args.out, fingerprint, target_lengths(dataset))
    writer.skip(fingerprint.too_long_sentences)
    try:
        batches = task.get_batch_iterator(
            dataset, max_tokens=args.max_tokens, max_positions=teacher.max_positions(), ignore_invalid_inputs=True
        ).next_epoch_itr(shuffle=False)
        progress = tqdm(batches, desc=f"teacher top-{args.topk} on {args.subset}", unit="batch")
        score_batches(teacher, progress, writer, args.topk, task.target_dictionary.pad(), device)
        writer.close()
    except BaseException:
        writer.discard()
        raise
    if skipped := fingerprint.too_long_sentences:
        logger.warning(
            "%d sentences longer than the teacher's positions %s were skipped, as fairseq-generate "
            "--skip-invalid-size-inputs-valid-test skips them (first ids %s); training from this cache skips them too",
            len(skipped),
            teacher.max_positions(),
            skipped[:5],
        )
    return fingerprint


@console_script(PROG)
def main(argv=None) -> None:
    args = parse_config(DumpConfig, argv, prog=PROG, description=__doc__.splitlines()[0])
    logging.basicConfig(
        format="%(asctime)s | %(levelname)s | %(name)s | %(message)s", level=logging.INFO, stream=sys.stdout
    )
    fingerprint = dump(args)
    paths = cache_paths(args.out, args.subset)
    size = sum(path.stat().st_size for part, path in paths.items() if part != "fingerprint" and path.exists())
    logger.info(
        "cached top-%d of %d target tokens (%d sentences) in %s: %.1f bytes per token",
        fingerprint.topk,
        fingerprint.tokens,
        fingerprint.sentences,
        Path(args.out),
        size / fingerprint.tokens,
    )
    report = json.loads(paths["dropped_mass"].read_text())
    for temperature in mass_temperatures(fingerprint.tail_temperatures):
        mass = report["temperatures"][f"{temperature:g}"]
        logger.info(
            "teacher mass outside its top-%d at T = %g: mean %.4g, median %.4g, 90th percentile %.4g",
            fingerprint.topk,
            temperature,
            mass["mean"],
            mass["quantiles"]["0.5"],
            mass["quantiles"]["0.9"],
        )


if __name__ == "__main__":
    main()
