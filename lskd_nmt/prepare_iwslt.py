"""Turn an IWSLT 2014 release into prepared text, a joint sentencepiece model and a fairseq ``bin/``.

Output layout (``--out DIR``)::

    DIR/{train,valid,test}.{L1,L2}      text after the profile (paper: Moses-tokenised, lowercased)
    DIR/spm.model, DIR/spm.vocab        joint subword model learned on both training sides
    DIR/subword/{split}.{L1,L2}         the same text in subword pieces (what fairseq binarises)
    DIR/bin/                            fairseq-preprocess --joined-dictionary output + lskd-prep.json

One joined dictionary serves both directions: fairseq's translation task opens ``{split}.{src}-{tgt}.*``
or the reversed pair name, so En->De and De->En train from the same ``bin/``.
"""
import argparse
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional

import sentencepiece

from lskd_tools.files import MANIFEST, atomic_write_json, file_digest, run_tool, write_lines
from lskd_nmt.iwslt_release import ParallelRelease, ReleaseError, read_release
from lskd_nmt.nmt_profiles import MIN_VOCAB_SIZE, TextNormaliser, TextProfile, profile_named



@dataclass
class PrepConfig:
    release: Path
    out: Path
    source_lang: str
    target_lang: str
    profile: TextProfile
    vocab_size: int = 10000
    max_lines: Optional[int] = None  # keep only the first N train and test lines (smoke tests, CPU "tiny")
    workers: int = 1

    @property
    def langs(self) -> tuple[str, str]:
        return self.source_lang, self.target_lang


@dataclass
class PreparedCounts:
    train: int
    valid: int
    test: int
    dropped_by_clean: int
    test_sets: dict


def normalise(config: PrepConfig, release: ParallelRelease) -> tuple[dict, dict]:
    """Profile text transform of every line, both splits, both languages."""
    limit = config.max_lines
    train, test = {}, {}
    for lang in config.langs:
        normaliser = TextNormaliser(config.profile, lang)
        train[lang] = [normaliser(line) for line in release.train[lang][:limit]]
        test[lang] = [normaliser(line) for line in release.test[lang][:limit]]
    return train, test


def clean_and_split(config: PrepConfig, train: dict) -> tuple[dict, dict, int]:
    """Length/ratio cleaning of training pairs, then every Nth kept pair goes to validation."""
    source, target = config.langs
    rule, every = config.profile.clean, config.profile.valid_every
    kept = [pair for pair in zip(train[source], train[target]) if rule.keeps(*pair)]
    valid_pairs = [pair for number, pair in enumerate(kept, start=1) if number % every == 0]
    train_pairs = [pair for number, pair in enumerate(kept, start=1) if number % every != 0]
    def by_language(pairs):
        return {source: [s for s, _ in pairs], target: [t for _, t in pairs]}

    return by_language(train_pairs), by_language(valid_pairs), len(train[source]) - len(kept)


def learn_subwords(config: PrepConfig) -> sentencepiece.SentencePieceProcessor:
    """Joint sentencepiece model over both training sides; the vocabulary shrinks to what tiny data allows."""
    prefix = config.out / "spm"
    sentencepiece.SentencePieceTrainer.train(
        input=",".join(str(config.out / f"train.{lang}") for lang in config.langs),
        model_prefix=str(prefix),
        vocab_size=config.vocab_size,
        model_type=config.profile.sentencepiece_type,
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
    release = read_release(config.release, *config.langs)
    train, test = normalise(config, release)
    train, valid, dropped = clean_and_split(config, train)
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
        "profile": config.profile.name,
        "source_lang": config.source_lang,
        "target_lang": config.target_lang,
        "subword": "sentencepiece",
        "spm_model": str((config.out / "spm.model").resolve()),
        "vocab_size_requested": config.vocab_size,
        "vocab_size": model.get_piece_size(),
        "max_lines": config.max_lines,
        "release": str(config.release.resolve()),
        "release_sha256": file_digest(config.release) if config.release.is_file() else None,
        "counts": asdict(counts),
    }
    atomic_write_json(config.out / "bin" / MANIFEST, manifest, sort_keys=False)  # written last: marks bin/ complete
    return counts


def parse_args(argv=None) -> PrepConfig:
    parser = argparse.ArgumentParser(prog="lskd-prepare-iwslt", description=__doc__.splitlines()[0])
    parser.add_argument("--release", type=Path, required=True, help="extracted release folder or its .tgz")
    parser.add_argument("--out", type=Path, required=True, help="output folder (must be empty or absent)")
    parser.add_argument("--source-lang", required=True, help="source side of the bin/ file names, e.g. en")
    parser.add_argument("--target-lang", required=True, help="target side of the bin/ file names, e.g. de")
    parser.add_argument("--profile", default="paper", help="paper (Moses, clean, lowercase) or modern (raw text)")
    parser.add_argument("--vocab-size", type=int, default=10000, help="joint sentencepiece vocabulary size")
    parser.add_argument("--max-lines", type=int, default=None, help="keep the first N train and test lines")
    parser.add_argument("--workers", type=int, default=1, help="fairseq-preprocess / sentencepiece threads")
    args = parser.parse_args(argv)
    try:
        profile = profile_named(args.profile)
    except ValueError as error:
        parser.error(str(error))
    if args.vocab_size < MIN_VOCAB_SIZE:
        parser.error(f"--vocab-size {args.vocab_size}: expected an integer >= {MIN_VOCAB_SIZE}")
    if args.max_lines is not None and args.max_lines < profile.valid_every:
        parser.error(f"--max-lines {args.max_lines}: expected >= {profile.valid_every} "
                     f"(one validation pair per {profile.valid_every} training lines)")
    if not args.release.exists():
        parser.error(f"--release {args.release}: no such file or folder")
    if args.out.exists() and any(args.out.iterdir()):
        parser.error(f"--out {args.out}: folder is not empty (expected a new or empty folder)")
    return PrepConfig(
        release=args.release, out=args.out, source_lang=args.source_lang, target_lang=args.target_lang,
        profile=profile, vocab_size=args.vocab_size, max_lines=args.max_lines, workers=max(1, args.workers),
    )


def main(argv=None) -> None:
    config = parse_args(argv)
    try:
        counts = prepare(config)
    except (ReleaseError, RuntimeError) as error:
        sys.exit(f"lskd-prepare-iwslt: error: {error}")
    print(
        f"{config.profile.name}: train={counts.train} valid={counts.valid} test={counts.test}"
        f" (dropped {counts.dropped_by_clean} by cleaning) -> {config.out}/bin"
    )


if __name__ == "__main__":
    main()
