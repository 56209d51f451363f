"""``sas fuse <scene> --mode sas|add|linear|<teacher>``: single-teacher multi-view fusion, or the combination of the
per-teacher fused features (capability-guided, Add, Linear)."""
from __future__ import annotations

from .common import add_scene_args, add_store_arg

HELP = "fuse 2D teacher outputs onto the scene's points (one teacher) or combine fused teachers (sas, add, linear)"
COMBINED = ("sas", "add", "linear")
READY_TEACHERS = ("lseg_compact", "seem_compact", "odise_compact")
"""Teachers ``sas fuse`` runs itself when no ``sas extract`` cache exists (they need no weights on the command line)."""


def add_arguments(p) -> None:
    add_scene_args(p)
    p.add_argument("--mode", required=True, help="sas | add | linear | <teacher name> (single-teacher fusion)")
    p.add_argument("--teachers", default=",".join(READY_TEACHERS),
                   help="teachers combined by sas/add/linear (their fused.<teacher> artefacts must exist)")
    p.add_argument("--synth", default="rooms", help="which capability table to use: capability.<synth> (rooms, "
                                                    "synthetic, sd, oracle)")
    from ..pipeline import PipelineConfig

    p.add_argument("--tau", type=float, default=PipelineConfig.tau,
                   help=f"softmax temperature of capability-guided fusion (default {PipelineConfig.tau}, chosen on "
                        "teaching rooms; release 0.05)")
    p.add_argument("--weighting", choices=("mean", "normalized"), default=PipelineConfig.weighting,
                   help="teacher weight = mean capability at the voted classes (paper) or that divided by the sum "
                        f"over teachers (release; default {PipelineConfig.weighting})")
    p.add_argument("--catch-all", default=None,
                   help="TEACHER:CLASS - points that TEACHER labels CLASS keep TEACHER's feature (release: lseg:other)")
    p.add_argument("--text-encoder", default=None, help="text encoder spec of the fused features' space (default MiniLM)")
    p.add_argument("--device", default="cpu", help="torch device (cpu or cuda)")
    add_store_arg(p)


def run(args) -> int:
    from ..store import ArtefactStore

    store = ArtefactStore(args.store)
    if args.mode in COMBINED:
        return _combined(args, store)
    return _single(args, store)


def _single(args, store) -> int:
    """One teacher: read ``sas extract``'s cache when it exists, else run the registered teacher frame by frame."""
    from ..io import load_scene
    from ..pipeline import PipelineConfig, fuse_source, teacher_source, vocabulary_text
    from ..teachers import build_teacher
    from ..teachers.cache import cached_feature_source, index_artefact

    scene = load_scene(args.scene, dataset=args.dataset, up=args.up)
    cfg = PipelineConfig(text_encoder=args.text_encoder, device=args.device)
    if args.mode in READY_TEACHERS:
        source = teacher_source(store, scene, build_teacher(args.mode).to(args.device), cfg)
    elif store.path(scene.scene_id, index_artefact(args.mode), ".json").is_file():
        source = cached_feature_source(store, scene, args.mode, device=args.device)
    else:
        from ..errors import SASInputError

        raise SASInputError(None, f"no cached outputs of teacher {args.mode!r} for scene {scene.scene_id}: run "
                                  f"`sas extract {args.scene} --teacher {args.mode} ...` with its weights first "
                                  f"(teachers that run without arguments: {', '.join(READY_TEACHERS)})")
    res = fuse_source(store, scene, args.mode, source, cfg, vocabulary_text(scene.label_set, cfg))
    seen = int(res["mask"].sum())
    print(f"{scene.scene_id}: fused {args.mode} onto {seen}/{scene.num_points} points -> "
          f"{store.path(scene.scene_id, 'fused.' + args.mode)}")
    return 0


def _combined(args, store) -> int:
    import numpy as np

    from ..capability import load_capability_table
    from ..capability.artefacts import load_any
    from ..errors import SASInputError
    from ..io import load_scene
    from ..pipeline import PipelineConfig, fuse_combined

    scene = load_scene(args.scene, dataset=args.dataset, up=args.up)
    names = [t.strip() for t in args.teachers.split(",") if t.strip()]
    if not names:
        raise SASInputError(None, "--teachers is empty")
    cfg = PipelineConfig(teachers=tuple(names), synthesizer=args.synth, tau=args.tau, weighting=args.weighting,
                         catch_all=args.catch_all, text_encoder=args.text_encoder, device=args.device)
    fused = [load_any(store, scene.scene_id, f"fused.{t}", geometry=scene.geometry_digest) for t in names]
    table = None if args.mode == "add" else load_capability_table(store, args.synth)
    res = fuse_combined(store, scene, args.mode, fused, names, table, cfg)
    mask, w = res["mask"], res["weights"]
    mean_w = w[mask].mean(0).tolist() if bool(mask.any()) else [0.0] * len(names)
    print(f"{scene.scene_id}: fused.{args.mode} on {int(mask.sum())}/{scene.num_points} points, mean teacher "
          f"weights " + ", ".join(f"{n}={v:.3f}" for n, v in zip(names, np.asarray(mean_w)))
          + f" -> {store.path(scene.scene_id, 'fused.' + args.mode)}")
    return 0
