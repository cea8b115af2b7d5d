"""benchmarks/floor.py: its arithmetic kernel computes the real key arithmetic (checked under the
interpreter against the package's random stream), and the floors are the documented formulas."""

import os
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))


def test_arithmetic_kernel_matches_the_stream():
    if os.environ.get("TRITON_INTERPRET") != "1":
        pytest.skip("needs TRITON_INTERPRET=1 to run Triton on the CPU")
    floor = pytest.importorskip("floor")
    from kmas_kernels.core.philox import gumbel_noise

    out = torch.empty(3, dtype=torch.float32)
    floor._arithmetic_kernel[(3,)](out, 7, 200, BLOCK=64)
    entities = torch.arange(200)
    expected = (torch.log((entities + 1).float())[None] + gumbel_noise(7, torch.arange(3)[:, None], entities[None])).amax(1)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)


def test_floors_formula():
    floor = pytest.importorskip("floor")
    from kmas_kernels import KGIndex

    index = KGIndex.from_triples([[0, 0, 1], [2, 0, 1], [1, 1, 3]], num_entities=5, num_relations=2)
    f = floor.floors(index, batch=4, bandwidth=1e9, rate=1e6)
    assert f["support"] == 4  # entities 0..3 are tails of some relation (inverses included); 4 is not
    assert f["index_bytes"] == 8 * 6 + 4 * index.ent_rels.numel() + 4 * 4 * 4
    assert f["bytes_floor_s"] == pytest.approx(f["index_bytes"] / 1e9)
    assert f["arithmetic_floor_s"] == pytest.approx(4 * 4 / 1e6)


def test_arithmetic_kernel_split_grid_covers_every_entity():
    """A (rows, splits) grid, as arithmetic_rate launches to fill the GPU: the splits' maxima
    together are the row's maximum over all entities."""
    if os.environ.get("TRITON_INTERPRET") != "1":
        pytest.skip("needs TRITON_INTERPRET=1 to run Triton on the CPU")
    floor = pytest.importorskip("floor")
    from kmas_kernels.core.philox import gumbel_noise

    out = torch.empty(3 * 4, dtype=torch.float32)
    floor._arithmetic_kernel[(3, 4)](out, 7, 201, BLOCK=32)
    entities = torch.arange(201)
    expected = (torch.log((entities + 1).float())[None] + gumbel_noise(7, torch.arange(3)[:, None], entities[None]))
    chunks = expected.split(51, dim=1)  # ceil(201 / 4) = 51 entities per split
    torch.testing.assert_close(out.view(3, 4), torch.stack([c.amax(1) for c in chunks], 1), rtol=1e-5, atol=1e-5)
    assert floor.fill_splits("cpu", 64) == 1
