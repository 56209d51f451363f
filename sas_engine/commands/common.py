"""What several subcommands share: the ``--store`` / ``--up`` / ``--dataset`` fields, and :func:`parse`, which turns a
command line into a subcommand's dataclass config with `tyro <https://brentyi.github.io/tyro/>`_.

A command's flags are its config's fields (``--field-name``; nested dataclass configs give ``--nested.field``), its
``--help`` texts the fields' docstrings. A command line that does not parse is one ``error:`` line naming the flag
(exit status 2), like the errors the engine raises on purpose (:class:`sas_engine.errors.SASError`).
"""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Optional, Sequence, TypeVar

import tyro

T = TypeVar("T")

DEFAULT_STORE = Path(os.environ.get("SAS_STORE", Path(__file__).resolve().parents[2] / "store"))
"""Default artefact store folder: ``$SAS_STORE`` or ``<repo>/store``."""


UP_HELP = ("gravity alignment: the scene's up direction in its own files: auto (detect it from the cameras and the "
           "floor), none (keep the files' frame), x, -x, y, -y, z, -z, or three comma-separated numbers (e.g. "
           "0,-1,0; write values that start with a minus as --up=-y). The scene is turned so this direction is +z "
           "with the floor at z = 0; exported PLY files are written back in the files' frame. Default: auto for "
           "custom captures (transforms.json, plain folders, Open3D reconstructions) and bare .ply files, none for "
           "ScanNet scan folders and OpenScene files (z up already). Give every command of one scene the same "
           "value: aligned points are different points")
"""Help of the ``--up`` option (``sas`` commands that load scenes, ``launch.py``)."""

Up = Annotated[Optional[str], tyro.conf.arg(help=UP_HELP, metavar="UP")]
"""Type of an ``up`` field: ``--up UP`` (None = the layout's default; validated by ``load_scene``)."""
Dataset = Annotated[Optional[str], tyro.conf.arg(metavar="PRESET")]
"""Type of a ``dataset`` field: a preset name (scannet, matterport, nuscenes, synthetic) or None (detected)."""
Scene = tyro.conf.Positional[Annotated[str, tyro.conf.arg(metavar="SCENE")]]
"""Type of a positional scene argument."""


@dataclass
class SceneArgs:
    """The fields of a command that reads one scene: the scene, its dataset preset, gravity and the store."""

    scene: Scene
    """Scene folder or file (ScanNet scan folder, OpenScene .pth, custom RGB-D folder...)."""
    dataset: Dataset = None
    """Dataset preset (scannet, matterport, nuscenes, synthetic); detected from the layout when omitted."""
    up: Up = None
    """Gravity alignment (see the help text)."""
    store: Path = DEFAULT_STORE
    """Artefact store folder ($SAS_STORE or <repo>/store)."""


def comma_list(items: Sequence[str]) -> tuple[str, ...]:
    """``("a,b", "c")`` -> ``("a", "b", "c")``: list flags take ``--x a,b,c`` as well as ``--x a b c``."""
    return tuple(s.strip() for it in items for s in str(it).split(",") if s.strip())


def _registry() -> tyro.constructors.ConstructorRegistry:
    """tyro's rules plus one: ``tuple[str, ...]`` fields (teacher lists...) accept comma-separated values."""
    from tyro.constructors import ConstructorRegistry, PrimitiveConstructorSpec

    reg = ConstructorRegistry()

    @reg.primitive_rule
    def _str_tuple(info):
        import typing

        if info.type_origin is not tuple or typing.get_args(info.type) != (str, Ellipsis):
            return None
        return PrimitiveConstructorSpec(
            nargs="*", metavar="NAME[,NAME...]", instance_from_str=comma_list,
            is_instance=lambda x: isinstance(x, tuple) and all(isinstance(s, str) for s in x),
            str_from_instance=lambda x: [",".join(x)])

    return reg


class CommandLineError(Exception):
    """A command line tyro rejected, as one line (raised by the parse-error hook, printed by :func:`parse`)."""


def _flag(argument) -> str:
    """The flag (or metavar of a positional) of a tyro argument definition."""
    try:
        if argument.is_positional():
            return str(argument.lowered.metavar)
        return argument.display_name()
    except Exception:  # the event payloads are tyro internals: a name is enough, never a crash
        return str(getattr(argument, "name", "argument"))


def _one_line(event) -> Optional[str]:
    """A one-line message for a tyro parse-error event; None leaves tyro's own (boxed) message."""
    from tyro import _errors as E

    if isinstance(event, E.BadValue):
        got = f" {event.offending_value!r}" if event.offending_value is not None else ""
        return f"{_flag(event.argument)}{got}: {event.reason}"
    if isinstance(event, E.InvalidChoice):
        return f"{_flag(event.argument)} {event.value!r}: expected one of {', '.join(event.choices)}"
    if isinstance(event, E.MissingArgs):
        names = ", ".join(_flag(a.arg) for a in event.missing_arguments)
        extra = f"; unrecognized: {' '.join(event.unrecognized_tokens)}" if event.unrecognized_tokens else ""
        return f"missing required {names}{extra}"
    if isinstance(event, E.MissingMutexGroup):
        return "; ".join("give one of " + " / ".join(_flag(a.arg) for a in g) for g in event.groups)
    if isinstance(event, E.MutexConflict):
        return f"{event.first_token} and {event.second_token} cannot be given together"
    if isinstance(event, E.UnrecognizedArgs):
        return f"unrecognized arguments: {' '.join(event.tokens)}"
    if isinstance(event, E.MissingSubcommand):
        return f"missing subcommand (one of {', '.join(event.subcommand_spec.parser_from_name)})"
    if isinstance(event, E.InstantiationFailure):
        return (f"{_flag(event.argument)}: " if event.argument is not None else "") + event.message
    return None


def parse(cls: type[T], argv: Optional[Sequence[str]], prog: str, description: Optional[str] = None) -> T:
    """``cls`` (a dataclass config) from ``argv`` through tyro; ``--help`` prints the fields' docstrings.

    A bad command line prints ``error: <what>`` on one line plus a pointer to ``--help``, and exits with status 2.
    """
    def hook(event) -> None:
        msg = _one_line(event)
        if msg is not None:
            raise CommandLineError(msg)

    try:
        from tyro._errors import on_parse_error  # tyro is pinned: its parse-error hook is not public API
    except ImportError:  # pragma: no cover - a tyro without the hook keeps its own (multi-line) messages
        from contextlib import nullcontext

        def on_parse_error(_hook):
            return nullcontext()
    try:
        with on_parse_error(hook):
            return tyro.cli(cls, args=list(argv) if argv is not None else sys.argv[1:], prog=prog,
                            description=description, registry=_registry(),
                            config=(tyro.conf.FlagCreatePairsOff,))
    except CommandLineError as e:
        print(f"error: {e} (see `{prog} --help`)", file=sys.stderr)
        raise SystemExit(2) from None
