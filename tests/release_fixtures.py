"""Release files in their real formats, written by the tests themselves, and the opt-in real release folder.

Each format is written once here, from generated text: IWSLT 2014 ``train.tags.*`` and ``IWSLT14.TED*.xml``
(metadata lines, ``<srcset>``/``<refset>`` headers, escaped entities), CUB-200-2011's metadata tables and
ImageNet's two validation ground-truth forms (Kaggle's CSV and the devkit's). Every writer also returns what a
correct reader must find in the files, so tests compare with values that never went through the code under test.

Tests that need the genuine release files (fairseq's 6,750 test segments, the published CUB split) read the
folder named by ``LSKD_RELEASE_DATA`` and are skipped, saying how to enable them, when it is unset.
"""

import html
import os
import random
import tarfile
from dataclasses import dataclass
from pathlib import Path

import pytest

RELEASE_ENV = "LSKD_RELEASE_DATA"
TEST_SETS = ("TED.dev2010", "TEDX.dev2012", "TED.tst2010", "TED.tst2011", "TED.tst2012")
LANGUAGE_NAMES = {"de": "german", "en": "english", "ru": "russian"}

# Marker strings that appear only in metadata lines dropped by the parser.
DROPPED_MARKER = "zzmeta"


def release_folder(name: str, holds: str) -> Path:
    """``$LSKD_RELEASE_DATA/name``, or skip the test with the setting that enables it."""
    root = os.environ.get(RELEASE_ENV)
    if not root:
        pytest.skip(f"needs the real release files: set {RELEASE_ENV}=DIR (the folder holding {name}/ with {holds})")
    folder = Path(root) / name
    if not folder.is_dir():
        pytest.fail(f"{RELEASE_ENV}={root} has no {name}/ folder; expected {holds}")
    return folder


# --- generated parallel text -----------------------------------------------------------------------------------

GERMAN_ENGLISH = [
    ("Haus", "house"),
    ("Fluss", "river"),
    ("große", "big"),
    ("kleine", "small"),
    ("wir", "we"),
    ("sehen", "see"),
    ("die", "the"),
    ("Welt", "world"),
    ("Kinder", "children"),
    ("Schule", "school"),
    ("Musik", "music"),
    ("Straße", "street"),
    ("grüne", "green"),
    ("schöne", "beautiful"),
    ("heute", "today"),
    ("morgen", "tomorrow"),
    ("denken", "think"),
    ("über", "about"),
    ("Energie", "energy"),
    ("Wasser", "water"),
    ("Stadt", "city"),
    ("Menschen", "people"),
    ("Prozent", "percent"),
    ("Jahr", "year"),
    ("Geld", "money"),
    ("Idee", "idea"),
    ("Geschichte", "story"),
    ("Gehirn", "brain"),
    ("Ozean", "ocean"),
    ("Rechner", "computer"),
    ("Zukunft", "future"),
    ("Frage", "question"),
    ("Antwort", "answer"),
    ("Zeit", "time"),
    ("Leben", "life"),
    ("Freunde", "friends"),
    ("wirklich", "really"),
    ("sehr", "very"),
    ("und", "and"),
    ("aber", "but"),
    ("oder", "or"),
    ("mit", "with"),
    ("ohne", "without"),
    ("neue", "new"),
    ("alte", "old"),
    ("Bäume", "trees"),
    ("Mütter", "mothers"),
    ("Vögel", "birds"),
    ("lernen", "learn"),
    ("bauen", "build"),
]
RUSSIAN_ENGLISH = [
    ("мы", "we"),
    ("видим", "see"),
    ("большой", "big"),
    ("дом", "house"),
    ("у", "near"),
    ("реки", "the river"),
    ("она", "she"),
    ("читает", "reads"),
    ("новую", "new"),
    ("книгу", "book"),
    ("сегодня", "today"),
    ("утром", "in the morning"),
    ("да", "yes"),
]
# TED-transcript features a tokeniser and an XML reader must handle: apostrophes, quotes, entities, numbers.
ENGLISH_OPENERS = [
    "It's",
    "We don't",
    "I'm sure",
    '"Look,"',
    "In 2,000 cities",
    "At 2.5 percent",
    "AT&T and",
    "If x < y and y > z,",
]
GERMAN_OPENERS = [
    "Es ist",
    "Wir nicht",
    "Ich bin sicher",
    "„Schau,“",
    "In 2.000 Städten",
    "Bei 2,5 Prozent",
    "AT&T und",
    "Wenn x < y und y > z,",
]


