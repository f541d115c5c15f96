"""Keyword arguments checked against the signature they are for (arroyo_core.arguments):
each value against its annotation, unknown names with a suggestion and the valid ones,
``**options`` followed to the base class, and the numpydoc text --help shows."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Literal

import pytest

from arroyo_core.arguments import check_arguments, metavar, parameters
from arroyo_core.errors import ConfigError


class Plugin:
    """A plug-in with one option of each kind.

    Parameters
    ----------
    count
        How many.
    scale, offset : float
        Applied to each value,
        in this order.
    name
        Text.
    flag
        On or off.
    shape
        Sizes.
    pair
        Exactly two.
    method
        One of two.
    limit
        A number or nothing.
    table
        Numbers by name.

    Notes
    -----
    not a parameter
        Nor is this.
    """

    def __init__(self, count: int = 1, scale: float = 1.0, offset: float = 0.0,
                 name: str = "x", flag: bool = False, shape: Iterable[int] = (2, 2),
                 pair: tuple[int, str] = (1, "a"), method: Literal["mean", "sum"] = "mean",
                 limit: int | None = None, table: dict[str, float] | None = None,
                 anything: Any = None) -> None:
        pass


@pytest.mark.parametrize("key,value,converted", [
    ("count", 3, 3), ("count", "10", 10), ("scale", 2, 2), ("scale", "0.5", 0.5),
    ("name", "y", "y"), ("name", 1, "1"), ("flag", True, True), ("flag", "false", False),
    ("shape", [4, 5], [4, 5]), ("shape", (4, 5), [4, 5]), ("pair", [2, "b"], (2, "b")),
    ("method", "sum", "sum"), ("limit", None, None), ("limit", 7, 7),
    ("table", {"a": 1}, {"a": 1}), ("anything", object, object),
], ids=lambda v: repr(v)[:20])
def test_a_value_that_fits_is_passed_as_its_type(key, value, converted):
    assert check_arguments(Plugin, {key: value}) == {key: converted}


@pytest.mark.parametrize("key,value,expected", [
    ("count", "abc", "an integer"), ("count", 2.5, "an integer"), ("count", True, "an integer"),
    ("scale", "lots", "a number"), ("scale", [1], "a number"), ("name", True, "a string"),
    ("flag", "maybe", "true or false"), ("flag", 1, "true or false"),
    ("shape", "4,5", "a list of integers"), ("shape", [4, "x"], "a list of integers"),
    ("pair", [1, "a", 2], "a list of 2 items"), ("method", "median", "one of 'mean', 'sum'"),
    ("limit", "none", "an integer or null"), ("table", {"a": "b"}, "a table or null"),
], ids=lambda v: repr(v)[:20])
def test_a_value_that_does_not_fit_names_the_option_and_what_was_expected(key, value, expected):
    with pytest.raises(ConfigError) as info:
        check_arguments(Plugin, {key: value})
    assert str(info.value) == f"option {key}: expected {expected}, got {value!r}"


def test_an_unknown_option_gets_a_suggestion_and_the_valid_ones():
    with pytest.raises(ConfigError) as info:
        check_arguments(Plugin, {"cuont": 1})
    assert str(info.value) == (
        "unknown option 'cuont'; did you mean 'count'? (valid: count, scale, offset, name, "
        "flag, shape, pair, method, limit, table, anything)")
    with pytest.raises(ConfigError, match=r"^unknown options 'a', 'nme'; did you mean 'name' "
                                          r"for 'nme'\? \(valid: count"):
        check_arguments(Plugin, {"a": 1, "nme": 2})


def test_options_for_a_class_that_takes_none_and_a_missing_required_one():
    class NoOptions:
        pass

    class Needs:
        def __init__(self, address: str, hwm: int = 1) -> None:
            pass

    with pytest.raises(ConfigError, match="^unknown option 'x': it takes no options$"):
        check_arguments(NoOptions, {"x": 1})
    with pytest.raises(ConfigError, match="^missing option 'address'$"):
        check_arguments(Needs, {"hwm": 2})
    assert check_arguments(Needs, {"hwm": "2"}, given=("address",)) == {"hwm": 2}


class Base:
    """Parameters
    ----------
    hwm
        Queue length.
    """

    def __init__(self, address: str, link: str, hwm: int = 100) -> None:
        pass


class Sub(Base):
    def __init__(self, address: str, link: str, topic: str = "t", **options: Any) -> None:
        super().__init__(address, link, **options)


class Open:
    def __init__(self, address: str, limit: int = 1, **options: Any) -> None:
        pass  # options go elsewhere (a transport), not to a base class


def test_options_passed_on_to_the_base_class_are_checked_there():
    params, others = parameters(Sub, given=("address", "link"))
    assert [(p.name, p.help) for p in params] == [("topic", ""), ("hwm", "Queue length.")]
    assert not others
    assert check_arguments(Sub, {"hwm": "5"}, given=("address", "link")) == {"hwm": 5}
    with pytest.raises(ConfigError, match="option hwm: expected an integer, got 'lots'"):
        check_arguments(Sub, {"hwm": "lots"}, given=("address", "link"))
    with pytest.raises(ConfigError, match="did you mean 'hwm'"):
        check_arguments(Sub, {"hwn": 5}, given=("address", "link"))


def test_options_that_lead_nowhere_are_passed_on_unchecked():
    assert check_arguments(Open, {"limit": "2", "hwm": "x"}, given=("address",)) == {
        "limit": 2, "hwm": "x"}
    assert parameters(Open, given=("address",))[1]


def test_functions_and_unresolvable_annotations():
    def factory(size: int, kind: NotImported = None) -> None:  # type: ignore[name-defined]  # noqa: F821
        pass

    assert check_arguments(factory, {"size": "3", "kind": 5}) == {"size": 3, "kind": 5}


def test_help_text_comes_from_the_numpydoc_parameters_section():
    params = {p.name: p for p in parameters(Plugin)[0]}
    assert params["count"].help == "How many."
    assert params["scale"].help == params["offset"].help == "Applied to each value, in this order."
    assert params["table"].help == "Numbers by name."  # the Notes section is not read
    assert params["anything"].help == ""
    assert params["count"].default == 1 and not params["count"].required


@pytest.mark.parametrize("annotation,shown", [
    (int, "INTEGER"), (float, "NUMBER"), (bool, "BOOLEAN"), (str, "TEXT"),
    (Iterable[int], "[INTEGER,...]"), (Sequence[str] | None, "[TEXT,...]"),
    (Literal["mean", "sum"], "[mean|sum]"), (int | None, "INTEGER"), (Any, "VALUE"),
])
def test_metavar(annotation, shown):
    assert metavar(annotation) == shown
