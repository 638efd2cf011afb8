"""What a stored job tells about itself: its metrics, its validations and why it failed.

Read from the job's row and its result document only, so that every front end (and
`/metrics` on any of them) derives the same numbers whichever worker ran the job. The
result documents are the handlers' reports: a BuildReport for `build`, {ok, report,
error} for `validate`, an AdoptReport for `deploy`, a SeedReport for `seed`.
"""

from __future__ import annotations

import re
from typing import Any

from builder.jobs import Job, JobState
from server.rest.models import BuildMetrics, TestResults

_CLASS = re.compile(r"\[([a-z_]+)\]\s*$")
"""The failure class at the end of a digest's failed line: `case #0 add: wrong result [assertion]`."""


def _doc(job: Job) -> dict[str, Any]:
    return job.result if isinstance(job.result, dict) else {}


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def usage(job: Job) -> dict[str, Any]:
    """LLM calls, tokens and cost the job spent (builds report them; other kinds use no LLM)."""
    u = _dict(_doc(job).get("usage"))
    return {"calls": int(u.get("calls") or 0), "prompt_tokens": int(u.get("prompt_tokens") or 0),
            "completion_tokens": int(u.get("completion_tokens") or 0), "cost_usd": float(u.get("cost_usd") or 0.0)}


def phases(job: Job) -> dict[str, float]:
    """Seconds per phase of the job's work: a build's timings; the validation of a validate or deploy job."""
    doc = _doc(job)
    if job.kind == "build":
        return {str(k): float(v) for k, v in _dict(doc.get("timings")).items() if isinstance(v, int | float)}
    duration = _dict(doc.get("report")).get("duration")
    return {"validate": float(duration)} if isinstance(duration, int | float) else {}


def reuse(job: Job) -> str | None:
    """How a build reused a stored case: "exact" or "similar"; None when it did not."""
    doc = _doc(job)
    if job.kind != "build" or doc.get("outcome") != "reused":
        return None
    return "exact" if doc.get("reuse") == "exact" else "similar"


def _digest_of_report(report: dict[str, Any]) -> dict[str, Any]:
    """A full ValidationReport's digest, in the shape builds store (see builder.loop.ValidationDigest)."""
    checks = [c for c in _list(report.get("checks")) if isinstance(c, dict)]
    failed = [f"{c.get('name')}: {c.get('reason')} [{c.get('failure_class')}]" for c in checks if not c.get("passed")]
    return {"verdict": report.get("verdict"), "checks_passed": len(checks) - len(failed), "checks_total": len(checks),
            "failed": failed}


def validations(job: Job) -> list[dict[str, Any]]:
    """Every sandbox validation the job ran, as digests {verdict, checks_passed, checks_total, failed}, in order."""
    doc = _doc(job)
    if job.kind == "validate" and isinstance(doc.get("report"), dict):
        return [_digest_of_report(doc["report"])]
    if job.kind == "build":
        runs = [_dict(t).get("validation") for t in _list(doc.get("turns"))]
        if doc.get("outcome") == "reused":  # a reused case's re-validation is no turn of the loop
            runs.append(doc.get("validation"))
        return [r for r in runs if isinstance(r, dict)]
    if job.kind == "deploy":
        report = doc.get("report")
        return [_digest_of_report(report)] if isinstance(report, dict) else \
            [doc["validation"]] if isinstance(doc.get("validation"), dict) else []
    if job.kind == "seed":
        return [v for s in _list(doc.get("starters")) if isinstance(v := _dict(s).get("validation"), dict)]
    return []


def failure_class(digest: dict[str, Any]) -> str:
    """The class of a validation's first failure (its root cause), "none" when it passed."""
    for line in _list(digest.get("failed")):
        if m := _CLASS.search(str(line)):
            return m.group(1)
    return "none" if digest.get("verdict") == "pass" else "unknown"


def sandbox_runs(job: Job) -> list[tuple[str, str]]:
    """(verdict, failure class) of every sandbox validation the job ran."""
    return [(str(d.get("verdict") or "unknown"), failure_class(d)) for d in validations(job)]


def failure_type(job: Job) -> str:
    """Why a final job did not succeed, in one word: "none" when it did.

    cancelled, interrupted, job_timeout (its timeout_s ran out), a validation failure class
    (dependency, syntax, import, runtime, timeout, protocol, assertion, security), or error.
    """
    if job.state == JobState.succeeded:
        return "none"
    if job.state in (JobState.cancelled, JobState.interrupted):
        return job.state.value
    if (job.error or "").startswith("timed out after"):
        return "job_timeout"
    turns = _list(_doc(job).get("turns"))
    last = _list(_dict(turns[-1]).get("failures")) if turns else []
    if last and isinstance(last[0], dict) and last[0].get("error_class"):
        return str(last[0]["error_class"])
    failing = [d for d in validations(job) if d.get("verdict") == "fail"]
    return failure_class(failing[-1]) if failing else "error"


def test_results(job: Job) -> TestResults | None:
    """The validation that decided the job's outcome (the last one it ran), with its cases when stored."""
    runs = validations(job)
    if job.kind == "seed" or not runs or runs[-1].get("verdict") not in ("pass", "fail"):
        return None
    last = runs[-1]
    report = _dict(_doc(job).get("report"))
    return TestResults(verdict=last["verdict"], checks_passed=int(last.get("checks_passed") or 0),
                       checks_total=int(last.get("checks_total") or 0),
                       failed=[str(x) for x in _list(last.get("failed"))],
                       cases=[c for c in _list(report.get("cases")) if isinstance(c, dict)])


def metrics(job: Job) -> BuildMetrics:
    """The numbers of one job for its REST result."""
    u = usage(job)
    return BuildMetrics(
        kind=job.kind, queued_s=_span(job.created_at, job.started_at), run_s=_span(job.started_at, job.finished_at),
        llm_calls=u["calls"], prompt_tokens=u["prompt_tokens"], completion_tokens=u["completion_tokens"],
        cost_usd=u["cost_usd"], turns=len(_list(_doc(job).get("turns"))), reused=reuse(job), phases=phases(job))


def _span(start: float | None, end: float | None) -> float | None:
    return round(end - start, 3) if start is not None and end is not None else None
