"""The knowledge package's exception hierarchy."""


class KnowledgeError(Exception):
    """Base of every error raised by the knowledge package; the message says what, where and how to fix."""


class SchemaVersionError(KnowledgeError):
    """The repository on disk was written by another schema version and cannot be opened as is."""
