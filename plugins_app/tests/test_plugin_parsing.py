"""parse_plugin_source: metadata and the params JSON Schema, from the text alone."""

from __future__ import annotations

import textwrap

import pytest
from jsonschema import Draft202012Validator

from plugins_app.discovery import PluginParseError, parse_args_section, parse_plugin_source


def parse(source: str):
    return parse_plugin_source(textwrap.dedent(source))


def props(signature: str, prelude: str = "") -> dict:
    meta = parse(f"{prelude}\ndef run({signature}):\n    pass\n")
    return meta.params_schema.get("properties", {})


ACCEPTANCE = """
from typing import Literal

def run(context, source: str, keep: int = 5, mode: Literal["a", "b"] = "a",
        tags: list[str] | None = None):
    pass
"""


def test_it_derives_the_acceptance_schema_a_validator_can_use():
    schema = parse(ACCEPTANCE).params_schema
    Draft202012Validator.check_schema(schema)
    validator = Draft202012Validator(schema)
    assert validator.is_valid({"source": "x"})
    assert not validator.is_valid({"keep": "five"})
    assert not validator.is_valid({})
    assert not validator.is_valid({"source": "x", "keep": "five"})
    assert not validator.is_valid({"source": "x", "mode": "c"})
    assert validator.is_valid({"source": "x", "tags": None, "mode": "b", "keep": 2})
    assert validator.is_valid({"source": "x", "tags": ["a", "b"]})
    assert not validator.is_valid({"source": "x", "tags": [1]})
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["required"] == ["source"]
    assert schema["properties"]["keep"]["default"] == 5


@pytest.mark.parametrize(
    ("annotation", "expected"),
    [
        ("str", {"type": "string"}),
        ("int", {"type": "integer"}),
        ("float", {"type": "number"}),
        ("bool", {"type": "boolean"}),
        ("list[int]", {"type": "array", "items": {"type": "integer"}}),
        ("List[str]", {"type": "array", "items": {"type": "string"}}),
        ("list", {"type": "array"}),
        ("dict", {"type": "object"}),
        ("dict[str, int]", {"type": "object", "additionalProperties": {"type": "integer"}}),
        ("Literal['x', 'y']", {"type": "string", "enum": ["x", "y"]}),
        ("Literal[1, 'y']", {"enum": [1, "y"]}),
        ("typing.Literal[1, 2]", {"type": "integer", "enum": [1, 2]}),
        ("Optional[int]", {"type": ["integer", "null"]}),
        ("int | None", {"type": ["integer", "null"]}),
        ("Union[int, str]", {"type": ["integer", "string"]}),
        ("'list[str]'", {"type": "array", "items": {"type": "string"}}),
        ("Any", {}),
        ("Annotated[int, 'meta']", {"type": "integer"}),
        ("tuple[int, ...]", {"type": "array", "items": {"type": "integer"}}),
        ("set[str]", {"type": "array", "items": {"type": "string"}, "uniqueItems": True}),
    ],
)
def test_it_maps_each_annotation_kind_to_json_schema(annotation, expected):
    assert props(f"x: {annotation}")["x"] == expected


def test_it_wraps_optional_containers_in_any_of():
    assert props("x: Optional[list[int]]")["x"] == {
        "anyOf": [{"type": "array", "items": {"type": "integer"}}, {"type": "null"}]
    }


def test_it_accepts_anything_for_unannotated_and_unknown_types():
    found = props("a, b: Decimal")
    assert found["a"] == {}
    assert found["b"] == {"x-python-type": "Decimal"}


def test_it_marks_parameters_without_defaults_as_required_keyword_only_included():
    schema = parse("def run(context, a: int, b: int = 1, *, c: str, d: str = 'x'):\n pass\n")
    assert schema.params_schema["required"] == ["a", "c"]
    assert schema.params_schema["properties"]["d"]["default"] == "x"


def test_it_omits_a_default_that_is_not_json_and_keeps_the_param_optional():
    found = props("a: float = 1e999, b: set = {1}, c: tuple = (1, 'x')")
    assert "default" not in found["a"] and "default" not in found["b"]
    assert found["c"]["default"] == [1, "x"]


def test_it_omits_a_default_that_is_not_a_literal_but_keeps_the_param_optional():
    schema = parse("import os\ndef run(path: str = os.getcwd()):\n pass\n").params_schema
    assert "default" not in schema["properties"]["path"]
    assert "required" not in schema


