"""``lskd-evaluate``: decode a test set with fairseq-generate and write both BLEU flavours to one JSON.

fairseq-generate prints hypotheses (``H-<id>``) and references (``T-<id>``) in batch order, not corpus
order, so both are re-sorted by sentence id before anything is written or scored. The plugin's
``--user-dir`` is always passed so checkpoints trained with its criteria and task load. ``--hypotheses``
re-scores a kept fairseq-generate log (or plain hypothesis lines) without decoding again.
``--engine ctranslate2 --model DIR`` translates with a folder ``lskd-export-ct2`` wrote instead, in
fairseq-generate's batches, and writes its log in fairseq-generate's format, so the scoring is the same.
"""

import importlib.util
import json
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Optional

from lskd.errors import DataError, InvalidConfig, ToolError
from lskd_nmt.bleu import (
    GENERATE_BLEU4_NOTE,
    SUBWORD_SCHEMES,
    TEXT_PROFILES,
    detokenized,
    perfect_system_score,
    remove_subwords,
    sacrebleu_score,
    tokenized,
    tokenized_bleu_score,
)
from lskd_nmt.nmt_profiles import profile_named
from lskd_tools.cli import console_script, device_option, option, parse_config, torch_device
from lskd_tools.files import MANIFEST, atomic_write_json, check_writable, write_lines

ENGINES = ("fairseq", "ctranslate2")
GENERATE_LINE = re.compile(r"^(?P<kind>[HT])-(?P<id>\d+)\t(?P<rest>.*)$")


def plugin_dir() -> Path:
    """Folder of the installed ``lskd_fairseq`` package, found without importing fairseq."""
    return Path(importlib.util.find_spec("lskd_fairseq").origin).parent


@dataclass
class EvalConfig:
    data_bin: Path = option(positional=True, help="fairseq data folder (e.g. DIR/bin from data-prep)")
    source_lang: str = option(help="source language of the bin/ file names")
    target_lang: str = option(help="target language of the bin/ file names")
    out: Path = option(help="JSON to write, e.g. RUN_DIR/bleu.json")
    checkpoint: Optional[Path] = option(
        None, flags=("--path",), default_text="required unless --hypotheses", help="checkpoint to decode with"
    )
    profile: Optional[str] = option(
        None, choices=TEXT_PROFILES, default_text=f"from {MANIFEST}", help="text profile of the references"
    )
    subword: Optional[str] = option(
        None, choices=SUBWORD_SCHEMES, default_text=f"from {MANIFEST}", help="subword scheme to undo before scoring"
    )
    subset: str = option("test", help="subset to translate")
    beam: int = option(5, help="beam size")
    batch_size: int = option(128, help="sentences per fairseq-generate batch")
    max_len_a: float = option(1.2, help="fairseq-generate's --max-len-a")
    max_len_b: int = option(10, help="fairseq-generate's --max-len-b")
    references: Optional[Path] = option(
        None,
        default_text="DIR/{subset}.{tgt} next to a data-prep bin/, else fairseq's T- lines",
        help="prepared (pre-subword) reference text, one line per sentence: tokenized_bleu's references",
    )
    raw_references: Optional[Path] = option(
        None,
        default_text="DIR/raw/{subset}.{tgt} next to a data-prep bin/, if it exists",
        help="raw cased reference text as released, one line per sentence: sacrebleu's references",
    )
    hypotheses: Optional[Path] = option(
        None,
        default_text="decode with --path",
        help="re-score without decoding: a fairseq-generate log (e.g. an earlier RUN_DIR/generate-test.txt) "
        "or one hypothesis per line in subword pieces as fairseq prints them",
    )
    user_dir: Optional[Path] = option(None, default_text="the installed lskd_fairseq", help="fairseq plugin folder")
    engine: str = option("fairseq", choices=ENGINES, help="what translates: fairseq-generate, or CTranslate2")
    model: Optional[Path] = option(
        None, default_text="required with --engine ctranslate2", help="CTranslate2 model folder (lskd-export-ct2)"
    )
    compute_type: str = option(
        "default",
        metavar="TYPE",
        help="CTranslate2's compute type: default (the exported quantisation), int8, float32, int8_float16, ...",
    )
    device: str = device_option()
    threads: int = option(0, help="CTranslate2's CPU threads (0: all cores)")

    @property
    def generate_output(self) -> Path:
        stem = "generate" if self.engine == "fairseq" else "ctranslate2"
        return self.out.parent / f"{stem}-{self.subset}.txt"


