"""HHA encoding: bit-exact against Gupta's MATLAB output, plus synthetic-scene properties."""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import pytest

from aims.errors import AimsError
from aims.hha import NYU_COLOR_INTRINSICS, compute_hha, matlab_uint8
from conftest import require_shared

CHANNELS = ("disparity (R)", "height (G)", "angle (B)")


def _hha_dir() -> Path:
    """The shared HHA oracle folder, read in place (never copied into the repo)."""
    require_shared("hha", "matlab_hha.png")
    return require_shared("hha", "0.png").parent


def _read_rgb(path: Path) -> np.ndarray:
    cv2 = pytest.importorskip("cv2")
    bgr = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    assert bgr is not None and bgr.shape[2] == 3, path
    return np.ascontiguousarray(bgr[..., ::-1])


def _read_depth_m(path: Path) -> np.ndarray:
    cv2 = pytest.importorskip("cv2")
    raw = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    assert raw is not None and raw.dtype == np.uint16, path
    return raw / 1e4  # 16-bit PNG in 0.1 mm


def _assert_identical(out: np.ndarray, ref: np.ndarray) -> None:
    assert out.shape == ref.shape and out.dtype == np.uint8
    bad = [int((out[..., c] != ref[..., c]).sum()) for c in range(3)]
    report = ", ".join(
        f"{name}: {n} mismatched ({1 - n / out[..., 0].size:.6%} equal)"
        for name, n in zip(CHANNELS, bad)
    )
    assert sum(bad) == 0, report


def test_matches_matlab_reference_exactly() -> None:
    folder = _hha_dir()
    depth = _read_depth_m(folder / "0.png")
    out = compute_hha(depth, NYU_COLOR_INTRINSICS)  # missing mask from the depth itself
    _assert_identical(out, _read_rgb(folder / "matlab_hha.png"))


def test_raw_depth_missing_mask_matches_reference() -> None:
    folder = _hha_dir()
    if not (folder / "0_raw.png").is_file() or not (folder / "hha.png").is_file():
        pytest.skip(f"{folder} lacks 0_raw.png / hha.png")
    depth = _read_depth_m(folder / "0.png")
    raw = _read_depth_m(folder / "0_raw.png")
    out = compute_hha(depth, NYU_COLOR_INTRINSICS, missing=raw == 0)
    _assert_identical(out, _read_rgb(folder / "hha.png"))


# --- synthetic scenes --------------------------------------------------------------


def _floor_and_wall(pitch_deg: float = 0.0, cam_height_cm: float = 120.0, wall_cm: float = 400.0):
    """Depth (m) of a floor plane plus a fronto-parallel-ish wall, camera pitched down.

    Gravity in camera coordinates (y down) is g = (0, cos p, sin p); the floor is the
    plane g·P = camera height, the wall the plane w·P = distance with w ⟂ g.
    """
    h, w = 480, 640
    K = NYU_COLOR_INTRINSICS
    u, v = np.meshgrid(np.arange(1, w + 1), np.arange(1, h + 1))
    ray = np.stack([(u - K[0, 2]) / K[0, 0], (v - K[1, 2]) / K[1, 1], np.ones((h, w))], -1)
    p = np.deg2rad(pitch_deg)
    g = np.array([0.0, np.cos(p), np.sin(p)])
    wall_n = np.array([0.0, -np.sin(p), np.cos(p)])
    with np.errstate(divide="ignore"):
        z_floor = np.where(ray @ g > 1e-9, cam_height_cm / (ray @ g), np.inf)
        z_wall = wall_cm / (ray @ wall_n)
    floor = z_floor < z_wall
    return np.where(floor, z_floor, z_wall) / 100.0, floor, g


def _interior(mask: np.ndarray, r: int) -> np.ndarray:
    """Pixels whose (2r+1)² window lies inside ``mask`` and inside the image."""
    from scipy.ndimage import binary_erosion

    inner = binary_erosion(mask, np.ones((2 * r + 1, 2 * r + 1)), border_value=0)
    return inner


@pytest.mark.parametrize("pitch", [0.0, 15.0])
def test_floor_has_zero_height_and_vertical_normal(pitch: float) -> None:
    depth, floor, _ = _floor_and_wall(pitch)
    hha = compute_hha(depth, NYU_COLOR_INTRINSICS)
    assert hha.shape == (480, 640, 3) and hha.dtype == np.uint8
    on_floor = _interior(floor, 4)
    on_wall = _interior(~floor, 4)
    assert on_floor.sum() > 10_000 and on_wall.sum() > 10_000
    # The floor is the lowest surface: height ~0 on it (within rounding).
    assert hha[..., 1][on_floor].max() <= 1
    # Floor normal parallel to the recovered gravity: 0° + 38; walls perpendicular: 90° + 38.
    assert np.all(np.abs(hha[..., 2][on_floor].astype(int) - 38) <= 1)
    assert np.all(np.abs(hha[..., 2][on_wall].astype(int) - 128) <= 1)
    # Height grows up the wall, so the wall is not all at floor level.
    assert np.median(hha[..., 1][on_wall]) > 100


