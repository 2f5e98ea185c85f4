"""Fitting loops, callbacks and model bundles (TensorFlow/Keras).

``ptycho.training.fit.train_arm`` trains one arm of one grid cell. Importing this package does not
import TensorFlow; its submodules do.
"""
