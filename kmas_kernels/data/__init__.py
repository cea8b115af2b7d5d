"""Knowledge-graph data: triple-file loading and synthetic typed graphs."""

from .synthetic import SyntheticKG, synthetic_typed_kg
from .triples import KGDataset, RangeVocab, load_kg_folder, read_triples

__all__ = ["read_triples", "KGDataset", "RangeVocab", "load_kg_folder", "SyntheticKG", "synthetic_typed_kg"]