def test_disparity_channel() -> None:
    depth = np.full((60, 80), 3.10)  # 310 cm -> 31000 / 310 = 100
    depth[:, :10] = 0.5  # nearer than 1 m: clamped to 100 cm -> 310 -> saturates at 255
    hha = compute_hha(depth, NYU_COLOR_INTRINSICS)
    assert np.all(hha[:, 10:, 0] == 100)
    assert np.all(hha[:, :10, 0] == 255)


def test_missing_pixels_get_no_normal() -> None:
    depth, floor, _ = _floor_and_wall(10.0)
    hole = np.zeros_like(floor)
    hole[380:420, 300:360] = True  # on the floor
    assert floor[hole].all()
    depth = np.where(hole, 0.0, depth)
    hha = compute_hha(depth, NYU_COLOR_INTRINSICS)
    # Deep inside the hole no valid point is in the window: angle is NaN -> 180 + 38.
    assert np.all(hha[390:410, 310:350, 2] == 218)
    # Around it the floor is unaffected: missing points are left out of the fits.
    ring = _interior(floor & ~hole, 4)
    assert np.all(np.abs(hha[..., 2][ring].astype(int) - 38) <= 1)


def test_explicit_missing_mask_overrides_default() -> None:
    depth, floor, _ = _floor_and_wall(0.0)
    mask = np.zeros(depth.shape, dtype=bool)
    mask[:, :200] = True
    a = compute_hha(depth, NYU_COLOR_INTRINSICS)
    b = compute_hha(depth, NYU_COLOR_INTRINSICS, missing=mask)
    assert np.all(b[:, :190, 2] == 218)  # no fits where everything is "missing"
    assert np.array_equal(a[..., 0], b[..., 0])  # disparity ignores the mask


def test_matlab_uint8_rounds_half_away_and_saturates() -> None:
    x = np.array([0.5, 1.5, 2.5, -0.5, -3.0, 254.5, 255.4, 300.0, np.nan, 2.4999])
    assert matlab_uint8(x).tolist() == [1, 2, 3, 0, 0, 255, 255, 255, 0, 2]


@pytest.mark.parametrize(
    "bad",
    [np.zeros((4, 5, 3)), np.zeros(7), np.zeros((0, 0)), np.full((8, 8), np.nan), -np.ones((8, 8))],
)
def test_invalid_depth_raises_aims_error(bad: np.ndarray) -> None:
    with pytest.raises(AimsError):
        compute_hha(bad, NYU_COLOR_INTRINSICS)


def test_invalid_intrinsics_and_mask_raise_aims_error() -> None:
    depth = np.ones((20, 20))
    with pytest.raises(AimsError):
        compute_hha(depth, np.eye(2))
    with pytest.raises(AimsError):
        compute_hha(depth, NYU_COLOR_INTRINSICS, missing=np.zeros((10, 10), dtype=bool))


# --- the fast implementation against the direct one ------------------------------------


