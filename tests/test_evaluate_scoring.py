"""lskd-evaluate's scoring half: fairseq-generate output -> ordered text -> both BLEU flavours.

Expected scores come from sacreBLEU's command line run on text files the test writes itself.
"""

import html
import random
from dataclasses import replace

import pytest
from sacremoses import MosesTokenizer

from lskd.errors import ToolError
from lskd_nmt.evaluate import binarised_sentence_count, parse_generate_output, score_generation, summary
from lskd_nmt.nmt_profiles import moses_detokenize, moses_tokenize
from release_fixtures import release_folder
from sacrebleu_cli import cli_bleu
from system_outputs import config, degrade, english_segments, generate_output, pieces


def real_english_segments():
    """The English <seg> texts of the real tst2011 (opt-in: LSKD_RELEASE_DATA)."""
    folder = release_folder("iwslt14-de-en", "the IWSLT14.TED*.de-en.*.xml files of the 2014-01 release")
    text = (folder / "IWSLT14.TED.tst2011.de-en.en.xml").read_text(encoding="utf-8")
    return [
        " ".join(html.unescape(line.split(">", 1)[1].rsplit("</seg>", 1)[0]).split())
        for line in text.splitlines()
        if "<seg id=" in line
    ]


def test_modern_profile_scores_equal_sacrebleu_cli(tmp_path):
    references = english_segments(300)
    rng = random.Random(1)
    hypotheses = [degrade(line, rng) for line in references]
    text = generate_output([pieces(h) for h in hypotheses], [pieces(r) for r in references])
    scores = score_generation(config(tmp_path, "modern"), text)
    assert (tmp_path / "test.hyp.detok").read_text(encoding="utf-8").splitlines() == hypotheses
    assert scores["sacrebleu"]["score"] == pytest.approx(cli_bleu(tmp_path, hypotheses, references), abs=1e-4)
    tokenizer = MosesTokenizer(lang="en")

    def tokenize(lines):
        return [tokenizer.tokenize(line, return_str=True, escape=True) for line in lines]

    expected = cli_bleu(tmp_path, tokenize(hypotheses), tokenize(references), "-tok", "none", "-lc")
    assert scores["tokenized_bleu"]["score"] == pytest.approx(expected, abs=1e-4)
    assert scores["sacrebleu"]["score"] != pytest.approx(scores["tokenized_bleu"]["score"], abs=0.01)
    assert "tok:13a" in scores["sacrebleu"]["signature"] and "case:mixed" in scores["sacrebleu"]["signature"]
    assert "tok:none" in scores["tokenized_bleu"]["signature"] and "case:lc" in scores["tokenized_bleu"]["signature"]
    assert scores["n_sentences"] == len(references)


def test_paper_profile_detokenises_for_sacrebleu_and_scores_tokens_as_is(tmp_path):
    raw = [
        "it's a test, isn't it?",
        "we don't know (yet) what 2.5 means.",
        "she said: yes; he said: no!",
        "costs rose by 5% in 2020 & 2021.",
        "one, two, three -- four.",
    ] * 8
    rng = random.Random(2)
    raw_hypotheses = [degrade(line, rng) for line in raw]
    tokenizer = MosesTokenizer(lang="en")
    tokenized = [tokenizer.tokenize(line, return_str=True, escape=True) for line in raw]
    tokenized_hypotheses = [tokenizer.tokenize(line, return_str=True, escape=True) for line in raw_hypotheses]
    text = generate_output([pieces(h) for h in tokenized_hypotheses], [pieces(r) for r in tokenized])
    scores = score_generation(config(tmp_path, "paper"), text)
    assert (tmp_path / "test.ref.detok").read_text(encoding="utf-8").splitlines() == raw
    assert scores["sacrebleu"]["score"] == pytest.approx(cli_bleu(tmp_path, raw_hypotheses, raw), abs=1e-4)
    expected = cli_bleu(tmp_path, tokenized_hypotheses, tokenized, "-tok", "none", "-lc")
    assert scores["tokenized_bleu"]["score"] == pytest.approx(expected, abs=1e-4)


def test_references_file_replaces_generate_targets(tmp_path):
    references = english_segments(40)
    (tmp_path / "test.en").write_text("\n".join(references) + "\n", encoding="utf-8")
    text = generate_output([pieces(r) for r in references], [pieces("<<unk>> x") for _ in references])
    scores = score_generation(config(tmp_path, "modern", references=tmp_path / "test.en"), text)
    assert scores["sacrebleu"]["score"] == pytest.approx(100.0)
    with pytest.raises(ValueError, match="expected 39"):
        score_generation(
            config(tmp_path, "modern", references=tmp_path / "test.en"),
            generate_output([pieces(r) for r in references[:39]], references[:39]),
        )


