"""``python launch.py``: start the app on the embedded demo, on scene folders, or on a dataset's scenes.

* no scene argument: builds the embedded demo on first run (``sas_engine.demo.build_demo``; synthetic validation
  scenes through the whole pipeline, cached in the store) while the page already shows the progress; later runs find
  everything cached and start in seconds. ``--no-build`` shows only scenes whose artefacts are already in the store.
* ``launch.py path/to/scans/scene0000_00 ...``: those scenes (any layout ``sas_engine.io.load_scene`` reads).
* ``launch.py --dataset scannet --data-root /data/scannet``: every scene found under the data root.

One URL is printed once both servers answer.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
import threading
from pathlib import Path
from typing import Optional, Sequence

from sas_engine.errors import SASError, SASInputError

REPO = Path(__file__).resolve().parents[1]
DEFAULT_STORE = Path(os.environ.get("SAS_STORE", REPO / "store"))
DEFAULT_DATA = Path(os.environ.get("SAS_DATA", REPO / "data" / "synthetic"))
log = logging.getLogger("sas.launch")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="launch.py", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("scenes", nargs="*", type=Path, help="scene folders or files to open (default: the embedded demo)")
    p.add_argument("--dataset", default=None, help="dataset preset (scannet, matterport, nuscenes, synthetic); with "
                                                   "--data-root and no scene arguments, opens every scene found there")
    p.add_argument("--data-root", type=Path, default=None,
                   help=f"folder scenes may be opened from in the page (default {DEFAULT_DATA})")
    p.add_argument("--host", default="127.0.0.1", help="interface to serve on (default 127.0.0.1, this machine only)")
    p.add_argument("--port", type=int, default=7860, help="port of the page (default 7860)")
    p.add_argument("--viser-port", type=int, default=8080, help="port of the embedded 3D viewer (default 8080)")
    p.add_argument("--device", default="cpu", help="torch device for the text encoder and the demo build")
    p.add_argument("--checkpoints", type=Path, default=None, help="folder of model weights (real teachers, 3D model)")
    p.add_argument("--store", type=Path, default=DEFAULT_STORE, help=f"artefact store (default {DEFAULT_STORE})")
    p.add_argument("--text-encoder", default=None, help="'minilm' (default) or 'openclip:<arch>:<weights path>'")
    p.add_argument("--no-build", action="store_true", help="never build the demo; show what the store holds")
    return p


def discover_scenes(root: Path, dataset: Optional[str]) -> list[tuple[str, Path]]:
    """(scene id, path) of the scenes under a dataset root: ScanNet-style ``scans/<id>/`` folders (also directly
    under the root) and OpenScene ``*.pth`` files."""
    root = Path(root)
    if not root.is_dir():
        raise SASInputError(root, "data root not found")
    out: dict[str, Path] = {}
    for base in (root / "scans", root):
        if base.is_dir():
            for d in sorted(base.iterdir()):
                if d.is_dir() and (any(d.glob("*_vh_clean_2.ply")) or (d / "sas_synthetic.json").exists()):
                    out.setdefault(d.name, d)
    for f in sorted(root.rglob("*.pth")):
        out.setdefault(f.stem.replace("_vh_clean_2", ""), f)
    if not out:
        raise SASInputError(root, f"no scenes found (looked for scans/<id>/ folders and *.pth files"
                                  f"{'' if dataset is None else f', dataset {dataset}'})")
    return sorted(out.items())


def _stored_scene_ids(store: Path) -> list[str]:
    if not store.is_dir():
        return []
    return sorted(d.name for d in store.iterdir() if d.is_dir() and not d.name.startswith(("_", ".")))


def setup_state(args) -> tuple["object", Optional[callable]]:
    """The app state with the scenes registered; plus the demo build to run in the background (or ``None``)."""
    from .state import AppState, find_scene_folder

    data_root = (args.data_root or DEFAULT_DATA).expanduser().resolve()
    roots = [data_root] + [Path(s).expanduser().resolve() for s in args.scenes]
    state = AppState(args.store, roots, text_encoder_spec=args.text_encoder, device=args.device)
    if args.scenes:
        for s in args.scenes:
            sid = state.add_scene_path(s, dataset=args.dataset, check_roots=False)
            print(f"scene {sid}: {s}")
        return state, None
    if args.dataset and args.data_root:
        for sid, p in discover_scenes(data_root, args.dataset):
            state.add_scene_path(p, scene_id=sid, dataset=args.dataset, check_roots=False)
        print(f"{len(state.scene_ids())} scenes of {args.dataset} under {data_root}")
        return state, None
    try:
        from sas_engine.demo import build_demo  # written by the pipeline owners; absent in early checkouts
    except ImportError:
        build_demo = None
    if build_demo is None or args.no_build:
        for sid in _stored_scene_ids(Path(args.store)):
            p = find_scene_folder([data_root], sid)
            if p is not None:
                state.add_scene_path(p, scene_id=sid, check_roots=False)
        if not state.scene_ids():
            reason = "--no-build was given" if args.no_build else "sas_engine.demo is not available in this checkout"
            raise SASInputError(args.store, f"no demo scenes in the store and {reason}; "
                                            "pass scene folders, e.g. python launch.py data/scans/scene0000_00")
        return state, None

    def build():
        from tqdm import tqdm

        bar = tqdm(total=100, desc="building the demo", unit="%", bar_format="{l_bar}{bar}| {n:.0f}% {postfix}")

        def on_progress(frac: float, msg: str) -> None:
            bar.n = round(frac * 100, 1)
            bar.set_postfix_str(msg[:60], refresh=True)

        import inspect

        params = inspect.signature(build_demo).parameters
        extra = {k: v for k, v in (("device", args.device), ("checkpoints", args.checkpoints)) if k in params}
        try:
            ids = state.run_build(lambda progress: build_demo(args.store, data_root, progress=progress, **extra),
                                  lambda sid: find_scene_folder([data_root], sid), on_progress)
            on_progress(1.0, f"{len(ids)} scenes ready")
        except Exception as e:  # the page shows it too
            log.error("demo build failed: %s", e)
        finally:
            bar.close()

    return state, build


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        state, build = setup_state(args)
        from .server import start_app

        app = start_app(state, host=args.host, port=args.port, viser_port=args.viser_port)
    except SASError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"\n  SAS is running at {app.url}\n", flush=True)
    worker = None
    if build is not None:
        worker = threading.Thread(target=build, name="demo-build", daemon=True)
        worker.start()
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        print("stopping")
    finally:
        app.close()
    return 0
