"""Turn an IWSLT 2014 release (or the Qi et al. TED corpus) into prepared text, joint sentencepiece and ``bin/``.

Output layout (``--out DIR``)::

    DIR/{train,valid,test}.{L1,L2}      text after the profile (paper: Moses-tokenised, lowercased)
    DIR/raw/test.{L1,L2}                the test segments as released (cased, untokenised): sacreBLEU's references
    DIR/spm.model, DIR/spm.vocab        joint subword model learned on both training sides
    DIR/subword/{split}.{L1,L2}         the same text in subword pieces (what fairseq binarises)
    DIR/dict.txt                        every sentencepiece piece, the joined fairseq dictionary (--srcdict)
    DIR/bin/                            fairseq-preprocess --joined-dictionary output + lskd-prep.json

One joined dictionary serves both directions: fairseq's translation task opens ``{split}.{src}-{tgt}.*``
or the reversed pair name, so En->De and De->En train from the same ``bin/``.
"""

import sys
from collections import Counter
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Optional

import sentencepiece

from lskd.errors import InvalidConfig
from lskd_nmt.iwslt_release import TEST_SETS, ParallelRelease, read_release
from lskd_nmt.nmt_profiles import MIN_VOCAB_SIZE, PROFILES, TextNormaliser, TextProfile, profile_named
from lskd_nmt.ted_multi import read_ted_multi
from lskd_tools.cli import console_script, option, parse_config
from lskd_tools.files import MANIFEST, atomic_write_json, file_digest, run_tool, write_lines

# sentencepiece's control pieces; fairseq's Dictionary adds its own <s>, <pad>, </s>, <unk> first.
SPECIAL_PIECES = frozenset({"<unk>", "<s>", "</s>", "<pad>"})

# --source: reader, and what a results table says of numbers obtained on it.
SOURCES = {
    "wit3": (read_release, "the IWSLT 2014 release (WIT3 2014-01), the paper's data"),
    "qi2018": (
        read_ted_multi,
        "the multi-way TED corpus of Qi et al. (NAACL 2018) with its own train/dev/test split, "
        "not the paper's IWSLT 2014 release: not comparable with the paper's numbers",
    ),
}


@dataclass
class PrepConfig:
    release: Path = option(help="extracted release folder or its archive (.tgz; ted_talks.tar.gz for qi2018)")
    out: Path = option(help="output folder (must be empty or absent)")
    source_lang: str = option(help="source side of the bin/ file names, e.g. en")
    target_lang: str = option(help="target side of the bin/ file names, e.g. de")
    source: str = option(
        "wit3",
        choices=tuple(SOURCES),
        help="wit3: IWSLT 2014 release (train.tags + XML test sets); qi2018: Qi et al. 2018 "
        "multi-way TED corpus (all_talks_{train,dev,test}.tsv)",
    )
    profile: str = option("paper", choices=tuple(PROFILES), help="paper (Moses, clean, lowercase) or modern (raw text)")
    vocab_size: int = option(10000, help="joint sentencepiece vocabulary size")
    max_lines: Optional[int] = option(
        None, default_text="all", help="keep the first N train and test lines (smoke tests, CPU tiny)"
    )
    workers: int = option(1, help="fairseq-preprocess / sentencepiece threads")
    test_sets: Optional[tuple[str, ...]] = option(
        None,
        choices=TEST_SETS,
        metavar="NAME",
        default_text="every one the release has, in fairseq's order",
        help=f"release test sets concatenated (in the order given) into the test split; NAME: {' '.join(TEST_SETS)}",
    )

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
            raise InvalidConfig(
                f"--max-lines {self.max_lines}: expected >= {every} (one validation pair per {every} training lines)"
            )
        if self.test_sets is not None and len(set(self.test_sets)) != len(self.test_sets):
            raise InvalidConfig(f"--test-sets {' '.join(self.test_sets)}: a set is named twice (expected each once)")
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


@dataclass
class Overlap:
    """Test pairs that also occur, identically after the profile, among the training pairs."""

    pairs: int
    test: int

    @property
    def share(self) -> float:
        return self.pairs / self.test if self.test else 0.0

    def as_dict(self) -> dict:
        return {"pairs": self.pairs, "test": self.test, "share": self.share}


def select_test_sets(release: ParallelRelease, names: Optional[tuple[str, ...]]) -> ParallelRelease:
    """The release's test text restricted to ``names``, concatenated in that order (all sets when None)."""
    if names is None:
        return release
    missing = [name for name in names if name not in release.test_sets]
    if missing:
        raise InvalidConfig(
            f"--test-sets {' '.join(missing)}: not in this release (expected one of: {', '.join(release.test_sets)})"
        )
    starts, offset = {}, 0
    for name, size in release.test_sets.items():
        starts[name] = offset
        offset += size
    test = {
        lang: [line for name in names for line in lines[starts[name] : starts[name] + release.test_sets[name]]]
        for lang, lines in release.test.items()
    }
    return replace(release, test=test, test_sets={name: release.test_sets[name] for name in names})


