"""argparse types shared by every ``python -m tuning`` command: clear messages on bad numbers."""
from __future__ import annotations

import argparse


def _number(text: str, convert, ok, expected: str):
    try:
        value = convert(text)
    except ValueError:
        value = None
    if value is None or not ok(value):
        raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
    return value


def positive_int(text: str) -> int:
    return _number(text, int, lambda v: v >= 1, "a positive integer")


def non_negative_int(text: str) -> int:
    return _number(text, int, lambda v: v >= 0, "an integer >= 0")


def positive_float(text: str) -> float:
    return _number(text, float, lambda v: v > 0, "a positive number")


def non_negative_float(text: str) -> float:
    return _number(text, float, lambda v: v >= 0, "a number of seconds >= 0")
