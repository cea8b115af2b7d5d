"""ULTRA's model (Galkin et al., ICLR 2024) in plain torch, parameter-compatible with the public checkpoints.

Two NBFNets, each 6 layers x 64 dims, DistMult messages, sum aggregation with the boundary
condition added as a self-message, update ``relu(layer_norm(W [x ; aggregate] + b))`` and a
short-cut (residual) connection:

- :class:`RelNBFNet` runs on the relation graph (4 edge types, one learnt 64-d vector per type
  and layer); the query relation's node starts at all-ones, every other node at zero. It returns
  relation representations conditioned on each row's query relation, (B, R, 64).
- :class:`EntityNBFNet` runs on the entity graph; its per-layer relation vectors are an MLP
  projection of the (B, R, 64) relation representations; the query head starts at the query
  relation's representation. The score of a candidate tail is an MLP over
  [its final state ; query representation].

Direction of message passing: ULTRA's fused kernel (rspmm) accumulates, for every edge column
(u, v) with type r of ``edge_index``, ``relation[r] * x[v]`` into node u, i.e. into
``edge_index[0]``. The checkpoints were trained that way, so it is the default here
(``flow="rspmm"``); ``flow="pyg"`` (into ``edge_index[1]``, PyG's message() path) exists for
comparison only.

Message passing (``message_passing=``): ``"auto"`` (default) runs the fused op
``kmas_kernels.graph_ops.relational_spmm`` (C++/OpenMP on CPU, Triton on CUDA; no (B, E, d)
message tensor; the graph's sorted layouts are built once per edge tensor and shared by the
layers) and falls back, with a warning, to ``"reference"``: plain torch,
``boundary.index_add(target, x[:, source] * rel)``. Both sum the same terms; results agree to
float rounding. :func:`message_passing_path` says which one runs on a device.
"""

from __future__ import annotations

import warnings

import torch
from torch import nn
from torch.nn import functional as F

from kmas_kernels.core.files import CheckpointError, load_torch_file

from kmas_kernels.graph_ops import cached_csr, fused_backend, relational_spmm

DIM = 64
NUM_LAYERS = 6
MESSAGE_PASSING = ("auto", "reference", "cpu", "triton")
_WARNED: set[str] = set()


def message_passing_path(device: torch.device | str = "cpu", message_passing: str = "auto",
                         dtype: torch.dtype = torch.float32) -> str:
    """Which message passing a model with ``message_passing`` runs on ``device``, in words."""
    if message_passing != "auto":
        return message_passing
    chosen, reason = fused_backend(device, dtype)
    return f"fused ({chosen})" if chosen else f"reference (plain torch; fused op unavailable: {reason})"


def _resolve(message_passing: str, x: torch.Tensor) -> str:
    if message_passing != "auto":
        return message_passing
    chosen, reason = fused_backend(x.device, x.dtype)
    if chosen is None:
        message = (f"kmas_ultra: the fused relational message passing cannot run for {x.dtype} on {x.device.type} "
                   f"({reason}); falling back to the plain-torch reference, which is several times slower and "
                   f"forms (B, E, d) message tensors")
        if message not in _WARNED:
            _WARNED.add(message)
            warnings.warn(message, RuntimeWarning, stacklevel=3)
        return "reference"
    return chosen


