"""How hard are the negatives: type consistency, false negatives, model scores.

All metrics take negatives in query form: row b asks (q_b, r_b, ?) with r_b possibly an inverse
relation r + R0 (head corruption of (h, r, t) is tail corruption of (t, r + R0, h)).

- :func:`type_consistency`: share of negatives whose entity type is the one the query relation
  expects (its range; for an inverse relation, the original relation's domain). On the synthetic
  typed KG this is the ground truth of "plausible"; on real data without types,
  :func:`range_consistency` uses the observed range (the relation's tail set in the training graph).
- :func:`false_negative_rate`: share of negatives (q_b, r_b, e) that are true triples held out of
  the training graph (valid / test): negatives that are in fact positives.
- :func:`mean_model_score`: mean score a model gives the negatives (higher = harder), and the
  share of negatives scored at least as high as their row's positive (hardness to the model).
- :func:`hub_bias`: mean tail-degree of the negatives against that of the true answers, where an
  entity's tail-degree is the number of relations (inverses counted) whose tail set holds it:
  above 1, a sampler favours popular entities (which are often true answers elsewhere).
- :func:`effective_relations`: exp of the entropy of each row's relation weights w, averaged over
  rows: how many relations the KMAS mixture effectively draws from (1 = one relation).
"""

from __future__ import annotations

import torch


def expected_types(query_relation: torch.Tensor, relation_domain: torch.Tensor, relation_range: torch.Tensor) -> torch.Tensor:
    """(B,) the type a tail of each query relation should have: range of r < R0, domain of r - R0 otherwise."""
    r0 = relation_range.numel()
    inverse = query_relation >= r0
    base = torch.where(inverse, query_relation - r0, query_relation)
    return torch.where(inverse, relation_domain[base], relation_range[base])


def type_consistency(negatives: torch.Tensor, entity_type: torch.Tensor, wanted: torch.Tensor) -> float:
    """Share of negatives (B, k) whose type equals the row's wanted type (B,)."""
    if negatives.numel() == 0:
        return float("nan")
    return float((entity_type[negatives] == wanted[:, None]).float().mean())


def false_negative_rate(known, query_entity: torch.Tensor, query_relation: torch.Tensor, negatives: torch.Tensor) -> float:
    """Share of negatives (B, k) forming a triple (q_b, r_b, e) of ``known`` (a KGIndex of true triples
    with inverses; None = no such triples)."""
    if negatives.numel() == 0:
        return float("nan")
    if known is None:
        return 0.0
    return float(known.is_known(query_entity[:, None], query_relation[:, None], negatives).float().mean())


def tail_degree(index) -> torch.Tensor:
    """(N,) int64: for each entity, the number of relations (inverses included) whose tail set holds it."""
    return index.ent_ptr[1:] - index.ent_ptr[:-1]


def hub_bias(index, negatives: torch.Tensor, positive: torch.Tensor) -> dict:
    """Mean tail-degree (in ``index``, the training graph) of the negatives (B, k) and of the true
    answers (B,), and their ratio (> 1: the negatives are more popular entities than the answers)."""
    if negatives.numel() == 0:
        return {"negative_tail_degree": float("nan"), "positive_tail_degree": float("nan"), "hub_bias": float("nan")}
    degree = tail_degree(index).to(negatives.device).float()
    neg, pos = float(degree[negatives].mean()), float(degree[positive].mean())
    return {"negative_tail_degree": neg, "positive_tail_degree": pos, "hub_bias": neg / pos if pos > 0 else float("nan")}


def effective_relations(weights: torch.Tensor) -> dict:
    """exp(entropy) of each row of non-negative relation weights (B, R) (rows normalised first; 0 log 0 = 0),
    averaged over rows, and the mean largest normalised weight."""
    if weights.numel() == 0:
        return {"effective_relations": float("nan"), "mean_max_weight": float("nan")}
    if (weights < 0).any() or not torch.isfinite(weights).all():
        raise ValueError("weights must be finite and non-negative")
    total = weights.sum(dim=1, keepdim=True)
    if (total <= 0).any():
        raise ValueError("weights: every row needs a positive sum")
    p = (weights / total).double()
    entropy = -torch.where(p > 0, p * torch.log(p), torch.zeros_like(p)).sum(dim=1)
    return {"effective_relations": float(torch.exp(entropy).mean()), "mean_max_weight": float(p.max(dim=1).values.mean())}


