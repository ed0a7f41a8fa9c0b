"""The project's exception types.

Every error raised at a boundary (config, CLI, files, partitions, snapshots, S3) is an `ExfmError`
whose message names what was wrong, where, and what was expected. The CLI prints the message and
exits with status 2; anything else is a bug and keeps its traceback.
"""


class ExfmError(Exception):
    """Base class of the errors a user can act on."""


class ConfigError(ExfmError):
    """params.yaml or a --set override is invalid."""


class IdentifierError(ExfmError, ValueError):
    """A dataset, vertical, ds, model or version name does not match its pattern."""


class SchemaError(ExfmError):
    """A table does not match the feature spec or a dataset's contract."""


class LakeError(ExfmError):
    """Reading or writing the lake failed (missing partition, unreachable S3, corrupt file)."""


class IngestError(ExfmError):
    """A user's source file cannot be converted into the lake's schema."""


class RegistryError(ExfmError):
    """A model snapshot is missing, corrupted, or does not match the feature spec."""


class TrainingError(ExfmError):
    """Training cannot go on (for instance a NaN or infinite loss); nothing was published."""
