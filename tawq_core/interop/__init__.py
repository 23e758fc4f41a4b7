"""Bridges to other tools' harnesses. Each bridge imports its tool only when the bridge module itself is
imported, so tawq never needs them installed."""
