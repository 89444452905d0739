"""A user's script, typed: the README quick start, async use, errors and routes. ``mypy --strict`` must pass it
(tests/public_api/test_user_script.py); it is type-checked only, never run."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from pathlib import Path

from gateway import (
    AllProvidersFailed,
    Budget,
    Event,
    Gateway,
    GatewayError,
    ImageInput,
    NoRoute,
    OviRequest,
    OviResult,
    PollPolicy,
    Quote,
    Route,
    SubmitOutcomeUnknown,
)


def quick_start() -> OviResult:
    req = OviRequest(
        image="https://example.com/knight.jpg",
        prompt="A knight in the rain. <S>I will defend this land.<E> <AUDCAP>Thunder, war drums.<ENDAUDCAP>",
        seed=42, steps=30,
        negative_prompt="jitter, blur",
        audio_negative_prompt="robotic, muffled",
    )
    gw = Gateway.offline()
    quotes: list[Quote] = gw.quote(req)
    for quote in quotes:
        print(quote.describe())
    result = gw.generate(req)
    saved: Path = result.download("knight.mp4")
    print(saved, result.provider, result.cost_usd, result.cost_source, [a.outcome for a in result.attempts])
    gw.generate(req, provider="fal")
    return gw.generate(req, route=Route(order=["wavespeed", "runware"], max_price="0.16", allow_degrade=True))


def images() -> list[ImageInput | None]:
    prompt = "A knight. <S>Hello.<E>"
    made = [OviRequest(prompt=prompt, image=Path("knight.png")), OviRequest(prompt=prompt, image=b"\x89PNG"),
            OviRequest(prompt=prompt, image=ImageInput.coerce("https://example.com/k.png")), OviRequest(prompt=prompt)]
    return [r.image for r in made]


def on_event(event: Event) -> None:
    if event.kind == "failover":
        print(f"{event.elapsed:.1f} s: now on {event.provider}")


async def async_use() -> Decimal | None:
    route = Route(only=["runware", "wavespeed"], max_price=Decimal("0.16"), deadline=300.0, max_tries=2)
    async with Gateway(keys={"runware": "rw-key"}, route=route, poll=PollPolicy(), jitter_seed=7, timeout=30.0,
                       budget=Budget(limit_usd="5", period="day")) as gw:
        try:
            result = await gw.agenerate(OviRequest(prompt="A knight. <S>Hi.<E>"), on_event=on_event,
                                        idempotency_key="clip-0001")
        except NoRoute as error:
            reasons: dict[str, list[str]] = error.reasons
            print(reasons)
            return None
        except SubmitOutcomeUnknown as error:
            print("maybe billed:", error.may_be_billed, error.provider)
            raise
        except AllProvidersFailed as error:
            print([a.outcome for a in error.attempts])
            return None
        except GatewayError as error:
            print(error.retryable, error.failover)
            return None
        return result.cost_usd


if __name__ == "__main__":
    quick_start()
    asyncio.run(async_use())
