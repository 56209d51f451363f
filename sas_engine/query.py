"""Open-vocabulary queries on a fused or distilled 3D feature field (SAM-predictor shape).

Set a scene once, then ask many text queries::

    engine = QueryEngine(get_text_encoder())          # any object with .encode(list[str]) -> float32 [B, C]
    engine.set_scene("scene0000_00", features, mask)  # features float16 [N, C], mask bool [N]
    heat = engine.similarity("somewhere to sit")       # float32 [N] cosine, NaN where mask is False
    labels, scores = engine.segment(["chair", "sofa", "lamp"])  # int64 [N] (-1 = no feature), float32 [N]

What the app shows is calibrated instead of raw cosine (``vocab`` = the label set's names)::

    rel = engine.relevance("bed", vocab, RELEVANCE, calibration=cal)   # .score float32 [N]: a probability
    seg = engine.segment_names(["chair", "table", "sofa", "bed"], vocab)  # .labels, BACKGROUND = none of them

:meth:`QueryEngine.relevance` is the probability that a point is what the query names, under a softmax over the
query, the vocabulary names and LERF's canonical negatives ("object", "things", "stuff", "texture"), with a
temperature and per-name biases fitted by class-balanced maximum likelihood on held-out rooms
(:class:`VocabularyCalibration`, :func:`fit_calibration`). Its value means the same in every scene: a bed is not
"found" in a living room because the sofa is the most bed-like thing there. Short queries and names are embedded
through a prompt ensemble (:data:`QUERY_TEMPLATES`); a query answers through the vocabulary names that mean the same
(its *aliases*: "couch" -> sofa, "a place to wash hands" -> the nearest name). The settings
(:data:`RELEVANCE`) were chosen with ``scripts/tune_relevance.py`` on the ``tune`` rooms, never on the demo's.

:meth:`QueryEngine.set_scene` L2-normalises the feature rows once and keeps them in float16; a query is then one
float16 matrix-vector product over the whole scene (PyTorch's CPU float16 GEMV accumulates in float32; its float16
output limits the cosine to about 5e-4 absolute precision). Several names at once go through float32 chunks, because
CPU float16 matrix-matrix products are an order of magnitude slower than the GEMV on x86 without native float16 units.
A relevance query costs one such GEMV plus a few element-wise passes: the softmax's label-set part (every name and
negative but the typed text) is the same for every query of a label set, so its log-sum-exp is kept per scene and the
query's own column is added to it (:meth:`QueryEngine._scored_fast`; equal to the full softmax within
:data:`FAST_RELEVANCE_ATOL`).

Text embeddings are cached per prompt string in a :class:`TextEmbeddingCache` that several engines may share. All
methods are thread-safe: scene state is swapped under a lock and every query works on one consistent snapshot, and
encoder calls are serialised (Hugging Face tokenizers are not safe to call from two threads at once).
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Optional, Sequence

import numpy as np
import torch

from .errors import SASInputError
from .labels import PROMPT_SCENE
from .query_calibration import CALIBRATION_FILE, VocabularyCalibration, fit_calibration, load_calibrations  # noqa: F401
from .query_regions import (ObjectHit, find_regions, group_index, group_mean, normalize_heat,  # noqa: F401
                            top_objects, voxel_components)
from .query_config import (BACKGROUND, CANONICAL_NEGATIVES, RELEVANCE, NamedSegmentation, Relevance,  # noqa: F401
                           RelevanceConfig, column_calibration)
from .query_text import (MAX_QUERY_CHARS, MAX_QUERY_NAMES, NAME_DESCRIPTIONS, QUERY_TEMPLATES,  # noqa: F401
                         TextEmbeddingCache, apply_template, clean_query, split_queries)


def gemv_half(unit: torch.Tensor, vec: torch.Tensor) -> torch.Tensor:
    """``unit @ vec`` for float16 rows ``unit`` [N, D] and a vector [D], float16 [N] (float32 accumulation).

    Through ``torch.nn.functional.linear``, not ``torch.mv``: on the CPU that takes oneDNN's float16 kernel, 13.0 ms
    at 150k x 512 on the 2-core Xeon with AVX512-FP16 where ``torch.mv``'s took 25.6 ms in the same run
    (``benchmarks/bench_query.py``); each result is the exact product of the float16 inputs rounded once."""
    return torch.nn.functional.linear(unit, vec.to(unit.dtype)[None])[:, 0]


@dataclass(frozen=True)
class _SceneState:
    scene_id: str
    unit: torch.Tensor  # float16 [N, C], rows L2-normalised, zero rows where mask is False
    mask: np.ndarray  # bool [N]
    columns: "OrderedDict[bytes, np.ndarray]" = field(default_factory=OrderedDict, compare=False, repr=False)
    """Cosine columns float32 [N] already computed, by the bytes of their float32 text embedding (LRU, at most
    :data:`COLUMN_CACHE` of them): the vocabulary names and negatives of a relevance query are the same for every
    query, so only the typed text's own column is new."""
    fixed: "OrderedDict[tuple, np.ndarray]" = field(default_factory=OrderedDict, compare=False, repr=False)
    """``log sum_j exp(T cos(x, j) + b_j)`` float32 [N] over a relevance query's vocabulary and negative columns, by
    (their embeddings, T, biases) (LRU, at most :data:`FIXED_CACHE`): the same for every query of a label set, so
    a query adds only its own column to it (see :meth:`QueryEngine._scored_fast`)."""
    lock: threading.Lock = field(default_factory=threading.Lock, compare=False, repr=False)


