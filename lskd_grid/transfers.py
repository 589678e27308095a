"""The transfer as a grid axis: the recipes' settings that choose what each student sees of its teacher.

``DIVERGENCES`` is an axis (one student per divergence and cell); the others (``JSD_BETA``, ``SKEW``,
``TEACHER_TEMPERATURE``, ``LOGIT_STANDARDIZATION`` and, for the translation recipes, ``TOPK_TAIL``) hold for every
student of the grid. The defaults are today's transfer, forward KL at the student's temperature on raw logits,
and a setting at its default is recorded nowhere (not in a student's folder name, manifest or stage record), so a
forward-KL grid is named and resumed exactly as before. The formulas are ``lskd.divergences``; docs/transfers.md.
"""

import math

from lskd.checks import DIVERGENCES, check_open_unit, check_temperature, choice, members, optional, through
from lskd_grid.grid import Grid, number_name
from lskd_grid.recipe_settings import Setting
from lskd_grid.runs import DEFAULT_DIVERGENCE

# The setting, the divergences that read it (None: all of them), and its default.
OPTIONS = (
    ("JSD_BETA", ("jsd",), "0.5"),
    ("SKEW", ("skew_kl", "skew_reverse_kl"), "0.1"),
    ("TEACHER_TEMPERATURE", None, ""),
    ("LOGIT_STANDARDIZATION", None, "0"),
    ("TOPK_TAIL", None, "0"),
)


def divergence_list(text: str) -> None:
    members("DIVERGENCES", text, DIVERGENCES)


def open_unit(name: str):
    return through(lambda value: check_open_unit(value, name))


def number_text(text: str) -> str:
    """A number as the folder names write it (0.50 -> 0.5), so equal values compare equal in the stage records."""
    return number_name(float(text)) if text else text


def settings(tail: bool) -> tuple[Setting, ...]:
    """The transfer settings of a recipe; ``tail`` for the translation recipes, whose teachers are top-k caches."""
    chosen = (
        Setting(
            "DIVERGENCES",
            "the students' KD divergences, a grid axis: any of kl reverse_kl jsd tvd skew_kl skew_reverse_kl "
            "(a student of another than kl is named ...-<divergence>-sS; docs/transfers.md)",
            DEFAULT_DIVERGENCE,
            divergence_list,
        ),
        Setting(
            "JSD_BETA",
            "jsd: the teacher's weight in the mixture, in (0, 1); 0.5 = symmetric JSD",
            "0.5",
            open_unit("JSD_BETA"),
            normal=number_text,
        ),
        Setting(
            "SKEW",
            "skew_kl, skew_reverse_kl: the skew in (0, 1) (DistiLLM)",
            "0.1",
            open_unit("SKEW"),
            normal=number_text,
        ),
        Setting(
            "TEACHER_TEMPERATURE",
            "one teacher temperature for every student ('' = each student's own T)",
            "",
            optional(through(check_temperature)),
            normal=number_text,
        ),
        Setting(
            "LOGIT_STANDARDIZATION",
            "1 = z-score each row's logits, teacher's and student's, before the temperature (Sun et al., 2024)",
            "0",
            choice("0", "1"),
        ),
    )
    if not tail:
        return chosen
    return chosen + (
        Setting(
            "TOPK_TAIL",
            "1 = the top-k teacher keeps its mass outside the k tokens as one more outcome (word, seq+word)",
            "0",
            choice("0", "1"),
        ),
    )


def transfer_settings(values: dict, divergence) -> dict:
    """The settings that shape a student's transfer and differ from their defaults, by name (for its stage
    record and manifest); empty for a forward-KL student of a default grid and for a seq-KD student."""
    if divergence is None:
        return {}
    found = {} if divergence == DEFAULT_DIVERGENCE else {"DIVERGENCE": divergence}
    for name, readers, default in OPTIONS:
        value = values.get(name, default)
        if readers is not None and divergence not in readers:
            continue
        if value != default and not (default and value and math.isclose(float(value), float(default))):
            found[name] = value
    return found


def options_text(values: dict, divergence: str) -> str:
    """The manifest's ``transfer_options``: the non-default settings a student of ``divergence`` reads."""
    return " ".join(f"{k}={v}" for k, v in transfer_settings(values, divergence).items() if k != "DIVERGENCE")


def with_transfers(values: dict, grid: Grid) -> Grid:
    """``grid`` with the recipe's divergences and their options."""
    chosen = members("DIVERGENCES", values.get("DIVERGENCES", DEFAULT_DIVERGENCE), DIVERGENCES)
    options = tuple((d, options_text(values, d)) for d in chosen)
    return Grid(grid.alphas, grid.temperatures, grid.seeds, grid.kd_modes, chosen, options)


def teacher_temperatures(values: dict, grid: Grid) -> str:
    """The temperatures a top-k cache must store its tail at: the one TEACHER_TEMPERATURE, else every T."""
    if values.get("TEACHER_TEMPERATURE"):
        return values["TEACHER_TEMPERATURE"]
    return " ".join(map(number_name, grid.temperatures))


def cache_settings(values: dict, grid: Grid) -> dict:
    """What a top-k cache stores beyond the top k: tail log-normalisers and standardisation statistics, only when
    the students read them (so a default grid's cache records are unchanged)."""
    extra = {}
    if values.get("TOPK_TAIL") == "1":
        extra["TAIL_TEMPERATURES"] = teacher_temperatures(values, grid)
    if values.get("LOGIT_STANDARDIZATION") == "1":
        extra["STANDARDIZATION_STATS"] = "1"
    return extra
