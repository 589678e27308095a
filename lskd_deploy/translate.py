"""Translating a binarised subset with a CTranslate2 model folder, the way fairseq-generate translates it.

The sources are the token ids fairseq-preprocess wrote, turned back into the dictionary's symbols, so both
engines read the same input; the output is a log in fairseq-generate's format (``S-``/``T-``/``H-`` lines,
scores in base 2), so everything that reads fairseq-generate's log (``lskd-evaluate``, its ``--hypotheses``
re-scoring) reads this one. fairseq-generate stops the hypotheses of a batch at ``max_len_a * L + max_len_b``
tokens, L the batch's longest source with its end-of-sentence token, so the batches here are fairseq's own
(its batch sampler, with fairseq-generate's seed and settings) and each decodes with its batch's limit.
"""

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence

import ctranslate2

from lskd.checks import check_choice
from lskd.errors import DataError, InvalidConfig

# CTranslate2's compute types; "default" keeps the type the model was exported with.
COMPUTE_TYPES = (
    "default",
    "auto",
    "int8",
    "int8_float32",
    "int8_float16",
    "int8_bfloat16",
    "int16",
    "float16",
    "bfloat16",
    "float32",
)
DEVICES = ("auto", "cpu", "cuda")
# fairseq's decoder positions (1,024) less the end-of-sentence token: fairseq-generate's cap on max_len.
MAX_DECODING_CAP = 1023
FAIRSEQ_GENERATE_SEED = 1  # fairseq-generate's default --seed: it breaks length ties when batches are formed


@dataclass(frozen=True)
class Decoding:
    """fairseq-generate's search settings, as lskd-evaluate passes them."""

    beam: int = 5
    batch_size: int = 128
    max_len_a: float = 1.2
    max_len_b: int = 10

    def limit(self, longest_source: int) -> int:
        """fairseq's ``max_len`` for a batch whose longest source has ``longest_source`` tokens with its eos."""
        return min(int(self.max_len_a * longest_source + self.max_len_b), MAX_DECODING_CAP)


@dataclass(frozen=True)
class Hypothesis:
    tokens: list[str]
    score: float  # log-probability normalised by length, natural log (CTranslate2's)


def ctranslate2_device(name: str) -> str:
    """``--device auto|cpu|cuda`` for CTranslate2; ``cuda`` without a visible GPU is refused."""
    check_choice("--device", name, DEVICES)
    gpus = ctranslate2.get_cuda_device_count()
    if name == "cuda" and gpus == 0:
        raise InvalidConfig("--device cuda given but CTranslate2 sees no CUDA device; expected --device cpu or auto")
    return "cuda" if name == "cuda" or (name == "auto" and gpus > 0) else "cpu"


def check_compute_type(compute_type: str, device: str) -> None:
    supported = sorted(ctranslate2.get_supported_compute_types(device))
    check_choice("--compute-type", compute_type, COMPUTE_TYPES)
    if compute_type not in ("default", "auto") and compute_type not in supported:
        raise InvalidConfig(
            f"--compute-type {compute_type} does not run on this {device}; it supports {', '.join(supported)}"
        )


def check_model_folder(folder: Path, flag: str = "--model") -> None:
    if not folder.is_dir() or not ctranslate2.contains_model(str(folder)):
        what = "does not exist" if not folder.exists() else "is not a CTranslate2 model folder (no model.bin)"
        raise InvalidConfig(f"{flag} {folder} {what}; expected a folder written by lskd-export-ct2")


def model_vocabularies(folder: Path) -> dict:
    """{"source": [...], "target": [...]} symbols of an exported folder, as CTranslate2 reads them."""
    import json

    def read(path: Path) -> list[str]:
        text = path.read_text(encoding="utf-8")
        return json.loads(text) if path.suffix == ".json" else text.splitlines()

    for suffix in (".json", ".txt"):
        if (folder / f"shared_vocabulary{suffix}").is_file():
            shared = read(folder / f"shared_vocabulary{suffix}")
            return {"source": shared, "target": shared}
        if (folder / f"source_vocabulary{suffix}").is_file():
            return {side: read(folder / f"{side}_vocabulary{suffix}") for side in ("source", "target")}
    raise DataError(f"--model {folder}: no vocabulary file (expected shared_vocabulary.json or source/target ones)")


