"""Every Kafka client takes its connection from ``streams.kafka.clients``: the settings turned
into librdkafka's and aiokafka's configuration, Faust's credentials, and no client class
constructed anywhere else."""

from __future__ import annotations

import ast
import ssl
from pathlib import Path

import pytest
import trustme

from streams.core.errors import ConfigurationError
from streams.kafka.clients import (
    KafkaConnection,
    client_config,
    faust_credentials,
    refusal,
)
from streams.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
CLIENT_CLASSES = frozenset({
    # confluent-kafka (librdkafka)
    "Producer", "Consumer", "AdminClient", "SerializingProducer", "DeserializingConsumer",
    # aiokafka
    "AIOKafkaProducer", "AIOKafkaConsumer", "AIOKafkaAdminClient", "AIOKafkaClient",
})
FACTORY_MODULE = "streams/kafka/clients.py"


def _constructions(path: Path) -> list[tuple[int, str, ast.Call]]:
    tree = ast.parse(path.read_text(), str(path))
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            name = (node.func.attr if isinstance(node.func, ast.Attribute)
                    else node.func.id if isinstance(node.func, ast.Name) else None)
            if name in CLIENT_CLASSES:
                out.append((node.lineno, name, node))
    return out


def _takes_client_config(call: ast.Call) -> bool:
    """The call's configuration comes from ``client_config`` or ``producer_config`` (which
    starts from it): a ``**client_config(...)`` argument, or a config that a call to one of
    them built."""
    text = ast.unparse(call)
    return "client_config(" in text or "producer_config(" in text or "config" in {
        a.id for a in call.args if isinstance(a, ast.Name)
    }


def test_no_kafka_client_is_built_outside_the_factory_without_its_configuration() -> None:
    """A client class constructed in ``streams/`` outside ``streams/kafka/clients.py`` must
    take a configuration that ``client_config`` built (librdkafka producers take
    ``producer_config``, which starts from it); aiokafka clients and Faust apps are
    built only by the factory and ``WorkerApp`` (with ``faust_credentials``)."""
    offenders = []
    for path in sorted((ROOT / "streams").rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        if rel == FACTORY_MODULE:
            continue
        for line, name, call in _constructions(path):
            if name in ("Producer", "Consumer", "AdminClient") and _takes_client_config(call):
                continue
            offenders.append(f"{rel}:{line}: {name}(...)")
    assert not offenders, "Kafka clients built without streams.kafka.clients: " + ", ".join(
        offenders)


def test_the_check_itself_finds_a_client_built_by_hand(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text(
        "from aiokafka import AIOKafkaConsumer\n"
        "c = AIOKafkaConsumer(bootstrap_servers='x')\n"
        "from confluent_kafka import Producer\n"
        "p = Producer({'bootstrap.servers': 'x'})\n"
    )
    found = _constructions(sample)
    assert [name for _, name, _ in found] == ["AIOKafkaConsumer", "Producer"]
    assert not _takes_client_config(found[1][2])


def test_the_worker_app_gets_the_credentials() -> None:
    source = (ROOT / "streams/worker/app.py").read_text()
    assert "broker_credentials=faust_credentials(s.kafka)" in source


# ------------------------------------------------------------------ configurations


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    from cryptography.hazmat.primitives import serialization

    d = tmp_path_factory.mktemp("pki")
    ca = trustme.CA()
    ca.cert_pem.write_to_path(str(d / "ca.pem"))
    leaf = ca.issue_cert("client.invalid", common_name="client")
    leaf.cert_chain_pems[0].write_to_path(str(d / "client.crt"))
    key = serialization.load_pem_private_key(leaf.private_key_pem.bytes(), password=None)
    (d / "client.key").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"key-pass")))
    return {"ca": str(d / "ca.pem"), "cert": str(d / "client.crt"), "key": str(d / "client.key")}


def test_plaintext_is_the_default_for_every_library() -> None:
    kafka = Settings(kafka_bootstrap_servers="k1:9092,k2:9092").kafka
    assert client_config(kafka, "librdkafka") == {
        "bootstrap.servers": "k1:9092,k2:9092", "security.protocol": "plaintext"}
    assert client_config(kafka, "aiokafka") == {
        "bootstrap_servers": "k1:9092,k2:9092", "security_protocol": "PLAINTEXT"}
    assert faust_credentials(kafka) is None


