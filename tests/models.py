"""Tiny random-init models of real architectures, with a real (tiny) tokenizer, for tests.

Everything is built offline in about a second: a byte-level BPE tokenizer trained on a
slice of the stdlib's pydoc text, and Llama / GPT-2 / Qwen2 / Mistral / Mixtral models with
hidden size 32 and 2 layers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

VOCAB = 320


def train_tokenizer() -> Any:
    import pydoc_data.topics

    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    text = [v for _, v in sorted(pydoc_data.topics.topics.items())][:20]
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB,
        special_tokens=["<eos>", "<unk>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(text, trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<eos>", unk_token="<unk>")


def tiny_model(arch: str = "llama", *, seed: int = 0, vocab: int = VOCAB) -> Any:
    import torch
    import transformers as tf

    torch.manual_seed(seed)
    common = {
        "vocab_size": vocab,
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "max_position_embeddings": 512,
        "eos_token_id": 0,
        "bos_token_id": 0,
    }
    if arch == "llama":
        model = tf.LlamaForCausalLM(tf.LlamaConfig(**common, tie_word_embeddings=True))
    elif arch == "mistral":
        model = tf.MistralForCausalLM(tf.MistralConfig(**common))
    elif arch == "qwen2":
        model = tf.Qwen2ForCausalLM(tf.Qwen2Config(**common))
    elif arch == "mixtral":
        model = tf.MixtralForCausalLM(tf.MixtralConfig(**common, num_local_experts=4))
    elif arch == "gpt2":
        model = tf.GPT2LMHeadModel(
            tf.GPT2Config(
                vocab_size=vocab,
                n_embd=32,
                n_layer=2,
                n_head=4,
                n_positions=512,
                eos_token_id=0,
                bos_token_id=0,
            )
        )
    else:
        raise ValueError(arch)
    return model.eval()


def save_tiny(
    path: Path, arch: str = "llama", *, seed: int = 0, tokenizer: Any | None = None
) -> Path:
    model = tiny_model(arch, seed=seed)
    model.save_pretrained(str(path))
    (tokenizer or train_tokenizer()).save_pretrained(str(path))
    return path
