"""Every exception rlpol raises on purpose, in one place.

Each error subclasses :class:`RlpolError`, itself a :class:`click.ClickException`, so the
CLI prints its message as one sentence (no traceback) and exits with code 1. Library users
can catch the builtin base named beside it (``ValueError``, ``TypeError``, ...). Messages say
what was received, what was expected and how to fix it.
"""

from __future__ import annotations

import click

__all__ = [
    "ArtifactError",
    "BackendUnavailableError",
    "EnvClosedError",
    "ExportError",
    "InputMismatchError",
    "PolicyFileError",
    "RlpolError",
    "SpecError",
    "UnknownEnvError",
]


class RlpolError(click.ClickException):
    """Base class of rlpol's errors: a message meant for a person."""

    exit_code = 1

    def __init__(self, message: str) -> None:
        super().__init__(message)

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