@functools.cache
def _reference_module():
    """``benchmarks/bench_hha.py``, which keeps the direct implementation this module
    started from (``reference_compute_hha``): the yardstick for every byte."""
    import importlib.util
    import sys

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_hha.py"
    spec = importlib.util.spec_from_file_location("bench_hha_reference", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def _odd_frames():
    """Small frames with the cases the fast paths treat specially: holes, a raw-depth
    mask, zeros not marked missing (0/0 terms), other intrinsics, several bands of rows
    with a short last one, and a perfectly flat wall (a tie between gravity candidates)."""
    import cv2

    rng = np.random.default_rng(7)
    K = NYU_COLOR_INTRINSICS
    frames = []
    for h, w in [(37, 53), (250, 64), (481, 90), (5, 300)]:
        z = 0.5 + 4 * cv2.GaussianBlur(rng.random((h, w)), (0, 0), 3 + min(h, w) / 20)
        z = np.round(z * 1e4) / 1e4
        holes = rng.random((h, w)) < 0.1
        frames += [
            (f"{h}x{w} holes", np.where(holes, 0.0, z), None, K),
            (f"{h}x{w} raw mask", z, holes, K),
            (f"{h}x{w} zeros kept", np.where(holes, 0.0, z), np.zeros_like(holes), K),
        ]
    other_k = np.array([[300.0, 0, 100.5], [0, 280.0, 60.2], [0, 0, 1]])
    frames.append(("other intrinsics", 1 + rng.random((120, 200)), None, other_k))
    frames.append(("flat wall", np.full((60, 80), 3.1), None, K))
    frames.append(("all missing", np.zeros((30, 40)), None, K))
    return frames


@pytest.mark.parametrize("case", range(len(_odd_frames())))
def test_same_bytes_as_the_direct_implementation(case: int) -> None:
    name, depth, missing, K = _odd_frames()[case]
    with np.errstate(all="ignore"):  # the direct version warns about its 0/0 terms
        ref = _reference_module().reference_compute_hha(depth, K, missing)
    out = compute_hha(depth, K, missing)
    assert out.dtype == np.uint8 and out.shape == ref.shape
    assert np.array_equal(out, ref), f"{name}: {(out != ref).sum(axis=(0, 1))} pixels differ"


@pytest.mark.parametrize("shape", [(1, 1), (7, 5), (50, 33), (300, 17)])
@pytest.mark.parametrize("r", [0, 1, 3, 10])
def test_box_sum_adds_in_the_direct_order(shape: tuple[int, int], r: int) -> None:
    # OpenCV's filters must add the taps one by one from the first, like the direct sum;
    # a different order (e.g. a future OpenCV pairing symmetric taps) fails here.
    from aims.hha import _box_sum, _box_sum_direct

    rng = np.random.default_rng(r)
    img = rng.standard_normal(shape) * np.exp(rng.uniform(-20, 20, shape))
    out = np.full(shape, np.nan)
    assert np.array_equal(_box_sum(img, r), _box_sum_direct(img, r))
    assert _box_sum(img, r, out=out) is out and np.array_equal(out, _box_sum_direct(img, r))
    img[0, 0] = np.inf  # the direct path: 0 × inf would be NaN in the filter's zero tap
    assert np.array_equal(_box_sum(img, r), _box_sum_direct(img, r), equal_nan=True)


def test_vote_tally_keeps_the_exact_votes() -> None:
    # Gravity re-checks only the normals whose vote can have changed; along a path that
    # drifts away, comes back and jumps, the votes must stay those of a full count.
    from aims.hha import _GravityBuffers, _VoteTally

    rng = np.random.default_rng(3)
    nn = rng.standard_normal((3, 20_000))
    nn /= np.linalg.norm(nn, axis=0)
    buf = _GravityBuffers(nn.shape[1])
    tally = None
    for tol in (45.0, 15.0):  # the second starts from the first's votes and sum
        tally = _VoteTally(nn, tol, buf, None if tally is None else tally.sum)
        for k, a in enumerate([0, 0.01, 0.03, 0.06, 0.02, 0.0, 0.04, 0.2, 0.19, 0.05, 0.3, 0.001]):
            y = np.array([np.sin(a) * np.cos(k), np.cos(a), np.sin(a) * np.sin(k)])
            matrix, _ = tally.matrix(y)
            sim = np.abs(y @ nn)
            votes = (sim < np.sin(np.deg2rad(tol))).astype(int) - (sim > np.cos(np.deg2rad(tol)))
            assert np.array_equal(tally.votes, votes), (tol, k)
            np.testing.assert_allclose(matrix, (nn * votes) @ nn.T, rtol=0, atol=1e-9)


def test_surface_normals_and_gravity_of_a_floor_scene() -> None:
    from aims.hha import estimate_gravity, surface_normals

    depth, floor, g = _floor_and_wall(15.0)
    z = depth * 100
    for radius in (3, 10, 12):  # 12: beyond the cached workspace's halo
        n = surface_normals(z, depth == 0, NYU_COLOR_INTRINSICS, radius)
        assert n.shape == (*depth.shape, 3) and n.flags.c_contiguous
        np.testing.assert_allclose(np.linalg.norm(n, axis=-1), 1.0, atol=1e-12)
        inner = _interior(floor, radius + 1)
        # The floor's normal is ±gravity; oriented towards the camera (n · p >= 0).
        assert np.all(np.abs(np.abs(n[inner] @ g) - 1) < 1e-6)
    gravity = estimate_gravity(surface_normals(z, depth == 0, NYU_COLOR_INTRINSICS, 10))
    assert abs(gravity @ g - 1) < 1e-5  # the fits across the floor-wall edge tilt it a bit


def test_repeated_and_concurrent_calls_give_the_same_bytes() -> None:
    # Each thread reuses its own buffers from frame to frame (see aims.hha._Workspace).
    from concurrent.futures import ThreadPoolExecutor

    frames = [_floor_and_wall(p)[0] for p in (0.0, 10.0, 20.0)] + [np.full((60, 80), 2.0)]
    first = [compute_hha(d, NYU_COLOR_INTRINSICS) for d in frames]
    again = [compute_hha(d, NYU_COLOR_INTRINSICS) for d in reversed(frames)][::-1]
    with ThreadPoolExecutor(max_workers=3) as pool:
        threaded = list(pool.map(lambda d: compute_hha(d, NYU_COLOR_INTRINSICS), frames * 2))
    for i, ref in enumerate(first):
        assert np.array_equal(again[i], ref)
        assert np.array_equal(threaded[i], ref) and np.array_equal(threaded[i + len(frames)], ref)
