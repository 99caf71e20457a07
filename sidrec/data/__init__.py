"""Datasets: the four tables every stage reads (`tables`), the split rules (`splits`),
and one reader per source, dispatched by `sources.load_source`.

No imports here: a stage that only reads the tables must not depend on every reader
(rules' code inputs follow imports, workflow/code_inputs.py)."""
