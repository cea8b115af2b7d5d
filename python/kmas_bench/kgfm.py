"""Run a KGFM's own training code (ULTRA, TRIX, MOTIF, SEMMA checkouts) with KMAS negatives.

Each repository's ``script/run.py`` (TRIX: ``src/run_entity.py``) has
``train_and_validate(cfg, model, train_data, valid_data, device, logger, filtered_data, batch_per_epoch)``
that calls ``tasks.negative_sampling(train_data, batch, num_negative, strict)`` and then
``model(train_data, batch)``. ``setup(name, path, data_dir)`` imports that script and the model
from the checkout (its package isolated in ``sys.modules``: ULTRA and SEMMA are both ``ultra``),
builds the graph from a GraIL-style folder in the form the repository expects (the datasets
classes would download), and returns what ``kmas_kernels.ultra.install`` needs to patch
``tasks.negative_sampling`` so that the unmodified ``train_and_validate`` uses KMAS.

Substitutions, forced by this machine and said here once:
- SEMMA embeds relation names and LLM descriptions with a sentence-transformers / Jina model that
  cannot be downloaded: ``tasks.get_relation_embeddings`` is replaced by deterministic stand-in
  text embeddings of the model's shape (64-d, "jinaai" in flags.yaml), a bag of hashed words, so
  that its own ``build_relation_graph_exp`` builds the semantic relation graph and its fused
  representations are what the hook sees.
- MOTIF's Triton kernels (``use_triton``, on by default) need a GPU: on CPU its own torch path runs.
- TRIX's layers call ``MessagePassing.inspector.distribute`` and import
  ``torch_geometric.utils.degree``, both gone in torch-geometric >= 2.5: it needs 2.4
  (``trix_supported()`` says so; its test skips otherwise).
"""

from __future__ import annotations

import contextlib
import copy
import importlib
import importlib.util
import logging
import os
import sys
import types
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import torch

MODELS = ("ultra", "trix", "motif", "semma")

# the package each checkout defines, where its script lives, and the module the drop-in hooks
_LAYOUT = {
    "ultra": dict(package="ultra", root="", script="script/run.py", relation_module="relation_model"),
    "trix": dict(package="trix", root="src", script="src/run_entity.py", relation_module="relation_model"),
    # MOTIF's train_and_validate ignores batch_per_epoch (it runs the whole loader): see run_training
    "motif": dict(package="motif", root="", script="script/run.py", relation_module="relation_model", whole_epoch=True),
    "semma": dict(package="ultra", root="", script="script/run.py", relation_module="combiner"),
}
# the GraIL graph each model trains on here: MOTIF's relation hypergraph on fb237_v1 (360 relations)
# has 206k hyperedges and its CPU path materialises messages per hyperedge and row (> 20 GB at
# B = 8); WN18RR_v1 has 18 relations
GRAPH = {"ultra": "fb237_v1", "trix": "fb237_v1", "motif": "WN18RR_v1", "semma": "fb237_v1"}
# SEMMA's relation descriptions for GraIL's fb237_v1
_SEMMA_DATASET = {"fb237_v1": "FB15k237Inductive-v1"}


@dataclass
class KGFMSetup:
    name: str
    tasks: types.ModuleType  # the checkout's tasks module (holds negative_sampling)
    script: types.ModuleType  # the checkout's training script, imported (its __main__ block does not run)
    model: torch.nn.Module
    train_data: Any
    valid_data: Any
    relation_module: str  # attribute of the model whose output is (B, R, d)
    modules: dict  # the checkout's entries of sys.modules, for re-entering them


@contextlib.contextmanager
def checkout_modules(package: str, path: Path, saved: dict | None = None) -> Iterator[dict]:
    """Import ``package`` from ``path`` with other copies of it out of ``sys.modules``; on exit the
    previous entries come back. Yields the checkout's entries (pass them as ``saved`` to re-enter)."""
    def owned(name: str) -> bool:
        return name == package or name.startswith(package + ".")

    previous = {name: module for name, module in sys.modules.items() if owned(name)}
    for name in previous:
        del sys.modules[name]
    sys.modules.update(saved or {})
    sys.path.insert(0, str(path))
    mine: dict = {}
    try:
        yield mine
    finally:
        sys.path.remove(str(path))
        mine.update({name: module for name, module in sys.modules.items() if owned(name)})
        for name in mine:
            del sys.modules[name]
        sys.modules.update(previous)


