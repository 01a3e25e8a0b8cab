"""A tuned ranker on disk: a peft LoRA adapter directory plus a driftrec manifest.

Files: `adapter_config.json` and `adapter_model.safetensors` (peft's own format, which vLLM's
`--lora-modules` also reads; no pickle) and `manifest.json` (format "driftrec-ranker/1"): the base
model and the sha256 of its weights, the training-events fingerprint, the objective, the settings,
the examples, the time and the validation metrics, and the sha256 of both adapter files.

Checks: `check_adapter_base` refuses an adapter on other base weights (its deltas would be applied to
the wrong matrices); `check_trained_on` refuses an adapter trained on other events than a run's
training split (`LeakageError`, as for tuned embedders and sequential models); `adapter_digest`
refuses an adapter whose weights differ from what its manifest records.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from retrieval.data.model import Event
from retrieval.errors import ConfigError, IndexStateError, MissingDependencyError
from retrieval.vectors.fingerprint import check_same_events

FORMAT = "driftrec-ranker/1"
ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")
_BASE_DIGESTS: dict[tuple[str, int, int], str] = {}


def import_peft() -> Any:
    """The peft module, or MissingDependencyError naming the extra to install."""
    try:
        import peft
    except ImportError as exc:
        raise MissingDependencyError("LoRA tuning and adapters need peft: pip install 'driftrec[tune]'") from exc
    return peft


def base_digest(model_dir: str | Path) -> str:
    """sha256 over the base model's `*.safetensors` files (sorted by name), remembered per file state."""
    from retrieval.vectors.store import sha256_file

    files = sorted(Path(model_dir).glob("*.safetensors"))
    if not files:
        raise ConfigError(f"{model_dir} has no *.safetensors weights")
    h = hashlib.sha256()
    for f in files:
        st = f.stat()
        key = (str(f.resolve()), st.st_size, st.st_mtime_ns)
        if key not in _BASE_DIGESTS:
            _BASE_DIGESTS[key] = sha256_file(f)
        h.update(f"{f.name}\t{_BASE_DIGESTS[key]}\n".encode())
    return h.hexdigest()


def read_manifest(adapter_dir: str | Path) -> dict[str, Any]:
    """The manifest of a tuned-ranker directory.

    Raises:
        ConfigError: not a directory written by `driftrec tune-ranker`.
    """
    path = Path(adapter_dir).expanduser() / "manifest.json"
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{adapter_dir} is not a tuned ranker (no readable manifest.json: {exc}); "
                          "write one with `driftrec tune-ranker`") from exc
    if not isinstance(manifest, dict) or str(manifest.get("format", "")).split("/")[0] != FORMAT.split("/")[0]:
        raise ConfigError(f"{adapter_dir} is not a tuned ranker (manifest format {manifest.get('format')!r})")
    return manifest


def adapter_digest(adapter_dir: str | Path) -> str:
    """The adapter weights' sha256 as recorded, after checking the files against it.

    Raises:
        IndexStateError: an adapter file is missing or differs from its recorded sha256.
    """
    from retrieval.vectors.store import sha256_file

    root = Path(adapter_dir).expanduser()
    recorded = read_manifest(root).get("sha256") or {}
    for name in ADAPTER_FILES:
        if not (root / name).is_file() or sha256_file(root / name) != recorded.get(name):
            raise IndexStateError(f"{root}: {name} is missing or differs from the sha256 its manifest records; "
                                  "re-run `driftrec tune-ranker`")
    return str(recorded[ADAPTER_FILES[1]])


def check_adapter_base(adapter_dir: str | Path, model_dir: str | Path) -> None:
    """Refuse (ConfigError) an adapter trained on other base weights than `model_dir`'s."""
    adapter_digest(adapter_dir)
    base = read_manifest(adapter_dir).get("base") or {}
    if base.get("sha256") != base_digest(model_dir):
        raise ConfigError(f"adapter {adapter_dir} was trained on base {base.get('name')!r} with other weights than "
                          f"{model_dir}; serve it on the base model it names")


def check_trained_on(adapter_dir: str | Path, histories: Mapping[str, Sequence[Event]]) -> None:
    """Refuse a tuned ranker whose training events are not this run's training events.

    Raises:
        LeakageError: the adapter was trained on other events (another split or dataset), so it may have
            seen held-out events.
    """
    check_same_events(read_manifest(adapter_dir).get("trained_on") or {}, histories, f"ranker adapter {adapter_dir}",
                      "`driftrec tune-ranker`")


def save_adapter(peft_model: Any, out: str | Path, manifest: Mapping[str, Any]) -> Path:
    """Write the adapter (safetensors) and `manifest` (+ checksums) to `out`, atomically.

    Args:
        peft_model: a `peft.PeftModel` whose active adapter is saved.
        out: the directory (replaced only when empty or a tuned-ranker directory).
        manifest: fields beside `format` and `sha256` (which are set here).
    """
    from retrieval.vectors.store import write_atomically

    def write(tmp: Path) -> None:
        peft_model.save_pretrained(str(tmp), safe_serialization=True)

    return write_atomically(out, ".tmp-ranker-", write, {**manifest, "format": FORMAT}, list(ADAPTER_FILES))
