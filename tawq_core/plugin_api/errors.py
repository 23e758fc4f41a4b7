"""Errors a user can act on.

Every failure that a user can fix (a wrong name, a missing file, an absent accelerator) is a
`TawqError`: the CLI prints its message as one line on stderr and exits with code 2, without a
traceback. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class Interrupted(Exception):
    """Ctrl-C (SIGINT) during a command: not a mistake to fix, so not a `TawqError` (the CLI exits 130).

    The message says what was kept and how to resume; the CLI prints it as one line.
    """


class TawqError(Exception):
    """Base class: a problem the user can fix; its message says what is wrong and what to do."""


class PluginNotFound(TawqError):
    """An unknown plugin name was asked for; the message lists the known names."""

    def __init__(self, kind: str, name: str, known: list[str], hint: str = ""):
        self.kind, self.name, self.known = kind, name, known
        listing = ", ".join(known) if known else "none registered"
        super().__init__(f"unknown {kind} {name!r}; known {kind}s: {listing}{f'; {hint}' if hint else ''}")


class PluginError(TawqError):
    """A plugin failed to load, raised in its hook, or registered a name already taken."""


class BackendUnavailable(TawqError):
    """The requested hardware backend cannot be used on this machine; the message says why."""


class DatasetNotFound(TawqError):
    """Dataset files are missing or incomplete; the message names the path and how to get them."""


class ConfigError(TawqError):
    """An invalid option, preset or size (e.g. timesteps <= 0)."""


class ShapeError(TawqError):
    """An input tensor has the wrong layout or a timestep count that does not match the model."""


class TrainingDiverged(TawqError):
    """The loss became NaN or infinite; the message names the epoch and step."""


class MissingDependency(TawqError):
    """An optional package a feature needs is not installed; the message gives the install command."""


class CheckpointError(TawqError):
    """A checkpoint is corrupt, belongs to another model, or is in an unsafe (pickle) format."""
