"""The project's exception tree: callers branch on attributes, never on lists of classes.

Messages carry safe context only (which header, which limit), never a body or a secret.
"""

from __future__ import annotations

from typing import ClassVar


class EdumeStreamsError(Exception):
    """Root of every error this project raises on purpose, so callers can catch one class."""

    http_status: ClassVar[int | None] = None
    """The HTTP status an edge answers with when this error ends a request, if one applies."""


class ConfigurationError(EdumeStreamsError):
    """Settings that cannot work (empty secret, nothing to verify with): start-up must stop."""


class MalformedJSON(EdumeStreamsError, ValueError):
    """Bytes that JavaScript's JSON.parse would refuse, or nested past the configured limit."""

    http_status = 400


class VerificationError(EdumeStreamsError):
    """Root of every outcome of webhook verification that refuses the request."""

    http_status: ClassVar[int | None] = 401


class SignatureMismatch(VerificationError):
    """No configured secret or bearer token vouches for this body: nothing authentic is known."""

    http_status = 401


class SignatureMissing(SignatureMismatch):
    """No signature header and no valid bearer token: refused before any HMAC is computed."""

    http_status = 401


class MalformedBody(VerificationError):
    """An authentic body that is not a JSON object we can read: the sender must fix it."""

    http_status = 400


class LinkError(EdumeStreamsError, ValueError):
    """A seamless link cannot be built from these inputs (unknown kind, missing id, no team)."""


class PublishError(EdumeStreamsError):
    """The broker did not take or acknowledge a record: the sender must retry later."""

    http_status: ClassVar[int | None] = 503
    permanent: ClassVar[bool] = False
    """True when sending the same record again cannot succeed (see ``RecordRefused``)."""

    def __init__(self, message: str, error_name: str | None = None) -> None:
        super().__init__(message)
        self.error_name = error_name
        """librdkafka's name of the error (``MSG_SIZE_TOO_LARGE``), when it gave one."""


class BrokerUnavailable(PublishError):
    """Not connected to a broker, or the broker refused the request for now."""


class RecordRefused(PublishError):
    """The broker or the producer refuses this record for good: too large for the topic or
    the producer, not a valid record, or a topic the credentials may not write. Sent again,
    the same bytes get the same answer."""

    permanent = True
