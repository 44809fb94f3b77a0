from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
from editproof.lm.digest import tensor_sha256, weight_digest  # noqa: E402
from tests.models import tiny_model  # noqa: E402


def test_digest_is_deterministic_and_sensitive() -> None:
    a, b = tiny_model(seed=0), tiny_model(seed=0)
    da, db = weight_digest(a), weight_digest(b)
    assert da.sha256 == db.sha256 and da.tensors == db.tensors
    with torch.no_grad():
        p = b.model.layers[1].mlp.up_proj.weight
        p[3, 4] = torch.nextafter(p[3, 4], torch.tensor(1e9))  # one ulp
    d2 = weight_digest(b)
    assert d2.sha256 != da.sha256
    changed = [k for k in da.tensors if da.tensors[k] != d2.tensors[k]]
    assert changed == ["model.layers.1.mlp.up_proj.weight"]


def test_digest_counts_bytes_and_tied_names() -> None:
    m = tiny_model("llama")
    d = weight_digest(m)
    state = m.state_dict()
    assert d.n_tensors == len(state)
    tied = state["lm_head.weight"]
    everything = sum(t.numel() * t.element_size() for t in state.values())
    assert d.n_bytes == everything - tied.numel() * tied.element_size()  # tied storage once
    assert d.tensors["lm_head.weight"] == d.tensors["model.embed_tokens.weight"]


def test_bf16_bytes_hash() -> None:
    t = torch.arange(10, dtype=torch.bfloat16)
    assert tensor_sha256(t) == tensor_sha256(t.clone())
    assert tensor_sha256(t) != tensor_sha256(t.to(torch.float32))
