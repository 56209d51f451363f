"""numba kernel of the compact mask teacher's SLIC superpixels (imported lazily by :mod:`.proposals`).

The same arithmetic as the vectorised torch formulation it replaced (kept in ``tests/sas_engine/teachers/
test_proposals.py`` as the reference the tests compare against, label for label): float32 throughout, the colour
distance summed channel by channel, the spatial term scaled by the float32 weight, the first of equal distances
wins, centres moved to the mean of their pixels (sums of integer colours and coordinates, exact in float32). One
pass per iteration over the pixels instead of a [P, 9, 5] temporary; compiled once and cached on disk by numba.
"""
import numba
import numpy as np

_DY = np.array([-1, -1, -1, 0, 0, 0, 1, 1, 1], np.int64)
_DX = np.array([-1, 0, 1, -1, 0, 1, -1, 0, 1], np.int64)


@numba.njit(cache=True, nogil=True)
def slic_labels(image, step, sw, iterations):
    """Centre index (0..gy*gx-1, not compacted) of each pixel of ``image`` float32 [H, W, 3] after ``iterations``
    assignment / update rounds on a grid of ``step`` px cells, spatial weight ``sw`` (float32). int64 [H * W]."""
    h, w = image.shape[0], image.shape[1]
    gy, gx = (h + step - 1) // step, (w + step - 1) // step
    nc = gy * gx
    centres = np.empty((nc, 5), np.float32)
    half = np.float32(step / 2)
    for a in range(gy):
        cy = min(np.float32(a) * np.float32(step) + half, np.float32(h - 1))
        for b in range(gx):
            cx = min(np.float32(b) * np.float32(step) + half, np.float32(w - 1))
            c = a * gx + b
            for k in range(3):
                centres[c, k] = image[int(cy), int(cx), k]
            centres[c, 3] = cy
            centres[c, 4] = cx
    label = np.empty(h * w, np.int64)
    for y in range(h):  # before any iteration: the pixel's own cell (iterations = 0)
        for x in range(w):
            label[y * w + x] = (y // step) * gx + x // step
    sums = np.zeros((nc, 5), np.float32)
    counts = np.zeros(nc, np.float32)
    for _ in range(iterations):
        sums[:] = 0
        counts[:] = 0
        for y in range(h):
            fy = np.float32(y)
            cyc = y // step
            for x in range(w):
                fx = np.float32(x)
                cxc = x // step
                r, g, bl = image[y, x, 0], image[y, x, 1], image[y, x, 2]
                best = np.float32(np.inf)
                pick = -1
                for k in range(9):
                    ny = min(max(cyc + _DY[k], 0), gy - 1)
                    nx = min(max(cxc + _DX[k], 0), gx - 1)
                    c = ny * gx + nx
                    d0 = r - centres[c, 0]
                    d1 = g - centres[c, 1]
                    d2 = bl - centres[c, 2]
                    e0 = fy - centres[c, 3]
                    e1 = fx - centres[c, 4]
                    d = (d0 * d0 + d1 * d1 + d2 * d2) + sw * (e0 * e0 + e1 * e1)
                    if d < best or pick < 0:
                        best = d
                        pick = c
                label[y * w + x] = pick
                sums[pick, 0] += r
                sums[pick, 1] += g
                sums[pick, 2] += bl
                sums[pick, 3] += fy
                sums[pick, 4] += fx
                counts[pick] += np.float32(1)
        for c in range(nc):
            if counts[c] > 0:
                for k in range(5):
                    centres[c, k] = sums[c, k] / counts[c]
    return label
