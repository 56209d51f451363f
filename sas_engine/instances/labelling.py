"""Open-vocabulary labelling of instance proposals, and the "where is it?" query API.

Each proposal's feature is the mean of the L2-normalised per-point features over its points that have one (fused
features are missing where no camera saw the point), L2-normalised again (mask pooling). Against the text embeddings
of the label set's prompts it gets ``softmax(scale * cos)``; its label is the most probable class and its score that
probability.

:func:`find_instances` answers a text query with ranked instances. Its JSON-able result (also what the app's
``GET /api/instances?scene=...&q=...`` returns) is::

    {
      "scene": "synth1001_00",            # scene id
      "query": "chair",                   # the text asked
      "features": "pred3d.student",       # the per-point features the proposals were labelled with
      "label_set": "scannet20",           # the names the query competes with
      "resolved": "chair",                # the label-set name the query stands for (cosine >= alias_cosine), or null
      "count": 2,                         # number of instances returned
      "answer": "2 instances of 'chair'", # a one-line answer ("how many chairs")
      "frame": "scene",                   # coordinates: the scene's frame, metres, z up (Scene.points)
      "instances": [                      # best first
        {"rank": 1,                       # 1-based
         "id": 17,                        # proposal index in the scene's proposal set
         "score": 0.83,                   # probability that the instance is what the query names
         "label": "chair",                # the instance's most probable label-set name
         "label_score": 0.78,             # its probability
         "num_points": 912,
         "centroid": [x, y, z],           # mean of its points
         "bbox_min": [x, y, z], "bbox_max": [x, y, z],   # axis-aligned box
         "extent": [dx, dy, dz],          # bbox_max - bbox_min
         "point_indices": [...]}          # indices into the scene's points (omitted with include_points=False)
      ]
    }

The query competes, under ``softmax(scale * cos)``, with every label-set name except those it stands for (names
whose text embedding has a cosine >= ``alias_cosine`` with the query's: "couch" is "sofa"); an instance is returned
when the query is its most probable candidate and its probability is >= ``min_score``. Overlapping answers (more
than ``overlap`` of the smaller one inside the other, proposals of several levels) are kept once, the better scored.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np

from ..errors import SASInputError
from ..labels import PROMPT_SCENE, SCANNET20, SCANNET20_NYU40, get_label_set
from .metrics import INSTANCE_CLASS_IDS, InstancePrediction
from .proposals import Proposals

log = logging.getLogger(__name__)

KIND = "instance_labels"
"""Artefact kind of ``instances.<features>`` (labelled proposals)."""


@dataclass(frozen=True)
class LabelConfig:
    """How proposals are labelled (defaults chosen on the synthetic ``tune`` rooms, never on ``val``)."""

    template: str = PROMPT_SCENE
    """Prompt template of the label set's names."""
    scale: float = 20.0
    """Softmax scale on feature-text cosines (1 / temperature)."""
    top_k: int = 2
    """Benchmark predictions per proposal: its k most probable instance classes, each with its probability (on the
    tune rooms 2 raised the mean AP50 of the four sources by 2.4 points over 1; the softmax scale, 10 / 20 / 50,
    moved it by less than 1)."""
    min_coverage: float = 0.2
    """Proposals with features on fewer than this share of their points are not labelled (score 0)."""
    instance_only: bool = False
    """Pick a proposal's benchmark class among the 18 instance classes only (True), or among all names, so that a
    proposal labelled wall or floor is no instance at all (False)."""


@dataclass(frozen=True)
class QueryConfig:
    """How :func:`find_instances` selects instances for a text."""

    scale: float = 20.0
    """Softmax scale on feature-text cosines."""
    min_score: float = 0.3
    """Smallest probability that an instance is what the query names."""
    alias_cosine: float = 0.88
    """Label-set names with at least this text cosine to the query stand for it (they do not compete with it). With
    MiniLM and "a {} in a scene": "chairs" / "chair" 0.891, "couch" / "sofa" 0.890, while the closest two ScanNet-20
    names, "curtain" / "shower curtain", are 0.879 apart and stay distinct."""
    overlap: float = 0.5
    """Two answers overlapping by more than this share of the smaller one are one instance (the better kept)."""
    max_instances: int = 50
    """At most this many instances are returned."""


