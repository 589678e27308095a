"""Shared fixtures: a tiny binarised toy corpus, a tiny label-smoothed teacher trained through the CLIs, and
generated release folders in the real IWSLT formats (``train.tags`` and the TED test-set XML files)."""

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import lskd.losses
import lskd_fairseq
from bench.fairseq_training import build_training as build_fairseq_training
from lskd import cpu_kernel
from lskd_nmt.toy_corpus import write_corpus
from release_fixtures import RUSSIAN_ENGLISH, TEST_SETS, make_archive, sentence_pairs, write_release
from repo_root import REPO
from script_runs import run_script

BIN_DIR = Path(sys.executable).parent
# torch's own hint for a refused checkpoint; lskd must never pass it on (it disables the safety check).
TORCH_UNSAFE_ADVICE = "weights_only" + "=False"
PLUGIN_DIR = str(Path(lskd_fairseq.__file__).parent)

TINY_TRANSFORMER = [
    "--arch",
    "transformer",
    "--share-all-embeddings",
    "--encoder-layers",
    "1",
    "--decoder-layers",
    "1",
    "--encoder-embed-dim",
    "32",
    "--decoder-embed-dim",
    "32",
    "--encoder-ffn-embed-dim",
    "64",
    "--decoder-ffn-embed-dim",
    "64",
    "--encoder-attention-heads",
    "2",
    "--decoder-attention-heads",
    "2",
]
TRAINING = [
    "--optimizer",
    "adam",
    "--lr",
    "0.003",
    "--lr-scheduler",
    "inverse_sqrt",
    "--warmup-updates",
    "30",
    "--max-tokens",
    "1500",
    "--seed",
    "1",
    "--no-epoch-checkpoints",
    "--no-progress-bar",
    "--log-format",
    "json",
    "--log-interval",
    "1",
    "--num-workers",
    "0",
    "--data-buffer-size",
    "0",
]


def pytest_configure(config):
    config.addinivalue_line(
        "markers",
        "slow: end to end, or training through the CLIs (recipes, demo, README block, "
        "DDP, data prep, clean-exit reproduction); -m 'not slow' is the fast layer",
    )


