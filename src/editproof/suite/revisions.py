"""Model revisions: ``--net 1`` pins each hub model's commit; ``--net 0`` requires the pins.

``state/model_revisions.json`` lists every model of the run: hub models with the resolved
commit (``gated``/``private`` models are refused: a third party could not reproduce the run),
local and demo models with their kind and path. Once a worker has loaded a model, the run's
results add the weight digest it measured.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from editproof.errors import InvalidInputError, NotFoundError, UsageError
from editproof.lm import parse_source
from editproof.suite import layout

FORMAT = "editproof.model-revisions"


def _read(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise InvalidInputError(f"model revisions file {path} is unreadable: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("models"), dict):
        raise InvalidInputError(f"model revisions file {path} has no 'models' object")
    return data


def _hub_info(repo: str, revision: str | None) -> dict[str, Any]:
    try:
        from huggingface_hub import HfApi
    except ImportError:  # pragma: no cover - transformers depends on it
        raise UsageError("--net 1 needs huggingface_hub (pip install 'editproof[eval]')") from None
    try:
        info = HfApi().model_info(repo, revision=revision)
    except Exception as exc:
        raise NotFoundError(
            f"cannot resolve {repo}@{revision or 'main'} on the hub: {exc}"
        ) from None
    gated, private = bool(getattr(info, "gated", False)), bool(getattr(info, "private", False))
    if gated or private:
        raise InvalidInputError(
            f"{repo} is {'gated' if gated else 'private'}: a proof a third party cannot "
            "reproduce is refused; use an ungated model or a local copy"
        )
    return {
        "kind": "hub",
        "repo_id": repo,
        "revision": info.sha,
        "gated": gated,
        "private": private,
    }


def resolve_revisions(
    models: list[str], *, net: bool, run_dir: Path, revisions_file: str | None
) -> dict[str, Any]:
    known: dict[str, Any] = {}
    pinned = Path(revisions_file) if revisions_file else run_dir / layout.REVISIONS
    if revisions_file and not pinned.is_file():
        raise NotFoundError(f"model revisions file not found: {pinned}")
    if pinned.is_file():
        known = _read(pinned)["models"]
    entries: dict[str, Any] = {}
    missing: list[str] = []
    for model in models:
        src = parse_source(model)
        if src.kind != "hub":
            entries[model] = {"kind": src.kind, "path": str(src.path) if src.path else None}
            if src.kind == "random":
                entries[model]["seed"] = src.seed
            continue
        assert src.repo_id is not None
        if net:
            entries[model] = _hub_info(src.repo_id, src.revision)
        elif isinstance(known.get(model), dict) and known[model].get("revision"):
            entries[model] = known[model]
        else:
            missing.append(model)
    if missing:
        raise NotFoundError(
            f"--net 0 needs pinned revisions for {', '.join(missing)} (no entry in {pinned}); "
            "run once with --net 1 to resolve and pin them, or pass --revisions FILE"
        )
    return {"format": FORMAT, "schema_version": 1, "model_list": models, "models": entries}


def pinned_source(run_dir: Path, model: str) -> str:
    """The source a worker loads: a hub model at its pinned commit, else the model id."""
    path = run_dir / layout.REVISIONS
    if not path.is_file():
        return model
    entry = _read(path)["models"].get(model) or {}
    if entry.get("kind") == "hub" and entry.get("revision"):
        return f"{entry['repo_id']}@{entry['revision']}"
    return model
