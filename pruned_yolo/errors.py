"""Exceptions that the CLI turns into one clear error line instead of a traceback."""


class PrunedYoloError(Exception):
    """Base class for every user-facing error of pruned-yolo."""


class ConfigError(PrunedYoloError):
    """A model YAML, architecture description or hyperparameter file is invalid."""


class CheckpointError(PrunedYoloError):
    """A checkpoint is missing, truncated or in an unknown format."""


class UnsafeCheckpointError(CheckpointError):
    """A pickled checkpoint references a class outside the allowlist."""


class DataError(PrunedYoloError):
    """A data YAML, image folder or label file is missing or malformed."""
