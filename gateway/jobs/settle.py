"""Settling a submit: an ack (``acked``: whose task a ``conflict`` answer is), and a submit that may have
reached the vendor without an answer (``settle``): the vendor's own way, or not at all.

Runware dedupes by our ``taskUUID``, so the same submit is sent again until it is answered, as its SDK
does; fal and WaveSpeed can neither be asked nor safely sent twice, so the outcome is
``SubmitOutcomeUnknown`` and the submit stays open for ``resume()``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from gateway.contract import JobHandle, Provider, SubmitContext
from gateway.errors import GatewayError, ProviderRejected, SubmitOutcomeUnknown
from gateway.jobs import fate
from gateway.jobs.events import Event
from gateway.jobs.fate import Answer, Phase
from gateway.request import OviRequest

if TYPE_CHECKING:
    from gateway.jobs.runner import Runner

__all__ = ["acked", "settle"]


async def settle(runner: Runner, provider: Provider, request: OviRequest, ctx: SubmitContext,
                 error: GatewayError, started: float, deadline_at: float | None, sent: set[str]) -> JobHandle:
    """After a submit that may have reached the vendor: the job, settled the vendor's own way.

    A vendor that dedupes by our key (``reconcilable``: Runware's ``taskUUID``) gets the same
    submit again, as its SDK does, until one is answered with an ack or a ``conflictTaskUUID``;
    its absence from a lookup proves nothing (the first POST may only be late). The others can
    neither be asked nor safely sent the submit twice: ``SubmitOutcomeUnknown``.
    """
    runner.on_event(Event("reconcile", provider.name, runner.clock.now() - started, message=str(error)))
    hint = {"provider": provider.name, "idempotency_key": ctx.idempotency_key}
    if not provider.reconcilable:
        fate.decide(Phase.SETTLE, Answer.NO_ANSWER)
        raise SubmitOutcomeUnknown(
            f"the submit may have created a paid job ({error.message}); {provider.name} offers no way "
            "to look it up and a second submit could be billed again, so the gateway stops here",
            provider=provider.name, job_hint=hint)
    give_up = runner.clock.now() + runner.settle_window
    if deadline_at is not None:
        give_up = min(give_up, deadline_at)
    last: GatewayError = error
    tries = 0
    while True:
        tries += 1
        wait = runner._backoff(tries, last)
        if runner.clock.now() + wait > give_up:
            break
        await runner.clock.sleep(wait)
        try:
            async with runner._bounded(deadline_at, provider.name, "submit", submit=ctx):
                handle = await provider.submit(request, ctx)
        except GatewayError as again:
            if fate.answer_of(again, Phase.SUBMIT) is Answer.JOB_IN_ANSWER:
                fate.decide(Phase.SUBMIT, Answer.JOB_IN_ANSWER)
                return JobHandle.from_json(again.job_hint["handle"])  # type: ignore[attr-defined]
            last = again  # any other answer settles nothing: send the same key again
            continue
        return acked(provider, handle, ctx, sent)
    fate.decide(Phase.SETTLE, Answer.NO_ANSWER)
    raise SubmitOutcomeUnknown(f"the submit may have created a paid job ({error.message}) and resending "
                               f"the same key to {provider.name} got no answer ({last.message})",
                               provider=provider.name, job_hint=hint)


def acked(provider: Provider, handle: JobHandle, ctx: SubmitContext, sent: set[str]) -> JobHandle:
    """The handle of an acknowledged submit. A ``conflict`` answer (Runware's ``conflictTaskUUID``)
    is followed only when the task is ours (``fate.conflict_is_ours``: a resend of a key we sent);
    another caller's task is a refusal of ours, which created nothing."""
    if not handle.data.get("conflict"):
        fate.decide(Phase.SETTLE if ctx.idempotency_key in sent else Phase.SUBMIT, Answer.ACK)
        return handle
    if not fate.conflict_is_ours(ctx.idempotency_key, sent_here=sent):
        fate.decide(Phase.SEND, Answer.REFUSED)
        raise ProviderRejected(f"{provider.name} already holds a task under key {ctx.idempotency_key} that "
                               "this gateway did not send; not following another caller's task",
                               provider=provider.name)
    fate.decide(Phase.SETTLE, Answer.CONFLICT_OURS)
    return JobHandle(handle.provider, handle.job_id, fate.strip_conflict(dict(handle.data)))
