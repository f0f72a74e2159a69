"""``sail plan``: what a run costs before it runs, from the real architectures' shapes.

Nothing here allocates a model: the UNets, VAEs and text encoders are built from the published
configs under fake tensors (``torch._subclasses.fake_tensor.FakeTensorMode``), and the project's own
sampler, reward and trainer code runs on them while one dispatch mode (:class:`.trace.LiveMemory`) counts
FLOPs with ``torch.utils.flop_counter``'s formulas and follows every tensor's storage (parameters,
gradients, optimizer state, activations, temporaries) to the peak, as
``torch.distributed._tools.mem_tracker.MemTracker`` does (torchtitan's way of estimating memory).

* :mod:`~sail_core.plan.gpus`: the GPUs a plan can target (peak, memory, bandwidth, sources);
* :mod:`~sail_core.plan.anchors`: measured MFU and memory anchors (published / field-note figures);
* :mod:`~sail_core.plan.trace`: one traced call → FLOPs and the memory peak by category;
* :mod:`~sail_core.plan.workloads`: one batch of each stage through the project's code, traced;
* :mod:`~sail_core.plan.estimate`: passes, FLOPs, memory, fit, time and GPU-hours per stage and run;
* :mod:`~sail_core.plan.render`: the tables ``sail plan`` prints.
"""
