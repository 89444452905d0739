"""The constructor signatures type checkers see stay in step with the models' fields.

``OviRequest`` (and other public models) declare a ``TYPE_CHECKING``-only ``__init__`` that says what the
validators accept; a field added to the model but not to that ``__init__`` would be invisible to users'
type checkers (or refused by them), so this test reads the source and compares.
"""

from __future__ import annotations

import ast
import inspect

import pytest
from pydantic import BaseModel

from gateway.request import OviRequest


def _typed_init_params(model: type[BaseModel]) -> list[str]:
    tree = ast.parse(inspect.getsource(model))
    cls = tree.body[0]
    assert isinstance(cls, ast.ClassDef)
    for node in cls.body:
        if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING":
            for inner in node.body:
                if isinstance(inner, ast.FunctionDef) and inner.name == "__init__":
                    return [a.arg for a in inner.args.kwonlyargs]
    raise AssertionError(f"{model.__name__} has no TYPE_CHECKING __init__")


@pytest.mark.parametrize("model", [OviRequest])
def test_typed_init_lists_every_field(model: type[BaseModel]) -> None:
    assert _typed_init_params(model) == list(model.model_fields)


def test_every_request_field_is_described() -> None:
    missing = [name for name, info in OviRequest.model_fields.items() if not info.description]
    assert missing == []
