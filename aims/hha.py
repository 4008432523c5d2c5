"""HHA encoding of a depth image (Gupta et al., ECCV 2014).

Reference: S. Gupta, R. Girshick, P. Arbeláez, J. Malik, "Learning Rich Features from
RGB-D Images for Object Detection and Segmentation", ECCV 2014.

HHA turns one depth map into three 8-bit channels that a network pretrained on RGB can
consume:

* **H**orizontal disparity: ``31000 / max(Z_cm, 100)``;
* **H**eight above the lowest point of the scene, in cm, measured along the estimated
  gravity direction;
* **A**ngle between each surface normal and gravity, in degrees, ``+ 38`` so that the
  usual 90° (walls) lands mid-range; pixels without a normal get 180 + 38.

This module is our own implementation; its goal is to reproduce the output of Gupta's
original MATLAB code **bit for bit** (the HHA images circulated with NYUv2 were made with
it, and models pretrained on them expect exactly that encoding). Every detail that
looks arbitrary below (the order of floating point operations, the zero padding of the
box filter, MATLAB's rounding, the treatment of NaN) is there because it changes some
output pixels otherwise.

Pipeline:

1. back-project the depth (cm) into a point cloud with the pinhole intrinsics;
2. fit a plane to the points in a square window around each pixel by least squares
   (radius 3 for the normals that are encoded, radius 10 for the smoother normals used
   to estimate gravity); missing pixels are excluded from every fit;
3. estimate gravity iteratively: start from the camera's "down" axis ``[0, 1, 0]``,
   collect normals nearly parallel to it (floor, table tops) and nearly perpendicular
   to it (walls), and take the direction that is most parallel to the first set and most
   perpendicular to the second (smallest eigenvector of ``Nw Nwᵀ − Nf Nfᵀ``); 5
   iterations with a 45° tolerance, then 5 with 15°;
4. rotate the point cloud so that gravity is the y axis; height = −y minus its minimum
   (with a floor of −130 cm when the lowest point is above −90 cm, i.e. when the floor is
   probably out of view);
5. encode and round to uint8 the way MATLAB's ``uint8()`` does.

Speed.  ``benchmarks/bench_hha.py`` keeps the first, direct numpy version of this module
and checks that every output byte is still the same; this one takes ~50 ms per 640×480
frame on one core where that one took ~250 ms.  The per-pixel arithmetic is the same,
operation for operation; what changed is how it is scheduled:

* the box sums (about half the time) run in OpenCV's separable filter, which adds in
  the same order as the direct sums (see :func:`_box_sum`), over bands of rows that
  hold all 8 terms of the normal equations, computed once for both window sizes;
* every other step works on cache-sized pieces of rows and writes into arrays that are
  allocated once per frame size (:class:`_Workspace`): fresh multi-megabyte
  temporaries were page-faulted in at every call, which cost as much as the arithmetic;
* gravity's iterations re-check only the normals whose vote can have changed since the
  last full count (:class:`_VoteTally`), instead of gathering both sets every time; its
  3×3 sums are added in another order, which moves it by ~1e-16 (and where that could
  matter, a tie between two directions, the original's sums decide, see
  :func:`_next_estimate`).

OpenCV parallelises the box sums over its threads.  Where processes already fill the
cores (``aims prepare``'s workers), its threads only compete with them: two concurrent
processes took ~240 ms a frame each with OpenCV's default threads, ~105 ms with one.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Iterator

import cv2
import numpy as np
from numpy.typing import ArrayLike, NDArray

from aims.errors import AimsError

__all__ = [
    "NYU_COLOR_INTRINSICS",
    "compute_hha",
    "estimate_gravity",
    "matlab_uint8",
    "surface_normals",
]

#: NYU Depth v2 colour-camera intrinsics (NYU toolbox), the camera HHA is computed for.
NYU_COLOR_INTRINSICS: NDArray[np.float64] = np.array(
    [
        [5.1885790117450188e02, 0.0, 3.2558244941119034e02],
        [0.0, 5.1946961112127485e02, 2.5373616633400465e02],
        [0.0, 0.0, 1.0],
    ],
    dtype=np.float64,
)
NYU_COLOR_INTRINSICS.setflags(write=False)

_NORMAL_RADIUS = 3  # window radius of the normals that are encoded in the A channel
_GRAVITY_RADIUS = 10  # window radius of the smoother normals used to estimate gravity
_GRAVITY_SCHEDULE = ((45.0, 5), (15.0, 5))  # (angle tolerance in degrees, iterations)
_BAND_ROWS = 240  # rows per step of the box sums: few calls, few halo rows summed twice
_PIECE_ROWS = 48  # rows per step of the elementwise work: its temporaries stay in cache
# Gravity votes (see _VoteTally): after a full count, normals within _VOTE_BAND of a
# threshold are listed for quick re-checks; _VOTE_SLACK covers the rounding of n·y and
# of |n| = 1 (~1e-15) with a wide margin.
_VOTE_BAND = 0.05
_VOTE_SLACK = 1e-12
# Gravity's two smallest eigenvalues closer than this (relative) are a tie that rounding
# decides; see _next_estimate.
_TIE = 1e-4
_CHUNK = 32768  # normals per step when summing outer products (the chunk stays in cache)
_N_TERMS = 8  # per-pixel terms of the normal equations, besides the count of valid points
_N_SCRATCH = 8  # piece-sized scratch arrays (the most any step below uses at once)

F64 = NDArray[np.float64]
Normals = tuple[F64, F64, F64]
Cloud = tuple[F64, F64, F64]


class _GravityBuffers:
    """The arrays of a gravity estimate from up to ``n`` normals (see :class:`_Workspace`)."""

    def __init__(self, n: int):
        self.normals = np.empty((3, n))  # the defined normals, see _drop_undefined
        self.sim = np.empty(n)  # |n·y|
        self.margin = np.empty((2, n))  # its distance to the nearest threshold, scratch
        self.votes = np.empty(n, dtype=np.int8)
        self.recount = np.empty(n, dtype=np.int8)  # the votes of a new count, scratch
        self.weighted = np.empty((3, _CHUNK))  # a chunk of normals times their votes


class _Workspace:
    """Every array of a frame's computation, allocated once per frame size and thread.

    Why: glibc hands blocks above ~128 KiB back to the kernel when they are freed, and a
    fresh block is page-faulted in again, at ~2.4 µs per 4 KiB page here; numpy's
    temporaries of whole frames, or even of 64-row bands, made that as costly as all the
    arithmetic.  So every step writes into these arrays (``out=``) instead.  63 MB for
    640×480, kept per thread for the last frame size seen.
    """

    def __init__(self, h: int, w: int, halo: int = _GRAVITY_RADIUS):
        self.shape, self.halo = (h, w), halo  # halo: the largest window radius
        rows = min(h, _BAND_ROWS) + 2 * halo
        self.stack = np.zeros((_N_TERMS, rows, w))  # a band's terms, see _term_bands
        self.sums = np.empty_like(self.stack)  # their box sums
        self.scratch = np.empty((_N_SCRATCH, _PIECE_ROWS, w))
        self.z = np.empty((h, w))  # depth in cm
        self.cloud = np.empty((3, h, w))  # the normal fits' point cloud, see _normals_cloud
        self.valid = np.empty((h, w), dtype=bool)  # where a point enters the fits
        self.counts = np.empty((2, h, w))  # valid points per window
        self.fine = np.empty((3, h, w))  # unit normals for the angle, not yet oriented
        self.flip = np.empty((h, w), dtype=bool)  # where to negate them
        self.gravity = _GravityBuffers(h * w)  # with the coarse normals
        self.height = np.empty((h, w))
        self.planes = np.empty((3, h, w), dtype=np.uint8)  # the output's channels


_local = threading.local()


def _workspace(h: int, w: int) -> _Workspace:
    """This thread's workspace for (h, w) frames (see :class:`_Workspace`)."""
    ws: _Workspace | None = getattr(_local, "workspace", None)
    if ws is None or ws.shape != (h, w):
        ws = _local.workspace = None  # free the old one first
        ws = _local.workspace = _Workspace(h, w)
    return ws


