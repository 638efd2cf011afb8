"""What reaches sandboxed code from the builder's environment: an allowlist, never a copy of os.environ."""

from __future__ import annotations

import os
import re
from collections.abc import Collection, Mapping

from sandbox.errors import SandboxError

SECRET_NAME_PATTERN = re.compile(
    r"(KEY|TOKEN|SECRET|PASSW(OR)?D|PASSPHRASE|CREDENTIAL|AUTH|COOKIE|SESSION|PRIVATE|DSN)",
    re.IGNORECASE,
)
"""Matches environment variable names that usually carry a secret (API keys, tokens, passwords...)."""

# Copied from the builder's environment when present; none of them can carry a secret.
_INHERITED = ("LANG", "LC_ALL", "LC_CTYPE", "TZ")

# Fixed values: the sandbox must not depend on how the builder's shell happens to be set up.
_FIXED = {
    "PATH": "/usr/local/bin:/usr/bin:/bin",
    "PYTHONUNBUFFERED": "1",
    "PYTHONDONTWRITEBYTECODE": "1",
    "PYTHONNOUSERSITE": "1",
    "PYTHONSAFEPATH": "1",
    "PYTHONIOENCODING": "utf-8",
}

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

# Read by the dynamic loader and the C library of every process that starts: the launcher (bwrap, setpriv, the
# shim, docker) runs outside the sandbox, as the builder, with the sandboxed command's environment as its own.
_LAUNCHER_UNSAFE = re.compile(r"^(LD_|GCONV_PATH$|GLIBC_TUNABLES$|MALLOC_)")


def safe_env(
    extra: Mapping[str, str] | None = None,
    *,
    home: str = "/tmp/home",
    allow_secret_names: Collection[str] = (),
) -> dict[str, str]:
    """Build the environment of a sandboxed child from an allowlist plus `extra`.

    Nothing is copied from os.environ except locale and time zone, so the builder's API
    keys never leak. A name in `extra` that looks secret (SECRET_NAME_PATTERN) is refused
    unless it is listed in `allow_secret_names`: passing a credential to generated code
    must be a deliberate act.
    """
    env = {name: os.environ[name] for name in _INHERITED if os.environ.get(name)}
    env.setdefault("LANG", "C.UTF-8")
    env.update(_FIXED)
    env["HOME"] = home
    allowed = set(allow_secret_names)
    for name, value in (extra or {}).items():
        if not isinstance(name, str) or not _NAME.match(name):
            raise SandboxError(
                f"safe_env: extra variable name {name!r} is not a valid environment variable name "
                "(accepted: letters, digits and underscores, not starting with a digit)"
            )
        if not isinstance(value, str) or "\0" in value:
            raise SandboxError(f"safe_env: extra[{name!r}] must be a string without NUL bytes, got {value!r}")
        if SECRET_NAME_PATTERN.search(name) and name not in allowed:
            raise SandboxError(
                f"safe_env: extra variable {name!r} looks like a secret (matches {SECRET_NAME_PATTERN.pattern}); "
                "sandboxed code must not receive builder credentials. If this server really needs it, "
                f"pass allow_secret_names=[{name!r}]"
            )
        env[name] = value
    return env


def launcher_env(env: Mapping[str, str]) -> dict[str, str]:
    """`env` as the environment of a launcher (it reaches the sandboxed command from there, never via argv).

    Refuses the variables that would change how the launcher itself runs outside the
    sandbox (LD_*, GCONV_PATH, GLIBC_TUNABLES, MALLOC_*), naming the one found.
    """
    for name in env:
        if _LAUNCHER_UNSAFE.match(name):
            raise SandboxError(f"environment variable {name!r} cannot be given to sandboxed code: the launcher, "
                               "which runs outside the sandbox, would read it too (accepted: any name not starting "
                               "with LD_ or MALLOC_, nor GCONV_PATH or GLIBC_TUNABLES)")
    return dict(env)
