"""--batch-size auto: 8 on a CPU; on a GPU the largest power of two the memory allows."""

from __future__ import annotations

from typing import Any

import pytest

from editproof.errors import UsageError
from editproof.measure.batching import (
    CPU_BATCH,
    MAX_TOKENS,
    MAX_WINDOWS,
    auto_batch_size,
    batch_for,
)


def test_batch_for_caps_windows_and_tokens() -> None:
    plenty = 1e15
    assert batch_for(512, 32000, 4096, plenty) == MAX_WINDOWS == 32
    assert batch_for(1024, 32000, 4096, plenty) == MAX_TOKENS // 1024 == 16
    assert batch_for(4096, 32000, 4096, plenty) == 4
    assert batch_for(32768, 32000, 4096, plenty) == 1


def test_batch_for_follows_memory() -> None:
    per_window = 512 * (128256 * 10 + 2048 * 32)  # a 1B shape's 128k vocabulary
    assert batch_for(512, 128256, 2048, 5 * per_window) == 4  # 5 fit: the power of two below
    assert batch_for(512, 128256, 2048, 8 * per_window) == 8
    assert batch_for(512, 128256, 2048, 0) == 1  # never below one window


def test_cpu_model_gets_the_cpu_batch() -> None:
    from tests.models import tiny_model

    assert auto_batch_size(tiny_model("llama"), 128) == CPU_BATCH


def test_gpu_choice_uses_total_memory_and_parameters_on_the_head_device(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Simulated head on a 24 GiB GPU: the budget is a quarter of what its parameters leave."""
    import torch

    from editproof.measure import batching

    class Props:
        total_memory = 24 * 2**30

    class Weight:
        def __init__(self) -> None:
            self.device = torch.device("cuda:0")
            self.shape = (128256, 2048)

    class Param:
        device = torch.device("cuda:0")

        def data_ptr(self) -> int:
            return 1

        def numel(self) -> int:
            return 1_240_000_000

        def element_size(self) -> int:
            return 2

    class Head:
        weight = Weight()

    class Config:
        hidden_size = 2048
        vocab_size = 128256

    class Model:
        config = Config()

        def get_output_embeddings(self) -> Any:
            return Head()

        def parameters(self) -> Any:
            return iter([Param(), Param()])  # tied: counted once

    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda device: Props())
    budget = batching.MEMORY_SHARE * (24 * 2**30 - 2_480_000_000)
    assert auto_batch_size(Model(), 512) == batch_for(512, 128256, 2048, budget) == 8


@pytest.mark.parametrize(("text", "expected"), [("auto", None), ("16", 16), (None, None)])
def test_cli_parses_auto_and_counts(text: str | None, expected: int | None) -> None:
    from editproof.cli._options import parse_batch_size

    assert parse_batch_size(text) == expected


@pytest.mark.parametrize("text", ["0", "-2", "many"])
def test_cli_refuses_bad_sizes(text: str) -> None:
    from editproof.cli._options import parse_batch_size

    with pytest.raises(UsageError, match="--batch-size"):
        parse_batch_size(text)
