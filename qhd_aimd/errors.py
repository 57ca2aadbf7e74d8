"""One exception hierarchy for qhd_aimd."""


class QhdError(Exception):
    """Base class of every error raised on purpose by qhd_aimd."""


class ConfigError(QhdError, ValueError):
    """The study configuration is invalid; the message says which key and why."""


class ConvergenceError(QhdError, RuntimeError):
    """The electronic-structure solver did not converge (after its retries)."""


class MissingPropertyError(QhdError, NotImplementedError):
    """A backend was asked for a property it cannot provide."""
