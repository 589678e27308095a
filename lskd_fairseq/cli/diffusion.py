"""``lskd-fairseq-diffusion``: the paper's Fig. 1 and the diffusion measures for translation checkpoints.

Example::

    lskd-fairseq-diffusion data-bin/iwslt14.de-en --source-lang de --target-lang en \\
        --checkpoints "teacher a=0=ckpt/t0.pt" "teacher a=0.1=ckpt/t1.pt" --suggest --out analysis/
"""

import logging
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Optional

from fairseq import utils as fairseq_utils

from lskd.class_suggestion import suggest_classes
from lskd.errors import InvalidConfig
from lskd_fairseq.diffusion import decoder_features, output_classifier, target_counts, token_indices
from lskd_fairseq.loading import load_frozen_model, load_subset, translation_task
from lskd_report.diffusion_report import ModelFeatures, analyse_models, parse_checkpoints
from lskd_tools.cli import console_script, device_option, option, parse_config, torch_device

PROGRAM = "lskd-fairseq-diffusion"


@dataclass
class DiffusionConfig:
    data_bin: str = option(positional=True, metavar="DATA_BIN", help="fairseq-preprocess output folder")
    checkpoints: tuple[str, ...] = option(
        metavar="NAME=CKPT", help="models to compare, one figure row each, in this order"
    )
    source_lang: str = option(help="source language of DATA_BIN")
    target_lang: str = option(help="target language of DATA_BIN")
    out: str = option(help="folder for diffusion.png and diffusion.json")
    tokens: Optional[tuple[str, str, str]] = option(
        None,
        metavar=("TARGET", "SIMILAR", "CONTROL"),
        default_text="none: give --tokens or --suggest",
        help="three target-side tokens: a target, a semantically similar one, a dissimilar one",
    )
    suggest: bool = option(
        False,
        help="choose them from the first checkpoint's output embeddings: the most "
        "similar frequent pair by cosine, plus the frequent token least similar to both",
    )
    min_count: int = option(20, help="--suggest considers only tokens at least this frequent in the train subset")
    subset_train: str = option("train", help="subset the PCA is fitted on")
    subset_valid: str = option("valid", help="subset shown with the same PCA")
    max_sentences: Optional[int] = option(
        None, default_text="all", help="use only the first N sentences of each subset"
    )
    max_per_class: Optional[int] = option(
        None, default_text="all", help="keep the first N positions of each token per subset"
    )
    batch_size: int = option(64, help="sentences per forward pass")
    device: str = device_option()
    user_dir: tuple[str, ...] = option(
        (), default_text="none", help="extra fairseq plugin folders a checkpoint's model needs"
    )


def check_counts(args: DiffusionConfig) -> None:
    if bool(args.tokens) == args.suggest:
        raise InvalidConfig("give exactly one of --tokens TARGET SIMILAR CONTROL or --suggest")
    for flag, value, minimum in (
        ("--max-sentences", args.max_sentences, 1),
        ("--max-per-class", args.max_per_class, 2),
        ("--batch-size", args.batch_size, 1),
        ("--min-count", args.min_count, 2),
    ):
        if value is not None and value < minimum:
            raise InvalidConfig(f"{flag} must be at least {minimum}, got {value}")


def choose_tokens(args, task, model, datasets) -> tuple[int, ...]:
    dictionary = task.target_dictionary
    if args.tokens:
        return token_indices(dictionary, args.tokens)
    weight, _ = output_classifier(model)
    train_counts = target_counts(datasets["train"], len(dictionary), args.max_sentences)
    valid_counts = target_counts(datasets["valid"], len(dictionary), args.max_sentences)
    special = [
        i for i, symbol in enumerate(dictionary.symbols) if i < dictionary.nspecial or symbol.startswith("madeupword")
    ]
    counts = train_counts * (valid_counts >= 2)
    suggestion = suggest_classes(weight, counts, args.min_count, excluded=special)
    print(
        f"{PROGRAM}: suggested tokens {[dictionary[i] for i in suggestion.classes]} "
        f"(similar-pair cosine {suggestion.similar_cosine:.3f}, control cosine {suggestion.control_cosine:.3f})"
    )
    return suggestion.classes


def run(args: DiffusionConfig) -> None:
    check_counts(args)
    device = str(torch_device(args.device))
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
        splits = [
            decoder_features(
                model,
                datasets[split],
                classes,
                f"{name} {subset}",
                args.max_sentences,
                args.batch_size,
                args.max_per_class,
                device,
            )
            for split, subset in (("train", args.subset_train), ("valid", args.subset_valid))
        ]
        extracted[name] = ModelFeatures(
            splits[0].features, splits[0].labels, splits[1].features, splits[1].labels, weight, bias
        )
    names = [task.target_dictionary[i] for i in classes]
    outputs = analyse_models(
        extracted,
        classes,
        args.out,
        class_names=names,
        max_train_per_class=args.max_per_class,
        max_valid_per_class=args.max_per_class,
    )
    print(f"{PROGRAM}: wrote {outputs.png} and {outputs.json}")


@console_script(PROGRAM)
def main(argv=None) -> None:
    args = parse_config(DiffusionConfig, argv, prog=PROGRAM, description=__doc__.split("\n\n")[0].strip("`"))
    logging.getLogger().setLevel(logging.INFO)  # importing fairseq leaves the root logger at DEBUG
    run(args)


if __name__ == "__main__":
    main()