def binarised_sentence_count(data_bin: Path, subset: str, source: str, target: str) -> int:
    """Sentences of ``subset`` as fairseq loads them (fairseq is imported only when this runs)."""
    from lskd_fairseq.binarised import sentence_count

    return sentence_count(data_bin, subset, source, target)


def check_fairseq_checkpoint(path: Path) -> None:
    """Refuse, in one line and before anything is written, a checkpoint fairseq-generate cannot decode with
    (not fairseq-train's, unsafe, truncated): its own failure would be a traceback's last line."""
    from lskd_fairseq.checkpoints import read_fairseq_checkpoint

    read_fairseq_checkpoint(path, "--path")


def generate_command(config: EvalConfig) -> list[str]:
    return [
        sys.executable,
        "-m",
        "fairseq_cli.generate",
        str(config.data_bin),
        "--path",
        str(config.checkpoint),
        "--user-dir",
        str(config.user_dir or plugin_dir()),
        "--task",
        "translation",  # decoding needs no teacher, whatever task the checkpoint was trained with
        "--source-lang",
        config.source_lang,
        "--target-lang",
        config.target_lang,
        "--gen-subset",
        config.subset,
        "--beam",
        str(config.beam),
        "--batch-size",
        str(config.batch_size),
        "--max-len-a",
        str(config.max_len_a),
        "--max-len-b",
        str(config.max_len_b),
        # fairseq-fixed 0.12.3.1 drops the last (n mod multiple) sentences when this is above 1.
        "--required-batch-size-multiple",
        "1",
        "--results-path",
        str(config.out.parent),
    ] + (["--cpu"] if config.device == "cpu" else [])


def parse_generate_output(text: str) -> tuple[list[str], list[str]]:
    """(hypotheses, references) ordered by sentence id; ``H`` is ``id\tscore\ttext``, ``T`` is ``id\ttext``."""
    hypotheses, references = {}, {}
    for line in text.splitlines():
        match = GENERATE_LINE.match(line)
        if not match:
            continue
        number = int(match["id"])
        if match["kind"] == "H":
            hypotheses[number] = match["rest"].split("\t", 1)[1] if "\t" in match["rest"] else ""
        else:
            references[number] = match["rest"]
    if sorted(hypotheses) != sorted(references):
        raise ToolError("fairseq-generate output: H- and T- lines cover different sentence ids")
    ids = sorted(hypotheses)
    if ids != list(range(len(ids))):
        raise ToolError(f"fairseq-generate output: sentence ids are not 0..{len(ids) - 1}")
    return [hypotheses[i] for i in ids], [references[i] for i in ids]


def is_generate_output(text: str) -> bool:
    return any(GENERATE_LINE.match(line) for line in text.splitlines())


def read_lines(path: Path, expected: int, flag: str) -> list[str]:
    lines = path.read_text(encoding="utf-8").splitlines()
    if len(lines) != expected:
        raise DataError(f"{flag} {path}: {len(lines)} lines, expected {expected} (one per sentence)")
    return lines


def compare_with(profile: str, raw_references: bool) -> dict:
    """What each number may be compared with, in words, for bleu.json and the printed summary."""
    sacrebleu_use = (
        "sacreBLEU of other systems with the same signature on the same test sets"
        if raw_references
        else "nothing published: no raw release references were scored"
    )
    if profile == "paper":
        sacrebleu_use += " (the hypotheses are lowercased, so case errors count against this number)"
        tokenized_use = "the paper's tables (lskd_report/paper_results.json): the paper-comparable number"
    else:
        tokenized_use = "tokenised lowercased BLEU of other runs on the same prepared text; not the paper's tables"
    return {"sacrebleu": sacrebleu_use, "tokenized_bleu": tokenized_use, "generate_bleu4": GENERATE_BLEU4_NOTE}


