"""The bare floor every bench compares against: forward + fp32 cross-entropy, nothing else."""

from __future__ import annotations

import time
from typing import Any


def bare_pass(model: Any, ids: Any, batch: int, device: str) -> float:
    """Seconds for one pass over ``ids`` ([windows, tokens] on ``device``) in batches of
    ``batch``: logits, fp32 mean cross-entropy of the next token; synchronized on a GPU."""
    import torch

    t0 = time.perf_counter()
    with torch.inference_mode():
        for i in range(0, len(ids), batch):
            x = ids[i : i + batch]
            logits = model(x).logits[:, :-1].float()
            torch.nn.functional.cross_entropy(
                logits.reshape(-1, logits.shape[-1]), x[:, 1:].reshape(-1)
            )
    if str(device).startswith("cuda"):
        torch.cuda.synchronize()
    return time.perf_counter() - t0
