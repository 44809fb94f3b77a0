"""Whether a loaded model fits the run: windows within its position table, token ids within
its embeddings. Both fail in one line before anything is measured."""

from __future__ import annotations

from editproof.errors import InvalidInputError, UsageError
from editproof.lm.anatomy import max_positions
from editproof.lm.loading import LoadedModel


def check_positions(loaded: LoadedModel, seq_len: int) -> None:
    """A window longer than the model's position table cannot be measured."""
    limit = max_positions(loaded.model)
    if limit is not None and seq_len > limit[0]:
        raise UsageError(
            f"--seq-len {seq_len} is longer than '{loaded.source.spec}' allows: its config "
            f"has {limit[1]} = {limit[0]}"
        )


def check_vocab(loaded: LoadedModel, top_id: int, role: str) -> None:
    """The baseline tokenizer's largest id ``top_id`` must have a row in the ``role``
    (``baseline`` or ``subject``) model's input embeddings."""
    emb = loaded.model.get_input_embeddings()
    rows = int(emb.weight.shape[0]) if emb is not None else None
    if rows is not None and top_id >= rows:
        why = (
            "its own tokenizer does not fit the model"
            if role == "baseline"
            else "the two models do not share a vocabulary"
        )
        raise InvalidInputError(
            f"{role} '{loaded.source.spec}' has {rows} token embeddings but the baseline "
            f"tokenizer produces id {top_id}; {why}"
        )
