"""An offline top-k teacher cache: the teacher runs once, students read its top-k logits per target token.

Layout of a cache folder, per dumped subset (``train``, ``valid``, ...):

- ``{subset}.indices.npy``  int32 [tokens, k]: vocabulary ids of the teacher's k largest logits
- ``{subset}.logits.npy``   float16/float32 [tokens, k]: those raw logits
- ``{subset}.offsets.npy``  int64 [sentences + 1]: sentence ``i`` owns rows ``offsets[i]:offsets[i+1]``
- ``{subset}.log_normalizers.npy`` float32 [tokens, n] (``--tail-temperatures``): each full row's
  log Σ_v exp(t_v / T) at the n listed temperatures, what the tail bucket needs (docs/transfers.md)
- ``{subset}.moments.npy`` float32 [tokens, 2] (``--standardization-stats``): each full row's mean and
  sample standard deviation, and with tail temperatures ``{subset}.standardized_log_normalizers.npy``,
  the log-sum-exp of the standardised row at each of them
- ``{subset}.dropped_mass.json``: the teacher's probability mass outside its top k, mean and quantiles over
  the subset's tokens, at T = 1 and each tail temperature
- ``{subset}.json``          the fingerprint; written last, so a dump that stopped half way never loads

The fingerprint ties the cache to the binarised data (sentence count, target lengths, target tokens, target
dictionary) so a re-binarised corpus is refused instead of being silently misaligned token by token; the
token hash also tells a teacher-distilled corpus (``lskd-distill-corpus``) from the original one when their
target lengths happen to agree. The subsets one run loads must come from the same teacher with the same k and
dtype; and damaged files (truncated arrays, a broken fingerprint, ids outside the vocabulary, non-finite
logits) are refused by name when training starts.
"""

import hashlib
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from fairseq.data import BaseWrapperDataset

from lskd.errors import DataError, InvalidConfig
from lskd_tools.files import publish, staging_path

CACHE_FORMAT = 2
DTYPES = {"fp16": np.float16, "fp32": np.float32}
ROWS_PER_SCAN = 1 << 20
# Per-token statistics a dump may add for the transfers, by file part; each is float32 [tokens, columns].
ROW_STATISTICS = ("log_normalizers", "moments", "standardized_log_normalizers")
DROPPED_MASS_QUANTILES = (0.1, 0.5, 0.9, 0.99)
# The dropped-mass histogram: log10 of the mass in bins of 0.01 decade from 1e-12 to 1 (masses below the
# first bin, 0 included, count in an extra bin reported as 0), so quantiles are exact to 2.3 %.
LOG10_MASS_RANGE = (-12.0, 0.0)
MASS_BINS = 1200


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def dictionary_sha256(dictionary) -> str:
    return sha256_bytes("\n".join(dictionary.symbols).encode())


def target_lengths(dataset) -> np.ndarray:
    return np.asarray(dataset.tgt_sizes, dtype=np.int64)


def target_tokens_sha256(dataset) -> str:
    """sha256 of every target sentence's token ids as int64, sentence after sentence."""
    digest = hashlib.sha256()
    for index in range(len(dataset.tgt)):
        digest.update(dataset.tgt[index].numpy().astype(np.int64, copy=False).tobytes())
    return digest.hexdigest()


