"""Teacher and student training: validate everything, then train with DDP, AMP, per-epoch
checkpoints and exact resume, evaluating top-1/top-5 after every epoch."""
import os
import time
from dataclasses import dataclass
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
from lskd_vision.models import (
    build_model,
    build_trained,
    check_arch,
    classifier_path,
    load_weights,
    read_checkpoint,
    read_state_dict,
)


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
        same_head = head in state and state[head].shape == model.get_submodule(classifier_path(config.arch)).weight.shape
        load_weights(model, state, config.arch, config.init, keep_classifier=same_head)
    return model


def plan_run(config: TrainConfig) -> Plan:
    """Every check that can fail on user input, before the output folder is touched."""
    config.validate()
    check_arch(config.arch)
    wants_cuda(config.device)
    check_data(config.dataset, config.data)
    latest = Path(config.out) / checkpoint.LATEST
    if (Path(config.out) / "metrics.json").exists():
        raise InvalidConfig(f"--out {config.out} already holds a finished run (metrics.json); expected a new folder")
    if latest.exists() and not config.resume:
        raise InvalidConfig(f"--out {config.out} already holds {checkpoint.LATEST}; pass --resume or use a new folder")
    if config.out.exists() and not config.out.is_dir():
        raise InvalidConfig(f"--out {config.out} is a file; expected a folder")
    data = load_data(config.dataset, config.data, config.crop_size, config.resize_size)
    teacher = _teacher_model(config, data.num_classes) if config.role == "student" else None
    torch.manual_seed(config.seed)
    model = _initial_model(config, data.num_classes)
    resume_from = None
    if config.resume and latest.exists():
        resume_from = checkpoint.load(latest)
        if resume_from["arch"] != config.arch or resume_from["num_classes"] != data.num_classes:
            raise InvalidConfig(
                f"{latest} is a {resume_from['arch']} with {resume_from['num_classes']} classes; "
                f"expected --arch {config.arch} with {data.num_classes}"
            )
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


def _lr_factor(config: TrainConfig, steps_per_epoch: int):
    warmup_steps = config.warmup_epochs * steps_per_epoch

    def factor(step: int) -> float:
        value = config.lr_gamma ** ((step // steps_per_epoch) // config.lr_step)
        if step < warmup_steps:
            value *= (step + 1) / warmup_steps
        return value

    return factor


def _all_reduce_sum(tensor: torch.Tensor, info: Dist) -> torch.Tensor:
    if info.active:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def _evaluate(model, loader, precision, num_classes, info) -> dict:
    return accuracy_from_counts(_all_reduce_sum(evaluate_counts(model, loader, precision, num_classes), info))


def _gather_rng(info: Dist) -> list:
    state = checkpoint.rng_state()
    if not info.active:
        return [state]
    states = [None] * info.world
    dist.all_gather_object(states, state)
    return states


def train(plan: Plan) -> Optional[dict]:
    """Run (or continue) the plan; returns the metrics.json summary once the last epoch is done."""
    config, data = plan.config, plan.data
    if config.threads is not None:
        torch.set_num_threads(config.threads)
    info, device = _init_distributed(config.device)
    out = Path(config.out)
    if info.main:
        out.mkdir(parents=True, exist_ok=True)
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

    optimizer = torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _lr_factor(config, len(train_loader)))
    scaler = torch.amp.GradScaler("cuda") if config.amp and device.type == "cuda" else None
    objective = (
        StudentObjective(config.temperature, config.kd_weight) if teacher is not None else TeacherObjective(config.alpha)
    )
    trained = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None) if info.active else model

    history, best, teacher_metrics, start_epoch = [], None, None, 0
    if plan.resume_from is not None:
        state = plan.resume_from
        model.load_state_dict(state["state_dict"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        if scaler is not None and state.get("scaler"):
            scaler.load_state_dict(state["scaler"])
        history, best, teacher_metrics, start_epoch = state["history"], state["best"], state["teacher"], state["epoch"]
        rng = state["rng"]
        checkpoint.set_rng_state(rng[info.rank] if info.rank < len(rng) else rng[0])
    else:
        torch.manual_seed(config.seed + info.rank)
        if teacher is not None:
            teacher_metrics = _evaluate(teacher, val_loader, precision, data.num_classes, info)

    logbook = Logbook(out, enabled=info.main, completed_epochs=start_epoch)
    if info.main:
        print(f"lskd-vision: {config.role} {config.arch} on {config.dataset}: {len(data.train)} train / "
              f"{len(data.val)} val, {data.num_classes} classes, {info.world} process(es), device {device}", flush=True)
    last_epoch = config.epochs if config.stop_after is None else min(config.epochs, start_epoch + config.stop_after)
    for epoch in range(start_epoch, last_epoch):
        started = time.perf_counter()
        sampler.set_epoch(epoch)
        trained.train()
        step_losses, kd_kls = [], []
        lr = optimizer.param_groups[0]["lr"]
        progress = tqdm(train_loader, desc=f"epoch {epoch + 1}/{config.epochs}", disable=not info.main or None, leave=False)
        for images, target in progress:
            step = train_step(trained, teacher, objective, optimizer, scaler, precision, images, target)
            scheduler.step()
            step_losses.append(step.loss.detach())
            if step.kd_kl is not None:
                kd_kls.append(step.kd_kl.detach())
        losses = _all_reduce_sum(torch.stack(step_losses).double(), info) / info.world
        record = {"epoch": epoch + 1, "lr": lr, "train_loss": losses.mean().item()}
        if kd_kls:
            record["train_kd_kl"] = (_all_reduce_sum(torch.stack(kd_kls).double(), info) / info.world).mean().item()
        evaluation = _evaluate(model, val_loader, precision, data.num_classes, info)
        record.update(val_loss=evaluation["loss"], top1=evaluation["top1"], top5=evaluation["top5"])
        record["seconds"] = time.perf_counter() - started
        history.append(record)
        improved = best is None or record["top1"] > best["top1"]
        if improved:
            best = {"top1": record["top1"], "top5": record["top5"], "epoch": epoch + 1}
        rng = _gather_rng(info)
        if info.main:
            logbook.epoch(record, losses.tolist(), epoch * len(train_loader))
            meta = {"arch": config.arch, "num_classes": data.num_classes, "dataset": config.dataset, "role": config.role}
            if improved:
                checkpoint.save_atomic({**meta, "state_dict": model.state_dict(), "epoch": epoch + 1,
                                        "top1": record["top1"], "top5": record["top5"]}, out / checkpoint.BEST)
            checkpoint.save_atomic(
                {
                    **meta,
                    "state_dict": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(),
                    "scaler": scaler.state_dict() if scaler is not None else {},
                    "rng": rng,
                    "epoch": epoch + 1,
                    "history": history,
                    "best": best,
                    "teacher": teacher_metrics,
                    "config": config.to_json(),
                },
                out / checkpoint.LATEST,
            )
            print(f"epoch {epoch + 1}/{config.epochs} lr {lr:.4g} train_loss {record['train_loss']:.4f} "
                  f"top1 {record['top1']:.3f} top5 {record['top5']:.3f} ({record['seconds']:.1f}s)", flush=True)

    summary = None
    if last_epoch == config.epochs and history:
        final = history[-1]
        summary = {
            "final": {"top1": final["top1"], "top5": final["top5"]},
            "best": best,
            "teacher": teacher_metrics,
            "role": config.role,
            "world_size": info.world,
            "global_batch_size": config.batch_size * info.world,
            "config": config.to_json(),
            "history": history,
        }
        logbook.finish(summary)
    if info.active:
        dist.barrier()
        dist.destroy_process_group()
    return summary
