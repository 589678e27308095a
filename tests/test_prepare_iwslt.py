"""data-prep/prepare-iwslt*.sh end to end on release-format files, plus the split and clean rules."""

import json
import re
import subprocess

import pytest

from environment import PYTHON
from fixtures.iwslt_release import BAD_PAIRS, MAX_LINES
from lskd_nmt.nmt_profiles import MIN_VOCAB_SIZE, VALID_EVERY, CleanRule
from lskd_nmt.prepare_iwslt import PrepConfig, clean_and_split
from release_fixtures import count_seg_lines
from repo_root import REPO

SPLITS = ("train", "valid", "test")


def run_script(script, *args):
    return subprocess.run(
        ["bash", str(REPO / "data-prep" / script), *map(str, args)],
        capture_output=True,
        text=True,
        env={"LSKD_PYTHON": str(PYTHON), "PATH": "/usr/bin:/bin"},
    )


def read(path):
    return path.read_text(encoding="utf-8").splitlines()


def load_both_directions(data_bin, lang_a, lang_b, split):
    """Sentence counts fairseq's translation loader sees for a->b and b->a from the same bin/."""
    from fairseq.data import Dictionary
    from fairseq.tasks.translation import load_langpair_dataset

    sizes = []
    for src, tgt in ((lang_a, lang_b), (lang_b, lang_a)):
        dictionaries = {lang: Dictionary.load(str(data_bin / f"dict.{lang}.txt")) for lang in (src, tgt)}
        assert dictionaries[src].symbols == dictionaries[tgt].symbols, "expected one joined dictionary"
        dataset = load_langpair_dataset(
            str(data_bin),
            split,
            src,
            dictionaries[src],
            tgt,
            dictionaries[tgt],
            combine=False,
            dataset_impl=None,
            upsample_primary=1,
            left_pad_source=True,
            left_pad_target=False,
            max_source_positions=1024,
            max_target_positions=1024,
        )
        sizes.append(len(dataset))
    return sizes


@pytest.mark.parametrize(
    "name, langs", [("paper_de_en", ("en", "de")), ("modern_de_en", ("de", "en")), ("paper_en_ru", ("en", "ru"))]
)
@pytest.mark.slow
def test_bin_loads_in_both_directions_with_the_prepared_line_counts(name, langs, prepared):
    out = prepared[name]
    source, target = langs
    assert sorted(p.name for p in (out / "bin").glob("dict.*.txt")) == sorted(f"dict.{lang}.txt" for lang in langs)
    for split in SPLITS:
        assert (out / "bin" / f"{split}.{source}-{target}.{target}.bin").is_file()
        lines = len(read(out / f"{split}.{source}"))
        assert lines == len(read(out / f"{split}.{target}")) == len(read(out / "subword" / f"{split}.{target}"))
        assert load_both_directions(out / "bin", source, target, split) == [lines, lines]


@pytest.mark.slow
def test_modern_profile_keeps_raw_test_segments(de_en_release, modern_de_en):
    """The test sets' text as written into the XML files (entities unescaped), whitespace normalised."""
    expected = list(zip(de_en_release.test["de"], de_en_release.test["en"]))[:MAX_LINES]
    expected = [(" ".join(de.split()), " ".join(en.split())) for de, en in expected]
    assert any("&" in en for _, en in expected) and any("<" in en for _, en in expected)
    assert list(zip(read(modern_de_en / "test.de"), read(modern_de_en / "test.en"))) == expected


@pytest.mark.slow
def test_paper_profile_text_is_moses_tokenised_and_lowercased(paper_de_en):
    for split in SPLITS:
        for lang in ("de", "en"):
            lines = read(paper_de_en / f"{split}.{lang}")
            assert all(line == line.lower() for line in lines)
            assert not any(re.search(r"\w[,?!]( |$)", line) for line in lines), "punctuation left attached"
    assert any("&apos;" in line for line in read(paper_de_en / "train.en")), "expected Moses escaping"