def test_train_overlap(test: dict, train: dict, langs: tuple[str, str]) -> Overlap:
    source, target = langs
    seen = set(zip(train[source], train[target]))
    return Overlap(sum(pair in seen for pair in zip(test[source], test[target])), len(test[source]))


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


def write_dictionary(config: PrepConfig, model: sentencepiece.SentencePieceProcessor, train_pieces: Counter) -> Path:
    """A fairseq dictionary holding every sentencepiece piece, counted in the training subwords.

    Left to itself fairseq-preprocess keeps only the pieces it sees in training (and pads to a multiple of 8),
    so pieces that occur only inside the model (merges, rare characters) would be ``<unk>`` at test time.
    """
    pieces = [model.id_to_piece(i) for i in range(model.get_piece_size())]
    path = config.out / "dict.txt"
    write_lines(path, [f"{piece} {train_pieces[piece]}" for piece in pieces if piece not in SPECIAL_PIECES])
    return path


def binarise(config: PrepConfig, dictionary: Path) -> None:
    """``fairseq-preprocess --joined-dictionary`` run through this interpreter, so no PATH lookup is needed."""
    subword, destdir = config.out / "subword", config.out / "bin"
    command = [
        sys.executable,
        "-m",
        "fairseq_cli.preprocess",
        "--source-lang",
        config.source_lang,
        "--target-lang",
        config.target_lang,
        "--trainpref",
        str(subword / "train"),
        "--validpref",
        str(subword / "valid"),
        "--testpref",
        str(subword / "test"),
        "--destdir",
        str(destdir),
        "--joined-dictionary",
        "--srcdict",
        str(dictionary),
        "--workers",
        str(config.workers),
    ]
    run_tool(command, "fairseq-preprocess")


def prepare(config: PrepConfig) -> tuple[PreparedCounts, Overlap]:
    """Read, normalise, clean, split, learn subwords, binarise; the release is fully read before writing."""
    read, source_note = SOURCES[config.source]
    release = select_test_sets(read(config.release, *config.langs), config.test_sets)
    train, test, valid = normalise(config, release)
    train, valid, dropped = clean_and_split(config, train, valid)
    overlap = test_train_overlap(test, train, config.langs)
    config.out.mkdir(parents=True, exist_ok=True)
    splits = {"train": train, "valid": valid, "test": test}
    for split, text in splits.items():
        for lang in config.langs:
            write_lines(config.out / f"{split}.{lang}", text[lang])
    (config.out / "raw").mkdir()
    for lang in config.langs:
        write_lines(config.out / "raw" / f"test.{lang}", release.test[lang][: config.max_lines])
    model = learn_subwords(config)
    (config.out / "subword").mkdir()
    train_pieces = Counter()
    for split, text in splits.items():
        for lang in config.langs:
            pieces = model.encode(text[lang], out_type=str)
            if split == "train":
                train_pieces.update(piece for line in pieces for piece in line)
            write_lines(config.out / "subword" / f"{split}.{lang}", [" ".join(p) for p in pieces])
    binarise(config, write_dictionary(config, model, train_pieces))
    test_sets = dict(release.test_sets)
    counts = PreparedCounts(
        train=len(train[config.source_lang]),
        valid=len(valid[config.source_lang]),
        test=len(test[config.source_lang]),
        dropped_by_clean=dropped,
        test_sets=test_sets,
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
        "raw_test": {lang: str((config.out / "raw" / f"test.{lang}").resolve()) for lang in config.langs},
        "test_train_overlap": overlap.as_dict(),
    }
    atomic_write_json(config.out / "bin" / MANIFEST, manifest, sort_keys=False)  # written last: marks bin/ complete
    return counts, overlap


@console_script("lskd-prepare-iwslt")
def main(argv=None) -> None:
    config = parse_config(PrepConfig, argv, prog="lskd-prepare-iwslt", description=__doc__.splitlines()[0])
    config.check()
    counts, overlap = prepare(config)
    print(
        f"{config.profile}: train={counts.train} valid={counts.valid} test={counts.test}"
        f" ({' + '.join(counts.test_sets)}; dropped {counts.dropped_by_clean} by cleaning) -> {config.out}/bin"
    )
    print(f"test pairs also in train: {overlap.pairs} of {overlap.test} ({overlap.share:.1%})")
    if overlap.pairs:
        print(
            f"lskd-prepare-iwslt: warning: {overlap.pairs} of {overlap.test} test pairs ({overlap.share:.1%}) "
            "also occur in train; test BLEU overstates quality on unseen text",
            file=sys.stderr,
        )


if __name__ == "__main__":
    main()
