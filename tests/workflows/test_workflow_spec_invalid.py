"""Invalid workflow specs are refused with the exact path of every error and a message
that says what would be accepted; nothing is stored (DESIGN.md section 5)."""

from __future__ import annotations

from typing import Any

import pytest

from orchestrator import services as tenant_services
from orchestrator.actors import Actor
from orchestrator.context import tenant_scope
from orchestrator.errors import FieldError, Invalid
from tests.harness import Team, tenant_state
from workflows import services
from workflows.models import Workflow, WorkflowVersion
from workflows.validation import Limits, parse_document, validate_spec

NOOP = {"type": "noop"}
NOT_BUILT = "cannot run it yet"
MISSING = "required field missing"


def with_tasks(**tasks: Any) -> dict[str, Any]:
    return {"name": "wf", "tasks": tasks}


def with_task(**fields: Any) -> dict[str, Any]:
    """One task `a`: a noop unless `type` says otherwise."""
    return with_tasks(a={"type": "noop", **fields})


def with_top(**fields: Any) -> dict[str, Any]:
    return {"name": "wf", "tasks": {"a": NOOP}, **fields}


def with_schedule(**fields: Any) -> dict[str, Any]:
    return with_top(schedule={"cron": "0 2 * * *", **fields})


def shell(*argv: str, **fields: Any) -> dict[str, Any]:
    return {"type": "shell", "command": list(argv), **fields}


def errors_of(
    document: dict[str, Any] | list[Any] | str, limits: Limits | None = None
) -> list[FieldError]:
    """The errors of a document: parsed first when it is text, as the API and CLI do."""
    max_bytes = limits.max_spec_bytes if limits else None
    try:
        data = (
            parse_document(document, max_bytes=max_bytes) if isinstance(document, str) else document
        )
        validate_spec(data, limits)
    except Invalid as exc:
        return exc.errors
    raise AssertionError("the spec was accepted")


def case(
    id: str,
    document: dict[str, Any] | list[Any] | str,
    path: str,
    fragment: str,
    limits: Limits | None = None,
) -> Any:
    return pytest.param(document, path, fragment, limits, id=id)