def score_generation(config: EvalConfig, generate_text: str) -> dict:
    """Both BLEU flavours from fairseq-generate output (or plain hypothesis lines); the scored text is
    written beside the JSON."""
    if is_generate_output(generate_text):
        hypotheses, targets = parse_generate_output(generate_text)
    elif config.references is not None:
        hypotheses, targets = generate_text.splitlines(), None
    else:
        raise DataError(
            f"--hypotheses {config.hypotheses}: plain hypothesis lines need --references "
            "(expected a fairseq-generate log, or the prepared references beside the data)"
        )
    hypotheses = [remove_subwords(line, config.subword) for line in hypotheses]
    if config.references is not None:
        references = read_lines(config.references, len(hypotheses), "--references")
    else:
        references = [remove_subwords(line, config.subword) for line in targets]
    lang, profile = config.target_lang, config.profile
    if config.raw_references is not None:
        detok_references = read_lines(config.raw_references, len(hypotheses), "--raw-references")
        references_are = f"the raw release references {config.raw_references}"
        lowercase = False
    else:
        detok_references = detokenized(references, profile, lang)
        lowercase = profile_named(profile).lowercase
        references_are = "the detokenised prepared references" + (" (lowercased)" if lowercase else "")
    texts = {
        "hyp.detok": detokenized(hypotheses, profile, lang),
        "ref.detok": detok_references,
        "hyp.tok": tokenized(hypotheses, profile, lang),
        "ref.tok": tokenized(references, profile, lang),
    }
    for name, lines in texts.items():
        write_lines(config.out.parent / f"{config.subset}.{name}", lines)
    uses = compare_with(profile, config.raw_references is not None)
    scores = {
        "sacrebleu": sacrebleu_score(texts["hyp.detok"], texts["ref.detok"], references_are, lowercase).as_dict(),
        "tokenized_bleu": tokenized_bleu_score(texts["hyp.tok"], texts["ref.tok"]).as_dict(),
    }
    for name, score in scores.items():
        score["compare_with"] = uses[name]
    if profile_named(profile).lowercase and config.raw_references is not None:
        perfect = perfect_system_score(references, detok_references, profile, lang).score
        scores["sacrebleu"]["perfect_system"] = perfect
        scores["sacrebleu"]["compare_with"] += f"; a perfect {profile}-profile system scores {perfect:.2f} here"
    return {
        **scores,
        "generate_bleu4": uses["generate_bleu4"],
        "n_sentences": len(hypotheses),
        "checkpoint": str(config.checkpoint) if config.checkpoint else None,
        "hypotheses": str(config.hypotheses or config.generate_output),
        "data_bin": str(config.data_bin),
        "subset": config.subset,
        "source_lang": config.source_lang,
        "target_lang": config.target_lang,
        "beam": config.beam if config.hypotheses is None else None,
        "profile": profile,
        "subword": config.subword,
        "references": str(config.references) if config.references else "fairseq-generate T- lines",
        "raw_references": str(config.raw_references) if config.raw_references else None,
    }


def count_new_hypotheses(handle, pending: str) -> tuple[int, str]:
    """``H-`` lines among what was appended to the log since the last call; a partial last line waits."""
    text = pending + handle.read()
    complete, _, pending = text.rpartition("\n")
    return sum(line.startswith("H-") for line in complete.split("\n")) if complete else 0, pending


def decode(config: EvalConfig, expected: int) -> None:
    """fairseq-generate with a progress bar over the hypotheses it writes (its own bar is off when stderr
    is not a terminal); its console output is kept for the error message."""
    from tqdm import tqdm

    output = config.generate_output
    output.unlink(missing_ok=True)
    with (
        tempfile.TemporaryFile("w+", encoding="utf-8") as console,
        tqdm(
            total=expected, desc=f"fairseq-generate {config.subset}", unit="sent", mininterval=2, file=sys.stderr
        ) as bar,
    ):
        process = subprocess.Popen(generate_command(config), stdout=console, stderr=subprocess.STDOUT, text=True)
        handle, pending = None, ""
        while True:
            finished = process.poll() is not None
            if handle is None and output.is_file():
                handle = output.open(encoding="utf-8")
            if handle is not None:
                count, pending = count_new_hypotheses(handle, pending)
                bar.update(count)
            if finished:
                break
            time.sleep(0.5)
        if handle is not None:
            handle.close()
        if process.returncode != 0:
            console.seek(0)
            tail = console.read().strip().splitlines()[-1:]
            raise ToolError(f"fairseq-generate failed (exit {process.returncode}): {' '.join(tail)}")


