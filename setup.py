"""lskd: label smoothing and knowledge distillation for fairseq translation and torchvision models."""
from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent
REQUIREMENTS = [
    line.strip()
    for line in (HERE / "requirements.txt").read_text().splitlines()
    if line.strip() and not line.startswith("#")
]

setup(
    name="lskd",
    version="0.1.0",
    description="Label smoothing + knowledge distillation toolkit (fairseq plugin, vision, analysis)",
    long_description=(HERE / "README.md").read_text() if (HERE / "README.md").exists() else "",
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["lskd*"]),
    package_data={"lskd_report": ["paper_results.json"]},
    install_requires=REQUIREMENTS
    + [
        "fairseq==0.12.2; python_version < '3.11'",
        "fairseq-fixed==0.12.3.1; python_version >= '3.11'",
    ],
    entry_points={
        "console_scripts": [
            "lskd-toy-corpus = lskd_nmt.toy_corpus:main",
            "lskd-dump-teacher = lskd_fairseq.cli.dump_teacher:main",
            "lskd-distill-corpus = lskd_fairseq.cli.distill_corpus:main",
            "lskd-fairseq-diffusion = lskd_fairseq.cli.diffusion:main",
            "lskd-prepare-iwslt = lskd_nmt.prepare_iwslt:main",
            "lskd-evaluate = lskd_nmt.evaluate:main",
            "lskd-results = lskd_report.results:main",
            "lskd-vision = lskd_vision.cli:main",
        ]
    },
)
