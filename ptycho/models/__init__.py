"""Keras builders (TensorFlow backend): the PINN with its differentiable physics layer and the
supervised baseline. Importing a submodule imports TensorFlow; importing this package does not."""
