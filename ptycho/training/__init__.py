"""Fitting loops and callbacks (TensorFlow/Keras): training and test-time adaptation.

``ptycho.training.fit.train_arm`` trains one arm of one grid cell. Importing this package does not
import TensorFlow; its submodules do.
"""
