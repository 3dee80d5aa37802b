"""One frozen settings object, read from the environment once (by the CLI) and passed down.

No module reads ``os.environ`` but this one; nothing below the CLI knows a broker address or
a secret except through a ``Settings`` it was handed. Secrets are excluded from ``repr`` so
that a settings object can be logged.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields

from streams.errors import ConfigurationError

DEFAULT_BOOTSTRAP = "127.0.0.1:9092"


def _csv(raw: str | None) -> tuple[str, ...]:
    if not raw:
        return ()
    return tuple(part.strip() for part in raw.split(",") if part.strip())


def _bool(name: str, raw: str) -> bool:
    lowered = raw.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ConfigurationError(f"{name} must be true or false, got {raw!r}")


def _number(name: str, raw: str, kind: type[int] | type[float], minimum: float) -> int | float:
    try:
        value = kind(raw.strip())
    except ValueError:
        raise ConfigurationError(f"{name} must be a {kind.__name__}, got {raw!r}") from None
    if value < minimum:
        raise ConfigurationError(f"{name} must be at least {minimum}, got {raw!r}")
    return value


def parse_bootstrap(servers: str) -> list[tuple[str, int]]:
    """``host:port[,host:port]`` (IPv6 as ``[::1]:9092``) as pairs; no port means 9092."""
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
            raise ConfigurationError(f"KAFKA_BOOTSTRAP_SERVERS entry {item!r} is not host:port")
        out.append((host, int(port)))
    if not out:
        raise ConfigurationError("KAFKA_BOOTSTRAP_SERVERS is empty")
    return out


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything configurable, with the contract's defaults; units are in the names."""

    kafka_bootstrap_servers: str = DEFAULT_BOOTSTRAP
    topic_prefix: str = ""
    webhook_secrets: tuple[str, ...] = field(default=(), repr=False)
    webhook_bearer_tokens: tuple[str, ...] = field(default=(), repr=False)
    link_secret: str | None = field(default=None, repr=False)
    link_base_url: str = "https://learn.edume.com/e"
    ingress_host: str = "127.0.0.1"
    ingress_port: int = 8080
    worker_web_port: int = 6066
    max_body_bytes: int = 1_048_576
    # Beyond the contract: operational knobs with production defaults.
    kafka_enable_idempotence: bool = True
    kafka_linger_ms: float = 2.0
    publish_timeout_s: float = 5.0
    retry_after_s: int = 5
    request_timeout_s: float = 10.0
    max_json_depth: int = 32
    dedup_capacity: int = 200_000
    dedup_ttl_s: float = 86_400.0
    ready_probe_interval_s: float = 2.0
    log_level: str = "INFO"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Read the process environment (or ``env``) once; bad values stop start-up."""
        e = os.environ if env is None else env
        kw: dict[str, object] = {}

        def text(var: str, attr: str) -> None:
            if e.get(var, "").strip():
                kw[attr] = e[var].strip()

        def num(var: str, attr: str, kind: type[int] | type[float], minimum: float) -> None:
            if e.get(var, "").strip():
                kw[attr] = _number(var, e[var], kind, minimum)

        text("KAFKA_BOOTSTRAP_SERVERS", "kafka_bootstrap_servers")
        parse_bootstrap(str(kw.get("kafka_bootstrap_servers", DEFAULT_BOOTSTRAP)))
        kw["topic_prefix"] = e.get("TOPIC_PREFIX", "").strip()
        kw["webhook_secrets"] = _csv(e.get("EDUME_WEBHOOK_SECRETS"))
        kw["webhook_bearer_tokens"] = _csv(e.get("EDUME_WEBHOOK_BEARER_TOKENS"))
        kw["link_secret"] = e.get("EDUME_LINK_SECRET", "").strip() or None
        text("EDUME_LINK_BASE_URL", "link_base_url")
        text("INGRESS_HOST", "ingress_host")
        num("INGRESS_PORT", "ingress_port", int, 0)
        num("WORKER_WEB_PORT", "worker_web_port", int, 0)
        num("MAX_BODY_BYTES", "max_body_bytes", int, 1)
        if e.get("KAFKA_ENABLE_IDEMPOTENCE", "").strip():
            kw["kafka_enable_idempotence"] = _bool(
                "KAFKA_ENABLE_IDEMPOTENCE", e["KAFKA_ENABLE_IDEMPOTENCE"]
            )
        num("KAFKA_LINGER_MS", "kafka_linger_ms", float, 0)
        num("PUBLISH_TIMEOUT_S", "publish_timeout_s", float, 0.1)
        num("RETRY_AFTER_S", "retry_after_s", int, 1)
        num("REQUEST_TIMEOUT_S", "request_timeout_s", float, 0.1)
        num("MAX_JSON_DEPTH", "max_json_depth", int, 2)
        num("DEDUP_CAPACITY", "dedup_capacity", int, 2)
        num("DEDUP_TTL_S", "dedup_ttl_s", float, 1)
        text("LOG_LEVEL", "log_level")
        return cls(**kw)  # type: ignore[arg-type]

    def replace(self, **changes: object) -> Settings:
        """A copy with some fields changed (the CLI's flags and ``dev``'s overrides)."""
        current = {f.name: getattr(self, f.name) for f in fields(self)}
        current.update(changes)
        return Settings(**current)

    def require_webhook_auth(self) -> None:
        """The ingress must not start unable to tell an authentic webhook from a forgery."""
        if not self.webhook_secrets and not self.webhook_bearer_tokens:
            raise ConfigurationError(
                "set EDUME_WEBHOOK_SECRETS (comma-separated signing secrets) or "
                "EDUME_WEBHOOK_BEARER_TOKENS; the ingress cannot verify webhooks without one"
            )
