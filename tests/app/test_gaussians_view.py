"""The scene's Gaussians in the viewer (app/gaussians.py): splats drawn in place of the points, recoloured by a
query like the points, hidden again; a scene without stored Gaussians gets a message naming the command."""
import numpy as np
import pytest
import torch

from app import gaussians as G
from app.viewer import ClientView
from sas_engine.errors import SASInputError
from sas_engine.labels import PROMPT_SCENE, SCANNET20


class _Handle:
    def __init__(self, **kw):
        self.kw, self.visible, self.removed = kw, True, False

    def remove(self):
        self.removed = True


class _Scene:
    def __init__(self):
        self.splats = []

    def add_gaussian_splats(self, name, centers, covariances, rgbs, opacities):
        h = _Handle(name=name, centers=centers, covariances=covariances, rgbs=rgbs, opacities=opacities)
        self.splats.append(h)
        return h


class _Client:
    def __init__(self):
        self.scene = _Scene()


class _Viewer:
    def __init__(self, cv):
        self.cv, self.updates = cv, 0

    def clients_of(self, token):
        return [self.cv]

    def update(self, session, geometry=False):
        self.updates += 1


def _store_gaussians(state, scene, encoder):
    keep = np.arange(0, scene.num_points, 4)
    n = len(keep)
    fit = {"means": torch.from_numpy(scene.points[keep]), "quats": torch.tensor([[1.0, 0, 0, 0]]).repeat(n, 1),
           "log_scales": torch.full((n, 3), -3.5), "opacity_logits": torch.full((n,), 2.0),
           "color_logits": torch.zeros(n, 3), "fit_frames": [], "heldout_frames": [], "stats": {}}
    state.store.save(scene.scene_id, "gaussians.fit", fit, kind="gaussians", config={"t": 1},
                     geometry=scene.geometry_digest)
    names = list(SCANNET20[:-1]) + ["other"]
    emb = encoder.encode([PROMPT_SCENE.format(x) for x in names])
    lab = scene.labels[keep].astype(np.int64)
    lab[lab == 255] = 19
    state.store.save(scene.scene_id, "gaussians.feat.sas", {"features": emb[lab].half(),
                                                            "mask": torch.ones(n, dtype=torch.bool)},
                     kind="gaussian_features", config={"t": 1}, geometry=scene.geometry_digest)
    return keep


def test_gaussians_shown_recoloured_and_hidden(fixture_state, encoder):
    st = fixture_state
    s = st.new_session()
    sid = st.scene_ids()[0]
    s.select_scene(sid)
    scene = st.scene(sid)
    cv = ClientView(client=_Client(), token=s.token, scene_id=sid, center=np.array([1.0, 2.0, 0.5], np.float32))
    cv.a = _Handle()
    st.viewer = _Viewer(cv)
    with pytest.raises(SASInputError, match="sas gaussians semantics"):
        G.show(st, s.token, "")
    keep = _store_gaussians(st, scene, encoder)
    msg = G.show(st, s.token, "")
    assert f"{len(keep):,} Gaussians" in msg and "drawn in 1 view" in msg
    h = cv.gaussians
    assert h.kw["name"] == G.SPLATS and not cv.a.visible
    assert np.allclose(h.kw["centers"], scene.points[keep] - cv.center, atol=1e-5)
    cov = h.kw["covariances"]
    assert cov.shape == (len(keep), 3, 3) and np.allclose(cov[0], np.eye(3) * np.exp(-7.0), rtol=1e-4)
    assert np.allclose(h.kw["rgbs"], 0.5) and h.kw["opacities"].shape == (len(keep), 1)
    msg = G.show(st, s.token, "chair")
    assert "gaussians.feat.sas" in msg and "relevance" in msg
    assert h.removed and cv.gaussians is not h  # the old splats were replaced
    rgb = cv.gaussians.kw["rgbs"]
    lit = ~np.isclose(rgb[:, 0], rgb[:, 1]) | ~np.isclose(rgb[:, 1], rgb[:, 2])  # grey = below the threshold
    lab = scene.labels[keep]
    assert lit[lab == 4].mean() > 0.9 and lit[lab == 1].mean() < 0.1  # chairs lit, floor grey
    msg = G.show(st, s.token, "chair, table")
    assert "labelled Gaussians" in msg
    G.hide(st, s.token)
    assert cv.gaussians is None and cv.a.visible and st.viewer.updates == 1
