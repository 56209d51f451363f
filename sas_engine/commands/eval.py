"""``sas eval``: zero-shot evaluation of stored per-point feature sources -> Markdown table, JSON, PNG plots."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal, Optional

import tyro

from .common import DEFAULT_STORE, Dataset, Up

WHAT = tyro.conf.create_mutex_group(required=True, title="scenes evaluated (one of)")
TEXT = tyro.conf.create_mutex_group(required=False, title="text embeddings (one of)")


@dataclass
class Config:
    """Evaluate stored feature sources (fused.<teacher>, fused.sas, pred3d.<run>, A+B ensembles) against ground
    truth: a Markdown table, JSON and plots."""

    sources: str
    """Comma-separated store artefacts, e.g. fused.lseg_compact,fused.sas,pred3d.run1; 'A+B' = OpenScene 2D-3D
    ensemble of A and B."""
    split: Annotated[Optional[str], WHAT] = None
    """Folder of scenes (ScanNet scans/, OpenScene .pth files) or synthetic split name."""
    scene: Annotated[Optional[str], WHAT] = None
    """One scene folder or file."""
    task: Literal["semantic", "instances"] = "semantic"
    """semantic: per-point zero-shot segmentation (mIoU); instances: 3D instances labelled with each source, scored
    with the ScanNet instance benchmark (AP, AP50, AP25; writes instances.md / instances.json into --out)."""
    masks: Optional[Path] = None
    """--task instances: folder of instance masks made elsewhere (<scene>.txt benchmark / Mask3D format,
    <scene>_masks.pt or .npy) used as the proposals."""
    dataset: Dataset = None
    """Dataset preset (default: detected from the layout)."""
    up: Up = None
    """Gravity alignment (see the help text)."""
    label_set: Optional[str] = None
    """Label set to query (default: the scenes' own; nuScenes-16 scenes use nuscenes43, the 43 detailed names
    mapped back to 16 classes)."""
    template: Optional[str] = None
    """Prompt template: a name (scene, capability, capability_paper) or a string with {} (default: the dataset
    preset's, 'a {} in a scene')."""
    text_encoder: Annotated[Optional[str], TEXT] = None
    """Text encoder spec (default: the packaged MiniLM)."""
    text_emb: Annotated[Optional[Path], TEXT] = None
    """Precomputed text embeddings [Q, C] (.pt or .npy) of the label set's prompts."""
    convention: Literal["present", "openscene"] = "present"
    """mIoU/mAcc mean: over classes present in the GT, or OpenScene's sum / K (both are in the JSON)."""
    allow_missing: Optional[Literal["miss", "skip"]] = None
    """When a source lacks a scene: count its points as misses, or skip the scene (default: error)."""
    out: Path = Path("eval_report")
    """Report folder."""
    no_plots: bool = False
    """Write only the Markdown and JSON files."""
    device: str = "cpu"
    """Torch device for the feature . text products."""
    chunk_size: int = 65536
    """Points per matrix product."""
    store: Path = DEFAULT_STORE
    """Artefact store folder ($SAS_STORE or <repo>/store)."""


def run(args) -> int:
    from ..config import get_preset
    from ..errors import SASInputError
    from ..eval.evaluate import default_eval_label_set, evaluate_sources, store_source
    from ..eval.inputs import iter_scenes, load_text_embeddings, resolve_template, split_scene_paths
    from ..eval.report import markdown_report, write_report
    from ..eval.zeroshot import text_embeddings
    from ..labels import get_label_set
    from ..store import ArtefactStore

    paths = split_scene_paths(args.split) if args.split else [Path(args.scene)]
    names = [s.strip() for s in args.sources.split(",") if s.strip()]
    if not names:
        raise SASInputError(None, "--sources lists no source")
    store = ArtefactStore(args.store)
    if args.task == "instances":
        return _run_instances(args, paths, names, store)
    scenes = iter_scenes(paths, args.dataset, args.up)
    first = next(scenes)  # the first scene fixes label set and preset defaults
    ls = get_label_set(args.label_set or default_eval_label_set(first.label_set))
    try:
        preset_template = get_preset(first.dataset).prompt_template
    except SASInputError:
        preset_template = "a {} in a scene"
    template = resolve_template(args.template, preset_template)
    if args.text_emb is not None:
        text = load_text_embeddings(args.text_emb, ls)
        encoder_name = str(args.text_emb)
    else:
        text = text_embeddings(ls, args.text_encoder, template)
        encoder_name = args.text_encoder or "default"

    def all_scenes():
        yield first
        yield from scenes

    results = evaluate_sources(
        all_scenes(), [(n, store_source(store, n)) for n in names], ls, text, convention=args.convention,
        on_missing=args.allow_missing or "error", template=template, chunk_size=args.chunk_size, device=args.device,
        total=len(paths), meta={"text encoder": encoder_name, "store": str(store.root)})
    files = write_report(results, args.out, plots=not args.no_plots)
    print(markdown_report(results))
    for label, f in files.items():
        print(f"wrote {label:<24} {f}")
    return 0


def _run_instances(args, paths, names, store) -> int:
    """``--task instances``: AP / AP50 / AP25 of each source's labelling of the scenes' proposals."""
    from ..eval.inputs import iter_scenes
    from ..instances.pipeline import evaluate_instance_sources, markdown_table
    from ..instances.report import write_report

    if args.masks is not None and not args.masks.is_dir():
        from ..errors import SASInputError

        raise SASInputError(args.masks, "--masks must be a folder of <scene>.txt / .pt / .npy instance masks")
    res = evaluate_instance_sources(iter_scenes(paths, args.dataset, args.up), store, names, masks_dir=args.masks,
                                    on_missing="skip" if args.allow_missing else "error",
                                    text_encoder=args.text_encoder)
    res.update(split=str(args.split or args.scene), store=str(store.root), seconds="-")
    teachers = [n.split(".", 1)[1] for n in names if n.startswith("fused.") and n not in
                ("fused.sas", "fused.add", "fused.linear")]
    files = write_report(args.out, {"val": res}, teachers, title="Instance evaluation")
    print(markdown_table(res))
    for label, f in files.items():
        print(f"wrote {label:<24} {f}")
    return 0
