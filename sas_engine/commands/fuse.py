"""``sas fuse <scene> --mode sas|add|linear|<teacher>``: single-teacher multi-view fusion, or the combination of the
per-teacher fused features (capability-guided, Add, Linear)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Optional

from ..pipeline import PipelineConfig
from .common import DEFAULT_STORE, Dataset, Scene, Up

COMBINED = ("sas", "add", "linear")
READY_TEACHERS = ("lseg_compact", "seem_compact", "odise_compact")
"""Teachers ``sas fuse`` runs itself when no ``sas extract`` cache exists (they need no weights on the command line)."""


@dataclass
class Config:
    """Fuse 2D teacher outputs onto the scene's points (one teacher) or combine fused teachers (sas, add, linear).

    The fusion settings are those of :class:`sas_engine.pipeline.PipelineConfig` (same names, same defaults)."""

    scene: Scene
    """Scene folder or file (ScanNet scan folder, OpenScene .pth, custom RGB-D folder...)."""
    mode: str
    """sas | add | linear | <teacher name> (single-teacher fusion)."""
    dataset: Dataset = None
    """Dataset preset (scannet, matterport, nuscenes, synthetic); detected from the layout when omitted."""
    up: Up = None
    """Gravity alignment (see the help text)."""
    teachers: tuple[str, ...] = READY_TEACHERS
    """Teachers combined by sas/add/linear, comma-separated (their fused.<teacher> artefacts must exist)."""
    synth: str = PipelineConfig.synthesizer
    """Which capability table sas/linear use: capability.<synth> (rooms, synthetic, sd, oracle)."""
    tau: float = PipelineConfig.tau
    """Softmax temperature of capability-guided fusion (chosen on teaching rooms; release 0.05)."""
    weighting: Literal["mean", "normalized"] = PipelineConfig.weighting
    """Teacher weight = mean capability at the voted classes (paper) or that divided by the sum over teachers
    (release)."""
    catch_all: Optional[str] = PipelineConfig.catch_all
    """TEACHER:CLASS - points that TEACHER labels CLASS keep TEACHER's feature (release: lseg:other)."""
    text_encoder: Optional[str] = PipelineConfig.text_encoder
    """Text encoder spec of the fused features' space (default MiniLM)."""
    cache_frames: bool = PipelineConfig.cache_frames
    """Single-teacher fusion: keep the teacher's per-frame outputs in the store (what `sas extract` writes)."""
    device: str = PipelineConfig.device
    """Torch device (cpu or cuda)."""
    store: Path = DEFAULT_STORE
    """Artefact store folder ($SAS_STORE or <repo>/store)."""

    def pipeline(self) -> PipelineConfig:
        """The :class:`PipelineConfig` these settings describe (the other fields keep their defaults)."""
        return PipelineConfig(teachers=tuple(self.teachers), synthesizer=self.synth, tau=self.tau,
                              weighting=self.weighting, catch_all=self.catch_all, text_encoder=self.text_encoder,
                              cache_frames=self.cache_frames, device=self.device)


def run(args) -> int:
    from ..store import ArtefactStore

    store = ArtefactStore(args.store)
    if args.mode in COMBINED:
        return _combined(args, store)
    return _single(args, store)


def _single(args, store) -> int:
    """One teacher: read ``sas extract``'s cache when it exists, else run the registered teacher frame by frame."""
    from ..io import load_scene
    from ..pipeline import fuse_source, teacher_source, vocabulary_text
    from ..teachers import build_teacher
    from ..teachers.cache import cached_feature_source, index_artefact

    scene = load_scene(args.scene, dataset=args.dataset, up=args.up)
    cfg = args.pipeline()
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
    from ..pipeline import fuse_combined

    scene = load_scene(args.scene, dataset=args.dataset, up=args.up)
    names = list(args.teachers)
    if not names:
        raise SASInputError(None, "--teachers is empty")
    cfg = args.pipeline()
    fused = [load_any(store, scene.scene_id, f"fused.{t}", geometry=scene.geometry_digest) for t in names]
    table = None if args.mode == "add" else load_capability_table(store, args.synth)
    res = fuse_combined(store, scene, args.mode, fused, names, table, cfg)
    mask, w = res["mask"], res["weights"]
    mean_w = w[mask].mean(0).tolist() if bool(mask.any()) else [0.0] * len(names)
    print(f"{scene.scene_id}: fused.{args.mode} on {int(mask.sum())}/{scene.num_points} points, mean teacher "
          f"weights " + ", ".join(f"{n}={v:.3f}" for n, v in zip(names, np.asarray(mean_w)))
          + f" -> {store.path(scene.scene_id, 'fused.' + args.mode)}")
    return 0