def _row_bands(h: int) -> Iterator[tuple[int, int]]:
    """``(first, end)`` row ranges that tile ``h`` rows, for the box sums."""
    for r0 in range(0, h, _BAND_ROWS):
        yield r0, min(h, r0 + _BAND_ROWS)


def _pieces(r0: int, r1: int) -> Iterator[slice]:
    """Row slices that tile rows ``r0:r1``, for the elementwise work."""
    for s0 in range(r0, r1, _PIECE_ROWS):
        yield slice(s0, min(r1, s0 + _PIECE_ROWS))


def _rows(a: F64, rows: slice) -> Normals:
    """The three planes of a (3, H, W) array, at ``rows``."""
    return a[0, rows], a[1, rows], a[2, rows]


def _point_cloud(z_cm: F64, K: F64, row0: int, out: F64) -> Cloud:
    """Back-project depth (cm) of image rows from ``row0`` to camera coordinates (cm),
    x and y into ``out[0]``, ``out[1]``.

    Pixel centres are numbered from 1, as in MATLAB's ``meshgrid(1:W, 1:H)``: the NYU
    intrinsics were calibrated with that convention, so starting at 0 would shift the
    cloud by one pixel.  The operation order ``((u - cx) * Z) / fx`` is MATLAB's.
    """
    h, w = z_cm.shape
    u = np.arange(1, w + 1, dtype=np.float64)[None, :] - K[0, 2]
    v = np.arange(row0 + 1, row0 + h + 1, dtype=np.float64)[:, None] - K[1, 2]
    x = np.multiply(u, z_cm, out=out[0])
    x /= K[0, 0]
    y = np.multiply(v, z_cm, out=out[1])
    y /= K[1, 1]
    return x, y, z_cm


def _normals_cloud(z_cm: F64, K: F64, row0: int, out: F64) -> Cloud:
    """The point cloud of the normal fits (in ``out[0:3]``), from depth that went
    through cm → m → cm: the original passes depth in metres to its normal routine,
    which multiplies by 100 again, and the round trip is not always the identity.
    """
    z = np.divide(z_cm, 100.0, out=out[2])
    z *= 100.0
    return _point_cloud(z, K, row0, out)


def _box_sum_direct(img: F64, r: int) -> F64:
    """Sum over a (2r+1)² window, zero outside the image (MATLAB ``filter2(ones, f)``).

    Zero padding (not replication) is what the original code does: near the border the
    plane is fitted to fewer points rather than to invented ones.  Direct separable
    summation keeps the rounding error local, like MATLAB's direct convolution: left to
    right along rows, then top to bottom.  This defines the bits of the sums;
    :func:`_box_sum` computes the same bits faster.
    """
    h, w = img.shape
    p = np.zeros((h + 2 * r, w + 2 * r), dtype=np.float64)
    p[r : r + h, r : r + w] = img
    rows = p[:, 0:w].copy()
    for k in range(1, 2 * r + 1):
        rows += p[:, k : k + w]
    out = rows[0:h].copy()
    for k in range(1, 2 * r + 1):
        out += rows[k : k + h]
    return out