def _import_script(path: Path, name: str) -> types.ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def trix_supported() -> str | None:
    """None if TRIX's code can run with the installed torch-geometric, else why not."""
    import torch_geometric

    major, minor = (int(x) for x in torch_geometric.__version__.split(".")[:2])
    if (major, minor) >= (2, 5):
        return (f"TRIX's layers need torch-geometric 2.4 (Inspector.distribute, torch_geometric.utils.degree), "
                f"found {torch_geometric.__version__}")
    return None


def load_graph(data_dir: Path, num_valid: int = 4):
    """(train_data, valid_data, relation_vocab): PyG Data in ULTRA's form (inverse edges added,
    relation r + R0 the inverse of r, target edges = the triples), validation cut to ``num_valid``."""
    from torch_geometric.data import Data

    from kmas_kernels.data import load_kg_folder

    kg = load_kg_folder(data_dir)
    h, r, t = kg.train.unbind(1)
    r0 = kg.num_relations
    edge_index = torch.stack([torch.cat([h, t]), torch.cat([t, h])])
    edge_type = torch.cat([r, r + r0])

    def graph(triples):
        return Data(edge_index=edge_index, edge_type=edge_type, num_nodes=kg.num_entities, num_relations=2 * r0,
                    target_edge_index=triples[:, [0, 2]].T.contiguous(), target_edge_type=triples[:, 1].contiguous())

    return graph(kg.train), graph(kg.valid[:num_valid]), kg.relation_vocab


def stand_in_text_embeddings(texts: list[str], dim: int = 64) -> torch.Tensor:
    """(len(texts), dim) deterministic stand-in for a sentence embedding: the sum of one fixed
    random vector per lower-cased word (crc32-seeded), so texts sharing words are similar."""
    rows = []
    for text in texts:
        words = [w for w in "".join(c if c.isalnum() else " " for c in str(text).lower()).split() if w] or ["<empty>"]
        vectors = [torch.randn(dim, generator=torch.Generator().manual_seed(zlib.crc32(w.encode()))) for w in words]
        rows.append(torch.stack(vectors).sum(0))
    return torch.stack(rows)


def _layers(hidden: int, depth: int, **extra) -> dict:
    return dict(input_dim=hidden, hidden_dims=[hidden] * depth, message_func="distmult", aggregate_func="sum",
                short_cut=True, layer_norm=True, **extra)


def setup(name: str, path: str | Path, data_dir: str | Path, *, depth: int | None = None, seed: int = 0) -> KGFMSetup:
    """Import ``name``'s checkout at ``path``, build its model (the published layer widths; ``depth``
    layers per network, default the published depth) and graph. Call ``enter(setup)`` around
    anything that runs the model (its lazy imports resolve through ``sys.modules``)."""
    if name not in _LAYOUT:
        raise ValueError(f"name must be one of {MODELS}, got {name!r}")
    layout = _LAYOUT[name]
    path, data_dir = Path(path), Path(data_dir)
    root = path / layout["root"]
    if not (root / layout["package"]).is_dir():
        raise FileNotFoundError(f"{path} is not a {name} checkout: no {layout['root'] or '.'}/{layout['package']}/")
    torch.manual_seed(seed)
    with _cwd(path if name == "semma" else None), checkout_modules(layout["package"], root) as modules:
        tasks = importlib.import_module(f"{layout['package']}.tasks")
        search_path = list(sys.path)
        script = _import_script(path / layout["script"], f"kmas_{name}_script")
        sys.path[:] = search_path  # the scripts append their checkout to sys.path: not beyond this block
        train_data, valid_data, vocab = load_graph(data_dir)
        model, train_data, valid_data = _BUILD[name](tasks, train_data, valid_data, vocab, data_dir, depth)
    return KGFMSetup(name, tasks, script, model, train_data, valid_data, layout["relation_module"], modules)


