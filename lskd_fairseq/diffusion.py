"""Penultimate features of fairseq translation models for the diffusion analysis (``lskd_report.diffusion_report``).

A target token plays the part of a class: the penultimate representation is the decoder output just
before the output projection, taken with teacher forcing at every gold target position of that token.
"""

from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np
import torch
from fairseq.data import Dictionary
from tqdm import tqdm

from lskd.errors import InvalidConfig


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