class RelationalConv(nn.Module):
    """One NBFNet layer (ULTRA's GeneralizedRelationalConv with distmult / sum / layer norm / relu).

    Parameter names follow ULTRA: ``linear``, ``layer_norm``, and either ``relation`` (an
    embedding per edge type, relation-graph layers) or ``relation_projection`` (a 2-layer MLP
    applied to the given relation representations, entity-graph layers).
    """

    def __init__(self, dim: int, num_relation: int, project_relations: bool, flow: str = "rspmm",
                 message_passing: str = "auto") -> None:
        super().__init__()
        if flow not in ("rspmm", "pyg"):
            raise ValueError(f"flow must be 'rspmm' or 'pyg', got {flow!r}")
        if message_passing not in MESSAGE_PASSING:
            raise ValueError(f"message_passing must be one of {MESSAGE_PASSING}, got {message_passing!r}")
        self.dim = dim
        self.flow = flow
        self.message_passing = message_passing
        self.project_relations = project_relations
        self.linear = nn.Linear(2 * dim, dim)
        self.layer_norm = nn.LayerNorm(dim)
        if project_relations:
            self.relation_projection = nn.Sequential(nn.Linear(dim, dim), nn.ReLU(), nn.Linear(dim, dim))
        else:
            self.relation = nn.Embedding(num_relation, dim)

    def forward(self, x: torch.Tensor, boundary: torch.Tensor, edge_index: torch.Tensor, edge_type: torch.Tensor,
                relation: torch.Tensor | None = None) -> torch.Tensor:
        """x, boundary: (B, N, d); relation: (B, R, d) when projecting. Returns (B, N, d)."""
        if self.project_relations:
            if relation is None:
                raise ValueError("entity-graph layers need the relation representations (B, R, d)")
            rel = self.relation_projection(relation)  # (B, R, d), per row
        else:
            rel = self.relation.weight  # (R, d), shared by all rows
        path = _resolve(self.message_passing, x)
        if path == "reference":
            if self.flow == "rspmm":
                target, source = edge_index[0], edge_index[1]
            else:
                source, target = edge_index[0], edge_index[1]
            message = x[:, source] * (rel[:, edge_type] if self.project_relations else rel[edge_type].unsqueeze(0))
            aggregate = boundary.index_add(1, target, message)  # sum, boundary as a self-message
        else:  # fused: DistMult messages summed into their targets, boundary as a self-message
            csr = cached_csr(edge_index, edge_type, x.shape[1], rel.shape[-2],
                             flow="target_first" if self.flow == "rspmm" else "source_first")
            aggregate = relational_spmm(x, rel, csr, boundary, backend=path)
            # linear([x ; aggregate]) as two products into one output (no (B, N, 2d) concatenation
            # forward, no copies of its gradient's halves backward)
            weight, d = self.linear.weight, x.shape[-1]
            flat = torch.addmm(self.linear.bias, x.reshape(-1, d), weight[:, :d].t())
            out = torch.addmm(flat, aggregate.reshape(-1, d), weight[:, d:].t()).view(*x.shape[:-1], -1)
            return F.relu(self.layer_norm(out))
        out = self.linear(torch.cat([x, aggregate], dim=-1))
        return F.relu(self.layer_norm(out))


class RelNBFNet(nn.Module):
    """NBFNet on the relation graph; forward(rel_graph, query) -> (B, R, d)."""

    def __init__(self, dim: int = DIM, num_layers: int = NUM_LAYERS, num_relation: int = 4, flow: str = "rspmm",
                 message_passing: str = "auto") -> None:
        super().__init__()
        self.dim = dim
        self.layers = nn.ModuleList(RelationalConv(dim, num_relation, project_relations=False, flow=flow,
                                                   message_passing=message_passing) for _ in range(num_layers))

    def forward(self, rel_graph, query: torch.Tensor) -> torch.Tensor:
        batch = query.shape[0]
        boundary = torch.zeros(batch, rel_graph.num_nodes, self.dim, device=query.device)
        boundary[torch.arange(batch, device=query.device), query] = 1.0  # indicator of the query relation
        x = boundary
        for layer in self.layers:
            x = layer(x, boundary, rel_graph.edge_index, rel_graph.edge_type) + x  # short-cut
        return x


