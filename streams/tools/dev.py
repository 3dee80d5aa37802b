"""``edume-streams dev``: a broker (the one that answers, or the embedded one), the topics, the
ingress and one worker, on one machine; SIGINT or SIGTERM stops all of it: the ingress
first (nothing new comes in), then the worker (its batch finishes), the broker last."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

from streams.core.errors import ConfigurationError
from streams.kafka.admin import ensure_topics
from streams.kafka.embedded import EmbeddedBroker, answers, is_loopback
from streams.processes import die_with_parent, stop_process
from streams.runtime import run
from streams.settings import SECRET_FILE_VARS, Settings, parse_bootstrap

log = logging.getLogger(__name__)


class _Stop(Exception):
    """SIGTERM before the server took over signal handling: unwind and clean up."""


def _raise_stop(_sig: int, _frame: object) -> None:
    raise _Stop


def run_dev(settings: Settings) -> int:
    """Run until stopped; returns the exit status."""
    settings.require_webhook_auth()
    settings.require_link_secret()
    settings.require_worker_api_tokens()  # the worker it starts would refuse to
    host, port = parse_bootstrap(settings.kafka_bootstrap_servers)[0]
    broker: EmbeddedBroker | None = None
    previous = signal.signal(signal.SIGTERM, _raise_stop)
    try:
        if answers(host, port):
            log.info("using the broker that answers at %s", settings.kafka_bootstrap_servers)
        else:
            if not is_loopback(host):
                raise ConfigurationError(
                    f"no broker answers at {settings.kafka_bootstrap_servers}, and the embedded "
                    "broker only listens on a loopback address"
                )
            log_path = Path(tempfile.gettempdir()) / f"edume-streams-broker-{port}.log"
            broker = EmbeddedBroker(host, port, log_path=log_path)
            broker.start()  # stops what it started if interrupted before it listens
            log.info(
                "started the embedded broker (pid %d) on %s; its log: %s",
                broker.process.pid if broker.process else -1,
                broker.bootstrap,
                log_path,
            )
        if broker is not None:
            # Its workarounds: see Settings.kafka_embedded_broker.
            settings = settings.replace(kafka_embedded_broker=True)
        run(_serve_dev(settings))
        return 0
    except (_Stop, KeyboardInterrupt):
        return 0
    finally:
        if broker is not None:
            broker.stop()
            log.info("embedded broker stopped")
        signal.signal(signal.SIGTERM, previous)


async def _serve_dev(settings: Settings) -> None:
    from streams.ingress.app import Ingress
    from streams.ingress.server import serve

    created = await ensure_topics(
        settings.kafka,
        settings.topic_prefix,
        replication_factor=settings.topic_replication_factor,
    )
    made = sorted(name for name, state in created.items() if state == "created")
    log.info("topics ready (%d created, %d already there)", len(made), len(created) - len(made))
    app = Ingress(settings)
    worker = start_worker(settings)

    async def banner() -> None:
        await app.publisher.wait_started(10)
        base = f"http://{settings.ingress_host}:{settings.ingress_port}"
        log.info(
            "ingress ready: POST %s/webhooks/edume  (try: edume-streams send "
            "tests/fixtures/webhooks/*.json)  metrics: %s/metrics",
            base,
            base,
        )

    try:
        await serve(app, settings, after_start=banner)
    finally:
        stop_worker(worker)


def start_worker(settings: Settings) -> subprocess.Popen[bytes]:
    """``edume-streams worker`` in a child process, with these settings; it dies with us."""
    process = subprocess.Popen(
        [sys.executable, "-m", "streams", "worker"],
        # The settings as values; the NAME_FILE variables they may have come from are left
        # out (the child would see both a secret and its file, which is refused).
        env={**{k: v for k, v in os.environ.items() if k not in SECRET_FILE_VARS},
             **settings.to_env()},
        stdin=subprocess.DEVNULL,
        # Its own process group: a terminal's Ctrl-C reaches dev alone, which stops the
        # worker once the ingress has stopped.
        start_new_session=True,
        preexec_fn=die_with_parent if sys.platform == "linux" else None,
    )
    log.info(
        "worker started (pid %d); query API on http://%s:%d",
        process.pid,
        settings.worker_web_host,
        settings.worker_web_port,
    )
    return process


def stop_worker(process: subprocess.Popen[bytes], timeout_s: float = 20.0) -> None:
    """SIGTERM (the worker finishes its batch and leaves its group), SIGKILL if it lingers."""
    log.info("worker stopped (exit status %s)", stop_process(process, timeout_s))
