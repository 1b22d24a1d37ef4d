"""The forecasting engine: data contract, preprocessing, model families, CV, tuning, calibration, evaluation.

Imports nothing from the pipeline, serving or the command line (tests/test_layers.py checks it).
"""
