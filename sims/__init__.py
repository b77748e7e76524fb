"""Reproducible studies of the LSI toolkit (run ``python -m sims --help``).

Each study is one command with its settings in ``sims/configs/<study>.toml`` and writes CSV
and Markdown tables plus PNG figures; ``sims/results/`` holds those of the latest full run
with the exact command and package versions (``PROVENANCE.json``).
"""
