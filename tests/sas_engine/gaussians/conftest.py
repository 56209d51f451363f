"""Shared fixtures of the Gaussian tests: one torch thread, a simple camera and a few hand-placed Gaussians."""
import numpy as np
import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture
def camera():
    """A 64 x 48 camera at the origin looking down +z (identity pose), fx = fy = 50."""
    from sas_engine.gaussians.raster import Camera

    K = np.array([[50.0, 0, 31.5], [0, 50.0, 23.5], [0, 0, 1]])
    return Camera.from_pose(np.eye(4), K, 64, 48)


def make_gaussians(means, scale=0.05, opacity=0.9, colors=None):
    """(means, quats, scales, opacities, colors) tensors of isotropic Gaussians."""
    m = torch.tensor(means, dtype=torch.float32)
    n = m.shape[0]
    q = torch.tensor([[1.0, 0, 0, 0]]).repeat(n, 1)
    s = torch.full((n, 3), float(scale))
    o = torch.full((n,), float(opacity))
    c = torch.rand(n, 3) if colors is None else torch.tensor(colors, dtype=torch.float32)
    return m, q, s, o, c


@pytest.fixture
def gaussians():
    return make_gaussians


@pytest.fixture(scope="package")
def tiny_scene():
    """The first tiny synthetic room (20 frames, 320 x 240)."""
    from sas_engine.io import load_scene
    from sas_engine.synth import ensure_split

    return load_scene(ensure_split("tiny")[0])
