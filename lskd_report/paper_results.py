"""The paper's published numbers (paper.md §2.1-2.6), stored as data in ``paper_results.json``.

Each table id maps to its teacher row (per teacher LS factor α) and student rows (per temperature T, then
α), with the metric names it reports (``top1``/``top5`` for vision, ``bleu`` for NMT), the table it cites and,
where the digest flags one, a caveat (``note``).
"""

import json
from functools import lru_cache
from pathlib import Path

from lskd.errors import InvalidConfig

PAPER_RESULTS = Path(__file__).with_name("paper_results.json")


@lru_cache(maxsize=1)
def paper_tables() -> dict:
    return json.loads(PAPER_RESULTS.read_text(encoding="utf-8"))


def paper_table(table_id: str) -> dict:
    tables = paper_tables()
    if table_id not in tables:
        raise InvalidConfig(f"unknown paper table {table_id!r} (expected one of: {', '.join(tables)}, or none)")
    return tables[table_id]
