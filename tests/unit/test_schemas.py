"""Tests of the eduMe webhook models against the document's samples and a hand-written manifest."""

from __future__ import annotations

import ast
import copy
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

import schemas
from schemas import (
    CANONICAL_COMPLETION_TYPE,
    COMPLETION_TYPES,
    EVENT_MODELS,
    KNOWN_TYPES,
    MODEL_BY_TYPE,
    WEBHOOK_ADAPTER,
    LearnerCourseCompleted,
    canonical_type,
    course_event_json_schema,
    learner_event_json_schema,
    webhook_json_schema,
)
from schemas.common import MAX_ID
from schemas.course import TeamAssignedPayload, TeamRemovedPayload, TitleChangedPayload
from schemas.learner import (
    AssessmentActivity,
    CourseActivity,
    InCourseSurveyActivity,
    LearnerPayload,
    LessonActivity,
    StandaloneSurveyActivity,
)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "webhooks"
MANIFEST: list[dict[str, Any]] = json.loads((FIXTURES / "manifest.json").read_text())
BY_FILE = {entry["file"]: entry for entry in MANIFEST}

COURSE_TYPES = {
    "course.added",
    "course.deleted",
    "course.published",
    "course.unpublished",
    "course.updated",
}
LEARNER_TYPES = {
    "learner.added",
    "learner.activated",
    "learner.activity.started",
    "learner.activity.finished",
}
SPELLINGS = ("learner.course.completed", "course.completed", "course.complete")

Path_ = tuple[str | int, ...]


def load(name: str) -> dict[str, Any]:
    """A fixture as the ingress sees it: parsed by orjson."""
    doc: dict[str, Any] = orjson.loads((FIXTURES / name).read_bytes())
    return doc


def validate(doc: object) -> Any:
    return WEBHOOK_ADAPTER.validate_python(doc)


def get_in(doc: Any, path: Path_) -> Any:
    for part in path:
        doc = doc[part]
    return doc


def set_in(doc: Any, path: Path_, value: Any) -> None:
    get_in(doc, path[:-1])[path[-1]] = value


def del_in(doc: Any, path: Path_) -> None:
    del get_in(doc, path[:-1])[path[-1]]


