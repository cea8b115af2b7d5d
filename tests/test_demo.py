"""The README's main command runs, and hard negatives beat random ones on type consistency."""

import json

from kmas_kernels.demo import main


def test_demo_runs_and_hard_negatives_are_type_consistent(capsys):
    main(["--entities", "3000", "--relations", "12", "--types", "6", "--batch", "8", "--negatives", "64", "--repeats", "1"])
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    by_name = {r["sampler"]: r["type_consistent"] for r in result["results"]}
    random = by_name.pop("strict random (ULTRA semantics)")
    assert by_name and all(share > random + 0.2 for share in by_name.values()), (random, by_name)
