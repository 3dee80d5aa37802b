"""The ``edume-streams`` command: parse arguments, read settings once, call the shells."""

from __future__ import annotations

import argparse
import logging
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path

from streams.core.errors import EdumeStreamsError
from streams.runtime import run
from streams.settings import Settings

log = logging.getLogger("streams")


def _setup_logging(settings: Settings) -> None:
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    # The Kafka clients' own chatter (a reconnect per attempt while a broker is down) stays
    # out of INFO; the publisher says once what changed.
    for name in ("aiokafka", "streams.librdkafka"):
        logging.getLogger(name).setLevel(max(logging.WARNING, logging.root.level))


def cmd_ingress(settings: Settings, _args: argparse.Namespace) -> int:
    from streams.ingress.app import Ingress
    from streams.ingress.server import serve

    app = Ingress(settings)
    log.info(
        "ingress listening on http://%s:%d%s, brokers %s",
        settings.ingress_host,
        settings.ingress_port,
        "/webhooks/edume",
        settings.kafka_bootstrap_servers,
    )
    run(serve(app, settings))
    return 0


def cmd_worker(settings: Settings, _args: argparse.Namespace) -> int:
    from streams.worker.run import run_worker

    return run_worker(settings)


def cmd_topics(settings: Settings, args: argparse.Namespace) -> int:
    if args.action == "describe":
        return _describe_topics(settings)
    from streams.kafka.admin import ensure_topics

    created = run(
        ensure_topics(
            settings.kafka,
            settings.topic_prefix,
            replication_factor=settings.topic_replication_factor,
        )
    )
    for name, state in sorted(created.items()):
        print(f"{name}: {state}")
    made = sum(1 for state in created.values() if state == "created")
    if made:
        print(f"created {made} of {len(created)} topics", file=sys.stderr)
    else:
        print(f"all {len(created)} topics exist already; nothing changed", file=sys.stderr)
    return 0


def _describe_topics(settings: Settings) -> int:
    """``topics describe``: one line per catalog topic (``NAME: ok``, ``NAME: missing``, or
    what differs), a summary on stderr; 0 when every topic matches the catalog, 1 when one
    does not. A config the broker does not report is named, and not counted as a
    difference."""
    from streams.kafka.admin import check_catalog, describe_topics

    prefix = settings.topic_prefix
    found = run(describe_topics(settings.kafka, prefix))
    checks = check_catalog(found, prefix)
    for check in checks:
        print(check.line())
    missing = sum(1 for c in checks if c.missing)
    different = sum(1 for c in checks if not c.missing and c.differences)
    if missing or different:
        summary = (f"{len(checks)} topics: {len(checks) - missing - different} ok, "
                   f"{missing} missing, {different} different")
    else:
        summary = f"all {len(checks)} topics match the catalog"
    unreported = sum(len(c.unreported) for c in checks)
    if unreported:
        summary += f"; {_count(unreported, 'config')} not reported by the broker (not compared)"
    if found.others:
        where = f"with the prefix {prefix!r}" if prefix else "on the broker"
        summary += f"; {_count(len(found.others), 'other topic')} {where} not in the catalog"
    print(summary, file=sys.stderr)
    return 1 if missing or different else 0


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def cmd_dlq(settings: Settings, args: argparse.Namespace) -> int:
    """``dlq replay``: republish the dead letters that the current code accepts, each once.

    ``edume.webhooks.dlq`` records that validate now go to their event topic as the
    ingress publishes an event (same key, value, partitioner and headers, the original
    eventId and received-at); ``streams.dlq`` records from an event topic or
    ``links.requests`` that the workers' rules accept now go back to that topic. Every
    dead letter replayed is recorded on ``edume-streams.dlq.replayed`` after its copy was
    acknowledged (acks=all), and a later run skips it. A crash between the copy and that
    record republishes the copy on the next run with the same ``edume-event-id``: the
    workers drop a repeat by that id (and the links agent an id-less request by its
    value), so no event is applied twice. ``--dry-run`` writes nothing.

    Counts on stdout, one line per dead-letter topic and a total; each copy and the
    commonest reasons records were left on stderr. Exit 0; 2 when the broker cannot be
    reached, a topic is missing, or a write was not acknowledged.
    """
    from streams.core.dlq_plan import SOURCES
    from streams.tools.dlq import count_lines, reason_lines, replay

    sources = SOURCES if args.source == "all" else (args.source,)
    outcome = run(replay(settings, sources, dry_run=args.dry_run, since_ms=args.since,
                         idle_s=args.idle_s, err=sys.stderr))
    for line in reason_lines(outcome):
        print(line, file=sys.stderr)
    for line in count_lines(outcome, dry_run=args.dry_run):
        print(line)
    if outcome.error:
        print(f"edume-streams dlq: {outcome.error}", file=sys.stderr)
        return 2
    return 0


