"""``lskd-vision train-teacher|train-student``: every flag defaults to the preset named after the
dataset and role (see ``lskd_vision.config.PRESETS``); a flag given on the command line wins.
``lskd-vision visualize``: the paper's Fig. 1 and diffusion measures for trained checkpoints."""

import dataclasses
import textwrap

from lskd.checks import DIVERGENCES
from lskd.cpu_kernel import KD_KERNELS
from lskd_tools.cli import DEVICES, ArgumentParser, add_options, config_from, console_script
from lskd_vision.config import PRESETS, TrainConfig, build_config
from lskd_vision.data import DATASETS
from lskd_vision.models import ARCHITECTURES
from lskd_vision.visualize import VisualizeConfig, visualize

PROG = "lskd-vision"
FROM_PRESET = "the preset's, see below"
TEACHER_ONLY = ("alpha",)
STUDENT_ONLY = (
    "teacher",
    "teacher_arch",
    "temperature",
    "kd_weight",
    "kd_kernel",
    "kd_divergence",
    "jsd_beta",
    "skew",
    "teacher_temperature",
    "logit_standardization",
)

TRAIN_OPTIONS = {
    "dataset": dict(help="dataset to train on", choices=DATASETS),
    "arch": dict(
        help=f"one of {', '.join(ARCHITECTURES)}", required=False, default_text="the dataset's paper model, see below"
    ),
    "out": dict(help="run folder: checkpoints, metrics.csv, metrics.json"),
    "data": dict(
        help="dataset folder (ImageNet: train/ and val/<wnid>/; CUB: CUB_200_2011/); not for digits",
        default_text="none (digits)",
    ),
    "epochs": dict(help="training epochs"),
    "batch_size": dict(help="per process; global batch = this × number of processes"),
    "lr": dict(help="initial learning rate"),
    "momentum": dict(help="SGD momentum"),
    "weight_decay": dict(help="SGD weight decay"),
    "lr_step": dict(help="multiply the lr by --lr-gamma every this many epochs"),
    "lr_gamma": dict(help="learning-rate decay factor"),
    "warmup_epochs": dict(help="per-iteration linear warm-up epochs"),
    "alpha": dict(help="label smoothing alpha (paper convention alpha/K)"),
    "temperature": dict(help="KD temperature", flags=("--temperature", "-T"), required=True),
    "kd_weight": dict(help="weight of the KD term; 1 = pure KD as the paper"),
    "kd_kernel": dict(
        help="KD loss passes: auto = the fused CPU row kernel for float32 CPU logits where it builds; eager; "
        "cpu = require it",
        choices=KD_KERNELS,
        default_text="auto",
    ),
    "kd_divergence": dict(
        help="what the KD term measures between teacher and student (docs/transfers.md)", choices=DIVERGENCES
    ),
    "jsd_beta": dict(help="jsd: teacher weight beta in (0, 1) of the mixture (GKD); 0.5 = symmetric JSD"),
    "skew": dict(help="skew_kl, skew_reverse_kl: skew in (0, 1) (DistiLLM)"),
    "teacher_temperature": dict(help="the teacher's temperature", default_text="--temperature"),
    "logit_standardization": dict(help="z-score each row's logits before its temperature (Sun et al., 2024)"),
    "teacher": dict(help="teacher checkpoint (ours or official .pth.tar)", required=True),
    "teacher_arch": dict(
        help="teacher architecture when the checkpoint does not record it", default_text="the recorded one"
    ),
    "init": dict(
        help="start from these weights (e.g. the ImageNet teacher, or a torchvision .pth)",
        default_text="random weights",
    ),
    "crop_size": dict(help="training and evaluation crop"),
    "resize_size": dict(help="evaluation resize before the centre crop"),
    "workers": dict(help="data-loading processes"),
    "seed": dict(help="seed of the weights and the data order"),
    "device": dict(help="where the model runs: auto picks cuda when a GPU is visible", choices=DEVICES),
    "threads": dict(help="CPU threads per process (tiny models only lose from more)"),
    "amp": dict(help="mixed precision (fp16 on CUDA, bf16 on CPU)"),
    "channels_last": dict(help="channels-last memory format"),
    "sync_bn": dict(help="SyncBatchNorm under DDP"),
    "resume": dict(help="continue from OUT/checkpoint.pth when it exists"),
    "stop_after": dict(help="stop after this many epochs in this process (resume later)"),
}

