"""The world scorer reports each attribute and taste term beside the aggregates, NaN where one does not
apply; summaries average over the images where it applies, and the run's table shows them."""

import numpy as np
import pytest
from PIL import Image

from sail_core.evaluation.run_report import detail_names, format_table, metric_names
from sail_core.evaluation.summary import mean_ci, summarize, win_rate
from sail_core.world.human import judge
from sail_core.world.render import render
from sail_core.world.scorer import WorldJudgeScorer
from tests.world.helpers import scene


class _Record:  # what format_table reads from an EvalRecord
    def __init__(self, label, metrics):
        self.label, self.metrics = label, metrics


def test_scorer_reports_every_check_and_taste_term_with_nan_where_it_does_not_apply():
    left = render(scene([("circle", "cyan", 4.0, 8.0, 6.0)], "white"))
    prompts = ["a cyan circle on the left on a white background", "a cyan circle", "a small cyan circle"]
    scores = WorldJudgeScorer().score([Image.fromarray(left)] * 3, prompts)
    assert set(scores) == set(WorldJudgeScorer.metrics)
    for i, prompt in enumerate(prompts):
        j = judge(prompt, left)
        assert scores["utility"][i] == j.utility and scores["faithfulness"][i] == j.faithfulness
        assert scores["faithful"][i] == float(j.faithful) and scores["taste"][i] == j.taste
    # stated position and background: checked, not tasted; unsaid: tasted, not checked
    assert scores["attribute.position"].tolist()[0] == 1.0 and np.isnan(scores["attribute.position"][1])
    assert scores["attribute.background"].tolist()[0] == 1.0 and np.isnan(scores["attribute.background"][1])
    assert np.isnan(scores["taste.placement"][0]) and scores["taste.placement"][1] > 0
    assert np.isnan(scores["taste.contrast"][0]) and scores["taste.contrast"][1] > 0
    # a 6 px circle is large: the stated "small" fails, the unsaid size is tasted
    assert scores["attribute.size"][2] == 0.0 and np.isnan(scores["attribute.size"][1])
    assert np.isnan(scores["taste.size"][2]) and scores["taste.size"][1] > 0
    assert scores["faithful"].tolist() == [1.0, 1.0, 0.0]


def test_summaries_average_over_the_images_a_metric_applies_to():
    values = np.array([1.0, np.nan, 0.0, np.nan, 1.0])
    mean, half = mean_ci(values)
    assert mean == pytest.approx(2 / 3)
    assert half == pytest.approx(1.959963984540054 * np.std([1.0, 0.0, 1.0], ddof=1) / np.sqrt(3))
    assert win_rate(np.array([1.0, np.nan, 0.5]), np.array([0.0, 1.0, 0.5])) == pytest.approx(0.75)
    summary = summarize({"a": values, "never": np.full(5, np.nan)}, ["x"] * 5, {"a": np.zeros(5)})
    assert summary["a"] == pytest.approx(2 / 3) and summary["a_win_rate"] == pytest.approx(2.5 / 3)  # a tie is half
    assert "never" not in summary and "never_ci95" not in summary  # records hold finite numbers only


def test_run_table_shows_headline_metrics_and_the_details_below():
    metrics = {"utility": 0.7, "utility_ci95": 0.01, "faithful": 0.5, "faithful_ci95": 0.05,
               "faithfulness": 0.9, "faithfulness_ci95": 0.02, "taste": 0.6, "taste_ci95": 0.03,
               "attribute.colour": 0.99, "attribute.position": 0.875, "taste.clean": 0.5}
    records = [_Record("base", metrics), _Record("round-01", {**metrics, "utility_win_rate": 0.625})]
    assert metric_names(records) == ["utility", "faithful", "faithfulness", "taste"]
    assert detail_names(records) == ["attribute.colour", "attribute.position", "taste.clean"]
    lines = format_table(records).split("\n")
    assert lines[0].split() == ["model", "utility", "faithful", "faithfulness", "taste", "win(utility)"]
    assert lines[3].split()[-1] == "0.625" and "0.9000 ± 0.0200" in lines[2]
    assert lines[6].split() == ["model", "|", "attribute:", "colour", "position", "|", "taste:", "clean"]
    assert lines[8].split() == ["base", "|", "0.990", "0.875", "|", "0.500"]
