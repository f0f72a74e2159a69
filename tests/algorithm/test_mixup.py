import pyarrow as pa
import pytest

from sail_core.algorithm.mixup import mix_pairs, mixup_fractions, plan_mix
from sail_core.config import MixupConfig
from sail_core.data.pairs import pair_table
from sail_core.errors import InputError


def _pairs(source: str, n: int) -> pa.Table:
    return pair_table([{
        "pair_id": f"{source}-{i}", "source": source, "round": 1, "prompt": f"p{i}", "cond_file": "c",
        "cond_row": i, "w_file": "w", "w_row": i, "l_file": "l", "l_row": i, "reward_w": None, "reward_l": None,
        "p_win": None} for i in range(n)])


def test_self_all_keeps_every_self_pair_at_exact_fraction():
    counts = plan_mix({"self": 30, "human": 500}, mixup_fractions(MixupConfig(alpha=0.25)), "self_all")
    assert counts == {"self": 30, "human": 90}
    mixed = mix_pairs({"self": _pairs("self", 30), "human": _pairs("human", 500)}, {"self": 0.25, "human": 0.75},
                      "self_all", "round", 1)
    sources = mixed.column("source").to_pylist()
    assert sources.count("self") == 30 and sources.count("human") == 90
    assert len(set(mixed.column("pair_id").to_pylist())) == 120  # without replacement while the source lasts


def test_fixed_and_seed_sized_sets():
    assert plan_mix({"self": 10, "human": 40}, {"self": 0.25, "human": 0.75}, 20) == {"self": 5, "human": 15}
    assert plan_mix({"self": 10, "human": 40}, {"self": 0.25, "human": 0.75}, "seed_size") == {"self": 10, "human": 30}
    # largest remainder: 0.3 × 7 = 2.1 → 2 self, 5 human; counts always sum to the size
    assert plan_mix({"self": 10, "human": 40}, {"self": 0.3, "human": 0.7}, 7) == {"self": 2, "human": 5}


def test_a_source_smaller_than_its_share_is_reused_evenly():
    mixed = mix_pairs({"self": _pairs("self", 4), "human": _pairs("human", 5)}, {"self": 0.25, "human": 0.75},
                      "self_all", "r")
    human_ids = [p for p in mixed.column("pair_id").to_pylist() if p.startswith("human")]
    assert len(human_ids) == 12  # 12 = 3 × 4 self pairs, from 5 human pairs: used 2 or 3 times each
    assert sorted(human_ids.count(f"human-{i}") for i in range(5)) == [2, 2, 2, 3, 3]


def test_mixing_is_deterministic_and_seeded():
    tables = {"self": _pairs("self", 8), "human": _pairs("human", 50)}
    a = mix_pairs(tables, {"self": 0.25, "human": 0.75}, "self_all", "round", 1)
    b = mix_pairs(tables, {"self": 0.25, "human": 0.75}, "self_all", "round", 1)
    c = mix_pairs(tables, {"self": 0.25, "human": 0.75}, "self_all", "round", 2)
    assert a.equals(b) and not a.equals(c)


def test_bad_fractions_and_empty_sources_are_named():
    with pytest.raises(InputError, match="sum to 1"):
        plan_mix({"self": 1, "human": 1}, {"self": 0.5, "human": 0.6}, "self_all")
    with pytest.raises(InputError, match="'self'"):
        plan_mix({"self": 0, "human": 10}, {"self": 0.25, "human": 0.75}, "self_all")
