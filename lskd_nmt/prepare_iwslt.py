"""Turn an IWSLT 2014 release (or the Qi et al. TED corpus) into prepared text, joint sentencepiece and ``bin/``.

Output layout (``--out DIR``)::

    DIR/{train,valid,test}.{L1,L2}      text after the profile (paper: Moses-tokenised, lowercased)
    DIR/spm.model, DIR/spm.vocab        joint subword model learned on both training sides
    DIR/subword/{split}.{L1,L2}         the same text in subword pieces (what fairseq binarises)
    DIR/bin/                            fairseq-preprocess --joined-dictionary output + lskd-prep.json

One joined dictionary serves both directions: fairseq's translation task opens ``{split}.{src}-{tgt}.*``
or the reversed pair name, so En->De and De->En train from the same ``bin/``.
"""
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional

import sentencepiece

from lskd.errors import InvalidConfig
from lskd_nmt.iwslt_release import ParallelRelease, read_release
from lskd_nmt.nmt_profiles import MIN_VOCAB_SIZE, PROFILES, TextNormaliser, TextProfile, profile_named
from lskd_nmt.ted_multi import read_ted_multi
from lskd_tools.cli import console_script, option, parse_config
from lskd_tools.files import MANIFEST, atomic_write_json, file_digest, run_tool, write_lines

# --source: reader, and what a results table says of numbers obtained on it.
SOURCES = {
    "wit3": (read_release, "the IWSLT 2014 release (WIT3 2014-01), the paper's data"),
    "qi2018": (read_ted_multi, "the multi-way TED corpus of Qi et al. (NAACL 2018) with its own train/dev/test split, "
                               "not the paper's IWSLT 2014 release: not comparable with the paper's numbers"),
}


@dataclass
class PrepConfig:
    release: Path = option(help="extracted release folder or its archive (.tgz; ted_talks.tar.gz for qi2018)")
    out: Path = option(help="output folder (must be empty or absent)")
    source_lang: str = option(help="source side of the bin/ file names, e.g. en")
    target_lang: str = option(help="target side of the bin/ file names, e.g. de")
    source: str = option("wit3", choices=tuple(SOURCES),
                         help="wit3: IWSLT 2014 release (train.tags + XML test sets); qi2018: Qi et al. 2018 "
                              "multi-way TED corpus (all_talks_{train,dev,test}.tsv)")
    profile: str = option("paper", choices=tuple(PROFILES),
                          help="paper (Moses, clean, lowercase) or modern (raw text)")
    vocab_size: int = option(10000, help="joint sentencepiece vocabulary size")
    max_lines: Optional[int] = option(None, default_text="all",
                                      help="keep the first N train and test lines (smoke tests, CPU tiny)")
    workers: int = option(1, help="fairseq-preprocess / sentencepiece threads")

    @property
    def langs(self) -> tuple[str, str]:
        return self.source_lang, self.target_lang

    @property
    def text_profile(self) -> TextProfile:
        return profile_named(self.profile)

    def check(self) -> None:
        """Every refusal happens here, before anything is written."""
        if self.vocab_size < MIN_VOCAB_SIZE:
            raise InvalidConfig(f"--vocab-size {self.vocab_size}: expected an integer >= {MIN_VOCAB_SIZE}")
        every = self.text_profile.valid_every if self.source == "wit3" else 1  # qi2018 has its own dev set
        if self.max_lines is not None and self.max_lines < every:
            raise InvalidConfig(f"--max-lines {self.max_lines}: expected >= {every} (one validation pair per "
                                f"{every} training lines)")
        if self.workers < 1:
            raise InvalidConfig(f"--workers {self.workers}: expected >= 1")
        if not self.release.exists():
            raise InvalidConfig(f"--release {self.release}: no such file or folder")
        if self.out.exists() and any(self.out.iterdir()):
            raise InvalidConfig(f"--out {self.out}: folder is not empty (expected a new or empty folder)")


@dataclass
class PreparedCounts:
    train: int
    valid: int
    test: int
    dropped_by_clean: int
    test_sets: dict


def normalise(config: PrepConfig, release: ParallelRelease) -> tuple[dict, dict, Optional[dict]]:
    """Profile text transform of every line, every split (the release's own validation set too), both languages."""
    limit = config.max_lines
    train, test, valid = {}, {}, None if release.valid is None else {}
    for lang in config.langs:
        normaliser = TextNormaliser(config.text_profile, lang)
        train[lang] = [normaliser(line) for line in release.train[lang][:limit]]
        test[lang] = [normaliser(line) for line in release.test[lang][:limit]]
        if valid is not None:
            valid[lang] = [normaliser(line) for line in release.valid[lang][:limit]]
    return train, test, valid


