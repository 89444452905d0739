"""``ovi-gateway generate`` and ``demo``: one clip, paid for at most once however often the command runs.

Every ``generate`` runs under an idempotency key: ``--idempotency-key``, or one derived from the
canonical request (a local image by its content's sha256, not its path) and the resolved ``--out``
path. Rerunning the same command after a crash, an exit 4 or Ctrl-C therefore finishes the job already
paid for, or returns the clip already made, and says so; ``--new`` asks for a fresh variation. The
output path is checked before anything is paid; an existing file is a no-op success when its sha256 is
the recorded clip's, and is otherwise kept unless ``--force``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shlex
import tempfile
import uuid
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import click
import httpx

from gateway.cli import render
from gateway.cli.common import (
    UNSETTLED,
    Interrupted,
    blocked,
    build_request,
    cheapest_usable,
    echo_json,
    fail,
    names,
    open_gateway,
    reports_errors,
    request_options,
    run_options,
)
from gateway.client import Gateway
from gateway.errors import DefectiveClip, DownloadFailed, GatewayError
from gateway.request import OviRequest
from gateway.result import OviResult, defective_path
from gateway.routing.planner import Route
from gateway.store.journal import OPEN, request_hash

__all__ = ["SAMPLE_PNG", "SAMPLE_PROMPT", "check_out", "demo", "derive_key", "fetch", "file_sha256", "generate",
           "save"]

SAMPLE_PROMPT = "A knight in the rain. <S>I will defend this land.<E> <AUDCAP>Thunder, war drums.<ENDAUDCAP>"
SAMPLE_PNG = base64.b64decode(  # 8x8 grey PNG
    "iVBORw0KGgoAAAANSUhEUgAAAAgAAAAIAQMAAAD+wSzIAAAABlBMVEX///+/v7+jQ3Y5AAAADklEQVQI12P4AIX8EAgALgAD/aNpbtEAAAAASUVORK5CYII=")


# ---- keys and files ----------------------------------------------------------------------------
def derive_key(request: OviRequest, out: Path | None, *, nonce: str | None = None) -> str:
    """A stable idempotency key: the canonical request plus the resolved output path (``None``: the
    default, named from the key itself), and a ``nonce`` for a fresh variation (``--new``)."""
    # request_hash identifies the request by content: a local image by its bytes' sha256, never its path.
    material = {"request": request_hash(request.model_dump_json()),
                "out": None if out is None else str(out.resolve()), "nonce": nonce}
    digest = hashlib.sha256(json.dumps(material, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
    return f"cli-{digest[:32]}"


def default_out(key: str, request: OviRequest) -> Path:
    """``./ovi-<key>.<format>`` (the key's hex part, shortened): a rerun finds the same file."""
    return Path(f"ovi-{key.removeprefix('cli-')[:16]}.{(request.output_format or 'MP4').lower()}")


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 16), b""):
            digest.update(chunk)
    return digest.hexdigest()


def check_out(out: Path) -> None:
    """Fail with exit 2, before anything is paid, when ``out`` cannot receive the clip: a folder, or a
    place where no file can be created (``/proc/clip.mp4``, a read-only or missing folder we cannot make)."""
    if out.is_dir():
        fail(f"--out {out} is a folder; give a file path such as {out / 'clip.mp4'}", 2)
    folder = out.parent if str(out.parent) else Path(".")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".probe", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as error:
        fail(f"--out {out}: cannot write there ({error.strerror or error}); nothing was paid", 2)


def fetch(result: OviResult, out: Path, gw: Gateway, key: str) -> Path:
    """Download the clip to ``out`` and record its sha256 and size under ``key``, in the order that survives
    a kill at any point: into a hidden file beside ``out``, recorded, then renamed into place (a file at
    ``out`` is therefore always the recorded clip). The download is verified (``result.download``); a
    defective clip is kept as ``NAME.defective.EXT`` beside ``out``, never at ``out``."""
    partial = out.with_name(f".{out.name}.{key.rsplit('-', 1)[-1][:12]}.download")
    try:
        try:
            gw.download(result, partial)
        except DefectiveClip as error:
            if error.saved_to is not None:
                kept = defective_path(out)
                os.replace(error.saved_to, kept)
                error.saved_to = str(kept)
            raise
        if gw.journal is not None and gw.journal.get_clip(key) is not None:
            gw.journal.record_media(key, {"sha256": file_sha256(partial), "size": partial.stat().st_size,
                                          "path": str(out.resolve())})
        os.replace(partial, out)
    finally:
        partial.unlink(missing_ok=True)
    return out


