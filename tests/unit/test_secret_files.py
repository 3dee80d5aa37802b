"""Every secret setting can be given as a file (``NAME_FILE``): its content less one trailing
newline is the value, setting both is a start-up error, and neither the value nor the
file's content ever shows in an error or in ``repr``."""

from __future__ import annotations

import traceback
from pathlib import Path

import pytest

from streams.core.errors import ConfigurationError
from streams.settings import ENV_VARS, SECRET_FILE_VARS, SECRET_VARS, Settings

CONTRACT_SECRETS = frozenset({
    "EDUME_WEBHOOK_SECRETS", "EDUME_WEBHOOK_BEARER_TOKENS", "EDUME_LINK_SECRET",
    "WORKER_API_TOKENS", "WORKER_LINK_TOKENS", "KAFKA_SASL_PASSWORD", "KAFKA_SSL_KEY_PASSWORD",
})
"""The secrets the contract names ("Configuration"): each has a ``NAME_FILE`` form."""
EXACT = frozenset({"KAFKA_SASL_PASSWORD", "KAFKA_SSL_KEY_PASSWORD"})
"""Taken exactly as given (blanks kept); the other secrets lose blanks around them."""
VALUE = "f1le-s3cret"
"""A value every secret accepts (a token is visible ASCII without blanks)."""

CONTEXT = {
    # What each secret needs beside it to be a valid setting.
    "KAFKA_SASL_PASSWORD": {"KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
                            "KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
                            "KAFKA_SASL_USERNAME": "edume-streams-ingress"},
    "KAFKA_SSL_KEY_PASSWORD": {"KAFKA_SECURITY_PROTOCOL": "SSL",
                               "KAFKA_SSL_CERT_FILE": "/etc/edume-streams/client.crt",
                               "KAFKA_SSL_KEY_FILE": "/etc/edume-streams/client.key"},
}


def secret_file(tmp_path: Path, content: str | bytes, name: str = "secret") -> str:
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8", newline="")
    return str(path)


def from_env(var: str, **env: str) -> Settings:
    return Settings.from_env({**CONTEXT.get(var, {}), **env})


def as_text(value: object) -> str:
    return ",".join(value) if isinstance(value, tuple) else str(value)


def error_text(info: pytest.ExceptionInfo[ConfigurationError]) -> str:
    """Every message a printed traceback of the error shows: the error's and those of the
    exceptions it chains (a cause, or a context not suppressed)."""
    parts: list[str] = []
    exc: BaseException | None = info.value
    while exc is not None:
        parts += traceback.format_exception_only(exc)
        exc = exc.__cause__ or (None if exc.__suppress_context__ else exc.__context__)
    return "".join(parts)


def test_every_secret_the_contract_names_has_a_file_form() -> None:
    assert set(SECRET_VARS) == CONTRACT_SECRETS
    assert SECRET_FILE_VARS == {f"{var}_FILE": var for var in CONTRACT_SECRETS}
    assert not set(SECRET_FILE_VARS) & set(ENV_VARS), "a NAME_FILE is no setting of its own"
    # The same variables are the fields kept out of repr.
    hidden = {var for var, name in ENV_VARS.items() if not Settings.model_fields[name].repr}
    assert hidden == CONTRACT_SECRETS


@pytest.mark.parametrize("var", sorted(CONTRACT_SECRETS))
def test_a_secret_file_gives_the_value_less_one_trailing_newline(
    var: str, tmp_path: Path
) -> None:
    field = ENV_VARS[var]
    expected = getattr(from_env(var, **{var: VALUE}), field)
    assert as_text(expected) == VALUE
    for content in (VALUE, VALUE + "\n"):
        path = secret_file(tmp_path, content)
        assert getattr(from_env(var, **{f"{var}_FILE": path}), field) == expected, repr(content)
    # One newline only: the rest is the value's (taken exactly for the Kafka passwords; the
    # other secrets drop blanks around them, as from the environment).
    path = secret_file(tmp_path, f"{VALUE} \n\n")
    read = as_text(getattr(from_env(var, **{f"{var}_FILE": path}), field))
    assert read == (f"{VALUE} \n" if var in EXACT else VALUE)
    assert as_text(getattr(from_env(var, **{var: f"{VALUE} \n"}), field)) == read


@pytest.mark.parametrize("var", sorted(CONTRACT_SECRETS))
def test_an_empty_secret_file_means_unset(var: str, tmp_path: Path) -> None:
    field = ENV_VARS[var]
    for content in ("", "\n"):
        settings = Settings.from_env({f"{var}_FILE": secret_file(tmp_path, content)})
        assert getattr(settings, field) == getattr(Settings(), field), repr(content)


