"""The JSON Schema subset validator: each keyword, and the exact sentence it returns."""

from __future__ import annotations

from typing import Any

import pytest

from sp00ky_mcp.engine.schema import Schema, validate

# type


@pytest.mark.parametrize(
    ("type_name", "value"),
    [
        ("object", {}),
        ("array", []),
        ("string", ""),
        ("boolean", False),
        ("null", None),
        ("integer", 0),
        ("integer", -12),
        ("integer", 3.0),
        ("number", 1),
        ("number", 1.5),
    ],
)
def test_a_value_of_the_declared_type_conforms(type_name: str, value: object) -> None:
    assert validate(value, {"type": type_name}) is None


@pytest.mark.parametrize(
    ("type_name", "value"),
    [
        ("object", []),
        ("array", {}),
        ("string", 1),
        ("boolean", 0),
        ("boolean", "true"),
        ("null", 0),
        ("null", ""),
        ("integer", 1.5),
        ("integer", "1"),
        ("number", "1"),
        ("number", None),
    ],
)
def test_a_value_of_another_type_is_named_in_the_sentence(type_name: str, value: object) -> None:
    assert validate(value, {"type": type_name}) == f"The arguments must be of type {type_name}."


@pytest.mark.parametrize("value", [True, False])
def test_a_boolean_is_not_an_integer(value: bool) -> None:
    assert validate(value, {"type": "integer"}) == "The arguments must be of type integer."


@pytest.mark.parametrize("value", [True, False])
def test_a_boolean_is_not_a_number(value: bool) -> None:
    assert validate(value, {"type": "number"}) == "The arguments must be of type number."


def test_an_integer_is_not_a_boolean() -> None:
    assert validate(1, {"type": "boolean"}) == "The arguments must be of type boolean."


def test_a_type_list_accepts_any_listed_type() -> None:
    schema: Schema = {"type": ["string", "null"]}
    assert validate(None, schema) is None
    assert validate("x", schema) is None


def test_a_type_list_names_every_type_when_none_matches() -> None:
    assert validate(1, {"type": ["string", "null"]}) == (
        "The arguments must be of type string or null."
    )


def test_no_type_keyword_accepts_anything() -> None:
    assert validate(object(), {}) is None


def test_an_unknown_keyword_is_ignored() -> None:
    assert validate("x", {"type": "string", "format": "email", "x-custom": 1}) is None


# enum and const


def test_a_value_in_the_enum_conforms() -> None:
    assert validate("b", {"enum": ["a", "b"]}) is None


def test_a_value_outside_the_enum_lists_the_choices() -> None:
    assert validate("c", {"enum": ["a", "b", 3, None]}) == (
        "The arguments must be one of 'a', 'b', 3, None."
    )


def test_a_value_equal_to_const_conforms() -> None:
    assert validate({"k": [1]}, {"const": {"k": [1]}}) is None


def test_a_value_other_than_const_names_the_constant() -> None:
    assert validate("no", {"const": "yes"}) == "The arguments must be 'yes'."


def test_const_is_checked_before_enum() -> None:
    assert validate("x", {"const": "y", "enum": ["z"]}) == "The arguments must be 'y'."


def test_a_null_const_is_still_enforced() -> None:
    assert validate(0, {"const": None}) == "The arguments must be None."


@pytest.mark.parametrize(
    ("value", "schema", "expected"),
    [
        (True, {"enum": [1, 2]}, "The arguments must be one of 1, 2."),
        (0, {"enum": [False]}, "The arguments must be one of False."),
        (1, {"const": True}, "The arguments must be True."),
        (False, {"const": 0}, "The arguments must be 0."),
    ],
    ids=["true-in-enum-1", "0-in-enum-false", "1-const-true", "false-const-0"],
)
def test_a_boolean_and_a_number_are_never_equal_in_enum_or_const(
    value: object, schema: Schema, expected: str
) -> None:
    assert validate(value, schema) == expected


def test_an_integral_float_equals_the_integer_in_enum() -> None:
    assert validate(1.0, {"enum": [1]}) is None


# strings


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("", "The arguments must be at least 2 characters."),
        ("a", "The arguments must be at least 2 characters."),
        ("ab", None),
        ("abcd", None),
        ("abcde", "The arguments must be at most 4 characters."),
    ],
)
def test_string_length_is_bounded_by_min_and_max_length(value: str, expected: str | None) -> None:
    assert validate(value, {"type": "string", "minLength": 2, "maxLength": 4}) == expected


