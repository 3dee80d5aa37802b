"""One frozen settings object, read from the environment once (by the CLI) and passed down.

No module reads settings from ``os.environ`` but this one (``broker`` and ``dev`` only pass
the environment on to the processes they start); nothing below the CLI knows a broker
address or a secret except through a ``Settings`` it was handed. ``Settings`` is a frozen
pydantic model, so one built in code (tests, ``replace``) is validated exactly as one read
from the environment: ``from_env`` only maps variable names to fields. Every invalid value
stops start-up with a ``ConfigurationError`` that names the environment variable; secrets
are left out of ``repr``, ``str`` and every error message.

Plain pydantic rather than pydantic-settings: the variable names are not the field names,
the secret lists are comma-separated rather than JSON, and the mapping is one table here.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    ValidatorFunctionWrapHandler,
    field_validator,
    model_validator,
)
from pydantic_core import ErrorDetails

from streams.core.clock import MAX_CLOCK_SKEW_S
from streams.core.errors import ConfigurationError

if TYPE_CHECKING:
    from streams.kafka.clients import KafkaConnection

DEFAULT_BOOTSTRAP = "127.0.0.1:9092"

ENV_VARS: Final[Mapping[str, str]] = {
    "KAFKA_BOOTSTRAP_SERVERS": "kafka_bootstrap_servers",
    "TOPIC_PREFIX": "topic_prefix",
    "EDUME_WEBHOOK_SECRETS": "webhook_secrets",
    "EDUME_WEBHOOK_BEARER_TOKENS": "webhook_bearer_tokens",
    "EDUME_LINK_SECRET": "link_secret",
    "EDUME_LINK_BASE_URL": "link_base_url",
    "INGRESS_HOST": "ingress_host",
    "INGRESS_PORT": "ingress_port",
    "INGRESS_MAX_CONCURRENT_REQUESTS": "ingress_max_concurrent_requests",
    "WORKER_WEB_PORT": "worker_web_port",
    "WORKER_API_TOKENS": "worker_api_tokens",
    "WORKER_LINK_TOKENS": "worker_link_tokens",
    "MAX_BODY_BYTES": "max_body_bytes",
    "KAFKA_ENABLE_IDEMPOTENCE": "kafka_enable_idempotence",
    "KAFKA_LINGER_MS": "kafka_linger_ms",
    "PUBLISH_TIMEOUT_S": "publish_timeout_s",
    "RETRY_AFTER_S": "retry_after_s",
    "REQUEST_TIMEOUT_S": "request_timeout_s",
    "MAX_JSON_DEPTH": "max_json_depth",
    "DEDUP_CAPACITY": "dedup_capacity",
    "DEDUP_TTL_S": "dedup_ttl_s",
    "LOG_LEVEL": "log_level",
    "TOPIC_REPLICATION_FACTOR": "topic_replication_factor",
    "KAFKA_EMBEDDED_BROKER": "kafka_embedded_broker",
    "KAFKA_FETCH_MAX_WAIT_MS": "kafka_fetch_max_wait_ms",
    "WORKER_WEB_HOST": "worker_web_host",
    "WORKER_URL": "worker_url",
    "WORKER_SESSION_TIMEOUT_S": "worker_session_timeout_s",
    "WORKER_INSTANCE_ID": "worker_instance_id",
    "WORKER_COMMIT_INTERVAL_S": "worker_commit_interval_s",
    "WORKER_BATCH_MAX": "worker_batch_max",
    "WORKER_BATCH_WITHIN_S": "worker_batch_within_s",
    "REMINDER_AFTER": "reminder_after_s",
    "MAX_CLOCK_SKEW": "max_clock_skew_s",
    "WORKER_STALL_TIMEOUT": "worker_stall_timeout_s",
    "WORKER_DATA_DIR": "worker_data_dir",
    "KAFKA_SECURITY_PROTOCOL": "kafka_security_protocol",
    "KAFKA_SASL_MECHANISM": "kafka_sasl_mechanism",
    "KAFKA_SASL_USERNAME": "kafka_sasl_username",
    "KAFKA_SASL_PASSWORD": "kafka_sasl_password",
    "KAFKA_SSL_CA_FILE": "kafka_ssl_ca_file",
    "KAFKA_SSL_CERT_FILE": "kafka_ssl_cert_file",
    "KAFKA_SSL_KEY_FILE": "kafka_ssl_key_file",
    "KAFKA_SSL_KEY_PASSWORD": "kafka_ssl_key_password",
}
"""Environment variable → field. A field without a variable is set in code only."""

_VAR_BY_FIELD: Final = {name: var for var, name in ENV_VARS.items()}
_SECRETS: Final = frozenset({"webhook_secrets", "webhook_bearer_tokens", "link_secret",
                             "worker_api_tokens", "worker_link_tokens",
                             "kafka_sasl_password", "kafka_ssl_key_password"})
SECRET_VARS: Final = tuple(var for var, name in ENV_VARS.items() if name in _SECRETS)
"""Secrets that can also be given as ``NAME_FILE``: a path whose content is the value."""
SECRET_FILE_VARS: Final = {f"{var}_FILE": var for var in SECRET_VARS}
"""``NAME_FILE`` -> ``NAME`` for every secret."""
_LOG_LEVELS: Final = ("CRITICAL", "ERROR", "WARNING", "INFO", "DEBUG")
_TOKEN: Final = re.compile(r"[!-~]+")


def _bootstrap_pairs(servers: str) -> list[tuple[str, int]]:
    out = []
    for raw in servers.split(","):
        item = raw.strip()
        if not item:
            continue
        if item.startswith("["):
            host, bracket, rest = item[1:].partition("]")
            port = rest[1:] if rest.startswith(":") else ("9092" if not rest else "")
            ok = bool(bracket)
        else:
            host, sep, port = item.partition(":")
            port = port if sep else "9092"
            ok = ":" not in port
        if not (ok and host and "[" not in host and port.isdigit() and 0 < int(port) < 65536):
            raise ValueError(f"entry {item!r} is not host:port")
        out.append((host, int(port)))
    if not out:
        raise ValueError("is empty")
    return out


_DURATION_UNITS: Final = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(text: str) -> float:
    """``"30s"``, ``"15m"``, ``"72h"``, ``"3d"``, ``"250ms"`` or a bare number of seconds, as
    seconds."""
    value = text.strip().lower()
    for unit in ("ms", "s", "m", "h", "d"):
        if value.endswith(unit):
            number, scale = value[: -len(unit)].strip(), _DURATION_UNITS[unit]
            break
    else:
        number, scale = value, 1.0
    try:
        seconds = float(number) * scale
    except ValueError:
        raise ValueError(
            f"must be a duration such as 30s, 15m, 72h or 3d, got {text!r}"
        ) from None
    if not (0 < seconds < float("inf")):
        raise ValueError(f"must be a positive duration, got {text!r}")
    return seconds


def parse_bootstrap(servers: str) -> list[tuple[str, int]]:
    """``host:port[,host:port]`` (IPv6 as ``[::1]:9092``) as pairs; no port means 9092."""
    try:
        return _bootstrap_pairs(servers)
    except ValueError as exc:
        raise ConfigurationError(f"KAFKA_BOOTSTRAP_SERVERS {exc}") from None


class Settings(BaseModel):
    """Everything configurable, with the contract's defaults; units are in the names."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False, defer_build=True)

    kafka_bootstrap_servers: str = DEFAULT_BOOTSTRAP
    topic_prefix: str = ""
    webhook_secrets: tuple[str, ...] = Field(default=(), repr=False)
    webhook_bearer_tokens: tuple[str, ...] = Field(default=(), repr=False)
    link_secret: str | None = Field(default=None, repr=False)
    link_base_url: str = "https://learn.edume.com/e"
    ingress_host: str = "127.0.0.1"
    ingress_port: int = Field(default=8080, ge=0, le=65535)
    worker_web_port: int = Field(default=6066, ge=0, le=65535)
    worker_api_tokens: tuple[str, ...] = Field(default=(), repr=False)
    """Bearer tokens for the query API's data endpoints (any one is accepted: rotation);
    the worker refuses to start without one. The workers also derive from them the key
    that authenticates a request one worker forwards to another (``streams.worker.auth``),
    so every worker of a group needs a token in common with every other."""
    worker_link_tokens: tuple[str, ...] = Field(default=(), repr=False)
    """Bearer tokens that may also read signed link URLs (a link is a login credential);
    other tokens see links without ``url``."""
    max_body_bytes: int = Field(default=1_048_576, ge=1)
    # Beyond the contract: operational knobs with production defaults.
    kafka_enable_idempotence: bool = True
    kafka_linger_ms: float = Field(default=2.0, ge=0)
    publish_timeout_s: float = Field(default=5.0, ge=0.1)
    retry_after_s: int = Field(default=5, ge=1)
    request_timeout_s: float = Field(default=10.0, ge=0.1)
    ingress_max_concurrent_requests: int = Field(default=128, ge=1)
    """Webhook requests one ingress process handles at once (body read, verification,
    publish); one more is answered 503 with ``Retry-After`` before its body is read. Each
    may hold up to ``MAX_BODY_BYTES`` of body: 128 MiB at most with the defaults."""
    max_json_depth: int = Field(default=32, ge=2)
    dedup_capacity: int = Field(default=200_000, ge=2)
    dedup_ttl_s: float = Field(default=86_400.0, ge=1)
    ready_probe_interval_s: float = Field(default=2.0, gt=0)
    log_level: str = "INFO"
    topic_replication_factor: int = Field(default=1, ge=1)
    """Replicas of every topic that ``topics create`` and the workers create."""
    kafka_embedded_broker: bool = False
    """The broker is the embedded one (``dev`` and the tests set this): the workers write one
    record per batch (its end offsets are wrong after a batch of several, and table
    recovery reads to the end offset), Faust's aiokafka producer runs without idempotence
    (aiokafka's cannot start there), and fetches wait 10 ms (it answers a waiting fetch only
    when the wait runs out)."""
    kafka_fetch_max_wait_ms: int | None = Field(default=None, ge=1)
    """How long the workers' consumer lets the broker wait for records; default 500 (10 on
    the embedded broker)."""
    worker_web_host: str = "127.0.0.1"
    worker_url: str | None = None
    """How other workers reach this one's query API; default ``http://WORKER_WEB_HOST:PORT``."""
    worker_session_timeout_s: float = Field(default=10.0, ge=1)
    """A worker that stops heartbeating loses its partitions after this long."""
    worker_instance_id: str | None = None
    """Static group membership (Kafka's ``group.instance.id``): a worker restarted under the
    same id within the session timeout gets its partitions back without a rebalance. Each
    worker needs its own stable id (a StatefulSet pod's name); unset, membership is
    dynamic."""
    worker_commit_interval_s: float = Field(default=1.0, gt=0)
    worker_batch_max: int = Field(default=1000, ge=1)
    worker_batch_within_s: float = Field(default=0.01, gt=0)
    """Events are processed in batches of up to ``worker_batch_max``, taken as they come
    but waiting no longer than this for a batch to fill."""
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = (
        "PLAINTEXT"
    )
    """How every Kafka client of the project connects (``streams.kafka.clients`` turns these
    settings into each client library's configuration)."""
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    kafka_sasl_username: str | None = None
    kafka_sasl_password: str | None = Field(default=None, repr=False)
    kafka_ssl_ca_file: str | None = None
    """PEM file of the CAs that sign the brokers' certificates (default: the system's)."""
    kafka_ssl_cert_file: str | None = None
    """PEM client certificate (chain), for brokers that authenticate clients by TLS."""
    kafka_ssl_key_file: str | None = None
    kafka_ssl_key_password: str | None = Field(default=None, repr=False)
    reminder_after_s: float = Field(default=72 * 3600.0, gt=0)
    """A mandatory course assigned or started and not completed this long after (by the
    event's timestamp) gets a reminder link. ``REMINDER_AFTER`` is a duration: ``30s``,
    ``15m``, ``72h``, ``3d`` (a bare number is seconds)."""
    max_clock_skew_s: float = Field(default=MAX_CLOCK_SKEW_S, gt=0)
    """An event stamped more than this after its receipt (``edume-received-at``) is refused
    (the DLQ): a clock far ahead would otherwise make its event the latest of its course or
    learner for as long as the clock is ahead. ``MAX_CLOCK_SKEW`` is a duration like
    ``REMINDER_AFTER``."""
    worker_stall_timeout_s: float = Field(default=300.0, gt=0)
    """A worker unready with nothing moving, or ready with input waiting and none
    processed, for this long fails its liveness check (``/healthz`` answers 503), so that
    the orchestrator restarts it. ``WORKER_STALL_TIMEOUT`` is a duration like
    ``REMINDER_AFTER``; keep it above the longest wait a batch of links may make for the
    catalog (120 s)."""
    worker_data_dir: str | None = None
    """Faust's data directory (it stays empty: the tables are kept in memory). Unset: a new
    temporary directory per process, removed when it exits."""

    @model_validator(mode="wrap")
    @classmethod
    def _as_configuration_error(cls, data: Any, handler: ValidatorFunctionWrapHandler) -> Any:
        """Every failure, however the object is built, as one ``ConfigurationError``."""
        try:
            settings = handler(data)
        except ValidationError as exc:
            message = "; ".join(_describe(error) for error in exc.errors(include_url=False))
            raise ConfigurationError(message) from None
        try:
            settings._check_kafka_security()
        except ValueError as exc:
            raise ConfigurationError(str(exc)) from None
        return settings

    @field_validator("*", mode="before")
    @classmethod
    def _strip(cls, value: Any, info: ValidationInfo) -> Any:
        """Blanks around a value are dropped, except around the Kafka passwords: those are
        taken exactly (a ``_FILE`` less one trailing newline)."""
        if info.field_name in ("kafka_sasl_password", "kafka_ssl_key_password"):
            return value
        return value.strip() if isinstance(value, str) else value

    @field_validator("webhook_secrets", "webhook_bearer_tokens", "worker_api_tokens",
                     "worker_link_tokens", mode="before")
    @classmethod
    def _comma_separated(cls, value: Any) -> Any:
        """``"a, b,,"`` or ``("a", "b")``: blanks around and between entries are dropped."""
        if isinstance(value, str):
            value = value.split(",")
        if isinstance(value, list | tuple):
            return tuple(
                v.strip() if isinstance(v, str) else v
                for v in value
                if not (isinstance(v, str) and not v.strip())
            )
        return value

    @field_validator("worker_api_tokens", "worker_link_tokens")
    @classmethod
    def _bearer_tokens(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        """A token travels in an ``Authorization: Bearer`` header: visible ASCII, no blank
        (the value is never repeated in the error)."""
        if not all(_TOKEN.fullmatch(token) for token in value):
            raise ValueError("entries must be visible ASCII characters (no spaces)")
        return value

    @field_validator("reminder_after_s", "worker_stall_timeout_s", "max_clock_skew_s",
                     mode="before")
    @classmethod
    def _duration(cls, value: Any) -> Any:
        return parse_duration(value) if isinstance(value, str) else value

    @field_validator("link_secret", "worker_data_dir", "kafka_sasl_mechanism",
                     "kafka_sasl_username", "kafka_sasl_password", "kafka_ssl_ca_file",
                     "kafka_ssl_cert_file", "kafka_ssl_key_file", "kafka_ssl_key_password",
                     mode="before")
    @classmethod
    def _blank_is_none(cls, value: Any) -> Any:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("kafka_security_protocol", "kafka_sasl_mechanism", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        """Case-insensitive; ``SCRAM_SHA_512`` is read as ``SCRAM-SHA-512``."""
        if not isinstance(value, str):
            return value
        word = value.strip().upper()
        return word.replace("_", "-") if word.startswith("SCRAM") else word

    def _check_kafka_security(self) -> None:
        """SASL needs its mechanism and credentials; a client key needs its certificate."""
        kafka = self.kafka
        if kafka.sasl:
            absent = [var for var, value in (
                ("KAFKA_SASL_MECHANISM", self.kafka_sasl_mechanism),
                ("KAFKA_SASL_USERNAME", self.kafka_sasl_username),
                ("KAFKA_SASL_PASSWORD", self.kafka_sasl_password),
            ) if value is None]
            if absent:
                raise ValueError(
                    f"KAFKA_SECURITY_PROTOCOL={self.kafka_security_protocol} needs "
                    f"{', '.join(absent)}"
                )
        elif (self.kafka_sasl_mechanism, self.kafka_sasl_username,
              self.kafka_sasl_password) != (None, None, None):
            raise ValueError(
                "KAFKA_SASL_MECHANISM, KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD need "
                "KAFKA_SECURITY_PROTOCOL "
                f"SASL_PLAINTEXT or SASL_SSL, not {self.kafka_security_protocol}"
            )
        files = [var for var, value in (
            ("KAFKA_SSL_CA_FILE", self.kafka_ssl_ca_file),
            ("KAFKA_SSL_CERT_FILE", self.kafka_ssl_cert_file),
            ("KAFKA_SSL_KEY_FILE", self.kafka_ssl_key_file),
        ) if value is not None]
        if files and not kafka.tls:
            raise ValueError(
                f"{', '.join(files)} need{'s' if len(files) == 1 else ''} "
                f"KAFKA_SECURITY_PROTOCOL SSL or SASL_SSL, not {self.kafka_security_protocol}"
            )
        if (self.kafka_ssl_cert_file is None) != (self.kafka_ssl_key_file is None):
            raise ValueError("KAFKA_SSL_CERT_FILE and KAFKA_SSL_KEY_FILE go together")
        if self.kafka_ssl_key_password is not None and self.kafka_ssl_key_file is None:
            raise ValueError("KAFKA_SSL_KEY_PASSWORD needs KAFKA_SSL_KEY_FILE")

    @field_validator("kafka_bootstrap_servers")
    @classmethod
    def _bootstrap(cls, value: str) -> str:
        _bootstrap_pairs(value)
        return value

    @field_validator("log_level")
    @classmethod
    def _log_level(cls, value: str) -> str:
        level = value.upper()
        if level not in _LOG_LEVELS:
            raise ValueError(f"must be one of {', '.join(_LOG_LEVELS)}, got {value!r}")
        return level

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Read the process environment (or ``env``) once; bad values stop start-up. An
        unset or blank variable means the default."""
        e = dict(os.environ if env is None else env)
        for file_var, var in SECRET_FILE_VARS.items():
            path = e.get(file_var, "").strip()
            if not path:
                continue
            if e.get(var, "").strip():
                raise ConfigurationError(f"set {var} or {file_var}, not both")
            e[var] = _read_secret_file(file_var, path)
        return cls.model_validate(
            {name: e[var] for var, name in ENV_VARS.items() if e.get(var, "").strip()}
        )

    @property
    def kafka(self) -> KafkaConnection:
        """The brokers and how every Kafka client connects to them."""
        from streams.kafka.clients import KafkaConnection

        return KafkaConnection.from_settings(self)

    @property
    def fetch_max_wait_ms(self) -> int:
        if self.kafka_fetch_max_wait_ms is not None:
            return self.kafka_fetch_max_wait_ms
        return 10 if self.kafka_embedded_broker else 500

    def to_env(self) -> dict[str, str]:
        """The settings as the environment variables that give them back (for a process
        ``dev`` starts): ``Settings.from_env(s.to_env()) == s`` for every variable-backed
        field."""
        out: dict[str, str] = {}
        for var, name in ENV_VARS.items():
            value = getattr(self, name)
            if value is None:
                continue
            if isinstance(value, bool):
                out[var] = "true" if value else "false"
            elif isinstance(value, tuple):
                out[var] = ",".join(value)
            else:
                out[var] = str(value)
        return out

    def replace(self, **changes: Any) -> Settings:
        """A validated copy with some fields changed (the CLI's flags, ``dev``, tests)."""
        return type(self)(**{**self.model_dump(), **changes})

    def require_link_secret(self) -> None:
        """Link issuing must not start unable to sign what it issues."""
        if self.link_secret is None:
            raise ConfigurationError(
                "set EDUME_LINK_SECRET (the seamless-link signing secret from eduMe's "
                "company settings); the worker issues signed links and cannot without it"
            )

    def require_worker_api_tokens(self) -> None:
        """The query API must not start open: it serves learners' progress and links."""
        if not self.worker_api_tokens:
            raise ConfigurationError(
                "set WORKER_API_TOKENS (comma-separated bearer tokens for the worker's query "
                "API); the worker does not serve learners' data without one"
            )

    def require_webhook_auth(self) -> None:
        """The ingress must not start unable to tell an authentic webhook from a forgery."""
        if not self.webhook_secrets and not self.webhook_bearer_tokens:
            raise ConfigurationError(
                "set EDUME_WEBHOOK_SECRETS (comma-separated signing secrets) or "
                "EDUME_WEBHOOK_BEARER_TOKENS; the ingress cannot verify webhooks without one"
            )


def _read_secret_file(var: str, path: str) -> str:
    """A secret file's content less one trailing newline; an unreadable file names ``var``
    and the path, never the content."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise ConfigurationError(f"{var}: cannot read {path}: {reason}") from None
    return text[:-1] if text.endswith("\n") else text


_MESSAGES: Final = {
    "int_parsing": "must be an integer",
    "int_type": "must be an integer",
    "int_from_float": "must be an integer",
    "float_parsing": "must be a number",
    "float_type": "must be a number",
    "finite_number": "must be a finite number",
    "bool_parsing": "must be true or false",
    "bool_type": "must be true or false",
    "string_type": "must be a string",
    "tuple_type": "must be a comma-separated list",
    "extra_forbidden": "is not a setting",
}


def _describe(error: ErrorDetails) -> str:
    """``VAR must be ...``, naming the environment variable (or the field, for one without);
    a secret's value is never repeated."""
    field = str(error["loc"][0]) if error["loc"] else ""
    name = _VAR_BY_FIELD.get(field, field)
    kind = error["type"]
    ctx = error.get("ctx", {})
    if kind == "value_error":
        return f"{name} {ctx.get('error')}" if name else str(ctx.get("error"))
    if kind == "literal_error":
        return f"{name} must be one of {ctx.get('expected')}, got {_short(error.get('input'))}"
    if kind in ("greater_than_equal", "greater_than", "less_than_equal"):
        word = {"greater_than_equal": "at least", "greater_than": "more than"}.get(kind, "at most")
        bound = next(iter(ctx.values()))
        text = f"must be {word} {bound}"
    else:
        text = _MESSAGES.get(kind, error["msg"])
    if field in _SECRETS or kind == "extra_forbidden":
        return f"{name} {text}"
    return f"{name} {text}, got {_short(error.get('input'))}"


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
