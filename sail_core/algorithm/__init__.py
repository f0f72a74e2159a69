"""The SAIL algorithm (Algorithm 1 of the paper), one module per piece:

==============  =====================================================================  ===========
module          what                                                                     paper
==============  =====================================================================  ===========
``sampler``     N candidates per prompt: CFG DDPM/DDIM sampling, final latents kept     Alg. 1, §5.1
``noising``     q(x_t | x_0), the training target, the per-sample denoising error        §3
``reward``      r(x) = −β/2 · E_{t,ε}[‖ε − ε_θ‖² − ‖ε − ε_ref‖²], K draws, p = σ(r_A − r_B)  Eq. 8-10
``draws``       the (t, ε) draws: shared per prompt, in blocks, stratified t, antithetic ε  Eq. 8
``ranking``     estimators chosen by config: fixed K, or sequential (batched prompts)   Eq. 8, §4.1
``sequential``  when a prompt's best and worst are settled (MCB test, δ, cap)           §4.1
``selection``   one pair per prompt: best vs worst (or random, the ablation)            §4.1, Tab. 5
``judge``       which model is the reward's reference (base / iteration 0 / previous)   §4.1
``mixup``       α self pairs + (1 − α) human seed pairs (and any other sources)         §4.2
``dpo_loss``    the Diffusion-DPO loss, −log σ(r(x_w) − r(x_l)) with the same r          Eq. 5
==============  =====================================================================  ===========

The stages (``sail_core.stages``) apply these to files; the training loop that minimises the
loss is ``sail_core.training.trainer``.
"""