def test_hypotheses_and_references_are_ordered_by_sentence_id():
    text = "H-2\t-1\tc\nT-0\tA\nH-10\t-1\tk\nT-2\tC\nH-0\t-1\ta\nT-10\tK\n" + "".join(
        f"H-{i}\t-1\th{i}\nT-{i}\tt{i}\n" for i in (1, 3, 4, 5, 6, 7, 8, 9)
    )
    hypotheses, references = parse_generate_output(text)
    assert hypotheses[:3] == ["a", "h1", "c"] and hypotheses[10] == "k"
    assert references[:3] == ["A", "t1", "C"] and references[10] == "K"


def test_missing_sentences_are_reported():
    with pytest.raises(ToolError, match="not 0..1"):
        parse_generate_output("H-0\t-1\ta\nT-0\tA\nH-2\t-1\tc\nT-2\tC\n")


def test_empty_hypothesis_is_kept():
    hypotheses, _ = parse_generate_output("H-0\t-1.5\t\nT-0\tA\n")
    assert hypotheses == [""]


def test_moses_detokenisation_inverts_tokenisation():
    """Exact, apart from Moses' one known loss here: a word-internal '&' ('AT&T') comes back spaced."""
    raw = english_segments(2000)
    round_trip = moses_detokenize(moses_tokenize(raw, "en"), "en")
    assert [line.replace("AT & T", "AT&T") for line in round_trip] == raw
    assert any("AT & T" in line for line in round_trip) and any("'" in line for line in round_trip)
    assert not any("&apos;" in line or "&quot;" in line or "&amp;" in line for line in round_trip)


def test_moses_detokenisation_inverts_tokenisation_on_real_segments():
    """Round trip on TED talks' English; known Moses losses (quotes, '...', 'R&D') keep it below 100%."""
    raw = real_english_segments()
    round_trip = moses_detokenize(moses_tokenize(raw, "en"), "en")
    exact = sum(a == b for a, b in zip(raw, round_trip))
    assert len(raw) == 1433 and exact / len(raw) > 0.97
    assert not any("&apos;" in line or "&quot;" in line for line in round_trip)


def test_binarised_count_reads_fairseq_index(tmp_path):
    """Written with fairseq's own builder; the reversed pair name (en-de) serves de->en too."""
    import torch
    from fairseq.data import Dictionary, indexed_dataset

    dictionary = Dictionary()
    for word in ("a", "b"):
        dictionary.add_symbol(word)
    for lang in ("de", "en"):
        dictionary.save(str(tmp_path / f"dict.{lang}.txt"))
        prefix = tmp_path / f"test.en-de.{lang}"
        builder = indexed_dataset.make_builder(f"{prefix}.bin", "mmap", vocab_size=len(dictionary))
        for length in range(1, 8):
            builder.add_item(torch.full((length,), dictionary.index("a"), dtype=torch.int32))
        builder.finalize(f"{prefix}.idx")
    assert binarised_sentence_count(tmp_path, "test", "de", "en") == 7


def test_paper_profile_says_where_a_perfect_system_tops_out(tmp_path):
    """Perfect paper-profile hypotheses (the prepared references themselves) against cased raw references with
    curly apostrophes, as in TEDX.dev2012: the detokeniser rejoins the apostrophes, and the score a perfect
    system gets is reported beside the sacreBLEU score."""
    raw = ["It’s a test, isn’t it?", "We don’t know what Anna’s “plan” means.", "The kids’ toys are here."] * 5
    tokenizer = MosesTokenizer(lang="en")
    prepared = [tokenizer.tokenize(line, return_str=True, escape=True).lower() for line in raw]
    (tmp_path / "raw.en").write_text("\n".join(raw) + "\n", encoding="utf-8")
    settings = replace(config(tmp_path, "paper"), raw_references=tmp_path / "raw.en")
    scores = score_generation(settings, generate_output([pieces(p) for p in prepared], [pieces(p) for p in prepared]))
    detok = (tmp_path / "test.hyp.detok").read_text(encoding="utf-8").splitlines()
    assert detok[:3] == [
        "it’s a test, isn’t it?",
        "we don’t know what anna’s “plan” means.",
        "the kids ’ toys are here.",
    ]
    sacre = scores["sacrebleu"]
    assert sacre["score"] == pytest.approx(cli_bleu(tmp_path, detok, raw), abs=1e-4)
    assert sacre["perfect_system"] == pytest.approx(sacre["score"], abs=1e-9) and sacre["score"] < 100
    assert f"a perfect paper-profile system scores {sacre['score']:.2f} here" in sacre["compare_with"]
    assert f"a perfect paper-profile system scores {sacre['score']:.2f} here" in summary(
        {**scores, "n_sentences": len(raw)}, tmp_path / "bleu.json"
    )
    assert cli_bleu(tmp_path, detok, raw, "-lc") > cli_bleu(tmp_path, moses_detokenize(prepared, "en"), raw, "-lc")
