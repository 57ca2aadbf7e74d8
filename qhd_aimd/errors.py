"""One exception hierarchy for qhd_aimd."""


class QhdError(Exception):
    """Base class of every error raised on purpose by qhd_aimd."""


class ConfigError(QhdError, ValueError):
    """The study configuration is invalid; the message says which key and why."""


class ConvergenceError(QhdError, RuntimeError):
    """The electronic-structure solver did not converge (after its retries)."""


class ActiveSpaceSwitchError(ConvergenceError):
    """The converged SA-CASSCF active space changed character between a geometry and its
    reference (``electronic.active_switch: stop``): the potential is discontinuous there."""


class MissingPropertyError(QhdError, NotImplementedError):
    """A backend was asked for a property it cannot provide."""
