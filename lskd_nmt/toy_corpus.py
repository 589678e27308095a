"""A deterministic toy language pair small enough to train a translation model on a laptop CPU in minutes.

The source side is English-like (subject–verb–object, adjectives before nouns). The target side has the
structure that makes translation more than word lookup: verb-final word order, grammatical gender that
the article and the adjective ending agree with, plural nouns and verb agreement with the subject, and an
optional place phrase that moves in front of the verb. Word forms are invented, so no real-language
knowledge leaks in. The same seed always gives the same corpus.
"""

import random
from dataclasses import dataclass
from pathlib import Path

from lskd.errors import InvalidConfig
from lskd_tools.cli import console_script, option, parse_config

# source noun -> (target stem, gender)
NOUNS = {
    "dog": ("hund", "m"),
    "cat": ("mieze", "f"),
    "child": ("kindo", "n"),
    "teacher": ("lehro", "m"),
    "bird": ("vogl", "m"),
    "house": ("hausi", "n"),
    "tree": ("baumo", "m"),
    "car": ("wagi", "m"),
    "woman": ("frau", "f"),
    "man": ("mann", "m"),
    "book": ("buchi", "n"),
    "apple": ("apfo", "m"),
    "flower": ("bluma", "f"),
    "river": ("flussa", "m"),
    "city": ("stadta", "f"),
    "horse": ("pferdo", "n"),
    "girl": ("madla", "n"),
    "boy": ("jungo", "m"),
    "door": ("turra", "f"),
    "song": ("liedo", "n"),
}
ADJECTIVES = {
    "big": "gross",
    "small": "klein",
    "old": "alt",
    "young": "jung",
    "red": "rot",
    "green": "grun",
    "happy": "froh",
    "quiet": "still",
    "fast": "schnell",
    "strange": "selt",
}
# source verb (3rd person singular, plural) -> target stem
VERBS = {
    ("sees", "see"): "seh",
    ("likes", "like"): "mag",
    ("finds", "find"): "find",
    ("follows", "follow"): "folg",
    ("calls", "call"): "ruf",
    ("hears", "hear"): "hor",
    ("paints", "paint"): "mal",
    ("helps", "help"): "helf",
}
PLACES = {
    "in the garden": "im garto",
    "near the river": "bei dem flussa",
    "at home": "zu hauso",
    "in the city": "in der stadta",
    "on the hill": "auf dem bergo",
}
ARTICLES = {  # (definite, gender or "pl") -> target article
    (True, "m"): "der",
    (True, "f"): "die",
    (True, "n"): "das",
    (True, "pl"): "die",
    (False, "m"): "ein",
    (False, "f"): "eine",
    (False, "n"): "ein",
}
ADJECTIVE_ENDING = {"m": "er", "f": "e", "n": "es", "pl": "en"}


@dataclass
class NounPhrase:
    noun: str
    definite: bool
    plural: bool
    adjective: str = ""

    def source(self) -> list[str]:
        article = "the" if self.definite else ("some" if self.plural else "a")
        noun = self.noun + "s" if self.plural else self.noun
        return [article] + ([self.adjective] if self.adjective else []) + [noun]

    def target(self) -> list[str]:
        stem, gender = NOUNS[self.noun]
        agreement = "pl" if self.plural else gender
        words = [ARTICLES[(self.definite, agreement)]] if (self.definite or not self.plural) else []
        if self.adjective:
            words.append(ADJECTIVES[self.adjective] + ADJECTIVE_ENDING[agreement])
        words.append(stem + "en" if self.plural else stem)
        return words


def _noun_phrase(rng: random.Random) -> NounPhrase:
    return NounPhrase(
        noun=rng.choice(sorted(NOUNS)),
        definite=rng.random() < 0.6,
        plural=rng.random() < 0.3,
        adjective=rng.choice(sorted(ADJECTIVES)) if rng.random() < 0.5 else "",
    )


def sentence_pair(rng: random.Random) -> tuple[str, str]:
    """One (source, target) pair: ``S V O [place]`` -> ``S O [place] V`` with agreement."""
    subject, obj = _noun_phrase(rng), _noun_phrase(rng)
    (singular, plural), verb_stem = rng.choice(sorted(VERBS.items()))
    place = rng.choice(sorted(PLACES)) if rng.random() < 0.3 else ""
    source = subject.source() + [plural if subject.plural else singular] + obj.source()
    target = subject.target() + obj.target()
    if place:
        source += place.split()
        target += PLACES[place].split()
    target.append(verb_stem + ("en" if subject.plural else "t"))
    return " ".join(source), " ".join(target)


def write_corpus(
    out: Path, train: int, valid: int, test: int, seed: int = 1, source_lang: str = "src", target_lang: str = "tgt"
) -> dict[str, int]:
    """Write ``{train,valid,test}.{source_lang,target_lang}`` into ``out``.

    Held-out pairs are distinct from each other and never appear in train, so BLEU measures translation
    of unseen sentences.
    """
    wanted = {"valid": valid, "test": test, "train": train}
    for split, count in wanted.items():
        if count < 1:
            raise InvalidConfig(f"--{split} must be >= 1 sentence pairs, got {count}")
    rng = random.Random(seed)
    held_out: set = set()
    splits: dict[str, list] = {}
    for split in ("valid", "test", "train"):
        rows = splits[split] = []
        while len(rows) < wanted[split]:
            pair = sentence_pair(rng)
            if pair in held_out:
                continue
            if split != "train":
                held_out.add(pair)
            rows.append(pair)
    out.mkdir(parents=True, exist_ok=True)
    for split, rows in splits.items():
        (out / f"{split}.{source_lang}").write_text("".join(s + "\n" for s, _ in rows))
        (out / f"{split}.{target_lang}").write_text("".join(t + "\n" for _, t in rows))
    return {split: len(rows) for split, rows in splits.items()}


@dataclass
class ToyCorpusConfig:
    out: Path = option(help="folder for {train,valid,test}.{SOURCE_LANG,TARGET_LANG}")
    train: int = option(4000, help="training sentence pairs")
    valid: int = option(300, help="validation sentence pairs (never in train)")
    test: int = option(300, help="test sentence pairs (never in train or valid)")
    seed: int = option(1, help="the same seed always gives the same corpus")
    source_lang: str = option("src", help="file suffix of the source side")
    target_lang: str = option("tgt", help="file suffix of the target side")


@console_script("lskd-toy-corpus")
def main(argv=None) -> None:
    args = parse_config(ToyCorpusConfig, argv, prog="lskd-toy-corpus", description=__doc__.splitlines()[0])
    counts = write_corpus(args.out, args.train, args.valid, args.test, args.seed, args.source_lang, args.target_lang)
    print(" ".join(f"{split}={n}" for split, n in counts.items()), f"pairs written to {args.out}")


if __name__ == "__main__":
    main()
