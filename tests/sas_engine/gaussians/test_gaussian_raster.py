"""The pure-PyTorch Gaussian rasteriser: projection, compositing order, tiling, gradients, input checks."""
import math

import numpy as np
import pytest
import torch

from sas_engine.errors import SASInputError
from sas_engine.gaussians.raster import ALPHA_MIN, EPS2D, Camera, get_rasterizer, quat_to_rotmat, render


def test_single_gaussian_matches_the_analytic_footprint(camera, gaussians):
    m, q, s, o, c = gaussians([[0.1, -0.05, 2.0]], scale=0.04, opacity=0.8, colors=[[1.0, 0.5, 0.0]])
    out = render(m, q, s, o, c, camera)
    x3, y3, z3 = 0.1, -0.05, 2.0
    u, v = 50 * x3 / z3 + 31.5, 50 * y3 / z3 + 23.5                 # 34.0, 22.25
    J = np.array([[50 / z3, 0, -50 * x3 / z3 ** 2], [0, 50 / z3, -50 * y3 / z3 ** 2]])
    cov = 0.04 ** 2 * J @ J.T + EPS2D * np.eye(2)                      # EWA: J (s^2 I) J^T + low-pass, px^2
    inv = np.linalg.inv(cov)
    for (x, y) in [(34, 22), (36, 23), (31, 20), (34, 26)]:
        d = np.array([x - u, y - v])
        want = 0.8 * math.exp(-0.5 * d @ inv @ d)
        want = want if want >= ALPHA_MIN else 0.0  # gsplat drops alphas below 1/255
        assert out.alpha[y, x].item() == pytest.approx(want, rel=1e-4, abs=1e-6)
        assert out.channels[y, x, 1].item() == pytest.approx(0.5 * want, rel=1e-4, abs=1e-6)
        assert out.depth[y, x].item() == pytest.approx(2.0 * want, rel=1e-4, abs=1e-6)
    assert out.alpha[20, 31].item() == 0.0  # 0.0036 < 1/255
    assert out.alpha[0, 0].item() == 0.0  # far outside 3 sigma


def test_front_to_back_order_and_background(camera, gaussians):
    m, q, s, o, c = gaussians([[0, 0, 3.0], [0, 0, 1.5]], scale=3.0, opacity=0.99,
                              colors=[[0, 0, 1.0], [1.0, 0, 0]])
    bg = torch.tensor([0.0, 1.0, 0.0])
    a = render(m, q, s, o, c, camera, background=bg)
    b = render(m.flip(0), q, s.flip(0), o.flip(0), c.flip(0), camera, background=bg)  # input order is irrelevant
    assert torch.allclose(a.channels, b.channels, atol=1e-6)
    px = a.channels[23, 31]  # red in front (alpha 0.99), blue behind takes 0.99 of the rest, then background
    assert px[0].item() == pytest.approx(0.99, abs=1e-3)
    assert px[2].item() == pytest.approx(0.01 * 0.99, abs=1e-3)
    assert px[1].item() == pytest.approx(0.01 * 0.01, abs=1e-4)
    assert a.alpha[23, 31].item() == pytest.approx(1 - 1e-4, abs=1e-5)


def test_tiles_do_not_change_the_image(camera, gaussians):
    torch.manual_seed(0)
    m = torch.rand(300, 3) * torch.tensor([2.0, 1.5, 2.0]) + torch.tensor([-1.0, -0.75, 1.0])
    _, q, s, o, c = gaussians(m.tolist(), scale=0.06, opacity=0.7)
    q = torch.nn.functional.normalize(torch.randn(300, 4), dim=1)
    s = s * torch.rand(300, 3) * 2
    ref = render(m, q, s, o, c, camera, tile=16)
    for t in (8, 13):
        out = render(m, q, s, o, c, camera, tile=t)
        assert torch.allclose(out.channels, ref.channels, atol=1e-5)
        assert torch.allclose(out.alpha, ref.alpha, atol=1e-5)


def test_gradients_fit_a_shifted_gaussian(camera, gaussians):
    m, q, s, o, c = gaussians([[0.2, 0.1, 2.0]], scale=0.08, opacity=0.9, colors=[[1.0, 1.0, 1.0]])
    target = render(m, q, s, o, c, camera).channels
    start = torch.tensor([[0.13, 0.05, 2.0]], requires_grad=True)
    col = torch.full((1, 3), 0.3, requires_grad=True)
    opt = torch.optim.Adam([start, col], lr=0.01)
    losses = []
    for _ in range(60):
        loss = (render(start, q, s, o, col, camera).channels - target).abs().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.25 * losses[0]
    assert abs(start[0, 0].item() - 0.2) < 0.02 and abs(start[0, 1].item() - 0.1) < 0.02


def test_rotation_and_bad_inputs(camera, gaussians):
    R = quat_to_rotmat(torch.tensor([[math.cos(0.5), 0, 0, math.sin(0.5)]]))[0]  # 1 rad about z
    assert torch.allclose(R @ R.T, torch.eye(3), atol=1e-6)
    assert R[0, 0].item() == pytest.approx(math.cos(1.0), abs=1e-6)
    m, q, s, o, c = gaussians([[0, 0, 2.0]])
    with pytest.raises(SASInputError, match="scales"):
        render(m, q, s[:, :2], o, c, camera)
    with pytest.raises(SASInputError, match="channels"):
        render(m, q, s, o, c[0], camera)
    with pytest.raises(SASInputError, match="unknown rasterizer"):
        get_rasterizer("optix")
    with pytest.raises(SASInputError, match="finite 4x4"):
        Camera.from_pose(np.full((4, 4), np.nan), np.eye(3), 8, 8)
    with pytest.raises(SASInputError, match="CUDA"):
        get_rasterizer("gsplat")(m, q, s, o, c, camera)  # CPU tensors: a clear error, never a silent fallback
    behind = render(torch.tensor([[0, 0, -1.0]]), q, s, o, c, camera)  # behind the camera: nothing drawn
    assert behind.num_pairs == 0 and behind.alpha.abs().max().item() == 0.0
