"""Class-agnostic 3D instance proposals without downloaded weights: superpoints grouped by 2D regions and features.

Superpoints are merged, over their adjacency graph, by two cues:

* **geometry and features** (:func:`feature_agglomeration`): adjacent groups whose mean per-point features (the
  distilled or fused features, L2-normalised and averaged per superpoint) have the highest cosine merge first;
* **multi-view regions** (:func:`region_cooccurrence`): the mask teacher (the compact SEEM-style ``seem_compact`` by
  default) splits every frame into regions. The scene's points are projected into the frame with fusion's
  projection and occlusion test (:func:`sas_engine.geometry.fusion.iter_projections`), so only the points the frame
  really sees count. A superpoint *seen* by the frame (at least ``min_visible_points`` visible points) is *assigned*
  to the region holding at least ``majority`` of them. For every pair of adjacent superpoints the frames that see
  both (``covisible``) and the frames that assign both to one region (``together``) are counted. The region affinity
  of two groups is ``sum(together) / sum(covisible)`` over the adjacent pairs between them (average linkage); pairs
  seen together in fewer than ``min_views`` frames have none. It enters the feature agglomeration as a bonus or
  malus ``region_weight * (affinity - 0.5)``, and can also be agglomerated on its own (``region_levels``).

Merging is greedy, best pair first (a heap with lazy invalidation), and the groups present when the best remaining
affinity first falls below a level are that level's proposals. Proposals of every level and cue are pooled; those
below ``min_points`` points or above ``max_fraction`` of the scene are dropped and near-duplicates (mask IoU >=
``dedupe_iou``) are kept once. Everything is deterministic (ties broken by superpoint ids).

Superpoints are adjacent when any of their points lie within ``adjacency_radius`` of each other (a k-d tree over the
points; no mesh needed).

A proposal set is stored as the artefact ``instances.proposals`` (see :func:`ensure_proposals`): ``indices`` int64
(the proposals' point indices one after the other), ``offsets`` int64 [P + 1], ``superpoints`` int64 and
``sp_offsets`` (the superpoints of each proposal), ``source`` (the cue and level of each proposal).
"""
from __future__ import annotations

import heapq
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Optional, Sequence

import numpy as np

from ..errors import SASInputError

log = logging.getLogger(__name__)

_LIFT_LOCK = threading.Lock()
KIND = "instance_proposals"
"""Artefact kind of ``instances.proposals``."""
ARTEFACT = "instances.proposals"


@dataclass(frozen=True)
class ProposalConfig:
    """Settings of the class-agnostic proposals.

    The defaults were chosen on the 6 synthetic ``tune`` rooms, never on ``val``, by the mean AP50 over the four
    labelling sources (lseg_compact, seem_compact, sas fusions and the student; ``top_k`` 2). Trials, AP50 per
    source in that order: the region agglomeration alone (levels 0.7/0.5/0.3) recovers 10% of the instances at IoU
    0.5 (its regions are colour superpixels, parts of objects) and scored 0.7/0.9/0.7/0.3; features alone at cosine
    0.9 with 4 cm adjacency 36.8/35.5/44.2/28.3, at 0.85 45.7/41.3/45.4/29.2; 6 cm adjacency 52.0/48.2/52.4/37.9;
    8 cm 57.7/48.4/52.3/47.4; 8 cm with the region cue at weight 0.1 56.8/50.5/54.7/45.8 (shipped); levels 0.8 or
    0.9 alone, or two levels pooled, scored lower."""

    mask_teacher: str = "seem_compact"
    """Registry name of the 2D mask teacher whose per-frame regions are lifted ("" = no region cue)."""
    region_levels: tuple[float, ...] = ()
    """Affinity levels at which the region agglomeration is cut (each gives one set of proposals; () = none: on the
    tune rooms its proposals only added false positives)."""
    feature_levels: tuple[float, ...] = (0.85,)
    """Affinity levels at which the feature agglomeration is cut (() = no feature cue)."""
    region_weight: float = 0.1
    """Weight of the region cue inside the feature agglomeration: ``region_weight * (together / covisible - 0.5)`` is
    added to the cosine of two groups seen together in ``min_views`` frames (0 = features alone)."""
    min_views: int = 2
    """Frames that must see two adjacent superpoints together before their region affinity counts."""
    min_visible_points: int = 5
    """Visible points a superpoint needs in a frame to count as seen by it."""
    majority: float = 0.6
    """Share of a superpoint's visible points that one region must hold for the superpoint to belong to it."""
    frame_stride: int = 1
    """Use every n-th frame for the region cue."""
    adjacency_radius: float = 0.08
    """Superpoints with points closer than this (metres) are neighbours."""
    min_points: int = 100
    """Smallest proposal kept (points; the benchmark ignores smaller ones)."""
    max_fraction: float = 0.4
    """Largest proposal kept, as a share of the scene's points (walls and floors merged whole are no instances)."""
    dedupe_iou: float = 0.9
    """Proposals whose masks overlap by at least this IoU are one proposal (the first cue/level keeps it)."""


