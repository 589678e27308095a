"""Run settings as one dataclass, and the datasets' schedules (``lskd_vision.data.DATASETS``) as named
presets that any flag overrides."""

from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Optional

from lskd.checks import check_at_least, check_kd_weight, check_smoothing, check_temperature
from lskd.cpu_kernel import check_kernel
from lskd.divergences import Transfer
from lskd.errors import InvalidConfig
from lskd_vision.data import CROP_SIZE, DATASETS, RESIZE_SIZE, dataset_spec


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
    kd_kernel: str = "auto"  # lskd.cpu_kernel.KD_KERNELS
    kd_divergence: str = "kl"  # lskd.checks.DIVERGENCES
    jsd_beta: float = 0.5
    skew: float = 0.1
    teacher_temperature: Optional[float] = None  # None: --temperature
    logit_standardization: bool = False
    teacher: Optional[Path] = None
    teacher_arch: Optional[str] = None
    init: Optional[Path] = None  # weights to start from (ImageNet teacher for CUB, torchvision file)
    crop_size: int = CROP_SIZE
    resize_size: int = RESIZE_SIZE
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
        check_kernel(self.kd_kernel)
        self.transfer()
        for name in ("epochs", "batch_size", "lr_step", "crop_size", "resize_size"):
            check_at_least(f"--{name.replace('_', '-')}", getattr(self, name), 1)
        for name in ("lr", "momentum", "weight_decay", "warmup_epochs", "workers"):
            check_at_least(f"--{name.replace('_', '-')}", getattr(self, name), 0)
        for name in ("threads", "stop_after"):
            if getattr(self, name) is not None:
                check_at_least(f"--{name.replace('_', '-')}", getattr(self, name), 1)
        if self.role == "student" and self.teacher is None:
            raise InvalidConfig("train-student needs --teacher CKPT")

    def transfer(self) -> Transfer:
        """The student's KD transfer; a bad setting is refused naming its flag."""
        flags = {"JSD beta": "--jsd-beta", "skew": "--skew", "KD temperature": "--teacher-temperature"}
        try:
            return Transfer(
                self.kd_divergence,
                self.temperature,
                self.teacher_temperature,
                self.jsd_beta,
                self.skew,
                self.logit_standardization,
            )
        except InvalidConfig as error:
            name = next((flag for key, flag in flags.items() if str(error).startswith(key)), "--kd-divergence")
            raise InvalidConfig(f"{name}: {error}") from None

    def to_json(self) -> dict:
        return {key: str(value) if isinstance(value, Path) else value for key, value in asdict(self).items()}


# Every dataset's schedules, named DATASET-ROLE; ``--preset`` picks one, the default is the run's own.
PRESETS: dict[str, dict] = {
    f"{spec.name}-{role}": values for spec in DATASETS.values() for role, values in spec.presets.items()
}

FIELD_NAMES = {f.name for f in fields(TrainConfig)}


def build_config(role: str, dataset: str, preset: Optional[str], overrides: dict) -> TrainConfig:
    """The dataset's defaults, then the preset's values, then every flag the user actually gave (``None``
    means not given)."""
    spec = dataset_spec(dataset)
    preset = preset or f"{dataset}-{role}"
    if preset not in PRESETS:
        raise InvalidConfig(f"unknown --preset {preset!r}; expected one of {', '.join(PRESETS)}")
    given = {key: value for key, value in overrides.items() if value is not None and key in FIELD_NAMES}
    arch = given.pop("arch", None) or spec.archs[role]
    base = TrainConfig(role=role, dataset=dataset, arch=arch, out=given.pop("out"), workers=spec.workers)
    config = replace(base, **{**PRESETS[preset], **given})
    config.validate()
    return config
