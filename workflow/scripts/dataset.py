"""Rule `dataset`: read the configured source, write the four tables."""
import sys

sys.stdout = sys.stderr = open(snakemake.log[0], "w", buffering=1)

from pathlib import Path

from sidrec.data import load_source
from sidrec.data.tables import write_dataset

spec = dict(snakemake.params.spec)
source = spec.pop("source")
ds = load_source(source, **spec)
write_dataset(ds, Path(snakemake.output.item_table).parent)
print(f"{snakemake.wildcards.dataset}: {ds.n_items} items, train {len(ds.train)}, "
      f"valid {len(ds.valid)}, test {len(ds.test)}")
