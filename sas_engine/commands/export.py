"""``sas export``: ScanNet benchmark submission files (one NYU40 id per vertex per line) from a stored source."""
from __future__ import annotations

from pathlib import Path

from .common import add_store_arg, add_up_arg

HELP = "write ScanNet benchmark submission files (<scene_id>.txt, one NYU40 id per vertex) from a feature source"


def add_arguments(p) -> None:
    p.add_argument("target", help="a scene (folder or file) or a split (folder of scenes, or a synthetic split name)")
    p.add_argument("--source", required=True, help="store artefact to label with, e.g. pred3d.run1 or fused.sas "
                                                   "('A+B' = 2D-3D ensemble)")
    p.add_argument("--out", type=Path, required=True, help="folder for the <scene_id>.txt files")
    p.add_argument("--dataset", default=None, help="dataset preset (default: detected from the layout)")
    add_up_arg(p)
    p.add_argument("--template", default=None, help="prompt template name or string with {} (default: the preset's)")
    te = p.add_mutually_exclusive_group()
    te.add_argument("--text-encoder", default=None, help="text encoder spec (default: the packaged MiniLM)")
    te.add_argument("--text-emb", type=Path, default=None, help="precomputed ScanNet-20 text embeddings [20, C]")
    p.add_argument("--device", default="cpu", help="torch device for the feature . text products")
    add_store_arg(p)


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