def range_consistency(index, query_relation: torch.Tensor, negatives: torch.Tensor) -> float:
    """Share of negatives in the observed range of their query relation: e in Tails(r_b) of ``index``
    (the training graph, inverses included)."""
    if negatives.numel() == 0:
        return float("nan")
    return float(index.is_tail(query_relation[:, None], negatives).float().mean())


@torch.no_grad()
def model_scores(model, data, layout: torch.Tensor, chunk: int = 8) -> torch.Tensor:
    """Scores (B, 1 + k) of ULTRA's layout under ``model`` (eval mode), ``chunk`` rows per forward."""
    was_training = model.training
    model.eval()
    scores = torch.cat([model(data, layout[i:i + chunk]) for i in range(0, layout.shape[0], chunk)])
    model.train(was_training)
    return scores


def mean_model_score(scores: torch.Tensor) -> dict:
    """Mean score of the negatives (columns 1..k) and of the positives (column 0), and the share of
    negatives scored at least as high as their row's positive."""
    negatives, positive = scores[:, 1:], scores[:, :1]
    return {
        "mean_score": float(negatives.mean()),
        "mean_positive_score": float(positive.mean()),
        "share_scored_above_positive": float((negatives >= positive).float().mean()),
    }


def relation_embeddings(model, graph, rows: torch.Tensor) -> torch.Tensor:
    """(B, R, d) relation representations of ``model``'s relation encoder, conditioned on each row's relation.

    This is what the ULTRA drop-in feeds KMAS during training (through a forward hook); here
    it is computed once, without gradients, for a batch of ``rows`` ([h, r, t]).
    """
    from kmas_ultra.data import build_relation_graph

    h, r, t = graph.train.long().unbind(1)
    r0 = graph.num_base_relations
    edge_index = torch.cat([torch.stack([h, t]), torch.stack([t, h])], dim=1)
    edge_type = torch.cat([r, r + r0])
    relation_graph = build_relation_graph(edge_index, edge_type, graph.num_entities, 2 * r0)
    with torch.no_grad():
        return model.relation_model(relation_graph, query=rows[:, 1].cpu()).float()


def ultra_data(graph):
    """The training graph as ULTRA's model takes it (inverse edges, relation graph)."""
    from kmas_ultra.data import hrt_to_htr, make_graph

    return make_graph(hrt_to_htr(graph.train), graph.num_entities, graph.num_base_relations)


def kmas_relation_weights(problem, kmas_options: dict | None = None) -> torch.Tensor:
    """(B, R) the relation weights w a KMAS row of ``problem`` mixes (as ``hard_negatives`` computes them)."""
    from kmas_kernels.core.relation_weights import one_hot_weights, relation_weights_from_embeddings
    from kmas_kernels.hard_negatives import DEFAULT_TEMPERATURE

    options = dict(kmas_options or {})
    if options.get("relation_weights") is not None:
        return options["relation_weights"]
    if problem.embeddings is None:
        return one_hot_weights(problem.query_relation, problem.index.num_relations)
    return relation_weights_from_embeddings(problem.embeddings, problem.query_relation,
                                            options.get("temperature", DEFAULT_TEMPERATURE), options.get("top_relations"))


