"""Every recipe's settings, defaults and constants (``recipes/*.sh``; the mechanism is ``recipe_settings``).

The NMT defaults follow the paper's Tan et al. setup (paper profile); ``tiny`` and ``toy`` are CPU profiles.
"""

import json
import os
import shutil
import sys
from pathlib import Path

from lskd.checks import (
    check_temperature,
    choice,
    existing,
    integer,
    kd_weight,
    members,
    number,
    numbers,
    optional,
    seeds,
    smoothing,
)
from lskd.errors import InvalidConfig
from lskd_grid.executor_settings import check_execution, execution
from lskd_grid.grid import Grid, number_name
from lskd_grid.recipe_settings import Recipe, Setting
from lskd_grid.runs import KD_MODES
from lskd_grid.stages import nmt_stages, vision_stages
from lskd_grid.transfers import settings as transfer_settings
from lskd_grid.transfers import with_transfers
from lskd_report.paper_results import paper_tables


def cores() -> int:
    return len(os.sched_getaffinity(0))


def distill_command() -> str:
    """``lskd-distill-corpus`` beside this interpreter, else on PATH; empty when it is not installed."""
    beside = Path(sys.executable).parent / "lskd-distill-corpus"
    return str(beside) if beside.is_file() else shutil.which("lskd-distill-corpus") or ""


def run_dir(recipe: str):
    return lambda v: f"runs/{recipe}" + ("-tiny" if v.get("PROFILE") == "tiny" else "")


def jobs(v: dict) -> str:
    return str(cores()) if v.get("GPUS", "0") == "0" else "1"


GRID = (
    Setting("SEEDS", "training seeds; the student of seed s distils from the teacher of seed s", "1"),
    Setting("ALPHAS", "teacher label smoothing values, any decimals", "0.0 0.1"),
    Setting("TEMPERATURES", "student temperatures", "1 2 3 64"),
)
JOBS = Setting(
    "JOBS",
    "lanes at once; a lane is one teacher followed by its students",
    jobs,
    integer(1),
    shown="GPUS=0: the number of cores; else 1, since lanes would share the GPUs",
)


def temperatures(text: str) -> tuple[float, ...]:
    return numbers("DIFFUSION_TEMPERATURES", text, check_temperature, "a temperature > 0")


def temperature_list(text: str) -> None:
    temperatures(text)


def temperature_names(text: str) -> str:
    return " ".join(map(number_name, temperatures(text)))


def nmt_grid(v: dict) -> Grid:
    return with_transfers(v, Grid.parse(v["ALPHAS"], v["TEMPERATURES"], v["SEEDS"], v["KD_MODES"]))


def vision_grid(v: dict) -> Grid:
    return with_transfers(v, Grid.parse(v["ALPHAS"], v["TEMPERATURES"], v["SEEDS"]))


def nmt_cross_check(v: dict) -> None:
    check_execution(v)
    if v["FP16"] == "1" and v["GPUS"] == "0":
        raise InvalidConfig("FP16=1 with GPUS=0: fp16 needs a GPU (set GPUS >= 1 or FP16=0)")
    if v.get("ORIG") and v.get("ARCHIVE"):
        raise InvalidConfig("ORIG and ARCHIVE are both set: expected one release source")
    data = Path(v["DATA_DIR"])
    if data.is_dir() and not (data / "bin").is_dir() and any(data.iterdir()):
        raise InvalidConfig(
            f"DATA_DIR {data}: exists without bin/ (expected a data folder written by a recipe, or none)"
        )
    prepared = data / "bin" / "lskd-prep.json"
    if v.get("SOURCE") and prepared.is_file():
        recorded = json.loads(prepared.read_text(encoding="utf-8")).get("source", "wit3")  # older manifests: wit3
        if recorded != v["SOURCE"]:
            raise InvalidConfig(
                f"SOURCE {v['SOURCE']}: DATA_DIR {data} was prepared from {recorded} (expected "
                "another DATA_DIR for another source)"
            )
    seq = [mode for mode in v["KD_MODES"].split() if mode in ("seq", "seq+word")]
    if seq and not v["DISTILL_CORPUS"]:
        raise InvalidConfig(
            f"KD_MODES {v['KD_MODES']!r}: {seq[0]} needs lskd-distill-corpus, which this environment does not have"
        )