def cmd_policy(settings: Settings, args: argparse.Namespace) -> int:
    from schemas.outputs import TrainingPolicy
    from streams.core.state.policies import Policy
    from streams.tools.policy import describe, parse_groups, read_policies, write_policy

    if args.action == "list":
        book = run(read_policies(settings))
        for policy in book.policies():
            print(policy.value().model_dump_json())
        print(f"{len(book)} policies", file=sys.stderr)
        return 0
    course_id = args.course_id
    if args.action == "unset":
        write_policy(settings, course_id, None)
        print(f"course {course_id}: policy removed")
        return 0
    try:
        groups = parse_groups(args.groups)
    except ValueError as exc:
        raise EdumeStreamsError(str(exc)) from None
    value = TrainingPolicy(courseId=course_id, mandatory=True, groupIds=groups,
                           teamId=args.team_id)
    write_policy(settings, course_id, value)
    print(describe(Policy(course_id, True, None if groups is None else frozenset(groups),
                          args.team_id)))
    return 0


def cmd_catalog(settings: Settings, args: argparse.Namespace) -> int:
    """``catalog import FILE``: see ``streams.tools.catalog_import``."""
    from streams.tools.catalog_import import run_import

    return run_import(settings, args.file, as_of_ms=args.as_of, dry_run=args.dry_run,
                      out=sys.stdout, err=sys.stderr)


def cmd_forget(settings: Settings, args: argparse.Namespace) -> int:
    from streams.core.clock import rfc3339
    from streams.core.erasures import EXTERNAL, USER, erasure_of
    from streams.tools.forget import forget, remains

    kind, subject = ((USER, args.user_id) if args.user_id is not None
                     else (EXTERNAL, args.external_user_id))
    try:
        erasure = erasure_of(kind, subject, int(time.time() * 1000))
    except ValueError as exc:
        raise EdumeStreamsError(str(exc)) from None
    named = (f"learner {erasure.subject}" if kind == USER
             else f"external user {erasure.subject!r}")
    print(f"erasing {named} ({erasure.key.decode()}, asked for at {erasure.requested_at}) ...")
    outcome = run(forget(settings, erasure, args.timeout))
    for applied, partition in outcome.applied.items():
        what = "progress" if applied.kind == USER else "links"
        derived = "" if applied == erasure else " (derived by its owner)"
        print(f"  {applied.key.decode()}: {what} dropped, tombstone on changelog "
              f"partition {partition}{derived}")
    if outcome.awaited:
        waiting = ", ".join(sorted(e.key.decode() for e in outcome.awaited))
        print(f"edume-streams forget: no worker confirmed {waiting} within {args.timeout:.0f}s. "
              "The erasure is recorded on privacy.erasures: the workers apply it when they "
              "run (start them, or check their logs), and run this again to confirm.",
              file=sys.stderr)
        return 1
    print("left on topics that are not compacted, until their retention removes it "
          "(at the latest):")
    for left in run(remains(settings, int(time.time() * 1000))):
        if left.until_ms is None:
            print(f"  {left.topic}: kept for ever (retention.ms -1)")
        else:
            days = (left.retention_ms or 0) / 86_400_000
            print(f"  {left.topic}: until {rfc3339(left.until_ms)} (retention {days:g}d)")
    print("events of this learner stamped before the erasure are ignored from now on")
    return 0


def cmd_evidence(settings: Settings, args: argparse.Namespace) -> int:
    from streams.kafka.evidence import read_evidence
    from streams.tools.evidence import proofs, write_csv

    found = run(read_evidence(settings.kafka, settings.topic_prefix, args.user_id,
                              args.course_id))
    checked = proofs(found, list(settings.webhook_secrets))
    for proof in checked:
        print(proof.line())
    if args.csv is not None:
        with open(args.csv, "w", newline="", encoding="utf-8") as out:
            write_csv(out, checked)
    which = "" if args.course_id is None else f" of course {args.course_id}"
    print(f"{len(checked)} completion(s){which} with their proof for learner {args.user_id}"
          + (f", written to {args.csv}" if args.csv else ""), file=sys.stderr)
    if not settings.webhook_secrets and any(p.evidence.signature for p in checked):
        print("EDUME_WEBHOOK_SECRETS is not set: no signature could be checked",
              file=sys.stderr)
    return 0