def _box_sum(img: F64, r: int, out: F64 | None = None, finite: bool | None = None) -> F64:
    """:func:`_box_sum_direct`, bit for bit, with OpenCV's separable filter (~4× faster),
    into ``out`` when given; ``finite``: whether ``img`` is known to be all finite.

    Running sums (``cv2.boxFilter``) and integral images round differently, and the
    normal equations of windows with few valid points are so ill-conditioned that this
    changes up to half of the pixels when the raw Kinect holes are left out (tried on
    the NYUv2 oracle): only the same additions in the same order are safe.  OpenCV's
    generic row and column filters add the taps one after the other from the first,
    like the direct sum, but symmetric column kernels get a pairwise order; one trailing
    zero tap (``anchor`` keeps the window centred) makes the column kernel asymmetric
    and adds ``+0``, which changes no bit.  ``0 × inf`` would be NaN, so non-finite input
    (only from degenerate depth) takes the direct path.  ``tests/test_hha.py`` pins the
    equality, in case a future OpenCV sums differently.
    """
    if not (np.isfinite(img.sum()) if finite is None else finite):
        direct = _box_sum_direct(img, r)
        if out is None:
            return direct
        out[...] = direct
        return out
    ones = np.ones(2 * r + 1)
    return cv2.sepFilter2D(
        img,
        cv2.CV_64F,
        ones,
        np.append(ones, 0.0),
        dst=out,
        anchor=(r, r),
        borderType=cv2.BORDER_CONSTANT,
    )


def _window_counts(valid: NDArray[np.bool_], r: int, out: F64) -> F64:
    """Number of valid points in each (2r+1)² window, zero padded, into ``out``.

    Sums of small integers are exact in any order, so OpenCV's running-sum box filter
    gives exactly the direct sums here, at a fraction of their cost.
    """
    ksize, border = (2 * r + 1, 2 * r + 1), cv2.BORDER_CONSTANT
    src = valid.view(np.uint8)
    return cv2.boxFilter(src, cv2.CV_64F, ksize, dst=out, normalize=False, borderType=border)


def _fit_terms(
    z_cm: F64,
    missing: NDArray[np.bool_],
    K: F64,
    row0: int,
    out: F64,
    cloud: F64,
    scratch: F64,
    check: bool,
) -> bool:
    """Write the per-pixel terms of the plane-fit normal equations of the rows ``z_cm``
    (image rows from ``row0``) into ``out`` (8, rows, W), their point cloud into
    ``cloud`` (3, rows, W); return whether all terms are finite.  ``check``: whether
    they may not be, see :func:`_terms_surely_finite`.

    A plane not through the camera is ``n·P = 1``; dividing by z makes it linear in the
    image-plane coordinates, ``[x/z, y/z, 1] · n = 1/z``.  The terms are the 5 distinct
    entries of the 3×3 matrix other than the count of points, then the 3 of the
    right-hand side; a window's equations are their box sums.  Missing pixels, and NaN
    from degenerate depth (0/0), contribute 0 to every window, as in the original, which
    turns missing points into NaN and then every NaN term into 0.
    """
    x, y, z = _normals_cloud(z_cm, K, row0, cloud)
    t = out
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        np.divide(x, z, out=t[2])
        np.divide(y, z, out=t[4])
        np.multiply(t[2], t[2], out=t[0])
        np.multiply(t[2], t[4], out=t[1])
        np.multiply(t[4], t[4], out=t[3])
        zz = np.multiply(z, z, out=scratch[0])
        np.divide(x, zz, out=t[5])
        np.divide(y, zz, out=t[6])
        np.divide(1.0, z, out=t[7])
    if missing.any():
        np.copyto(t, 0.0, where=missing)
    if not check or np.isfinite(t.sum()):
        return True
    # Degenerate depth: z = 0 not marked missing, or under/overflow.
    for term in t:
        np.copyto(term, 0.0, where=np.isnan(term))
    return bool(np.isfinite(t).all())


def _terms_surely_finite(z_cm: F64, valid: NDArray[np.bool_], K: F64) -> bool:
    """Whether every term of :func:`_fit_terms` is finite, from bounds that hold for any
    real depth map: all valid depths within 1e±100 cm and ``|u − cx| / fx``,
    ``|v − cy| / fy`` below 1e100 keep every term below ~1e200 (``x / z² ≈ (u − cx) /
    (fx z)``) and away from 0/0.  Cheaper than checking each term's sum."""
    h, w = z_cm.shape
    with np.errstate(divide="ignore", invalid="ignore"):
        spread_u = max(abs(1 - K[0, 2]), abs(w - K[0, 2])) / abs(K[0, 0])
        spread_v = max(abs(1 - K[1, 2]), abs(h - K[1, 2])) / abs(K[1, 1])
    if not (spread_u < 1e100 and spread_v < 1e100 and z_cm.max() < 1e100):  # NaN: False
        return False
    tiny = z_cm <= 1e-100
    return not np.logical_and(tiny, valid, out=tiny).any()


def _mul_sub(a: F64, b: F64, c: F64, d: F64, out: F64, tmp: F64) -> F64:
    """``out = a·b − c·d``, rounded in that order, without temporaries."""
    np.multiply(a, b, out=out)
    out -= np.multiply(c, d, out=tmp)
    return out


