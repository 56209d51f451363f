"""Screenshots of truthful queries on the embedded demo, taken in headless Chromium through the real page.

    python3 launch.py --no-build   # not needed: this script starts its own app on the demo store
    python3 scripts/screenshot_queries.py [--store store] [--out assets/app]

Needs the demo store (``python3 launch.py`` builds it on first start) and chromium (``scripts/setup.sh test``).
Each query is typed into the page's Query tab; the script checks the session behind the tab and writes, at a
1600x1000 window:

* ``query_absent_bed.png``: "bed" in the living room: an empty map and "Nothing matches 'bed' here";
* ``query_list_background.png``: "chair, table, sofa, bed" in the bedroom: walls and floor stay grey, the bed is bed;
* ``query_paraphrase.png``: "a place to wash hands" in the kitchen (it answers through sink, the name whose
  description is nearest), and ``query_paraphrase_bathroom.png`` the same in the bathroom;
* ``query_somewhere_to_sit.png``: "somewhere to sit" in the bedroom (the README's first picture);
* ``compare_layout.png``: ground truth | distilled student side by side, legend on screen;
* ``disagreement_three_teachers.png``: where the three teachers disagree, coloured by the teacher the SAS fusion
  trusted there | the distilled student.

It prints the numbers behind each picture (coloured points per ground-truth class) as JSON.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "app"))

ROOMS = {"bedroom": "synth1001_00", "living_room": "synth1002_01", "kitchen": "synth1004_03",
         "bathroom": "synth1005_04"}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--store", type=Path, default=ROOT / "store")
    ap.add_argument("--data-root", type=Path, default=ROOT / "data" / "synthetic")
    ap.add_argument("--out", type=Path, default=ROOT / "assets" / "app")
    args = ap.parse_args(argv)


    from app.state import AppState, find_scene_folder
    from sas_engine.labels import SCANNET20
    from sas_engine.query import BACKGROUND
    from page_driver import NoChromium, demo_page, shot
    from test_browser import wait_for

    state = AppState(args.store, [args.data_root])
    for sid in sorted(set(ROOMS.values())):
        folder = find_scene_folder([args.data_root], sid)
        if folder is None or not (Path(args.store) / sid).is_dir():
            print(f"{sid}: not in the demo store / data root; run python3 launch.py once first", file=sys.stderr)
            return 2
        state.add_scene_path(folder, scene_id=sid, check_roots=False)
    state.warm_text_encoder().join()
    numbers: dict = {}
    try:
        with demo_page(state) as (app, cdp, s):
            args.out.mkdir(parents=True, exist_ok=True)

            def tab(name):
                cdp.eval(f"[...document.querySelectorAll('button[role=tab]')].find(b => b.textContent.trim() == "
                         f"'{name}').click()")
                time.sleep(0.5)

            def choose(elem_id, text):  # type into a gradio dropdown and press Enter, as a user would
                cdp.eval(f"(() => {{ const i = document.querySelector('#{elem_id} input'); i.focus(); i.select(); }})()")
                cdp.call("Input.insertText", text=text)
                time.sleep(0.5)
                for kind in ("keyDown", "keyUp"):
                    cdp.call("Input.dispatchKeyEvent", type=kind, key="Enter", code="Enter", windowsVirtualKeyCode=13)

            def choose_scene(sid):
                tab("Scene")
                choose("sas-scene", sid)
                wait_for(lambda: s.scene_id == sid and s.view_a is not None, 60, f"scene {sid}")
                time.sleep(3.0)  # the viewer receives the new points

            def query(text):
                tab("Query")
                cdp.eval("(() => { const q = document.querySelector('#sas-query textarea, #sas-query input'); "
                         "q.focus(); q.select(); })()")
                cdp.call("Input.insertText", text=text)
                cdp.eval("document.querySelector('#sas-query-btn').click()")
                wait_for(lambda: s.query is not None and s.query.text.replace(" ", "") == text.replace(" ", ""), 60,
                         f"the query {text!r}")
                wait_for(lambda: "Nothing" in status() or "region" in status() or "labelled" in status(), 30,
                         "the status line")
                time.sleep(4.0)  # software WebGL draws the new colours

            def status():
                return cdp.eval("document.querySelector('#sas-status')?.textContent || ''") or ""

            def snap(name):
                return shot(cdp, args.out / name)

            def per_class(mask, gt):
                g = gt[mask]
                g = g[g != 255]
                return {SCANNET20[k]: int(c) for k, c in enumerate(np.bincount(g, minlength=20)) if c}

            # 1. an absent object: an empty map with a message
            choose_scene(ROOMS["living_room"])
            query("bed")
            gt = state.scene(s.scene_id).labels.astype(np.int64)
            col = np.isfinite(s.query.heat) & (s.query.heat >= s.threshold)
            numbers["absent_bed"] = {"scene": s.scene_id, "status": status(), "coloured_points": int(col.sum()),
                                     "regions": len(s.objects),
                                     "peak_relevance": round(float(s.query.peak), 3), "file": snap("query_absent_bed.png")}
            # 2. a comma list with a background, in the bedroom
            choose_scene(ROOMS["bedroom"])
            query("chair, table, sofa, bed")
            gt = state.scene(s.scene_id).labels.astype(np.int64)
            lab = s.query.labels
            wf = np.isin(gt, [0, 1])
            bed = gt == SCANNET20.index("bed")
            numbers["list_background"] = {
                "scene": s.scene_id, "status": status(),
                "wall_floor_points": int(wf.sum()), "wall_floor_uncoloured": int((wf & (lab == BACKGROUND)).sum()),
                "bed_points": int(bed.sum()), "bed_labelled_bed": int((lab[bed] == 3).sum()),
                "bed_labelled": {n: int((lab[bed] == i).sum()) for i, n in enumerate(s.query.names)},
                "file": snap("query_list_background.png")}
            # 3. somewhere to sit (the README's first picture), same room
            query("somewhere to sit")
            col = np.isfinite(s.query.heat) & (s.query.heat >= s.threshold)
            numbers["somewhere_to_sit"] = {"scene": s.scene_id, "status": status(), "coloured": per_class(col, gt),
                                           "file": snap("query_somewhere_to_sit.png")}
            # 4. a paraphrase in the kitchen and in the bathroom
            for room, key, fname in (("kitchen", "paraphrase_wash_hands", "query_paraphrase.png"),
                                     ("bathroom", "paraphrase_wash_hands_bathroom", "query_paraphrase_bathroom.png")):
                choose_scene(ROOMS[room])
                query("a place to wash hands")
                gt = state.scene(s.scene_id).labels.astype(np.int64)
                col = np.isfinite(s.query.heat) & (s.query.heat >= s.threshold)
                numbers[key] = {"scene": s.scene_id, "status": status(), "coloured": per_class(col, gt),
                                "aliases": list(s.query.aliases or []),
                                "peak_relevance": round(float(s.query.peak), 3),
                                "sink_points": int((gt == SCANNET20.index("sink")).sum()), "file": snap(fname)}
            # 5. side-by-side comparison with its legend, at 1600x1000
            choose_scene(ROOMS["bedroom"])
            tab("Scene")
            choose("sas-mode-a", "ground truth")
            wait_for(lambda: s.mode_a == "gt", 30, "mode A")
            cdp.eval("document.querySelector('#sas-compare input').click()")
            time.sleep(1.0)
            numbers["compare_pending_status"] = status()
            choose("sas-mode-b", "distilled 3D (student) segmentation")
            wait_for(lambda: s.compare and s.view_b is not None, 30, "the side-by-side view")
            time.sleep(6.0)
            legend_bottom = cdp.eval("document.querySelector('#sas-legend')?.getBoundingClientRect().bottom || -1")
            numbers["compare"] = {"legend_bottom_px": legend_bottom, "window_height_px": 1000,
                                  "file": snap("compare_layout.png")}
            # 6. where the three teachers disagree, coloured by the teacher the SAS fusion trusted there
            choose("sas-mode-a", "teacher disagreement")
            wait_for(lambda: s.mode_a == "disagreement", 30, "the disagreement mode")
            time.sleep(6.0)
            numbers["disagreement"] = {"scene": s.scene_id, "status": status(),
                                       "legend": cdp.eval("document.querySelector('#sas-legend')?.innerText || ''"),
                                       "file": snap("disagreement_three_teachers.png")}
            cdp.close()
    except NoChromium as e:
        print(e, file=sys.stderr)
        return 2
    print(json.dumps(numbers, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