@dataclass
class Proposals:
    """Class-agnostic proposals of one scene.

    Attributes:
        indices: int64, the proposals' point indices one after the other (each sorted).
        offsets: int64 [P + 1]: proposal ``i`` is ``indices[offsets[i]:offsets[i + 1]]``.
        num_points: N, the scene's point count.
        source: the cue and level that made each proposal (``"region@0.5"``, ``"feature@0.9"``, ``"file"``...).
        scores: optional float32 [P] class-agnostic scores (e.g. from a Mask3D file); ``None`` = not scored.
    """

    indices: np.ndarray
    offsets: np.ndarray
    num_points: int
    source: list[str] = field(default_factory=list)
    scores: Optional[np.ndarray] = None

    def __len__(self) -> int:
        return int(len(self.offsets) - 1)

    def points(self, i: int) -> np.ndarray:
        """Point indices of proposal ``i``."""
        return self.indices[self.offsets[i]:self.offsets[i + 1]]

    def sizes(self) -> np.ndarray:
        return np.diff(self.offsets)

    def mask(self, i: int) -> np.ndarray:
        m = np.zeros(self.num_points, bool)
        m[self.points(i)] = True
        return m

    def masks(self) -> np.ndarray:
        """bool [P, N] (memory P x N bytes)."""
        out = np.zeros((len(self), self.num_points), bool)
        for i in range(len(self)):
            out[i, self.points(i)] = True
        return out

    def owner(self) -> tuple[np.ndarray, np.ndarray]:
        """(proposal id, point index) of every membership, int64 each (for pooling per-point values)."""
        return np.repeat(np.arange(len(self)), self.sizes()), self.indices

    @classmethod
    def from_lists(cls, lists: Sequence[np.ndarray], num_points: int, source: Optional[Sequence[str]] = None,
                   scores: Optional[np.ndarray] = None) -> "Proposals":
        arrs = [np.unique(np.asarray(a, dtype=np.int64)) for a in lists]
        for a in arrs:
            if a.size and (a[0] < 0 or a[-1] >= num_points):
                raise SASInputError(None, f"proposal indexes points outside 0..{num_points - 1}")
        offsets = np.concatenate([[0], np.cumsum([a.size for a in arrs])]).astype(np.int64)
        idx = np.concatenate(arrs).astype(np.int64) if arrs else np.zeros(0, np.int64)
        return cls(idx, offsets, int(num_points), list(source or [""] * len(arrs)),
                   None if scores is None else np.asarray(scores, dtype=np.float32))

    @classmethod
    def from_masks(cls, masks: np.ndarray, source: str = "file", scores: Optional[np.ndarray] = None) -> "Proposals":
        m = np.asarray(masks).astype(bool)
        return cls.from_lists([np.nonzero(r)[0] for r in m], m.shape[1], [source] * m.shape[0], scores)

    def to_payload(self) -> dict:
        import torch

        out = {"indices": torch.from_numpy(self.indices.astype(np.int64)),
               "offsets": torch.from_numpy(self.offsets.astype(np.int64)),
               "num_points": int(self.num_points), "source": list(self.source)}
        if self.scores is not None:
            out["scores"] = torch.from_numpy(self.scores.astype(np.float32))
        return out

    @classmethod
    def from_payload(cls, obj: dict, where=None) -> "Proposals":
        try:
            idx = np.asarray(obj["indices"]).astype(np.int64)
            off = np.asarray(obj["offsets"]).astype(np.int64)
            n = int(obj["num_points"])
        except (KeyError, TypeError, ValueError) as e:
            raise SASInputError(where, f"not a proposal set (missing or bad {e})") from None
        if off.ndim != 1 or off.size < 1 or off[0] != 0 or off[-1] != idx.size or (np.diff(off) < 0).any():
            raise SASInputError(where, "proposal offsets are inconsistent with the indices")
        sc = obj.get("scores")
        return cls(idx, off, n, list(obj.get("source") or [""] * (off.size - 1)),
                   None if sc is None else np.asarray(sc, dtype=np.float32))