def labels_in_raw_order(raw_pairs, train_pairs, valid_pairs):
    """Walk the raw pairs and label each as train (T), valid (V) or dropped (-), by prepared order."""
    labels, t, v = [], 0, 0
    for pair in raw_pairs:
        if t < len(train_pairs) and pair == train_pairs[t]:
            labels.append("T")
            t += 1
        elif v < len(valid_pairs) and pair == valid_pairs[v]:
            labels.append("V")
            v += 1
        else:
            labels.append("-")
    assert (t, v) == (len(train_pairs), len(valid_pairs)), "prepared pairs are not in release order"
    return labels


@pytest.mark.slow
def test_valid_is_every_23rd_kept_training_pair_and_bad_pairs_are_dropped(de_en_release, modern_de_en):
    expected = de_en_release.train
    raw = [(" ".join(de.split()), " ".join(en.split())) for de, en in zip(expected["de"], expected["en"])][:MAX_LINES]
    train = list(zip(read(modern_de_en / "train.de"), read(modern_de_en / "train.en")))
    valid = list(zip(read(modern_de_en / "valid.de"), read(modern_de_en / "valid.en")))
    kept = [label for label in labels_in_raw_order(raw, train, valid) if label != "-"]
    assert [i for i, label in enumerate(kept, start=1) if label == "V"] == list(range(23, len(kept) + 1, 23))
    bad = {(" ".join(de.split()), " ".join(en.split())) for de, en in BAD_PAIRS}
    assert bad <= set(raw) and not bad & set(train + valid)
    manifest = json.loads((modern_de_en / "bin" / "lskd-prep.json").read_text())
    counts = manifest["counts"]
    assert counts["train"] + counts["valid"] + counts["dropped_by_clean"] == len(raw)
    assert manifest["release_sha256"] and manifest["profile"] == "modern"


@pytest.mark.slow
def test_en_ru_uses_en_and_ru_files_and_lowercases_cyrillic(paper_en_ru, en_ru_release):
    assert {p.name for p in paper_en_ru.glob("test.*")} == {"test.en", "test.ru"}
    test_ru = read(paper_en_ru / "test.ru")
    assert len(test_ru) == sum(count_seg_lines(p) for p in en_ru_release.glob("IWSLT14.*.en-ru.ru.xml"))
    assert all(line == line.lower() for line in test_ru) and any("да" in line for line in test_ru)


def test_clean_rule_matches_clean_corpus_limits():
    rule = CleanRule()
    assert rule.keeps("a b c", "x y")  # ratio 1.5 is allowed
    assert not rule.keeps("a b c d", "x y")  # ratio 2
    assert not rule.keeps("", "x")  # empty side
    assert rule.keeps(" ".join("a" * 175), " ".join("b" * 175))
    assert not rule.keeps(" ".join("a" * 176), " ".join("b" * 176))


def test_split_takes_every_23rd_kept_pair(tmp_path):
    config = PrepConfig(release=tmp_path, out=tmp_path, source_lang="de", target_lang="en", profile="paper")
    source = [f"s{i}" if i % 10 else "" for i in range(1, 101)]  # every 10th source line empty -> dropped
    train, valid, dropped = clean_and_split(config, {"de": source, "en": [f"t{i}" for i in range(1, 101)]})
    kept = [i for i in range(1, 101) if i % 10]
    assert dropped == 10
    assert valid["en"] == [f"t{kept[n - 1]}" for n in range(23, len(kept) + 1, 23)]
    assert train["en"] == [f"t{i}" for i in kept if f"t{i}" not in valid["en"]]


def one_line_error(result, code, *needles):
    lines = result.stderr.strip().splitlines()
    assert result.returncode == code and len(lines) == 1, result.stderr
    assert all(needle in lines[0] for needle in needles), lines[0]


