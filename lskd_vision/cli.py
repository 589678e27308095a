"""``lskd-vision train-teacher|train-student``: every flag defaults to the preset named after the
dataset and role (see ``lskd_vision.config.PRESETS``); a flag given on the command line wins.
``lskd-vision visualize``: the paper's Fig. 1 and diffusion measures for trained checkpoints."""
import argparse
import sys
from pathlib import Path

from lskd.errors import InvalidConfig
from lskd_vision.config import PRESETS, build_config
from lskd_vision.data import DATASETS
from lskd.errors import DataError
from lskd_vision.models import ARCHITECTURES


def _common(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument
    add("--dataset", required=True, choices=DATASETS)
    add("--data", type=Path, help="dataset folder (ImageNet: train/ and val/<wnid>/; CUB: CUB_200_2011/); not for digits")
    add("--arch", help=f"one of {', '.join(ARCHITECTURES)} (default: the dataset's paper model)")
    add("--out", type=Path, required=True, help="run folder: checkpoints, metrics.csv, metrics.json")
    add("--preset", choices=sorted(PRESETS), help="schedule to start from (default: DATASET-ROLE)")
    add("--epochs", type=int)
    add("--batch-size", type=int, help="per process; global batch = this × number of processes")
    add("--lr", type=float)
    add("--momentum", type=float)
    add("--weight-decay", type=float)
    add("--lr-step", type=int, help="multiply the lr by --lr-gamma every this many epochs")
    add("--lr-gamma", type=float)
    add("--warmup-epochs", type=int, help="per-iteration linear warm-up epochs")
    add("--init", type=Path, help="start from these weights (e.g. the ImageNet teacher, or a torchvision .pth)")
    add("--crop-size", type=int)
    add("--resize-size", type=int, help="evaluation resize before the centre crop")
    add("--workers", type=int)
    add("--seed", type=int)
    add("--device", choices=("auto", "cpu", "cuda"))
    add("--threads", type=int, help="CPU threads per process (digits preset: 1, tiny models only lose from more)")
    add("--amp", action=argparse.BooleanOptionalAction, help="mixed precision (fp16 on CUDA, bf16 on CPU)")
    add("--channels-last", action=argparse.BooleanOptionalAction)
    add("--sync-bn", action=argparse.BooleanOptionalAction, help="SyncBatchNorm under DDP")
    add("--resume", action="store_true", help="continue from OUT/checkpoint.pth when it exists")
    add("--stop-after", type=int, help="stop after this many epochs in this process (resume later)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lskd-vision", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    teacher = commands.add_parser("train-teacher", help="train a (label-smoothed) teacher")
    _common(teacher)
    teacher.add_argument("--alpha", type=float, help="label smoothing alpha (paper convention alpha/K); default 0")
    student = commands.add_parser("train-student", help="distil a student from a teacher checkpoint")
    _common(student)
    student.add_argument("--teacher", type=Path, required=True, help="teacher checkpoint (ours or official .pth.tar)")
    student.add_argument("--teacher-arch", help="teacher architecture when the checkpoint does not record it")
    student.add_argument("--temperature", "-T", type=float, required=True)
    student.add_argument("--kd-weight", type=float, help="weight of the KD term; 1 (default) = pure KD as the paper")
    _visualize(commands.add_parser("visualize", help="Fig. 1-style plot and diffusion measures of checkpoints"))
    return parser


def _visualize(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument
    add("--checkpoints", nargs="+", required=True, metavar="NAME=CKPT",
        help="models to compare, one figure row each, in this order (split at the first '=')")
    add("--dataset", required=True, choices=DATASETS)
    add("--data", type=Path, help="dataset folder as for training; not for digits")
    add("--classes", nargs=3, type=int, metavar=("TARGET", "SIMILAR", "CONTROL"),
        help="classifier indices: a target, a semantically similar class, a dissimilar one "
             "(default: imagenet 266 267 833, cub 28 29 16, digits 3 9 6)")
    add("--out", type=Path, required=True, help="folder for diffusion.png and diffusion.json")
    add("--arch", nargs="+", help="architecture of checkpoints that do not record one (official .pth.tar): "
                                  "one for all, or one per checkpoint; overrides the recorded one")
    add("--max-train-per-class", type=int, default=150, help="first N training images of each class (paper: 150)")
    add("--max-valid-per-class", type=int, default=50, help="first N validation images of each class (paper: 50)")
    add("--batch-size", type=int, default=128)
    add("--device", choices=("auto", "cpu", "cuda"), default="auto")
    add("--workers", type=int, help="data-loading processes (default 8; 0 for digits)")
    add("--crop-size", type=int, default=224, help="evaluation centre crop (ImageNet, CUB)")
    add("--resize-size", type=int, default=256, help="evaluation resize before the crop (ImageNet, CUB)")


def _run_visualize(args: argparse.Namespace) -> None:
    from lskd_vision.visualize import VisualizeConfig, visualize  # torch import deferred until the flags parse

    settings = {key: value for key, value in vars(args).items() if key != "command"}
    try:
        outputs = visualize(VisualizeConfig(**settings))
    except (InvalidConfig, DataError) as error:
        sys.exit(f"lskd-vision: error: {error}")
    print(f"lskd-vision: wrote {outputs.png} and {outputs.json}")


def main(argv=None) -> None:
    args = build_parser().parse_args(argv)
    if args.command == "visualize":
        _run_visualize(args)
        return
    role = "teacher" if args.command == "train-teacher" else "student"
    from lskd_vision.trainer import plan_run, train  # torch import deferred until the flags parse

    try:
        config = build_config(role, args.dataset, args.preset, vars(args))
        plan = plan_run(config)
    except (InvalidConfig, DataError) as error:
        sys.exit(f"lskd-vision: error: {error}")
    train(plan)


if __name__ == "__main__":
    main()
