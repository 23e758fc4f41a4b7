"""The one error type of the export package (a `TawqError`: one line, what is wrong and what to do)."""

from __future__ import annotations

from tawq_core.plugin_api.errors import TawqError


class ExportError(TawqError):
    """A model could not be exported, or the exported file does not reproduce it."""
