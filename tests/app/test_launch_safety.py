"""launch.py safety: every flag checked before anything starts, nothing written into a missing data root, port clashes
as one line naming the flag, a clean exit (export folder removed) on errors and on SIGTERM."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import torch

from app.cli import main
from sas_engine.io.ply import write_ply

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_scan(root: Path, scene) -> Path:
    d = root / "scans" / scene.scene_id
    p = scene.points
    write_ply(d / f"{scene.scene_id}_vh_clean_2.ply",
              {"x": p[:, 0], "y": p[:, 1], "z": p[:, 2], "red": scene.colors[:, 0], "green": scene.colors[:, 1],
               "blue": scene.colors[:, 2]})
    return d


@pytest.fixture
def private_tmp(tmp_path, monkeypatch):
    """tempfile's folder moved into tmp_path, so a test sees every export folder the app makes."""
    d = tmp_path / "tmp"
    d.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(d))
    monkeypatch.setattr("app.state.AppState.warm_text_encoder", lambda self, *a, **k: None)  # no MiniLM here
    return d


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err, err
    return err


@pytest.mark.parametrize("argv, expect", [
    (["--dataset", "bogus"], "--dataset: unknown dataset preset 'bogus'"),
    (["--port", "70000"], "--port 70000: a port must be in 1..65535"),
    (["--port", "9001", "--viser-port", "9001"], "need two different ports"),
    (["--device", "nonsense"], "--device 'nonsense': not a torch device"),
    (["--text-encoder", "openclip:ViT-B-32:/nowhere/ViT-B-32.pt"], "--text-encoder: weights file not found"),
    (["--text-encoder", "clip"], "bad text encoder spec"),
    (["--up", "sideways"], "sideways"),
])
def test_bad_flags_fail_at_start_in_one_line(argv, expect, tmp_path, private_tmp, capsys):
    assert main(argv + ["--store", str(tmp_path / "store")]) == 2
    assert expect in _one_line_error(capsys)
    assert not (tmp_path / "store").exists() and list(private_tmp.iterdir()) == []


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_without_a_gpu_is_refused(tmp_path, private_tmp, capsys):
    assert main(["--device", "cuda", "--store", str(tmp_path / "s")]) == 2
    assert "CUDA is not available" in _one_line_error(capsys)


def test_a_missing_data_root_is_never_created(tmp_path, private_tmp, capsys):
    typo = tmp_path / "scannet_typo"
    for extra in ([], ["--dataset", "scannet"], ["--no-build"]):
        assert main(["--data-root", str(typo), "--store", str(tmp_path / "s"), *extra]) == 2
        assert "--data-root: folder not found" in _one_line_error(capsys)
        assert not typo.exists()  # the demo never generates rooms into a folder the user mistyped
    assert main([str(tmp_path / "no_scene"), "--store", str(tmp_path / "s")]) == 2
    assert "scene argument: not found" in _one_line_error(capsys)


@pytest.mark.parametrize("flag", ["--port", "--viser-port"])
def test_port_clash_is_one_line_naming_the_flag(flag, tmp_path, private_tmp, capsys, scene_factory):
    folder = write_scan(tmp_path / "data", scene_factory())
    ports = {"--port": free_port(), "--viser-port": free_port()}
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", ports[flag]))
        busy.listen()
        code = main([str(folder), "--no-build", "--store", str(tmp_path / "s"), "--port", str(ports["--port"]),
                     "--viser-port", str(ports["--viser-port"])])
    assert code == 2
    err = _one_line_error(capsys)
    assert f"port {ports[flag]}" in err and f"pass {flag} <free port>" in err and "GRADIO_SERVER_PORT" not in err
    assert list(private_tmp.iterdir()) == []  # the export folder of the failed start is gone


@pytest.mark.slow
def test_sigterm_stops_cleanly_and_removes_the_export_folder(tmp_path, scene_factory):
    folder = write_scan(tmp_path / "data", scene_factory())
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    env = dict(os.environ, TMPDIR=str(tmp), GRADIO_ANALYTICS_ENABLED="False", PYTHONUNBUFFERED="1")
    proc = subprocess.Popen([sys.executable, str(ROOT / "launch.py"), str(folder), "--no-build", "--store",
                             str(tmp_path / "s"), "--port", str(free_port()), "--viser-port", str(free_port())],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    out = []
    try:
        t0 = time.monotonic()
        while time.monotonic() - t0 < 240:
            line = proc.stdout.readline()
            if not line and proc.poll() is not None:
                break
            out.append(line)
            if "SAS is running at" in line:
                break
        assert any("SAS is running at" in line for line in out), "".join(out)[-3000:]
        assert [p.name for p in tmp.iterdir() if p.name.startswith("sas_exports_")]  # made at start-up
        proc.send_signal(signal.SIGTERM)
        rest, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, rest[-3000:]
    assert "stopping" in rest and "Traceback" not in rest
    assert not [p for p in tmp.iterdir() if p.name.startswith("sas_exports_")]


def test_demo_rooms_can_be_opened_as_they_finish(tmp_path, monkeypatch, scene_factory, private_tmp):
    """launch.py hands build_demo an on_scene callback: a room is registered (and its layers re-listed) while the rest
    of the build is still running, not when all six are done."""
    import sas_engine.demo
    from app.cli import parse_args, setup_state

    data = tmp_path / "data"
    folder = write_scan(data, scene_factory())
    monkeypatch.setattr("app.cli.DEFAULT_DATA", data)
    seen = []

    def fake_build_demo(store, data_root, progress=None, device="cpu", on_scene=None, **kw):
        progress(0.1, "room 1/2")
        on_scene("fixture0000_00", folder)
        seen.append((state.scene_ids(), state.layer_serial("fixture0000_00"), state.build.running))
        progress(0.9, "teachers")
        return ["fixture0000_00"]

    monkeypatch.setattr(sas_engine.demo, "build_demo", fake_build_demo)
    state, build = setup_state(parse_args(["--store", str(tmp_path / "s")]))
    assert state.scene_ids() == []
    build()
    assert seen == [(["fixture0000_00"], 1, True)]  # openable mid-build, with its layers re-listed
    assert state.build.done and state.scene_ids() == ["fixture0000_00"]
