"""``lskd-evaluate``: decode a test set with fairseq-generate and write both BLEU flavours to one JSON.

fairseq-generate prints hypotheses (``H-<id>``) and references (``T-<id>``) in batch order, not corpus
order, so both are re-sorted by sentence id before anything is written or scored. The plugin's
``--user-dir`` is always passed so checkpoints trained with its criteria and task load.
"""
import importlib.util
import json
import re
import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Optional

from lskd.errors import DataError, InvalidConfig, ToolError
from lskd_nmt.bleu import (
    SUBWORD_SCHEMES,
    TEXT_PROFILES,
    detokenized,
    remove_subwords,
    sacrebleu_score,
    tokenized,
    tokenized_bleu_score,
)
from lskd_tools.cli import console_script, option, parse_config
from lskd_tools.files import MANIFEST, atomic_write_json, run_tool, write_lines

GENERATE_LINE = re.compile(r"^(?P<kind>[HT])-(?P<id>\d+)\t(?P<rest>.*)$")


def plugin_dir() -> Path:
    """Folder of the installed ``lskd_fairseq`` package, found without importing fairseq."""
    return Path(importlib.util.find_spec("lskd_fairseq").origin).parent


@dataclass
class EvalConfig:
    data_bin: Path = option(positional=True, help="fairseq data folder (e.g. DIR/bin from data-prep)")
    checkpoint: Path = option(flags=("--path",), help="checkpoint to decode with")
    source_lang: str = option(help="source language of the bin/ file names")
    target_lang: str = option(help="target language of the bin/ file names")
    out: Path = option(help="JSON to write, e.g. RUN_DIR/bleu.json")
    profile: Optional[str] = option(None, choices=TEXT_PROFILES, default_text=f"from {MANIFEST}",
                                    help="text profile of the references")
    subword: Optional[str] = option(None, choices=SUBWORD_SCHEMES, default_text=f"from {MANIFEST}",
                                    help="subword scheme to undo before scoring")
    subset: str = option("test", help="subset to translate")
    beam: int = option(5, help="beam size")
    batch_size: int = option(128, help="sentences per fairseq-generate batch")
    max_len_a: float = option(1.2, help="fairseq-generate's --max-len-a")
    max_len_b: int = option(10, help="fairseq-generate's --max-len-b")
    references: Optional[Path] = option(
        None, default_text="DIR/{subset}.{tgt} next to a data-prep bin/, else fairseq's T- lines",
        help="prepared (pre-subword) reference text, one line per sentence")
    user_dir: Optional[Path] = option(None, default_text="the installed lskd_fairseq", help="fairseq plugin folder")

    @property
    def generate_output(self) -> Path:
        return self.out.parent / f"generate-{self.subset}.txt"


def binarised_sentence_count(data_bin: Path, subset: str, source: str, target: str) -> int:
    """Sentences of ``subset`` as fairseq loads them (fairseq is imported only when this runs)."""
    from lskd_fairseq.binarised import sentence_count

    return sentence_count(data_bin, subset, source, target)


def generate_command(config: EvalConfig) -> list[str]:
    return [
        sys.executable, "-m", "fairseq_cli.generate", str(config.data_bin),
        "--path", str(config.checkpoint), "--user-dir", str(config.user_dir or plugin_dir()),
        "--task", "translation",  # decoding needs no teacher, whatever task the checkpoint was trained with
        "--source-lang", config.source_lang, "--target-lang", config.target_lang,
        "--gen-subset", config.subset, "--beam", str(config.beam), "--batch-size", str(config.batch_size),
        "--max-len-a", str(config.max_len_a), "--max-len-b", str(config.max_len_b),
        # fairseq-fixed 0.12.3.1 drops the last (n mod multiple) sentences when this is above 1.
        "--required-batch-size-multiple", "1",
        "--results-path", str(config.out.parent),
    ]


def parse_generate_output(text: str) -> tuple[list[str], list[str]]:
    """(hypotheses, references) ordered by sentence id; ``H`` is ``id\\tscore\\ttext``, ``T`` is ``id\\ttext``."""
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


def score_generation(config: EvalConfig, generate_text: str) -> dict:
    """Both BLEU flavours from fairseq-generate output; the scored text is written beside the JSON."""
    hypotheses, references = parse_generate_output(generate_text)
    hypotheses = [remove_subwords(line, config.subword) for line in hypotheses]
    if config.references is not None:
        references = config.references.read_text(encoding="utf-8").splitlines()
        if len(references) != len(hypotheses):
            raise DataError(f"{config.references}: {len(references)} lines, expected {len(hypotheses)} "
                            "(one per sentence)")
    else:
        references = [remove_subwords(line, config.subword) for line in references]
    lang, profile = config.target_lang, config.profile
    texts = {
        "hyp.detok": detokenized(hypotheses, profile, lang), "ref.detok": detokenized(references, profile, lang),
        "hyp.tok": tokenized(hypotheses, profile, lang), "ref.tok": tokenized(references, profile, lang),
    }
    for name, lines in texts.items():
        write_lines(config.out.parent / f"{config.subset}.{name}", lines)
    return {
        "sacrebleu": sacrebleu_score(texts["hyp.detok"], texts["ref.detok"]).as_dict(),
        "tokenized_bleu": tokenized_bleu_score(texts["hyp.tok"], texts["ref.tok"]).as_dict(),
        "n_sentences": len(hypotheses),
        "checkpoint": str(config.checkpoint),
        "data_bin": str(config.data_bin),
        "subset": config.subset,
        "source_lang": config.source_lang,
        "target_lang": config.target_lang,
        "beam": config.beam,
        "profile": profile,
        "subword": config.subword,
        "references": str(config.references) if config.references else "fairseq-generate T- lines",
    }


def evaluate(config: EvalConfig) -> dict:
    config.out.parent.mkdir(parents=True, exist_ok=True)
    run_tool(generate_command(config), "fairseq-generate")
    scores = score_generation(config, config.generate_output.read_text(encoding="utf-8"))
    expected = binarised_sentence_count(config.data_bin, config.subset, config.source_lang, config.target_lang)
    if scores["n_sentences"] != expected:
        raise ToolError(f"fairseq-generate translated {scores['n_sentences']} of {expected} {config.subset} sentences")
    atomic_write_json(config.out, scores, sort_keys=False)  # bleu.json marks a recipe stage done
    return scores


def manifest_of(data_bin: Path) -> dict:
    path = data_bin / MANIFEST
    return json.loads(path.read_text()) if path.is_file() else {}


def resolve(config: EvalConfig) -> EvalConfig:
    """Fill the profile, subword scheme and references from the data folder; refuse what is missing."""
    if not (config.data_bin / f"dict.{config.target_lang}.txt").is_file():
        raise InvalidConfig(f"{config.data_bin}: no dict.{config.target_lang}.txt "
                            "(expected a fairseq-preprocess folder)")
    if not config.checkpoint.is_file():
        raise InvalidConfig(f"--path {config.checkpoint}: no such checkpoint file")
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
    return replace(config, profile=profile, subword=subword, references=references)


@console_script("lskd-evaluate")
def main(argv=None) -> None:
    config = resolve(parse_config(EvalConfig, argv, prog="lskd-evaluate", description=__doc__.splitlines()[0]))
    scores = evaluate(config)
    print(
        f"sacreBLEU {scores['sacrebleu']['score']:.2f} ({scores['sacrebleu']['signature']}); "
        f"tokenized BLEU {scores['tokenized_bleu']['score']:.2f} on {scores['n_sentences']} sentences -> {config.out}"
    )


if __name__ == "__main__":
    main()
