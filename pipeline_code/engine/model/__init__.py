"""Harmonic regression with ARIMA errors: design, error recursion (NumPy only) and batched fitting."""