def test_string_length_counts_code_points_not_bytes() -> None:
    assert validate("👻👻", {"maxLength": 2}) is None
    assert validate("ééé", {"maxLength": 2}) == "The arguments must be at most 2 characters."


def test_a_pattern_matches_anywhere_in_the_string() -> None:
    assert validate("id-42-x", {"pattern": "[0-9]+"}) is None


def test_a_string_not_matching_the_pattern_has_an_invalid_format() -> None:
    assert (
        validate("abc", {"pattern": "^[0-9]+$"})
        == "The arguments does not match the required format."
    )


def test_string_keywords_do_not_apply_to_other_types() -> None:
    assert validate(5, {"minLength": 10, "pattern": "^x$"}) is None


# numbers


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (0, "The arguments must be at least 1."),
        (0.5, "The arguments must be at least 1."),
        (1, None),
        (10, None),
        (10.5, "The arguments must be at most 10."),
        (11, "The arguments must be at most 10."),
    ],
)
def test_numbers_are_bounded_inclusively_by_minimum_and_maximum(
    value: float, expected: str | None
) -> None:
    assert validate(value, {"minimum": 1, "maximum": 10}) == expected


def test_a_fractional_bound_is_written_as_given() -> None:
    assert validate(0.1, {"minimum": 0.25}) == "The arguments must be at least 0.25."


def test_number_bounds_do_not_apply_to_booleans_or_strings() -> None:
    assert validate(True, {"minimum": 5}) is None
    assert validate("1", {"maximum": 0}) is None


# arrays


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ([], "The arguments must have at least 1 items."),
        ([1], None),
        ([1, 2], None),
        ([1, 2, 3], "The arguments must have at most 2 items."),
    ],
)
def test_array_length_is_bounded_by_min_and_max_items(
    value: list[int], expected: str | None
) -> None:
    assert validate(value, {"type": "array", "minItems": 1, "maxItems": 2}) == expected


def test_each_item_is_validated_against_items() -> None:
    assert validate(["a", "b"], {"items": {"type": "string"}}) is None


def test_the_first_bad_item_is_named_by_its_index() -> None:
    schema: Schema = {"items": {"type": "string"}}
    assert validate(["a", 2, 3], schema) == "Argument '[1]' must be of type string."


def test_array_length_is_checked_before_items() -> None:
    schema: Schema = {"maxItems": 1, "items": {"type": "string"}}
    assert validate([1, 2], schema) == "The arguments must have at most 1 items."


def test_a_list_valued_items_is_ignored() -> None:
    assert validate([1, "a"], {"items": [{"type": "string"}]}) is None


# objects


def test_a_missing_required_argument_is_named() -> None:
    schema: Schema = {"type": "object", "required": ["query", "limit"]}
    assert validate({"query": "x"}, schema) == "Missing required argument 'limit'."


def test_required_arguments_are_reported_in_schema_order() -> None:
    assert validate({}, {"required": ["b", "a"]}) == "Missing required argument 'b'."


def test_a_present_required_argument_may_be_null_when_untyped() -> None:
    assert validate({"a": None}, {"required": ["a"]}) is None


def test_properties_are_validated_by_their_schemas() -> None:
    schema: Schema = {"properties": {"limit": {"type": "integer", "minimum": 1}}}
    assert validate({"limit": 0}, schema) == "Argument 'limit' must be at least 1."


def test_additional_properties_are_allowed_by_default() -> None:
    assert validate({"extra": 1}, {"properties": {}}) is None


def test_additional_properties_false_rejects_an_unknown_argument() -> None:
    schema: Schema = {"properties": {"a": {}}, "additionalProperties": False}
    assert validate({"a": 1, "b": 2}, schema) == "Unknown argument 'b'; remove it."


def test_additional_properties_schema_validates_unknown_arguments() -> None:
    schema: Schema = {"properties": {"a": {}}, "additionalProperties": {"type": "string"}}
    assert validate({"a": 1, "b": "ok"}, schema) is None
    assert validate({"a": 1, "c": 3}, schema) == "Argument 'c' must be of type string."


def test_additional_properties_schema_does_not_apply_to_declared_properties() -> None:
    schema: Schema = {"properties": {"a": {"type": "integer"}}, "additionalProperties": False}
    assert validate({"a": 1}, schema) is None


