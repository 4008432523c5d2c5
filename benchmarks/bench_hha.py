"""Time :func:`aims.hha.compute_hha` against today's implementation, side by side.

    python benchmarks/bench_hha.py [--repeats 7] [--threads 1] [--synthetic-only]

``reference_compute_hha`` below is ``aims/hha.py`` as it was before the speed-up,
copied verbatim (only the entry point is renamed): it reproduces Gupta's MATLAB HHA bit
for bit on the NYUv2 oracle frame and is the yardstick for both speed and output. Each
frame goes through both implementations alternately, ``--repeats`` times, so that a
loaded machine slows both alike. The table gives, per frame, the median seconds of each
(wall clock), the speed-up in wall-clock and in CPU time (the latter does not count
time the process spent waiting for a busy CPU), the spread of the wall-clock speed-up
over the repeats (each repeat times both, so its ratio is one paired sample: the range
shows the noise of a busy machine), and how far the outputs agree (pixels with all three
channels equal, max difference).

``--threads 1`` (the default) pins BLAS and OpenCV to one thread: the cost per core,
which is what each of ``aims prepare``'s worker processes pays, and a fair comparison
(today's code spends its gravity estimate in BLAS, the new code its box sums in
OpenCV). ``--threads 0`` leaves both libraries their own defaults.

Frames: the NYUv2 oracle ``<shared data>/hha/0.png`` (``AIMS_SHARED_DATA`` or the
``shared/data`` folder beside the checkout; skipped when absent), with its filled-depth
and its raw-depth missing mask, whose MATLAB outputs (``matlab_hha.png``, ``hha.png``)
both implementations are also compared with; and three generated 640×480 scenes with
Kinect-like noise and holes. Exit status 1 when the new outputs agree less than the HHA
contract allows (≥ 99.99 % of pixels equal, max difference 1) with today's on any frame,
or with MATLAB's on an oracle frame.
"""

from __future__ import annotations

import os
import sys


def _threads_from_argv(argv: list[str]) -> int:
    """``--threads`` from the command line, read before numpy is imported: BLAS takes
    its thread count from the environment at import time."""
    for i, arg in enumerate(argv):
        if arg == "--threads" and i + 1 < len(argv):
            return int(argv[i + 1])
        if arg.startswith("--threads="):
            return int(arg.split("=", 1)[1])
    return 1


if __name__ == "__main__" and _threads_from_argv(sys.argv[1:]) > 0:
    for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[_var] = str(_threads_from_argv(sys.argv[1:]))

import argparse  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
from numpy.typing import ArrayLike, NDArray  # noqa: E402

from aims import hha  # noqa: E402
from aims.errors import AimsError  # noqa: E402

# --- reference: aims/hha.py as of 4e30c14 (last changed in f1edf5d), verbatim except
# `compute_hha` -> `reference_compute_hha`

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