def _unit_normals(sums: F64, count: F64, out: Normals, scratch: F64) -> Normals:
    """Unit normals (into ``out``, not yet oriented) from the windows' summed normal
    equations; NaN where the fit is undefined.

    Solved with the adjugate (the determinant only scales n, which is normalised anyway),
    as in the original, with its operation order: it decides the last bits, and so rare
    rounding ties.  The original negates two cofactors and then adds their products;
    subtracting the products instead is the same operation in IEEE arithmetic.
    """
    a1, a2, a3, a4, a5, b1, b2, b3 = sums
    a6 = count
    c11, t12, c13, c22, t23, c33, tmp, norm = scratch
    # Cofactors of the symmetric [[a1 a2 a3] [a2 a4 a5] [a3 a5 a6]]; c12 = -t12, c23 = -t23.
    _mul_sub(a4, a6, a5, a5, c11, tmp)
    _mul_sub(a2, a6, a3, a5, t12, tmp)
    _mul_sub(a2, a5, a3, a4, c13, tmp)
    _mul_sub(a1, a6, a3, a3, c22, tmp)
    _mul_sub(a1, a5, a2, a3, t23, tmp)
    _mul_sub(a1, a4, a2, a2, c33, tmp)
    # n = adj(A) b: (c11 b1 + c12 b2) + c13 b3, (c12 b1 + c22 b2) + c23 b3, ...
    n1, n2, n3 = out
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        _mul_sub(c11, b1, t12, b2, n1, tmp)
        n1 += np.multiply(c13, b3, out=tmp)
        _mul_sub(c22, b2, t12, b1, n2, tmp)
        n2 -= np.multiply(t23, b3, out=tmp)
        _mul_sub(c13, b1, t23, b2, n3, tmp)
        n3 += np.multiply(c33, b3, out=tmp)
        np.multiply(n1, n1, out=norm)
        norm += np.multiply(n2, n2, out=tmp)
        norm += np.multiply(n3, n3, out=tmp)
        cv2.sqrt(norm, dst=norm)  # IEEE sqrt like np.sqrt, but vectorised
        n1 /= norm
        n2 /= norm
        n3 /= norm
    return n1, n2, n3


def _flips(n: Normals, cloud: Cloud, out: NDArray[np.bool_], scratch: F64) -> NDArray[np.bool_]:
    """Where the normal must be negated to follow the original's orientation (into ``out``).

    The original first makes ``n_z >= 0``, then flips ``n`` to ``n · p >= 0``.  Negation
    is exact and commutes with the rounding of the dot product, so that is one flip:
    where ``n · p < 0``, or where ``n · p == 0`` and ``n_z < 0``; NaN stays NaN.
    """
    d, tmp = scratch[0], scratch[1]
    with np.errstate(invalid="ignore", over="ignore"):
        np.multiply(n[0], cloud[0], out=d)
        d += np.multiply(n[1], cloud[1], out=tmp)
        d += np.multiply(n[2], cloud[2], out=tmp)
        np.less(d, 0.0, out=out)
        on_plane = d == 0.0
        if on_plane.any():
            out |= on_plane & (n[2] < 0)
    return out


def _term_bands(
    z_cm: F64, missing: NDArray[np.bool_], K: F64, ws: _Workspace
) -> Iterator[tuple[int, int, bool]]:
    """Fill ``ws.stack`` with a band's terms and yield ``(first row, end row, finite)``.

    Stack row j holds image row ``first - halo + j``: each band's terms come with
    ``halo`` rows above and below (zeros beyond the image), so every window sums the
    same values in the same order as on the whole image, and one filter call can sum
    all 8 terms.  The halo rows shared by two bands are moved, not computed again.
    ``finite``: no term is inf or NaN (see :func:`_box_sum`), as far as this frame's
    terms so far go.
    """
    h = z_cm.shape[0]
    halo, stack = ws.halo, ws.stack
    done = 0  # image rows whose terms have been computed
    finite = True
    check = not _terms_surely_finite(z_cm, np.logical_not(missing, out=ws.valid), K)
    for r0, r1 in _row_bands(h):
        if r0 == 0:
            stack[:, :halo] = 0.0
        else:
            stack[:, : 2 * halo] = stack[:, _BAND_ROWS : _BAND_ROWS + 2 * halo]
        top = r0 - halo  # the image row of stack row 0
        for p in _pieces(done, min(h, r1 + halo)):  # image rows that enter the stack now
            terms = stack[:, p.start - top : p.stop - top]
            scratch = ws.scratch[:, : p.stop - p.start]
            cloud = ws.cloud[:, p]
            finite &= _fit_terms(z_cm[p], missing[p], K, p.start, terms, cloud, scratch, check)
            done = p.stop
        stack[:, done - top :] = 0.0
        yield r0, r1, finite


def _band_sums(ws: _Workspace, r: int, rows: int, finite: bool) -> F64:
    """Box sums of radius ``r`` (at most the stack's halo) of the band's terms in
    ``ws.stack``, into ``ws.sums``; return those of the band's ``rows`` rows."""
    halo, w = ws.halo, ws.stack.shape[2]
    if r == halo:  # the whole stack at once: windows stay within a term's rows
        _box_sum(ws.stack.reshape(-1, w), r, out=ws.sums.reshape(-1, w), finite=finite)
    else:  # each term's band with its r halo rows only: less to filter
        band = slice(halo - r, halo + rows + r)
        for k in range(_N_TERMS):
            _box_sum(ws.stack[k, band], r, out=ws.sums[k, band], finite=finite)
    return ws.sums[:, halo : halo + rows]


def _band_normals(
    ws: _Workspace, r: int, rows: int, finite: bool, count: F64, out: Normals
) -> Normals:
    """Unit normals (into ``out``, not oriented) of the band in ``ws.stack``, from
    windows of radius ``r`` (at most the stack's halo)."""
    sums = _band_sums(ws, r, rows, finite)
    for p in _pieces(0, rows):
        piece = (out[0][p], out[1][p], out[2][p])
        _unit_normals(sums[:, p], count[p], piece, ws.scratch[:, : p.stop - p.start])
    return out


