"""The errors a run reports to the user: each names the key, value or file at fault and the way out."""


class ConfigError(ValueError):
    """A config that cannot be used; the message names the group or key and the value."""


class RunConflict(ConfigError):
    """A run folder that holds another run (a different configuration under the same name)."""


class BackupError(RuntimeError):
    """A backup that cannot be read; the message names its path and how to start over."""
