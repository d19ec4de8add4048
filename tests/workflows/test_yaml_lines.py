"""Where an error's path was written in a spec's text (workflows.yaml_lines): pure, no
database. The lines the portal's editor shows beside each validation error."""

from __future__ import annotations

import pytest

from orchestrator.errors import Invalid
from workflows.validation import parse_document, validate_spec
from workflows.yaml_lines import LocatedError, compose, line_of, locate, path_parts

SPEC = """\
name: etl
base: &base
  retries: 2
tasks:
  extract:
    type: shell
    command:
      - echo
      - hi
  load:
    <<: *base
    type: shell
    env:
      A.B: x
    depends_on: [extract]
"""


def test_a_path_splits_into_keys_and_indexes() -> None:
    assert path_parts("tasks.load.depends_on[1]") == ["tasks", "load", "depends_on", 1]
    assert path_parts("a[0][2].b") == ["a", 0, 2, "b"]
    assert path_parts("") == []


@pytest.mark.parametrize(
    ("path", "line"),
    [
        ("name", 1),
        ("tasks", 4),
        ("tasks.extract", 5),
        ("tasks.extract.command", 7),
        ("tasks.extract.command[1]", 9),
        ("tasks.load.depends_on", 15),
        ("tasks.load.depends_on[0]", 15),
        ("tasks.load.env.A.B", 14),  # a key with a dot in it
        ("tasks.load.retries", 3),  # merged from the anchor: where it was written
        ("tasks.extract.timeout", 5),  # missing: the entry that lacks it
        ("tasks.extract.command[7]", 7),  # no such item: the list
        ("tasks.nothing.type", 4),
        ("schedule.cron", None),  # nothing of it is written
    ],
)
def test_a_path_is_at_the_line_of_the_deepest_entry_it_reaches(path: str, line: int | None) -> None:
    assert line_of(compose(SPEC), path) == line


def test_json_is_located_as_yaml() -> None:
    text = '{\n  "name": "etl",\n  "tasks": {\n    "a": {"type": "noop"}\n  }\n}'
    root = compose(text)
    assert line_of(root, "tasks.a.type") == 4
    assert line_of(root, "name") == 2


def test_text_that_is_not_yaml_has_no_lines() -> None:
    assert compose("a: [1, 2\nb: 3\n") is None
    assert compose("") is None
    assert line_of(None, "a") is None
    deep = "[" * 200 + "]" * 200
    assert compose(deep) is None  # refused, as the spec parser refuses it


def test_errors_are_located_and_ordered_by_line() -> None:
    text = "name: etl\ntasks:\n  a:\n    type: noop\n    retries: many\n    colour: red\n"
    errors = [
        ("tasks.a.colour", "unknown field 'colour'"),
        ("tasks.a.retries", "not an integer"),
        ("", "something of the whole document"),
    ]
    assert locate(text, errors) == [
        LocatedError(None, "", "something of the whole document"),
        LocatedError(5, "tasks.a.retries", "not an integer", "    retries: many"),
        LocatedError(6, "tasks.a.colour", "unknown field 'colour'", "    colour: red"),
    ]


@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("name: etl\ntasks: [a, b\nmore: 1\n", 3),  # YAML syntax
        ("a: 1\nb: 2\na: 3\n", 3),  # a duplicate key
        ('{\n  "a": 1,\n  "b": \n}', 4),  # JSON syntax
    ],
)
def test_a_syntax_error_is_at_the_line_its_parser_names(text: str, line: int) -> None:
    with pytest.raises(Invalid) as refused:
        parse_document(text)
    (located,) = locate(text, refused.value.errors)
    assert located.line == line


def test_every_error_of_a_real_validation_has_its_line() -> None:
    text = SPEC.replace("retries: 2", "retries: many") + "  report:\n    type: noop\n"
    with pytest.raises(Invalid) as refused:
        validate_spec(parse_document(text))
    by_path = {e.path: e.line for e in locate(text, refused.value.errors)}
    assert by_path["base"] == 2
    assert by_path["tasks.load.retries"] == 3
    assert by_path["tasks.load.env.A.B"] == 14