@dataclass
class Fingerprint:
    """What a cache was computed from; the data-side fields must match the data it is used with."""

    subset: str
    sentences: int
    tokens: int
    target_lengths_sha256: str
    target_tokens_sha256: str
    target_dictionary_sha256: str
    teacher_checkpoint_sha256: str
    topk: int
    dtype: str
    format: int = CACHE_FORMAT
    # pairs longer than the teacher's positions: never scored, their rows hold no teacher; training skips them
    too_long_sentences: list = field(default_factory=list)
    tail_temperatures: list = field(default_factory=list)
    standardization: bool = False

    DATA_FIELDS = ("sentences", "tokens", "target_lengths_sha256", "target_tokens_sha256", "target_dictionary_sha256")
    TEACHER_FIELDS = ("teacher_checkpoint_sha256", "topk", "dtype")

    @classmethod
    def of_data(
        cls,
        subset,
        dataset,
        dictionary,
        teacher_checkpoint_sha256="",
        topk=0,
        dtype="",
        tail_temperatures=(),
        standardization=False,
    ):
        lengths = target_lengths(dataset)
        return cls(
            subset=subset,
            sentences=len(lengths),
            tokens=int(lengths.sum()),
            target_lengths_sha256=sha256_bytes(lengths.tobytes()),
            target_tokens_sha256=target_tokens_sha256(dataset),
            target_dictionary_sha256=dictionary_sha256(dictionary),
            teacher_checkpoint_sha256=teacher_checkpoint_sha256,
            topk=topk,
            dtype=dtype,
            tail_temperatures=[float(t) for t in tail_temperatures],
            standardization=standardization,
        )

    def row_statistics(self) -> dict[str, int]:
        """The per-token statistics this cache holds, by file part, with their column counts."""
        temperatures = len(self.tail_temperatures)
        parts = {"log_normalizers": temperatures} if temperatures else {}
        if self.standardization:
            parts["moments"] = 2
            if temperatures:
                parts["standardized_log_normalizers"] = temperatures
        return parts

    def differences(self, data: "Fingerprint") -> list[str]:
        return [
            f"{name} (cache: {getattr(self, name)}, data: {getattr(data, name)})"
            for name in self.DATA_FIELDS
            if getattr(self, name) != getattr(data, name)
        ]

    def teacher_differences(self, other: "Fingerprint") -> list[str]:
        """How two subsets' caches differ in what the teacher gave (checkpoint, k, dtype)."""
        return [
            f"{name} ({self.subset}: {getattr(self, name)}, {other.subset}: {getattr(other, name)})"
            for name in self.TEACHER_FIELDS
            if getattr(self, name) != getattr(other, name)
        ]


def cache_paths(directory, subset: str) -> dict[str, Path]:
    directory = Path(directory)
    arrays = ("indices", "logits", "offsets", *ROW_STATISTICS)
    return {part: directory / f"{subset}.{part}.npy" for part in arrays} | {
        "dropped_mass": directory / f"{subset}.dropped_mass.json",
        "fingerprint": directory / f"{subset}.json",
    }


def mass_temperatures(tail_temperatures) -> list[float]:
    """The temperatures the dropped-mass report covers: T = 1 and every tail temperature."""
    return sorted({1.0, *map(float, tail_temperatures)})


class DroppedMass:
    """Mean and quantiles of the teacher's mass outside its top k, accumulated batch by batch in bounded
    memory (a log-spaced histogram per temperature)."""

    def __init__(self, temperatures):
        self.temperatures = list(temperatures)
        self.count = 0
        self.sums = np.zeros(len(self.temperatures))
        self.histograms = np.zeros((len(self.temperatures), MASS_BINS + 1), dtype=np.int64)

    def add(self, masses: np.ndarray) -> None:
        """``masses`` [tokens, temperatures]: each token's dropped mass at each temperature."""
        masses = np.clip(np.asarray(masses, dtype=np.float64), 0.0, 1.0)
        self.count += len(masses)
        self.sums += masses.sum(0)
        low, high = LOG10_MASS_RANGE
        with np.errstate(divide="ignore"):
            position = (np.log10(masses) - low) / (high - low) * MASS_BINS
        bins = np.where(masses < 10**low, 0, 1 + np.clip(position, 0, MASS_BINS - 1).astype(np.int64))
        for column in range(len(self.temperatures)):
            self.histograms[column] += np.bincount(bins[:, column], minlength=MASS_BINS + 1)

    def _quantile(self, column: int, level: float) -> float:
        cumulative = np.cumsum(self.histograms[column])
        index = int(np.searchsorted(cumulative, level * self.count))
        if index == 0:
            return 0.0
        low, high = LOG10_MASS_RANGE
        width = (high - low) / MASS_BINS
        return float(10 ** (low + (index - 0.5) * width))

    def report(self) -> dict:
        return {
            "tokens": self.count,
            "temperatures": {
                f"{temperature:g}": {
                    "mean": float(self.sums[column] / max(self.count, 1)),
                    "quantiles": {f"{level:g}": self._quantile(column, level) for level in DROPPED_MASS_QUANTILES},
                }
                for column, temperature in enumerate(self.temperatures)
            },
        }