class EntityNBFNet(nn.Module):
    """NBFNet on the entity graph, conditioned on relation representations; returns scores (B, 1 + k)."""

    def __init__(self, dim: int = DIM, num_layers: int = NUM_LAYERS, flow: str = "rspmm", message_passing: str = "auto") -> None:
        super().__init__()
        self.dim = dim
        self.layers = nn.ModuleList(RelationalConv(dim, 1, project_relations=True, flow=flow, message_passing=message_passing)
                                    for _ in range(num_layers))
        self.mlp = nn.Sequential(nn.Linear(2 * dim, 2 * dim), nn.ReLU(), nn.Linear(2 * dim, 1))

    @staticmethod
    def remove_easy_edges(data, h_index: torch.Tensor, t_index: torch.Tensor, r_index: torch.Tensor):
        """Training-time edge dropout as ULTRA: drop every edge that is one of the batch's triples
        (h, t, r) or its inverse (t, h, r + R0), so the model cannot read the answer off one edge."""
        from .tasks import edge_match

        r0 = data.num_relations // 2
        heads = torch.cat([h_index, t_index], dim=-1).flatten()
        tails = torch.cat([t_index, h_index], dim=-1).flatten()
        rels = torch.cat([r_index, r_index + r0], dim=-1).flatten()
        edges = torch.cat([data.edge_index, data.edge_type.unsqueeze(0)])
        found, _ = edge_match(edges, torch.stack([heads, tails, rels]))
        keep = torch.ones(data.edge_type.shape[0], dtype=torch.bool, device=edges.device)
        keep[found] = False
        from .data import Graph

        return Graph(**{**data.__dict__, "edge_index": data.edge_index[:, keep], "edge_type": data.edge_type[keep]})

    @staticmethod
    def to_tail_prediction(h_index, t_index, r_index, num_direct_rel: int):
        """Rows whose head varies are head predictions: rewrite (h', r, t) as (t, r + R0, h')."""
        is_tail = (h_index == h_index[:, [0]]).all(dim=-1, keepdim=True)
        new_h = torch.where(is_tail, h_index, t_index)
        new_t = torch.where(is_tail, t_index, h_index)
        new_r = torch.where(is_tail, r_index, r_index + num_direct_rel)
        return new_h, new_t, new_r

    def forward(self, data, relation_representations: torch.Tensor, batch: torch.Tensor) -> torch.Tensor:
        h_index, t_index, r_index = batch.unbind(-1)
        if self.training:
            data = self.remove_easy_edges(data, h_index, t_index, r_index)
        shape = h_index.shape
        h_index, t_index, r_index = self.to_tail_prediction(h_index, t_index, r_index, data.num_relations // 2)
        rows = torch.arange(shape[0], device=batch.device)
        query = relation_representations[rows, r_index[:, 0]]  # (B, d)
        boundary = torch.zeros(shape[0], data.num_nodes, self.dim, device=batch.device, dtype=query.dtype)
        boundary = boundary.index_put((rows, h_index[:, 0]), query, accumulate=True)
        x = boundary
        for layer in self.layers:
            x = layer(x, boundary, data.edge_index, data.edge_type, relation=relation_representations) + x
        feature = x.gather(1, t_index.unsqueeze(-1).expand(-1, -1, self.dim))  # (B, 1 + k, d)
        feature = torch.cat([feature, query.unsqueeze(1).expand_as(feature)], dim=-1)
        return self.mlp(feature).squeeze(-1).view(shape)


class Ultra(nn.Module):
    """forward(data, batch) with batch (B, 1 + k, 3) of [h, t, r] -> scores (B, 1 + k)."""

    def __init__(self, dim: int = DIM, num_layers: int = NUM_LAYERS, flow: str = "rspmm", message_passing: str = "auto") -> None:
        super().__init__()
        self.relation_model = RelNBFNet(dim, num_layers, flow=flow, message_passing=message_passing)
        self.entity_model = EntityNBFNet(dim, num_layers, flow=flow, message_passing=message_passing)

    def forward(self, data, batch: torch.Tensor) -> torch.Tensor:
        query_rels = batch[:, 0, 2]
        relation_representations = self.relation_model(data.relation_graph, query=query_rels)
        return self.entity_model(data, relation_representations, batch)


ARCHITECTURE_KEYS = ("dim", "num_layers", "flow")


def architecture_of(model: Ultra) -> dict:
    """The constructor arguments of ``model`` as a plain dict: ``Ultra(**architecture_of(model))``
    builds the same shapes. Checkpoints store it under ``"architecture"`` (plain data, so they load
    with ``weights_only=True``)."""
    rel = model.relation_model
    return {"dim": int(rel.dim), "num_layers": len(rel.layers), "flow": str(rel.layers[0].flow)}


def _check_architecture(value, path) -> dict:
    if not isinstance(value, dict) or set(value) - set(ARCHITECTURE_KEYS):
        raise CheckpointError(f"checkpoint {path}: 'architecture' must be a dict with keys among {ARCHITECTURE_KEYS}, got {value!r}")
    for key in ("dim", "num_layers"):
        if key in value and (isinstance(value[key], bool) or not isinstance(value[key], int) or value[key] < 1):
            raise CheckpointError(f"checkpoint {path}: architecture {key} must be an int >= 1, got {value[key]!r}")
    if "flow" in value and value["flow"] not in ("rspmm", "pyg"):
        raise CheckpointError(f"checkpoint {path}: architecture flow must be 'rspmm' or 'pyg', got {value['flow']!r}")
    return dict(value)


def _infer_architecture(weights: dict) -> dict:
    """dim and num_layers read off an ULTRA state dict (the public checkpoints store no architecture)."""
    arch = {}
    first = weights.get("relation_model.layers.0.linear.weight")
    if isinstance(first, torch.Tensor) and first.dim() == 2:
        arch["dim"] = int(first.shape[0])
    layers = {key.split(".")[2] for key in weights if key.startswith("relation_model.layers.") and key.count(".") >= 3}
    if layers and all(layer.isdigit() for layer in layers):
        arch["num_layers"] = len(layers)
    return arch


def load_checkpoint(path, model: Ultra | None = None, map_location="cpu", strict: bool = True) -> Ultra:
    """Load a ULTRA checkpoint into ``model`` (by default a new :class:`Ultra` of the stored architecture).

    Accepts ULTRA's layout ``{"model": state_dict, ...}`` and a bare state dict. The file is read
    with ``torch.load(weights_only=True)``: nothing in it can run. The architecture comes from the
    checkpoint's ``"architecture"`` dict when present, else from the tensor shapes (ULTRA's files).

    Raises:
        CheckpointError (a ValueError): naming ``path`` and the problem: missing file, folder,
            truncated file, a pickle needing Python globals, no state dict inside, or a state dict
            of another architecture (missing / unexpected / mis-shaped tensors).
    """
    raw = load_torch_file(path, map_location=map_location)
    if not isinstance(raw, dict):
        raise CheckpointError(f"checkpoint {path}: holds a {type(raw).__name__}, not a dict with a 'model' state dict")
    weights = raw["model"] if "model" in raw else raw
    if not isinstance(weights, dict) or not weights:
        raise CheckpointError(f"checkpoint {path}: 'model' must be a non-empty state dict, got {type(weights).__name__}")
    not_tensors = [key for key, value in weights.items() if not isinstance(key, str) or not isinstance(value, torch.Tensor)]
    if not_tensors:
        raise CheckpointError(f"checkpoint {path}: not a state dict, entries {not_tensors[:5]} are not named tensors "
                              f"(top-level keys: {sorted(map(str, raw))[:10]})")
    stored = _check_architecture(raw["architecture"], path) if "architecture" in raw else None
    if model is None:
        model = Ultra(**(stored if stored is not None else _infer_architecture(weights)))
    elif stored is not None and {k: v for k, v in architecture_of(model).items() if k in stored} != stored:
        raise CheckpointError(f"checkpoint {path}: architecture {stored} differs from the given model's {architecture_of(model)}")
    expected = model.state_dict()
    missing = [key for key in expected if key not in weights]
    unexpected = [key for key in weights if key not in expected]
    mis_shaped = [f"{key} {tuple(weights[key].shape)} vs {tuple(expected[key].shape)}"
                  for key in expected if key in weights and weights[key].shape != expected[key].shape]
    if mis_shaped or (strict and (missing or unexpected)):
        parts = [f"{len(missing)} missing (e.g. {missing[:3]})" if missing else "",
                 f"{len(unexpected)} unexpected (e.g. {unexpected[:3]})" if unexpected else "",
                 f"{len(mis_shaped)} of another shape (e.g. {mis_shaped[:2]})" if mis_shaped else ""]
        raise CheckpointError(f"checkpoint {path}: its state dict does not fit Ultra({architecture_of(model)}): "
                              + "; ".join(p for p in parts if p))
    model.load_state_dict(weights, strict=strict)
    return model
