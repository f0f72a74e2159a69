"""Paired comparisons of an experiment's results, each with a bootstrap interval (``bootstrap``).

* between models (``analysis.comparisons``): A − B of each metric, image by image on the shared
  evaluation, resampling prompts and training seeds;
* between ranking settings (``analysis.ranking_reference``): each setting's agreement with the judge
  minus the reference setting's, prompt by prompt on the same candidates, and its ratio of passes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from sail_core.errors import InputError
from sail_core.experiments.bootstrap import paired_bootstrap, prompt_differences
from sail_core.experiments.spec import Analysis


def model_differences(analysis: Analysis, rows: Sequence[dict], scores: Callable[[dict], dict]) -> list[dict]:
    """One row per comparison and metric, over the seeds both models were run with. ``rows`` are the
    experiment's metrics rows (``arm``, ``model``, ``seed``); ``scores(row)`` its per-image score table."""
    found = {(r["arm"], r["model"], r["seed"]): r for r in rows}
    out = []
    for a, b in analysis.comparisons:
        (arm_a, _, model_a), (arm_b, _, model_b) = a.partition("/"), b.partition("/")
        seeds = sorted({s for (arm, model, s) in found if (arm, model) == (arm_a, model_a)}
                       & {s for (arm, model, s) in found if (arm, model) == (arm_b, model_b)})
        if not seeds:
            continue  # not both run yet in any seed
        for metric in analysis.comparison_metrics:
            per_seed = [prompt_differences(scores(found[arm_a, model_a, s]), scores(found[arm_b, model_b, s]), metric)
                        for s in seeds]
            if any(prompts != per_seed[0][0] for prompts, _ in per_seed):
                raise InputError(f"{a} and {b} were evaluated on other prompts in some seeds", parameter="comparisons")
            interval = paired_bootstrap(np.stack([d for _, d in per_seed]), analysis.bootstrap_resamples,
                                        analysis.confidence_level)
            out.append({"a": a, "b": b, "metric": metric, "seeds": len(seeds), "prompts": len(per_seed[0][0]),
                        "difference": interval.mean, "low": interval.low, "high": interval.high,
                        "p_not_above_zero": interval.p_not_above_zero})
    return out


def differences_markdown(rows: Sequence[dict], level: float) -> str:
    lines = [f"| A | B | metric | seeds | prompts | A − B | {level:.0%} CI | P(A − B ≤ 0) |", "|" + "---|" * 8]
    lines += [f"| {r['a']} | {r['b']} | {r['metric']} | {r['seeds']} | {r['prompts']} | {r['difference']:+.4f} | "
              f"[{r['low']:+.4f}, {r['high']:+.4f}] | {r['p_not_above_zero']:.3f} |" for r in rows]
    return "\n".join(lines)


def ranking_versus_reference(analysis: Analysis, ranking: Sequence[dict]) -> list[dict]:
    """Each ranking setting against ``analysis.ranking_reference`` on the same candidates: the agreement
    difference per (seed, prompt) unit, with a paired bootstrap interval over those units (a seed's
    prompts are its own, so units are not crossed with seeds), and the mean ratio of passes."""
    reference = analysis.ranking_reference
    by_seed = {(r["seed"], r["setting"]): r for r in ranking if r.get("prompt_agreement") is not None}
    seeds = sorted({s for s, name in by_seed if name == reference})
    out = []
    for setting in dict.fromkeys(r["setting"] for r in ranking):
        if setting == reference or not seeds or not all((s, setting) in by_seed for s in seeds):
            continue
        diffs = np.concatenate([np.subtract(by_seed[s, setting]["prompt_agreement"],
                                            by_seed[s, reference]["prompt_agreement"]) for s in seeds])
        interval = paired_bootstrap(diffs[None, :], analysis.bootstrap_resamples, analysis.confidence_level)
        passes = [by_seed[s, setting]["passes_per_candidate"] / by_seed[s, reference]["passes_per_candidate"]
                  for s in seeds]
        out.append({"setting": setting, "reference": reference, "seeds": len(seeds), "prompts": len(diffs),
                    "passes_ratio": float(np.mean(passes)), "agreement_difference": interval.mean,
                    "low": interval.low, "high": interval.high})
    return out


def ranking_versus_markdown(rows: Sequence[dict], analysis: Analysis) -> str:
    level, reference = analysis.confidence_level, rows[0]["reference"]
    lines = [f"| setting | seeds | prompts | passes / {reference}'s | agreement − {reference}'s | {level:.0%} CI |",
             "|" + "---|" * 6]
    lines += [f"| {r['setting']} | {r['seeds']} | {r['prompts']} | {r['passes_ratio']:.2f} | "
              f"{r['agreement_difference']:+.3f} | [{r['low']:+.3f}, {r['high']:+.3f}] |" for r in rows]
    return "\n".join(lines)
