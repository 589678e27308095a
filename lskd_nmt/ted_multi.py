"""Read the multi-way TED talks corpus, ``ted_talks.tar.gz``, as a parallel release. The corpus is from Qi et al.,
"When and Why Are Pre-Trained Word Embeddings Useful for Neural Machine Translation?", NAACL 2018.

The archive holds ``all_talks_{train,dev,test}.tsv``: a header row naming ``talk_name`` and one column per
language code (``en``, ``ru``, ...), then one row per English sentence, ``__NULL__`` where a talk has no
translation of it. Fields are never quoted (the authors read them with ``csv.QUOTE_NONE``), so a ``"`` is
text and a tab can only separate columns: a row with more or fewer fields than the header (a tab inside a
sentence would shift every later column) is dropped and counted, never realigned. The corpus's own split is
kept: dev is the validation set, test the test set. The text is Moses-tokenised (the authors' README); it is
detokenised here so that both text profiles start from raw text, as with the IWSLT 2014 release.

``python -m lskd_nmt.ted_multi ARCHIVE`` checks an archive (the data-prep runs it on a download before
publishing it) and prints the pairs each split yields.
"""

import csv
import gzip
import tarfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

from lskd.errors import DataError
from lskd_nmt.iwslt_release import ParallelRelease
from lskd_nmt.nmt_profiles import moses_detokenize
from lskd_tools.cli import console_script, option, parse_config

SPLIT_FILES = {"train": "all_talks_train.tsv", "valid": "all_talks_dev.tsv", "test": "all_talks_test.tsv"}
TALK_COLUMN = "talk_name"
# A missing sentence is __NULL__; after the corpus's tokenisation some read "_ _ NULL _ _".
MISSING_MARKS = ("__NULL__", "_ _ NULL _ _")


class CorpusError(DataError):
    """The archive is not the complete corpus: truncated, another format, or without a requested language."""


@dataclass
class SplitRows:
    """One split's sentence pairs (tokenised, as stored) and the rows that gave none."""

    lines: dict[str, list[str]]
    talks: int = 0
    missing: int = 0  # rows where a requested language is empty or __NULL__
    malformed: int = 0  # rows whose field count differs from the header's
    seen_talks: set = field(default_factory=set, repr=False)


def is_missing(text: str) -> bool:
    return not text or any(mark in text for mark in MISSING_MARKS)


def read_tsv(stream, name: str, langs: tuple[str, ...]) -> SplitRows:
    """The requested languages' columns of one ``all_talks_*.tsv`` file, from a binary stream."""
    text = (line.decode("utf-8") for line in iter(stream.readline, b""))  # a stream-mode tar member cannot seek
    reader = csv.reader(text, delimiter="\t", quoting=csv.QUOTE_NONE)
    header = next(reader, None)
    if header is None:
        raise CorpusError(f"{name}: empty file (expected a header row with {TALK_COLUMN} and language columns)")
    absent = [column for column in (TALK_COLUMN, *langs) if column not in header]
    if absent:
        raise CorpusError(
            f"{name}: no {' or '.join(absent)} column in the header (expected {TALK_COLUMN} and one "
            f"column per language code, e.g. {', '.join(langs)}; found {', '.join(header[:8])}"
            f"{', ...' if len(header) > 8 else ''})"
        )
    talk, columns = header.index(TALK_COLUMN), [header.index(lang) for lang in langs]
    rows = SplitRows({lang: [] for lang in langs})
    for fields in reader:
        if len(fields) != len(header):
            rows.malformed += 1
            continue
        rows.seen_talks.add(fields[talk])
        sentences = [fields[column].strip() for column in columns]
        if any(is_missing(sentence) for sentence in sentences):
            rows.missing += 1
            continue
        for lang, sentence in zip(langs, sentences):
            rows.lines[lang].append(sentence)
    rows.talks = len(rows.seen_talks)
    return rows


def _read_members(opened, location: Path, langs) -> dict[str, SplitRows]:
    """Every split file of an open stream-mode tar (base names, anywhere inside), in archive order."""
    wanted = {name: split for split, name in SPLIT_FILES.items()}
    splits = {}
    for member in opened:
        split = wanted.get(Path(member.name).name)
        if split is None or not member.isfile():
            continue
        splits[split] = read_tsv(opened.extractfile(member), member.name, langs)
    missing = [name for split, name in SPLIT_FILES.items() if split not in splits]
    if missing:
        raise CorpusError(f"{location}: no {', '.join(missing)} inside (expected {', '.join(SPLIT_FILES.values())})")
    return splits


