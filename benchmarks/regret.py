"""4. Cost regret: what the gateway paid vs the cheapest feasible route, under injected outages.

A seeded mixed workload (default clips, 20/50/80 steps, negative prompts, text-to-video, some
allowing degradation) runs on a ``VirtualClock`` through the default route (cheapest first,
failover on), 8 clips at a time, once without faults (control) and once with vendor outages
injected by probabilistic fault specs.

- billed: the emulator ledger's total (every billable job, including any on clips that failed);
- oracle: per delivered clip, the lowest price among vendors that can honor it (the adapters'
  declared capabilities; with ``allow_degrade``, vendors that would drop fields count) at the
  emulator's actual prices — Runware 0.02869 + 0.002947 × steps (default 30) rounded to 4 decimals,
  fal 0.20, WaveSpeed 0.15;
- regret = billed / oracle − 1; clips billed more than once = ledger ``billed_per_clip`` values > 1;
- clips that failed entirely are counted separately (they have no oracle price).

Whether Runware and WaveSpeed bill a job that fails is undocumented either way (fal's failed requests
are not billed). Every row is reported under both assumptions: "failed jobs free" (what the emulator
bills) and "failed jobs billed" (each failed Runware/WaveSpeed job in the ledger added at its price).
Each fault spec runs with ``Route(job_retries=0)`` and ``1`` over 10 seeds; the table gives the median
and the worst seed.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from decimal import Decimal
from typing import Any

from benchmarks.common import IMAGE, prompt
from gateway import Gateway, GatewayError, OviRequest, Route
from gateway.clock import VirtualClock
from gateway.emulator import Emulator
from gateway.emulator.base import clip_fingerprint
from gateway.emulator.fal import PRICE as FAL_PRICE
from gateway.emulator.runware import price_for
from gateway.emulator.wavespeed import PRICE as WAVESPEED_PRICE
from gateway.registry import Registry

FAULTS = {
    "outages": "runware.submit=503@0.2; wavespeed.status=503@0.1; fal.job=fail@0.05",
    "outages + drops + failed jobs": ("runware.submit=503@0.2,drop@0.02; runware.job=fail@0.03; "
                                      "wavespeed.submit=503@0.05,drop@0.01; wavespeed.status=503@0.1; "
                                      "fal.job=fail@0.05"),
}
"""The target applies to the first (the issue's example spec); the second adds accept-then-drop
submits (billed, answer lost) and failing Runware jobs."""
CONCURRENCY = 8
TARGET_REGRET = 0.01

# (kind, weight, request fields, allow_degrade)
MIX: list[tuple[str, int, dict[str, Any], bool]] = [
    ("i2v default", 30, {}, False),
    ("i2v 20 steps", 5, {"steps": 20}, False),
    ("i2v 50 steps", 10, {"steps": 50}, False),
    ("i2v 50 steps, degrade ok", 5, {"steps": 50}, True),
    ("i2v 80 steps", 10, {"steps": 80}, False),
    ("i2v negatives", 10, {"negative_prompt": "blur, text", "audio_negative_prompt": "hiss"}, False),
    ("i2v negatives, degrade ok", 5, {"negative_prompt": "blur, text"}, True),
    ("t2v default", 15, {"image": None}, False),
    ("t2v 40 steps", 5, {"image": None, "steps": 40}, False),
    ("t2v 40 steps, degrade ok", 5, {"image": None, "steps": 40}, True),
]


def workload(clips: int, seed: int) -> list[tuple[str, OviRequest, Route]]:
    rng = random.Random(seed)
    kinds = rng.choices(MIX, weights=[w for _, w, _, _ in MIX], k=clips)
    out = []
    for i, (kind, _, fields, degrade) in enumerate(kinds):
        fields = {"image": IMAGE, **fields}
        out.append((kind, OviRequest(prompt=prompt(i), **fields), Route(allow_degrade=degrade)))
    return out


Work = list[tuple[str, OviRequest, Route]]


def with_job_retries(work: Work, job_retries: int) -> Work:
    return [(kind, request, route.model_copy(update={"job_retries": job_retries})) for kind, request, route in work]


def actual_price(vendor: str, request: OviRequest) -> Decimal:
    """What the emulated vendor really bills for this clip."""
    return {"runware": lambda: price_for(request.steps), "fal": lambda: FAL_PRICE,
            "wavespeed": lambda: WAVESPEED_PRICE}[vendor]()


def oracle(request: OviRequest, route: Route, classes: dict[str, type]) -> tuple[str, Decimal] | None:
    """The cheapest vendor able to honor the clip, at actual prices (``None``: no vendor can)."""
    options = []
    for name, cls in classes.items():
        violations = cls.capabilities.violations(request)
        if violations and not (route.allow_degrade and all(v.field != "image" for v in violations)):
            continue
        options.append((actual_price(name, request), name))
    return (min(options)[1], min(options)[0]) if options else None


UNDOCUMENTED_FAILED_BILLING = ("runware", "wavespeed")
SEEDS = tuple(range(42, 52))


async def _run(clips: int, seed: int, faults: str | None, job_retries: int = 1) -> dict[str, Any]:
    clock = VirtualClock()
    emulator = Emulator(clock=clock, faults=faults, seed=seed)
    gateway = Gateway(emulator=emulator, clock=clock, journal=":memory:", jitter_seed=seed)
    classes = Registry.load().classes
    work = with_job_retries(workload(clips, seed), job_retries)
    limit = asyncio.Semaphore(CONCURRENCY)

    async def one(request: OviRequest, route: Route) -> Any:
        async with limit:
            try:
                return await gateway.agenerate(request, route=route)
            except GatewayError as error:
                return error

    outcomes = await asyncio.gather(*(one(request, route) for _, request, route in work))
    await gateway.aclose()

    billed_per_clip = emulator.ledger.billed_per_clip()
    delivered, failed = [], Counter()
    oracle_total = paid_delivered = Decimal(0)
    off_oracle = Counter()
    possible_extra = 0
    reported: dict[str, int] = {}  # per clip: jobs the caller was told may have been billed
    for (kind, request, route), outcome in zip(work, outcomes, strict=False):
        clip = clip_fingerprint(request.prompt, request.image.value if request.image else None)
        attempts = outcome.attempts
        reported[clip] = sum(1 for a in attempts if a.may_be_billed)
        if isinstance(outcome, GatewayError):
            failed[f"{kind}: {type(outcome).__name__}"] += 1
            continue
        best = oracle(request, route, classes)
        assert best is not None, kind
        delivered.append(clip)
        oracle_total += best[1]
        paid_delivered += sum((j.price for j in emulator.ledger.billable() if j.clip == clip), Decimal(0))
        possible_extra += outcome.possible_extra_charges
        if outcome.provider != best[0]:
            off_oracle[f"{kind}: {best[0]}->{outcome.provider}"] += 1
    billed = emulator.ledger.total()
    double = {clip: n for clip, n in billed_per_clip.items() if n > 1}
    # The other assumption: failed Runware/WaveSpeed jobs bill too.
    failed_jobs = [j for j in emulator.ledger.jobs if j.state == "failed" and j.vendor in UNDOCUMENTED_FAILED_BILLING]
    billed_if_failed_bill = billed + sum((j.price for j in failed_jobs), Decimal(0))
    per_clip_if_failed_bill = Counter(billed_per_clip)
    per_clip_if_failed_bill.update(j.clip for j in failed_jobs)
    double_if_failed_bill = sum(1 for n in per_clip_if_failed_bill.values() if n > 1)
    unreported_if_failed_bill = sum(1 for clip, n in per_clip_if_failed_bill.items()
                                    if n > max(1, reported.get(clip, 0)))
    return {
        "faults": faults or "none", "clips": clips, "delivered": len(delivered),
        "failed": sum(failed.values()), "failed_by_kind": dict(failed.most_common()),
        "billed_usd": str(billed), "billed_on_delivered_usd": str(paid_delivered),
        "billed_on_failed_usd": str(billed - paid_delivered), "oracle_usd": str(oracle_total),
        "regret": float(billed / oracle_total - 1) if oracle_total else None,
        "regret_delivered_only": float(paid_delivered / oracle_total - 1) if oracle_total else None,
        "job_retries": job_retries, "seed": seed,
        "billed_if_failed_bill_usd": str(billed_if_failed_bill),
        "regret_if_failed_bill": float(billed_if_failed_bill / oracle_total - 1) if oracle_total else None,
        "billed_more_than_once_if_failed_bill": double_if_failed_bill,
        "billed_more_than_once_unreported_if_failed_bill": unreported_if_failed_bill,
        "double_billed_clips": len(double), "possible_extra_charges_reported": possible_extra,
        "not_on_oracle_vendor": dict(off_oracle.most_common()),
        "calls": {v: {op: emulator.ledger.calls(v, op) for op in ("submit", "status", "result")}
                  for v in ("runware", "fal", "wavespeed")},
        "virtual_hours": clock.now() / 3600,
    }


def run(quick: bool = False) -> dict[str, Any]:
    clips = 60 if quick else 300
    seeds = SEEDS[:2] if quick else SEEDS
    control = {"name": "none (control)", **asyncio.run(_run(clips, seed=seeds[0], faults=None))}
    groups = []
    for name, spec in FAULTS.items():
        for job_retries in (0, 1):
            runs = [asyncio.run(_run(clips, seed=seed, faults=spec, job_retries=job_retries)) for seed in seeds]
            groups.append({"name": name, "job_retries": job_retries, "seeds": len(seeds), **_aggregate(runs),
                           "runs": runs})
    mix = Counter(kind for kind, _, _ in workload(clips, seeds[0]))
    target = next(g for g in groups if g["name"] == next(iter(FAULTS)) and g["job_retries"] == 1)
    return {"clips": clips, "concurrency": CONCURRENCY, "clock": "VirtualClock", "mix": dict(mix.most_common()),
            "control": control, "groups": groups,
            "target": {"applies_to": f"{target['name']}, job_retries=1", "regret_max": TARGET_REGRET,
                       "double_billed_max": 0,
                       "regret_met": target["regret"]["median"] < TARGET_REGRET,
                       "regret_met_worst": target["regret"]["worst"] < TARGET_REGRET,
                       "double_billing_met": all(g["double_billed_clips"]["worst"] == 0 for g in groups)}}


def _aggregate(runs: list[dict[str, Any]]) -> dict[str, Any]:
    def stat(key: str) -> dict[str, float]:
        values = sorted(float(r[key]) for r in runs)
        return {"median": values[len(values) // 2] if len(values) % 2 else
                (values[len(values) // 2 - 1] + values[len(values) // 2]) / 2, "worst": values[-1]}

    return {key: stat(key) for key in ("regret", "regret_if_failed_bill", "failed", "double_billed_clips",
                                       "billed_more_than_once_if_failed_bill",
                                       "billed_more_than_once_unreported_if_failed_bill",
                                       "possible_extra_charges_reported")}


def rows(result: dict[str, Any]) -> tuple[list[str], list[list[Any]], list[str]]:
    headers = ["faults injected", "job_retries", "seeds", "regret med / worst (failed jobs free)",
               "regret med / worst (failed jobs billed)", "failed clips med / worst", "billed >1x worst (free)",
               "billed >1x worst (billed)", "of those unreported", "extra charges reported med"]

    def pair(value: dict[str, float], percent: bool = False) -> str:
        if percent:
            return f"{100 * value['median']:.2f}% / {100 * value['worst']:.2f}%"
        return f"{value['median']:g} / {value['worst']:g}"

    c = result["control"]
    body = [[c["name"], 1, 1, f"{100 * c['regret']:.2f}%", f"{100 * c['regret_if_failed_bill']:.2f}%",
             c["failed"], c["double_billed_clips"], c["billed_more_than_once_if_failed_bill"],
             c["billed_more_than_once_unreported_if_failed_bill"], c["possible_extra_charges_reported"]]]
    for g in result["groups"]:
        body.append([g["name"], g["job_retries"], g["seeds"], pair(g["regret"], True),
                     pair(g["regret_if_failed_bill"], True), pair(g["failed"]), g["double_billed_clips"]["worst"],
                     g["billed_more_than_once_if_failed_bill"]["worst"],
                     g["billed_more_than_once_unreported_if_failed_bill"]["worst"],
                     g["possible_extra_charges_reported"]["median"]])
    notes = [f"{name}: {spec}" for name, spec in FAULTS.items()]
    notes += [f"{result['clips']} clips per run, {result['concurrency']} at a time on a {result['clock']}; default "
              "Route (some allow_degrade); journal in memory; the same seeded workload per seed in every row.",
              "regret = ledger total / oracle - 1, so money billed on clips that failed counts. 'failed jobs "
              "billed' adds every failed Runware/WaveSpeed job at its price (their billing of failed jobs is "
              "undocumented); 'of those unreported' counts clips billed more times than the caller's attempts "
              "say may have been billed (it should be 0: every such job is reported as possibly billed).",
              "Mix: " + ", ".join(f"{k} {n}" for k, n in result["mix"].items())]
    t = result["target"]
    notes.append(f"Target ({t['applies_to']}): regret < {100 * t['regret_max']:g}% -> median "
                 f"{'met' if t['regret_met'] else 'NOT met'}, worst {'met' if t['regret_met_worst'] else 'NOT met'}; "
                 f"zero double-billed with failed jobs free (every row, every seed) -> "
                 f"{'met' if t['double_billing_met'] else 'NOT met'}.")
    return headers, body, notes
