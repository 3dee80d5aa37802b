"""Every Kafka client of the project on a secured Apache Kafka: a SASL_SSL listener (SCRAM
users created when the storage was formatted; a CA and broker certificate made for the
test) and an SSL listener that requires client certificates, with the StandardAuthorizer
and the ACLs of ``deploy/k8s/base/kafka-users.yaml`` (each component's user may do only
what its KafkaUser allows).

- the ingress as SCRAM-SHA-512 user ``edume-streams-ingress``: 202 and the event on its topic;
  the same user may not write a topic the ingress does not write;
- a worker as a process over mutual TLS (certificate CN ``edume-streams-worker``): Faust's
  consumer and producer, the catalog and policy reader and the librdkafka producer all
  connect, and a completion comes out;
- the commands (``topics``, ``policy``, ``read``, ``request-link``, ``dlq replay``) as an
  admin user;
- a wrong password, an untrusted CA and a missing client certificate: start-up stops
  within 30 s naming the setting, never printing the secret; ``/readyz`` is 503 while the
  broker refuses.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import trustme
import uvicorn
import yaml
from confluent_kafka import KafkaError, Producer
from confluent_kafka.admin import (
    AclBinding,
    AclBindingFilter,
    AclOperation,
    AclPermissionType,
    AdminClient,
    ResourcePatternType,
    ResourceType,
)

from streams.core import topics
from streams.ingress.app import Ingress
from streams.ingress.server import uvicorn_config
from streams.kafka.admin import ensure_topics
from streams.kafka.clients import KafkaConnection, client_config
from streams.kafka.embedded import free_port
from tests.apache_kafka import KafkaCluster, tools_missing
from tests.support import (
    FIXTURES,
    SECRET,
    compact,
    make_settings,
    manifest,
    read_topic,
    serve_ingress,
    sign,
)
from tests.worker_support import WorkerProcess, eventually, learner_story, publish

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(bool(tools_missing()) and os.environ.get("CI") != "true",
                       reason="Apache Kafka needs java and mvn"),
]

ROOT = Path(__file__).resolve().parents[2]
USERS = {"edume-streams-ingress": "ingress-pass-4f1", "edume-streams-worker": "worker-pass-9c2",
         "ops-admin": "admin-pass-77d", "late-grant": "late-pass-31b"}
WRONG = "wrong-pass-e0a"


@pytest.fixture(scope="module")
def secure(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaCluster]:
    with KafkaCluster(nodes=1, workdir=tmp_path_factory.mktemp("secure-kafka"), secure=True,
                      users=USERS, tls_clients=("edume-streams-worker", "stranger"),
                      acls=True, super_users=("ops-admin",)) as cluster:
        yield cluster


def sasl(cluster: KafkaCluster, user: str, password: str | None = None) -> dict[str, str]:
    assert cluster.tls is not None
    return {"KAFKA_BOOTSTRAP_SERVERS": cluster.bootstrap_for("SASL_SSL"),
            "KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
            "KAFKA_SASL_USERNAME": user, "KAFKA_SASL_PASSWORD": password or USERS[user],
            "KAFKA_SSL_CA_FILE": cluster.tls.ca_file}


def mtls(cluster: KafkaCluster, client: str) -> dict[str, str]:
    assert cluster.tls is not None
    cert, key = cluster.tls.client(client)
    return {"KAFKA_BOOTSTRAP_SERVERS": cluster.bootstrap_for("SSL"),
            "KAFKA_SECURITY_PROTOCOL": "SSL", "KAFKA_SSL_CA_FILE": cluster.tls.ca_file,
            "KAFKA_SSL_CERT_FILE": cert, "KAFKA_SSL_KEY_FILE": key}


def settings_from(prefix: str, env: dict[str, str]) -> Any:
    keys = {"KAFKA_BOOTSTRAP_SERVERS": "kafka_bootstrap_servers",
            "KAFKA_SECURITY_PROTOCOL": "kafka_security_protocol",
            "KAFKA_SASL_MECHANISM": "kafka_sasl_mechanism",
            "KAFKA_SASL_USERNAME": "kafka_sasl_username",
            "KAFKA_SASL_PASSWORD": "kafka_sasl_password",
            "KAFKA_SSL_CA_FILE": "kafka_ssl_ca_file", "KAFKA_SSL_CERT_FILE": "kafka_ssl_cert_file",
            "KAFKA_SSL_KEY_FILE": "kafka_ssl_key_file"}
    base = make_settings(env["KAFKA_BOOTSTRAP_SERVERS"], prefix)
    return base.replace(**{keys[k]: v for k, v in env.items() if k in keys})


def grant_deploy_acls(cluster: KafkaCluster, prefix: str) -> None:
    """The ACLs of the deploy's KafkaUsers, every topic and group name prefixed, granted to
    the users of the same names (SCRAM, and the certificate CN for the worker)."""
    objects = list(yaml.safe_load_all((ROOT / "deploy/k8s/base/kafka-users.yaml").read_text()))
    kinds = {"topic": ResourceType.TOPIC, "group": ResourceType.GROUP,
             "cluster": ResourceType.BROKER}
    patterns = {"literal": ResourcePatternType.LITERAL, "prefix": ResourcePatternType.PREFIXED}
    bindings = []
    for user in (o for o in objects if o and o["kind"] == "KafkaUser"):
        for acl in user["spec"]["authorization"]["acls"]:
            resource = acl["resource"]
            kind = kinds[resource["type"]]
            name = ("kafka-cluster" if kind == ResourceType.BROKER
                    else prefix + resource["name"])
            pattern = patterns[resource.get("patternType", "literal")]
            for op in acl["operations"]:
                operation = getattr(AclOperation, {"IdempotentWrite": "IDEMPOTENT_WRITE"}.get(
                    op, op.upper()))
                bindings.append(AclBinding(kind, name, pattern, f"User:{user['metadata']['name']}",
                                           "*", operation, AclPermissionType.ALLOW))
    admin = AdminClient({"bootstrap.servers": cluster.bootstrap})
    for future in admin.create_acls(bindings).values():
        future.result(30)
    # Granted through the metadata log: wait until the broker's authorizer holds them all.
    wanted = AclBindingFilter(ResourceType.ANY, None, ResourcePatternType.ANY, None, None,
                              AclOperation.ANY, AclPermissionType.ANY)
    deadline = time.monotonic() + 30
    while not set(bindings) <= set(admin.describe_acls(wanted).result(30)):
        assert time.monotonic() < deadline, "ACLs not in force after 30 s"
        time.sleep(0.1)


def run_cli(env: dict[str, str], prefix: str, *args: str,
            timeout_s: float = 60) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith(("EDUME_", "KAFKA_"))}
    full.update(env, TOPIC_PREFIX=prefix, EDUME_LINK_SECRET="s", EDUME_WEBHOOK_SECRETS=SECRET,
                WORKER_API_TOKENS="security-test-api-token",
                INGRESS_PORT=str(free_port()), WORKER_WEB_PORT=str(free_port()))
    return subprocess.run([sys.executable, "-m", "streams", *args], cwd=ROOT, env=full,
                          capture_output=True, text=True, timeout=timeout_s, check=False)


@pytest.fixture
async def granted(secure: KafkaCluster, prefix: str) -> str:
    await ensure_topics(secure.kafka, prefix)
    grant_deploy_acls(secure, prefix)
    return prefix


async def test_the_ingress_publishes_as_its_scram_user_and_only_where_it_may(
    secure: KafkaCluster, granted: str
) -> None:
    prefix = granted
    settings = settings_from(prefix, sasl(secure, "edume-streams-ingress"))
    async with serve_ingress(settings, create_topics=False) as ingress:
        sample = next(e for e in manifest() if e["family"] == "course")
        body = compact((FIXTURES / sample["file"]).read_bytes())
        status, _, answer = await ingress.post(body)
        assert status == 202 and answer["topic"] == prefix + topics.COURSE_EVENTS, answer
        assert (await ingress.get("/readyz"))[0] == 200
    [record] = await read_topic(secure.bootstrap, prefix + topics.COURSE_EVENTS, 1)
    assert record.key == sample["key"].encode() and record.value == body

    # The same user may not write a topic the ingress does not write.
    failures: list[KafkaError] = []
    producer = Producer({**client_config(settings.kafka, "librdkafka"),
                         "message.timeout.ms": 10_000})
    producer.produce(prefix + topics.TRAINING_POLICIES, b"{}", b"1",
                     on_delivery=lambda err, _msg: failures.append(err))
    producer.flush(15)
    assert failures and failures[0] is not None
    assert failures[0].code() == KafkaError.TOPIC_AUTHORIZATION_FAILED


async def test_a_worker_over_mutual_tls_processes_and_announces(
    secure: KafkaCluster, granted: str, tmp_path: Path
) -> None:
    prefix = granted
    admin = run_cli(sasl(secure, "ops-admin"), prefix, "policy", "set", "1")
    assert admin.returncode == 0, admin.stderr
    events = learner_story(910_001, [1], [1], 5, minute=1)
    publish(secure.bootstrap, prefix, events)

    worker = WorkerProcess(secure, prefix, tmp_path, extra_env={
        **mtls(secure, "edume-streams-worker"), "KAFKA_EMBEDDED_BROKER": "false"}).start()
    try:
        await worker.wait_ready(90)

        async def announced() -> bool:
            status, view = await worker.get("/learners/910001/mandatory")
            return status == 200 and view["complete"] is True

        assert await eventually(announced, 60), worker.log_text()[-4000:]
        [done] = await read_topic(secure.bootstrap, prefix + topics.MANDATORY_COMPLETED, 1)
        assert done.key == b"910001"
    finally:
        worker.stop()
    assert "Authorization" not in worker.log_text(), worker.log_text()[-4000:]


async def test_the_commands_connect_as_an_admin_user(secure: KafkaCluster, granted: str) -> None:
    env = sasl(secure, "ops-admin")
    described = run_cli(env, granted, "topics", "describe")
    assert described.returncode == 0, described.stderr
    assert run_cli(env, granted, "policy", "set", "42", "--groups", "5").returncode == 0
    listed = run_cli(env, granted, "policy", "list")
    assert listed.returncode == 0 and '"courseId":42' in listed.stdout, listed.stderr
    read = run_cli(env, granted, "read", topics.TRAINING_POLICIES)
    assert read.returncode == 0 and '"key":"42"' in read.stdout, read.stderr
    asked = run_cli(env, granted, "request-link", "hub", "--team-id", "7", "--user", "u-1")
    assert asked.returncode == 0, asked.stderr
    [request] = await read_topic(secure.bootstrap, granted + topics.LINK_REQUESTS, 1)
    assert request.key == b"u-1"
    replayed = run_cli(env, granted, "dlq", "replay")
    assert replayed.returncode == 0, replayed.stderr
    assert run_cli(env, granted, "topics", "create").returncode == 0


@pytest.mark.parametrize("command", ["ingress", "worker", "topics"])
def test_a_wrong_password_stops_start_up_naming_the_setting(
    secure: KafkaCluster, prefix: str, command: str
) -> None:
    args = ["topics", "describe"] if command == "topics" else [command]
    started = time.monotonic()
    result = run_cli(sasl(secure, "edume-streams-ingress", WRONG), prefix, *args, timeout_s=45)
    took = time.monotonic() - started
    output = result.stdout + result.stderr
    assert result.returncode == 2, output[-3000:]
    assert took < 30, took
    assert "KAFKA_SASL_PASSWORD" in result.stderr and "refused the SASL credentials" in output
    assert WRONG not in output


@pytest.mark.parametrize("command", ["ingress", "worker"])
def test_an_untrusted_ca_stops_start_up_naming_the_setting(
    secure: KafkaCluster, prefix: str, command: str, tmp_path: Path
) -> None:
    other = tmp_path / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(other))
    env = {**sasl(secure, "edume-streams-ingress"), "KAFKA_SSL_CA_FILE": str(other)}
    started = time.monotonic()
    result = run_cli(env, prefix, command, timeout_s=45)
    assert result.returncode == 2, (result.stdout + result.stderr)[-3000:]
    assert time.monotonic() - started < 30
    assert "KAFKA_SSL_CA_FILE" in result.stderr and "not trusted" in result.stderr
    assert USERS["edume-streams-ingress"] not in result.stdout + result.stderr


def test_a_certificate_the_broker_does_not_know_is_refused(
    secure: KafkaCluster, prefix: str, tmp_path: Path
) -> None:
    """A client certificate from another CA, on the listener that requires one."""
    ca = trustme.CA()
    leaf = ca.issue_cert("stranger.invalid", common_name="edume-streams-worker")
    cert, key = tmp_path / "c.pem", tmp_path / "k.pem"
    leaf.cert_chain_pems[0].write_to_path(str(cert))
    leaf.private_key_pem.write_to_path(str(key))
    env = {**mtls(secure, "stranger"), "KAFKA_SSL_CERT_FILE": str(cert),
           "KAFKA_SSL_KEY_FILE": str(key)}
    result = run_cli(env, prefix, "topics", "describe", timeout_s=45)
    assert result.returncode == 2, result.stderr[-3000:]
    assert "KAFKA_SSL_CERT_FILE" in result.stderr


async def test_readyz_is_503_while_the_broker_refuses(secure: KafkaCluster, prefix: str) -> None:
    settings = settings_from(prefix, sasl(secure, "edume-streams-ingress", WRONG))
    app = Ingress(settings)
    server = uvicorn.Server(uvicorn_config(app, settings))
    task = asyncio.create_task(server.serve())
    try:
        refused = await eventually(lambda: _value(app.publisher.refused), 20, 0.1)
        assert refused and "KAFKA_SASL_PASSWORD" in refused and WRONG not in refused
        url = f"http://{settings.ingress_host}:{settings.ingress_port}/readyz"
        async with aiohttp.ClientSession() as http, http.get(url) as r:
            assert r.status == 503
        async with aiohttp.ClientSession() as http, http.post(
            f"http://{settings.ingress_host}:{settings.ingress_port}/webhooks/edume",
            data=b'{"type":"x","payload":{},"timestamp":"2024-01-01T00:00:00Z"}',
            headers={"X-Edume-Signature": sign(
                b'{"type":"x","payload":{},"timestamp":"2024-01-01T00:00:00Z"}')},
        ) as r:
            assert r.status == 503  # nothing acknowledged: eduMe retries
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 30)


async def test_an_ingress_refused_by_acls_recovers_once_they_are_granted(
    secure: KafkaCluster, prefix: str
) -> None:
    """A user the ACLs do not allow yet: the idempotent producer's id is refused (a fatal
    error), /readyz is 503 and the error names the ACLs; granted, the producer is replaced
    and the next webhook gets 202, with nothing restarted."""
    await ensure_topics(secure.kafka, prefix)
    settings = settings_from(prefix, sasl(secure, "late-grant"))
    app = Ingress(settings)
    server = uvicorn.Server(uvicorn_config(app, settings))
    task = asyncio.create_task(server.serve())
    base = f"http://{settings.ingress_host}:{settings.ingress_port}"
    try:
        refused = await eventually(lambda: _value(app.publisher.refused), 20, 0.1)
        assert refused and "ACLs" in refused, refused
        async with aiohttp.ClientSession() as http, http.get(base + "/readyz") as r:
            assert r.status == 503
        topics_written = [prefix + t for t in (topics.COURSE_EVENTS, topics.LEARNER_EVENTS,
                                                topics.WEBHOOKS_DLQ)]
        grants = [
            AclBinding(ResourceType.TOPIC, name, ResourcePatternType.LITERAL,
                       "User:late-grant", "*", op, AclPermissionType.ALLOW)
            for name in topics_written for op in (AclOperation.WRITE, AclOperation.DESCRIBE)
        ] + [AclBinding(ResourceType.BROKER, "kafka-cluster", ResourcePatternType.LITERAL,
                        "User:late-grant", "*", AclOperation.IDEMPOTENT_WRITE,
                        AclPermissionType.ALLOW)]
        admin = AdminClient({"bootstrap.servers": secure.bootstrap})
        for future in admin.create_acls(grants).values():
            future.result(30)

        async def ready() -> bool:
            async with aiohttp.ClientSession() as http, http.get(base + "/readyz") as r:
                return r.status == 200

        assert await eventually(ready, 30, 0.2)
        sample = next(e for e in manifest() if e["family"] == "learner")
        body = compact((FIXTURES / sample["file"]).read_bytes())
        async with aiohttp.ClientSession() as http, http.post(
            base + "/webhooks/edume", data=body, headers={"X-Edume-Signature": sign(body)},
        ) as r:
            assert r.status == 202, await r.text()
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 30)


async def _value(value: Any) -> Any:
    return value


def test_a_connection_for_another_listener_is_not_plaintext(secure: KafkaCluster) -> None:
    """The helper's addresses: each listener speaks its own protocol (a PLAINTEXT client on
    the SASL_SSL port gets no metadata)."""
    kafka = KafkaConnection(secure.bootstrap_for("SASL_SSL"))
    admin = AdminClient({**client_config(kafka, "librdkafka"), "socket.timeout.ms": 3000})
    with pytest.raises(Exception):  # noqa: B017 - librdkafka's KafkaException
        admin.list_topics(timeout=3)