CASES = [
    # --- the graph -------------------------------------------------------------------
    case(
        "cycle-of-two",
        with_tasks(
            a={"type": "noop", "depends_on": ["b"]}, b={"type": "noop", "depends_on": ["a"]}
        ),
        "tasks.a.depends_on", "cycle: a -> b -> a",
    ),
    case(
        "cycle-of-three-named-in-run-order",
        with_tasks(
            x={"type": "noop", "depends_on": ["y"]},
            y={"type": "noop", "depends_on": ["z"]},
            z={"type": "noop", "depends_on": ["x"]},
        ),
        "tasks.x.depends_on", "cycle: x -> z -> y -> x",
    ),
    case(
        "unknown-dependency", with_task(depends_on=["extract"]),
        "tasks.a.depends_on[0]", "unknown task 'extract'; tasks: a",
    ),
    case(
        "duplicate-dependency",
        with_tasks(a=NOOP, b={"type": "noop", "depends_on": ["a", "a"]}),
        "tasks.b.depends_on[1]", "duplicate dependency 'a'",
    ),
    case(
        "self-dependency", with_task(depends_on=["a"]),
        "tasks.a.depends_on[0]", "task 'a' cannot depend on itself",
    ),
    case(
        "depends-on-not-a-list", with_tasks(a=NOOP, b={"type": "noop", "depends_on": "a"}),
        "tasks.b.depends_on", "valid list",
    ),
    # --- a list or a scalar where a mapping goes: its fields named, not pydantic's class
    case(
        "notify-not-a-mapping", with_top(notify=["ops"]),
        "notify", "expected a mapping with the fields on, channels, not a list",
    ),
    case(
        "sla-a-number", with_top(sla=5),
        "sla", "expected a mapping with the fields run_duration, deadline, not 5 (a number)",
    ),
    case(
        "map-a-string", with_task(map="{{ upstream.a.result }}"),
        "tasks.a.map", "expected a mapping with the fields over, as, max, not '{{ upstream",
    ),
    case(
        "concurrency-a-boolean", with_task(concurrency=True),
        "tasks.a.concurrency", "with the fields key, limit, not true (a boolean)",
    ),
    case(
        "env-a-list", with_task(**shell("env"), env=["A=1"]),
        "tasks.a.env", "expected a mapping, not a list",
    ),
    # --- task types and their fields ---------------------------------------------------
    case(
        "unknown-task-type", with_task(type="bash"),
        "tasks.a", "unknown task type 'bash'; accepted: 'noop', 'shell', 'python'",
    ),
    case(
        "missing-task-type", with_tasks(a={"command": ["true"]}),
        "tasks.a", "missing 'type'; accepted: noop, shell, python, http, sql, container, wait_for",
    ),
    case("shell-without-command", with_task(type="shell"), "tasks.a.command", MISSING),
    case(
        "sql-without-connection", with_task(type="sql", sql="select 1"),
        "tasks.a.connection", MISSING,
    ),
    case("http-without-url", with_task(type="http"), "tasks.a.url", MISSING),
    case("python-without-callable", with_task(type="python"), "tasks.a.callable", MISSING),
    case("container-without-image", with_task(type="container"), "tasks.a.image", MISSING),
    case(
        "wait-for-without-kind", with_task(type="wait_for"),
        "tasks.a", "missing 'kind'; accepted: http, sql, time, dataset",
    ),
    case(
        "wait-for-sql-without-sql", with_task(type="wait_for", kind="sql", connection="warehouse"),
        "tasks.a.sql", MISSING,
    ),
    case(
        "wait-for-unknown-kind", with_task(type="wait_for", kind="file"),
        "tasks.a", "unknown kind 'file'",
    ),
    case(
        "wait-for-poke-interval-zero",
        with_task(type="wait_for", kind="time", at="{{ data_interval_end }}", poke_interval=0),
        "tasks.a", "poke_interval must be at least 1s",
    ),
    case(
        "string-command-without-shell-true", with_task(type="shell", command="echo hi"),
        "tasks.a", "command is a string, which needs shell: true",
    ),
    case(
        "python-callable-not-module-colon-function",
        with_task(type="python", callable="reports.daily.build"),
        "tasks.a.callable", "is not accepted: module:function, e.g. reports.daily:build",
    ),
    case(
        "http-url-ftp", with_task(type="http", url="ftp://files.example.com/x"),
        "tasks.a.url", "is not an http(s) URL: it must start with http:// or https://",
    ),
    case(
        "http-json-and-body",
        with_task(type="http", url="https://x.test", json={"a": 1}, body="a=1"),
        "tasks.a", "give either json or body, not both",
    ),
    case(
        "container-namespace-not-a-dns-label",
        with_task(type="container", image="busybox", namespace="Team_A"),
        "tasks.a.namespace", "is not accepted: lowercase letters, digits and -",
    ),
    case(
        "container-resource-quantity",
        with_task(type="container", image="busybox", resources={"limits": {"memory": "lots"}}),
        "tasks.a.resources.limits.memory", "is not accepted: a Kubernetes quantity",
    ),
    case(
        "shell-env-name", with_task(type="shell", command=["env"], env={"1ST": "x"}),
        "tasks.a.env.1ST", "is not accepted: an environment variable's name is",
    ),
    # --- unknown fields, at every level -----------------------------------------------
    case(
        "unknown-top-level-field", with_top(shedule={"cron": "@daily"}),
        "shedule",
        "unknown field 'shedule'; accepted: name, description, tags, schedule, params, defaults",
    ),
    case(
        "unknown-task-field", with_task(retires=3),
        "tasks.a.retires", "unknown field 'retires'; accepted: description, depends_on,",
    ),
    case(
        "unknown-schedule-field", with_schedule(tz="UTC"),
        "schedule.tz", "unknown field 'tz'; accepted: cron, datasets, timezone, catchup, start",
    ),
    case(
        "unknown-param-field", with_top(params={"n": {"type": "string", "dflt": "x"}}),
        "params.n.dflt", "unknown field 'dflt'; accepted: type, description, default, enum",
    ),
    case(
        "unknown-defaults-field", with_top(defaults={"retry": 1}),
        "defaults.retry", "unknown field 'retry'; accepted: retries, retry_delay",
    ),
    case(
        "http-field-by-its-python-name",
        with_task(type="http", url="https://x.test", json_body={"a": 1}),
        "tasks.a.json_body", "unknown field 'json_body'; accepted:",
    ),
    case(
        "unknown-trigger-rule", with_task(trigger_rule="most_success"),
        "tasks.a.trigger_rule", "'most_success' is not accepted; expected 'all_success'",
    ),
    # --- schedule ------------------------------------------------------------------------
    case(
        "cron-minute-61", with_schedule(cron="61 * * * *"),
        "schedule.cron", "'61 * * * *' is not a valid cron expression",
    ),
    case(
        "cron-with-6-fields", with_schedule(cron="0 0 2 * * *"),
        "schedule.cron", "expected 5 fields",
    ),
    case(
        "cron-that-never-fires", with_schedule(cron="0 0 31 2 *"),
        "schedule.cron", "'0 0 31 2 *' never fires",
    ),
    case(
        "cron-unknown-macro", with_schedule(cron="@fortnightly"),
        "schedule.cron", "unknown cron macro '@fortnightly'",
    ),
    case(
        "unknown-timezone", with_schedule(timezone="Mars/Olympus"),
        "schedule.timezone", "unknown timezone 'Mars/Olympus'",
    ),
    case(
        "bad-catchup", with_schedule(catchup="some"),
        "schedule.catchup", "'some' is not accepted; expected 'none', 'latest' or 'all'",
    ),
    case(
        "schedule-ends-before-it-starts", with_schedule(start="2026-02-01", end="2026-01-01"),
        "schedule", "schedule.end must be after schedule.start",
    ),
    # --- durations and numbers --------------------------------------------------------
    case("duration-5x", with_task(timeout="5x"), "tasks.a.timeout", "'5x' is not a duration"),
    case(
        "duration-negative", with_task(retry_delay=-1),
        "tasks.a.retry_delay", "a duration cannot be negative",
    ),
    case(
        "duration-with-a-space", with_top(sla={"run_duration": "1h 30m"}),
        "sla.run_duration", "'1h 30m' is not a duration: expected a number of seconds",
    ),
    case(
        "duration-in-defaults", with_top(defaults={"retry_delay": "soon"}),
        "defaults.retry_delay", "'soon' is not a duration",
    ),
    case(
        "retries-negative", with_task(retries=-1),
        "tasks.a.retries", "greater than or equal to 0",
    ),
    case(
        "max-active-runs-zero", with_top(max_active_runs=0),
        "max_active_runs", "greater than or equal to 1",
    ),
    # --- templates ------------------------------------------------------------------------
    case(
        "template-syntax-error", with_tasks(a=shell("echo", "{{ ds ")),
        "tasks.a.command[1]", "template syntax error on line 1",
    ),
    case(
        "template-undeclared-param",
        with_top(
            params={"table": {"type": "string"}}, tasks={"a": shell("echo", "{{ params.region }}")}
        ),
        "tasks.a.command[1]", "unknown param 'region' (params: table)",
    ),
    case(
        "template-undeclared-param-by-subscript",
        with_tasks(a=shell("echo", "{{ params['zone'] }}")),
        "tasks.a.command[1]", "unknown param 'zone' (params: none declared)",
    ),
    case(
        "template-task-not-upstream",
        with_tasks(
            a=shell("echo", "a"),
            b=NOOP,
            c=shell("echo", "{{ tasks.a.result }}", depends_on=["b"]),
        ),
        "tasks.c.command[1]", "task 'a' is not upstream of this task",
    ),
    case(
        "template-unknown-variable",
        with_tasks(a=shell("echo", "x", env={"DAY": "{{ yesterday }}"})),
        "tasks.a.env.DAY", "unknown template variable 'yesterday'; available: run, params, ds",
    ),
    case(
        "sensor-until-expression",
        with_task(type="wait_for", kind="http", url="https://x.test", until="response.state =="),
        "tasks.a.until", "invalid expression",
    ),
    # --- params ---------------------------------------------------------------------------
    case(
        "param-default-below-its-minimum",
        with_top(params={"n": {"type": "integer", "minimum": 5, "default": 1}}),
        "params.n", "default 1 is less than the minimum of 5",
    ),
    case(
        "param-default-outside-its-enum",
        with_top(params={"region": {"type": "string", "enum": ["eu", "us"], "default": "apac"}}),
        "params.region", "default 'apac' is not one of ['eu', 'us']",
    ),
    case(
        "param-pattern-on-an-integer",
        with_top(params={"n": {"type": "integer", "pattern": "^[0-9]+$"}}),
        "params.n", "pattern applies only to type string",
    ),
    # --- names ------------------------------------------------------------------------------
    case(
        "name-uppercase", {"name": "DailySales", "tasks": {"a": NOOP}},
        "name", "'DailySales' is not accepted: a name is lowercase letters, digits, - and _",
    ),
    case(
        "name-with-a-space", {"name": "daily sales", "tasks": {"a": NOOP}},
        "name", "'daily sales' is not accepted: a name is lowercase",
    ),
    case(
        "task-id-starting-with-a-digit", with_tasks(**{"1st": NOOP}),
        "tasks.1st", "'1st' is not accepted: a task id is letters, digits, - and _",
    ),
    case(
        "task-id-with-a-space", with_tasks(**{"load data": NOOP}),
        "tasks.load data", "a task id is letters, digits, - and _",
    ),
    case("tag-with-a-space", with_top(tags=["daily sales"]), "tags[0]", "a tag is 1 to 50"),
    case("empty-tasks", with_tasks(), "tasks", "a workflow needs at least one task"),
    case("no-tasks", {"name": "wf"}, "tasks", MISSING),
    case("not-a-mapping", ["name", "tasks"], "", "a workflow spec is a mapping"),
    # --- documents ----------------------------------------------------------------------------
    case(
        "duplicate-yaml-key", "name: wf\nname: other\ntasks: {a: {type: noop}}\n",
        "", "invalid YAML at line 2, column 1: duplicate key 'name'",
    ),
    case("invalid-yaml", "name: [wf\ntasks: {}\n", "", "invalid YAML at line"),
    case(
        "yaml-date-that-does-not-exist",
        "name: wf\nschedule:\n  cron: '@daily'\n  start: 2026-02-30\ntasks: {a: {type: noop}}\n",
        "", "invalid YAML at line 4, column 10: '2026-02-30' is not a date: day is out of range",
    ),
    case(
        "yaml-month-that-does-not-exist",
        "name: wf\ndescription: 2026-13-01\ntasks: {a: {type: noop}}\n",
        "", "'2026-13-01' is not a date: month must be in 1..12",
    ),
    case("invalid-json", '{"name": "wf", "tasks": {},}', "", "invalid JSON"),
    case(
        "duplicate-json-key", '{"name": "wf", "name": "other", "tasks": {"a": {"type": "noop"}}}',
        "", "invalid JSON: duplicate key 'name'",
    ),
    case(
        "scheduled-with-a-required-param-without-default",
        {"name": "wf", "schedule": {"cron": "@daily"},
         "params": {"day": {"type": "string", "required": True}}, "tasks": {"a": NOOP}},
        "params.day", "scheduled runs take every param from its default",
    ),
    # --- what this installation and the tenant allow --------------------------------------
    case(
        "dataset-sensor-dataset-is-a-name",
        with_task(type="wait_for", kind="dataset", dataset="a b"),
        "tasks.a.dataset", "'a b' is not accepted: a dataset is a name or URI",
    ),
    case(
        "task-type-forbidden-by-the-tenant", with_tasks(a=shell("true")),
        "tasks.a.type", "task type 'shell' is not allowed in this tenant (allowed: noop, python)",
        Limits(allowed_task_types=["noop", "python"]),
    ),
    case(
        "more-tasks-than-the-tenant-allows", with_tasks(a=NOOP, b=NOOP, c=NOOP),
        "tasks", "3 tasks; this tenant's limit is 2", Limits(max_tasks=2),
    ),
    case(
        "spec-larger-than-the-tenant-allows",
        "name: wf\ndescription: " + "x" * 100 + "\ntasks: {a: {type: noop}}\n",
        "", "bytes; this tenant's limit is 100", Limits(max_spec_bytes=100),
    ),
]  # fmt: skip


