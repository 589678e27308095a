"""``lskd-fairseq-diffusion``: the paper's Fig. 1 and the diffusion measures for translation checkpoints.

Example::

    lskd-fairseq-diffusion data-bin/iwslt14.de-en --source-lang de --target-lang en \\
        --checkpoints "teacher a=0=ckpt/t0.pt" "teacher a=0.1=ckpt/t1.pt" --suggest --out analysis/
"""
import argparse
import logging
import sys
from types import SimpleNamespace
from typing import Optional, Sequence

import torch
from fairseq import utils as fairseq_utils

from lskd.errors import InvalidConfig, LskdError
from lskd.class_suggestion import suggest_classes
from lskd_report.diffusion_report import ModelFeatures, analyse_models, parse_checkpoints
from lskd_fairseq.diffusion import decoder_features, output_classifier, target_counts, token_indices
from lskd_fairseq.loading import load_frozen_model, load_subset, translation_task

PROGRAM = "lskd-fairseq-diffusion"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROGRAM, description="Fig. 1-style penultimate-layer plot and diffusion measures for translation "
                                  "checkpoints (see docs/analysis.md).")
    parser.add_argument("data_bin", metavar="DATA_BIN", help="fairseq-preprocess output folder")
    parser.add_argument("--checkpoints", nargs="+", required=True, metavar="NAME=CKPT",
                        help="models to compare, one figure row each, in this order")
    parser.add_argument("--source-lang", required=True)
    parser.add_argument("--target-lang", required=True)
    choice = parser.add_mutually_exclusive_group(required=True)
    choice.add_argument("--tokens", nargs=3, metavar=("TARGET", "SIMILAR", "CONTROL"),
                        help="three target-side tokens: a target, a semantically similar one, a dissimilar one")
    choice.add_argument("--suggest", action="store_true",
                        help="choose them from the first checkpoint's output embeddings: the most similar "
                             "frequent pair by cosine, plus the frequent token least similar to both")
    parser.add_argument("--min-count", type=int, default=20,
                        help="--suggest considers only tokens at least this frequent in the train subset")
    parser.add_argument("--out", required=True, help="folder for diffusion.png and diffusion.json")
    parser.add_argument("--subset-train", default="train", help="subset the PCA is fitted on")
    parser.add_argument("--subset-valid", default="valid", help="subset shown with the same PCA")
    parser.add_argument("--max-sentences", type=int, help="use only the first N sentences of each subset")
    parser.add_argument("--max-per-class", type=int, help="keep the first N positions of each token per subset")
    parser.add_argument("--batch-size", type=int, default=64, help="sentences per forward pass")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--user-dir", action="append", default=[],
                        help="extra fairseq plugin folder a checkpoint's model needs (repeatable)")
    return parser


def check_counts(args) -> None:
    for flag, value, minimum in (("--max-sentences", args.max_sentences, 1), ("--max-per-class", args.max_per_class, 2),
                                 ("--batch-size", args.batch_size, 1), ("--min-count", args.min_count, 2)):
        if value is not None and value < minimum:
            raise InvalidConfig(f"{flag} must be at least {minimum}, got {value}")


def choose_tokens(args, task, model, datasets) -> tuple[int, ...]:
    dictionary = task.target_dictionary
    if args.tokens:
        return token_indices(dictionary, args.tokens)
    weight, _ = output_classifier(model)
    train_counts = target_counts(datasets["train"], len(dictionary), args.max_sentences)
    valid_counts = target_counts(datasets["valid"], len(dictionary), args.max_sentences)
    special = [i for i, symbol in enumerate(dictionary.symbols)
               if i < dictionary.nspecial or symbol.startswith("madeupword")]
    counts = train_counts * (valid_counts >= 2)
    suggestion = suggest_classes(weight, counts, args.min_count, excluded=special)
    print(f"{PROGRAM}: suggested tokens {[dictionary[i] for i in suggestion.classes]} "
          f"(similar-pair cosine {suggestion.similar_cosine:.3f}, control cosine {suggestion.control_cosine:.3f})")
    return suggestion.classes


def run(args) -> None:
    check_counts(args)
    checkpoints = parse_checkpoints(args.checkpoints)
    for user_dir in args.user_dir:
        fairseq_utils.import_user_module(SimpleNamespace(user_dir=user_dir))
    task = translation_task(args.data_bin, args.source_lang, args.target_lang, args.subset_train)
    datasets = {"train": load_subset(task, args.subset_train), "valid": load_subset(task, args.subset_valid)}
    models = {name: load_frozen_model(path, task) for name, path in checkpoints.items()}
    classes = choose_tokens(args, task, next(iter(models.values())), datasets)
    extracted = {}
    for name, model in models.items():
        weight, bias = output_classifier(model)
        splits = [decoder_features(model, datasets[split], classes, f"{name} {subset}", args.max_sentences,
                                   args.batch_size, args.max_per_class, args.device)
                  for split, subset in (("train", args.subset_train), ("valid", args.subset_valid))]
        extracted[name] = ModelFeatures(splits[0].features, splits[0].labels, splits[1].features,
                                        splits[1].labels, weight, bias)
    names = [task.target_dictionary[i] for i in classes]
    outputs = analyse_models(extracted, classes, args.out, class_names=names,
                             max_train_per_class=args.max_per_class, max_valid_per_class=args.max_per_class)
    print(f"{PROGRAM}: wrote {outputs.png} and {outputs.json}")


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    logging.getLogger().setLevel(logging.INFO)  # importing fairseq leaves the root logger at DEBUG
    try:
        run(args)
    except LskdError as error:
        print(f"{PROGRAM}: error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
