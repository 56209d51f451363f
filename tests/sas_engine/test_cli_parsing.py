"""The ``sas`` and ``launch.py`` command lines (tyro dataclass configs): every --help, nested configs reaching the
dataclasses, documented command lines parsing, and bad values as one ``error:`` line naming the flag. Nothing here
runs a stage: only the parsers (and, for refused flags, the checks a command makes before any work)."""
from __future__ import annotations

import dataclasses
import re
import shlex
import subprocess
import sys
import typing
from pathlib import Path

import pytest
import tyro

from sas_engine.cli import COMMANDS, command_module, main, parse_args

ROOT = Path(__file__).resolve().parents[2]
POSITIONAL = typing.get_args(tyro.conf.Positional[int])[1:]
"""tyro's positional marker."""


def _metadata(t) -> list:
    """Every Annotated marker of ``t``, also inside Optional[...]."""
    out = list(getattr(t, "__metadata__", ()))
    for a in typing.get_args(t):
        out += _metadata(a)
    return out


def one_error_line(capsys, *expect: str) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err, err
    for e in expect:
        assert e in err, err
    return err


def test_top_level_help_lists_every_command(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert all(re.search(rf"^  {n}\s", out, re.M) for n in COMMANDS), out
    assert main(["fuz"]) == 2
    one_error_line(capsys, "unknown command 'fuz'", "fuse")


@pytest.mark.parametrize("name", list(COMMANDS))
def test_every_subcommand_help_shows_every_field(name, capsys):
    assert main([name, "--help"]) == 0
    out = re.sub(r"[│\s]+", " ", capsys.readouterr().out)
    cfg = command_module(name).Config
    assert dataclasses.is_dataclass(cfg) and callable(command_module(name).run)
    from sas_engine.config import field_docs

    docs = field_docs(cfg)
    hints = typing.get_type_hints(cfg, include_extras=True)
    for f in dataclasses.fields(cfg):
        if any(m in POSITIONAL for m in _metadata(hints[f.name])):
            continue  # positionals: their metavar is in the usage line
        if dataclasses.is_dataclass(typing.get_args(hints[f.name])[0] if typing.get_args(hints[f.name])
                                    else hints[f.name]):
            continue  # nested configs: their fields are --nested.x flags
        flag = "--" + f.name.replace("_", "-")
        assert flag in out or f"--no-{f.name.replace('_', '-')}" in out, f"{name}: {flag} missing"
    # every field is documented where it is declared: the command's Config or a shared base such as SceneArgs
    # (tyro turns the docstrings into --help)
    def declared_doc(n):
        owner = next(c for c in cfg.__mro__ if n in c.__dict__.get("__annotations__", {}))
        return (docs if owner is cfg else field_docs(owner)).get(n)

    names = [f.name for f in dataclasses.fields(cfg)]
    assert names and all(declared_doc(n) for n in names), [n for n in names if not declared_doc(n)]


def test_ablate_reaches_the_nested_pipeline_config():
    from sas_engine.ablate import AblateConfig
    from sas_engine.fusion_study import FusionStudyConfig
    from sas_engine.pipeline import PipelineConfig

    name, cfg, verbose = parse_args(["-v", "ablate", "--pipeline.tau", "0.05", "--pipeline.teachers", "a,b",
                                     "--pipeline.device", "cuda", "--epochs-stage1", "3", "--no-history-unit",
                                     "--out", "x"])
    assert name == "ablate" and verbose
    ac = cfg.ablate_config()
    assert type(ac) is AblateConfig and ac.epochs_stage1 == 3 and ac.history_unit is False
    assert type(ac.pipeline) is PipelineConfig and ac.pipeline.tau == 0.05 and ac.pipeline.teachers == ("a", "b")
    assert ac.pipeline.device == "cuda" and cfg.out == Path("x") and cfg.part == "all"
    cfg.check()  # flags of --part all only: accepted
    _, cfg, _ = parse_args(["ablate", "--part", "fusion", "--pipeline.tau", "0.1", "--fusion.select-rooms", "2",
                            "--fusion.taus", "0.02", "0.05"])
    fc = cfg.fusion_config()
    assert type(fc) is FusionStudyConfig and fc.select_rooms == 2 and fc.taus == (0.02, 0.05)
    assert fc.pipeline.tau == 0.1
    cfg.check()


def test_ablate_refuses_the_other_parts_flags(tmp_path, capsys):
    store = tmp_path / "store"
    assert main(["ablate", "--part", "fusion", "--epochs-stage1", "3", "--store", str(store)]) == 2
    one_error_line(capsys, "--epochs-stage1", "only with --part all")
    assert main(["ablate", "--fusion.oracle-rooms", "3", "--store", str(store)]) == 2
    one_error_line(capsys, "--fusion.oracle-rooms", "only with --part fusion")
    assert not store.exists()


def test_fuse_flags_build_the_pipeline_config():
    from sas_engine.pipeline import PipelineConfig

    _, cfg, _ = parse_args(["fuse", "room", "--mode", "sas", "--teachers", "a,b", "--tau", "0.1", "--weighting",
                            "mean", "--catch-all", "a:other", "--synth", "oracle", "--up=-y"])
    assert cfg.scene == "room" and cfg.mode == "sas" and cfg.up == "-y"
    assert cfg.pipeline() == PipelineConfig(teachers=("a", "b"), synthesizer="oracle", tau=0.1, weighting="mean",
                                            catch_all="a:other")
    _, cfg, _ = parse_args(["fuse", "room", "--mode", "add", "--teachers", "a", "b"])
    assert cfg.pipeline().teachers == ("a", "b")  # space-separated works too


def test_distill_settings_reach_distill_config():
    from sas_engine.distill.trainer import DistillConfig

    _, cfg, _ = parse_args(["distill", "--train", "train", "--val", "val", "--epochs-stage1", "4",
                            "--no-use-superpoint", "--crop-points", "100", "--run", "r1"])
    dc = cfg.student.distill_config(out_channels=512)
    assert type(dc) is DistillConfig and (dc.epochs_stage1, dc.use_superpoint, dc.crop_points, dc.run) == \
        (4, False, 100, "r1")
    assert dc.out_channels == 512 and cfg.train == ["train"] and cfg.val == ["val"]


def test_positionals_and_lists():
    _, cfg, _ = parse_args(["extract", "--split", "tiny", "--teacher", "precomputed", "--opt", "a=1", "--opt", "b=x"])
    assert cfg.scene is None and cfg.split == "tiny" and cfg.opt == ["a=1", "b=x"]
    from sas_engine.commands.extract import teacher_kwargs

    assert teacher_kwargs(cfg) == {"a": 1, "b": "x"}
    _, cfg, _ = parse_args(["infer", "a", "b", "--checkpoint", "c.pt", "--tta", "4"])
    assert cfg.scenes == ["a", "b"] and cfg.checkpoint == Path("c.pt") and cfg.tta == 4
    _, cfg, _ = parse_args(["capability", "--teachers", "x,y", "--m", "3"])
    assert cfg.teachers == ("x", "y") and cfg.m == 3


@pytest.mark.parametrize("argv, expect", [
    (["fuse", "s", "--mode", "sas", "--tau", "abc"], "--tau"),
    (["fuse", "s", "--mode", "sas", "--weighting", "bogus"], "--weighting 'bogus': expected one of mean, normalized"),
    (["fuse", "--mode", "sas"], "missing required SCENE"),
    (["eval", "--sources", "a"], "give one of --split / --scene"),
    (["eval", "--sources", "a", "--split", "x", "--scene", "y"], "--split and --scene cannot be given together"),
    (["export", "t", "--source", "s", "--out", "o", "--text-encoder", "a", "--text-emb", "b"], "--text-emb"),
    (["ablate", "--export-row", "nope"], "--export-row 'nope'"),
    (["ablate", "--pipeline.capability-images", "x"], "--pipeline.capability-images"),
    (["capability", "--synth", "dalle"], "--synth 'dalle'"),
    (["info", "s", "--bogus", "1"], "unrecognized arguments: --bogus 1"),
    (["distill", "--train", "t", "--out-channels", "3"], "--out-channels"),  # set from the data, not a flag
])
def test_bad_command_lines_are_one_error_line(argv, expect, capsys):
    with pytest.raises(SystemExit) as e:
        parse_args(argv)
    assert e.value.code == 2
    one_error_line(capsys, expect, f"sas {argv[0]} --help")
    assert main(argv) == 2
    one_error_line(capsys, expect)


def _documented_sas_command_lines() -> tuple[list[str], list[str]]:
    """(full command lines of the code blocks, inline `sas ...` mentions) of the README and docs/."""
    text = "\n".join(p.read_text() for p in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))])

    def keep(found):
        return sorted({c.strip() for c in found if not any(t in c for t in ("<", "{", "|", "..."))
                       and len(shlex.split(c)) >= 3})  # no placeholder, not a bare command name

    return keep(re.findall(r"^(sas \w[^#\n]*)", text, re.M)), keep(re.findall(r"`(sas \w[^`]*)`", text))


