"""spec/schema.py and schemas/*.schema.json: shipped schemas, issue codes, paths and positions."""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from aetherflow.errors import Issue, PluginError, UsageError
from aetherflow.spec.loader import load_yaml
from aetherflow.spec.schema import (
    SchemaValidator,
    inputs_validator,
    load_schema,
    validate_inputs,
)

MINIMAL: dict[str, Any] = {
    "version": 1,
    "flow": {"id": "minimal"},
    "jobs": [{"id": "only", "steps": [{"id": "hello", "type": "debug"}]}],
}

# SPEC section 2, as the loader would hand it over.
SPEC_EXAMPLE: dict[str, Any] = {
    "version": 1,
    "flow": {
        "id": "daily_sales",
        "description": "Load yesterday's sales",
        "version": 3,
        "tags": ["sales"],
        "params": {"date": {"type": "string", "default": "{{ env.RUN_DATE:today }}"}},
        "env_files": [".env"],
        "profiles_file": "profiles.yaml",
        "workspace": {"root": "work", "cleanup_policy": "never"},
        "state": {"backend": "sqlite", "path": "state/aetherflow.db"},
        "locks": {"scope": "flow", "wait_seconds": 0},
        "unique": {"key": "orderid", "scope": "flow"},
        "max_parallel_jobs": 1,
    },
    "secrets": {
        "db_password": {"env": "DB_PASSWORD"},
        "api_token": {"file": "/run/secrets/api_token"},
    },
    "resources": {
        "warehouse": {
            "kind": "db",
            "driver": "postgres",
            "profile": "prod",
            "config": {
                "dsn": "{{ env.WAREHOUSE_DSN }}",
                "password": "{{ secrets.db_password }}",
            },
            "options": {"connect_timeout": 10},
            "decode": {"config": {"password": True}},
        }
    },
    "jobs": [
        {
            "id": "probe",
            "steps": [
                {
                    "id": "list_new",
                    "type": "check_items",
                    "inputs": {"items": "{{ params.files }}"},
                    "on_no_data": "skip_job",
                    "outputs": {"count": "{{ result.count }}"},
                }
            ],
        },
        {
            "id": "load",
            "depends_on": ["probe"],
            "when": "jobs.probe.outputs.count > 0",
            "steps": [
                {
                    "id": "copy",
                    "type": "with_lock",
                    "inputs": {
                        "lock_key": "load:FACT_SALES",
                        "step": {
                            "type": "external.process",
                            "inputs": {"command": ["./load.sh", "{{ params.date }}"]},
                        },
                    },
                    "retry": {
                        "max_attempts": 3,
                        "backoff": "exponential",
                        "initial_delay_seconds": 5,
                        "max_delay_seconds": 300,
                    },
                    "timeout_seconds": 1800,
                }
            ],
        },
    ],
}

# Every optional field the schema knows, on top of the SPEC example.
EVERYTHING: dict[str, Any] = copy.deepcopy(SPEC_EXAMPLE)
EVERYTHING["flow"].update(
    metadata={"owner": "ops", "nested": {"x": [1, 2]}},
    workspace={"root": "{{ env.HOME }}/w", "cleanup_policy": "on_success", "layout": {"artifacts": "out", "scratch": "tmp"}},
    locks={"scope": "job", "wait_seconds": 1.5, "ttl_seconds": 60},
    unique={"key": "order-id", "scope": "global"},
    max_parallel_jobs=4,
)
EVERYTHING["flow"]["params"]["n"] = {
    "type": "integer",
    "default": 3,
    "description": "how many",
    "required": False,
    "choices": [1, 2, 3],
}
EVERYTHING["secrets"].update(
    dotted={"dotenv": "secrets.env", "key": "TOKEN", "decode": "base64"},
    argv={"command": ["pass", "show", "x"]},
    line={"command": "pass show x"},
)
EVERYTHING["jobs"][1].update(description="load it", depends_on_policy="all_done")
EVERYTHING["jobs"][1]["steps"][0].update(
    description="copy it",
    when=True,
    on_outcome={"timeout": "fail", "elapsed": "complete_job", "x": "skip_job", "y": "continue"},
)
EVERYTHING["jobs"][1]["steps"][0]["retry"].update(jitter=False, backoff="constant")


