"""Measurement: op counts and their rules, counting conventions, energy, parameters and
firing rates, the recovery curve and per-layer diagnostics."""