def test_it_reads_summary_description_version_author_title_and_timeout():
    meta = parse('''
        """Archive a directory.

        Longer text
          shown on the page.
        """
        __version__ = "1.2.0"
        __author__ = "Ops team"
        __title__ = "Backups"
        TIMEOUT = 5 * 60

        def helper(a, *rest, flag=False, **more):
            """Helps."""

        def run(context):
            pass
    ''')
    assert meta.summary == "Archive a directory."
    assert meta.description == "Longer text\n  shown on the page."
    assert (meta.version, meta.author, meta.name, meta.timeout) == (
        "1.2.0",
        "Ops team",
        "Backups",
        300,
    )
    helper = meta.functions[0]
    assert helper["name"] == "helper" and helper["doc"] == "Helps."
    assert [(p["name"], p["kind"]) for p in helper["params"]] == [
        ("a", "positional"),
        ("rest", "var_positional"),
        ("flag", "keyword_only"),
        ("more", "var_keyword"),
    ]
    assert [f["name"] for f in meta.functions] == ["helper", "run"]


def test_it_takes_parameter_descriptions_from_a_google_style_args_section():
    meta = parse('''
        def run(context, source: str, keep: int = 5):
            """Back it up.

            Args:
                source (str): directory to archive,
                    with a continuation line.
                keep: how many to keep.

            Returns:
                the archive path. source: not a param line
            """
    ''')
    properties = meta.params_schema["properties"]
    assert properties["source"]["description"] == "directory to archive, with a continuation line."
    assert properties["keep"]["description"] == "how many to keep."


def test_it_ignores_a_docstring_without_an_args_section():
    assert parse_args_section("Just text.\n\nsource: not a section") == {}


def test_it_records_that_run_takes_a_context_only_when_the_first_parameter_is_named_context():
    assert parse("def run(context, a: int):\n pass\n").takes_context
    assert not parse("def run(a: int, context=None):\n pass\n").takes_context
    assert not parse("def run(ctx, a: int):\n pass\n").takes_context


def test_it_gives_legacy_args_kwargs_an_open_object_schema():
    meta = parse("def run(*args, **kwargs):\n    print(kwargs)\n")
    assert not meta.takes_context
    assert meta.params_schema == {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
    }
    assert Draft202012Validator(meta.params_schema).is_valid({"anything": [1, 2]})


def test_it_closes_the_schema_without_kwargs_so_unknown_params_are_refused():
    schema = parse("def run(context, a: int = 1):\n pass\n").params_schema
    assert not Draft202012Validator(schema).is_valid({"b": 1})


def test_a_params_schema_literal_overrides_the_derived_schema():
    meta = parse("""
        PARAMS_SCHEMA = {
            "type": "object",
            "properties": {"n": {"type": "integer", "minimum": 1}},
            "required": ["n"],
        }
        def run(context, **params):
            pass
    """)
    validator = Draft202012Validator(meta.params_schema)
    assert validator.is_valid({"n": 2})
    assert not validator.is_valid({"n": 0})
    assert meta.takes_context


@pytest.mark.parametrize(
    ("assignment", "message"),
    [
        ("PARAMS_SCHEMA = {'type': 'objekt'}", "not a valid JSON Schema"),
        ("PARAMS_SCHEMA = {'properties': {'n': {'minimum': 'one'}}}", "not a valid JSON Schema"),
        ("PARAMS_SCHEMA = dict(type='object')", "must be a literal dict"),
        ("PARAMS_SCHEMA = ['type', 'object']", "must be a literal dict"),
        ("PARAMS_SCHEMA = {'type': 'array'}", "must describe an object"),
    ],
)
def test_it_refuses_an_invalid_params_schema_with_its_line(assignment, message):
    with pytest.raises(PluginParseError) as info:
        parse(f"x = 1\n{assignment}\ndef run(context):\n    pass\n")
    assert message in str(info.value)
    assert str(info.value).startswith("line 2:")


def test_it_reports_a_syntax_error_with_its_line_number():
    with pytest.raises(PluginParseError) as info:
        parse("def ok():\n    pass\n\ndef run(context\n    pass\n")
    assert str(info.value).startswith("line 4:")


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("def helper():\n pass\n", "no top-level `def run(...)`"),
        ("async def run(context):\n pass\n", "not `async def`"),
        ("def run(context, a, /, b):\n pass\n", "positional-only"),
        ("TIMEOUT = 'soon'\ndef run():\n pass\n", "TIMEOUT must be a number"),
        ("TIMEOUT = -5\ndef run():\n pass\n", "positive whole number"),
        ("def run(x: Literal[len('a')]):\n pass\n", "Literal[...] values must be constants"),
        ("def run(x: Literal['\\x00']):\n pass\n", "NUL"),
    ],
)
def test_it_refuses_a_file_it_cannot_register_with_a_clear_message(source, message):
    with pytest.raises(PluginParseError) as info:
        parse(source)
    assert message in str(info.value)


def test_a_run_defined_inside_a_class_or_function_does_not_count():
    with pytest.raises(PluginParseError):
        parse("class Plugin:\n    def run(self):\n        pass\n")