# -- graph -----------------------------------------------------------------------------------------------------
def superpoint_adjacency(points: np.ndarray, superpoints: np.ndarray, radius: float) -> np.ndarray:
    """int64 [E, 2] pairs (a < b) of superpoints with points closer than ``radius`` to each other."""
    from scipy.spatial import cKDTree

    pts = np.asarray(points, dtype=np.float64)
    sp = np.asarray(superpoints, dtype=np.int64)
    pairs = cKDTree(pts).query_pairs(float(radius), output_type="ndarray")
    if pairs.size == 0:
        return np.zeros((0, 2), np.int64)
    a, b = sp[pairs[:, 0]], sp[pairs[:, 1]]
    keep = a != b
    e = np.stack([np.minimum(a, b), np.maximum(a, b)], 1)[keep]
    return np.unique(e, axis=0) if e.size else np.zeros((0, 2), np.int64)


def _region_map(teacher, image: np.ndarray) -> np.ndarray:
    """int64 [h, w] region id per pixel (-1 = none) of a mask teacher on one image, at any resolution (fusion's
    feature-cell sampling reads it). The compact SEEM-style teacher's regions are its class-agnostic proposals at half
    resolution, taken directly (its region classifier is not needed here: 3x faster); other teachers go through
    ``regions_and_labels`` or their masks (each pixel to the best-scored mask covering it)."""
    from ..teachers.proposals import ProposalConfig as RegionConfig
    from ..teachers.proposals import propose_regions

    cfg = getattr(teacher, "proposals", None)
    if isinstance(cfg, RegionConfig):
        from ..teachers.base import check_image

        return np.asarray(propose_regions(check_image(image)[::2, ::2], cfg), dtype=np.int64)
    if hasattr(teacher, "regions_and_labels"):
        return np.asarray(teacher.regions_and_labels(image)[0], dtype=np.int64)
    preds = teacher.predict_batch([image])[0]
    h, w = image.shape[:2]
    out = np.full((h, w), -1, np.int64)
    best = np.full((h, w), -np.inf)
    for r, p in enumerate(preds):
        m = np.asarray(p.mask, bool) & (p.score > best)
        out[m] = r
        best[m] = p.score
    return out


