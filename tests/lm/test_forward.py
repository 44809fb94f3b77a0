"""Choosing the forward, loading through the native one, and the cached tokenizer facts."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")
from editproof.data.tokenizer_facts import cached_facts, facts_of, files_key  # noqa: E402
from editproof.errors import UsageError  # noqa: E402
from editproof.lm import load_model, parse_source  # noqa: E402
from editproof.lm.forward import NativePlan, choose_forward, native_plan  # noqa: E402


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("EDITPROOF_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def _copy(tiny_dir: Path, tmp_path: Path, name: str = "m") -> Path:
    return Path(shutil.copytree(tiny_dir, tmp_path / name))


def test_auto_keeps_transformers_on_the_cpu(tiny_dir: Path) -> None:
    src = parse_source(str(tiny_dir))
    assert choose_forward("auto", [src], "cpu", "cpu") == ("transformers", {})
    assert choose_forward("transformers", [src], "cuda:0", "cuda:0") == ("transformers", {})
    forward, plans = choose_forward("native", [src], "cpu", "cpu")
    assert forward == "native" and isinstance(plans[repr(src.identity)], NativePlan)
    # auto on a GPU takes it when every model can (resolution passed in: no GPU needed)
    assert choose_forward("auto", [src], "cuda:0", "cuda:0")[0] == "native"


def test_one_model_that_cannot_keeps_both_on_transformers(tiny_dir: Path, tmp_path: Path) -> None:
    from tests.models import save_tiny

    gpt2 = save_tiny(tmp_path / "gpt2", "gpt2")
    a, b = parse_source(str(tiny_dir)), parse_source(str(gpt2))
    assert choose_forward("auto", [a, b], "cuda:0", "cuda:0") == ("transformers", {})
    with pytest.raises(UsageError, match=r"--forward native cannot run .*gpt2.*model_type 'gpt2'"):
        choose_forward("native", [a, b], "cpu", "cpu")
    with pytest.raises(UsageError, match="unknown --forward 'fast'"):
        choose_forward("fast", [a], "cpu", "cpu")


def test_plan_refuses_what_it_cannot_load_exactly(tiny_dir: Path, tmp_path: Path) -> None:
    from safetensors.torch import load_file, save_file

    assert "a hub source" in str(native_plan(parse_source("org/model")))
    folder = _copy(tiny_dir, tmp_path)
    tensors = load_file(str(folder / "model.safetensors"))
    save_file({**tensors, "extra.weight": torch.zeros(2)}, str(folder / "model.safetensors"))
    assert "holds 1 tensors the model has not" in str(native_plan(parse_source(str(folder))))
    save_file(
        {k: v for k, v in tensors.items() if "layers.1." not in k},
        str(folder / "model.safetensors"),
    )
    assert "lacks" in str(native_plan(parse_source(str(folder))))
    # a tied model whose file also holds lm_head: which copy counts would be a guess
    save_file({**tensors, "lm_head.weight": tensors["model.embed_tokens.weight"].clone()},
              str(folder / "model.safetensors"))  # fmt: skip
    assert "lm_head.weight" in str(native_plan(parse_source(str(folder))))
    (folder / "model.safetensors").unlink()
    torch.save({}, str(folder / "pytorch_model.bin"))
    assert "not safetensors" in str(native_plan(parse_source(str(folder))))


def test_native_load_reads_the_tokenizer_once_then_only_its_facts(
    tiny_dir: Path, tmp_path: Path, cache: Path
) -> None:
    folder = _copy(tiny_dir, tmp_path)
    src = parse_source(str(folder))
    plan = native_plan(src)
    assert isinstance(plan, NativePlan)
    assert cached_facts(folder) is None
    first = load_model(src, device="cpu", native=plan)
    assert first.forward == "native" and first.tokenizer is not None  # facts not cached yet
    facts = cached_facts(folder)
    assert facts is not None and facts == facts_of(first.tokenizer) == first.tokenizer_facts
    second = load_model(src, device="cpu", native=plan)
    assert second.tokenizer is None and second.tokenizer_facts == facts
    tok = second.get_tokenizer()  # loaded on first use
    assert tok is not None and facts_of(tok) == facts
    hf = load_model(src, device="cpu")  # the transformers path stores the same facts
    assert hf.forward == "transformers" and hf.tokenizer_facts == facts
    assert hf.tokenizer is not None  # transformers' forward always has its tokenizer
    a, b = hf.model.state_dict(), second.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_facts_cache_follows_the_files(tiny_dir: Path, tmp_path: Path, cache: Path) -> None:
    folder = _copy(tiny_dir, tmp_path)
    load_model(parse_source(str(folder)), device="cpu")
    key = files_key(folder)
    assert key is not None and cached_facts(folder) is not None
    entry = cache / "tokenizer-facts" / f"{key}.json"
    meta = json.loads(entry.read_text())
    entry.write_text(json.dumps({**meta, "key": "0" * 64}))  # an entry not for these files
    assert cached_facts(folder) is None
    entry.write_text("{not json")
    assert cached_facts(folder) is None
    load_model(parse_source(str(folder)), device="cpu")  # rewritten
    assert cached_facts(folder) is not None
    config = json.loads((folder / "tokenizer_config.json").read_text())
    (folder / "tokenizer_config.json").write_text(json.dumps({**config, "model_max_length": 7}))
    assert files_key(folder) != key and cached_facts(folder) is None
    assert files_key(tmp_path) is None  # no tokenizer files at all


def test_a_cached_native_run_never_imports_transformers(
    tiny_dir: Path, tmp_path: Path, cache: Path
) -> None:
    """Once the tokenizer's facts are cached, an evaluation on the native forward runs
    without importing transformers, SymPy or torch._dynamo: on cached tokens, and on a new
    text, which the tokenizer's verified bare backend encodes (separate processes, so
    nothing is preloaded; a checkpoint and a random-init shape)."""
    import os

    folder = _copy(tiny_dir, tmp_path)
    shape = tmp_path / "shape"
    shape.mkdir()
    for name in ("config.json", "tokenizer.json", "tokenizer_config.json"):
        shutil.copy(folder / name, shape / name)
    text = tmp_path / "new.txt"
    text.write_text(
        "\n\n".join(
            f"Paragraph {i}: a new text the token cache has not seen. " * 9 for i in range(90)
        )
    )
    code = """
