"""Does capability-guided fusion earn its place? The paper's Table 3 (2D rows) and Table 4 on the synthetic world.

``sas ablate --part fusion`` (:func:`run_fusion_study`) writes ``assets/fusion/``:

1. **Teaching rooms** (the ``teach`` split: no teacher learned from them, none of them is a validation room):
   * each teacher's per-class IoU in those rooms, measured with their ground truth (:mod:`.capability.oracle`);
   * the Spearman correlation, per teacher pair, between the capability table's difference and that in-room
     difference (does the annotation-free table rank the teachers as the rooms do?), for the in-context ``rooms``
     table and, as the option it replaced, single objects on a plain background;
   * the fusion's settings (tau, weighting) compared on the points of the first ``select_rooms`` rooms: the best
     is the one the pipeline should use (the study says whether the pipeline's defaults are that choice).
2. **Validation rooms**, read once with the pipeline's settings: every single teacher, Add, Linear, SAS with all
   teachers, SAS with the first two (Table 4: M = 2 vs M = 3), and SAS with the oracle table (capabilities
   measured with ground truth on the teaching rooms' frames: the rule fed the accuracies it tries to estimate,
   as far as a few rooms measure them).
"""
from __future__ import annotations

import dataclasses
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .config import config_dict
from .pipeline import PipelineConfig, build_teachers, ensure_capability, fuse_combined, run_split
from .store import ArtefactStore, atomic_write

log = logging.getLogger(__name__)
ROOT = Path(__file__).resolve().parents[1]


@dataclass
class FusionStudyConfig:
    """Settings of the fusion study (defaults: the demo's three compact teachers, about 40 min on 2 CPU cores)."""

    pipeline: PipelineConfig = field(default_factory=PipelineConfig)
    """Teachers, capability synthesizer and m, and the fusion settings the validation rows use."""
    val_split: str = "val"
    """Split of the validation rows (read once, at the end)."""
    select_split: str = "teach"
    """Split of the teaching rooms: in-room IoU, oracle table, correlation and the choice of fusion settings.
    No teacher trains on it (each learned from its own split, :mod:`sas_engine.teachers.sources`)."""
    oracle_rooms: int = 12
    """Teaching rooms whose frames measure the in-room IoU (and so the oracle table and the correlation)."""
    select_rooms: int = 6
    """Teaching rooms whose points compare the fusion settings."""
    frame_step: int = 2
    """Every n-th frame of the teaching rooms is measured."""
    taus: tuple[float, ...] = (0.02, 0.05, 0.1, 0.2)
    """Temperatures compared on the teaching rooms."""
    weightings: tuple[str, ...] = ("mean", "normalized")
    """Teacher weightings compared on the teaching rooms (paper Eq. 6-7 / the release's normalised variant)."""
    pair: tuple[str, ...] = ("lseg_compact", "seem_compact")
    """The M = 2 teacher set of Table 4 (the paper's LSeg + SEEM)."""
    plain_images: int = 8
    """Images per class of the plain-background table compared in the correlation (0 = skip; 8 was the demo's
    setting when that table was the default)."""
    parallel: int = 2
    """Scene worker processes for the 2D stages (:func:`sas_engine.pipeline.run_split`)."""


def _table_rows(table, names) -> np.ndarray:
    return np.stack([table.row(n) for n in names])


