"""The sandbox package's exception hierarchy."""


class SandboxError(Exception):
    """Base of every error raised by the sandbox package; the message says what, where and how to fix."""


class BackendUnavailable(SandboxError):
    """The requested isolation backend cannot run on this machine (the message says why)."""


class EnvBuildError(SandboxError):
    """Creating a dependency environment failed (resolution, download or install)."""
