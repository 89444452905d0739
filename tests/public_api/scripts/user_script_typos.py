"""The typed user script with typos: each line whose comment reads ``E: <text>`` must get a mypy error containing that
text on that line, and no other line may get one (tests/public_api/test_user_script.py). Never run."""

from __future__ import annotations

from decimal import Decimal

from gateway import Budget, Event, Gateway, OviRequest, Route


def typos() -> Decimal | None:
    route = Route(max_prise="0.16")  # E: Unexpected keyword argument "max_prise" for "Route"
    gw = Gateway(kyes={"fal": "k"})  # E: Unexpected keyword argument "kyes" for "Gateway"
    req = OviRequest(promt="A knight. <S>Hi.<E>")  # E: Unexpected keyword argument "promt" for "OviRequest"
    Route(max_price=0.16)  # E: Argument "max_price" to "Route" has incompatible type "float"
    Budget(limit_usd=1.5)  # E: Argument "limit_usd" to "Budget" has incompatible type "float"
    OviRequest(prompt="A knight. <S>Hi.<E>", image=3)  # E: Argument "image" to "OviRequest" has incompatible type "int"
    OviRequest(prompt="A knight. <S>Hi.<E>", steps="30")  # E: Argument "steps" to "OviRequest" has incompatible type
    Gateway.offline(faults="fal.submit=503", rout=route)  # E: Unexpected keyword argument "rout" for "offline"
    Gateway.offline(backoff_base="1")  # E: Argument "backoff_base" to "offline" of "Gateway" has incompatible type
    result = gw.generate(req, route=route, provder="fal")  # E: Unexpected keyword argument "provder" for "generate"
    return result.cost_usd + 0.5  # E: Unsupported operand types for + ("Decimal" and "float")


def on_event(event: Event) -> None:
    if event.kind == "failvoer":  # E: Non-overlapping equality check
        print(event.provider)
