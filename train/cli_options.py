"""Argument types shared by the training command lines."""

from __future__ import annotations

import argparse
import json


def json_object(text: str) -> dict:
    """A JSON object of keyword arguments (a model's settings), or an argparse error that says what was wrong."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise argparse.ArgumentTypeError(f"not JSON ({error})") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"must be a JSON object of keyword arguments, got {text!r}")
    return value
