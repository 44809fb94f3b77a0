"""Models for benchmarks: random-init stand-ins of real shapes, or the embedded demo.

Weight values do not change forward-pass speed, so a random-init Mistral-7B-shaped model
measures what a real 7B checkpoint would, with nothing to download.
"""

from __future__ import annotations

import os
from typing import Any

# Benchmarks print tables; library progress bars would interleave with them.
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

SHAPES: dict[str, dict[str, Any]] = {
    # MistralConfig defaults: 7.24B parameters, GQA with 8 KV heads, vocab 32k.
    "mistral-7b": {"arch": "mistral"},
    "llama-1b": {
        "arch": "llama",
        "vocab_size": 128256,
        "hidden_size": 2048,
        "intermediate_size": 8192,
        "num_hidden_layers": 16,
        "num_attention_heads": 32,
        "num_key_value_heads": 8,
        "tie_word_embeddings": True,
    },
    # Qwen2.5-14B: 14.8B parameters at its 152k vocabulary (fewer with ours), GQA 40/8.
    "qwen2.5-14b": {
        "arch": "qwen2",
        "vocab_size": 152064,
        "hidden_size": 5120,
        "intermediate_size": 13824,
        "num_hidden_layers": 48,
        "num_attention_heads": 40,
        "num_key_value_heads": 8,
        "max_position_embeddings": 32768,
        "rope_theta": 1000000.0,
        "rms_norm_eps": 1e-6,
    },
    # Qwen1.5-72B: 72B parameters, full multi-head attention, 152k vocabulary.
    "qwen1.5-72b": {
        "arch": "qwen2",
        "vocab_size": 152064,
        "hidden_size": 8192,
        "intermediate_size": 24576,
        "num_hidden_layers": 80,
        "num_attention_heads": 64,
        "num_key_value_heads": 64,
        "max_position_embeddings": 32768,
        "rope_theta": 1000000.0,
        "rms_norm_eps": 1e-6,
    },
    "tiny": {
        "arch": "llama",
        "vocab_size": 4096,
        "hidden_size": 128,
        "intermediate_size": 256,
        "num_hidden_layers": 4,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
    },
}


def build(name: str, device: str, dtype: Any) -> tuple[Any, int]:
    """Return (model in eval mode on ``device``, vocab size)."""
    import torch
    import transformers as tf

    if name == "demo":
        from editproof.lm import load_model, parse_source

        lm = load_model(parse_source("demo"), device=device, tokenizer=False)
        return lm.model, int(lm.model.config.vocab_size)
    spec = dict(SHAPES[name])
    arch = spec.pop("arch")
    config_cls, model_cls = {
        "mistral": (tf.MistralConfig, tf.MistralForCausalLM),
        "llama": (tf.LlamaConfig, tf.LlamaForCausalLM),
        "qwen2": (tf.Qwen2Config, tf.Qwen2ForCausalLM),
    }[arch]
    config = config_cls(**spec)
    torch.manual_seed(0)
    with torch.device(device):
        model = model_cls._from_config(config, dtype=dtype)
    model.eval().requires_grad_(False)
    return model, int(config.vocab_size)


def config_dir(name: str, work: Any, vocab_size: int = 24763) -> str:
    """A ``random:`` source for shape ``name``: its config.json and a tokenizer trained with
    ``vocab_size`` tokens (ids below the model's vocabulary), no weights; the model is drawn
    on the GPUs when a worker loads it."""
    from pathlib import Path

    import transformers as tf

    target = Path(work) / f"{name}-config"
    if not (target / "config.json").exists():
        spec = dict(SHAPES[name])
        arch = spec.pop("arch")
        config_cls = {"mistral": tf.MistralConfig, "llama": tf.LlamaConfig,
                      "qwen2": tf.Qwen2Config}[arch]  # fmt: skip
        config_cls(**spec).save_pretrained(str(target))
        train_tokenizer(vocab_size).save_pretrained(str(target))
    return f"random:{target}"


def train_tokenizer(vocab_size: int) -> Any:
    """A byte-level BPE tokenizer trained on the stdlib's pydoc text (offline, seconds)."""
    import pydoc_data.topics

    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    texts = [v for _, v in sorted(pydoc_data.topics.topics.items())]
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=["<eos>", "<unk>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<eos>", unk_token="<unk>")
