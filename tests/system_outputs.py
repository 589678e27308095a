"""Made-up system outputs for lskd-evaluate's scoring tests: generated references, hypotheses degraded from
them, sentencepiece-style pieces and fairseq-generate's text format around them, and the evaluation settings."""

import random

from lskd_nmt.evaluate import EvalConfig
from release_fixtures import sentence_pairs


def english_segments(count):
    """Generated TED-like English: apostrophes, quotes, '&', '<', numbers, punctuation."""
    return [en for _, en in sentence_pairs(count, seed=5)]


def degrade(sentence: str, rng: random.Random) -> str:
    """A plausible system output: some words dropped or swapped."""
    words = sentence.split()
    words = [w for w in words if rng.random() > 0.15] or words[:1]
    if len(words) > 3 and rng.random() < 0.5:
        i = rng.randrange(len(words) - 1)
        words[i], words[i + 1] = words[i + 1], words[i]
    return " ".join(words)


def pieces(text: str) -> str:
    """Sentencepiece-style pieces: '▁' opens each word, long words are cut into 3-character pieces."""
    out = []
    for word in text.split():
        word = "\u2581" + word
        out += [word[i : i + 3] for i in range(0, len(word), 3)]
    return " ".join(out)


def generate_output(hypotheses, references, seed=0) -> str:
    """fairseq-generate's text format, sentences in shuffled (batch) order, with the S/D/P and log lines."""
    ids = list(range(len(hypotheses)))
    random.Random(seed).shuffle(ids)
    lines = ["2026-01-01 | INFO | fairseq_cli.generate | loading model(s)"]
    for i in ids:
        lines += [
            f"S-{i}\tsource {i}",
            f"T-{i}\t{references[i]}",
            f"H-{i}\t-0.4521\t{hypotheses[i]}",
            f"D-{i}\t-0.4521\tdetok {i}",
            f"P-{i}\t-0.1 -0.2",
        ]
    lines.append("Generate test with beam=5: BLEU4 = 12.34, 1/2/3/4 (BP=1.000)")
    return "\n".join(lines) + "\n"


def config(tmp_path, profile, subword="sentencepiece", lang="en", references=None):
    return EvalConfig(
        data_bin=tmp_path,
        checkpoint=tmp_path / "checkpoint.pt",
        source_lang="de",
        target_lang=lang,
        out=tmp_path / "bleu.json",
        profile=profile,
        subword=subword,
        references=references,
    )