def check_vocabularies(folder: Path, data_bin: Path, source_lang: str, target_lang: str) -> None:
    """Refuse a model whose vocabularies are not the data's dictionaries (the first differing symbol):
    token ids would be read as other words. CTranslate2 names fairseq's ``<pad>`` ``<blank>``."""
    from lskd_fairseq.checkpoints import dictionaries_in, first_difference

    vocabularies = model_vocabularies(folder)
    dictionaries = dictionaries_in(str(data_bin), source_lang, target_lang)
    if dictionaries is None:
        raise InvalidConfig(f"{data_bin}: expected dict.{source_lang}.txt and dict.{target_lang}.txt there")
    for side, lang in (("source", source_lang), ("target", target_lang)):
        ours = ["<blank>" if symbol == "<pad>" else symbol for symbol in dictionaries[side]]
        theirs = vocabularies[side]
        if ours != theirs:
            difference = first_difference(ours, theirs).replace("checkpoint has", "model has")
            raise DataError(
                f"--model {folder}: its {side} vocabulary is not {data_bin}'s dict.{lang}.txt "
                f"({len(theirs)} vs {len(ours)} symbols; {difference})"
            )


@dataclass(frozen=True)
class Subset:
    """A binarised subset as fairseq-generate reads it."""

    sources: list  # source symbols per sentence, without the end-of-sentence token
    targets: list  # target text as fairseq-generate prints its T- lines
    batches: list  # sentence ids per batch, in fairseq-generate's batches and order

    @property
    def target_tokens(self) -> int:
        return sum(len(line.split()) + 1 for line in self.targets)


def read_subset(data_bin: Path, subset: str, source_lang: str, target_lang: str, batch_size: int) -> Subset:
    """The subset's sentences in corpus order and fairseq-generate's batches of them."""
    from lskd_fairseq.binarised import load_subset, translation_task

    task = translation_task(str(data_bin), source_lang, target_lang)
    dataset = load_subset(task, subset)
    source_dictionary, target_dictionary = task.source_dictionary, task.target_dictionary
    sources, targets = [], []
    for index in range(len(dataset)):
        ids = dataset.src[index].tolist()
        if ids and ids[-1] == source_dictionary.eos():
            ids = ids[:-1]
        sources.append([source_dictionary[i] for i in ids])
        targets.append(target_dictionary.string(dataset.tgt[index], escape_unk=True))
    iterator = task.get_batch_iterator(
        dataset,
        max_sentences=batch_size,
        max_positions=task.max_positions(),
        ignore_invalid_inputs=False,
        required_batch_size_multiple=1,
        seed=FAIRSEQ_GENERATE_SEED,
    )
    return Subset(sources, targets, [list(map(int, batch)) for batch in iterator.frozen_batches])


def open_translator(folder: Path, device: str, compute_type: str, threads: int) -> "ctranslate2.Translator":
    """One translator, one batch at a time (``inter_threads=1``) on ``threads`` cores (0: all)."""
    return ctranslate2.Translator(
        str(folder), device=device, compute_type=compute_type, inter_threads=1, intra_threads=threads
    )


def translate(
    translator,
    subset: Subset,
    decoding: Decoding,
    progress: Optional[Callable[[int], None]] = None,
) -> list[Hypothesis]:
    """Hypotheses in corpus order, decoded batch by batch as fairseq-generate batches the subset."""
    hypotheses: list[Optional[Hypothesis]] = [None] * len(subset.sources)
    for batch in subset.batches:
        sources = [subset.sources[i] for i in batch]
        limit = decoding.limit(max(len(source) for source in sources) + 1)
        results = translator.translate_batch(
            sources,
            beam_size=decoding.beam,
            max_decoding_length=limit,
            max_input_length=0,  # fairseq-generate does not cut sources
            return_scores=True,
        )
        for index, result in zip(batch, results):
            hypotheses[index] = Hypothesis(result.hypotheses[0], result.scores[0])
        if progress is not None:
            progress(len(batch))
    return hypotheses


def generate_log(subset: Subset, hypotheses: Sequence[Hypothesis]) -> str:
    """fairseq-generate's per-sentence lines: ``S-i``, ``T-i``, ``H-i`` with the score in base 2."""
    lines = []
    for index, (source, target, hypothesis) in enumerate(zip(subset.sources, subset.targets, hypotheses)):
        lines += [
            f"S-{index}\t{' '.join(source)}",
            f"T-{index}\t{target}",
            f"H-{index}\t{hypothesis.score / math.log(2):.4f}\t{' '.join(hypothesis.tokens)}",
        ]
    return "".join(line + "\n" for line in lines)
