"""Every exception rlpol raises on purpose, in one place.

Each error subclasses :class:`RlpolError`, a plain exception carrying ``message`` and
``exit_code``; the CLI (:mod:`rlpol.cli`, in one place) prints its message as one sentence,
``Error: <message>``, with no traceback, and exits with ``exit_code`` (1). This module imports
nothing, so raising an error never costs an import of click. Library users can catch the
builtin base named beside each class (``ValueError``, ``RuntimeError``). Messages say what was
received, what was expected and how to fix it.

Examples:
    >>> from rlpol.errors import ArtifactError
    >>> error = ArtifactError("not an rlpol artifact; export it with `rlpol export`")
    >>> isinstance(error, ValueError), error.exit_code, str(error)
    (True, 1, 'not an rlpol artifact; export it with `rlpol export`')
"""

from __future__ import annotations

__all__ = [
    "ArtifactError",
    "BackendUnavailableError",
    "EnvClosedError",
    "ExportError",
    "InputMismatchError",
    "PolicyFileError",
    "RequestError",
    "RlpolError",
    "ServeError",
    "SpecError",
    "UnknownEnvError",
]


class RlpolError(Exception):
    """Base class of rlpol's errors: a message meant for a person.

    Attributes:
        message: the one-sentence message (also ``str(error)``).
        exit_code: the CLI's exit status for this error (1).
    """

    exit_code = 1

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class SpecError(RlpolError, ValueError):
    """A value does not fit a spec (shape, dtype or bounds), or a spec cannot be built."""


class UnknownEnvError(RlpolError, ValueError):
    """An environment id is not registered with gymnasium."""


class EnvClosedError(RlpolError, RuntimeError):
    """An environment was used after :meth:`close`."""


class InputMismatchError(RlpolError, ValueError):
    """A tensordict given to a module or policy lacks a key or has a wrong shape/dtype/device."""


class PolicyFileError(RlpolError, ValueError):
    """A policy file is missing, does not import, or does not define a policy."""


class ExportError(RlpolError, RuntimeError):
    """A policy could not be exported, or the exported graph failed verification."""


class ArtifactError(RlpolError, ValueError):
    """A file is not a valid rlpol artifact (foreign, corrupt, truncated or tampered)."""


class BackendUnavailableError(RlpolError, RuntimeError):
    """The requested inference backend or device is not available on this machine."""


class ServeError(RlpolError, ValueError):
    """The policy server cannot start: a bad model argument, repository or option."""


class RequestError(RlpolError, ValueError):
    """An inference request the policy server refuses (answered as ``{"error": message}``).

    Attributes:
        status: the HTTP status of the answer (4xx: 400 bad request, 404 unknown model or
            version, 408 body too slow, 413 body too large).
    """

    def __init__(self, message: str, *, status: int = 400) -> None:
        super().__init__(message)
        self.status = status