def reference_compute_hha(
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


# --- frames ------------------------------------------------------------------------

#: Minimum agreement between today's and the new implementation (the HHA contract).
MIN_EQUAL_FRACTION = 0.9999
MAX_ABS_DIFF = 1


@dataclass(frozen=True)
class Frame:
    """One benchmark input: depth in metres, an optional missing mask, MATLAB's outputs."""

    name: str
    depth_m: NDArray[np.float64]
    missing: NDArray[np.bool_] | None = None
    matlab: NDArray[np.uint8] | None = None


def _shared_hha_dir() -> Path:
    root = os.environ.get("AIMS_SHARED_DATA")
    base = Path(root) if root else Path(__file__).resolve().parents[2] / "shared" / "data"
    return base / "hha"


def _read_depth_m(path: Path) -> NDArray[np.float64]:
    import cv2

    raw = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if raw is None or raw.dtype != np.uint16 or raw.ndim != 2:
        sys.exit(f"bench_hha: {path} is not a 16-bit single-channel PNG")
    return raw / 1e4  # 0.1 mm -> m


def _read_rgb(path: Path) -> NDArray[np.uint8] | None:
    import cv2

    bgr = cv2.imread(str(path), cv2.IMREAD_UNCHANGED) if path.is_file() else None
    return None if bgr is None else np.ascontiguousarray(bgr[..., ::-1])


def oracle_frames(folder: Path) -> list[Frame]:
    """The NYUv2 oracle frame, with the filled-depth and the raw-depth missing masks."""
    if not (folder / "0.png").is_file():
        return []
    depth = _read_depth_m(folder / "0.png")
    frames = [Frame("nyuv2 oracle", depth, None, _read_rgb(folder / "matlab_hha.png"))]
    if (folder / "0_raw.png").is_file():
        raw_missing = _read_depth_m(folder / "0_raw.png") == 0
        matlab_raw = _read_rgb(folder / "hha.png")
        frames.append(Frame("nyuv2 oracle, raw mask", depth, raw_missing, matlab_raw))
    return frames


def _rays(h: int, w: int) -> NDArray[np.float64]:
    """Unit-depth viewing rays (H, W, 3) of the NYU colour camera, MATLAB pixel numbering."""
    K = hha.NYU_COLOR_INTRINSICS
    u, v = np.meshgrid(np.arange(1, w + 1, dtype=np.float64), np.arange(1, h + 1, dtype=np.float64))
    return np.stack([(u - K[0, 2]) / K[0, 0], (v - K[1, 2]) / K[1, 1], np.ones_like(u)], axis=-1)


def _camera_rotation(pitch_deg: float, roll_deg: float) -> NDArray[np.float64]:
    """World-to-camera rotation of a camera pitched down and rolled (world y points down)."""
    p, r = np.deg2rad(pitch_deg), np.deg2rad(roll_deg)
    rx = np.array([[1, 0, 0], [0, np.cos(p), -np.sin(p)], [0, np.sin(p), np.cos(p)]])
    rz = np.array([[np.cos(r), -np.sin(r), 0], [np.sin(r), np.cos(r), 0], [0, 0, 1]])
    return rz @ rx


def _kinectify(
    z_m: NDArray[np.float64], rng: np.random.Generator, hole_frac: float
) -> NDArray[np.float64]:
    """Kinect-like depth: noise growing with z², blob-shaped holes, 0.1 mm PNG quantisation."""
    import cv2

    z = z_m + rng.standard_normal(z_m.shape) * 0.0015 * z_m**2
    seeds = (rng.random(z.shape) < hole_frac / 40).astype(np.uint8)
    holes = cv2.dilate(seeds, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (7, 7))) > 0
    z = np.where(holes | ~np.isfinite(z) | (z <= 0), 0.0, np.minimum(z, 6.5))
    return np.round(z * 1e4) / 1e4


def room_frame(pitch_deg: float, roll_deg: float, seed: int) -> Frame:
    """A box-shaped room (floor, three walls) with a sphere standing in it, camera tilted."""
    h, w = 480, 640
    rng = np.random.default_rng(seed)
    rays = _rays(h, w) @ _camera_rotation(pitch_deg, roll_deg)  # ray directions, world frame
    # Camera at the origin, 1.2 m above the floor; planes n·P = d with n pointing outwards.
    planes = [((0, 1, 0), 1.2), ((1, 0, 0), 1.8), ((-1, 0, 0), 2.3), ((0, 0, 1), 4.5)]
    z = np.full((h, w), np.inf)
    with np.errstate(divide="ignore", invalid="ignore"):
        for normal, dist in planes:
            t = dist / (rays @ np.asarray(normal, dtype=np.float64))
            z = np.where(t > 0, np.minimum(z, t), z)
        c, rad = np.array([0.3, 0.8, 2.6]), 0.4  # sphere centre (m), radius
        b = rays @ c
        a = np.einsum("ijk,ijk->ij", rays, rays)
        disc = b * b - a * (c @ c - rad * rad)
        t = (b - np.sqrt(disc)) / a
    z = np.where((disc > 0) & (t > 0), np.minimum(z, t), z)
    return Frame(f"room p{pitch_deg:g} r{roll_deg:g}", _kinectify(z, rng, 0.04))


def smooth_surface_frame(seed: int) -> Frame:
    """A random smooth depth field between about 1 and 6 m (no dominant planes)."""
    import cv2

    rng = np.random.default_rng(seed)
    noise = rng.standard_normal((480, 640))
    field = cv2.GaussianBlur(noise, (0, 0), 25)
    field = (field - field.min()) / (field.max() - field.min())
    return Frame("smooth random surface", _kinectify(1.0 + 5.0 * field, rng, 0.02))


def synthetic_frames() -> list[Frame]:
    return [room_frame(10.0, 0.0, 1), room_frame(25.0, 8.0, 2), smooth_surface_frame(3)]


# --- timing and comparison ---------------------------------------------------------


def _agreement(a: NDArray[np.uint8], b: NDArray[np.uint8]) -> tuple[float, int]:
    """(fraction of pixels with all three channels equal, max absolute difference)."""
    diff = np.abs(a.astype(np.int16) - b.astype(np.int16))
    return float((diff.max(axis=-1) == 0).mean()), int(diff.max())


@dataclass(frozen=True)
class Timing:
    """Median wall-clock and CPU seconds of one implementation on one frame, and the
    wall-clock seconds of each repeat (in order)."""

    wall: float
    cpu: float
    walls: tuple[float, ...]