def test_sasl_ssl_in_each_librarys_terms(pki: dict[str, str]) -> None:
    kafka = Settings.from_env({
        "KAFKA_BOOTSTRAP_SERVERS": "k1:9093", "KAFKA_SECURITY_PROTOCOL": "sasl_ssl",
        "KAFKA_SASL_MECHANISM": "SCRAM-SHA-512", "KAFKA_SASL_USERNAME": "ingress",
        "KAFKA_SASL_PASSWORD": "pw-123", "KAFKA_SSL_CA_FILE": pki["ca"],
    }).kafka
    rd = client_config(kafka, "librdkafka")
    assert rd["security.protocol"] == "sasl_ssl"
    assert (rd["sasl.mechanism"], rd["sasl.username"], rd["sasl.password"]) == (
        "SCRAM-SHA-512", "ingress", "pw-123")
    assert rd["ssl.ca.location"] == pki["ca"]
    assert rd["ssl.endpoint.identification.algorithm"] == "https"
    aio = client_config(kafka, "aiokafka")
    assert (aio["security_protocol"], aio["sasl_mechanism"], aio["sasl_plain_username"],
            aio["sasl_plain_password"]) == ("SASL_SSL", "SCRAM-SHA-512", "ingress", "pw-123")
    context = aio["ssl_context"]
    assert context.check_hostname and context.verify_mode == ssl.CERT_REQUIRED
    creds = faust_credentials(kafka)
    assert creds is not None and creds.protocol.value == "SASL_SSL"
    assert creds.mechanism.value == "SCRAM-SHA-512"  # type: ignore[attr-defined]
    assert "pw-123" not in repr(kafka) and "pw-123" not in repr(creds)


def test_mutual_tls_with_an_encrypted_key(pki: dict[str, str]) -> None:
    env = {"KAFKA_SECURITY_PROTOCOL": "SSL", "KAFKA_SSL_CA_FILE": pki["ca"],
           "KAFKA_SSL_CERT_FILE": pki["cert"], "KAFKA_SSL_KEY_FILE": pki["key"],
           "KAFKA_SSL_KEY_PASSWORD": "key-pass"}
    kafka = Settings.from_env(env).kafka
    rd = client_config(kafka, "librdkafka")
    assert (rd["ssl.certificate.location"], rd["ssl.key.location"], rd["ssl.key.password"]) == (
        pki["cert"], pki["key"], "key-pass")
    assert "sasl.mechanism" not in rd
    assert isinstance(client_config(kafka, "aiokafka")["ssl_context"], ssl.SSLContext)
    wrong = Settings.from_env({**env, "KAFKA_SSL_KEY_PASSWORD": "nope"}).kafka
    with pytest.raises(ConfigurationError, match="KAFKA_SSL_KEY_PASSWORD") as caught:
        client_config(wrong, "aiokafka")
    assert "nope" not in str(caught.value)


def test_unreadable_files_name_their_variable(tmp_path: Path) -> None:
    kafka = KafkaConnection("k:9093", "SSL", ssl_ca_file=str(tmp_path / "absent.pem"))
    with pytest.raises(ConfigurationError, match="KAFKA_SSL_CA_FILE"):
        client_config(kafka, "librdkafka")
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    with pytest.raises(ConfigurationError, match="KAFKA_SSL_CA_FILE"):
        client_config(KafkaConnection("k:9093", "SSL", ssl_ca_file=str(junk)), "aiokafka")


