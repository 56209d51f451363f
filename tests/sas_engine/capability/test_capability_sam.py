"""SAM point prompts (the release's 3-point rule) and refinement with a tiny random SAM."""
import numpy as np
import pytest
import torch

from sas_engine.capability.sam import SamRefiner, load_sam, prompt_points
from sas_engine.errors import SASInputError


def test_one_component_three_successive_maxima():
    m = np.zeros((512, 512), bool)
    m[200:301, 150:401] = True                      # 101 x 251 rectangle, centre row 250
    pts = prompt_points(m)
    assert pts.shape == (3, 2)
    # distance-transform maxima lie on the centre row; the first is the first maximum in row-major order
    assert list(pts[0]) == [200, 250]               # (x, y): dt = 51 along row 250 for x in 200..350
    assert all(p[1] == 250 for p in pts)
    # the picked pixel becomes background, so the next maximum is one inscribed radius (51 px) further along
    assert list(pts[1]) == [251, 250] and list(pts[2]) == [302, 250]


def test_two_components_two_plus_one():
    m = np.zeros((512, 512), bool)
    m[100:181, 100:181] = True                      # big square, centre (140, 140)
    m[300:341, 300:341] = True                      # small square, centre (320, 320)
    pts = prompt_points(m)
    assert list(pts[0]) == [140, 140]
    # second pick: maximum of min(distance to the square's outside, distance to the first pick), brute force
    from scipy.ndimage import distance_transform_edt

    yy, xx = np.mgrid[:512, :512]
    score = np.minimum(distance_transform_edt(m & (xx < 250)), np.hypot(xx - 140, yy - 140))
    assert score[pts[1][1], pts[1][0]] == pytest.approx(score.max())
    assert m[pts[1][1], pts[1][0]] and pts[1][0] < 250
    assert list(pts[2]) == [320, 320]


def test_three_or_more_components_largest_three():
    m = np.zeros((512, 512), bool)
    m[90:101, 90:101] = True                        # tiny, inside the border band? no: border is 70 px
    m[100:161, 100:161] = True                      # 61x61 -> centre (130, 130) (overlaps tiny: one component)
    m[300:351, 100:151] = True                      # 51x51 centre (125, 325)
    m[100:141, 300:341] = True                      # 41x41 centre (320, 120)
    m[400:411, 400:411] = True                      # 11x11, the 4th largest: ignored
    pts = prompt_points(m)
    assert sorted(map(tuple, pts.tolist())) == sorted([(125, 325), (320, 120), tuple(pts[0])])
    assert tuple(pts[1]) == (125, 325) and tuple(pts[2]) == (320, 120)
    assert 125 <= pts[0][0] <= 135 and 125 <= pts[0][1] <= 135


def test_border_is_zeroed_and_scaled():
    m = np.zeros((512, 512), bool)
    m[:60, :] = True                                # only in the 70 px border band -> fallback centre blobs
    m[250:263, 250:263] = True                      # 13x13 centre block, inside
    pts = prompt_points(m)
    assert all(250 <= p[0] < 263 and 250 <= p[1] < 263 for p in pts)
    # at 64 px the border is 70 * 64 / 512 ~ 9 px: a blob at rows/cols 2..5 is ignored
    s = np.zeros((64, 64), bool)
    s[2:6, 2:6] = True
    s[20:41, 20:41] = True
    assert all(20 <= p[0] <= 40 and 20 <= p[1] <= 40 for p in prompt_points(s))


def test_empty_mask_falls_back_to_centre_blobs():
    pts = prompt_points(np.zeros((512, 512), bool))
    assert pts.shape == (3, 2)
    assert all(230 <= x <= 280 and 230 <= y <= 280 for x, y in pts)
    assert len({tuple(p) for p in pts.tolist()}) == 3


def test_sam_refiner_tiny_model(tmp_path):
    from sas_engine.capability.tiny import build_tiny_sam

    torch.set_num_threads(2)
    sam = build_tiny_sam(0)
    ref = SamRefiner(model=sam)
    img = np.zeros((48, 64, 3), np.uint8)
    img[10:30, 20:50] = 200
    coarse = np.zeros((48, 64), bool)
    coarse[12:28, 22:48] = True
    out = ref.refine(img, coarse)
    assert out.shape == (48, 64) and out.dtype == bool
    # a checkpoint of the tiny model is not a ViT-B/L/H SAM: clear error naming the file
    ck = tmp_path / "tiny_sam.pth"
    torch.save(sam.state_dict(), ck)
    with pytest.raises(SASInputError, match="tiny_sam.pth"):
        load_sam(ck)
    with pytest.raises(SASInputError, match="missing.pth: SAM checkpoint not found"):
        load_sam(tmp_path / "missing.pth")
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(SASInputError, match="junk.pth: cannot read SAM checkpoint"):
        load_sam(tmp_path / "junk.pth")