def test_missing_en_ru_archive_is_one_line_naming_the_file(tmp_path):
    result = run_script(
        "prepare-iwslt-en-ru.sh", "--profile", "paper", "--out", tmp_path / "out", "--archive", tmp_path / "en-ru.tgz"
    )
    one_line_error(result, 1, f"missing {tmp_path / 'en-ru.tgz'}", "en-ru.tgz", "--archive")
    assert not (tmp_path / "out").exists()


def test_missing_default_en_ru_archive_names_where_to_put_it(tmp_path):
    default = REPO / "data-prep" / "archives" / "en-ru.tgz"
    if default.exists():
        pytest.skip(f"{default} exists on this machine")
    result = run_script("prepare-iwslt-en-ru.sh", "--source", "wit3", "--profile", "modern", "--out", tmp_path / "out")
    one_line_error(result, 1, str(default))


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--profile", "fancy"], "--profile 'fancy'"),
        (["--profile", "paper", "--vocab-size", "ten"], "--vocab-size 'ten'"),
        (["--profile", "paper", "--direction", "fr-en"], "--direction 'fr-en'"),
        (["--profile", "paper", "--orig", "/nonexistent/release"], "--orig /nonexistent/release"),
        (["--profile", "paper", "--archive", "x.tgz", "--sha256", "0" * 64], "sha256"),
    ],
)
def test_bad_arguments_fail_with_one_line_before_writing(args, needle, tmp_path):
    if "x.tgz" in args:
        (tmp_path / "x.tgz").write_bytes(b"not the archive")
        args = [str(tmp_path / a) if a == "x.tgz" else a for a in args]
    result = run_script("prepare-iwslt14.sh", *args, "--out", tmp_path / "out")
    one_line_error(result, 2, needle)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "flag, value, minimum",
    [("--vocab-size", MIN_VOCAB_SIZE - 1, MIN_VOCAB_SIZE), ("--max-lines", VALID_EVERY - 1, VALID_EVERY)],
)
def test_limits_below_the_python_minimum_are_refused_through_the_script(tmp_path, de_en_release, flag, value, minimum):
    """The limits live in lskd_nmt.nmt_profiles only; the script passes the value on and Python refuses it."""
    result = run_script(
        "prepare-iwslt14.sh",
        "--profile",
        "paper",
        "--orig",
        de_en_release.folder,
        flag,
        value,
        "--out",
        tmp_path / "out",
    )
    last = result.stderr.strip().splitlines()[-1]
    assert result.returncode == 2 and f"{flag} {value}: expected" in last and f">= {minimum}" in last, result.stderr
    assert not (tmp_path / "out").exists()


def test_non_empty_out_is_refused(tmp_path, de_en_release):
    (tmp_path / "keep.txt").write_text("user data")
    result = run_script("prepare-iwslt14.sh", "--profile", "paper", "--out", tmp_path, "--orig", de_en_release.folder)
    one_line_error(result, 2, "not empty")
    assert [p.name for p in tmp_path.iterdir()] == ["keep.txt"]


def test_help_documents_every_flag():
    result = run_script("prepare-iwslt14.sh", "--help")
    assert result.returncode == 0
    for flag in (
        "--profile",
        "--out",
        "--orig",
        "--archive",
        "--vocab-size",
        "--direction",
        "--max-lines",
        "--sha256",
        "--test-sets",
    ):
        assert flag in result.stdout


def spm_pieces(out):
    import sentencepiece

    model = sentencepiece.SentencePieceProcessor(model_file=str(out / "spm.model"))
    return [model.id_to_piece(i) for i in range(model.get_piece_size()) if not model.is_unknown(i)]


