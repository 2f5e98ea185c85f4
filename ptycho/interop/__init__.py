"""Interoperability with other ptychography software (optional extra ``interop``).

- ``ptychodus``: export test splits as ptychodus diffraction files and every split and
  reconstruction as ptychodus product files (ptychodus's own ``save_product`` /
  ``save_diffraction_data``), and read them back (``load_product`` / ``load_diffraction_data``).

PtychoPINN NPZ files need no extra package: :mod:`ptycho.data.npz`. Importing this package imports
nothing; ``ptycho.interop.ptychodus`` imports ptychodus.
"""
