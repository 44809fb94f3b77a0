from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from editproof.errors import InvalidInputError  # noqa: E402
from editproof.measure import measure_nll  # noqa: E402
from editproof.measure import nll as nll_mod  # noqa: E402
from tests.models import tiny_model  # noqa: E402


def _windows(n: int, length: int, seed: int = 0) -> list[list[int]]:
    rng = np.random.default_rng(seed)
    return [list(map(int, rng.integers(0, 320, size=length))) for _ in range(n)]


def _reference(model: object, window: list[int]) -> float:
    """Mean NLL from transformers' own loss, one window at a time."""
    ids = torch.tensor([window])
    with torch.no_grad():
        return float(model(input_ids=ids, labels=ids).loss)  # type: ignore[operator]


@pytest.mark.parametrize("arch", ["llama", "gpt2", "mixtral"])
def test_matches_transformers_loss(arch: str) -> None:
    model = tiny_model(arch)
    ws = _windows(5, 33)
    got = measure_nll(model, ws, batch_size=2)
    want = [_reference(model, w) for w in ws]
    np.testing.assert_allclose(got.mean_nll, want, rtol=1e-5)
    assert list(got.token_counts) == [32] * 5
    assert got.telemetry.fast_head


def test_batch_size_invariance_fp32() -> None:
    model = tiny_model()
    ws = _windows(12, 64, seed=3)
    results = [measure_nll(model, ws, batch_size=b).mean_nll for b in (1, 3, 5, 12)]
    for other in results[1:]:
        rel = np.abs(other - results[0]) / np.abs(results[0])
        assert rel.max() <= 1e-5


def test_ragged_windows_mask_padding() -> None:
    model = tiny_model()
    ws = [w[:n] for w, n in zip(_windows(4, 40), (40, 17, 2, 29), strict=True)]
    batched = measure_nll(model, ws, batch_size=4, pad_id=7)
    single = [measure_nll(model, [w], batch_size=1).mean_nll[0] for w in ws]
    np.testing.assert_allclose(batched.mean_nll, single, rtol=1e-5)
    assert list(batched.token_counts) == [39, 16, 1, 28]


def test_chunked_head_equals_unchunked(monkeypatch: pytest.MonkeyPatch) -> None:
    model = tiny_model()
    ws = _windows(3, 50)
    whole = measure_nll(model, ws).mean_nll
    monkeypatch.setattr(nll_mod, "LOGITS_CHUNK_BYTES", 4 * 320 * 7)  # 7 positions per chunk
    np.testing.assert_allclose(measure_nll(model, ws).mean_nll, whole, rtol=1e-6)


def test_softcapped_models_take_the_full_logits_path() -> None:
    model = tiny_model()
    model.config.final_logit_softcapping = 30.0  # pretend: the fast path would be wrong
    result = measure_nll(model, _windows(2, 20))
    assert not result.telemetry.fast_head


def test_non_finite_weights_give_non_finite_windows() -> None:
    model = tiny_model()
    with torch.no_grad():
        model.model.layers[0].mlp.up_proj.weight[0, 0] = float("nan")
    result = measure_nll(model, _windows(2, 20))
    assert not np.isfinite(result.mean_nll).any()


def test_telemetry() -> None:
    t = measure_nll(tiny_model(), _windows(4, 16), batch_size=2).telemetry
    assert t.windows == 4 and t.tokens == 64 and t.tokens_per_s > 0
    assert t.device == "cpu" and t.dtype == "float32" and t.peak_memory_bytes > 0


@pytest.mark.parametrize(
    ("windows", "batch", "match"),
    [([], 1, "no windows"), ([[1]], 1, "at least 2 tokens"), ([[1, 2]], 0, "batch size")],
)
def test_bad_input(windows: list[list[int]], batch: int, match: str) -> None:
    with pytest.raises(InvalidInputError, match=match):
        measure_nll(tiny_model(), windows, batch_size=batch)


@pytest.mark.parametrize(("n", "batch", "calls"), [(10, 3, 4), (8, 4, 2), (5, 8, 1), (4, 1, 4)])
def test_on_batch_reports_windows_done(n: int, batch: int, calls: int) -> None:
    seen: list[tuple[int, int]] = []
    measure_nll(
        tiny_model(), _windows(n, 9), batch_size=batch, on_batch=lambda d, t: seen.append((d, t))
    )
    assert len(seen) == calls
    assert [d for d, _ in seen] == sorted({d for d, _ in seen})  # strictly increasing
    assert all(t == n for _, t in seen) and seen[-1][0] == n
    assert seen[0][0] == min(batch, n)


def test_on_batch_across_oom_back_off(monkeypatch: pytest.MonkeyPatch) -> None:
    """A batch that runs out of memory is retried smaller and reported only once done."""
    real = nll_mod._batch_nll
    failed: list[int] = []

    def flaky(model: object, chunk: list[list[int]], *args: object) -> object:
        if len(chunk) > 2 and len(failed) < 2:
            failed.append(len(chunk))
            raise torch.cuda.OutOfMemoryError("simulated")
        return real(model, chunk, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(nll_mod, "_batch_nll", flaky)
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: None)
    seen: list[tuple[int, int]] = []
    result = measure_nll(
        tiny_model(), _windows(7, 9), batch_size=8, on_batch=lambda d, t: seen.append((d, t))
    )
    assert failed == [7, 4] and result.telemetry.oom_retries == 2
    assert seen == [(2, 7), (4, 7), (6, 7), (7, 7)]
