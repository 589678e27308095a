"""The two BLEU flavours reported for every translation run, both computed by sacreBLEU.

* ``sacrebleu``: detokenised hypotheses against the raw, cased release references with sacreBLEU's own 13a
  tokenisation, case-sensitive: the number comparable with other papers' sacreBLEU. Without raw references
  (a subset data-prep kept no raw text for) the prepared references are detokenised instead; when those are
  lowercased (``paper``) the score is case-insensitive and its signature says ``case:lc``.
* ``tokenized_bleu``: Moses-tokenised, lowercased text scored with ``tokenize='none', lowercase=True``.
  This is what the paper's pipeline (fairseq's built-in scorer on its Moses-tokenised, lowercased IWSLT
  data) reports; it is usually a few points higher, because Moses splits more than 13a and case is ignored.

Neither is the ``BLEU4`` line fairseq-generate prints at the end of its log: that one scores subword pieces.
"""

import re
from dataclasses import dataclass

from sacrebleu.metrics import BLEU

from lskd_nmt.nmt_profiles import PROFILES, moses_detokenize, moses_tokenize

SUBWORD_SCHEMES = ("sentencepiece", "none")
TEXT_PROFILES = tuple(PROFILES)


@dataclass(frozen=True)
class Score:
    score: float
    signature: str
    text: str  # what was scored, in words

    def as_dict(self) -> dict:
        return {"score": self.score, "signature": self.signature, "text": self.text}


def remove_subwords(line: str, scheme: str) -> str:
    """sentencepiece pieces back to words: drop the spaces between pieces, word boundaries are the '▁'."""
    if scheme == "sentencepiece":
        return "".join(line.split()).replace("\u2581", " ").strip()
    if scheme == "none":
        return line.strip()
    raise ValueError(f"unknown subword scheme {scheme!r} (expected one of: {', '.join(SUBWORD_SCHEMES)})")


# What Moses' detokeniser leaves split after Moses' tokeniser: a curly apostrophe before an English clitic
# ("it ’ s", "don ’ t"; a plural possessive "kids ’ toys" stays, it cannot be told from a closing quote)
# and the inner spaces of curly double quotes.
_CURLY_CLITIC = re.compile(r"(?<=\w) ’ (?=(?:s|t|re|ve|ll|d|m)\b)", re.IGNORECASE)
_OPENING_QUOTE_SPACE = re.compile(r"“ ")
_CLOSING_QUOTE_SPACE = re.compile(r" ”")


def rejoin_curly_quotes(line: str) -> str:
    return _CLOSING_QUOTE_SPACE.sub("”", _OPENING_QUOTE_SPACE.sub("“", _CURLY_CLITIC.sub("’", line)))


def detokenized(lines: list[str], profile: str, lang: str) -> list[str]:
    """paper text is Moses-tokenised, so undo it (and rejoin what Moses' detokeniser leaves split); modern
    text is raw already."""
    if profile != "paper":
        return list(lines)
    return [rejoin_curly_quotes(line) for line in moses_detokenize(lines, lang)]


def tokenized(lines: list[str], profile: str, lang: str) -> list[str]:
    """paper text is Moses-tokenised already; modern text gets the same Moses tokenisation the paper used."""
    return list(lines) if profile == "paper" else moses_tokenize(lines, lang)


GENERATE_BLEU4_NOTE = (
    "the 'BLEU4' line at the end of fairseq-generate's log scores subword pieces against "
    "fairseq's T- lines: it is neither of these numbers"
)


def sacrebleu_score(hypotheses: list[str], references: list[str], references_are: str, lowercase: bool) -> Score:
    """13a-tokenised sacreBLEU; ``lowercase`` when the references have lost their case, so the signature
    never says ``case:mixed`` over lowercased text. ``references_are`` says in words what they are."""
    metric = BLEU(lowercase=lowercase)
    result = metric.corpus_score(hypotheses, [references])
    case = "case-insensitive" if lowercase else "cased"
    return Score(
        result.score,
        str(metric.get_signature()),
        f"detokenised hypotheses against {references_are}, sacreBLEU 13a tokenisation, {case}",
    )


def perfect_system_score(prepared_references: list[str], raw_references: list[str], profile: str, lang: str) -> Score:
    """What the detokenised sacreBLEU of a perfect system of ``profile`` is against the raw references: the
    prepared references themselves, detokenised as hypotheses are. Below 100 for ``paper`` text, which is
    lowercased (case counts against it) and spaced by Moses where the release was not."""
    return sacrebleu_score(
        detokenized(prepared_references, profile, lang),
        raw_references,
        "the raw release references",
        lowercase=False,
    )


def tokenized_bleu_score(hypotheses: list[str], references: list[str]) -> Score:
    metric = BLEU(tokenize="none", lowercase=True)
    result = metric.corpus_score(hypotheses, [references])
    return Score(result.score, str(metric.get_signature()), "Moses-tokenised lowercased text (the paper's BLEU)")
