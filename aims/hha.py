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
"""

from __future__ import annotations

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


def _point_cloud(
    z_cm: NDArray[np.float64], K: NDArray[np.float64]
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    """Back-project a depth map (cm) to camera coordinates (cm).

    Pixel centres are numbered from 1, as in MATLAB's ``meshgrid(1:W, 1:H)``: the NYU
    intrinsics were calibrated with that convention, so starting at 0 would shift the
    cloud by one pixel.  The operation order ``((u - cx) * Z) / fx`` is MATLAB's.
    """
    h, w = z_cm.shape
    u = np.arange(1, w + 1, dtype=np.float64)[None, :]
    v = np.arange(1, h + 1, dtype=np.float64)[:, None]
    x = (u - K[0, 2]) * z_cm / K[0, 0]
    y = (v - K[1, 2]) * z_cm / K[1, 1]
    return x, y, z_cm


def _box_sum(img: NDArray[np.float64], r: int) -> NDArray[np.float64]:
    """Sum over a (2r+1)² window, zero outside the image (MATLAB ``filter2(ones, f)``).

    Zero padding (not replication) is what the original code does: near the border the
    plane is fitted to fewer points rather than to invented ones.  Direct separable
    summation (no running/integral sums) keeps the rounding error local, like MATLAB's
    direct convolution; on the NYU oracle integral images and ``cv2.boxFilter`` happen to
    give the same bytes too, but the direct sum is already fast enough (~0.2 s/frame).
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


def surface_normals(
    z_cm: NDArray[np.float64],
    missing: NDArray[np.bool_],
    K: NDArray[np.float64],
    radius: int,
) -> NDArray[np.float64]:
    """Unit surface normals (H, W, 3) by least-squares plane fits over square windows.

    A plane not through the camera is ``n·P = 1``; dividing by z makes it linear in the
    image-plane coordinates, ``[x/z, y/z, 1] · n = 1/z``, so the 3×3 normal equations of
    every window are just box sums of 9 per-pixel products, solved with the adjugate
    (the determinant only scales n, which is normalised anyway), as in the original. Pixels whose
    fit is undefined (too few valid points) are NaN.  Normals are oriented so that
    ``n · p >= 0`` (the original code's convention).
    """
    # The original passes depth in metres to its normal routine, which multiplies by 100
    # again: reproduce the round trip, it is not always the identity in floating point.
    z_cm = (z_cm / 100.0) * 100.0
    xf, yf, zf = _point_cloud(z_cm, K)
    x = np.where(missing, np.nan, xf)
    y = np.where(missing, np.nan, yf)
    z = np.where(missing, np.nan, zf)

    x_z = x / z
    y_z = y / z
    zz = z * z
    raw = [
        x_z**2,
        x_z * y_z,
        x_z,
        y_z**2,
        y_z,
        np.where(np.isnan(z), np.nan, 1.0),
        x / zz,
        y / zz,
        1.0 / z,
    ]
    # Missing points contribute nothing to any window (NaN -> 0 before summing).
    a = [_box_sum(np.where(np.isnan(c), 0.0, c), radius) for c in raw]
    a1, a2, a3, a4, a5, a6, b1, b2, b3 = a

    # Adjugate of the symmetric matrix [[a1 a2 a3] [a2 a4 a5] [a3 a5 a6]], with the
    # original's operation order (it decides the last bits, and so rare rounding ties).
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
        n1 = n1 / norm
        n2 = n2 / norm
        n3 = n3 / norm

        # Orient: first make n_z >= 0, then flip so that n points along the viewing ray.
        s = np.sign(n3)
        s[s == 0] = 1
        n1, n2, n3 = n1 * s, n2 * s, n3 * s
        s = np.sign(n1 * xf + n2 * yf + n3 * zf)
        s[np.isnan(s) | (s == 0)] = 1
    return np.stack([n1 * s, n2 * s, n3 * s], axis=-1)