def run_fusion_study(store: ArtefactStore, cfg: FusionStudyConfig, out_dir: Path) -> dict:
    """Run the study (every stage cached in ``store``) and write ``fusion.md``, ``fusion.json`` and the plots."""
    from .capability import load_capability_table, save_capability_table
    from .capability.artefacts import load_any
    from .capability.oracle import capability_correlation, oracle_table
    from .capability.table import KIND as CAPABILITY_KIND
    from .errors import StaleArtefactError
    from .eval.evaluate import evaluate_sources, store_source
    from .io import load_scene
    from .labels import get_label_set
    from .pipeline import vocabulary_text
    from .synth import ensure_split
    from .teachers import get_text_encoder

    t0 = time.time()
    timings: dict = {}
    pcfg = cfg.pipeline
    names = list(pcfg.teachers)
    pair = [n for n in cfg.pair if n in names]
    labels = get_label_set("scannet20")
    words, classes = list(labels.prompt_names), list(labels.names)
    enc = get_text_encoder(pcfg.text_encoder, device=pcfg.device)
    teachers = build_teachers(pcfg)

    t = time.time()
    table = ensure_capability(store, teachers, pcfg)
    timings["capability_table_s"] = round(time.time() - t, 1)

    # -- teaching rooms: in-room IoU, oracle table, correlation ---------------------------------------------
    t = time.time()
    sel_paths = ensure_split(cfg.select_split, first=max(cfg.oracle_rooms, cfg.select_rooms))
    oracle_conf = {"synth": "oracle", "split": cfg.select_split, "rooms": cfg.oracle_rooms,
                   "frame_step": cfg.frame_step, "teacher_configs": [tt.config() for tt in teachers]}
    try:  # measured once per teachers and rooms, then read back
        cached = store.load_json(None, "capability.oracle", kind=CAPABILITY_KIND, config=oracle_conf,
                                 inputs={"teachers": names, "classes": classes})
    except StaleArtefactError:
        cached = None
    if cached is not None:
        oracle = load_capability_table(store, "oracle")
    else:
        oracle = oracle_table(teachers, sel_paths[:cfg.oracle_rooms], words, enc, cfg.frame_step)
        oracle.classes, oracle.words = classes, words
        oracle.provenance[0]["split"] = cfg.select_split
        save_capability_table(store, oracle, "oracle", config=oracle_conf)
    room_iou, prov = oracle.scores, oracle.provenance[0]
    timings["in_room_iou_s"] = round(time.time() - t, 1)
    corr = {pcfg.synthesizer: capability_correlation(_table_rows(table, names), room_iou, names, classes)}
    plain = None
    if cfg.plain_images > 0 and pcfg.synthesizer != "synthetic":
        t = time.time()
        pl_cfg = dataclasses.replace(pcfg, synthesizer="synthetic", capability_images=cfg.plain_images)
        plain = ensure_capability(store, teachers, pl_cfg)
        corr["synthetic"] = capability_correlation(_table_rows(plain, names), room_iou, names, classes)
        timings["plain_table_s"] = round(time.time() - t, 1)

    # -- teaching rooms: fusion settings on their points --------------------------------------------------
    t = time.time()
    sel = sel_paths[:cfg.select_rooms]
    run_split(store, sel, pcfg, student=False, workers=cfg.parallel)
    settings = [(tau, w) for w in cfg.weightings for tau in cfg.taus]
    sel_rows = [f"fused.{n}" for n in names] + ["fused.add", "fused.linear"]
    scenes_sel = [load_scene(p) for p in sel]
    for scene in scenes_sel:
        fused = [load_any(store, scene.scene_id, f"fused.{n}", geometry=scene.geometry_digest) for n in names]
        for tau, w in settings:
            c = dataclasses.replace(pcfg, tau=tau, weighting=w)
            fuse_combined(store, scene, "sas", fused, names, table, c, out=_setting_name(tau, w))
        fuse_combined(store, scene, "sas", fused, names, oracle, dataclasses.replace(pcfg, synthesizer="oracle"),
                      out="study.sas_oracle")
        if plain is not None:
            fuse_combined(store, scene, "sas", fused, names, plain, dataclasses.replace(pcfg, synthesizer="synthetic"),
                          out="study.sas_plain")
    sel_rows += [_setting_name(tau, w) for tau, w in settings] + ["study.sas_oracle"]
    if plain is not None:
        sel_rows.append("study.sas_plain")
    text = vocabulary_text("scannet20", pcfg)
    res_sel = evaluate_sources(scenes_sel, [(r, store_source(store, r)) for r in sel_rows], "scannet20", text,
                               progress=False)
    grid = {f"{tau}|{w}": res_sel["sources"][_setting_name(tau, w)]["miou"] for tau, w in settings}
    best_tau, best_w = max(settings, key=lambda s: (grid[f"{s[0]}|{s[1]}"], -abs(np.log(s[0] / 0.05))))
    timings["teaching_rooms_fusion_s"] = round(time.time() - t, 1)

    # -- validation rooms, read once --------------------------------------------------------------------------
    t = time.time()
    val_paths = ensure_split(cfg.val_split)
    run_split(store, val_paths, pcfg, student=False, workers=cfg.parallel)
    scenes_val = [load_scene(p) for p in val_paths]
    for scene in scenes_val:
        fused = {n: load_any(store, scene.scene_id, f"fused.{n}", geometry=scene.geometry_digest) for n in names}
        if len(pair) >= 2 and pair != names:
            sub = [fused[n] for n in pair]
            fuse_combined(store, scene, "sas", sub, pair, table, pcfg, out="study.sas_m2")
            fuse_combined(store, scene, "add", sub, pair, None, pcfg, out="study.add_m2")
        fuse_combined(store, scene, "sas", [fused[n] for n in names], names, oracle,
                      dataclasses.replace(pcfg, synthesizer="oracle"), out="study.sas_oracle")
    val_rows = [f"fused.{n}" for n in names] + ["fused.add", "fused.linear", "fused.sas"]
    if len(pair) >= 2 and pair != names:
        val_rows += ["study.add_m2", "study.sas_m2"]
    val_rows.append("study.sas_oracle")
    res_val = evaluate_sources(scenes_val, [(r, store_source(store, r)) for r in val_rows], "scannet20", text,
                               progress=False)
    timings["validation_s"] = round(time.time() - t, 1)
    timings["total_s"] = round(time.time() - t0, 1)

    summary = _summary(res_val, res_sel, names, pair, corr, grid, (best_tau, best_w), pcfg)
    out = {"config": config_dict(cfg), "timings": timings, "summary": summary, "correlation": corr,
           "in_room_iou": {n: _pct(room_iou[i]) for i, n in enumerate(names)},
           "capability": {pcfg.synthesizer: {n: _pct(table.row(n)) for n in names},
                          **({"synthetic": {n: _pct(plain.row(n)) for n in names}} if plain is not None else {})},
           "classes": classes, "in_room_provenance": prov,
           "teaching_rooms": _brief(res_sel), "validation": _brief(res_val)}
    _write(out, res_val, Path(out_dir))
    return out


