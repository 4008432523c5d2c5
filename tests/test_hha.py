"""HHA encoding: agreement with Gupta's MATLAB output (the contract: ≥ 99.99 % of pixels
equal, none off by more than 1; today every byte), with the direct implementation this
module replaced, and synthetic-scene properties."""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import pytest

from aims.errors import AimsError
from aims.hha import NYU_COLOR_INTRINSICS, compute_hha, matlab_uint8
from conftest import require_shared

CHANNELS = ("disparity (R)", "height (G)", "angle (B)")
#: the HHA contract, against MATLAB on the oracle frames and against the direct
#: implementation on synthetic ones
MIN_EQUAL_FRACTION = 0.9999
MAX_ABS_DIFF = 1


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


def _oracle(name: str) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """(depth in m, missing mask or None, MATLAB's HHA) of one oracle frame: ``filled``
    (missing where the filled depth is 0) or ``raw`` (the raw Kinect holes left out)."""
    folder = _hha_dir()
    depth = _read_depth_m(folder / "0.png")
    if name == "filled":
        return depth, None, _read_rgb(folder / "matlab_hha.png")
    if not (folder / "0_raw.png").is_file() or not (folder / "hha.png").is_file():
        pytest.skip(f"{folder} lacks 0_raw.png / hha.png")
    return depth, _read_depth_m(folder / "0_raw.png") == 0, _read_rgb(folder / "hha.png")


def _assert_agrees(out: np.ndarray, ref: np.ndarray, what: str) -> None:
    """The HHA contract: ≥ 99.99 % of pixels with all three channels equal, and no channel
    of any pixel off by more than 1."""
    assert out.shape == ref.shape and out.dtype == np.uint8
    diff = np.abs(out.astype(np.int16) - ref.astype(np.int16))
    equal = float((diff.max(axis=-1) == 0).mean())
    per_channel = ", ".join(f"{c}: {int((diff[..., k] > 0).sum())}" for k, c in enumerate(CHANNELS))
    assert equal >= MIN_EQUAL_FRACTION and diff.max() <= MAX_ABS_DIFF, (
        f"{what}: {equal:.6%} of pixels equal, max difference {diff.max()} ({per_channel})")


@pytest.mark.parametrize("oracle", ["filled", "raw"])
def test_agrees_with_matlab_on_the_oracle_frame(oracle: str) -> None:
    depth, missing, matlab = _oracle(oracle)
    _assert_agrees(compute_hha(depth, NYU_COLOR_INTRINSICS, missing), matlab, f"{oracle} oracle")


@pytest.mark.parametrize("oracle", ["filled", "raw"])
def test_oracle_frames_are_byte_identical_to_matlab(oracle: str) -> None:
    # Stronger than the contract, and what the NYUv2 card says ("reproduces Gupta et
    # al.'s MATLAB code exactly on the oracle frame"): should a library update move a
    # pixel while the contract above still holds, change that note with this test.
    depth, missing, matlab = _oracle(oracle)
    out = compute_hha(depth, NYU_COLOR_INTRINSICS, missing)
    bad = [int((out[..., c] != matlab[..., c]).sum()) for c in range(3)]
    assert sum(bad) == 0, ", ".join(f"{c}: {n} mismatched" for c, n in zip(CHANNELS, bad))


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
    x = np.array([0.5, 1.5, 2.5, -0.5, -3.0, 254.5, 255.4, 300.0, np.nan, 2.4999,
                  -0.49, 0.4999, np.inf, -np.inf, 1e300, 254.4999, -1e300])
    assert matlab_uint8(x).tolist() == [1, 2, 3, 0, 0, 255, 255, 255, 0, 2,
                                        0, 0, 255, 0, 255, 254, 0]


@pytest.mark.parametrize(
    "bad",
    [np.zeros((4, 5, 3)), np.zeros(7), np.zeros((0, 0)), np.full((8, 8), np.nan), -np.ones((8, 8))],
)
def test_invalid_depth_raises_aims_error(bad: np.ndarray) -> None:
    with pytest.raises(AimsError):
        compute_hha(bad, NYU_COLOR_INTRINSICS)


@pytest.mark.parametrize("radius", [-1, 2.5, True, "3"])
def test_surface_normals_rejects_a_bad_radius(radius) -> None:
    from aims.hha import surface_normals

    with pytest.raises(AimsError, match="radius"):
        surface_normals(np.ones((5, 5)), np.zeros((5, 5), dtype=bool), NYU_COLOR_INTRINSICS, radius)


