"""Durable jobs: front ends enqueue and read, workers claim and run, and the job store is the only contract.

- `model`: Job, JobState, WorkerInfo, Question (what is stored).
- `store`: the JobStore protocol every backend implements.
- `sqlite`: the embedded SQLite (WAL) store, the default.
- `queue`: the front end's side (submit, wait, cancel).
- `runner`: the worker's pool (claim, run, report; JobContext for handlers).
- `worker`: the worker process of a data dir (lock, start on demand, idle exit).
"""

from builder.jobs.model import FINAL_STATES, PRIORITIES, Job, JobState, Question, WorkerInfo
from builder.jobs.queue import JobQueue
from builder.jobs.runner import Handler, JobContext, JobRunner
from builder.jobs.sqlite import SqliteJobStore
from builder.jobs.store import JobStore

__all__ = ["FINAL_STATES", "PRIORITIES", "Handler", "Job", "JobContext", "JobQueue", "JobRunner", "JobState",
           "JobStore", "Question", "SqliteJobStore", "WorkerInfo"]