def evaluate_samplers(graph, samplers: list[str], *, batch: int, k: int, device: str = "cpu", num_batches: int = 4,
                      seed: int = 0, model=None, score_model: bool = False, ultra_path: str | None = None,
                      progress: bool = True, kmas_options: dict | None = None) -> dict:
    """Hardness metrics of every sampler's negatives for ``num_batches`` batches of ``batch`` training triples.

    KMAS gets relation embeddings from ``model``'s relation encoder (conditioned on each row's
    relation) when a model is given, else one-hot relation weights (the query relation's own
    tail set). ``score_model``: also score the first batch's negatives with ``model``.
    ``kmas_options``: temperature / top_relations ... of the KMAS rows (default: the package's).
    Per sampler: type (or range) consistency; false-negative rate against the held-out triples
    (valid + test), against every known triple (train + valid + test) and the share of training
    triples; hub bias (tail-degree of negatives vs true answers); for KMAS rows the effective
    number of relations in w; with ``score_model``, the model's mean score of the negatives and the
    share scored at least as high as the positive (first batch).
    Returns {"per_sampler": {name: metrics}, "notes": [...], "relation_embeddings": source}.
    """
    from tqdm import tqdm

    from kmas_kernels import KGIndex

    from .samplers import make_problem, make_sampler, query_form, ultra_layout, unavailable

    n, r0 = graph.num_entities, graph.num_base_relations
    index = KGIndex.from_triples(graph.train, num_entities=n, num_relations=r0).to(device)
    held_out_triples = torch.cat([graph.valid, graph.test])
    held_out = KGIndex.from_triples(held_out_triples, num_entities=n, num_relations=r0).to(device) if len(held_out_triples) else None
    every_known = KGIndex.from_triples(torch.cat([graph.train, held_out_triples]), num_entities=n, num_relations=r0).to(device)
    data = ultra_data(graph) if score_model and model is not None else None
    problems = []
    for i in range(num_batches):
        problem = make_problem(graph.train, n, r0, batch, device, seed + 7919 * i, embeddings=None, index=index)
        if model is not None:
            problem.embeddings = relation_embeddings(model, graph, problem.rows).to(device)
        problems.append(problem)
    results = {}
    for name in tqdm(samplers, desc="hardness", disable=not progress):
        reason = unavailable(name, device, ultra_path)
        if reason:
            results[name] = {"skipped": reason}
            continue
        sums: dict[str, list[float]] = {"type_consistency": [], "false_negative_rate": [], "false_negative_rate_all": [],
                                        "train_triple_rate": [], "negative_tail_degree": [], "positive_tail_degree": [],
                                        "hub_bias": []}
        if name.startswith("kmas-"):
            sums.update(effective_relations=[], mean_max_weight=[])
        for i, problem in enumerate(problems):
            out = make_sampler(name, problem, k, seed + i, ultra_path, kmas_options=kmas_options)()
            negatives = query_form(problem, out).to(device)
            qe, qr = problem.query_entity, problem.query_relation
            if graph.typed:
                wanted = expected_types(qr.cpu(), graph.relation_domain, graph.relation_range)
                sums["type_consistency"].append(type_consistency(negatives.cpu(), graph.entity_type, wanted))
            else:
                sums["type_consistency"].append(range_consistency(index, qr, negatives))
            sums["false_negative_rate"].append(false_negative_rate(held_out, qe, qr, negatives))
            sums["train_triple_rate"].append(false_negative_rate(index, qe, qr, negatives))
            sums["false_negative_rate_all"].append(false_negative_rate(every_known, qe, qr, negatives))
            for key, value in hub_bias(index, negatives, problem.positive).items():
                sums[key].append(value)
            if name.startswith("kmas-"):
                for key, value in effective_relations(kmas_relation_weights(problem, kmas_options)).items():
                    sums[key].append(value)
            if i == 0 and data is not None:
                scores = model_scores(model.to(device), data.to(device), ultra_layout(problem, negatives))
                results.setdefault(name, {}).update(mean_model_score(scores.cpu()))
        entry = results.setdefault(name, {})
        for key, values in sums.items():
            entry[key] = sum(values) / len(values)
            entry[key + "_per_batch"] = values
        entry["negatives_measured"] = batch * k * num_batches
    return {
        "per_sampler": results,
        "type_measure": "entity type == relation range (domain for head corruption)" if graph.typed
        else "entity in the relation's observed range (tails in the training graph); the folder has no types",
        "relation_embeddings": "model relation encoder, conditioned on each row's relation" if model is not None
        else "none: one-hot relation weights (the query relation's own tail set)",
        "num_batches": num_batches,
        "kmas_options": {key: value for key, value in (kmas_options or {}).items() if key != "relation_weights"},
    }
