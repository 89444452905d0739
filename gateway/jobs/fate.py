"""The fate of a vendor job: one rule, in one place.

Adapters report *facts* — what the vendor answered, sorted into the ``Answer`` kinds below — and only
``decide`` turns a phase and an answer into a ``Fate``. The runner and ``resume()`` act on the fate;
neither reads HTTP codes or error classes to judge a paid job. The rule (DESIGN §3, issue 9): once a
submit may have reached the vendor, the job ends only on the vendor's explicit word about *that job*
(a **verdict**); every other answer is a failed *check*, retried on the same job until the deadline or
``PollPolicy.max_wait``, then left open for ``resume()``.

Phase × answer → fate (``TABLE``; tests/test_fate.py checks this text against it and runs every row)::

    phase   answer            fate            what waiting costs
    send    not_sent          retry_or_next   nothing: no byte left (refused connect, 429/408, fal ingress 502-504)
    send    refused           retry_or_next   nothing: the vendor refused the payload (4xx, a foreign conflict)
    submit  ack               follow          polls only
    submit  job_in_answer     follow          polls only: an error answer named the job (fal x-fal-request-id)
    submit  no_answer         reconcile       Runware: resubmits of the same taskUUID, free; else nothing
    settle  ack               follow          polls only
    settle  conflict_ours     follow          polls only: Runware holds the taskUUID we sent (any resend)
    settle  no_answer         unknown         one possible charge, reported; open for resume()
    follow  pending           poll            polls only (queued, running, an unknown status)
    follow  done              read_result     one result read
    follow  job_failed        failed          a verdict: the next vendor may be paid (failover, job_retries)
    follow  job_refused       refused         a verdict: stop (unless failover_on_content_rejection)
    follow  check_failed      check_again     backoff, same job, until deadline or max_wait
    follow  out_of_time       unresolved      the job is open for resume(), may_be_billed
    result  clip              succeeded       —
    result  job_failed        failed          a verdict
    result  job_refused       refused         a verdict
    result  check_failed      check_again     backoff, a fresh status, same job, until deadline or max_wait
    result  out_of_time       unresolved      the job is open for resume(), may_be_billed
    resume  nothing_found     open            stays open; counted toward ABANDON_AFTER_RESUMES if RESUME_SPACING_S apart
    resume  past_retention    abandoned       terminal: may be billed, no clip; `jobs` and `spend` show it

Verdicts — the only answers an adapter may report as ``job_failed`` / ``job_refused`` (a returned
``JobStatus(FAILED)``, or an error marked with ``as_verdict``):

- Runware: a task item with ``status: "error"`` or a truthy ``code``/``errorId`` (the SDK's
  ``_is_error_response``), or an ``errors[]`` entry for our ``taskUUID`` whose code is not
  ``taskFailedOrNotFound`` nor any other *notfound* code, not about the request (auth, funds, rate),
  and not answered with HTTP 404 or 5xx (``taskCancelled`` is one).
- fal: a COMPLETED status carrying ``error``/``error_type``, or a result 5xx carrying the
  ``x-fal-error-type`` header (except ``internal_error``, fal's platform failing, not the model).
- WaveSpeed: ``data.status`` failed/cancelled/timeout/deleted, or an envelope ``code`` ≥ 1000.
- Any vendor: a content refusal about the job (``ContentRejected``).

Pushes (vendor webhooks) are read with the same rules, never more loosely (review finding 7): a
verified push answers a status check only when the adapter reads it as the poll would — fal's
``ERROR`` delivery through ``classify_http`` (phase ``result``; ``internal_error`` is no verdict),
WaveSpeed's pushed prediction through ``status_of`` — and any other push only wakes the follower.
Runware's push is unsigned and always confirmed by one ``getResponse``.

Never verdicts: ``taskFailedOrNotFound`` ("failed *or* not found") or any *notfound* code, any 404,
any request-level 4xx/5xx, a timeout, a malformed body. They are ``check_failed``.

On submit, an answer that names the job is the job (``ack``/``job_in_answer``), whatever else it
carries: a WaveSpeed HTTP 200 with a readable ``data.id`` (any envelope ``code``; the SDK reads only
those two), a fal answer with ``x-fal-request-id`` (5xx, or a 2xx whose body was lost). A WaveSpeed
non-200 other than 400/401/402/403/404/422/429 is ``no_answer`` (its SDK never re-sends a submit).

Deliberate paths that may pay twice, each opt-in and each reported:

- ``Route(failover_on_unknown=True)``: after ``SubmitOutcomeUnknown`` or ``JobUnresolved`` the next
  vendor is paid; the first job stays OPEN in the journal (never cancelled-and-closed: Runware and
  WaveSpeed cannot cancel) and the result's ``possible_extra_charges`` counts it (its attempt says
  ``may_be_billed``); a same-key call with this route reports earlier open submits the same way.
- ``Route(job_retries=n)``: after a *verdict* (the job failed at the vendor) a new job on the same
  vendor; the failed job's attempt carries ``may_be_billed`` when the vendor may charge failures
  (Runware, WaveSpeed), counted in ``possible_extra_charges``.
- ``Route(failover_on_defective=True)`` (the DefectiveClip opt-in): a delivered clip that fails
  verification is paid and kept on record, and the next vendor is paid; the defective job's attempt
  (``DefectiveClip``, ``may_be_billed``) is counted in ``possible_extra_charges``.
- An ``abandoned`` submit no longer blocks its key: a later same-key call may submit again, and its
  result reports the abandoned submit in ``possible_extra_charges``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, TypeVar

from gateway.errors import ContentRejected, GatewayError, SubmitOutcomeUnknown

__all__ = [
    "ABANDON_AFTER_RESUMES",
    "RESUME_SPACING_S",
    "RETENTION_MARGIN_S",
    "TABLE",
    "Answer",
    "Fate",
    "Phase",
    "answer_of",
    "as_verdict",
    "conflict_is_ours",
    "decide",
    "is_verdict",
    "past_retention",
    "strip_conflict",
]

ABANDON_AFTER_RESUMES = 5
"""A submit that this many ``resume()`` runs could not settle is ``abandoned`` (may be billed)."""
RESUME_SPACING_S = 600.0
"""Seconds between two fruitless resumes for both to count toward ``ABANDON_AFTER_RESUMES``."""
RETENTION_MARGIN_S = 3600.0
"""Seconds past a vendor's documented result retention before an unreadable job is ``abandoned``."""


