"""Training: the run configuration, the end-to-end trainer (masks + decoder), the
measurement bank, readings from a bench, and the one entry point every caller uses."""