def estimate_gravity(normals: NDArray[np.float64]) -> NDArray[np.float64]:
    """Unit gravity direction (camera coordinates, y pointing down) from a normal field.

    Hard assignment, as in the original: normals within the tolerance of the current
    estimate vote for "parallel" (floors, table tops), those within the tolerance of
    perpendicular vote for "perpendicular" (walls); the new estimate is the unit vector
    minimising ``sum (n·y)^2 over walls - sum (n·y)^2 over floors``, the eigenvector of
    the smallest eigenvalue, its sign chosen to agree with the previous estimate.
    """
    nn = normals.reshape(-1, 3)
    nn = nn[~np.isnan(nn[:, 0])]
    y = np.array([0.0, 1.0, 0.0])
    if len(nn) == 0:  # nothing to estimate from (e.g. all depth missing): keep camera y
        return y
    for thresh_deg, iters in _GRAVITY_SCHEDULE:
        cos_t = np.cos(np.deg2rad(thresh_deg))
        sin_t = np.sin(np.deg2rad(thresh_deg))
        for _ in range(iters):
            sim = np.abs(nn @ y)
            nf = nn[sim > cos_t]
            nw = nn[sim < sin_t]
            a = nw.T @ nw - nf.T @ nf
            evals, evecs = np.linalg.eigh(a)  # a is symmetric: eigh, like MATLAB's eig
            new = evecs[:, np.argmin(evals)]
            # sign(0) would zero the estimate (only when no normal votes); keep the side.
            y = new * (np.sign(y @ new) or 1.0)
    return y


def _rotation_to(yi: NDArray[np.float64], yf: NDArray[np.float64]) -> NDArray[np.float64]:
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


def matlab_uint8(x: ArrayLike) -> NDArray[np.uint8]:
    """Cast to uint8 like MATLAB's ``uint8()``: round half away from zero, saturate to
    0..255, NaN -> 0.

    numpy's ``round`` is half-to-even and ``astype(uint8)`` truncates and wraps, either
    of which changes pixels of the reference output.
    """
    x = np.asarray(x, dtype=np.float64)
    r = np.where(x >= 0, np.floor(x + 0.5), np.ceil(x - 0.5))
    r = np.nan_to_num(r, nan=0.0)
    return np.clip(r, 0, 255).astype(np.uint8)


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
    d = np.asarray(depth_m)
    if d.ndim != 2:
        raise AimsError(f"compute_hha: depth must be a 2-D (H, W) array, got shape {d.shape}.")
    if d.size == 0:
        raise AimsError("compute_hha: depth array is empty.")
    if not np.issubdtype(d.dtype, np.number) or np.iscomplexobj(d):
        raise AimsError(f"compute_hha: depth must be real-valued, got dtype {d.dtype}.")
    d = d.astype(np.float64)
    if not np.all(np.isfinite(d)) or np.any(d < 0):
        raise AimsError("compute_hha: depth must be finite and >= 0 (0 = missing).")
    K = np.asarray(intrinsics, dtype=np.float64)
    if K.shape != (3, 3):
        raise AimsError(f"compute_hha: intrinsics must be a 3x3 matrix, got shape {K.shape}.")
    if missing is None:
        miss = d == 0
    else:
        miss = np.asarray(missing, dtype=bool)
        if miss.shape != d.shape:
            raise AimsError(
                f"compute_hha: missing mask shape {miss.shape} != depth shape {d.shape}."
            )

    z = d * 100.0  # the original works in centimetres
    x, y, _ = _point_cloud(z, K)
    n_fine = surface_normals(z, miss, K, _NORMAL_RADIUS)
    n_coarse = surface_normals(z, miss, K, _GRAVITY_RADIUS)
    g = estimate_gravity(n_coarse)

    # Height: y coordinate after rotating gravity onto the y axis (R' in the original).
    rot = _rotation_to(np.array([0.0, 1.0, 0.0]), g).T
    if np.array_equal(rot, np.eye(3)):
        height = -y
    else:
        height = -(rot[1, 0] * x + rot[1, 1] * y + rot[1, 2] * z)
    lowest = height.min()
    if lowest > -90:
        lowest = -130.0
    height = height - lowest

    with np.errstate(invalid="ignore"):
        cos_a = n_fine[..., 0] * g[0] + n_fine[..., 1] * g[1] + n_fine[..., 2] * g[2]
        # MATLAB's max/min skip NaN, so pixels without a normal end up at acos(-1) = 180°.
        cos_a = np.clip(np.nan_to_num(cos_a, nan=-1.0), -1.0, 1.0)
    angle = np.degrees(np.arccos(cos_a))

    disparity = 31000.0 / np.maximum(z, 100.0)
    return np.stack(
        [matlab_uint8(disparity), matlab_uint8(height), matlab_uint8(angle + 128 - 90)],
        axis=-1,
    )