NMT_STAGES = """Stages (each skipped when its output exists; logs in RUN_DIR/logs/<stage>.log); X is aA-sS:
  data                     prepared data in DATA_DIR (binarised in DATA_DIR/bin)
  teacher-X                label_smoothed_teacher, --label-smoothing A, --seed S, for A in ALPHAS, S in SEEDS
  eval-teacher-X           lskd-evaluate of its checkpoint_best.pt on EVAL_SUBSET -> RUN_DIR/teacher-X/bleu.json
  cache-X                  (word) teacher top-TOPK on train and valid -> RUN_DIR/teacher-X/cache-topTOPK/
                           (TOPK_TAIL=1: with --tail-temperatures; LOGIT_STANDARDIZATION=1: --standardization-stats)
  distill-X                (seq, seq+word) lskd-distill-corpus of train -> RUN_DIR/teacher-X/distilled/
  distilled-cache-X        (seq+word) teacher top-TOPK on the distilled folder -> teacher-X/distilled-cache-topTOPK/
  student-aA-TT-word-sS    word_kd from the cache at temperature T, for T in TEMPERATURES
  student-aA-seq-sS        label_smoothed_teacher (STUDENT_LS) on the distilled folder: one per teacher
  student-aA-TT-seq+word-sS word_kd on the distilled folder from its cache, at each T
  student-aA-TT-MODE-D-sS  the same with divergence D, for D in DIVERGENCES other than kl
  eval-student-...         -> its bleu.json
  export-Q-RUN             (EXPORT) lskd-export-ct2 of RUN's checkpoint_best.pt, for Q in EXPORT -> RUN_DIR/RUN/ct2-Q/
  eval-Q-RUN               lskd-evaluate --engine ctranslate2 of that folder -> RUN_DIR/RUN/bleu-ct2-Q/bleu.json
  results                  lskd-results over the run manifests -> RUN_DIR/results.{md,csv}
Every run folder holds run.json (kind, alpha, seed, temperature, KD mode, teacher; a student's divergence and
transfer settings when not the defaults), written when it starts."""

