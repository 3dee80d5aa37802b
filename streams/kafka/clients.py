"""How every Kafka client of the project connects: one ``KafkaConnection`` from the
settings, turned into each client library's configuration by ``client_config``.

Every client the project makes is built here or from ``client_config``'s answer: the
librdkafka producers (ingress, workers, commands), aiokafka consumers and admin clients
(the catalog and policy reader, the commands), and Faust's aiokafka consumer and producer
(``faust_credentials``). ``tests/unit/test_kafka_clients.py`` fails when a client class is
constructed anywhere else.

Hostname verification is always on. A certificate or key file that cannot be read, or a key
password that does not open the key, is a ``ConfigurationError`` naming the variable; no
message carries a password.
"""

from __future__ import annotations

import logging
import ssl
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from streams.core.errors import ConfigurationError

if TYPE_CHECKING:
    from aiokafka import AIOKafkaConsumer
    from aiokafka.admin import AIOKafkaAdminClient
    from faust.types.auth import CredentialsT

    from streams.settings import Settings

Library = Literal["librdkafka", "aiokafka"]


@dataclass(frozen=True, slots=True)
class KafkaConnection:
    """Where the brokers are and how to authenticate to them."""

    bootstrap: str
    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str | None = None
    sasl_username: str | None = None
    sasl_password: str | None = field(default=None, repr=False)
    ssl_ca_file: str | None = None
    ssl_cert_file: str | None = None
    ssl_key_file: str | None = None
    ssl_key_password: str | None = field(default=None, repr=False)

    @classmethod
    def from_settings(cls, settings: Settings) -> KafkaConnection:
        s = settings
        return cls(
            s.kafka_bootstrap_servers, s.kafka_security_protocol, s.kafka_sasl_mechanism,
            s.kafka_sasl_username, s.kafka_sasl_password, s.kafka_ssl_ca_file,
            s.kafka_ssl_cert_file, s.kafka_ssl_key_file, s.kafka_ssl_key_password,
        )

    @property
    def tls(self) -> bool:
        return self.security_protocol in ("SSL", "SASL_SSL")

    @property
    def sasl(self) -> bool:
        return self.security_protocol in ("SASL_PLAINTEXT", "SASL_SSL")

    def describe(self) -> str:
        """``SASL_SSL (SCRAM-SHA-512 as user ingress) at host:port``: for messages; no secret."""
        how = self.security_protocol
        if self.sasl:
            how += f" ({self.sasl_mechanism} as user {self.sasl_username})"
        return f"{how} at {self.bootstrap}"

    def ssl_context(self) -> ssl.SSLContext:
        """A client TLS context: the CA file (or the system's CAs), hostname verification,
        and the client certificate when one is set."""
        _readable("KAFKA_SSL_CA_FILE", self.ssl_ca_file)
        _readable("KAFKA_SSL_CERT_FILE", self.ssl_cert_file)
        _readable("KAFKA_SSL_KEY_FILE", self.ssl_key_file)
        try:
            context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=self.ssl_ca_file)
        except ssl.SSLError as exc:
            raise ConfigurationError(
                f"KAFKA_SSL_CA_FILE {self.ssl_ca_file} holds no usable PEM certificate: "
                f"{exc.reason or exc}"
            ) from None
        context.check_hostname = True
        context.verify_mode = ssl.CERT_REQUIRED
        if self.ssl_cert_file is not None:
            try:
                context.load_cert_chain(
                    self.ssl_cert_file, self.ssl_key_file, password=self.ssl_key_password
                )
            except ssl.SSLError as exc:
                raise ConfigurationError(
                    "KAFKA_SSL_CERT_FILE and KAFKA_SSL_KEY_FILE do not load as a certificate "
                    f"and its key ({exc.reason or type(exc).__name__}); if the key is "
                    "encrypted, check KAFKA_SSL_KEY_PASSWORD"
                ) from None
        return context


