"""Durable jobs: front ends enqueue and read, workers claim and run, and the job store is the only contract.

- `model`: Job, JobState, WorkerInfo, Question (what is stored).
- `store`: the JobStore protocol every backend implements.
- `sqlite`: the embedded SQLite (WAL) store, the default.
- `postgres`, `pg_schema`: the PostgreSQL store shared by workers on many machines, and its migrations
  (imported on demand: psycopg is an optional extra).
- `queue`: the front end's side (submit, wait, cancel).
- `runner`: the worker's pool (claim, run, report; JobContext for handlers).
- `worker`: the worker process of a data dir (lock, start on demand, idle exit).
"""

from builder.jobs.model import FINAL_STATES, PRIORITIES, Job, JobCount, JobState, Question, WorkerInfo
from builder.jobs.queue import JobQueue
from builder.jobs.runner import Handler, JobContext, JobRunner
from builder.jobs.sqlite import SqliteJobStore
from builder.jobs.store import JobStore

__all__ = ["FINAL_STATES", "PRIORITIES", "Handler", "Job", "JobContext", "JobCount", "JobQueue", "JobRunner", "JobState",
           "JobStore", "Question", "SqliteJobStore", "WorkerInfo"]