def save(result: OviResult, out: Path, gw: Gateway, key: str) -> Path:
    """``fetch``, saying on stderr how the clip was verified, and ending the command (exit 3) with what to
    do when the download fails or the clip is defective (naming the paid job and where the file is kept)."""
    try:
        saved = fetch(result, out, gw, key)
        click.echo(render.media_line(result.media), err=True)
        return saved
    except DefectiveClip as error:
        fail(str(error), 3, f"job {result.job_id} on {result.provider} was paid; the file is kept at "
                            f"{error.saved_to} (not at {out}), its URL: {result.video_url}", error=error)
    except (DownloadFailed, httpx.HTTPError, OSError) as error:
        if gw.emulated and gw.emulator is not None and result.job_id not in _jobs_of(gw):
            fail(f"the clip under this key was made by a built-in emulator that has exited ({error})", 3,
                 "nothing was billed; pass --new for a new clip", error=error)
        fail(f"download of {result.video_url} failed: {error}", 3,
             "the clip is made (and paid); rerun the same command to fetch it again before it expires",
             error=error)


def _jobs_of(gw: Gateway) -> set[str]:
    """Job ids the gateway's own in-process emulator holds."""
    vendors = getattr(gw.emulator, "vendors", {})
    return {job_id for vendor in vendors.values() for job_id in getattr(vendor, "jobs", {})}


def resume_command(ctx: click.Context, key: str, derived: bool) -> str:
    """The exact command that finishes this clip: this one, with ``--new`` replaced by the key it drew."""
    parts = ["ovi-gateway", ctx.info_name or "generate"]
    for param in ctx.command.params:
        if not isinstance(param, click.Option) or param.name in ("new", "force", "idempotency_key"):
            continue
        value = ctx.params.get(param.name or "")
        if value is None or value is False or value == param.default:
            continue
        flag = max(param.opts, key=len)
        parts += [flag] if param.is_flag else [flag, str(value)]
    if not derived:
        parts += ["--idempotency-key", key]
    return shlex.join(parts)


# ---- generate ----------------------------------------------------------------------------------
@click.command()
@request_options
@click.option("--provider", help="Run on this vendor only (no failover).")
@click.option("--order", metavar="A,B", help="Try these vendors first, in this order, then the rest by price.")
@click.option("--max-price", metavar="USD", help="Leave out vendors quoting more than this per clip.")
@click.option("--allow-degrade", is_flag=True, help="Let a vendor ignore fields it cannot honor (listed as dropped).")
@click.option("--deadline", type=click.FloatRange(min=0, min_open=True), metavar="SECONDS",
              help="Give up after this many seconds (polling and backoff included).")
@click.option("--out", type=click.Path(path_type=Path),
              help="Where to save the clip (default: ./ovi-<key>.<format>, named from the idempotency key).")
@click.option("--idempotency-key", metavar="KEY",
              help="Run under this key: a rerun with it finishes or returns the clip instead of paying again "
                   "(default: derived from the request, the image's content and --out).")
@click.option("--new", is_flag=True, help="A fresh variation: a new key, so a new (paid) clip.")
@click.option("--force", is_flag=True, help="Overwrite an existing --out file that is not this clip.")
@click.option("--keep-dir", type=click.Path(file_okay=False, path_type=Path), metavar="DIR",
              help="Also download every finished clip into DIR as soon as it is done (<key>.<ext>), before "
                   "the vendor's URL can expire.")
