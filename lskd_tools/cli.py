"""The one way every lskd command and recipe reads its flags, starts and fails.

- ``console_script(prog)`` decorates ``main(argv)``: a user error (``lskd.errors.LskdError``) prints one line
  ``PROG: error: ...`` and exits with status 2, as argparse does for a bad flag; any other exception is a
  bug and keeps its traceback.
- ``ArgumentParser`` reports a bad flag the same way (one line, no usage block); ``--help`` is unchanged.
- A command's settings are one dataclass: ``option(...)`` gives a field its help, flag names and choices,
  ``add_options``/``parse_config`` build the parser from it, and ``--help`` prints every default.
- ``device_option()`` and ``torch_device()``: the ``--device auto|cpu|cuda`` rule of every command that runs
  a model.
- ``parse_settings`` reads the recipes' settings (``recipes/*.sh``, ``lskd_grid.settle``): each is an environment
  variable ``NAME`` that is also the flag ``--name VALUE``; the same parser class, so the same one-line errors.
  The recipes' ``--help`` page is their own (``lskd_grid.recipe_settings.usage``): it shows a default per
  profile, which argparse's formatter cannot.

Values are checked by ``lskd.checks``, the one module of validators; docs/options.md says how it fits together.
"""

import argparse
import collections.abc
import dataclasses
import functools
import sys
import types
import typing
from typing import Any, Callable, Collection, Mapping, Optional, Sequence

from lskd.checks import check_choice
from lskd.errors import InvalidConfig, LskdError

DEVICES = ("auto", "cpu", "cuda")


