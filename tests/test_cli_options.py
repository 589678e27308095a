"""The dataclass-to-flags helper every command's parser is built with (in-process, no torch)."""

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import pytest

from lskd.errors import InvalidConfig
from lskd_tools.cli import option, parse_config, parse_settings


@dataclass
class Example:
    data: Path = option(positional=True, help="input folder")
    names: tuple[str, ...] = option(help="one or more names")
    triple: Optional[tuple[int, int, int]] = option(None, default_text="none", help="three indices")
    limit: Optional[int] = option(None, default_text="all", help="at most this many")
    rate: float = option(0.5, help="a rate with 50% in its help")
    fast: bool = option(False, help="a switch")
    lang: str = option("en", flags=("-l", "--lang"), choices=("en", "de"), help="a language")


def parse(*argv):
    return parse_config(Example, list(argv), prog="example", description="an example")


def test_flags_become_the_dataclass_with_its_types_and_defaults():
    config = parse("in", "--names", "a", "b", "--triple", "3", "9", "6", "-l", "de", "--fast")
    assert config == Example(Path("in"), ("a", "b"), (3, 9, 6), None, 0.5, True, "de")


@pytest.mark.parametrize(
    "argv, message",
    [
        (["in"], "the following arguments are required: --names"),
        (["in", "--names", "a", "--rate", "fast"], "argument --rate: invalid float value: 'fast'"),
        (["in", "--names", "a", "--lang", "fr"], "argument -l/--lang: invalid choice: 'fr'"),
        (["in", "--names", "a", "--triple", "1", "2"], "argument --triple: expected 3 arguments"),
    ],
)
def test_bad_flags_raise_one_message(argv, message):
    with pytest.raises(InvalidConfig) as error:
        parse(*argv)
    assert message in str(error.value) and "\n" not in str(error.value)


def test_help_shows_each_default(capsys):
    with pytest.raises(SystemExit) as exit_info:
        parse("--help")
    text = " ".join(capsys.readouterr().out.split())
    assert exit_info.value.code == 0
    for shown in ("(default: all)", "(default: 0.5)", "50% in its help", "(default: off)", "(default: en)"):
        assert shown in text


def test_a_none_default_must_say_what_it_means():
    @dataclass
    class Vague:
        limit: Optional[int] = option(None, help="at most this many")

    with pytest.raises(TypeError, match="--limit defaults to None"):
        parse_config(Vague, [], prog="vague", description="")


SETTINGS = ("RUN_DIR", "TRAIN_ARGS", "PROFILE")


def test_recipe_settings_are_flags_named_after_their_variables():
    given = parse_settings(
        ["--run-dir", "out", "--train-args", "--fp16", "--tiny", "--profile=paper", "--train-args=-x"],
        SETTINGS,
        {"--tiny": ("PROFILE", "tiny")},
    )
    # a setting flag takes the next word even when it looks like a flag; the later of two flags wins
    assert given == {"RUN_DIR": "out", "TRAIN_ARGS": "-x", "PROFILE": "paper"}
    assert parse_settings([], SETTINGS) == {}


EXPECTED = "(expected --help, --tiny, or a setting flag such as --run-dir VALUE; see --help)"


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--run-dir"], "--run-dir needs a value (RUN_DIR; see --help)"),
        (["--run"], f"unknown argument '--run' {EXPECTED}"),
        (["--tiny=x"], f"unknown argument '--tiny=x' {EXPECTED}"),
        (["out"], f"unknown argument 'out' {EXPECTED}"),
    ],
)
def test_a_bad_recipe_flag_is_one_message(argv, message):
    with pytest.raises(InvalidConfig) as error:
        parse_settings(argv, SETTINGS, {"--tiny": ("PROFILE", "tiny")})
    assert str(error.value) == message