def region_cooccurrence(scene, superpoints: np.ndarray, edges: np.ndarray,
                        region_fn: Callable[[int, object], np.ndarray], cfg: ProposalConfig,
                        progress: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(together, covisible) int32 [E] frame counts of every adjacent superpoint pair (see the module docstring).

    ``region_fn(i, frame) -> int [H', W']`` region ids of frame ``i`` (any resolution; -1 = no region)."""
    from ..geometry.fusion import FusionConfig

    sp = np.asarray(superpoints, dtype=np.int64)
    s = int(sp.max()) + 1 if sp.size else 0
    together = np.zeros(len(edges), np.int32)
    covis = np.zeros(len(edges), np.int32)
    if len(edges) == 0:
        return together, covis
    ea, eb = edges[:, 0], edges[:, 1]
    frames = scene.frames
    stride = max(1, int(cfg.frame_stride))
    sub = [frames[i] for i in range(0, len(frames), stride)] if stride > 1 else frames
    fcfg = FusionConfig.from_preset(scene.dataset)
    import torch

    # the region proposals' small per-pixel torch ops stall in OpenMP hand-offs on a busy machine: on the shared
    # 2-core box one thread lifted a 50-frame room in 4.3 s, two threads in 48 s. The thread count is process-wide,
    # so lifts (e.g. two app requests) run one at a time and restore it in order.
    with _LIFT_LOCK:
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            _lift_frames(scene, sub, stride, fcfg, sp, s, ea, eb, region_fn, cfg, together, covis, progress)
        finally:
            torch.set_num_threads(threads)
    return together, covis


def _lift_frames(scene, sub, stride, fcfg, sp, s, ea, eb, region_fn, cfg, together, covis, progress) -> None:
    from ..geometry.fusion import feature_cells, iter_projections

    for i, frame, proj in iter_projections(scene.points, sub, fcfg, progress=progress, desc="region lift"):
        if proj is None or proj.point_idx.numel() == 0:
            continue
        regions = np.asarray(region_fn(i * stride, frame), dtype=np.int64)
        rows, cols = feature_cells(proj, regions.shape)
        r = regions[rows.numpy(), cols.numpy()]
        idx = proj.point_idx.numpy()
        ok = r >= 0
        vis_count = np.bincount(sp[idx], minlength=s)
        seen = vis_count >= cfg.min_visible_points
        spi, rr = sp[idx[ok]], r[ok]
        nr = int(rr.max()) + 1 if rr.size else 1
        key = spi * nr + rr
        uk, cnt = np.unique(key, return_counts=True)
        ks, kr = uk // nr, uk % nr
        # dominant region per superpoint: sort by (superpoint, count) and keep the last of each superpoint
        order = np.lexsort((-kr, cnt, ks))
        last = np.ones(order.size, bool)
        last[:-1] = ks[order][1:] != ks[order][:-1]
        dom_sp, dom_r, dom_c = ks[order][last], kr[order][last], cnt[order][last]
        assigned = np.full(s, -1, np.int64)
        good = dom_c >= cfg.majority * np.maximum(vis_count[dom_sp], 1)
        assigned[dom_sp[good]] = dom_r[good]
        both = seen[ea] & seen[eb]
        covis += both
        together += both & (assigned[ea] >= 0) & (assigned[ea] == assigned[eb])


# -- agglomeration ---------------------------------------------------------------------------------------------
def _agglomerate(n: int, edges: np.ndarray, levels: Sequence[float], node_init, edge_init, merge_nodes,
                 affinity) -> list[np.ndarray]:
    """Greedy best-first merging of ``n`` nodes over ``edges``; returns one int64 [n] group labelling per level
    (levels in decreasing order). ``affinity(node_i, node_j, edge_stat) -> float | None`` (None = never merge)."""
    nodes = {i: node_init(i) for i in range(n)}
    nbr: dict[int, dict[int, object]] = {i: {} for i in range(n)}
    for e, (a, b) in enumerate(edges.tolist()):
        st = edge_init(e)
        nbr[a][b] = st
        nbr[b][a] = st
    parent = np.arange(n)
    version = np.zeros(n, np.int64)
    heap: list = []

    def push(i, j):
        a = affinity(nodes[i], nodes[j], nbr[i][j])
        if a is not None:
            lo, hi = min(i, j), max(i, j)
            heapq.heappush(heap, (-float(a), lo, hi, int(version[lo]), int(version[hi])))

    for a in range(n):
        for b in nbr[a]:
            if a < b:
                push(a, b)
    out = []
    levels = sorted(levels, reverse=True)
    li = 0

    def labels():
        root = parent.copy()
        while True:
            nxt = root[root]
            if (nxt == root).all():
                return root
            root = nxt

    while li < len(levels):
        while heap and (heap[0][3] != version[heap[0][1]] or heap[0][4] != version[heap[0][2]]
                        or parent[heap[0][1]] != heap[0][1] or parent[heap[0][2]] != heap[0][2]):
            heapq.heappop(heap)
        if not heap or -heap[0][0] < levels[li]:
            out.append(labels())
            li += 1
            continue
        _, i, j, _, _ = heapq.heappop(heap)
        if len(nbr[i]) < len(nbr[j]):
            i, j = j, i  # keep the better connected node as the survivor
        nodes[i] = merge_nodes(nodes[i], nodes[j])
        del nodes[j]
        parent[j] = i
        version[i] += 1
        version[j] += 1
        for k, st in nbr.pop(j).items():
            del nbr[k][j]
            if k == i:
                continue
            if k in nbr[i]:
                merged = _add_stat(nbr[i][k], st)
            else:
                merged = st
            nbr[i][k] = merged
            nbr[k][i] = merged
        for k in list(nbr[i]):
            push(i, k)
    return out


def _add_stat(a, b):
    return tuple(x + y for x, y in zip(a, b))


def region_agglomeration(num_sp: int, edges: np.ndarray, together: np.ndarray, covis: np.ndarray,
                         sp_size: np.ndarray, cfg: ProposalConfig, levels: Sequence[float]) -> list[np.ndarray]:
    """Superpoint group labels at each level of the region agglomeration (average linkage on co-occurrence)."""
    tog = together.astype(np.int64)
    cov = covis.astype(np.int64)

    def affinity(_a, _b, st):
        t, c = st
        return None if c < cfg.min_views else t / c

    return _agglomerate(num_sp, edges, levels, lambda i: int(sp_size[i]), lambda e: (int(tog[e]), int(cov[e])),
                        lambda a, b: a + b, affinity)


def feature_agglomeration(num_sp: int, edges: np.ndarray, sp_feat: np.ndarray, sp_weight: np.ndarray,
                          levels: Sequence[float], together: Optional[np.ndarray] = None,
                          covis: Optional[np.ndarray] = None, region_weight: float = 0.0,
                          min_views: int = 2) -> list[np.ndarray]:
    """Superpoint group labels at each level of the feature agglomeration.

    ``sp_feat`` [S, C]: per-superpoint mean of L2-normalised features, ``sp_weight`` [S] their point counts (weight 0
    = no feature: never merged). The affinity of two adjacent groups is the cosine of their weighted mean features,
    plus ``region_weight * (together / covisible - 0.5)`` over the pairs between them when they were seen together
    in at least ``min_views`` frames (the region cue, :func:`region_cooccurrence`; ``together`` / ``covis`` None =
    features alone)."""
    f = np.asarray(sp_feat, dtype=np.float64)
    w = np.asarray(sp_weight, dtype=np.float64)
    e = len(edges)
    tog = np.zeros(e, np.int64) if together is None else np.asarray(together, dtype=np.int64)
    cov = np.zeros(e, np.int64) if covis is None else np.asarray(covis, dtype=np.int64)

    def affinity(a, b, st):
        if a[1] <= 0 or b[1] <= 0:
            return None
        na, nb = np.linalg.norm(a[0]), np.linalg.norm(b[0])
        if na == 0 or nb == 0:
            return None
        cos = float(a[0] @ b[0] / (na * nb))
        t, c = st
        if region_weight and c >= min_views:
            cos += region_weight * (t / c - 0.5)
        return cos

    return _agglomerate(num_sp, edges, levels, lambda i: (f[i] * w[i], w[i]), lambda k: (int(tog[k]), int(cov[k])),
                        lambda a, b: (a[0] + b[0], a[1] + b[1]), affinity)


def superpoint_features(features, mask, superpoints: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(mean L2-normalised feature [S, C] float32, count of featured points [S]) per superpoint."""
    import torch

    sp = torch.as_tensor(np.asarray(superpoints, dtype=np.int64))
    s = int(sp.max()) + 1
    f = torch.nn.functional.normalize(torch.as_tensor(features).float(), dim=1)
    m = torch.ones(f.shape[0], dtype=torch.bool) if mask is None else torch.as_tensor(mask).bool().reshape(-1)
    acc = torch.zeros(s, f.shape[1]).index_add_(0, sp[m], f[m])
    cnt = torch.zeros(s).index_add_(0, sp[m], torch.ones(int(m.sum())))
    return (acc / cnt.clamp(min=1)[:, None]).numpy(), cnt.numpy()


# -- proposals -------------------------------------------------------------------------------------------------
def groups_to_proposals(superpoints: np.ndarray, labellings: Sequence[np.ndarray], sources: Sequence[str],
                        cfg: ProposalConfig) -> Proposals:
    """Pool the groups of several superpoint labellings into deduplicated proposals (size limits of ``cfg``)."""
    sp = np.asarray(superpoints, dtype=np.int64)
    n = sp.size
    order = np.argsort(sp, kind="stable")
    sp_start = np.searchsorted(sp[order], np.arange(int(sp.max()) + 2))
    sp_size = np.diff(sp_start)
    seen: dict[bytes, int] = {}
    kept_sp: list[np.ndarray] = []
    kept_src: list[str] = []
    for lab, src in zip(labellings, sources):
        lab = np.asarray(lab, dtype=np.int64)
        _, inv = np.unique(lab, return_inverse=True)
        sizes = np.bincount(inv, weights=sp_size[: lab.size])
        for g in np.nonzero((sizes >= cfg.min_points) & (sizes <= cfg.max_fraction * n))[0].tolist():
            members = np.nonzero(inv == g)[0]
            key = members.tobytes()
            if key in seen:
                continue
            seen[key] = len(kept_sp)
            kept_sp.append(members)
            kept_src.append(src)
    # near-duplicates by point IoU (superpoint sets -> point counts)
    keep: list[int] = []
    sets = [set(m.tolist()) for m in kept_sp]
    wsz = [int(sp_size[m].sum()) for m in kept_sp]
    for i in range(len(kept_sp)):
        dup = False
        for j in keep:
            if min(wsz[i], wsz[j]) < cfg.dedupe_iou * max(wsz[i], wsz[j]):
                continue
            inter = int(sp_size[list(sets[i] & sets[j])].sum()) if sets[i] & sets[j] else 0
            if inter / (wsz[i] + wsz[j] - inter) >= cfg.dedupe_iou:
                dup = True
                break
        if not dup:
            keep.append(i)
    lists = [np.sort(np.concatenate([order[sp_start[s]:sp_start[s + 1]] for s in kept_sp[i]])) for i in keep]
    return Proposals.from_lists(lists, n, [kept_src[i] for i in keep])


def compute_proposals(scene, superpoints: np.ndarray, cfg: ProposalConfig = ProposalConfig(), *,
                      region_fn: Optional[Callable[[int, object], np.ndarray]] = None,
                      features=None, feature_mask=None, progress: bool = False,
                      timings: Optional[dict] = None) -> Proposals:
    """Proposals of one scene (see the module docstring).

    Args:
        scene: the :class:`~sas_engine.scene.Scene` (points; frames for the region cue).
        superpoints: int [N] superpoint id per point.
        cfg: settings.
        region_fn: ``region_fn(i, frame) -> int [H, W]`` region map of frame ``i``; default: the ``cfg.mask_teacher``
            built from the registry. Not used when ``cfg.region_levels`` is empty or the scene has no frames.
        features, feature_mask: per-point features [N, C] (+ bool [N] valid) for the feature cue; None = no such cue.
        timings: filled with seconds per step when given.
    """
    t0 = time.perf_counter()
    tm = timings if timings is not None else {}
    sp = np.asarray(superpoints, dtype=np.int64)
    if sp.shape != (scene.num_points,):
        raise SASInputError(scene.source or None, f"superpoints have {sp.size} entries for {scene.num_points} points")
    from ..geometry.superpoints import compact_ids

    sp = compact_ids(sp)
    s = int(sp.max()) + 1
    sp_size = np.bincount(sp, minlength=s)
    edges = superpoint_adjacency(scene.points, sp, cfg.adjacency_radius)
    tm["adjacency"] = time.perf_counter() - t0
    labellings, sources = [], []
    together = covis = None
    need_regions = bool(cfg.region_levels or (cfg.region_weight and cfg.feature_levels and features is not None))
    if need_regions and len(scene.frames) > 0:
        t = time.perf_counter()
        if region_fn is None:
            region_fn = teacher_region_fn(cfg.mask_teacher)
        together, covis = region_cooccurrence(scene, sp, edges, region_fn, cfg, progress=progress)
        tm["region_lift"] = time.perf_counter() - t
    if cfg.region_levels and together is not None:
        t = time.perf_counter()
        levels = sorted(cfg.region_levels, reverse=True)
        labellings += region_agglomeration(s, edges, together, covis, sp_size, cfg, levels)
        sources += [f"region@{lv:g}" for lv in levels]
        tm["region_merge"] = time.perf_counter() - t
    if cfg.feature_levels and features is not None:
        t = time.perf_counter()
        spf, spw = superpoint_features(features, feature_mask, sp)
        levels = sorted(cfg.feature_levels, reverse=True)
        labellings += feature_agglomeration(s, edges, spf, spw, levels, together, covis, cfg.region_weight,
                                            cfg.min_views)
        sources += [f"feature@{lv:g}" for lv in levels]
        tm["feature_merge"] = time.perf_counter() - t
    if not labellings:
        raise SASInputError(scene.source or None, "no proposal cue available: the region cue needs frames and "
                                                  "region_levels, the feature cue features and feature_levels")
    t = time.perf_counter()
    props = groups_to_proposals(sp, labellings, sources, cfg)
    tm["pool"] = time.perf_counter() - t
    tm["total"] = time.perf_counter() - t0
    log.info("%s: %d proposals in %.1f s", scene.scene_id, len(props), tm["total"])
    return props


def teacher_region_fn(name: str, device: str = "cpu") -> Callable[[int, object], np.ndarray]:
    """``region_fn`` of a registered mask teacher (e.g. ``seem_compact``)."""
    from ..teachers import build_teacher

    teacher = build_teacher(name, device=device)
    return lambda i, frame: _region_map(teacher, np.asarray(frame.color))


def teacher_identity(name: str) -> dict:
    """What names a mask teacher's regions by content in the proposals' header (its config: weights digest...)."""
    if not name:
        return {}
    from ..teachers import build_teacher

    try:
        return build_teacher(name).config()
    except SASInputError:
        raise
    except Exception as e:  # a teacher that cannot be built (missing weights): say which
        raise SASInputError(None, f"mask teacher {name!r} cannot be built ({type(e).__name__}: {e})") from e
