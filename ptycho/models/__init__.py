"""Keras builders (TensorFlow backend): the PINN with its differentiable physics layer and the
supervised baseline; the model bundle's reading and writing (``bundle``) and the TensorFlow runtime
settings of a job (``runtime``), shared by training and inference. ``spec`` describes a backbone as
plain data (no Keras). Importing the builder submodules imports TensorFlow; importing this package,
``spec``, ``bundle`` or ``runtime`` does not (they import it on use)."""