def run_command(prog: str, main: Callable[[Optional[Sequence[str]]], object], argv=None) -> int:
    try:
        main(argv)
    except LskdError as error:
        print(f"{prog}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    return 0


def console_script(prog: str):
    """Decorate ``main(argv)`` so that it runs through ``run_command``: a failure exits with its status, a
    success returns (so tests and other Python code can call it in-process)."""

    def wrap(main):
        @functools.wraps(main)
        def entry(argv=None) -> None:
            status = run_command(prog, main, argv)
            if status:
                sys.exit(status)

        entry.main = main
        return entry

    return wrap


class ArgumentParser(argparse.ArgumentParser):
    """argparse whose bad-flag errors are ``InvalidConfig``, so ``console_script`` prints them as one line
    (argparse itself prints the usage block first). Subcommand parsers inherit the class."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", argparse.RawDescriptionHelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str):
        raise InvalidConfig(message)


HELP_FLAGS = ("-h", "--help")


def setting_flag(name: str) -> str:
    """The flag of a setting named like an environment variable: ``RUN_DIR`` -> ``--run-dir``."""
    return "--" + name.lower().replace("_", "-")


def asks_for_help(argv: Sequence[str]) -> bool:
    """``-h`` or ``--help`` anywhere on a recipe's line asks for its help, even beside a bad flag."""
    return any(arg in HELP_FLAGS for arg in argv)


def _bind_values(argv: Sequence[str], flags: Collection[str]) -> list[str]:
    """``--name VALUE`` as ``--name=VALUE``: a setting flag takes the next word whatever it looks like
    (``--train-args --fp16``), as a shell user means it; argparse would take ``--fp16`` for a flag of its own."""
    bound, words = [], iter(argv)
    for word in words:
        value = next(words, None) if word in flags else None
        bound.append(word if value is None else f"{word}={value}")
    return bound


def parse_settings(
    argv: Sequence[str], names: Sequence[str], switches: Mapping[str, tuple[str, str]] = {}
) -> dict[str, str]:
    """The settings given as flags, by name (``--run-dir X`` or ``--run-dir=X`` -> ``{"RUN_DIR": "X"}``).
    ``switches``: flags that stand for a setting's value (``--tiny`` -> ``PROFILE=tiny``). Later flags win."""
    flags = {setting_flag(name): name for name in names}
    parser = ArgumentParser(add_help=False, allow_abbrev=False, exit_on_error=False)
    for flag, name in flags.items():
        parser.add_argument(flag, dest=name, default=argparse.SUPPRESS)
    for flag, (name, value) in switches.items():
        parser.add_argument(flag, dest=name, action="store_const", const=value, default=argparse.SUPPRESS)
    try:
        given, unknown = parser.parse_known_args(_bind_values(argv, flags))
    except argparse.ArgumentError as error:
        if error.argument_name in flags:
            raise InvalidConfig(
                f"{error.argument_name} needs a value ({flags[error.argument_name]}; see --help)"
            ) from None
        # the only other error: a switch given a value (--tiny=x)
        unknown = [arg for arg in argv if arg.startswith(f"{error.argument_name}=")] or [error.argument_name]
    if unknown:
        also = "".join(f"{flag}, " for flag in switches)
        raise InvalidConfig(
            f"unknown argument {unknown[0]!r} (expected --help, {also}or a setting flag such as "
            f"{setting_flag(names[0])} VALUE; see --help)"
        )
    return vars(given)


def option(
    default: Any = dataclasses.MISSING,
    *,
    help: str,
    flags: Sequence[str] = (),
    choices=None,
    metavar=None,
    nargs=None,
    type=None,
    default_text: Optional[str] = None,
    positional: bool = False,
):
    """A dataclass field that is also a command-line option: ``--field-name``, or the names in ``flags``,
    or a positional argument. ``default_text`` describes a default that is not a plain value
    (``None`` meaning "from the data", "all", ...); a ``None`` default needs one. ``type`` parses the flag's
    text when the field's annotation cannot."""
    metadata = dict(
        help=help,
        flags=tuple(flags),
        choices=choices,
        metavar=metavar,
        nargs=nargs,
        type=type,
        default_text=default_text,
        positional=positional,
    )
    return dataclasses.field(default=default, metadata=metadata)


def device_option(help: str = "where the model runs: auto picks cuda when a GPU is visible"):
    return option("auto", choices=DEVICES, help=help)


def torch_device(name: str):
    """``--device auto|cpu|cuda`` as a ``torch.device``; ``cuda`` with no visible GPU is refused."""
    import torch  # only commands that run a model pay for the import

    check_choice("--device", name, DEVICES)
    if name == "cuda" and not torch.cuda.is_available():
        raise InvalidConfig("--device cuda given but no CUDA device is visible; expected --device cpu or auto")
    return torch.device("cuda" if name == "cuda" or (name == "auto" and torch.cuda.is_available()) else "cpu")


def _unwrap_optional(annotation):
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        members = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(members) == 1:
            return members[0]
    return annotation


def _argument(field: dataclasses.Field, annotation, extra: Mapping[str, Any], unset_default: Optional[str]):
    """(names, argparse keyword arguments) of one dataclass field."""
    meta = {**field.metadata, **extra}
    kind = _unwrap_optional(annotation)
    required = field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING
    required = meta.get("required", required)
    default = (
        None
        if required
        else (field.default if field.default_factory is dataclasses.MISSING else field.default_factory())
    )
    flag = "--" + field.name.replace("_", "-")
    names = [field.name] if meta.get("positional") else list(meta.get("flags") or (flag,))
    kwargs: dict = {"help": meta.get("help")}
    if kwargs["help"] is None:
        raise TypeError(f"option {flag} has no help text")
    if not meta.get("positional"):
        kwargs["dest"] = field.name
        kwargs["required"] = required
    origin = typing.get_origin(kind)
    if kind is bool:
        kwargs["action"] = (
            "store_true" if default is False and unset_default is None else (argparse.BooleanOptionalAction)
        )
    elif origin in (list, tuple, collections.abc.Sequence):
        arguments = typing.get_args(kind)
        kwargs["type"] = arguments[0] if arguments else str
        fixed = origin is tuple and arguments and Ellipsis not in arguments
        kwargs["nargs"] = meta.get("nargs") or (len(arguments) if fixed else "+")
    else:
        kwargs["type"] = kind
    for key in ("choices", "metavar", "nargs", "type"):
        if meta.get(key) is not None:
            kwargs[key] = meta[key]
    if meta.get("positional") and "metavar" not in kwargs:
        kwargs["metavar"] = field.name.upper()
    kwargs["default"] = None if unset_default is not None else default
    if not required:
        shown = meta.get("default_text") or unset_default
        if shown is None:
            if default is None:
                raise TypeError(f"option {flag} defaults to None; give it a default_text saying what that means")
            shown = (
                ("off" if default is False else "on")
                if kind is bool
                else (" ".join(map(str, default)) if isinstance(default, (tuple, list)) else default)
            )
        kwargs["help"] = f"{kwargs['help']} (default: {shown})"
    kwargs["help"] = kwargs["help"].replace("%", "%%")
    return names, kwargs


def add_options(
    parser: argparse.ArgumentParser,
    config_type,
    *,
    skip: Sequence[str] = (),
    options: Mapping[str, Mapping[str, Any]] = {},
    unset_default: Optional[str] = None,
) -> None:
    """One option per field of the dataclass ``config_type``, in field order.

    ``options`` gives, per field name, ``option`` keywords (help, flags, choices, ``required``...) for a
    dataclass whose fields carry none (one another module owns), or overrides them for this command.
    With ``unset_default``, every option defaults to ``None`` ("not given") and its help shows that text:
    for commands whose defaults come from elsewhere, such as a preset.
    """
    hints = typing.get_type_hints(config_type)
    for field in dataclasses.fields(config_type):
        if field.init and field.name not in skip:
            names, kwargs = _argument(field, hints[field.name], options.get(field.name, {}), unset_default)
            parser.add_argument(*names, **kwargs)


def config_from(config_type, namespace: argparse.Namespace):
    """The dataclass ``config_type`` from parsed options; sequences become tuples where the field says so."""
    hints = typing.get_type_hints(config_type)
    values = {}
    for field in dataclasses.fields(config_type):
        if field.init and hasattr(namespace, field.name):
            value = getattr(namespace, field.name)
            wanted = typing.get_origin(_unwrap_optional(hints[field.name]))
            values[field.name] = tuple(value) if isinstance(value, list) and wanted is not list else value
    return config_type(**values)


def parse_config(config_type, argv=None, *, prog: str, description: str, epilog: Optional[str] = None):
    """Parse ``argv`` into the dataclass ``config_type`` (a bad flag raises ``InvalidConfig``)."""
    parser = ArgumentParser(prog=prog, description=description, epilog=epilog)
    add_options(parser, config_type)
    return config_from(config_type, parser.parse_args(argv))