def surface_normals(z_cm: F64, missing: NDArray[np.bool_], K: F64, radius: int) -> F64:
    """Unit surface normals (H, W, 3) by least-squares plane fits over square windows.

    Missing pixels are excluded from every fit (see :func:`_fit_terms`); pixels whose
    fit is undefined (too few valid points) are NaN.  Normals are oriented so that
    ``n · p >= 0`` (the original code's convention).
    """
    z_cm = np.asarray(z_cm, dtype=np.float64)
    missing = np.asarray(missing, dtype=bool)
    h, w = z_cm.shape
    ws = _workspace(h, w) if radius <= _GRAVITY_RADIUS else _Workspace(h, w, halo=radius)
    count = _window_counts(np.logical_not(missing, out=ws.valid), radius, out=ws.counts[0])
    out = np.empty((3, h, w))
    for r0, r1, finite in _term_bands(z_cm, missing, K, ws):
        _band_normals(ws, radius, r1 - r0, finite, count[r0:r1], _rows(out, slice(r0, r1)))
    for p in _pieces(0, h):
        n, rows = _rows(out, p), p.stop - p.start
        flip = _flips(n, _rows(ws.cloud, p), np.empty((rows, w), dtype=bool), ws.scratch[:, :rows])
        for c in n:
            np.negative(c, out=c, where=flip)
    return np.ascontiguousarray(np.moveaxis(out, 0, -1))


def _drop_undefined(nn: F64, start: int, stop: int) -> int:
    """Squeeze the NaN normals out of ``nn[:, start:stop]`` (keeping the order); return
    the new stop."""
    valid = ~np.isnan(nn[0, start:stop])
    count = int(np.count_nonzero(valid))
    if count < stop - start:
        for k in range(3):
            nn[k, start : start + count] = nn[k, start:stop][valid]
    return start + count


def _outer_sum(nn: F64, weights: NDArray[np.int8], buf: F64) -> F64:
    """``Σ_j weights_j n_j n_jᵀ`` (3×3), a cache-sized chunk of normals at a time."""
    total = np.zeros((3, 3))
    for c0 in range(0, nn.shape[1], _CHUNK):
        part = nn[:, c0 : c0 + _CHUNK]
        w = np.multiply(part, weights[c0 : c0 + _CHUNK], out=buf[:, : part.shape[1]])
        total += w @ part.T
    return total


def _abs_dot(y: F64, nn: F64, out: F64 | None = None) -> F64:
    """``|y · n|`` for each column of ``nn``.  einsum, not ``@``: a matrix-vector product
    this tall goes to multithreaded BLAS, which is 30× slower on a busy machine.  For
    the first estimate, the camera's y axis, that is ``|n_y|`` exactly (the normals are
    finite, see :func:`_gravity_from`, so the zero products add nothing)."""
    if y[0] == 0.0 and y[1] == 1.0 and y[2] == 0.0:
        return np.abs(nn[1], out=out)
    return np.abs(np.einsum("i,ij->j", y, nn, out=out), out=out)


