"""Parsing the IWSLT 2014 release formats: generated release folders, and (opt-in) the real de-en XML files."""

import pytest

from lskd_nmt.iwslt_release import ReleaseError, parse_segments, parse_train_tags, read_release
from release_fixtures import DROPPED_MARKER, TEST_SETS, count_seg_lines, make_archive, release_folder, write_train_tags

REAL_XML = [f"IWSLT14.{name}.de-en.{lang}.xml" for name in TEST_SETS for lang in ("de", "en")]
REAL_DE_EN = ("iwslt14-de-en", "the IWSLT14.TED*.de-en.*.xml files of the 2014-01 release")


def test_generated_test_sets_are_read_in_fairseq_order_with_entities_unescaped(de_en_release):
    release = read_release(de_en_release.folder, "de", "en")
    assert release.test_sets == de_en_release.test_sets and list(release.test_sets) == list(TEST_SETS)
    assert release.test == de_en_release.test
    for name, count in de_en_release.test_sets.items():
        assert count_seg_lines(de_en_release.folder / f"IWSLT14.{name}.de-en.en.xml") == count
    raw = (de_en_release.folder / "IWSLT14.TED.tst2012.de-en.en.xml").read_text(encoding="utf-8")
    assert "&amp;" in raw and "&lt;" in raw and "<refset " in raw, "the fixture should escape entities"
    assert any("AT&T" in line for line in release.test["en"]) and any(" < " in line for line in release.test["en"])
    assert not any(DROPPED_MARKER in line or "&amp;" in line for lang in release.test for line in release.test[lang])


def test_train_tags_keep_transcript_title_description_and_drop_other_metadata(de_en_release):
    release = read_release(de_en_release.folder, "de", "en")
    assert release.train == de_en_release.train
    assert not any(DROPPED_MARKER in line for lang in ("de", "en") for line in release.train[lang])
    assert not any(line.startswith("<") for lang in ("de", "en") for line in release.train[lang])


def test_train_tags_lines_starting_with_a_tag_inside_text_are_kept():
    text = "<url>http://x</url>\nI said <b> is a tag name .\n<talkid>1</talkid>\n"
    assert parse_train_tags(text) == ["I said <b> is a tag name ."]


def test_archive_and_folder_give_the_same_corpus(de_en_release, tmp_path):
    folder = de_en_release.folder
    archive = make_archive(folder, tmp_path / "de-en.tgz", "de-en")
    from_folder, from_archive = read_release(folder, "de", "en"), read_release(archive, "de", "en")
    assert (from_archive.train, from_archive.test) == (from_folder.train, from_folder.test)


def test_unequal_train_tags_sides_are_refused(tmp_path):
    write_train_tags(tmp_path, "de-en", [[("eins", "one"), ("zwei", "two")]])
    (tmp_path / "train.tags.de-en.en").write_text(
        (tmp_path / "train.tags.de-en.en").read_text() + "an extra line\n", encoding="utf-8"
    )
    with pytest.raises(ReleaseError, match="lines"):
        read_release(tmp_path, "de", "en")


def test_missing_test_set_names_the_file(tmp_path):
    write_train_tags(tmp_path, "de-en", [[("eins", "one")]])
    with pytest.raises(ReleaseError, match="IWSLT14.TED.dev2010.de-en.de.xml"):
        read_release(tmp_path, "de", "en")


def test_pair_order_of_the_file_names_is_found_either_way(en_ru_release):
    forward, reverse = read_release(en_ru_release, "en", "ru"), read_release(en_ru_release, "ru", "en")
    assert forward.train["ru"] == reverse.train["ru"] and forward.test["en"] == reverse.test["en"]
    assert "TEDX.dev2012" not in forward.test_sets


# --- the real release files (LSKD_RELEASE_DATA) -----------------------------------------------------------------


@pytest.mark.parametrize("name", REAL_XML)
def test_real_xml_every_seg_line_is_extracted_once_and_only_its_text(name):
    path = release_folder(*REAL_DE_EN) / name
    segments = parse_segments(path.read_text(encoding="utf-8"))
    assert len(segments) == count_seg_lines(path)
    assert all("<seg" not in s.text and "</seg>" not in s.text for s in segments)
    metadata = {
        line.split(">", 1)[1].split("<", 1)[0].strip()
        for line in path.read_text(encoding="utf-8").splitlines()
        if line.startswith(("<url>", "<keywords>", "<talkid>"))
    }
    assert not metadata & {s.text for s in segments}


def test_real_xml_entities_are_unescaped():
    path = release_folder(*REAL_DE_EN) / "IWSLT14.TED.tst2012.de-en.en.xml"
    raw = [line for line in path.read_text(encoding="utf-8").splitlines() if "<seg id=" in line]
    escaped = [i for i, line in enumerate(raw) if "&amp;" in line or "&lt;" in line]
    assert escaped, "the release's tst2012 has escaped entities in <seg> lines"
    segments = parse_segments(path.read_text(encoding="utf-8"))
    assert all("&amp;" not in segments[i].text and "&lt;" not in segments[i].text for i in escaped)


def test_real_test_split_is_fairseqs_6750_segments_in_order(tmp_path):
    real = release_folder(*REAL_DE_EN)
    for name in REAL_XML:
        (tmp_path / name).symlink_to(real / name)
    write_train_tags(tmp_path, "de-en", [[("eins", "one")]])
    release = read_release(tmp_path, "de", "en")
    counts = {name: count_seg_lines(real / f"IWSLT14.{name}.de-en.en.xml") for name in TEST_SETS}
    assert release.test_sets == counts and list(release.test_sets) == list(TEST_SETS)
    assert len(release.test["de"]) == len(release.test["en"]) == sum(counts.values()) == 6750
    offset = 0
    for name in TEST_SETS:
        first = parse_segments((real / f"IWSLT14.{name}.de-en.de.xml").read_text(encoding="utf-8"))[0]
        assert release.test["de"][offset] == first.text
        offset += counts[name]