@run_options
@reports_errors
def generate(request_file: Path | None, provider: str | None, order: str | None, max_price: str | None,
             allow_degrade: bool, deadline: float | None, out: Path | None, idempotency_key: str | None,
             new: bool, force: bool, keep_dir: Path | None, emulator: bool, emulator_url: str | None,
             faults: str | None, journal: str | None, as_json: bool, **flags: Any) -> None:
    """Make one clip, with live progress and failover; never pays twice.

    Runs on the cheapest capable vendor (or as --provider/--order say), shows each vendor's state and
    every retry and failover as it happens, downloads the clip to --out and prints the result. Rerun
    the same command after a crash or Ctrl-C to finish the job already paid for."""
    ctx = click.get_current_context()
    request = build_request(request_file, **flags)
    try:
        price = Decimal(max_price) if max_price is not None else None
    except InvalidOperation:
        raise click.BadParameter(f"{max_price!r} is not a USD amount", param_hint="--max-price") from None
    if idempotency_key and new:
        raise click.UsageError("--new draws a fresh key; it cannot be combined with --idempotency-key")
    key = idempotency_key or derive_key(request, out, nonce=uuid.uuid4().hex if new else None)
    target = out or default_out(key, request)
    check_out(target)
    gw = open_gateway(emulator=emulator, journal=journal, faults=faults, emulator_url=emulator_url,
                      keep_dir=keep_dir)
    names(provider, gw, "--provider")
    route = Route(order=names(order, gw, "--order") or None, max_price=price, allow_degrade=allow_degrade,
                  deadline=deadline)
    resume = None if ctx.meta.get("ovi.emulated") and not ctx.meta.get("ovi.loopback") else (
        resume_command(ctx, key, derived=idempotency_key is None and not new))
    recorded = _already(gw, key, target, force)
    if recorded is not None:
        _report(recorded, target, key, as_json, note="already saved: this file is the clip made earlier "
                                                     f"(job {recorded.job_id} on {recorded.provider}); nothing paid")
        return
    try:
        result = _run(gw, request, provider, route, key)
    except Interrupted as stop:
        _stopped(130, "interrupted", _open_jobs(gw, key, stop.jobs), resume, key, gw, None)
    except UNSETTLED as error:
        job = getattr(error, "job", None)
        hint = getattr(error, "job_hint", None) or {}
        jobs = [(error.provider or "?", getattr(job, "job_id", None) or hint.get("job_id") or "(id not known)")]
        _stopped(4, render.error_line(error), jobs, resume, key, gw, error)
    saved = save(result, target, gw, key)
    _report(result, saved, key, as_json, note=f"saved {saved} ({saved.stat().st_size} bytes)")


def _already(gw: Gateway, key: str, target: Path, force: bool) -> OviResult | None:
    """The recorded clip when ``target`` already holds it (a no-op); refuse (exit 2) to overwrite any
    other existing file unless ``force``; say when the clip was made or paid for by an earlier run."""
    clip = gw.journal.get_clip(key) if gw.journal is not None else None
    result = OviResult.model_validate_json(clip.result_json) if clip and clip.state == "succeeded" and \
        clip.result_json else None
    if result is not None and gw.emulated:
        result = result.model_copy(update={"emulated": True})
    if target.exists() and not force:
        sha = (clip.media or {}).get("sha256") if clip else None
        if result is not None and sha is not None and sha == file_sha256(target):
            return result
        why = ("it is not the clip recorded under this key" if sha else
               "no clip is recorded under this key to compare it with")
        fail(f"--out {target} exists and {why}; it is kept — pass --force to overwrite it or choose another "
             "--out (nothing was paid)", 2)
    if result is not None:
        click.echo(f"already made by an earlier run: job {result.job_id} on {result.provider}; "
                   "fetching it (nothing paid again)", err=True)
    elif clip is not None and gw.journal is not None:
        for record in gw.journal.submits(key):
            if record.state in OPEN and record.job_id:
                click.echo(f"resuming job {record.job_id} on {record.provider}, paid for by an earlier run "
                           "(not paying again)", err=True)
    return None


def _run(gw: Gateway, request: OviRequest, provider: str | None, route: Route, key: str) -> OviResult:
    try:
        return render.generate_with_progress(gw, request, provider=provider, route=route, idempotency_key=key,
                                             emulated=gw.emulated)
    except render.GenerationInterrupted as stop:
        raise Interrupted(stop.accepted) from None