def _setting_name(tau: float, weighting: str) -> str:
    return f"study.sas_tau{tau:g}_{weighting}"


def _pct(v) -> list:
    return [None if not np.isfinite(x) else round(100 * float(x), 2) for x in np.asarray(v, np.float64)]


def _brief(res: dict) -> dict:
    return {"scenes": res["scenes"], "sources": {k: {"miou": s["miou"], "macc": s["macc"], "coverage": s["coverage"],
                                                     "iou": s["iou"]} for k, s in res["sources"].items()}}


def _summary(res_val, res_sel, names, pair, corr, grid, best, pcfg) -> dict:
    v = {k: s["miou"] for k, s in res_val["sources"].items()}
    single = max(v[f"fused.{n}"] for n in names)
    sas = v["fused.sas"]
    out = {"val_miou": v, "teaching_rooms_miou": {k: s["miou"] for k, s in res_sel["sources"].items()},
           "tau_grid_teaching_rooms": grid, "chosen_on_teaching_rooms": {"tau": best[0], "weighting": best[1]},
           "pipeline_uses": {"tau": pcfg.tau, "weighting": pcfg.weighting},
           "pipeline_matches_choice": bool(pcfg.tau == best[0] and pcfg.weighting == best[1]),
           "bars": {"sas_minus_best_baseline": round(sas - max(v["fused.add"], v["fused.linear"]), 2),
                    "sas_minus_best_single": round(sas - single, 2),
                    "spearman_mean": corr[pcfg.synthesizer]["mean_rho"]}}
    if "study.sas_m2" in v:
        out["bars"]["sas_m3_minus_m2"] = round(sas - v["study.sas_m2"], 2)
    return out