@pytest.mark.parametrize(("document", "path", "fragment", "limits"), CASES)
def test_it_refuses_an_invalid_spec_with_the_path_and_a_message(
    document: Any, path: str, fragment: str, limits: Limits | None
) -> None:
    errors = errors_of(document, limits)
    # A spec using a type whose executor is not built also gets that error: not the subject.
    relevant = [e for e in errors if NOT_BUILT not in e[1] or NOT_BUILT in fragment]
    assert [p for p, _ in relevant] == [path], errors
    assert fragment in relevant[0][1]


def test_it_has_many_distinct_cases() -> None:
    assert len({c.id for c in CASES}) == len(CASES) >= 35


def test_it_reports_every_error_at_once() -> None:
    document = {
        "name": "Bad",
        "tasks": {"a": {"type": "noop", "depends_on": ["b"], "timeout": "5x"}},
    }
    errors = errors_of(document)
    assert len(errors) == 3
    assert {p for p, _ in errors} == {"name", "tasks.a.timeout", "tasks.a.depends_on[0]"}


def test_it_reports_schema_graph_template_and_policy_errors_together() -> None:
    document = with_top(
        schedule={"cron": "61 * * * *"},
        tasks={
            "a": {"type": "noop", "depends_on": ["b"]},
            "b": {"type": "noop", "depends_on": ["a"]},
            "c": shell("echo", "{{ params.missing }}"),
            "d": {"type": "wait_for", "kind": "dataset", "dataset": "{{ ds }}"},
        },
    )
    errors = dict(errors_of(document))
    assert set(errors) == {
        "schedule.cron",
        "tasks.a.depends_on",
        "tasks.c.command[1]",
        "tasks.d.dataset",
    }
    assert errors["tasks.a.depends_on"] == "cycle: a -> b -> a"
    assert "no templates" in errors["tasks.d.dataset"]


