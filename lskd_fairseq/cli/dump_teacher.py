"""``lskd-dump-teacher``: run a teacher once over a binarised split and cache its top-k logits per token.

The teacher sees the gold targets (teacher forcing) in eval mode, exactly as it does during online KD,
so a student trained from the cache gets the same targets as one trained next to the live teacher.
"""
import argparse
import logging
import sys
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

import lskd_fairseq  # noqa: F401  (checkpoint allow-list)
from lskd.errors import InvalidConfig, LskdError
from lskd_tools.files import file_digest
from lskd_fairseq.loading import load_frozen_model, load_subset, translation_task
from lskd_fairseq.teacher_cache import DTYPES, CacheWriter, Fingerprint, cache_paths, target_lengths

logger = logging.getLogger("lskd-dump-teacher")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="lskd-dump-teacher", description=__doc__.splitlines()[0])
    parser.add_argument("data", help="fairseq-preprocess output folder")
    parser.add_argument("--teacher-path", required=True, help="teacher checkpoint (same dictionaries as DATA)")
    parser.add_argument("--teacher-dict-dir", default=None,
                        help="folder with the dict.*.txt the teacher was trained with, for a teacher that does not "
                             "record its dictionaries and whose data folder is gone")
    parser.add_argument("--out", required=True, help="cache folder (one cache per subset inside)")
    parser.add_argument("--subset", default="train", help="split to score (default: train)")
    parser.add_argument("--topk", type=int, default=4, help="teacher entries kept per token (default: 4)")
    parser.add_argument("-s", "--source-lang", default=None)
    parser.add_argument("-t", "--target-lang", default=None)
    parser.add_argument("--max-tokens", type=int, default=4096, help="tokens per teacher batch")
    parser.add_argument("--dtype", choices=sorted(DTYPES), default="fp16", help="storage type of the logits")
    parser.add_argument("--fp16", action="store_true", help="run the teacher in half precision (GPU)")
    parser.add_argument("--cpu", action="store_true", help="run on CPU even when a GPU is present")
    parser.add_argument("--force", action="store_true", help="replace an existing cache of this subset")
    return parser.parse_args(argv)


def check_args(args) -> None:
    if args.topk < 1:
        raise InvalidConfig(f"--topk must be >= 1, got {args.topk}")
    if args.max_tokens < 1:
        raise InvalidConfig(f"--max-tokens must be >= 1, got {args.max_tokens}")
    if args.fp16 and (args.cpu or not torch.cuda.is_available()):
        raise InvalidConfig("--fp16 needs a GPU; drop it to run the teacher in fp32 on CPU")
    existing = cache_paths(args.out, args.subset)["fingerprint"]
    if existing.exists() and not args.force:
        raise InvalidConfig(f"{existing} exists; pass --force to replace that cache")


@torch.no_grad()
def score_batches(teacher, batches, writer: CacheWriter, topk: int, pad: int, device) -> None:
    """Teacher-forced top-k logits of every target token of ``batches``, written to ``writer``."""
    storage = writer.logits.dtype
    for sample in batches:
        net_input = {key: value.to(device) for key, value in sample["net_input"].items()}
        logits, _ = teacher(**net_input)
        values, indices = logits.float().topk(topk, dim=-1)
        keep = sample["target"].ne(pad).to(device)
        writer.write_batch(sample["id"].numpy(), keep.sum(-1).cpu().numpy(), indices[keep].cpu().numpy().astype(np.int32),
                           values[keep].cpu().numpy().astype(storage))


@torch.no_grad()
def dump(args) -> Fingerprint:
    check_args(args)
    task = translation_task(args.data, args.source_lang, args.target_lang, train_subset=args.subset)
    dataset = load_subset(task, args.subset)
    vocab = len(task.target_dictionary)
    if args.topk > vocab:
        raise InvalidConfig(f"--topk {args.topk} exceeds the target vocabulary ({vocab} symbols)")
    teacher = load_frozen_model(args.teacher_path, task, args.teacher_dict_dir)
    device = torch.device("cuda" if torch.cuda.is_available() and not args.cpu else "cpu")
    teacher.to(device=device, dtype=torch.float16 if args.fp16 else torch.float32)

    fingerprint = Fingerprint.of_data(args.subset, dataset, task.target_dictionary,
                                      file_digest(args.teacher_path), args.topk, args.dtype)
    writer = CacheWriter(args.out, fingerprint, target_lengths(dataset))
    batches = task.get_batch_iterator(dataset, max_tokens=args.max_tokens, max_positions=teacher.max_positions(),
                                      ignore_invalid_inputs=False).next_epoch_itr(shuffle=False)
    progress = tqdm(batches, desc=f"teacher top-{args.topk} on {args.subset}", unit="batch")
    score_batches(teacher, progress, writer, args.topk, task.target_dictionary.pad(), device)
    writer.close()
    return fingerprint


def main(argv=None) -> int:
    logging.basicConfig(format="%(asctime)s | %(levelname)s | %(name)s | %(message)s", level=logging.INFO,
                        stream=sys.stdout)
    args = parse_args(argv)
    try:
        fingerprint = dump(args)
    except LskdError as error:
        print(f"lskd-dump-teacher: error: {error}", file=sys.stderr)
        return 1
    size = sum(path.stat().st_size for part, path in cache_paths(args.out, args.subset).items() if part != "fingerprint")
    logger.info("cached top-%d of %d target tokens (%d sentences) in %s: %.1f bytes per token",
                fingerprint.topk, fingerprint.tokens, fingerprint.sentences, Path(args.out), size / fingerprint.tokens)
    return 0


if __name__ == "__main__":
    sys.exit(main())
