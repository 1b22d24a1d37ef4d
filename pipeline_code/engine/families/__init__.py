"""Model families: each declares its search space, a fit over all CV windows at once and a final fit
to a plain-data artifact section the NumPy core forecasts from. See ``base`` for the interface and
``registry`` for the list (one line per family).
"""
