"""``python -m lskd_grid.settle RECIPE ARG...``: a recipe's settings settled and checked, as bash code to ``eval``.

The code sets every setting, the recipe's constants and its planned runs (``lskd_grid.recipe_settings``), and for
a grid its stages: ``STAGE_DONE`` (stage -> the file that says it finished), ``STAGE_RECORD`` (stage -> the
settings record written when it starts) and ``REDO_PATHS`` (what to delete first with ``REDO_CHANGED=1``). A
stage recorded with other settings is refused here, before anything runs (``lskd_grid.stages``).
"""

import os
import shlex
import sys

from lskd.errors import InvalidConfig
from lskd_grid.recipe_settings import Recipe, settle, shell_array, shell_code, usage
from lskd_grid.recipe_table import RECIPES
from lskd_grid.stages import check_records, redo_paths
from lskd_tools.cli import asks_for_help, run_command


def shell_map(name: str, items: dict) -> str:
    pairs = " ".join(f"[{shlex.quote(key)}]={shlex.quote(value)}" for key, value in items.items())
    return f"declare -gA {name}=({pairs})"


def stage_code(recipe: Recipe, values: dict) -> str:
    stages = recipe.plan(values)
    redo = check_records(recipe.name, values["RUN_DIR"], stages, values["REDO_CHANGED"] == "1")
    return "\n".join(
        (
            shell_map("STAGE_DONE", {stage.name: stage.done for stage in stages}),
            shell_map("STAGE_RECORD", {stage.name: stage.record() for stage in stages}),
            shell_array("REDO_PATHS", redo_paths(values["RUN_DIR"], redo)),
        )
    )


def recipe_from(argv: list[str]) -> Recipe:
    if not argv or argv[0] not in RECIPES:
        raise InvalidConfig(f"expected a recipe name first, one of: {' '.join(RECIPES)}")
    return RECIPES[argv[0]]


def main(argv=None) -> None:
    argv = sys.argv[1:] if argv is None else list(argv)
    recipe = recipe_from(argv)
    if asks_for_help(argv[1:]):
        print(f"printf '%s\\n' {shlex.quote(usage(recipe))}\nexit 0")
        return
    values = settle(recipe, argv[1:], os.environ)
    code = shell_code(recipe, values)
    if recipe.plan is not None:
        code += "\n" + stage_code(recipe, values)
    print(code)


if __name__ == "__main__":
    recipe_name = sys.argv[1] if len(sys.argv) > 1 else "recipe"
    sys.exit(run_command(recipe_name, main))