@pytest.mark.parametrize("name", ["paper_de_en", "modern_de_en", "paper_en_ru"])
def test_every_sentencepiece_piece_has_its_own_dictionary_entry(name, prepared):
    from fairseq.data import Dictionary

    out = prepared[name]
    pieces = spm_pieces(out)
    for path in (out / "bin").glob("dict.*.txt"):
        dictionary = Dictionary.load(str(path))
        ids = [dictionary.index(piece) for piece in pieces]
        assert dictionary.unk() not in ids, [p for p, i in zip(pieces, ids) if i == dictionary.unk()][:10]
        assert len(set(ids)) == len(pieces)
        assert set(dictionary.symbols[dictionary.nspecial :]) == set(pieces), "entries that are not spm pieces"


def test_raw_test_references_are_the_release_segments_cased(paper_de_en, de_en_release):
    for lang in ("de", "en"):
        raw = de_en_release.test[lang][:MAX_LINES]
        assert read(paper_de_en / "raw" / f"test.{lang}") == raw
        assert any(line != line.lower() for line in raw)
    manifest = json.loads((paper_de_en / "bin" / "lskd-prep.json").read_text())
    assert manifest["raw_test"]["de"] == str((paper_de_en / "raw" / "test.de").resolve())


def overlap_of(out, source, target):
    """Independent count: prepared test pairs found among the prepared train pairs."""
    train = set(zip(read(out / f"train.{source}"), read(out / f"train.{target}")))
    return sum(pair in train for pair in zip(read(out / f"test.{source}"), read(out / f"test.{target}")))


@pytest.mark.parametrize("name, langs", [("paper_de_en", ("en", "de")), ("paper_en_ru", ("en", "ru"))])
def test_manifest_reports_test_train_overlap(name, langs, prepared):
    out = prepared[name]
    overlap = json.loads((out / "bin" / "lskd-prep.json").read_text())["test_train_overlap"]
    test = len(read(out / f"test.{langs[0]}"))
    assert overlap == {"pairs": overlap_of(out, *langs), "test": test, "share": overlap_of(out, *langs) / test}


def test_test_sets_choose_the_test_split_and_overlap_is_warned(de_en_release, tmp_path):
    out = tmp_path / "out"
    result = run_script(
        "prepare-iwslt14.sh",
        "--profile",
        "modern",
        "--out",
        out,
        "--orig",
        de_en_release.folder,
        "--vocab-size",
        300,
        "--max-lines",
        MAX_LINES,
        "--test-sets",
        "TED.tst2012",
    )
    assert result.returncode == 0, result.stderr
    sizes = de_en_release.test_sets
    start = sum(sizes[name] for name in list(sizes)[: list(sizes).index("TED.tst2012")])
    tst2012 = de_en_release.test["en"][start : start + sizes["TED.tst2012"]]
    assert read(out / "raw" / "test.en") == tst2012[:MAX_LINES]
    manifest = json.loads((out / "bin" / "lskd-prep.json").read_text())
    assert manifest["counts"]["test_sets"] == {"TED.tst2012": len(tst2012)}
    pairs = overlap_of(out, "de", "en")
    assert pairs > 0 and manifest["test_train_overlap"]["pairs"] == pairs
    assert f"test pairs also in train: {pairs} of {len(tst2012[:MAX_LINES])}" in result.stdout
    assert "warning" in result.stderr and f"{pairs} of" in result.stderr


@pytest.mark.parametrize(
    "test_sets, needle",
    [
        ("TEDX.dev2012", "TEDX.dev2012: not in this release"),
        ("TED.tst2010,TED.tst2010", "named twice"),
        ("TED.tst2099", "'TED.tst2099'"),
    ],
)
def test_bad_test_sets_are_refused_before_writing(test_sets, needle, en_ru_release, tmp_path):
    result = run_script(
        "prepare-iwslt-en-ru.sh",
        "--profile",
        "paper",
        "--out",
        tmp_path / "out",
        "--orig",
        en_ru_release,
        "--test-sets",
        test_sets,
    )
    one_line_error(result, 2, needle)
    assert not (tmp_path / "out").exists()
