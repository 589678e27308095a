"""Run settings as one dataclass, and the paper's schedules as named presets that any flag overrides."""
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Optional

from lskd.errors import InvalidConfig
from lskd.checks import check_kd_weight, check_smoothing, check_temperature


@dataclass
class TrainConfig:
    role: str  # "teacher" (LS cross-entropy) or "student" (KD from --teacher)
    dataset: str
    arch: str
    out: Path
    data: Optional[Path] = None
    epochs: int = 90
    batch_size: int = 256  # per process; the global batch is batch_size × world size
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 1e-4
    lr_step: int = 30  # lr × lr_gamma ** (epoch // lr_step)
    lr_gamma: float = 0.1
    warmup_epochs: int = 0  # per-iteration linear warm-up, as the ImageNet student code does
    alpha: float = 0.0  # teacher label smoothing, paper convention alpha/K
    temperature: float = 1.0
    kd_weight: float = 1.0  # 1 = pure KD (the paper); below 1 mixes in (1 - w) · CE with the labels
    teacher: Optional[Path] = None
    teacher_arch: Optional[str] = None
    init: Optional[Path] = None  # weights to start from (ImageNet teacher for CUB, torchvision file)
    crop_size: int = 224
    resize_size: int = 256
    workers: int = 8
    seed: int = 0
    device: str = "auto"
    threads: Optional[int] = None  # intra-op CPU threads; None keeps torch's default
    amp: bool = True
    channels_last: bool = True
    sync_bn: bool = False
    resume: bool = False
    stop_after: Optional[int] = None  # end this process after that many epochs, as if preempted

    def validate(self) -> None:
        check_smoothing(self.alpha)
        check_temperature(self.temperature)
        check_kd_weight(self.kd_weight)
        for name in ("epochs", "batch_size", "lr_step", "crop_size", "resize_size"):
            if getattr(self, name) < 1:
                raise InvalidConfig(f"--{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")
        for name in ("lr", "momentum", "weight_decay", "warmup_epochs", "workers"):
            if getattr(self, name) < 0:
                raise InvalidConfig(f"--{name.replace('_', '-')} must be >= 0, got {getattr(self, name)}")
        if self.threads is not None and self.threads < 1:
            raise InvalidConfig(f"--threads must be >= 1, got {self.threads}")
        if self.stop_after is not None and self.stop_after < 1:
            raise InvalidConfig(f"--stop-after must be >= 1, got {self.stop_after}")
        if self.role == "student" and self.teacher is None:
            raise InvalidConfig("train-student needs --teacher CKPT")

    def to_json(self) -> dict:
        return {key: str(value) if isinstance(value, Path) else value for key, value in asdict(self).items()}


PRESETS: dict[str, dict] = {
    # Paper §3.1: torchvision ResNet-50 from scratch, PyTorch ImageNet example schedule.
    "imagenet-teacher": dict(epochs=90, lr=0.1, weight_decay=1e-4, lr_step=30, warmup_epochs=0, batch_size=256),
    # Paper §3.2: 200 epochs, ÷10 at 80 and 160, 5-epoch per-iteration warm-up.
    "imagenet-student": dict(epochs=200, lr=0.1, weight_decay=1e-4, lr_step=80, warmup_epochs=5, batch_size=256),
    # Paper §3.3: fine-tuned from the ImageNet teacher with the same alpha.
    "cub-teacher": dict(epochs=90, lr=0.01, weight_decay=1e-4, lr_step=30, warmup_epochs=0, batch_size=256, seed=2021),
    # Paper §3.4: ImageNet-pretrained students, weight decay 1e-3.
    "cub-student": dict(epochs=200, lr=0.01, weight_decay=1e-3, lr_step=80, warmup_epochs=0, batch_size=256, seed=2021),
    # Embedded digits: small enough that the whole alpha × T grid runs on a CPU in about a minute.
    "digits-teacher": dict(
        epochs=12, lr=0.1, weight_decay=5e-4, lr_step=8, batch_size=64, workers=0, amp=False, channels_last=False,
        threads=1,
    ),
    "digits-student": dict(
        epochs=12, lr=0.1, weight_decay=5e-4, lr_step=8, batch_size=64, workers=0, amp=False, channels_last=False,
        threads=1,
    ),
}

DEFAULT_ARCH = {
    ("imagenet", "teacher"): "resnet50",
    ("imagenet", "student"): "resnet18",
    ("cub", "teacher"): "resnet50",
    ("cub", "student"): "resnet18",
    ("digits", "teacher"): "digits_cnn",
    ("digits", "student"): "digits_cnn_small",
}

FIELD_NAMES = {f.name for f in fields(TrainConfig)}


def build_config(role: str, dataset: str, preset: Optional[str], overrides: dict) -> TrainConfig:
    """Preset values first, then every flag the user actually gave (``None`` means not given)."""
    preset = preset or f"{dataset}-{role}"
    if preset not in PRESETS:
        raise InvalidConfig(f"unknown --preset {preset!r}; expected one of {', '.join(PRESETS)}")
    given = {key: value for key, value in overrides.items() if value is not None and key in FIELD_NAMES}
    arch = given.pop("arch", None) or DEFAULT_ARCH.get((dataset, role))
    base = TrainConfig(role=role, dataset=dataset, arch=arch, out=given.pop("out"))
    config = replace(base, **{**PRESETS[preset], **given})
    config.validate()
    return config
