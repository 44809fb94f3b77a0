"""editproof's own forward for Llama-family models (llama, mistral, qwen2).

It computes what transformers computes for these architectures (tested to the bit on the CPU)
without importing transformers' modeling stack. :mod:`editproof.lm.forward` decides when it
runs; importing this package imports nothing heavy, its modules import torch.
"""