class CacheWriter:
    """Fills memory-mapped arrays under temporary names and publishes them atomically in ``close``."""

    def __init__(self, directory, fingerprint: Fingerprint, lengths: np.ndarray):
        self.paths = cache_paths(directory, fingerprint.subset)
        self.fingerprint = fingerprint
        Path(directory).mkdir(parents=True, exist_ok=True)
        self.offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
        np.cumsum(lengths, out=self.offsets[1:])
        shape = (int(self.offsets[-1]), fingerprint.topk)
        self.indices = np.lib.format.open_memmap(self._temporary("indices"), "w+", np.int32, shape)
        self.logits = np.lib.format.open_memmap(self._temporary("logits"), "w+", DTYPES[fingerprint.dtype], shape)
        self.statistics = {
            part: np.lib.format.open_memmap(self._temporary(part), "w+", np.float32, (shape[0], columns))
            for part, columns in fingerprint.row_statistics().items()
        }
        self.dropped = DroppedMass(mass_temperatures(fingerprint.tail_temperatures))
        self.filled = np.zeros(len(lengths), dtype=bool)

    def _temporary(self, part: str) -> Path:
        return staging_path(self.paths[part])

    def write_batch(
        self,
        sentence_ids: np.ndarray,
        lengths: np.ndarray,
        indices: np.ndarray,
        logits: np.ndarray,
        statistics: Optional[dict] = None,
        dropped_mass: Optional[np.ndarray] = None,
    ) -> None:
        """Rows of a batch's sentences: ``indices``/``logits`` (and each of ``statistics``, by file part)
        hold their target tokens back to back, in the order of ``sentence_ids``, ``lengths[i]`` tokens for
        sentence i; ``dropped_mass`` [tokens, temperatures] feeds the report."""
        expected = self.offsets[sentence_ids + 1] - self.offsets[sentence_ids]
        if not np.array_equal(lengths, expected):
            bad = int(np.flatnonzero(lengths != expected)[0])
            raise RuntimeError(f"sentence {sentence_ids[bad]}: {lengths[bad]} target tokens, expected {expected[bad]}")
        starts = np.repeat(self.offsets[sentence_ids] - np.cumsum(lengths) + lengths, lengths)
        rows = starts + np.arange(len(starts))
        self.indices[rows] = indices
        self.logits[rows] = logits
        for part, values in (statistics or {}).items():
            self.statistics[part][rows] = values
        if dropped_mass is not None:
            self.dropped.add(dropped_mass)
        self.filled[sentence_ids] = True

    def skip(self, sentence_ids: list[int]) -> None:
        """Sentences the teacher cannot score (longer than its positions); the fingerprint lists them."""
        self.filled[sentence_ids] = True

    def discard(self) -> None:
        """Remove the unpublished arrays of a dump that failed, leaving any earlier cache as it was."""
        parts = ("indices", "logits", *self.statistics)
        del self.indices, self.logits
        self.statistics = {}
        for part in parts:
            self._temporary(part).unlink(missing_ok=True)

    def close(self) -> None:
        missing = np.flatnonzero(~self.filled)
        if len(missing):
            raise RuntimeError(f"{len(missing)} sentences were never scored (first id {missing[0]})")
        for array in (self.indices, self.logits, *self.statistics.values()):
            array.flush()
        del self.indices, self.logits
        self.statistics = {}
        with open(self._temporary("offsets"), "wb") as f:
            np.save(f, self.offsets)
        self._temporary("dropped_mass").write_text(json.dumps(self.dropped.report(), indent=2) + "\n")
        parts = ("indices", "logits", "offsets", *self.fingerprint.row_statistics(), "dropped_mass")
        publish(
            [self.paths[part] for part in parts],
            self.paths["fingerprint"],
            json.dumps(asdict(self.fingerprint), indent=2) + "\n",
        )


def _redump(directory, subset: str) -> str:
    return f"re-run lskd-dump-teacher DATA --subset {subset} --out {directory} --force ..."


