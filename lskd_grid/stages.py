"""The stages of a recipe's grid: what each one needs first, the file that says it is finished, what it writes,
and the settings that change its output.

Both executors run these stages: the local one in lanes on this machine, the Slurm one as jobs whose
dependencies are the ``after`` names. When a stage starts, its settings are recorded in
``RUN_DIR/stages/<stage>.json``; a later invocation with other settings for a stage that has a record is refused
before anything runs (``check_records``), unless it asks to redo those stages: then ``redo_paths`` are deleted,
the stage's outputs and those of every stage after it.
"""

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

from lskd.errors import InvalidConfig
from lskd_grid.grid import Grid, divergence_suffix
from lskd_grid.runs import DEFAULT_DIVERGENCE
from lskd_grid.transfers import cache_settings, transfer_settings

# The kinds a stage can be; the Slurm executor takes a time limit per kind.
KINDS = ("data", "teacher", "cache", "student", "eval", "results")
RECORDS = "stages"

DATA_SETTINGS = ("TEXT_PROFILE", "VOCAB_SIZE", "MAX_LINES", "SOURCE", "TOY_TRAIN", "TOY_VALID", "TOY_TEST", "TOY_SEED")
TRAINING = (
    "ARCH",
    "MODEL_ARGS",
    "MAX_UPDATE",
    "MAX_EPOCH",
    "MAX_TOKENS",
    "UPDATE_FREQ",
    "LR",
    "WARMUP",
    "WARMUP_INIT_LR",
    "DROPOUT",
    "WEIGHT_DECAY",
    "CLIP_NORM",
    "GPUS",
    "NODES",
    "FP16",
    "TRAIN_ARGS",
)
STUDENT_TRAINING = TRAINING + ("STUDENT_PATIENCE", "KD_WEIGHT", "STUDENT_LS")
VISION_TRAINING = ("EPOCHS", "DATA", "GPUS", "NODES")


@dataclass(frozen=True)
class Stage:
    """``done``: the file whose existence says the stage finished (written last); ``outputs``: what it writes,
    deleted when it is redone; ``parallel``: a training run that spans GPUS x NODES (the others take one task)."""

    name: str
    kind: str
    done: str
    outputs: tuple[str, ...]
    after: tuple[str, ...] = ()
    settings: Mapping[str, str] = field(default_factory=dict)
    parallel: bool = False

    def record(self) -> str:
        return json.dumps({"stage": self.name, "settings": dict(self.settings)}, sort_keys=True)


def pick(values: dict, names: tuple[str, ...], **extra: str) -> dict:
    return {**{name: values[name] for name in names if name in values}, **extra}


def nmt_stages(values: dict, grid: Grid) -> list[Stage]:
    """The stages of recipes/nmt_lib.sh, in the order one lane runs them."""
    run_dir, data = values["RUN_DIR"], values["DATA_DIR"]
    topk = values["TOPK"]
    modes = grid.kd_modes
    stages = [Stage("data", "data", f"{data}/bin", (data,), (), pick(values, DATA_SETTINGS))]
    evals = []
    for teacher in grid.teachers("bleu.json"):
        folder, ident = f"{run_dir}/{teacher.name}", teacher.name.removeprefix("teacher-")
        trained = pick(values, TRAINING + ("PATIENCE",), ALPHA=str(teacher.manifest.alpha))
        stages.append(
            Stage(teacher.name, "teacher", f"{folder}/training-finished", (folder,), ("data",), trained, True)
        )
        stages.append(evaluation(teacher.name, folder, values))
        evals.append(stages[-1].name)
        deployed = deployment(teacher.name, folder, values)
        stages += deployed
        evals += [s.name for s in deployed if s.name.startswith("eval-")]
        sources = {}
        stored = cache_settings(values, grid)
        if "word" in modes:
            stages.append(top_k_cache(f"cache-{ident}", f"{folder}/cache-top{topk}", teacher.name, values, stored))
            sources["word"] = stages[-1].name
        if {"seq", "seq+word"} & set(modes):
            distill = pick(values, ("DISTILL_BEAM", "DISTILL_LENPEN", "FP16"))
            outputs = (f"{folder}/distilled", f"{folder}/distill-finished")
            stages.append(Stage(f"distill-{ident}", "cache", outputs[1], outputs, (teacher.name,), distill))
            sources["seq"] = stages[-1].name
        if "seq+word" in modes:
            cache = f"{folder}/distilled-cache-top{topk}"
            stages.append(top_k_cache(f"distilled-cache-{ident}", cache, f"distill-{ident}", values, stored))
            sources["seq+word"] = stages[-1].name
        for student in grid.students(teacher, "bleu.json"):
            m = student.manifest
            folder = f"{run_dir}/{student.name}"
            trained = pick(values, STUDENT_TRAINING, KD_MODE=m.kd_mode or "", TEMPERATURE=str(m.temperature))
            trained.update(transfer_settings(values, m.transfer))
            after = (sources[m.kd_mode],)
            stages.append(
                Stage(student.name, "student", f"{folder}/training-finished", (folder,), after, trained, True)
            )
            stages.append(evaluation(student.name, folder, values))
            evals.append(stages[-1].name)
            deployed = deployment(student.name, folder, values)
            stages += deployed
            evals += [s.name for s in deployed if s.name.startswith("eval-")]
    stages.append(results_stage(run_dir, tuple(evals), pick(values, ("BLEU_METRIC",))))
    return stages


