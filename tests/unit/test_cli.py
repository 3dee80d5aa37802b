"""The commands that need no broker: link, schemas, and their refusals."""

from __future__ import annotations

import hashlib
import hmac
import json
from pathlib import Path

import pytest

from streams.tools.cli import main


def test_link_prints_a_url_signed_over_everything_before_sig(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("EDUME_LINK_SECRET", "link-secret")
    argv = ["link", "course", "22299", "--team-id", "55526,55527", "--user", "jane doe/1"]
    assert main(argv) == 0
    url = capsys.readouterr().out.strip()
    unsigned, sig = url.rsplit("&sig=", 1)
    assert unsigned == "https://learn.edume.com/e/c/22299?g=55526,55527&e=jane%20doe%2F1"
    assert sig == hmac.new(b"link-secret", unsigned.encode(), hashlib.sha256).hexdigest()


def test_link_refuses_without_its_secret(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("EDUME_LINK_SECRET", raising=False)
    assert main(["link", "hub", "--team-id", "5", "--user", "abc"]) == 2
    assert "EDUME_LINK_SECRET" in capsys.readouterr().err


def test_link_reports_bad_input_as_an_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("EDUME_LINK_SECRET", "link-secret")
    assert main(["link", "course", "--team-id", "5", "--user", "abc"]) == 2
    assert "course" in capsys.readouterr().err


def test_schemas_writes_a_schema_per_topic_and_an_asyncapi_document(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["schemas", str(tmp_path)]) == 0
    names = sorted(p.name for p in tmp_path.iterdir())
    contract = ["catalog.imports", "edume.course.events", "edume.learner.events",
                "edume.webhooks.dlq", "links.issue", "links.issued", "links.rejected",
                "links.requests", "privacy.erasures", "streams.dlq", "training.evidence",
                "training.mandatory.completed", "training.policies"]
    assert names == ["asyncapi.json", *(f"{n}.schema.json" for n in contract)]
    learner = json.loads((tmp_path / "edume.learner.events.schema.json").read_text())
    assert learner["$schema"].endswith("2020-12/schema")
    doc = json.loads((tmp_path / "asyncapi.json").read_text())
    assert doc["asyncapi"].startswith("3.")
    assert {c["address"] for c in doc["channels"].values()} == set(contract)
    assert len(capsys.readouterr().out.splitlines()) == len(contract) + 1


def test_link_refuses_a_team_id_that_is_not_a_number(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("EDUME_LINK_SECRET", "link-secret")
    assert main(["link", "course", "1", "--team-id", "5,x", "--user", "abc"]) == 2
    assert "--team-id takes team ids" in capsys.readouterr().err