def clean_and_split(config: PrepConfig, train: dict, valid: Optional[dict] = None) -> tuple[dict, dict, int]:
    """Length/ratio cleaning of training pairs, then every Nth kept pair goes to validation, unless the release
    has its own validation set (``valid``, kept as it is, like the test set)."""
    source, target = config.langs
    rule, every = config.text_profile.clean, config.text_profile.valid_every
    kept = [pair for pair in zip(train[source], train[target]) if rule.keeps(*pair)]
    def by_language(pairs):
        return {source: [s for s, _ in pairs], target: [t for _, t in pairs]}

    if valid is not None:
        return by_language(kept), valid, len(train[source]) - len(kept)
    valid_pairs = [pair for number, pair in enumerate(kept, start=1) if number % every == 0]
    train_pairs = [pair for number, pair in enumerate(kept, start=1) if number % every != 0]
    return by_language(train_pairs), by_language(valid_pairs), len(train[source]) - len(kept)


def learn_subwords(config: PrepConfig) -> sentencepiece.SentencePieceProcessor:
    """Joint sentencepiece model over both training sides; the vocabulary shrinks to what tiny data allows."""
    prefix = config.out / "spm"
    sentencepiece.SentencePieceTrainer.train(
        input=",".join(str(config.out / f"train.{lang}") for lang in config.langs),
        model_prefix=str(prefix),
        vocab_size=config.vocab_size,
        model_type=config.text_profile.sentencepiece_type,
        character_coverage=1.0,
        hard_vocab_limit=False,
        bos_id=-1,
        eos_id=-1,
        pad_id=-1,
        num_threads=max(1, config.workers),
        minloglevel=2,
    )
    return sentencepiece.SentencePieceProcessor(model_file=f"{prefix}.model")


def binarise(config: PrepConfig) -> None:
    """``fairseq-preprocess --joined-dictionary`` run through this interpreter, so no PATH lookup is needed."""
    subword, destdir = config.out / "subword", config.out / "bin"
    command = [
        sys.executable, "-m", "fairseq_cli.preprocess",
        "--source-lang", config.source_lang, "--target-lang", config.target_lang,
        "--trainpref", str(subword / "train"), "--validpref", str(subword / "valid"),
        "--testpref", str(subword / "test"),
        "--destdir", str(destdir), "--joined-dictionary", "--workers", str(config.workers),
    ]
    run_tool(command, "fairseq-preprocess")


def prepare(config: PrepConfig) -> PreparedCounts:
    """Read, normalise, clean, split, learn subwords, binarise; the release is fully read before writing."""
    read, source_note = SOURCES[config.source]
    release = read(config.release, *config.langs)
    train, test, valid = normalise(config, release)
    train, valid, dropped = clean_and_split(config, train, valid)
    config.out.mkdir(parents=True, exist_ok=True)
    splits = {"train": train, "valid": valid, "test": test}
    for split, text in splits.items():
        for lang in config.langs:
            write_lines(config.out / f"{split}.{lang}", text[lang])
    model = learn_subwords(config)
    (config.out / "subword").mkdir()
    for split, text in splits.items():
        for lang in config.langs:
            pieces = model.encode(text[lang], out_type=str)
            write_lines(config.out / "subword" / f"{split}.{lang}", [" ".join(p) for p in pieces])
    binarise(config)
    test_sets = dict(release.test_sets)
    counts = PreparedCounts(
        train=len(train[config.source_lang]), valid=len(valid[config.source_lang]),
        test=len(test[config.source_lang]), dropped_by_clean=dropped, test_sets=test_sets,
    )
    manifest = {
        "profile": config.profile,
        "source": config.source,
        "source_note": source_note,
        "source_lang": config.source_lang,
        "target_lang": config.target_lang,
        "subword": "sentencepiece",
        "spm_model": str((config.out / "spm.model").resolve()),
        "vocab_size_requested": config.vocab_size,
        "vocab_size": model.get_piece_size(),
        "max_lines": config.max_lines,
        "release": str(config.release.resolve()),
        "release_sha256": file_digest(config.release) if config.release.is_file() else None,
        "release_dropped": release.dropped,
        "counts": asdict(counts),
    }
    atomic_write_json(config.out / "bin" / MANIFEST, manifest, sort_keys=False)  # written last: marks bin/ complete
    return counts


@console_script("lskd-prepare-iwslt")
def main(argv=None) -> None:
    config = parse_config(PrepConfig, argv, prog="lskd-prepare-iwslt", description=__doc__.splitlines()[0])
    config.check()
    counts = prepare(config)
    print(
        f"{config.profile}: train={counts.train} valid={counts.valid} test={counts.test}"
        f" (dropped {counts.dropped_by_clean} by cleaning) -> {config.out}/bin"
    )


if __name__ == "__main__":
    main()