def read_fingerprint(directory, subset: str) -> Fingerprint:
    """The fingerprint of ``subset``'s cache in ``directory``, refused when missing, foreign or damaged."""
    path = cache_paths(directory, subset)["fingerprint"]
    if not path.is_file():
        raise DataError(
            f"--teacher-cache {directory} has no complete cache for subset '{subset}' "
            f"(missing {path.name}); run: lskd-dump-teacher DATA --subset {subset} --out {directory} ..."
        )
    try:
        stored = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as error:  # a truncated or overwritten file
        raise DataError(
            f"teacher cache {path} is damaged: not valid JSON ({error}); {_redump(directory, subset)}"
        ) from None
    if not isinstance(stored, dict) or stored.get("format") != CACHE_FORMAT:
        found = stored.get("format") if isinstance(stored, dict) else type(stored).__name__
        raise DataError(f"teacher cache {path} has format {found}, expected {CACHE_FORMAT}")
    try:
        fingerprint = Fingerprint(**stored)
    except TypeError as error:
        raise DataError(f"teacher cache {path} is damaged: {error}; {_redump(directory, subset)}") from None
    if fingerprint.dtype not in DTYPES or not isinstance(fingerprint.topk, int) or fingerprint.topk < 1:
        raise DataError(
            f"teacher cache {path} is damaged: topk {fingerprint.topk!r}, dtype {fingerprint.dtype!r}; "
            f"expected topk >= 1 and dtype one of {', '.join(DTYPES)}"
        )
    temperatures = fingerprint.tail_temperatures
    valid = isinstance(temperatures, list) and all(
        isinstance(t, (int, float)) and math.isfinite(t) and t > 0 for t in temperatures
    )
    if not valid or not isinstance(fingerprint.standardization, bool):
        raise DataError(
            f"teacher cache {path} is damaged: tail_temperatures {temperatures!r}, standardization "
            f"{fingerprint.standardization!r}; expected a list of temperatures > 0 and true/false"
        )
    return fingerprint


def check_cache_serves(fingerprint: Fingerprint, directory, standardize: bool, tail_temperature) -> None:
    """A cache holds the statistics the criterion's transfer reads (``tail_temperature`` None: no tail)."""
    where = f"--teacher-cache {directory} ('{fingerprint.subset}')"
    if standardize and not fingerprint.standardization:
        raise InvalidConfig(
            f"--kd-logit-standardization needs each full row's mean and std, which {where} does not store; "
            f"re-dump it with lskd-dump-teacher --standardization-stats"
        )
    if tail_temperature is None or tail_temperature in fingerprint.tail_temperatures:
        return
    stored = ", ".join(f"{t:g}" for t in fingerprint.tail_temperatures) or "none"
    raise InvalidConfig(
        f"--kd-topk-tail at teacher temperature {tail_temperature:g} needs the full rows' log-sum-exp at that "
        f"temperature; {where} stores it at: {stored}; re-dump it with lskd-dump-teacher --tail-temperatures "
        f"{tail_temperature:g}"
    )


def _load_array(path: Path, dtype, shape: tuple, mmap: bool) -> np.ndarray:
    try:
        array = np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except (OSError, ValueError, EOFError) as error:  # missing, truncated, or not an .npy file
        raise DataError(f"teacher cache file {path} cannot be read ({error})") from None
    if array.dtype != np.dtype(dtype) or array.shape != shape:
        raise DataError(
            f"teacher cache file {path} holds {array.dtype} {array.shape}, expected {np.dtype(dtype)} "
            f"{shape} from its fingerprint"
        )
    return array


def _first_bad_row(array: np.ndarray, is_bad) -> int | None:
    """Index of the first row of ``array`` where ``is_bad`` holds for an entry, read in bounded chunks."""
    for start in range(0, len(array), ROWS_PER_SCAN):
        hits = np.flatnonzero(is_bad(np.asarray(array[start : start + ROWS_PER_SCAN])).any(axis=-1))
        if len(hits):
            return start + int(hits[0])
    return None


