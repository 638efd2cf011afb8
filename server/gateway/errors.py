"""The gateway's one error: a mounted server could not be started, or a call to it failed."""

from __future__ import annotations


class GatewayError(Exception):
    """A deployed server could not be started or did not answer a call; the message says why and what happens next."""