def _readable(var: str, path: str | None) -> None:
    if path is None:
        return
    try:
        with open(path, "rb") as f:
            f.read(1)
    except OSError as exc:
        raise ConfigurationError(f"{var}: cannot read {path}: {exc.strerror}") from None


def client_config(connection: KafkaConnection, library: Library) -> dict[str, Any]:
    """The connection and security part of a client's configuration, in ``library``'s
    terms: librdkafka property names (confluent-kafka), or aiokafka keyword arguments."""
    c = connection
    if library == "librdkafka":
        out: dict[str, Any] = {
            "bootstrap.servers": c.bootstrap,
            "security.protocol": c.security_protocol.lower(),
        }
        if c.sasl:
            out.update({
                "sasl.mechanism": c.sasl_mechanism,
                "sasl.username": c.sasl_username,
                "sasl.password": c.sasl_password,
            })
        if c.tls:
            c.ssl_context()  # the same checks of the files, with the same messages
            out.update({
                "ssl.endpoint.identification.algorithm": "https",
                "enable.ssl.certificate.verification": True,
                "ssl.ca.location": c.ssl_ca_file or "probe",
            })
            if c.ssl_cert_file is not None:
                out["ssl.certificate.location"] = c.ssl_cert_file
                out["ssl.key.location"] = c.ssl_key_file
            if c.ssl_key_password is not None:
                out["ssl.key.password"] = c.ssl_key_password
        return out
    if library == "aiokafka":
        kwargs: dict[str, Any] = {
            "bootstrap_servers": c.bootstrap,
            "security_protocol": c.security_protocol,
        }
        if c.sasl:
            kwargs.update({
                "sasl_mechanism": c.sasl_mechanism,
                "sasl_plain_username": c.sasl_username,
                "sasl_plain_password": c.sasl_password,
            })
        if c.tls:
            kwargs["ssl_context"] = c.ssl_context()
        return kwargs
    raise ValueError(f"unknown Kafka client library {library!r}")


def faust_credentials(connection: KafkaConnection) -> CredentialsT | None:
    """Faust's ``broker_credentials`` for the connection: Faust hands them to every aiokafka
    client it makes (consumer, producer, and the admin calls that create topics)."""
    from faust.auth import SASLCredentials, SSLCredentials

    c = connection
    context = c.ssl_context() if c.tls else None
    if c.sasl:
        return SASLCredentials(
            username=c.sasl_username, password=c.sasl_password, ssl_context=context,
            mechanism=c.sasl_mechanism,
        )
    if context is not None:
        return SSLCredentials(context)
    return None


def aio_consumer(connection: KafkaConnection, **options: Any) -> AIOKafkaConsumer:
    """An aiokafka consumer (not started) with the connection's configuration."""
    from aiokafka import AIOKafkaConsumer

    return AIOKafkaConsumer(**client_config(connection, "aiokafka"), **options)


def aio_admin(connection: KafkaConnection, **options: Any) -> AIOKafkaAdminClient:
    """An aiokafka admin client (not started) with the connection's configuration."""
    from aiokafka.admin import AIOKafkaAdminClient

    return AIOKafkaAdminClient(**client_config(connection, "aiokafka"), **options)


# ------------------------------------------------------------------ refusals, named

SASL_REFUSED = (
    "the broker refused the SASL credentials ({how}): check KAFKA_SASL_USERNAME, "
    "KAFKA_SASL_PASSWORD and KAFKA_SASL_MECHANISM"
)
TLS_UNTRUSTED = (
    "the broker's TLS certificate is not trusted ({how}): KAFKA_SSL_CA_FILE must hold the "
    "CA that signs the brokers' certificates, and the certificates must name the hosts of "
    "KAFKA_BOOTSTRAP_SERVERS"
)
ACL_REFUSED = (
    "the broker's ACLs do not allow this client ({how}): {detail}; grant the ACLs that "
    "docs/operations.md (Connecting to a secured cluster) lists for this component"
)
TLS_CLIENT_REFUSED = (
    "the broker refused the TLS connection ({how}); if it requires client certificates, "
    "check KAFKA_SSL_CERT_FILE and KAFKA_SSL_KEY_FILE (a certificate its CA signed), and "
    "KAFKA_SECURITY_PROTOCOL"
)


