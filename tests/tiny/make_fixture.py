"""The tiny synthetic dataset of the end-to-end tests, in MiniOneRec's format.

    python tests/tiny/make_fixture.py WORK

writes WORK/source/ (Synth.item.json, valid.csv, test.csv) and WORK/paths.yaml, the
overlay that points tests/tiny/config.yaml's dataset at it. Users walk the catalogue in
steps of one (item i is followed by i+1), so the next item is learnable; the valid/test
rows are each user's last two steps.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

N_ITEMS = 60
N_USERS = 40
GENRES = ["drill", "glove", "tape", "valve", "sensor", "clamp"]
CONFIG = Path(__file__).with_name("config.yaml")


def write_fixture(folder: Path) -> None:
    folder.mkdir(parents=True)
    items = {str(i): {"title": f"{GENRES[i % len(GENRES)]} model {i}", "brand": f"brand{i % 4}",
                      "categories": f"Industrial, {GENRES[i % len(GENRES)]}", "description": ""}
             for i in range(N_ITEMS)}
    (folder / "Synth.item.json").write_text(json.dumps(items))
    rng = np.random.default_rng(0)
    valid, test = [], []
    for u in range(N_USERS):
        start = int(rng.integers(0, N_ITEMS))
        seq = [(start + j) % N_ITEMS for j in range(int(rng.integers(5, 9)))]
        for rows, cut in ((valid, len(seq) - 1), (test, len(seq))):
            hist, target = seq[:cut - 1][-10:], seq[cut - 1]
            rows.append({"user_id": f"U{u}", "history_item_title": str([items[str(h)]["title"] for h in hist]),
                         "item_title": items[str(target)]["title"], "history_item_id": str(hist),
                         "item_id": target, "history_item_sid": "[]", "item_sid": ""})
    pd.DataFrame(valid).to_csv(folder / "valid.csv", index=False)
    pd.DataFrame(test).to_csv(folder / "test.csv", index=False)


def make(work: Path) -> list[Path]:
    """Write the fixture under `work`; return the config files to pass to snakemake."""
    work = Path(work).resolve()
    write_fixture(work / "source")
    overlay = work / "paths.yaml"
    overlay.write_text(yaml.safe_dump({"datasets": {"synth": {"source": "minionerec",
                                                              "path": str(work / "source")}}}))
    return [CONFIG, overlay]


if __name__ == "__main__":
    make(Path(sys.argv[1]))