def fairseq_cli(tool: str, *args, check: bool = True, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run a console script of this environment with the plugin, the way users do (``script_runs``)."""
    if tool.startswith("fairseq-") and tool != "fairseq-preprocess":
        args = (*args, "--user-dir", PLUGIN_DIR)
    env = {**os.environ, "PYTHONWARNINGS": "ignore"} if env is None else env
    result = run_script(tool, *args, env=env)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(result.args)} failed ({result.returncode}):\n{result.stderr[-3000:]}")
    return result


def dump_teacher(data: Path, teacher: Path, out: Path, *extra, check: bool = True) -> subprocess.CompletedProcess:
    """``lskd-dump-teacher DATA --teacher-path TEACHER --out OUT EXTRA``, in batches of 700 tokens."""
    options = ["--teacher-path", teacher, "--out", out, "--max-tokens", 700]
    return fairseq_cli("lskd-dump-teacher", data, *options, *extra, check=check)


def preprocess(text_dir: Path, dest: Path) -> Path:
    fairseq_cli(
        "fairseq-preprocess",
        "--source-lang",
        "src",
        "--target-lang",
        "tgt",
        "--joined-dictionary",
        "--trainpref",
        text_dir / "train",
        "--validpref",
        text_dir / "valid",
        "--testpref",
        text_dir / "test",
        "--destdir",
        dest,
        "--workers",
        "1",
    )
    return dest


def train(data: Path, save_dir: Path, *extra, check: bool = True) -> subprocess.CompletedProcess:
    return fairseq_cli("fairseq-train", data, *TINY_TRANSFORMER, *TRAINING, "--save-dir", save_dir, *extra, check=check)


@pytest.fixture(scope="session")
def toy_text(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("toy-text")
    write_corpus(out, train=800, valid=80, test=80, seed=3)
    return out


@pytest.fixture(scope="session")
def toy_bin(tmp_path_factory, toy_text) -> Path:
    return preprocess(toy_text, tmp_path_factory.mktemp("toy-bin"))


@pytest.fixture(scope="session")
def teacher_checkpoint(tmp_path_factory, toy_bin) -> Path:
    save_dir = tmp_path_factory.mktemp("teacher")
    train(toy_bin, save_dir, "--criterion", "label_smoothed_teacher", "--label-smoothing", "0.1", "--max-epoch", "4")
    return save_dir / "checkpoint_best.pt"


def build_training(data: Path, *extra):
    """task, model and criterion exactly as fairseq-train builds them from these arguments (no dropout)."""
    return build_fairseq_training([data, *TINY_TRANSFORMER, *TRAINING, "--dropout", "0", *extra])


def first_batch(task, split: str = "valid"):
    task.load_dataset(split)
    iterator = task.get_batch_iterator(task.dataset(split), max_tokens=600, seed=1)
    return next(iter(iterator.next_epoch_itr(shuffle=False)))


PYTHON = Path(sys.executable)
MAX_LINES = 700  # of the generated de-en release's 1,703 training pairs and 740 test segments

# Pairs the paper profile's clean rule must drop (ratio > 1.5, empty side, > 175 tokens).
BAD_PAIRS = [
    ("Ja .", "Yes , I think that this is what we should have done a long time ago ."),
    ("", "An English line whose German side is empty ."),
    (" ".join(["wort"] * 180), " ".join(["word"] * 180)),
]
DE_EN_TEST_SIZES = {"TED.dev2010": 130, "TEDX.dev2012": 90, "TED.tst2010": 170, "TED.tst2011": 150, "TED.tst2012": 200}


@pytest.fixture(scope="session")
def de_en_release(tmp_path_factory):
    """A generated IWSLT 2014 de-en release folder; the clean rule's bad pairs sit inside the training talks."""
    pairs = sentence_pairs(1700, seed=12)
    tests = {name: sentence_pairs(size, seed=100 + n) for n, (name, size) in enumerate(DE_EN_TEST_SIZES.items())}
    return write_release(tmp_path_factory.mktemp("de-en"), "de-en", pairs[:600] + BAD_PAIRS + pairs[600:], tests)


@pytest.fixture(scope="session")
def en_ru_release(tmp_path_factory):
    """A generated IWSLT 2014 en-ru release folder (train.tags + the four TED test sets, no TEDX)."""

    def pairs(count, seed):  # (English, Russian): the pair's file names put English first
        return [(en, ru) for ru, en in sentence_pairs(count, seed, RUSSIAN_ENGLISH, openers=())]

    tests = {name: pairs(60 + 3 * n, 200 + n) for n, name in enumerate(TEST_SETS) if not name.startswith("TEDX")}
    return write_release(tmp_path_factory.mktemp("en-ru"), "en-ru", pairs(500, 20), tests).folder


def start_script(script, *args):
    return subprocess.Popen(
        ["bash", str(REPO / "data-prep" / script), *map(str, args)],
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={"LSKD_PYTHON": str(PYTHON), "PATH": "/usr/bin:/bin"},
    )


@pytest.fixture(scope="session")
def prepared(de_en_release, en_ru_release, tmp_path_factory):
    """The three preparations, run concurrently (each spends most of its time importing fairseq)."""
    folder = de_en_release.folder
    root = tmp_path_factory.mktemp("prep")
    archive = make_archive(folder, root / "de-en.tgz", "de-en")
    outs = {name: root / name for name in ("paper_de_en", "modern_de_en", "paper_en_ru")}
    jobs = {
        "paper_de_en": start_script(
            "prepare-iwslt14.sh",
            "--profile",
            "paper",
            "--out",
            outs["paper_de_en"],
            "--orig",
            folder,
            "--vocab-size",
            500,
            "--max-lines",
            MAX_LINES,
        ),
        "modern_de_en": start_script(
            "prepare-iwslt14.sh",
            "--profile",
            "modern",
            "--out",
            outs["modern_de_en"],
            "--archive",
            archive,
            "--sha256",
            hashlib.sha256(archive.read_bytes()).hexdigest(),
            "--direction",
            "de-en",
            "--vocab-size",
            500,
            "--max-lines",
            MAX_LINES,
        ),
        "paper_en_ru": start_script(
            "prepare-iwslt-en-ru.sh",
            "--profile",
            "paper",
            "--out",
            outs["paper_en_ru"],
            "--orig",
            en_ru_release,
            "--vocab-size",
            120,
        ),
    }
    for name, job in jobs.items():
        _, stderr = job.communicate()
        assert job.returncode == 0, f"{name}: {stderr}"
    return outs


@pytest.fixture
def paper_de_en(prepared):
    return prepared["paper_de_en"]


@pytest.fixture
def modern_de_en(prepared):
    return prepared["modern_de_en"]


@pytest.fixture
def paper_en_ru(prepared):
    return prepared["paper_en_ru"]


def without_write_override(command: list) -> list:
    """``command`` run so that folder permissions hold even for root (which writes anywhere): as root it
    runs without the capabilities that override them (``setpriv``); skipped where that is not possible."""
    if os.geteuid() != 0:
        return command
    if shutil.which("setpriv") is None:
        pytest.skip("running as root without setpriv: a read-only folder cannot be made read-only here")
    return ["setpriv", "--bounding-set=-dac_override,-dac_read_search,-fowner", *command]


def read_only(folder: Path) -> None:
    for path in [folder, *folder.rglob("*")]:
        path.chmod(path.stat().st_mode & ~0o222)


def require_row_kernel() -> None:
    """Skip, naming why, where the loss's compiled row kernel cannot be built (no C++ compiler, no ninja)."""
    module, reason = cpu_kernel._build()
    if module is None:
        pytest.skip(f"the row kernel does not build here: {reason}")


@pytest.fixture(params=["eager", "row-kernel"])
def loss_passes(request, monkeypatch):
    """Runs a test once with the loss's eager passes and once with the compiled row kernel for every input
    the kernel takes (float32 CPU rows; other inputs stay eager under the default ``auto``)."""
    if request.param == "row-kernel":
        require_row_kernel()
    original = lskd.losses.row_kernel

    def chosen(kernel, student, teacher_logits):
        if kernel == "auto":
            fits = cpu_kernel.inputs_fit(student, teacher_logits)
            kernel = "cpu" if request.param == "row-kernel" and fits else "eager"
        return original(kernel, student, teacher_logits)

    monkeypatch.setattr(lskd.losses, "row_kernel", chosen)
    return request.param
