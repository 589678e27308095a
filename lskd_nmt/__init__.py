"""NMT data and evaluation: IWSLT release reading and preparation, text profiles, BLEU flavours, the
evaluation driver and the toy corpus. Imports fairseq only through ``lskd_fairseq``."""