NMT_MODEL = (
    Setting(
        "ARCH", "fairseq --arch", {"paper": "transformer_iwslt_de_en", "tiny": "transformer", "toy": "transformer"}
    ),
    Setting(
        "MODEL_ARGS",
        "extra model flags",
        {
            "paper": "--share-all-embeddings",
            "tiny": "--share-all-embeddings --encoder-layers 1 --decoder-layers 1 --encoder-embed-dim 64 "
            "--decoder-embed-dim 64 --encoder-ffn-embed-dim 128 --decoder-ffn-embed-dim 128 "
            "--encoder-attention-heads 2 --decoder-attention-heads 2",
            "toy": "--share-all-embeddings --encoder-layers 2 --decoder-layers 2 --encoder-embed-dim 64 "
            "--decoder-embed-dim 64 --encoder-ffn-embed-dim 256 --decoder-ffn-embed-dim 256 "
            "--encoder-attention-heads 4 --decoder-attention-heads 4",
        },
        shown="--share-all-embeddings; [tiny] 1+1 layers, 64-d, FFN 128, 2 heads; "
        "[toy] 2+2 layers, 64-d, FFN 256, 4 heads",
    ),
    Setting("MAX_UPDATE", "updates per model", {"paper": "300000", "tiny": "40", "toy": "200"}, integer(1)),
    Setting("MAX_EPOCH", "epochs per model, 0 = no limit", "0", integer(0)),
    Setting(
        "PATIENCE",
        "teacher early stopping, validations without a better valid loss; -1 = off",
        {"paper": "20", "tiny": "-1", "toy": "-1"},
        integer(-1),
    ),
    Setting("STUDENT_PATIENCE", "student early stopping", {"paper": "100", "tiny": "-1", "toy": "-1"}, integer(-1)),
    Setting("MAX_TOKENS", "tokens per batch and GPU", {"paper": "4096", "tiny": "2048", "toy": "1024"}, integer(1)),
    Setting("UPDATE_FREQ", "batches per update", "1", integer(1)),
    Setting(
        "LR", "peak learning rate, inverse_sqrt schedule", {"paper": "5e-4", "tiny": "2e-3", "toy": "3e-3"}, number(0)
    ),
    Setting("WARMUP", "warm-up updates from WARMUP_INIT_LR", {"paper": "4000", "tiny": "20", "toy": "100"}, integer(1)),
    Setting("WARMUP_INIT_LR", "", "1e-7", number(0)),
    Setting("DROPOUT", "", {"paper": "0.3", "tiny": "0.1", "toy": "0.1"}, number(0, 1, high_open=True)),
    Setting("WEIGHT_DECAY", "", "0.0", number(0)),
    Setting("CLIP_NORM", "0.0 = no clipping", "0.0", number(0)),
)
NMT_KD = (
    *GRID,
    Setting(
        "KD_MODES",
        f"student kinds: word (word-level KD from a top-k cache), seq (sequence-level KD: "
        f"trained on the teacher's beam translations, no T), seq+word (both); any of {' '.join(KD_MODES)}",
        "word",
    ),
    Setting("TOPK", "teacher entries cached per token", "4", integer(1)),
    *transfer_settings(tail=True),
    Setting("KD_WEIGHT", "weight of the KD term; 1 - KD_WEIGHT goes to the hard term", "0.9", kd_weight),
    Setting("STUDENT_LS", "label smoothing of the students' hard term (seq: of their only term)", "0.1", smoothing),
    Setting("DISTILL_BEAM", "beam of lskd-distill-corpus (seq modes)", "5", integer(1)),
    Setting("DISTILL_LENPEN", "length penalty of lskd-distill-corpus", "1.0", number(0)),
    Setting("BEAM", "beam size of lskd-evaluate", "5", integer(1)),
    Setting(
        "EVAL_SUBSET",
        "split that bleu.json scores ([tiny]: an untrained model decodes every test sentence to the length limit)",
        {"paper": "test", "tiny": "valid"},
        choice("test", "valid"),
    ),
    Setting(
        "BLEU_METRIC",
        "key of bleu.json in the results table",
        lambda v: "tokenized_bleu.score" if v.get("TEXT_PROFILE") == "paper" else "sacrebleu.score",
        choice("sacrebleu.score", "tokenized_bleu.score"),
        shown="tokenized_bleu.score for TEXT_PROFILE=paper, else sacrebleu.score",
    ),
)


def quantizations(text: str) -> None:
    """EXPORT: distinct CTranslate2 quantisations (lskd-export-ct2's choices; CTranslate2 is imported only
    when one is asked for, since it takes seconds to import)."""
    names = text.split()
    if not names:
        return
    from lskd_deploy.export import QUANTIZATIONS

    unknown = [name for name in names if name not in QUANTIZATIONS]
    if unknown:
        raise InvalidConfig(
            f"{unknown[0]} is not a quantisation (expected a list among: {' '.join(QUANTIZATIONS)}; '' = no export)"
        )
    if len(set(names)) < len(names):
        raise InvalidConfig("a quantisation is listed twice (expected each once)")


