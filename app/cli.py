"""``python launch.py``: start the app on the embedded demo, on scene folders, or on a dataset's scenes.

* no scene argument: builds the embedded demo on first run (``sas_engine.demo.build_demo``; synthetic validation
  scenes through the whole pipeline, cached in the store) while the page already shows the progress; later runs find
  everything cached and start in seconds. ``--no-build`` shows only scenes whose artefacts are already in the store.
* ``launch.py path/to/scans/scene0000_00 ...``: those scenes (any layout ``sas_engine.io.load_scene`` reads).
* ``launch.py --data-root DIR`` (``--dataset`` optional): every scene found in DIR (:func:`discover_scenes`: the
  folder itself when it is a capture, else the captures, ScanNet scans and bare ``*.ply`` scans one level down).
* Scenes given either way are processed in the background, one after the other (:func:`app.build.build_scenes`:
  superpoints and the 3D student first, then each 2D teacher and the fusions); their layers appear in the page as
  they finish, and later starts read them from the store. ``--no-build`` shows only what the store already has.

One URL is printed once both servers answer.
"""
from __future__ import annotations

import logging
import os
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Optional, Sequence

import tyro

from sas_engine.commands.common import Up, parse
from sas_engine.errors import SASError, SASInputError

REPO = Path(__file__).resolve().parents[1]
DEFAULT_STORE = Path(os.environ.get("SAS_STORE", REPO / "store"))
DEFAULT_DATA = Path(os.environ.get("SAS_DATA", REPO / "data" / "synthetic"))
log = logging.getLogger("sas.launch")


@dataclass
class LaunchConfig:
    """Start the SAS app: the embedded demo, scene folders, or every scene of a data root (one URL is printed)."""

    scenes: tyro.conf.Positional[Annotated[list[Path], tyro.conf.arg(metavar="SCENE")]] = field(default_factory=list)
    """Scene folders or files to open (default: the embedded demo)."""
    dataset: Optional[str] = None
    """Dataset preset (scannet, matterport, nuscenes, synthetic) of the scenes opened (default: detected from each
    scene's layout)."""
    data_root: Annotated[Optional[Path], tyro.conf.arg(metavar="DIR")] = None
    """Without scene arguments: open every scene found in this folder (captures, ScanNet scans, bare .ply scans one
    level down); scenes may also be opened from it in the page (default: the demo's, $SAS_DATA or
    <repo>/data/synthetic)."""
    host: str = "127.0.0.1"
    """Interface to serve on (default: this machine only)."""
    port: int = 7860
    """Port of the page."""
    viser_port: int = 8080
    """Port of the embedded 3D viewer."""
    device: str = "cpu"
    """Torch device for the text encoder and the builds."""
    store: Path = DEFAULT_STORE
    """Artefact store ($SAS_STORE or <repo>/store)."""
    text_encoder: Optional[str] = None
    """'minilm' (default) or 'openclip:<arch>:<weights path>'."""
    no_build: bool = False
    """Compute nothing (neither the demo nor the layers of your scenes); show what the store holds."""
    up: Up = None
    """Gravity alignment of the scene arguments and --data-root scenes (see the help text)."""
    trust_pickle: bool = False
    """Allow full unpickling of legacy pickled .pth files among the scene arguments and --data-root scenes (only
    files you trust; $SAS_TRUST_PICKLE=1 does the same). Scenes opened from the page never are."""


def parse_args(argv: Optional[Sequence[str]] = None) -> LaunchConfig:
    """The :class:`LaunchConfig` of a command line (``--help`` prints it; a bad one is one ``error:`` line, exit 2).
    Values are checked by :func:`check_args`."""
    return parse(LaunchConfig, argv, prog="launch.py")


CAPTURE_OWN_PLY = ("sas_reconstruction.ply", "mesh.ply", "points.ply")
"""PLY names that belong to a capture (its reconstruction or geometry), never a scene of their own."""


