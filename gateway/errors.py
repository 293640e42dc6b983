"""The exception tree of the gateway: one root, a few meaningful branches.

Every message names what was wrong and with which input, so that a dead-letter entry or a
CLI error line can be acted upon without reading the code.
"""

from __future__ import annotations

__all__ = ["CitynodeError", "ConfigError", "DecodeError", "EncodeError", "SinkError"]


class CitynodeError(Exception):
    """Root of every error citynode raises on purpose."""


class ConfigError(CitynodeError):
    """A configuration value is missing or invalid; the message names the field."""


class DecodeError(CitynodeError):
    """A payload could not be decoded; the message says why (the payload goes to the dead-letter store)."""


class EncodeError(CitynodeError):
    """A message could not be encoded; the message names the field and the offending value."""


class SinkError(CitynodeError):
    """A data-platform sink failed to accept a batch; ``retryable`` tells the outbox whether to try again."""

    def __init__(self, message: str, *, retryable: bool = True) -> None:
        super().__init__(message)
        self.retryable = retryable