NMT_DEPLOY = (
    Setting(
        "EXPORT",
        "CTranslate2 quantisations to export every teacher and student to after training (lskd-export-ct2 -> "
        "RUN/ct2-Q), each scored through CTranslate2 (-> RUN/bleu-ct2-Q/bleu.json), e.g. 'int8' or 'int8 float32'; "
        "'' = no export",
        "",
        quantizations,
    ),
)
NMT_DEVICE = (
    Setting(
        "GPUS",
        "GPUs per training run, fairseq --distributed-world-size; 0 = CPU",
        {"paper": "1", "tiny": "0", "toy": "0"},
        integer(0),
    ),
    JOBS,
    Setting(
        "FP16",
        "1 = --fp16 training, half-precision teacher dumps and distillation (needs GPUS >= 1)",
        "0",
        choice("0", "1"),
    ),
    Setting("LOG_INTERVAL", "fairseq --log-interval", {"paper": "100", "tiny": "10", "toy": "50"}, integer(1)),
    Setting("TRAIN_ARGS", "extra fairseq-train flags for every model", ""),
    Setting(
        "DISTILL_CORPUS",
        "the lskd-distill-corpus command (seq modes)",
        lambda v: distill_command(),
        shown="lskd-distill-corpus beside PYTHON or on PATH",
    ),
)
SMALL = {"tiny": "0:30:00", "toy": "0:30:00"}
NMT_EXECUTION = execution(
    {
        "data": {"paper": "4:00:00", **SMALL},
        "teacher": {"paper": "3-00:00:00", **SMALL},
        "cache": {"paper": "12:00:00", **SMALL},
        "student": {"paper": "3-00:00:00", **SMALL},
        "eval": {"paper": "2:00:00", **SMALL},
        "results": {"paper": "0:30:00", **SMALL},
    },
    {"paper": "8", "tiny": "1", "toy": "1"},
    {"paper": "32G", "tiny": "2G", "toy": "2G"},
)
IWSLT_DATA = (
    Setting(
        "ORIG",
        "extracted release folder (data-prep --orig)",
        "",
        optional(existing("folder", "the extracted IWSLT release")),
    ),
    Setting(
        "ARCHIVE",
        "release archive (data-prep --archive); neither: data-prep/archives/, see docs/nmt-data.md",
        "",
        optional(existing("file", "the release archive")),
    ),
    Setting(
        "TEXT_PROFILE",
        "data-prep --profile: paper (Moses, lowercased) | modern (raw text)",
        "paper",
        choice("paper", "modern"),
    ),
    Setting("VOCAB_SIZE", "joint sentencepiece vocabulary", {"paper": "10000", "tiny": "500"}, integer(8)),
    Setting(
        "MAX_LINES",
        "keep the first N train and test lines ('' = all)",
        {"paper": "", "tiny": "700"},
        optional(integer(23)),
    ),
)
TOY_DATA = (
    Setting("TOY_TRAIN", "training pairs of the corpus", {"paper": "4000", "tiny": "400", "toy": "2000"}, integer(1)),
    Setting("TOY_VALID", "validation pairs", {"paper": "300", "tiny": "40", "toy": "200"}, integer(1)),
    Setting("TOY_TEST", "test pairs", {"paper": "300", "tiny": "40", "toy": "200"}, integer(1)),
    Setting("TOY_SEED", "corpus seed", "1", integer(0)),
)


def nmt(
    name: str, summary: str, source: str, target: str, paper: str, data: tuple, profiles: tuple, **constants
) -> Recipe:
    head = (
        Setting(
            "PROFILE",
            "tiny (same as --tiny) is a small CPU model with few updates, for smoke tests",
            profiles[0],
            choice(*profiles),
        ),
        Setting("RUN_DIR", "run folder", run_dir(name), shown=f"runs/{name}; [tiny] runs/{name}-tiny"),
        Setting(
            "DATA_DIR",
            "prepared data; one DATA_DIR serves both directions of a pair",
            lambda v: f"{v['RUN_DIR']}/data",
            shown="RUN_DIR/data",
        ),
    )
    return Recipe(
        name,
        summary,
        head + data + NMT_MODEL + NMT_KD + NMT_DEPLOY + NMT_DEVICE + NMT_EXECUTION,
        dict(SOURCE_LANG=source, TARGET_LANG=target, PAPER_TABLE=paper, **constants),
        profiles,
        NMT_STAGES,
        nmt_grid,
        "bleu.json",
        nmt_cross_check,
        lambda v: nmt_stages(v, nmt_grid(v)),
    )


# En-Ru only: the data-prep's --source; '' leaves the choice to it.
SOURCE = Setting(
    "SOURCE",
    "data-prep --source: wit3 (IWSLT 2014 release, the paper's data) | qi2018 (Qi et al. 2018 "
    "TED corpus, downloaded; not comparable with the paper)",
    "",
    optional(choice("wit3", "qi2018")),
    shown="data-prep's choice: wit3 when ORIG or ARCHIVE is set or data-prep/archives/en-ru.tgz exists, else qi2018",
)


def iwslt(name: str, summary: str, source: str, target: str, paper: str, script: str, data: tuple = ()) -> Recipe:
    return nmt(
        name,
        summary,
        source,
        target,
        paper,
        IWSLT_DATA + data,
        ("paper", "tiny"),
        DATA_STAGE="prepare_iwslt",
        PREPARE_SCRIPT=script,
        EVAL_ARGS=(),
    )