def time_side_by_side(
    frame: Frame, impls: dict[str, Callable[..., NDArray[np.uint8]]], repeats: int
) -> tuple[dict[str, Timing], dict[str, NDArray[np.uint8]]]:
    """Time each implementation on one frame, alternating (and alternating which goes
    first), after one untimed call each, which also gives the outputs to compare."""
    args = (frame.depth_m, hha.NYU_COLOR_INTRINSICS, frame.missing)
    outs = {name: fn(*args) for name, fn in impls.items()}
    wall: dict[str, list[float]] = {name: [] for name in impls}
    cpu: dict[str, list[float]] = {name: [] for name in impls}
    for i in range(repeats):
        for name in list(impls) if i % 2 == 0 else list(reversed(impls)):
            w0, c0 = time.perf_counter(), time.process_time()
            impls[name](*args)
            cpu[name].append(time.process_time() - c0)
            wall[name].append(time.perf_counter() - w0)
    timings = {n: Timing(statistics.median(wall[n]), statistics.median(cpu[n]), tuple(wall[n]))
               for n in impls}
    return timings, outs


def _fmt_agree(frac: float, maxdiff: int) -> str:
    return f"{frac:.4%} / {maxdiff}"


def _contract(frac: float, maxdiff: int) -> bool:
    return frac >= MIN_EQUAL_FRACTION and maxdiff <= MAX_ABS_DIFF


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=7, help="timed runs of each (default 7)")
    ap.add_argument(
        "--threads", type=int, default=1, help="BLAS and OpenCV threads (default 1; 0: theirs)"
    )
    ap.add_argument("--synthetic-only", action="store_true", help="skip the NYUv2 oracle frame")
    args = ap.parse_args(argv)
    if args.repeats < 1:
        ap.error("--repeats must be >= 1")
    if args.threads > 0:
        import cv2

        cv2.setNumThreads(args.threads)

    frames = ([] if args.synthetic_only else oracle_frames(_shared_hha_dir())) + synthetic_frames()
    impls = {"today": reference_compute_hha, "new": hha.compute_hha}
    failures = []
    rows, matlab_rows = [], []
    for frame in frames:
        timing, outs = time_side_by_side(frame, impls, args.repeats)
        frac, maxdiff = _agreement(outs["new"], outs["today"])
        if not _contract(frac, maxdiff):
            failures.append(f"{frame.name}: new vs today {_fmt_agree(frac, maxdiff)}")
        rows.append((frame.name, timing["today"], timing["new"], frac, maxdiff))
        if frame.matlab is not None:
            old, new = _agreement(outs["today"], frame.matlab), _agreement(outs["new"], frame.matlab)
            if not _contract(*new):
                failures.append(f"{frame.name}: new vs MATLAB {_fmt_agree(*new)}")
            matlab_rows.append((frame.name, old, new))

    threads = "library defaults" if args.threads <= 0 else f"{args.threads} thread(s)"
    print(f"HHA, median of {args.repeats} alternating runs per frame, BLAS and OpenCV on {threads}")
    print(
        f"{'frame':<24} {'today s/frame':>13} {'new s/frame':>11} {'speed-up':>8} "
        f"{'(CPU time)':>10} {'(range)':>13}  {'new = today: px / max diff':>26}"
    )
    for name, old, new, frac, maxdiff in rows:
        paired = [o / n for o, n in zip(old.walls, new.walls)]
        spread = f"{min(paired):.1f}-{max(paired):.1f}x"
        print(
            f"{name:<24} {old.wall:>13.4f} {new.wall:>11.4f} {old.wall / new.wall:>7.2f}x "
            f"{old.cpu / new.cpu:>9.2f}x {spread:>13}  {_fmt_agree(frac, maxdiff):>26}"
        )
    old_wall = statistics.median(r[1].wall for r in rows)
    new_wall = statistics.median(r[2].wall for r in rows)
    ratios = [r[1].wall / r[2].wall for r in rows]
    cpu_ratios = [r[1].cpu / r[2].cpu for r in rows]
    print(
        f"{'median over frames':<24} {old_wall:>13.4f} {new_wall:>11.4f} "
        f"{statistics.median(ratios):>7.2f}x {statistics.median(cpu_ratios):>9.2f}x"
    )
    for name, (f_old, d_old), (f_new, d_new) in matlab_rows:
        today, new = _fmt_agree(f_old, d_old), _fmt_agree(f_new, d_new)
        print(f"MATLAB agreement, {name}: today {today}, new {new}")
    for failure in failures:
        print(f"FAIL (contract: >= {MIN_EQUAL_FRACTION:.2%} equal, max diff {MAX_ABS_DIFF}): "
              f"{failure}")
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