def _counts(team: Team) -> tuple[int, int]:
    workflows = Workflow.objects.dangerously_unscoped().filter(tenant=team.tenant).count()
    versions = WorkflowVersion.objects.dangerously_unscoped().filter(tenant=team.tenant).count()
    return workflows, versions


def _apply(team: Team, data: Any) -> services.ApplyResult:
    with tenant_scope([team.tenant]):
        return services.apply_workflow(actor=Actor.cli(), tenant=team.tenant, data=data)


def test_it_stores_nothing_and_audits_nothing_for_an_invalid_spec(team: Team) -> None:
    _apply(team, with_tasks(a=shell("true")))
    before = tenant_state(team.tenant)
    for document in (
        with_tasks(a=shell("true"), b={"type": "noop", "depends_on": ["zz"]}),  # update of wf
        {"name": "other", "tasks": {"a": {"type": "shell"}}},  # a new workflow
    ):
        with pytest.raises(Invalid):
            _apply(team, document)
    assert tenant_state(team.tenant) == before
    assert _counts(team) == (1, 1)


def test_it_applies_the_tenants_policy_on_task_types(team: Team) -> None:
    tenant_services.update_tenant(
        actor=Actor.cli(), tenant=team.tenant, policy={"allowed_task_types": ["noop", "python"]}
    )
    team.tenant.refresh_from_db()
    before = tenant_state(team.tenant)
    with pytest.raises(Invalid) as caught:
        _apply(team, with_tasks(a=NOOP, b=shell("true")))
    assert caught.value.errors == [
        ("tasks.b.type", "task type 'shell' is not allowed in this tenant (allowed: noop, python)")
    ]
    assert tenant_state(team.tenant) == before
    assert _apply(team, with_tasks(a=NOOP)).version.number == 1