VISION_STAGES = """Stages (each skipped when its metrics.json exists; logs in RUN_DIR/logs/<stage>.log):
  teacher-aA-sS            lskd-vision train-teacher --alpha A --seed S, for A in ALPHAS, S in SEEDS
  student-aA-TT-word-sS    lskd-vision train-student from teacher-aA-sS at temperature T
  student-aA-TT-word-D-sS  the same with divergence D, for D in DIVERGENCES other than kl
  results                  lskd-results over the run manifests -> RUN_DIR/results.{md,csv}
Every run folder holds run.json (kind, alpha, seed, temperature, teacher; a student's divergence and transfer
settings when not the defaults), written when it starts."""


def vision(
    name: str,
    summary: str,
    paper: str,
    settings: tuple,
    gpus: str,
    stages: str = VISION_STAGES,
    hours: str = "7-00:00:00",
) -> Recipe:
    head = (Setting("RUN_DIR", "run folder", f"runs/{name}"),)
    tail = (
        *GRID,
        *transfer_settings(tail=False),
        Setting("EPOCHS", "epochs per model ('' = the dataset's preset)", "", optional(integer(1))),
        Setting("GPUS", "GPUs per run (torchrun above 1)", gpus, integer(0)),
        JOBS,
        Setting("PAPER", "lskd-results paper table, or none", paper, choice("none", *paper_tables())),
    )
    small = gpus == "0"
    times = {kind: "0:30:00" if small else "4:00:00" for kind in ("data", "cache", "eval", "results")}
    times.update(teacher=hours, student=hours)
    resources = execution(times, "1" if small else "8", "2G" if small else "32G")
    return Recipe(
        name,
        summary,
        head + settings + tail + resources,
        {},
        (),
        stages,
        vision_grid,
        cross_check=check_execution,
        plan=lambda v: vision_stages(v, vision_grid(v), diffusion=name == "digits"),
    )


def check_demo(v: dict) -> None:
    seeds("DEMO_SEEDS", v["DEMO_SEEDS"])
    seeds("DEMO_DIGITS_SEEDS", v["DEMO_DIGITS_SEEDS"])
    members("DEMO_KD_MODES", v["DEMO_KD_MODES"], KD_MODES)
    temperatures = numbers("DEMO_TEMPERATURES", v["DEMO_TEMPERATURES"], check_temperature, "a temperature > 0")
    if not {1.0, 3.0} <= set(temperatures):
        raise InvalidConfig(
            f"DEMO_TEMPERATURES {v['DEMO_TEMPERATURES']!r}: must include 1 and 3 (the figure compares them)"
        )