@pytest.fixture(scope="module")
def validator() -> SchemaValidator:
    return SchemaValidator(load_schema("flow"))


def check(validator: SchemaValidator, data: Any) -> list[tuple[str, str]]:
    issues = validator.validate(data, file="flow.yaml", positions=None)
    return [(i.code, i.location.path if i.location else "") for i in issues]


# ------------------------------------------------------------------------------ valid


@pytest.mark.parametrize(
    "data", [MINIMAL, SPEC_EXAMPLE, EVERYTHING], ids=["minimal", "spec", "everything"]
)
def test_valid_flows_pass(validator: SchemaValidator, data: dict[str, Any]) -> None:
    assert validator.validate(copy.deepcopy(data), file="f.yaml", positions=None) == []


# ------------------------------------------------------------------------------ invalid


def at(path: str) -> Callable[[dict[str, Any]], tuple[Any, str | int]]:
    """Navigate a dotted path (ints are list indexes) to (parent container, last key)."""
    parts: list[str | int] = [int(p) if p.isdigit() else p for p in path.split(".")]

    def go(data: dict[str, Any]) -> tuple[Any, str | int]:
        node: Any = data
        for part in parts[:-1]:
            node = node[part]
        return node, parts[-1]

    return go


def setting(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def mutate(data: dict[str, Any]) -> None:
        parent, key = at(path)(data)
        parent[key] = value

    return mutate


def deleting(path: str) -> Callable[[dict[str, Any]], None]:
    def mutate(data: dict[str, Any]) -> None:
        parent, key = at(path)(data)
        del parent[key]

    return mutate


STEP0 = "jobs.1.steps.0"

BAD: list[tuple[str, Callable[[dict[str, Any]], None], list[tuple[str, str]]]] = [
    # unknown keys, one per object we own
    ("unknown-top", setting("job", []), [("schema.additional_property", "job")]),
    (
        "unknown-flow",
        setting("flow.descripton", "x"),
        [("schema.additional_property", "flow.descripton")],
    ),
    (
        "unknown-workspace",
        setting("flow.workspace.cleanup", "never"),
        [("schema.additional_property", "flow.workspace.cleanup")],
    ),
    (
        "unknown-state",
        setting("flow.state.file", "x.db"),
        [("schema.additional_property", "flow.state.file")],
    ),
    (
        "unknown-locks",
        setting("flow.locks.ttl", 5),
        [("schema.additional_property", "flow.locks.ttl")],
    ),
    (
        "unknown-unique",
        setting("flow.unique.name", "x"),
        [("schema.additional_property", "flow.unique.name")],
    ),
    (
        "unknown-param",
        setting("flow.params.date.defualt", "x"),
        [("schema.additional_property", "flow.params.date.defualt")],
    ),
    (
        "unknown-job",
        setting("jobs.1.depends_onn", ["probe"]),
        [("schema.additional_property", "jobs[1].depends_onn")],
    ),
    (
        "unknown-step",
        setting(f"{STEP0}.input", {}),
        [("schema.additional_property", "jobs[1].steps[0].input")],
    ),
    (
        "unknown-retry",
        setting(f"{STEP0}.retry.attempts", 3),
        [("schema.additional_property", "jobs[1].steps[0].retry.attempts")],
    ),
    (
        "unknown-resource",
        setting("resources.warehouse.dsn", "x"),
        [("schema.additional_property", "resources.warehouse.dsn")],
    ),
    # a misspelt source is reported as the unknown key alone, not also as "no source"
    (
        "unknown-secret",
        setting("secrets.db_password", {"envv": "DB_PASSWORD"}),
        [("schema.additional_property", "secrets.db_password.envv")],
    ),
    # wrong types
    (
        "type-max-parallel",
        setting("flow.max_parallel_jobs", "2"),
        [("schema.type", "flow.max_parallel_jobs")],
    ),
    ("type-flow", setting("flow", "daily"), [("schema.type", "flow")]),
    ("type-inputs", setting(f"{STEP0}.inputs", []), [("schema.type", "jobs[1].steps[0].inputs")]),
    ("type-when", setting("jobs.1.when", 3), [("schema.type", "jobs[1].when")]),
    ("type-tags", setting("flow.tags", "sales"), [("schema.type", "flow.tags")]),
    (
        "type-jitter",
        setting(f"{STEP0}.retry.jitter", "yes"),
        [("schema.type", "jobs[1].steps[0].retry.jitter")],
    ),
    (
        "type-secret-command",
        setting("secrets.api_token", {"command": 5}),
        [("schema.type", "secrets.api_token.command")],
    ),
    # enums and consts
    (
        "enum-cleanup",
        setting("flow.workspace.cleanup_policy", "sometimes"),
        [("schema.enum", "flow.workspace.cleanup_policy")],
    ),
    (
        "enum-backend",
        setting("flow.state.backend", "postgres"),
        [("schema.enum", "flow.state.backend")],
    ),
    ("enum-locks", setting("flow.locks.scope", "run"), [("schema.enum", "flow.locks.scope")]),
    (
        "enum-on-no-data",
        setting("jobs.0.steps.0.on_no_data", "skip"),
        [("schema.enum", "jobs[0].steps[0].on_no_data")],
    ),
    (
        "enum-on-outcome",
        setting(f"{STEP0}.on_outcome", {"timeout": "stop"}),
        [("schema.enum", "jobs[1].steps[0].on_outcome.timeout")],
    ),
    (
        "enum-backoff",
        setting(f"{STEP0}.retry.backoff", "fibonacci"),
        [("schema.enum", "jobs[1].steps[0].retry.backoff")],
    ),
    (
        "enum-param-type",
        setting("flow.params.date.type", "str"),
        [("schema.enum", "flow.params.date.type")],
    ),
    (
        "enum-secret-decode",
        setting("secrets.api_token.decode", "hex"),
        [("schema.enum", "secrets.api_token.decode")],
    ),
    ("const-version", setting("version", 2), [("schema.const", "version")]),
    # identifiers
    ("pattern-job-id", setting("jobs.0.id", "1bad"), [("schema.pattern", "jobs[0].id")]),
    ("pattern-flow-id", setting("flow.id", "daily sales"), [("schema.pattern", "flow.id")]),
    (
        "pattern-depends-on",
        setting("jobs.1.depends_on", ["-probe"]),
        [("schema.pattern", "jobs[1].depends_on[0]")],
    ),
    (
        "pattern-unique-key",
        setting("flow.unique.key", "order id"),
        [("schema.pattern", "flow.unique.key")],
    ),
    (
        "pattern-param-name",
        setting("flow.params.1st", {"type": "string"}),
        [("schema.pattern", 'flow.params["1st"]')],
    ),
    (
        "pattern-secret-name",
        setting("secrets.db password", {"env": "X"}),
        [("schema.pattern", 'secrets["db password"]')],
    ),
    # required keys and lengths
    ("missing-jobs", deleting("jobs"), [("schema.required", "")]),
    ("missing-flow-id", deleting("flow.id"), [("schema.required", "flow")]),
    ("missing-step-type", deleting(f"{STEP0}.type"), [("schema.required", "jobs[1].steps[0]")]),
    (
        "missing-resource-driver",
        deleting("resources.warehouse.driver"),
        [("schema.required", "resources.warehouse")],
    ),
    (
        "missing-unique-key",
        setting("flow.unique", {"scope": "flow"}),
        [("schema.required", "flow.unique")],
    ),
    (
        "missing-dotenv-key",
        setting("secrets.api_token", {"dotenv": ".env"}),
        [("schema.required", "secrets.api_token")],
    ),
    ("empty-jobs", setting("jobs", []), [("schema.min_items", "jobs")]),
    ("empty-steps", setting("jobs.0.steps", []), [("schema.min_items", "jobs[0].steps")]),
    (
        "empty-command",
        setting("secrets.api_token", {"command": []}),
        [("schema.min_items", "secrets.api_token.command")],
    ),
    # numbers and uniqueness
    (
        "retry-zero",
        setting(f"{STEP0}.retry.max_attempts", 0),
        [("schema.minimum", "jobs[1].steps[0].retry.max_attempts")],
    ),
    (
        "timeout-zero",
        setting(f"{STEP0}.timeout_seconds", 0),
        [("schema.minimum", "jobs[1].steps[0].timeout_seconds")],
    ),
    (
        "wait-negative",
        setting("flow.locks.wait_seconds", -1),
        [("schema.minimum", "flow.locks.wait_seconds")],
    ),
    ("flow-version-zero", setting("flow.version", 0), [("schema.minimum", "flow.version")]),
    (
        "depends-on-twice",
        setting("jobs.1.depends_on", ["probe", "probe"]),
        [("schema.unique_items", "jobs[1].depends_on")],
    ),
    # secrets: exactly one source
    (
        "secret-two-sources",
        setting("secrets.db_password", {"env": "A", "file": "b"}),
        [("schema.one_of", "secrets.db_password")],
    ),
    (
        "secret-no-source",
        setting("secrets.db_password", {"decode": "base64"}),
        [("schema.one_of", "secrets.db_password")],
    ),
]


@pytest.mark.parametrize(
    ("mutate", "expected"), [(m, e) for _, m, e in BAD], ids=[n for n, _, _ in BAD]
)
def test_bad_flow_yields_code_and_path(
    validator: SchemaValidator,
    mutate: Callable[[dict[str, Any]], None],
    expected: list[tuple[str, str]],
) -> None:
    data = copy.deepcopy(SPEC_EXAMPLE)
    mutate(data)
    assert check(validator, data) == expected


def test_issue_messages_are_specific(validator: SchemaValidator) -> None:
    def only(mutate: Callable[[dict[str, Any]], None]) -> Issue:
        data = copy.deepcopy(SPEC_EXAMPLE)
        mutate(data)
        [issue] = validator.validate(data, file="f.yaml", positions=None)
        return issue

    typo = only(setting("jobs.1.depends_onn", ["probe"]))
    assert typo.message == "unknown key 'depends_onn' in jobs[1]"
    assert typo.hint == "did you mean 'depends_on'?"

    far = only(setting("jobs.1.zzz", 1))
    assert far.hint is not None and far.hint.startswith("allowed keys: id, description, depends_on")

    assert only(setting("flow.max_parallel_jobs", "2")).message == "expected integer, got string"
    assert only(setting("jobs.1.when", 3)).message == "expected string or boolean or null, got integer"

    enum = only(setting("flow.workspace.cleanup_policy", "on-success"))
    assert enum.message == "'on-success' is not one of 'on_success', 'always' or 'never'"
    assert enum.hint == "did you mean 'on_success'?"

    ident = only(setting("jobs.0.id", "1bad"))
    assert ident.message.startswith("'1bad' is not a valid identifier")

    assert only(setting("version", 2)).message == "expected 1, got 2"
    assert only(deleting("jobs")).message == "missing required key 'jobs' at the top level"
    assert only(setting("jobs", [])).message == "expected at least 1 item, got 0"

    two = only(setting("secrets.db_password", {"env": "A", "file": "b"}))
    assert "exactly one of the keys 'env', 'file', 'dotenv' or 'command'" in two.message
    assert two.message.endswith("got 'env' and 'file'")

    dotenv = only(setting("secrets.api_token", {"dotenv": ".env"}))
    assert dotenv.message == "missing required key 'key' in secrets.api_token"
    assert dotenv.hint == "'key' is required with 'dotenv'"


def test_all_issues_are_collected_and_deduplicated(validator: SchemaValidator) -> None:
    data = copy.deepcopy(SPEC_EXAMPLE)
    data["version"] = 2
    data["jobs"][0]["steps"][0] = {"inputs": {}}  # both id and type missing
    data["jobs"][1]["depends_onn"] = data["jobs"][1].pop("depends_on")
    found = check(validator, data)
    assert sorted(found) == [
        ("schema.additional_property", "jobs[1].depends_onn"),
        ("schema.const", "version"),
        ("schema.required", "jobs[0].steps[0]"),  # one issue naming both keys
    ]
    [required] = [
        i for i in validator.validate(data, file="f", positions=None) if i.code == "schema.required"
    ]
    assert required.message == "missing required keys 'id' and 'type' in jobs[0].steps[0]"


# ------------------------------------------------------------------------------ positions

FLOW_YAML = """\
version: 1
flow:
  id: daily
  max_parallel_jobs: two
jobs:
  - id: probe
    steps:
      - id: a
        type: debug
  - id: load
    depends_onn: [probe]
    steps:
      - {id: b}
"""


def test_issues_are_located_and_sorted(validator: SchemaValidator) -> None:
    data, positions = load_yaml(FLOW_YAML, "flows/daily.yaml")
    issues = validator.validate(data, file="flows/daily.yaml", positions=positions)
    found = [(i.code, str(i.location), i.location.path if i.location else None) for i in issues]
    assert found == [
        # a wrong value: at the value
        ("schema.type", "flows/daily.yaml:4:22", "flow.max_parallel_jobs"),
        # an unknown key: at the key itself
        ("schema.additional_property", "flows/daily.yaml:11:5", "jobs[1].depends_onn"),
        # a missing key: at the object that lacks it
        ("schema.required", "flows/daily.yaml:13:9", "jobs[1].steps[0]"),
    ]


def test_bad_map_key_is_located_at_the_key(validator: SchemaValidator) -> None:
    text = "version: 1\nflow:\n  id: x\n  params:\n    9lives: {type: string}\njobs: [{id: j, steps: [{id: s, type: debug}]}]\n"
    data, positions = load_yaml(text, "f.yaml")
    [issue] = validator.validate(data, file="f.yaml", positions=positions)
    assert (issue.code, str(issue.location)) == ("schema.pattern", "f.yaml:5:5")
    assert issue.location is not None and issue.location.path == 'flow.params["9lives"]'


def test_without_positions_issues_still_carry_file_and_path(validator: SchemaValidator) -> None:
    [issue] = validator.validate({**MINIMAL, "extra": 1}, file="f.yaml", positions=None)
    assert issue.location is not None
    assert (issue.location.file, issue.location.line, issue.location.path) == (
        "f.yaml",
        None,
        "extra",
    )


# ------------------------------------------------------------------------------ inputs

URL_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["url"],
    "properties": {
        "url": {"type": "string"},
        "method": {"enum": ["GET", "POST"]},
        "timeout": {"type": "number", "minimum": 0},
        "expect": {
            "anyOf": [
                {"type": "integer"},
                {"type": "array", "items": {"type": "integer"}},
            ]
        },
    },
}
BASE = ("jobs", 0, "steps", 1, "inputs")


