"""PyKEEN's own generic negative-sampler case and sLCWA training-loop case, run on KMASNegativeSampler.

The cases come from PyKEEN's sdist at the installed version (tests/pykeen_upstream.py) and are
subclassed as PyKEEN's tests/test_sampling and tests/test_training do for PyKEEN's own samplers.
"""

import pytest

from pykeen_upstream import upstream_cases

sampling = upstream_cases("test_sampling")
training = upstream_cases("test_training")

from pykeen.losses import MarginRankingLoss, NSSALoss, SoftplusLoss  # noqa: E402
from pykeen.models import TransE  # noqa: E402
from pykeen.sampling.filtering import BloomFilterer, PythonSetFilterer  # noqa: E402
from pykeen.training import SLCWATrainingLoop  # noqa: E402

from kmas_kernels.pykeen import KMASNegativeSampler  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::DeprecationWarning")


class _KMASSamplerCase(sampling.NegativeSamplerGenericTestCase):
    cls = KMASNegativeSampler
    extra = {}

    def _pre_instantiation_hook(self, kwargs):
        kwargs = super()._pre_instantiation_hook(kwargs)
        kwargs["model"] = TransE(triples_factory=self.triples_factory, embedding_dim=8, random_seed=0)
        kwargs.update(seed=0, **self.extra)
        return kwargs


class KMASAllHardSamplerTest(_KMASSamplerCase):
    extra = {"schedule": 1.0}


class KMASMixedSamplerTest(_KMASSamplerCase):
    extra = {"total_steps": 10, "num_negs_per_pos": 3}


class KMASNotStrictSamplerTest(_KMASSamplerCase):
    extra = {"schedule": 0.5, "strict": False}


class _KMASTrainingCase(training.SLCWATrainingLoopTestCase):
    """PyKEEN's sLCWA loop with negative_sampler="kmas"; test_checkpoints resumes mid-run."""

    cls = SLCWATrainingLoop
    num_epochs = 4  # PyKEEN's 10 at Nations' 13 batches an epoch, trimmed for CI time

    def _sampler_kwargs(self, model):
        return {"model": model, "total_steps": 60, "num_negs_per_pos": 2, "refresh_every": 3}

    def _pre_instantiation_hook(self, kwargs):
        kwargs = super()._pre_instantiation_hook(kwargs)
        kwargs["negative_sampler"] = "kmas"
        kwargs["negative_sampler_kwargs"] = {"filterer": self.filterer_cls, **self._sampler_kwargs(kwargs["model"])}
        return kwargs

    def _with_model(self, model):
        return self.cls(
            model=model,
            triples_factory=self.triples_factory,
            automatic_memory_optimization=False,
            optimizer=self.optimizer_cls(model.get_grad_params()),
            negative_sampler="kmas",
            negative_sampler_kwargs={"filterer": self.filterer_cls, **self._sampler_kwargs(model)},
        )

    def test_sub_batching_support(self):  # ConvE, unrelated to the sampler, and slow on CPU
        pytest.skip("ConvE's sub-batching refusal does not involve the negative sampler")


class MRKMASSLCWATrainingLoopTestCase(_KMASTrainingCase):
    loss_cls = MarginRankingLoss


class NSSAKMASSLCWATrainingLoopTestCase(_KMASTrainingCase):
    loss_cls = NSSALoss


class SoftplusSetFilteredKMASSLCWATrainingLoopTestCase(_KMASTrainingCase):
    loss_cls = SoftplusLoss
    filterer_cls = PythonSetFilterer


class BloomFilteredKMASSLCWATrainingLoopTestCase(_KMASTrainingCase):
    loss_cls = MarginRankingLoss
    filterer_cls = BloomFilterer


del _KMASSamplerCase, _KMASTrainingCase  # bases only: pytest collects every TestCase in the module
