"""``lskd-evaluate``: decode a test set with fairseq-generate and write both BLEU flavours to one JSON.

fairseq-generate prints hypotheses (``H-<id>``) and references (``T-<id>``) in batch order, not corpus
order, so both are re-sorted by sentence id before anything is written or scored. The plugin's
``--user-dir`` is always passed so checkpoints trained with its criteria and task load.
"""
import argparse
import importlib.util
import json
import re
import struct
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from lskd_nmt.bleu import (
    SUBWORD_SCHEMES,
    TEXT_PROFILES,
    detokenized,
    remove_subwords,
    sacrebleu_score,
    tokenized,
    tokenized_bleu_score,
)
from lskd_tools.files import MANIFEST, atomic_write_json, run_tool, write_lines

GENERATE_LINE = re.compile(r"^(?P<kind>[HT])-(?P<id>\d+)\t(?P<rest>.*)$")
MMAP_INDEX_MAGIC = b"MMIDIDX\x00\x00"


def plugin_dir() -> Path:
    """Folder of the installed ``lskd_fairseq`` package, found without importing fairseq."""
    return Path(importlib.util.find_spec("lskd_fairseq").origin).parent


@dataclass
class EvalConfig:
    data_bin: Path
    checkpoint: Path
    source_lang: str
    target_lang: str
    out: Path
    profile: str
    subword: str
    subset: str = "test"
    beam: int = 5
    batch_size: int = 128
    max_len_a: float = 1.2
    max_len_b: int = 10
    references: Optional[Path] = None  # prepared (pre-subword) reference text; None: fairseq's T- lines
    user_dir: Optional[Path] = None

    @property
    def generate_output(self) -> Path:
        return self.out.parent / f"generate-{self.subset}.txt"


def binarised_sentence_count(data_bin: Path, subset: str, source: str, target: str) -> int:
    """Sentences in fairseq's mmap index (magic, u64 version, u8 dtype, u64 count), read without fairseq."""
    for pair in (f"{source}-{target}", f"{target}-{source}"):
        index = data_bin / f"{subset}.{pair}.{target}.idx"
        if index.is_file():
            header = index.read_bytes()[:26]
            if not header.startswith(MMAP_INDEX_MAGIC):
                raise ValueError(f"{index}: not a fairseq mmap index")
            return struct.unpack("<Q", header[18:26])[0]
    raise ValueError(f"{data_bin}: no {subset}.{source}-{target}.{target}.idx or {subset}.{target}-{source}.{target}.idx")


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
        raise ValueError("fairseq-generate output: H- and T- lines cover different sentence ids")
    ids = sorted(hypotheses)
    if ids != list(range(len(ids))):
        raise ValueError(f"fairseq-generate output: sentence ids are not 0..{len(ids) - 1}")
    return [hypotheses[i] for i in ids], [references[i] for i in ids]


def score_generation(config: EvalConfig, generate_text: str) -> dict:
    """Both BLEU flavours from fairseq-generate output; the scored text is written beside the JSON."""
    hypotheses, references = parse_generate_output(generate_text)
    hypotheses = [remove_subwords(line, config.subword) for line in hypotheses]
    if config.references is not None:
        references = config.references.read_text(encoding="utf-8").splitlines()
        if len(references) != len(hypotheses):
            raise ValueError(f"{config.references}: {len(references)} lines, expected {len(hypotheses)} (one per sentence)")
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
        raise RuntimeError(f"fairseq-generate translated {scores['n_sentences']} of {expected} {config.subset} sentences")
    atomic_write_json(config.out, scores, sort_keys=False)  # bleu.json marks a recipe stage done
    return scores


def manifest_of(data_bin: Path) -> dict:
    path = data_bin / MANIFEST
    return json.loads(path.read_text()) if path.is_file() else {}


def parse_args(argv=None) -> EvalConfig:
    parser = argparse.ArgumentParser(prog="lskd-evaluate", description=__doc__.splitlines()[0])
    parser.add_argument("data_bin", type=Path, help="fairseq data folder (e.g. DIR/bin from data-prep)")
    parser.add_argument("--path", type=Path, required=True, help="checkpoint to decode with")
    parser.add_argument("--source-lang", required=True)
    parser.add_argument("--target-lang", required=True)
    parser.add_argument("--out", type=Path, required=True, help="JSON to write, e.g. RUN_DIR/bleu.json")
    parser.add_argument("--subset", default="test")
    parser.add_argument("--beam", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--profile", choices=TEXT_PROFILES, help="text profile (default: from lskd-prep.json)")
    parser.add_argument("--subword", choices=SUBWORD_SCHEMES, help="subword scheme (default: from lskd-prep.json)")
    parser.add_argument("--references", type=Path,
                        help="prepared reference text, one line per sentence (default: DIR/{subset}.{tgt} "
                             "next to a data-prep bin/, else fairseq's T- lines)")
    parser.add_argument("--user-dir", type=Path, help="fairseq plugin folder (default: the installed lskd_fairseq)")
    args = parser.parse_args(argv)
    if not (args.data_bin / f"dict.{args.target_lang}.txt").is_file():
        parser.error(f"{args.data_bin}: no dict.{args.target_lang}.txt (expected a fairseq-preprocess folder)")
    if not args.path.is_file():
        parser.error(f"--path {args.path}: no such checkpoint file")
    manifest = manifest_of(args.data_bin)
    profile = args.profile or manifest.get("profile")
    subword = args.subword or manifest.get("subword")
    if profile is None or subword is None:
        parser.error(f"{args.data_bin} has no {MANIFEST}: pass --profile and --subword")
    references = args.references
    if references is None and manifest:
        prepared = args.data_bin.parent / f"{args.subset}.{args.target_lang}"
        references = prepared if prepared.is_file() else None
    if references is not None and not references.is_file():
        parser.error(f"--references {references}: no such file")
    return EvalConfig(
        data_bin=args.data_bin, checkpoint=args.path, source_lang=args.source_lang, target_lang=args.target_lang,
        out=args.out, profile=profile, subword=subword, subset=args.subset, beam=args.beam,
        batch_size=args.batch_size, references=references, user_dir=args.user_dir,
    )


def main(argv=None) -> None:
    config = parse_args(argv)
    try:
        scores = evaluate(config)
    except (RuntimeError, ValueError) as error:
        sys.exit(f"lskd-evaluate: error: {error}")
    print(
        f"sacreBLEU {scores['sacrebleu']['score']:.2f} ({scores['sacrebleu']['signature']}); "
        f"tokenized BLEU {scores['tokenized_bleu']['score']:.2f} on {scores['n_sentences']} sentences -> {config.out}"
    )


if __name__ == "__main__":
    main()
