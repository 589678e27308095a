"""Teacher and student training: validate everything (``plan_run``), then train with DDP, AMP, per-epoch
checkpoints and exact resume, evaluating top-1/top-5 after every epoch.

``train`` reads as the loop of a classification reference: ``setup``, ``start`` (fresh or resumed), then per
epoch ``train_one_epoch``, ``evaluate`` and ``save_checkpoint``; ``checkpoint_state`` is the one layout of
both checkpoint files."""

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler, Subset
from tqdm import tqdm

from lskd.errors import InvalidConfig
from lskd_vision import checkpoint
from lskd_vision.checkpoint import build_trained, read_checkpoint, read_state_dict
from lskd_vision.config import TrainConfig
from lskd_vision.data import DataBundle, check_data, load_data
from lskd_vision.engine import (
    Precision,
    StudentObjective,
    TeacherObjective,
    accuracy_from_counts,
    evaluate_counts,
    train_step,
    wants_cuda,
)
from lskd_vision.logbook import Logbook
from lskd_vision.models import architecture, build_model, classifier_path, load_weights
from lskd_vision.run_folder import check_out_folder, check_resumed_settings, claim


@dataclass
class Plan:
    """A fully checked run: nothing here can fail for a user-settings reason once it exists."""

    config: TrainConfig
    data: DataBundle
    model: nn.Module
    teacher: Optional[nn.Module]
    resume_from: Optional[dict]


def _teacher_model(config: TrainConfig, num_classes: int) -> nn.Module:
    teacher = read_checkpoint(config.teacher, config.teacher_arch, "--teacher-arch")
    return build_trained(teacher, num_classes, config.dataset).requires_grad_(False)


def _initial_model(config: TrainConfig, num_classes: int) -> nn.Module:
    model = build_model(config.arch, num_classes)
    if config.init is not None:
        state = read_state_dict(config.init)
        head = classifier_path(config.arch) + ".weight"
        same_head = (
            head in state and state[head].shape == model.get_submodule(classifier_path(config.arch)).weight.shape
        )
        load_weights(model, state, config.arch, config.init, keep_classifier=same_head)
    return model


def plan_run(config: TrainConfig) -> Plan:
    """Every check that can fail on user input, before the output folder is touched."""
    config.validate()
    architecture(config.arch)
    wants_cuda(config.device)
    check_data(config.dataset, config.data)
    check_out_folder(config)
    data = load_data(config.dataset, config.data, config.crop_size, config.resize_size)
    teacher = _teacher_model(config, data.num_classes) if config.role == "student" else None
    torch.manual_seed(config.seed)
    model = _initial_model(config, data.num_classes)
    resume_from = None
    latest = Path(config.out) / checkpoint.LATEST
    if config.resume and latest.exists():
        resume_from = checkpoint.load(latest)
        if resume_from["arch"] != config.arch or resume_from["num_classes"] != data.num_classes:
            raise InvalidConfig(
                f"{latest} is a {resume_from['arch']} with {resume_from['num_classes']} classes; "
                f"expected --arch {config.arch} with {data.num_classes}"
            )
        check_resumed_settings(config, resume_from.get("config"), latest)
    return Plan(config, data, model, teacher, resume_from)


@dataclass
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world > 1


def _init_distributed(device_name: str) -> tuple[Dist, torch.device]:
    """torchrun sets WORLD_SIZE/RANK/LOCAL_RANK; NCCL on GPUs, gloo on CPU."""
    use_cuda = wants_cuda(device_name)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    info = Dist(int(os.environ.get("RANK", "0")), world, int(os.environ.get("LOCAL_RANK", "0")))
    if use_cuda:
        torch.cuda.set_device(info.local_rank)
        device = torch.device("cuda", info.local_rank)
    else:
        device = torch.device("cpu")
    if info.active and not dist.is_initialized():
        dist.init_process_group("nccl" if use_cuda else "gloo")
    return info, device


