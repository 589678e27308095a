"""The two text profiles for IWSLT data and the text operations they are made of.

``paper`` reproduces the preprocessing of the paper's NMT pipeline (fairseq's IWSLT'14 recipe as used
by Tan et al., "Multilingual Neural Machine Translation with Knowledge Distillation",
ICLR 2019): Moses tokenisation, length/ratio cleaning, lowercasing, and a BPE-style joint subword
vocabulary; its BLEU is tokenised, lowercased BLEU. ``modern`` keeps raw cased text and lets a joint
sentencepiece model do all segmentation, so its output can be scored with detokenised sacreBLEU directly.
"""

from dataclasses import dataclass
from typing import Optional

from sacremoses import MosesDetokenizer, MosesTokenizer

# Every VALID_EVERY-th cleaned training pair becomes validation, as in fairseq's IWSLT'14 recipe; a
# preparation therefore needs at least that many lines to have a validation set at all.
VALID_EVERY = 23
MIN_VOCAB_SIZE = 8  # the smallest joint subword vocabulary a preparation accepts


@dataclass(frozen=True)
class CleanRule:
    """Drop training pairs by length, like Moses' ``clean-corpus-n.perl``: too short, too long, or too unequal."""

    min_tokens: int = 1
    max_tokens: int = 175
    max_ratio: float = 1.5

    def keeps(self, source: str, target: str) -> bool:
        lengths = len(source.split()), len(target.split())
        if min(lengths) < self.min_tokens or max(lengths) > self.max_tokens:
            return False
        return max(lengths) / min(lengths) <= self.max_ratio


@dataclass(frozen=True)
class TextProfile:
    name: str
    moses_tokenize: bool
    lowercase: bool
    clean: CleanRule
    sentencepiece_type: str  # "bpe" for the paper's BPE-style vocabulary, "unigram" otherwise
    valid_every: int = VALID_EVERY


PROFILES = {
    "paper": TextProfile("paper", moses_tokenize=True, lowercase=True, clean=CleanRule(), sentencepiece_type="bpe"),
    "modern": TextProfile(
        "modern", moses_tokenize=False, lowercase=False, clean=CleanRule(), sentencepiece_type="unigram"
    ),
}


def profile_named(name: str) -> TextProfile:
    if name not in PROFILES:
        raise ValueError(f"unknown profile {name!r} (expected one of: {', '.join(PROFILES)})")
    return PROFILES[name]


class TextNormaliser:
    """Per-language text transform of a profile; Moses escaping is kept as in the paper's data (``&apos;``)."""

    def __init__(self, profile: TextProfile, lang: str):
        self.profile = profile
        self.tokenizer: Optional[MosesTokenizer] = MosesTokenizer(lang=lang) if profile.moses_tokenize else None

    def __call__(self, line: str) -> str:
        line = " ".join(line.split())
        if self.tokenizer is not None:
            line = self.tokenizer.tokenize(line, return_str=True, escape=True)
        return line.lower() if self.profile.lowercase else line


def moses_tokenize(lines: list[str], lang: str) -> list[str]:
    """Moses tokens joined by spaces, escaped as Moses' tokenizer.perl does, for tokenised BLEU."""
    tokenizer = MosesTokenizer(lang=lang)
    return [tokenizer.tokenize(line, return_str=True, escape=True) for line in lines]


def moses_detokenize(lines: list[str], lang: str) -> list[str]:
    """Inverse of :func:`moses_tokenize` (unescapes ``&apos;`` etc.), for detokenised sacreBLEU."""
    detokenizer = MosesDetokenizer(lang=lang)
    return [detokenizer.detokenize(line.split(), unescape=True) for line in lines]
