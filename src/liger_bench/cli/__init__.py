"""The ``liger-bench`` command: compile the pipeline, run it locally or submit it to Kubeflow.

It sits beside the stages: it may import any of them, ``tasks`` and the pipeline; nothing in the
stages imports it.
"""