RECIPES = {
    recipe.name: recipe
    for recipe in (
        iwslt(
            "iwslt14_en_de",
            "IWSLT 2014 En->De: teachers at each ALPHAS, KD students at each TEMPERATURES (paper Table 5, En-De).",
            "en",
            "de",
            "iwslt-en-de",
            "prepare-iwslt14.sh",
        ),
        iwslt(
            "iwslt14_de_en",
            "IWSLT 2014 De->En: the paper's grid in fairseq's usual direction (no published numbers to compare).",
            "de",
            "en",
            "none",
            "prepare-iwslt14.sh",
        ),
        iwslt(
            "iwslt_en_ru",
            "En->Ru TED: teachers at each ALPHAS, KD students at each TEMPERATURES (paper Table 5, "
            "En-Ru).\nData: the IWSLT 2014 release when supplied (ORIG, ARCHIVE or data-prep/archives/en-ru.tgz), else "
            "the public Qi et al. 2018 TED corpus,\ndownloaded (SOURCE; docs/nmt-data.md). "
            "Only the IWSLT release gives "
            "numbers comparable with the paper's.",
            "en",
            "ru",
            "iwslt-en-ru",
            "prepare-iwslt-en-ru.sh",
            (SOURCE,),
        ),
        nmt(
            "toy_translation",
            "Toy language pair (lskd-toy-corpus, word-level, no subwords): the paper's grid on CPU, "
            "no download.\nProfile toy: a 2+2-layer, 64-d transformer, 200 updates, on CPU.",
            "src",
            "tgt",
            "none",
            TOY_DATA,
            ("toy", "tiny", "paper"),
            DATA_STAGE="make_toy_data",
            EVAL_ARGS=("--profile", "modern", "--subword", "none"),
        ),
        vision(
            "digits",
            "scikit-learn's bundled digits: the alpha x T grid on CPU in about a minute, then the "
            "Fig. 1-style diffusion figure of each seed.",
            "none",
            (
                Setting(
                    "DIFFUSION_TEMPERATURES",
                    "the students shown in each seed's diffusion figure, among those trained",
                    "1 3",
                    check=temperature_list,
                    normal=temperature_names,
                ),
            ),
            "0",
            VISION_STAGES.replace(
                "\n  results",
                "\n  diffusion-sS             lskd-vision visualize of "
                "seed S -> RUN_DIR/diffusion-sS/diffusion.{png,json}"
                "\n  diffusion-D-sS           the same for the students of divergence D (DIVERGENCES other than kl)"
                "\n  results",
            ),
        ),
        vision(
            "cub",
            "CUB-200-2011 with the paper's settings (§3.3-3.4): ResNet-50 teachers fine-tuned from the "
            "ImageNet teachers of the same alpha and seed, ImageNet-pretrained students distilled at each T.",
            "cub-r18",
            (
                Setting(
                    "DATA",
                    "the CUB_200_2011/ folder (data-prep/prepare-cub.sh)",
                    "",
                    existing("folder", "the CUB_200_2011/ folder"),
                    required=True,
                ),
                Setting(
                    "IMAGENET_RUNS",
                    "ImageNet grid holding teacher-aA-sS/best.pth for every alpha and seed",
                    "",
                    existing("folder", "the ImageNet grid's run folder"),
                    required=True,
                ),
                Setting(
                    "STUDENT_INIT",
                    "ImageNet weights of the student, e.g. torchvision resnet18",
                    "",
                    existing("file", "a .pth file"),
                    required=True,
                ),
                Setting("STUDENT_ARCH", "student architecture", "resnet18"),
            ),
            "1",
        ),
        vision(
            "imagenet",
            "ImageNet-1K with the paper's settings (§3.1-3.2): ResNet-50 teachers from scratch (90 "
            "epochs), ResNet-18 students by pure KD (200 epochs, 5-epoch warm-up).",
            "imagenet-r18",
            (
                Setting(
                    "DATA",
                    "IMAGENET/ with train/<wnid>/ and val/<wnid>/ (data-prep/prepare-imagenet-val.sh)",
                    "",
                    existing("folder", "the ImageNet folder"),
                    required=True,
                ),
                Setting("STUDENT_ARCH", "student architecture", "resnet18"),
            ),
            "1",
        ),
        Recipe(
            "demo",
            "make demo: the paper's experiment end to end on embedded data, on CPU, through the recipes "
            "users run\n(toy translation, then digits); finished stages are reused, so a second run only prints.",
            (
                Setting("DEMO_DIR", "where both grids are written", "demo-runs"),
                Setting(
                    "DEMO_TEMPERATURES", "student temperatures of both grids; add 2 and 64 for the paper's grid", "1 3"
                ),
                Setting("DEMO_SEEDS", "seeds of the translation grid (about 2 minutes a seed on 2 cores)", "1 2 3"),
                Setting(
                    "DEMO_DIGITS_SEEDS", "seeds of the digits grid (about 35 s a seed): enough for mean +- sd", "1 2 3"
                ),
                Setting(
                    "DEMO_KD_MODES",
                    "translation students; add seq for sequence-level KD (needs lskd-distill-corpus)",
                    "word",
                ),
                Setting(
                    "DEMO_EXPORT",
                    "EXPORT of the translation grid, e.g. int8: each model's CTranslate2 export and its BLEU and "
                    "speed beside the table's (about 15 s a model on 2 cores: 2-5 minutes for the 18 models)",
                    "",
                    quantizations,
                ),
                Setting(
                    "DEMO_SIZE",
                    "full, or smallest (the CI setting: minutes less, numbers meaningless)",
                    "full",
                    choice("full", "smallest"),
                ),
            ),
            cross_check=check_demo,
        ),
    )
}