def test_the_first_problem_follows_the_arguments_order() -> None:
    schema: Schema = {"properties": {"a": {"type": "string"}, "b": {"type": "string"}}}
    assert validate({"b": 1, "a": 2}, schema) == "Argument 'b' must be of type string."


def test_required_is_checked_before_properties() -> None:
    schema: Schema = {"required": ["z"], "properties": {"a": {"type": "string"}}}
    assert validate({"a": 1}, schema) == "Missing required argument 'z'."


def test_the_type_is_checked_before_anything_else() -> None:
    assert validate("x", {"type": "object", "required": ["a"]}) == (
        "The arguments must be of type object."
    )


# nested paths


TOOL_SCHEMA: Schema = {
    "type": "object",
    "required": ["q"],
    "additionalProperties": False,
    "properties": {
        "q": {"type": "string", "minLength": 1},
        "n": {"type": "integer", "minimum": 1, "maximum": 50},
        "filter": {
            "type": "object",
            "required": ["field"],
            "additionalProperties": False,
            "properties": {
                "field": {"type": "string", "enum": ["name", "owner"]},
                "values": {"type": "array", "items": {"type": "string", "maxLength": 3}},
            },
        },
        "tags": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["key"],
                "properties": {"key": {"type": "string", "pattern": "^[a-z]+$"}},
            },
        },
    },
}


def test_a_conforming_value_returns_none() -> None:
    assert validate({"q": "ghost", "n": 2}, TOOL_SCHEMA) is None


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        ({}, "Missing required argument 'q'."),
        ({"q": ""}, "Argument 'q' must be at least 1 characters."),
        ({"q": "x", "n": 51}, "Argument 'n' must be at most 50."),
        ({"q": "x", "n": True}, "Argument 'n' must be of type integer."),
        ({"q": "x", "filter": []}, "Argument 'filter' must be of type object."),
        ({"q": "x", "filter": {}}, "Missing required argument 'filter.field'."),
        (
            {"q": "x", "filter": {"field": "age"}},
            "Argument 'filter.field' must be one of 'name', 'owner'.",
        ),
        (
            {"q": "x", "filter": {"field": "name", "op": "eq"}},
            "Unknown argument 'filter.op'; remove it.",
        ),
        (
            {"q": "x", "filter": {"field": "name", "values": ["ok", "long"]}},
            "Argument 'filter.values[1]' must be at most 3 characters.",
        ),
        ({"q": "x", "tags": [{"key": "a"}, {}]}, "Missing required argument 'tags[1].key'."),
        (
            {"q": "x", "tags": [{"key": "A"}]},
            "Argument 'tags[0].key' does not match the required format.",
        ),
        ({"q": "x", "tags": [[]]}, "Argument 'tags[0]' must be of type object."),
    ],
)
def test_a_nested_problem_names_the_full_path(arguments: dict[str, Any], expected: str) -> None:
    assert validate(arguments, TOOL_SCHEMA) == expected


def test_an_explicit_path_prefixes_the_argument_name() -> None:
    assert validate(1, {"type": "string"}, "outer") == "Argument 'outer' must be of type string."


@pytest.mark.parametrize(
    ("arguments", "schema", "expected"),
    [
        (
            {"userId": 1},
            {"properties": {"userId": {"type": "string"}}},
            "Argument 'userId' must be of type string.",
        ),
        (
            {"pageSize": 0},
            {"properties": {"pageSize": {"minimum": 1}}},
            "Argument 'pageSize' must be at least 1.",
        ),
        (
            {"filter": {"ownerId": "x"}},
            {"properties": {"filter": {"properties": {"ownerId": {"enum": ["A"]}}}}},
            "Argument 'filter.ownerId' must be one of 'A'.",
        ),
    ],
    ids=["type", "minimum", "nested-enum"],
)
def test_an_argument_name_keeps_its_case_in_the_sentence(
    arguments: dict[str, Any], schema: Schema, expected: str
) -> None:
    assert validate(arguments, schema) == expected


def test_missing_and_unknown_argument_sentences_keep_the_case() -> None:
    assert validate({}, {"required": ["userId"]}) == "Missing required argument 'userId'."
    assert validate({"xY": 1}, {"additionalProperties": False}) == (
        "Unknown argument 'xY'; remove it."
    )
