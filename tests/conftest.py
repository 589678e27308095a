"""Shared fixtures: a tiny binarised toy corpus and a tiny label-smoothed teacher trained through the CLIs."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

import lskd_fairseq
from lskd.toy_corpus import write_corpus

BIN_DIR = Path(sys.executable).parent
PLUGIN_DIR = str(Path(lskd_fairseq.__file__).parent)
SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"

TINY_TRANSFORMER = [
    "--arch", "transformer", "--share-all-embeddings",
    "--encoder-layers", "1", "--decoder-layers", "1",
    "--encoder-embed-dim", "32", "--decoder-embed-dim", "32",
    "--encoder-ffn-embed-dim", "64", "--decoder-ffn-embed-dim", "64",
    "--encoder-attention-heads", "2", "--decoder-attention-heads", "2",
]
TRAINING = [
    "--optimizer", "adam", "--lr", "0.003", "--lr-scheduler", "inverse_sqrt", "--warmup-updates", "30",
    "--max-tokens", "1500", "--seed", "1", "--no-epoch-checkpoints", "--no-progress-bar",
    "--log-format", "json", "--log-interval", "1", "--num-workers", "0", "--data-buffer-size", "0",
]


def fairseq_cli(tool: str, *args, check: bool = True) -> subprocess.CompletedProcess:
    """Run a fairseq console script of this environment with the plugin, the way users do."""
    command = [str(BIN_DIR / tool), *map(str, args)]
    if tool != "fairseq-preprocess":
        command += ["--user-dir", PLUGIN_DIR]
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    result = subprocess.run(command, capture_output=True, text=True, env=env)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(command)} failed ({result.returncode}):\n{result.stderr[-3000:]}")
    return result


def preprocess(text_dir: Path, dest: Path) -> Path:
    fairseq_cli(
        "fairseq-preprocess", "--source-lang", "src", "--target-lang", "tgt", "--joined-dictionary",
        "--trainpref", text_dir / "train", "--validpref", text_dir / "valid", "--testpref", text_dir / "test",
        "--destdir", dest, "--workers", "1",
    )
    return dest


def train(data: Path, save_dir: Path, *extra, check: bool = True) -> subprocess.CompletedProcess:
    return fairseq_cli("fairseq-train", data, *TINY_TRANSFORMER, *TRAINING, "--save-dir", save_dir, *extra,
                       check=check)


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
    """task, model and criterion exactly as fairseq-train builds them from these arguments."""
    from fairseq import options, tasks, utils
    from fairseq.dataclass.utils import convert_namespace_to_omegaconf

    parser = options.get_training_parser()
    args = options.parse_args_and_arch(
        parser, [str(data), "--user-dir", PLUGIN_DIR, *TINY_TRANSFORMER, *TRAINING, "--dropout", "0", *map(str, extra)]
    )
    cfg = convert_namespace_to_omegaconf(args)
    utils.set_torch_seed(cfg.common.seed)
    task = tasks.setup_task(cfg.task)
    model = task.build_model(cfg.model)
    criterion = task.build_criterion(cfg.criterion)
    return task, model, criterion


def first_batch(task, split: str = "valid"):
    task.load_dataset(split)
    iterator = task.get_batch_iterator(task.dataset(split), max_tokens=600, seed=1)
    return next(iter(iterator.next_epoch_itr(shuffle=False)))
