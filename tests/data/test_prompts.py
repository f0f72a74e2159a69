import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from sail_core.data.prompts import check_disjoint, read_prompt_file, round_slices
from sail_core.errors import InputError


def test_prompt_files_in_four_formats(tmp_path):
    (tmp_path / "p.txt").write_text("a cat\n\n  a dog  \n")
    pq.write_table(pa.table({"caption": ["x", "y"]}), tmp_path / "p.parquet")
    (tmp_path / "parti.tsv").write_text('Prompt\tCategory\tChallenge\tNote\nbear\tAnimals\tBasic\t\n'
                                        '"Quoted" start\tArts\tBasic\t\n')
    (tmp_path / "anime.json").write_text('["a fox", "a girl"]')
    assert read_prompt_file(tmp_path / "p.txt") == ["a cat", "a dog"]
    assert read_prompt_file(tmp_path / "p.parquet") == ["x", "y"]
    assert read_prompt_file(tmp_path / "parti.tsv") == ["bear", '"Quoted" start']
    assert read_prompt_file(tmp_path / "anime.json") == ["a fox", "a girl"]


def test_empty_prompt_set_and_empty_row_are_named(tmp_path):
    (tmp_path / "empty.txt").write_text("\n \n")
    with pytest.raises(InputError, match="empty"):
        read_prompt_file(tmp_path / "empty.txt")
    pq.write_table(pa.table({"prompt": ["ok", ""]}), tmp_path / "hole.parquet")
    with pytest.raises(InputError) as err:
        read_prompt_file(tmp_path / "hole.parquet")
    assert err.value.row == 1


def test_round_slices_are_disjoint_and_stable():
    pool = [f"prompt {i}" for i in range(50)]
    rounds = round_slices(pool, [10, 20], seed=3)
    assert [len(r) for r in rounds] == [10, 20] and not set(rounds[0]) & set(rounds[1])
    assert round_slices(pool, [10], seed=3)[0] == rounds[0]  # adding a round does not move earlier ones
    with pytest.raises(InputError, match="prompts.per_round"):
        round_slices(pool, [40, 20], seed=0)


def test_a_reused_prompt_is_named_with_its_row():
    with pytest.raises(InputError) as err:
        check_disjoint(["new one", "A  Cat"], {"round 1": ["a cat"]}, "round-02/prompts.parquet")
    assert err.value.row == 1 and "round 1" in str(err.value)
