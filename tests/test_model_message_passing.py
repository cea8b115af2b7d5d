"""kmas_ultra's model with fused message passing (default) against its plain-torch reference path.

Same weights, same batch: scores, loss and every parameter gradient agree to float rounding, in
training mode (edge dropout) and evaluation mode, on the embedded synthetic KG; the fused path is
what ``Ultra()`` runs by default when the C++ kernels are built.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

try:
    import kmas_ultra  # noqa: F401
except ImportError:  # a checkout without `pip install .`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "python"))

from kmas_kernels.graph_ops.relational_spmm import cpu_rspmm_available
from kmas_ultra import Ultra, negative_sampling, self_adversarial_bce, synthetic_split, triples_of
from kmas_ultra.model import message_passing_path

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py
CPU_REASON = cpu_rspmm_available()


def test_default_model_uses_the_fused_op_when_built():
    path = message_passing_path("cpu")
    if CPU_REASON is None:
        assert path == "fused (cpu)"
    else:
        assert path.startswith("reference") and CPU_REASON in path


@pytest.mark.skipif(CPU_REASON is not None, reason=f"C++ kernels: {CPU_REASON}")
@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
def test_fused_model_matches_reference_model(training):
    split = synthetic_split(num_entities=60, num_edges=300, seed=0)
    data = split.train
    torch.manual_seed(0)
    fused = Ultra(message_passing="auto")
    reference = Ultra(message_passing="reference")
    reference.load_state_dict(fused.state_dict())
    batch = negative_sampling(data, triples_of(data)[:6], 8, strict=True, generator=torch.Generator().manual_seed(1))
    outputs = []
    for model in (fused, reference):
        model.train(training)
        pred = model(data, batch)
        loss = self_adversarial_bce(pred)
        loss.backward()
        outputs.append((pred.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}))
    (pred_f, grads_f), (pred_r, grads_r) = outputs
    torch.testing.assert_close(pred_f, pred_r, atol=1e-5, rtol=1e-5)
    assert grads_f.keys() == grads_r.keys() and len(grads_f) == 82
    for name in grads_f:
        torch.testing.assert_close(grads_f[name], grads_r[name], atol=1e-5, rtol=1e-4, msg=name)


def test_reference_model_is_the_explicit_choice_and_bad_names_fail():
    with pytest.raises(ValueError, match="message_passing"):
        Ultra(message_passing="fast")
    assert message_passing_path("cpu", "reference") == "reference"