# -- features --------------------------------------------------------------------------------------------------
def load_point_features(store, scene, name: str):
    """(features float32 [N, C] torch, mask bool [N] | None) of a store artefact (``fused.<x>``, ``pred3d.<x>``), read
    like evaluation reads it: any config, format version and the scene's geometry digest checked. Test-time
    augmentation stacks [A, N, C] are averaged after L2 normalisation. Raises :class:`SASInputError` naming the file
    when it is missing or does not fit the scene."""
    import torch

    from ..artefacts import read

    obj = read(store, scene.scene_id, name, geometry=scene.geometry_digest, required=True,
               hint="compute it first (`sas fuse` for fused.*, `sas infer` for pred3d.*)")
    feats = obj.get("features")
    if feats is None:  # a kind without per-point features
        raise SASInputError(store.path(scene.scene_id, name), "has no 'features' tensor [N, C] (or [A, N, C])")
    feats = feats.float()
    if feats.ndim == 3:
        feats = torch.nn.functional.normalize(feats, dim=-1).mean(0)
    mask = obj.get("mask")
    return feats, None if mask is None else mask.bool()


def pool_features(props: Proposals, features, mask=None) -> tuple[np.ndarray, np.ndarray]:
    """(mask-pooled L2-normalised feature float32 [P, C], share of each proposal's points with a feature [P])."""
    import torch

    f = torch.nn.functional.normalize(torch.as_tensor(features).float(), dim=1)
    n = f.shape[0]
    if props.num_points != n:
        raise SASInputError(None, f"proposals are over {props.num_points} points but the features have {n} rows")
    valid = torch.ones(n, dtype=torch.bool) if mask is None else torch.as_tensor(mask).bool().reshape(-1)
    owner, idx = props.owner()
    owner_t, idx_t = torch.from_numpy(owner), torch.from_numpy(idx)
    keep = valid[idx_t]
    acc = torch.zeros(len(props), f.shape[1]).index_add_(0, owner_t[keep], f[idx_t[keep]])
    cnt = torch.zeros(len(props)).index_add_(0, owner_t[keep], torch.ones(int(keep.sum())))
    pooled = torch.nn.functional.normalize(acc, dim=1)
    cov = cnt / torch.as_tensor(props.sizes(), dtype=torch.float32).clamp(min=1)
    return pooled.numpy(), cov.numpy()


def text_embeddings(names: Sequence[str], template: str = PROMPT_SCENE, text_encoder=None):
    """L2-normalised float32 [K, C] embeddings of ``template.format(name)``. ``text_encoder``: a spec for
    :func:`sas_engine.teachers.get_text_encoder` (``None`` = MiniLM; cached on disk like the pipeline's vocabulary) or
    an object with ``encode(list[str])`` (the app's shared encoder)."""
    return encode_texts([template.format(n) for n in names], text_encoder)


def encode_texts(texts: Sequence[str], text_encoder=None):
    """L2-normalised float32 [B, C] embeddings of ``texts`` (``text_encoder`` as in :func:`text_embeddings`)."""
    import torch

    if hasattr(text_encoder, "encode"):
        return torch.nn.functional.normalize(torch.as_tensor(text_encoder.encode(list(texts))).float(), dim=1)
    from ..teachers import get_text_encoder

    return get_text_encoder(text_encoder).encode_persistent(list(texts))


def encoder_name(text_encoder=None) -> str:
    """What names a text encoder in artefact headers (its spec, or the object's ``name``)."""
    if hasattr(text_encoder, "encode"):
        return str(getattr(text_encoder, "name", type(text_encoder).__name__))
    return text_encoder or "minilm"


