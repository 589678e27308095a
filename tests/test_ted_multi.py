"""The Qi et al. (NAACL 2018) multi-way TED corpus: its tsv format, the archive checks, and --source qi2018 end to
end through data-prep/prepare-iwslt-en-ru.sh, on generated files in the corpus's format (nothing downloaded)."""

import gzip
import hashlib
import io
import json
import os
import subprocess
import tarfile
import zipfile

import pytest

from environment import PYTHON
from lskd.errors import InvalidConfig
from lskd_nmt.nmt_profiles import moses_detokenize
from lskd_nmt.ted_multi import SPLIT_FILES, CorpusError, read_columns, read_ted_multi
from lskd_report.results import data_sentence
from repo_root import REPO

HEADER = ["talk_name", "de", "en", "ru", "pt-br"]
NULL = "__NULL__"


def corpus_rows(split: str, talks: int = 3, per_talk: int = 12):
    """Rows in the corpus's layout (Moses-tokenised text, talk names, __NULL__), with the rows that must be dropped
    and the pairs that must be kept, in order."""
    rows, kept = [], []
    for talk in range(talks):
        name = f"SpeakerName_{split.capitalize()}{talk}"
        for n in range(per_talk):
            en = f"and it &apos;s talk {talk} , sentence {n} of the {split} split ."
            ru = f"и это доклад {talk} , предложение {n} ( {split} ) ."
            rows.append([name, f"satz {n} .", en, ru, f"frase {n} ."])
            kept.append((en, ru))
    # Quotes are text (the corpus is not quoted): a field starting with a quote, and an unbalanced one.
    rows.append(["QuoteTalk", NULL, '" Yes , " he said .', '" Да " , сказал он .', NULL])
    rows.append(["QuoteTalk", "x", 'a 5 " screen and a lone " quote', '" Ёлка и «ёж» — 5 "', "y"])
    kept += [rows[-2][2:4], rows[-1][2:4]]
    # Dropped: a missing side (__NULL__, its tokenised form, empty), and a tab inside a sentence (one field too many).
    rows.insert(2, ["SpeakerName_X", "a", "missing russian .", NULL, "b"])
    rows.insert(5, ["SpeakerName_X", "a", "_ _ NULL _ _", "нет английского .", "b"])
    rows.insert(7, ["SpeakerName_X", "a", "empty russian .", "  ", "b"])
    rows.insert(9, ["SpeakerName_X", "a", "a tab\tinside", "табуляция .", "b"])
    return rows, [tuple(pair) for pair in kept]


def tsv_bytes(rows, header=HEADER) -> bytes:
    return "".join("\t".join(fields) + "\n" for fields in [header, *rows]).encode("utf-8")


def write_archive(path, files: dict, top: str = "") -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, data in files.items():
            member = tarfile.TarInfo(top + name)
            member.size = len(data)
            archive.addfile(member, io.BytesIO(data))
    path.write_bytes(buffer.getvalue())
    return buffer.getvalue()


def corpus_files(header=HEADER, leave_out=()):
    files, expected = {}, {}
    for split, name in SPLIT_FILES.items():
        rows, kept = corpus_rows(split, talks=6 if split == "train" else 2)
        if name not in leave_out:
            files[name] = tsv_bytes(rows, header if split == "valid" else HEADER)
        expected[split] = kept
    return files, expected


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ted")
    files, expected = corpus_files()
    write_archive(folder / "ted_talks.tar.gz", files)
    return folder / "ted_talks.tar.gz", expected


def test_fields_are_read_as_written_and_rows_missing_a_side_or_with_a_tab_are_dropped(corpus):
    archive, expected = corpus
    splits = read_columns(archive, ("en", "ru"))
    for split, pairs in expected.items():
        assert list(zip(splits[split].lines["en"], splits[split].lines["ru"])) == pairs
        assert (splits[split].missing, splits[split].malformed) == (3, 1)
        assert splits[split].talks == (6 if split == "train" else 2) + 2  # SpeakerName_X and QuoteTalk
    assert '" Ёлка и «ёж» — 5 "' in splits["test"].lines["ru"]


def test_release_is_detokenised_and_keeps_the_corpus_split(corpus):
    archive, expected = corpus
    release = read_ted_multi(archive, "en", "ru")
    for split, text in (("train", release.train), ("valid", release.valid), ("test", release.test)):
        assert text["en"] == moses_detokenize([en for en, _ in expected[split]], "en")
        assert text["ru"] == moses_detokenize([ru for _, ru in expected[split]], "ru")
    assert "and it's talk 0, sentence 0 of the train split." == release.train["en"][0]
    assert release.dropped["valid"] == {"missing_side": 3, "malformed_row": 1, "talks": 4}
    assert release.test_sets == {"qi2018.test": len(expected["test"])}


