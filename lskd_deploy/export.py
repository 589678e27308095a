"""``lskd-export-ct2``: convert a fairseq translation checkpoint into a CTranslate2 model folder.

The conversion itself is CTranslate2's own fairseq converter. What this command adds is what a deployment
needs around it: every input is checked before anything is written (the checkpoint is a fairseq transformer
CTranslate2 can convert, ``--data-bin`` holds the dictionaries it was trained with, the quantisation exists,
``--out`` is new), the folder appears whole or not at all, and ``lskd-export.json`` in it records what was
converted (the checkpoint's sha256, quantisation, vocabulary sizes, CTranslate2's version).

Students trained with ``--task translation_kd`` carry that task in their config; the converter would set it
up, teacher and all. Decoding needs no teacher, so the converter reads a copy of the checkpoint whose task
is plain ``translation`` (as ``lskd-evaluate`` passes ``--task translation`` to fairseq-generate).
"""

import argparse
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import ctranslate2
from ctranslate2.specs.model_spec import ACCEPTED_MODEL_TYPES

from lskd.checks import check_choice
from lskd.errors import DataError, InvalidConfig
from lskd_tools.cli import console_script, option, parse_config
from lskd_tools.files import atomic_write_json, check_writable, file_digest

MANIFEST = "lskd-export.json"
QUANTIZATIONS = tuple(ACCEPTED_MODEL_TYPES)
# The encoder-decoder models of CTranslate2's fairseq converter that decode with a plain translation task.
TRANSLATION_MODELS = ("transformer", "transformer_align")


@dataclass
class ExportConfig:
    checkpoint: Path = option(positional=True, help="fairseq checkpoint (e.g. SAVE_DIR/checkpoint_best.pt)")
    data_bin: Path = option(help="fairseq-preprocess folder holding the dict.*.txt the model was trained with")
    out: Path = option(help="CTranslate2 model folder to write (new or empty, unless --force)")
    quantization: str = option(
        "float32",
        metavar="TYPE",
        help=f"weight type of the exported model, one of: {', '.join(QUANTIZATIONS)}",
    )
    source_lang: Optional[str] = option(None, default_text="from the checkpoint or DATA_BIN", help="source language")
    target_lang: Optional[str] = option(None, default_text="from the checkpoint or DATA_BIN", help="target language")
    force: bool = option(False, help="replace an existing non-empty --out (only once the new model is complete)")


def check_request(config: ExportConfig) -> None:
    """The flags alone: quantisation and --out, before any file is read."""
    check_choice("--quantization", config.quantization, QUANTIZATIONS)
    out = config.out
    if out.exists() and not out.is_dir():
        raise InvalidConfig(f"--out {out} is a file; expected a new or empty folder")
    if out.is_dir() and any(out.iterdir()) and not config.force:
        raise InvalidConfig(f"--out {out} exists and is not empty; choose a new folder or pass --force to replace it")
    for flag, path in (("the checkpoint", config.checkpoint), ("--data-bin", config.data_bin)):
        if out.resolve() == path.resolve() or out.resolve() in path.resolve().parents:
            raise InvalidConfig(f"--out {out} holds {flag} {path}; choose a new folder")
    check_writable(out.parent, "--out")


def model_config(state: dict) -> argparse.Namespace:
    """The model's settings as the converter reads them (``args``, else ``cfg.model``), as a Namespace."""
    settings = state.get("args") or state["cfg"]["model"]
    if isinstance(settings, argparse.Namespace):
        return argparse.Namespace(**vars(settings))
    return argparse.Namespace(**dict(settings))


