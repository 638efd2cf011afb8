"""The job store contract on each backend (SQLite, PostgreSQL): durability, the queue as a table, worker
liveness; then what only one backend has (upgrading an older SQLite store, PostgreSQL's migrations)."""

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from builder.errors import InputError
from builder.jobs import JobState, SqliteJobStore
from builder.jobs.model import Question
from builder.jobs.sqlite import SCHEMA_VERSION


def _sql(store, sql: str, *args) -> int:
    """Run one raw write on either backend (for what a test must fake: a worker on another machine)."""
    if isinstance(store, SqliteJobStore):
        return store._write(sql, args)
    return store._write(sql.replace("?", "%s"), args)


def test_unknown_job_id_names_the_field(store):
    with pytest.raises(InputError) as e:
        store.get("nope")
    assert e.value.field == "job_id" and "nope" in str(e.value)


def test_state_and_log_survive_reopening(open_store, store):
    job = store.create("validate", {"path": "/x"}, timeout_s=60)
    worker = store.register_worker(max_jobs=1, lease_s=30)
    assert store.claim_next(worker.id, ["validate"]).id == job.id
    store.append_log(job.id, "first")
    store.append_log(job.id, "second")
    assert store.finish(job.id, JobState.succeeded, result={"ok": True}, worker_id=worker.id)
    store.close()
    again = open_store()
    got = again.get(job.id)
    assert got.state == "succeeded" and got.result == {"ok": True} and got.progress == 1.0
    assert got.worker == worker.id
    assert [line.split(" ", 1)[1] for line in again.log(job.id)] == ["first", "second"]
    assert [line.split(" ", 1)[1] for line in again.log(job.id, tail=1)] == ["second"]
    assert not again.finish(job.id, JobState.failed)  # final is final


def test_claim_takes_the_highest_priority_then_the_oldest_and_only_known_kinds(store):
    worker = store.register_worker(max_jobs=4, lease_s=30)
    ids = {name: store.create(kind, {}, timeout_s=60, priority=prio).id for name, kind, prio in
           (("low", "k", "low"), ("n1", "k", "normal"), ("other", "x", "high"), ("high", "k", "high"),
            ("n2", "k", "normal"))}
    claimed = [store.claim_next(worker.id, ["k"]) for _ in range(5)]
    assert [j.id if j else None for j in claimed] == [ids["high"], ids["n1"], ids["n2"], ids["low"], None]
    assert store.get(ids["other"]).state == "queued"