def _write(out: dict, res_val: dict, out_dir: Path) -> None:
    from .eval.report import markdown_table, png_bytes, write_report

    out_dir.mkdir(parents=True, exist_ok=True)
    s = out["summary"]
    synth = out["config"]["pipeline"]["synthesizer"]
    v = s["val_miou"]
    lines = ["# Capability-guided fusion on the synthetic world (paper Tables 3 and 4, 2D rows)", "",
             "Reproduce: `sas ablate --part fusion` (every stage cached in the store).", "",
             "## Validation rooms (read once, with the pipeline's settings)", "",
             "| source | mIoU |", "|---|---:|"]
    lines += [f"| `{k}` | {val:.1f} |" for k, val in v.items()]
    b = s["bars"]
    lines += ["", f"* SAS - max(Add, Linear) = **{b['sas_minus_best_baseline']:+.1f}** (bar: +2); "
              f"SAS - best single teacher = **{b['sas_minus_best_single']:+.1f}** (bar: +3)"
              + (f"; SAS with all teachers - SAS with {' + '.join(out['config']['pair'])} = "
                 f"**{b['sas_m3_minus_m2']:+.1f}** (bar: >= 0)" if "sas_m3_minus_m2" in b else ""),
              "* `study.sas_oracle`: SAS with the oracle table, capabilities measured with ground truth in the "
              "teaching rooms (each teacher's per-class IoU on their frames) instead of the annotation-free table; "
              "`study.add_m2` / `study.sas_m2`: the first two teachers only (`study.*` artefacts are the study's "
              "variants, which the app does not list).",
              "", "## Teaching rooms (`" + out["config"]["select_split"] + "`: no teacher learned from them)", "",
              f"Capability correlation: Spearman's rho per teacher pair between the capability difference and the "
              f"in-room IoU difference over the classes (in-room IoU on {out['in_room_provenance']['frames']} frames "
              f"of {len(out['in_room_provenance']['scenes'])} rooms).", "",
              "| table | " + " | ".join(out["correlation"][synth]["pairs"]) + " | mean |",
              "|---|" + "---:|" * (len(out["correlation"][synth]["pairs"]) + 1)]
    for tname, c in out["correlation"].items():
        label = {"rooms": "in context (`rooms`, shipped)",
                 "synthetic": "plain background (`synthetic`)"}.get(tname, tname)
        lines.append(f"| {label} | " + " | ".join(f"{p['rho']:.2f}" for p in c["pairs"].values())
                     + f" | **{c['mean_rho']:.2f}** |")
    lines += ["", f"Fusion settings on the points of {len(out['teaching_rooms']['scenes'])} teaching rooms (mIoU):", "",
              "| tau | weighting | mIoU |", "|---:|---|---:|"]
    for key, m in s["tau_grid_teaching_rooms"].items():
        tau, w = key.split("|")
        lines.append(f"| {tau} | {w} | {m:.1f} |")
    ch = s["chosen_on_teaching_rooms"]
    lines += ["", f"Chosen there: tau = {ch['tau']}, weighting = {ch['weighting']}; the pipeline uses tau = "
              f"{s['pipeline_uses']['tau']}, {s['pipeline_uses']['weighting']}"
              + (" (the same)." if s["pipeline_matches_choice"] else " (**not** the choice: update PipelineConfig)."),
              "", "Other rows on the teaching rooms: " + ", ".join(
                  f"`{k}` {m:.1f}" for k, m in s["teaching_rooms_miou"].items() if "tau" not in k), "",
              "## Per-class IoU on the validation rooms", "", markdown_table(res_val), "",
              f"Timings (s): {json.dumps(out['timings'])}", ""]
    text = "\n".join(lines)
    atomic_write(out_dir / "fusion.md", lambda f: f.write(text), mode="w")
    atomic_write(out_dir / "fusion.json", lambda f: f.write(json.dumps(out, indent=1)), mode="w")
    import matplotlib.pyplot as plt

    from .eval.report import plot_iou_bars

    write_report(res_val, out_dir, plots=False, title="Fusion rows on the validation rooms", stem="fusion_val")
    for fname, fig in (("capability_correlation.png", plot_correlation(out)), ("iou_per_class.png",
                                                                                 plot_iou_bars(res_val))):
        if fig is not None:
            data = png_bytes(fig)
            atomic_write(out_dir / fname, lambda f: f.write(data))
            plt.close(fig)


def plot_correlation(out: dict):
    """Scatter per teacher pair: capability difference (x) vs in-room IoU difference (y), one point per class."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    synth = out["config"]["pipeline"]["synthesizer"]
    pairs = out["correlation"][synth]["pairs"]
    if not pairs:
        return None
    fig, axes = plt.subplots(1, len(pairs), figsize=(4.6 * len(pairs), 4.4), squeeze=False)
    for ax, (name, p) in zip(axes[0], pairs.items()):
        x, y = np.array(p["capability_diff"]) * 100, np.array(p["in_room_diff"]) * 100
        ax.axhline(0, color="#bbb", lw=0.8)
        ax.axvline(0, color="#bbb", lw=0.8)
        ax.scatter(x, y, s=18)
        for xi, yi, c in zip(x, y, p["classes"]):
            ax.annotate(c, (xi, yi), fontsize=6, xytext=(2, 2), textcoords="offset points")
        a, b = name.split("|")
        ax.set_xlabel(f"capability {a} - {b} (IoU points, {synth} images)", fontsize=8)
        ax.set_ylabel("in-room IoU difference (teaching rooms)", fontsize=8)
        ax.set_title(f"{a} vs {b}: Spearman {p['rho']:.2f}", fontsize=9)
    fig.tight_layout()
    return fig