def test_documented_command_lines_parse(capsys):
    """Every command line of the README's and docs' code blocks parses as written; every flag that an inline
    `sas ...` mention names exists on that command."""
    full, inline = _documented_sas_command_lines()
    assert len(full) >= 15 and len(inline) >= 5, (full, inline)
    for c in full:
        name, cfg, _ = parse_args(shlex.split(c)[1:])  # SystemExit (a test failure) if any flag is unknown
        assert name == shlex.split(c)[1] and dataclasses.is_dataclass(cfg)
    for c in inline:
        argv = shlex.split(c)[1:]
        assert main([argv[0], "--help"]) == 0
        out = capsys.readouterr().out
        for flag in (a.split("=")[0] for a in argv[1:] if a.startswith("--")):
            assert re.search(rf"{re.escape(flag)}\b", out), f"{c}: sas {argv[0]} has no {flag}"


def test_launch_config(tmp_path, capsys):
    from app.cli import LaunchConfig, main as app_main, parse_args as app_parse

    a = app_parse(["s1", "s2", "--port", "9000", "--viser-port", "9001", "--no-build", "--up=-y", "--data-root",
                   "d"])
    assert isinstance(a, LaunchConfig) and [str(s) for s in a.scenes] == ["s1", "s2"]
    assert (a.port, a.viser_port, a.no_build, a.up, a.data_root) == (9000, 9001, True, "-y", Path("d"))
    assert app_main(["--help"]) == 0
    out = capsys.readouterr().out
    for flag in ("--port", "--viser-port", "--data-root", "--dataset", "--no-build", "--host", "--store",
                 "--text-encoder", "--device", "--up"):
        assert flag in out
    assert "--checkpoints" not in out
    for argv, expect in ((["--port", "abc"], "--port"), (["--checkpoints", "w"], "unrecognized arguments"),
                         (["--viser-port"], "--viser-port")):
        assert app_main([*argv, "--store", str(tmp_path / "s")]) == 2
        one_error_line(capsys, expect, "launch.py --help")
    assert not (tmp_path / "s").exists()


def test_entry_point_runs_as_a_module():
    r = subprocess.run([sys.executable, "-m", "sas_engine.cli", "fuse", "--help"], capture_output=True, text=True,
                       cwd=ROOT, timeout=120)
    assert r.returncode == 0 and "--mode" in r.stdout and "--tau" in r.stdout, r.stderr
