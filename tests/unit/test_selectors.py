"""Label selectors: kubectl's `-l` syntax, the LabelSelector API form, Service maps."""

from __future__ import annotations

import pytest

from podnet.api.selectors import Operator, Requirement, from_label_selector, from_map, parse

WEB = {"app": "web", "tier": "frontend"}


# --- parse: matching -------------------------------------------------------------


def test_equals_matches_same_value_only() -> None:
    sel = parse("app=web")
    assert sel.matches(WEB)
    assert not sel.matches({"app": "db"})
    assert not sel.matches({})


def test_double_equals_is_equality() -> None:
    assert parse("app==web").matches(WEB)
    assert not parse("app==db").matches(WEB)


def test_not_equals_matches_other_value_and_absent_key() -> None:
    sel = parse("app!=web")
    assert not sel.matches(WEB)
    assert sel.matches({"app": "db"})
    assert sel.matches({})


def test_in_matches_any_listed_value() -> None:
    sel = parse("tier in (frontend, backend)")
    assert sel.matches(WEB)
    assert sel.matches({"tier": "backend"})
    assert not sel.matches({"tier": "cache"})
    assert not sel.matches({})


def test_notin_matches_unlisted_value_and_absent_key() -> None:
    sel = parse("tier notin (frontend)")
    assert not sel.matches(WEB)
    assert sel.matches({"tier": "backend"})
    assert sel.matches({})


def test_bare_key_requires_the_key_to_exist() -> None:
    assert parse("app").matches({"app": ""})
    assert not parse("app").matches({"tier": "x"})


def test_bang_key_requires_the_key_to_be_absent() -> None:
    assert parse("!canary").matches(WEB)
    assert not parse("!canary").matches({"canary": "true"})


def test_commas_and_all_requirements() -> None:
    sel = parse("app=web,tier=frontend,!canary")
    assert sel.matches(WEB)
    assert not sel.matches({"app": "web", "tier": "backend"})
    assert not sel.matches({**WEB, "canary": "1"})


def test_whitespace_around_tokens_is_ignored() -> None:
    assert str(parse("  app  =  web , tier in ( a , b ) ")) == "app=web,tier in (a,b)"


def test_greater_and_less_than_compare_integers() -> None:
    assert parse("gen>3").matches({"gen": "4"})
    assert not parse("gen>3").matches({"gen": "3"})
    assert parse("gen<3").matches({"gen": "2"})
    assert not parse("gen<3").matches({"gen": "two"})


def test_empty_value_after_equals_selects_empty_label() -> None:
    sel = parse("app=")
    assert sel.matches({"app": ""})
    assert not sel.matches({"app": "web"})


def test_in_and_notin_are_values_inside_a_set() -> None:
    assert parse("mode in (in,notin)").matches({"mode": "notin"})


def test_empty_parentheses_hold_the_empty_value() -> None:
    assert str(parse("x in ()")) == "x in ()"
    assert parse("x in ()").matches({"x": ""})


def test_empty_items_between_commas_are_empty_values() -> None:
    assert str(parse("x in (foo,,baz)")) == "x in (,baz,foo)"


def test_prefixed_key_is_accepted() -> None:
    assert parse("app.kubernetes.io/name=web").matches({"app.kubernetes.io/name": "web"})


def test_none_labels_match_like_no_labels() -> None:
    assert parse("!app").matches(None)
    assert not parse("app").matches(None)


# --- parse: canonical string ---------------------------------------------------


def test_string_form_sorts_requirements_by_key() -> None:
    assert str(parse("b=2,a=1,!c")) == "a=1,b=2,!c"


def test_string_form_sorts_set_values() -> None:
    assert str(parse("x notin (z,y)")) == "x notin (y,z)"


def test_string_form_keeps_the_operator_spelling() -> None:
    assert str(parse("a==1,b!=2,c>3,d<4,e")) == "a==1,b!=2,c>3,d<4,e"


def test_string_form_round_trips() -> None:
    text = "app=web,env notin (dev,test),!canary,tier in (a,b)"
    assert str(parse(str(parse(text)))) == str(parse(text))


def test_empty_string_selects_everything() -> None:
    sel = parse("")
    assert sel.empty
    assert sel.matches({})
    assert str(sel) == ""


def test_nonempty_selector_is_not_empty() -> None:
    assert not parse("a").empty


# --- parse: errors -------------------------------------------------------------


def test_trailing_comma_is_an_error() -> None:
    with pytest.raises(ValueError, match="expected: identifier after ','"):
        parse("a=b,")


def test_operator_after_bang_key_is_an_error() -> None:
    with pytest.raises(ValueError, match="found '=', expected: ',' or 'end of string'"):
        parse("!a=b")


