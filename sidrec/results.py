"""Where a run's artifacts lie: results/DATASET holds the data tables, embeddings and
popularity lists that its seeds share, and results/DATASET/seed-S one run's SIDs,
models, predictions, metrics and provenance (rules/common.smk's `run_dir`)."""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from .errors import InputError


@dataclass(frozen=True)
class ResultsFolder:
    """One run of the pipeline: `root` holds sid.json, sft/, rl/, metrics.tsv and
    provenance.json (results/DATASET/seed-S), `data_root` the data/ tables its seeds
    share (results/DATASET; the same folder when one folder holds everything)."""
    root: Path
    data_root: Path | None = None

    @classmethod
    def find(cls, path, seed: int | None = None) -> "ResultsFolder":
        """From what a person names: results/DATASET (its seed `seed`, else its lowest
        seed-S folder), results/DATASET/seed-S, or one folder holding a whole run."""
        path = Path(path)
        if re.fullmatch(r"seed-\d+", path.name):
            if seed is not None and path.name != f"seed-{seed}":
                raise InputError(path, f"is not the folder of seed {seed}")
            return cls(path, path.parent)
        runs = sorted((p for p in path.glob("seed-*") if re.fullmatch(r"seed-\d+", p.name) and p.is_dir()),
                      key=lambda p: int(p.name[len("seed-"):]))
        if seed is not None:
            if not (path / f"seed-{seed}").is_dir():
                raise InputError(path / f"seed-{seed}", f"not found (seeds here: {[p.name for p in runs] or 'none'})")
            return cls(path / f"seed-{seed}", path)
        return cls(runs[0], path) if runs else cls(path, path)

    @property
    def data(self) -> Path:
        return (self.data_root or self.root) / "data"

    @property
    def dataset(self) -> str:
        return (self.data_root or self.root).name

    @property
    def items(self) -> Path:
        return self.data / "items.parquet"

    @property
    def sid(self) -> Path:
        return self.root / "sid.json"

    def model_dir(self, model: str) -> Path:
        return self.root / model

    def check(self, model: str) -> None:
        """InputError naming the first artifact the server needs and cannot find."""
        for path in (self.items, self.sid, self.model_dir(model) / "config.json"):
            if not path.exists():
                raise InputError(path, "not found (has the pipeline run? `make run` builds it)")
