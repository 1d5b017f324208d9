"""The pure helpers of bench/robustness.py: how a run's verdict is scored against its accuracy,
which arithmetic variants a CPU can run, and how a cell's row joins the stored ones."""

import json

from bench_script import load_bench

robustness = load_bench("robustness")


def test_a_wrong_run_must_be_flagged_and_a_right_one_must_not():
    def outcome(rra15: float, cca: float, verdict: str) -> str:
        return robustness.outcome({"RRA@15": rra15, "CCA@0.1": cca, "verdict": verdict})

    assert outcome(0.74, 0.9, "unconverged") == "right"
    assert outcome(0.74, 0.9, "converged") == "missed"
    assert outcome(1.0, 0.3, "converged") == "missed"  # rotations right, centres wrong
    assert outcome(1.0, 1.0, "converged") == "right"
    assert outcome(1.0, 1.0, "unconfirmed") == "false alarm"
    assert outcome(0.92, 0.9, "converged") == outcome(0.92, 0.9, "unconverged") == "between"


def test_variants_need_the_instructions_they_name():
    assert robustness.runnable("t1", set()) and robustness.runnable("t1-aten-default", set())
    assert not robustness.runnable("t1-mkl-avx512", {"avx", "avx2"})
    assert robustness.runnable("t1-mkl-avx512", {"avx2", "avx512f"})
    assert all(robustness.runnable(v, robustness.cpu_flags()) for v in ("t1", "t2"))


def test_a_cell_run_again_replaces_its_row_and_keeps_the_others(tmp_path, monkeypatch):
    monkeypatch.setattr(robustness, "RESULTS", tmp_path / "robustness")
    robustness.merge([{"set": "demo", "variant": "t1", "seed": 0, "RRA@15": 0.5},
                      {"set": "demo", "variant": "t1", "seed": 1, "RRA@15": 0.9}])
    merged = robustness.merge([{"set": "demo", "variant": "t1", "seed": 0, "RRA@15": 1.0}])
    assert sorted((r["seed"], r["RRA@15"]) for r in merged) == [(0, 1.0), (1, 0.9)]
    assert json.loads((tmp_path / "robustness.json").read_text()) == merged