def inputs_issues(inputs: Any, schema: Any = URL_SCHEMA) -> list[tuple[str, str]]:
    issues = validate_inputs(schema, inputs, file="f.yaml", positions=None, base_path=BASE)
    return [(i.code, i.location.path if i.location else "") for i in issues]


@pytest.mark.parametrize(
    ("inputs", "expected"),
    [
        ({"url": "http://x"}, []),
        ({}, [("inputs.required", "jobs[0].steps[1].inputs")]),
        (
            {"url": "u", "methd": "GET"},
            [("inputs.additional_property", "jobs[0].steps[1].inputs.methd")],
        ),
        ({"url": 5}, [("inputs.type", "jobs[0].steps[1].inputs.url")]),
        ({"url": "u", "method": "PUT"}, [("inputs.enum", "jobs[0].steps[1].inputs.method")]),
        ({"url": "u", "timeout": -1}, [("inputs.minimum", "jobs[0].steps[1].inputs.timeout")]),
        ({"url": "u", "expect": ["ok"]}, [("inputs.any_of", "jobs[0].steps[1].inputs.expect")]),
        # template strings are rendered at run time: no type, enum or anyOf failure on them
        (
            {
                "url": "u",
                "timeout": "{{ params.timeout }}",
                "method": "{{ params.method }}",
                "expect": ["{{ params.code }}", 200],
            },
            [],
        ),
        ("{{ params.all_inputs }}", []),
        # a plain string that is not a template still fails
        ({"url": "u", "timeout": "ten"}, [("inputs.type", "jobs[0].steps[1].inputs.timeout")]),
    ],
)
def test_inputs_codes_and_paths(inputs: Any, expected: list[tuple[str, str]]) -> None:
    assert inputs_issues(inputs) == expected


