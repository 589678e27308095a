"""The user path through the real CLIs: preprocess -> teacher -> KD student -> generate -> sacrebleu."""

import json
import math
import re
import subprocess

import pytest
import torch

import lskd_fairseq  # noqa: F401  (allow-lists what fairseq checkpoints need)
from environment import BIN_DIR
from fixtures.fairseq_runs import (
    STUDENT,
    TINY_TRANSFORMER,
    TRAINING,
    build_training,
    fairseq_cli,
    first_batch,
    logged_updates,
    preprocess,
    train,
)
from lskd.reference import distillation_terms as specified_terms
from lskd_nmt.toy_corpus import write_corpus

pytestmark = pytest.mark.slow  # fairseq-train/-generate runs: deselect with -m "not slow"


@pytest.fixture(scope="module")
def student_run(tmp_path_factory, toy_bin, teacher_checkpoint):
    save_dir = tmp_path_factory.mktemp("student")
    result = train(toy_bin, save_dir, *STUDENT, "--teacher-path", teacher_checkpoint, "--max-epoch", "2")
    return save_dir, result


def float64_valid_kd_kl(toy_bin, teacher_checkpoint, student_checkpoint) -> float:
    """T²·Σ_v q_v·log(q_v / p_v^T) over every target token of the valid subset, per token and in bits, from the
    loss core's specification: the student checkpoint against the teacher, in float64."""
    temperature = float(STUDENT[STUDENT.index("--kd-temperature") + 1])
    task, model, _ = build_training(toy_bin, *STUDENT, "--teacher-path", teacher_checkpoint)
    model.load_state_dict(torch.load(student_checkpoint, map_location="cpu", weights_only=True)["model"])
    model.eval()
    task.load_dataset("valid")
    total, tokens = 0.0, 0
    for sample in task.get_batch_iterator(task.dataset("valid"), max_tokens=600).next_epoch_itr(shuffle=False):
        with torch.no_grad():
            student = model(**sample["net_input"])[0].double()
            teacher = task.teacher(**sample["net_input"])[0].double()
        keep = sample["target"].ne(task.target_dictionary.pad())
        total += specified_terms(student[keep], temperature, teacher_logits=teacher[keep]).kl.sum().item()
        tokens += int(keep.sum())
    return total / tokens / math.log(2)


def test_student_trains_and_logs_kd_loss(student_run, toy_bin, teacher_checkpoint):
    save_dir, result = student_run
    valid = [json.loads(m) for m in re.findall(r"\{[^{}]*\"valid_kd_loss\"[^{}]*\}", result.stdout)]
    assert valid, "validation must report kd_loss"
    last_epoch = float64_valid_kd_kl(toy_bin, teacher_checkpoint, save_dir / "checkpoint_last.pt")
    assert float(valid[-1]["valid_kd_loss"]) == pytest.approx(last_epoch, abs=1.1e-3)  # logged to 3 decimals
    updates = logged_updates(result.stdout)
    assert updates and all("kd_loss" in u for u in updates)
    assert (save_dir / "checkpoint_best.pt").exists()


def test_student_checkpoint_holds_no_teacher(student_run, teacher_checkpoint, toy_bin):
    save_dir, _ = student_run
    state = torch.load(save_dir / "checkpoint_last.pt", map_location="cpu", weights_only=True)
    teacher_state = torch.load(teacher_checkpoint, map_location="cpu", weights_only=True)
    task, model, _ = build_training(toy_bin, *STUDENT)
    assert set(state["model"]) == set(model.state_dict()) == set(teacher_state["model"])
    assert state.get("criterion") is None
    optimizer_params = sum(len(group["params"]) for group in state["last_optimizer_state"]["param_groups"])
    assert optimizer_params == sum(1 for p in model.parameters() if p.requires_grad)


def test_generate_and_sacrebleu_score_the_student(student_run, toy_bin, toy_text, tmp_path):
    save_dir, _ = student_run
    generated = fairseq_cli(
        "fairseq-generate",
        toy_bin,
        "--path",
        save_dir / "checkpoint_best.pt",
        "--gen-subset",
        "test",
        "--beam",
        "2",
        "--batch-size",
        "32",
    )
    hypotheses = {}
    for line in generated.stdout.splitlines():
        if line.startswith("H-"):
            key, _, text = line.split("\t")
            hypotheses[int(key[2:])] = text
    references = (toy_text / "test.tgt").read_text().splitlines()
    assert sorted(hypotheses) == list(range(len(references)))
    (tmp_path / "hyp.txt").write_text("".join(hypotheses[i] + "\n" for i in sorted(hypotheses)))
    # fairseq-generate's own BLEU4 is an independent implementation of the same corpus BLEU on space-separated
    # tokens without smoothing: sacreBLEU with those settings must agree to the two decimals fairseq prints.
    fairseq_bleu = float(re.search(r"BLEU4 = (\d+\.\d+)", generated.stdout).group(1))
    plain = ["--tokenize", "none", "--smooth-method", "none", "-w", "4"]
    scored = subprocess.run(
        [str(BIN_DIR / "sacrebleu"), str(toy_text / "test.tgt"), "-i", str(tmp_path / "hyp.txt"), "-m", "bleu", "-b"]
        + plain,
        capture_output=True,
        text=True,
        check=True,
    )
    assert float(scored.stdout) == pytest.approx(fairseq_bleu, abs=0.0051)