def test_an_extracted_folder_and_a_nested_archive_read_the_same(corpus, tmp_path):
    archive, _ = corpus
    files, _ = corpus_files()
    write_archive(tmp_path / "nested.tar.gz", files, top="ted_talks/")
    (tmp_path / "folder").mkdir()
    for name, data in files.items():
        (tmp_path / "folder" / name).write_bytes(data)
    reference = read_ted_multi(archive, "en", "ru")
    for location in (tmp_path / "nested.tar.gz", tmp_path / "folder"):
        release = read_ted_multi(location, "en", "ru")
        assert (release.train, release.valid, release.test) == (reference.train, reference.valid, reference.test)


@pytest.mark.parametrize(
    "make, needle",
    [
        (lambda whole: whole[: len(whole) // 2], "truncated"),
        (lambda whole: whole[:-4], "truncated"),  # only the gzip trailer (its length) is missing
        (lambda whole: b"talk_name\ten\tru\n", "not gzip-compressed"),
        (lambda whole: gzip.compress("talk_name\ten\tru\nTalk\thello\tпривет\n".encode()), "not a readable gzip"),
    ],
)
def test_a_damaged_or_foreign_archive_is_refused_naming_the_problem(corpus, tmp_path, make, needle):
    archive, _ = corpus
    bad = tmp_path / "ted_talks.tar.gz"
    bad.write_bytes(make(archive.read_bytes()))
    with pytest.raises(CorpusError, match=needle):
        read_ted_multi(bad, "en", "ru")


def test_a_folder_with_a_file_that_is_not_utf8_is_refused(tmp_path):
    files, _ = corpus_files()
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    (tmp_path / "all_talks_dev.tsv").write_bytes(files["all_talks_dev.tsv"] + "Talk\tx\t\xff\ty\tz\n".encode("latin-1"))
    with pytest.raises(CorpusError, match="not UTF-8"):
        read_ted_multi(tmp_path, "en", "ru")


def test_a_zip_archive_is_refused(tmp_path):
    with zipfile.ZipFile(tmp_path / "ted_talks.zip", "w") as archive:
        archive.writestr("all_talks_train.tsv", "talk_name\ten\tru\n")
    with pytest.raises(CorpusError, match="not gzip-compressed"):
        read_ted_multi(tmp_path / "ted_talks.zip", "en", "ru")


def test_the_check_command_prints_each_split_or_one_line(corpus, tmp_path):
    archive, expected = corpus
    check = [str(PYTHON), "-m", "lskd_nmt.ted_multi"]
    result = subprocess.run([*check, str(archive)], capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 0, result.stderr
    assert f"all_talks_dev.tsv: {len(expected['valid'])} pairs from 4 talks" in result.stdout
    result = subprocess.run([*check, str(tmp_path / "absent.tar.gz")], capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 2 and result.stderr.count("\n") == 1 and "no such file" in result.stderr


def test_a_missing_language_column_or_file_is_named(tmp_path):
    files, _ = corpus_files(header=["talk_name", "de", "en", "pt-br", "uk"])
    write_archive(tmp_path / "no-ru.tar.gz", files)
    with pytest.raises(CorpusError, match=r"all_talks_dev.tsv: no ru column in the header"):
        read_ted_multi(tmp_path / "no-ru.tar.gz", "en", "ru")
    files, _ = corpus_files(leave_out=("all_talks_test.tsv",))
    write_archive(tmp_path / "no-test.tar.gz", files)
    with pytest.raises(CorpusError, match="no all_talks_test.tsv inside"):
        read_ted_multi(tmp_path / "no-test.tar.gz", "en", "ru")


@pytest.mark.parametrize(
    "manifest, needles",
    [
        (
            {"profile": "paper", "source": "qi2018", "source_note": "not comparable with the paper's numbers"},
            ["Data: qi2018, not comparable with the paper's numbers", "profile paper"],
        ),
        ({"profile": "modern"}, ["source is not recorded", "profile modern"]),
    ],
)
def test_results_caption_names_the_data_source(tmp_path, manifest, needles):
    (tmp_path / "lskd-prep.json").write_text(json.dumps(manifest))
    sentence = data_sentence(tmp_path / "lskd-prep.json")
    assert all(needle in sentence for needle in needles), sentence


def test_recipe_passes_the_source_to_data_prep(corpus, tmp_path):
    archive, _ = corpus
    bad = tmp_path / "ted_talks.tar.gz"
    bad.write_bytes(archive.read_bytes()[:-100])
    env = {
        **os.environ,
        "PYTHON": str(PYTHON),
        "RUN_DIR": str(tmp_path / "run"),
        "SOURCE": "qi2018",
        "ARCHIVE": str(bad),
    }
    result = subprocess.run(
        ["bash", str(REPO / "recipes" / "iwslt_en_ru.sh"), "--tiny"], capture_output=True, text=True, env=env
    )
    assert result.returncode != 0 and "failed data" in result.stderr and "truncated" in result.stderr, result.stderr
    assert not (tmp_path / "run" / "data").exists()


def test_recipe_refuses_a_data_dir_prepared_from_the_other_source(tmp_path):
    from lskd_grid.recipe_settings import settle
    from lskd_grid.recipe_table import RECIPES

    data = tmp_path / "data"
    (data / "bin").mkdir(parents=True)
    (data / "bin" / "lskd-prep.json").write_text(json.dumps({"source": "qi2018", "profile": "paper"}))
    environ = {"DATA_DIR": str(data), "RUN_DIR": str(tmp_path / "run")}
    assert settle(RECIPES["iwslt_en_ru"], ["--tiny", "--source", "qi2018"], environ)["SOURCE"] == "qi2018"
    with pytest.raises(InvalidConfig, match=f"SOURCE wit3: DATA_DIR {data} was prepared from qi2018"):
        settle(RECIPES["iwslt_en_ru"], ["--tiny"], {**environ, "SOURCE": "wit3"})


def run_script(*args, path="/usr/bin:/bin"):
    return subprocess.run(
        ["bash", str(REPO / "data-prep" / "prepare-iwslt-en-ru.sh"), *map(str, args)],
        capture_output=True,
        text=True,
        env={"LSKD_PYTHON": str(PYTHON), "PATH": path},
    )


def test_help_names_both_sources():
    result = run_script("--help")
    assert result.returncode == 0
    assert "--source" in result.stdout and "wit3" in result.stdout and "qi2018" in result.stdout
    assert "http://phontron.com/data/ted_talks.tar.gz" in result.stdout


def test_a_truncated_archive_is_one_line_before_out_is_written(corpus, tmp_path):
    archive, _ = corpus
    bad = tmp_path / "ted_talks.tar.gz"
    bad.write_bytes(archive.read_bytes()[:-100])
    result = run_script("--source", "qi2018", "--archive", bad, "--profile", "paper", "--out", tmp_path / "out")
    lines = [line for line in result.stderr.splitlines() if "error" in line]
    assert result.returncode == 2 and len(lines) == 1 and "truncated" in lines[0], result.stderr
    assert not (tmp_path / "out").exists()


def test_a_damaged_download_is_not_published(corpus, tmp_path):
    """With no WIT3 release, the default source is qi2018: a stand-in curl delivers a truncated archive, which is
    refused and removed instead of being moved to data-prep/archives/."""
    published = REPO / "data-prep" / "archives" / "ted_talks.tar.gz"
    if published.exists() or (REPO / "data-prep" / "archives" / "en-ru.tgz").exists():
        pytest.skip("an archive already sits in data-prep/archives/")
    archive, _ = corpus
    bad = tmp_path / "served.tar.gz"
    bad.write_bytes(archive.read_bytes()[:-100])
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "curl").write_text(
        '#!/bin/bash\nwhile [ $# -gt 0 ]; do [ "$1" = -o ] && cp "' + str(bad) + '" "$2"; shift; done\n'
    )
    os.chmod(fake / "curl", 0o755)
    result = run_script("--profile", "modern", "--out", tmp_path / "out", path=f"{fake}:/usr/bin:/bin")
    assert result.returncode == 2 and "truncated" in result.stderr and "downloading" in result.stderr, result.stderr
    assert not published.exists() and not published.with_name("ted_talks.tar.gz.part").exists()
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
@pytest.mark.parametrize("profile", ["paper", "modern"])
def test_qi2018_prepares_the_corpus_split_and_records_source_and_sha256(corpus, tmp_path, profile):
    archive, expected = corpus
    out = tmp_path / "out"
    result = run_script(
        "--source",
        "qi2018",
        "--archive",
        archive,
        "--profile",
        profile,
        "--vocab-size",
        "60",
        "--workers",
        "1",
        "--out",
        out,
    )
    assert result.returncode == 0, result.stderr
    lines = {name: (out / name).read_text(encoding="utf-8").splitlines() for name in ("valid.ru", "test.en")}
    assert len(lines["valid.ru"]) == len(expected["valid"]) and len(lines["test.en"]) == len(expected["test"])
    if profile == "modern":
        assert lines["test.en"] == moses_detokenize([en for en, _ in expected["test"]], "en")
    else:
        assert all(line == line.lower() for line in lines["test.en"]) and "&apos;s" in lines["test.en"][0]
    manifest = json.loads((out / "bin" / "lskd-prep.json").read_text())
    assert manifest["source"] == "qi2018" and manifest["profile"] == profile
    assert manifest["release_sha256"] == hashlib.sha256(archive.read_bytes()).hexdigest()
    assert manifest["counts"]["valid"] == len(expected["valid"])
    assert manifest["counts"]["train"] + manifest["counts"]["dropped_by_clean"] == len(expected["train"])
    assert manifest["release_dropped"]["train"]["malformed_row"] == 1
    assert (out / "bin" / "test.en-ru.ru.bin").is_file()
    sentence = data_sentence(out / "bin" / "lskd-prep.json")
    assert "qi2018" in sentence and "not comparable with the paper" in sentence
