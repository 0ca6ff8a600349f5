"""Measure: train one grid point in a supervised process (or a TrainJob) and measure every step.

The memory frontier search (``frontier``, ``frontier_probe``) probes batch sizes as such runs.

train_model runs this stage. It imports the shared top-level modules, inputs and plan.
"""
