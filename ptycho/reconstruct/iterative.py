"""The solver arms: pty-chi on the test split with the known probe (LSQML, or the engine the
iterative block's ``engine`` names: PIE, ePIE, rPIE, DM), started from a flat object (arm
``iterative``) or from a network arm's stitched test reconstruction (arm ``hybrid``).
Both record convergence snapshots (object and cumulative wall time) at the study's snapshot epochs
during their one solve.

Conventions of pty-chi 2.2 (read from its source) and how ours map onto them
------------------------------------------------------------------------------
* Diffraction data are *intensities* (not amplitudes), DC at the array centre, passed with
  ``data_options.fft_shift = True`` so pty-chi moves DC to the corner once, at load time.
* Far field: ``FourierPropagator(norm=None)``, i.e. the *unnormalised* ``torch.fft.fft2`` with no
  shift, and predicted intensity = sum over probe modes of ``|fft2(P * O_patch)|^2``.
  Ours is ``D |fft2_ortho(P O)|^2 / sum|P|^2 = D |fft2(P O)|^2 / (N^2 sum|P|^2)``, so handing
  pty-chi the probe ``P * sqrt(D / (N^2 sum|P|^2))`` makes its forward model equal to our
  expected counts, in photons (the counts go in unscaled). ``rescale_probe_intensity_in_first_epoch``
  is switched off: the probe and its power are known, and epoch 0 would otherwise be spent on
  rescaling instead of updating the object.
* Positions: pty-chi takes (y, x) probe positions in pixels relative to an origin
  ``pos_origin_coords`` of the object buffer; buffer index = position + origin, and a patch of
  size N centred on buffer coordinate p starts at p - (N - 1) / 2. Our patch starts at c - N/2, so
  ``p = c - 1/2``. We use an object buffer holding our H x W grid plus a ``MARGIN``-pixel frame
  (so pty-chi never pads patches at the border), the origin ``(H//2 + MARGIN - 1/2,
  W//2 + MARGIN - 1/2)`` (``SPECIFIED``) and ``position = c - (H//2, W//2)``: integer centres stay
  integer, axes keep their order and sense (no flip, no transpose), and our grid is the buffer
  crop ``[MARGIN:MARGIN + H, MARGIN:MARGIN + W]``.
* Sub-pixel positions: pty-chi extracts the patch at the rounded position and Fourier-shifts the
  probe by the fractional residual; we shift the object instead. The exit waves then differ by a
  translation only (same intensity) up to the probe's edge values; measured difference ~1% of the
  pattern norm for this project's probes, exact (float32) for integer positions.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import sys
import time
import warnings
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np

from ptycho.config import (
    ENGINE_KEYS,
    IterativeConfig,
    check_engine,
    dose_label,
    is_solver_arm,
    snapshot_epochs,
)
from ptycho.data.dataset import Dataset
from ptycho.errors import ConfigError, DatasetError, PtychoError
from ptycho.physics.forward import check_positions, patch_corners
from ptycho.progress import format_duration, job_label
from ptycho.reconstruct.io import (
    Reconstruction,
    Snapshots,
    fill_unlit,
    object_sha256,
    read_reconstruction,
)

log = logging.getLogger("ptycho.iterative")

NOISE_MODELS = ("gaussian", "poisson")
DEVICES = ("auto", "cpu", "cuda")
MARGIN = 2  # object-buffer frame (pixels) around our grid; pty-chi wants range + N + 2 pixels
SEED = 0  # minibatch shuffling of pty-chi's DataLoader (torch, numpy and random are seeded)
READ_BATCH = 256  # patterns per HDF5 read while assembling the pty-chi tensor

# Tuned on the scaled cells (419 test patterns of N = 32 for dense, 65 for sparse; 100 epochs of
# batch 64, 1 CPU thread). Phase SSIM in the evaluation region, random batches -> compact batches
# with momentum 0.5: dense 1e5 0.938 -> 0.950, dense 1e3 0.517 -> 0.583, sparse 1e5 0.528 ->
# 0.592, sparse 1e3 0.180 -> 0.180, at the same cost per epoch (~0.25 s dense). Other settings
# tried on dense 1e5 gave no gain: uniform batches 0.944, step scaler 1.0 0.943, damping 0.03
# 0.939, Poisson noise model 0.927, batch 128 0.921, batch 32 (50 epochs) 0.889 vs 0.875.
BATCHING_MODE = "compact"  # spatially compact minibatches (PtychoShelves' "compact")
MOMENTUM_GAIN = 0.5  # LSQML momentum acceleration of object/probe updates (compact mode)
OBJECT_STEP_SIZE = 1.0
OPTIMAL_STEP_SIZE_SCALER = 0.9
GAUSSIAN_NOISE_STD = 0.5

# The other pty-chi engines (``engine``) and the defaults of their parameters where a block leaves
# them out (docs/study.md, "Solver engines", with the measurements that chose them). LSQML's
# step size is OBJECT_STEP_SIZE; its other settings above are LSQML's only. Minibatches of 64
# compact patterns sum about ten overlapping updates per pixel, so pty-chi's step 1.0 diverges for
# PIE (1e3 dense) and rPIE diverges from 0.3; the defaults sit about 3x below. ePIE's update
# carries its alpha (0.1), so it takes larger steps (4.0 converged; default 2.0). DM oscillates
# away from its best object after ~10 epochs on these counts; inertia 0.7 damps it (1e5 dense
# phase SSIM 0.28 -> 0.58 after 100 epochs).
ENGINE_NAMES = {"lsqml": "LSQML", "pie": "PIE", "epie": "ePIE", "rpie": "rPIE", "dm": "DM"}
PIE_FAMILY = ("pie", "epie", "rpie")
FULL_PASS = ("dm",)  # no minibatches: every epoch projects all exit waves at once
ENGINE_DEFAULTS = {
    "lsqml": {"step_size": OBJECT_STEP_SIZE},
    "pie": {"step_size": 0.3, "object_alpha": 0.1, "probe_alpha": 0.1},
    "epie": {"step_size": 2.0, "object_alpha": 0.1, "probe_alpha": 0.1},
    "rpie": {"step_size": 0.1, "object_alpha": 0.1, "probe_alpha": 0.1},
    "dm": {"relaxation": 1.0, "inertia": 0.7},
}
EXIT_WAVE_CHUNK = 64  # DM: exit waves per chunk (memory only, no effect on the result)


def engine_settings(cfg) -> tuple[str, dict]:
    """The engine of an iterative config ('lsqml' when unset) and its parameters, the engine's
    defaults (:data:`ENGINE_DEFAULTS`) filled in where the config leaves them out (None)."""
    engine = getattr(cfg, "engine", None) or "lsqml"
    out = dict(ENGINE_DEFAULTS[engine])
    for key in ENGINE_KEYS:
        v = getattr(cfg, key, None)
        if v is not None:
            out[key] = float(v)
    return engine, out


def validate_config(cfg: IterativeConfig) -> None:
    """Reject budgets and options pty-chi would fail on later (or silently change)."""
    it = cfg.iterations
    if isinstance(it, bool) or not isinstance(it, (int, np.integer)) or it < 1:
        raise ConfigError(f"iterative: iteration budget must be an integer >= 1 epochs, got {it!r}")
    bs = cfg.batch_size
    if isinstance(bs, bool) or not isinstance(bs, (int, np.integer)) or bs < 1:
        raise ConfigError(f"iterative: batch_size must be an integer >= 1, got {bs!r}")
    m = getattr(cfg, "probe_modes", 0)
    if isinstance(m, bool) or not isinstance(m, (int, np.integer)) or not 0 <= m <= 8:
        raise ConfigError(f"iterative: probe_modes must be an integer in 0..8, got {m!r}")
    if cfg.noise_model not in NOISE_MODELS:
        raise ConfigError(
            f"iterative: noise_model must be one of {NOISE_MODELS}, got {cfg.noise_model!r}"
        )
    ps = position_settings(cfg)
    if ps["position_correction"] not in ("gradient", "cross_correlation"):
        raise ConfigError("iterative: position_correction must be 'gradient' or "
                          f"'cross_correlation', got {ps['position_correction']!r}")
    if ps["position_update_limit_px"] is not None and not ps["position_clip_by_mad"]:
        # pty-chi applies a fixed limit only together with its MAD clipping
        raise ConfigError("iterative: position_update_limit_px needs position_clip_by_mad true "
                          "(or set the limit to null)")
    snapshot_epochs(it, cfg.snapshots)
    check_engine({f.name: getattr(cfg, f.name) for f in fields(cfg)}, "iterative")


@dataclass(frozen=True)
class NetworkStart:
    """The hybrid arm's start: a network arm's stitched test reconstruction with the pixels it
    left unlit set to 1 (like the flat start). ``wall_time_s`` is that network's inference and
    stitching time, which the hybrid's wall time includes."""

    arm: str
    source: str
    object: np.ndarray
    dose: float
    wall_time_s: float


