"""Where the ``embed`` stage (Ray Data) leaves sentence embeddings, and how a reader knows they are complete.

Shared by the writer (``mmrec_ray.pipeline.embed``) and the reader (``mmrec_ray.data.text_embeddings``, for
``prepare`` with ``embeddings="embed-stage"``) so both agree on paths and on the completeness marker, without the
data package importing Ray.

Layout under a run directory::

    prepared/parquet/conversation_text.parquet                      input: written by `prepare --canonical-only`
    prepared/parquet/conversation_embeddings/part-NNNNN.parquet     output parts
    prepared/parquet/conversation_embeddings/_embed_manifest.json   written last: the folder is complete

The stage writes into a temporary folder and renames it into place with the manifest already inside, so a
folder with a manifest is complete and one without is not the stage's (an in-process ``prepare`` never leaves
parts there without finishing: it works in ``conversation_embeddings.partial``).
"""

from __future__ import annotations

import json
from pathlib import Path

TEXT_FILE = Path("prepared") / "parquet" / "conversation_text.parquet"
OUTPUT_DIR = Path("prepared") / "parquet" / "conversation_embeddings"
MANIFEST = "_embed_manifest.json"


def file_fingerprint(path: str | Path) -> dict:
    """Path, total bytes and newest mtime of a file or folder: cheap, and changes whenever it is rewritten."""
    path = Path(path)
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    return {
        "path": str(path.resolve()),
        "bytes": sum(p.stat().st_size for p in files),
        "mtime": max((p.stat().st_mtime for p in files), default=0),
    }


def read_manifest(output_dir: str | Path) -> dict | None:
    """The stage's manifest (``inputs``, ``sentences``, ``dim``, ...) or None when the folder is not complete."""
    path = Path(output_dir) / MANIFEST
    if not path.is_file():
        return None
    return json.loads(path.read_text())


def is_current(run_dir: str | Path, encoder: str | None = None, max_length: int | None = None) -> bool:
    """True when the run's embeddings are complete and were computed from its current text file (and, when
    given, with this encoder and max_length): then the stage has nothing to do."""
    run_dir = Path(run_dir)
    manifest = read_manifest(run_dir / OUTPUT_DIR)
    text = run_dir / TEXT_FILE
    if manifest is None or not text.exists():
        return False
    inputs = manifest.get("inputs", {})
    if inputs.get("text") != file_fingerprint(text):
        return False
    if encoder is not None and inputs.get("encoder") != encoder:
        return False
    return max_length is None or inputs.get("max_length") == max_length
