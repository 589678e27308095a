"""What fairseq-preprocess wrote, read through fairseq's own dataset classes (for lskd's data tools)."""

from lskd_fairseq.loading import load_subset, translation_task


def sentence_count(data_bin, subset: str, source_lang: str, target_lang: str) -> int:
    """Sentences of ``subset`` as fairseq's translation task loads them (either pair name serves)."""
    return len(load_subset(translation_task(str(data_bin), source_lang, target_lang), subset))
