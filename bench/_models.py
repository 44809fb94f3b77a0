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
    }[arch]
    config = config_cls(**spec)
    torch.manual_seed(0)
    with torch.device(device):
        model = model_cls._from_config(config, dtype=dtype)
    model.eval().requires_grad_(False)
    return model, int(config.vocab_size)


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