VISUALIZE_OPTIONS = {
    "checkpoints": dict(
        metavar="NAME=CKPT", help="models to compare, one figure row each, in this order (split at the first '=')"
    ),
    "dataset": dict(help="dataset of the checkpoints", choices=DATASETS),
    "out": dict(help="folder for diffusion.png and diffusion.json"),
    "data": dict(help="dataset folder as for training; not for digits", default_text="none (digits)"),
    "classes": dict(
        nargs=3,
        metavar=("TARGET", "SIMILAR", "CONTROL"),
        help="classifier indices: a target, a semantically similar class, a dissimilar one",
        default_text=", ".join(
            f"{name} {' '.join(map(str, c))}" for name, c in ((n, s.fig1_classes) for n, s in DATASETS.items())
        ),
    ),
    "arch": dict(
        help="architecture of checkpoints that do not record one (official .pth.tar): one for all, or "
        "one per checkpoint; overrides the recorded one",
        default_text="the recorded one",
    ),
    "max_train_per_class": dict(help="first N training images of each class (paper: 150)"),
    "max_valid_per_class": dict(help="first N validation images of each class (paper: 50)"),
    "batch_size": dict(help="images per forward pass"),
    "device": dict(help="where the models run: auto picks cuda when a GPU is visible", choices=DEVICES),
    "workers": dict(
        help="data-loading processes",
        default_text=", ".join(f"{name} {n}" for name, n in ((n, s.workers) for n, s in DATASETS.items())),
    ),
    "crop_size": dict(help="evaluation centre crop (ImageNet, CUB)"),
    "resize_size": dict(help="evaluation resize before the crop (ImageNet, CUB)"),
}


def _defaults_epilog() -> str:
    """What a flag not given takes: the preset's value, else the base settings'."""
    base = {f.name: f.default for f in dataclasses.fields(TrainConfig) if f.default is not dataclasses.MISSING}

    def line(name: str, values: dict) -> str:
        text = ", ".join(f"{key}={value}" for key, value in values.items())
        return textwrap.fill(text, width=110, initial_indent=f"  {name}: ", subsequent_indent="    ")

    lines = [
        "defaults: a flag not given takes the preset's value (--preset, default DATASET-ROLE), else the base",
        "setting; --arch defaults to the dataset's paper model.",
        line("base", base),
    ]
    lines += [line(name, values) for name, values in PRESETS.items()]
    archs = {f"{name}-{role}": arch for name, spec in DATASETS.items() for role, arch in spec.archs.items()}
    lines.append(line("arch", archs))
    return "\n".join(lines)


def _train_parser(commands, name: str, help: str, skip: tuple) -> None:
    parser = commands.add_parser(name, help=help, description=help, epilog=_defaults_epilog())
    parser.add_argument("--preset", choices=sorted(PRESETS), help="schedule to start from (default: DATASET-ROLE)")
    add_options(parser, TrainConfig, skip=("role", *skip), options=TRAIN_OPTIONS, unset_default=FROM_PRESET)


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(prog=PROG, description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    _train_parser(commands, "train-teacher", "train a (label-smoothed) teacher", STUDENT_ONLY)
    _train_parser(commands, "train-student", "distil a student from a teacher checkpoint", TEACHER_ONLY)
    visualize = commands.add_parser("visualize", help="Fig. 1-style plot and diffusion measures of checkpoints")
    add_options(visualize, VisualizeConfig, options=VISUALIZE_OPTIONS)
    return parser


@console_script(PROG)
def main(argv=None) -> None:
    args = build_parser().parse_args(argv)
    if args.command == "visualize":
        outputs = visualize(config_from(VisualizeConfig, args))
        print(f"{PROG}: wrote {outputs.png} and {outputs.json}")
        return
    from lskd_vision.trainer import plan_run, train  # the trainer's imports wait until the flags parse

    role = "teacher" if args.command == "train-teacher" else "student"
    train(plan_run(build_config(role, args.dataset, args.preset, vars(args))))


if __name__ == "__main__":
    main()
