"""The fast relevance path (cached log-sum-exp of the label set's columns + the query's own GEMV column) equals the
full softmax (``QueryEngine(..., fast_relevance=False)``) within ``FAST_RELEVANCE_ATOL``: single texts, aliases,
comma lists (also with a shared alias), a canonical phrase covered by the query, calibrations, masked points."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from sas_engine import query as Q
from sas_engine.query import FAST_RELEVANCE_ATOL, RELEVANCE, QueryEngine, VocabularyCalibration

from .test_query_relevance import DIM, LIVING, VOCAB, WordEncoder, room


def pair(classes=LIVING, seed=0, noise=0.25, mask=None):
    """A fast and an exact engine on the same room."""
    fast, lab, pts, enc = room(classes, seed=seed, noise=noise)
    st = fast._snapshot()
    feats = st.unit.float()
    if mask is not None:
        fast.set_scene("room", feats, mask)
    exact = QueryEngine(WordEncoder(), fast_relevance=False)
    exact.set_scene("room", feats, mask)
    return fast, exact, lab


def close(a, b, atol=FAST_RELEVANCE_ATOL):
    assert np.array_equal(np.isnan(a), np.isnan(b))
    fin = np.isfinite(a)
    assert np.abs(a[fin] - b[fin]).max() <= atol


CAL = VocabularyCalibration("x", tuple(VOCAB), 14.8915, tuple(np.linspace(-4, 3, len(VOCAB)).round(3).tolist()),
                            tuple(RELEVANCE.templates))


@pytest.mark.parametrize("cal", [None, CAL])
@pytest.mark.parametrize("text", ["sofa", "bed", "couch", "a place to wash hands", "a lamp on the bedside table",
                                  "object"])
def test_fast_relevance_equals_the_full_softmax(text, cal):
    mask = np.random.default_rng(3).random(sum(LIVING.values())) > 0.1
    fast, exact, _ = pair(mask=mask, noise=0.6)
    for _ in range(2):  # cold (columns and log-sum-exp computed) and warm (cached)
        a = fast.relevance(text, VOCAB, calibration=cal)
        b = exact.relevance(text, VOCAB, calibration=cal)
        assert (a.text, a.aliases, a.negatives) == (b.text, b.aliases, b.negatives)
        close(a.score, b.score)
        close(a.cosine, b.cosine, 5e-4)
        assert np.isnan(a.score[~mask]).all()
        thr = RELEVANCE.threshold
        fin = np.isfinite(b.score)
        flips = (a.score[fin] >= thr) != (b.score[fin] >= thr)
        assert flips.sum() <= max(1, int(0.001 * fin.sum()))


def test_fast_handles_aliases_comma_lists_and_shared_aliases_exactly():
    fast, exact, _ = pair(noise=0.6)
    assert fast.relevance("couch", VOCAB).aliases == ["sofa"]
    for names in (["chair", "table", "sofa", "bed"], ["couch", "sofa", "lamp"], VOCAB):
        a = fast.segment_names(names, VOCAB)
        b = exact.segment_names(names, VOCAB)
        assert a.aliases == b.aliases and a.negatives == b.negatives
        close(a.scores, b.scores)
        agree = (a.labels == b.labels).mean()
        assert agree > 0.999, (names, agree)
    # "couch" and "sofa" both answer through sofa: the full softmax holds that column twice, so must the fast one
    assert fast.segment_names(["couch", "sofa"], VOCAB).aliases == [["sofa"], ["sofa"]]


def test_fast_when_the_query_covers_a_canonical_phrase_and_with_another_config():
    fast, exact, _ = pair()
    cfg = dataclasses.replace(RELEVANCE, temperature=25.0, nearest_alias_cosine=1.01)
    for text in ("things", "stuff", "bed"):
        a, b = fast.relevance(text, VOCAB, cfg), exact.relevance(text, VOCAB, cfg)
        assert a.negatives == b.negatives
        close(a.score, b.score, 2.5 * FAST_RELEVANCE_ATOL)  # T = 25: T / 4 x 2.5e-4
    assert "things" not in fast.relevance("things", VOCAB).negatives
    a, b = fast.relevance("bed", []), exact.relevance("bed", [])  # only the canonical negatives
    close(a.score, b.score)


def test_fast_path_computes_one_gemv_per_query_and_caches_the_label_set(monkeypatch):
    fast, _, _ = pair()
    fast.relevance("sofa", VOCAB)
    st = fast._snapshot()
    assert len(st.fixed) == 1
    calls = []
    real_gemv, real_mm = Q.gemv_half, torch.mm
    monkeypatch.setattr(Q, "gemv_half", lambda a, b: (calls.append(("gemv", 1)), real_gemv(a, b))[1])
    monkeypatch.setattr(torch, "mm", lambda a, b, **kw: (calls.append(("mm", b.shape[1])), real_mm(a, b, **kw))[1])
    fast.relevance("a wooden chair", VOCAB)
    monkeypatch.undo()
    assert calls == [("gemv", 1)]  # the query's own column only
    assert len(st.fixed) == 1  # the same label set: the same log-sum-exp
    fast.relevance("a wooden chair", VOCAB[:10])
    assert len(st.fixed) == 2
    for i in range(Q.FIXED_CACHE + 2):
        fast.relevance("bed", VOCAB[: 3 + i])
    assert len(st.fixed) == Q.FIXED_CACHE


def test_fast_relevance_of_a_point_does_not_depend_on_the_rest_of_the_scene():
    eng, lab, _, _ = room(LIVING, seed=1)
    chairs = eng._snapshot().unit[lab == 3].float()
    alone = QueryEngine(WordEncoder())
    alone.set_scene("only chairs", chairs)
    np.testing.assert_allclose(eng.relevance("chair", VOCAB).score[lab == 3], alone.relevance("chair", VOCAB).score,
                               atol=1e-6)
    assert DIM == chairs.shape[1]


def test_group_index_gives_the_same_regions_and_means_as_ranked_ids():
    from sas_engine.query import find_regions, group_index, group_mean

    g = np.random.default_rng(5)
    n = 3000
    pts = g.uniform(0, 2, (n, 3)).astype(np.float32)
    sim = g.random(n).astype(np.float32)
    sim[g.random(n) < 0.05] = np.nan
    small = (pts[:, 0] * 10).astype(np.int64) * 100 + (pts[:, 1] * 10).astype(np.int64)  # ids < 4N: used as is
    huge = small * 10 ** 12 + 7  # far beyond 4N: ranked with np.unique
    assert group_index(small) is small or np.array_equal(group_index(small), small)
    assert group_index(huge).max() < n
    a_hits, a_disp = find_regions(sim, pts, 0.6, groups=small, voxel=0.1)
    b_hits, b_disp = find_regions(sim, pts, 0.6, groups=huge, voxel=0.1)
    np.testing.assert_array_equal(a_disp, b_disp)
    assert [h.indices.tolist() for h in a_hits] == [h.indices.tolist() for h in b_hits]
    np.testing.assert_array_equal(group_mean(sim[:, None], small), group_mean(sim[:, None], huge))
    neg = small - 50  # negative ids: ranked too
    np.testing.assert_array_equal(find_regions(sim, pts, 0.6, groups=neg, voxel=0.1)[1], a_disp)


def test_gemv_half_is_the_float16_product_rounded_once():
    """The engine's GEMV (``torch.nn.functional.linear`` on float16 rows) accumulates in float32: every cosine is the
    exact product of the float16 inputs, rounded once to float16 (half a unit in the last place, 2^-11 relative)."""
    g = torch.Generator().manual_seed(0)
    unit = torch.nn.functional.normalize(torch.randn(3000, 512, generator=g), dim=1).half()
    v = torch.nn.functional.normalize(torch.randn(512, generator=g), dim=0)
    got = Q.gemv_half(unit, v)
    assert got.dtype == torch.float16 and got.shape == (3000,)
    ref = unit.double() @ v.half().double()
    assert bool(((got.double() - ref).abs() <= ref.abs() * 2.0 ** -11 + 1e-6).all())