class Phase(StrEnum):
    """Where a clip is. ``send``: nothing can have reached the vendor; ``submit``: the POST may have;
    ``settle``: reconciling an ambiguous submit (Runware: the same ``taskUUID`` again); ``follow``: the
    vendor acknowledged a job; ``result``: it said the job is done; ``resume``: a later run found it open."""

    SEND = "send"
    SUBMIT = "submit"
    SETTLE = "settle"
    FOLLOW = "follow"
    RESULT = "result"
    RESUME = "resume"


class Answer(StrEnum):
    """What the vendor said (a fact, as an adapter reports it), or that time ran out."""

    NOT_SENT = "not_sent"
    REFUSED = "refused"
    ACK = "ack"
    CONFLICT_OURS = "conflict_ours"
    JOB_IN_ANSWER = "job_in_answer"
    NO_ANSWER = "no_answer"
    PENDING = "pending"
    DONE = "done"
    JOB_FAILED = "job_failed"
    JOB_REFUSED = "job_refused"
    CHECK_FAILED = "check_failed"
    OUT_OF_TIME = "out_of_time"
    CLIP = "clip"
    NOTHING_FOUND = "nothing_found"
    PAST_RETENTION = "past_retention"


class Fate(StrEnum):
    """What happens next. Only ``failed``/``refused`` (verdicts) and ``succeeded`` end a paid job;
    ``retry_or_next`` applies only while nothing can have been billed (the error's own
    ``retryable``/``failover`` flags choose between the same vendor and the next)."""

    RETRY_OR_NEXT = "retry_or_next"
    FOLLOW = "follow"
    RECONCILE = "reconcile"
    UNKNOWN = "unknown"
    POLL = "poll"
    READ_RESULT = "read_result"
    CHECK_AGAIN = "check_again"
    UNRESOLVED = "unresolved"
    FAILED = "failed"
    REFUSED = "refused"
    SUCCEEDED = "succeeded"
    OPEN = "open"
    ABANDONED = "abandoned"


