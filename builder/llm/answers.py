"""Answering a build's question: the one function behind answer_build, `mcp-foundry answer` and sampling relays.

An answer is checked before it is stored, so that the build gets only answers it can use:
- the job must exist and be `waiting`, and the question must be its open question;
  otherwise the answer is refused and nothing changes;
- the answer must be a JSON object (given as an object, or as JSON text), valid against the
  question's answer schema and, for a builder model, against the pydantic model itself (the
  rules that relate two fields). An invalid answer is refused with one line per problem; the
  question stays open and the refusal is counted. At the question's `max_invalid`-th
  refusal (the attempts a model gets at the same request) it is given up, and the build
  fails as it would for a model that kept answering wrongly.
"""

from __future__ import annotations

import importlib
import json
import time
from typing import Any

import anyio
from jsonschema import Draft202012Validator
from pydantic import BaseModel, ValidationError

from builder.errors import InputError
from builder.jobs.model import Job, JobState, Question
from builder.jobs.store import JobStore

ACCEPTED = "a JSON object valid against the question's answer_schema, written as its instructions ask"
MAX_ANSWER_CHARS = 2_000_000
"""Largest answer accepted, as JSON text (a draft's files are at most 600 kB, escaped)."""
MAX_PROBLEM_LINES = 20
SETTLE_S = 5.0
"""answer() waits this long at most for the worker to take the answer up before it returns the job's status."""


def parse_answer(answer: Any) -> dict[str, Any]:
    """The answer as a JSON object: given as one, or as JSON text (agents often send text); InputError otherwise."""
    value = answer
    if isinstance(answer, str):
        if len(answer) > MAX_ANSWER_CHARS:
            raise InputError("answer", f"{len(answer)} characters of JSON text", f"at most {MAX_ANSWER_CHARS}")
        try:
            value = json.loads(answer)
        except json.JSONDecodeError as e:
            shown = answer[max(0, e.pos - 30):e.pos + 30].replace("\n", "\\n")
            raise InputError("answer", f"is not valid JSON: {e.msg} at line {e.lineno} column {e.colno} (near "
                             f"{shown!r})", f"{ACCEPTED}; as text, exactly one JSON object") from None
    if not isinstance(value, dict):
        kind = {list: "a list", str: "a string", bool: "a boolean", type(None): "null"}.get(type(value), "a number")
        raise InputError("answer", f"is {kind}, not a JSON object", ACCEPTED)
    if len(json.dumps(value)) > MAX_ANSWER_CHARS:
        raise InputError("answer", "is larger than the largest answer accepted",
                         f"at most {MAX_ANSWER_CHARS} characters of JSON")
    return value


def answer_model(path: str) -> type[BaseModel] | None:
    """The pydantic model a question names ('module:Class'), for models of the builder package only."""
    module, _, name = path.partition(":")
    if not name or not (module == "builder" or module.startswith("builder.")):
        return None
    try:
        found: Any = importlib.import_module(module)
        for part in name.split("."):
            found = getattr(found, part)
    except (ImportError, AttributeError):
        return None
    return found if isinstance(found, type) and issubclass(found, BaseModel) else None


def check_answer(question: Question, value: dict[str, Any]) -> list[str]:
    """One line per problem of `value` as an answer to `question` (empty when it is valid)."""
    def where(path: Any) -> str:
        return ".".join(str(p) for p in path) or "(root)"

    problems: dict[str, list[str]] = {}
    for err in Draft202012Validator(question.answer_schema).iter_errors(value):
        problems.setdefault(where(err.absolute_path), []).append(_short(err.message))
    model = answer_model(question.answer_model)
    if model is not None:
        try:
            model.model_validate_json(json.dumps(value))  # as complete_json will read it
        except ValidationError as e:
            schema_said = bool(problems)
            for err in e.errors(include_url=False):
                at = where(err["loc"])
                # What the schema already said (a field missing or not allowed, anything at a place it flagged) is
                # said once; what only the model knows (rules that relate fields) is added.
                if at in problems or (schema_said and err["type"] in ("missing", "extra_forbidden")):
                    continue
                problems.setdefault(at, []).append(_short(err["msg"]))
    lines = [f"{at}: {msg}" for at, msgs in sorted(problems.items()) for msg in msgs]
    if len(lines) > MAX_PROBLEM_LINES:
        lines = lines[:MAX_PROBLEM_LINES] + [f"... and {len(lines) - MAX_PROBLEM_LINES} more"]
    return lines


