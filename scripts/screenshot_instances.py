"""Screenshots of "where is it?" instance answers on the embedded demo, taken in headless Chromium through the page.

    python3 scripts/screenshot_instances.py [--store store] [--out assets/app] [--room synth1003_02] [--query ...]

Needs the demo store (``python3 launch.py`` builds it) and chromium (``scripts/setup.sh test``). The query is typed
into the Query tab and **Find instances** pressed; the script then clicks the first row of the instance table.
It writes ``instances_list.png`` (the ranked list, the boxes and the how-many status) and ``instances_framed.png``
(the camera framed on instance #1), and prints the answer behind them as JSON.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "app"))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--store", type=Path, default=ROOT / "store")
    ap.add_argument("--data-root", type=Path, default=ROOT / "data" / "synthetic")
    ap.add_argument("--out", type=Path, default=ROOT / "assets" / "app")
    ap.add_argument("--room", default="synth1003_02", help="scene id (default: the office)")
    ap.add_argument("--query", default="how many chairs are there?")
    args = ap.parse_args(argv)

    from app.state import AppState, find_scene_folder
    from page_driver import NoChromium, demo_page, shot
    from test_browser import wait_for

    folder = find_scene_folder([args.data_root], args.room)
    if folder is None or not (Path(args.store) / args.room).is_dir():
        print(f"{args.room}: not in the demo store / data root; run python3 launch.py once first", file=sys.stderr)
        return 2
    state = AppState(args.store, [args.data_root])
    state.add_scene_path(folder, scene_id=args.room, check_roots=False)
    state.warm_text_encoder().join()
    out: dict = {}
    try:
        with demo_page(state) as (app, cdp, s):
            wait_for(lambda: s.scene_id == args.room and s.view_a is not None, 60, "the scene")
            time.sleep(3.0)

            def status():
                return cdp.eval("document.querySelector('#sas-status')?.textContent || ''") or ""

            def snap(name):
                return shot(cdp, args.out / name)

            cdp.eval("[...document.querySelectorAll('button[role=tab]')].find(b => b.textContent.trim() == 'Query')"
                     ".click()")
            time.sleep(0.5)
            cdp.eval("(() => { const q = document.querySelector('#sas-query textarea, #sas-query input'); "
                     "q.focus(); q.select(); })()")
            cdp.call("Input.insertText", text=args.query)
            cdp.eval("document.querySelector('#sas-instances-btn').click()")
            wait_for(lambda: s.instances is not None, 180, "the instance answer")
            wait_for(lambda: "instance" in status() or "found" in status(), 30, "the status line")
            time.sleep(5.0)  # software WebGL draws the boxes
            ans = dict(s.instances)
            out["answer"] = {k: v for k, v in ans.items() if k != "instances"}
            out["instances"] = ans["instances"]
            out["status"] = status()
            out["list"] = snap("instances_list.png")
            if ans["instances"]:
                cell = str(ans["instances"][0]["num_points"])  # the first row's point count, a cell to click on
                rect = cdp.eval("(() => { const c = [...document.querySelectorAll('#sas-instances *')].find(e => "
                                f"e.children.length == 0 && e.textContent.trim() == '{cell}'); if (!c) return null; "
                                "const r = c.getBoundingClientRect(); return [r.x + r.width / 2, r.y + r.height / 2]; "
                                "})()")
                if rect is None:
                    raise AssertionError("no visible row in the instance table")
                for kind in ("mousePressed", "mouseReleased"):  # a real click, as gradio's table listens for it
                    cdp.call("Input.dispatchMouseEvent", type=kind, x=rect[0], y=rect[1], button="left", clickCount=1)
                wait_for(lambda: s.focus is not None, 30, "the camera to frame instance #1")
                time.sleep(4.0)
                out["framed_status"] = status()
                out["framed"] = snap("instances_framed.png")
            cdp.close()
    except NoChromium as e:
        print(e, file=sys.stderr)
        return 2
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
