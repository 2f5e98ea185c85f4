"""Complex test objects: amplitude in (0, 1], phase in radians."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ptycho.errors import DatasetError

# Images that ship with scikit-image (no download; skimage.data also holds functions that download
# data sets or return file names). The study schema's enum 'skimage_image' lists the same names.
SKIMAGE_IMAGES = (
    "astronaut", "brick", "camera", "cat", "cell", "checkerboard", "chelsea", "clock", "coffee",
    "coins", "colorwheel", "grass", "gravel", "horse", "hubble_deep_field", "immunohistochemistry",
    "logo", "microaneurysms", "moon", "page", "retina", "rocket", "shepp_logan_phantom", "text",
)


def _skimage_gray(name: str) -> np.ndarray:
    from skimage import color, data

    if name not in SKIMAGE_IMAGES:
        raise DatasetError(f"object: '{name}' is not an image that ships with scikit-image; "
                           f"expected one of {list(SKIMAGE_IMAGES)}")
    loader = getattr(data, name)
    img = np.asarray(loader(), dtype=np.float64)
    if img.ndim == 3:
        img = color.rgb2gray(img[..., :3] / (255.0 if img.max() > 1 else 1.0))
    img = img - img.min()
    peak = img.max()
    return img / peak if peak > 0 else img


def _fit(img: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Centre-crop to the target aspect ratio, then resize (anti-aliased) to ``shape``."""
    from skimage.transform import resize

    H, W = shape
    h, w = img.shape
    target = H / W
    if h / w > target:
        nh = round(w * target)
        y0 = (h - nh) // 2
        img = img[y0 : y0 + nh]
    else:
        nw = round(h / target)
        x0 = (w - nw) // 2
        img = img[:, x0 : x0 + nw]
    out = resize(img, (H, W), order=1, anti_aliasing=True, mode="reflect")
    out = out - out.min()
    peak = out.max()
    return out / peak if peak > 0 else out


def skimage_object(
    shape: tuple[int, int],
    amplitude_image: str = "coins",
    phase_image: str = "astronaut",
    amplitude_range: tuple[float, float] = (0.4, 1.0),
    phase_range: tuple[float, float] = (-1.0, 1.0),
) -> np.ndarray:
    """The embedded default object, built from images that ship with scikit-image (no download).

    Returns complex64 (H, W): amplitude linearly mapped into ``amplitude_range`` (within (0, 1]),
    phase (radians) linearly mapped into ``phase_range``.
    """
    a = _fit(_skimage_gray(amplitude_image), shape)
    p = _fit(_skimage_gray(phase_image), shape)
    amp = amplitude_range[0] + (amplitude_range[1] - amplitude_range[0]) * a
    phase = phase_range[0] + (phase_range[1] - phase_range[0]) * p
    return (amp * np.exp(1j * phase)).astype(np.complex64)


def load_complex_array(path: str | Path, h5_key: str, npz_key: str, what: str) -> np.ndarray:
    """Load a complex 2-D array from HDF5 (``h5_key``) or NPZ (``npz_key``) with clear errors."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: {what} file not found")
    try:
        if path.suffix.lower() in (".h5", ".hdf5"):
            import h5py

            with h5py.File(path, "r") as f:
                if h5_key not in f:
                    raise DatasetError(f"{path}: no dataset '/{h5_key}' holding the {what}")
                arr = f[h5_key][()]
        elif path.suffix.lower() == ".npz":
            with np.load(path) as z:
                if npz_key not in z:
                    raise DatasetError(f"{path}: no array '{npz_key}' holding the {what}")
                arr = z[npz_key]
        else:
            raise DatasetError(f"{path}: {what} file must be .h5/.hdf5 or .npz")
    except DatasetError:
        raise
    except Exception as exc:  # corrupt HDF5/NPZ
        raise DatasetError(f"{path}: cannot read {what} file ({type(exc).__name__}: {exc})") from exc
    arr = np.asarray(arr)
    if arr.ndim != 2:
        raise DatasetError(f"{path}: {what} must be a 2-D array, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise DatasetError(f"{path}: {what} contains NaN or inf")
    return arr.astype(np.complex64)


def load_object(path: str | Path) -> np.ndarray:
    obj = load_complex_array(path, "object", "objectGuess", "object")
    amp = np.abs(obj)
    if amp.max() <= 0:
        raise DatasetError(f"{path}: object amplitude is zero everywhere")
    if amp.max() > 1.0 + 1e-6:
        raise DatasetError(f"{path}: object amplitude reaches {amp.max():.6g}; expected a "
                           "transmission in (0, 1] (scale an 8-bit image by 1/255)")
    return obj