def architecture_of(path: Path, settings: argparse.Namespace) -> tuple[str, str]:
    """(architecture, fairseq model name); a model the converter cannot take is refused by name."""
    from fairseq.models import ARCH_MODEL_NAME_REGISTRY

    arch = getattr(settings, "arch", None) or getattr(settings, "_name", None)
    model = ARCH_MODEL_NAME_REGISTRY.get(arch)
    if model not in TRANSLATION_MODELS:
        raise DataError(
            f"checkpoint {path}: architecture {arch!r} (model {model!r}) cannot be exported to CTranslate2; "
            f"expected an encoder-decoder of the models {', '.join(TRANSLATION_MODELS)}"
        )
    return arch, model


def languages(config: ExportConfig, state: dict, settings: argparse.Namespace) -> tuple[str, str]:
    """Source and target language: the flags, else the checkpoint's, else the one pair in --data-bin."""
    from fairseq.data import data_utils

    task = state["cfg"]["task"] if state.get("cfg") else {}
    source = config.source_lang or getattr(settings, "source_lang", None) or task.get("source_lang")
    target = config.target_lang or getattr(settings, "target_lang", None) or task.get("target_lang")
    if source is None or target is None:
        inferred = data_utils.infer_language_pair(str(config.data_bin))
        if None in inferred:
            raise InvalidConfig(
                f"--data-bin {config.data_bin}: no single language pair to infer; pass --source-lang and --target-lang"
            )
        source, target = source or inferred[0], target or inferred[1]
    return source, target


def check_dictionaries(config: ExportConfig, state: dict, source: str, target: str) -> str:
    """Refuse a --data-bin whose dictionaries are not the checkpoint's (the first differing symbol); returns
    how they were checked. The embedding sizes are always compared; the symbols where the checkpoint records
    them (the plugin's criteria) or its training data folder still holds them."""
    from lskd_fairseq.checkpoints import dictionaries_in, first_difference, recorded_dictionaries

    found = dictionaries_in(str(config.data_bin), source, target)
    if found is None:
        raise InvalidConfig(
            f"--data-bin {config.data_bin}: expected dict.{source}.txt and dict.{target}.txt "
            "(a fairseq-preprocess folder of the model's language pair)"
        )
    for side, module in (("source", "encoder"), ("target", "decoder")):
        weights = state["model"].get(f"{module}.embed_tokens.weight")
        if weights is not None and weights.size(0) != len(found[side]):
            raise DataError(
                f"--data-bin {config.data_bin}: its {side} dictionary has {len(found[side])} symbols, "
                f"checkpoint {config.checkpoint}'s {module} has {weights.size(0)}"
            )
    recorded, how = recorded_dictionaries(state), "symbols recorded in the checkpoint"
    if recorded is None:
        training_data = str(state["cfg"]["task"].get("data") or "").split(os.pathsep)[0] if state.get("cfg") else ""
        recorded = dictionaries_in(training_data, source, target) if os.path.isdir(training_data) else None
        how = f"symbols of the training data folder {training_data}"
    if recorded is None:
        return "sizes only (the checkpoint records no dictionaries and its training data folder is gone)"
    for side in ("source", "target"):
        ours, theirs = list(found[side]), list(recorded[side])
        if ours != theirs:
            difference = first_difference(ours, theirs).replace("data has", "--data-bin has")
            raise DataError(
                f"--data-bin {config.data_bin}: its {side} dictionary is not the one checkpoint {config.checkpoint} "
                f"was trained with ({len(ours)} vs {len(theirs)} symbols; {difference})"
            )
    return how


def decoding_checkpoint(state: dict, settings: argparse.Namespace, folder: Path) -> Path:
    """A copy of the checkpoint for the converter: weights and model settings, task plain ``translation``."""
    import torch

    settings.task = "translation"
    path = folder / "checkpoint.pt"
    torch.save({"args": None, "cfg": {"model": settings}, "model": state["model"]}, path)
    return path