def check_sentence_count(config: EvalConfig, text: str, source: Path, expected: int) -> None:
    """The hypotheses cover the subset, checked before the references are read, so a short hypothesis file
    is named as such (never blamed on the references)."""
    found = len(parse_generate_output(text)[0]) if is_generate_output(text) else len(text.splitlines())
    if found == expected:
        return
    if config.hypotheses is None:
        raise ToolError(f"{source}: {found} of {expected} {config.subset} sentences translated")
    raise DataError(
        f"--hypotheses {source}: {found} hypotheses, expected {expected} (one per {config.subset} sentence of "
        f"{config.data_bin})"
    )


def decode_with_ctranslate2(config: EvalConfig) -> None:
    """The subset translated by the CTranslate2 folder, in fairseq-generate's batches, written as its log."""
    from tqdm import tqdm

    from lskd_deploy.translate import (
        Decoding,
        ctranslate2_device,
        generate_log,
        open_translator,
        read_subset,
        translate,
    )

    subset = read_subset(config.data_bin, config.subset, config.source_lang, config.target_lang, config.batch_size)
    translator = open_translator(config.model, ctranslate2_device(config.device), config.compute_type, config.threads)
    decoding = Decoding(config.beam, config.batch_size, config.max_len_a, config.max_len_b)
    with tqdm(
        total=len(subset.sources), desc=f"ctranslate2 {config.subset}", unit="sent", mininterval=2, file=sys.stderr
    ) as bar:
        hypotheses = translate(translator, subset, decoding, progress=bar.update)
    write_lines(config.generate_output, generate_log(subset, hypotheses).splitlines())


def engine_record(config: EvalConfig, seconds: Optional[float]) -> dict:
    """What produced the hypotheses, for bleu.json; None where --hypotheses re-scored a kept log."""
    if config.hypotheses is not None:
        return {"engine": None, "compute_type": None, "model": None, "decode_seconds": None}
    if config.engine == "fairseq":
        return {"engine": "fairseq", "compute_type": "float32", "model": None, "decode_seconds": seconds}
    from lskd_deploy.export import read_manifest

    exported = read_manifest(config.model).get("quantization")
    compute_type = exported if config.compute_type == "default" and exported else config.compute_type
    return {
        "engine": "ctranslate2",
        "compute_type": compute_type,
        "model": str(config.model),
        "decode_seconds": seconds,
    }


def evaluate(config: EvalConfig) -> dict:
    expected = binarised_sentence_count(config.data_bin, config.subset, config.source_lang, config.target_lang)
    config.out.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    if config.hypotheses is None and config.engine == "ctranslate2":
        decode_with_ctranslate2(config)
    elif config.hypotheses is None:
        decode(config, expected)
    seconds = time.perf_counter() - started if config.hypotheses is None else None
    source = config.hypotheses or config.generate_output
    text = source.read_text(encoding="utf-8")
    check_sentence_count(config, text, source, expected)
    scores = score_generation(config, text)
    scores.update(engine_record(config, seconds))
    atomic_write_json(config.out, scores, sort_keys=False)  # bleu.json marks a recipe stage done
    return scores


def check_engine(config: EvalConfig) -> None:
    """Flags that belong to the other engine are refused, not ignored."""
    if config.engine == "fairseq":
        if config.model is not None:
            raise InvalidConfig(
                f"--model {config.model} is for --engine ctranslate2; fairseq decodes a --path checkpoint"
            )
        if config.compute_type != "default":
            raise InvalidConfig(
                f"--compute-type {config.compute_type} is for --engine ctranslate2; fairseq-generate runs float32"
            )
        if config.threads != 0:
            raise InvalidConfig(
                f"--threads {config.threads} is for --engine ctranslate2; fairseq-generate follows OMP_NUM_THREADS"
            )
        if config.device != "auto":
            torch_device(config.device)
    elif config.checkpoint is not None:
        raise InvalidConfig(
            f"--path {config.checkpoint} is a fairseq checkpoint; --engine ctranslate2 decodes a --model folder "
            "(export one with lskd-export-ct2)"
        )


