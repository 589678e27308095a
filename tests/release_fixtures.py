"""Writers for IWSLT 2014 release files in the real formats, for the parts the shared fixtures lack.

The shared de-en folder has the real development/test XML files but no ``train.tags`` (the release README
documents its format); en-ru has no files at all. These helpers write both formats so the parsers and the
prep scripts run on files laid out exactly like the release.
"""
import tarfile
from pathlib import Path

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
DE_EN = SHARED / "iwslt14-de-en"
TEST_SETS = ("TED.dev2010", "TEDX.dev2012", "TED.tst2010", "TED.tst2011", "TED.tst2012")

# Marker strings that appear only in metadata lines dropped by the parser.
DROPPED_MARKER = "zzmeta"


def talk_metadata(talk: int, lang: str) -> tuple[list[str], list[str]]:
    """(lines before the transcript, texts of <title>/<description> that fairseq's recipe keeps)."""
    title, description = f"talk {talk} title in {lang}", f"talk {talk} description in {lang} ."
    lines = [
        f"<url>http://www.ted.com/talks/{DROPPED_MARKER}_{talk}.html</url>",
        f"<keywords>talks, {DROPPED_MARKER}, science</keywords>",
        f"<speaker>{DROPPED_MARKER} speaker</speaker>",
        f"<talkid>{talk}{DROPPED_MARKER}</talkid>",
        f"<title>{title}</title>",
        f"<description>{description}</description>",
        f'<reviewer href="http://www.ted.com/profiles/{DROPPED_MARKER}">{DROPPED_MARKER}</reviewer>',
        "<translator></translator>",
    ]
    return lines, [title, description]


def write_train_tags(folder: Path, pair: str, talks: list[list[tuple[str, str]]]) -> dict[str, list[str]]:
    """Write ``train.tags.{pair}.{lang}``; returns the lines a correct parser must extract, per language."""
    lang_a, lang_b = pair.split("-")
    expected = {lang_a: [], lang_b: []}
    for side, lang in enumerate((lang_a, lang_b)):
        lines = []
        for number, talk in enumerate(talks, start=1):
            metadata, kept = talk_metadata(number, lang)
            lines += metadata
            expected[lang] += kept
            lines += [pair_[side] for pair_ in talk]
            expected[lang] += [pair_[side].strip() for pair_ in talk]
        (folder / f"train.tags.{pair}.{lang}").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return expected


def write_xml(path: Path, setid: str, lang: str, docs: dict[str, list[str]]) -> None:
    """An IWSLT ``<mteval>`` file with one ``<doc>`` per talk and one ``<seg id>`` line per segment."""
    lines = ['<?xml version="1.0" encoding="UTF-8"?>', "<mteval>", f'<srcset setid="{setid}" srclang="{lang}">']
    for docid, segments in docs.items():
        lines += [
            f'<doc docid="{docid}" genre="lectures">',
            f"<url>http://www.ted.com/talks/{DROPPED_MARKER}.html</url>",
            f"<description>{DROPPED_MARKER} description</description>",
            f"<keywords>{DROPPED_MARKER}</keywords>",
            f"<talkid>{docid}</talkid>",
            f"<title>{DROPPED_MARKER} title</title>",
        ]
        lines += [f'<seg id="{n}"> {text} </seg>' for n, text in enumerate(segments, start=1)]
        lines.append("</doc>")
    lines += ["</srcset>", "</mteval>"]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def count_seg_lines(path: Path) -> int:
    """Independent count: lines of the file that hold a ``<seg id=`` element."""
    return sum("<seg id=" in line for line in path.read_text(encoding="utf-8").splitlines())


def seg_pairs_of(xml_a: Path, xml_b: Path) -> list[tuple[str, str]]:
    """Segment text pairs of two aligned XML files, extracted with plain string operations."""
    def texts(path):
        return [line.split(">", 1)[1].rsplit("</seg>", 1)[0].strip()
                for line in path.read_text(encoding="utf-8").splitlines() if "<seg id=" in line]
    return list(zip(texts(xml_a), texts(xml_b)))


def make_archive(folder: Path, archive: Path, top: str) -> Path:
    """A ``.tgz`` holding ``top/<file>`` for every file of ``folder``, like fairseq's ``de-en.tgz``."""
    with tarfile.open(archive, "w:gz") as tar:
        for path in sorted(folder.iterdir()):
            tar.add(path.resolve(), arcname=f"{top}/{path.name}")
    return archive