def cmd_dev(settings: Settings, _args: argparse.Namespace) -> int:
    from streams.tools.dev import run_dev

    return run_dev(settings)


def cmd_send(settings: Settings, args: argparse.Namespace) -> int:
    from streams.core.jsjson import canonical
    from streams.core.signing import sign_webhook

    if not settings.webhook_secrets:
        raise EdumeStreamsError("send signs with the first of EDUME_WEBHOOK_SECRETS; set it")
    url = args.url or f"http://{settings.ingress_host}:{settings.ingress_port}/webhooks/edume"
    failures = 0
    for name in args.files:
        raw = Path(name).read_bytes()
        # eduMe sends and signs the single-line JSON.stringify form; --raw sends the file's
        # bytes as they are, signed over those bytes.
        body = raw if args.raw else canonical(raw)[1]
        request = urllib.request.Request(  # noqa: S310 - the URL is the operator's
            url,
            data=body,
            method="POST",
            headers={
                "Content-Type": "application/json",
                "X-Edume-Signature": sign_webhook(settings.webhook_secrets[0], body),
            },
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
                status, text = response.status, response.read().decode()
        except urllib.error.HTTPError as exc:
            status, text = exc.code, exc.read().decode(errors="replace")
        except urllib.error.URLError as exc:
            print(f"{name}: cannot reach {url}: {exc.reason}", file=sys.stderr)
            return 2
        print(f"{name}: {status} {text}")
        failures += status >= 300
    return 1 if failures else 0


def cmd_link(settings: Settings, args: argparse.Namespace) -> int:
    from streams.core.signing import build_link, sign_link

    if not settings.link_secret:
        raise EdumeStreamsError("link signing needs EDUME_LINK_SECRET; set it")
    parts = [t.strip() for t in (args.team_id or "").split(",") if t.strip()]
    if not all(t.isdigit() for t in parts):
        raise EdumeStreamsError(f"--team-id takes team ids (integers), got {args.team_id!r}")
    team_ids = [int(t) for t in parts]
    url = build_link(
        args.kind,
        base_url=settings.link_base_url,
        external_user_id=args.user,
        content_id=args.content_id,
        team_ids=team_ids,
    )
    print(sign_link(url, settings.link_secret))
    return 0


def cmd_request_link(settings: Settings, args: argparse.Namespace) -> int:
    import hashlib
    import json

    from streams.core import topics
    from streams.tools.policy import write_one

    request: dict[str, object] = {"kind": args.kind, "externalUserId": args.user}
    if args.content_id is not None:
        if not (args.content_id.isascii() and args.content_id.isdigit()):
            raise EdumeStreamsError(f"CONTENT_ID must be a decimal id, got {args.content_id!r}")
        request["contentId"] = int(args.content_id)
    if args.team_id:
        parts = [t.strip() for t in args.team_id.split(",") if t.strip()]
        if not all(t.isascii() and t.isdigit() for t in parts):
            raise EdumeStreamsError(f"--team-id takes team ids (integers), got {args.team_id!r}")
        request["teamIds"] = [int(t) for t in parts]
    request["reason"] = args.reason
    # Each run is a new request: the time makes its value (and so its id) its own.
    request["requestedAt"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    value = json.dumps(request, ensure_ascii=False, separators=(",", ":")).encode()
    topic = topics.prefixed(topics.LINK_REQUESTS, settings.topic_prefix)
    write_one(settings, topic, args.user.encode(), value, [], what="the link request",
              client_id="edume-streams-request-link")
    print(value.decode())
    print(f"request {hashlib.sha256(value).hexdigest()} written to {topic}; the answer comes "
          "on links.issued or links.rejected", file=sys.stderr)
    return 0


def cmd_schemas(_settings: Settings, args: argparse.Namespace) -> int:
    from streams.tools.schema_export import write_schemas

    for path in write_schemas(Path(args.out_dir)):
        print(path)
    return 0


def cmd_read(settings: Settings, args: argparse.Namespace) -> int:
    from streams.tools.reader import read_topic

    topic = settings.topic_prefix + args.topic
    count = run(
        read_topic(settings.kafka, topic, idle_s=args.idle_s, follow=args.follow)
    )
    print(f"{count} records on {topic}", file=sys.stderr)
    return 0


def _time_flag(flag: str) -> Callable[[str], int]:
    """An argument type for ``flag``: an RFC 3339 time or a date, as epoch milliseconds."""

    def parse(text: str) -> int:
        from streams.core.dlq_plan import parse_time

        try:
            return parse_time(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(
                f"{flag} takes an RFC 3339 time (2026-01-02T03:04:05Z) or a date "
                f"(2026-01-02): {exc}"
            ) from None

    return parse


_since = _time_flag("--since")
_as_of = _time_flag("--as-of")


def _course_id(text: str) -> int:
    if not (text.isascii() and text.isdigit()) or len(text) > 18:
        raise argparse.ArgumentTypeError(f"COURSE_ID must be a decimal id, got {text!r}")
    return int(text)


def _id_flag(flag: str, what: str) -> Callable[[str], int]:
    """An argument type for ``flag``: one eduMe id (1 to 2^53 - 1)."""

    def parse(text: str) -> int:
        if not (text.isascii() and text.isdigit()) or not 1 <= int(text) <= 2**53 - 1:
            raise argparse.ArgumentTypeError(f"{flag} takes {what}, got {text!r}")
        return int(text)

    return parse


_user_id = _id_flag("--user-id", "an eduMe userId")
_team_id = _id_flag("--team-id", "one team id (a positive integer)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="edume-streams",
        description="eduMe webhooks into Kafka: verified ingress, stream processing, links.",
        epilog="Configuration comes from environment variables; see README.md.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    sub.add_parser("dev", help="the whole pipeline on this machine (embedded broker if none)")
    sub.add_parser("ingress", help="the HTTP ingress alone")
    sub.add_parser("worker", help="one stream-processing worker (run several for scale)")
    topics_cmd = sub.add_parser(
        "topics", help="create the topics of the topic catalog, or compare the broker's with it"
    )
    topics_cmd.add_argument(
        "action", choices=["create", "describe"],
        help="create: create the missing ones; describe: compare partitions and configs "
        "(exit 1 on a difference)",
    )
    dlq = sub.add_parser("dlq", help="replay dead letters that the current code accepts")
    dlq_sub = dlq.add_subparsers(dest="action", required=True, metavar="ACTION")
    dlq_replay = dlq_sub.add_parser(
        "replay",
        help="republish dead letters that validate now, each once",
        description="Republish the records of edume.webhooks.dlq and streams.dlq that "
        "validate now to the topics they were meant for, each once (recorded on "
        "edume-streams.dlq.replayed after its copy is acknowledged; a copy republished "
        "again after a crash carries the same edume-event-id, which consumers drop).",
    )
    dlq_replay.add_argument("--dry-run", action="store_true",
                            help="report what would be replayed; write nothing")
    dlq_replay.add_argument(
        "--since", type=_since, metavar="TIME",
        help="only dead letters written at or after TIME: RFC 3339 with an offset "
        "(2026-01-02T03:04:05Z) or a date (2026-01-02, midnight UTC)",
    )
    dlq_replay.add_argument("--source", choices=["webhooks", "streams", "all"], default="all",
                            help="webhooks: edume.webhooks.dlq; streams: streams.dlq; "
                            "all (default): both")
    dlq_replay.add_argument(
        "--idle-s", type=float, default=1.0,
        help="a topic is read to its end when no record came for this many seconds "
        "(default 1)",
    )
    policy = sub.add_parser("policy", help="set, unset or list training policies")
    policy_sub = policy.add_subparsers(dest="action", required=True, metavar="ACTION")
    policy_set = policy_sub.add_parser("set", help="make a course mandatory")
    policy_set.add_argument("course_id", type=_course_id, metavar="COURSE_ID")
    policy_set.add_argument(
        "--groups", metavar="N,N", help="only for these groups (default: every group)"
    )
    policy_set.add_argument(
        "--team-id", type=_team_id, metavar="T",
        help="the team assignment and reminder links put the learner in (default: the "
             "course's only team)")
    policy_unset = policy_sub.add_parser("unset", help="remove a course's policy")
    policy_unset.add_argument("course_id", type=_course_id, metavar="COURSE_ID")
    policy_sub.add_parser("list", help="print every course's policy")
    catalog = sub.add_parser("catalog", help="import courses that predate the webhooks")
    catalog_sub = catalog.add_subparsers(dest="action", required=True, metavar="ACTION")
    catalog_import = catalog_sub.add_parser(
        "import",
        help="publish courses from a JSON-lines file on catalog.imports",
        description="Read JSON lines, one course each (courseId, courseKey, groupId, teamIds, "
        "moduleIds, published, deleted), and publish them on catalog.imports, keyed by "
        "courseId. Every line is checked first: a bad line is reported by its number and "
        "then nothing is published (exit 1). The catalog folds each course as an eduMe "
        "course event stamped importedAt: later eduMe events win over it.",
    )
    catalog_import.add_argument("file", metavar="FILE", help="the JSON-lines file; - reads "
                                "standard input")
    catalog_import.add_argument(
        "--as-of", type=_as_of, metavar="TIME",
        help="importedAt: the time the file describes the courses at (the export's time), "
        "RFC 3339 with an offset or a date; default now. Not in the future",
    )
    catalog_import.add_argument("--dry-run", action="store_true",
                                help="check the file and report; publish nothing")
    forget_cmd = sub.add_parser(
        "forget", help="erase a learner: their state, links and evidence on every worker")
    who = forget_cmd.add_mutually_exclusive_group(required=True)
    who.add_argument("--user-id", metavar="N", help="the learner's eduMe userId")
    who.add_argument("--external-user-id", metavar="X", help="the learner's external user id")
    forget_cmd.add_argument("--timeout", type=float, default=120.0, metavar="SECONDS",
                            help="how long to wait for the workers (default 120)")
    evidence = sub.add_parser(
        "evidence", help="a learner's course completions with their proof, checked again")
    evidence.add_argument("--user-id", type=_user_id, required=True, metavar="N")
    evidence.add_argument("--course-id", type=_course_id, metavar="C")
    evidence.add_argument("--csv", metavar="FILE", help="also write the proofs as CSV")
    send = sub.add_parser("send", help="sign JSON webhook files and POST them to the ingress")
    send.add_argument("files", nargs="+", metavar="FILE")
    send.add_argument("--url", help="ingress URL (default from INGRESS_HOST/INGRESS_PORT)")
    send.add_argument(
        "--raw",
        action="store_true",
        help="send the file's bytes unchanged, signed over those bytes",
    )
    link = sub.add_parser("link", help="print one signed seamless link")
    link.add_argument(
        "kind", metavar="KIND", help="course, module, lesson, survey, guide, hub or knowledge-hub"
    )
    link.add_argument("content_id", nargs="?", metavar="CONTENT_ID")
    link.add_argument("--team-id", help="team id, or several comma-separated")
    link.add_argument("--user", required=True, metavar="EXT_ID", help="your user id")
    ask = sub.add_parser("request-link",
                         help="publish one link request on links.requests (as an app does)")
    ask.add_argument("kind", metavar="KIND", help="course, module, lesson, survey, guide, hub "
                     "or knowledge-hub")
    ask.add_argument("content_id", nargs="?", metavar="CONTENT_ID")
    ask.add_argument("--team-id", help="team id, or several comma-separated (course links: "
                     "default every team of the course)")
    ask.add_argument("--user", required=True, metavar="EXT_ID", help="your user id")
    ask.add_argument("--reason", default="edume-streams request-link",
                     help="free text carried with the request")
    read = sub.add_parser("read", help="print a topic's records from the beginning")
    read.add_argument("topic", metavar="TOPIC", help="contract name; TOPIC_PREFIX is added")
    read.add_argument("--follow", action="store_true", help="keep printing new records")
    read.add_argument(
        "--idle-s",
        type=float,
        default=2.0,
        help="stop after this many seconds without a record (default 2)",
    )
    schemas = sub.add_parser("schemas", help="write JSON Schemas and an AsyncAPI document")
    schemas.add_argument("out_dir", metavar="OUT_DIR")
    return parser


COMMANDS = {
    "dev": cmd_dev,
    "ingress": cmd_ingress,
    "worker": cmd_worker,
    "topics": cmd_topics,
    "dlq": cmd_dlq,
    "policy": cmd_policy,
    "catalog": cmd_catalog,
    "forget": cmd_forget,
    "evidence": cmd_evidence,
    "send": cmd_send,
    "link": cmd_link,
    "request-link": cmd_request_link,
    "schemas": cmd_schemas,
    "read": cmd_read,
}


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = Settings.from_env()
        _setup_logging(settings)
        return COMMANDS[args.command](settings, args)
    except EdumeStreamsError as exc:
        print(f"edume-streams {args.command}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
