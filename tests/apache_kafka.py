"""Apache Kafka for the tests and the benchmarks: one node or a cluster, in KRaft combined
mode (every node broker and controller), on free loopback ports.

The broker comes from Maven Central (``tests/kafka/pom.xml``: ``kafka_2.13`` and its runtime
dependencies), copied once into ``.cache/kafka/VERSION/libs`` (git-ignored): a second run
fetches nothing. Each node's storage is formatted with ``kafka.tools.StorageTool`` (SCRAM
users are added then), then ``kafka.Kafka`` runs it. Settings suit quick tests on a small
machine: no initial rebalance delay, a 512 MB heap, internal topics at the cluster's size.

Listeners, besides the PLAINTEXT one every cluster has (inter-broker traffic, and the
tests' own set-up; a super user when ACLs are on):
- ``SASL_SSL``: SCRAM-SHA-256/512 and PLAIN users, TLS with a certificate the CA signs for
  ``localhost`` and ``127.0.0.1``;
- ``SSL``: the same TLS, and clients must present a certificate of the CA (the principal is
  its CN).

By hand: ``python -m tests.apache_kafka [--nodes 3] [--secure]`` prints the addresses and
runs until Ctrl-C.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script too

from streams.processes import die_with_parent  # noqa: E402

POM = Path(__file__).parent / "kafka" / "pom.xml"
KAFKA_VERSION = "4.1.1"
CACHE = ROOT / ".cache" / "kafka"
HEAP = os.environ.get("KAFKA_TEST_HEAP", "512m")


def tools_missing() -> list[str]:
    """Which of ``java`` and ``mvn`` are not on PATH."""
    return [tool for tool in ("java", "mvn") if shutil.which(tool) is None]


def classpath(version: str = KAFKA_VERSION) -> str:
    """The broker's classpath; fetched with Maven on first use, under a file lock so that
    concurrent test processes fetch once."""
    libs = CACHE / version / "libs"
    done = CACHE / version / ".complete"
    if not done.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        with open(CACHE / ".lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not done.exists():
                shutil.rmtree(libs, ignore_errors=True)
                result = subprocess.run(
                    ["mvn", "-q", "-B", "-f", str(POM), "dependency:copy-dependencies",
                     f"-Dkafka.version={version}", "-DincludeScope=runtime",
                     f"-DoutputDirectory={libs}"],
                    capture_output=True, text=True, timeout=600, check=False,
                )
                if result.returncode != 0:
                    raise RuntimeError(
                        f"fetching Apache Kafka {version} with Maven failed:\n"
                        f"{result.stdout[-3000:]}{result.stderr[-3000:]}"
                    )
                done.touch()
    return f"{libs}/*"


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


@dataclass(frozen=True)
class Tls:
    """A CA, the brokers' certificate and key, and client certificates, as PEM files."""

    dir: Path

    @property
    def ca_file(self) -> str:
        return str(self.dir / "ca.pem")

    @property
    def broker_keystore(self) -> str:
        return str(self.dir / "broker.pem")

    def client(self, name: str) -> tuple[str, str]:
        """(certificate file, key file) of the client whose certificate's CN is ``name``."""
        return str(self.dir / f"client-{name}.crt"), str(self.dir / f"client-{name}.key")

    @classmethod
    def generate(cls, dir: Path, clients: tuple[str, ...] = ()) -> Tls:
        import trustme
        from cryptography.hazmat.primitives import serialization

        dir.mkdir(parents=True, exist_ok=True)
        ca = trustme.CA(organization_name="edume-streams tests")
        ca.cert_pem.write_to_path(str(dir / "ca.pem"))
        broker = ca.issue_cert("localhost", "127.0.0.1", common_name="broker")

        def pkcs8(blob: bytes) -> bytes:
            key = serialization.load_pem_private_key(blob, password=None)
            return key.private_bytes(serialization.Encoding.PEM,
                                     serialization.PrivateFormat.PKCS8,
                                     serialization.NoEncryption())

        chain = b"".join(c.bytes() for c in broker.cert_chain_pems)
        (dir / "broker.pem").write_bytes(pkcs8(broker.private_key_pem.bytes()) + chain)
        for name in clients:
            leaf = ca.issue_cert(f"{name}.clients.invalid", common_name=name)
            (dir / f"client-{name}.crt").write_bytes(
                b"".join(c.bytes() for c in leaf.cert_chain_pems))
            (dir / f"client-{name}.key").write_bytes(pkcs8(leaf.private_key_pem.bytes()))
        return cls(dir)


