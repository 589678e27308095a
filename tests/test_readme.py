"""The README's teacher -> student -> generate -> sacreBLEU example runs as written (fewer updates), and every
relative link in the README and docs/ leads to a file and heading that exist."""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from sacrebleu.metrics import BLEU

from repo_root import REPO


def readme_example() -> str:
    text = (REPO / "README.md").read_text()
    section = text[text.index("## Teacher → student → BLEU") :]
    return re.search(r"```bash\n(.*?)```", section, re.S).group(1)


@pytest.mark.slow  # end to end: deselect with -m "not slow"
def test_readme_example_runs(tmp_path):
    script = readme_example().replace("--max-update 200", "--max-update 30")
    assert "--max-update 30" in script
    (tmp_path / "lskd_fairseq").symlink_to(REPO / "lskd_fairseq")
    activate = tmp_path / ".venv" / "bin" / "activate"
    activate.parent.mkdir(parents=True)
    activate.write_text(f'export PATH="{Path(sys.executable).parent}:$PATH"\n')
    result = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    score = json.loads(result.stdout[result.stdout.rindex('{\n "name"') :])
    assert (tmp_path / "runs/readme/student/checkpoint_best.pt").exists()
    references = (tmp_path / "runs/readme/toy/test.tgt").read_text().splitlines()
    hypotheses = hypotheses_by_id((tmp_path / "runs/readme/student.gen").read_text())
    in_order = [hypotheses[i] for i in range(len(references))]
    assert (tmp_path / "runs/readme/student.hyp").read_text().splitlines() == in_order
    rescored = BLEU().corpus_score(in_order, [references]).score  # the CLI prints it to one decimal
    assert score["name"] == "BLEU" and score["score"] == pytest.approx(rescored, abs=0.051)


def hypotheses_by_id(generate_output: str) -> dict[int, str]:
    """fairseq-generate's H-ID<tab>SCORE<tab>TEXT lines, read here rather than by the README's shell pipeline."""
    lines = (line.split("\t") for line in generate_output.splitlines() if line.startswith("H-"))
    return {int(key[2:]): text for key, _score, text in lines}


MARKDOWN_LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
FENCED_BLOCK = re.compile(r"^```.*?^```", re.S | re.M)


def heading_anchors(markdown: str) -> set[str]:
    """GitHub's anchors: a heading lowercased, punctuation but hyphens dropped, spaces turned into hyphens."""
    headings = re.findall(r"^#+ (.+)$", FENCED_BLOCK.sub("", markdown), re.M)
    return {re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-") for heading in headings}


def relative_links(markdown: str) -> list[str]:
    targets = MARKDOWN_LINK.findall(FENCED_BLOCK.sub("", markdown))
    return [target for target in targets if not re.match(r"[a-z]+:", target)]


def broken_links(page: Path) -> list[str]:
    broken = []
    for target in relative_links(page.read_text(encoding="utf-8")):
        path, _, anchor = target.partition("#")
        linked = (page.parent / path).resolve() if path else page
        if not linked.is_file():
            broken.append(f"{target}: no such file")
        elif anchor and linked.suffix == ".md" and anchor not in heading_anchors(linked.read_text(encoding="utf-8")):
            broken.append(f"{target}: no heading with that anchor")
    return broken


DOCUMENTATION = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]


@pytest.mark.parametrize("page", DOCUMENTATION, ids=lambda page: page.relative_to(REPO).as_posix())
def test_relative_links_resolve(page):
    assert broken_links(page) == []


def test_link_check_finds_a_broken_link(tmp_path):
    (tmp_path / "other.md").write_text("# A heading, with `code`\n")
    page = tmp_path / "page.md"
    page.write_text(
        "[ok](other.md#a-heading-with-code) [gone](missing.md) [bad](other.md#nowhere) [web](https://example.org)\n"
        "```\n[in code](ignored.md)\n```\n"
    )
    assert broken_links(page) == ["missing.md: no such file", "other.md#nowhere: no heading with that anchor"]


def test_every_docs_page_is_in_the_index():
    index = (REPO / "docs" / "index.md").read_text(encoding="utf-8")
    listed = {target.partition("#")[0] for target in relative_links(index)}
    pages = {page.name for page in (REPO / "docs").glob("*.md")} - {"index.md"}
    assert pages - listed == set()
