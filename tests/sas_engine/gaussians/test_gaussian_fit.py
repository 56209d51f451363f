"""Fitting Gaussians to a tiny room: held-out frames are never read, the loss falls, the store caches the result."""
import dataclasses

import numpy as np
import pytest

from sas_engine.errors import SASInputError
from sas_engine.gaussians import GaussianFitConfig, split_frames
from sas_engine.gaussians.model import Gaussians, init_from_points, voxel_downsample

SMALL = GaussianFitConfig(width=48, height=36, iterations=12, init_voxel=0.08, holdout_every=3)


def test_split_frames():
    fit, held = split_frames(10, 5)
    assert held == [4, 9] and fit == [0, 1, 2, 3, 5, 6, 7, 8]
    assert split_frames(3, 0) == ([0, 1, 2], [])
    with pytest.raises(SASInputError, match="holdout_every"):
        split_frames(10, 1)


def test_init_from_points_one_gaussian_per_voxel():
    rng = np.random.default_rng(0)
    p = rng.uniform(0, 1, (2000, 3)).astype(np.float32)
    c = rng.integers(0, 256, (2000, 3)).astype(np.uint8)
    keep, inv = voxel_downsample(p, 0.25)
    assert len(keep) == len(np.unique(inv)) == 64
    g, kept = init_from_points(p, c, 0.25)
    assert len(g) == 64 and np.array_equal(kept, keep)
    assert np.allclose(g.means.numpy(), p[keep])
    assert np.allclose(g.colors.numpy(), np.clip(c[keep] / 255.0, 0.02, 0.98), atol=1e-5)
    assert (g.scales > 0).all() and np.allclose(g.opacities.numpy(), 0.8, atol=1e-6)
    with pytest.raises(SASInputError, match="lacks"):
        Gaussians.from_payload({"means": g.means}, "x.pt")


class _Recording:
    """A frame list that records which frames are read."""

    def __init__(self, frames):
        self.frames, self.read = frames, set()
        self.digest = getattr(frames, "digest", None)
        self.frame_ids = getattr(frames, "frame_ids", None)

    def __len__(self):
        return len(self.frames)

    def __getitem__(self, i):
        self.read.add(int(i))
        return self.frames[i]


def test_fit_never_reads_held_out_frames_and_is_cached(tiny_scene, tmp_path):
    from sas_engine.gaussians.pipeline import ensure_fit
    from sas_engine.store import ArtefactStore

    rec = _Recording(tiny_scene.frames)
    scene = dataclasses.replace(tiny_scene, frames=rec)
    store = ArtefactStore(tmp_path)
    fit = ensure_fit(store, scene, SMALL)
    held = set(fit["heldout_frames"])
    assert held == {i for i in range(len(rec)) if i % 3 == 2}
    assert rec.read and not (rec.read & held)
    assert set(fit["fit_frames"]) | held == set(range(len(rec)))
    s = fit["stats"]
    assert s["loss_last"] < s["loss_first"]
    assert s["num_gaussians"] == len(fit["means"]) > 100
    again = ensure_fit(store, scene, SMALL, compute=False)  # cached: no refit, same artefact
    assert again["__header__"]["hash"] == fit["__header__"]["hash"]
    with pytest.raises(SASInputError, match="no current Gaussians"):
        ensure_fit(store, scene, dataclasses.replace(SMALL, iterations=13), compute=False)