def _scene_layout(p: Path) -> Optional[str]:
    """The layout :func:`sas_engine.io.detect.detect_layout` gives ``p``; None when it is not a scene."""
    from sas_engine.io.detect import detect_layout

    try:
        return detect_layout(p)
    except (SASError, OSError):
        return None


def _bare_ply(p: Path) -> bool:
    """A ``*.ply`` that is a scan of its own: not a capture's geometry nor a ScanNet mesh / label sibling."""
    n = p.name.lower()
    return (p.suffix.lower() == ".ply" and p.is_file() and n not in CAPTURE_OWN_PLY and "_vh_clean" not in n
            and not n.endswith(".labels.ply"))


def discover_scenes(root: Path, dataset: Optional[str]) -> list[tuple[str, Path]]:
    """(scene id, path) of the scenes in a data root, sorted by id.

    * ``root`` itself when it is a scene folder (ScanNet scan, ``transforms.json`` capture, plain capture or Open3D
      reconstruction-system folder: any folder :func:`sas_engine.io.detect.detect_layout` recognises);
    * otherwise every such folder one level down, in ``root/scans/`` and in ``root/<split>/scans/``;
    * bare ``*.ply`` scans directly in the root (not ``sas_reconstruction.ply``, ``mesh.ply``, ``points.ply`` nor
      ScanNet's ``*_vh_clean*.ply`` / ``*.labels.ply``);
    * OpenScene ``*.pth`` files anywhere below.

    Nothing is created or written. Raises :class:`SASInputError` when the root does not exist or holds no scene.
    """
    root = Path(root)
    if not root.is_dir():
        raise SASInputError(root, "data root not found")
    if _scene_layout(root) is not None:
        return [(root.name, root)]
    out: dict[str, Path] = {}

    def add(sid: str, p: Path) -> None:
        if sid in out and out[sid] != p:
            log.warning("%s: scene id %s is taken by %s; skipped (rename one of them)", p, sid, out[sid])
            return
        out[sid] = p

    bases = [root / "scans", *sorted(root.glob("*/scans")), root]
    for base in bases:
        if not base.is_dir():
            continue
        for d in sorted(base.iterdir()):
            if d.name.startswith("."):
                continue
            if d.is_dir() and d.name != "scans" and _scene_layout(d) is not None:
                add(d.name, d)
            elif base == root and _bare_ply(d):
                add(d.stem, d)
    for f in sorted(root.rglob("*.pth")):
        add(f.stem.replace("_vh_clean_2", ""), f)
    if not out:
        raise SASInputError(root, "no scenes found: looked for a capture or ScanNet scan in the folder itself, "
                                  "for such folders one level down (and in scans/), for bare *.ply scans and "
                                  "for OpenScene *.pth files"
                                  f"{'' if dataset is None else f' (dataset {dataset})'}; see docs/captures.md")
    return sorted(out.items())


def _stored_scene_ids(store: Path) -> list[str]:
    if not store.is_dir():
        return []
    return sorted(d.name for d in store.iterdir() if d.is_dir() and not d.name.startswith(("_", ".")))


def cli_trust_pickle(args) -> bool:
    """Whether the scene paths of this command line may be fully unpickled: ``--trust-pickle``, or
    ``$SAS_TRUST_PICKLE=1`` (read here, for the command line's own paths only; the app passes an explicit
    ``trust_pickle`` to every loader, so the variable never reaches what the page opens)."""
    from sas_engine.io.files import TRUST_PICKLE_ENV

    return bool(getattr(args, "trust_pickle", False)) or os.environ.get(TRUST_PICKLE_ENV, "") == "1"


