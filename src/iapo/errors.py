"""Errors that the command line reports as one line with exit code 2 (bad input, never a bug)."""


class IapoError(Exception):
    """A user-facing error: the CLI prints `iapo: error: <message>` and exits with code 2."""


class ConfigError(IapoError):
    """A configuration value is out of range or inconsistent."""


class EnvError(IapoError):
    """The environment cannot be made or is not supported."""


class RunDirError(IapoError):
    """The run directory cannot be used (holds another run, is a file, is not writable)."""


class NumericError(IapoError):
    """A loss, parameter, action or observation stopped being finite."""