class _VoteTally:
    """The normals' votes for one angle tolerance, and ``Nw Nwᵀ − Nf Nfᵀ`` over them.

    A vote only changes where ``|n·y|`` crosses a threshold, and ``|n·y|`` moves by at
    most ``|Δy|`` when y does.  So after one exact count for ``y_ref``, every normal's
    margin (the distance of ``|n·y_ref|`` to the nearest threshold) is kept, and the
    normals with a small margin are listed.  Each later estimate ``y`` re-checks only the
    listed normals whose margin is within reach (``|y − y_m|``, ``y_m`` the estimate the
    margin was measured at): it recomputes their votes exactly, adds the changes to the
    sum, and measures their margins again at ``y``.  Should gravity move beyond the list,
    the list grows, or the count is redone when that is cheaper.  The votes are thus
    exactly those of a full count; the sum differs from one in the last bits (order of
    additions), which moves gravity by ~1e-16.
    """

    def __init__(
        self, nn: F64, tol_deg: float, buf: _GravityBuffers, prior: F64 | None = None
    ):
        """``prior``: the sum for the votes now in ``buf.votes`` (a previous tolerance's),
        to be updated rather than summed anew."""
        self.nn, self.buf = nn, buf
        self.cos_t = np.cos(np.deg2rad(tol_deg))
        self.sin_t = np.sin(np.deg2rad(tol_deg))
        self.y_ref: F64 | None = None
        self.sum = prior

    def _votes(self, sim: F64, out: NDArray[np.int8] | None = None) -> NDArray[np.int8]:
        """+1 wall (nearly perpendicular to y), −1 floor (nearly parallel), else 0."""
        return np.subtract(sim < self.sin_t, sim > self.cos_t, out=out, dtype=np.int8)

    def _margin(self, sim: F64, out: F64 | None = None, tmp: F64 | None = None) -> F64:
        """Distance of each ``|n·y|`` to the nearest threshold."""
        margin = np.abs(np.subtract(sim, self.cos_t, out=out), out=out)
        if self.sin_t != self.cos_t:
            np.minimum(margin, np.abs(np.subtract(sim, self.sin_t, out=tmp), out=tmp), out=margin)
        return margin

    def _recount(self, y: F64) -> None:
        """Count every vote for ``y`` exactly, keep the margins, list the small ones.

        When the sum of earlier votes is known, only the votes that changed are added
        to it, unless so many changed that summing all again is cheaper."""
        n = self.nn.shape[1]
        sim = _abs_dot(y, self.nn, out=self.buf.sim[:n])
        self.votes = self.buf.votes[:n]
        if self.sum is None:
            self._votes(sim, out=self.votes)
            self.sum = _outer_sum(self.nn, self.votes, self.buf.weighted)
        else:
            new = self._votes(sim, out=self.buf.recount[:n])
            changed = np.flatnonzero(new != self.votes)
            if 4 * len(changed) > n:
                self.votes[...] = new
                self.sum = _outer_sum(self.nn, self.votes, self.buf.weighted)
            else:
                self._add_changes(changed, new[changed])
        self.margin = self._margin(sim, out=self.buf.margin[0, :n], tmp=self.buf.margin[1, :n])
        self.y_ref = y
        self.ys = [y]  # the estimates that listed margins were measured at
        self.listed = np.flatnonzero(self.margin <= _VOTE_BAND)
        self.listed_margin = self.margin[self.listed]
        self.listed_at = np.zeros(len(self.listed), dtype=np.intp)  # index into self.ys
        self.listed_up_to = _VOTE_BAND

    def _list_more(self, limit: float) -> bool:
        """List the normals whose margin at ``y_ref`` is up to ``limit``; False when so
        many that a full count is cheaper.

        The normals already listed keep their margin and where it was measured: their
        votes may have changed since ``y_ref``, so that margin alone matches their vote.
        """
        listed = np.flatnonzero(self.margin <= limit)
        if 4 * len(listed) > len(self.margin):
            return False
        margin, at = self.margin[listed], np.zeros(len(listed), dtype=np.intp)
        old = np.searchsorted(listed, self.listed)  # both are sorted, the old ⊂ the new
        margin[old], at[old] = self.listed_margin, self.listed_at
        self.listed, self.listed_margin, self.listed_at = listed, margin, at
        self.listed_up_to = limit
        return True

    def matrix(self, y: F64) -> tuple[F64, bool]:
        """``Σ vote · n nᵀ`` (3×3) with the votes for gravity estimate ``y``, and whether
        it may differ from the previous call's (False: the same votes, the same sum)."""
        if self.y_ref is None:
            self._recount(y)
            return self.sum, True
        drift = float(np.linalg.norm(y - self.y_ref)) + _VOTE_SLACK
        if drift > self.listed_up_to and not self._list_more(1.5 * drift):  # room to drift
            self._recount(y)
            return self.sum, True
        reach = np.array([np.linalg.norm(y - y_m) for y_m in self.ys]) + _VOTE_SLACK
        check = np.flatnonzero(self.listed_margin <= reach[self.listed_at])
        idx = self.listed[check]
        part = np.take(self.nn, idx, axis=1)  # 3× faster than nn[:, idx]
        sim = _abs_dot(y, part)
        self.listed_margin[check] = self._margin(sim)
        self.listed_at[check] = len(self.ys)
        self.ys.append(y)
        new = self._votes(sim)
        changed = new != self.votes[idx]
        if not changed.any():
            return self.sum, False
        self._add_changes(idx[changed], new[changed], part[:, changed])
        return self.sum, True

    def _add_changes(
        self, idx: NDArray[np.intp], new: NDArray[np.int8], part: F64 | None = None
    ) -> None:
        """Set the votes of normals ``idx`` (``part``: those normals) to ``new``, and
        update the sum by their changes."""
        if part is None:
            part = np.take(self.nn, idx, axis=1)  # 3× faster than nn[:, idx]
        delta = new - self.votes[idx]
        self.sum = self.sum + (part * delta) @ part.T
        self.votes[idx] = new


def _gravity_from(nn: F64, buf: _GravityBuffers) -> F64:
    """Gravity from valid unit normals given as a (3, N) array (see :func:`estimate_gravity`).

    Each iteration needs ``Nw Nwᵀ − Nf Nfᵀ``; :class:`_VoteTally` keeps it up to date
    without gathering both sets every iteration (most of the original's time).  The sign
    of a normal matters to neither, so the normals need not be oriented.  The second
    tolerance starts from the first one's sum and votes, and updates them.  Once the sum
    stays the same, the estimate is a fixed point (the same matrix gives the same
    eigenvector, which keeps its sign), so the rest of that tolerance's iterations are
    skipped.
    """
    y = np.array([0.0, 1.0, 0.0])
    if nn.shape[1] == 0:  # nothing to estimate from (e.g. all depth missing): keep camera y
        return y
    if not np.isfinite(nn.sum()):  # absurd depth (~1e300 m): inf normals, votes of NaN
        return _gravity_direct(nn)
    tally: _VoteTally | None = None
    for tol_deg, iters in _GRAVITY_SCHEDULE:
        tally = _VoteTally(nn, tol_deg, buf, None if tally is None else tally.sum)
        for _ in range(iters):
            a, changed = tally.matrix(y)
            if not changed:
                break
            y = _next_estimate(a, y, functools.partial(_gathered_matrix, nn, y, tol_deg))
    return y


def _next_estimate(a: F64, y: F64, exact_matrix: Callable[[], F64]) -> F64:
    """The eigenvector of ``a``'s smallest eigenvalue, on ``y``'s side.

    When the two smallest eigenvalues (nearly) coincide, as for a synthetic scene of one
    flat wall, that eigenvector is decided by the last bits of ``a``: it is then
    recomputed from ``exact_matrix()``, summed like the original, to make the same
    choice."""
    evals, evecs = np.linalg.eigh(a)  # a is symmetric: eigh, like MATLAB's eig
    if evals[1] - evals[0] < _TIE * np.abs(evals).max():
        evals, evecs = np.linalg.eigh(exact_matrix())
    new = evecs[:, np.argmin(evals)]
    # sign(0) would zero the estimate (only when no normal votes); keep the side.
    return new * (np.sign(y @ new) or 1.0)


def _gathered_matrix(nn: F64, y: F64, tol_deg: float) -> F64:
    """``Nw Nwᵀ − Nf Nfᵀ`` for estimate ``y``, gathered and summed as the original does
    (the same matrix products of the same (k, 3) arrays)."""
    rows = nn.T
    with np.errstate(invalid="ignore"):
        sim = np.abs(rows @ y)
    nf = rows[sim > np.cos(np.deg2rad(tol_deg))]
    nw = rows[sim < np.sin(np.deg2rad(tol_deg))]
    return nw.T @ nw - nf.T @ nf