def setup_state(args) -> tuple["object", Optional[callable]]:
    """The app state with the scenes registered; plus the demo build to run in the background (or ``None``)."""
    from .state import AppState, find_scene_folder

    data_root = (args.data_root or DEFAULT_DATA).expanduser().resolve()
    roots = [data_root] + [Path(s).expanduser().resolve() for s in args.scenes]
    up = getattr(args, "up", None)
    if up is not None:
        from sas_engine.geometry.gravity import parse_up

        parse_up(up)  # a bad --up fails at start, not when a scene is first opened
        if not args.scenes and args.data_root is None:
            log.warning("--up applies to scene arguments and --data-root scenes; the demo scenes are z up already")
            up = None
    state = AppState(args.store, roots, text_encoder_spec=args.text_encoder, device=args.device, up=up)
    trust = cli_trust_pickle(args)  # for the paths named on this command line only; the page's "Open" never trusts
    if args.scenes:
        ids = []
        for s in args.scenes:
            sid = state.add_scene_path(s, dataset=args.dataset, check_roots=False, trust_pickle=trust)
            print(f"scene {sid}: {s}")
            ids.append(sid)
        return state, _scene_build(state, ids, args)
    if args.data_root is not None:  # every scene found there (nothing is created or written in the root)
        found = discover_scenes(data_root, args.dataset)
        for sid, p in found:
            state.add_scene_path(p, scene_id=sid, dataset=args.dataset, check_roots=False, trust_pickle=trust)
        print(f"{len(found)} scene(s) under {data_root}: {', '.join(sid for sid, _ in found[:8])}"
              + (" ..." if len(found) > 8 else ""))
        return state, _scene_build(state, [sid for sid, _ in found], args)
    if args.no_build:
        for sid in _stored_scene_ids(Path(args.store)):
            p = find_scene_folder([data_root], sid)
            if p is not None:
                state.add_scene_path(p, scene_id=sid, check_roots=False)
        if not state.scene_ids():
            raise SASInputError(args.store, "no demo scenes in the store and --no-build was given; "
                                            "pass scene folders, e.g. python launch.py data/scans/scene0000_00")
        return state, None
    from sas_engine.demo import build_demo

    def build():
        from tqdm import tqdm

        bar = tqdm(total=100, desc="building the demo", unit="%", bar_format="{l_bar}{bar}| {n:.0f}% {postfix}")

        def on_progress(frac: float, msg: str) -> None:
            bar.n = round(frac * 100, 1)
            bar.set_postfix_str(msg[:60], refresh=True)

        def on_scene(sid: str, folder: Path) -> None:  # a room can be opened, or got new layers
            state.add_scene_path(folder, scene_id=sid, check_roots=False)
            state.layers_changed(sid)

        try:
            ids = state.run_build(lambda progress: build_demo(args.store, data_root, progress=progress,
                                                              device=args.device, on_scene=on_scene),
                                  lambda sid: find_scene_folder([data_root], sid), on_progress)
            on_progress(1.0, f"{len(ids)} scenes ready")
        except Exception as e:  # the page shows it too
            log.error("demo build failed: %s", e)
        finally:
            bar.close()

    return state, build


def _scene_build(state, scene_ids: list[str], args) -> Optional[callable]:
    """The background processing of the user's scenes (:func:`app.build.build_scenes`), or ``None`` with
    ``--no-build`` (then each scene shows the layers the store already has)."""
    if args.no_build or not scene_ids:
        return None

    def build():
        from tqdm import tqdm

        from sas_engine.pipeline import PipelineConfig

        from .build import build_scenes

        bar = tqdm(total=100, desc="processing the scenes", unit="%", bar_format="{l_bar}{bar}| {n:.0f}% {postfix}")

        def on_progress(frac: float, msg: str) -> None:
            bar.n = round(frac * 100, 1)
            bar.set_postfix_str(msg[:60], refresh=True)

        try:
            build_scenes(state, scene_ids, PipelineConfig(device=args.device), on_progress)
        except Exception as e:  # the page shows it too
            log.error("processing the scenes failed: %s", e)
        finally:
            bar.close()

    return build