def load_network_start(recon_path, arm: str | None = None) -> NetworkStart:
    """Read a network arm's reconstruction file as a solver start; ``arm`` (optional) is the arm
    it must come from. Raises DatasetError when the file is missing, comes from another arm or
    from a solver arm (never a flat or ground-truth object)."""
    rec = read_reconstruction(recon_path)
    if is_solver_arm(rec.arm):
        raise DatasetError(f"{recon_path}: a hybrid start must be a network arm's reconstruction, "
                           f"this one is from the {rec.arm!r} arm")
    if arm is not None and rec.arm != arm:
        raise DatasetError(f"{recon_path}: reconstruction of arm {rec.arm!r}, expected {arm!r}")
    return NetworkStart(arm=rec.arm, source=str(recon_path), object=fill_unlit(rec.object, rec.weight),
                        dose=float(rec.dose), wall_time_s=float(rec.wall_time_s))


def illumination_map(probe: np.ndarray, positions: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Sum over positions of |P|^2 on the object grid (H, W), float64, our position convention.

    Patch pixel i of centre c sits at object coordinate c - N/2 + i; the fractional part is
    placed by bilinear interpolation (non-negative, exact for integer centres), so the map covers
    the same footprint as the forward model (N, or N + 1 pixels for a fractional centre).
    """
    inten = np.abs(np.asarray(probe, dtype=np.complex128)) ** 2
    N = inten.shape[0]
    pos = np.asarray(positions, dtype=np.float64).reshape(-1, 2)
    check_positions(shape, pos, N)
    corners = patch_corners(pos, N)
    frac = (pos - N / 2) - corners
    out = np.zeros((shape[0] + 1, shape[1] + 1), dtype=np.float64)
    padded = np.zeros((N + 1, N + 1))
    for (y, x), (fy, fx) in zip(corners, frac):
        # value at object pixel corner + j is I(j - f): linear interpolation between j and j - 1
        padded[:] = 0.0
        padded[:N, :N] += (1 - fy) * (1 - fx) * inten
        padded[1:, :N] += fy * (1 - fx) * inten
        padded[:N, 1:] += (1 - fy) * fx * inten
        padded[1:, 1:] += fy * fx * inten
        out[y : y + N + 1, x : x + N + 1] += padded
    return out[: shape[0], : shape[1]]


def _choose_device(device: str, torch) -> str:
    has_cuda = bool(torch.cuda.is_available())
    if device == "cuda" and not has_cuda:
        raise PtychoError("iterative: device 'cuda' requested but torch sees no CUDA device")
    return "cuda" if (device == "cuda" or (device == "auto" and has_cuda)) else "cpu"


def _read_inputs(test_path: Path):
    """Counts (n, N, N) float32, positions, probe, object shape, dose, overlap view and the file's
    cell replicate."""
    with Dataset(test_path, require_object=False) as ds:
        n, N = ds.n, ds.N
        if n < 1:
            raise DatasetError(f"{test_path}: the test split holds no diffraction patterns")
        positions = ds.positions
        probe = ds.probe
        modes = ds.probe_modes
        try:
            shape = tuple(int(s) for s in ds.object_shape)
        except (KeyError, TypeError, ValueError) as exc:
            raise DatasetError(
                f"{test_path}: no '/object' and no 'object_size' in the config attribute, so the "
                "object grid of the reconstruction is unknown"
            ) from exc
        dose = ds.dose
        replicate = ds.replicate
        level = (ds.errors or {}).get("label")
        try:
            view = str(ds.config.get("overlap_view", ""))
        except Exception:  # noqa: BLE001 - the view is informative only
            view = ""
        # pty-chi holds the whole split as one tensor; a test split is small enough for that
        # (scaled: ~420 x 32 x 32 float32 = 1.7 MB; full: a few thousand x 128 x 128 = ~0.3 GB).
        # The file is still read in bounded batches, so no second full copy is made on the way.
        counts = np.empty((n, N, N), dtype=np.float32)
        for idx, block in ds.iter_batches(READ_BATCH):
            counts[idx] = block
    if not np.all(np.isfinite(positions)):
        raise DatasetError(f"{test_path}: '/positions' contains NaN or inf")
    if not np.all(np.isfinite(probe)) or float(np.sum(np.abs(probe) ** 2)) <= 0:
        raise DatasetError(f"{test_path}: '/probe' is zero everywhere or not finite")
    if not np.all(np.isfinite(counts)) or float(counts.min()) < 0:
        raise DatasetError(f"{test_path}: '/diffraction' counts must be finite and >= 0")
    try:
        check_positions(shape, positions, N)
    except DatasetError as exc:
        raise DatasetError(f"{test_path}: {exc}") from exc
    return counts, positions, probe, shape, dose, view, replicate, modes, level


EXTRA_MODE_POWER = 0.05
"""Power fraction of each probe mode the solve adds to the nominal probe (``probe_modes``)."""


def solve_modes(nominal: np.ndarray, requested: int) -> np.ndarray:
    """The probe modes (M, N, N) a solve starts from: the nominal modes (``requested`` 0 or their
    number), the first ``requested`` of them, or the nominal modes with further low-order modes of
    ``EXTRA_MODE_POWER`` each added (the total power kept)."""
    from ptycho.physics.errors import coherent_modes

    nominal = np.asarray(nominal, dtype=np.complex64)
    K = len(nominal)
    M = K if requested in (0, K) else int(requested)
    if M <= K:
        return nominal[:M]
    total = float(np.sum(np.abs(nominal.astype(np.complex128)) ** 2))
    fr = [1.0 - EXTRA_MODE_POWER * (M - 1)] + [EXTRA_MODE_POWER] * (M - 1)
    made = coherent_modes(nominal[0], fr)
    made *= np.float32(np.sqrt(total / float(np.sum(np.abs(made.astype(np.complex128)) ** 2))))
    if K > 1:  # keep the nominal modes, append the new ones
        made = np.concatenate([nominal, made[K:]])
    return made.astype(np.complex64)


@contextlib.contextmanager
def _quiet_ptychi():
    """pty-chi logs every epoch at INFO, draws tqdm bars at INFO and warns through torch; keep
    only its warnings and errors. Our own INFO lines report progress instead."""
    lg = logging.getLogger("ptychi")
    old = lg.level
    lg.setLevel(logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=DeprecationWarning)
            warnings.filterwarnings("ignore", message="Converting a tensor with requires_grad")
            yield
    finally:
        lg.setLevel(old)


# Position correction (``refine_positions``): the study's iterative settings (docs/robustness.md,
# "Position correction"); their defaults where a config does not set them. Measured on a cell of
# N = 32 (128 x 128 object, 243 patterns, dose 1e5, 1 px RMS jitter, 100 epochs): step 4 from
# epoch 5, no update limit -> 0.20 px RMS (mean offset removed); pty-chi's former defaults (step
# 0.3, 0.1 px limit per update, MAD clipping) move 1 px of jitter by about 0.1 px in 60 epochs.
POSITION_DEFAULTS = {f.name: f.default for f in fields(IterativeConfig)
                     if f.name.startswith("position_")}


def position_settings(cfg) -> dict:
    """The position-correction settings of an iterative config (defaults where unset)."""
    return {k: getattr(cfg, k, v) for k, v in POSITION_DEFAULTS.items()}


def _build_options(api, cfg: IterativeConfig, n: int, shape, device: str, n_modes: int = 1):
    engine, es = engine_settings(cfg)
    opts = {"lsqml": api.LSQMLOptions, "pie": api.PIEOptions, "epie": api.EPIEOptions,
            "rpie": api.RPIEOptions, "dm": api.DMOptions}[engine]()
    ro = opts.reconstructor_options
    ro.num_epochs = int(cfg.iterations)
    if engine not in FULL_PASS:  # DM takes every pattern at once (batch_size unused)
        ro.batch_size = int(min(cfg.batch_size, n))
    if engine == "lsqml":
        ro.noise_model = api.NoiseModels(cfg.noise_model)
        ro.gaussian_noise_std = GAUSSIAN_NOISE_STD
    ro.batching_mode = api.BatchingModes(BATCHING_MODE)
    ro.default_device = api.Devices.GPU if device == "cuda" else api.Devices.CPU
    ro.random_seed = SEED
    if engine == "lsqml":
        ro.rescale_probe_intensity_in_first_epoch = False
        ro.momentum_acceleration_gain = MOMENTUM_GAIN
    if engine in FULL_PASS:  # their cost is their own exit-wave error (pty-chi warns otherwise)
        ro.displayed_loss_function = None
    if engine == "dm":
        ro.exit_wave_update_relaxation = es["relaxation"]
        ro.chunk_length = EXIT_WAVE_CHUNK

    opts.data_options.fft_shift = True  # our patterns have DC at (N/2, N/2)
    opts.data_options.save_data_on_device = device == "cuda"

    oo = opts.object_options
    oo.optimizable = True
    if engine == "lsqml" or engine in PIE_FAMILY:
        oo.step_size = es["step_size"]
    if engine == "lsqml":
        oo.optimal_step_size_scaler = OPTIMAL_STEP_SIZE_SCALER
    elif engine in PIE_FAMILY:
        oo.alpha = es["object_alpha"]
    else:
        oo.inertia = es["inertia"]
    oo.pixel_size_m = 1.0
    oo.determine_position_origin_coords_by = api.ObjectPosOriginCoordsMethods.SPECIFIED
    H, W = shape
    oo.position_origin_coords = [H // 2 + MARGIN - 0.5, W // 2 + MARGIN - 0.5]
    # With a known probe the object-probe scale is fixed by the dose; renormalising the object to
    # unit mean transmission (and the probe inversely) only makes sense when the probe is refined.
    oo.remove_object_probe_ambiguity.enabled = bool(cfg.refine_probe)

    po = opts.probe_options
    po.optimizable = bool(cfg.refine_probe)
    if engine in PIE_FAMILY:
        po.alpha = es["probe_alpha"]
    elif engine in FULL_PASS:
        po.inertia = es["inertia"]
    # one mode: nothing to orthogonalise; several refined modes: kept orthogonal by pty-chi
    po.orthogonalize_incoherent_modes.enabled = bool(cfg.refine_probe) and n_modes > 1

    pp = opts.probe_position_options
    pp.optimizable = bool(getattr(cfg, "refine_positions", False))
    if pp.optimizable:
        ps = position_settings(cfg)
        # the object first: positions move once it has taken shape
        pp.optimization_plan.start = ps["position_start_epoch"]
        pp.step_size = ps["position_step_size"]
        co = pp.correction_options
        co.correction_type = api.PositionCorrectionTypes(ps["position_correction"])
        co.update_magnitude_limit = ps["position_update_limit_px"]
        co.clip_update_magnitude_by_mad = ps["position_clip_by_mad"]
        if engine == "lsqml":  # LSQML's only (check_engine refuses a gain for the others)
            pp.momentum_acceleration_gain = ps["position_momentum_gain"]
    opts.opr_mode_weight_options.optimizable = False
    return opts


def _import_ptychi():
    """Import torch and pty-chi on first use (never at module import: docs/conventions.md, "Two
    frameworks, two processes")."""
    if "torch" not in sys.modules:
        # OpenMP threads that spin while waiting make torch 5x slower on a shared 2-core machine
        # (measured: 73 s instead of 14 s for 50 epochs with 2 threads); passive waiting costs
        # nothing here. Only effective before torch (and its OpenMP runtime) is loaded.
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    try:
        import torch
        from ptychi import api
        from ptychi.api.task import PtychographyTask
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise PtychoError(
            f"the iterative arm needs pty-chi ({exc}); install it with: pip install -e \".[iterative]\""
        ) from exc
    return torch, api, PtychographyTask


def probe_scale(probe: np.ndarray, dose: float) -> float:
    """Factor s with |fft2(s P O)|^2 = D |fft2_ortho(P O)|^2 / sum|P|^2: s = sqrt(D / (N^2 sum|P|^2))
    (probe modes (M, N, N): the sum runs over every mode, whose intensities add)."""
    N0, N1 = np.shape(probe)[-2:]
    norm = float(np.sum(np.abs(np.asarray(probe, dtype=np.complex128)) ** 2))
    return math.sqrt(float(dose) / (N0 * N1 * norm))


def _ptychi_inputs(counts, positions, probe, shape, dose, object_guess=None):
    """Our dataset in pty-chi's units and frames (see the module docstring).

    Returns (diffraction, object buffer (1, H + 2m, W + 2m), probe (1, 1, N, N), y, x positions,
    probe scale). ``object_guess`` (H, W) fills the buffer's grid part; default: flat ones.
    """
    H, W = shape
    scale = probe_scale(probe, dose)
    buf = np.ones((1, H + 2 * MARGIN, W + 2 * MARGIN), dtype=np.complex64)
    if object_guess is not None:
        buf[0, MARGIN : MARGIN + H, MARGIN : MARGIN + W] = object_guess
    probe_p = probe.astype(np.complex64) * np.float32(scale)
    probe_p = probe_p[None, None] if probe_p.ndim == 2 else probe_p[None]
    rel = np.asarray(positions, dtype=np.float64) - np.array([H // 2, W // 2], dtype=np.float64)
    return counts, buf, probe_p, rel[:, 0].copy(), rel[:, 1].copy(), scale


@contextlib.contextmanager
def _ptychi_task(cfg: IterativeConfig, counts, positions, probe, shape, dose, device: str,
                 object_guess=None):
    """A built pty-chi task (the config's engine) on our data; restores torch's global default device and dtype
    (pty-chi sets them process-wide) when the block ends."""
    torch, api, PtychographyTask = _import_ptychi()
    data, buf, probe_p, pos_y, pos_x, _ = _ptychi_inputs(counts, positions, probe, shape, dose,
                                                         object_guess)
    opts = _build_options(api, cfg, len(counts), shape, device,
                          1 if np.ndim(probe) == 2 else int(np.shape(probe)[0]))
    old_device, old_dtype = torch.get_default_device(), torch.get_default_dtype()
    try:
        with _quiet_ptychi():
            task = PtychographyTask(
                opts,
                diffraction_data=data,
                object_data=buf,
                probe_data=probe_p,
                probe_position_y_px=pos_y,
                probe_position_x_px=pos_x,
                opr_mode_weights_data=np.ones((len(data), 1), dtype=np.float32),
            )
            with task:
                yield task
    finally:
        torch.set_default_device(old_device)
        torch.set_default_dtype(old_dtype)


def ptychi_expected_counts(obj, probe, positions, dose) -> np.ndarray:
    """pty-chi's forward model in our units: expected counts (n, N, N), DC at (N/2, N/2), of the
    object ``obj`` (H, W) with the dataset ``probe`` at ``positions`` and ``dose``, through exactly
    the conversion ``reconstruct_iterative`` uses. Equals ``physics.forward.simulate_expected``
    to float32 precision at integer positions (verification of the conventions; CPU)."""
    torch, _, _ = _import_ptychi()
    obj = np.asarray(obj, dtype=np.complex64)
    probe = np.asarray(probe, dtype=np.complex64)
    pos = np.asarray(positions, dtype=np.float64).reshape(-1, 2)
    N = probe.shape[0]
    check_positions(obj.shape, pos, N)
    cfg = IterativeConfig(iterations=1, batch_size=len(pos), noise_model="gaussian",
                          refine_probe=False)
    dummy = np.zeros((len(pos), N, N), dtype=np.float32)
    with (_ptychi_task(cfg, dummy, pos, probe, obj.shape, float(dose), "cpu", object_guess=obj)
          as task, torch.no_grad()):
        y = task.reconstructor.forward_model(torch.arange(len(pos))).detach().cpu().numpy()
    return np.fft.fftshift(y, axes=(-2, -1)).astype(np.float64)


def reconstruct_iterative(test_path, cfg: IterativeConfig, threads: int = 1,
                          device: str = "auto", start: NetworkStart | None = None) -> Reconstruction:
    """pty-chi reconstruction of a test split (arm ``iterative``, or ``hybrid`` with a
    ``start``; gridsize 1) with the config's engine (LSQML when ``cfg.engine`` is None).

    Parameters
    ----------
    test_path : the test dataset file (counts in photons, positions in object pixels, probe).
    cfg : iterations (epochs, >= 1), batch_size, noise_model ('gaussian' | 'poisson'),
        refine_probe (the known probe is the start; refined only if True), snapshots (epochs at
        which the object is recorded, see :func:`ptycho.config.snapshot_epochs`), engine and
        its parameters (:func:`engine_settings`; LSQML only: noise_model).
    threads : torch intra-op threads.
    device : 'auto' (CUDA when torch sees it), 'cpu' or 'cuda'.
    start : None for a flat start (ones, never the ground truth); a :class:`NetworkStart` for the
        hybrid arm (its object on the same grid and dose as the test split).

    Returns the complex object on the ground-truth grid (H, W) with our position convention
    (0 where no pattern reached), ``weight`` = sum of |P|^2 over the positions (the dataset's
    probe, unscaled), ``snapshots`` taken during the one solve (the last is the final object), and
    ``info`` with the budget, noise model, start (``initial_object``, ``start_object_sha256``;
    for the hybrid ``start_arm``, ``start_source``, ``start_wall_time_s``), wall time, device and
    the per-epoch cost history (pty-chi's displayed cost: mean squared error of sqrt intensities).
    Wall times exclude the pty-chi import; the hybrid's include the start network's inference.
    """
    validate_config(cfg)
    if device not in DEVICES:
        raise ConfigError(f"iterative: device must be one of {DEVICES}, got {device!r}")
    test_path = Path(test_path)
    (counts, positions, probe, shape, dose, view, replicate, nominal_modes,
     level) = _read_inputs(test_path)
    modes = solve_modes(nominal_modes, int(getattr(cfg, "probe_modes", 0)))
    # one mode: exactly the dataset's probe (N, N), as the solve has always used it
    solve_probe = probe if len(modes) == 1 and len(nominal_modes) == 1 else modes
    if solve_probe.ndim == 3:  # the illumination of incoherent modes: their intensities add
        probe = np.sqrt(np.sum(np.abs(modes.astype(np.complex128)) ** 2, axis=0))
    # who is solving, in every progress line: e.g. "iterative 1e5_dense_r0"
    label = job_label("iterative" if start is None else "hybrid", dose_label(dose), view or "none",
                      replicate, level)
    n, N = counts.shape[0], counts.shape[1]
    H, W = shape
    guess = _start_object(start, shape, dose, test_path)
    epochs = snapshot_epochs(cfg.iterations, cfg.snapshots)
    weight = illumination_map(probe, positions, shape)

    t_import = time.perf_counter()
    torch, _, _ = _import_ptychi()
    t0 = time.perf_counter()
    import_s = t0 - t_import
    dev = _choose_device(device, torch)
    torch.set_num_threads(max(1, int(threads)))
    engine, es = engine_settings(cfg)
    name = ENGINE_NAMES[engine]
    batch = n if engine in FULL_PASS else int(min(cfg.batch_size, n))
    log.info("%s: pty-chi %s on %s, %d patterns of %d x %d, object %d x %d, %d epochs, "
             "batch %d, noise %s, refine_probe %s, device %s, %d threads, start %s, snapshots at "
             "%s", label, name, test_path, n, N, N, H, W, cfg.iterations, batch, cfg.noise_model, cfg.refine_probe, dev,
             torch.get_num_threads(), "flat" if start is None else start.arm, list(epochs))
    costs: list[float] = []
    snaps, times = [], []
    with _ptychi_task(cfg, counts, positions, solve_probe, shape, dose, dev, guess) as task:
        total = int(cfg.iterations)
        chunk = max(1, math.ceil(total / 10))
        # one solve, paused at every progress report and snapshot epoch (pty-chi keeps its state
        # between run() calls, so the pauses do not change the result)
        done = 0
        solve_s = 0.0  # time in pty-chi's epochs (the ETA's rate), snapshots and set-up excluded
        for stop in sorted(set(range(chunk, total, chunk)) | set(epochs)):
            t_run = time.perf_counter()
            task.run(n_epochs=stop - done)
            solve_s += time.perf_counter() - t_run
            done = stop
            costs = [float(v) for v in task.reconstructor.loss_tracker.table["loss"]]
            left = (f"ETA {format_duration(solve_s / done * (total - done))}" if done < total
                    else "done")
            log.info("%s %s epoch %d/%d: cost %.6g (%.1f s, %s)", label, name, done, total,
                     costs[-1], solve_s, left)
            if not math.isfinite(costs[-1]):
                raise PtychoError(f"{test_path}: {name} diverged (cost {costs[-1]}) at epoch "
                                  f"{done}")
            if done in epochs:
                buf = task.get_data_to_cpu("object", as_numpy=True)[0]
                snaps.append(_grid_object(buf, shape, weight, test_path, name))
                times.append(time.perf_counter() - t0)
        probe_all = task.get_data_to_cpu("probe", as_numpy=True)[0]
        probe_out = probe_all[0]
        pos_out = task.get_data_to_cpu("probe_positions", as_numpy=True) if getattr(
            cfg, "refine_positions", False) else None
    wall = times[-1]
    obj = snaps[-1]
    offset = 0.0 if start is None else start.wall_time_s

    scale = probe_scale(solve_probe, dose)
    info = {
        "solver": f"pty-chi {name}",
        "ptychi_version": _ptychi_version(),
        "iterations": int(cfg.iterations),
        "batch_size": batch,
        "noise_model": cfg.noise_model,
        "refine_probe": bool(cfg.refine_probe),
        "initial_object": "flat (ones)" if start is None else f"network reconstruction ({start.arm})",
        "start_object_sha256": object_sha256(guess),
        "device": dev,
        "peak_gpu_mb": torch.cuda.max_memory_allocated() / 2**20 if dev == "cuda" else None,
        "threads": int(torch.get_num_threads()),
        "wall_time_s": wall + offset,
        "solve_wall_time_s": wall,
        "import_s": import_s,
        "snapshot_epochs": list(epochs),
        "cost_history": costs,
        "cost": "pty-chi displayed cost per epoch: mean squared error of sqrt(counts)",
        "probe_scale": scale,
        "batching_mode": BATCHING_MODE,
        "momentum_gain": MOMENTUM_GAIN,
        "object_step_size": es.get("step_size"),
        "optimal_step_size_scaler": OPTIMAL_STEP_SIZE_SCALER,
        "gaussian_noise_std": GAUSSIAN_NOISE_STD,
        "seed": SEED,
    }
    if engine != "lsqml":  # the engine and its parameters instead of LSQML's settings
        for key in ("noise_model", "momentum_gain", "object_step_size", "optimal_step_size_scaler",
                    "gaussian_noise_std"):
            info.pop(key)
        info["engine"] = engine
        info.update(es)
        if engine in FULL_PASS:
            info.pop("batching_mode")
            info["cost"] = (f"pty-chi {name} error per epoch: norm of the exit-wave update "
                            "(not comparable with LSQML's cost)")
    if start is not None:
        info.update({
            "start_arm": start.arm,
            "start_source": start.source,
            "start_wall_time_s": start.wall_time_s,
            "start_fill": "pixels the network left unlit (weight 0) set to 1, like the flat start",
        })
    if cfg.refine_probe and solve_probe.ndim == 2:
        # power of the refined probe relative to the known one (pty-chi's dose scale divided out)
        info["refined_probe_power_ratio"] = float(
            np.sum(np.abs(probe_out) ** 2) / (scale**2 * np.sum(np.abs(probe) ** 2))
        )
    final_probe = final_pos = None
    if cfg.refine_probe or solve_probe.ndim == 3:
        # the probe the arm ended with, in the dataset's units (pty-chi's dose scale divided out)
        final_probe = (np.asarray(probe_all) / scale).astype(np.complex64)
        info["probe_modes"] = len(final_probe)
        info["probe_mode_power_fractions"] = [
            float(v) for v in np.sum(np.abs(final_probe) ** 2, axis=(1, 2))
            / np.sum(np.abs(final_probe) ** 2)]
        if cfg.refine_probe and solve_probe.ndim == 3:
            info["refined_probe_power_ratio"] = float(
                np.sum(np.abs(final_probe) ** 2) / np.sum(np.abs(modes) ** 2))
    if pos_out is not None:
        final_pos = np.asarray(pos_out, np.float64) + np.array([H // 2, W // 2], np.float64)
        info.update(refine_positions=True, **position_settings(cfg),
                    position_change_rms_px=float(np.sqrt(np.mean(np.sum(
                        (final_pos - positions) ** 2, axis=1)))))
    log.info("%s: pty-chi %s finished in %.1f s (+%.1f s import%s), final cost %.6g", label,
             name, wall, import_s, "" if start is None else f", +{offset:.1f} s {start.arm} inference",
             costs[-1])
    return Reconstruction(
        object=obj, weight=weight.astype(np.float32),
        arm="iterative" if start is None else "hybrid", gridsize=1, dose=float(dose),
        overlap_view=view, n_patterns=int(n), wall_time_s=wall + offset, source=str(test_path),
        info=info,
        snapshots=Snapshots(epochs=epochs, wall_time_s=np.asarray(times) + offset,
                            objects=np.stack(snaps)),
        probe=final_probe, positions=final_pos,
    )


def _start_object(start: NetworkStart | None, shape, dose: float, test_path) -> np.ndarray:
    """The (H, W) start object: ones (flat), or the network's filled reconstruction after checking
    that it belongs to this test split (grid and dose)."""
    if start is None:
        return np.ones(shape, dtype=np.complex64)
    obj = np.asarray(start.object, dtype=np.complex64)
    if obj.shape != tuple(shape):
        raise DatasetError(f"{start.source}: start object is {obj.shape}, the object grid of "
                           f"{test_path} is {tuple(shape)}")
    if not math.isclose(start.dose, float(dose), rel_tol=1e-6):
        raise DatasetError(f"{start.source}: dose {start.dose} differs from the test split's dose "
                           f"{dose} ({test_path})")
    if not np.all(np.isfinite(obj)):
        raise DatasetError(f"{start.source}: start object contains NaN or inf")
    return obj


def _grid_object(buf: np.ndarray, shape, weight: np.ndarray, test_path, name: str = "LSQML"
                 ) -> np.ndarray:
    """Our (H, W) grid out of pty-chi's object buffer, 0 where no pattern reached."""
    H, W = shape
    if buf.shape != (H + 2 * MARGIN, W + 2 * MARGIN):
        raise PtychoError(f"pty-chi returned an object buffer of shape {buf.shape}, expected "
                          f"{(H + 2 * MARGIN, W + 2 * MARGIN)}")
    obj = buf[MARGIN : MARGIN + H, MARGIN : MARGIN + W]
    if not np.all(np.isfinite(obj)):
        raise PtychoError(f"{test_path}: {name} produced NaN or inf in the object")
    return np.where(weight > 0, obj, 0).astype(np.complex64)


def _ptychi_version() -> str:
    try:
        from importlib.metadata import version

        return version("ptychi")
    except Exception:  # noqa: BLE001
        return "unknown"


__all__ = [
    "ENGINE_DEFAULTS",
    "NetworkStart",
    "engine_settings",
    "illumination_map",
    "load_network_start",
    "probe_scale",
    "ptychi_expected_counts",
    "reconstruct_iterative",
    "solve_modes",
    "validate_config",
]