def test_it_applies_the_tenants_quotas_on_tasks_and_size(team: Team) -> None:
    tenant_services.update_tenant(
        actor=Actor.cli(),
        tenant=team.tenant,
        quotas={"max_tasks_per_workflow": 2, "max_spec_bytes": 200},
    )
    team.tenant.refresh_from_db()
    before = tenant_state(team.tenant)
    with pytest.raises(Invalid) as caught:
        _apply(team, with_tasks(a=NOOP, b=NOOP, c=NOOP))
    assert caught.value.errors == [("tasks", "3 tasks; this tenant's limit is 2")]
    with pytest.raises(Invalid) as caught:
        services.parse_spec("name: wf\ndescription: " + "x" * 300 + "\n", team.tenant)
    [(path, message)] = caught.value.errors
    assert (path, "this tenant's limit is 200") == ("", message[message.index("this") :])
    assert tenant_state(team.tenant) == before


def _patterns(schema: Any) -> set[str]:
    found: set[str] = set()
    if isinstance(schema, dict):
        if isinstance(schema.get("pattern"), str):
            found.add(schema["pattern"])
        for value in schema.values():
            found |= _patterns(value)
    elif isinstance(schema, list):
        for value in schema:
            found |= _patterns(value)
    return found


def test_every_pattern_of_the_spec_is_explained_in_words() -> None:
    """A value a pattern refuses gets a sentence of what is accepted, never the regex."""
    from workflows.spec import TASK_MODELS, WorkflowSpec
    from workflows.validation import PATTERN_HINTS

    schemas = [WorkflowSpec.model_json_schema()]
    for entry in TASK_MODELS.values():
        models = entry.values() if isinstance(entry, dict) else [entry]
        schemas += [model.model_json_schema() for model in models]
    duration = r"^\s*(\d+|(\d+[dD])?(\d+[hH])?(\d+[mM])?(\d+[sS])?)\s*$"  # its own message
    assert {p for s in schemas for p in _patterns(s)} - {duration} <= set(PATTERN_HINTS)


@pytest.mark.parametrize(
    ("tasks", "path", "words"),
    [
        (
            {"m": {"type": "noop", "map": {"over": [1], "as": "not valid"}}},
            "tasks.m.map.as",
            "a name templates read is letters, digits and _",
        ),
        (
            {"p": {"type": "python", "callable": "no-colon"}},
            "tasks.p.callable",
            "module:function",
        ),
    ],
)
def test_a_refused_pattern_says_what_is_accepted(
    tasks: dict[str, Any], path: str, words: str
) -> None:
    with pytest.raises(Invalid) as refused:
        validate_spec({"name": "flow", "tasks": tasks})
    messages = dict(refused.value.errors)
    assert words in messages[path], messages
    assert "should match pattern" not in str(messages)