def sentence_pairs(count: int, seed: int, lexicon=GERMAN_ENGLISH, openers=(GERMAN_OPENERS, ENGLISH_OPENERS)):
    """Deterministic aligned (foreign, English) sentences, word by word from ``lexicon``, 3-20 words long."""
    rng = random.Random(seed)
    pairs = []
    for _ in range(count):
        if rng.random() < 0.03:
            pairs.append(("(Applaus)", "(Applause)") if lexicon is GERMAN_ENGLISH else ("(Аплодисменты)", "(Applause)"))
            continue
        words = [rng.choice(lexicon) for _ in range(rng.randint(3, 20))]
        foreign, english = [w for w, _ in words], [w for _, w in words]
        if openers and rng.random() < 0.3:
            k = rng.randrange(len(openers[0]))
            foreign, english = [openers[0][k], *foreign], [openers[1][k], *english]
        if len(words) > 6 and rng.random() < 0.4:
            foreign[2] += ","
            english[2] += ","
        end = rng.choice(".?!")
        pairs.append(
            (
                " ".join(foreign)[:1].upper() + " ".join(foreign)[1:] + end,
                " ".join(english)[:1].upper() + " ".join(english)[1:] + end,
            )
        )
    return pairs


def talks_from(pairs, talk_size=120):
    return [pairs[start : start + talk_size] for start in range(0, len(pairs), talk_size)]


# --- IWSLT 2014 release formats --------------------------------------------------------------------------------


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


def write_xml(path: Path, test_set: str, pair: str, lang: str, docs: dict[str, list[str]]) -> None:
    """An IWSLT ``<mteval>`` file as released: a ``<srcset>`` for the pair's first language, a ``<refset>``
    for the second, one ``<doc>`` per talk with its metadata, one ``<seg id>`` line per segment, entities
    escaped (also in the metadata, as the release's descriptions are)."""
    source, target = (LANGUAGE_NAMES[code] for code in pair.split("-"))
    setid = f"iwslt2014-{test_set.split('.')[1]}"
    header = (
        f'<srcset setid="{setid}" srclang="{source}">'
        if lang == pair.split("-")[0]
        else f'<refset setid="{setid}" srclang="{source}" trglang="{target}" refid="ref">'
    )
    lines = ['<?xml version="1.0" encoding="UTF-8"?>', "<mteval>", header]
    for docid, segments in docs.items():
        lines += [
            f'<doc docid="{docid}" genre="lectures">',
            f"<url>http://www.ted.com/talks/lang/{lang}/{DROPPED_MARKER}_{docid}.html</url>",
            f"<description>{DROPPED_MARKER} talk {docid} &amp; more. &lt;em&gt;&lt;/em&gt;</description>",
            f"<keywords>{DROPPED_MARKER},science,culture</keywords>",
            f"<talkid>{docid}</talkid>",
            f"<title>{DROPPED_MARKER}: title {docid}</title>",
        ]
        lines += [f'<seg id="{n}"> {html.escape(text, quote=False)} </seg>' for n, text in enumerate(segments, 1)]
        lines.append("</doc>")
    lines += ["</srcset>" if header.startswith("<srcset") else "</refset>", "</mteval>"]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


@dataclass
class Release:
    """A generated release folder and what a correct reader finds in it (raw text, entities unescaped)."""

    folder: Path
    train: dict[str, list[str]]
    test: dict[str, list[str]]
    test_sets: dict[str, int]


def write_release(folder: Path, pair: str, train_pairs, test_pairs: dict[str, list[tuple[str, str]]]) -> Release:
    """``train.tags`` plus one aligned XML pair per test set (``{set: pairs}``, cut into talks of 40)."""
    lang_a, lang_b = pair.split("-")
    train = write_train_tags(folder, pair, talks_from(train_pairs))
    test = {lang_a: [], lang_b: []}
    for number, (test_set, pairs) in enumerate(test_pairs.items()):
        talks = talks_from(pairs, 40)
        docids = [
            f"D{k + 1:02d}" if test_set.startswith("TEDX") else str(1000 * (number + 1) + k) for k in range(len(talks))
        ]
        for side, lang in enumerate((lang_a, lang_b)):
            write_xml(
                folder / f"IWSLT14.{test_set}.{pair}.{lang}.xml",
                test_set,
                pair,
                lang,
                {docid: [p[side] for p in talk] for docid, talk in zip(docids, talks)},
            )
            test[lang] += [p[side].strip() for p in pairs]
    return Release(folder, train, test, {name: len(pairs) for name, pairs in test_pairs.items()})


def count_seg_lines(path: Path) -> int:
    """Independent count: lines of the file that hold a ``<seg id=`` element."""
    return sum("<seg id=" in line for line in path.read_text(encoding="utf-8").splitlines())


