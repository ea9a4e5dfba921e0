"""The one parser for request bodies, on every route and whatever the Content-Type: bounded JSON.

Bounds (each violation is a 400 naming it; the size bound is the server's `--max-body-bytes`, 413):
- text: the body must be UTF-8 JSON (the message gives the byte or character offset);
- integers: at most `MAX_INTEGER_DIGITS` digits (no tensor dtype holds more than 20; Python itself
  refuses to convert more than 4,300);
- nesting: at most `MAX_DEPTH` levels of arrays and objects (the deepest TF Serving input in a
  request is a few levels more than the tensor's rank, and numpy arrays have at most 64 dimensions).
  Python's C JSON decoder recurses once per level and stops at the interpreter's recursion limit
  with `RecursionError`, caught here; the exact limit is then checked on the parsed text in linear
  time (strings removed by a regular expression without backtracking, brackets counted by numpy).
"""

import json
import re

import numpy as np

from keras_moe.serving.specs import RequestError

MAX_DEPTH = 32
MAX_INTEGER_DIGITS = 100

# A JSON string in a text that is already known to be valid JSON: no backtracking.
_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"')
_OPEN = np.frombuffer(b"[{", np.uint8)
_CLOSE = np.frombuffer(b"]}", np.uint8)


def parse_json_body(raw):
    """`raw` request bytes -> the decoded JSON value, or `RequestError(400)` saying what is wrong."""
    try:
        text = bytes(raw).decode("utf-8")
    except UnicodeDecodeError as error:
        raise RequestError(f"The request body is not UTF-8 text ({error.reason} at byte {error.start}).") from None
    if not text.strip():
        raise RequestError('The request body is empty; expected a JSON object such as {"instances": [...]}.')
    try:
        value = json.loads(text, parse_int=_integer)
    except RecursionError:
        raise RequestError(_too_deep()) from None
    except json.JSONDecodeError as error:
        raise RequestError(
            f"The request body is not valid JSON: {error.msg} at line {error.lineno} column {error.colno} (character {error.pos})."
        ) from None
    if nesting_depth(text) > MAX_DEPTH:
        raise RequestError(_too_deep())
    return value


def nesting_depth(text):
    """The deepest nesting of arrays and objects in `text`, which must be valid JSON."""
    structure = _STRING.sub("", text).encode("ascii")  # outside strings, JSON is ASCII
    codes = np.frombuffer(structure, np.uint8)
    steps = np.isin(codes, _OPEN).astype(np.int32) - np.isin(codes, _CLOSE).astype(np.int32)
    return int(np.cumsum(steps).max(initial=0))


def _too_deep():
    return f"The request body nests arrays and objects more than {MAX_DEPTH} levels deep; the limit is {MAX_DEPTH}."


def _integer(digits):
    count = len(digits.lstrip("-"))
    if count > MAX_INTEGER_DIGITS:
        raise RequestError(
            f"The request body holds an integer of {count} digits ({digits[:20]}...); the limit is {MAX_INTEGER_DIGITS} digits."
        )
    return int(digits)
