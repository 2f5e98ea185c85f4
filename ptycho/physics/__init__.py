"""Pure-NumPy physics: object, probe, scan geometry, far-field forward model, Poisson noise.

Conventions (docs/conventions.md): positions are patch centres (y, x) in object pixels; patch pixel
(i, j) of centre (cy, cx) sits at object pixel (cy - N/2 + i, cx - N/2 + j); far field is the
orthonormal 2-D FFT, fftshifted; dose D is incident photons per exposure.
"""
