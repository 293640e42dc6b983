"""citynode gateway: codec runtime, ChirpStack ingest, sinks, provisioning and the ``citynode`` CLI."""

from __future__ import annotations

from gateway.errors import CitynodeError, ConfigError, DecodeError, EncodeError, SinkError

__all__ = ["CitynodeError", "ConfigError", "DecodeError", "EncodeError", "SinkError", "__version__"]

__version__ = "0.1.0"
