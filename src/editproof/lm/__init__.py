"""Models: where they come from, how they load, what they are made of, and their digests."""

from editproof.lm.anatomy import FAMILIES, Anatomy, Family, describe, family_of, layer_index
from editproof.lm.digest import WeightDigest, weight_digest
from editproof.lm.loading import LoadedModel, load_model, resolve_device, resolve_dtype
from editproof.lm.preflight import preflight_source
from editproof.lm.sources import ModelSource, parse_source

__all__ = [
    "FAMILIES",
    "Anatomy",
    "Family",
    "LoadedModel",
    "ModelSource",
    "WeightDigest",
    "describe",
    "family_of",
    "layer_index",
    "load_model",
    "parse_source",
    "preflight_source",
    "resolve_device",
    "resolve_dtype",
    "weight_digest",
]
