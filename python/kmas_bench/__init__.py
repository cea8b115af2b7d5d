"""kmas_bench: the benchmark suite that compares KMAS hard negatives with random ones.

    kmas-bench                 # synthetic typed KG, every available sampler, sweeps, overhead
    kmas-bench --quick         # a few minutes on 2 CPU cores
    kmas-bench --data DIR      # a real head<TAB>relation<TAB>tail folder (train/valid/test)
    kmas-bench --training      # fine-tuning effect: strict random vs KMAS negatives, several seeds

Modules, one job each: ``measure`` (machine record, peak memory, isolated processes),
``samplers`` (the rows of the comparison), ``sweep`` (time and memory vs N), ``hardness``
(type consistency, false negatives, model scores), ``overhead`` (mining's share of a training
step), ``training`` (MRR / Hits@10 with strict vs KMAS negatives), ``report`` (table and plots),
``cli`` (the ``kmas-bench`` command); the pre-training study: ``diagnose`` (training-free grid of
KMAS settings), ``pretrain`` (the multi-graph pre-training runner), ``pretrain_cli``
(``kmas-pretrain``), ``locations`` (its data folder and design file); files are written with ``kmas_kernels.core.files``. Depends on kmas_kernels and kmas_ultra.
"""

__all__ = ["measure", "samplers", "sweep", "hardness", "overhead", "training", "report", "cli", "diagnose", "pretrain",
           "pretrain_cli", "locations"]