def test_teacher_logits_under_kd_equal_generate_scoring_path(toy_bin, teacher_checkpoint):
    """The teacher the KD task runs must score the gold targets exactly as fairseq-generate does."""
    scored = fairseq_cli(
        "fairseq-generate",
        toy_bin,
        "--path",
        teacher_checkpoint,
        "--score-reference",
        "--gen-subset",
        "valid",
        "--batch-size",
        "16",
    )
    generate_scores = {}
    for line in scored.stdout.splitlines():
        if line.startswith("P-"):
            key, values = line.split("\t")
            generate_scores[int(key[2:])] = [float(v) for v in values.split()]
    task, _, _ = build_training(toy_bin, *STUDENT, "--teacher-path", teacher_checkpoint)
    sample = first_batch(task)
    task.attach_teacher_outputs(sample, task.teacher)
    lprobs = torch.log_softmax(sample["teacher"]["logits"].float(), -1) / torch.log(torch.tensor(2.0))
    gold = lprobs.gather(-1, sample["target"].unsqueeze(-1)).squeeze(-1)
    pad = task.target_dictionary.pad()
    for row, sentence_id in enumerate(sample["id"].tolist()):
        ours = gold[row][sample["target"][row].ne(pad)].tolist()
        assert ours == pytest.approx(generate_scores[sentence_id], abs=1e-4)


@pytest.mark.slow
def test_two_process_gloo_run_matches_update_freq_two(toy_bin, teacher_checkpoint, tmp_path):
    common = [
        *STUDENT,
        "--teacher-path",
        teacher_checkpoint,
        "--max-update",
        "3",
        "--dropout",
        "0",
        "--ddp-backend",
        "legacy_ddp",
        "--no-save",
        "--disable-validation",
    ]
    single = train(toy_bin, tmp_path / "single", *common, "--update-freq", "2")
    port = 29500 + (hash(str(tmp_path)) % 1000)
    ranks = [
        subprocess.Popen(
            [
                str(BIN_DIR / "fairseq-train"),
                str(toy_bin),
                "--user-dir",
                str(lskd_fairseq.__path__[0]),
                *map(str, build_args(common, tmp_path / "ddp")),
                "--distributed-backend",
                "gloo",
                "--distributed-no-spawn",
                "--device-id",
                "0",
                "--distributed-init-method",
                f"tcp://127.0.0.1:{port}",
                "--distributed-world-size",
                "2",
                "--distributed-rank",
                str(rank),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for rank in range(2)
    ]
    outputs = [rank.communicate(timeout=300) for rank in ranks]
    assert all(rank.returncode == 0 for rank in ranks), outputs[0][1][-2000:]
    single_losses = [float(u["loss"]) for u in logged_updates(single.stdout)]
    ddp_losses = [float(u["loss"]) for u in logged_updates(outputs[0][0])]
    assert len(single_losses) == len(ddp_losses) == 3
    assert ddp_losses == pytest.approx(single_losses, rel=1e-3)


def build_args(common, save_dir):
    return [*TINY_TRANSFORMER, *TRAINING, "--save-dir", save_dir, *common]


@pytest.fixture(scope="module")
def other_dictionary_teacher(tmp_path_factory):
    text = tmp_path_factory.mktemp("other-text")
    write_corpus(text, train=300, valid=20, test=20, seed=11)
    (text / "train.tgt").write_text((text / "train.tgt").read_text() + "zebra quokka\n" * 50)
    (text / "train.src").write_text((text / "train.src").read_text() + "a zebra\n" * 50)
    data = preprocess(text, tmp_path_factory.mktemp("other-bin"))
    save_dir = tmp_path_factory.mktemp("other-teacher")
    train(data, save_dir, "--criterion", "label_smoothed_teacher", "--max-update", "2", "--disable-validation")
    return save_dir / "checkpoint_last.pt"


@pytest.mark.parametrize(
    "arguments, message",
    [
        (["--teacher-path", "{missing}"], "does not exist"),
        (["--teacher-path", "{other}"], "dictionary"),
        (["--teacher-path", "{teacher}", "--kd-temperature", "0"], "KD temperature must be > 0, got 0.0"),
        (["--teacher-path", "{teacher}", "--kd-temperature", "-2"], "got -2.0"),
        (["--teacher-path", "{teacher}", "--kd-weight", "1.5"], "KD weight must be in [0, 1], got 1.5"),
        (["--teacher-path", "{teacher}", "--label-smoothing", "1.0"], "label smoothing must be in [0, 1), got 1.0"),
    ],
)
def test_bad_input_is_one_line_error_before_writing(
    arguments, message, toy_bin, teacher_checkpoint, other_dictionary_teacher, tmp_path
):
    paths = {"missing": tmp_path / "nope.pt", "other": other_dictionary_teacher, "teacher": teacher_checkpoint}
    arguments = [a.format(**paths) for a in arguments]
    save_dir = tmp_path / "save"
    result = train(
        toy_bin,
        save_dir,
        "--task",
        "translation_kd",
        "--criterion",
        "word_kd",
        *arguments,
        "--max-epoch",
        "1",
        check=False,
    )
    assert result.returncode != 0
    errors = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(errors) == 1 and errors[0].startswith("lskd error:"), result.stderr[-2000:]
    assert message in errors[0]
    assert not save_dir.exists() or not any(save_dir.iterdir())
