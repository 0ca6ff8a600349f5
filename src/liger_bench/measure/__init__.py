"""Measure: train one grid point in a supervised process (or a TrainJob) and measure every step.

train_model runs this stage. It imports the shared top-level modules, inputs and plan.
"""
