"""The deploy files (deploy/Dockerfile, .dockerignore, deploy/compose.yaml, deploy/nginx.conf,
deploy/k8s) checked against the code they deploy.

Every expectation comes from the program: the topic catalog (``streams.core.topics.CATALOG``),
the environment variables and their defaults (``streams.settings``), the routes the
ingress and the worker serve (their OpenAPI documents), the command line
(``streams.tools.cli.build_parser``), the console script (pyproject.toml), and who reads and
writes each topic (``streams.tools.docs_gen.TOPIC_DOCS``) for the Kafka users' ACLs, and which
secrets each component's code reads for the secrets its pods and containers get. The
Kubernetes manifests are rendered with ``kubectl kustomize`` (or ``kustomize``) when one is
installed; without it the base is read file by file and the overlay checks are skipped.
"""

from __future__ import annotations

import functools
import json
import re
import shlex
import shutil
import subprocess
import tempfile
import tomllib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from streams.core.topics import (
    CATALOG,
    COPARTITIONED,
    EVENT_TOPIC_BY_FAMILY,
    TRAINING_POLICIES,
    WEBHOOKS_DLQ,
    prefixed,
)
from streams.ingress.openapi import ALLOWED_METHODS
from streams.settings import ENV_VARS, Settings
from streams.settings import SECRET_VARS as SETTINGS_SECRET_VARS
from streams.tools import k8s_topics
from streams.tools.cli import build_parser
from streams.tools.docs_gen import TOPIC_DOCS
from streams.worker.app import APP_NAME
from streams.worker.openapi import worker_openapi_document

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
DOCKERFILE = DEPLOY / "Dockerfile"
COMPOSE = DEPLOY / "compose.yaml"
K8S_BASE = DEPLOY / "k8s" / "base"
K8S_OVERLAY = DEPLOY / "k8s" / "overlays" / "example"
COMPOSE_SCHEMA = REPO / "tests" / "fixtures" / "compose-spec" / "compose-spec.json"
OPERATIONS_DOC = REPO / "docs" / "operations.md"
STREAMS = REPO / "streams"

DEFAULTS = Settings()
SECRET_VARS = frozenset(SETTINGS_SECRET_VARS)
"""The secrets: the variables that also have a ``NAME_FILE`` form."""
SECRET_FILE_VARS = frozenset(f"{var}_FILE" for var in SECRET_VARS)
"""``NAME_FILE``: a secret read from the file at that path."""
KAFKA_CLIENT_SECRETS = frozenset(var for var in SECRET_VARS if var.startswith("KAFKA_"))
"""The Kafka clients' passwords (SASL, TLS key)."""
COMPONENT_SECRETS = {
    "ingress": frozenset({"EDUME_WEBHOOK_SECRETS", "EDUME_WEBHOOK_BEARER_TOKENS"}),
    "worker": frozenset({"EDUME_LINK_SECRET", "WORKER_API_TOKENS", "WORKER_LINK_TOKENS"}),
    "topics": frozenset(),
}
"""Per command, the secrets it uses besides the Kafka passwords: what its pod or container
is given, and nothing more (checked against the code below)."""
WITHHELD_SECRETS = {"worker": frozenset({"EDUME_WEBHOOK_SECRETS"})}
"""Secrets a component's code uses when it has them but does without, and is not given:
a worker checks the proofs of ``/learners/{userId}/evidence`` again with the webhook
signing secrets if it has them (``verdict`` null otherwise). Those secrets let whoever holds
them forge webhooks, so they stay with the ingress (deploy/README.md, "Secrets")."""
WORKER_CLIENT_LABEL = ("edume-streams/worker-client", "true")
"""The label of the pods that may call the workers' query API (downstream apps,
Prometheus), as deploy/README.md documents it."""
PYTHON_RUNTIME_VARS = frozenset(
    {"PATH", "PYTHONDONTWRITEBYTECODE", "PYTHONUNBUFFERED", "PIP_NO_CACHE_DIR",
     "PIP_DISABLE_PIP_VERSION_CHECK"}
)
"""Variables the image sets for Python and pip, not for edume-streams."""
COMPILERS = re.compile(
    r"(?<![\w.-])(gcc|g\+\+|clang|build-essential|cc|make|cmake)(-[\d.]+)?(?![\w.-])"
)
INGRESS_GET_PATHS = frozenset(p for p, allow in ALLOWED_METHODS.items() if "GET" in allow)
WORKER_PATHS = frozenset(worker_openapi_document()["paths"])
COMPONENT_PATHS = {"ingress": INGRESS_GET_PATHS, "worker": WORKER_PATHS}


def placeholder(var: str) -> str:
    return f"placeholder-for-{var.lower()}"


def known_var(name: str) -> bool:
    """A variable edume-streams reads: a setting, or a secret's ``_FILE`` form."""
    return name in ENV_VARS or name in SECRET_FILE_VARS


@functools.cache
def stand_in_directory() -> Path:
    """Where the stand-ins for the files of mounted Secrets are written (removed at exit)."""
    directory = tempfile.TemporaryDirectory(prefix="test-deploy-secrets-")
    _KEEP.append(directory)
    return Path(directory.name)


_KEEP: list[tempfile.TemporaryDirectory[str]] = []


def stand_in_file(secret: str, key: str) -> str:
    """A readable file standing in for key ``key`` of Secret ``secret`` as a pod mounts it."""
    path = stand_in_directory() / f"{secret}--{key}"
    if not path.exists():
        path.write_text(placeholder(f"{secret}-{key}") + "\n")
    return str(path)


def listen(settings: Settings, command: str) -> tuple[str, int]:
    """The address the process started by ``command`` listens on."""
    if command == "ingress":
        return settings.ingress_host, settings.ingress_port
    assert command == "worker", command
    return settings.worker_web_host, settings.worker_web_port


# ---- Dockerfile ----------------------------------------------------------------------------


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def values(self, keyword: str) -> list[str]:
        return [value for kw, value in self.instructions if kw == keyword]


@dataclass
class Dockerfile:
    args: dict[str, str]
    stages: list[Stage]

    @property
    def final(self) -> Stage:
        return self.stages[-1]

    def env(self) -> dict[str, str]:
        """The final stage's ENV, as the container starts with it."""
        out: dict[str, str] = {}
        for value in self.final.values("ENV"):
            for token in shlex.split(value):
                name, sep, val = token.partition("=")
                assert sep, f"ENV {value!r}: use NAME=value"
                out[name] = val
        return out

    def exec_form(self, keyword: str) -> list[str]:
        (value,) = self.final.values(keyword)
        parsed = json.loads(value)
        assert isinstance(parsed, list), f"{keyword} must be in exec form"
        return [str(item) for item in parsed]


def logical_lines(text: str) -> Iterator[str]:
    """Instructions with their continuation lines joined, comments dropped."""
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        yield pending + line
        pending = ""
    assert not pending, "the Dockerfile ends in a continuation"


@functools.cache
def dockerfile() -> Dockerfile:
    args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in logical_lines(DOCKERFILE.read_text()):
        keyword, _, value = line.partition(" ")
        keyword, value = keyword.upper(), value.strip()
        if keyword == "ARG" and not stages:
            name, _, default = value.partition("=")
            args[name] = default
        elif keyword == "FROM":
            words = value.split()
            base = re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: args[m[1] or m[2]], words[0])
            alias = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            stages.append(Stage(base, alias))
        else:
            assert stages, f"{keyword} before the first FROM"
            stages[-1].instructions.append((keyword, value))
    return Dockerfile(args, stages)


def healthcheck_command() -> list[str]:
    (value,) = dockerfile().final.values("HEALTHCHECK")
    _options, sep, command = value.partition("CMD ")
    assert sep, "HEALTHCHECK needs a CMD"
    parsed = json.loads(command)
    assert isinstance(parsed, list), "HEALTHCHECK CMD must be in exec form"
    return [str(item) for item in parsed]


def container_only_vars() -> frozenset[str]:
    """Variables of the image that edume-streams does not read: those the HEALTHCHECK
    reads (its port), declared by ENV."""
    code = " ".join(healthcheck_command())
    return frozenset(name for name in dockerfile().env() if name in code) - set(ENV_VARS)


def test_dockerfile_has_a_builder_stage_and_a_slim_final_stage() -> None:
    df = dockerfile()
    assert len(df.stages) >= 2, "multi-stage: a builder and the final image"
    assert "slim" in df.final.base, df.final.base
    assert re.match(r"python:3\.11[.\-]", df.final.base), df.final.base
    builder_names = {stage.name for stage in df.stages[:-1]}
    copies_from = [
        re.search(r"--from=(\S+)", value) for value in df.final.values("COPY")
    ]
    sources = {m[1] for m in copies_from if m}
    assert sources and sources <= builder_names, "the final stage copies from the builder"


def test_builder_installs_the_package_without_extras_into_a_venv() -> None:
    builder = dockerfile().stages[0]
    runs = " ".join(builder.values("RUN"))
    made = re.search(r"python -m venv (\S+)", runs)
    assert made, "the builder makes a virtualenv"
    venv = made[1]
    commands = [c.split() for c in re.findall(r"pip install ([^&;]+)", runs)]
    specs = [word for words in commands for word in words if not word.startswith("-")
             and word != "requirements.lock"]
    assert "." in specs, "pip install . (the package, no extras)"
    assert not any(spec.startswith(".[") for spec in specs), "no extras, no embedded broker"
    for words in commands:  # at the versions the tests passed with
        joined = " ".join(words)
        assert "--constraint requirements.lock" in joined or "-c requirements.lock" in joined
    # The final stage takes that virtualenv and nothing else from the builder.
    for value in dockerfile().final.values("COPY"):
        if "--from=" in value:
            assert value.split()[-2:] == [venv, venv], value
    assert any(f"{venv}/bin" in v for v in dockerfile().final.values("ENV")), "venv on PATH"


def test_the_final_stage_has_no_compiler() -> None:
    for value in dockerfile().final.values("RUN"):
        if "install" in value:
            assert not COMPILERS.search(value), value


def test_the_image_runs_the_console_script_as_a_non_root_user() -> None:
    df = dockerfile()
    keywords = [kw for kw, _ in df.final.instructions]
    assert "USER" in keywords
    assert keywords.index("USER") < keywords.index("ENTRYPOINT")
    (user,) = df.final.values("USER")
    uid = user.split(":")[0]
    assert uid.isdigit() and int(uid) != 0, f"USER {user}: a numeric non-root id"
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert df.exec_form("ENTRYPOINT") == [next(iter(scripts))]
    cmd = df.exec_form("CMD")
    assert build_parser().parse_args(cmd).command == "ingress", cmd


