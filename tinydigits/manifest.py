"""`tinydigits/models/manifest.json`: what the exporter verified. Device side: stdlib only.

One entry per model stem: the sha256 of the `.keras` it came from, when and with which tool
versions it was exported, the verification figures, and per variant the file's sha256. The
exporter writes it atomically and last, after the whole set of `.tflite` files is in place,
so a model file whose hash differs from its entry was changed (or half-installed) since it
was verified. `tinydigits models` lists it; loading a shipped model checks its hash.
"""

import hashlib
import json
from pathlib import Path

NAME = "manifest.json"
FORMAT = 1
MAX_BYTES = 4 * 2**20  # ours is ~10 KB; a larger one is not ours


def sha256(path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(2**20), b""):
            digest.update(block)
    return digest.hexdigest()


def load(models_dir) -> dict:
    """{stem: entry}; empty when there is no manifest or it cannot be read as one."""
    path = Path(models_dir) / NAME
    try:
        if path.stat().st_size > MAX_BYTES:
            return {}
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    models = data.get("models") if isinstance(data, dict) else None
    return {k: v for k, v in models.items() if isinstance(v, dict)} if isinstance(
        models, dict) else {}


def entry_of(path, models=None):
    """(stem entry, variant entry) that lists the file `path`, or (None, None)."""
    path = Path(path)
    models = load(path.parent) if models is None else models
    for entry in models.values():
        variants = entry.get("variants")
        for variant in variants.values() if isinstance(variants, dict) else ():
            if isinstance(variant, dict) and variant.get("file") == path.name:
                return entry, variant
    return None, None


def status(path, models=None) -> str:
    """'ok', 'modified' (hash differs from its entry), 'missing', or 'unlisted'."""
    path = Path(path)
    _, variant = entry_of(path, models)
    if not path.is_file():
        return "missing"
    if variant is None:
        return "unlisted"
    return "ok" if sha256(path) == variant.get("sha256") else "modified"


def warning(path) -> str | None:
    """One line for stderr when a model file differs from what the exporter verified."""
    if status(path) == "modified":
        return (f"{path}: differs from its entry in {NAME} (sha256); it is not the file that "
                "was verified: export it again")
    return None


def update(models_dir, stem: str, entry: dict) -> Path:
    """Replace one stem's entry, atomically (the exporter calls this last)."""
    from tinydigits.files import write_text

    models = load(models_dir)
    models[stem] = entry
    text = json.dumps({"format": FORMAT, "models": dict(sorted(models.items()))}, indent=2)
    return write_text(Path(models_dir) / NAME, text + "\n")
