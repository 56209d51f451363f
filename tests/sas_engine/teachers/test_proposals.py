"""The numba SLIC and the 1-D pair dedup of the region proposals against the vectorised torch formulation they
replaced (kept here as the reference): the same labels, pixel for pixel, so the shipped compact teachers' outputs
(and every number recorded from them) do not move."""
from pathlib import Path

import numpy as np
import pytest
import torch

from sas_engine.teachers.proposals import ProposalConfig, merge_regions, propose_regions, slic


def slic_reference(image: torch.Tensor, cfg: ProposalConfig = ProposalConfig()) -> torch.Tensor:
    """The torch SLIC as shipped before the numba kernel (each pixel against its 9 candidate centres at once)."""
    h, w, _ = image.shape
    step = max(2, int(round((h * w / cfg.n_segments) ** 0.5)))
    gy, gx = (h + step - 1) // step, (w + step - 1) // step
    ys = torch.arange(h).view(h, 1).expand(h, w)
    xs = torch.arange(w).view(1, w).expand(h, w)
    pix = torch.cat([image.reshape(-1, 3).float(), ys.reshape(-1, 1).float(), xs.reshape(-1, 1).float()], 1)
    cy = (ys // step).reshape(-1)
    cx = (xs // step).reshape(-1)
    dy = torch.tensor([-1, -1, -1, 0, 0, 0, 1, 1, 1])
    dx = torch.tensor([-1, 0, 1, -1, 0, 1, -1, 0, 1])
    ny, nx = (cy[:, None] + dy).clamp(0, gy - 1), (cx[:, None] + dx).clamp(0, gx - 1)
    cand = ny * gx + nx
    cys = (torch.arange(gy).float() * step + step / 2).clamp(max=h - 1)
    cxs = (torch.arange(gx).float() * step + step / 2).clamp(max=w - 1)
    cyy, cxx = torch.meshgrid(cys, cxs, indexing="ij")
    col = image[cyy.long().reshape(-1), cxx.long().reshape(-1)].float()
    centres = torch.cat([col, cyy.reshape(-1, 1), cxx.reshape(-1, 1)], 1)
    sw = (cfg.compactness / step) ** 2
    label = cand[:, 4]
    for _ in range(cfg.iterations):
        c = centres[cand]
        d = ((pix[:, None, :3] - c[..., :3]) ** 2).sum(-1) + sw * ((pix[:, None, 3:] - c[..., 3:]) ** 2).sum(-1)
        label = cand.gather(1, d.argmin(1, keepdim=True)).squeeze(1)
        s = torch.zeros_like(centres).index_add_(0, label, pix)
        n = torch.zeros(centres.shape[0]).index_add_(0, label, torch.ones(label.shape[0]))
        keep = n > 0
        centres[keep] = s[keep] / n[keep, None]
    _, compact = torch.unique(label, return_inverse=True)
    return compact.view(h, w)


def _images():
    rng = np.random.default_rng(0)
    yield "noise", rng.integers(0, 256, (60, 80, 3)).astype(np.uint8)
    smooth = np.zeros((120, 160, 3), np.uint8)
    yy, xx = np.mgrid[:120, :160]
    smooth[..., 0] = (xx * 1.5).astype(np.uint8)
    smooth[..., 1] = (yy * 2).astype(np.uint8)
    smooth[(yy - 50) ** 2 + (xx - 90) ** 2 < 900] = (200, 30, 40)
    yield "shapes", np.clip(smooth.astype(int) + rng.integers(-6, 7, smooth.shape), 0, 255).astype(np.uint8)
    yield "flat", np.full((37, 53, 3), 128, np.uint8)  # every distance ties: the first candidate must win
    yield "odd", rng.integers(0, 256, (7, 9, 3)).astype(np.uint8)


def _rendered_frames(n: int = 6):
    """A few frames of the embedded world (the images the teachers see), when the tiny split is generated."""
    from sas_engine.synth import ensure_split

    from PIL import Image

    folder = Path(ensure_split("tiny", first=1, progress=False)[0])
    files = sorted(folder.rglob("*.jpg"))[:n]
    return [(f.name, np.asarray(Image.open(f).convert("RGB"))[::2, ::2]) for f in files]


@pytest.mark.parametrize("name,image", list(_images()))
def test_numba_slic_equals_the_torch_reference(name, image):
    img = torch.as_tensor(image).float()
    for cfg in (ProposalConfig(), ProposalConfig(n_segments=40, compactness=3.0, iterations=3)):
        assert torch.equal(slic(img, cfg), slic_reference(img, cfg)), name


def test_numba_slic_equals_the_reference_on_rendered_frames():
    frames = _rendered_frames()
    assert frames
    for name, image in frames:
        img = torch.as_tensor(np.ascontiguousarray(image)).float()
        assert torch.equal(slic(img), slic_reference(img)), name


def test_merge_keeps_the_reference_regions():
    """merge_regions on the reference superpixels (its pair dedup is now 1-D) against a re-derivation with
    ``unique(dim=0)``: same partition, same ids."""
    for _, image in list(_images())[:2]:
        img = torch.as_tensor(image).float()
        labels = slic_reference(img)
        pairs = torch.cat([torch.stack([labels[:, :-1].reshape(-1), labels[:, 1:].reshape(-1)], 1),
                           torch.stack([labels[:-1].reshape(-1), labels[1:].reshape(-1)], 1)])
        pairs = pairs[pairs[:, 0] != pairs[:, 1]]
        ref = torch.unique(torch.sort(pairs, 1).values, dim=0)
        n = int(labels.max()) + 1
        s = torch.sort(pairs, 1).values
        key = torch.unique(s[:, 0] * n + s[:, 1])
        assert torch.equal(torch.stack([key // n, key % n], 1), ref)
        out = merge_regions(img, labels)
        assert out.shape == labels.shape and int(out.max()) + 1 == len(torch.unique(out))
        assert np.array_equal(propose_regions(image), merge_regions(img, slic_reference(img)).numpy())