def make_archive(folder: Path, archive: Path, top: str) -> Path:
    """A ``.tgz`` holding ``top/<file>`` for every file of ``folder``, like fairseq's ``de-en.tgz``."""
    with tarfile.open(archive, "w:gz") as tar:
        for path in sorted(folder.iterdir()):
            tar.add(path.resolve(), arcname=f"{top}/{path.name}")
    return archive


# --- CUB-200-2011 metadata -------------------------------------------------------------------------------------

CUB_FILES = ("images.txt", "train_test_split.txt", "image_class_labels.txt")


@dataclass
class CubImage:
    image_id: int
    relative: str  # images.txt's path: "<class folder>/<file>.jpg"
    class_id: int  # 1-based, as image_class_labels.txt
    is_train: bool


def write_cub_metadata(root: Path, classes: int, images_per_class: int, seed: int = 0) -> list[CubImage]:
    """``images.txt``, ``train_test_split.txt``, ``image_class_labels.txt`` and ``classes.txt`` as released:
    ``<id> <value>`` lines, ids 1..N in the same order in every file, folders ``NNN.Name``, about half of
    each class for training. No images; returns the rows written."""
    rng = random.Random(seed)
    root.mkdir(parents=True, exist_ok=True)
    folders = [f"{c:03d}.Bird_{c}_{'ab'[c % 2]}" for c in range(1, classes + 1)]
    images = []
    for class_id, folder in enumerate(folders, start=1):
        for n in range(images_per_class):
            name = f"{folder.split('.', 1)[1]}_{rng.randrange(10000):04d}_{n}.jpg"
            images.append(CubImage(len(images) + 1, f"{folder}/{name}", class_id, n % 2 == 0 or rng.random() < 0.1))
    tables = {
        "images.txt": [f"{i.image_id} {i.relative}" for i in images],
        "train_test_split.txt": [f"{i.image_id} {int(i.is_train)}" for i in images],
        "image_class_labels.txt": [f"{i.image_id} {i.class_id}" for i in images],
        "classes.txt": [f"{c} {folder}" for c, folder in enumerate(folders, start=1)],
    }
    for name, lines in tables.items():
        (root / name).write_text("\n".join(lines) + "\n")
    return images


# --- ImageNet validation ground truth --------------------------------------------------------------------------


@dataclass
class ImagenetLabels:
    labels: dict[str, str]  # image stem -> wnid
    wnids: list[str]  # sorted, the order of LOC_synset_mapping.txt


def write_imagenet_val_labels(folder: Path, classes: int, images: int, seed: int = 0) -> ImagenetLabels:
    """Both forms of the validation labels for ``images`` images of ``classes`` synsets:

    - Kaggle: ``LOC_val_solution.csv`` (header ``ImageId,PredictionString``, rows in no order, one or more
      ``wnid xmin ymin xmax ymax`` groups with a trailing space) and ``LOC_synset_mapping.txt`` (sorted by wnid);
    - devkit: ``ILSVRC2012_validation_ground_truth.txt`` (line k: the ILSVRC2012_ID of image k) and
      ``map_clsloc.txt`` (``wnid id name``, ids in an order that is not sorted-wnid order, no final newline).
    """
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    wnids = sorted(f"n{rng.randrange(10**7, 10**8):08d}" for _ in range(classes))
    devkit_order = wnids[:]
    rng.shuffle(devkit_order)
    devkit_id = {wnid: number for number, wnid in enumerate(devkit_order, start=1)}
    labels = {f"ILSVRC2012_val_{k:08d}": wnids[rng.randrange(classes)] for k in range(1, images + 1)}

    rows = []
    for stem, wnid in labels.items():
        boxes = "".join(
            f"{wnid} {x} {y} {x + 90} {y + 70} "
            for x, y in [(rng.randrange(300), rng.randrange(200)) for _ in range(rng.randint(1, 3))]
        )
        rows.append(f"{stem},{boxes}")
    rng.shuffle(rows)
    (folder / "LOC_val_solution.csv").write_text("\n".join(["ImageId,PredictionString", *rows]) + "\n")
    (folder / "LOC_synset_mapping.txt").write_text("".join(f"{w} synset {w}, another name\n" for w in wnids))
    (folder / "ILSVRC2012_validation_ground_truth.txt").write_text(
        "".join(f"{devkit_id[wnid]}\n" for wnid in labels.values())
    )
    (folder / "map_clsloc.txt").write_text("\n".join(f"{w} {devkit_id[w]} synset_{w}" for w in devkit_order))
    return ImagenetLabels(labels, wnids)
