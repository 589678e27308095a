"""Read an IWSLT 2014 (WIT3 ``2014-01``) release: ``train.tags.*`` transcripts and ``IWSLT14.TED*.xml`` sets.

The release is read from an extracted folder or straight from its ``.tgz`` archive, so nobody has to unpack
it by hand. Files are found by their base name anywhere inside, because archives nest them differently
(``de-en/train.tags.de-en.de`` in fairseq's mirror, ``texts/en/ru/en-ru/...`` in WIT3 layouts).
"""

import html
import re
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from lskd.errors import DataError

# Test sets in the order fairseq's IWSLT'14 recipe concatenates them; TEDX.dev2012 exists only for de-en.
TEST_SETS = ("TED.dev2010", "TEDX.dev2012", "TED.tst2010", "TED.tst2011", "TED.tst2012")
REQUIRED_TEST_SETS = ("TED.dev2010", "TED.tst2010", "TED.tst2011", "TED.tst2012")
# Talk metadata whose text is part of the parallel data (translated line by line); every other whole-line
# element (<url>, <talkid>, <keywords>, <speaker>, <reviewer>, ...) is metadata and is dropped.
TRANSLATED_TAGS = ("title", "description")

WHOLE_LINE_ELEMENT = re.compile(r"^\s*<(?P<tag>[A-Za-z]+)(?:\s[^>]*)?>(?P<text>.*)</(?P=tag)>\s*$")
EMPTY_ELEMENT = re.compile(r"^\s*<[A-Za-z]+(?:\s[^>]*)?/?>\s*$")
SEGMENT = re.compile(r'<seg id="?(?P<id>\d+)"?\s*>(?P<text>.*)</seg>')
DOCUMENT = re.compile(r'<doc\s[^>]*docid="(?P<id>[^"]+)"')


class ReleaseError(DataError):
    """The release is missing a file or its two sides do not line up."""


@dataclass(frozen=True)
class Segment:
    """One ``<seg>`` of a development/test XML file; (doc, seg) must match across the two languages."""

    doc: str
    seg: str
    text: str


def parse_train_tags(text: str) -> list[str]:
    """Transcript lines of a ``train.tags`` file, with the text of ``<title>``/``<description>`` kept.

    fairseq's recipe keeps those two (they are translated like the transcript) and drops the other
    metadata lines; the two sides of a pair have the same metadata lines, so alignment is preserved.
    """
    lines = []
    for line in text.splitlines():
        element = WHOLE_LINE_ELEMENT.match(line)
        if element:
            if element["tag"] in TRANSLATED_TAGS:
                lines.append(element["text"].strip())
            continue
        if EMPTY_ELEMENT.match(line):
            continue
        lines.append(line.strip())
    return lines


def parse_segments(text: str) -> list[Segment]:
    """The ``<seg id>`` lines of an IWSLT XML file, entities unescaped, whitespace trimmed."""
    segments, doc = [], ""
    for line in text.splitlines():
        document = DOCUMENT.search(line)
        if document:
            doc = document["id"]
        segment = SEGMENT.search(line)
        if segment:
            segments.append(Segment(doc, segment["id"], html.unescape(segment["text"]).strip()))
    return segments


class ReleaseFiles:
    """Base-name lookup over a release folder or a ``.tgz``/``.tar`` archive."""

    def __init__(self, location: Path):
        self.location = Path(location)
        if self.location.is_dir():
            self._paths = {p.name: p for p in sorted(self.location.rglob("*")) if p.is_file()}
            self._archive = None
        elif tarfile.is_tarfile(self.location):
            self._archive = tarfile.open(self.location)
            self._paths = {Path(m.name).name: m for m in self._archive.getmembers() if m.isfile()}
        else:
            raise ReleaseError(f"{self.location}: expected an extracted release folder or a .tgz archive")

    def has(self, name: str) -> bool:
        return name in self._paths

    def read(self, name: str) -> str:
        if name not in self._paths:
            raise ReleaseError(f"{self.location}: no file named {name}")
        if self._archive is None:
            return self._paths[name].read_text(encoding="utf-8")
        return self._archive.extractfile(self._paths[name]).read().decode("utf-8")


@dataclass
class ParallelRelease:
    """Raw parallel text of one language pair, before any tokenisation."""

    langs: tuple[str, str]
    train: dict[str, list[str]]
    test: dict[str, list[str]]
    test_sets: dict[str, int] = field(default_factory=dict)  # name -> segment count, in concatenation order
    valid: Optional[dict[str, list[str]]] = None  # the release's own validation set; None: every Nth training pair
    dropped: dict = field(default_factory=dict)  # rows the reader left out, per split and reason


def find_pair_name(files: ReleaseFiles, lang_a: str, lang_b: str) -> str:
    """``de-en`` or ``en-de``: whichever order the release uses in its file names."""
    for pair in (f"{lang_a}-{lang_b}", f"{lang_b}-{lang_a}"):
        if files.has(f"train.tags.{pair}.{lang_a}"):
            return pair
    raise ReleaseError(
        f"{files.location}: no train.tags.{lang_a}-{lang_b}.{lang_a} or train.tags.{lang_b}-{lang_a}.{lang_a}"
        f" (expected the IWSLT 2014 {lang_a}-{lang_b} release)"
    )


def read_release(location: Path, lang_a: str, lang_b: str) -> ParallelRelease:
    """Training lines and the concatenated test sets of the pair, checked to line up across languages."""
    files = ReleaseFiles(location)
    pair = find_pair_name(files, lang_a, lang_b)
    train = {lang: parse_train_tags(files.read(f"train.tags.{pair}.{lang}")) for lang in (lang_a, lang_b)}
    if len(train[lang_a]) != len(train[lang_b]):
        raise ReleaseError(
            f"train.tags.{pair}: {len(train[lang_a])} {lang_a} lines vs {len(train[lang_b])} {lang_b} lines"
            " after removing metadata (expected equal counts)"
        )
    test = {lang_a: [], lang_b: []}
    test_sets = {}
    for test_set in TEST_SETS:
        names = {lang: f"IWSLT14.{test_set}.{pair}.{lang}.xml" for lang in (lang_a, lang_b)}
        if not all(files.has(name) for name in names.values()):
            if test_set in REQUIRED_TEST_SETS:
                missing = [name for name in names.values() if not files.has(name)]
                raise ReleaseError(f"{files.location}: missing {', '.join(missing)}")
            continue
        side_a, side_b = (parse_segments(files.read(names[lang])) for lang in (lang_a, lang_b))
        if [(s.doc, s.seg) for s in side_a] != [(s.doc, s.seg) for s in side_b]:
            raise ReleaseError(f"{names[lang_a]} and {names[lang_b]}: <doc>/<seg> ids differ (expected aligned files)")
        test[lang_a] += [s.text for s in side_a]
        test[lang_b] += [s.text for s in side_b]
        test_sets[test_set] = len(side_a)
    return ParallelRelease((lang_a, lang_b), train, test, test_sets)
