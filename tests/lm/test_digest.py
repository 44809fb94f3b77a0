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


def _reference_fingerprint(t: torch.Tensor) -> tuple[int, int]:
    """The same sums in plain Python over the raw bytes: int32 words (else bytes),
    positions from 1, wrapped to a signed 64-bit integer."""
    import numpy as np

    raw = t.detach().contiguous().reshape(-1).view(torch.uint8).numpy()
    words = raw.view(np.int32) if raw.size % 4 == 0 else raw
    total = sum(int(w) for w in words)
    weighted = sum(int(w) * (i + 1) for i, w in enumerate(words))

    def wrap(v: int) -> int:
        v &= (1 << 64) - 1
        return v - (1 << 64) if v >= 1 << 63 else v

    return wrap(total), wrap(weighted)


def test_fingerprints_are_the_wrapped_sums_of_each_tensors_words(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Every tensor's (dtype, shape, sum, position-weighted sum), as an independent plain
    Python computation gives them, across chunk boundaries and for byte-sized tensors."""
    import editproof.lm.digest as digest

    monkeypatch.setattr(digest, "_FP_CHUNK", 7)  # many chunks per tensor
    model = torch.nn.Module()
    model.w = torch.nn.Parameter(torch.randn(5, 9).to(torch.bfloat16))
    model.register_buffer("odd", torch.arange(-3, 4, dtype=torch.int8))  # 7 bytes
    model.register_buffer("big", torch.full((6,), 2**31 - 1, dtype=torch.int32))
    got = digest.fingerprints(model)
    assert set(got) == {"w", "odd", "big"}
    for name, t in model.state_dict().items():
        assert got[name] == (str(t.dtype), tuple(t.shape), *_reference_fingerprint(t)), name