def vocabulary_sizes(folder: Path) -> dict:
    """Source and target vocabulary sizes of an exported folder (one shared file, or one per side)."""
    sizes = {}
    for path in sorted(folder.glob("*_vocabulary.*")):
        text = path.read_text(encoding="utf-8")
        entries = json.loads(text) if path.suffix == ".json" else text.splitlines()
        sizes[path.stem.removesuffix("_vocabulary")] = len(entries)
    shared = sizes.pop("shared", None)
    return {"source": shared, "target": shared, "shared": True} if shared is not None else {**sizes, "shared": False}


def convert(config: ExportConfig, checkpoint: Path, source: str, target: str, stage: Path) -> None:
    """CTranslate2's fairseq converter into ``stage``; its refusals of a model's settings become DataError."""
    from ctranslate2.converters import FairseqConverter

    from lskd_nmt.evaluate import plugin_dir

    converter = FairseqConverter(
        str(checkpoint), str(config.data_bin), source_lang=source, target_lang=target, user_dir=str(plugin_dir())
    )
    try:
        converter.convert(str(stage), quantization=config.quantization, force=True)
    except (ValueError, NotImplementedError) as error:
        raise DataError(f"checkpoint {config.checkpoint}: CTranslate2 cannot convert it: {error}") from None


def export(config: ExportConfig) -> dict:
    """Check everything, convert into a staging folder beside --out, write the manifest, then move it in."""
    import lskd_fairseq  # noqa: F401  (allow-lists fairseq's checkpoint types)
    from lskd_fairseq.checkpoints import read_fairseq_checkpoint

    check_request(config)
    state = read_fairseq_checkpoint(config.checkpoint)
    settings = model_config(state)
    arch, model = architecture_of(config.checkpoint, settings)
    source, target = languages(config, state, settings)
    dictionaries = check_dictionaries(config, state, source, target)
    out = config.out
    stage = out.parent / f".{out.name}.partial"
    shutil.rmtree(stage, ignore_errors=True)
    try:
        with tempfile.TemporaryDirectory(prefix="lskd-export-") as scratch:
            convert(config, decoding_checkpoint(state, settings, Path(scratch)), source, target, stage)
        cfg = state.get("cfg") or {}
        manifest = {
            "source_checkpoint": str(config.checkpoint.resolve()),
            "source_checkpoint_sha256": file_digest(config.checkpoint),
            "architecture": arch,
            "model": model,
            "trained_with": {
                "task": (cfg.get("task") or {}).get("_name") or getattr(settings, "task", None),
                "criterion": (cfg.get("criterion") or {}).get("_name") or getattr(settings, "criterion", None),
            },
            "quantization": config.quantization,
            "data_bin": str(config.data_bin.resolve()),
            "source_lang": source,
            "target_lang": target,
            "vocabulary_sizes": vocabulary_sizes(stage),
            "dictionaries_checked": dictionaries,
            "ctranslate2_version": ctranslate2.__version__,
            "model_bytes": (stage / "model.bin").stat().st_size,
        }
        atomic_write_json(stage / MANIFEST, manifest, sort_keys=False)
        if out.exists():
            shutil.rmtree(out)
        os.replace(stage, out)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return manifest


def read_manifest(folder: Path) -> dict:
    """An exported folder's manifest; {} for a CTranslate2 folder lskd-export-ct2 did not write."""
    path = Path(folder) / MANIFEST
    return json.loads(path.read_text()) if path.is_file() else {}


@console_script("lskd-export-ct2")
def main(argv=None) -> None:
    config = parse_config(ExportConfig, argv, prog="lskd-export-ct2", description=__doc__.splitlines()[0])
    manifest = export(config)
    sizes = manifest["vocabulary_sizes"]
    print(
        f"{config.checkpoint} ({manifest['architecture']}) -> {config.out}: {manifest['quantization']}, "
        f"{manifest['model_bytes'] / 2**20:.1f} MiB, vocabulary {sizes['source']} -> {sizes['target']}"
        f"{' (shared)' if sizes['shared'] else ''}, CTranslate2 {manifest['ctranslate2_version']}"
    )


if __name__ == "__main__":
    main()
