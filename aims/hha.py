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

This module is our own implementation of Gupta's original MATLAB code, whose output (the
HHA images circulated with NYUv2, which pretrained models expect) it reproduces: on the
NYUv2 oracle frame every byte is equal, with the filled depth and with the raw-depth
holes (``tests/test_hha.py``; the contract is ≥ 99.99 % of pixels equal, none off by
more than 1).

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

How the plane fits are computed, and why the output still matches MATLAB's.  The original
sums 9 per-pixel terms over each window and solves the 3×3 normal equations in image-plane
coordinates ``[(u − cx)/fx, (v − cy)/fy, 1]``, whose matrix is badly conditioned (a 7×7
window spans ~0.01 of a coordinate that is up to ~0.6): its normals are off the exact
least-squares plane by up to ~4e-5° at radius 3 (measured on smooth synthetic depth; 1e-3°
for 3×3 windows), which moves only the rare pixels whose angle sits that close to a
rounding boundary.  Here each window's equations are written in pixel offsets instead
(:func:`_masked_fit`): the matrix then only depends on which pixels of the window are
valid, and its entries, adjugate and determinant are sums and products of integers,
computed *exactly* (OpenCV's running box sums add integers exactly in any order); only
the right-hand side (``1/z`` weighted by the offsets) carries rounding, and that
well-conditioned system gives the plane to ~1e-12.  Without holes the matrix is even
known in closed form (:func:`_product_fit`).  The original's rounding decides the output
only where the exact matrix is singular or nearly so (fewer than three valid points, or
all on a line, around holes): there its normal is its rounding noise, so those windows
(exactly identified, from the integer matrix) are summed again the original's way, term
by term in its order, and solved with its operations (:func:`_original_normals_at`): bit
for bit the original's normals.  Gravity is estimated from exactly the votes a full count
gives (:class:`_VoteTally`), so it differs from the original's by ~1e-12, except where it
is undetermined (a single flat wall: two equal eigenvalues), where the original follows
its rounding noise (~2° off the camera's y axis on a synthetic wall) and this module's
estimate stays on that axis.

Speed (``benchmarks/bench_hha.py``, which keeps the direct version this module replaced
and times both side by side; one core, 640×480): ~10× faster on hole-free depth (NYUv2's
filled depth, what ``aims prepare`` computes HHA from), ~7× with Kinect-like holes, ~5×
with the raw Kinect holes of the oracle frame (~28 % of its radius-3 windows touch a
hole, and ~2900 are redone the original's way).  Box sums are OpenCV running sums (O(1)
per pixel whatever the radius); the elementwise work runs on pieces of rows that stay in
the core's cache, in arrays reused from frame to frame (:class:`_Workspace`).  Input the
fast fits do not take (a valid depth of 0, where the original's terms are infinite; a
depth range beyond 1:10⁴; a frame one pixel wide) goes through the original algorithm
(:func:`_direct_normals`), at its speed.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Iterator
from dataclasses import dataclass

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
# The fast fits sum 1/z with running sums, whose rounding grows with the range of 1/z
# along a row: beyond this ratio of the largest to the smallest valid depth (a real
# sensor spans ~1:25), or outside these depths (cm), the original algorithm runs instead.
_MAX_DEPTH_RATIO = 1e4
_DEPTH_BOUNDS_CM = (1e-100, 1e100)
_EXACT_CHUNK = 4096  # windows per step of the original-order sums (bounds their memory)
# Elementwise work goes through pieces of this many rows, whose arrays stay in the core's
# cache: on whole frames every step streams from memory, 2-3× slower.
_PIECE_ROWS = 48
_N_SCRATCH = 8  # piece-sized scratch arrays (the most any step uses at once)
# Gravity votes (see _VoteTally): after a full count, normals within a band of a
# threshold are listed for quick re-checks: 4× the estimate's last move, at least the
# first bound; beyond the second, listing does not pay.  _VOTE_SLACK covers the rounding
# of n·y and of |n| = 1 (~1e-15) with a wide margin.
_VOTE_BAND = (0.002, 0.02)
_VOTE_SLACK = 1e-12
_CHUNK = 32768  # normals per step when summing outer products (the chunk stays in cache)

F64 = NDArray[np.float64]
Normals = tuple[F64, F64, F64]


# --- the frame ----------------------------------------------------------------------


class _Workspace:
    """Whole-frame arrays reused from frame to frame by one thread, for one frame size.

    Why: glibc hands blocks above ~128 KiB back to the kernel when they are freed, and a
    fresh one is page-faulted in again, at ~2.4 µs per 4 KiB page here; with two such
    temporaries alive at once (any ``a - b * c`` on whole frames) that cost 30× the
    arithmetic.  So every whole-frame step writes into these arrays (``out=``); a name
    stands for one use, and no two uses alive at once share one.
    """

    def __init__(self, shape: tuple[int, int]):
        self.shape = shape
        self._arrays: dict[str, np.ndarray] = {}

    def __call__(self, name: str, planes: int = 0, dtype: type = np.float64) -> np.ndarray:
        """The (H, W) array ``name``, or (planes, H, W)."""
        return self.array(name, (planes, *self.shape) if planes else self.shape, dtype)

    def array(self, name: str, shape: tuple[int, ...], dtype: type = np.float64) -> np.ndarray:
        """The array ``name`` of any shape."""
        a = self._arrays.get(name)
        if a is None or a.shape != shape or a.dtype != dtype:
            a = self._arrays[name] = np.empty(shape, dtype=dtype)
        return a

    def scratch(self, rows: int) -> F64:
        """(_N_SCRATCH, rows, W) float64 arrays for the elementwise work on a piece of
        ``rows`` (at most _PIECE_ROWS) rows."""
        full = self._arrays.get("scratch")
        if full is None:
            full = self._arrays["scratch"] = np.empty((_N_SCRATCH, _PIECE_ROWS, self.shape[1]))
        return full[:, :rows]


def _pieces(h: int) -> Iterator[slice]:
    """Row slices of at most _PIECE_ROWS that tile ``h`` rows."""
    for r0 in range(0, h, _PIECE_ROWS):
        yield slice(r0, min(h, r0 + _PIECE_ROWS))


_local = threading.local()


def _workspace(shape: tuple[int, int]) -> _Workspace:
    """This thread's workspace for frames of ``shape`` (the last size seen is kept)."""
    ws: _Workspace | None = getattr(_local, "workspace", None)
    if ws is None or ws.shape != shape:
        ws = _local.workspace = None  # free the old one first
        ws = _local.workspace = _Workspace(shape)
    return ws


@dataclass(frozen=True)
class _Frame:
    """A depth map and what every window fit reads from it.

    ``u``, ``v``: pixel numbers from 1, as in MATLAB's ``meshgrid(1:W, 1:H)`` (the NYU
    intrinsics were calibrated with that convention); ``uc``, ``vc``: the same, less an
    integer near the image centre, the coordinates of the fits' right-hand side.  ``rhs``:
    its per-pixel terms ``1/z``, ``uc/z``, ``vc/z``, 0 where a pixel is left out.
    ``fast``: whether the depth suits the fast fits (see :func:`_suits_fast_fits`).
    """

    z: F64  # depth, cm
    valid: NDArray[np.bool_]  # where a point enters the fits
    K: F64
    holes: bool  # whether any pixel is left out of the fits
    fast: bool
    u: F64  # (1, W)
    v: F64  # (H, 1)
    uc: F64  # (1, W)
    vc: F64  # (H, 1)
    ws: _Workspace
    rhs: tuple[F64, F64, F64] | None  # None when not fast
    # The valid mask times (1, uc, vc) and (uc², uc·vc, vc²): two (H, W, 3) int32 images
    # (see _masked_fit); None when not fast or without holes.
    moments: tuple[NDArray[np.int32], NDArray[np.int32]] | None


def _frame(z_cm: F64, missing: NDArray[np.bool_], K: F64, ws: _Workspace) -> _Frame:
    h, w = z_cm.shape
    valid = np.logical_not(missing, out=ws("valid", dtype=np.bool_))
    holes = not valid.all()
    u = np.arange(1, w + 1, dtype=np.float64)[None, :]
    v = np.arange(1, h + 1, dtype=np.float64)[:, None]
    uc, vc = u - float((w + 1) // 2), v - float((h + 1) // 2)
    fast = _suits_fast_fits(z_cm, valid, holes, K)
    rhs = moments = None
    if fast:
        inv_z = ws("inv_z")
        if holes:
            inv_z.fill(0.0)
            np.divide(1.0, z_cm, out=inv_z, where=valid)
        else:
            np.divide(1.0, z_cm, out=inv_z)
        rhs = (inv_z, np.multiply(inv_z, uc, out=ws("u_z")),
               np.multiply(inv_z, vc, out=ws("v_z")))
    if fast and holes:
        moments = tuple(
            _masked_copy(c, valid, ws(f"moments{k}", 3, np.int32).reshape(h, w, 3))
            for k, c in enumerate(_moment_coordinates(h, w)))
    return _Frame(z_cm, valid, K, holes, fast, u, v, uc, vc, ws, rhs, moments)


def _masked_copy(src: np.ndarray, mask: NDArray[np.bool_], out: np.ndarray) -> np.ndarray:
    """``src`` where ``mask``, else 0, into ``out``: OpenCV's masked copy, ~2× faster than
    numpy's product, leaves the rest of ``out`` as it was, so that is zeroed first."""
    out.fill(0)
    return cv2.bitwise_and(src, src, mask=mask.view(np.uint8), dst=out)


@functools.lru_cache(maxsize=4)
def _moment_coordinates(h: int, w: int) -> tuple[NDArray[np.int32], NDArray[np.int32]]:
    """(1, uc, vc) and (uc², uc·vc, vc²) at every pixel, two (H, W, 3) int32 images:
    OpenCV sums 3 interleaved int32 channels 3× faster than one float64 image each, as
    exactly (see _unit_normals for frames whose sums could overflow)."""
    uc = np.arange(1, w + 1, dtype=np.int64)[None, :] - (w + 1) // 2
    vc = np.arange(1, h + 1, dtype=np.int64)[:, None] - (h + 1) // 2
    first = np.stack(np.broadcast_arrays(np.ones_like(uc), uc, vc), axis=-1)
    second = np.stack(np.broadcast_arrays(uc * uc, uc * vc, vc * vc), axis=-1)
    out = (first.astype(np.int32), second.astype(np.int32))
    for a in out:
        a.setflags(write=False)
    return out


def _suits_fast_fits(z_cm: F64, valid: NDArray[np.bool_], holes: bool, K: F64) -> bool:
    """Whether the fast fits apply: frames at least 2×2 (narrower ones have no window
    with a defined plane), usable intrinsics, and valid depths within the bounds above
    (a valid depth of 0, where the original's terms are infinite, is not)."""
    h, w = z_cm.shape
    fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
    if h < 2 or w < 2 or not (np.isfinite([fx, fy, cx, cy]).all() and fx != 0 and fy != 0):
        return False
    if not valid.any():
        return True
    lo, hi, _, _ = cv2.minMaxLoc(z_cm, mask=valid.view(np.uint8) if holes else None)
    low, high = _DEPTH_BOUNDS_CM
    return low <= lo and hi <= high and hi <= _MAX_DEPTH_RATIO * lo


def _box_sum(img: np.ndarray, r: int, out: F64 | None = None) -> F64:
    """Sum (float64) over a (2r+1)² window, zero outside the image (MATLAB ``filter2(
    ones, f)``): near the border the plane is fitted to fewer points rather than to
    invented ones.  OpenCV's running sums: exact for integers (below 2⁵³ all along a
    row), for any other input within a few ulps of the row's largest values."""
    ksize = (2 * r + 1, 2 * r + 1)
    return cv2.boxFilter(img, cv2.CV_64F, ksize, dst=out, normalize=False,
                         borderType=cv2.BORDER_CONSTANT)


# --- fast plane fits ----------------------------------------------------------------


def _unit_normals(frame: _Frame, r: int, name: str) -> F64:
    """Unit normals (3, H, W) of the planes fitted over (2r+1)² windows, not oriented,
    into the workspace array ``name``; NaN where the fit is undefined (no valid point in
    the window)."""
    ws, (h, w) = frame.ws, frame.z.shape
    n = ws(name, 3)
    if not frame.fast or r < 1:  # radius 0: single points, every fit singular
        n[...] = _direct_normals(frame.z, ~frame.valid, frame.K, r)
        return n
    sums = [_box_sum(t, r, out=ws(f"sum{k}")) for k, t in enumerate(frame.rhs)]
    if frame.holes:
        # Sums in int32 where no window's can reach 2³¹, else in float64 (as exact).
        reach = max(-frame.uc[0, 0], frame.uc[0, -1], -frame.vc[0, 0], frame.vc[-1, 0])
        depth, dtype = ((cv2.CV_32S, np.int32) if (2 * r + 1) ** 2 * reach**2 < 2**31
                        else (cv2.CV_64F, np.float64))
        moments = [cv2.boxFilter(m, depth, (2 * r + 1, 2 * r + 1), normalize=False,
                                 dst=ws(f"moment_sums{k}", 3, dtype).reshape(h, w, 3),
                                 borderType=cv2.BORDER_CONSTANT)
                   for k, m in enumerate(frame.moments)]
        fit = functools.partial(_masked_fit, frame, moments)
    else:
        fit = functools.partial(_product_fit, frame, r)
    redo = []
    for rows in _pieces(h):
        piece, sc = n[:, rows], ws.scratch(rows.stop - rows.start)
        ill = fit(rows, [s[rows] for s in sums], piece, sc)
        if ill is not None:
            redo.append(np.flatnonzero(ill) + rows.start * w)
        norm = np.multiply(piece[0], piece[0], out=sc[0])
        norm += np.multiply(piece[1], piece[1], out=sc[1])
        norm += np.multiply(piece[2], piece[2], out=sc[1])
        cv2.sqrt(norm, dst=norm)  # IEEE sqrt like np.sqrt, vectorised
        with np.errstate(invalid="ignore", divide="ignore"):
            piece /= norm
    pixels = np.concatenate(redo) if redo else np.zeros(0, dtype=np.intp)
    if len(pixels):
        exact = _original_normals_at(frame, r, pixels)
        for k in range(3):
            n[k].reshape(-1)[pixels] = exact[k]
    return n


def _product_fit(frame: _Frame, r: int, rows: slice, sums: list[F64], n: F64, sc: F64) -> None:
    """Normals, unnormalised, of image ``rows`` of a frame without holes into ``n``;
    ``sums``: the box sums of ``frame.rhs`` at those rows (overwritten), ``sc``: scratch.

    Each window is then a rectangle (clipped by the image border), so in offsets from its
    mean pixel the two coordinates are uncorrelated and the least squares fit of
    ``1/z ≈ A du + B dv + C`` separates: ``A = Σ du/z / Σ du²``, likewise B, and C is
    the mean of ``1/z``.  With ``1/z = n · [(u − cx)/fx, (v − cy)/fy, 1]``, the plane of
    the original, ``n = (fx A, fy B, C − A (ū − cx) − B (v̄ − cy))``, here scaled by the
    window's pixel count (positive: the orientation is kept).
    """
    b3, bu, bv = sums
    K = frame.K
    au, gu, mu = _axis_terms(frame.u.shape[1], r, K[0, 0], K[0, 2], frame.u[0, 0] - frame.uc[0, 0])
    av, gv, mv = _axis_terms(frame.v.shape[0], r, K[1, 1], K[1, 2], frame.v[0, 0] - frame.vc[0, 0])
    av, gv, mv = av[rows, None], gv[rows, None], mv[rows, None]
    pu = np.subtract(bu, np.multiply(b3, mu, out=sc[0]), out=bu)  # Σ (u − ū)/z
    pv = np.subtract(bv, np.multiply(b3, mv, out=sc[0]), out=bv)
    np.multiply(pu, au, out=n[0])
    np.multiply(pv, av, out=n[1])
    np.subtract(b3, np.multiply(pu, gu, out=n[2]), out=n[2])
    n[2] -= np.multiply(pv, gv, out=sc[0])


@functools.lru_cache(maxsize=16)
def _axis_terms(length: int, r: int, f: float, c: float, offset: float) -> tuple[F64, F64, F64]:
    """Per column (or row) of a hole-free frame: ``f k / S``, ``k (m − c) / S`` and
    ``m − offset``, where the window's k pixels along this axis have mean coordinate m
    and ``S = Σ (coordinate − m)²`` (= k (k² − 1) / 12 for consecutive integers)."""
    first = np.arange(1, length + 1, dtype=np.float64)
    lo, hi = np.maximum(1.0, first - r), np.minimum(float(length), first + r)
    k = hi - lo + 1
    mean = (lo + hi) / 2
    spread = k * (k * k - 1) / 12
    out = (f * k / spread, k * (mean - c) / spread, mean - offset)
    for a in out:
        a.setflags(write=False)
    return out


def _masked_fit(
    frame: _Frame, moments: list[F64], rows: slice, sums: list[F64], n: F64, sc: F64
) -> NDArray[np.bool_]:
    """Normals, unnormalised, of image ``rows`` of a frame with holes into ``n``; return
    where the fit is (nearly) singular, to be redone the original's way.  ``moments``:
    the box sums of the valid mask and of ``frame.moments``; ``sums``: those of
    ``frame.rhs`` at these rows (overwritten); ``sc``: scratch.

    In pixel offsets ``du, dv`` from the window's centre, the plane ``1/z = A du + B dv +
    C`` is fitted to the window's valid pixels.  With N of them and their moments in any
    fixed coordinates (``Su = Σ uc``, ``Suu = Σ uc²``, …), the 2×2 system of A and B has
    the matrix ``N·cov = [[c22, −c12], [−c12, c11]]``, ``c11 = N Svv − Sv²``, ``c22 = N
    Suu − Su²``, ``c12 = Su Sv − N Suv``: sums and products of integers below 2⁵³,
    computed exactly, and so is its determinant D (= N det M, M the original's 3×3
    matrix in these coordinates).  Then ``A = (c11 g1 + c12 g2) / D``, ``B = (c12 g1 +
    c22 g2) / D`` with ``g1 = N Σ uc/z − Su Σ 1/z``, ``g2`` likewise, and the original's
    ``n = (fx A, fy B, C − A (u₀ − cx) − B (v₀ − cy))`` is, scaled by ``N D > 0``,
    ``(fx N A', fy N B', D Σ1/z − A' (Su − N cx) − B' (Sv − N cy))`` (cx, cy in uc, vc
    coordinates; ``A' = D A``).  A fit is redone where ``D <= N (c11 + c22)``: no spread
    in some direction (the points on a line, or one point: D = 0) or less than ~1 pixel²
    of it.
    """
    count, su, sv, c22, c12, c11, tmp, det = sc
    for k, out in enumerate((count, su, sv, c22, c12, c11)):
        np.copyto(out, moments[k // 3][rows, :, k % 3])  # int32 -> float64
    c22 *= count  # N Suu − Su², in place of Suu
    c22 -= np.multiply(su, su, out=tmp)
    c11 *= count  # N Svv − Sv², in place of Svv
    c11 -= np.multiply(sv, sv, out=tmp)
    c12 *= count  # Su Sv − N Suv, in place of Suv
    np.subtract(np.multiply(su, sv, out=tmp), c12, out=c12)
    _mul_sub(c11, c22, c12, c12, det, tmp)
    bound = np.add(c11, c22, out=tmp)
    bound *= count
    ill = np.less_equal(det, bound)
    ill &= count > 0
    b3, g1, g2 = sums
    for s, g in ((su, g1), (sv, g2)):  # g = N Σ uc/z − Su Σ 1/z, in place of Σ uc/z
        g *= count
        g -= np.multiply(s, b3, out=tmp)
    a_ = np.multiply(c11, g1, out=c11)
    a_ += np.multiply(c12, g2, out=tmp)
    b_ = np.multiply(c22, g2, out=c22)
    b_ += np.multiply(c12, g1, out=tmp)
    K = frame.K
    cx = K[0, 2] - (frame.u[0, 0] - frame.uc[0, 0])  # in uc, vc coordinates
    cy = K[1, 2] - (frame.v[0, 0] - frame.vc[0, 0])
    np.multiply(det, b3, out=n[2])
    for s, c, m in ((su, cx, a_), (sv, cy, b_)):
        np.subtract(s, np.multiply(count, c, out=tmp), out=tmp)
        tmp *= m
        n[2] -= tmp
    np.multiply(a_, count, out=n[0])
    n[0] *= K[0, 0]
    np.multiply(b_, count, out=n[1])
    n[1] *= K[1, 1]
    return ill


def _mul_sub(a: F64, b: F64, c: F64, d: F64, out: F64, tmp: F64) -> F64:
    """``out = a·b − c·d`` without temporaries."""
    np.multiply(a, b, out=out)
    out -= np.multiply(c, d, out=tmp)
    return out


# --- the original's sums and solve, for the windows where its rounding decides ---------


def _original_terms(z_cm: F64, u: F64, v: F64, K: F64) -> list[F64]:
    """The original's per-pixel terms of the normal equations, for points at pixels
    (u, v) numbered from 1 with depth ``z_cm``: ``x/z``… with its operation order, from
    depth that went cm → m → cm as in the original (which passes metres to its normal
    routine, and the round trip is not always the identity).  Order: a1 a2 a3 a4 a5 b1
    b2 b3 of :func:`_solve_as_original` (a6, the point count, is left out)."""
    z = (z_cm / 100.0) * 100.0
    x = (u - K[0, 2]) * z / K[0, 0]
    y = (v - K[1, 2]) * z / K[1, 1]
    x_z, y_z, zz = x / z, y / z, z * z
    return [x_z**2, x_z * y_z, x_z, y_z**2, y_z, x / zz, y / zz, 1.0 / z]


def _solve_as_original(a: list[F64], count: F64) -> Normals:
    """Unit normals (not oriented) from summed terms ``a`` (see :func:`_original_terms`),
    with the original's operations in its order: the adjugate of the symmetric
    ``[[a1 a2 a3] [a2 a4 a5] [a3 a5 a6]]`` times b (the determinant only scales n);
    NaN where that is 0."""
    a1, a2, a3, a4, a5, b1, b2, b3 = a
    a6 = count
    c11 = a4 * a6 - a5 * a5
    c12 = -(a2 * a6 - a3 * a5)
    c13 = a2 * a5 - a3 * a4
    c22 = a1 * a6 - a3 * a3
    c23 = -(a1 * a5 - a2 * a3)
    c33 = a1 * a4 - a2 * a2
    n1 = c11 * b1 + c12 * b2 + c13 * b3
    n2 = c12 * b1 + c22 * b2 + c23 * b3
    n3 = c13 * b1 + c23 * b2 + c33 * b3
    with np.errstate(invalid="ignore", divide="ignore"):
        norm = np.sqrt(n1 * n1 + n2 * n2 + n3 * n3)
        return n1 / norm, n2 / norm, n3 / norm


def _ordered_sums(values: F64, starts: NDArray[np.intp], full: NDArray[np.bool_]) -> F64:
    """Sums (G, T) of the runs of ``values`` (P, T) that begin at ``starts``, each added
    one after the other from the first (numpy's own reductions add pairwise), as the
    original's direct sums add a run's elements with a +0 for each one that is missing:
    a +0 changes no bit of a sum, but turns a running −0 into +0 (−0 is IEEE addition's
    neutral element), so a run with a missing element (``full`` False) starts from +0,
    the others from −0.  The runs are taken longest first, so that the ones still going
    at each step are a prefix."""
    lengths = np.diff(np.append(starts, len(values)))
    order = np.argsort(-lengths, kind="stable")
    lengths, first = lengths[order], starts[order]
    acc = np.repeat(np.where(full[order], -0.0, 0.0)[:, None], values.shape[1], axis=1)
    ends = np.searchsorted(-lengths, -np.arange(int(lengths[0]) if len(order) else 0), side="left")
    for k, going in enumerate(ends):  # going: the runs longer than k
        acc[:going] += values[first[:going] + k]
    out = np.empty_like(acc)
    out[order] = acc
    return out


def _run_starts(keys: NDArray[np.intp]) -> NDArray[np.intp]:
    """Where each run of equal consecutive ``keys`` begins."""
    return np.flatnonzero(np.append(True, keys[1:] != keys[:-1]))


def _original_normals_at(frame: _Frame, r: int, pixels: NDArray[np.intp]) -> F64:
    """The original's unit normals (3, len(pixels)), not oriented, of the windows centred
    on ``pixels`` (flat indices), bit for bit."""
    out = np.empty((3, len(pixels)))
    for c0 in range(0, len(pixels), _EXACT_CHUNK):
        sums, count = _original_sums_at(frame, r, pixels[c0 : c0 + _EXACT_CHUNK])
        out[:, c0 : c0 + len(count)] = _solve_as_original(list(sums.T), count)
    return out


def _original_sums_at(frame: _Frame, r: int, pixels: NDArray[np.intp]) -> tuple[F64, F64]:
    """The original's window sums (len(pixels), 8) of the terms of
    :func:`_original_terms`, and the windows' valid pixel counts, bit for bit.

    The original sums each term over a window row by row, left to right, then the row
    sums top to bottom, with zeros for missing and outside pixels.  The same sums follow
    from the valid pixels alone (see :func:`_ordered_sums` for the zeros): those of each
    window are listed row by row and summed as runs, then their row sums."""
    h, w = frame.z.shape
    k = 2 * r + 1
    width = w + 2 * r
    padded = np.zeros((h + 2 * r, width), dtype=bool)
    padded[r : r + h, r : r + w] = frame.valid
    offsets = (np.arange(k)[:, None] * width + np.arange(k)).ravel()
    rows, cols = np.divmod(pixels, w)
    inside = padded.reshape(-1)[(rows * width + cols)[:, None] + offsets]
    win, pos = np.divmod(np.flatnonzero(inside), k * k)  # valid pixels, raster order
    pr, pc = rows[win] + pos // k - r, cols[win] + pos % k - r
    terms = np.stack(_original_terms(frame.z[pr, pc], pc + 1.0, pr + 1.0, frame.K), axis=1)
    row_starts = _run_starts(win * k + pos // k)
    row_full = np.diff(np.append(row_starts, len(win))) == k
    win_starts = _run_starts(win[row_starts])
    win_full = np.diff(np.append(win_starts, len(row_starts))) == k
    sums = _ordered_sums(_ordered_sums(terms, row_starts, row_full), win_starts, win_full)
    out = np.zeros((len(pixels), terms.shape[1]))  # windows without a valid pixel: +0
    out[win[row_starts[win_starts]]] = sums
    return out, np.bincount(win, minlength=len(pixels)).astype(np.float64)


def _box_sum_direct(img: F64, r: int) -> F64:
    """:func:`_box_sum` in the original's order: along each row left to right, then
    the row sums top to bottom, with zero padding (MATLAB's direct ``filter2``)."""
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


def _direct_normals(z_cm: F64, missing: NDArray[np.bool_], K: F64, r: int) -> F64:
    """Unit normals (3, H, W), not oriented, by the original algorithm, for input the
    fast fits do not take (see :func:`_suits_fast_fits`).  Missing points become NaN and
    every NaN term 0, as in the original: a valid depth of 0 makes 0/0 terms 0 and
    ``1/z`` infinite, which the original carries on with."""
    h, w = z_cm.shape
    u = np.arange(1, w + 1, dtype=np.float64)[None, :]
    v = np.arange(1, h + 1, dtype=np.float64)[:, None]
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        terms = _original_terms(np.where(missing, np.nan, z_cm), u, v, K)
        sums = [_box_sum_direct(np.where(np.isnan(t), 0.0, t), r) for t in terms]
        count = _box_sum_direct((~missing).astype(np.float64), r)
        return np.array(_solve_as_original(sums, count))


# --- orientation, gravity ---------------------------------------------------------


def _point_cloud(z_cm: F64, frame: _Frame, rows: slice, out: F64) -> tuple[F64, F64, F64]:
    """Camera coordinates (cm) of image ``rows`` with depth ``z_cm``, x and y into
    ``out[0]``, ``out[1]``, with the original's operation order ``((u - cx) * Z) / fx``."""
    K = frame.K
    x = np.multiply(frame.u - K[0, 2], z_cm, out=out[0])
    x /= K[0, 0]
    y = np.multiply(frame.v[rows] - K[1, 2], z_cm, out=out[1])
    y /= K[1, 1]
    return x, y, z_cm


def _flips(n: F64, frame: _Frame, rows: slice, sc: F64) -> NDArray[np.bool_]:
    """Where a normal (of image ``rows``) is negated by the original's orientation: it
    first makes ``n_z >= 0``, then ``n · p >= 0``, p the pixel's point.  Negation is
    exact and commutes with the rounding of the dot product, so that is one flip: where
    ``n · p < 0``, or ``n · p == 0`` and ``n_z < 0``.  ``n · p`` is computed as ``z (n ·
    [(u − cx)/fx, (v − cy)/fy, 1])``: its sign can only differ from the original's where
    it is within rounding of 0 but not 0 (the fitted plane passing within ~1e-13 of the
    camera), and where z = 0 (missing) it is 0 alike.  Uses ``sc[0:2]``."""
    K = frame.K
    d, tmp = sc[0], sc[1]
    with np.errstate(invalid="ignore", over="ignore"):
        np.multiply(n[0], (frame.u - K[0, 2]) / K[0, 0], out=d)
        d += np.multiply(n[1], (frame.v[rows] - K[1, 2]) / K[1, 1], out=tmp)
        d += n[2]
        d *= frame.z[rows]
    flip = d < 0.0
    on_plane = d == 0.0
    if on_plane.any():
        flip |= on_plane & (n[2] < 0)
    return flip


def surface_normals(z_cm: ArrayLike, missing: ArrayLike, K: ArrayLike, radius: int) -> F64:
    """Unit surface normals (H, W, 3) by least-squares plane fits over square windows.

    Missing pixels are excluded from every fit; pixels whose fit is undefined (no valid
    point in the window) are NaN.  Normals are oriented so that ``n · p >= 0`` (the
    original code's convention).
    """
    z = np.ascontiguousarray(z_cm, dtype=np.float64)
    whole = isinstance(radius, (int, np.integer)) and not isinstance(radius, bool)
    if z.ndim != 2 or not whole or radius < 0:
        raise AimsError(f"surface_normals: a 2-D depth and a radius >= 0 are needed, got shape "
                        f"{z.shape} and radius {radius!r}.")
    ws = _workspace(z.shape)
    frame = _frame(z, np.asarray(missing, dtype=bool), np.asarray(K, dtype=np.float64), ws)
    n = _unit_normals(frame, radius, "normals")
    for rows in _pieces(z.shape[0]):
        flip = _flips(n[:, rows], frame, rows, ws.scratch(rows.stop - rows.start))
        np.negative(n[:, rows], out=n[:, rows], where=flip)
    return np.ascontiguousarray(np.moveaxis(n, 0, -1))


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
    most ``|Δy|`` when y does.  So after an exact count for ``y_ref``, every normal's
    margin (the distance of ``|n·y_ref|`` to the nearest threshold) is kept, and the
    normals with a small margin are listed, with a copy of their columns.  Each later
    estimate ``y`` re-checks only the listed normals whose margin is within reach
    (``|y − y_m|``, ``y_m`` the estimate the margin was measured at): it recomputes their
    votes exactly, adds the changes to the sum, and measures their margins again at ``y``.
    Should gravity move beyond the list, the list grows, or every vote is counted again
    when that is cheaper.  How far to list is guessed from the estimate's last move (4×
    it); while it still moves further than _VOTE_BAND allows, listing would not pay, and
    each estimate gets a full count.  The votes are thus exactly those of a full count;
    the sum differs from one in the last bits (order of additions), which moves gravity
    by ~1e-16.
    """

    def __init__(
        self, nn: F64, tol_deg: float, buf: _GravityBuffers, prior: _VoteTally | None = None
    ):
        """``prior``: the tally of a previous tolerance, whose sum and votes are updated
        rather than summed anew."""
        self.nn, self.buf = nn, buf
        self.cos_t = np.cos(np.deg2rad(tol_deg))
        self.sin_t = np.sin(np.deg2rad(tol_deg))
        self.y_ref: F64 | None = None
        self.sum = None if prior is None else prior.sum
        self.votes = buf.votes  # a prior's votes are there already

    def _votes(self, sim: F64, out: NDArray[np.int8] | None = None) -> NDArray[np.int8]:
        """+1 wall (nearly perpendicular to y), −1 floor (nearly parallel), else 0."""
        return np.subtract(sim < self.sin_t, sim > self.cos_t, out=out, dtype=np.int8)

    def _margin(self, sim: F64, tmp: F64 | None = None) -> F64:
        """Distance of each ``|n·y|`` to the nearest threshold (``sim`` is overwritten;
        ``tmp``: scratch of its size)."""
        if self.sin_t != self.cos_t:
            other = np.abs(np.subtract(sim, self.sin_t, out=tmp), out=tmp)
            margin = np.abs(np.subtract(sim, self.cos_t, out=sim), out=sim)
            return np.minimum(margin, other, out=margin)
        return np.abs(np.subtract(sim, self.cos_t, out=sim), out=sim)

    def _count(self, y: F64, step: float) -> bool:
        """Count every vote for ``y`` exactly and return whether any changed; list the
        normals within 4 ``step`` (the estimate's last move) of a threshold, unless
        that is beyond _VOTE_BAND.

        When the sum of earlier votes is known, only the votes that changed are added
        to it, unless so many changed that summing all again is cheaper."""
        sim = _abs_dot(y, self.nn, out=self.buf.sim)
        if self.sum is None:
            self._votes(sim, out=self.votes)
            self.sum = _outer_sum(self.nn, self.votes, self.buf.weighted)
            changed = True
        else:
            new = self._votes(sim, out=self.buf.recount)
            which = np.flatnonzero(new != self.votes)
            changed = len(which) > 0
            if 4 * len(which) > len(new):
                self.votes[...] = new
                self.sum = _outer_sum(self.nn, self.votes, self.buf.weighted)
            elif changed:
                self._add_changes(which, new[which])
        band = max(_VOTE_BAND[0], 4 * step)
        if band > _VOTE_BAND[1]:
            self.y_ref = None
            return changed
        self.margin = self._margin(sim, self.buf.scratch)
        self.y_ref = y
        self.ys = [y]  # the estimates that listed margins were measured at
        self._list(np.flatnonzero(self.margin <= band), None, None)
        self.listed_up_to = band
        return changed

    def _list(
        self, listed: NDArray[np.intp], margin: F64 | None, at: NDArray[np.intp] | None
    ) -> None:
        """List the normals ``listed`` with their margins and where those were measured
        (None: as just counted)."""
        self.listed = listed
        self.listed_nn = np.take(self.nn, listed, axis=1)  # 3× faster than nn[:, idx]
        self.listed_margin = self.margin[listed] if margin is None else margin
        self.listed_at = np.zeros(len(listed), dtype=np.intp) if at is None else at  # into ys

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
        self._list(listed, margin, at)
        self.listed_up_to = limit
        return True

    def matrix(self, y: F64, step: float = np.inf) -> tuple[F64, bool]:
        """``Σ vote · n nᵀ`` (3×3) with the votes for gravity estimate ``y``, and whether
        it differs from the previous call's (False: the same votes, the same sum);
        ``step``: how far the estimate moved last."""
        if self.y_ref is None:
            changed = self._count(y, step)
            return self.sum, changed
        drift = float(np.linalg.norm(y - self.y_ref)) + _VOTE_SLACK
        if drift > self.listed_up_to and not self._list_more(1.5 * drift):  # room to drift
            changed = self._count(y, step)
            return self.sum, changed
        reach = np.array([np.linalg.norm(y - y_m) for y_m in self.ys]) + _VOTE_SLACK
        check = np.flatnonzero(self.listed_margin <= reach[self.listed_at])
        part = np.take(self.listed_nn, check, axis=1)
        sim = _abs_dot(y, part)
        new = self._votes(sim)
        self.listed_margin[check] = self._margin(sim)
        self.listed_at[check] = len(self.ys)
        self.ys.append(y)
        idx = self.listed[check]
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
            part = np.take(self.nn, idx, axis=1)
        delta = new - self.votes[idx]
        self.sum = self.sum + (part * delta) @ part.T
        self.votes[idx] = new


class _GravityBuffers:
    """The arrays of a gravity estimate from n normals: in the frame's workspace when
    there is one (see :class:`_Workspace`)."""

    def __init__(self, n: int, ws: _Workspace | None = None):
        def flat(name: str, dtype: type = np.float64) -> np.ndarray:
            return np.empty(n, dtype) if ws is None else ws(name, dtype=dtype).reshape(-1)[:n]

        self.sim, self.scratch = flat("g_sim"), flat("g_scratch")  # |n·y|, its margins
        self.votes, self.recount = flat("g_votes", np.int8), flat("g_recount", np.int8)
        chunk = min(_CHUNK, n)  # a chunk of normals times their votes, see _outer_sum
        self.weighted = np.empty((3, chunk)) if ws is None else ws.array("g_weighted", (3, chunk))


def _gravity_from(nn: F64, ws: _Workspace | None = None) -> F64:
    """Gravity from unit normals given as a (3, N) array, none NaN (see
    :func:`estimate_gravity`).

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
    buf = _GravityBuffers(nn.shape[1], ws)
    tally: _VoteTally | None = None
    step = np.inf  # how far the last estimate moved
    for tol_deg, iters in _GRAVITY_SCHEDULE:
        tally = _VoteTally(nn, tol_deg, buf, tally)
        for _ in range(iters):
            a, changed = tally.matrix(y, step)
            if not changed:
                break
            y, last = _next_estimate(a, y), y
            step = float(np.linalg.norm(y - last))
    return y


def _next_estimate(a: F64, y: F64) -> F64:
    """The eigenvector of ``a``'s smallest eigenvalue, on ``y``'s side."""
    evals, evecs = np.linalg.eigh(a)  # a is symmetric: eigh, like MATLAB's eig
    new = evecs[:, np.argmin(evals)]
    # sign(0) would zero the estimate (only when no normal votes); keep the side.
    return new * (np.sign(y @ new) or 1.0)


def _gravity_direct(nn: F64) -> F64:
    """:func:`_gravity_from` the original way, gathering both sets every iteration.

    Kept for normals with inf components, where ``vote × n nᵀ`` would make ``0 × inf``
    NaN of normals that do not vote."""
    rows = nn.T
    y = np.array([0.0, 1.0, 0.0])
    for tol_deg, iters in _GRAVITY_SCHEDULE:
        for _ in range(iters):
            with np.errstate(invalid="ignore"):
                sim = np.abs(rows @ y)
            nf = rows[sim > np.cos(np.deg2rad(tol_deg))]
            nw = rows[sim < np.sin(np.deg2rad(tol_deg))]
            y = _next_estimate(nw.T @ nw - nf.T @ nf, y)
    return y


def _defined(n: F64, ws: _Workspace | None = None) -> F64:
    """The normals of a (3, H, W) field as (3, N) columns, NaN (undefined) ones left out,
    each component contiguous (into the workspace when given)."""
    nn = n.reshape(3, -1)
    keep = ~np.isnan(nn[0])
    count = int(np.count_nonzero(keep))
    if count == keep.size:
        return nn
    out = np.empty((3, count)) if ws is None else ws("defined", 3).reshape(3, -1)[:, :count]
    for k in range(3):
        np.compress(keep, nn[k], out=out[k])
    return out


def estimate_gravity(normals: ArrayLike) -> F64:
    """Unit gravity direction (camera coordinates, y pointing down) from a normal field.

    Hard assignment, as in the original: normals within the tolerance of the current
    estimate vote for "parallel" (floors, table tops), those within the tolerance of
    perpendicular vote for "perpendicular" (walls); the new estimate is the unit vector
    minimising ``sum (n·y)^2 over walls - sum (n·y)^2 over floors``, the eigenvector of
    the smallest eigenvalue, its sign chosen to agree with the previous estimate.
    """
    nn = np.asarray(normals, dtype=np.float64).reshape(-1, 3)
    return _gravity_from(_defined(np.ascontiguousarray(nn.T)))


# --- height and encoding ------------------------------------------------------------


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


def _height_cm(frame: _Frame, g: F64) -> F64:
    """Height (cm) along gravity, before subtracting the lowest point: the y coordinate
    after rotating gravity onto the y axis (R' in the original), negated."""
    rot = _rotation_to(np.array([0.0, 1.0, 0.0]), g).T
    identity = np.array_equal(rot, np.eye(3))
    height = frame.ws("height")
    for rows in _pieces(frame.z.shape[0]):
        sc = frame.ws.scratch(rows.stop - rows.start)
        x, y, z = _point_cloud(frame.z[rows], frame, rows, sc)
        out = height[rows]
        if identity:
            np.negative(y, out=out)
            continue
        np.multiply(rot[1, 0], x, out=out)
        out += np.multiply(rot[1, 1], y, out=y)
        out += np.multiply(rot[1, 2], z, out=y)
        np.negative(out, out=out)
    return height


def _round_into(x: F64, out: NDArray[np.uint8], low: bool = True, high: bool = True) -> None:
    """:func:`matlab_uint8` of ``x`` into ``out``, using ``x`` as scratch; ``low`` /
    ``high``: whether ``x`` may be NaN or round below 0 / above 255 (else that clamp
    is skipped).  ``floor(x + 0.5)``: once clamped at 0, the cast's truncation is it."""
    x += 0.5
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
    ``fmax`` takes NaN to 0 on the way; what is left is at least 0, where truncation is
    floor.
    """
    r = np.array(x, dtype=np.float64)  # a copy: _round_into works in place
    out = np.empty(r.shape, dtype=np.uint8)
    _round_into(r, out)
    return out


def _angle_deg(n: F64, flip: NDArray[np.bool_], g: F64, out: F64, tmp: F64) -> F64:
    """Angle (degrees, into ``out``) between each oriented normal and gravity; 180 where
    there is no normal.  Negating a normal negates its dot product with g exactly, so the
    orientation is applied to the cosine.  ``np.degrees`` is exactly this product, in a
    slower loop."""
    cos_a = out
    with np.errstate(invalid="ignore"):
        np.multiply(n[0], g[0], out=cos_a)
        cos_a += np.multiply(n[1], g[1], out=tmp)
        cos_a += np.multiply(n[2], g[2], out=tmp)
    np.negative(cos_a, out=cos_a, where=flip)
    # MATLAB's max/min skip NaN, so pixels without a normal end up at acos(-1) = 180°.
    np.minimum(np.fmax(cos_a, -1.0, out=cos_a), 1.0, out=cos_a)
    np.arccos(cos_a, out=cos_a)
    cos_a *= 180.0 / np.pi
    return cos_a


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
    ws = _workspace(d.shape)
    z = np.multiply(d, 100.0, out=ws("z"))  # the original works in centimetres
    frame = _frame(z, miss, K, ws)
    fine = _unit_normals(frame, _NORMAL_RADIUS, "fine")
    g = _gravity_from(_defined(_unit_normals(frame, _GRAVITY_RADIUS, "coarse"), ws), ws)
    return _encode(frame, fine, g)


def _encode(frame: _Frame, fine: F64, g: F64) -> NDArray[np.uint8]:
    """The three channels, rounded like MATLAB: disparity, height above the lowest point,
    and the angle of the fine normals to gravity, ``+ 128 − 90`` as in the original."""
    ws = frame.ws
    height = _height_cm(frame, g)
    lowest = height.min()
    if lowest > -90:  # the floor is probably out of view
        lowest = -130.0
    out = np.empty((*frame.z.shape, 3), dtype=np.uint8)
    for rows in _pieces(frame.z.shape[0]):
        sc = ws.scratch(rows.stop - rows.start)
        planes = ws("planes", 3, dtype=np.uint8)[:, rows]
        # Disparity is in (0, 310] and the angle in [38, 218]: no NaN, fewer clamps.
        disparity = np.maximum(frame.z[rows], 100.0, out=sc[0])
        _round_into(np.divide(31000.0, disparity, out=disparity), planes[0], low=False)
        _round_into(np.subtract(height[rows], lowest, out=sc[0]), planes[1])
        n = fine[:, rows]
        angle = _angle_deg(n, _flips(n, frame, rows, sc), g, out=sc[5], tmp=sc[6])
        angle += 128
        angle -= 90
        _round_into(angle, planes[2], low=False, high=False)
        cv2.merge(list(planes), dst=out[rows])
    return out
