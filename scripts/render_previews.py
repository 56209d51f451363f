"""Save preview PNGs of the synthetic world under assets/synthetic/ to check it by eye.

Per room type one PNG: a top-down view (ceiling cut away) and three frames of the camera loop, each shown as the
rendered colour image, the ground-truth classes blended over it (with a legend) and the depth. Images are
palette-quantised to keep the folder small (< 3 MB in total).

    python scripts/render_previews.py [--out assets/synthetic] [--seed-offset 0]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sas_engine.labels import SCANNET20  # noqa: E402
from sas_engine.synth import ROOM_TYPES, SPLITS, generate_scene, render_frames  # noqa: E402
from sas_engine.synth.render import render_topdown  # noqa: E402


def class_palette() -> np.ndarray:
    import matplotlib

    cmap = matplotlib.colormaps["tab20"]
    pal = np.zeros((256, 3), np.uint8)
    pal[:20] = (np.array([cmap(i)[:3] for i in range(20)]) * 255).astype(np.uint8)
    return pal


def overlay(color: np.ndarray, labels: np.ndarray, pal: np.ndarray) -> np.ndarray:
    out = color.astype(np.float32)
    m = labels != 255
    out[m] = 0.35 * out[m] + 0.65 * pal[labels[m]]
    return out.astype(np.uint8)


def depth_image(depth: np.ndarray, vmax: float = 6.0) -> np.ndarray:
    import matplotlib

    d = np.clip(depth / vmax, 0, 1)
    rgb = (matplotlib.colormaps["viridis"](d)[..., :3] * 255).astype(np.uint8)
    rgb[depth <= 0] = 0
    return rgb


def legend(draw, classes, pal, x0, y0):
    for k, c in enumerate(classes):
        y = y0 + 13 * k
        draw.rectangle([x0, y + 2, x0 + 9, y + 11], fill=tuple(int(v) for v in pal[c]))
        draw.text((x0 + 13, y), SCANNET20[c], fill=(0, 0, 0))


def pick_frames(frames, k: int, gap: int = 8):
    """The ``k`` frames showing the most classes, at least ``gap`` frames apart (varied, informative views)."""
    score = [len(np.unique(f.labels)) + 0.01 * (f.labels != 255).mean() for f in frames]
    chosen: list[int] = []
    for i in np.argsort(score)[::-1]:
        if all(abs(int(i) - j) >= gap for j in chosen):
            chosen.append(int(i))
        if len(chosen) == k:
            break
    return [frames[i] for i in sorted(chosen)]


def room_panel(room_type: str, seed: int, pal: np.ndarray):
    from PIL import Image, ImageDraw

    t0 = time.perf_counter()
    room = generate_scene(seed, room_type)
    frames = render_frames(room)
    secs = time.perf_counter() - t0
    top = render_topdown(room, px_per_m=48)
    picks = pick_frames(frames, 3)
    w, h = 320, 240
    rows = [np.concatenate([f.color for f in picks], 1),
            np.concatenate([overlay(f.color, f.labels, pal) for f in picks], 1),
            np.concatenate([depth_image(f.depth) for f in picks], 1)]
    grid = np.concatenate(rows, 0)
    th, tw = top.color.shape[:2]
    scale = min(1.0, 3 * h / th, 330 / tw)
    top_img = Image.fromarray(top.color)
    top_img = top_img.resize((max(1, int(tw * scale)), max(1, int(th * scale))), Image.BILINEAR)
    canvas = Image.new("RGB", (3 * w + 340 + 120, 3 * h + 22), (255, 255, 255))
    canvas.paste(Image.fromarray(grid), (0, 22))
    canvas.paste(top_img, (3 * w + 5, 22))
    draw = ImageDraw.Draw(canvas)
    present = sorted(set(int(c) for c in np.unique(room.labels)) - {255})
    draw.text((4, 4), f"{room.scene_id} {room_type}: {room.num_vertices} vertices, {len(frames)} frames "
                      f"{frames[0].color.shape[1]}x{frames[0].color.shape[0]}, {len(present)} classes, "
                      f"generated+rendered in {secs:.1f} s  |  rows: colour, GT classes, depth; right: top view",
              fill=(0, 0, 0))
    legend(draw, present, pal, 3 * w + 345, 26)
    return canvas, {"scene": room.scene_id, "vertices": room.num_vertices, "frames": len(frames),
                    "classes": len(present), "seconds": round(secs, 2)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "assets" / "synthetic")
    ap.add_argument("--seed-offset", type=int, default=0, help="added to the val split's seeds")
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    pal = class_palette()
    seeds = {rt: s for s, rt in SPLITS["val"].scenes}
    for rt in ROOM_TYPES:
        canvas, info = room_panel(rt, seeds[rt] + args.seed_offset, pal)
        path = args.out / f"preview_{rt}.png"
        canvas.quantize(colors=192, method=2).save(path, optimize=True)
        print(path, info, f"{path.stat().st_size / 1e3:.0f} kB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
