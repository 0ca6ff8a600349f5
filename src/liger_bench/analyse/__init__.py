"""Analyse: turn the runs' results and step histories into one ``Analysis``: tables, intervals, the headline.

analyze_results runs this stage before rendering. It imports the shared top-level modules, inputs,
plan and measure.
"""
