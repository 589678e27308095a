"""The data folder written by ``lskd-distill-corpus``: layout, manifest, staging and the target writer.

A distilled folder is a complete fairseq data folder: the input's dictionaries, its other subsets (valid,
test) copied byte for byte, the distilled subset's sources copied and its targets replaced by the
teacher's hypotheses, plus ``MANIFEST`` saying what produced it. It is built in a hidden staging folder
next to the output and renamed into place only when complete, so an interrupted run never leaves a
folder that trains.
"""

import json
import logging
import os
import re
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from fairseq.data import indexed_dataset

from lskd.errors import DataError, InvalidConfig
from lskd_tools.files import MANIFEST as PREP_MANIFEST
from lskd_tools.files import atomic_write_json, file_digest

logger = logging.getLogger(__name__)

MANIFEST = "lskd-distill.json"
STAGING_MARK = "lskd-distill.partial.json"
FORMAT = 1
SUBSET_FILE = re.compile(r"^(?P<subset>[^.]+)\.(?P<pair>[^.]+-[^.]+)\.(?P<lang>[^.]+)\.(?P<ext>bin|idx)$")


@dataclass
class Settings:
    """Everything a distilled folder depends on; two runs with equal settings write the same folder."""

    subset: str
    source_lang: str
    target_lang: str
    input_files_sha256: dict
    teacher_checkpoint_sha256: str
    beam: int
    lenpen: float
    max_tokens: int
    max_len_a: float
    max_len_b: int
    min_len: int
    fp16: bool
    fallback_to_reference: bool
    format: int = FORMAT

    def differences(self, other: dict) -> list[str]:
        ours = asdict(self)
        return [
            f"{name} (folder: {other.get(name)!r}, this run: {ours[name]!r})"
            for name in ours
            if other.get(name) != ours[name]
        ]


@dataclass
class Counts:
    """What happened to the subset's sentences; ``fell_back`` kept their reference target."""

    sentences: int = 0
    empty_hypotheses: int = 0
    length_limit_hypotheses: int = 0
    fell_back: int = 0
    hypothesis_tokens: int = 0
    # pairs longer than the teacher's positions, skipped as fairseq-generate skips them: they keep their reference
    too_long: int = 0


def subset_prefix(data: Path, subset: str, source: str, target: str) -> str:
    """``{subset}.{pair}`` as fairseq-preprocess named the subset's files (either language order)."""
    for pair in (f"{source}-{target}", f"{target}-{source}"):
        if all(
            (data / f"{subset}.{pair}.{lang}.{ext}").is_file() for lang in (source, target) for ext in ("bin", "idx")
        ):
            return f"{subset}.{pair}"
    raise InvalidConfig(
        f"subset {subset!r} of {data}: no binarised {subset}.{source}-{target}.{{{source},{target}}}"
        f".{{bin,idx}} files; expected a fairseq-preprocess folder with that subset"
    )


def metadata_files(data: Path, source: str, target: str) -> list[Path]:
    """The files besides the subsets that a distilled folder keeps: dictionaries and the data-prep manifest."""
    files = [data / f"dict.{lang}.txt" for lang in dict.fromkeys((source, target))]
    return files + [path for path in [data / PREP_MANIFEST] if path.is_file()]


def other_subset_files(data: Path, subset: str, source: str, target: str) -> list[Path]:
    """Binarised files of the language pair's other subsets (valid, test, ...), copied unchanged.

    Shards of the distilled subset (``train1``, ...) are left out: fairseq-train would otherwise mix
    their reference targets into the distilled training set.
    """
    pairs = {f"{source}-{target}", f"{target}-{source}"}
    kept = []
    for path in sorted(data.iterdir()):
        match = SUBSET_FILE.match(path.name)
        if not match or match["pair"] not in pairs or match["lang"] not in (source, target):
            continue
        if match["subset"] == subset:
            continue
        if re.fullmatch(re.escape(subset) + r"\d+", match["subset"]):
            logger.warning("%s: a shard of %s, not distilled and not copied", path, subset)
            continue
        kept.append(path)
    return kept


def input_fingerprint(data: Path, prefix: str, source: str, target: str) -> dict:
    """sha256 of the input subset's binarised files and of the dictionaries."""
    paths = [data / f"{prefix}.{lang}.{ext}" for lang in (source, target) for ext in ("bin", "idx")]
    paths += [data / f"dict.{lang}.txt" for lang in dict.fromkeys((source, target))]
    return {path.name: file_digest(path) for path in paths}


