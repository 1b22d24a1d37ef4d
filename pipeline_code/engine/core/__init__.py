"""The NumPy-only forecasting core: the artifact, the calendar, the model equations and the forecaster
that serving runs. Imports NumPy and the standard library only.
"""
