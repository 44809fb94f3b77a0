"""Fault injections and guard probes, in memory and reversible through the journal.

Faults follow the reference error scenarios (``create_error_model.py``); probes are the
subtle, parameterised perturbations meant to trip exactly one guard (RMT, spectral, VE).
Structural faults (vocab resize, dropped layer, tying flip) register an undo closure that
puts back the very module/parameter objects and config values they replaced.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from pydantic import JsonValue

from editproof.edits.scope import Matrix, find_targets, layer_count, layout, select_targets
from editproof.edits.weights import Journal, Outcome, map_matrix, seeded
from editproof.errors import InvalidInputError, UsageError
from editproof.lm.anatomy import decoder_layers, max_positions

if TYPE_CHECKING:
    import torch

ParamValue = int | float | str | bool
FaultFn = Callable[[Any, Mapping[str, ParamValue], Journal], Outcome]


def _matrices(model: Any, families: tuple[str, ...], what: str) -> list[Matrix]:
    found = [m for t in find_targets(model, families, lambda _: True) for m in t.matrices()]
    if not found:
        raise InvalidInputError(
            f"{what}: {type(model).__name__} has no {'/'.join(families)} weights"
        )
    return found


def _first_param(model: Any, ok: Callable[[str, Any], bool], what: str) -> tuple[str, Any]:
    for name, param in model.named_parameters():
        if param.ndim >= 2 and param.dtype.is_floating_point and ok(name, param):
            return name, param
    raise InvalidInputError(f"{what}: {type(model).__name__} has no matching 2-D weight")


def _set_first(model: Any, journal: Journal, name: str, param: Any, value: float) -> Outcome:
    journal.save_tensor(name, param)
    param.data[(0,) * param.ndim] = value
    return Outcome(injected={"tensor": name, "index": [0] * param.ndim, "value": str(value)})


def nan_injection(model: Any, _: Mapping[str, ParamValue], journal: Journal) -> Outcome:
    layers = decoder_layers(model)
    if layers is None or len(layers) == 0:
        raise InvalidInputError(f"nan_injection: {type(model).__name__} has no decoder layers")
    block0 = {id(p) for p in layers[0].parameters()}
    name, param = _first_param(model, lambda _, p: id(p) in block0, "nan_injection")
    return _set_first(model, journal, name, param, math.nan)


def inf_injection(model: Any, _: Mapping[str, ParamValue], journal: Journal) -> Outcome:
    # "attn" also matches "self_attn", as in the reference.
    name, param = _first_param(model, lambda n, _: "attn" in n, "inf_injection")
    return _set_first(model, journal, name, param, math.inf)


def extreme_quant(model: Any, _: Mapping[str, ParamValue], journal: Journal) -> Outcome:
    """Per-matrix 2-bit RTN of every attn/ffn matrix: qmin -2, qmax 1, scale max|W|/2."""
    outcome = Outcome(injected={"bits": 2, "qmin": -2, "qmax": 1})
    for m in _matrices(model, ("attn", "ffn"), "extreme_quant"):
        journal.save_tensor(m.name, m.param)
        map_matrix(m, _two_bit)
        outcome.bits[m.name] = 2
    return outcome


def _two_bit(w: torch.Tensor) -> torch.Tensor:
    import torch

    x = w.to(torch.float32)
    scale = (x.abs().max() / 2).clamp(min=1e-10)
    return torch.round(x / scale).clamp(-2, 1) * scale


def scale_explosion(model: Any, _: Mapping[str, ParamValue], journal: Journal) -> Outcome:
    m = _matrices(model, ("ffn",), "scale_explosion")[0]
    journal.save_tensor(m.name, m.param)
    map_matrix(m, lambda w: w.float() * 100.0)
    return Outcome(injected={"matrix": m.label, "factor": 100.0})


def rank_collapse(model: Any, _: Mapping[str, ParamValue], journal: Journal) -> Outcome:
    """First <= 8 attention matrices -> rank-1 (column 0) x (row 0), original Frobenius norm."""
    chosen = _matrices(model, ("attn",), "rank_collapse")[:8]
    for m in chosen:
        journal.save_tensor(m.name, m.param)
        map_matrix(m, _rank_one)
    return Outcome(injected={"matrices": [m.label for m in chosen], "rank": 1})


def _rank_one(w: torch.Tensor) -> torch.Tensor:
    import torch

    x = w.to(torch.float32)
    r = torch.outer(x[:, 0], x[0, :])
    norm = torch.linalg.norm(r)
    return r * (torch.linalg.norm(x) / norm) if float(norm) > 0 else r


def norm_collapse(model: Any, _: Mapping[str, ParamValue], journal: Journal) -> Outcome:
    chosen = _matrices(model, ("attn",), "norm_collapse")[:32]
    for m in chosen:
        journal.save_tensor(m.name, m.param)
        m.view().zero_()
    return Outcome(injected={"matrices": [m.label for m in chosen]})


# --- structural faults --------------------------------------------------------------------


def _module_snapshot(module: Any) -> Callable[[], None]:
    """Undo for a module whose parameters may be replaced or re-pointed at new storage."""
    params = dict(module._parameters)
    datas = {n: p.data for n, p in params.items() if p is not None}
    attrs = {k: v for k, v in vars(module).items() if isinstance(v, int | float | bool | None)}

    def undo() -> None:
        for name, param in params.items():
            module._parameters[name] = param
            if param is not None:
                param.data = datas[name]
        for key, value in attrs.items():
            setattr(module, key, value)

    return undo


def _configs(model: Any) -> list[Any]:
    """The model config and its text config, once each (they are often the same object)."""
    return list({id(c): c for c in (model.config, model.config.get_text_config())}.values())


def _module_name(model: Any, module: Any) -> str:
    for name, mod in model.named_modules(remove_duplicate=False):
        if mod is module:
            return str(name)
    return "?"


def shape_mismatch(model: Any, _: Mapping[str, ParamValue], journal: Journal) -> Outcome:
    """``resize_token_embeddings(vocab + 8)``; undo puts back modules, storage and config."""

    emb_in = model.get_input_embeddings() if hasattr(model, "resize_token_embeddings") else None
    if emb_in is None:
        raise InvalidInputError(f"shape_mismatch: {type(model).__name__} has no token embeddings")
    emb_out = model.get_output_embeddings()
    modules = [emb_in] + ([emb_out] if emb_out is not None and emb_out is not emb_in else [])
    undos = [_module_snapshot(m) for m in modules]
    text_config = model.config.get_text_config()
    old_vocab = int(emb_in.weight.shape[0])
    old_config_vocab = text_config.vocab_size
    missing = object()
    old_attr = model.__dict__.get("vocab_size", missing)
    names = [f"{_module_name(model, m)}.weight" for m in modules]

    def undo() -> None:
        if model.get_input_embeddings() is not emb_in:
            model.set_input_embeddings(emb_in)
        if emb_out is not None and model.get_output_embeddings() is not emb_out:
            model.set_output_embeddings(emb_out)
        for step in undos:
            step()
        text_config.vocab_size = old_config_vocab
        if old_attr is missing:
            model.__dict__.pop("vocab_size", None)
        else:
            model.__dict__["vocab_size"] = old_attr

    journal.on_restore(undo)
    # New rows are random-initialised; a fixed seed keeps the fault reproducible.
    with seeded(0, emb_in.weight.device):
        model.resize_token_embeddings(old_vocab + 8, mean_resizing=False)
    return Outcome(
        touched=names, injected={"vocab_before": old_vocab, "vocab_after": old_vocab + 8}
    )


def missing_tensors(model: Any, _: Mapping[str, ParamValue], journal: Journal) -> Outcome:
    """Drop the last decoder layer; fix layer counts and per-layer lists in the config."""
    layers = decoder_layers(model)
    n = layer_count(model)
    if layers is None or n < 2:
        raise InvalidInputError(
            f"missing_tensors: {type(model).__name__} has {n} decoder layers; need at least 2"
        )
    removed = layers[n - 1]
    removed_ids = {id(p) for p in removed.parameters()}
    dropped = [name for name, p in model.named_parameters() if id(p) in removed_ids]
    changes: list[tuple[Any, str, Any]] = []
    for config in _configs(model):
        for key, value in list(vars(config).items()):
            count = key in ("num_hidden_layers", "n_layer", "num_layers") and value == n
            # Per-layer lists (e.g. layer_types); the name check keeps eos_token_id lists out.
            per_layer = "layer" in key and isinstance(value, list | tuple) and len(value) == n
            if count or per_layer:
                changes.append((config, key, value))

    def undo() -> None:
        if len(layers) == n - 1:
            layers.append(removed)
        for config, key, value in reversed(changes):
            setattr(config, key, value)

    journal.on_restore(undo)
    del layers[n - 1]
    for config, key, value in changes:
        setattr(config, key, value[:-1] if isinstance(value, list | tuple) else n - 1)
    return Outcome(
        touched=dropped,
        injected={
            "removed_layer": n - 1,
            "layers_before": n,
            "config_fixed": list[JsonValue](sorted({key for _, key, _ in changes})),
        },
    )


def weight_tying_break(model: Any, _: Mapping[str, ParamValue], journal: Journal) -> Outcome:
    """Untie lm_head (own cloned Parameter) if tied, else tie it; toggle the config flag."""
    import torch

    emb_in, emb_out = model.get_input_embeddings(), model.get_output_embeddings()
    if emb_in is None or emb_out is None or not hasattr(emb_out, "weight"):
        raise InvalidInputError(f"weight_tying_break: {type(model).__name__} has no lm_head")
    old = emb_out.weight
    tied = old is emb_in.weight
    name = f"{_module_name(model, emb_out)}.weight"
    if not tied and emb_in.weight.shape != old.shape:
        raise InvalidInputError(
            f"weight_tying_break: embeddings {list(emb_in.weight.shape)} and lm_head "
            f"{list(old.shape)} differ in shape and cannot be tied"
        )
    flags = [(c, getattr(c, "tie_word_embeddings", None)) for c in _configs(model)]

    def undo() -> None:
        emb_out._parameters["weight"] = old
        for config, flag in flags:
            config.tie_word_embeddings = flag

    journal.on_restore(undo)
    with torch.no_grad():
        new = torch.nn.Parameter(old.detach().clone(), requires_grad=old.requires_grad)
    emb_out.weight = new if tied else emb_in.weight
    for config, _flag in flags:
        config.tie_word_embeddings = not tied
    return Outcome(touched=[name], injected={"tensor": name, "tied_before": tied})


# --- probes ---------------------------------------------------------------------------------


def probe_matrices(model: Any, probe: str, params: Mapping[str, ParamValue]) -> list[Matrix]:
    """The matrices a probe perturbs; UsageError when its selection matches nothing."""
    # max_params counts parameters: a fused expert stack is one parameter, all slices edited.
    targets = select_targets(
        model,
        family=str(params["family"]),
        layers=str(params["layers"]),
        role=str(params["target"]),
        include_qkv=bool(params.get("include_qkv", False)),
    )[: int(params["max_params"])]
    if not targets:
        raise UsageError(
            f"{probe}: no {params['family']} '{params['target']}' weights in layers "
            f"{params['layers']}: {layout(model)}"
        )
    return [m for t in targets for m in t.matrices()]


def rmt_norm_noise(
    model: Any,
    params: Mapping[str, ParamValue],
    journal: Journal,
    sample: Sequence[Sequence[int]] | None = None,
) -> Outcome:
    """Anisotropy row blending: a random fraction of rows pulled toward one shared direction.

    ``row' = (1 - blend) row + blend |row| d``, optional Gaussian jitter, then
    (``preserve_row_norms``) rescaled to the row's original norm. With ``align=input`` the
    direction ``d`` of each matrix is the dominant right singular direction of that matrix's
    inputs on ``sample`` (a few evaluation windows; seeded random tokens without one), so
    the aligned rows add one strong shared component to the layer's *activations* -- an RMT
    edge outlier -- while the weights' spectrum barely moves. ``align=random`` (the
    reference's construction) draws ``d`` at random, which moves the weight spectrum long
    before the activations notice.
    """
    import torch

    gen = torch.Generator().manual_seed(int(params["seed"]))
    blend, jitter = float(params["blend"]), float(params["jitter"])
    chosen = probe_matrices(model, "rmt_norm_noise", params)
    aligned = str(params.get("align", "random")) == "input"
    inputs = _input_directions(model, chosen, sample, int(params["seed"])) if aligned else {}
    rows_changed: list[JsonValue] = []
    for m in chosen:
        journal.save_tensor(m.name, m.param)
        view = m.view()
        n_rows = min(
            int(params["max_rows"]), max(1, int(float(params["row_frac"]) * view.shape[0]))
        )
        idx = torch.randperm(view.shape[0], generator=gen)[:n_rows]
        direction = torch.randn(view.shape[1], generator=gen)
        direction = inputs.get(m.label, direction / torch.linalg.norm(direction)).to(view.device)
        idx = idx.to(view.device)
        rows = view[idx].to(torch.float32)
        norms = torch.linalg.norm(rows, dim=1, keepdim=True)
        if aligned:  # each row moves toward the nearer of +d and -d: the least weight change
            pull = norms * torch.sign(rows @ direction).unsqueeze(1) * direction
        else:
            pull = norms * direction
        mixed = (1 - blend) * rows + blend * pull
        if jitter > 0:
            noise = torch.randn(n_rows, view.shape[1], generator=gen).to(view.device)
            mixed = mixed + jitter * norms / math.sqrt(view.shape[1]) * noise
        if params["preserve_row_norms"]:
            mixed = mixed * (norms / torch.linalg.norm(mixed, dim=1, keepdim=True).clamp(min=1e-12))
        view[idx] = mixed.to(view.dtype)
        rows_changed.append(n_rows)
    injected: dict[str, JsonValue] = {
        "matrices": [m.label for m in chosen],
        "rows": rows_changed,
        "align": "input" if aligned else "random",
    }
    if aligned:
        injected["aligned_matrices"] = list(sorted(inputs))
        injected["direction_source"] = (
            f"{len(sample)} evaluation windows" if sample else "seeded random tokens"
        )
    return Outcome(injected=injected)


def _input_directions(
    model: Any, chosen: Sequence[Matrix], sample: Sequence[Sequence[int]] | None, seed: int
) -> dict[str, Any]:
    """Unit dominant right singular vector of each plain matrix's inputs on ``sample``.

    Expert slices and matrices whose module input does not match (fused or transposed
    layouts) are left out; they keep a random direction.
    """
    import torch

    wanted = {m.name.removesuffix(".weight"): m for m in chosen if m.index is None}
    captured: dict[str, list[Any]] = {}
    hooks = []
    for name in wanted:
        try:
            module = model.get_submodule(name)
        except AttributeError:
            continue

        def grab(_mod: Any, args: tuple[Any, ...], key: str = name) -> None:
            x = args[0]
            captured.setdefault(key, []).append(x.reshape(-1, x.shape[-1]).float())

        hooks.append(module.register_forward_pre_hook(grab))
    device = next(model.parameters()).device
    if sample:
        ids = torch.tensor([list(w) for w in sample], dtype=torch.long)
    else:
        gen = torch.Generator().manual_seed(seed)
        vocab = int(model.get_input_embeddings().weight.shape[0])
        limit = max_positions(model)
        length = min(128, limit[0]) if limit else 128
        ids = torch.randint(0, vocab, (4, length), generator=gen)
    try:
        with torch.inference_mode():
            model(ids.to(device))
    finally:
        for h in hooks:
            h.remove()
    out: dict[str, Any] = {}
    for name, xs in captured.items():
        m = wanted[name]
        x = torch.cat(xs)
        if x.shape[-1] != m.view().shape[1]:
            continue
        _, _, vh = torch.linalg.svd(x, full_matrices=False)
        d = vh[0].float().cpu()
        out[m.label] = d * torch.sign(d[d.abs().argmax()])  # a fixed sign
    return out


def _scale_probe(
    model: Any, probe: str, params: Mapping[str, ParamValue], journal: Journal
) -> Outcome:
    factor = float(params["factor"])
    chosen = probe_matrices(model, probe, params)
    for m in chosen:
        journal.save_tensor(m.name, m.param)
        map_matrix(m, lambda w: w.float() * factor)
    return Outcome(injected={"matrices": [m.label for m in chosen], "factor": factor})


FAULTS: dict[str, FaultFn] = {
    "nan_injection": nan_injection,
    "inf_injection": inf_injection,
    "shape_mismatch": shape_mismatch,
    "missing_tensors": missing_tensors,
    "extreme_quant": extreme_quant,
    "scale_explosion": scale_explosion,
    "rank_collapse": rank_collapse,
    "norm_collapse": norm_collapse,
    "weight_tying_break": weight_tying_break,
    "rmt_norm_noise": rmt_norm_noise,
    # Both scale the chosen matrices by ``factor``; they differ only in default targets.
    "spectral_moderate_scale": lambda m, p, j: _scale_probe(m, "spectral_moderate_scale", p, j),
    "ve_mlp_scale_skew": lambda m, p, j: _scale_probe(m, "ve_mlp_scale_skew", p, j),
}