@pytest.mark.parametrize("var", sorted(CONTRACT_SECRETS))
def test_a_secret_and_its_file_both_set_stop_start_up(var: str, tmp_path: Path) -> None:
    path = secret_file(tmp_path, "in-the-f1le\n")
    with pytest.raises(ConfigurationError, match=f"set {var} or {var}_FILE, not both") as info:
        from_env(var, **{var: "in-the-env1ronment", f"{var}_FILE": path})
    text = error_text(info)
    assert "in-the-f1le" not in text and "in-the-env1ronment" not in text, text


@pytest.mark.parametrize("var", sorted(CONTRACT_SECRETS))
def test_a_secret_file_value_never_shows_in_repr(var: str, tmp_path: Path) -> None:
    settings = from_env(var, **{f"{var}_FILE": secret_file(tmp_path, VALUE + "\n")})
    assert as_text(getattr(settings, ENV_VARS[var])) == VALUE
    for text in (repr(settings), str(settings), repr(settings.kafka)):
        assert VALUE not in text, text


@pytest.mark.parametrize("var", sorted(CONTRACT_SECRETS))
def test_an_unreadable_secret_file_names_the_variable_and_path_not_the_content(
    var: str, tmp_path: Path
) -> None:
    absent = str(tmp_path / "absent")
    with pytest.raises(ConfigurationError, match=f"{var}_FILE: cannot read {absent}"):
        from_env(var, **{f"{var}_FILE": absent})
    binary = secret_file(tmp_path, b"\xff\xfe" + VALUE.encode() + b"\n", "binary")
    with pytest.raises(ConfigurationError, match=f"{var}_FILE: cannot read .*not UTF-8") as info:
        from_env(var, **{f"{var}_FILE": binary})
    assert VALUE not in error_text(info)


@pytest.mark.parametrize(("env", "message"), [
    # Tokens travel in a header: visible ASCII only.
    ({"WORKER_API_TOKENS_FILE": "one f1le-s3cret"}, "WORKER_API_TOKENS entries must be"),
    ({"WORKER_LINK_TOKENS_FILE": "f1le-s3cret\tx"}, "WORKER_LINK_TOKENS entries must be"),
    # A Kafka password without SASL.
    ({"KAFKA_SASL_PASSWORD_FILE": "f1le-s3cret"}, "KAFKA_SASL_PASSWORD need"),
    ({"KAFKA_SSL_KEY_PASSWORD_FILE": "f1le-s3cret"}, "KAFKA_SSL_KEY_PASSWORD needs"),
])
def test_an_invalid_secret_from_a_file_is_refused_without_its_value(
    env: dict[str, str], message: str, tmp_path: Path
) -> None:
    (var, content), = env.items()
    with pytest.raises(ConfigurationError, match=message) as info:
        Settings.from_env({var: secret_file(tmp_path, content + "\n")})
    assert "f1le-s3cret" not in error_text(info)


def test_worker_api_tokens_from_a_file(tmp_path: Path) -> None:
    """The worker's query API tokens, as a Kubernetes Secret or a Compose secret mounts
    them: comma-separated in one file; the worker refuses to start on an empty one."""
    path = secret_file(tmp_path, "t0ken-new, t0ken-old\n")
    settings = Settings.from_env({"WORKER_API_TOKENS_FILE": path})
    assert settings.worker_api_tokens == ("t0ken-new", "t0ken-old")
    settings.require_worker_api_tokens()
    assert "t0ken" not in repr(settings)
    empty = Settings.from_env({"WORKER_API_TOKENS_FILE": secret_file(tmp_path, "\n", "empty")})
    with pytest.raises(ConfigurationError, match="set WORKER_API_TOKENS") as info:
        empty.require_worker_api_tokens()
    assert "t0ken" not in error_text(info)
    # A process dev starts gets the tokens back through its environment.
    assert Settings.from_env(settings.to_env()) == settings


@pytest.mark.parametrize("var", sorted(CONTRACT_SECRETS))
def test_a_secret_of_the_wrong_type_is_refused_without_its_value(var: str) -> None:
    """Built in code (tests, ``replace``) a secret of the wrong shape is refused, and the
    error names the variable, never the value."""
    field = ENV_VARS[var]
    bad: object = (VALUE, 7) if isinstance(getattr(Settings(), field), tuple) else [VALUE]
    with pytest.raises(ConfigurationError, match=var) as info:
        Settings.model_validate({field: bad})
    assert VALUE not in error_text(info)
