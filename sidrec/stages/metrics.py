"""Stage `metrics`: every model's predictions -> metrics.tsv (long format)."""
from __future__ import annotations

from ..data.tables import read_items
from ..evaluate import metrics_table, write_metrics
from ..metrics import LIST_FAULTS, METRICS


def write_metrics_table(*, dataset: str, predictions, out, ks, items=None, log=print) -> None:
    """items: the item table, whose size bounds valid ids (None: only padding is invalid)."""
    n_items = None if items is None else len(read_items(items))
    table = metrics_table(dataset, predictions, ks, n_items)
    write_metrics(table, out)
    log(table[table.metric.isin(METRICS) & (table.k == 10)].to_string(index=False))
    faults = table[table.metric.isin(LIST_FAULTS)]
    log(f"invalid / duplicate items in the ranked lists: {int(faults.value.sum())} in all")
