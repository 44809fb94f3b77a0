"""``editproof edit --save``: materialise an edited checkpoint for users who want the file.

The checkpoint is the baseline with the edit applied, saved as safetensors with the
tokenizer and an ``edit_metadata.json`` that records the edit, its measured record and
the weight digests before and after. Evaluating it later as ``--subject DIR`` is the
bring-your-own-edit path.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from editproof import __version__
from editproof.edits import apply_edit, parse_spec, resolve_clean
from editproof.evaluation import model_key, tuned_params_for
from editproof.lm import describe, load_model, parse_source, preflight_source, weight_digest
from editproof.lm.save import check_target, save_checkpoint


@dataclass(frozen=True)
class SavedEdit:
    path: Path
    spec: str
    weight_sha256: str
    rel_error: float | None


def save_edited(
    baseline: str,
    edit: str,
    out: Path,
    *,
    tuned_params: str | None = None,
    device: str = "auto",
    dtype: str = "auto",
    net: bool = False,
) -> SavedEdit:
    src = parse_source(baseline)
    spec = parse_spec(edit)
    check_target(out)  # before the model loads, so a taken --save fails in a second
    preflight_source(baseline, net=net)  # and a missing or corrupt checkpoint too
    loaded = load_model(src, device=device, dtype=dtype, net=net)
    tuned_source = None
    if spec.clean:
        tuned = tuned_params_for(tuned_params)
        tuned_source = tuned.source
        spec = resolve_clean(spec, model_key(src), tuned, n_layers=describe(loaded.model).n_layers)
    before = weight_digest(loaded.model)
    handle = apply_edit(loaded.model, spec)
    try:
        after = weight_digest(loaded.model)
        metadata = {
            "tool": {"name": "editproof", "version": __version__},
            "baseline": {"spec": src.spec, "label": src.label, "weight_sha256": before.sha256},
            "edit": {
                "spec": spec.text,
                "label": spec.label,
                "tuned_source": tuned_source,
                "record": handle.record.model_dump(mode="json"),
            },
            "weight_sha256": after.sha256,
            "dtype": loaded.dtype,
        }
        save_checkpoint(loaded.model, loaded.tokenizer, out, metadata)
    finally:
        handle.restore()
    return SavedEdit(
        path=out, spec=spec.text, weight_sha256=after.sha256, rel_error=handle.record.rel_error
    )