def check_args(args) -> None:
    """Validate every flag before anything starts or is written (each problem is one line naming the flag).

    Raises:
        SASInputError: a bad --dataset, --device, --text-encoder, --up, port, or a path that does not exist
            (--data-root and scene arguments are only read, never created).
    """
    if args.dataset is not None:
        from sas_engine.config import get_preset

        try:
            get_preset(args.dataset)
        except SASInputError as e:
            raise SASInputError(None, f"--dataset: {e}") from None
    if args.data_root is not None and not Path(args.data_root).expanduser().is_dir():
        raise SASInputError(args.data_root, "--data-root: folder not found (a data root is only read, never "
                                            "created; leave --data-root out to run the embedded demo)")
    for s in args.scenes:
        if not Path(s).expanduser().exists():
            raise SASInputError(s, "scene argument: not found (no such file or folder)")
    store = Path(args.store).expanduser()
    if store.exists() and not store.is_dir():
        raise SASInputError(store, "--store: exists but is not a folder")
    if not str(args.host).strip():
        raise SASInputError(None, "--host is empty: pass an interface such as 127.0.0.1")
    for flag, port in (("--port", args.port), ("--viser-port", args.viser_port)):
        if not 1 <= port <= 65535:
            raise SASInputError(None, f"{flag} {port}: a port must be in 1..65535")
    if args.port == args.viser_port:
        raise SASInputError(None, f"--port and --viser-port are both {args.port}: the page and the 3D viewer need "
                                  "two different ports")
    try:
        import torch

        dev = torch.device(args.device)
    except (RuntimeError, ValueError):
        raise SASInputError(None, f"--device {args.device!r}: not a torch device (cpu, cuda, cuda:1, ...)") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise SASInputError(None, f"--device {args.device}: CUDA is not available on this machine")
    spec = args.text_encoder
    if spec not in (None, "", "minilm"):
        from sas_engine.teachers.text import parse_openclip_spec

        _, path = parse_openclip_spec(spec)
        if path is not None and not Path(path).expanduser().is_file():
            raise SASInputError(path, "--text-encoder: weights file not found")
    if getattr(args, "up", None) is not None:
        from sas_engine.geometry.gravity import parse_up

        parse_up(args.up)


def _stop_on_sigterm(signum, frame) -> None:  # pragma: no cover - exercised through a subprocess
    raise SystemExit(0)


def main(argv: Optional[Sequence[str]] = None) -> int:
    try:
        args = parse_args(argv)
    except SystemExit as e:  # --help (0), or a command line that does not parse (2: its error line is printed)
        return e.code if isinstance(e.code, int) else 0
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import signal

    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, _stop_on_sigterm)  # same clean shutdown as Ctrl-C
    state = app = worker = None
    code = 0
    try:
        check_args(args)
        state, build = setup_state(args)
        state.warm_text_encoder()  # the model loads while the servers start: the first query does not wait for it
        from .server import start_app

        app = start_app(state, host=args.host, port=args.port, viser_port=args.viser_port)
        print(f"\n  SAS is running at {app.url}\n", flush=True)
        if build is not None:
            worker = threading.Thread(target=build, name="demo-build", daemon=True)
            worker.start()
        idle = threading.Event()
        while not idle.wait(0.5):  # a timed wait: a signal delivered to another thread is still handled promptly
            pass
    except SASError as e:
        print(f"error: {e}", file=sys.stderr)
        code = 2
    except (KeyboardInterrupt, SystemExit):
        print("stopping", flush=True)
    finally:
        _shutdown(state, app, worker)
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    return code


def _shutdown(state, app, worker) -> None:
    """Stop the servers, delete this run's export folder, and end a background build's worker processes (their
    artefacts are written atomically, so an interrupted scene is recomputed next time, never half-read)."""
    import multiprocessing

    try:
        if app is not None:
            app.close()
    finally:
        if state is not None:
            state.close()
        if worker is not None and worker.is_alive():
            for child in multiprocessing.active_children():
                child.terminate()