def _open_jobs(gw: Gateway, key: str, seen: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """Every job of the clip that may still run: those the display saw accepted, and every open submit on
    record (one sent but not yet answered may hold a paid job too)."""
    jobs = list(seen)
    if gw.journal is not None:
        for record in gw.journal.submits(key):
            if record.state in OPEN and (record.provider, record.job_id or "") not in jobs:
                if record.job_id is None and any(vendor == record.provider for vendor, _ in jobs):
                    continue
                jobs.append((record.provider, record.job_id or "(sent, not yet acknowledged)"))
    return jobs


def _stopped(code: int, message: str, jobs: list[tuple[str, str]], resume: str | None, key: str, gw: Gateway,
             error: GatewayError | None) -> None:
    """Exit 4 or 130 naming every job that may still run, its vendor, and the exact command that
    finishes it (none for the built-in emulator, whose jobs end with this process)."""
    lines = [] if error is None else render.attempt_lines(error)
    if error is not None:
        hint = {**(getattr(error, "job_hint", None) or {}), "clip": key}
        lines.append("job: " + ", ".join(f"{k}={v}" for k, v in hint.items()))
    lines += [f"job {job_id} on {vendor} may still be running" + ("" if gw.emulated else " (and be billed)")
              for vendor, job_id in jobs]
    if resume is not None and jobs:
        lines.append(f"to finish it without paying again, run: {resume}")
    elif jobs:
        lines.append("(built-in emulator: its jobs end with this process; nothing was billed)")
    vendor, job_id = jobs[-1] if jobs else (None, None)
    extra = {"provider": vendor, "job_id": job_id, "idempotency_key": key, "resume": resume}
    fail(message, code, *lines, error=error, extra=extra if error is not None else {**extra, "error": "Interrupted"})


def _report(result: OviResult, saved: Path, key: str, as_json: bool, *, note: str) -> None:
    click.echo(note, err=True)
    if as_json:
        echo_json({"ok": True, **result.model_dump(mode="json"), "idempotency_key": key,
                   "emulated": result.emulated, "saved_to": str(saved)})
    else:
        render.stdout_console().print(render.result_table(result, str(saved)))


# ---- demo --------------------------------------------------------------------------------------
@click.command()
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=Path("ovi-demo.mp4"),
              show_default=True, help="Where to save the clip (the demo overwrites its own output).")
@reports_errors
def demo(out: Path) -> None:
    """Offline tour: quote, staged outage, failover.

    Against the built-in emulator: quotes a sample clip, explains which vendor is cheapest, makes that
    vendor refuse connections to its submits, and shows the run fail over and finish elsewhere."""
    check_out(out)
    console = render.stdout_console()
    with tempfile.TemporaryDirectory(prefix="ovi-demo-") as folder:
        image = Path(folder) / "knight.png"
        image.write_bytes(SAMPLE_PNG)
        request = OviRequest(prompt=SAMPLE_PROMPT, image=image)
        quoting = open_gateway(emulator=True, journal=":memory:",
                               notice="demo: using the built-in emulator (offline); nothing is billed")
        quotes = quoting.quote(request)
        best = cheapest_usable(quotes, blocked(quoting))
        if best is None:
            fail("no vendor can take the sample request", 3)
        console.print(render.quote_table(quotes, {}, best.provider))
        console.print(render.why_cheapest(quoting.book, request, quotes, best), markup=False)
        # Refused connections, not 5xx: a 5xx on submit may hide a paid job, which a vendor's own SDK
        # (and this gateway) never blindly pays for again elsewhere.
        faults = f"{best.provider}.submit=refuse*3"
        console.print(f"staging an outage: {best.provider} refuses the connection for its next 3 submits "
                      f"(--faults \"{faults}\")", markup=False)
        gw = open_gateway(emulator=True, journal=":memory:", faults=faults, notice="")
        try:
            result = render.generate_with_progress(gw, request, emulated=True)
        except render.GenerationInterrupted as stop:
            raise Interrupted(stop.accepted) from None
        saved = save(result, out, gw, result.idempotency_key or "")
    console.print(render.result_table(result, str(saved)))
    failed_over = result.provider != best.provider
    console.print(f"done: {'failed over from ' + best.provider + ' to ' if failed_over else 'made on '}"
                  f"{result.provider}; clip saved to {saved}", markup=False)