def class_probabilities(pooled: np.ndarray, text, scale: float) -> np.ndarray:
    """float32 [P, K] ``softmax(scale * pooled . text^T)``."""
    import torch

    t = torch.nn.functional.normalize(torch.as_tensor(text).float(), dim=1)
    p = torch.as_tensor(pooled).float()
    if p.shape[1] != t.shape[1]:
        raise SASInputError(None, f"proposal features are {p.shape[1]}-d but the text embeddings {t.shape[1]}-d: "
                                  "use the text encoder of the features' space")
    return torch.softmax(scale * p @ t.T, dim=1).numpy()


def benchmark_ids(names: Sequence[str]) -> np.ndarray:
    """int64 [K] the ScanNet benchmark (NYU40) id of each label-set name, 0 for names it does not evaluate."""
    lut = dict(zip(SCANNET20, SCANNET20_NYU40))
    return np.array([int(lut.get(n, 0)) for n in names], dtype=np.int64)


def label_proposals(props: Proposals, features, mask, text, names: Sequence[str],
                    cfg: LabelConfig = LabelConfig()) -> dict:
    """Label every proposal: ``{"pooled" [P, C], "coverage" [P], "probs" [P, K], "labels" [P], "scores" [P]}``
    (numpy; a proposal below ``cfg.min_coverage`` gets label -1 and score 0)."""
    pooled, cov = pool_features(props, features, mask)
    probs = class_probabilities(pooled, text, cfg.scale)
    labels = probs.argmax(1).astype(np.int64)
    scores = probs.max(1).astype(np.float32)
    low = cov < cfg.min_coverage
    labels[low] = -1
    scores[low] = 0.0
    return {"pooled": pooled, "coverage": cov, "probs": probs, "labels": labels, "scores": scores,
            "names": list(names)}


def benchmark_predictions(props: Proposals, labelled: dict,
                          cfg: LabelConfig = LabelConfig()) -> list[InstancePrediction]:
    """The proposals as benchmark predictions: per proposal its ``top_k`` classes (NYU40 ids), each scored by its
    probability; with ``instance_only`` False a proposal whose best name is not an instance class (wall, floor)
    gives none."""
    ids = benchmark_ids(labelled["names"])
    is_inst = np.isin(ids, np.asarray(INSTANCE_CLASS_IDS))
    probs = labelled["probs"]
    out = []
    for i in range(len(props)):
        if labelled["labels"][i] < 0:
            continue
        row = probs[i]
        if not cfg.instance_only and not is_inst[int(row.argmax())]:
            continue
        cand = np.argsort(-np.where(is_inst, row, -1.0), kind="stable")[: cfg.top_k]
        m = props.points(i)
        for k in cand:
            if is_inst[k]:
                out.append(InstancePrediction(m, int(ids[k]), float(row[k])))
    return out


# -- stored labelled instances ---------------------------------------------------------------------------------
def instances_name(features: str) -> str:
    """Artefact name of proposals labelled with ``features``: ``instances.<features>``."""
    return f"instances.{features}"


def ensure_labelled(store, scene, features: str, props_payload: dict, cfg: LabelConfig = LabelConfig(),
                    label_set: Optional[str] = None, text_encoder=None, recompute: bool = False) -> dict:
    """``instances.<features>``: the scene's proposals (``props_payload`` with its header, as
    :func:`sas_engine.instances.pipeline.ensure_proposals` returns it) labelled with the store artefact
    ``features``. Cached, stamped with the scene's geometry, the proposals' and the features' header hashes.
    Payload: ``labels`` int64 [P] (label-set index, -1 = unlabelled), ``scores`` float32 [P], ``probs`` float32 [P, K],
    ``pooled`` float16 [P, C], ``coverage`` float32 [P], ``names`` list[str]."""
    import dataclasses

    import torch

    from ..eval.evaluate import default_eval_label_set

    ls = get_label_set(label_set or default_eval_label_set(scene.label_set))
    fh = store.header(scene.scene_id, features) or {}
    props = Proposals.from_payload(props_payload, store.path(scene.scene_id, "instances.proposals"))
    conf = {"label": dataclasses.asdict(cfg), "label_set": ls.name, "text_encoder": encoder_name(text_encoder),
            "features": features}
    inputs = {"proposals": (props_payload.get("__header__") or {}).get("hash"), "features": fh.get("hash"),
              "scene": scene.scene_id}

    def compute():
        feats, mask = load_point_features(store, scene, features)
        text = text_embeddings(ls.prompt_names, cfg.template, text_encoder)
        lab = label_proposals(props, feats, mask, text, list(ls.names), cfg)
        return {"labels": torch.from_numpy(lab["labels"]), "scores": torch.from_numpy(lab["scores"]),
                "probs": torch.from_numpy(lab["probs"].astype(np.float32)),
                "pooled": torch.from_numpy(lab["pooled"]).half(), "coverage": torch.from_numpy(lab["coverage"]),
                "names": list(ls.names)}

    return store.get_or_compute(scene.scene_id, instances_name(features), compute, kind=KIND, config=conf,
                                inputs=inputs, geometry=scene.geometry_digest, recompute=recompute)


