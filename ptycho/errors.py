"""Errors raised by the ptycho package.

Every error names the file, key or value at fault and what was expected; workflow scripts turn
them into a one-line message and a non-zero exit.
"""


class PtychoError(ValueError):
    """Base class for user-facing errors (bad config, bad data, failed training)."""


class ConfigError(PtychoError):
    """A study or run configuration is invalid."""


class DatasetError(PtychoError):
    """A dataset, object or probe file is missing, corrupt or does not match the data contract."""


class TrainingError(PtychoError):
    """Training diverged (NaN/inf loss) or a model bundle does not match its data."""


class StorageError(PtychoError):
    """A result could not be written: disk full, quota exceeded, read-only or failing storage."""
