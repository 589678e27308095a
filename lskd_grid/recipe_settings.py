"""How every recipe (``recipes/*.sh``) takes its settings: checked once, here, before the recipe writes anything.

Each setting is an environment variable ``NAME`` that can also be given as the flag ``--name VALUE`` (the flag
wins; the flags are parsed by ``lskd_tools.cli.parse_settings``, the values checked by ``lskd.checks``).
``python -m lskd_grid.settle RECIPE ARG...`` prints bash code for the recipe to ``eval``: the settled values, the
recipe's constants and its grid's planned runs (``TEACHERS``, ``STUDENTS``: one ``lskd_grid.grid`` row each); or
``RECIPE: error: ...`` on one line and exit status 2; ``--help`` lists every setting with its default. The
recipes themselves are described in ``lskd_grid.recipe_table``.
"""

import shlex
from dataclasses import dataclass, field
from typing import Callable, Mapping, Optional, Union

from lskd.errors import InvalidConfig
from lskd_grid.grid import Grid, number_name, plan_rows
from lskd_tools.cli import parse_settings, setting_flag

Default = Union[str, Mapping[str, str], Callable[[dict], str]]


@dataclass(frozen=True)
class Setting:
    """``default``: a value, a value per profile (profiles not named take the ``paper`` one), or a function of
    the settings settled before it (``shown`` then says what it is in ``--help``)."""

    name: str
    help: str
    default: Default = ""
    check: Optional[Callable[[str], None]] = None
    shown: str = ""
    required: bool = False
    normal: Optional[Callable[[str], str]] = None  # the checked value as the bash side compares it

    @property
    def flag(self) -> str:
        return setting_flag(self.name)

    def default_for(self, profile: str, values: dict) -> str:
        if callable(self.default):
            return self.default(values)
        if isinstance(self.default, Mapping):
            return self.default.get(profile, self.default["paper"])
        return self.default

    def describe_default(self, profiles: tuple[str, ...]) -> str:
        if self.required:
            return "required"
        if self.shown or callable(self.default):
            return self.shown
        if not isinstance(self.default, Mapping):
            return repr(self.default) if self.default == "" or " " in self.default else self.default
        base = self.default["paper"]
        others = [f"[{p}] {self.default[p]}" for p in profiles if p in self.default and self.default[p] != base]
        return "; ".join([base or "''"] + others)


@dataclass(frozen=True)
class Recipe:
    """One recipe: its settings in the order they settle, the constants the bash side reads, and how the
    settled values become a grid (``grid``: None for a recipe that runs other recipes)."""

    name: str
    summary: str
    settings: tuple[Setting, ...]
    constants: Mapping[str, Union[str, tuple]] = field(default_factory=dict)
    profiles: tuple[str, ...] = ()
    stages: str = ""
    grid: Optional[Callable[[dict], Grid]] = None
    metrics: str = "metrics.json"
    cross_check: Optional[Callable[[dict], None]] = None
    plan: Optional[Callable[[dict], list]] = None  # the grid's stages (lskd_grid.stages)


def parse_argv(recipe: Recipe, argv: list[str]) -> dict:
    """Flags given on the command line, by setting name; ``--tiny`` is ``--profile tiny``."""
    switches = {"--tiny": ("PROFILE", "tiny")} if "tiny" in recipe.profiles else {}
    return parse_settings(argv, [setting.name for setting in recipe.settings], switches)


def settle(recipe: Recipe, argv: list[str], environ: Mapping[str, str]) -> dict:
    given = parse_argv(recipe, argv)
    values: dict = {}
    profile = ""
    for setting in recipe.settings:
        if setting.name in given:
            value = given[setting.name]
        elif setting.name in environ:
            value = environ[setting.name]
        else:
            value = setting.default_for(profile, values)
        if setting.required and not value:
            raise InvalidConfig(
                f"{setting.name} is required: {setting.help} (set {setting.name} or pass {setting.flag})"
            )
        if setting.check is not None:
            try:
                setting.check(value)
            except InvalidConfig as error:
                message = str(error)
                if not message.startswith(setting.name):
                    message = f"{setting.name} {value!r}: {message}"
                raise InvalidConfig(message) from None
        values[setting.name] = setting.normal(value) if setting.normal else value
        if setting.name == "PROFILE":
            profile = value
    if recipe.grid is not None:
        recipe.grid(values)
    if recipe.cross_check is not None:
        recipe.cross_check(values)
    return values


def shell_array(name: str, items) -> str:
    return f"{name}=(" + " ".join(shlex.quote(item) for item in items) + ")"


def shell_code(recipe: Recipe, values: dict) -> str:
    lines = [f"{name}={shlex.quote(value)}" for name, value in values.items()]
    for name, value in recipe.constants.items():
        lines.append(shell_array(name, value) if isinstance(value, tuple) else f"{name}={shlex.quote(value)}")
    lines.append(f"METRICS_FILE={shlex.quote(recipe.metrics)}")
    if recipe.grid is not None:
        grid = recipe.grid(values)
        lines.append(shell_array("TEACHERS", plan_rows(grid, recipe.metrics, "teacher")))
        lines.append(shell_array("STUDENTS", plan_rows(grid, recipe.metrics, "student")))
        lines.append(f"TEMPERATURE_NAMES={shlex.quote(' '.join(map(number_name, grid.temperatures)))}")
        options = " ".join(f"[{d}]={shlex.quote(text)}" for d, text in grid.transfer_options if text)
        lines.append(f"declare -gA TRANSFER_OPTIONS=({options})")
    return "\n".join(lines)


def usage(recipe: Recipe) -> str:
    tiny = " [--tiny]" if "tiny" in recipe.profiles else ""
    lines = [f"Usage: bash recipes/{recipe.name}.sh{tiny} [--NAME VALUE ...] [--help]", recipe.summary, ""]
    if recipe.stages:
        lines += [recipe.stages.rstrip(), ""]
    profiles = (
        f"; [{'/'.join(p for p in recipe.profiles if p != 'paper')}] where a profile differs"
        if len(recipe.profiles) > 1
        else ""
    )
    lines.append(
        f"Settings: environment variable NAME, or flag --name VALUE (the flag wins). Default in parentheses{profiles}:"
    )
    width = max(17, 2 + max(len(setting.name) for setting in recipe.settings))
    for setting in recipe.settings:
        text = " ".join(filter(None, (setting.help, f"({setting.describe_default(recipe.profiles)})")))
        lines.append(f"  {setting.name:<{width}}{text}")
    lines += [
        f"  {'PYTHON':<{width}}interpreter with lskd (REPO/.venv/bin/python when it exists; environment only)",
        "",
        "Every setting is checked before anything is written: a bad value stops the recipe with one line and",
        "exit status 2. Re-running resumes: finished stages are skipped (their output exists), each for the",
        "settings it ran with (RUN_DIR/stages/<stage>.json; other settings are refused unless REDO_CHANGED=1).",
    ]
    return "\n".join(lines)
