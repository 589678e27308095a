"""lskd-evaluate against raw release references and re-scoring with --hypotheses (no decoding).

Expected numbers and signatures come from sacreBLEU's command line, run as a subprocess on the files.
"""

import json
import random
import subprocess

import pytest

import lskd_nmt.evaluate as evaluate
from fixtures.iwslt_release import MAX_LINES
from lskd_nmt.evaluate import main, score_generation
from lskd_nmt.nmt_profiles import TextNormaliser, profile_named
from sacrebleu_cli import SACREBLEU_CLI
from system_outputs import config, degrade, english_segments, generate_output, pieces


def cli_result(reference, hypotheses, *options) -> dict:
    """sacreBLEU's JSON output, as ``sacrebleu REF -i HYP`` prints it."""
    result = subprocess.run(
        [str(SACREBLEU_CLI), str(reference), "-i", str(hypotheses), "-w", "6", *options],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(result.stdout)


def write(path, lines):
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def test_paper_detok_flavour_is_sacrebleu_cli_on_raw_references(tmp_path):
    raw = english_segments(300)
    rng = random.Random(3)
    normalise = TextNormaliser(profile_named("paper"), "en")
    prepared = [normalise(line) for line in raw]
    hypotheses = [normalise(degrade(line, rng)) for line in raw]
    raw_file = write(tmp_path / "raw.en", raw)
    settings = config(tmp_path, "paper")
    settings.raw_references = raw_file
    scores = score_generation(settings, generate_output([pieces(h) for h in hypotheses], [pieces(r) for r in prepared]))
    assert (tmp_path / "test.ref.detok").read_text(encoding="utf-8").splitlines() == raw
    expected = cli_result(raw_file, tmp_path / "test.hyp.detok")
    assert scores["sacrebleu"]["score"] == pytest.approx(expected["score"], abs=1e-4)
    assert scores["sacrebleu"]["signature"] == expected["signature"] and "case:mixed" in expected["signature"]
    lowercased = cli_result(raw_file, tmp_path / "test.hyp.detok", "-lc")["score"]
    assert scores["sacrebleu"]["score"] < lowercased - 1, "lowercased hypotheses must lose against cased references"
    assert str(raw_file) in scores["sacrebleu"]["text"] and scores["raw_references"] == str(raw_file)


def test_paper_detok_flavour_without_raw_references_says_case_lc(tmp_path):
    raw = english_segments(200)
    normalise = TextNormaliser(profile_named("paper"), "en")
    rng = random.Random(4)
    text = generate_output(
        [pieces(normalise(degrade(line, rng))) for line in raw], [pieces(normalise(line)) for line in raw]
    )
    scores = score_generation(config(tmp_path, "paper"), text)
    expected = cli_result(tmp_path / "test.ref.detok", tmp_path / "test.hyp.detok", "-lc")
    assert scores["sacrebleu"]["signature"] == expected["signature"] and "case:lc" in expected["signature"]
    assert scores["sacrebleu"]["score"] == pytest.approx(expected["score"], abs=1e-4)


def no_decoding(*args, **kwargs):
    raise AssertionError(f"re-scoring started a process: {args}")


# The re-scoring tests read a folder the data-prep scripts made (the session's ``prepared`` fixture).
needs_data_prep = pytest.mark.slow


@pytest.fixture
def kept_log(paper_de_en, tmp_path):
    """A fairseq-generate log of the prepared test split: hypotheses are the references with words dropped."""
    rng = random.Random(5)
    references = (paper_de_en / "subword" / "test.de").read_text(encoding="utf-8").splitlines()
    hypotheses = [" ".join(p for p in line.split() if rng.random() > 0.1) for line in references]
    return write(tmp_path / "generate-test.txt", generate_output(hypotheses, references).splitlines()), hypotheses


def rescore(paper_de_en, tmp_path, hypotheses_file, monkeypatch, capsys):
    monkeypatch.setattr(evaluate.subprocess, "Popen", no_decoding)
    monkeypatch.setattr(evaluate.subprocess, "run", no_decoding)
    out = tmp_path / "run" / "bleu.json"
    main(
        [
            "--hypotheses",
            str(hypotheses_file),
            str(paper_de_en / "bin"),
            "--source-lang",
            "en",
            "--target-lang",
            "de",
            "--out",
            str(out),
        ]
    )
    monkeypatch.undo()  # the checks below run sacreBLEU's command line
    return json.loads(out.read_text()), out.parent, capsys.readouterr().out


@needs_data_prep
def test_rescoring_a_kept_log_needs_no_checkpoint_and_no_decoding(paper_de_en, kept_log, tmp_path, monkeypatch, capsys):
    log, _ = kept_log
    scores, run_dir, printed = rescore(paper_de_en, tmp_path, log, monkeypatch, capsys)
    raw = paper_de_en / "raw" / "test.de"
    assert scores["raw_references"] == str(raw) and scores["references"] == str(paper_de_en / "test.de")
    assert scores["n_sentences"] == MAX_LINES and scores["checkpoint"] is None
    expected = cli_result(raw, run_dir / "test.hyp.detok")
    assert scores["sacrebleu"]["score"] == pytest.approx(expected["score"], abs=1e-4)
    assert scores["sacrebleu"]["signature"] == expected["signature"]
    tokenized = cli_result(paper_de_en / "test.de", run_dir / "test.hyp.tok", "-tok", "none", "-lc")
    assert scores["tokenized_bleu"]["score"] == pytest.approx(tokenized["score"], abs=1e-4)
    assert "paper" in scores["tokenized_bleu"]["compare_with"] and "BLEU4" in scores["generate_bleu4"]
    assert f"sacrebleu      {expected['score']:6.2f}" in printed and "BLEU4" in printed


@needs_data_prep
def test_rescoring_plain_hypothesis_lines_gives_the_same_scores(paper_de_en, kept_log, tmp_path, monkeypatch, capsys):
    log, hypotheses = kept_log
    from_log, _, _ = rescore(paper_de_en, tmp_path / "a", log, monkeypatch, capsys)
    plain, _, _ = rescore(paper_de_en, tmp_path / "b", write(tmp_path / "hyp.txt", hypotheses), monkeypatch, capsys)
    for flavour in ("sacrebleu", "tokenized_bleu"):
        assert plain[flavour] == from_log[flavour]


@needs_data_prep
def test_no_checkpoint_and_no_hypotheses_is_one_line(paper_de_en, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(
            [str(paper_de_en / "bin"), "--source-lang", "en", "--target-lang", "de", "--out", str(tmp_path / "b.json")]
        )
    assert exit_.value.code == 2
    assert "--hypotheses" in capsys.readouterr().err and not (tmp_path / "b.json").exists()