def read_manifest(folder: Path) -> dict:
    try:
        return json.loads((folder / MANIFEST).read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise DataError(f"{folder / MANIFEST} could not be read ({error})") from None


def check_output(out: Path, data: Path, settings: Settings) -> bool:
    """True when ``out`` already holds this very run; raises when it holds anything else.

    An empty folder is fine (it is replaced); a folder with another run's manifest or with files of its
    own (the input data, say) is refused, so nothing a user made is ever replaced.
    """
    if out.resolve() == data.resolve():
        raise InvalidConfig(f"--out {out} is the input data folder; choose a new folder")
    if not out.exists():
        return False
    if not out.is_dir():
        raise InvalidConfig(f"--out {out} is a file; expected a new or empty folder")
    entries = sorted(path.name for path in out.iterdir())
    if not entries:
        return False
    if MANIFEST not in entries:
        raise InvalidConfig(
            f"--out {out} holds files that no lskd-distill-corpus run wrote ({', '.join(entries[:3])}"
            f"{', ...' if len(entries) > 3 else ''}); choose a new or empty folder"
        )
    differences = settings.differences(read_manifest(out).get("settings", {}))
    if differences:
        raise InvalidConfig(
            f"--out {out} holds another distillation: "
            + "; ".join(differences)
            + "; choose another folder or remove that one"
        )
    return True


def staging_folder(out: Path) -> Path:
    return out.parent / f".{out.name}.partial"


def start_staging(out: Path, settings: Settings) -> Path:
    """A fresh staging folder; an interrupted run's leftover (marked as ours) is removed first."""
    stage = staging_folder(out)
    if stage.exists():
        if (stage / STAGING_MARK).is_file() or (stage.is_dir() and not any(stage.iterdir())):
            logger.info("removing %s, left by an interrupted run; starting over", stage)
            shutil.rmtree(stage)
        else:
            raise InvalidConfig(
                f"{stage} exists and was not made by lskd-distill-corpus; remove it or choose another --out"
            )
    stage.mkdir(parents=True)
    atomic_write_json(stage / STAGING_MARK, asdict(settings))
    return stage


def publish(stage: Path, out: Path, settings: Settings, counts: Counts, details: dict) -> dict:
    """Write the manifest last, then rename the staging folder to ``out`` (an empty ``out`` is replaced)."""
    manifest = {"settings": asdict(settings), "counts": asdict(counts), **details}
    atomic_write_json(stage / MANIFEST, manifest)
    (stage / STAGING_MARK).unlink()
    if out.exists():
        out.rmdir()  # empty, checked before the run
    os.replace(stage, out)
    return manifest


def copy_files(paths: list[Path], folder: Path) -> None:
    for path in paths:
        shutil.copyfile(path, folder / path.name)


class TargetWriter:
    """Streams a subset's new targets, arriving in batch order, into fairseq's mmap format in corpus order.

    Batches arrive sorted by length, while the dataset must list sentence 0, 1, ... in order. Targets are
    first appended to a spill dataset (fairseq's builder) with their sentence ids, then copied in id order
    by a second builder: memory holds one batch and one integer per sentence, never the corpus.
    """

    def __init__(self, prefix: Path, sentences: int, vocab_size: int):
        self.prefix = prefix
        self.sentences = sentences
        self.vocab_size = vocab_size
        self.spill = prefix.with_name(prefix.name + ".spill")
        self.builder = indexed_dataset.make_builder(
            indexed_dataset.data_file_path(str(self.spill)), "mmap", vocab_size=vocab_size
        )
        self.ids = open(self.spill.with_name(self.spill.name + ".ids"), "wb")

    def add(self, sentence_id: int, tokens: torch.Tensor) -> None:
        self.builder.add_item(tokens)
        self.ids.write(np.int64(sentence_id).tobytes())

    def close(self) -> None:
        self.builder.finalize(indexed_dataset.index_file_path(str(self.spill)))
        self.ids.close()
        ids_path = Path(self.ids.name)
        ids = np.fromfile(ids_path, dtype=np.int64)
        position = np.full(self.sentences, -1, dtype=np.int64)
        position[ids] = np.arange(len(ids))
        if len(ids) != self.sentences or (position < 0).any():
            missing = np.flatnonzero(position < 0)
            raise RuntimeError(
                f"{len(ids)} targets written for {self.sentences} sentences "
                f"(first missing id: {missing[0] if len(missing) else 'none, some twice'})"
            )
        spilled = indexed_dataset.MMapIndexedDataset(str(self.spill))
        final = indexed_dataset.make_builder(
            indexed_dataset.data_file_path(str(self.prefix)), "mmap", vocab_size=self.vocab_size
        )
        for index in position:
            final.add_item(spilled[int(index)])
        final.finalize(indexed_dataset.index_file_path(str(self.prefix)))
        del spilled
        for path in (
            indexed_dataset.data_file_path(str(self.spill)),
            indexed_dataset.index_file_path(str(self.spill)),
            ids_path,
        ):
            Path(path).unlink()
