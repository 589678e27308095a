"""``lskd-fairseq-diffusion``: the paper's Fig. 1 and the diffusion measures for translation checkpoints.

A target token plays the part of a class: the penultimate representation is the decoder output just
before the output projection, taken with teacher forcing at every gold target position of that token. The
projection, measures and figure are ``lskd_report.diffusion_report.analyse_models``'s.

Example::

    lskd-fairseq-diffusion data-bin/iwslt14.de-en --source-lang de --target-lang en \\
        --checkpoints "teacher a=0=ckpt/t0.pt" "teacher a=0.1=ckpt/t1.pt" --suggest --out analysis/
"""

import logging
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Optional, Sequence

import numpy as np
import torch
from fairseq import utils as fairseq_utils
from fairseq.data import Dictionary
from tqdm import tqdm

from lskd.diffusion import suggest_classes
from lskd.errors import InvalidConfig
from lskd_fairseq.binarised import load_subset, translation_task
from lskd_fairseq.checkpoints import load_frozen_model
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


@dataclass
class TokenFeatures:
    """Decoder features (N, D) at the gold positions of the chosen tokens, and those tokens (N,)."""

    features: np.ndarray
    labels: np.ndarray


def output_classifier(model: torch.nn.Module) -> tuple[np.ndarray, Optional[np.ndarray]]:
    """Weight rows (V, D) and bias (V,) or None of the decoder's output projection."""
    decoder = model.decoder
    if getattr(decoder, "adaptive_softmax", None) is not None:
        raise InvalidConfig("models with an adaptive softmax have no single output projection to analyse")
    projection = getattr(decoder, "output_projection", None)
    if not isinstance(projection, torch.nn.Linear):
        raise InvalidConfig(
            f"{type(decoder).__name__} has no nn.Linear output_projection; expected a fairseq transformer-style decoder"
        )
    bias = None if projection.bias is None else projection.bias.detach().cpu().numpy()
    return projection.weight.detach().cpu().numpy(), bias


def token_indices(dictionary: Dictionary, tokens: Sequence[str]) -> tuple[int, ...]:
    """Dictionary indices of ``tokens``, refusing unknown ones and padding (never a target)."""
    indices = []
    for token in tokens:
        index = dictionary.index(token)
        if index == dictionary.unk() and token != dictionary.unk_word:
            raise InvalidConfig(f"token {token!r} is not in the target dictionary ({len(dictionary)} symbols)")
        if index == dictionary.pad():
            raise InvalidConfig(f"token {token!r} is padding, which is never a target")
        indices.append(index)
    return tuple(indices)


def _batches(dataset, max_sentences: Optional[int], batch_size: int):
    count = len(dataset) if max_sentences is None else min(max_sentences, len(dataset))
    for start in range(0, count, batch_size):
        yield dataset.collater([dataset[i] for i in range(start, min(start + batch_size, count))])


def target_counts(dataset, vocab_size: int, max_sentences: Optional[int] = None) -> np.ndarray:
    """How often each token is a gold target in the first ``max_sentences`` sentences."""
    count = len(dataset) if max_sentences is None else min(max_sentences, len(dataset))
    counts = np.zeros(vocab_size, dtype=np.int64)
    for i in range(count):
        counts += np.bincount(dataset.tgt[i].numpy(), minlength=vocab_size)
    return counts


@torch.no_grad()
def batch_features(model: torch.nn.Module, batch: dict, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Teacher-forced decoder features (B, T, D) just before the output projection, and the gold targets."""
    net_input = {key: value.to(device) for key, value in batch["net_input"].items()}
    encoder_out = model.encoder(net_input["src_tokens"], src_lengths=net_input["src_lengths"])
    features, _ = model.decoder(net_input["prev_output_tokens"], encoder_out=encoder_out, features_only=True)
    return features, batch["target"].to(device)


def decoder_features(
    model: torch.nn.Module,
    dataset,
    tokens: Sequence[int],
    description: str,
    max_sentences: Optional[int] = None,
    batch_size: int = 64,
    max_per_class: Optional[int] = None,
    device: str = "cpu",
) -> TokenFeatures:
    """Features at the gold positions of ``tokens``, in corpus order; stops early once every token has
    ``max_per_class`` of them."""
    device = torch.device(device)
    model.to(device)
    wanted = torch.tensor(list(tokens), device=device)
    collected, labels = [], []
    found = dict.fromkeys(tokens, 0)
    total = len(dataset) if max_sentences is None else min(max_sentences, len(dataset))
    progress = tqdm(
        _batches(dataset, max_sentences, batch_size), desc=description, unit="batch", total=-(-total // batch_size)
    )
    for batch in progress:
        features, target = batch_features(model, batch, device)
        positions = torch.isin(target, wanted)
        collected.append(features[positions].float().cpu().numpy())
        labels.append(target[positions].cpu().numpy())
        for token in tokens:
            found[token] += int((labels[-1] == token).sum())
        if max_per_class is not None and min(found.values()) >= max_per_class:
            break
    progress.close()
    width = model.decoder.output_projection.weight.size(1)
    return TokenFeatures(
        features=np.concatenate(collected) if collected else np.zeros((0, width), dtype=np.float32),
        labels=np.concatenate(labels) if labels else np.zeros(0, dtype=np.int64),
    )


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