def test_the_image_exposes_the_default_ports() -> None:
    exposed = {int(p.split("/")[0]) for v in dockerfile().final.values("EXPOSE") for p in v.split()}
    assert exposed == {DEFAULTS.ingress_port, DEFAULTS.worker_web_port}


def test_the_image_listens_on_every_interface() -> None:
    env = dockerfile().env()
    settings = Settings.from_env(env)
    for command in COMPONENT_PATHS:
        host, _ = listen(settings, command)
        assert host == "0.0.0.0", f"{command} would listen on {host} in the container"


def test_the_image_environment_names_only_known_variables() -> None:
    env = dockerfile().env()
    extra = container_only_vars()
    unknown = set(env) - set(ENV_VARS) - extra - PYTHON_RUNTIME_VARS
    assert not unknown, f"not read by streams.settings: {sorted(unknown)}"
    assert not set(env) & SECRET_VARS, "no secret in the image"


def test_the_healthcheck_gets_healthz_on_a_port_from_the_environment() -> None:
    command = healthcheck_command()
    code = " ".join(command)
    assert "/healthz" in code
    assert "/healthz" in INGRESS_GET_PATHS and "/healthz" in WORKER_PATHS
    extra = container_only_vars()
    assert len(extra) == 1, f"one health-check port variable, got {sorted(extra)}"
    (var,) = extra
    assert int(dockerfile().env()[var]) == DEFAULTS.ingress_port
    # The command's own fallback, for a container started without the variable.
    fallback = re.search(rf"['\"]{var}['\"],\s*['\"](\d+)['\"]", code)
    assert fallback, f"the health check reads {var} with a default"
    assert int(fallback[1]) == DEFAULTS.ingress_port
    # It runs with the image's own Python (no curl in a slim image).
    assert command[0] in {"python", "python3"} or command[0].endswith("/python")


# ---- .dockerignore --------------------------------------------------------------------------


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    """A .dockerignore pattern (Go filepath.Match plus ``**``) as a regex."""
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out += "(?:.*/)?"
            i += 3
        elif pattern.startswith("**", i):
            out += ".*"
            i += 2
        elif pattern[i] == "*":
            out += "[^/]*"
            i += 1
        elif pattern[i] == "?":
            out += "[^/]"
            i += 1
        elif pattern[i] == "[":
            end = pattern.index("]", i)
            out += pattern[i : end + 1]
            i = end + 1
        else:
            out += re.escape(pattern[i])
            i += 1
    return re.compile(out + r"\Z")


@functools.cache
def dockerignore_rules() -> list[tuple[bool, re.Pattern[str]]]:
    rules = []
    for raw in (REPO / ".dockerignore").read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        pattern = line.lstrip("!").strip().strip("/")
        rules.append((negated, _pattern_regex(pattern)))
    return rules


def excluded_from_context(path: str) -> bool:
    """Docker's rule: the last pattern matching the path or one of its parents decides."""
    parts = path.split("/")
    prefixes = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    verdict = False
    for negated, regex in dockerignore_rules():
        if any(regex.match(prefix) for prefix in prefixes):
            verdict = not negated
    return verdict


def test_the_build_context_holds_what_pip_install_needs() -> None:
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    needed = ["pyproject.toml", pyproject["project"]["readme"]]
    for pattern in pyproject["tool"]["setuptools"]["packages"]["find"]["include"]:
        for package in REPO.glob(pattern.rstrip("*")):
            needed += [str(p.relative_to(REPO)) for p in package.rglob("*.py")
                       if "__pycache__" not in p.parts]
    # Everything the Dockerfile copies from the context, too.
    for stage in dockerfile().stages:
        for value in stage.values("COPY"):
            if "--from=" not in value:
                needed += [s for s in value.split()[:-1] if not s.startswith("--")]
    for path in needed:
        assert (REPO / path).exists(), path
        assert not excluded_from_context(path), f"{path} is left out of the build context"


@pytest.mark.parametrize("path", [
    ".git/HEAD", ".venv/bin/python", ".pytest_cache/v/cache/nodeids", ".mypy_cache/x.json",
    ".hypothesis/examples/x", "tests/unit/test_deploy.py", "bench/results/run.json",
    "deploy/secrets/EDUME_LINK_SECRET", "edume-streams-data/v1/tables",
    "streams/__pycache__/cli.cpython-311.pyc",
])
def test_the_build_context_leaves_out_local_state_and_secrets(path: str) -> None:
    assert excluded_from_context(path)


# ---- Kubernetes -----------------------------------------------------------------------------


def kustomize_command() -> list[str] | None:
    if shutil.which("kubectl"):
        return ["kubectl", "kustomize"]
    if shutil.which("kustomize"):
        return ["kustomize", "build"]
    return None


def _read_base_by_hand() -> list[dict[str, Any]]:
    """The base without kustomize: its resources as written, and the ConfigMap of its
    generator (without the hash suffix, so the references still match)."""
    kustomization = yaml.safe_load((K8S_BASE / "kustomization.yaml").read_text())
    objects: list[dict[str, Any]] = []
    for name in kustomization["resources"]:
        objects += [d for d in yaml.safe_load_all((K8S_BASE / name).read_text()) if d]
    for generator in kustomization.get("configMapGenerator", []):
        data = dict(item.split("=", 1) for item in generator.get("literals", []))
        objects.append({"apiVersion": "v1", "kind": "ConfigMap",
                        "metadata": {"name": generator["name"]}, "data": data})
    return objects


