"""Stage `metrics`: every model's predictions -> metrics.tsv (long format)."""
from __future__ import annotations

from ..evaluate import metrics_table, write_metrics


def write_metrics_table(*, dataset: str, predictions, out, ks, log=print) -> None:
    table = metrics_table(dataset, predictions, ks)
    write_metrics(table, out)
    log(table[table.k == 10].to_string(index=False))
