"""Physical units of a far-field ptychography geometry (the simulation itself is in pixels).

The object (sample-plane) pixel size of a far-field geometry is ``lambda z / (N p)``: photon
wavelength ``lambda = h c / E``, object-detector distance ``z``, detector size ``N`` pixels of pitch
``p`` (the Fraunhofer relation; ptychodus's ``compute_far_field_pixel_geometry`` uses the same).
"""

from __future__ import annotations

from scipy import constants

from ptycho.config import GeometryConfig
from ptycho.errors import ConfigError


def wavelength_m(photon_energy_eV: float) -> float:
    """Photon wavelength (m) of a photon energy (eV)."""
    if not photon_energy_eV > 0:
        raise ConfigError(f"photon energy must be > 0 eV, got {photon_energy_eV}")
    return constants.h * constants.c / (photon_energy_eV * constants.e)


def object_pixel_size_m(geometry: GeometryConfig, N: int) -> float:
    """Object pixel size (m) of an N x N detector in the far field: lambda z / (N p)."""
    return (wavelength_m(geometry.photon_energy_eV) * geometry.detector_distance_m
            / (N * geometry.detector_pixel_size_m))


def geometry_record(geometry: GeometryConfig, N: int) -> dict:
    """The geometry and the derived object pixel size, as written into exported files."""
    return {"photon_energy_eV": float(geometry.photon_energy_eV),
            "detector_distance_m": float(geometry.detector_distance_m),
            "detector_pixel_size_m": float(geometry.detector_pixel_size_m),
            "wavelength_m": wavelength_m(geometry.photon_energy_eV),
            "object_pixel_size_m": object_pixel_size_m(geometry, N)}


__all__ = ["geometry_record", "object_pixel_size_m", "wavelength_m"]
