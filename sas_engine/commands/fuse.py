"""``sas fuse <scene> --mode sas|add|linear|<teacher>``: single-teacher multi-view fusion, or the combination of the
per-teacher fused features (capability-guided, Add, Linear)."""
from __future__ import annotations

from .common import add_scene_args, add_store_arg

HELP = "fuse 2D teacher outputs onto the scene's points (one teacher) or combine fused teachers (sas, add, linear)"
COMBINED = ("sas", "add", "linear")


def add_arguments(p) -> None:
    add_scene_args(p)
    p.add_argument("--mode", required=True, help="sas | add | linear | <teacher name> (single-teacher fusion)")
    p.add_argument("--teachers", default="lseg_compact,seem_compact",
                   help="teachers combined by sas/add/linear (their fused.<teacher> artefacts must exist)")
    p.add_argument("--synth", default="synthetic", help="which capability table to use: capability.<synth>")
    p.add_argument("--tau", type=float, default=0.05, help="softmax temperature of capability-guided fusion (release 0.05)")
    p.add_argument("--weighting", choices=("mean", "normalized"), default="mean",
                   help="teacher weight = mean capability at the voted classes (paper) or that divided by the sum "
                        "over teachers (release)")
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
    from ..capability.artefacts import save_single
    from ..geometry import FusionConfig, fuse_features
    from ..io import load_scene
    from ..teachers.cache import cached_feature_source

    scene = load_scene(args.scene, dataset=args.dataset)
    cfg = FusionConfig.from_preset(scene.dataset)
    source = cached_feature_source(store, scene, args.mode, device=args.device)
    res = fuse_features(scene.points, scene.frames, source, cfg, device=args.device)
    path = save_single(store, scene.scene_id, args.mode, res, {"fusion": cfg, "dataset": scene.dataset})
    seen = int(res.mask.sum())
    print(f"{scene.scene_id}: fused {args.mode} onto {seen}/{scene.num_points} points -> {path}")
    return 0


def _combined(args, store) -> int:
    import numpy as np

    from ..capability import add_fuse, capability_fuse, linear_fuse, load_capability_table
    from ..capability.artefacts import load_any, save_fused
    from ..errors import SASInputError
    from ..io import load_scene
    from ..labels import PROMPT_SCENE
    from ..teachers import get_text_encoder

    scene = load_scene(args.scene, dataset=args.dataset)
    names = [t.strip() for t in args.teachers.split(",") if t.strip()]
    if not names:
        raise SASInputError(None, "--teachers is empty")
    fused = [load_any(store, scene.scene_id, f"fused.{t}") for t in names]
    feats = [f["features"] for f in fused]
    masks = [f["mask"] for f in fused]
    cfg = {"teachers": names}
    if args.mode == "add":
        res = add_fuse(feats, masks, names, device=args.device)
    else:
        table = load_capability_table(store, args.synth)
        cfg["synth"] = args.synth
        if args.mode == "linear":
            if table.linear_weights is None:
                raise SASInputError(None, f"capability.{args.synth} has no Linear weights (needs >= 2 teachers)")
            w = dict(zip(table.teachers, table.linear_weights))
            missing = [t for t in names if t not in w]
            if missing:
                raise SASInputError(None, f"capability.{args.synth} has no Linear weight for {missing}")
            weights = [w[t] for t in names]
            res = linear_fuse(feats, masks, weights, names, device=args.device)
            cfg["weights"] = weights
        else:
            enc = get_text_encoder(args.text_encoder, device=args.device)
            prompts = [PROMPT_SCENE.format(w) for w in table.prompt_words()]
            emb = enc.encode(prompts)
            catch = None
            if args.catch_all:
                t, _, c = args.catch_all.partition(":")
                if t not in names or c not in table.classes:
                    raise SASInputError(None, f"--catch-all {args.catch_all!r}: need TEACHER:CLASS with TEACHER in "
                                              f"{names} and CLASS in the capability table")
                catch = (names.index(t), table.classes.index(c))
            res = capability_fuse(feats, masks, table.select(names), emb, tau=args.tau, catch_all=catch,
                                  weighting=args.weighting, teachers=names, device=args.device)
            cfg.update(tau=args.tau, weighting=args.weighting, catch_all=args.catch_all,
                       text_encoder=args.text_encoder or "minilm")
    path = save_fused(store, scene.scene_id, args.mode, res, cfg)
    mean_w = res.weights[res.mask].mean(0).tolist() if bool(res.mask.any()) else [0.0] * len(names)
    print(f"{scene.scene_id}: fused.{args.mode} on {int(res.mask.sum())}/{scene.num_points} points, mean teacher "
          f"weights " + ", ".join(f"{n}={w:.3f}" for n, w in zip(names, np.asarray(mean_w))) + f" -> {path}")
    return 0
