"""Whether a loaded model fits the run (lm/fit.py)."""

from __future__ import annotations

import pytest

pytest.importorskip("torch")

from editproof.errors import InvalidInputError, UsageError
from editproof.lm.fit import check_positions, check_vocab
from editproof.lm.loading import LoadedModel
from editproof.lm.sources import parse_source


@pytest.fixture(scope="module")
def loaded() -> LoadedModel:
    from tests.models import tiny_model

    model = tiny_model("llama")
    return LoadedModel(parse_source("demo"), model, None, "cpu", "float32", 0.0, None)


def test_windows_up_to_the_position_table_fit(loaded: LoadedModel) -> None:
    limit = loaded.model.config.max_position_embeddings
    check_positions(loaded, limit)
    with pytest.raises(UsageError, match=rf"--seq-len {limit + 1} is longer than 'demo' allows"):
        check_positions(loaded, limit + 1)


def test_token_ids_must_have_an_embedding_row(loaded: LoadedModel) -> None:
    rows = loaded.model.get_input_embeddings().weight.shape[0]
    check_vocab(loaded, rows - 1, "baseline")
    with pytest.raises(InvalidInputError, match="its own tokenizer does not fit the model"):
        check_vocab(loaded, rows, "baseline")
    with pytest.raises(InvalidInputError, match=rf"subject 'demo' has {rows} token embeddings"):
        check_vocab(loaded, rows + 5, "subject")
