"""Deliberately wrong LSTM code, to measure what each common mistake costs.

Everything in this package is broken on purpose. `lstmkit pitfalls` trains
these variants beside the correct model. Nothing else in lstmkit imports
this package, and lstmkit's public cell and drivers have no option that
selects a pitfall.
"""