def _short(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit - 3] + "..."


def record_answer(store: JobStore, job_id: str, question_id: str, answer: Any) -> Job:
    """Check and store an answer to a waiting job's open question; returns the job.

    InputError, with nothing changed, for an unknown job, a job that is not waiting, or a
    question that is not the job's open one; InputError, with the refusal counted, for an
    answer that is not valid (one line per problem).
    """
    job = store.get(job_id)
    question = _the_question(store, job, question_id)
    try:
        value = parse_answer(answer)
        problems = check_answer(question, value)
    except InputError as e:
        problems, value = [f"the answer {e.problem}"], None
    if problems:
        refused = store.refuse_answer(question.id, "\n".join(problems))
        if refused is None:  # the job moved on meanwhile (cancelled, expired, answered from elsewhere)
            _the_question(store, store.get(job_id), question_id)
            raise InputError("question_id", f"question {question_id} is no longer open", _accepted_id(job_id, None))
        raise InputError("answer", _refusal(refused), ACCEPTED)
    assert value is not None
    if not store.answer_question(question.id, value):
        _the_question(store, store.get(job_id), question_id)
        raise InputError("question_id", f"question {question_id} is no longer open", _accepted_id(job_id, None))
    return store.get(job_id)


async def answer(store: JobStore, job_id: str, question_id: str, value: Any, *, settle_s: float = SETTLE_S,
                 poll_s: float = 0.05) -> Job:
    """record_answer, then the job's status once its worker has taken the answer up (at most `settle_s` later).

    What answer_build returns: usually the job running again (or, when the answer was
    the last thing it needed from the client for now, further on).
    """
    job = record_answer(store, job_id, question_id, value)
    deadline = anyio.current_time() + settle_s
    while job.state == JobState.waiting and anyio.current_time() < deadline:
        current = store.open_question(job_id)
        if current is not None and current.id != question_id:
            break  # already the next question
        await anyio.sleep(poll_s)
        job = store.get(job_id)
    return job


def _the_question(store: JobStore, job: Job, question_id: str) -> Question:
    """The job's open question if `question_id` names it; InputError saying what is wrong otherwise."""
    open_now = store.open_question(job.id) if job.state == JobState.waiting else None
    try:
        question = store.question(question_id)
    except InputError:
        question = None
    if question is None or question.job_id != job.id:
        raise InputError("question_id", f"job {job.id} has no question {question_id!r}", _accepted_id(job.id, open_now))
    if job.final:
        raise InputError("job_id", f"job {job.id} is {job.state.value}; it waits for no answer",
                         "a job whose build_status reads waiting and shows a question")
    if question.state == "answered":
        ago = f" {time.time() - question.answered_at:.0f} s ago" if question.answered_at else ""
        raise InputError("question_id", f"question {question_id} was already answered{ago}; the job has moved on",
                         _accepted_id(job.id, open_now))
    if question.state == "given_up":
        raise InputError("question_id", f"question {question_id} was given up after {question.invalid_answers} "
                         "invalid answers", _accepted_id(job.id, open_now))
    if job.state != JobState.waiting or open_now is None or open_now.id != question.id:
        raise InputError("job_id", f"job {job.id} is {job.state.value}, not waiting for an answer to "
                         f"{question_id}", _accepted_id(job.id, open_now))
    return question


def _accepted_id(job_id: str, open_now: Question | None) -> str:
    if open_now is not None:
        return f"the id of its open question, {open_now.id} ({open_now.kind})"
    return f"the id of the question build_status(job_id='{job_id}') shows while the job reads waiting"


def _refusal(q: Question) -> str:
    head = f"not a valid answer to {q.kind} question {q.id}"
    if q.state == "given_up":
        tail = (f"that was invalid answer {q.invalid_answers} of {q.max_invalid}: the question is given up and the "
                "build fails, as it would for a model that kept answering wrongly")
    else:
        tail = (f"invalid answer {q.invalid_answers} of at most {q.max_invalid}; the question stays open: "
                "answer it again")
    problems = "\n".join(f"- {line}" for line in (q.problems or "").splitlines())
    return f"{head} ({tail}):\n{problems}\n"