def top_k_cache(name: str, cache: str, after: str, values: dict, stored: dict | None = None) -> Stage:
    """lskd-dump-teacher's top-k on train, then valid; valid's fingerprint, written last, says it is done.
    ``stored``: what it also stores for the students' transfer (``lskd_grid.transfers.cache_settings``)."""
    return Stage(
        name, "cache", f"{cache}/valid.json", (cache,), (after,), pick(values, ("TOPK", "FP16"), **(stored or {}))
    )


def evaluation(run: str, folder: str, values: dict) -> Stage:
    return Stage(
        f"eval-{run}",
        "eval",
        f"{folder}/bleu.json",
        (f"{folder}/bleu.json",),
        (run,),
        pick(values, ("BEAM", "EVAL_SUBSET")),
    )


def deployment(run: str, folder: str, values: dict) -> list[Stage]:
    """Per quantisation in EXPORT: the run's CTranslate2 export (``lskd-export-ct2`` into RUN/ct2-Q, done when
    its manifest exists), then its evaluation through CTranslate2 (RUN/bleu-ct2-Q/bleu.json, a folder of its own
    since lskd-evaluate writes its translation log beside it). Both take the evaluation's time limit."""
    stages = []
    for quantization in values.get("EXPORT", "").split():
        model, scores = f"{folder}/ct2-{quantization}", f"{folder}/bleu-ct2-{quantization}"
        exported = Stage(
            f"export-{quantization}-{run}",
            "eval",
            f"{model}/lskd-export.json",
            (model,),
            (run,),
            {"QUANTIZATION": quantization},
        )
        settings = pick(values, ("BEAM", "EVAL_SUBSET"), QUANTIZATION=quantization)
        evaluated = Stage(
            f"eval-{quantization}-{run}", "eval", f"{scores}/bleu.json", (scores,), (exported.name,), settings
        )
        stages += [exported, evaluated]
    return stages


def results_stage(run_dir: str, after: tuple[str, ...], settings: dict) -> Stage:
    outputs = tuple(f"{run_dir}/results{suffix}" for suffix in (".md", ".csv", ".json", "-score.png", "-diffusion.png"))
    return Stage("results", "results", f"{run_dir}/results.csv", outputs, after, settings)


