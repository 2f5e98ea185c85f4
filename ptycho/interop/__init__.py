"""Interoperability with other ptychography software: the readers and writers of other programs'
formats, and the import of a study's external data.

- ``npz``: PtychoPINN NPZ export and import (no extra package).
- ``ptychodus``: export test splits as ptychodus diffraction files and every split and
  reconstruction as ptychodus product files (ptychodus's own ``save_product`` /
  ``save_diffraction_data``), and read them back (``load_product`` / ``load_diffraction_data``);
  needs the optional extra ``interop``.
- ``external``: a study's external splits opened by format, checked before any job and imported
  into a cell's dataset files.

Every reader returns the split contract of :mod:`ptycho.data.source`. Importing this package
imports nothing; ``ptycho.interop.ptychodus`` imports ptychodus.
"""
