"""ptycho-dose: physics, models, training, reconstruction, evaluation and reporting for the
dose x overlap ptychography study. Importing the package has no side effects and imports neither
TensorFlow nor PyTorch; the framework-specific modules import them on use."""

__version__ = "0.1.0"
FORMAT_VERSION = 1