def _gravity_direct(nn: F64) -> F64:
    """:func:`_gravity_from` the original way, gathering both sets every iteration.

    Kept for normals with inf components, where ``vote × n nᵀ`` would make ``0 × inf``
    NaN of normals that do not vote."""
    y = np.array([0.0, 1.0, 0.0])
    for tol_deg, iters in _GRAVITY_SCHEDULE:
        for _ in range(iters):
            evals, evecs = np.linalg.eigh(_gathered_matrix(nn, y, tol_deg))
            new = evecs[:, np.argmin(evals)]
            y = new * (np.sign(y @ new) or 1.0)
    return y


def estimate_gravity(normals: F64) -> F64:
    """Unit gravity direction (camera coordinates, y pointing down) from a normal field.

    Hard assignment, as in the original: normals within the tolerance of the current
    estimate vote for "parallel" (floors, table tops), those within the tolerance of
    perpendicular vote for "perpendicular" (walls); the new estimate is the unit vector
    minimising ``sum (n·y)^2 over walls - sum (n·y)^2 over floors``, the eigenvector of
    the smallest eigenvalue, its sign chosen to agree with the previous estimate.
    """
    nn = np.asarray(normals, dtype=np.float64).reshape(-1, 3)
    buf = _GravityBuffers(len(nn))
    buf.normals[...] = nn.T
    return _gravity_from(buf.normals[:, : _drop_undefined(buf.normals, 0, len(nn))], buf)


def _rotation_to(yi: F64, yf: F64) -> F64:
    """Rotation taking unit vector ``yi`` to ``yf`` about ``yi × yf`` (Rodrigues).

    Below 0.1° the original returns the identity (and then skips the rotation); kept,
    because the identity and a near-identity rotation round differently.
    """
    yi = yi / np.linalg.norm(yi)
    yf = yf / np.linalg.norm(yf)
    phi = np.degrees(np.arccos(yi @ yf))
    if abs(phi) <= 0.1:
        return np.eye(3)
    ax = np.cross(yi, yf)
    ax = ax / np.linalg.norm(ax)
    phi = np.deg2rad(phi)
    s = np.array([[0.0, -ax[2], ax[1]], [ax[2], 0.0, -ax[0]], [-ax[1], ax[0], 0.0]])
    return np.eye(3) + np.sin(phi) * s + (1.0 - np.cos(phi)) * (s @ s)


def _round_into(x: F64, out: NDArray[np.uint8], low: bool = True, high: bool = True) -> None:
    """:func:`matlab_uint8` of ``x`` into ``out``, using ``x`` as scratch; ``low`` /
    ``high``: whether ``x`` may be NaN or round below 0 / above 255 (else that clamp
    is skipped)."""
    x += 0.5
    np.floor(x, out=x)
    if low:
        np.fmax(x, 0.0, out=x)  # NaN -> 0
    if high:
        np.minimum(x, 255.0, out=x)  # no NaN left: faster than fmin
    np.copyto(out, x, casting="unsafe")


def matlab_uint8(x: ArrayLike) -> NDArray[np.uint8]:
    """Cast to uint8 like MATLAB's ``uint8()``: round half away from zero, saturate to
    0..255, NaN -> 0.

    numpy's ``round`` is half-to-even and ``astype(uint8)`` truncates and wraps, either
    of which changes pixels of the reference output.  Values below 0 saturate to 0
    whichever way they round, so only ``floor(x + 0.5)`` of the others matters, and
    ``fmax`` takes NaN to 0 on the way.
    """
    r = np.array(x, dtype=np.float64)  # a copy: _round_into works in place
    out = np.empty(r.shape, dtype=np.uint8)
    _round_into(r, out)
    return out


def _angle_deg(n: Normals, flip: NDArray[np.bool_], g: F64, out: F64, tmp: F64) -> F64:
    """Angle (degrees, into ``out``) between each oriented normal and gravity; 180
    where there is no normal.

    Negating a normal negates its dot product with g exactly, so the orientation is
    applied to the cosine.  ``np.degrees`` is exactly this product, in a slower loop.
    """
    with np.errstate(invalid="ignore"):
        cos_a = np.multiply(n[0], g[0], out=out)
        cos_a += np.multiply(n[1], g[1], out=tmp)
        cos_a += np.multiply(n[2], g[2], out=tmp)
    np.negative(cos_a, out=cos_a, where=flip)
    # MATLAB's max/min skip NaN, so pixels without a normal end up at acos(-1) = 180°.
    np.minimum(np.fmax(cos_a, -1.0, out=cos_a), 1.0, out=cos_a)
    np.arccos(cos_a, out=cos_a)
    cos_a *= 180.0 / np.pi
    return cos_a


def _height_cm(z_cm: F64, K: F64, g: F64, ws: _Workspace) -> F64:
    """Height (cm) along gravity into ``ws.height``, before subtracting the lowest point.

    It is the y coordinate after rotating gravity onto the y axis (R' in the original),
    negated.
    """
    rot = _rotation_to(np.array([0.0, 1.0, 0.0]), g).T
    identity = np.array_equal(rot, np.eye(3))
    for p in _pieces(0, z_cm.shape[0]):
        sc = ws.scratch[:, : p.stop - p.start]
        if np.array_equal(ws.cloud[2, p], z_cm[p]):  # the fits' cloud is this one
            x, y, z = ws.cloud[0, p], ws.cloud[1, p], z_cm[p]
        else:
            x, y, z = _point_cloud(z_cm[p], K, p.start, sc)
        height = ws.height[p]
        if identity:
            np.negative(y, out=height)
        else:
            np.multiply(rot[1, 0], x, out=height)
            height += np.multiply(rot[1, 1], y, out=sc[2])
            height += np.multiply(rot[1, 2], z, out=sc[2])
            np.negative(height, out=height)
    return ws.height