def test_a_job_is_claimed_once_when_workers_race_for_it(open_store):
    """Three workers, each with its own connection, claim 30 jobs at once: every job runs exactly once."""
    front = open_store()
    stores = [open_store() for _ in range(3)]
    job_ids = {front.create("k", {"n": i}, timeout_s=60).id for i in range(30)}
    claims: dict[str, list[str]] = {}
    start = threading.Barrier(3)

    def work(name: str) -> None:
        s = stores[int(name[1:])]
        me = s.register_worker(max_jobs=1, lease_s=30)
        got = claims.setdefault(name, [])
        start.wait()
        while (job := s.claim_next(me.id, ["k"])) is not None:
            got.append(job.id)
            s.finish(job.id, JobState.succeeded, result={}, worker_id=me.id)

    threads = [threading.Thread(target=work, args=(f"w{i}",)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    everything = [j for got in claims.values() for j in got]
    assert sorted(everything) == sorted(job_ids)  # each exactly once
    assert {j.state for j in front.list(limit=100)} == {"succeeded"}


def test_running_job_of_a_killed_worker_process_becomes_interrupted_at_once(open_store, tmp_path):
    reader = open_store()
    if isinstance(reader, SqliteJobStore):
        opener = f"from builder.jobs import SqliteJobStore as S; s = S(Path({str(reader.path)!r}))"
    else:
        opener = f"from builder.jobs.postgres import PostgresJobStore as S; s = S({reader.url!r})"
    child = textwrap.dedent(f"""
        import time
        from pathlib import Path
        from builder.jobs import JobState
        {opener}
        me = s.register_worker(max_jobs=2, lease_s=3600)
        done = s.create("validate", {{}}, timeout_s=60); s.claim_next(me.id, ["validate"])
        s.finish(done.id, JobState.succeeded, result={{"x": 1}}, worker_id=me.id)
        run = s.create("validate", {{}}, timeout_s=60); s.claim_next(me.id, ["validate"])
        queued = s.create("validate", {{}}, timeout_s=60)
        print(done.id, run.id, queued.id, flush=True)
        time.sleep(60)
    """)
    p = subprocess.Popen([sys.executable, "-c", child], stdout=subprocess.PIPE, text=True)
    done, running, queued = p.stdout.readline().split()
    assert reader.get(running).state == "running" and len(reader.workers()) == 1  # alive: nothing is taken
    assert reader.reap() == []
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    # A reader (`status`, build_status) sees the death at once, although its lease has an hour to run.
    assert reader.get(running).state == "interrupted" and "stopped" in reader.get(running).error
    assert reader.workers() == []
    fresh = open_store()
    assert fresh.reap() == []  # the reader already marked it; the dead worker's row is gone
    assert fresh.get(queued).state == "queued"  # queued work is not lost: the next worker claims it
    assert fresh.get(done).result == {"x": 1} and fresh.get(done).state == "succeeded"


def test_a_worker_elsewhere_is_alive_while_its_lease_runs_and_dead_after(store):
    """A worker on another machine cannot be checked by pid: its heartbeat lease decides."""
    worker = store.register_worker(max_jobs=1, lease_s=5)
    job = store.create("k", {}, timeout_s=60)
    store.claim_next(worker.id, ["k"])
    # What a worker on another machine looks like in a shared store.
    _sql(store, "UPDATE workers SET host = 'elsewhere', pid = 1 WHERE id = ?", worker.id)
    assert store.get(job.id).state == "running" and [w.id for w in store.workers()] == [worker.id]
    _sql(store, "UPDATE workers SET heartbeat_at = heartbeat_at - 6 WHERE id = ?", worker.id)
    assert store.reap() == [job.id]
    assert store.get(job.id).state == "interrupted" and store.workers() == []
    # The worker that lost its lease learns it at its next heartbeat, and its late writes change nothing.
    assert not store.heartbeat(worker.id)
    assert not store.update(job.id, worker.id, progress=0.9, phase="late")
    assert not store.finish(job.id, JobState.succeeded, result={}, worker_id=worker.id)
    assert store.get(job.id).state == "interrupted"


def test_cancel_request_cancels_a_queued_job_and_flags_a_held_one(store):
    worker = store.register_worker(max_jobs=1, lease_s=30)
    held = store.create("k", {}, timeout_s=60)
    store.claim_next(worker.id, ["k"])
    queued = store.create("k", {}, timeout_s=60)
    assert store.request_cancel(queued.id).state == "cancelled"
    flagged = store.request_cancel(held.id)
    assert flagged.state == "running" and flagged.cancel_requested
    assert store.cancel_requests(worker.id) == [held.id]
    assert store.claim_next(worker.id, ["k"]) is None  # the cancelled one is never claimed


def _moved(store, than: int, within_s: float = 5.0) -> int:
    """changes() once it differs from `than` (PostgreSQL delivers its notifications a moment after the commit)."""
    deadline = time.monotonic() + within_s
    while (now := store.changes()) == than and time.monotonic() < deadline:
        time.sleep(0.01)
    return now


def test_changes_moves_on_writes_from_this_and_other_connections(open_store, store):
    other = open_store()
    first = store.changes()
    time.sleep(0.1)
    assert store.changes() == first  # nothing happened
    job = other.create("k", {}, timeout_s=60)
    second = _moved(store, first)
    assert second != first
    store.append_log(job.id, "a line")
    assert _moved(store, second) != second and store.get(job.id).rev > job.rev


def test_counts_group_jobs_by_kind_priority_and_state(store):
    worker = store.register_worker(max_jobs=1, lease_s=30)
    for kind, prio in (("a", "high"), ("a", "normal"), ("a", "normal"), ("b", "low")):
        store.create(kind, {}, timeout_s=60, priority=prio)
    store.claim_next(worker.id, ["a"])  # the high one
    got = {(c.kind, c.priority, c.state): c.n for c in store.counts()}
    assert got == {("a", "high", "running"): 1, ("a", "normal", "queued"): 2, ("b", "low", "queued"): 1}


def test_eta_is_estimated_from_progress(store):
    worker = store.register_worker(max_jobs=1, lease_s=30)
    job = store.create("k", {}, timeout_s=60)
    store.claim_next(worker.id, ["k"])
    store.update(job.id, worker.id, progress=0.5, phase="p")
    eta = store.get(job.id).eta_s(now=time.time() + 10)
    assert eta is not None and 9 < eta < 11


V1_SCHEMA = """
CREATE TABLE jobs (
    id TEXT PRIMARY KEY, kind TEXT NOT NULL, state TEXT NOT NULL, phase TEXT NOT NULL,
    progress REAL NOT NULL, message TEXT NOT NULL, params TEXT NOT NULL, result TEXT, error TEXT,
    created_at REAL NOT NULL, started_at REAL, finished_at REAL, updated_at REAL NOT NULL,
    timeout_s REAL NOT NULL, owner TEXT NOT NULL, seq INTEGER NOT NULL
);
CREATE INDEX jobs_state ON jobs(state, seq);
CREATE TABLE job_logs (
    job_id TEXT NOT NULL, n INTEGER NOT NULL, ts REAL NOT NULL, line TEXT NOT NULL, PRIMARY KEY (job_id, n)
);
"""


def test_a_store_of_the_single_process_version_is_upgraded_in_place(tmp_path):
    path = tmp_path / "jobs.sqlite3"
    db = sqlite3.connect(path)
    db.executescript(V1_SCHEMA)
    now = time.time()
    rows = [("done", "succeeded", '{"priority": "normal"}', '{"ok": true}', "1:1", 1),
            ("gone", "running", "{}", None, "999999999:12345", 2),  # its process is long dead
            ("late", "queued", '{"priority": "high"}', None, "999999999:12345", 3),
            ("early", "queued", "{}", None, "999999999:12345", 4)]
    for job_id, state, params, result, owner, seq in rows:
        db.execute("INSERT INTO jobs VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                   (job_id, "validate", state, state, 0.0, "", params, result, None, now, None, None, now, 60.0,
                    owner, seq))
    db.execute("INSERT INTO job_logs VALUES ('done', 1, ?, 'verdict: pass')", (now,))
    db.commit()
    db.close()

    store = SqliteJobStore(path)
    assert store.get("done").result == {"ok": True} and store.log("done")[0].endswith("verdict: pass")
    assert store.get("gone").state == "interrupted"
    assert store.get("late").priority == "high"
    worker = store.register_worker(max_jobs=1, lease_s=30)
    assert store.claim_next(worker.id, ["validate"]).id == "late"  # its priority came out of its params
    assert sqlite3.connect(path).execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


def _question(job_id: str, qid: str = "q1", max_invalid: int = 2) -> Question:
    return Question(id=qid, job_id=job_id, kind="code", messages=[{"role": "user", "content": "write it"}],
                    answer_schema={"type": "object"}, answer_model="builder.draft:ServerDraft", turn=1, turns_left=2,
                    asked_at=time.time(), max_invalid=max_invalid)


def test_a_question_is_asked_for_a_held_job_answered_once_and_survives_reopening(open_store):
    store = open_store()
    worker = store.register_worker(max_jobs=1, lease_s=30)
    job = store.create("build", {}, timeout_s=60)
    assert not store.ask(_question(job.id), worker.id)  # queued: no worker holds it
    store.claim_next(worker.id, ["build"])
    assert not store.ask(_question(job.id), "another-worker")
    before = store.get(job.id).rev
    assert store.ask(_question(job.id), worker.id)
    assert store.get(job.id).rev > before  # readers polling changes() see the question
    assert store.open_question(job.id).id == "q1"
    assert not store.answer_question("q1", {"files": {}})  # the job still runs: it does not wait yet
    store.update(job.id, worker.id, state=JobState.waiting, phase="awaiting_client")
    assert store.answer_question("q1", {"files": {"a": "b"}})
    assert not store.answer_question("q1", {"files": {"c": "d"}})  # answered once: a second answer changes nothing
    again = open_store()  # another connection: what it reads was committed
    q = again.question("q1")
    assert q.state == "answered" and q.answer == {"files": {"a": "b"}} and q.answered_at
    assert q.instructions == "=== user ===\nwrite it" and q.turn == 1 and q.turns_left == 2
    assert again.open_question(job.id) is None
    with pytest.raises(InputError) as e:
        again.question("nope")
    assert e.value.field == "question_id"


def test_invalid_answers_are_counted_until_the_question_is_given_up(store):
    worker = store.register_worker(max_jobs=1, lease_s=30)
    job = store.create("build", {}, timeout_s=60)
    store.claim_next(worker.id, ["build"])
    store.ask(_question(job.id, max_invalid=2), worker.id)
    assert store.refuse_answer("q1", "files: required") is None  # not waiting: nothing counted
    store.update(job.id, worker.id, state=JobState.waiting)
    first = store.refuse_answer("q1", "files: required")
    assert (first.state, first.invalid_answers, first.problems) == ("open", 1, "files: required")
    second = store.refuse_answer("q1", "files.server.py: required")
    assert (second.state, second.invalid_answers) == ("given_up", 2)
    assert store.refuse_answer("q1", "x") is None and not store.answer_question("q1", {})
    assert store.open_question(job.id) is None
    # A newer question of the same job is the open one.
    store.ask(_question(job.id, "q2"), worker.id)
    assert store.open_question(job.id).id == "q2"


def test_a_store_of_version_2_gets_the_questions_table(tmp_path):
    path = tmp_path / "jobs.sqlite3"
    SqliteJobStore(path).close()
    db = sqlite3.connect(path)
    db.execute("DROP TABLE questions")
    db.execute("PRAGMA user_version = 2")
    db.commit()
    db.close()
    store = SqliteJobStore(path)
    worker = store.register_worker(max_jobs=1, lease_s=30)
    job = store.create("build", {}, timeout_s=60)
    store.claim_next(worker.id, ["build"])
    assert store.ask(_question(job.id), worker.id) and store.open_question(job.id).id == "q1"