def test_inputs_messages() -> None:
    [typo] = validate_inputs(
        URL_SCHEMA, {"url": "u", "methd": "GET"}, file=None, positions=None, base_path=BASE
    )
    assert typo.message == "unknown key 'methd' in jobs[0].steps[1].inputs"
    assert typo.hint == "did you mean 'method'?"
    [alt] = validate_inputs(
        URL_SCHEMA, {"url": "u", "expect": ["ok"]}, file=None, positions=None, base_path=BASE
    )
    # the array alternative is the one that nearly matched: say what is wrong inside it
    assert alt.message == "no allowed form matches; closest: [0]: expected integer, got string"


def test_inputs_are_located_in_the_flow_file() -> None:
    text = "jobs:\n  - steps:\n      - inputs:\n          urll: x\n"
    data, positions = load_yaml(text, "f.yaml")
    inputs = data["jobs"][0]["steps"][0]["inputs"]
    issues = validate_inputs(
        URL_SCHEMA,
        inputs,
        file="f.yaml",
        positions=positions,
        base_path=("jobs", 0, "steps", 0, "inputs"),
    )
    assert [(i.code, str(i.location)) for i in issues] == [
        ("inputs.required", "f.yaml:4:11"),
        ("inputs.additional_property", "f.yaml:4:11"),
    ]


