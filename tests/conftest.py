"""Release folders in the real IWSLT formats: the shared de-en XML files plus generated ``train.tags``."""
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from release_fixtures import DE_EN, TEST_SETS, seg_pairs_of, write_train_tags, write_xml  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
PYTHON = Path(sys.executable)

# Pairs the paper profile's clean rule must drop (ratio > 1.5, empty side, > 175 tokens).
BAD_PAIRS = [
    ("Ja .", "Yes , I think that this is what we should have done a long time ago ."),
    ("", "An English line whose German side is empty ."),
    (" ".join(["wort"] * 180), " ".join(["word"] * 180)),
]


def talks_from(pairs, talk_size=120):
    return [pairs[start:start + talk_size] for start in range(0, len(pairs), talk_size)]


@pytest.fixture(scope="session")
def de_en_release(tmp_path_factory):
    """Folder with links to the real de-en XML files and a train.tags pair built from real tst2012 segments."""
    folder = tmp_path_factory.mktemp("de-en")
    for path in DE_EN.glob("IWSLT14.*.xml"):
        (folder / path.name).symlink_to(path)
    pairs = seg_pairs_of(DE_EN / "IWSLT14.TED.tst2012.de-en.de.xml", DE_EN / "IWSLT14.TED.tst2012.de-en.en.xml")
    pairs = pairs[:600] + BAD_PAIRS + pairs[600:]
    expected = write_train_tags(folder, "de-en", talks_from(pairs))
    return folder, expected


RUSSIAN_WORDS = ["мы", "видим", "большой", "дом", "у", "реки", "она", "читает", "новую", "книгу", "сегодня", "утром"]
ENGLISH_WORDS = ["we", "see", "a", "big", "house", "near", "the", "river", "she", "reads", "new", "book"]


def generated_pairs(count, offset=0):
    """Deterministic En-Ru sentence pairs of varying length (Cyrillic target, mixed case, punctuation)."""
    pairs = []
    for n in range(offset, offset + count):
        length = 3 + n % 9
        english = " ".join(ENGLISH_WORDS[(n + k) % len(ENGLISH_WORDS)] for k in range(length))
        russian = " ".join(RUSSIAN_WORDS[(n * 7 + k) % len(RUSSIAN_WORDS)] for k in range(length))
        pairs.append((english.capitalize() + ", ok.", russian.capitalize() + ", да."))
    return pairs


@pytest.fixture(scope="session")
def en_ru_release(tmp_path_factory):
    """A generated IWSLT 2014 en-ru release folder (train.tags + the four TED test sets, no TEDX)."""
    folder = tmp_path_factory.mktemp("en-ru")
    write_train_tags(folder, "en-ru", talks_from(generated_pairs(500)))
    offset = 1000
    for test_set in TEST_SETS:
        if test_set.startswith("TEDX"):
            continue
        docs = {str(offset + d): generated_pairs(20 + d, offset + 100 * d) for d in range(3)}
        for side, lang in enumerate(("en", "ru")):
            write_xml(folder / f"IWSLT14.{test_set}.en-ru.{lang}.xml", f"iwslt2014-{test_set}", lang,
                      {doc: [pair[side] for pair in pairs] for doc, pairs in docs.items()})
        offset += 1000
    return folder
