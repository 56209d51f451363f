"""``sas export``: ScanNet benchmark submission files (one NYU40 id per vertex per line) from a stored source."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Optional

import tyro

from .common import DEFAULT_STORE, Dataset, Up

TEXT = tyro.conf.create_mutex_group(required=False, title="text embeddings (one of)")


@dataclass
class Config:
    """Write ScanNet benchmark submission files (<scene_id>.txt, one NYU40 id per vertex) from a feature source."""

    target: tyro.conf.Positional[Annotated[str, tyro.conf.arg(metavar="TARGET")]]
    """A scene (folder or file) or a split (folder of scenes, or a synthetic split name)."""
    source: str
    """Store artefact to label with, e.g. pred3d.run1 or fused.sas ('A+B' = 2D-3D ensemble)."""
    out: Path
    """Folder for the <scene_id>.txt files."""
    dataset: Dataset = None
    """Dataset preset (default: detected from the layout)."""
    up: Up = None
    """Gravity alignment (see the help text)."""
    template: Optional[str] = None
    """Prompt template name or string with {} (default: the preset's)."""
    text_encoder: Annotated[Optional[str], TEXT] = None
    """Text encoder spec (default: the packaged MiniLM)."""
    text_emb: Annotated[Optional[Path], TEXT] = None
    """Precomputed ScanNet-20 text embeddings [20, C] (.pt or .npy)."""
    device: str = "cpu"
    """Torch device for the feature . text products."""
    store: Path = DEFAULT_STORE
    """Artefact store folder ($SAS_STORE or <repo>/store)."""


def run(args) -> int:
    from tqdm import tqdm

    from ..config import get_preset
    from ..errors import SASInputError
    from ..eval.evaluate import store_source
    from ..eval.inputs import (fill_missing_nearest, iter_scenes, load_text_embeddings, resolve_template,
                               target_scene_paths)
    from ..eval.zeroshot import predict_labels, text_embeddings
    from ..io.writers import write_scannet_submission
    from ..labels import SCANNET20, get_label_set
    from ..store import ArtefactStore

    paths = target_scene_paths(args.target)
    ls = get_label_set("scannet20")
    loader = store_source(ArtefactStore(args.store), args.source)
    text = None
    written = 0
    for scene in tqdm(iter_scenes(paths, args.dataset, args.up), total=len(paths), desc="export", unit="scene"):
        if tuple(get_label_set(scene.label_set).names) != SCANNET20:
            raise SASInputError(scene.source or None, f"scene {scene.scene_id} uses label set {scene.label_set!r}; "
                                                      "the ScanNet benchmark format needs ScanNet-20")
        if text is None:
            template = resolve_template(args.template, get_preset(scene.dataset).prompt_template)
            text = (load_text_embeddings(args.text_emb, ls) if args.text_emb is not None
                    else text_embeddings(ls, args.text_encoder, template))
        fs = loader(scene)
        if fs is None:
            raise SASInputError(args.store, f"no artefact {args.source!r} for scene {scene.scene_id}: run the stage "
                                            "that produces it first")
        pred = predict_labels(fs, text, ls.query_to_class(), device=args.device)
        n_missing = int((pred < 0).sum())
        # the benchmark needs a class for every vertex: unseen vertices take their nearest labelled vertex's class
        pred = fill_missing_nearest(scene.points, pred)
        f = write_scannet_submission(args.out, scene.scene_id, pred)
        written += 1
        tqdm.write(f"wrote {f} ({scene.num_points} vertices, {n_missing} filled from nearest neighbours)")
    print(f"{written} submission file(s) in {args.out}")
    return 0
