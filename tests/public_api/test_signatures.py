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
from gateway.routing.planner import Route
from gateway.routing.pricing import Budget


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


@pytest.mark.parametrize("model", [OviRequest, Route, Budget])
def test_typed_init_lists_every_field(model: type[BaseModel]) -> None:
    assert _typed_init_params(model) == list(model.model_fields)


@pytest.mark.parametrize("model", [OviRequest, Route, Budget])
def test_every_field_is_described(model: type[BaseModel]) -> None:
    missing = [name for name, info in model.model_fields.items() if not info.description]
    assert missing == []


def test_descriptions_show_in_help() -> None:
    """``help(Route)`` / hover show each field's description (pydantic puts them in the JSON schema)."""
    schema = Route.model_json_schema()["properties"]
    assert "USD per clip" in schema["max_price"]["description"]
    assert "Seconds" in schema["deadline"]["description"]


def test_request_help_lists_each_field_with_units() -> None:
    doc = OviRequest.__doc__ or ""
    for name in OviRequest.model_fields:
        assert f"    {name}: " in doc
    assert "pixels" in doc and "bytes" in doc


def test_offline_passes_on_every_gateway_argument_it_does_not_set_itself() -> None:
    """``Gateway.offline(**options)`` is typed by ``GatewayOptions``: a new ``Gateway`` argument must be
    added there too, with the same type (or be one offline sets itself), or typed callers could not pass it."""
    from gateway import Gateway, GatewayOptions

    own = {"emulator", "journal", "seed", "jitter_seed", "transport", "http_client", "keys", "base_urls"}
    init = {name: p.annotation for name, p in inspect.signature(Gateway.__init__).parameters.items()
            if name != "self" and name not in own}
    # both are written under ``from __future__ import annotations``: compare the annotations as written
    options = {name: getattr(hint, "__forward_arg__", hint) for name, hint in GatewayOptions.__annotations__.items()}
    assert options == init
    assert GatewayOptions.__required_keys__ == frozenset()