def _validated(
    depth_m: ArrayLike, intrinsics: ArrayLike, missing: ArrayLike | None
) -> tuple[F64, F64, NDArray[np.bool_]]:
    """``(depth in m as float64, K, missing mask)``, or :class:`AimsError` saying what is wrong."""
    d = np.asarray(depth_m)
    if d.ndim != 2:
        raise AimsError(f"compute_hha: depth must be a 2-D (H, W) array, got shape {d.shape}.")
    if d.size == 0:
        raise AimsError("compute_hha: depth array is empty.")
    if not np.issubdtype(d.dtype, np.number) or np.iscomplexobj(d):
        raise AimsError(f"compute_hha: depth must be real-valued, got dtype {d.dtype}.")
    d = d.astype(np.float64, copy=False)
    if not (np.isfinite(d.sum()) or np.isfinite(d).all()) or d.min() < 0:
        raise AimsError("compute_hha: depth must be finite and >= 0 (0 = missing).")
    K = np.asarray(intrinsics, dtype=np.float64)
    if K.shape != (3, 3):
        raise AimsError(f"compute_hha: intrinsics must be a 3x3 matrix, got shape {K.shape}.")
    if missing is None:
        return d, K, d == 0
    miss = np.asarray(missing, dtype=bool)
    if miss.shape != d.shape:
        raise AimsError(f"compute_hha: missing mask shape {miss.shape} != depth shape {d.shape}.")
    return d, K, miss


def _fit_normals(z: F64, miss: NDArray[np.bool_], K: F64, ws: _Workspace) -> int:
    """Fit both normal fields, band by band: the fine ones (unit, not oriented) into
    ``ws.fine`` with their flips in ``ws.flip``, the defined coarse ones into
    ``ws.gravity.normals``; return how many of those there are."""
    np.logical_not(miss, out=ws.valid)
    fine_count = _window_counts(ws.valid, _NORMAL_RADIUS, out=ws.counts[0])
    coarse_count = _window_counts(ws.valid, _GRAVITY_RADIUS, out=ws.counts[1])
    n_defined, w = 0, z.shape[1]
    for r0, r1, finite in _term_bands(z, miss, K, ws):
        rows, band = r1 - r0, slice(r0, r1)
        sums = _band_sums(ws, _NORMAL_RADIUS, rows, finite)
        for p in _pieces(r0, r1):  # the normals, then their flips while in cache
            scratch, n = ws.scratch[:, : p.stop - p.start], _rows(ws.fine, p)
            _unit_normals(sums[:, p.start - r0 : p.stop - r0], fine_count[p], n, scratch)
            _flips(n, _rows(ws.cloud, p), ws.flip[p], scratch)
        # The coarse normals go straight into the list for gravity, NaN squeezed out.
        stop = n_defined + rows * w
        coarse = tuple(c[n_defined:stop].reshape(rows, w) for c in ws.gravity.normals)  # views
        _band_normals(ws, _GRAVITY_RADIUS, rows, finite, coarse_count[band], coarse)
        n_defined = _drop_undefined(ws.gravity.normals, n_defined, stop)
    return n_defined


def compute_hha(
    depth_m: ArrayLike,
    intrinsics: ArrayLike = NYU_COLOR_INTRINSICS,
    missing: ArrayLike | None = None,
) -> NDArray[np.uint8]:
    """HHA image (H, W, 3) uint8, channels R = disparity, G = height, B = angle.

    ``depth_m``: depth in metres (filled depth in the NYUv2 convention). ``missing``:
    True where there was no measurement; those pixels are left out of the normal fits
    (their depth still enters disparity and height). Defaults to ``depth_m == 0``; pass
    the raw-depth mask to reproduce HHA computed with the raw Kinect holes.
    """
    d, K, miss = _validated(depth_m, intrinsics, missing)
    h, w = d.shape
    ws = _workspace(h, w)
    z = np.multiply(d, 100.0, out=ws.z)  # the original works in centimetres

    n_defined = _fit_normals(z, miss, K, ws)
    g = _gravity_from(ws.gravity.normals[:, :n_defined], ws.gravity)
    return _encode(z, _height_cm(z, K, g, ws), g, ws)


def _encode(z_cm: F64, height: F64, g: F64, ws: _Workspace) -> NDArray[np.uint8]:
    """The three channels, rounded like MATLAB: disparity, height above the lowest point,
    and the angle of the fine normals to gravity, ``+ 128 − 90`` as in the original."""
    lowest = height.min()
    if lowest > -90:  # the floor is probably out of view
        lowest = -130.0
    out = ws.planes
    for b in _pieces(0, z_cm.shape[0]):
        sc = ws.scratch[:, : b.stop - b.start]
        # Disparity is in (0, 310] and the angle in [38, 218]: no NaN, fewer clamps.
        disparity = np.divide(31000.0, np.maximum(z_cm[b], 100.0, out=sc[0]), out=sc[0])
        _round_into(disparity, out[0, b], low=False)
        _round_into(np.subtract(height[b], lowest, out=sc[0]), out[1, b])
        angle = _angle_deg(_rows(ws.fine, b), ws.flip[b], g, out=sc[0], tmp=sc[1])
        angle += 128
        angle -= 90
        _round_into(angle, out[2, b], low=False, high=False)
    return cv2.merge(list(out))  # a new (H, W, 3) array
