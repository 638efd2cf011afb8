"""The Foundry: one object that owns the settings, the job store and queue, and the lazily opened parts.

The MCP face and the CLI talk to this object only; each job kind is a handler here.
Front ends use `queue` (enqueue, read, wait, cancel) and never run a job; the worker
process runs them with `runner()`. Heavy parts (LanceDB, the embedding model, the
sandbox backend) are opened on first use, never at start-up, so that `serve` answers
`initialize` at once.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from builder.config import Settings, settings_env
from builder.jobs import Handler, Job, JobContext, JobQueue, JobRunner, JobStore, SqliteJobStore

if TYPE_CHECKING:
    from knowledge.store import KnowledgeStore
    from sandbox.backends.base import Backend
    from sandbox.env import EnvManager


def _clean_sandbox_debris() -> None:
    """Remove what sandboxes of killed mcp-foundry processes left (work dirs, mounts, cgroups); never a live one's."""
    import logging

    from sandbox.limits import clean_stale

    try:
        removed = clean_stale()
    except OSError as exc:
        logging.getLogger("mcp_foundry").warning("could not clean stale sandboxes: %s", exc)
        return
    if any(removed.values()):
        logging.getLogger("mcp_foundry").info("removed stale sandboxes: %s", removed)


def _migration_progress(done: int, total: int, message: str) -> None:
    """Tell the log and the terminal how far re-embedding the repository has got (it can take minutes)."""
    import logging
    import sys

    line = f"knowledge: {message}: {done}/{total}"
    logging.getLogger("mcp_foundry").info(line)
    if done == 0 or done == total or done % 512 == 0:
        print(f"mcp-foundry: {line}", file=sys.stderr, flush=True)


def open_job_store(settings: Settings) -> JobStore:
    """The job store the settings choose: PostgreSQL when `db_url` is set, else the data dir's SQLite file."""
    if settings.db_url:
        from builder.jobs.postgres import PostgresJobStore

        return PostgresJobStore(settings.db_url)
    return SqliteJobStore(settings.jobs_db)


def describe_job_store(store: JobStore) -> str:
    """One line for doctor: which store, where (a password masked), and its schema version."""
    from builder.jobs import sqlite

    if isinstance(store, SqliteJobStore):
        return f"SQLite {store.path} (schema {sqlite.SCHEMA_VERSION}; this data dir only)"
    where, version = getattr(store, "where", type(store).__name__), getattr(store, "schema_version", lambda: "?")()
    return f"PostgreSQL {where} (schema {version}; shared by every worker that uses it)"


def open_knowledge(settings: Settings, embedder: Any = None) -> KnowledgeStore:
    """The knowledge repository the settings name (`embedder` defaults to the configured model).

    A repository on object storage written by workers that share a PostgreSQL job store is
    locked for writes through that database, so two machines storing the same case keep one.
    A repository embedded with another model is re-embedded on this first open, with its
    progress logged and printed on stderr.
    """
    from knowledge.embed import make_embedder
    from knowledge.lock import local_path
    from knowledge.store import KnowledgeStore

    shared_lock = None
    if settings.db_url and local_path(settings.knowledge) is None:
        from builder.jobs.postgres import AdvisoryLock

        shared_lock = AdvisoryLock(settings.db_url, f"mcp-foundry knowledge {settings.knowledge}")
    embedder = embedder or make_embedder(settings.embedding_model, cache_dir=settings.embedding_cache)
    return KnowledgeStore.open(settings.knowledge, embedder=embedder, shared_lock=shared_lock,
                               progress=_migration_progress)


def _with_requesters_model(kind: str, params: dict[str, Any]) -> dict[str, Any]:
    """A build's params with the model settings of the front end that queues it (never its API key).

    The worker that runs the build may have been started by another front end with another
    environment (a shell that seeded the library, a client configured without a model):
    the model of the one who asked is the one that writes the code.
    """
    if kind == "build" and "llm" not in params:
        from builder.llm import LLMConfig

        params["llm"] = LLMConfig.from_env().for_job()
    return params


