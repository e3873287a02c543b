"""The Numba kernel behind :func:`spacefold._core.plane.plane_regions`: all neurons of one layer cut
in one compiled call (imported on first use: it compiles or loads from Numba's cache)."""

from __future__ import annotations

import numba as nb
import numpy as np


@nb.njit(cache=True, nogil=True)
def cut_layer(verts, z, nv, corners, offsets, tol):
    """Cut the mesh by the zero line of every column of ``z`` in turn (see plane.py's notes).

    ``verts`` (cap, 2) and ``z`` (cap, w) hold ``nv`` vertices; polygon p has the corners
    ``corners[offsets[p]:offsets[p + 1]]``, counter-clockwise. Values ``|z| <= tol[j]`` count
    as 0. Returns ``(verts, z, nv, corners, offsets, bits, origin)``: ``bits`` (n_polygons, w) the
    bits z > 0 of every new polygon, ``origin`` the polygon of the input mesh it lies in.
    """
    w = z.shape[1]
    n_poly = offsets.size - 1
    bits = np.zeros((max(2 * n_poly, 16), w), np.bool_)  # rows beyond n_poly: spare capacity
    origin = np.arange(bits.shape[0])
    for j in range(w):
        for v in range(nv):
            if abs(z[v, j]) <= tol[j]:
                z[v, j] = 0.0
        # which polygons straddle the line, and the size of the new corner array
        split = np.zeros(n_poly, np.bool_)
        side = np.zeros(n_poly, np.bool_)
        n_split = 0
        total = 0
        n_cross = 0
        for p in range(n_poly):
            npos = 0
            nneg = 0
            for k in range(offsets[p], offsets[p + 1]):
                s = z[corners[k], j]
                if s > 0:
                    npos += 1
                elif s < 0:
                    nneg += 1
            side[p] = npos > 0
            if npos > 0 and nneg > 0:
                split[p] = True
                n_split += 1
                total += npos + nneg + 4
                n_cross += 2
            else:
                total += offsets[p + 1] - offsets[p]
        if n_split == 0:
            for p in range(n_poly):
                bits[p, j] = side[p]
            continue
        if nv + n_cross > verts.shape[0]:
            cap = max(2 * verts.shape[0], nv + n_cross)
            v2 = np.empty((cap, 2))
            v2[:nv] = verts[:nv]
            z2 = np.empty((cap, w))
            z2[:nv] = z[:nv]
            verts = v2
            z = z2
        new_corners = np.empty(total, corners.dtype)
        new_offsets = np.empty(n_poly + n_split + 1, offsets.dtype)
        if n_poly + n_split > bits.shape[0]:
            cap = max(2 * bits.shape[0], n_poly + n_split)
            b2 = np.zeros((cap, w), np.bool_)
            b2[:n_poly] = bits[:n_poly]
            o2 = np.empty(cap, origin.dtype)
            o2[:n_poly] = origin[:n_poly]
            bits = b2
            origin = o2
        made = dict()
        # negative pieces go after all polygons: write them in a second array, then append
        neg_corners = np.empty(total, corners.dtype)
        neg_offsets = np.empty(n_split + 1, offsets.dtype)
        neg_offsets[0] = 0
        q = 0
        qn = 0
        sp = 0
        for p in range(n_poly):
            new_offsets[p] = q
            a0 = offsets[p]
            a1 = offsets[p + 1]
            if not split[p]:
                for k in range(a0, a1):
                    new_corners[q] = corners[k]
                    q += 1
                bits[p, j] = side[p]
                continue
            bits[p, j] = True
            for k in range(a0, a1):
                a = corners[k]
                b = corners[a0 if k + 1 == a1 else k + 1]
                sa = z[a, j]
                sb = z[b, j]
                if sa >= 0:
                    new_corners[q] = a
                    q += 1
                if sa <= 0:
                    neg_corners[qn] = a
                    qn += 1
                if (sa > 0 and sb < 0) or (sa < 0 and sb > 0):
                    lo = min(a, b)
                    hi = max(a, b)
                    key = lo * 2147483648 + hi
                    if key in made:
                        m = made[key]
                    else:
                        m = nv
                        nv += 1
                        made[key] = m
                        t = z[lo, j] / (z[lo, j] - z[hi, j])
                        verts[m, 0] = verts[lo, 0] + t * (verts[hi, 0] - verts[lo, 0])
                        verts[m, 1] = verts[lo, 1] + t * (verts[hi, 1] - verts[lo, 1])
                        for c in range(j + 1, w):
                            z[m, c] = z[lo, c] + t * (z[hi, c] - z[lo, c])
                        z[m, j] = 0.0
                    new_corners[q] = m
                    q += 1
                    neg_corners[qn] = m
                    qn += 1
            sp += 1
            neg_offsets[sp] = qn
            bits[n_poly + sp - 1, :j] = bits[p, :j]
            bits[n_poly + sp - 1, j] = False
            origin[n_poly + sp - 1] = origin[p]
        for k in range(qn):
            new_corners[q + k] = neg_corners[k]
        for s_ in range(n_split + 1):
            new_offsets[n_poly + s_] = q + neg_offsets[s_]
        corners = new_corners[: q + qn]
        offsets = new_offsets
        n_poly += n_split
    return verts, z, nv, corners, offsets, bits[:n_poly], origin[:n_poly]