@pytest.mark.parametrize(("env", "message"), [
    ({"KAFKA_SECURITY_PROTOCOL": "TLS"}, "KAFKA_SECURITY_PROTOCOL must be one of"),
    ({"KAFKA_SECURITY_PROTOCOL": "SASL_SSL"},
     "needs KAFKA_SASL_MECHANISM, KAFKA_SASL_USERNAME, KAFKA_SASL_PASSWORD"),
    ({"KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT", "KAFKA_SASL_MECHANISM": "GSSAPI",
      "KAFKA_SASL_USERNAME": "u", "KAFKA_SASL_PASSWORD": "p"}, "KAFKA_SASL_MECHANISM must be"),
    ({"KAFKA_SASL_USERNAME": "u"}, "need KAFKA_SECURITY_PROTOCOL SASL_PLAINTEXT or SASL_SSL"),
    ({"KAFKA_SASL_PASSWORD": "p"}, "need KAFKA_SECURITY_PROTOCOL SASL_PLAINTEXT or SASL_SSL"),
    ({"KAFKA_SSL_CA_FILE": "/ca.pem"}, "KAFKA_SSL_CA_FILE needs KAFKA_SECURITY_PROTOCOL SSL"),
    ({"KAFKA_SECURITY_PROTOCOL": "SSL", "KAFKA_SSL_CERT_FILE": "/c.pem"}, "go together"),
])
def test_inconsistent_security_settings_stop_start_up(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message) as caught:
        Settings.from_env(env)
    assert "'p'" not in str(caught.value)


def test_mechanism_names_are_read_as_kafka_spells_them() -> None:
    s = Settings.from_env({"KAFKA_SECURITY_PROTOCOL": "sasl_plaintext",
                           "KAFKA_SASL_MECHANISM": "scram_sha_256",
                           "KAFKA_SASL_USERNAME": "u", "KAFKA_SASL_PASSWORD": "p"})
    assert (s.kafka_security_protocol, s.kafka_sasl_mechanism) == (
        "SASL_PLAINTEXT", "SCRAM-SHA-256")


def test_secrets_come_from_files_less_one_trailing_newline(tmp_path: Path) -> None:
    secret = tmp_path / "password"
    secret.write_text("s3cret with spaces \n\n")
    s = Settings.from_env({"KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
                           "KAFKA_SASL_MECHANISM": "PLAIN", "KAFKA_SASL_USERNAME": "u",
                           "KAFKA_SASL_PASSWORD_FILE": str(secret),
                           "EDUME_WEBHOOK_SECRETS_FILE": str(secret)})
    assert s.kafka_sasl_password == "s3cret with spaces \n"
    assert "s3cret" not in repr(s)
    with pytest.raises(ConfigurationError, match="not both"):
        Settings.from_env({"KAFKA_SASL_PASSWORD": "x", "KAFKA_SASL_PASSWORD_FILE": str(secret)})
    assert s.to_env()["KAFKA_SASL_PASSWORD"] == "s3cret with spaces \n"
    with pytest.raises(ConfigurationError, match="KAFKA_SSL_KEY_PASSWORD_FILE: cannot read"):
        Settings.from_env({"KAFKA_SSL_KEY_PASSWORD_FILE": str(tmp_path / "absent")})


@pytest.mark.parametrize(("text", "names"), [
    ("sasl_ssl://h:9093/bootstrap: SASL authentication error: Authentication failed during "
     "authentication due to invalid credentials with SASL mechanism SCRAM-SHA-512",
     "KAFKA_SASL_PASSWORD"),
    ("SSL handshake failed: error:0A000086:SSL routines::certificate verify failed: broker "
     "certificate could not be verified", "KAFKA_SSL_CA_FILE"),
    ("SSL handshake failed: ssl/record/rec_layer_s3.c:1605: error:0A00045C:SSL "
     "routines::tlsv13 alert certificate required", "KAFKA_SSL_CERT_FILE"),
])
def test_refusals_name_the_settings_to_check(text: str, names: str) -> None:
    kafka = KafkaConnection("h:9093", "SASL_SSL", "SCRAM-SHA-512", "ingress", "pw-123")
    reason = refusal(kafka, text)
    assert reason is not None and names in reason and "pw-123" not in reason


def test_a_broker_that_is_down_or_restarting_is_no_refusal() -> None:
    kafka = KafkaConnection("h:9093", "SASL_SSL", "SCRAM-SHA-512", "u", "p")
    assert refusal(kafka, "Connect to ipv4#127.0.0.1:9093 failed: Connection refused") is None
    assert refusal(kafka, "SSL handshake failed: Disconnected: connection closed by peer") is None


def test_acl_refusals_name_the_acls() -> None:
    kafka = KafkaConnection("h:9093", "SASL_SSL", "SCRAM-SHA-512", "ingress", "pw-123")
    reason = refusal(kafka, "Failed to acquire idempotence PID: Broker: Cluster authorization "
                            "failed")
    assert reason is not None and "ACLs" in reason and "pw-123" not in reason