def vision_stages(values: dict, grid: Grid, diffusion: bool = False) -> list[Stage]:
    """The stages of recipes/lib.sh's vision lanes (and digits.sh's figures when ``diffusion``)."""
    run_dir = values["RUN_DIR"]
    stages, runs = [], []
    for teacher in grid.teachers("metrics.json"):
        folder = f"{run_dir}/{teacher.name}"
        trained = pick(values, VISION_TRAINING + ("IMAGENET_RUNS",), ALPHA=str(teacher.manifest.alpha))
        stages.append(Stage(teacher.name, "teacher", f"{folder}/metrics.json", (folder,), (), trained, True))
        runs.append(teacher.name)
        for student in grid.students(teacher, "metrics.json"):
            folder = f"{run_dir}/{student.name}"
            trained = pick(
                values,
                VISION_TRAINING + ("STUDENT_ARCH", "STUDENT_INIT"),
                TEMPERATURE=str(student.manifest.temperature),
            )
            trained.update(transfer_settings(values, student.manifest.transfer))
            stages.append(
                Stage(student.name, "student", f"{folder}/metrics.json", (folder,), (teacher.name,), trained, True)
            )
            runs.append(student.name)
    if diffusion:
        for seed in grid.seeds:
            for divergence in grid.divergences:
                name = f"diffusion{divergence_suffix(divergence)}-s{seed}"
                folder = f"{run_dir}/{name}"
                stages.append(
                    Stage(
                        name,
                        "eval",
                        f"{folder}/diffusion.json",
                        (folder,),
                        diffusion_inputs(stages, grid, seed, divergence),
                        pick(values, ("DIFFUSION_TEMPERATURES",)),
                    )
                )
                runs.append(stages[-1].name)
    stages.append(results_stage(run_dir, tuple(runs), pick(values, ("PAPER",))))
    return stages


def diffusion_inputs(stages: list[Stage], grid: Grid, seed: int, divergence: str) -> tuple[str, ...]:
    """The runs one diffusion figure shows: the seed's teachers and its students of ``divergence``."""
    students = {
        run.name
        for teacher in grid.teachers("metrics.json")
        if teacher.manifest.seed == seed
        for run in grid.students(teacher, "metrics.json")
        if (run.manifest.divergence or DEFAULT_DIVERGENCE) == divergence
    }
    return tuple(
        s.name
        for s in stages
        if (s.kind == "teacher" and s.name.endswith(f"-s{seed}")) or (s.kind == "student" and s.name in students)
    )


def recorded(run_dir: str, stage: Stage) -> dict | None:
    path = Path(run_dir) / RECORDS / f"{stage.name}.json"
    try:
        return json.loads(path.read_text(encoding="utf-8"))["settings"]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def changed_stages(run_dir: str, stages: list[Stage]) -> list[tuple[Stage, list[str]]]:
    """Each stage whose record differs from the settings it would run with now, with the differences."""
    found = []
    for stage in stages:
        before = recorded(run_dir, stage)
        if before is None:
            continue
        names = sorted(set(before) | set(stage.settings))
        differences = [
            f"{name} {before.get(name, '(unset)')!r} -> {stage.settings.get(name, '(unset)')!r}"
            for name in names
            if before.get(name) != stage.settings.get(name)
        ]
        if differences:
            found.append((stage, differences))
    return found


def check_records(recipe: str, run_dir: str, stages: list[Stage], redo: bool) -> list[Stage]:
    """The stages to redo (empty unless ``redo``); refuses changed settings without ``redo``."""
    changed = changed_stages(run_dir, stages)
    if not changed:
        return []
    if not redo:
        stage, differences = changed[0]
        others = [s.name for s, _ in changed[1:]]
        more = f"; also changed: {', '.join(others)}" if others else ""
        raise InvalidConfig(
            f"RUN_DIR {run_dir}: {stage.name} ran with other settings ({'; '.join(differences)}){more} "
            "(expected the settings it ran with; use another RUN_DIR, or REDO_CHANGED=1 to run the changed "
            "stages and those after them again)"
        )
    return after_each([s for s, _ in changed], stages)


def after_each(first: list[Stage], stages: list[Stage]) -> list[Stage]:
    """``first`` and every stage that needs one of them, directly or not, in plan order."""
    chosen = {s.name for s in first}
    for stage in stages:
        if chosen & set(stage.after):
            chosen.add(stage.name)
    return [s for s in stages if s.name in chosen]


def redo_paths(run_dir: str, redo: list[Stage]) -> list[str]:
    return [path for s in redo for path in (*s.outputs, f"{run_dir}/{RECORDS}/{s.name}.json")]
