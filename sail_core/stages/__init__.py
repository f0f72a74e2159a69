"""The stages of SAIL, each declared once (:class:`sail_core.run.stage.Stage`).

=========  ==========================================================  =====================
stage      what it does                                                 paper
=========  ==========================================================  =====================
seed       human seed pairs, encoded once                               §5.1 (Pick-a-Pic v2)
real       RealAlign's real images (optional third pair source)         —
prompts    a round's new prompts, disjoint from all earlier ones        Alg. 1, Y_i
generate   N candidates per prompt with the current model               Alg. 1, §4.1
rank       implicit self-reward (Eq. 8-10), best vs worst pair          §4.1
mix        α self pairs + (1 − α) human seed pairs                      §4.2
train      Diffusion-DPO, the previous model as init and reference      Eq. 5, §4.1
evaluate   held-out prompts, fixed seeds, scores, win rate vs base      §5
export     the chosen model as a folder diffusers loads, its card       —
=========  ==========================================================  =====================

Every stage runs through :mod:`sail_core.run.runner`; ``STAGES`` finds a stage by name (the shard
flow gets its stage by name from another process).
"""

from sail_core.run.stage import Stage
from sail_core.stages.evaluate import EVALUATE, EvaluateInputs
from sail_core.stages.export import EXPORT, ExportInputs
from sail_core.stages.generate import GENERATE, GenerateInputs
from sail_core.stages.mix import MIX, MixInputs
from sail_core.stages.prompts import PROMPTS, PromptsInputs
from sail_core.stages.rank import RANK, RankInputs
from sail_core.stages.real import REAL, real_generation_config
from sail_core.stages.seed import SEED
from sail_core.stages.train import TRAIN, TrainInputs

STAGES: dict[str, Stage] = {s.name: s for s in (SEED, REAL, PROMPTS, GENERATE, RANK, MIX, TRAIN, EVALUATE,
                                                EXPORT)}

__all__ = [
    "EVALUATE", "EXPORT", "GENERATE", "MIX", "PROMPTS", "RANK", "REAL", "SEED", "STAGES", "TRAIN", "EvaluateInputs",
    "ExportInputs", "GenerateInputs", "MixInputs", "PromptsInputs", "RankInputs", "TrainInputs",
    "real_generation_config",
]
