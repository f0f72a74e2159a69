"""The Pick-a-Pic v2 reader on files written in the published schema."""

import pytest

from sail_core.data.pickapic import read_pair_images, split_seed
from sail_core.data.prompts import normalize_prompt
from sail_core.errors import InputError
from sail_core.images import decode_image
from tests.builders import jpeg_bytes, standard_pickapic, write_pickapic


def test_ties_and_unlabelled_rows_are_dropped_and_winners_read(tmp_path):
    path = write_pickapic(
        tmp_path / "train-0.parquet",
        ["a cat", "a dog", "a tie", "an unlabelled row", "a bird"],
        [(1.0, 0.0), (0.0, 1.0), (0.5, 0.5), (0.0, 0.0), (1.0, 0.0)],
        has_label=[True, True, True, False, True],
    )
    split = split_seed([path], seed_size=3, seed=0)
    assert (split.n_rows, split.n_ties, split.n_unlabelled) == (5, 1, 1)
    assert sorted(p.caption for p in split.seed) == ["a bird", "a cat", "a dog"]
    assert {p.caption: p.winner for p in split.seed} == {"a cat": 0, "a dog": 1, "a bird": 0}
    assert split.pool == ["a tie", "an unlabelled row"]  # unlabelled prompts still serve the rounds


def test_winner_bytes_are_the_labelled_image(tmp_path):
    red, blue = jpeg_bytes((255, 0, 0)), jpeg_bytes((0, 0, 255))
    path = write_pickapic(tmp_path / "t.parquet", ["x", "y"], [(0.0, 1.0), (1.0, 0.0)],
                          images=[(red, blue), (red, blue)])
    split = split_seed([path], seed_size=2, seed=0)
    winners = {p.caption: decode_image(w).getpixel((0, 0)) for p, w, _ in read_pair_images(split.seed)}
    assert winners["x"][2] > 200 and winners["y"][0] > 200  # x: jpg_1 (blue) won; y: jpg_0 (red) won


def test_seed_subset_is_deterministic_and_disjoint_from_the_pool(tmp_path):
    path = standard_pickapic(tmp_path / "p.parquet", n=30)
    a, b, c = (split_seed([path], 8, s) for s in (0, 0, 1))
    assert [p.row for p in a.seed] == [p.row for p in b.seed] != [p.row for p in c.seed]
    seed_prompts = {normalize_prompt(p.caption) for p in a.seed}
    assert not seed_prompts & {normalize_prompt(p) for p in a.pool}
    assert len(a.pool) == 30 - 8


def test_broken_label_names_file_row_and_column(tmp_path):
    path = write_pickapic(tmp_path / "bad.parquet", ["ok", "broken"], [(1.0, 0.0), (2.0, -1.0)])
    with pytest.raises(InputError) as err:
        split_seed([path], 1, 0)
    assert err.value.row == 1 and err.value.column == "label_0" and err.value.file == str(path)


def test_missing_column_and_empty_caption(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"caption": ["a"], "jpg_0": [b"x"], "label_0": [1.0], "label_1": [0.0]}),
                   tmp_path / "m.parquet")
    with pytest.raises(InputError, match="jpg_1"):
        split_seed([tmp_path / "m.parquet"], 1, 0)
    path = write_pickapic(tmp_path / "e.parquet", ["  "], [(1.0, 0.0)])
    with pytest.raises(InputError) as err:
        split_seed([path], 1, 0)
    assert (err.value.row, err.value.column) == (0, "caption")


def test_undecodable_image_names_file_row_and_column(tmp_path):
    path = write_pickapic(tmp_path / "img.parquet", ["a", "b"], [(1.0, 0.0), (0.0, 1.0)],
                          images=[(jpeg_bytes((1, 2, 3)), jpeg_bytes((4, 5, 6))), (b"not an image", b"\xff\xd8junk")])
    split = split_seed([path], 2, 0)
    with pytest.raises(InputError) as err:
        for pair, winner, _ in read_pair_images(split.seed):
            decode_image(winner, file=pair.file, row=pair.row, column="jpg_1")
    assert err.value.row == 1 and "does not decode" in str(err.value)


def test_too_small_for_the_seed_size(tmp_path):
    path = standard_pickapic(tmp_path / "p.parquet", n=6)
    with pytest.raises(InputError, match="seed_data.seed_size"):
        split_seed([path], 50, 0)