import sys
from editproof.evaluation import EvaluationConfig, evaluate
from editproof.lm.libraries import import_model_libraries
times = import_model_libraries(device="cpu", with_transformers=False)
extra = {"provider": "text", "data_path": sys.argv[2]} if sys.argv[2] != "-" else {}
config = EvaluationConfig(baseline=sys.argv[1], edit="quant_rtn:8:32:attn", seq_len=32,
    n_preview=8, n_final=8, device="cpu", relax_token_floor=True, forward=sys.argv[3], **extra)
report = evaluate(config)
print(report.baseline.model.forward, report.subject.model.forward, report.status,
      "transformers" in sys.modules, times.transformers,
      "sympy" in sys.modules, "torch._dynamo" in sys.modules, report.dataset.plan_digest)
"""
    env = {**os.environ, "EDITPROOF_CACHE": str(cache)}

    def run(base: str, data: str, forward: str = "native", **more: str) -> list[str]:
        proc = subprocess.run(
            [sys.executable, "-c", code, base, data, forward],
            capture_output=True,
            text=True,
            env={**env, **more},
        )
        assert proc.returncode == 0, proc.stderr[-2000:]
        return proc.stdout.split()

    first = run(str(folder), "-")
    assert first[:2] == ["native", "native"] and first[3] == "True"  # loaded the tokenizer
    cached = run(str(folder), "-")
    assert cached[:3] == first[:3] and cached[3:7] == ["False", "0.0", "False", "False"]
    assert cached[7] == first[7]
    fresh = run(str(folder), str(text))  # new text: the bare backend tokenizes it
    assert fresh[:2] == ["native", "native"] and fresh[3:7] == ["False", "0.0", "False", "False"]
    # the same windows as transformers' tokenizer cuts from that text (no caches at all)
    plain = run(str(folder), str(text), "transformers", EDITPROOF_TOKEN_CACHE="0")
    assert plain[:2] == ["transformers", "transformers"] and plain[7] == fresh[7]
    shaped = run(f"random:{shape}@3", "-")  # same tokenizer files: facts found
    assert shaped[:2] == ["native", "native"] and shaped[3:7] == ["False", "0.0", "False", "False"]


def test_bare_backend_tokenizes_like_the_tokenizer(tiny_tokenizer: Any) -> None:
    """The verified backend gives the ids the tokenizer gives, on the whole default text."""
    from editproof.data.stdlib_docs import stdlib_documents
    from editproof.data.tokenizer_facts import bare_encoder, probe_backend

    backend = probe_backend(tiny_tokenizer)
    assert backend is not None
    encode = bare_encoder(backend)
    docs = stdlib_documents()[0][:400]
    assert all(encode(d) == list(tiny_tokenizer.encode(d, add_special_tokens=False)) for d in docs)


def test_a_tokenizer_that_adds_its_own_steps_keeps_its_encoder(
    tiny_dir: Path, tmp_path: Path, cache: Path
) -> None:
    """When the tokenizer's class encodes differently from its backend, the backend is not
    kept, and a native load with its facts cached loads the tokenizer to tokenize."""
    from editproof.data.tokenizer_facts import probe_backend, store_facts

    class Shifted:
        def __init__(self, tok: Any) -> None:
            self._tok = tok
            self.backend_tokenizer = tok.backend_tokenizer

        def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
            return [i + 1 for i in self._tok.encode(text, add_special_tokens=add_special_tokens)]

    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(tiny_dir))
    assert probe_backend(Shifted(tok)) is None
    folder = _copy(tiny_dir, tmp_path)
    facts = facts_of(tok)
    store_facts(folder, type(facts)(facts.identity, facts.digest, facts.eos_token_id, None))
    src = parse_source(str(folder))
    plan = native_plan(src)
    assert isinstance(plan, NativePlan)
    loaded = load_model(src, device="cpu", native=plan)
    assert loaded.tokenizer is None and loaded.tokenizer_facts.backend is None
    assert loaded.encoder()("some text") == list(tok.encode("some text", add_special_tokens=False))
    assert loaded.tokenizer is not None  # loaded to encode


def _report(folder: Path, forward: str, edit: str) -> Any:
    from editproof.evaluation import EvaluationConfig, evaluate

    config = EvaluationConfig(
        baseline=str(folder), edit=edit, seq_len=32, n_preview=10, n_final=10,
        device="cpu", relax_token_floor=True, forward=forward,
    )  # fmt: skip
    return evaluate(config)


@pytest.mark.parametrize(
    "edit", ["quant_rtn:8:32:attn", "shape_mismatch", "missing_tensors", "weight_tying_break"]
)
def test_native_reports_match_transformers(tiny_dir: Path, edit: str) -> None:
    """The same evaluation through either forward: same digests, same per-window NLLs, same
    verdict; faults that rebuild embeddings, drop a layer or untie the head included."""
    a, b = _report(tiny_dir, "transformers", edit), _report(tiny_dir, "native", edit)
    assert (a.baseline.model.forward, b.baseline.model.forward) == ("transformers", "native")
    assert b.subject.model.forward == "native"
    skip = {"forward", "load_seconds"}
    for arm in ("baseline", "subject"):  # every fact of the model but how it was run
        x, y = getattr(a, arm).model, getattr(b, arm).model
        assert x.model_dump(exclude=skip) == y.model_dump(exclude=skip)
    assert a.dataset == b.dataset and a.status == b.status
    for arm in ("baseline", "subject"):
        for split in ("preview", "final"):
            x, y = getattr(getattr(a, arm), split), getattr(getattr(b, arm), split)
            assert x.token_counts == y.token_counts
            pairs = zip(x.mean_nll, y.mean_nll, strict=True)
            assert all((p is None and q is None) or abs(p - q) <= 1e-6 for p, q in pairs), (
                arm,
                split,
            )
    assert a.subject.model.weight_sha256 == b.subject.model.weight_sha256
    assert _untimed(a.guards.model_dump(mode="json")) == _untimed(b.guards.model_dump(mode="json"))


def _untimed(value: Any) -> Any:
    """A dumped result without its timing fields (the only values allowed to differ)."""
    if isinstance(value, dict):
        return {k: _untimed(v) for k, v in value.items() if "seconds" not in k}
    if isinstance(value, list):
        return [_untimed(v) for v in value]
    return value


def test_a_cached_backend_is_read_only_to_tokenize_and_only_when_sound(
    tiny_dir: Path, tmp_path: Path, cache: Path
) -> None:
    folder = _copy(tiny_dir, tmp_path)
    load_model(parse_source(str(folder)), device="cpu")  # stores the facts and the backend
    facts = cached_facts(folder)
    assert facts is not None and facts.backend is None and facts.backend_file is not None
    assert facts.backend_text() is not None  # read on demand, verified
    plan = native_plan(parse_source(str(folder)))
    assert isinstance(plan, NativePlan)
    loaded = load_model(parse_source(str(folder)), device="cpu", native=plan)
    want = loaded.encoder()("a sentence to encode")
    assert loaded.tokenizer is None  # the bare backend encoded it
    facts.backend_file.write_text(facts.backend_file.read_text()[:-2])  # damaged
    again = load_model(parse_source(str(folder)), device="cpu", native=plan)
    assert again.tokenizer_facts is not None and again.tokenizer_facts.backend_text() is None
    assert again.encoder()("a sentence to encode") == want
    assert again.tokenizer is not None  # fell back to the tokenizer itself
