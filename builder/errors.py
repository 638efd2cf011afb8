"""The builder package's exception hierarchy."""


class BuildError(Exception):
    """Base of every error raised by the builder; the message says what, where and how to fix."""


class InputError(BuildError):
    """A caller-supplied value is invalid: the message names the field, the problem and what is accepted."""

    def __init__(self, field: str, problem: str, accepted: str):
        self.field, self.problem, self.accepted = field, problem, accepted
        super().__init__(f"{field}: {problem} (accepted: {accepted})")


class NotConfigured(BuildError):
    """An optional part (an LLM provider, a registry URL) is needed but not configured."""


class LLMError(BuildError):
    """The LLM provider failed or kept returning unusable output."""


class NoAnswer(BuildError):
    """A build asked its client a question and no answer came within the client wait (MCP_FOUNDRY_CLIENT_WAIT)."""