class Foundry:
    """Settings, stores and job handlers of one mcp-foundry process."""

    def __init__(self, settings: Settings):
        settings.ensure_dirs()
        self.settings = settings
        self.store: JobStore = open_job_store(settings)
        self.queue = JobQueue(self.store, self.handlers(), default_timeout_s=settings.job_timeout_s,
                              scope="this shared job store" if settings.shared_jobs else "this data dir",
                              prepare=_with_requesters_model)
        """Where front ends submit, read, wait for and cancel jobs."""
        _clean_sandbox_debris()
        self._backend: Backend | None = None
        self._envs: EnvManager | None = None
        self._knowledge: KnowledgeStore | None = None
        self.llm_override: Any = None
        """An LLM provider used when none is configured (set by embedding code and benchmarks)."""
        self.job_llm: dict[str, Any] = {}
        """Providers lent to one job by embedding code whose runner is in the same process."""

    def provider_for(self, ctx: JobContext) -> Any:
        """The LLM of one build, by its `coder` param.

        The configured model is the one the requesting front end had (recorded in the
        build's params, the key taken from this worker's environment), else the one this
        worker's own environment configures. "server": the configured model, else None.
        "client": the caller, asked through stored questions. "auto" (the default): the
        configured model, else one lent to this job or the override (embedding code), else
        the caller.
        """
        from builder.llm import LLMConfig, make_provider
        from builder.llm.client import ClientProvider

        coder = ctx.params.get("coder", "auto")
        lent = self.job_llm.pop(ctx.job_id, None)
        recorded = ctx.params.get("llm")
        configured = make_provider(LLMConfig.from_job(recorded)) if recorded else make_provider()
        if coder == "server":
            return configured
        if coder == "auto":
            chosen = configured or lent or self.llm_override
            if chosen is not None:
                return chosen
        return ClientProvider(ctx, wait_s=self.settings.client_wait_s)

    async def answer(self, job_id: str, question_id: str, answer: Any) -> Job:
        """Answer a waiting build's question (checked; see builder.llm.answers) and return the job's status."""
        from builder.llm.answers import answer as answer_question

        return await answer_question(self.store, job_id, question_id, answer)

    # -- lazily opened parts -------------------------------------------------------------------------------------
    @property
    def backend(self) -> Backend:
        """The sandbox backend chosen by settings ("auto" picks the best that works here)."""
        if self._backend is None:
            from sandbox.backends import get_backend

            self._backend = get_backend(self.settings.sandbox_backend)
        return self._backend

    @property
    def envs(self) -> EnvManager:
        """The dependency-environment cache."""
        if self._envs is None:
            from sandbox.env import EnvManager

            self._envs = EnvManager(self.settings.envs_dir)
        return self._envs

    @property
    def knowledge(self) -> KnowledgeStore:
        """The knowledge repository (opens LanceDB and, on first search, the embedding model).

        A repository embedded with another model is re-embedded on this first open, with its
        progress logged and printed on stderr.
        """
        if self._knowledge is None:
            self._knowledge = open_knowledge(self.settings)
        return self._knowledge

    # -- jobs ----------------------------------------------------------------------------------------------------
    def handlers(self) -> Mapping[str, Handler]:
        """Job kind -> handler."""

        async def build(ctx: JobContext) -> Any:
            from builder.pipeline import run_build

            return await run_build(ctx, self)

        async def seed(ctx: JobContext) -> Any:
            from builder.seed import run_seed

            return await run_seed(ctx, self)

        async def adopt(ctx: JobContext) -> Any:
            from builder.adopt import run_adopt

            return await run_adopt(ctx, self)

        return {"validate": self._validate, "build": build, "seed": seed, "deploy": adopt}

    def runner(self) -> JobRunner:
        """A worker's pool over this foundry's store and handlers (enter it with `async with`)."""
        return JobRunner(self.store, self.handlers(), max_jobs=self.settings.max_concurrent_jobs,
                         lease_s=self.settings.worker_lease_s)

    def start_workers(self, argv: Sequence[str]) -> None:
        """Make this a front end that starts the data dir's worker on demand (`argv`), unless max_jobs is 0.

        The worker gets this process's environment with these settings on top, and runs in
        the data dir (it holds no user directory as its working directory).
        """
        import os

        from builder.jobs.worker import WorkerLauncher

        if self.settings.max_concurrent_jobs > 0:
            env = {**os.environ, **settings_env(self.settings)}
            self.queue.launcher = WorkerLauncher(self.settings.worker_lock, argv, env, self.settings.data_dir)

    async def _validate(self, ctx: JobContext) -> Any:
        from builder.validation import run_validation

        return await run_validation(ctx, self)
