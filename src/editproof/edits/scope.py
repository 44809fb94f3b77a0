"""Edit scopes: which weight matrices of a model an edit touches.

A scope is ``<family>[@layer=N|@layers=N]`` with family ``ffn``, ``attn`` or ``all`` (attn+ffn).
It resolves through :mod:`editproof.lm.anatomy` to the parameters with ndim >= 2 in those
families; embeddings, lm_head, norms and MoE routers are never part of a scope.

Every resolved parameter is seen as one or more matrices in ``[out, in]`` layout so per-row
math means the same thing everywhere:

* ``nn.Linear`` weights are already ``[out, in]``.
* GPT-2 ``Conv1D`` weights are stored ``[in, out]``; we work on the transposed view, so a
  "row" is still one output channel and quantization groups run along the input dimension.
* Fused MoE experts (transformers 5 Mixtral: ``experts.gate_up_proj`` ``[E, 2I, H]`` and
  ``experts.down_proj`` ``[E, H, I]``, each slice used as ``F.linear`` weight) are split into
  their E expert slices, each its own ``[out, in]`` matrix.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from editproof.errors import InvalidInputError, UsageError
from editproof.lm.anatomy import decoder_layers, family_of, layer_index

if TYPE_CHECKING:
    from collections.abc import Callable

    import torch

ScopeFamily = Literal["ffn", "attn", "all"]
SCOPE_FAMILIES: tuple[ScopeFamily, ...] = ("ffn", "attn", "all")
LAST: Literal["last"] = "last"

_SCOPE = re.compile(r"^(?P<family>[a-z_]+)(?:@(?P<key>[a-z_]+)=(?P<value>[^@]*))?$")
# MoE routers sit under mlp/block_sparse_moe and so look like ffn by name; they are excluded
# because quantizing or pruning them changes routing, which is not what an ffn edit means.
_ROUTER = re.compile(
    r"\.(?:mlp|block_sparse_moe|moe)\.(?:gate|router|shared_expert_gate)(?:\.weight)?$"
)


@dataclass(frozen=True)
class Scope:
    """A parsed scope. ``layer`` selects exactly one layer, ``first_layers`` the first N."""

    family: ScopeFamily
    layer: int | Literal["last"] | None = None
    first_layers: int | None = None

    @property
    def text(self) -> str:
        if self.layer is not None:
            return f"{self.family}@layer={self.layer}"
        if self.first_layers is not None:
            return f"{self.family}@layers={self.first_layers}"
        return self.family

    def families(self) -> tuple[str, ...]:
        return ("attn", "ffn") if self.family == "all" else (self.family,)

    def with_layer_count(self, n_layers: int) -> Scope:
        """Same scope with ``layer=last`` made concrete for a model of ``n_layers`` layers."""
        if self.layer == LAST:
            return Scope(self.family, layer=max(n_layers - 1, 0))
        return self


def parse_scope(text: str) -> Scope:
    """Parse a scope; raise UsageError naming the bad part."""
    match = _SCOPE.match(text.strip())
    family = match.group("family") if match else text.split("@", 1)[0]
    if family not in SCOPE_FAMILIES:
        raise UsageError(
            f"bad scope '{text}': family must be one of {', '.join(SCOPE_FAMILIES)}"
            f"{suggest(family, SCOPE_FAMILIES)}"
        )
    if match is None:
        raise UsageError(f"bad scope '{text}': expected <family>[@layer=N|@layers=N]")
    key, value = match.group("key"), match.group("value")
    fam: ScopeFamily = family
    if key is None:
        return Scope(fam)
    if key == "layer":
        if value == LAST:
            return Scope(fam, layer=LAST)
        return Scope(fam, layer=_int(value, text, "layer", minimum=0))
    if key == "layers":
        return Scope(fam, first_layers=_int(value, text, "layers", minimum=1))
    raise UsageError(
        f"bad scope '{text}': selector '{key}' must be layer=N or layers=N"
        f"{suggest(key, ('layer', 'layers'))}"
    )


def _int(value: str, text: str, key: str, minimum: int) -> int:
    if not re.fullmatch(r"\d+", value) or int(value) < minimum:
        raise UsageError(
            f"bad scope '{text}': {key} must be an integer >= {minimum}, got '{value}'"
        )
    return int(value)


def suggest(word: str, choices: tuple[str, ...]) -> str:
    """`` (did you mean 'x'?)`` for the closest choice, or an empty string."""
    close = difflib.get_close_matches(word, choices, n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


@dataclass(frozen=True)
class Matrix:
    """One ``[out, in]`` matrix of a parameter: the whole weight or one expert slice."""

    name: str
    param: torch.Tensor
    index: int | None
    transposed: bool

    @property
    def label(self) -> str:
        return self.name if self.index is None else f"{self.name}[{self.index}]"

    def view(self) -> torch.Tensor:
        """A writable 2-D view of the stored data in ``[out, in]`` layout."""
        data = self.param.data if self.index is None else self.param.data[self.index]
        return data.T if self.transposed else data


@dataclass(frozen=True)
class Target:
    """A parameter an edit may touch."""

    name: str
    param: torch.Tensor
    family: str
    layer: int | None
    transposed: bool

    def matrices(self) -> list[Matrix]:
        if self.param.ndim == 2:
            return [Matrix(self.name, self.param, None, self.transposed)]
        if self.param.ndim != 3:
            raise InvalidInputError(
                f"tensor {self.name} has {self.param.ndim} dims; only 2-D weights and 3-D "
                "expert stacks can be edited"
            )
        return [Matrix(self.name, self.param, i, False) for i in range(self.param.shape[0])]


def layer_count(model: Any) -> int:
    layers = decoder_layers(model)
    return len(layers) if layers is not None else 0


def find_targets(
    model: Any, families: tuple[str, ...], layer_ok: Callable[[int | None], bool]
) -> list[Target]:
    """Parameters with ndim >= 2 in ``families`` whose layer passes ``layer_ok``, model order."""
    conv1d = _conv1d_names(model)
    targets = []
    for name, param in model.named_parameters():
        if param.ndim < 2 or _ROUTER.search(name.removesuffix(".weight")):
            continue
        family = family_of(name)
        layer = layer_index(name)
        if family in families and layer_ok(layer):
            module_name = name.rsplit(".", 1)[0]
            targets.append(Target(name, param, family, layer, module_name in conv1d))
    return targets


def resolve_scope(model: Any, scope: Scope) -> list[Target]:
    """Targets of ``scope``; UsageError, naming what the model has, when it matches nothing."""
    n_layers = layer_count(model)
    concrete = scope.with_layer_count(n_layers)

    def layer_ok(layer: int | None) -> bool:
        if concrete.layer is not None:
            return layer == concrete.layer
        if concrete.first_layers is not None:
            return layer is not None and layer < concrete.first_layers
        return True

    targets = find_targets(model, concrete.families(), layer_ok)
    if not targets:
        raise UsageError(
            f"scope '{scope.text}' matches no {'/'.join(concrete.families())} weights: "
            f"{layout(model)}"
        )
    return targets


def layout(model: Any) -> str:
    """What a scope can select in ``model``, for error messages: layers and families."""
    n_layers = layer_count(model)
    found = {t.family for t in find_targets(model, ("attn", "ffn"), lambda _: True)}
    families = [f for f in ("attn", "ffn") if f in found]
    weights = f"{' and '.join(families)} weights" if families else "no attn or ffn weights"
    if len(families) == 1:
        weights += " only"
    if n_layers == 0:
        return f"{type(model).__name__} has no decoder layers and {weights}"
    layers = f"0-{n_layers - 1}" if n_layers > 1 else "0"
    plural = "s" if n_layers > 1 else ""
    return f"{type(model).__name__} has {n_layers} decoder layer{plural} ({layers}) with {weights}"


def _conv1d_names(model: Any) -> set[str]:
    # GPT-2 style Conv1D: identified by class name so transformers need not be importable here.
    return {name for name, mod in model.named_modules() if type(mod).__name__ == "Conv1D"}


# Projection roles probes aim at, with the names each architecture gives them (module path
# suffixes). GPT-2 reuses ``c_proj`` for attention output and ffn down projection, hence the
# ``attn.``/``mlp.`` prefixes. Fused ``experts.gate_up_proj`` ends in ``up_proj`` on purpose.
ROLES: dict[str, tuple[str, ...]] = {
    "up_proj": ("up_proj", "c_fc", "dense_h_to_4h", "fc1", "w1", "w3"),
    "down_proj": ("down_proj", "mlp.c_proj", "dense_4h_to_h", "fc2", "w2"),
    "gate_proj": ("gate_proj",),
    "o_proj": ("o_proj", "attn.c_proj", "out_proj", "attention.dense"),
    "q_proj": ("q_proj",),
    "k_proj": ("k_proj",),
    "v_proj": ("v_proj",),
    "qkv": ("c_attn", "query_key_value", "wqkv", "qkv_proj"),
    "any": ("",),
}
_QKV = ("q_proj", "k_proj", "v_proj", "qkv")


def has_role(name: str, role: str) -> bool:
    path = name.removesuffix(".weight")
    return any(path.endswith(suffix) for suffix in ROLES[role])


def is_qkv(name: str) -> bool:
    return any(has_role(name, role) for role in _QKV)


def parse_layers(text: str) -> tuple[int, int | None]:
    """``all`` -> (0, None); ``N`` -> (N, N); ``A-B`` -> (A, B), inclusive."""
    if text == "all":
        return 0, None
    low, sep, high = text.partition("-")
    if low.isdigit() and (high.isdigit() if sep else True):
        first, last = int(low), int(high) if sep else int(low)
        if first <= last:
            return first, last
    raise UsageError(f"layers must be 'all', 'N' or 'A-B' with A <= B, got '{text}'")


def select_targets(
    model: Any, *, family: str, layers: str, role: str, include_qkv: bool
) -> list[Target]:
    """Probe targets: ``family`` (``mlp`` = ffn) weights of ``role`` in a layer range.

    q/k/v projections are left out unless ``include_qkv`` (or the role asks for them).
    """
    fam = "ffn" if family == "mlp" else family
    families = ("attn", "ffn") if fam == "all" else (fam,)
    first, last = parse_layers(layers)

    def layer_ok(layer: int | None) -> bool:
        return layer is not None and layer >= first and (last is None or layer <= last)

    skip_qkv = not include_qkv and role not in _QKV
    return [
        t
        for t in find_targets(model, families, layer_ok)
        if has_role(t.name, role) and not (skip_qkv and is_qkv(t.name))
    ]