class TeacherCache:
    """Read side of one subset of a cache, checked against the data it will be aligned with."""

    def __init__(self, directory, subset: str, data: Fingerprint, vocabulary: int):
        paths = cache_paths(directory, subset)
        self.fingerprint = read_fingerprint(directory, subset)
        differences = self.fingerprint.differences(data)
        if differences:
            raise DataError(
                f"teacher cache {paths['fingerprint']} does not match the '{subset}' data: "
                + "; ".join(differences)
                + " — re-run lskd-dump-teacher on the current data"
            )
        rows = (data.tokens, self.fingerprint.topk)
        self.indices = _load_array(paths["indices"], np.int32, rows, mmap=True)
        self.logits = _load_array(paths["logits"], DTYPES[self.fingerprint.dtype], rows, mmap=True)
        self.offsets = _load_array(paths["offsets"], np.int64, (data.sentences + 1,), mmap=False)
        self.statistics = {
            part: _load_array(paths[part], np.float32, (data.tokens, columns), mmap=True)
            for part, columns in self.fingerprint.row_statistics().items()
        }
        self._check_contents(paths, data, vocabulary)

    def _check_contents(self, paths, data: Fingerprint, vocabulary: int) -> None:
        lengths = np.diff(self.offsets)
        if self.offsets[0] != 0 or sha256_bytes(lengths.tobytes()) != data.target_lengths_sha256:
            raise DataError(
                f"teacher cache file {paths['offsets']} is damaged: its sentence offsets do not give the "
                f"data's target lengths"
            )
        row = _first_bad_row(self.indices, lambda ids: (ids < 0) | (ids >= vocabulary))
        if row is not None:
            raise DataError(
                f"teacher cache file {paths['indices']} is damaged: row {row} holds token ids "
                f"{self.indices[row].tolist()}, outside the target vocabulary [0, {vocabulary})"
            )
        for part, array in {"logits": self.logits, **self.statistics}.items():
            row = _first_bad_row(array, lambda values: ~np.isfinite(values))
            if row is not None:
                kind = "logits" if part == "logits" else "values"
                raise DataError(
                    f"teacher cache file {paths[part]} is damaged: row {row} holds non-finite {kind} "
                    f"{array[row].tolist()}"
                )

    def sentence(self, sentence_id: int) -> tuple[np.ndarray, np.ndarray, dict]:
        start, end = self.offsets[sentence_id], self.offsets[sentence_id + 1]
        statistics = {part: array[start:end] for part, array in self.statistics.items()}
        return self.indices[start:end], self.logits[start:end], statistics


class TeacherCacheDataset(BaseWrapperDataset):
    """A language-pair dataset whose batches also carry the cached teacher top-k, aligned to ``target``."""

    def __init__(self, dataset, cache: TeacherCache, pad_index: int):
        super().__init__(dataset)
        self.cache = cache
        self.pad_index = pad_index

    def filter_indices_by_size(self, indices, max_sizes):
        """Also drops the sentences the cache's teacher could not score (too long for it), as fairseq drops
        sentences too long for the student: skipped in training, refused in validation unless
        ``--skip-invalid-size-inputs-valid-test``."""
        indices, ignored = self.dataset.filter_indices_by_size(indices, max_sizes)
        unscored = np.isin(indices, self.cache.fingerprint.too_long_sentences)
        return indices[~unscored], list(ignored) + indices[unscored].tolist()

    def __getitem__(self, index):
        item = self.dataset[index]
        indices, logits, statistics = self.cache.sentence(index)
        if len(indices) != len(item["target"]):
            raise RuntimeError(
                f"teacher cache row of sentence {index} has {len(indices)} tokens, the target {len(item['target'])}"
            )
        item["teacher_topk"] = (torch.from_numpy(np.array(indices, dtype=np.int64)), torch.from_numpy(np.array(logits)))
        item["teacher_statistics"] = {part: torch.from_numpy(np.array(values)) for part, values in statistics.items()}
        return item

    def collater(self, samples):
        batch = self.dataset.collater(samples)
        if not batch:
            return batch
        by_id = {sample["id"]: sample["teacher_topk"] for sample in samples}
        target = batch["target"]
        rows, steps = target.shape
        k = self.cache.fingerprint.topk
        indices = torch.full((rows, steps, k), self.pad_index, dtype=torch.long)
        logits = torch.zeros((rows, steps, k), dtype=torch.float32)
        columns = self.cache.fingerprint.row_statistics()
        statistics = {part: torch.zeros((rows, steps, n), dtype=torch.float32) for part, n in columns.items()}
        by_id_statistics = {sample["id"]: sample["teacher_statistics"] for sample in samples}
        for row, sentence_id in enumerate(batch["id"].tolist()):
            sentence_indices, sentence_logits = by_id[sentence_id]
            length = len(sentence_indices)
            indices[row, :length] = sentence_indices
            logits[row, :length] = sentence_logits.float()
            for part, values in by_id_statistics[sentence_id].items():
                statistics[part][row, :length] = values
        # Padding rows: a zero log-sum-exp and std 1 keep them finite (the loss masks them).
        if "moments" in statistics:
            statistics["moments"][..., 1][~target.ne(self.pad_index)] = 1.0
        batch["teacher"] = {"topk_indices": indices, "topk_logits": logits, **statistics}
        if columns:
            batch["teacher"]["tail_temperatures"] = list(self.cache.fingerprint.tail_temperatures)
        return batch
