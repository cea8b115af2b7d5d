"""Reading knowledge graphs stored as tab-separated triple files.

A KG folder holds ``train.txt``, ``valid.txt`` and ``test.txt`` with one
``head<TAB>relation<TAB>tail`` triple per line (string ids). The loader maps the
strings to contiguous integer ids and returns LongTensors of shape (E, 3) with
columns [head, relation, tail].

The parsing is done with C-level builtins (``str.split``, ``map``,
``dict.fromkeys``, ``np.fromiter``) rather than per-line Python logic, so a
file of 10^6 lines loads in about a second.
"""

from __future__ import annotations

import itertools
import operator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator, Mapping, Union

import numpy as np
import torch

PathLike = Union[str, Path]

SPLITS = ("train", "valid", "test")

_count_tabs = operator.methodcaller("count", "\t")
_strip_blanks = operator.methodcaller("strip", " \r\f\v")  # CRLF, trailing spaces


def _check_order(order: str) -> tuple[int, int, int]:
    """Column index of (head, relation, tail) for a column order such as "hrt"."""
    if not isinstance(order, str) or sorted(order) != ["h", "r", "t"]:
        raise ValueError(f"order must be a permutation of 'hrt', got {order!r}")
    return order.index("h"), order.index("r"), order.index("t")


def _read_columns(path: PathLike, order: str = "hrt") -> tuple[list[str], list[str], list[str]]:
    """Read a triple file into three string columns (heads, relations, tails).

    Empty (whitespace-only) lines are skipped; any other line must have exactly
    three non-empty tab-separated fields, else ValueError("<path>:<line>: ...").
    """
    cols = _check_order(order)
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"triples file not found: {path}")
    # split("\n") rather than splitlines(): the latter also breaks on exotic
    # unicode separators, which would shift the reported line numbers. Tabs
    # are not stripped, so "\ta\tb" is reported instead of silently shifted.
    lines = list(map(_strip_blanks, path.read_text(encoding="utf-8").split("\n")))
    line_no = [i for i, line in enumerate(lines, start=1) if line]
    kept = [lines[i - 1] for i in line_no]

    n_tabs = np.fromiter(map(_count_tabs, kept), dtype=np.int64, count=len(kept))
    bad = np.flatnonzero(n_tabs != 2)
    if bad.size:
        i = int(bad[0])
        raise ValueError(
            f"{path}:{line_no[i]}: expected 3 tab-separated fields "
            f"(head, relation, tail), got {n_tabs[i] + 1}: {kept[i]!r}"
        )
    # One join + split gives a flat field list without a list object per line
    # (allocating 10^6 small lists is slow, mostly through the cyclic GC).
    fields = "\t".join(kept).split("\t") if kept else []
    if "" in fields:  # e.g. "a\t\tb": right field count, but an empty id
        i = fields.index("") // 3
        raise ValueError(f"{path}:{line_no[i]}: empty field in {kept[i]!r}")
    return fields[cols[0]::3], fields[cols[1]::3], fields[cols[2]::3]


def read_triples(path: PathLike, *, order: str = "hrt") -> list[tuple[str, str, str]]:
    """Read a ``head<TAB>relation<TAB>tail`` file into a list of string triples.

    Args:
        path: the text file.
        order: column order in the file, a permutation of "hrt"; some classic
            datasets (e.g. kinship, nations) store ``relation<TAB>head<TAB>tail``,
            which is ``order="rht"``. The result is always (head, relation, tail).

    Empty lines are skipped. Raises FileNotFoundError if the file is missing and
    ValueError naming the file and 1-based line number for a malformed line.
    """
    heads, rels, tails = _read_columns(path, order)
    return list(zip(heads, rels, tails))


def _extend_vocab(vocab: dict[str, int], tokens: Iterable[str]) -> None:
    """Give each unseen token the next id, in order of first appearance (in place)."""
    # dict.fromkeys dedups in C keeping first-appearance order, so the Python
    # loop below only runs over unique new tokens, not over every line.
    new = [t for t in dict.fromkeys(tokens) if t not in vocab]
    vocab.update(zip(new, range(len(vocab), len(vocab) + len(new))))


def _encode(vocab: dict[str, int], tokens: list[str]) -> np.ndarray:
    """Map strings to ids with a known vocab: (n,) int64."""
    return np.fromiter(map(vocab.__getitem__, tokens), dtype=np.int64, count=len(tokens))


def _check_vocab(vocab: dict[str, int], what: str) -> dict[str, int]:
    """Copy a user-given vocab, checking its ids are exactly 0..len-1."""
    vocab = dict(vocab)
    ids = sorted(vocab.values())
    if ids != list(range(len(vocab))):
        raise ValueError(f"{what} ids must be the contiguous range 0..{len(vocab) - 1}")
    return vocab