@contextlib.contextmanager
def enter(kgfm: KGFMSetup) -> Iterator[KGFMSetup]:
    """Make ``kgfm``'s checkout the one ``sys.modules`` resolves. Each checkout JIT-builds its own
    ``rspmm`` C++ extension on first use; unless $TORCH_EXTENSIONS_DIR is set, each gets its own
    build folder, so that the four copies do not rebuild over one another."""
    from torch.utils.cpp_extension import get_default_build_root

    layout = _LAYOUT[kgfm.name]
    root = Path(kgfm.tasks.__file__).parents[1]
    previous = os.environ.get("TORCH_EXTENSIONS_DIR")
    if previous is None:
        os.environ["TORCH_EXTENSIONS_DIR"] = os.path.join(get_default_build_root(), f"kgfm_{kgfm.name}")
    try:
        with checkout_modules(layout["package"], root, saved=kgfm.modules):
            yield kgfm
    finally:
        if previous is None:
            del os.environ["TORCH_EXTENSIONS_DIR"]


@contextlib.contextmanager
def _cwd(path: Path | None):
    if path is None:
        yield
        return
    previous = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(previous)


def _build_ultra(tasks, train_data, valid_data, vocab, data_dir, depth):
    models = importlib.import_module("ultra.models")
    layer = _layers(64, depth or 6)
    model = models.Ultra(dict(layer, **{"class": "RelNBFNet"}), dict(layer, **{"class": "EntityNBFNet"}))
    return model, tasks.build_relation_graph(train_data), tasks.build_relation_graph(valid_data)


def _build_trix(tasks, train_data, valid_data, vocab, data_dir, depth):
    models = importlib.import_module("trix.models_entity")
    model = models.TRIX(_layers(32, depth or 3), _layers(32, depth or 2), _layers(32, depth or 4))
    train_data = tasks.build_relation_graph(train_data)
    valid_data = copy.copy(valid_data)
    valid_data.relation_adj = train_data.relation_adj  # same edges: the same relation graphs
    return model, train_data, valid_data


def _build_motif(tasks, train_data, valid_data, vocab, data_dir, depth):
    models = importlib.import_module("motif.models")
    relation = dict(input_dim=64, hidden_dims=[64] * (depth or 6), aggregate_func="sum", short_cut=True)
    model = models.MOTIF(relation, _layers(64, depth or 6))
    if not torch.cuda.is_available():  # its Triton kernels need a GPU; its own torch path otherwise
        for module in model.modules():
            if hasattr(module, "use_triton"):
                module.use_triton = False
    graphs = []
    for data in (train_data, valid_data):  # as its datasets build them: a device field, then the pre_transform
        data.device = torch.device("cpu")
        graphs.append(tasks.build_relation_hypergraph(tasks.build_relation_graph(data)))
    return (model, *graphs)


def _build_semma(tasks, train_data, valid_data, vocab, data_dir, depth):
    models = importlib.import_module("ultra.models")
    if tasks.flags.run != "semma" or tasks.flags.harder_setting:
        raise ValueError("SEMMA's flags.yaml must have run: semma and harder_setting: False")
    dataset = _SEMMA_DATASET.get(data_dir.name)
    if dataset is None:
        raise ValueError(f"no SEMMA relation descriptions known for {data_dir.name} (known: {sorted(_SEMMA_DATASET)})")
    tasks.get_relation_embeddings = lambda texts, model_embed=None: stand_in_text_embeddings(list(texts), 64)
    layer = _layers(64, depth or 6)
    model = models.Ultra(dict(layer, **{"class": "RelNBFNet"}), dict(layer, **{"class": "EntityNBFNet"}),
                         dict(layer, **{"class": "SemRelNBFNet"}))
    graphs = []
    for data in (train_data, valid_data):
        data.edge2id, data.dataset = dict(vocab), dataset
        graphs.append(tasks.build_relation_graph_exp(data))
    return (model, *graphs)


_BUILD: dict[str, Callable] = {"ultra": _build_ultra, "trix": _build_trix, "motif": _build_motif, "semma": _build_semma}