def _read_folder(location: Path, langs) -> dict[str, SplitRows]:
    paths = {split: next(iter(sorted(location.rglob(name))), None) for split, name in SPLIT_FILES.items()}
    absent = [SPLIT_FILES[split] for split, path in paths.items() if path is None]
    if absent:
        raise CorpusError(f"{location}: no {', '.join(absent)} (expected the extracted ted_talks.tar.gz)")
    splits = {}
    for split, path in paths.items():
        with path.open("rb") as stream:
            splits[split] = read_tsv(stream, str(path), langs)
    return splits


def read_columns(location: Path, langs: tuple[str, ...]) -> dict[str, SplitRows]:
    """Each split's pairs from the gzip-compressed tar (read to its end, so a truncated copy is refused) or from a
    folder holding the three files."""
    location = Path(location)
    if not location.exists():
        raise CorpusError(f"{location}: no such file or folder (expected ted_talks.tar.gz or the folder of its files)")
    if location.is_file():
        with location.open("rb") as raw:
            if raw.read(2) != b"\x1f\x8b":
                raise CorpusError(f"{location}: not gzip-compressed (expected ted_talks.tar.gz, a gzip-compressed tar)")
    try:
        if location.is_dir():
            return _read_folder(location, langs)
        with gzip.open(location, "rb") as stream:
            with tarfile.open(fileobj=stream, mode="r|") as opened:
                splits = _read_members(opened, location, langs)
            while stream.read(1 << 20):  # to the gzip trailer: its length and CRC check the whole archive
                pass
    except EOFError:
        raise CorpusError(
            f"{location}: truncated (the compressed data ends early; expected the complete "
            "ted_talks.tar.gz: download it again)"
        ) from None
    except (tarfile.TarError, gzip.BadGzipFile, zlib.error) as error:
        message = f"not a readable gzip-compressed tar ({error}; expected ted_talks.tar.gz)"
        raise CorpusError(f"{location}: {message}") from None
    except (UnicodeDecodeError, csv.Error) as error:
        raise CorpusError(f"{location}: a tsv file is not UTF-8 tab-separated text ({error})") from None
    return splits


def read_ted_multi(location: Path, lang_a: str, lang_b: str) -> ParallelRelease:
    """The corpus's train/dev/test pairs of two languages, detokenised, rows missing either side dropped."""
    splits = read_columns(location, (lang_a, lang_b))
    empty = [SPLIT_FILES[split] for split, rows in splits.items() if not rows.lines[lang_a]]
    if empty:
        raise CorpusError(
            f"{location}: {', '.join(empty)} hold no {lang_a}-{lang_b} pair (expected both languages in some rows)"
        )
    text = {
        split: {lang: moses_detokenize(rows.lines[lang], lang) for lang in (lang_a, lang_b)}
        for split, rows in splits.items()
    }
    dropped = {
        split: {"missing_side": rows.missing, "malformed_row": rows.malformed, "talks": rows.talks}
        for split, rows in splits.items()
    }
    return ParallelRelease(
        (lang_a, lang_b),
        text["train"],
        text["test"],
        {"qi2018.test": len(text["test"][lang_a])},
        valid=text["valid"],
        dropped=dropped,
    )


@dataclass
class CheckConfig:
    archive: Path = option(positional=True, help="ted_talks.tar.gz, or a folder holding all_talks_{train,dev,test}.tsv")
    langs: tuple[str, ...] = option(("en", "ru"), help="language columns every split must have")


@console_script("python -m lskd_nmt.ted_multi")
def main(argv=None) -> None:
    config = parse_config(CheckConfig, argv, prog="python -m lskd_nmt.ted_multi", description=__doc__.splitlines()[0])
    for split, rows in read_columns(config.archive, config.langs).items():
        print(
            f"{SPLIT_FILES[split]}: {len(rows.lines[config.langs[0]])} pairs from {rows.talks} talks "
            f"({rows.missing} rows missing a side, {rows.malformed} malformed)"
        )


if __name__ == "__main__":
    main()