def all_dicts(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from all_dicts(value)
    elif isinstance(node, list):
        for item in node:
            yield from all_dicts(item)


def routing_path(entry: dict[str, Any]) -> Path_:
    """Where the manifest's key lives, per the contract (written from the doc, not the code)."""
    if entry["canonical_type"] == "learner.course.completed":
        return ("payload", "user", "id")
    if entry["family"] == "learner":
        return ("payload", "user", "userId")
    return ("payload", "course", "courseId")


# --- every sample ---------------------------------------------------------------------------


def test_manifest_lists_every_fixture_once() -> None:
    on_disk = {p.name for p in FIXTURES.glob("*.json")} - {"manifest.json"}
    assert sorted(BY_FILE) == sorted(on_disk)
    assert len(MANIFEST) == len(BY_FILE) == 18  # the document has 18 "Sample payload" blocks


def test_fixtures_are_pretty_printed_with_two_spaces() -> None:
    for name in BY_FILE:
        text = (FIXTURES / name).read_text()
        assert text.startswith('{\n  "type": '), name
        assert text == json.dumps(json.loads(text), indent=2, ensure_ascii=False) + "\n", name


@pytest.mark.parametrize("entry", MANIFEST, ids=lambda e: e["file"])
def test_fixture_validates_to_manifest(entry: dict[str, Any]) -> None:
    doc = load(entry["file"])
    assert doc["type"] == entry["type"]
    assert canonical_type(doc.get("type")) == entry["canonical_type"]
    event = validate(doc)
    assert event.CANONICAL_TYPE == entry["canonical_type"]
    assert type(event).CANONICAL_TYPE == entry["canonical_type"]
    assert event.FAMILY == entry["family"]
    assert isinstance(event.routing_id, int)
    assert str(event.routing_id) == entry["key"]
    assert str(get_in(doc, routing_path(entry))) == entry["key"]
    assert getattr(event.payload, "type", None) == entry["payload_type"]
    assert event.type == entry["type"]
    assert event.timestamp == doc["timestamp"]


@pytest.mark.parametrize("entry", MANIFEST, ids=lambda e: e["file"])
def test_fixture_validates_from_json_bytes_too(entry: dict[str, Any]) -> None:
    raw = (FIXTURES / entry["file"]).read_bytes()
    event = WEBHOOK_ADAPTER.validate_json(raw)
    assert str(event.routing_id) == entry["key"]


BRANCHES = {
    "course.updated.title.changed.json": TitleChangedPayload,
    "course.updated.team.assigned.json": TeamAssignedPayload,
    "course.updated.team.removed.json": TeamRemovedPayload,
    "learner.added.json": LearnerPayload,
    "learner.activated.json": LearnerPayload,
    "learner.activity.started.course.json": CourseActivity,
    "learner.activity.started.lesson.json": LessonActivity,
    "learner.activity.started.assessment.json": AssessmentActivity,
    "learner.activity.finished.course.json": CourseActivity,
    "learner.activity.finished.lesson.json": LessonActivity,
    "learner.activity.finished.assessment.json": AssessmentActivity,
    "learner.activity.finished.survey.in-course.json": InCourseSurveyActivity,
    "learner.activity.finished.survey.standalone.json": StandaloneSurveyActivity,
}


@pytest.mark.parametrize(("name", "payload_class"), sorted(BRANCHES.items()))
def test_every_payload_discriminator_branch(name: str, payload_class: type) -> None:
    assert type(validate(load(name)).payload) is payload_class


def test_every_top_level_model_is_reached_by_a_fixture() -> None:
    reached = {type(validate(load(name))) for name in BY_FILE}
    assert reached == set(EVENT_MODELS)


def test_survey_split_keeps_module_and_course() -> None:
    event = validate(load("learner.activity.finished.survey.in-course.json"))
    assert (event.payload.course.courseId, event.payload.module.moduleId) == (9961, 10658)
    assert (event.payload.survey.surveyId, event.payload.survey.type) == (2159, "multipleChoice")
    standalone = validate(load("learner.activity.finished.survey.standalone.json"))
    assert not hasattr(standalone.payload, "course")
    assert standalone.payload.survey.status == "completed"


@pytest.mark.parametrize("missing", ["course", "module"])
def test_survey_with_only_one_of_course_and_module_is_a_mismatch(missing: str) -> None:
    doc = load("learner.activity.finished.survey.in-course.json")
    del doc["payload"][missing]
    with pytest.raises(ValidationError) as info:
        validate(doc)
    assert any(err["type"] == "missing" for err in info.value.errors())


def test_survey_in_started_is_a_mismatch() -> None:
    doc = load("learner.activity.finished.survey.standalone.json")
    doc["type"] = "learner.activity.started"
    with pytest.raises(ValidationError):
        validate(doc)


# --- the completion's three spellings ----------------------------------------------------


@pytest.mark.parametrize("spelling", SPELLINGS)
def test_completion_reading_all_three_spellings_are_canonicalised_to_learner_course_completed(
    spelling: str,
) -> None:
    """The reading chosen: course.complete, course.completed and learner.course.completed are
    one event, whose canonical name is learner.course.completed, keyed by payload.user.id."""
    doc = load("course.completed.json")
    doc["type"] = spelling
    event = validate(doc)
    assert isinstance(event, LearnerCourseCompleted)
    assert event.type == spelling  # the received spelling is kept as received
    assert event.CANONICAL_TYPE == CANONICAL_COMPLETION_TYPE == "learner.course.completed"
    assert canonical_type(spelling) == "learner.course.completed"
    assert event.FAMILY == "learner"
    assert event.routing_id == 5398399


def test_completion_constants() -> None:
    assert frozenset(SPELLINGS) == COMPLETION_TYPES
    assert KNOWN_TYPES == COURSE_TYPES | LEARNER_TYPES | COMPLETION_TYPES
    assert set(MODEL_BY_TYPE) == KNOWN_TYPES


def test_completion_reads_downstream_fields() -> None:
    event = validate(load("course.completed.json"))
    payload = event.payload
    assert (payload.course.id, payload.course.courseKey) == (17167, "webhook4798")
    assert payload.completion.courseCompletionDate == "2021-05-18T10:39:02.187Z"
    assert payload.completion.overallLessonScore == 50
    assert [s.score for s in payload.completion.scoresBreakdown] == [None, 66.67, 50]
    assert payload.user.employeeId == "IDOptionallyProvidedByClient123"
    assert payload.user.identifiers[0].key == "fountain.applicantId"
    assert payload.parentGroup is not None and payload.parentGroup.id == 8884


def test_completion_tolerates_missing_optional_parts_and_any_values() -> None:
    doc = load("course.completed.json")
    for key in ("parentGroup",):
        del doc["payload"][key]
    for key in ("scoresBreakdown", "overallAssessmentScore", "courseStartDate"):
        del doc["payload"]["completion"][key]
    del doc["payload"]["user"]["identifiers"]
    doc["payload"]["user"]["phone"] = {"any": ["value"]}  # documented as `any`
    doc["payload"]["course"]["learnersCount"] = 12
    assert validate(doc).routing_id == 5398399


# --- tolerance of unknown fields ---------------------------------------------------------


@pytest.mark.parametrize("entry", MANIFEST, ids=lambda e: e["file"])
def test_unknown_fields_are_tolerated_at_every_level(entry: dict[str, Any]) -> None:
    doc = load(entry["file"])
    for i, node in enumerate(list(all_dicts(doc))):
        node[f"zzUnknown{i}"] = {"nested": [1, "x", None]}
    event = validate(doc)
    assert str(event.routing_id) == entry["key"]
    assert event.CANONICAL_TYPE == entry["canonical_type"]


def test_future_version_is_accepted() -> None:
    doc = load("course.added.json")
    doc["payload"]["version"] = 2
    assert validate(doc).payload.version == 2


def test_new_survey_type_and_status_are_accepted() -> None:
    doc = load("learner.activity.finished.survey.standalone.json")
    doc["payload"]["survey"].update(type="starRating", status="skipped")
    assert validate(doc).payload.survey.type == "starRating"


@pytest.mark.parametrize(
    "identifier",
    [
        {"id": 1, "key": "hris.id", "value": "A1", "createdAt": "2022-02-24T13:11:48.642Z"},
        {"key": "hris.id", "value": "A1"},
    ],
)
def test_learner_identifiers_with_and_without_id(identifier: dict[str, Any]) -> None:
    doc = load("learner.added.json")
    doc["payload"]["user"]["identifiers"] = [identifier]
    assert validate(doc).payload.user.identifiers[0].value == "A1"


# --- required fields ---------------------------------------------------------------------

COURSE_REQUIRED: list[Path_] = [
    ("type",),
    ("payload",),
    ("timestamp",),
    ("payload", "group"),
    ("payload", "group", "groupId"),
    ("payload", "teams"),
    ("payload", "teams", 0, "teamId"),
    ("payload", "course"),
    ("payload", "course", "courseId"),
    ("payload", "course", "courseKey"),
    ("payload", "modules"),
    ("payload", "modules", 0, "moduleId"),
    ("payload", "version"),
]
LEARNER_REQUIRED: list[Path_] = [
    ("type",),
    ("payload",),
    ("timestamp",),
    ("payload", "user"),
    ("payload", "user", "userId"),
    ("payload", "user", "eId"),
    ("payload", "user", "identifiers"),
    ("payload", "group"),
    ("payload", "group", "groupId"),
    ("payload", "version"),
]
EXTRA_REQUIRED: dict[str, list[Path_]] = {
    "course.updated.title.changed.json": [("payload", "type")],
    "course.updated.team.assigned.json": [("payload", "type")],
    "course.updated.team.removed.json": [("payload", "type")],
    "learner.added.json": [("payload", "courses"), ("payload", "courses", 0, "courseId")],
    "learner.activated.json": [("payload", "courses"), ("payload", "courses", 2, "courseId")],
    "learner.activity.started.course.json": [
        ("payload", "type"),
        ("payload", "course"),
        ("payload", "course", "courseId"),
    ],
    "learner.activity.started.lesson.json": [
        ("payload", "type"),
        ("payload", "course"),
        ("payload", "module"),
        ("payload", "module", "moduleId"),
        ("payload", "lesson"),
        ("payload", "lesson", "lessonId"),
    ],
    "learner.activity.started.assessment.json": [
        ("payload", "type"),
        ("payload", "course"),
        ("payload", "module"),
        ("payload", "assessment"),
        ("payload", "assessment", "assessmentId"),
    ],
    "learner.activity.finished.course.json": [("payload", "type"), ("payload", "course")],
    "learner.activity.finished.lesson.json": [
        ("payload", "type"),
        ("payload", "course", "courseId"),
        ("payload", "lesson"),
    ],
    "learner.activity.finished.assessment.json": [
        ("payload", "type"),
        ("payload", "module"),
        ("payload", "assessment"),
    ],
    "learner.activity.finished.survey.in-course.json": [
        ("payload", "type"),
        ("payload", "course"),
        ("payload", "module"),
        ("payload", "module", "moduleId"),
        ("payload", "survey"),
        ("payload", "survey", "surveyId"),
        ("payload", "survey", "type"),
        ("payload", "survey", "status"),
    ],
    "learner.activity.finished.survey.standalone.json": [
        ("payload", "type"),
        ("payload", "survey"),
        ("payload", "survey", "surveyId"),
    ],
}
COMPLETION_REQUIRED: list[Path_] = [
    ("type",),
    ("payload",),
    ("timestamp",),
    ("payload", "user"),
    ("payload", "user", "id"),
    ("payload", "course"),
    ("payload", "course", "id"),
    ("payload", "course", "courseKey"),
    ("payload", "completion"),
    ("payload", "completion", "courseCompletionDate"),
    ("payload", "parentGroup", "id"),  # optional group, but a present one must have its id
    ("payload", "completion", "scoresBreakdown", 1, "id"),
    ("payload", "user", "identifiers", 0, "key"),
]


def required_cases() -> Iterator[tuple[str, Path_]]:
    for entry in MANIFEST:
        name = entry["file"]
        if entry["canonical_type"] == CANONICAL_COMPLETION_TYPE:
            paths = COMPLETION_REQUIRED
        elif entry["family"] == "course":
            paths = COURSE_REQUIRED
        else:
            paths = LEARNER_REQUIRED
        for path in [*paths, *EXTRA_REQUIRED.get(name, [])]:
            yield name, path


@pytest.mark.parametrize(("name", "path"), list(required_cases()), ids=str)
def test_removing_a_required_field_is_a_mismatch(name: str, path: Path_) -> None:
    doc = load(name)
    del_in(doc, path)
    with pytest.raises(ValidationError):
        validate(doc)


# --- wrong types -------------------------------------------------------------------------

BAD_IDS: list[Any] = ["22299", True, False, 1.5, 1.0, None, [1], {"id": 1},
                     0, -1, 2**53, 2**53 + 1, 2**64]


@pytest.mark.parametrize("bad", BAD_IDS, ids=repr)
@pytest.mark.parametrize("entry", MANIFEST, ids=lambda e: e["file"])
def test_routing_id_of_wrong_type_is_a_mismatch(entry: dict[str, Any], bad: Any) -> None:
    doc = load(entry["file"])
    set_in(doc, routing_path(entry), bad)
    with pytest.raises(ValidationError):
        validate(doc)


WRONG_TYPES: list[tuple[str, Path_, Any]] = [
    ("course.added.json", ("payload", "group", "groupId"), "12779"),
    ("course.added.json", ("payload", "teams", 0, "teamId"), True),
    ("course.added.json", ("payload", "modules", 0, "moduleId"), 1.5),
    ("course.added.json", ("payload", "teams"), {"teamId": 1}),
    ("course.added.json", ("payload", "teams"), [55526]),
    ("course.added.json", ("payload", "course", "courseKey"), 7506),
    ("course.added.json", ("payload", "version"), "1"),
    ("course.added.json", ("payload", "version"), True),
    ("course.added.json", ("payload", "version"), 0),
    ("course.added.json", ("timestamp",), 1657713834530),
    ("course.added.json", ("timestamp",), None),
    ("course.added.json", ("payload",), []),
    ("course.added.json", ("type",), "course.created"),
    ("course.added.json", ("type",), "COURSE.ADDED"),
    ("course.added.json", ("type",), None),
    ("course.updated.team.assigned.json", ("payload", "type"), "description.changed"),
    ("learner.added.json", ("payload", "courses", 1, "courseId"), "2045"),
    ("learner.added.json", ("payload", "user", "eId"), 1),
    ("learner.activity.started.lesson.json", ("payload", "lesson", "lessonId"), 2.5),
    ("learner.activity.started.lesson.json", ("payload", "type"), "survey"),
    ("learner.activity.finished.lesson.json", ("payload", "type"), "Lesson"),
    ("learner.activity.finished.survey.in-course.json", ("payload", "module"), None),
    ("learner.activity.finished.survey.in-course.json", ("payload", "survey", "surveyId"), "1"),
    ("learner.activity.finished.survey.standalone.json", ("payload", "survey", "type"), 3),
    ("learner.activity.finished.survey.standalone.json", ("payload",), "survey"),
    ("course.completed.json", ("payload", "course", "id"), "17167"),
    ("course.completed.json", ("payload", "completion", "overallLessonScore"), "50"),
    ("course.completed.json", ("payload", "completion", "scoresBreakdown", 2, "score"), True),
    ("course.completed.json", ("payload", "parentGroup", "id"), 8884.5),
]


@pytest.mark.parametrize(("name", "path", "bad"), WRONG_TYPES, ids=str)
def test_wrong_types_are_mismatches(name: str, path: Path_, bad: Any) -> None:
    doc = load(name)
    set_in(doc, path, bad)
    with pytest.raises(ValidationError):
        validate(doc)


@pytest.mark.parametrize("doc", [None, [], "course.added", 1, {}, {"type": "course.added"}])
def test_non_webhook_inputs_are_mismatches(doc: object) -> None:
    with pytest.raises(ValidationError):
        validate(doc)


# --- canonical_type ----------------------------------------------------------------------


@pytest.mark.parametrize("received", sorted(KNOWN_TYPES))
def test_canonical_type_of_known_types(received: str) -> None:
    expected = CANONICAL_COMPLETION_TYPE if received in COMPLETION_TYPES else received
    assert canonical_type(received) == expected
    assert MODEL_BY_TYPE[received].CANONICAL_TYPE == expected


@pytest.mark.parametrize(
    "received",
    [
        "course.created",
        "",
        "Learner.activity.finished",
        "learner.activity",
        " course.added",
        None,
        1,
        True,
        b"course.added",
        ["course.added"],
        {"type": "course.added"},
    ],
    ids=repr,
)
def test_canonical_type_of_unknown_or_non_str_is_none(received: object) -> None:
    assert canonical_type(received) is None


def test_every_model_declares_family_and_canonical_type() -> None:
    for model in EVENT_MODELS:
        expected = "course" if model.CANONICAL_TYPE.startswith("course.") else "learner"
        assert model.FAMILY == expected, model
        assert model.CANONICAL_TYPE in KNOWN_TYPES


# --- property: course events round-trip their ids ----------------------------------------

ids = st.integers(min_value=1, max_value=MAX_ID)


@settings(max_examples=200, deadline=None, database=None)
@given(
    course_type=st.sampled_from(
        [
            ("course.added", None),
            ("course.deleted", None),
            ("course.published", None),
            ("course.unpublished", None),
            ("course.updated", "title.changed"),
            ("course.updated", "team.assigned"),
            ("course.updated", "team.removed"),
        ]
    ),
    group_id=ids,
    course_id=ids,
    course_key=st.text(max_size=40),
    team_ids=st.lists(ids, max_size=8),
    module_ids=st.lists(ids, max_size=8),
    version=st.integers(min_value=1, max_value=10),
)
def test_course_event_round_trips_ids(
    course_type: tuple[str, str | None],
    group_id: int,
    course_id: int,
    course_key: str,
    team_ids: list[int],
    module_ids: list[int],
    version: int,
) -> None:
    top_type, payload_type = course_type
    payload: dict[str, Any] = {} if payload_type is None else {"type": payload_type}
    payload |= {
        "group": {"groupId": group_id},
        "teams": [{"teamId": t} for t in team_ids],
        "course": {"courseId": course_id, "courseKey": course_key},
        "modules": [{"moduleId": m} for m in module_ids],
        "version": version,
    }
    doc = {"type": top_type, "payload": payload, "timestamp": "2022-07-13T12:03:54.530Z"}
    events: list[Any] = [validate(doc), WEBHOOK_ADAPTER.validate_json(orjson.dumps(doc))]
    for event in events:
        assert event.FAMILY == "course"
        assert event.CANONICAL_TYPE == top_type
        assert event.routing_id == course_id
        assert event.payload.group.groupId == group_id
        assert event.payload.course.courseKey == course_key
        assert [t.teamId for t in event.payload.teams] == team_ids
        assert [m.moduleId for m in event.payload.modules] == module_ids
        assert event.payload.version == version
        assert getattr(event.payload, "type", None) == payload_type


@settings(max_examples=100, deadline=None, database=None)
@given(
    user_id=ids,
    survey_id=ids,
    in_course=st.booleans(),
    extra=st.dictionaries(
        st.text(min_size=1, max_size=8).filter(lambda k: k not in {"course", "module"}),
        st.integers() | st.text() | st.none(),
        max_size=3,
    ),
)
def test_survey_events_route_by_user_and_split_on_course(
    user_id: int, survey_id: int, in_course: bool, extra: dict[str, Any]
) -> None:
    doc = load("learner.activity.finished.survey.in-course.json")
    payload = doc["payload"]
    payload["user"]["userId"] = user_id
    payload["survey"]["surveyId"] = survey_id
    if not in_course:
        del payload["course"], payload["module"]
    payload |= {k: v for k, v in extra.items() if k not in payload}
    event = validate(doc)
    assert event.routing_id == user_id
    assert event.payload.survey.surveyId == survey_id
    expected = InCourseSurveyActivity if in_course else StandaloneSurveyActivity
    assert type(event.payload) is expected


# --- JSON Schema -------------------------------------------------------------------------


def refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield value
            else:
                yield from refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from refs(item)


def mappings(node: Any) -> Iterator[dict[str, Any]]:
    for d in all_dicts(node):
        disc = d.get("discriminator")
        if isinstance(disc, dict) and "mapping" in disc:
            yield disc["mapping"]


@pytest.mark.parametrize(
    ("make", "types"),
    [
        (webhook_json_schema, KNOWN_TYPES),
        (course_event_json_schema, COURSE_TYPES),
        (learner_event_json_schema, LEARNER_TYPES | COMPLETION_TYPES),
    ],
    ids=["all", "course", "learner"],
)
def test_json_schema_structure(make: Any, types: set[str]) -> None:
    schema = make()
    orjson.dumps(schema)  # serialisable
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["title"] and schema["description"]
    defs = schema["$defs"]
    assert schema["discriminator"]["propertyName"] == "type"
    assert set(schema["discriminator"]["mapping"]) == set(types)
    union = schema.get("oneOf") or schema.get("anyOf")
    assert union and all("$ref" in choice for choice in union)
    for ref in refs(schema):
        assert ref.startswith("#/$defs/") and ref.removeprefix("#/$defs/") in defs, ref
    for mapping in mappings(schema):  # OpenAPI/AsyncAPI: mapping targets are refs
        assert all(isinstance(v, str) and v.startswith("#/$defs/") for v in mapping.values())
    for name in types:
        model = MODEL_BY_TYPE[name].__name__
        assert schema["discriminator"]["mapping"][name] == f"#/$defs/{model}"
        assert set(defs[model]["required"]) >= {"type", "payload", "timestamp"}


def test_json_schema_nested_discriminators() -> None:
    defs = webhook_json_schema()["$defs"]
    updated = defs["CourseUpdated"]["properties"]["payload"]["discriminator"]
    assert set(updated["mapping"]) == {"title.changed", "team.assigned", "team.removed"}
    finished = defs["LearnerActivityFinished"]["properties"]["payload"]["discriminator"]
    assert set(finished["mapping"]) == {"course", "lesson", "assessment", "survey"}
    started = defs["LearnerActivityStarted"]["properties"]["payload"]["discriminator"]
    assert set(started["mapping"]) == {"course", "lesson", "assessment"}
    survey = defs[finished["mapping"]["survey"].removeprefix("#/$defs/")]
    assert {c["$ref"] for c in survey["oneOf"]} == {
        "#/$defs/InCourseSurveyActivity",
        "#/$defs/StandaloneSurveyActivity",
    }
    assert set(defs["InCourseSurveyActivity"]["required"]) >= {"course", "module", "survey"}
    assert defs["StandaloneSurveyActivity"]["not"] == {
        "anyOf": [{"required": ["course"]}, {"required": ["module"]}]
    }
    assert defs["CourseInfo"]["properties"]["courseId"]["type"] == "integer"
    completion_type = defs["LearnerCourseCompleted"]["properties"]["type"]
    assert set(completion_type["enum"]) == set(SPELLINGS)


def test_json_schemas_are_fresh_copies() -> None:
    first = webhook_json_schema()
    first["$defs"].clear()
    assert webhook_json_schema()["$defs"]


# --- layering ----------------------------------------------------------------------------


def test_schemas_package_imports_nothing_from_streams() -> None:
    package = Path(schemas.__file__).parent
    for source in package.glob("*.py"):
        tree = ast.parse(source.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            else:
                continue
            assert not any(n == "streams" or n.startswith("streams.") for n in names), source


def test_validation_does_not_mutate_the_input() -> None:
    doc = load("course.completed.json")
    before = copy.deepcopy(doc)
    validate(doc)
    assert doc == before