class RangeVocab(Mapping[str, int]):
    """The vocab ``{str(i): i for i in range(n)}`` without building it: O(1) memory and time.

    A dict of 10^7 string keys takes seconds and gigabytes to build; graphs whose ids already are
    0..n-1 (the synthetic KG) use this instead. It compares equal to the dict it stands for, and
    ``dict(vocab)`` builds that dict when a caller really needs one.
    """

    def __init__(self, n: int):
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise ValueError(f"n must be an int >= 0, got {n!r}")
        self._n = n

    def __getitem__(self, key: str) -> int:
        # only the canonical decimal spelling is a key ("007" and "+7" are not, as in the dict)
        if isinstance(key, str) and key.isdigit() and key.isascii() and (key == "0" or key[0] != "0"):
            value = int(key)
            if value < self._n:
                return value
        raise KeyError(key)

    def __contains__(self, key: object) -> bool:
        try:
            self[key]  # type: ignore[index]
        except KeyError:
            return False
        return True

    def __iter__(self) -> Iterator[str]:
        return map(str, range(self._n))

    def __len__(self) -> int:
        return self._n

    def __repr__(self) -> str:
        return f"RangeVocab({self._n})"


@dataclass
class KGDataset:
    """A knowledge graph with a train/valid/test edge split.

    Attributes:
        train, valid, test: LongTensor (E_split, 3), columns [head, relation,
            tail] with contiguous ids; an absent split is a (0, 3) tensor.
        entity_vocab: string id -> entity id in [0, num_entities).
        relation_vocab: string id -> relation id in [0, num_relations). Only
            original relations; inverse relations are a model-side concern.
        name: a short label (the folder name for loaded datasets).
    """

    train: torch.Tensor = field(repr=False)
    valid: torch.Tensor = field(repr=False)
    test: torch.Tensor = field(repr=False)
    entity_vocab: Mapping[str, int] = field(repr=False)  # a dict, or a RangeVocab
    relation_vocab: Mapping[str, int] = field(repr=False)
    name: str = ""

    def __post_init__(self) -> None:
        for split in SPLITS:
            t = getattr(self, split)
            if t.dtype != torch.long or t.dim() != 2 or t.shape[1] != 3:
                raise ValueError(
                    f"KGDataset.{split} must be a LongTensor of shape (E, 3), "
                    f"got {t.dtype} {tuple(t.shape)}"
                )

    @property
    def num_entities(self) -> int:
        return len(self.entity_vocab)

    @property
    def num_relations(self) -> int:
        """Number of original relations (no inverses)."""
        return len(self.relation_vocab)

    def __repr__(self) -> str:
        return (
            f"KGDataset(name={self.name!r}, num_entities={self.num_entities}, "
            f"num_relations={self.num_relations}, train={len(self.train)}, "
            f"valid={len(self.valid)}, test={len(self.test)})"
        )


def load_kg_folder(
    path: PathLike,
    *,
    relation_vocab: dict[str, int] | None = None,
    order: str = "hrt",
) -> KGDataset:
    """Load ``train.txt`` (required), ``valid.txt`` and ``test.txt`` (optional).

    String ids get contiguous ids in order of first appearance, reading train,
    then valid, then test (within a line: head before tail).

    Args:
        path: the folder.
        relation_vocab: optional string -> id map to start from, e.g. the
            training graph's vocab when loading a GraIL inductive graph so both
            share relation ids. It is copied (the caller's dict is not changed)
            and extended with unseen relations.
        order: column order in the files, see :func:`read_triples`.

    Returns:
        KGDataset named after the folder. Missing valid/test are (0, 3) tensors.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"KG folder not found: {path}")
    if not path.is_dir():
        raise ValueError(f"KG path is not a folder: {path}")
    if not (path / "train.txt").is_file():
        raise FileNotFoundError(f"KG folder has no train.txt: {path}")

    columns = {
        s: _read_columns(path / f"{s}.txt", order) if (path / f"{s}.txt").is_file() else ([], [], [])
        for s in SPLITS
    }
    ents: dict[str, int] = {}
    rels = {} if relation_vocab is None else _check_vocab(relation_vocab, "relation_vocab")
    for heads, relations, tails in columns.values():
        _extend_vocab(ents, itertools.chain.from_iterable(zip(heads, tails)))
        _extend_vocab(rels, relations)

    tensors = {}
    for s, (heads, relations, tails) in columns.items():
        arr = np.stack([_encode(ents, heads), _encode(rels, relations), _encode(ents, tails)], axis=1)
        tensors[s] = torch.from_numpy(arr.reshape(-1, 3)).contiguous()
    return KGDataset(**tensors, entity_vocab=ents, relation_vocab=rels, name=path.name)
