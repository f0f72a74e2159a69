"""Prompt-set loaders on small files written here in each published format (exact schemas)."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from sail_core.data.prompt_sets import (
    HPSV2_STYLES,
    PromptSet,
    load_hpsv2_benchmark,
    load_partiprompts,
    load_pickapic_validation_unique,
    load_prompt_set,
    load_text_prompts,
)
from sail_core.errors import InputError

CAPTIONS = ["a cute corgi wearing a crown", "cyberpunk city at night, 8k", 'the word "SAIL" in neon']


def pickapic_table(captions: list[str | None]) -> pa.Table:
    """Pick-a-Pic v2 ``validation_unique`` columns (``pickapic_v2_no_images``; the image dataset adds
    ``jpg_0``/``jpg_1`` binary columns)."""
    n = len(captions)
    return pa.table({
        "are_different": pa.array([True] * n), "best_image_uid": pa.array([f"b{i}" for i in range(n)]),
        "caption": pa.array(captions, pa.string()), "created_at": pa.array([0] * n, pa.timestamp("ns")),
        "has_label": pa.array([True] * n), "image_0_uid": pa.array([f"u{i}" for i in range(n)]),
        "image_0_url": pa.array(["https://example.invalid/0.png"] * n),
        "image_1_uid": pa.array([f"v{i}" for i in range(n)]),
        "image_1_url": pa.array(["https://example.invalid/1.png"] * n),
        "jpg_0": pa.array([b"\xff\xd8"] * n, pa.binary()), "jpg_1": pa.array([b"\xff\xd8"] * n, pa.binary()),
        "label_0": pa.array([1.0] * n), "label_1": pa.array([0.0] * n),
        "model_0": pa.array(["sdxl"] * n), "model_1": pa.array(["sd15"] * n),
        "ranking_id": pa.array(list(range(n)), pa.int64()), "user_id": pa.array([7] * n, pa.int64()),
        "num_example_per_prompt": pa.array([1] * n, pa.int64()),
        "__index_level_0__": pa.array(list(range(n)), pa.int64()),
    })


def test_pickapic_shard_and_folder(tmp_path):
    data = tmp_path / "pickapic_v2" / "data"
    data.mkdir(parents=True)
    shard = data / "validation_unique-00000-of-00001-33ead111845fc9c4.parquet"
    pq.write_table(pickapic_table(CAPTIONS), shard)
    pq.write_table(pickapic_table(["a training caption"]), data / "train-00000-of-00645-b66ac786bf6fb553.parquet")
    from_file = load_pickapic_validation_unique(shard)
    assert from_file.prompts == tuple(CAPTIONS) and from_file.categories is None and from_file.source == shard
    from_folder = load_prompt_set("pickapic_v2_validation_unique", tmp_path / "pickapic_v2")
    assert from_folder.prompts == tuple(CAPTIONS)  # the train shard beside it is not read
    converter = tmp_path / "converted" / "default" / "validation_unique"
    converter.mkdir(parents=True)
    pq.write_table(pickapic_table(CAPTIONS[:2]), converter / "0000.parquet")
    assert load_pickapic_validation_unique(tmp_path / "converted").prompts == tuple(CAPTIONS[:2])


def test_pickapic_errors(tmp_path):
    bad = tmp_path / "validation_unique-00000-of-00001.parquet"
    pq.write_table(pickapic_table(CAPTIONS).drop(["caption"]), bad)
    with pytest.raises(InputError, match="no 'caption' column") as info:
        load_pickapic_validation_unique(bad)
    assert info.value.column == "caption"
    pq.write_table(pickapic_table(["ok", "  "]), bad)
    with pytest.raises(InputError, match="empty prompt") as info:
        load_pickapic_validation_unique(bad)
    assert info.value.row == 1
    pq.write_table(pickapic_table(["ok", None]), bad)
    with pytest.raises(InputError, match="empty prompt"):
        load_pickapic_validation_unique(bad)
    pq.write_table(pickapic_table([]), bad)
    with pytest.raises(InputError, match="empty"):
        load_pickapic_validation_unique(bad)
    with pytest.raises(InputError, match="does not exist"):
        load_pickapic_validation_unique(tmp_path / "missing.parquet")
    (tmp_path / "empty_dir").mkdir()
    with pytest.raises(InputError, match="no validation_unique Parquet shard"):
        load_pickapic_validation_unique(tmp_path / "empty_dir")
    not_parquet = tmp_path / "validation_unique-x.parquet"
    not_parquet.write_text("hello")
    with pytest.raises(InputError, match="not a readable Parquet"):
        load_pickapic_validation_unique(not_parquet)


PARTI_TSV = (
    "Prompt\tCategory\tChallenge\tNote\n"
    "bond\tAbstract\tBasic\tBiology-inspired concepts with multiple meanings\n"
    "an F1\tVehicles\tBasic\t\n"
    '"G I G G L E" painted in thick colorful lettering as graffiti\tIllustrations\tWriting & Symbols\t\n'
    "flying over the city of Mars. \tWorld Knowledge\tComplex\t\n"
)


def test_partiprompts_tsv(tmp_path):
    path = tmp_path / "PartiPrompts.tsv"
    path.write_text(PARTI_TSV, encoding="utf-8")
    parti = load_partiprompts(path)
    assert parti.name == "partiprompts" and len(parti) == 4
    # Unquoted fields: a leading double quote and a trailing space are part of the prompt.
    assert parti.prompts[2] == '"G I G G L E" painted in thick colorful lettering as graffiti'
    assert parti.prompts[3] == "flying over the city of Mars. "
    assert parti.categories == ("Abstract", "Vehicles", "Illustrations", "World Knowledge")
    assert parti.attributes["challenge"] == ("Basic", "Basic", "Writing & Symbols", "Complex")
    assert parti.attributes["note"][1] == ""
    assert load_prompt_set("partiprompts", tmp_path).prompts == parti.prompts  # a folder holding the TSV


def test_partiprompts_parquet(tmp_path):
    path = tmp_path / "train-00000-of-00001.parquet"
    pq.write_table(pa.table({"Prompt": ["bond", "an F1"], "Category": ["Abstract", "Vehicles"],
                             "Challenge": ["Basic", "Basic"], "Note": ["Biology", None]}), path)
    parti = load_partiprompts(path)
    assert parti.prompts == ("bond", "an F1") and parti.categories == ("Abstract", "Vehicles")
    assert parti.attributes["note"] == ("Biology", "")


def test_partiprompts_errors(tmp_path):
    path = tmp_path / "PartiPrompts.tsv"
    path.write_text("Text\tCategory\nbond\tAbstract\n", encoding="utf-8")
    with pytest.raises(InputError, match="no 'Prompt' column") as info:
        load_partiprompts(path)
    assert info.value.column == "Prompt"
    path.write_text("Prompt\tCategory\tChallenge\tNote\nbond\tAbstract\n", encoding="utf-8")
    with pytest.raises(InputError, match="2 tab-separated fields") as info:
        load_partiprompts(path)
    assert info.value.row == 1
    path.write_text("Prompt\tCategory\tChallenge\tNote\n", encoding="utf-8")
    with pytest.raises(InputError, match="empty"):
        load_partiprompts(path)
    path.write_text("Prompt\tCategory\tChallenge\tNote\n \tAbstract\tBasic\t\n", encoding="utf-8")
    with pytest.raises(InputError, match="empty prompt"):
        load_partiprompts(path)
    with pytest.raises(InputError, match="does not exist"):
        load_partiprompts(tmp_path / "nope.tsv")


def write_hps(folder, per_style: int = 2) -> dict[str, list[str]]:
    folder.mkdir(parents=True, exist_ok=True)
    data = {style: [f"{style} prompt {i}" for i in range(per_style)] for style in HPSV2_STYLES}
    for style, prompts in data.items():
        (folder / f"{style}.json").write_text(json.dumps(prompts), encoding="utf-8")
    return data


def test_hpsv2_benchmark_folder_and_files(tmp_path):
    data = write_hps(tmp_path / "HPDv2" / "benchmark")
    for path in (tmp_path / "HPDv2", tmp_path / "HPDv2" / "benchmark"):
        bench = load_hpsv2_benchmark(path)
        assert bench.prompts == tuple(p for style in HPSV2_STYLES for p in data[style])
        assert bench.categories == ("anime",) * 2 + ("concept-art",) * 2 + ("paintings",) * 2 + ("photo",) * 2
    one = load_hpsv2_benchmark(tmp_path / "HPDv2" / "benchmark" / "photo.json")
    assert one.prompts == tuple(data["photo"]) and one.categories == ("photo", "photo")
    combined = tmp_path / "benchmark_prompts_all.json"  # hpsv2.benchmark_prompts('all') saved as JSON
    combined.write_text(json.dumps(data), encoding="utf-8")
    assert load_prompt_set("hpsv2_benchmark", combined).prompts == bench.prompts


def test_hpsv2_benchmark_errors(tmp_path):
    write_hps(tmp_path / "b")
    (tmp_path / "b" / "photo.json").unlink()
    with pytest.raises(InputError, match="missing HPSv2 benchmark file photo.json"):
        load_hpsv2_benchmark(tmp_path / "b")
    bad = tmp_path / "all.json"
    bad.write_text(json.dumps({"anime": ["x"]}), encoding="utf-8")
    with pytest.raises(InputError, match="no prompts for style"):
        load_hpsv2_benchmark(bad)
    bad.write_text(json.dumps({s: "not a list" for s in HPSV2_STYLES}), encoding="utf-8")
    with pytest.raises(InputError, match="must be a JSON list"):
        load_hpsv2_benchmark(bad)
    bad.write_text("[1, 2", encoding="utf-8")
    with pytest.raises(InputError, match="not valid JSON"):
        load_hpsv2_benchmark(bad)
    bad.write_text("[]", encoding="utf-8")
    with pytest.raises(InputError, match="empty"):
        load_hpsv2_benchmark(bad)
    bad.write_text('["ok", 3]', encoding="utf-8")
    with pytest.raises(InputError, match="not text") as info:
        load_hpsv2_benchmark(bad)
    assert info.value.row == 1


def test_text_prompts(tmp_path):
    path = tmp_path / "drawbench.txt"
    path.write_text("a red cube\n\n  two cats  \r\nthe end", encoding="utf-8")
    prompts = load_prompt_set("text", path)
    assert prompts == PromptSet("drawbench", ("a red cube", "two cats", "the end"), None, path)
    path.write_text("\n  \n", encoding="utf-8")
    with pytest.raises(InputError, match="empty"):
        load_text_prompts(path)
    with pytest.raises(InputError, match="does not exist"):
        load_text_prompts(tmp_path / "nope.txt")
    with pytest.raises(InputError, match="unknown prompt set"):
        load_prompt_set("coco", path)


def test_prompt_set_checks_lengths(tmp_path):
    with pytest.raises(InputError, match="1 category values for 2 prompts"):
        PromptSet("x", ("a", "b"), ("c",), tmp_path)