TABLE: dict[tuple[Phase, Answer], Fate] = {
    (Phase.SEND, Answer.NOT_SENT): Fate.RETRY_OR_NEXT,
    (Phase.SEND, Answer.REFUSED): Fate.RETRY_OR_NEXT,
    (Phase.SUBMIT, Answer.ACK): Fate.FOLLOW,
    (Phase.SUBMIT, Answer.JOB_IN_ANSWER): Fate.FOLLOW,
    (Phase.SUBMIT, Answer.NO_ANSWER): Fate.RECONCILE,
    (Phase.SETTLE, Answer.ACK): Fate.FOLLOW,
    (Phase.SETTLE, Answer.CONFLICT_OURS): Fate.FOLLOW,
    (Phase.SETTLE, Answer.NO_ANSWER): Fate.UNKNOWN,
    (Phase.FOLLOW, Answer.PENDING): Fate.POLL,
    (Phase.FOLLOW, Answer.DONE): Fate.READ_RESULT,
    (Phase.FOLLOW, Answer.JOB_FAILED): Fate.FAILED,
    (Phase.FOLLOW, Answer.JOB_REFUSED): Fate.REFUSED,
    (Phase.FOLLOW, Answer.CHECK_FAILED): Fate.CHECK_AGAIN,
    (Phase.FOLLOW, Answer.OUT_OF_TIME): Fate.UNRESOLVED,
    (Phase.RESULT, Answer.CLIP): Fate.SUCCEEDED,
    (Phase.RESULT, Answer.JOB_FAILED): Fate.FAILED,
    (Phase.RESULT, Answer.JOB_REFUSED): Fate.REFUSED,
    (Phase.RESULT, Answer.CHECK_FAILED): Fate.CHECK_AGAIN,
    (Phase.RESULT, Answer.OUT_OF_TIME): Fate.UNRESOLVED,
    (Phase.RESUME, Answer.NOTHING_FOUND): Fate.OPEN,
    (Phase.RESUME, Answer.PAST_RETENTION): Fate.ABANDONED,
}


def decide(phase: Phase, answer: Answer) -> Fate:
    """The fate for ``answer`` in ``phase``. A pair outside ``TABLE`` is a bug in the caller
    (``ValueError``), never a silent default."""
    try:
        return TABLE[(phase, answer)]
    except KeyError:
        raise ValueError(f"no fate for answer {answer} in phase {phase}") from None


_VERDICT = "_ovi_vendor_verdict"
E = TypeVar("E", bound=GatewayError)


def as_verdict(error: E) -> E:
    """Mark ``error`` as the vendor's explicit word that the job ended (see the verdict list above).
    Adapters call this; nothing else makes a raised error end a paid job."""
    setattr(error, _VERDICT, True)
    return error


def is_verdict(error: BaseException) -> bool:
    """Whether an adapter marked ``error`` with ``as_verdict``."""
    return bool(getattr(error, _VERDICT, False))


def answer_of(error: GatewayError, phase: Phase) -> Answer:
    """The fact an adapter's raised error reports, for ``phase``.

    After acceptance (``follow``/``result``) only a verdict ends the job; anything else is a failed
    check, whatever its class or HTTP code. On submit, an error naming the job (``job_hint["handle"]``)
    means the vendor has it; one that may have been billed is ``no_answer``; the rest were refused
    before any job existed.
    """
    if phase in (Phase.FOLLOW, Phase.RESULT):
        if not is_verdict(error):
            return Answer.CHECK_FAILED
        return Answer.JOB_REFUSED if isinstance(error, ContentRejected) else Answer.JOB_FAILED
    if isinstance(error, SubmitOutcomeUnknown) and isinstance(error.job_hint.get("handle"), dict):
        return Answer.JOB_IN_ANSWER
    if error.may_be_billed:
        return Answer.NO_ANSWER
    return Answer.NOT_SENT if error.retryable else Answer.REFUSED


def conflict_is_ours(task_key: str, *, sent_here: set[str] | frozenset[str],
                     journal_hash: str | None = None, request_hash: str | None = None) -> bool:
    """Whether a ``conflictTaskUUID`` answer for ``task_key`` names *our* task: this process sent that
    key before (an earlier try of the same submit), or the journal holds it under a clip whose request
    hash equals this request's. Anything else is another caller's task (seeded keys repeat across
    processes): following it would hand this caller another request's clip."""
    if task_key in sent_here:
        return True
    return journal_hash is not None and request_hash is not None and journal_hash == request_hash


def past_retention(created_at: str, retention_s: float | None, *, now: datetime | None = None) -> bool:
    """Whether a submit journaled at ``created_at`` (UTC ISO) is older than the vendor's documented
    result retention (seconds) plus ``RETENTION_MARGIN_S``. ``None`` retention: never."""
    if retention_s is None:
        return False
    started = datetime.fromisoformat(created_at)
    if started.tzinfo is None:
        started = started.replace(tzinfo=UTC)
    age = ((now or datetime.now(UTC)) - started).total_seconds()
    return age > retention_s + RETENTION_MARGIN_S


def strip_conflict(data: dict[str, Any]) -> dict[str, Any]:
    """Handle data without the adapter's ``conflict`` flag (it is a fact about one answer, not the job)."""
    return {k: v for k, v in data.items() if k != "conflict"}
