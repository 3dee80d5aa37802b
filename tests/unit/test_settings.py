"""Settings are validated however they are built: in code, by ``replace`` or from the
environment; secrets never show in ``repr``, ``str`` or an error."""

from __future__ import annotations

import traceback

import pytest

from streams.core.errors import ConfigurationError
from streams.settings import Settings

SECRETS = {"webhook_secrets": ("s3cret-one", "s3cret-two"),
           "webhook_bearer_tokens": ("t0ken-three",), "link_secret": "l1nk-four"}
SECRET_TEXTS = ("s3cret-one", "s3cret-two", "t0ken-three", "l1nk-four")


@pytest.mark.parametrize(("field", "var", "value", "message"), [
    ("ingress_port", "INGRESS_PORT", "eighty", "INGRESS_PORT must be an integer, got 'eighty'"),
    ("ingress_port", "INGRESS_PORT", "70000", "INGRESS_PORT must be at most 65535"),
    ("max_body_bytes", "MAX_BODY_BYTES", "0", "MAX_BODY_BYTES must be at least 1"),
    ("kafka_enable_idempotence", "KAFKA_ENABLE_IDEMPOTENCE", "maybe",
     "KAFKA_ENABLE_IDEMPOTENCE must be true or false"),
    ("kafka_bootstrap_servers", "KAFKA_BOOTSTRAP_SERVERS", "host:0",
     "KAFKA_BOOTSTRAP_SERVERS entry 'host:0' is not host:port"),
    ("publish_timeout_s", "PUBLISH_TIMEOUT_S", "0.01", "PUBLISH_TIMEOUT_S must be at least 0.1"),
    ("kafka_linger_ms", "KAFKA_LINGER_MS", "nan", "KAFKA_LINGER_MS must be a finite number"),
    ("dedup_capacity", "DEDUP_CAPACITY", "1.5", "DEDUP_CAPACITY must be an integer"),
    ("log_level", "LOG_LEVEL", "loud", "LOG_LEVEL must be one of"),
])
def test_code_and_environment_are_validated_alike(
    field: str, var: str, value: str, message: str
) -> None:
    with pytest.raises(ConfigurationError, match=message) as from_env:
        Settings.from_env({var: value})
    with pytest.raises(ConfigurationError) as in_code:
        Settings(**{field: value})
    with pytest.raises(ConfigurationError) as replaced:
        Settings().replace(**{field: value})
    assert str(from_env.value) == str(in_code.value) == str(replaced.value)


def test_typed_values_in_code_equal_their_environment_text() -> None:
    from_env = Settings.from_env({
        "KAFKA_BOOTSTRAP_SERVERS": " a:1,[::1]:9093 ", "EDUME_WEBHOOK_SECRETS": "x, y,,",
        "EDUME_WEBHOOK_BEARER_TOKENS": "t", "INGRESS_PORT": "9000",
        "KAFKA_ENABLE_IDEMPOTENCE": "off", "KAFKA_LINGER_MS": "0.5", "LOG_LEVEL": "debug",
        "TOPIC_PREFIX": "  ", "EDUME_LINK_SECRET": ""})
    in_code = Settings(
        kafka_bootstrap_servers="a:1,[::1]:9093", webhook_secrets=("x", "y"),
        webhook_bearer_tokens=("t",), ingress_port=9000, kafka_enable_idempotence=False,
        kafka_linger_ms=0.5, log_level="DEBUG")
    assert from_env == in_code
    assert in_code.link_secret is None and in_code.topic_prefix == ""
    assert Settings(webhook_secrets="x, y").webhook_secrets == ("x", "y")


def test_replace_returns_a_validated_copy_and_settings_are_frozen() -> None:
    base = Settings(**SECRETS)
    changed = base.replace(ingress_port=9001)
    assert (changed.ingress_port, base.ingress_port) == (9001, 8080)
    assert changed.webhook_secrets == base.webhook_secrets
    with pytest.raises(ConfigurationError, match="ingress_prot is not a setting"):
        base.replace(ingress_prot=9001)
    with pytest.raises(Exception, match="frozen"):
        base.ingress_port = 1  # type: ignore[misc]


def test_secrets_are_not_in_repr_or_str() -> None:
    s = Settings(**SECRETS)
    for text in (repr(s), str(s), repr(s.replace(ingress_port=1))):
        assert not any(secret in text for secret in SECRET_TEXTS), text


@pytest.mark.parametrize("bad", [
    {"webhook_secrets": ("s3cret-one", 7)},
    {"link_secret": ["l1nk-four"]},
    {"webhook_bearer_tokens": {"t0ken-three": "s3cret-two"}},
    {"ingress_port": "x"},
])
def test_secrets_are_never_in_error_text(bad: dict[str, object]) -> None:
    with pytest.raises(ConfigurationError) as info:
        Settings(**{**SECRETS, **bad})
    text = str(info.value) + "".join(traceback.format_exception(info.value))
    assert not any(secret in text for secret in SECRET_TEXTS), text
    env = {"EDUME_WEBHOOK_SECRETS": "s3cret-one,s3cret-two", "INGRESS_PORT": "no"}
    with pytest.raises(ConfigurationError) as info:
        Settings.from_env(env)
    assert "s3cret" not in str(info.value) + "".join(traceback.format_exception(info.value))


def test_every_error_is_reported_at_once() -> None:
    with pytest.raises(ConfigurationError) as info:
        Settings.from_env({"INGRESS_PORT": "x", "RETRY_AFTER_S": "0"})
    assert "INGRESS_PORT" in str(info.value) and "RETRY_AFTER_S" in str(info.value)
