"""The knowledge package's exception hierarchy."""


class KnowledgeError(Exception):
    """Base of every error raised by the knowledge package; the message says what, where and how to fix."""


class SchemaVersionError(KnowledgeError):
    """The repository on disk was written by another schema version and cannot be opened as is."""


class EmbeddingError(KnowledgeError):
    """The embedding model could not be found or loaded, or was given bad settings."""


class CaseNotFoundError(KnowledgeError):
    """No stored case has the requested id."""


class RepositoryError(KnowledgeError):
    """The repository could not be opened, read or written (bad URI, storage failure, embedder mismatch)."""


class QueryError(KnowledgeError, ValueError):
    """A search request is malformed (empty query, bad limit, mode or filter); the message says what is accepted."""