@functools.cache
def rendered(which: str) -> tuple[dict[str, Any], ...]:
    directory = {"base": K8S_BASE, "overlay": K8S_OVERLAY}[which]
    command = kustomize_command()
    if command is None:
        if which == "overlay":
            pytest.skip("neither kubectl nor kustomize is installed: the overlay is not rendered")
        return tuple(_read_base_by_hand())
    result = subprocess.run(
        [*command, str(directory)], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    return tuple(d for d in yaml.safe_load_all(result.stdout) if d)


RENDERINGS = ["base", "overlay"]
STRIMZI_KINDS = frozenset({"KafkaTopic", "KafkaUser"})
"""Strimzi's custom resources: not in the Kubernetes API schemas, checked on their own."""


@dataclass
class K8s:
    objects: tuple[dict[str, Any], ...]

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        return [o for o in self.objects if o["kind"] == kind]

    def one(self, kind: str, name: str) -> dict[str, Any]:
        found = [o for o in self.of_kind(kind) if o["metadata"]["name"] == name]
        assert len(found) == 1, f"{kind}/{name}: {len(found)} found"
        return found[0]

    @property
    def workloads(self) -> list[dict[str, Any]]:
        return self.of_kind("Deployment") + self.of_kind("StatefulSet")

    def configmap(self, name: str) -> dict[str, str]:
        """A ConfigMap by name, or by its generator's name (kustomize adds a hash)."""
        found = [o for o in self.of_kind("ConfigMap")
                 if re.fullmatch(rf"{re.escape(name)}(-[a-z0-9]{{10}})?", o["metadata"]["name"])]
        assert len(found) == 1, f"ConfigMap {name}: {len(found)} found"
        return {str(k): str(v) for k, v in found[0].get("data", {}).items()}

    def container_env(
        self, container: dict[str, Any], pod: dict[str, Any], *, stand_ins: bool = True
    ) -> dict[str, str]:
        """The container's environment as the process sees it: the image's ENV, then
        envFrom, then env (with $(VAR) expanded; downward-API fields and secrets as
        stand-ins). With ``stand_ins``, a path to a file of a mounted Secret becomes the
        path of a readable stand-in file, as the pod would have it."""
        env = dockerfile().env()
        for source in container.get("envFrom", []):
            if "configMapRef" in source:
                env.update(self.configmap(source["configMapRef"]["name"]))
            elif "secretRef" in source:
                env.update({var: placeholder(var) for var in SECRET_VARS})
        for item in container.get("env", []):
            name = item["name"]
            if "value" in item:
                env[name] = re.sub(
                    r"\$\((\w+)\)", lambda m: env.get(m[1], m[0]), str(item["value"])
                )
            elif "secretKeyRef" in item.get("valueFrom", {}):
                env[name] = placeholder(name)
            elif "fieldRef" in item.get("valueFrom", {}):
                path = item["valueFrom"]["fieldRef"]["fieldPath"]
                env[name] = {"metadata.name": f"{pod['metadata']['name']}-0",
                             "metadata.namespace": pod["metadata"].get("namespace", "default")
                             }.get(path, f"field-{path}")
        if stand_ins:
            files = mounted_secret_files(container, pod)
            env = {name: stand_in_file(*files[value]) if value in files else value
                   for name, value in env.items()}
        return env


def k8s(which: str) -> K8s:
    return K8s(rendered(which))


def containers(workload: dict[str, Any]) -> list[dict[str, Any]]:
    spec = workload["spec"]["template"]["spec"]
    return list(spec.get("initContainers", [])) + list(spec["containers"])


def mounted_secret_files(
    container: dict[str, Any], workload: dict[str, Any]
) -> dict[str, tuple[str, str]]:
    """Path in the container → (Secret name, key), for every file of a mounted Secret."""
    volumes = {v["name"]: v for v in workload["spec"]["template"]["spec"].get("volumes", [])}
    out: dict[str, tuple[str, str]] = {}
    for mount in container.get("volumeMounts", []):
        secret = volumes[mount["name"]].get("secret")
        if secret is None:
            continue
        items = secret.get("items")
        assert items, f"volume {mount['name']}: name the Secret's keys it mounts (items)"
        root = mount["mountPath"].rstrip("/")
        for item in items:
            if "subPath" in mount:
                if item["path"] == mount["subPath"]:
                    out[root] = (secret["secretName"], item["key"])
            else:
                out[f"{root}/{item['path']}"] = (secret["secretName"], item["key"])
    return out


def command_of(container: dict[str, Any]) -> str:
    assert "command" not in container, "the image's ENTRYPOINT (edume-streams) runs"
    args = [str(a) for a in container.get("args", dockerfile().exec_form("CMD"))]
    return str(build_parser().parse_args(args).command)


def port_number(container: dict[str, Any], port: int | str) -> int:
    if isinstance(port, int):
        return port
    (number,) = [p["containerPort"] for p in container.get("ports", []) if p.get("name") == port]
    return int(number)


def selects(selector: Mapping[str, str], labels: Mapping[str, str]) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def test_the_base_read_by_hand_is_what_kustomize_renders() -> None:
    """The fallback for machines without kubectl reads the same objects."""
    if kustomize_command() is None:
        pytest.skip("neither kubectl nor kustomize is installed")

    def names(objects: Iterable[dict[str, Any]]) -> set[str]:
        return {f"{o['kind']}/{re.sub(r'-[a-z0-9]{10}$', '', o['metadata']['name'])}"
                for o in objects}

    by_hand = _read_base_by_hand()
    assert names(by_hand) == names(rendered("base"))
    (generated,) = [o for o in by_hand if o["kind"] == "ConfigMap"]
    assert K8s(rendered("base")).configmap(generated["metadata"]["name"]) == generated["data"]


@pytest.mark.parametrize("which", RENDERINGS)
def test_every_catalog_topic_has_exactly_one_kafka_topic(which: str) -> None:
    cluster = k8s(which)
    config = cluster.configmap("edume-streams-config")
    prefix = config.get("TOPIC_PREFIX", DEFAULTS.topic_prefix)
    replicas = int(config["TOPIC_REPLICATION_FACTOR"])
    topics = cluster.of_kind("KafkaTopic")
    by_name: dict[str, dict[str, Any]] = {}
    for topic in topics:
        assert topic["apiVersion"] == "kafka.strimzi.io/v1beta2"
        name = topic["spec"]["topicName"]
        assert name not in by_name, f"two KafkaTopics for {name}"
        by_name[name] = topic
    assert set(by_name) == {prefixed(spec.name, prefix) for spec in CATALOG}
    for spec in CATALOG:
        topic = by_name[prefixed(spec.name, prefix)]
        assert topic["spec"]["partitions"] == spec.partitions, spec.name
        assert topic["spec"]["replicas"] == replicas, spec.name
        configs = {k: str(v) for k, v in topic["spec"]["config"].items()}
        expected = spec.kafka_configs()
        assert configs["cleanup.policy"] == ("compact" if spec.compacted else "delete")
        assert configs.get("retention.ms") == expected.get("retention.ms"), spec.name
        for key, value in expected.items():
            assert configs[key] == value, f"{spec.name}: {key}"
        # acks=all survives one broker down: fewer in-sync replicas needed than there are.
        if replicas > 1:
            assert 1 < int(configs["min.insync.replicas"]) < replicas, spec.name


@pytest.mark.parametrize("which", RENDERINGS)
def test_kafka_topics_are_valid_strimzi_resources(which: str) -> None:
    topics = k8s(which).of_kind("KafkaTopic")
    clusters = {t["metadata"]["labels"]["strimzi.io/cluster"] for t in topics}
    assert len(clusters) == 1, f"one Strimzi cluster for all topics: {clusters}"
    assert len({t["metadata"].get("namespace") for t in topics}) == 1
    for topic in topics:
        name = topic["metadata"]["name"]
        assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", name) and len(name) <= 253, name
        assert set(topic["spec"]) <= {"topicName", "partitions", "replicas", "config"}
        assert isinstance(topic["spec"]["partitions"], int) and topic["spec"]["partitions"] > 0
        assert all(isinstance(v, str | int | bool) for v in topic["spec"]["config"].values())


# ---- Kafka users and their ACLs --------------------------------------------------------------

INGRESS, WORKER = "ingress", "worker"
STRIMZI_ACL_OPERATIONS = frozenset({
    "Read", "Write", "Create", "Delete", "Alter", "Describe", "ClusterAction", "AlterConfigs",
    "DescribeConfigs", "IdempotentWrite", "All",
})
IMPLIED_BY = {"Describe": frozenset({"Read", "Write", "Delete", "Alter"}),
              "DescribeConfigs": frozenset({"AlterConfigs"})}
"""Kafka's implied operations: an ACL for Read, Write, Delete or Alter allows Describe."""

Need = tuple[str, str, str]
"""(resource type as Strimzi names it, resource name, operation)."""


def _component(entry: str) -> str | None:
    """The component a ``TOPIC_DOCS`` producer or consumer entry names, if it is one of the
    two that connect as a KafkaUser."""
    head = entry.split(":", 1)[0].strip().lower()
    if head == "ingress":
        return INGRESS
    if head == "workers" or head.startswith("every worker"):
        return WORKER
    return None


@functools.cache
def topic_use() -> dict[str, dict[str, frozenset[str]]]:
    """Per component, the contract names of the topics it writes and reads, as the table
    of producers and consumers in ``streams.tools.docs_gen`` says."""
    use: dict[str, dict[str, set[str]]] = {c: {"writes": set(), "reads": set()}
                                           for c in (INGRESS, WORKER)}
    for topic, doc in TOPIC_DOCS.items():
        for verb, entries in (("writes", doc.produced_by), ("reads", doc.consumed_by)):
            for entry in entries:
                component = _component(entry)
                if component is not None:
                    use[component][verb].add(topic)
    return {c: {verb: frozenset(names) for verb, names in d.items()} for c, d in use.items()}


@functools.cache
def faust_leader_topic(app_id: str) -> str:
    """The topic Faust's leader assignor declares (creates) and subscribes to at start."""
    import faust

    app = faust.App(app_id, autodiscover=False)
    assert not app.conf.topic_disable_leader
    return str(app._leader_assignor._leader_topic_name)


def kafka_needs(component: str, prefix: str, *, idempotent: bool) -> set[Need]:
    """What the component does on the broker."""
    use = topic_use()[component]
    out: set[Need] = set()
    for verb, operation in (("writes", "Write"), ("reads", "Read")):
        for topic in use[verb]:
            name = prefixed(topic, prefix)
            out |= {("topic", name, operation), ("topic", name, "Describe")}
    if idempotent:  # the librdkafka producers (and Faust's, in the workers)
        out.add(("cluster", "kafka-cluster", "IdempotentWrite"))
    if component == WORKER:
        app_id = f"{prefix}{APP_NAME}"
        out.add(("group", app_id, "Read"))
        # streams.worker.run.prepare_layout: the internal topics are created when missing,
        # then every catalog topic's partition count is read.
        for spec in CATALOG:
            name = prefixed(spec.name, prefix)
            out.add(("topic", name, "Describe"))
            if spec.internal:
                out.add(("topic", name, "Create"))
        leader = faust_leader_topic(app_id)
        out |= {("topic", leader, operation) for operation in ("Create", "Read", "Describe")}
    return out


def _acl_operations(acl: Mapping[str, Any]) -> set[str]:
    return {str(op) for op in acl.get("operations") or [acl["operation"]]}


def _acl_covers(acl: Mapping[str, Any], resource_type: str, name: str) -> bool:
    resource = acl["resource"]
    if resource["type"] != resource_type:
        return False
    if resource_type == "cluster":
        return True
    if resource.get("patternType", "literal") == "prefix":
        return name.startswith(resource["name"])
    return resource["name"] in (name, "*")


def allows(acls: Iterable[Mapping[str, Any]], need: Need) -> bool:
    resource_type, name, operation = need
    wanted = {operation, "All"} | IMPLIED_BY.get(operation, frozenset())
    return any(acl.get("type", "allow") == "allow" and _acl_covers(acl, resource_type, name)
               and _acl_operations(acl) & wanted for acl in acls)


def kafka_users(cluster: K8s) -> dict[str, dict[str, Any]]:
    return {u["metadata"]["name"]: u for u in cluster.of_kind("KafkaUser")}


def test_topic_use_agrees_with_the_code() -> None:
    """The producers and consumers table, read as above, says what the ingress and the
    workers are known to do: a rewording there cannot leave the ACL checks with nothing."""
    use = topic_use()
    # streams/ingress/app.py publishes to the family's event topic or to its DLQ.
    assert use[INGRESS]["writes"] == {*EVENT_TOPIC_BY_FAMILY.values(), WEBHOOKS_DLQ}
    assert not use[INGRESS]["reads"]
    # The workers read every co-partitioned topic (agents' input, re-keying, changelogs).
    copartitioned = {name for group in COPARTITIONED for name in group}
    assert copartitioned | {TRAINING_POLICIES} <= use[WORKER]["reads"]
    internal = {s.name for s in CATALOG if s.internal}
    assert internal & use[WORKER]["writes"], "the workers write their changelogs"


@pytest.mark.parametrize("which", RENDERINGS)
def test_kafka_users_are_valid_strimzi_resources(which: str) -> None:
    cluster = k8s(which)
    users = cluster.of_kind("KafkaUser")
    assert users
    labels = {u["metadata"]["labels"]["strimzi.io/cluster"] for u in users}
    topic_labels = {t["metadata"]["labels"]["strimzi.io/cluster"]
                    for t in cluster.of_kind("KafkaTopic")}
    assert labels == topic_labels, "the users and the topics belong to one Strimzi cluster"
    for user in users:
        name = user["metadata"]["name"]
        assert user["apiVersion"] == "kafka.strimzi.io/v1beta2"
        assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", name), name
        spec = user["spec"]
        assert set(spec) <= {"authentication", "authorization", "quotas", "template"}, name
        assert spec["authentication"] == {"type": "scram-sha-512"}, name
        assert spec["authorization"]["type"] == "simple", name
        for acl in spec["authorization"]["acls"]:
            assert set(acl) <= {"resource", "operations", "host", "type"}, acl
            assert acl.get("type", "allow") == "allow" and acl.get("host", "*") == "*", acl
            operations = acl["operations"]
            assert operations and set(operations) <= STRIMZI_ACL_OPERATIONS - {"All"}, acl
            resource = acl["resource"]
            assert resource["type"] in {"topic", "group", "cluster", "transactionalId"}, acl
            if resource["type"] == "cluster":
                assert set(resource) == {"type"}, acl
            else:
                assert resource.get("patternType", "literal") in {"literal", "prefix"}, acl
                assert resource["name"] and "*" not in resource["name"], acl


@pytest.mark.parametrize("which", RENDERINGS)
def test_each_component_connects_as_its_own_kafka_user(which: str) -> None:
    """SASL_SSL with SCRAM-SHA-512 as the component's KafkaUser, the password from the
    Secret Strimzi writes for that user (a mounted file), the brokers' CA from the Secret
    Strimzi writes for the cluster."""
    cluster = k8s(which)
    users = kafka_users(cluster)
    (strimzi,) = {u["metadata"]["labels"]["strimzi.io/cluster"] for u in users.values()}
    seen: dict[str, str] = {}
    for workload in cluster.workloads:
        for container in containers(workload):
            command = command_of(container)
            env = cluster.container_env(container, workload, stand_ins=False)
            files = mounted_secret_files(container, workload)
            settings = Settings.from_env(cluster.container_env(container, workload))
            assert settings.kafka_security_protocol == "SASL_SSL", command
            assert settings.kafka_sasl_mechanism == "SCRAM-SHA-512", command
            user = users.get(str(settings.kafka_sasl_username))
            assert user is not None, f"{command}: no KafkaUser {settings.kafka_sasl_username}"
            assert user["spec"]["authentication"]["type"] == "scram-sha-512"
            assert "KAFKA_SASL_PASSWORD" not in env, "the password comes from a file"
            assert files.get(env.get("KAFKA_SASL_PASSWORD_FILE", "")) == (
                user["metadata"]["name"], "password"
            ), f"{command}: KAFKA_SASL_PASSWORD_FILE is the KafkaUser's Secret's password"
            assert files.get(env.get("KAFKA_SSL_CA_FILE", "")) == (
                f"{strimzi}-cluster-ca-cert", "ca.crt"
            ), f"{command}: KAFKA_SSL_CA_FILE is the Strimzi cluster's CA certificate"
            seen[command] = user["metadata"]["name"]
    assert set(seen) == set(COMPONENT_PATHS)
    assert len(set(seen.values())) == len(seen), f"one user per component: {seen}"
    assert set(seen.values()) == set(users), "every KafkaUser is some component's"


@pytest.mark.parametrize("which", RENDERINGS)
def test_each_kafka_user_may_do_what_its_component_does_and_no_more(which: str) -> None:
    cluster = k8s(which)
    users = kafka_users(cluster)
    for workload in cluster.workloads:
        for container in containers(workload):
            component = command_of(container)
            settings = Settings.from_env(cluster.container_env(container, workload))
            user = users[str(settings.kafka_sasl_username)]
            name = user["metadata"]["name"]
            acls = user["spec"]["authorization"]["acls"]
            needs = kafka_needs(component, settings.topic_prefix,
                                idempotent=settings.kafka_enable_idempotence)
            missing = sorted(need for need in needs if not allows(acls, need))
            assert not missing, f"{name} ({component}) may not: {missing}"
            for acl in acls:
                for operation in sorted(_acl_operations(acl)):
                    used = any(
                        _acl_covers(acl, resource_type, resource_name)
                        and (needed == operation or operation in IMPLIED_BY.get(needed, ()))
                        for resource_type, resource_name, needed in needs
                    )
                    assert used, f"{name}: {operation} on {acl['resource']} serves nothing"


def documented_acls(prefix: str) -> dict[str, set[tuple[str, str, str, str]]]:
    """The ``kafka-acls.sh ... --add`` commands of docs/operations.md, ``TOPIC_PREFIX`` set
    to ``prefix``: user → {(resource type, name, pattern type, operation)} in Strimzi's
    words."""
    text = OPERATIONS_DOC.read_text(encoding="utf-8")
    out: dict[str, set[tuple[str, str, str, str]]] = {}
    for block in re.findall(r"^```[^\n]*\n(.*?)^```", text, re.MULTILINE | re.DOTALL):
        for line in re.sub(r"\\\n[ \t]*", " ", block).splitlines():
            words = shlex.split(line.replace("${TOPIC_PREFIX}", prefix), comments=True)
            if not words or words[0] != "kafka-acls.sh" or "--add" not in words:
                continue
            principal, operations, pattern = "", [], "literal"
            resources: list[tuple[str, str]] = []
            args = iter(words[1:])
            for word in args:
                if word == "--allow-principal":
                    principal = next(args)
                elif word == "--operation":
                    operations.append(next(args))
                elif word in ("--topic", "--group"):
                    resources.append((word[2:], next(args)))
                elif word == "--cluster":
                    resources.append(("cluster", ""))
                elif word == "--resource-pattern-type":
                    pattern = {"literal": "literal", "prefixed": "prefix"}[next(args)]
                elif word not in ("$ADMIN", "--add"):
                    pytest.fail(f"operations.md: {word!r} in {line.strip()!r}")
            assert principal.startswith("User:") and operations and resources, line
            user = out.setdefault(principal.removeprefix("User:"), set())
            for resource_type, name in resources:
                kind = "literal" if resource_type == "cluster" else pattern
                user |= {(resource_type, name, kind, op) for op in operations}
    return out


def test_the_acls_in_operations_md_are_the_kafka_users_acls() -> None:
    cluster = k8s("base")
    prefix = cluster.configmap("edume-streams-config").get("TOPIC_PREFIX", DEFAULTS.topic_prefix)
    declared: dict[str, set[tuple[str, str, str, str]]] = {}
    for name, user in kafka_users(cluster).items():
        rows = declared.setdefault(name, set())
        for acl in user["spec"]["authorization"]["acls"]:
            resource = acl["resource"]
            kind = ("literal" if resource["type"] == "cluster"
                    else resource.get("patternType", "literal"))
            rows |= {(resource["type"], resource.get("name", ""), kind, op)
                     for op in _acl_operations(acl)}
    assert documented_acls(prefix) == declared


def test_topics_yaml_is_what_the_generator_writes_now() -> None:
    committed = (K8S_BASE / "topics.yaml").read_text()
    assert committed == k8s_topics.render(), (
        "deploy/k8s/base/topics.yaml is stale: run "
        "`python -m streams.tools.k8s_topics > deploy/k8s/base/topics.yaml`"
    )


def test_the_generator_names_resources_validly_and_refuses_clashes() -> None:
    assert k8s_topics.resource_name("a.B_c") == "a-b-c"
    with pytest.raises(ValueError, match="same resource name"):
        k8s_topics.render([CATALOG[0], CATALOG[0]])
    with pytest.raises(ValueError, match="at least 1"):
        k8s_topics.render(replicas=0)
    prefixed_text = k8s_topics.render(prefix="staging.", cluster="c", replicas=1)
    docs = [d for d in yaml.safe_load_all(prefixed_text) if d]
    assert [d["spec"]["topicName"] for d in docs] == [f"staging.{s.name}" for s in CATALOG]
    assert {d["metadata"]["labels"]["strimzi.io/cluster"] for d in docs} == {"c"}
    assert {d["spec"]["config"]["min.insync.replicas"] for d in docs} == {"1"}


@pytest.mark.parametrize("which", RENDERINGS)
def test_workloads_run_the_commands_the_cli_has(which: str) -> None:
    commands = sorted(
        command_of(c) for w in k8s(which).workloads for c in containers(w)
    )
    assert commands == sorted(COMPONENT_PATHS), commands
    kinds = {command_of(containers(w)[0]): w["kind"] for w in k8s(which).workloads}
    assert kinds == {"ingress": "Deployment", "worker": "StatefulSet"}


@pytest.mark.parametrize("which", RENDERINGS)
def test_environment_variables_are_the_programs(which: str) -> None:
    cluster = k8s(which)
    for configmap in cluster.of_kind("ConfigMap"):
        unknown = set(configmap.get("data", {})) - set(ENV_VARS)
        assert not unknown, f"ConfigMap {configmap['metadata']['name']}: {sorted(unknown)}"
    for workload in cluster.workloads:
        for container in containers(workload):
            env = container.get("env", [])
            downward = {e["name"] for e in env if "fieldRef" in e.get("valueFrom", {})}
            referenced = {
                m for e in env if "value" in e for m in re.findall(r"\$\((\w+)\)", e["value"])
            }
            assert referenced <= set(ENV_VARS) | downward, referenced
            assert downward <= referenced, f"downward-API variables unused: {downward}"
            unknown = {e["name"] for e in env if not known_var(e["name"])} - downward
            assert not unknown, f"{workload['metadata']['name']}: {sorted(unknown)}"


@pytest.mark.parametrize("which", RENDERINGS)
def test_secrets_are_referenced_never_defined(which: str) -> None:
    """No Secret object, no secret in a ConfigMap, and no secret in any container's
    environment, not even by reference: only ``NAME_FILE`` paths."""
    cluster = k8s(which)
    assert not cluster.of_kind("Secret"), "no Secret in the manifests"
    for configmap in cluster.of_kind("ConfigMap"):
        assert not set(configmap.get("data", {})) & SECRET_VARS
    for workload in cluster.workloads:
        for container in containers(workload):
            name = f"{workload['metadata']['name']}/{container['name']}"
            for item in container.get("env", []):
                assert item["name"] not in SECRET_VARS, f"{name}: {item['name']} in env"
                assert "secretKeyRef" not in item.get("valueFrom", {}), (
                    f"{name}: {item['name']} comes from a Secret into the environment"
                )
            for source in container.get("envFrom", []):
                assert "secretRef" not in source, f"{name}: a whole Secret in the environment"


def secret_volume_mode(volume: Mapping[str, Any], item: Mapping[str, Any]) -> int:
    """The mode of one file of a Secret volume (Kubernetes' default: 0644)."""
    secret = volume["secret"]
    return int(item.get("mode", secret.get("defaultMode", 0o644)))


def kafka_secrets(settings: Settings) -> frozenset[str]:
    """The Kafka passwords the settings call for."""
    needed = set()
    if settings.kafka.sasl:
        needed.add("KAFKA_SASL_PASSWORD")
    if settings.kafka_ssl_key_file is not None:
        needed.add("KAFKA_SSL_KEY_PASSWORD")
    return frozenset(needed)


@pytest.mark.parametrize("which", RENDERINGS)
def test_each_workload_mounts_only_the_secrets_it_uses_as_read_only_files(which: str) -> None:
    """Every secret the component uses is a file of a mounted Secret (``NAME_FILE``), on a
    read-only mount; no other Secret key is mounted; and no Secret holding one of the
    application's secrets is mounted by the other workload."""
    cluster = k8s(which)
    mounted_by: dict[str, set[str]] = {}
    holds_secret: set[str] = set()
    for workload in cluster.workloads:
        volumes = {v["name"]: v for v in workload["spec"]["template"]["spec"].get("volumes", [])}
        for container in containers(workload):
            command = command_of(container)
            env = cluster.container_env(container, workload, stand_ins=False)
            settings = Settings.from_env(cluster.container_env(container, workload))
            files = mounted_secret_files(container, workload)
            given = {var for var in SECRET_VARS if f"{var}_FILE" in env}
            assert given == COMPONENT_SECRETS[command] | kafka_secrets(settings), command
            for var in given:
                path = env[f"{var}_FILE"]
                assert path in files, f"{command}: {var}_FILE={path} is no mounted Secret file"
                holds_secret.add(files[path][0])
            # Nothing mounted that no variable points at (the CA certificate is not secret,
            # but it is read through KAFKA_SSL_CA_FILE all the same).
            referenced = {env[f"{var}_FILE"] for var in given} | {env.get("KAFKA_SSL_CA_FILE")}
            assert set(files) <= referenced, f"{command}: unused {set(files) - referenced}"
            for mount in container.get("volumeMounts", []):
                if "secret" in volumes[mount["name"]]:
                    assert mount.get("readOnly") is True, f"{command}: {mount['name']}"
                    name = volumes[mount["name"]]["secret"]["secretName"]
                    mounted_by.setdefault(name, set()).add(workload["metadata"]["name"])
    for name in holds_secret:
        assert len(mounted_by[name]) == 1, f"Secret {name} is mounted by {mounted_by[name]}"


@pytest.mark.parametrize("which", RENDERINGS)
def test_secret_files_are_readable_by_the_process_alone(which: str) -> None:
    """The Secret volumes' files belong to the pod's fsGroup, the process's group, and
    nobody else may read them."""
    cluster = k8s(which)
    for workload in cluster.workloads:
        pod = workload["spec"]["template"]["spec"]
        context = pod["securityContext"]
        for volume in pod.get("volumes", []):
            if "secret" not in volume:
                continue
            for item in volume["secret"]["items"]:
                mode = secret_volume_mode(volume, item)
                where = f"{workload['metadata']['name']}: {volume['name']}/{item['path']}"
                assert mode & 0o007 == 0, f"{where}: mode {mode:o} lets others read it"
                assert mode & 0o040, f"{where}: mode {mode:o}, not readable by its group"
                assert mode & 0o222 == 0, f"{where}: mode {mode:o}, writable"
        assert context.get("fsGroup") == context["runAsGroup"], workload["metadata"]["name"]


@pytest.mark.parametrize("which", RENDERINGS)
def test_each_container_gets_valid_settings_and_the_secrets_it_needs(which: str) -> None:
    cluster = k8s(which)
    for workload in cluster.workloads:
        for container in containers(workload):
            command = command_of(container)
            env = cluster.container_env(container, workload)
            settings = Settings.from_env(env)
            if command == "ingress":
                settings.require_webhook_auth()
            else:
                settings.require_link_secret()
                settings.require_worker_api_tokens()
            # On Apache Kafka: idempotent producers, no embedded-broker workarounds.
            assert settings.kafka_enable_idempotence
            assert not settings.kafka_embedded_broker
            assert settings.topic_replication_factor > 1
            # Every secret file is read: its (stand-in) content is the setting's value.
            raw = cluster.container_env(container, workload, stand_ins=False)
            for var in COMPONENT_SECRETS[command]:
                value = getattr(settings, ENV_VARS[var])
                text = ",".join(value) if isinstance(value, tuple) else str(value)
                assert text == Path(env[f"{var}_FILE"]).read_text().rstrip("\n"), var
                assert raw[f"{var}_FILE"] != env[f"{var}_FILE"], f"{var}: a mounted file"


def test_component_secrets_are_the_secrets_each_components_code_reads() -> None:
    """COMPONENT_SECRETS, which the manifest checks hold each workload to, is what the
    ingress's and the workers' code read from their settings (the Kafka passwords are
    read by the Kafka clients both use)."""
    fields = {ENV_VARS[var]: var for var in SECRET_VARS - KAFKA_CLIENT_SECRETS}
    for command in ("ingress", "worker"):
        code = "\n".join(p.read_text() for p in sorted((STREAMS / command).rglob("*.py")))
        read = {var for field, var in fields.items() if re.search(rf"\.{field}\b", code)}
        withheld = WITHHELD_SECRETS.get(command, frozenset())
        assert read == COMPONENT_SECRETS[command] | withheld, command
        assert not COMPONENT_SECRETS[command] & withheld, command
    clients = (STREAMS / "kafka" / "clients.py").read_text()
    assert all(re.search(rf"\.{ENV_VARS[var]}\b", clients) for var in KAFKA_CLIENT_SECRETS)
    assert set().union(*COMPONENT_SECRETS.values()) == SECRET_VARS - KAFKA_CLIENT_SECRETS


# ---- NetworkPolicies and the TLS Ingress -------------------------------------------------------


@dataclass(frozen=True)
class Pod:
    """A pod as NetworkPolicies see it: its namespace, its labels, its named ports."""

    namespace: str
    labels: Mapping[str, str]
    ports: Mapping[str, int] = field(default_factory=dict)


APP_NAMESPACE = "default"
"""The namespace of the base's objects, which set none."""


def namespace_of(obj: Mapping[str, Any]) -> str:
    return str(obj["metadata"].get("namespace", APP_NAMESPACE))


def workload_pod(workload: dict[str, Any]) -> Pod:
    (container,) = containers(workload)
    ports = {p["name"]: int(p["containerPort"]) for p in container["ports"] if "name" in p}
    return Pod(namespace_of(workload), workload["spec"]["template"]["metadata"]["labels"], ports)


def label_selects(selector: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    """A LabelSelector; the empty one selects everything."""
    assert set(selector) <= {"matchLabels"}, f"matchExpressions are not modelled: {selector}"
    return all(labels.get(k) == v for k, v in selector.get("matchLabels", {}).items())


def peer_admits(peer: Mapping[str, Any], policy_namespace: str, pod: Pod) -> bool:
    assert "ipBlock" not in peer, "ipBlock is not modelled: select pods"
    if "namespaceSelector" in peer:
        namespace_labels = {"kubernetes.io/metadata.name": pod.namespace}
        if not label_selects(peer["namespaceSelector"], namespace_labels):
            return False
    elif pod.namespace != policy_namespace:
        return False
    return label_selects(peer.get("podSelector", {}), pod.labels)


def port_admits(rule: Mapping[str, Any], destination: Pod, port: int, protocol: str) -> bool:
    if "ports" not in rule:
        return True
    for entry in rule["ports"]:
        number = entry.get("port")
        if isinstance(number, str):
            number = destination.ports.get(number)
        if entry.get("protocol", "TCP") == protocol and number in (None, port):
            return True
    return False


def network_allows(cluster: K8s, source: Pod, destination: Pod, port: int,
                   protocol: str = "TCP") -> bool:
    """Whether the cluster's NetworkPolicies let ``source`` open a connection to
    ``destination`` on ``port``: allowed out of the source (no policy isolates it for
    egress, or one of those allows it) and into the destination, likewise."""
    policies = cluster.of_kind("NetworkPolicy")
    for direction, rules_key, peers_key, subject, other in (
        ("Egress", "egress", "to", source, destination),
        ("Ingress", "ingress", "from", destination, source),
    ):
        isolating = [p for p in policies if namespace_of(p) == subject.namespace
                     and direction in p["spec"]["policyTypes"]
                     and label_selects(p["spec"]["podSelector"], subject.labels)]
        if isolating and not any(
            peers_key not in rule
            or any(peer_admits(peer, namespace_of(policy), other) for peer in rule[peers_key])
            for policy in isolating for rule in policy["spec"].get(rules_key, [])
            if port_admits(rule, destination, port, protocol)
        ):
            return False
    return True


def kafka_broker(cluster: K8s, app_namespace: str) -> tuple[Pod, set[int]]:
    """A broker pod of the Strimzi cluster the applications use (Strimzi's labels), in the
    namespace of the bootstrap address, and the ports the applications connect to."""
    (strimzi,) = {u["metadata"]["labels"]["strimzi.io/cluster"]
                  for u in cluster.of_kind("KafkaUser")}
    bootstrap = cluster.configmap("edume-streams-config")["KAFKA_BOOTSTRAP_SERVERS"]
    namespaces, ports = set(), set()
    for server in bootstrap.split(","):
        host, _, port = server.rpartition(":")
        parts = host.split(".")
        namespaces.add(parts[1] if len(parts) > 1 else app_namespace)
        ports.add(int(port))
    (namespace,) = namespaces
    labels = {"strimzi.io/cluster": strimzi, "strimzi.io/kind": "Kafka",
              "strimzi.io/name": f"{strimzi}-kafka"}
    return Pod(namespace, labels), ports


def app_pods(cluster: K8s) -> dict[str, Pod]:
    return {command_of(containers(w)[0]): workload_pod(w) for w in cluster.workloads}


KUBE_DNS = Pod("kube-system", {"k8s-app": "kube-dns"})
ELSEWHERE = "somewhere-else"


@pytest.mark.parametrize("which", RENDERINGS)
def test_network_policies_deny_everything_by_default(which: str) -> None:
    """One policy isolates every pod of the application both ways and allows nothing; the
    others only add what each needs."""
    cluster = k8s(which)
    policies = cluster.of_kind("NetworkPolicy")
    pods = app_pods(cluster)
    deny_all = [p for p in policies
                if set(p["spec"]["policyTypes"]) == {"Ingress", "Egress"}
                and not p["spec"].get("ingress") and not p["spec"].get("egress")
                and all(label_selects(p["spec"]["podSelector"], pod.labels)
                        and namespace_of(p) == pod.namespace for pod in pods.values())]
    assert deny_all, "a default-deny NetworkPolicy for the application's pods"
    # Its selector is the application's, not everything in the namespace.
    for policy in deny_all:
        assert policy["spec"]["podSelector"].get("matchLabels"), "select the app's pods only"
    for policy in policies:
        selector = policy["spec"]["podSelector"].get("matchLabels", {})
        assert selector.get("app.kubernetes.io/name") == "edume-streams", (
            f"{policy['metadata']['name']} selects pods other than the application's"
        )
        assert any(label_selects(policy["spec"]["podSelector"], pod.labels)
                   for pod in pods.values()), f"{policy['metadata']['name']} selects no pod"


@pytest.mark.parametrize("which", RENDERINGS)
def test_the_ingress_is_reachable_from_anywhere_on_its_port_only(which: str) -> None:
    cluster = k8s(which)
    pods = app_pods(cluster)
    ingress = pods["ingress"]
    (deployment,) = cluster.of_kind("Deployment")
    settings = Settings.from_env(cluster.container_env(containers(deployment)[0], deployment))
    outsider = Pod(ELSEWHERE, {"app": "ingress-nginx"})
    assert network_allows(cluster, outsider, ingress, settings.ingress_port)
    assert network_allows(cluster, Pod(ingress.namespace, {}), ingress, settings.ingress_port)
    for port in (settings.worker_web_port, 22, 9093):
        assert not network_allows(cluster, outsider, ingress, port), port
    assert not network_allows(cluster, outsider, ingress, settings.ingress_port, "UDP")


@pytest.mark.parametrize("which", RENDERINGS)
def test_the_worker_api_is_reachable_only_from_workers_and_labelled_clients(which: str) -> None:
    cluster = k8s(which)
    pods = app_pods(cluster)
    worker, ingress = pods["worker"], pods["ingress"]
    (statefulset,) = cluster.of_kind("StatefulSet")
    port = Settings.from_env(
        cluster.container_env(containers(statefulset)[0], statefulset)).worker_web_port
    key, value = WORKER_CLIENT_LABEL
    for namespace in (worker.namespace, ELSEWHERE):
        client = Pod(namespace, {key: value, "app": "downstream"})
        assert network_allows(cluster, client, worker, port), namespace
        assert not network_allows(cluster, client, worker, 9999), namespace
        for stranger in (Pod(namespace, {"app": "downstream"}), Pod(namespace, {key: "false"})):
            assert not network_allows(cluster, stranger, worker, port), (namespace, stranger)
    # Worker to worker: queries forwarded to the owner of a key; this deployment's workers
    # only, not those of another one (another namespace).
    assert network_allows(cluster, worker, worker, port)
    foreign = Pod(ELSEWHERE, worker.labels, worker.ports)
    assert not network_allows(cluster, worker, foreign, port)
    assert not network_allows(cluster, foreign, worker, port)
    # The ingress is no client of the workers, nor anything else of the app's.
    assert not network_allows(cluster, ingress, worker, port)
    assert not network_allows(cluster, worker, ingress, ingress.ports["http"])
    # A worker calls no client back.
    assert not network_allows(cluster, worker, Pod(worker.namespace, {key: value}), port)


@pytest.mark.parametrize("which", RENDERINGS)
def test_pods_may_reach_kafka_and_dns_and_nothing_else(which: str) -> None:
    cluster = k8s(which)
    for command, pod in app_pods(cluster).items():
        broker, kafka_ports = kafka_broker(cluster, pod.namespace)
        for port in kafka_ports:
            assert network_allows(cluster, pod, broker, port), (command, port)
        for protocol in ("UDP", "TCP"):
            assert network_allows(cluster, pod, KUBE_DNS, 53, protocol), (command, protocol)
        # Not another port of the brokers, nor another cluster's brokers, nor the rest.
        assert not network_allows(cluster, pod, broker, 9092), command
        other_cluster = Pod(broker.namespace, {**broker.labels, "strimzi.io/cluster": "other"})
        assert not network_allows(cluster, pod, other_cluster, min(kafka_ports)), command
        assert not network_allows(cluster, pod, Pod(KUBE_DNS.namespace, {}), 53, "UDP")
        for destination in (Pod(ELSEWHERE, {}), Pod(pod.namespace, {"app": "x"})):
            for port in (80, 443, min(kafka_ports)):
                assert not network_allows(cluster, pod, destination, port), (command, port)


def test_the_tls_ingress_routes_only_the_webhook_path_to_the_ingress_service() -> None:
    cluster = k8s("overlay")
    (ingress,) = cluster.of_kind("Ingress")
    assert ingress["apiVersion"] == "networking.k8s.io/v1"
    spec = ingress["spec"]
    tls_hosts = {host: entry["secretName"] for entry in spec["tls"] for host in entry["hosts"]}
    (deployment,) = cluster.of_kind("Deployment")
    assert command_of(containers(deployment)[0]) == "ingress"
    (container,) = containers(deployment)
    settings = Settings.from_env(cluster.container_env(container, deployment))
    webhook_paths = {p for p, allow in ALLOWED_METHODS.items() if "POST" in allow}
    routed = []
    for rule in spec["rules"]:
        assert rule["host"] in tls_hosts, f"{rule['host']}: no TLS"
        assert tls_hosts[rule["host"]], "the TLS Secret is named (cert-manager writes it)"
        for path in rule["http"]["paths"]:
            routed.append(path["path"])
            assert path["pathType"] == "Exact", "only that path, nothing under it"
            backend = path["backend"]["service"]
            service = cluster.one("Service", backend["name"])
            assert namespace_of(service) == namespace_of(ingress)
            assert selects(service["spec"]["selector"],
                           deployment["spec"]["template"]["metadata"]["labels"])
            (port,) = [p for p in service["spec"]["ports"]
                       if p.get("name") == backend["port"].get("name")
                       or p["port"] == backend["port"].get("number")]
            target = port_number(container, port.get("targetPort", port["port"]))
            assert target == settings.ingress_port
            # The controller may pass it: the ingress accepts from anywhere on that port.
            controller = Pod("ingress-nginx", {"app.kubernetes.io/name": "ingress-nginx"})
            assert network_allows(cluster, controller, workload_pod(deployment), target)
    assert sorted(routed) == sorted(webhook_paths) == ["/webhooks/edume"], routed
    # A certificate comes from cert-manager (its annotation names the issuer) or is a TLS
    # Secret the operator creates (webhook-ingress.yaml says which).
    annotations = ingress["metadata"].get("annotations", {})
    issuers = {k for k in annotations if k.startswith("cert-manager.io/")}
    assert issuers <= {"cert-manager.io/cluster-issuer", "cert-manager.io/issuer"}
    # The controller lets every body the ingress accepts through (the ingress answers 413).
    body = annotations.get("nginx.ingress.kubernetes.io/proxy-body-size")
    if body is not None:
        scale = {"k": 1024, "m": 1024**2, "g": 1024**3}.get(body[-1].lower(), 1)
        assert int(body.rstrip("kmgKMG")) * scale > settings.max_body_bytes


@pytest.mark.parametrize("which", RENDERINGS)
def test_ports_and_probes_match_what_the_processes_serve(which: str) -> None:
    cluster = k8s(which)
    for workload in cluster.workloads:
        for container in containers(workload):
            command = command_of(container)
            settings = Settings.from_env(cluster.container_env(container, workload))
            host, port = listen(settings, command)
            assert host == "0.0.0.0", f"{command} listens on {host}"
            assert [p["containerPort"] for p in container["ports"]] == [port]
            paths = COMPONENT_PATHS[command]
            probes = {k: container[k]["httpGet"] for k in
                      ("startupProbe", "readinessProbe", "livenessProbe") if k in container}
            assert probes["readinessProbe"]["path"] == "/readyz"
            assert probes["livenessProbe"]["path"] == "/healthz"
            for kind, probe in probes.items():
                assert probe["path"] in paths, f"{command} {kind}: {probe['path']}"
                assert port_number(container, probe["port"]) == port, f"{command} {kind}"
            annotations = workload["spec"]["template"]["metadata"].get("annotations", {})
            if "prometheus.io/port" in annotations:
                assert int(annotations["prometheus.io/port"]) == port
                assert annotations["prometheus.io/path"] in paths


@pytest.mark.parametrize("which", RENDERINGS)
def test_the_worker_needs_time_to_recover_before_it_is_ready(which: str) -> None:
    (worker,) = k8s(which).of_kind("StatefulSet")
    (container,) = containers(worker)
    readiness = container["readinessProbe"]
    # /readyz answers 503 until the tables are recovered: that must never restart the pod.
    # A startup probe (or a long initial delay) on /healthz covers the start itself.
    startup = container.get("startupProbe")
    if startup:
        budget = startup.get("periodSeconds", 10) * startup.get("failureThreshold", 3)
        assert budget >= 60, "at least a minute to start"
    else:
        assert container["livenessProbe"].get("initialDelaySeconds", 0) >= 30
    assert "/readyz" not in {container["livenessProbe"]["httpGet"]["path"],
                             (startup or {}).get("httpGet", {}).get("path")}
    assert readiness["httpGet"]["path"] == "/readyz"


@pytest.mark.parametrize("which", RENDERINGS)
def test_worker_url_is_each_pods_own_stable_address(which: str) -> None:
    cluster = k8s(which)
    (worker,) = cluster.of_kind("StatefulSet")
    (container,) = containers(worker)
    env = {e["name"]: e for e in container["env"]}
    template = env["WORKER_URL"]["value"]
    url = urlsplit(template)
    labels = worker["spec"]["template"]["metadata"]["labels"]
    service = cluster.one("Service", worker["spec"]["serviceName"])
    assert service["spec"]["clusterIP"] == "None", "the StatefulSet's Service is headless"
    assert selects(service["spec"]["selector"], labels)
    # Owners must be reachable while not ready (recovering, rebalancing).
    assert service["spec"].get("publishNotReadyAddresses") is True
    pod_var = next(n for n, e in env.items()
                   if e.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath")
                   == "metadata.name")
    ns_var = next(n for n, e in env.items()
                  if e.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath")
                  == "metadata.namespace")
    assert url.hostname == (
        f"$({pod_var}).{service['metadata']['name']}.$({ns_var}).svc".lower()
    ), template
    settings = Settings.from_env(cluster.container_env(container, worker))
    assert url.scheme == "http" and url.port == settings.worker_web_port


@pytest.mark.parametrize("which", RENDERINGS)
def test_services_select_a_workload_and_target_its_port(which: str) -> None:
    cluster = k8s(which)
    for service in cluster.of_kind("Service"):
        matches = [w for w in cluster.workloads
                   if selects(service["spec"]["selector"],
                              w["spec"]["template"]["metadata"]["labels"])]
        assert len(matches) == 1, service["metadata"]["name"]
        (container,) = containers(matches[0])
        for port in service["spec"]["ports"]:
            assert port_number(container, port.get("targetPort", port["port"]))


@pytest.mark.parametrize("which", RENDERINGS)
def test_scaling_and_disruption_budgets_fit_the_replicas(which: str) -> None:
    cluster = k8s(which)
    for workload in cluster.workloads:
        selector = workload["spec"]["selector"]["matchLabels"]
        assert selects(selector, workload["spec"]["template"]["metadata"]["labels"])
        replicas = workload["spec"]["replicas"]
        assert replicas >= 2, f"{workload['metadata']['name']}: at least two"
        (pdb,) = [p for p in cluster.of_kind("PodDisruptionBudget")
                  if p["spec"]["selector"]["matchLabels"] == selector]
        # A node can still be drained: the budget allows one pod down.
        if "minAvailable" in pdb["spec"]:
            assert pdb["spec"]["minAvailable"] < replicas
        else:
            assert pdb["spec"]["maxUnavailable"] >= 1
    (hpa,) = cluster.of_kind("HorizontalPodAutoscaler")
    assert hpa["apiVersion"] == "autoscaling/v2"
    target = cluster.one(hpa["spec"]["scaleTargetRef"]["kind"],
                         hpa["spec"]["scaleTargetRef"]["name"])
    assert command_of(containers(target)[0]) == "ingress", "the ingress scales, not the workers"
    assert hpa["spec"]["minReplicas"] <= target["spec"]["replicas"] <= hpa["spec"]["maxReplicas"]
    assert [m["resource"]["name"] for m in hpa["spec"]["metrics"]] == ["cpu"]
    for container in containers(target):
        assert container["resources"]["requests"]["cpu"], "CPU utilisation needs a request"
    # More workers than partitions would idle.
    (worker,) = cluster.of_kind("StatefulSet")
    assert worker["spec"]["replicas"] <= max(spec.partitions for spec in CATALOG)


@pytest.mark.parametrize("which", RENDERINGS)
def test_pods_run_as_the_images_non_root_user_on_a_read_only_root(which: str) -> None:
    (user,) = dockerfile().final.values("USER")
    uid = int(user.split(":")[0])
    cluster = k8s(which)
    for workload in cluster.workloads:
        pod = workload["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"].get("runAsUser", uid) == uid
        mounted = {v["name"]: v for v in pod.get("volumes", [])}
        for container in containers(workload):
            context = container["securityContext"]
            assert context["allowPrivilegeEscalation"] is False
            assert context["readOnlyRootFilesystem"] is True
            assert "ALL" in context["capabilities"]["drop"]
            resources = container["resources"]
            assert resources["requests"]["cpu"] and resources["requests"]["memory"]
            assert resources["limits"]["memory"]
            paths = {m["mountPath"]: m["name"] for m in container.get("volumeMounts", [])}
            if command_of(container) == "worker":
                # Faust creates its (empty) data directory at start: WORKER_DATA_DIR, on a
                # writable scratch volume (the default, a temporary directory, is on the
                # read-only root here).
                data_dir = Settings.from_env(
                    cluster.container_env(container, workload)).worker_data_dir
                assert data_dir in paths, "the worker needs a writable WORKER_DATA_DIR"
                assert "emptyDir" in mounted[paths[data_dir]], "scratch only, no table store"
        assert not workload["spec"].get("volumeClaimTemplates"), "the tables are in memory"


def test_the_overlay_sets_image_namespaces_and_the_strimzi_cluster() -> None:
    cluster = k8s("overlay")
    images = {c["image"] for w in cluster.workloads for c in containers(w)}
    assert len(images) == 1, images
    (image,) = images
    name, _, tag = image.rpartition(":")
    assert name and tag and tag != "latest", f"a pinned image tag: {image}"
    app_namespaces = {o["metadata"].get("namespace") for o in cluster.objects
                      if o["kind"] not in STRIMZI_KINDS}
    assert len(app_namespaces) == 1 and None not in app_namespaces, app_namespaces
    # The topics belong to the Strimzi cluster the applications talk to: Strimzi names the
    # bootstrap Service <cluster>-kafka-bootstrap, in the cluster's namespace.
    topics = cluster.of_kind("KafkaTopic")
    (strimzi,) = {t["metadata"]["labels"]["strimzi.io/cluster"] for t in topics}
    (topic_namespace,) = {t["metadata"]["namespace"] for t in topics}
    bootstrap = cluster.configmap("edume-streams-config")["KAFKA_BOOTSTRAP_SERVERS"]
    for server in bootstrap.split(","):
        host = server.rsplit(":", 1)[0].split(".")
        assert host[0] == f"{strimzi}-kafka-bootstrap", server
        if len(host) > 1:
            assert host[1] == topic_namespace, server
    # The Kafka users are the same cluster's, where its User Operator watches, and the pods
    # trust that cluster's CA (Strimzi's Secret <cluster>-cluster-ca-cert).
    users = cluster.of_kind("KafkaUser")
    assert {u["metadata"]["labels"]["strimzi.io/cluster"] for u in users} == {strimzi}
    assert {u["metadata"]["namespace"] for u in users} == {topic_namespace}
    for workload in cluster.workloads:
        for container in containers(workload):
            env = cluster.container_env(container, workload, stand_ins=False)
            secret, _ = mounted_secret_files(container, workload)[env["KAFKA_SSL_CA_FILE"]]
            assert secret == f"{strimzi}-cluster-ca-cert", workload["metadata"]["name"]
    # The base's placeholders are replaced.
    base = k8s("base").configmap("edume-streams-config")
    assert bootstrap != base["KAFKA_BOOTSTRAP_SERVERS"]


@pytest.mark.parametrize("which", RENDERINGS)
def test_kubernetes_objects_validate_against_the_api_schemas(which: str) -> None:
    validator = pytest.importorskip("kubernetes_validate.utils")
    # The oldest Kubernetes still commonly run, and the newest the package knows.
    versions = ["1.29.0", validator.latest_version()]
    custom = set()
    for obj in k8s(which).objects:
        for version in versions:
            try:
                validator.validate(obj, version, strict=True)
            except validator.SchemaNotFoundError:
                custom.add(obj["kind"])  # a custom resource: checked on its own above
            except validator.ValidationError as exc:
                path = ".".join(str(p) for p in exc.path)
                pytest.fail(f"{obj['kind']}/{obj['metadata']['name']} ({version}): "
                            f"{path}: {exc.message}")
    assert custom == STRIMZI_KINDS


# ---- Compose --------------------------------------------------------------------------------


@functools.cache
def compose() -> dict[str, Any]:
    document = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(document, dict)
    return document


def services() -> dict[str, dict[str, Any]]:
    return dict(compose()["services"])


def app_services() -> dict[str, dict[str, Any]]:
    """The services built from deploy/Dockerfile."""
    out = {}
    for name, service in services().items():
        build = service.get("build")
        if build:
            context = (COMPOSE.parent / build["context"]).resolve()
            assert (context / build["dockerfile"]).resolve() == DOCKERFILE
            assert context == REPO, "the build context is the repository root"
            out[name] = service
    return out


def kafka_services() -> dict[str, dict[str, Any]]:
    return {n: s for n, s in services().items()
            if str(s.get("image", "")).startswith("apache/kafka:")}


def service_command(service: dict[str, Any]) -> str:
    assert "entrypoint" not in service
    return str(build_parser().parse_args([str(a) for a in service["command"]]).command)


def compose_secret_files() -> dict[str, Path]:
    """The top-level secrets: name → the file on the host."""
    out = {}
    for name, secret in (compose().get("secrets") or {}).items():
        assert set(secret) == {"file"}, f"secret {name}: a file (no external, no driver)"
        out[str(name)] = (COMPOSE.parent / secret["file"]).resolve()
    return out


def service_secret_mounts(service: dict[str, Any]) -> dict[str, str]:
    """Path in the container → secret name, for every secret the service mounts (Compose
    mounts ``target``, or the secret's name, under /run/secrets/)."""
    out = {}
    for entry in service.get("secrets") or []:
        source, target = (entry, entry) if isinstance(entry, str) else (
            entry["source"], entry.get("target", entry["source"]))
        path = target if target.startswith("/") else f"/run/secrets/{target}"
        out[path] = str(source)
    return out


def service_env(service: dict[str, Any], *, stand_ins: bool = True) -> dict[str, str]:
    """What the container sees: the image's ENV, then ``environment``. With ``stand_ins``,
    a path to a mounted secret becomes the path of a readable stand-in file."""
    env = dockerfile().env()
    env.update({str(k): str(v) for k, v in (service.get("environment") or {}).items()})
    if stand_ins:
        mounts = service_secret_mounts(service)
        env = {name: stand_in_file("compose", mounts[value]) if value in mounts else value
               for name, value in env.items()}
    return env


def test_compose_file_validates_against_the_compose_specification() -> None:
    jsonschema = pytest.importorskip("jsonschema")
    schema = json.loads(COMPOSE_SCHEMA.read_text())
    errors = list(jsonschema.Draft201909Validator(schema).iter_errors(compose()))
    assert not errors, [f"{list(e.path)}: {e.message}" for e in errors]


def test_compose_kafka_is_a_replicated_kraft_cluster() -> None:
    nodes = kafka_services()
    assert len(nodes) >= 3, "three brokers"
    for name, service in nodes.items():
        tag = service["image"].split(":", 1)[1]
        assert re.fullmatch(r"[34]\.\d+\.\d+", tag), f"{name}: a pinned 3.x/4.x release"
    envs = {name: {k: str(v) for k, v in s["environment"].items()} for name, s in nodes.items()}
    ids = {name: int(env["KAFKA_NODE_ID"]) for name, env in envs.items()}
    assert len(set(ids.values())) == len(ids), "unique node ids"
    listener_port = {}
    for name, env in envs.items():
        assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
        controller = re.search(r"CONTROLLER://[^:]*:(\d+)", env["KAFKA_LISTENERS"])
        assert controller, f"{name}: a CONTROLLER listener"
        controller_port = int(controller[1])
        voters = set(env["KAFKA_CONTROLLER_QUORUM_VOTERS"].split(","))
        assert voters == {f"{i}@{n}:{controller_port}" for n, i in ids.items()}
        advertised = urlsplit(env["KAFKA_ADVERTISED_LISTENERS"].replace("PLAINTEXT://", "//"))
        assert advertised.hostname == name, "each broker advertises its service name"
        listener_port[name] = advertised.port
        replication = int(env["KAFKA_DEFAULT_REPLICATION_FACTOR"])
        assert replication == len(nodes)
        assert 1 < int(env["KAFKA_MIN_INSYNC_REPLICAS"]) < replication
        assert int(env["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"]) == replication
        assert int(env["KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR"]) == replication
        assert 1 < int(env["KAFKA_TRANSACTION_STATE_LOG_MIN_ISR"]) < replication
        assert env["CLUSTER_ID"] == envs[next(iter(envs))]["CLUSTER_ID"]
        assert nodes[name].get("volumes"), f"{name} keeps its log on a volume"
    # The applications bootstrap from every broker.
    for name, service in app_services().items():
        settings = Settings.from_env(service_env(service))
        servers = {s.strip() for s in settings.kafka_bootstrap_servers.split(",")}
        assert servers == {f"{n}:{listener_port[n]}" for n in nodes}, name


def test_compose_creates_the_topics_before_anything_uses_them() -> None:
    apps = app_services()
    creators = [n for n, s in apps.items() if service_command(s) == "topics"]
    assert len(creators) == 1, creators
    (topics,) = creators
    assert [str(a) for a in apps[topics]["command"]] == ["topics", "create"]
    assert apps[topics].get("restart") == "no"
    settings = Settings.from_env(service_env(apps[topics]))
    nodes = kafka_services()
    assert settings.topic_replication_factor == len(nodes)
    for node in nodes:
        assert apps[topics]["depends_on"][node]["condition"] == "service_healthy"
    for name, service in apps.items():
        if name != topics:
            condition = service["depends_on"][topics]["condition"]
            assert condition == "service_completed_successfully", name


def test_compose_services_use_only_known_variables_and_no_secret_values() -> None:
    extra = container_only_vars()
    for name, service in app_services().items():
        environment = {str(k) for k in (service.get("environment") or {})}
        unknown = environment - set(ENV_VARS) - SECRET_FILE_VARS - extra
        assert not unknown, f"{name}: {sorted(unknown)}"
        assert not environment & SECRET_VARS, f"{name}: secrets are files (NAME_FILE)"
        assert "env_file" not in service, f"{name}: no env file, secrets are files"
        # Kafka is PLAINTEXT on the project's own network: no Kafka password to give.
        assert Settings.from_env(service_env(service)).kafka_security_protocol == "PLAINTEXT"


def test_compose_services_get_only_their_own_secrets_as_files() -> None:
    """Each service mounts the secrets its command uses and no other, and reads each one
    through NAME_FILE from its mount; other services (nginx, Kafka) mount none."""
    files = compose_secret_files()
    used = set()
    for name, service in services().items():
        mounts = service_secret_mounts(service)
        if name not in app_services():
            assert not mounts, f"{name} mounts {sorted(mounts.values())}"
            continue
        command = service_command(service)
        env = service_env(service, stand_ins=False)
        given = {var for var in SECRET_VARS if f"{var}_FILE" in env}
        assert given == COMPONENT_SECRETS.get(command, frozenset()), name
        for var in given:
            path = env[f"{var}_FILE"]
            assert path in mounts, f"{name}: {var}_FILE={path} is no mounted secret"
            # The file is named like its variable: the same files make the Kubernetes
            # Secrets' keys (deploy/README.md).
            assert files[mounts[path]].name == var, f"{name}: {mounts[path]} for {var}"
        referenced = {env[f"{var}_FILE"] for var in given}
        assert set(mounts) == referenced, f"{name}: unused {set(mounts) - referenced}"
        used |= set(mounts.values())
    assert used == set(files), f"secrets no service mounts: {set(files) - used}"


def test_compose_secret_files_are_never_committed() -> None:
    """The files live in deploy/secrets/, which git ignores, and the image's build context
    leaves out."""
    for name, path in compose_secret_files().items():
        relative = path.relative_to(REPO)
        assert relative.parent == Path("deploy/secrets"), f"{name}: {relative}"
        assert excluded_from_context(str(relative)), f"{relative} is in the build context"
        ignored = subprocess.run(["git", "check-ignore", "-q", str(path)], cwd=REPO,
                                 check=False)
        if ignored.returncode != 128:  # 128: not a git work tree (e.g. an exported copy)
            assert ignored.returncode == 0, f"{relative} is not git-ignored"


def test_compose_services_get_valid_settings_for_apache_kafka() -> None:
    for name, service in app_services().items():
        settings = Settings.from_env(service_env(service))
        assert settings.kafka_enable_idempotence, name
        assert not settings.kafka_embedded_broker, name
        command = service_command(service)
        if command == "ingress":
            settings.require_webhook_auth()
        elif command == "worker":
            settings.require_link_secret()
            settings.require_worker_api_tokens()


def test_compose_healthchecks_ask_each_process_on_its_port() -> None:
    (var,) = container_only_vars()
    for name, service in app_services().items():
        command = service_command(service)
        env = service_env(service)
        if command in COMPONENT_PATHS:
            settings = Settings.from_env(env)
            host, port = listen(settings, command)
            assert host == "0.0.0.0", name
            assert int(env[var]) == port, f"{name}: the health check asks port {env[var]}"
            assert not service.get("healthcheck", {}).get("disable"), name
        else:
            assert service.get("healthcheck", {}).get("disable") is True, (
                f"{name} is a one-shot command: no health check"
            )


def test_compose_workers_each_have_their_own_reachable_url() -> None:
    workers = {n: s for n, s in app_services().items() if service_command(s) == "worker"}
    assert len(workers) >= 2
    urls = set()
    for name, service in workers.items():
        settings = Settings.from_env(service_env(service))
        assert settings.worker_url is not None, name
        url = urlsplit(settings.worker_url)
        assert url.hostname == name and url.port == settings.worker_web_port, settings.worker_url
        urls.add(settings.worker_url)
        assert "deploy" not in service, f"{name}: one container per WORKER_URL"
        if service.get("read_only"):  # Faust's data directory must be writable
            data_dir = settings.worker_data_dir
            assert data_dir in service.get("tmpfs", []), f"{name}: writable WORKER_DATA_DIR"
        assert not service.get("volumes"), f"{name}: the tables are in memory"
    assert len(urls) == len(workers)


def nginx_directives(text: str) -> list[list[str]]:
    """Every simple directive (``name args...;``) of an nginx configuration, in order."""
    body = re.sub(r"#[^\n]*", "", text)
    statements = re.split(r"[;{}]", body)
    # A block's opening text ("http", "location /") is followed by "{", not ";": only the
    # text before a ";" is a directive.
    out = []
    position = 0
    for statement in statements:
        position += len(statement)
        if position < len(body) and body[position] == ";" and statement.strip():
            out.append(shlex.split(statement))
        position += 1
    return out


def test_compose_puts_one_load_balancer_in_front_of_the_ingress_replicas() -> None:
    apps = app_services()
    ingress = {n: s for n, s in apps.items() if service_command(s) == "ingress"}
    (name,) = ingress
    service = ingress[name]
    assert service["deploy"]["replicas"] >= 2
    assert not service.get("ports"), "replicas cannot share a host port: the balancer has it"
    settings = Settings.from_env(service_env(service))
    balancers = [s for s in services().values()
                 if name in (s.get("depends_on") or {}) and s.get("ports")
                 and "build" not in s]
    assert len(balancers) == 1
    (balancer,) = balancers
    assert balancer["depends_on"][name]["condition"] == "service_healthy"
    (mount,) = [v for v in balancer["volumes"] if str(v).split(":")[0].endswith(".conf")]
    conf = COMPOSE.parent / str(mount).split(":")[0]
    directives = nginx_directives(conf.read_text())
    values = {d[0]: d[1:] for d in directives}
    variables = {d[1]: d[2] for d in directives if d[0] == "set"}
    (upstream,) = values["proxy_pass"]
    target = urlsplit(variables.get(upstream, upstream))
    assert (target.hostname, target.port) == (name, settings.ingress_port)
    listen_port = int(values["listen"][0].rsplit(":", 1)[-1])
    published = {str(p).rsplit(":", 1)[-1] for p in balancer["ports"]}
    assert published == {str(listen_port)}
    # nginx must let every body the ingress accepts through (the ingress answers 413).
    size = values["client_max_body_size"][0].lower()
    scale = {"k": 1024, "m": 1024**2, "g": 1024**3}.get(size[-1], 1)
    limit = int(size.rstrip("kmg")) * scale
    assert limit > settings.max_body_bytes
    read_timeout = int(values["proxy_read_timeout"][0].rstrip("s"))
    assert read_timeout > settings.publish_timeout_s + settings.request_timeout_s


# ---- All deploy files -----------------------------------------------------------------------


def deploy_files() -> list[Path]:
    """Every file under deploy/ and the .dockerignore; not the Compose secret files, which
    hold the secrets on an operator's machine and are never committed."""
    secrets = set(compose_secret_files().values())
    files = sorted(p for p in DEPLOY.rglob("*") if p.is_file() and p.resolve() not in secrets)
    return [*files, REPO / ".dockerignore"]


@pytest.mark.parametrize("path", deploy_files(), ids=lambda p: str(p.relative_to(REPO)))
def test_no_secret_value_in_any_deploy_file(path: Path) -> None:
    """A secret variable is given a value nowhere: only blanks, references (``$VAR``,
    ``${VAR}``, ``<...>``, ``...``) or the name of a Secret key."""
    text = path.read_text()
    for var in SECRET_VARS:
        for match in re.finditer(rf"\b{var}\b[ \t]*[=:][ \t]*([^\s#]*)", text):
            value = match[1].strip("\"'")
            if not value or value == "..." or re.fullmatch(r"\$\{?\w+\}?|<[^>]*>", value):
                continue
            pytest.fail(f"{path.relative_to(REPO)}: {var} has a value")
    # Secret keys of a Kubernetes Secret appear as `key: NAME` or in a comment, never as
    # `- name: VAR` followed by `value:`.
    if path.suffix in {".yaml", ".yml"}:
        for document in yaml.safe_load_all(text):
            for item in _walk(document):
                if isinstance(item, dict) and item.get("name") in SECRET_VARS:
                    assert "value" not in item, f"{path}: {item['name']} has a value"


def _walk(node: Any) -> Iterator[Any]:
    yield node
    if isinstance(node, dict):
        for value in node.values():
            yield from _walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from _walk(value)
