"""The one bounded parser for request bodies (`keras_moe.serving.body`)."""

import json
import re

import pytest

from keras_moe.serving.body import MAX_DEPTH, MAX_INTEGER_DIGITS, nesting_depth, parse_json_body
from keras_moe.serving.specs import RequestError

EXCEPTION_NAMES = re.compile(r"\b\w*(Error|Exception)\b")


@pytest.mark.parametrize("raw, message", [
    (b"[" * 50_000 + b"]" * 50_000, "more than 32 levels deep"),
    (b'{"a":' * (MAX_DEPTH + 1) + b"1" + b"}" * (MAX_DEPTH + 1), "more than 32 levels deep"),
    (b'{"instances": [' + b"9" * 4301 + b"]}", "integer of 4301 digits"),
    (b'{"instances": [-' + b"9" * (MAX_INTEGER_DIGITS + 1) + b"]}", f"integer of {MAX_INTEGER_DIGITS + 1} digits"),
    (b'{"instances": ["\xff"]}', r"not UTF-8 text \(invalid start byte at byte 16\)"),
    (b"", "empty"),
    (b"  \n", "empty"),
    (b'{"instances": [', r"not valid JSON: Expecting value at line 1 column 16 \(character 15\)"),
    (b"instances=a&b=c", "not valid JSON"),  # what `curl -d` sends as a form
])
def test_bad_bodies_are_client_errors_that_name_the_problem(raw, message):
    with pytest.raises(RequestError, match=message) as error:
        parse_json_body(raw)
    assert error.value.status == 400
    assert not EXCEPTION_NAMES.search(str(error.value)), str(error.value)


def test_the_limits_themselves_are_accepted():
    deep = b"[" * MAX_DEPTH + b"1" + b"]" * MAX_DEPTH
    assert nesting_depth(deep.decode()) == MAX_DEPTH
    assert parse_json_body(deep) is not None
    assert parse_json_body(b"[" + b"9" * MAX_INTEGER_DIGITS + b"]") == [int("9" * MAX_INTEGER_DIGITS)]


def test_brackets_inside_strings_do_not_count():
    text = json.dumps({"instances": ["[[[[{{{{" * 100, 'quote \\" and [ ]']})
    assert nesting_depth(text) == 2
    assert parse_json_body(text.encode())["instances"][1] == 'quote \\" and [ ]'


def test_large_bodies_parse_in_linear_time():
    import time

    raw = json.dumps({"instances": ['the "cat" [sat] {on} the mat ' * 250_000]}).encode()  # ~7.5 MB
    start = time.perf_counter()
    parse_json_body(raw)
    assert time.perf_counter() - start < 5