@dataclass
class Node:
    node_id: int
    dir: Path
    ports: dict[str, int]
    process: subprocess.Popen[bytes] | None = None

    @property
    def log_path(self) -> Path:
        return self.dir / "server.log"

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None


@dataclass
class KafkaCluster:
    """``nodes`` Apache Kafka nodes on loopback; stop with ``stop()`` or ``with``.

    ``users``: SCRAM users (name -> password), created at format; they and PLAIN users of
    the same names log in on the SASL_SSL listener. ``tls_clients``: client certificates to
    issue for the SSL listener. ``acls``: the StandardAuthorizer, with the PLAINTEXT
    listener's ANONYMOUS as super user (the tests' set-up) and ``super_users``.
    """

    nodes: int = 1
    workdir: Path | None = None
    secure: bool = False
    users: Mapping[str, str] = field(default_factory=dict)
    tls_clients: tuple[str, ...] = ()
    acls: bool = False
    super_users: tuple[str, ...] = ()
    broker_config: Mapping[str, str] = field(default_factory=dict)
    version: str = KAFKA_VERSION
    members: list[Node] = field(default_factory=list)
    tls: Tls | None = None
    _tmp: tempfile.TemporaryDirectory[str] | None = None

    # ------------------------------------------------------------------ addresses

    def bootstrap_for(self, listener: str = "PLAINTEXT") -> str:
        return ",".join(f"127.0.0.1:{n.ports[listener]}" for n in self.members)

    @property
    def bootstrap(self) -> str:
        return self.bootstrap_for("PLAINTEXT")

    @property
    def kafka(self):  # type: ignore[no-untyped-def]
        from streams.kafka.clients import KafkaConnection

        return KafkaConnection(self.bootstrap)

    embedded = False
    name = "Apache Kafka"

    # ------------------------------------------------------------------ life cycle

    def __enter__(self) -> KafkaCluster:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self, timeout_s: float = 90.0) -> KafkaCluster:
        cp = classpath(self.version)
        if self.workdir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="kafka-")
            self.workdir = Path(self._tmp.name)
        listeners = ["PLAINTEXT", "CONTROLLER"] + (["SASL_SSL", "SSL"] if self.secure else [])
        if self.secure:
            self.tls = Tls.generate(self.workdir / "tls", self.tls_clients)
        self.members = [
            Node(i + 1, self.workdir / f"node-{i + 1}", {name: free_port() for name in listeners})
            for i in range(self.nodes)
        ]
        cluster_id = _cluster_id()
        for node in self.members:
            node.dir.mkdir(parents=True, exist_ok=True)
            (node.dir / "server.properties").write_text(self._properties(node))
            (node.dir / "log4j2.yaml").write_text(_LOG4J.replace("LOGFILE", str(node.log_path)))
            command = ["java", "-cp", cp, "kafka.tools.StorageTool", "format",
                       "-t", cluster_id, "-c", str(node.dir / "server.properties")]
            for user, password in self.users.items():
                for mech in ("SCRAM-SHA-256", "SCRAM-SHA-512"):
                    command += ["--add-scram", f"{mech}=[name={user},password={password}]"]
            result = subprocess.run(command, capture_output=True, text=True, timeout=120,
                                    check=False)
            if result.returncode != 0:
                raise RuntimeError(f"formatting node {node.node_id} failed: "
                                   f"{result.stdout[-2000:]}{result.stderr[-2000:]}")
        try:
            for node in self.members:
                self.start_node(node.node_id, wait=False)
            self.wait_ready(timeout_s)
        except BaseException:
            self.stop()  # no JVM outlives a failed start
            raise
        return self

    def start_node(self, node_id: int, *, wait: bool = True, timeout_s: float = 60.0) -> None:
        node = self.members[node_id - 1]
        if node.alive:
            return
        log = open(node.dir / "stdout.log", "ab")
        node.process = subprocess.Popen(
            ["java", f"-Xmx{HEAP}", "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20",
             "-XX:TieredStopAtLevel=1", "-Djava.awt.headless=true",
             f"-Dlog4j2.configurationFile={node.dir / 'log4j2.yaml'}",
             "-cp", classpath(self.version), "kafka.Kafka", str(node.dir / "server.properties")],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
            # SIGTERM when the process that started it dies, however it dies (a test run
            # killed by a timeout leaves no JVM behind).
            preexec_fn=die_with_parent,
        )
        log.close()
        if wait:
            self.wait_ready(timeout_s)

    def wait_ready(self, timeout_s: float = 90.0) -> None:
        """Until every live node accepts connections and the PLAINTEXT listeners answer
        metadata naming every live broker."""
        from confluent_kafka.admin import AdminClient

        deadline = time.monotonic() + timeout_s
        live = [n for n in self.members if n.alive]
        admin = AdminClient({"bootstrap.servers": ",".join(
            f"127.0.0.1:{n.ports['PLAINTEXT']}" for n in live)})
        while True:
            for node in live:
                if not node.alive:
                    raise RuntimeError(f"node {node.node_id} exited:\n{self.log_tail(node)}")
            if all(_answers(n.ports["PLAINTEXT"]) for n in live):
                try:
                    meta = admin.list_topics(timeout=5)
                    if {b for b in meta.brokers} >= {n.node_id for n in live}:
                        return
                except Exception:
                    pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"Apache Kafka not ready in {timeout_s:.0f} s:\n"
                                   + "\n".join(self.log_tail(n) for n in live))
            time.sleep(0.3)

    def wait_in_sync(self, timeout_s: float = 60.0) -> None:
        """Until every partition of every topic has all its replicas in sync (what an
        operator waits for between two nodes of a rolling restart)."""
        from confluent_kafka.admin import AdminClient

        admin = AdminClient({"bootstrap.servers": self.bootstrap})
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                meta = admin.list_topics(timeout=5)
                lagging = [f"{t}/{p}" for t, topic in meta.topics.items()
                           for p, part in topic.partitions.items()
                           if len(part.isrs) < len(part.replicas)]
            except Exception:  # not answering yet
                lagging = ["(no metadata)"]
            if not lagging:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"replicas not in sync after {timeout_s:.0f} s: {lagging[:5]}")
            time.sleep(0.2)

    def kill_node(self, node_id: int) -> None:
        """SIGKILL one node (a crash)."""
        node = self.members[node_id - 1]
        if node.alive and node.process is not None:
            os.killpg(node.process.pid, signal.SIGKILL)
            node.process.wait(30)

    def stop_node(self, node_id: int, timeout_s: float = 60.0) -> None:
        """SIGTERM one node (a controlled shutdown), SIGKILL if it lingers."""
        node = self.members[node_id - 1]
        if node.alive and node.process is not None:
            os.killpg(node.process.pid, signal.SIGTERM)
            try:
                node.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                os.killpg(node.process.pid, signal.SIGKILL)
                node.process.wait(30)

    def stop(self) -> None:
        for node in self.members:
            if node.alive and node.process is not None:
                with contextlib.suppress(ProcessLookupError, subprocess.TimeoutExpired):
                    os.killpg(node.process.pid, signal.SIGKILL)
                    node.process.wait(30)
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def log_tail(self, node: Node, lines: int = 40) -> str:
        text = ""
        for path in (node.dir / "stdout.log", node.log_path):
            if path.exists():
                text += "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
        return f"--- node {node.node_id}\n{text}"

    # ------------------------------------------------------------------ configuration

    def _properties(self, node: Node) -> str:
        rf = min(3, self.nodes)
        voters = ",".join(f"{n.node_id}@127.0.0.1:{n.ports['CONTROLLER']}" for n in self.members)
        names = [n for n in node.ports if n != "CONTROLLER"]
        protocols = {"PLAINTEXT": "PLAINTEXT", "CONTROLLER": "PLAINTEXT",
                     "SASL_SSL": "SASL_SSL", "SSL": "SSL"}
        props: dict[str, str] = {
            "process.roles": "broker,controller",
            "node.id": str(node.node_id),
            "controller.quorum.voters": voters,
            "listeners": ",".join(f"{n}://127.0.0.1:{p}" for n, p in node.ports.items()),
            "advertised.listeners": ",".join(f"{n}://127.0.0.1:{node.ports[n]}" for n in names),
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": ",".join(
                f"{n}:{protocols[n]}" for n in node.ports),
            "log.dirs": str(node.dir / "data"),
            "num.partitions": "1",
            "default.replication.factor": str(rf),
            "min.insync.replicas": str(max(1, rf - 1)),
            "offsets.topic.replication.factor": str(rf),
            "offsets.topic.num.partitions": "4",
            "transaction.state.log.replication.factor": str(rf),
            "transaction.state.log.min.isr": str(max(1, rf - 1)),
            "transaction.state.log.num.partitions": "4",
            "share.coordinator.state.topic.replication.factor": str(rf),
            "share.coordinator.state.topic.min.isr": str(max(1, rf - 1)),
            "group.initial.rebalance.delay.ms": "0",
            "group.min.session.timeout.ms": "1000",
            "auto.create.topics.enable": "false",
            "num.network.threads": "2",
            "num.io.threads": "4",
            "num.recovery.threads.per.data.dir": "1",
            "log.cleaner.threads": "1",
            "log.cleaner.backoff.ms": "1000",
            "log.retention.check.interval.ms": "1000",
            "log.segment.delete.delay.ms": "0",
            "file.delete.delay.ms": "0",
            "controlled.shutdown.enable": "true",
            "unclean.leader.election.enable": "false",
        }
        if self.secure and self.tls is not None:
            for listener in ("sasl_ssl", "ssl"):
                props.update({
                    f"listener.name.{listener}.ssl.keystore.type": "PEM",
                    f"listener.name.{listener}.ssl.keystore.location": self.tls.broker_keystore,
                    f"listener.name.{listener}.ssl.truststore.type": "PEM",
                    f"listener.name.{listener}.ssl.truststore.location": self.tls.ca_file,
                })
            props["listener.name.ssl.ssl.client.auth"] = "required"
            props["ssl.principal.mapping.rules"] = "RULE:^CN=([^,]+).*$/$1/,DEFAULT"
            props["listener.name.sasl_ssl.sasl.enabled.mechanisms"] = (
                "SCRAM-SHA-512,SCRAM-SHA-256,PLAIN")
            for mech in ("scram-sha-256", "scram-sha-512"):
                props[f"listener.name.sasl_ssl.{mech}.sasl.jaas.config"] = (
                    "org.apache.kafka.common.security.scram.ScramLoginModule required;")
            plain_users = " ".join(f'user_{u}="{p}"' for u, p in self.users.items())
            props["listener.name.sasl_ssl.plain.sasl.jaas.config"] = (
                "org.apache.kafka.common.security.plain.PlainLoginModule required "
                f"{plain_users};")
        if self.acls:
            props["authorizer.class.name"] = (
                "org.apache.kafka.metadata.authorizer.StandardAuthorizer")
            props["super.users"] = ";".join(
                ["User:ANONYMOUS", *(f"User:{u}" for u in self.super_users)])
            props["allow.everyone.if.no.acl.found"] = "false"
        props.update(self.broker_config)
        return "".join(f"{k}={v}\n" for k, v in props.items())


