"""``sas gaussians``: 3D Gaussians fitted to a scene's frames, labelled with lifted / fused / distilled teacher
features, evaluated on rendered held-out views, and rendered at any frame (paper Sec. 4.4, Table 5)."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Literal, Optional

import tyro

from ..gaussians.fit import GaussianFitConfig
from ..gaussians.semantics import GaussianEncoderConfig
from .common import DEFAULT_STORE, Dataset, Up


@dataclass
class Config:
    """3D Gaussians of a scene (fit), their semantics (lifted teacher features, SAS fusion, distilled encoder),
    2D mIoU / mAcc of rendered held-out views (eval) and rendered label / query maps (render)."""

    action: tyro.conf.Positional[Literal["fit", "semantics", "eval", "render"]]
    """fit: fit the Gaussians (held-out frames never fitted); semantics: fit + lift each teacher + SAS fusion +
    distil the encoder; eval: all that + score rendered held-out views; render: a PNG of one frame (photo,
    Gaussians' colours, labels of --source, or --query relevance)."""
    target: tyro.conf.Positional[Annotated[str, tyro.conf.arg(metavar="TARGET")]]
    """A scene (folder or file) or a split (folder of scenes, or a synthetic split name)."""
    teachers: tuple[str, ...] = ("lseg_compact", "seem_compact", "odise_compact")
    """2D teachers lifted onto the Gaussians (two or more also give the SAS fusion, source 'sas')."""
    sources: tuple[str, ...] = ()
    """Feature sources to compute and evaluate (teacher names and/or 'sas'; default: every teacher and sas)."""
    fit: GaussianFitConfig = field(default_factory=GaussianFitConfig)
    """Fitting settings."""
    encoder: GaussianEncoderConfig = field(default_factory=GaussianEncoderConfig)
    """Distilled encoder settings."""
    frame: Optional[int] = None
    """render: frame index (default: the middle held-out frame)."""
    source: str = "sas"
    """render: feature source whose labels are drawn."""
    query: Optional[str] = None
    """render: text whose cosine with the rendered features is drawn as a heat map instead of labels."""
    out: Optional[Path] = None
    """eval: report folder (gaussians.md, gaussians.json, gaussians_compare.png); render: the PNG file."""
    dataset: Dataset = None
    """Dataset preset (default: detected from the layout)."""
    up: Up = None
    """Gravity alignment (see the help text)."""
    device: str = "cpu"
    """Torch device (cuda with --fit.rasterizer gsplat uses gsplat's CUDA rasteriser)."""
    threads: int = 0
    """Torch CPU threads (0 = torch's default)."""
    store: Path = DEFAULT_STORE
    """Artefact store folder ($SAS_STORE or <repo>/store)."""


def run(cfg: Config) -> int:
    import torch

    from ..errors import SASInputError
    from ..eval.inputs import iter_scenes, target_scene_paths
    from ..gaussians.pipeline import ensure_fit, run_scenes
    from ..pipeline import PipelineConfig
    from ..store import ArtefactStore

    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    if len(cfg.teachers) == 0:
        raise SASInputError(None, "--teachers lists no teacher")
    pcfg = PipelineConfig(teachers=tuple(cfg.teachers), device=cfg.device)
    sources = tuple(cfg.sources) or None
    for s in sources or ():
        if s != "sas" and s not in cfg.teachers:
            raise SASInputError(None, f"unknown Gaussian feature source {s!r}: teachers {list(cfg.teachers)} or 'sas'")
    if cfg.fit.holdout_every in (1,) or cfg.fit.holdout_every < 0:
        raise SASInputError(None, f"--fit.holdout-every: holdout_every must be 0 or >= 2, got {cfg.fit.holdout_every}")
    store = ArtefactStore(cfg.store)
    paths = target_scene_paths(cfg.target)
    scenes = iter_scenes(paths, cfg.dataset, cfg.up)
    if cfg.action == "fit":
        for scene in scenes:
            fit = ensure_fit(store, scene, cfg.fit, device=cfg.device)
            s = fit["stats"]
            print(f"{scene.scene_id}: {s['num_gaussians']} Gaussians fitted on {len(fit['fit_frames'])} frames "
                  f"({len(fit['heldout_frames'])} held out), PSNR {s['fit_psnr']} dB, {s['seconds']} s")
        return 0
    if cfg.action == "render":
        return _render(cfg, store, pcfg, scenes)
    res = run_scenes(store, scenes, cfg.fit, cfg.encoder, pcfg, sources=sources, device=cfg.device,
                     evaluate=cfg.action == "eval")
    if cfg.action == "eval":
        from ..gaussians.report import markdown_rows, summaries
        from ..labels import get_label_set

        names = list(get_label_set("scannet20").names)
        summ = summaries(res["confusion"], names)
        print("\n".join(markdown_rows(summ)))
        if cfg.out is not None:
            from ..gaussians.report import write_report

            res["summary"] = summ
            files = write_report(cfg.out, {str(cfg.target): res}, cfg.teachers,
                                 settings={"fit": vars_of(cfg.fit), "encoder": vars_of(cfg.encoder)})
            for k, p in files.items():
                print(f"wrote {k} {p}")
    return 0


def vars_of(obj) -> dict:
    from ..config import config_dict

    return config_dict(obj)


def _render(cfg: Config, store, pcfg, scenes) -> int:
    import numpy as np
    import torch
    from PIL import Image

    from ..errors import SASInputError
    from ..gaussians.fit import load_views, render_gaussians
    from ..gaussians.pipeline import build_teachers_and_table, ensure_fit, ensure_semantics, gaussians_of
    from ..gaussians.semantics import MISSING, class_scores, render_features, render_labels
    from ..io.colors import colorize
    from ..pipeline import vocabulary_text
    from ..store import atomic_write

    scene = next(iter(scenes))
    n = len(scene.frames)
    if cfg.frame is not None and not 0 <= cfg.frame < n:
        raise SASInputError(scene.source or None, f"--frame {cfg.frame} is outside 0..{n - 1}")
    fit = ensure_fit(store, scene, cfg.fit, device=cfg.device)
    held = list(fit["heldout_frames"]) or [0]
    idx = cfg.frame if cfg.frame is not None else held[len(held) // 2]
    teachers, table = build_teachers_and_table(pcfg, cfg.source == "sas", store)
    feats = ensure_semantics(store, scene, fit, teachers, table, pcfg, cfg.encoder, sources=[cfg.source],
                             device=cfg.device)[cfg.source]
    pay = feats["distilled"] or feats["lifted"]
    g = gaussians_of(fit)
    v = load_views(scene.frames, [idx], cfg.fit.width, cfg.fit.height)[0]
    with torch.no_grad():
        rgb = (render_gaussians(g, g.colors, v.camera, cfg.fit).channels.clamp(0, 1).numpy() * 255).astype(np.uint8)
    if cfg.query:
        from ..teachers import get_text_encoder

        t = get_text_encoder(pcfg.text_encoder).encode([cfg.query])[0]
        f = render_features(g, pay["features"], v, cfg.fit)
        cos = torch.nn.functional.cosine_similarity(f, t[None, None].to(f), dim=-1).numpy()
        lo, hi = float(np.percentile(cos, 2)), float(np.percentile(cos, 98))
        x = np.clip((cos - lo) / max(hi - lo, 1e-6), 0, 1)
        sem = np.stack([255 * x, 64 * (1 - x), 255 * (1 - x)], -1).astype(np.uint8)
        what = f"query '{cfg.query}'"
    else:
        text = vocabulary_text(scene.label_set, pcfg)
        lab = render_labels(g, class_scores(pay["features"], pay["mask"], text), v, cfg.fit)
        sem = colorize(np.where(lab == MISSING, 255, lab), text.shape[0])[..., :3]
        what = f"labels of {cfg.source}"
    out = cfg.out or Path(f"{scene.scene_id}_frame{idx}_{cfg.source}.png")
    img = np.concatenate([(v.color.numpy() * 255).astype(np.uint8), rgb, sem], 1)
    import io

    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG")
    atomic_write(out, lambda fh: fh.write(buf.getvalue()))
    print(f"wrote {out}: frame {v.frame_id} of {scene.scene_id}: photo, Gaussians' colours, {what}")
    return 0