def labelled_as_numpy(obj: dict) -> dict:
    """A stored ``instances.<features>`` payload with numpy arrays (what :func:`benchmark_predictions` takes)."""
    return {"labels": np.asarray(obj["labels"]).astype(np.int64), "scores": np.asarray(obj["scores"], np.float32),
            "probs": np.asarray(obj["probs"], np.float32), "pooled": np.asarray(obj["pooled"].float()),
            "coverage": np.asarray(obj["coverage"], np.float32), "names": list(obj["names"])}


# -- the query API ---------------------------------------------------------------------------------------------
def instance_record(points: np.ndarray, idx: np.ndarray, include_points: bool = True) -> dict:
    """Geometry of one instance: ``num_points``, ``centroid``, ``bbox_min``, ``bbox_max``, ``extent`` (lists of 3
    floats, metres) and, with ``include_points``, ``point_indices``."""
    p = np.asarray(points, dtype=np.float64)[idx]
    lo, hi = p.min(0), p.max(0)
    rec = {"num_points": int(idx.size), "centroid": [round(float(x), 4) for x in p.mean(0)],
           "bbox_min": [round(float(x), 4) for x in lo], "bbox_max": [round(float(x), 4) for x in hi],
           "extent": [round(float(x), 4) for x in hi - lo]}
    if include_points:
        rec["point_indices"] = [int(i) for i in idx]
    return rec


def rank_query(props: Proposals, pooled: np.ndarray, coverage: np.ndarray, query_emb, names: Sequence[str],
               name_emb, cfg: QueryConfig = QueryConfig(), min_coverage: float = 0.2) -> tuple[list, Optional[str]]:
    """(``[(proposal id, score, best name, best name's probability)]`` best first after overlap suppression, the
    label-set name the query stands for or None)."""
    import torch

    q = torch.nn.functional.normalize(torch.as_tensor(query_emb).float().reshape(1, -1), dim=1)
    t = torch.nn.functional.normalize(torch.as_tensor(name_emb).float(), dim=1)
    alias = (t @ q.T).reshape(-1).numpy()
    keep = alias < cfg.alias_cosine
    resolved = names[int(alias.argmax())] if (~keep).any() else None
    cand = torch.cat([q, t[torch.from_numpy(keep)]], 0)
    pooled_t = torch.as_tensor(pooled).float()
    if pooled_t.shape[1] != cand.shape[1]:
        raise SASInputError(None, f"instance features are {pooled_t.shape[1]}-d but the text embeddings "
                                  f"{cand.shape[1]}-d: use the text encoder of the features' space")
    prob = torch.softmax(cfg.scale * pooled_t @ cand.T, dim=1).numpy() if len(props) else np.zeros((0, 1))
    names_prob = torch.softmax(cfg.scale * pooled_t @ t.T, dim=1).numpy() if len(props) else np.zeros((0, 1))
    ok = (prob.argmax(1) == 0) & (prob[:, 0] >= cfg.min_score) & (np.asarray(coverage) >= min_coverage)
    order = [int(i) for i in np.argsort(-prob[:, 0], kind="stable") if ok[i]]
    kept: list[int] = []
    sets: list[np.ndarray] = []
    for i in order:
        pts = props.points(i)
        dup = False
        for j, s in zip(kept, sets):
            inter = np.intersect1d(pts, s, assume_unique=True).size
            if inter > cfg.overlap * min(pts.size, s.size):
                dup = True
                break
        if not dup:
            kept.append(i)
            sets.append(pts)
        if len(kept) >= cfg.max_instances:
            break
    out = [(i, float(prob[i, 0]), names[int(names_prob[i].argmax())], float(names_prob[i].max())) for i in kept]
    return out, resolved