def test_invalid_intrinsics_and_mask_raise_aims_error() -> None:
    depth = np.ones((20, 20))
    with pytest.raises(AimsError):
        compute_hha(depth, np.eye(2))
    with pytest.raises(AimsError):
        compute_hha(depth, NYU_COLOR_INTRINSICS, missing=np.zeros((10, 10), dtype=bool))


# --- against the direct implementation it replaced -----------------------------------


@functools.cache
def _reference_module():
    """``benchmarks/bench_hha.py``, which keeps the direct implementation this module
    replaced (``reference_compute_hha``, byte-identical to MATLAB on the oracle frames)
    and the benchmark's synthetic 640×480 scenes."""
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
    mask, zeros not marked missing (infinite terms: the original algorithm), other
    intrinsics, frames one pixel high or wide and a line of valid pixels (windows whose
    fit is singular: redone the original's way), and depths 1:50000 apart (beyond the
    fast fits' range)."""
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
    frames.append(("integer centre", 1 + rng.random((40, 60)), None,
                   np.array([[50.0, 0, 30], [0, 50.0, 20], [0, 0, 1]])))
    frames.append(("one row", 1 + rng.random((1, 50)), None, K))
    frames.append(("one column", 1 + rng.random((50, 1)), None, K))
    frames.append(("one valid pixel", np.pad(np.ones((1, 1)), 20), None, K))
    frames.append(("a line of valid pixels", np.pad(1 + rng.random((1, 30)), 20), None, K))
    frames.append(("depth range 1:50000", np.where(rng.random((60, 80)) < 0.5, 1e-3, 50.0), None, K))
    frames.append(("all missing", np.zeros((30, 40)), None, K))
    # 4501 wide: the radius-10 moment sums could pass 2³¹, and are summed in float64.
    wide = 1 + rng.random((3, 4501))
    frames.append(("4501 wide, holes", np.where(rng.random(wide.shape) < 0.1, 0.0, wide), None, K))
    return frames


@pytest.mark.parametrize("case", range(len(_odd_frames())))
def test_agrees_with_the_direct_implementation_on_odd_frames(case: int) -> None:
    name, depth, missing, K = _odd_frames()[case]
    with np.errstate(all="ignore"):  # the direct version warns about its 0/0 terms
        ref = _reference_module().reference_compute_hha(depth, K, missing)
    _assert_agrees(compute_hha(depth, K, missing), ref, name)


@pytest.mark.parametrize("case", range(3))
def test_agrees_with_the_direct_implementation_on_synthetic_scenes(case: int) -> None:
    # 640×480 rooms and a smooth surface with Kinect-like noise and holes (the benchmark's).
    bench = _reference_module()
    frame = bench.synthetic_frames()[case]
    ref = bench.reference_compute_hha(frame.depth_m, NYU_COLOR_INTRINSICS, frame.missing)
    _assert_agrees(compute_hha(frame.depth_m, NYU_COLOR_INTRINSICS, frame.missing), ref, frame.name)


@pytest.mark.parametrize("holes", [False, True])
def test_radius_zero_normals_are_the_originals(holes: bool) -> None:
    # One point per window: every fit is singular, and the original's noise is kept.
    from aims.hha import surface_normals

    rng = np.random.default_rng(9)
    z = 100 + 300 * rng.random((20, 30))
    missing = rng.random(z.shape) < 0.3 if holes else np.zeros(z.shape, dtype=bool)
    with np.errstate(all="ignore"):
        ref = _reference_module().surface_normals(z, missing, NYU_COLOR_INTRINSICS, 0)
    out = surface_normals(z, missing, NYU_COLOR_INTRINSICS, 0)
    assert np.array_equal(out, ref, equal_nan=True)


def test_a_flat_wall_keeps_the_camera_gravity() -> None:
    # One fronto-parallel wall leaves gravity undetermined within the wall's plane (two
    # equal eigenvalues); the original then follows its rounding noise (its normals are
    # off by ~1e-9 there, and its gravity by ~2°), the exact fits keep the first estimate,
    # the camera's y axis.  Disparity and angle do not depend on that choice.
    from aims.hha import estimate_gravity, surface_normals

    depth = np.full((60, 80), 3.1)
    gravity = estimate_gravity(surface_normals(depth * 100, depth == 0, NYU_COLOR_INTRINSICS, 10))
    np.testing.assert_allclose(gravity, [0.0, 1.0, 0.0], atol=1e-9)
    out = compute_hha(depth, NYU_COLOR_INTRINSICS)
    ref = _reference_module().reference_compute_hha(depth, NYU_COLOR_INTRINSICS)
    assert np.array_equal(out[..., [0, 2]], ref[..., [0, 2]])
    v = np.arange(1, 61, dtype=np.float64)[:, None]
    y = (v - NYU_COLOR_INTRINSICS[1, 2]) * 310.0 / NYU_COLOR_INTRINSICS[1, 1]
    # Height is -y (no rotation); the lowest point is above -90 cm, so the floor is -130.
    assert np.array_equal(out[..., 1], np.broadcast_to(matlab_uint8(-y + 130.0), (60, 80)))


def _fits(depth_cm: np.ndarray, missing: np.ndarray, K: np.ndarray = NYU_COLOR_INTRINSICS):
    """(frame, {r: fast unit normals}, {r: the original algorithm's}) for radii 1, 3, 10."""
    from aims.hha import _direct_normals, _frame, _unit_normals, _workspace

    frame = _frame(depth_cm, missing, K, _workspace(depth_cm.shape))
    fast = {r: _unit_normals(frame, r, f"test{r}").copy() for r in (1, 3, 10)}
    with np.errstate(all="ignore"):
        direct = {r: _direct_normals(depth_cm, missing, K, r) for r in (1, 3, 10)}
    return frame, fast, direct


def _exact_det(valid: np.ndarray, r: int) -> tuple[np.ndarray, np.ndarray]:
    """(count, det M) of every window, M = Σ [du dv 1]ᵀ[du dv 1] over its valid pixels,
    in Python integers (no rounding at all)."""
    h, w = valid.shape
    count = np.zeros((h, w), dtype=np.int64)
    det = np.zeros((h, w), dtype=object)
    for i in range(h):
        for j in range(w):
            ii, jj = np.nonzero(valid[max(0, i - r) : i + r + 1, max(0, j - r) : j + r + 1])
            du, dv = (jj + max(0, j - r) - j).tolist(), (ii + max(0, i - r) - i).tolist()
            n, su, sv = len(du), sum(du), sum(dv)
            suu, svv = sum(a * a for a in du), sum(b * b for b in dv)
            suv = sum(a * b for a, b in zip(du, dv))
            count[i, j] = n
            det[i, j] = (suu * (svv * n - sv * sv) - suv * (suv * n - su * sv)
                         + su * (suv * sv - svv * su))
    return count, det


@pytest.mark.parametrize("pattern", ["sparse", "lines", "holes"])
def test_singular_fits_are_the_originals_and_the_others_agree(pattern: str) -> None:
    # Where a window's valid points are fewer than three or on one line, the original's
    # normal is its rounding noise: it must be reproduced bit for bit.  Elsewhere the
    # exact fits agree with it to far below one output level.
    rng = np.random.default_rng({"sparse": 1, "lines": 2, "holes": 3}[pattern])
    h, w = 40, 56
    depth = 100 + 300 * rng.random((h, w))
    if pattern == "sparse":
        valid = rng.random((h, w)) < 0.06
    elif pattern == "lines":
        valid = np.zeros((h, w), dtype=bool)
        valid[5, 3:50] = valid[12:30, 20] = True
        valid[np.arange(20, 38), np.arange(30, 48)] = True  # a diagonal
        valid[30:, :8] = rng.random((10, 8)) < 0.5
    else:
        valid = rng.random((h, w)) > 0.2
    frame, fast, direct = _fits(depth, ~valid)
    singular_windows = 0
    for r, n in fast.items():
        count, det = _exact_det(valid, r)
        singular = (count > 0) & (det == 0)
        singular_windows += int(singular.sum())
        assert np.array_equal(n[:, singular], direct[r][:, singular], equal_nan=True), r
        assert np.array_equal(np.isnan(n[0]), np.isnan(direct[r][0])), r
        posed = ~np.isnan(n[0]) & (det.astype(float) > 1e-3 * count.astype(float) ** 3)
        dot = np.abs((n * direct[r]).sum(axis=0))[posed]
        assert np.degrees(np.arccos(np.minimum(dot, 1.0))).max() < 1e-4, r
    if pattern != "holes":
        assert singular_windows > 100  # the case is exercised


def test_masked_and_product_fits_agree() -> None:
    # A frame with one missing corner pixel goes through the masked fit, the same frame
    # without it through the closed-form fit of hole-free frames: away from that pixel the
    # two give the same planes.
    import cv2

    rng = np.random.default_rng(11)
    depth = 100 + 300 * cv2.GaussianBlur(rng.random((50, 70)), (0, 0), 4)
    corner = np.zeros(depth.shape, dtype=bool)
    corner[-1, -1] = True
    _, masked, _ = _fits(depth, corner)
    _, product, _ = _fits(depth, np.zeros_like(corner))
    for r in (3, 10):  # (radius 1 redoes its 2×2 corner windows the original's way)
        far = np.ones(depth.shape, dtype=bool)
        far[-r - 1 :, -r - 1 :] = False
        np.testing.assert_allclose(masked[r][:, far], product[r][:, far], rtol=0, atol=1e-10)


def test_ordered_sums_add_one_after_the_other() -> None:
    from aims.hha import _ordered_sums

    rng = np.random.default_rng(5)
    values = rng.standard_normal((200, 2)) * np.exp(rng.uniform(-30, 30, (200, 2)))
    values[41:47] = -0.0  # runs of −0 terms: their sum is −0 only without missing elements
    starts = np.array([0, 1, 9, 40, 41, 44, 47, 150])
    full = np.array([True, False, True, False, True, False, False, True])
    out = _ordered_sums(values, starts, full)
    bounds = [*starts.tolist(), 200]
    for g in range(len(starts)):
        for k in range(2):
            total = -0.0 if full[g] else 0.0
            for x in values[bounds[g] : bounds[g + 1], k].tolist():
                total += x
            assert out[g, k] == total and np.signbit(out[g, k]) == np.signbit(total)
    assert out[4, 0] == 0 and np.signbit(out[4, 0]) and not np.signbit(out[5, 0])


@pytest.mark.parametrize("r", [1, 3, 10])
def test_original_sums_are_the_direct_ones_bit_for_bit(r: int) -> None:
    # The windows redone the original's way are summed from their valid pixels alone;
    # every bit must be the direct sums', with −0 terms among them (a principal point on
    # a pixel column makes x/z = 0 there, and x/z · y/z = −0 above it).
    from aims.hha import _box_sum_direct, _frame, _original_sums_at, _original_terms, _workspace

    rng = np.random.default_rng(r)
    h, w = 30, 41
    K = np.array([[40.0, 0, 20.0], [0, 40.0, 14.0], [0, 0, 1]])  # centre on pixel (21, 15)
    depth = 100 + 300 * rng.random((h, w))
    valid = rng.random((h, w)) < 0.3
    valid[:, 19] = True  # the principal point's column (u = 20)
    valid[7, :] = True  # a full row
    valid[20:, 30:] = True  # a full block
    frame = _frame(depth, ~valid, K, _workspace(depth.shape))
    sums, count = _original_sums_at(frame, r, np.arange(h * w))
    u = np.arange(1, w + 1, dtype=np.float64)[None, :]
    v = np.arange(1, h + 1, dtype=np.float64)[:, None]
    with np.errstate(all="ignore"):
        terms = _original_terms(np.where(valid, depth, np.nan), u, v, K)
    for k, term in enumerate(terms):
        direct = _box_sum_direct(np.where(np.isnan(term), 0.0, term), r).reshape(-1)
        assert np.array_equal(sums[:, k].view(np.uint64), direct.view(np.uint64)), k
    assert np.array_equal(count, _box_sum_direct(valid.astype(np.float64), r).reshape(-1))
    assert (np.signbit(terms[1]) & (terms[1] == 0)).any()  # the case is exercised


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
        tally = _VoteTally(nn, tol, buf, tally)
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
    for radius in (3, 10, 12):  # 12: any radius works
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
    frames[1][200:260, 100:180] = 0.0  # holes: the masked fits
    frames.append(np.asfortranarray(frames[0])[:, ::2])  # strided input
    first = [compute_hha(d, NYU_COLOR_INTRINSICS) for d in frames]
    again = [compute_hha(d, NYU_COLOR_INTRINSICS) for d in reversed(frames)][::-1]
    with ThreadPoolExecutor(max_workers=3) as pool:
        threaded = list(pool.map(lambda d: compute_hha(d, NYU_COLOR_INTRINSICS), frames * 2))
    for i, ref in enumerate(first):
        assert np.array_equal(again[i], ref)
        assert np.array_equal(threaded[i], ref) and np.array_equal(threaded[i + len(frames)], ref)