COLUMN_CACHE = 32
"""Cosine columns kept per scene state (32 x 150k points x 4 bytes = 19 MB at most): the 20 names and 4 negatives of
a relevance query stay (every query touches them), typed texts come and go."""

FIXED_CACHE = 4
"""Log-sum-exp columns of fixed candidate sets kept per scene state (4 x 150k x 4 bytes = 2.4 MB at most): one per
label set (and calibration) in use."""

LABEL_SETS = 4
"""Label sets whose prompt-ensemble embeddings an engine keeps (:meth:`QueryEngine._label_set_ensemble`)."""

FAST_RELEVANCE_ATOL = 2e-3
"""Largest difference between the fast and the exact relevance (:class:`QueryEngine` ``fast_relevance``) at the
shipped calibration's temperature (14.9): the fast path's float16 GEMV rounds a cosine to at most 2.5e-4, which
moves a probability by at most ``T / 4`` times that (9e-4). Tested in ``tests/sas_engine/test_query_fast.py``."""


class QueryEngine:
    """Text queries over one scene's per-point features.

    Args:
        text_encoder: object with ``encode(list[str]) -> float32 [B, C]`` L2-normalised (e.g.
            ``sas_engine.teachers.get_text_encoder()``), or a :class:`TextEmbeddingCache` to share between engines.
        chunk_rows: rows per float32 chunk in :meth:`segment` (bounds the temporary memory to chunk_rows x C floats).
        fast_relevance: score :meth:`relevance` and :meth:`segment_names` without superpoint ``groups`` from the
            cached log-sum-exp of the label set's columns plus each typed text's own column (one float16 GEMV for a
            single text): equal to the full softmax within :data:`FAST_RELEVANCE_ATOL`. False = the full softmax over
            every column (the reference).
    """

    def __init__(self, text_encoder, *, chunk_rows: int = 4096, fast_relevance: bool = True):
        self.cache = text_encoder if isinstance(text_encoder, TextEmbeddingCache) else TextEmbeddingCache(text_encoder)
        self.chunk_rows = int(chunk_rows)
        self.fast_relevance = bool(fast_relevance)
        self._label_sets: "OrderedDict[tuple, torch.Tensor]" = OrderedDict()  # see _label_set_ensemble
        self._state: Optional[_SceneState] = None
        self._lock = threading.Lock()

    # -- scene -------------------------------------------------------------------------------------------------
    def set_scene(self, scene_id: str, features, mask=None) -> None:
        """Install a scene's features (expensive part, done once).

        Args:
            scene_id: name reported back in errors.
            features: float16/float32 [N, C] tensor or array (fused 2D or distilled 3D features).
            mask: optional bool [N]: points that have a feature; rows with zero norm count as masked too.
        """
        f = torch.as_tensor(features).detach().to("cpu")
        if f.ndim != 2 or f.shape[0] == 0 or f.shape[1] == 0:
            raise SASInputError(None, f"scene {scene_id}: features must be a non-empty [N, C] array, "
                                      f"got {list(f.shape)}")
        if not f.is_floating_point():
            raise SASInputError(None, f"scene {scene_id}: features must be floating point, got {f.dtype}")
        n, c = f.shape
        if mask is None:
            m = np.ones(n, dtype=bool)
        else:
            m = np.asarray(torch.as_tensor(mask).cpu().numpy()).astype(bool).reshape(-1)
            if m.shape[0] != n:
                raise SASInputError(None, f"scene {scene_id}: mask has {m.shape[0]} entries for {n} feature rows")
        dim = self.cache.dim
        if dim is not None and dim != c:
            raise SASInputError(None, f"scene {scene_id}: features are {c}-d but the text encoder {self.cache.name} "
                                      f"gives {dim}-d embeddings; pick the matching text encoder")
        unit = torch.empty((n, c), dtype=torch.float16)
        valid = np.empty(n, dtype=bool)
        for s in range(0, n, 16384):
            blk = f[s:s + 16384].to(torch.float32)
            nrm = blk.norm(dim=1)
            ok = torch.isfinite(nrm) & (nrm > 1e-12)
            blk = torch.where(ok[:, None], blk / nrm.clamp_min(1e-12)[:, None], torch.zeros((), dtype=blk.dtype))
            unit[s:s + 16384] = blk.to(torch.float16)
            valid[s:s + 16384] = ok.numpy()
        m &= valid
        with self._lock:
            self._state = _SceneState(str(scene_id), unit, m)

    def _snapshot(self) -> _SceneState:
        with self._lock:
            st = self._state
        if st is None:
            raise SASInputError(None, "no scene set: call QueryEngine.set_scene(scene_id, features, mask) first")
        return st

    @property
    def scene_id(self) -> Optional[str]:
        st = self._state
        return None if st is None else st.scene_id

    @property
    def mask(self) -> np.ndarray:
        """bool [N] points with a feature in the current scene."""
        return self._snapshot().mask

    @property
    def num_points(self) -> int:
        return int(self._snapshot().unit.shape[0])

    # -- queries -----------------------------------------------------------------------------------------------
    def text_embeddings(self, names: Sequence[str], template: Optional[str] = None) -> torch.Tensor:
        """float32 [K, C] cached embeddings of ``template.format(name)`` for each name."""
        return self._embed(self._state, names, template)

    def _embed(self, st: Optional[_SceneState], names: Sequence[str], template: Optional[str]) -> torch.Tensor:
        emb = self.cache.embed(apply_template(template, names))
        if st is not None and emb.shape[1] != st.unit.shape[1]:
            raise SASInputError(None, f"scene {st.scene_id}: features are {st.unit.shape[1]}-d but the text encoder "
                                      f"{self.cache.name} gives {emb.shape[1]}-d embeddings")
        return emb

    def similarity(self, text: str, template: Optional[str] = None) -> np.ndarray:
        """Cosine similarity float32 [N] between every point feature and the (cleaned) text; NaN where masked.

        Args:
            text: free text (see :func:`clean_query` for what is accepted).
            template: optional prompt template with one ``{}`` (``None`` = the text as typed).
        """
        st = self._snapshot()
        t = self._embed(st, [clean_query(text)], template)[0]
        sim = gemv_half(st.unit, t).to(torch.float32).numpy()
        sim[~st.mask] = np.nan
        return sim

    def similarities(self, names: Sequence[str], template: Optional[str] = PROMPT_SCENE) -> np.ndarray:
        """Cosine similarity float32 [N, K] with each name (through ``template``); NaN rows where masked."""
        return self._similarities(self._snapshot(), names, template)

    def _similarities(self, st: _SceneState, names: Sequence[str], template: Optional[str]) -> np.ndarray:
        names = [clean_query(n, what="name") for n in names]
        if not names:
            raise SASInputError(None, "no names given")
        if len(names) > MAX_QUERY_NAMES:
            raise SASInputError(None, f"{len(names)} names given; at most {MAX_QUERY_NAMES} at once")
        return self._cosines(st, self._embed(st, names, template))

    def segment(self, names: Sequence[str], template: Optional[str] = PROMPT_SCENE) -> tuple[np.ndarray, np.ndarray]:
        """Label every point with the most similar name.

        Returns:
            labels: int64 [N] index into ``names``; -1 where the point has no feature.
            scores: float32 [N] cosine of the winning name; NaN where the point has no feature.
        """
        st = self._snapshot()
        sims = self._similarities(st, names, template)
        labels = np.full(sims.shape[0], -1, dtype=np.int64)
        scores = np.full(sims.shape[0], np.nan, dtype=np.float32)
        if st.mask.any():
            s = sims[st.mask]
            labels[st.mask] = s.argmax(1)
            scores[st.mask] = s.max(1)
        return labels, scores


    # -- calibrated relevance ----------------------------------------------------------------------------------
    def ensemble_embeddings(self, texts: Sequence[str], cfg: RelevanceConfig = RELEVANCE) -> torch.Tensor:
        """float32 [K, C]: each text's prompt-ensemble embedding, the normalised mean of its templated prompts
        (``cfg.templates`` for texts of at most ``cfg.short_words`` words, ``cfg.long_templates`` otherwise)."""
        return self._ensemble(self._state, texts, cfg)

    def _ensemble(self, st: Optional[_SceneState], texts: Sequence[str], cfg: RelevanceConfig) -> torch.Tensor:
        prompts, starts = [], []
        for t in texts:
            starts.append(len(prompts))
            tpls = cfg.templates if len(t.split()) <= cfg.short_words else cfg.long_templates
            prompts.extend(tpl.format(t) for tpl in tpls)
        emb = self._embed(st, prompts, None)
        # numpy, not torch: these products are tiny, and torch's threaded kernels (index_add_) waited tens of ms
        # for their threads on a loaded machine
        out = np.add.reduceat(emb.numpy(), starts, axis=0)
        out /= np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
        return torch.from_numpy(out)

    def _label_set_ensemble(self, st: Optional[_SceneState], texts: list[str], cfg: RelevanceConfig) -> torch.Tensor:
        """:meth:`_ensemble` of a label set's names and negatives, kept for the last :data:`LABEL_SETS` label sets
        (every query of a label set needs them: 24 names x 4 prompts)."""
        key = (tuple(texts), tuple(cfg.templates), int(cfg.short_words), tuple(cfg.long_templates))
        with self._lock:
            got = self._label_sets.get(key)
            if got is not None:
                self._label_sets.move_to_end(key)
                return got
        got = self._ensemble(st, texts, cfg)
        with self._lock:
            self._label_sets[key] = got
            while len(self._label_sets) > LABEL_SETS:
                self._label_sets.popitem(last=False)
        return got

    def _plan(self, st: Optional[_SceneState], names: Sequence[str], vocabulary: Sequence[str],
              cfg: RelevanceConfig) -> "_Plan":
        """Embeddings of the typed names, their vocabulary aliases and the negatives (see :meth:`relevance`)."""
        names = [clean_query(n, what="name") for n in names]
        if not names:
            raise SASInputError(None, "no names given")
        if len(names) > MAX_QUERY_NAMES:
            raise SASInputError(None, f"{len(names)} names given; at most {MAX_QUERY_NAMES} at once")
        if isinstance(vocabulary, str):
            raise SASInputError(None, "the vocabulary must be a list of names, not one string")
        vocab = list(dict.fromkeys(clean_query(v, what="vocabulary name") for v in vocabulary))
        canon = [c for c in dict.fromkeys(cfg.canonical) if c not in vocab]
        e_q = self._ensemble(st, names, cfg)
        e_o = self._label_set_ensemble(st, vocab + canon, cfg) if vocab or canon else torch.zeros((0, e_q.shape[1]))
        text_cos = e_q.numpy() @ e_o.numpy().T  # [K, V + canonical]
        near_cos = text_cos[:, : len(vocab)]  # what the nearest alias is chosen by
        described = [i for i, v in enumerate(vocab) if v in NAME_DESCRIPTIONS] if cfg.describe else []
        if described:
            e_d = self._label_set_ensemble(st, [NAME_DESCRIPTIONS[vocab[i]] for i in described], cfg)
            near_cos = near_cos.copy()
            near_cos[:, described] = np.maximum(near_cos[:, described], e_q.numpy() @ e_d.numpy().T)
        aliases: list[list[int]] = []
        covered = np.zeros(len(vocab) + len(canon), dtype=bool)
        for k in range(len(names)):
            row = text_cos[k]
            al = set(np.flatnonzero(row >= cfg.alias_cosine).tolist())
            if vocab:
                j = int(np.argmax(near_cos[k]))
                if near_cos[k, j] >= cfg.nearest_alias_cosine:
                    al.add(j)
            al = sorted(al)
            covered[al] = True
            aliases.append([a for a in al if a < len(vocab)])  # canonical phrases never answer for a name
        neg = np.flatnonzero(~covered)
        if neg.size == 0:
            raise SASInputError(None, "every vocabulary name and negative phrase means the same as the query: "
                                      "nothing is left to measure the relevance against")
        others = vocab + canon
        cols, owner, col_names, src = [], [], [], []
        for k in range(len(names)):
            cols.append(e_q[k])
            owner.append(k)
            col_names.append(None)  # the typed text itself: not a vocabulary class
            src.append(-1)
            for a in aliases[k]:
                cols.append(e_o[a])
                owner.append(k)
                col_names.append(vocab[a])
                src.append(a)
        for j in neg:
            cols.append(e_o[int(j)])
            owner.append(-1)
            col_names.append(vocab[int(j)] if j < len(vocab) else None)
            src.append(int(j))
        return _Plan(names, [[vocab[a] for a in al] for al in aliases], [others[int(j)] for j in neg],
                     torch.stack(cols), np.asarray(owner, dtype=np.int64), col_names, np.asarray(src, dtype=np.int64))

    def _cosines(self, st: _SceneState, emb: torch.Tensor) -> np.ndarray:
        """float32 [N, K] cosine of every point with each (normalised) row of ``emb``; NaN rows where masked.

        Columns computed before for this scene state (same embedding bytes) are reused, so a relevance query
        computes the typed text's column and not again the vocabulary's and the negatives'."""
        emb32 = emb.to(torch.float32).contiguous()
        keys = [row.numpy().tobytes() for row in emb32]
        n = st.unit.shape[0]
        res = np.empty((n, len(keys)), dtype=np.float32)
        with st.lock:
            hit = {i: st.columns[k] for i, k in enumerate(keys) if k in st.columns}
            for k in keys:
                if k in st.columns:
                    st.columns.move_to_end(k)
        todo = [i for i in range(len(keys)) if i not in hit]
        for i, col in hit.items():
            res[:, i] = col
        if todo:
            emb_t = emb32[todo].T.contiguous()
            out = torch.empty((n, len(todo)), dtype=torch.float32)
            buf = torch.empty((min(self.chunk_rows, n), st.unit.shape[1]), dtype=torch.float32)
            for s in range(0, n, self.chunk_rows):
                e = min(n, s + self.chunk_rows)
                b = buf[: e - s]
                b.copy_(st.unit[s:e])
                torch.mm(b, emb_t, out=out[s:e])
            new = out.numpy()
            new[~st.mask] = np.nan
            res[:, todo] = new
            with st.lock:
                for j, i in enumerate(todo):
                    st.columns[keys[i]] = new[:, j].copy()
                while len(st.columns) > COLUMN_CACHE:
                    st.columns.popitem(last=False)
        return res

    def _gemv_column(self, st: _SceneState, emb: torch.Tensor) -> np.ndarray:
        """float32 [N] cosine with one (normalised) embedding, NaN where masked: one float16 GEMV over the scene
        (float32 accumulation; the float16 output rounds the cosine to at most 2.5e-4). Always computed, never
        cached, so a query's result does not depend on what was asked before (a typed text's column would also push
        the label set's columns out of the cache)."""
        col = gemv_half(st.unit, emb).numpy().astype(np.float32)
        col[~st.mask] = np.nan
        return col

    def _fixed_lse(self, st: _SceneState, emb: torch.Tensor, tau: float, bias: np.ndarray) -> np.ndarray:
        """float32 [N] ``log sum_j exp(tau cos(x, j) + bias_j)`` over the rows of ``emb`` (NaN where masked), cached
        per scene state."""
        emb32 = emb.to(torch.float32).contiguous()
        key = (emb32.numpy().tobytes(), float(tau), np.asarray(bias, np.float32).tobytes())
        with st.lock:
            lse = st.fixed.get(key)
            if lse is not None:
                st.fixed.move_to_end(key)
                return lse
        logits = tau * self._cosines(st, emb32) + bias[None, :]
        top = logits.max(1)
        logits -= top[:, None]
        lse = (np.log(np.exp(logits).sum(1)) + top).astype(np.float32)
        lse.setflags(write=False)
        with st.lock:
            st.fixed[key] = lse
            while len(st.fixed) > FIXED_CACHE:
                st.fixed.popitem(last=False)
        return lse

    def _scored_fast(self, st: _SceneState, plan: "_Plan", cfg: RelevanceConfig,
                     calibration: Optional["VocabularyCalibration"]) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`_scored` without groups, from the cached log-sum-exp of the label set's columns.

        Every column of a plan is a typed text or one of the label set's names and negatives (``plan.src``); the
        latter are the same for every query of a label set (the names answering for a typed text are still in the
        softmax's denominator). So with ``F`` = the distinct such columns and ``L_F = log sum_{j in F} exp(l_j)``
        (cached, :meth:`_fixed_lse`), typed texts ``q_i`` and their aliases ``A_i``,

            ``p_i = (exp(l_qi) + sum_{a in A_i} exp(l_a)) / (sum_i exp(l_qi) + exp(L_F) + sum_j (c_j - 1) exp(l_j))``

        where ``c_j`` counts the plan's copies of column ``j`` (an alias shared by two typed names appears twice in the
        full softmax). All exponents are taken relative to ``max(l_q, L_F) >= every l_j``, so nothing overflows.
        """
        tau, bias = column_calibration(plan.col_names, cfg, calibration)
        k = len(plan.names)
        own_idx = np.array([np.flatnonzero(plan.owner == i)[0] for i in range(k)])
        _, first = np.unique(plan.src[plan.src >= 0], return_index=True)
        fixed_rows = np.flatnonzero(plan.src >= 0)[first]
        if k == 1:
            own = self._gemv_column(st, plan.emb[own_idx[0]])[:, None]
        else:
            own = self._cosines(st, plan.emb[own_idx])
        lse = self._fixed_lse(st, plan.emb[fixed_rows], tau, bias[fixed_rows])
        extra = [r for r in range(len(plan.src)) if plan.src[r] >= 0 and plan.owner[r] >= 0]  # alias columns
        if k == 1 and not extra:  # one text, no alias: p = 1 / (1 + exp(L_F - l_q)), computed in place
            p = own[:, 0] * np.float32(tau)
            p += bias[own_idx[0]]
            np.subtract(lse, p, out=p)
            with np.errstate(over="ignore"):  # exp -> inf: p = 0, the limit
                np.exp(p, out=p)
            p += 1.0
            np.reciprocal(p, out=p)  # NaN where masked (the column and L_F are NaN there)
            return p[:, None], own
        lq = tau * own + bias[own_idx][None, :]  # [N, K]
        top = np.maximum(lq.max(1), lse) if k > 1 else np.maximum(lq[:, 0], lse)
        eq = np.exp(lq - top[:, None])
        den = eq.sum(1) if k > 1 else eq[:, 0].copy()
        den += np.exp(lse - top)
        num = eq
        if extra:
            ea = np.exp(tau * self._cosines(st, plan.emb[extra]) + bias[extra][None, :] - top[:, None])
            for c, r in enumerate(extra):
                num[:, plan.owner[r]] += ea[:, c]
            seen: set[int] = set()
            for c, r in enumerate(extra):  # a second copy of a column (two typed names share an alias)
                if plan.src[r] in seen:
                    den += ea[:, c]
                seen.add(int(plan.src[r]))
        prob = (num / den[:, None]).astype(np.float32, copy=False)
        prob[~st.mask] = np.nan
        return prob, own

    def _scored(self, st: _SceneState, plan: "_Plan", cfg: RelevanceConfig, groups: Optional[np.ndarray],
                calibration: Optional["VocabularyCalibration"]) -> tuple[np.ndarray, np.ndarray]:
        """(probability of each typed name's group - its own text and its aliases - under the softmax over every
        column [N, K], cosine with each typed name's own embedding [N, K]); cosines group-averaged first when
        ``groups`` is given. NaN rows where the point has no feature."""
        if groups is None and self.fast_relevance:
            return self._scored_fast(st, plan, cfg, calibration)
        cos = self._cosines(st, plan.emb)
        if groups is not None:
            cos = group_mean(cos, groups)
        tau, bias = column_calibration(plan.col_names, cfg, calibration)
        logits = tau * np.nan_to_num(cos, nan=0.0) + bias[None, :]
        logits -= logits.max(1, keepdims=True)
        ex = np.exp(logits)
        ex /= ex.sum(1, keepdims=True)
        k = len(plan.names)
        prob = np.empty((cos.shape[0], k), dtype=np.float32)
        own = np.empty((cos.shape[0], k), dtype=np.float32)
        for i in range(k):
            cols = np.flatnonzero(plan.owner == i)
            own[:, i] = cos[:, cols[0]]
            prob[:, i] = ex[:, cols].sum(1)
        prob[~st.mask] = np.nan
        return prob, own

    def relevance(self, text: str, vocabulary: Sequence[str] = (), cfg: RelevanceConfig = RELEVANCE,
                  groups: Optional[np.ndarray] = None,
                  calibration: Optional["VocabularyCalibration"] = None) -> "Relevance":
        """Calibrated relevance of every point to a free-text query: the probability that the point is what the query
        names, comparable across scenes and queries.

        The candidates are the query ``q`` (its prompt-ensemble embedding, :meth:`ensemble_embeddings`), its
        *aliases* ``A(q)`` - the vocabulary names meaning the same (text cosine >= ``cfg.alias_cosine``) plus the
        nearest one when its cosine reaches ``cfg.nearest_alias_cosine`` - and the *negatives* ``N(q)``: every
        other vocabulary name and LERF's canonical phrases (``cfg.canonical``). With ``l_k(x) = T cos(x, k) + b_k``,

            ``r(x) = sum_{k in {q} + A(q)} exp(l_k(x)) / sum_{k in {q} + A(q) + N(q)} exp(l_k(x))``

        a softmax whose temperature ``T`` and per-name biases ``b`` come from ``calibration`` (fitted by
        class-balanced maximum likelihood on held-out rooms, :func:`fit_calibration`) when it covers the
        vocabulary; otherwise ``T = cfg.temperature`` and ``b = 0``. The typed text and the canonical phrases get
        the mean bias. An object the scene does not hold scores low everywhere (its points are better described by
        another name), whatever the scene's own range of cosines.

        Args:
            text: the query (see :func:`clean_query`).
            vocabulary: the label set's names (the scene's classes, e.g. ScanNet-20's prompt names).
            cfg: templates, alias cosines, temperature.
            groups: optional int64 [N] superpoint ids: cosines are averaged per group first.
            calibration: the layer's fitted temperature and biases (ignored when it does not cover the vocabulary).
        """
        st = self._snapshot()
        plan = self._plan(st, [clean_query(text)], vocabulary, cfg)
        prob, own = self._scored(st, plan, cfg, _check_groups(groups, st), calibration)
        return Relevance(plan.names[0], prob[:, 0].copy(), own[:, 0].copy(), plan.aliases[0], plan.negatives)

    def segment_names(self, names: Sequence[str], vocabulary: Sequence[str] = (), cfg: RelevanceConfig = RELEVANCE,
                      groups: Optional[np.ndarray] = None, threshold: Optional[float] = None,
                      calibration: Optional["VocabularyCalibration"] = None) -> "NamedSegmentation":
        """Label every point with the most probable of the typed names, or :data:`BACKGROUND` when none is likely.

        Each typed name is a group (its text and its aliases, as in :meth:`relevance`); the vocabulary names that
        no typed name covers and the canonical phrases compete with them in one softmax. A point whose best group
        has probability below ``threshold`` (default ``cfg.segment_threshold``) is background: typing "chair,
        table, sofa, bed" leaves walls and floor unlabelled instead of calling them "bed".
        """
        st = self._snapshot()
        thr = cfg.segment_threshold if threshold is None else float(threshold)
        if not 0.0 <= thr <= 1.0:
            raise SASInputError(None, f"threshold must be in [0, 1], got {thr}")
        plan = self._plan(st, names, vocabulary, cfg)
        prob, _ = self._scored(st, plan, cfg, _check_groups(groups, st), calibration)
        labels = np.full(prob.shape[0], -1, dtype=np.int64)
        scores = np.full(prob.shape[0], np.nan, dtype=np.float32)
        m = st.mask
        if m.any():
            p = prob[m]
            best = p.argmax(1)
            top = p.max(1)
            labels[m] = np.where(top >= thr, best, BACKGROUND)
            scores[m] = top
        return NamedSegmentation(plan.names, labels, scores, plan.aliases, plan.negatives)


@dataclass(frozen=True)
class _Plan:
    names: list[str]
    aliases: list[list[str]]
    negatives: list[str]
    emb: torch.Tensor  # float32 [M, C]: per typed name its own embedding then its aliases', then the negatives
    owner: np.ndarray  # int64 [M]: typed-name index of each row, -1 for negatives
    col_names: list  # [M] the vocabulary name of each row, None for typed texts and canonical phrases
    src: np.ndarray  # int64 [M]: index of each row in the vocabulary + canonical phrases, -1 for typed texts


def _check_groups(groups: Optional[np.ndarray], st: _SceneState) -> Optional[np.ndarray]:
    if groups is None:
        return None
    g = np.asarray(groups).reshape(-1)
    if g.shape[0] != st.unit.shape[0]:
        raise SASInputError(None, f"scene {st.scene_id}: groups has {g.shape[0]} entries for {st.unit.shape[0]} points")
    return g.astype(np.int64)