def check_ctranslate2_model(config: EvalConfig) -> None:
    """The --model folder is a CTranslate2 model for this data's dictionaries; the compute type runs here."""
    from lskd_deploy.translate import check_compute_type, check_model_folder, check_vocabularies, ctranslate2_device

    if config.model is None:
        raise InvalidConfig("--engine ctranslate2 needs --model DIR: a folder written by lskd-export-ct2")
    check_model_folder(config.model)
    check_compute_type(config.compute_type, ctranslate2_device(config.device))
    if config.threads < 0:
        raise InvalidConfig(f"--threads {config.threads}: expected 0 (all cores) or a positive count")
    check_vocabularies(config.model, config.data_bin, config.source_lang, config.target_lang)


def manifest_of(data_bin: Path) -> dict:
    path = data_bin / MANIFEST
    return json.loads(path.read_text()) if path.is_file() else {}


def resolve(config: EvalConfig) -> EvalConfig:
    """Fill the profile, subword scheme and references from the data folder; refuse what is missing."""
    if not (config.data_bin / f"dict.{config.target_lang}.txt").is_file():
        raise InvalidConfig(
            f"{config.data_bin}: no dict.{config.target_lang}.txt (expected a fairseq-preprocess folder)"
        )
    check_engine(config)
    if config.hypotheses is not None:
        if not config.hypotheses.is_file():
            raise InvalidConfig(f"--hypotheses {config.hypotheses}: no such file (expected a fairseq-generate log)")
    elif config.engine == "ctranslate2":
        check_ctranslate2_model(config)
    elif config.checkpoint is None:
        raise InvalidConfig("no --path: expected a checkpoint to decode with, or --hypotheses FILE to re-score")
    elif not config.checkpoint.is_file():
        raise InvalidConfig(f"--path {config.checkpoint}: no such checkpoint file")
    else:
        check_fairseq_checkpoint(config.checkpoint)
    if config.out.is_dir():
        raise InvalidConfig(f"--out {config.out} is a folder; expected the JSON file to write, e.g. RUN_DIR/bleu.json")
    check_writable(config.out.parent, "--out")
    manifest = manifest_of(config.data_bin)
    profile = config.profile or manifest.get("profile")
    subword = config.subword or manifest.get("subword")
    if profile is None or subword is None:
        raise InvalidConfig(f"{config.data_bin} has no {MANIFEST}: pass --profile and --subword")
    references = config.references
    if references is None and manifest:
        prepared = config.data_bin.parent / f"{config.subset}.{config.target_lang}"
        references = prepared if prepared.is_file() else None
    if references is not None and not references.is_file():
        raise InvalidConfig(f"--references {references}: no such file")
    raw_references = config.raw_references
    if raw_references is None and manifest:
        raw = config.data_bin.parent / "raw" / f"{config.subset}.{config.target_lang}"
        raw_references = raw if raw.is_file() else None
    if raw_references is not None and not raw_references.is_file():
        raise InvalidConfig(f"--raw-references {raw_references}: no such file")
    return replace(config, profile=profile, subword=subword, references=references, raw_references=raw_references)


def perfect_system_line(sacre: dict, profile: str) -> list[str]:
    """Where a perfect system of a lowercasing profile tops out on this sacreBLEU, said beside the score."""
    if "perfect_system" not in sacre:
        return []
    return [
        f"               a perfect {profile}-profile system scores {sacre['perfect_system']:.2f} here (its text is "
        "lowercased and Moses-spaced; the references are cased): compare within this profile only"
    ]


def summary(scores: dict, out: Path) -> str:
    """Which number is which, for the terminal; bleu.json holds the same words."""
    sacre, tok = scores["sacrebleu"], scores["tokenized_bleu"]
    return "\n".join(
        [
            f"sacrebleu      {sacre['score']:6.2f}  {sacre['signature']}",
            f"               {sacre['text']}; compare with {sacre['compare_with']}",
            *perfect_system_line(sacre, scores["profile"]),
            f"tokenized_bleu {tok['score']:6.2f}  {tok['signature']}",
            f"               {tok['text']}; compare with {tok['compare_with']}",
            f"note: {scores['generate_bleu4']}",
            *([f"translated by {scores['engine']} ({scores['compute_type']})"] if scores.get("engine") else []),
            f"{scores['n_sentences']} sentences -> {out}",
        ]
    )


@console_script("lskd-evaluate")
def main(argv=None) -> None:
    config = resolve(parse_config(EvalConfig, argv, prog="lskd-evaluate", description=__doc__.splitlines()[0]))
    print(summary(evaluate(config), config.out))


if __name__ == "__main__":
    main()