def learning_rate_schedule(optimizer: torch.optim.Optimizer, config: TrainConfig, steps_per_epoch: int):
    """Stepped once per optimizer step: a linear warm-up over the first ``warmup_epochs``, times ``lr_gamma``
    every ``lr_step`` epochs counted from the first step.

    torch's ``LambdaLR`` computes each step's rate from the step number. ``LinearLR`` chained with ``StepLR``
    gives the same rule but multiplies the previous rate at every step, so the rounding accumulates: after a
    5-epoch warm-up from 0.1 it holds 0.09999999999999978 for the rest of the run, in every log and checkpoint."""
    warmup_steps = config.warmup_epochs * steps_per_epoch

    def factor(step: int) -> float:
        value = config.lr_gamma ** ((step // steps_per_epoch) // config.lr_step)
        if step < warmup_steps:
            value *= (step + 1) / warmup_steps
        return value

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def _all_reduce_sum(tensor: torch.Tensor, info: Dist) -> torch.Tensor:
    if info.active:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def evaluate(model: nn.Module, loader: DataLoader, precision: Precision, num_classes: int, info: Dist) -> dict:
    """top-1, top-5 and mean loss over every rank's share of the validation set."""
    return accuracy_from_counts(_all_reduce_sum(evaluate_counts(model, loader, precision, num_classes), info))


def _gather_rng(info: Dist) -> list:
    state = checkpoint.rng_state()
    if not info.active:
        return [state]
    states = [None] * info.world
    dist.all_gather_object(states, state)
    return states


@dataclass
class Session:
    """Everything the epoch loop uses, built once by ``setup``; ``trained`` is ``model`` or its DDP wrapper."""

    config: TrainConfig
    info: Dist
    out: Path
    num_classes: int
    precision: Precision
    model: nn.Module
    trained: nn.Module
    teacher: Optional[nn.Module]
    objective: object
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: Optional[torch.amp.GradScaler]
    sampler: DistributedSampler
    train_loader: DataLoader
    val_loader: DataLoader


@dataclass
class Progress:
    """What the run has done so far: restored from the checkpoint on resume."""

    epoch: int = 0  # completed epochs
    history: list = field(default_factory=list)
    best: Optional[dict] = None
    teacher: Optional[dict] = None  # the teacher's validation metrics, students only


def setup(plan: Plan) -> Session:
    """Processes, devices, loaders, optimizer, schedule and loss of the plan; the run folder is claimed here."""
    config, data = plan.config, plan.data
    if config.threads is not None:
        torch.set_num_threads(config.threads)
    info, device = _init_distributed(config.device)
    if info.main:
        claim(config, fresh=plan.resume_from is None)
    precision = Precision(device, enabled=config.amp, channels_last=config.channels_last)
    memory_format = torch.channels_last if config.channels_last else torch.contiguous_format

    model = plan.model.to(device, memory_format=memory_format)
    if config.sync_bn and info.active:
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    teacher = plan.teacher.to(device, memory_format=memory_format) if plan.teacher is not None else None

    sampler = DistributedSampler(data.train, num_replicas=info.world, rank=info.rank, shuffle=True, seed=config.seed)
    loader_args = dict(num_workers=config.workers, pin_memory=device.type == "cuda")
    train_loader = DataLoader(data.train, batch_size=config.batch_size, sampler=sampler, **loader_args)
    val_shard = Subset(data.val, range(info.rank, len(data.val), info.world))  # unpadded, so counts are exact
    val_loader = DataLoader(val_shard, batch_size=config.batch_size, shuffle=False, **loader_args)

    optimizer = torch.optim.SGD(
        model.parameters(), lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay
    )
    scheduler = learning_rate_schedule(optimizer, config, len(train_loader))
    scaler = torch.amp.GradScaler("cuda") if config.amp and device.type == "cuda" else None
    if teacher is not None:
        objective = StudentObjective(config.temperature, config.kd_weight, config.kd_kernel, config.transfer())
    else:
        objective = TeacherObjective(config.alpha)
    trained = model
    if info.active:
        trained = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    return Session(
        config,
        info,
        Path(config.out),
        data.num_classes,
        precision,
        model,
        trained,
        teacher,
        objective,
        optimizer,
        scheduler,
        scaler,
        sampler,
        train_loader,
        val_loader,
    )


def start(run: Session, resume_from: Optional[dict]) -> Progress:
    """Restore a checkpoint exactly (weights, optimizer, schedule, scaler, this rank's RNG), or begin: seed
    this rank and measure the teacher once."""
    if resume_from is None:
        torch.manual_seed(run.config.seed + run.info.rank)
        progress = Progress()
        if run.teacher is not None:
            progress.teacher = evaluate(run.teacher, run.val_loader, run.precision, run.num_classes, run.info)
        return progress
    state = resume_from
    if len(state["rng"]) != run.info.world:
        raise InvalidConfig(
            f"--resume: {run.out / checkpoint.LATEST} was trained by {len(state['rng'])} process(es), this run has "
            f"{run.info.world}; resume with the same number of processes (the global batch depends on it)"
        )
    run.model.load_state_dict(state["state_dict"])
    run.optimizer.load_state_dict(state["optimizer"])
    run.scheduler.load_state_dict(state["scheduler"])
    if run.scaler is not None and state.get("scaler"):
        run.scaler.load_state_dict(state["scaler"])
    rng = state["rng"]
    checkpoint.set_rng_state(rng[run.info.rank] if run.info.rank < len(rng) else rng[0])
    return Progress(state["epoch"], state["history"], state["best"], state["teacher"])


def train_one_epoch(run: Session, epoch: int) -> tuple[dict, torch.Tensor]:
    """One pass over the training shard; the epoch's record (mean losses over ranks, lr) and every step's loss."""
    run.sampler.set_epoch(epoch)
    run.trained.train()
    step_losses, kd_kls = [], []
    lr = run.optimizer.param_groups[0]["lr"]
    progress = tqdm(
        run.train_loader, desc=f"epoch {epoch + 1}/{run.config.epochs}", disable=not run.info.main or None, leave=False
    )
    for images, target in progress:
        step = train_step(
            run.trained, run.teacher, run.objective, run.optimizer, run.scaler, run.precision, images, target
        )
        run.scheduler.step()
        step_losses.append(step.loss.detach())
        if step.kd_kl is not None:
            kd_kls.append(step.kd_kl.detach())
    losses = _all_reduce_sum(torch.stack(step_losses).double(), run.info) / run.info.world
    record = {"epoch": epoch + 1, "lr": lr, "train_loss": losses.mean().item()}
    if kd_kls:
        record["train_kd_kl"] = (_all_reduce_sum(torch.stack(kd_kls).double(), run.info) / run.info.world).mean().item()
    return record, losses


def checkpoint_state(run: Session, progress: Progress, rng: Optional[list] = None) -> dict:
    """The one checkpoint layout: the model with the run's identity and latest scores; with ``rng`` (every
    rank's RNG state) also all that an exact resume needs."""
    config, latest = run.config, progress.history[-1]
    state = {
        "arch": config.arch,
        "num_classes": run.num_classes,
        "dataset": config.dataset,
        "role": config.role,
        "state_dict": run.model.state_dict(),
        "epoch": progress.epoch,
        "top1": latest["top1"],
        "top5": latest["top5"],
    }
    if rng is not None:
        state.update(
            optimizer=run.optimizer.state_dict(),
            scheduler=run.scheduler.state_dict(),
            scaler=run.scaler.state_dict() if run.scaler is not None else {},
            rng=rng,
            history=progress.history,
            best=progress.best,
            teacher=progress.teacher,
            config=config.to_json(),
        )
    return state


def save_checkpoint(run: Session, progress: Progress, improved: bool) -> None:
    """``best.pth`` when the epoch improved top-1, then the resumable ``checkpoint.pth`` (collective: every
    rank contributes its RNG state; rank 0 writes)."""
    rng = _gather_rng(run.info)
    if not run.info.main:
        return
    if improved:
        checkpoint.save_atomic(checkpoint_state(run, progress), run.out / checkpoint.BEST)
    checkpoint.save_atomic(checkpoint_state(run, progress, rng), run.out / checkpoint.LATEST)


def summary_of(run: Session, progress: Progress) -> dict:
    final = progress.history[-1]
    return {
        "final": {"top1": final["top1"], "top5": final["top5"]},
        "best": progress.best,
        "teacher": progress.teacher,
        "role": run.config.role,
        "world_size": run.info.world,
        "global_batch_size": run.config.batch_size * run.info.world,
        "config": run.config.to_json(),
        "history": progress.history,
    }


def train(plan: Plan) -> Optional[dict]:
    """Run (or continue) the plan; returns the metrics.json summary once the last epoch is done."""
    run = setup(plan)
    config, info = run.config, run.info
    progress = start(run, plan.resume_from)
    logbook = Logbook(run.out, enabled=info.main, completed_epochs=progress.epoch)
    if info.main:
        print(
            f"lskd-vision: {config.role} {config.arch} on {config.dataset}: {len(plan.data.train)} train / "
            f"{len(plan.data.val)} val, {run.num_classes} classes, {info.world} process(es), "
            f"device {run.precision.device}",
            flush=True,
        )
    last_epoch = config.epochs if config.stop_after is None else min(config.epochs, progress.epoch + config.stop_after)
    for epoch in range(progress.epoch, last_epoch):
        started = time.perf_counter()
        record, losses = train_one_epoch(run, epoch)
        evaluation = evaluate(run.model, run.val_loader, run.precision, run.num_classes, info)
        record.update(val_loss=evaluation["loss"], top1=evaluation["top1"], top5=evaluation["top5"])
        record["seconds"] = time.perf_counter() - started
        improved = progress.best is None or record["top1"] > progress.best["top1"]
        progress.epoch = epoch + 1
        progress.history.append(record)
        if improved:
            progress.best = {"top1": record["top1"], "top5": record["top5"], "epoch": epoch + 1}
        if info.main:  # the epoch's rows go before its checkpoint (see Logbook)
            logbook.epoch(record, losses.tolist(), epoch * len(run.train_loader))
        save_checkpoint(run, progress, improved)
        if info.main:
            print(
                f"epoch {epoch + 1}/{config.epochs} lr {record['lr']:.4g} train_loss {record['train_loss']:.4f} "
                f"top1 {record['top1']:.3f} top5 {record['top5']:.3f} ({record['seconds']:.1f}s)",
                flush=True,
            )

    summary = None
    if last_epoch == config.epochs and progress.history:
        summary = summary_of(run, progress)
        logbook.finish(summary)
    if info.active:
        dist.barrier()
        dist.destroy_process_group()
    return summary