def refusal(connection: KafkaConnection, text: str, code: int | None = None) -> str | None:
    """What a librdkafka error or log line says about the settings, naming them; None when
    it is not a refusal of the credentials or certificates (say, a broker that is down)."""
    from confluent_kafka import KafkaError

    how = connection.describe()
    lowered = text.lower()
    if code == KafkaError._AUTHENTICATION or "sasl authentication error" in lowered or (
        "authentication failed" in lowered
    ):
        return SASL_REFUSED.format(how=how)
    if code in (KafkaError.CLUSTER_AUTHORIZATION_FAILED, KafkaError.TOPIC_AUTHORIZATION_FAILED,
                KafkaError.GROUP_AUTHORIZATION_FAILED) or "authorization failed" in lowered:
        return ACL_REFUSED.format(how=how, detail=text.strip()[:300])
    if "certificate verify failed" in lowered or "could not be verified" in lowered:
        return TLS_UNTRUSTED.format(how=how)
    # A refused client certificate comes as a TLS alert; a handshake cut short by a broker
    # that is restarting ("SSL handshake failed: Disconnected") is no refusal.
    if connection.tls and "alert" in lowered and ("ssl" in lowered or "tls" in lowered):
        return TLS_CLIENT_REFUSED.format(how=how)
    return None


def diagnose(connection: KafkaConnection, timeout_s: float = 10.0) -> str | None:
    """Connect with librdkafka (whose errors say why) and answer what refused the
    connection, naming the settings; None when metadata came back, or nothing but silence
    did (a broker that is down is not a configuration error). Blocking: run it in an
    executor."""
    from confluent_kafka import KafkaError, KafkaException
    from confluent_kafka.admin import AdminClient

    found: list[str] = []

    def on_error(err: KafkaError) -> None:
        reason = refusal(connection, err.str(), err.code())
        if reason is not None:
            found.append(reason)

    def on_log(record: Any) -> None:
        reason = refusal(connection, record.getMessage())
        if reason is not None:
            found.append(reason)

    quiet = logging.getLogger("streams.kafka.clients.diagnose")
    quiet.propagate = False
    handler = _Collect(on_log)
    quiet.addHandler(handler)
    try:
        config = client_config(connection, "librdkafka")
        config.update({"error_cb": on_error, "logger": quiet, "socket.timeout.ms": 10_000,
                       "reconnect.backoff.max.ms": 1000})
        admin = AdminClient(config)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and not found:
            try:
                admin.list_topics(timeout=min(1.0, max(0.1, deadline - time.monotonic())))
                return None
            except KafkaException:
                admin.poll(0.1)
        return found[0] if found else None
    finally:
        quiet.removeHandler(handler)


class _Collect(logging.Handler):
    def __init__(self, sink: Any) -> None:
        super().__init__(logging.DEBUG)
        self._sink = sink

    def emit(self, record: logging.LogRecord) -> None:
        self._sink(record)


async def connection_failure(connection: KafkaConnection, exc: BaseException) -> Exception:
    """The error to raise when an aiokafka client could not start: a ``ConfigurationError``
    naming the settings when the broker refused the credentials or the certificates (aiokafka
    says only "Unable to bootstrap"), else a ``BrokerUnavailable``."""
    import asyncio

    from streams.core.errors import BrokerUnavailable

    loop = asyncio.get_running_loop()
    reason = None
    if connection.tls or connection.sasl:
        reason = await loop.run_in_executor(None, diagnose, connection, 10.0)
    if reason is not None:
        return ConfigurationError(reason)
    return BrokerUnavailable(
        f"cannot reach the broker ({connection.describe()}): {type(exc).__name__}"
    )