def test_in_without_parentheses_is_an_error() -> None:
    with pytest.raises(ValueError, match="expected: '\\('"):
        parse("a in b")


def test_unclosed_set_is_an_error() -> None:
    with pytest.raises(ValueError, match="unable to parse requirement"):
        parse("a in (b")


def test_two_words_without_operator_is_an_error() -> None:
    with pytest.raises(ValueError, match="expected: in, notin, =, ==, !=, gt, lt"):
        parse("a b")


def test_second_operator_is_an_error() -> None:
    with pytest.raises(ValueError, match="found '=', expected: ',' or 'end of string'"):
        parse("a=b=c")


def test_invalid_key_is_an_error_naming_the_key() -> None:
    with pytest.raises(ValueError, match='invalid label key "-a"'):
        parse("-a=b")


def test_invalid_value_is_an_error_naming_the_value() -> None:
    with pytest.raises(ValueError, match='invalid label value "b\\$"'):
        parse("a=b$")


def test_value_longer_than_63_characters_is_an_error() -> None:
    with pytest.raises(ValueError, match="no more than 63 characters"):
        parse("a=" + "x" * 64)


def test_non_integer_for_greater_than_is_an_error() -> None:
    with pytest.raises(ValueError, match="must be an integer"):
        parse("a>x")


def test_leading_comma_is_an_error() -> None:
    with pytest.raises(ValueError, match="found ',', expected: !, identifier, or 'end of string'"):
        parse(",a")


# --- from_label_selector ------------------------------------------------------


def test_nil_label_selector_matches_nothing() -> None:
    sel = from_label_selector(None)
    assert not sel.matches({})
    assert not sel.matches(WEB)
    assert not sel.empty


def test_empty_label_selector_matches_everything() -> None:
    sel = from_label_selector({})
    assert sel.empty
    assert sel.matches({})
    assert sel.matches(WEB)


def test_match_labels_require_each_pair() -> None:
    sel = from_label_selector({"matchLabels": {"tier": "frontend", "app": "web"}})
    assert sel.matches(WEB)
    assert not sel.matches({"app": "web"})
    assert str(sel) == "app=web,tier=frontend"


def test_match_expressions_use_each_operator() -> None:
    sel = from_label_selector(
        {
            "matchExpressions": [
                {"key": "tier", "operator": "In", "values": ["frontend", "backend"]},
                {"key": "env", "operator": "NotIn", "values": ["dev"]},
                {"key": "app", "operator": "Exists"},
                {"key": "canary", "operator": "DoesNotExist"},
            ]
        }
    )
    assert sel.matches(WEB)
    assert not sel.matches({**WEB, "env": "dev"})
    assert not sel.matches({**WEB, "canary": "x"})
    assert str(sel) == "app,!canary,env notin (dev),tier in (backend,frontend)"


def test_match_labels_and_expressions_are_anded() -> None:
    sel = from_label_selector(
        {
            "matchLabels": {"app": "web"},
            "matchExpressions": [{"key": "tier", "operator": "In", "values": ["db"]}],
        }
    )
    assert not sel.matches(WEB)
    assert sel.matches({"app": "web", "tier": "db"})


def test_unknown_expression_operator_is_an_error() -> None:
    with pytest.raises(ValueError, match='"Gt" is not a valid label selector operator'):
        from_label_selector({"matchExpressions": [{"key": "a", "operator": "Gt", "values": ["1"]}]})


def test_in_expression_without_values_is_an_error() -> None:
    with pytest.raises(ValueError, match="values set can't be empty"):
        from_label_selector({"matchExpressions": [{"key": "a", "operator": "In", "values": []}]})


def test_exists_expression_with_values_is_an_error() -> None:
    with pytest.raises(ValueError, match="values set must be empty"):
        from_label_selector({"matchExpressions": [{"key": "a", "operator": "Exists", "values": ["x"]}]})


# --- from_map and Requirement --------------------------------------------------


def test_service_map_requires_every_pair() -> None:
    sel = from_map({"app": "web"})
    assert sel.matches(WEB)
    assert not sel.matches({"app": "db"})


def test_empty_service_map_matches_everything() -> None:
    assert from_map({}).empty
    assert from_map({}).matches({"any": "thing"})


def test_service_map_string_is_sorted_pairs() -> None:
    assert str(from_map({"tier": "frontend", "app": "web"})) == "app=web,tier=frontend"


def test_requirement_new_validates_equals_arity() -> None:
    with pytest.raises(ValueError, match="one single value"):
        Requirement.new("a", Operator.EQUALS, ["x", "y"])
