"""numba kernel of the dense-grid kernel map on the CPU (imported lazily by :mod:`.coords`).

One pass over the output rows (row-major: the offsets of one row that differ in z read neighbouring grid cells) fills
the neighbour table ``[offsets, out rows]`` and counts the pairs per offset; a second pass lists the pairs offset
after offset, output rows ascending. The torch path does the same in about ten passes over the table. Compiled once
and cached on disk by numba (``cache=True``).
"""
import numba
import numpy as np


@numba.njit(cache=True, nogil=True)
def grid_pairs(grid, qbase, off_lin, identity):
    """``(in_idx int64 [P], out_idx int64 [P], counts int64 [K], table int32 [K, n], words int64 [W, n])`` for the
    int32 grid of input rows (-1 = empty), each output row's base cell ``qbase`` and the offsets' cell steps
    ``off_lin``; the ``identity`` offset (or -1) is kept in the table but not listed. ``words`` is each row's
    neighbour pattern, bit ``k % 62`` of word ``k // 62`` set when offset ``k`` has a neighbour."""
    n = qbase.shape[0]
    vol = off_lin.shape[0]
    table = np.empty((vol, n), np.int32)
    words = np.zeros(((vol + 61) // 62, n), np.int64)
    counts = np.zeros(vol, np.int64)
    for r in range(n):
        b = qbase[r]
        for k in range(vol):
            v = grid[b + off_lin[k]]
            table[k, r] = v
            if v >= 0:
                counts[k] += 1
                words[k // 62, r] |= np.int64(1) << (k % 62)
    if identity >= 0:
        counts[identity] = 0
    total = 0
    for k in range(vol):
        total += counts[k]
    ins = np.empty(total, np.int64)
    outs = np.empty(total, np.int64)
    p = 0
    for k in range(vol):
        if k == identity:
            continue
        for r in range(n):
            v = table[k, r]
            if v >= 0:
                ins[p] = v
                outs[p] = r
                p += 1
    return ins, outs, counts, table, words
