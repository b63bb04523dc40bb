"""Version numbers that servers and clients compare before working together."""

from __future__ import annotations

SOFTWARE_VERSION = "0.1.0"
"""Version of this package; reported by servers, not required to match."""

PROTOCOL_VERSION = 2
"""Version of the wire protocol between servers; peers must match exactly."""