def _cluster_id() -> str:
    """A random KRaft cluster id that the storage tool's argument parser takes.

    One id in 64 would start with "-" in URL-safe base64, and ``format -t -x...`` reads that
    as an option; Kafka's own ``Uuid.randomUuid`` skips such ids for the same reason.
    """
    import base64

    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not text.startswith("-"):
            return text


_LOG4J = """\
Configuration:
  Appenders:
    File:
      name: file
      fileName: LOGFILE
      PatternLayout:
        pattern: "[%d] %p %m (%c)%n"
  Loggers:
    Root:
      level: INFO
      AppenderRef:
        - ref: file
    Logger:
      - name: kafka.request.logger
        level: WARN
      - name: org.apache.kafka.controller
        level: INFO
      - name: state.change.logger
        level: WARN
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, default=1)
    parser.add_argument("--secure", action="store_true",
                        help="SASL_SSL and SSL listeners too (user 'admin', password 'admin')")
    parser.add_argument("--dir", type=Path, help="keep the data and logs here")
    args = parser.parse_args(argv)
    missing = tools_missing()
    if missing:
        print(f"Apache Kafka needs {' and '.join(missing)} on PATH", file=sys.stderr)
        return 2
    users = {"admin": "admin"} if args.secure else {}
    cluster = KafkaCluster(nodes=args.nodes, workdir=args.dir, secure=args.secure,
                           users=users, tls_clients=("admin",) if args.secure else ())
    with cluster:
        print(f"Apache Kafka {cluster.version}, {args.nodes} node(s), pids "
              f"{' '.join(str(n.process.pid) for n in cluster.members if n.process)}")
        for listener in cluster.members[0].ports:
            if listener != "CONTROLLER":
                print(f"  {listener}: {cluster.bootstrap_for(listener)}")
        if cluster.tls is not None:
            print(f"  CA: {cluster.tls.ca_file}")
        print("Ctrl-C stops it.", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            signal.pause()
    return 0


if __name__ == "__main__":
    sys.exit(main())