def train_config(steps: int, batch_size: int, num_negative: int, lr: float = 5e-4):
    """The cfg ``train_and_validate`` reads: one epoch of ``steps`` batches, then validation."""
    import easydict

    return easydict.EasyDict(
        train=dict(num_epoch=1, batch_size=batch_size, log_interval=10**9, batch_per_epoch=steps),
        optimizer={"class": "AdamW", "lr": lr},
        task=dict(num_negative=num_negative, strict_negative=True, adversarial_temperature=1, metric=["mrr"]),
    )


# ULTRA's inline loss in train_and_validate, the same lines in TRIX, MOTIF and SEMMA: from the BCE
# to the batch mean (the self-adversarial softmax in between). README.md shows the replacement.
LOSS_FIRST_LINE = 'loss = F.binary_cross_entropy_with_logits(pred, target, reduction="none")'
LOSS_LAST_LINE = "loss = loss.mean()"
KMAS_LOSS_LINE = ("loss = kmas_kernels.loss.link_prediction_loss(pred, tasks.negative_sampling.hard_counts, "
                  "adversarial_temperature=cfg.task.adversarial_temperature, hard_weighting=\"share\")")


def with_kmas_loss(kgfm: KGFMSetup, link_prediction_loss: Callable | None = None) -> tuple[Callable, list[str]]:
    """The checkout's ``train_and_validate`` with README.md's loss change made to its source: the
    lines from :data:`LOSS_FIRST_LINE` to :data:`LOSS_LAST_LINE` become :data:`KMAS_LOSS_LINE`
    (``tasks.negative_sampling`` is the drop-in once ``install`` patched it). Returns the patched
    function and the lines it replaced. ``link_prediction_loss`` (tests) stands in for the package's."""
    import inspect

    import kmas_kernels.loss

    lines = inspect.getsource(kgfm.script.train_and_validate).splitlines()
    stripped = [line.strip() for line in lines]
    if stripped.count(LOSS_FIRST_LINE) != 1:
        raise ValueError(f"{kgfm.name}'s train_and_validate does not compute ULTRA's loss as expected ({LOSS_FIRST_LINE!r})")
    first = stripped.index(LOSS_FIRST_LINE)
    last = stripped.index(LOSS_LAST_LINE, first)
    indent = lines[first][:len(lines[first]) - len(lines[first].lstrip())]
    source = "\n".join(lines[:first] + [indent + KMAS_LOSS_LINE] + lines[last + 1:])
    loss_module = types.SimpleNamespace(link_prediction_loss=link_prediction_loss or kmas_kernels.loss.link_prediction_loss)
    namespace = {**vars(kgfm.script), "kmas_kernels": types.SimpleNamespace(loss=loss_module)}
    exec(compile(source, f"<{kgfm.name} train_and_validate, KMAS loss>", "exec"), namespace)
    return namespace["train_and_validate"], lines[first:last + 1]


def run_training(kgfm: KGFMSetup, steps: int, batch_size: int, num_negative: int, workdir: str | Path,
                 train_and_validate: Callable | None = None) -> None:
    """The checkout's own ``train_and_validate`` (or the given variant of it, e.g. from
    :func:`with_kmas_loss`) for ``steps`` batches (its checkpoint goes to ``workdir``)."""
    cfg = train_config(steps, batch_size, num_negative)
    logger = logging.getLogger(f"kmas.kgfm.{kgfm.name}")
    train_data = kgfm.train_data
    if _LAYOUT[kgfm.name].get("whole_epoch"):
        # The script loops over its whole loader: give it steps x batch_size training triples (the
        # targets only; the graph, which negatives and message passing use, stays whole).
        train_data = copy.copy(train_data)
        train_data.target_edge_index = train_data.target_edge_index[:, :steps * batch_size]
        train_data.target_edge_type = train_data.target_edge_type[:steps * batch_size]
    with enter(kgfm), _cwd(Path(workdir)):
        (train_and_validate or kgfm.script.train_and_validate)(cfg, kgfm.model, train_data, kgfm.valid_data, device=torch.device("cpu"),
                                       logger=logger, filtered_data=None, batch_per_epoch=steps)