def answer_line(query: str, count: int) -> str:
    """The one-line answer: "No 'sofa' found", "1 instance of 'chair'", "3 instances of 'chair'"."""
    if count == 0:
        return f"No '{query}' found here"
    return f"{count} instance{'s' if count != 1 else ''} of '{query}'"


def find_instances(scene, text: str, *, store, features: str = "pred3d.student", cfg: QueryConfig = QueryConfig(),
                   text_encoder=None, include_points: bool = True, compute: bool = True,
                   proposal_config=None, masks_file=None, feature_cues: Optional[Sequence[str]] = None) -> dict:
    """Instances of ``scene`` that ``text`` names, best first, as the JSON-able dict of the module docstring.

    Args:
        scene: a loaded :class:`~sas_engine.scene.Scene`.
        text: the query ("chair", "somewhere to sit").
        store: the :class:`~sas_engine.store.ArtefactStore` holding the scene's artefacts.
        features: per-point features to label with (``pred3d.student``, ``fused.sas``...; must exist in the store).
        cfg: selection settings.
        text_encoder: text encoder of the features' space: a spec (default MiniLM) or an object with ``encode``.
        include_points: put ``point_indices`` in every instance.
        compute: compute the proposals when the store has no current ones (else :class:`SASInputError`); labelling
            a stored proposal set is cheap and always done when missing.
        proposal_config: :class:`~sas_engine.instances.proposals.ProposalConfig` (default settings).
        masks_file: take the proposals from a file of masks made elsewhere (see :mod:`.adapters`).
        feature_cues: per-point feature artefacts for the proposals' feature cue, in order of preference (default
            :data:`sas_engine.instances.pipeline.FEATURE_CUES`).
    """
    from ..query import clean_query
    from .pipeline import FEATURE_CUES, label_config_for, scene_instances

    q = clean_query(text)
    lcfg = label_config_for(features)
    props, lab = scene_instances(store, scene, features, proposal_config=proposal_config, label_config=lcfg,
                                 masks_file=masks_file, compute=compute, text_encoder=text_encoder,
                                 feature_cues=tuple(feature_cues or FEATURE_CUES))
    names = list(lab["names"])
    ls = get_label_set(_label_set_of(names, scene))
    name_emb = text_embeddings([_prompt_word(ls, n) for n in names], lcfg.template, text_encoder)
    q_emb = encode_texts([lcfg.template.format(q)], text_encoder)
    ranked, resolved = rank_query(props, lab["pooled"], lab["coverage"], q_emb[0], names, name_emb, cfg,
                                  lcfg.min_coverage)
    inst = []
    for r, (i, score, best, best_p) in enumerate(ranked, 1):
        rec = {"rank": r, "id": int(i), "score": round(score, 4), "label": best, "label_score": round(best_p, 4)}
        rec.update(instance_record(scene.points, props.points(i), include_points))
        inst.append(rec)
    return {"scene": scene.scene_id, "query": q, "features": features, "label_set": ls.name, "resolved": resolved,
            "count": len(inst), "answer": answer_line(q, len(inst)), "frame": "scene", "instances": inst}


def _prompt_word(ls, name: str) -> str:
    names = list(ls.names)
    return ls.prompt_names[names.index(name)] if name in names else name


def _label_set_of(names: Sequence[str], scene) -> str:
    from ..eval.evaluate import default_eval_label_set
    from ..labels import LABEL_SETS

    for k, v in LABEL_SETS.items():
        if tuple(v.names) == tuple(names):
            return k
    return default_eval_label_set(scene.label_set)
