"""Matching concrete URIs against RFC 6570 level-1 templates."""

from __future__ import annotations

import pytest

from sp00ky_mcp.engine.uritemplate import match_template


def test_a_template_without_variables_matches_only_itself() -> None:
    assert match_template("res://items", "res://items") == {}
    assert match_template("res://items", "res://items/1") is None


def test_a_variable_captures_one_path_segment() -> None:
    assert match_template("res://items/{id}", "res://items/42") == {"id": "42"}


def test_several_variables_are_captured_by_name() -> None:
    template = "res://users/{user_id}/files/{name}"
    assert match_template(template, "res://users/u1/files/a.txt") == {
        "user_id": "u1",
        "name": "a.txt",
    }


def test_a_variable_can_share_a_segment_with_literal_text() -> None:
    assert match_template("res://items/{id}.json", "res://items/7.json") == {"id": "7"}


@pytest.mark.parametrize(
    "uri",
    [
        "res://items/",
        "res://items/a/b",
        "res://items/a?x=1",
        "res://items/a#frag",
        "res://other/1",
        "xres://items/1",
        "res://items/1/",
    ],
)
def test_a_uri_outside_the_template_does_not_match(uri: str) -> None:
    assert match_template("res://items/{id}", uri) is None


def test_the_whole_uri_must_match_not_just_a_prefix() -> None:
    assert match_template("res://a/{x}", "res://a/1extra/more") is None


def test_percent_encoded_values_are_decoded() -> None:
    assert match_template("res://items/{id}", "res://items/a%2Fb%20c") == {"id": "a/b c"}


def test_a_percent_encoded_utf8_value_is_decoded_to_text() -> None:
    assert match_template("res://tags/{tag}", "res://tags/%F0%9F%91%BB") == {"tag": "👻"}


def test_literal_text_with_regex_metacharacters_matches_literally() -> None:
    template = "res://q.v+1/(items)/{id}"
    assert match_template(template, "res://q.v+1/(items)/9") == {"id": "9"}
    assert match_template(template, "res://qXv+1/(items)/9") is None


def test_text_in_braces_that_is_not_a_variable_name_is_literal() -> None:
    assert match_template("res://{a-b}/{id}", "res://{a-b}/3") == {"id": "3"}