def test_inputs_validator_is_compiled_once_and_reused() -> None:
    compiled = inputs_validator(URL_SCHEMA)
    for url in ("a", 1, None):
        issues = validate_inputs(compiled, {"url": url}, file=None, positions=None, base_path=BASE)
        assert [i.code for i in issues] == ([] if url == "a" else ["inputs.type"])
    # the caller's schema is not modified or shared
    assert compiled.schema == URL_SCHEMA and compiled.schema is not URL_SCHEMA


def test_an_invalid_inputs_schema_is_a_plugin_error() -> None:
    with pytest.raises(PluginError) as info:
        inputs_validator({"type": "text"})
    assert info.value.code == "plugin.invalid_schema"


# ------------------------------------------------------------------------------ schemas


def walk(node: Any, path: str = "#") -> Iterator[tuple[str, dict[str, Any]]]:
    """Every sub-schema (dict) with its JSON-pointer-ish location."""
    if isinstance(node, dict):
        yield path, node
        for key, value in node.items():
            yield from walk(value, f"{path}/{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from walk(value, f"{path}/{index}")


@pytest.mark.parametrize("name", ["flow", "profiles"])
def test_every_object_with_properties_is_closed(name: str) -> None:
    schema = load_schema(name)
    objects = [(where, node) for where, node in walk(schema) if "properties" in node]
    assert objects
    open_ = [where for where, node in objects if node.get("additionalProperties") is not False]
    assert open_ == []


@pytest.mark.parametrize("name", ["flow", "profiles"])
def test_schema_is_valid_draft_2020_12_with_help_text(name: str) -> None:
    from jsonschema import Draft202012Validator

    schema = load_schema(name)
    Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["$id"] == f"https://aetherflow.dev/schemas/{name}.schema.json"
    assert schema["title"] and schema["description"]
    undocumented = [
        f"{where}/{prop}"
        for where, node in walk(schema)
        if isinstance(node.get("properties"), dict) and where.split("/")[-1] != "properties"
        for prop, sub in node["properties"].items()
        if not (isinstance(sub, dict) and sub.get("description"))
    ]
    assert undocumented == []


def test_identifier_pattern_is_the_spec_one() -> None:
    schema = load_schema("flow")
    assert schema["$defs"]["identifier"]["pattern"] == "^[A-Za-z_][A-Za-z0-9_-]*$"


def test_load_schema_returns_a_fresh_copy() -> None:
    first = load_schema("flow")
    first["properties"].clear()
    assert "jobs" in load_schema("flow")["properties"]


def test_load_schema_unknown_name() -> None:
    with pytest.raises(UsageError) as info:
        load_schema("nope")
    assert (
        info.value.hint is not None and "flow" in info.value.hint and "profiles" in info.value.hint
    )


PROFILES_OK = {
    "prod": {
        "description": "production warehouse",
        "config": {"host": "db.internal", "password": "{{ secrets.pw }}"},
        "options": {"connect_timeout": 10},
        "decode": {"config": {"password": True}},
    },
    "dev_local": {},
}


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (PROFILES_OK, []),
        ({}, []),
        ({"prod": {"confg": {}}}, [("schema.additional_property", "prod.confg")]),
        ({"prod": {"config": "dsn"}}, [("schema.type", "prod.config")]),
        ({"prod": []}, [("schema.type", "prod")]),
        ({"prod env": {}}, [("schema.pattern", '["prod env"]')]),
        ([], [("schema.type", "")]),
    ],
)
def test_profiles_schema(data: Any, expected: list[tuple[str, str]]) -> None:
    profiles = SchemaValidator(load_schema("profiles"))
    assert check(profiles, data) == expected
