"""``sas instances``: class-agnostic 3D proposals + open-vocabulary labels, stored; optional query, submission, JSON."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Optional

import tyro

from .common import DEFAULT_STORE, Dataset, Up


@dataclass
class Config:
    """3D instance proposals labelled with per-point features (stored as instances.proposals and
    instances.<features>); --query answers 'where is it?' with boxes."""

    target: tyro.conf.Positional[Annotated[str, tyro.conf.arg(metavar="TARGET")]]
    """A scene (folder or file) or a split (folder of scenes, or a synthetic split name)."""
    features: str = "pred3d.student"
    """Comma-separated per-point feature artefacts to label with (fused.<teacher>, fused.sas, pred3d.<run>)."""
    query: Optional[str] = None
    """Text to find: prints the matching instances ranked (score, centroid, box) and how many there are."""
    masks: Optional[Path] = None
    """Instance masks made elsewhere instead of the computed proposals: a file (one scene) or a folder of
    <scene>.txt (ScanNet benchmark / Mask3D format), <scene>_masks.pt or <scene>.npy / .npz (OpenMask3D-style
    [N, P] arrays)."""
    export: Optional[Path] = None
    """Write the labelled instances of the first --features source in the ScanNet benchmark's instance format into
    this folder (<scene>.txt + pred_mask/)."""
    json: Optional[Path] = None
    """Write the --query answers (one per scene) to this file."""
    dataset: Dataset = None
    """Dataset preset (default: detected from the layout)."""
    up: Up = None
    """Gravity alignment (see the help text)."""
    text_encoder: Optional[str] = None
    """Text encoder spec of the features' space (default MiniLM)."""
    recompute: bool = False
    """Recompute the proposals even when cached."""
    top: int = 10
    """Instances printed per query."""
    store: Path = DEFAULT_STORE
    """Artefact store folder ($SAS_STORE or <repo>/store)."""


def run(args) -> int:
    import json
    import time

    from ..errors import SASInputError
    from ..eval.inputs import iter_scenes, target_scene_paths
    from ..instances.adapters import write_submission
    from ..instances.labelling import benchmark_predictions, find_instances
    from ..instances.pipeline import _masks_file, ensure_proposals, label_config_for, scene_instances
    from ..instances.proposals import Proposals
    from ..store import ArtefactStore, atomic_write

    paths = target_scene_paths(args.target)
    feats = [s.strip() for s in args.features.split(",") if s.strip()]
    if not feats:
        raise SASInputError(None, "--features lists no feature artefact")
    if args.top < 1:
        raise SASInputError(None, f"--top must be >= 1, got {args.top}")
    if args.masks is not None and not args.masks.exists():
        raise SASInputError(args.masks, "--masks: no such file or folder")
    store = ArtefactStore(args.store)
    answers = []
    for scene in iter_scenes(paths, args.dataset, args.up):
        t0 = time.perf_counter()
        mf = None
        if args.masks is not None:
            mf = _masks_file(args.masks, scene.scene_id) if args.masks.is_dir() else args.masks
        pp = ensure_proposals(store, scene, masks_file=mf, recompute=args.recompute)
        props = Proposals.from_payload(pp)
        print(f"{scene.scene_id}: {len(props)} proposals ({time.perf_counter() - t0:.1f} s)")
        for k, f in enumerate(feats):
            _, lab = scene_instances(store, scene, f, masks_file=mf, text_encoder=args.text_encoder)
            names = lab["names"]
            counts: dict[str, int] = {}
            for li in lab["labels"].tolist():
                if li >= 0:
                    counts[names[li]] = counts.get(names[li], 0) + 1
            top = ", ".join(f"{n} {c}" for n, c in sorted(counts.items(), key=lambda x: (-x[1], x[0]))[:8])
            print(f"  {f}: labels {top or '(none)'}")
            if k == 0 and args.export is not None:
                preds = benchmark_predictions(props, lab, label_config_for(f))
                out = write_submission(args.export, scene.scene_id, preds, scene.num_points)
                print(f"  wrote {out} ({len(preds)} instances)")
        if args.query:
            ans = find_instances(scene, args.query, store=store, features=feats[0], text_encoder=args.text_encoder,
                                 include_points=args.json is not None, masks_file=mf)
            print(f"  '{ans['query']}' ({feats[0]}): {ans['answer']}")
            for r in ans["instances"][: args.top]:
                c = ", ".join(f"{v:.2f}" for v in r["centroid"])
                e = " x ".join(f"{v:.2f}" for v in r["extent"])
                print(f"    #{r['rank']} score {r['score']:.2f} ({r['label']}) {r['num_points']} points, centre "
                      f"({c}) m, size {e} m")
            answers.append(ans)
    if args.json is not None:
        text = json.dumps(answers if len(answers) != 1 else answers[0], indent=1)
        atomic_write(args.json, lambda f: f.write(text), mode="w")
        print(f"wrote {args.json}")
    return 0

