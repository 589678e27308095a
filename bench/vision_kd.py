"""KD training step vs plain cross-entropy step (ResNet-50 teacher -> ResNet-18 student).

A KD step cannot cost less than a CE step plus one teacher forward, so the ratio
``t_kd / t_ce`` is compared with its limit ``1 + t_teacher / t_ce``; the goal is
``ratio <= 1.05 × limit`` (at most 5 % overhead beyond the teacher's forward pass). The steps timed are
``lskd_vision.engine.train_step`` and ``teacher_logits_for``, the code the trainer runs.

    python -m bench.vision_kd                 # CPU, small images, about a minute
    python -m bench.vision_kd --device cuda --batch-size 256 --image-size 224 --amp
"""

import argparse
import json
import statistics
from pathlib import Path

import torch

from bench.timing import device_name, timed
from lskd_vision.engine import Precision, StudentObjective, TeacherObjective, teacher_logits_for, train_step
from lskd_vision.models import build_model

GOAL = 1.05


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--teacher", default="resnet50")
    parser.add_argument("--student", default="resnet18")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--classes", type=int, default=1000)
    parser.add_argument("--temperature", type=float, default=3.0)
    parser.add_argument("--steps", type=int, default=3, help="timed steps per measurement")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1, help="CPU threads; 1 keeps timings steady on shared machines")
    parser.add_argument("--amp", action="store_true")
    parser.add_argument("--channels-last", action="store_true")
    parser.add_argument("--out-dir", type=Path, default=Path(__file__).parent)
    return parser.parse_args(argv)


def measure(args) -> dict:
    device = torch.device(args.device)
    if device.type == "cpu":
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    memory_format = torch.channels_last if args.channels_last else torch.contiguous_format
    teacher = (
        build_model(args.teacher, args.classes).to(device, memory_format=memory_format).eval().requires_grad_(False)
    )
    student = build_model(args.student, args.classes).to(device, memory_format=memory_format).train()
    optimizer = torch.optim.SGD(student.parameters(), lr=1e-3, momentum=0.9)
    scaler = torch.amp.GradScaler("cuda") if args.amp and device.type == "cuda" else None
    precision = Precision(device, enabled=args.amp, channels_last=args.channels_last)
    images = torch.randn(args.batch_size, 3, args.image_size, args.image_size)
    target = torch.randint(0, args.classes, (args.batch_size,))
    ce, kd = TeacherObjective(0.0), StudentObjective(args.temperature, 1.0)
    prepared = precision.prepare(images)

    calls = {
        "ce": lambda: train_step(student, None, ce, optimizer, scaler, precision, images, target),
        "kd": lambda: train_step(student, teacher, kd, optimizer, scaler, precision, images, target),
        "teacher": lambda: teacher_logits_for(teacher, prepared, precision),
    }
    for call in calls.values():
        timed(call, args.warmup, device)
    repeats = []
    for _ in range(args.repeats):  # interleaved so that drifting machine load hits all three alike
        seconds = {name: timed(call, args.steps, device) for name, call in calls.items()}
        ratio = seconds["kd"] / seconds["ce"]
        limit = 1 + seconds["teacher"] / seconds["ce"]
        repeats.append(
            {
                "t_ce_ms": 1e3 * seconds["ce"],
                "t_kd_ms": 1e3 * seconds["kd"],
                "t_teacher_ms": 1e3 * seconds["teacher"],
                "teacher_share": seconds["teacher"] / seconds["kd"],
                "ratio": ratio,
                "limit": limit,
                "ratio_over_limit": ratio / limit,
            }
        )
    median = {key: statistics.median(r[key] for r in repeats) for key in repeats[0]}
    return {
        "device": device_name(device),
        "torch": torch.__version__,
        "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "goal": f"ratio <= {GOAL} x limit",
        "median": median,
        "meets_goal": median["ratio_over_limit"] <= GOAL,
        "repeats": repeats,
    }


def markdown(result: dict) -> str:
    s, m = result["settings"], result["median"]
    return "\n".join(
        [
            f"# Vision KD step benchmark: {s['teacher']} -> {s['student']}",
            "",
            f"Device: {result['device']}, torch {result['torch']}; batch {s['batch_size']}, {s['image_size']}px, "
            f"{s['classes']} classes, AMP {s['amp']}, channels_last {s['channels_last']}; median of {s['repeats']} "
            f"repeats x {s['steps']} steps.",
            "",
            "| CE step (ms) | KD step (ms) | teacher forward (ms) | teacher share of KD step | ratio KD/CE "
            "| limit 1 + t_teacher/t_CE | ratio / limit | goal <= 1.05 |",
            "|---:|---:|---:|---:|---:|---:|---:|:---:|",
            f"| {m['t_ce_ms']:.1f} | {m['t_kd_ms']:.1f} | {m['t_teacher_ms']:.1f} | {100 * m['teacher_share']:.1f} % | "
            f"{m['ratio']:.3f} | {m['limit']:.3f} | {m['ratio_over_limit']:.3f} | "
            f"{'yes' if result['meets_goal'] else 'no'} |",
            "",
        ]
    )


def main(argv=None) -> None:
    args = parse_args(argv)
    result = measure(args)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    (args.out_dir / "results-vision.json").write_text(json.dumps(result, indent=2) + "\n")
    (args.out_dir / "results-vision.md").write_text(markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
