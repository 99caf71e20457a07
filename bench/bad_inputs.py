"""Bad inputs and faults, tried as a new user would: each case is run through the code a
pipeline job runs (the dataset stage, `atomic_dir`, a `snakemake -n` of the Snakefile,
the SLURM harness's refusal check) and its outcome printed as one row of the markdown
table in bench/RESULTS.md ("Reliability: bad inputs and faults").

    .venv/bin/python bench/bad_inputs.py > /tmp/bad_inputs.md     # about 30 s on 2 cores

Paths in the messages are shortened to the file's name.
"""
from __future__ import annotations

import csv
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "tiny"))

from make_fixture import write_fixture  # noqa: E402  (the pipeline test's tiny MiniOneRec folder)

from sidrec.errors import InputError  # noqa: E402
from sidrec.io import atomic_dir  # noqa: E402
from sidrec.stages.dataset import build_dataset  # noqa: E402


def dataset_stage(folder: Path) -> str:
    """Outcome of the dataset stage on a MiniOneRec folder: its message, or what it wrote."""
    out = folder.parent / "out"
    try:
        build_dataset({"source": "minionerec", "path": str(folder)},
                      **{n: out / f"{n}.parquet" for n in ("items", "train", "valid", "test")}, log=lambda *a: None)
    except InputError as e:
        return f"stops: `{e}`"
    import pandas as pd

    return f"runs; items[2].title = {pd.read_parquet(out / 'items.parquet').title[2]!r}"


def fixture(tmp: Path, name: str) -> tuple[Path, Path]:
    folder = tmp / name / "source"
    write_fixture(folder)
    return folder, next(folder.glob("*.item.json"))


def edit_items(path: Path, change) -> None:
    items = json.loads(path.read_text())
    change(items)
    path.write_text(json.dumps(items, indent=1))


def snakemake_dry_run(tmp: Path, overlay: str) -> str:
    tmp.mkdir(parents=True)
    path = tmp / "overlay.yaml"
    path.write_text(overlay)
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    out = subprocess.run([sys.executable, "-m", "snakemake", "-n", "--cores", "1", "--directory", str(tmp),
                          "--configfile", str(path)], capture_output=True, text=True, cwd=ROOT, env=env)
    text = out.stdout + out.stderr
    line = next((ln for ln in text.splitlines() if "config: key" in ln), text.strip().splitlines()[-1])
    return f"{'stops before any job' if out.returncode else 'runs'}: `{line.strip()}`"


def cases(tmp: Path):
    folder, items = fixture(tmp, "dup")
    text = json.dumps(json.loads(items.read_text()), indent=1)
    items.write_text(text[:-2] + ',\n "3": {"title": "Again"}\n}')
    yield "item JSON with a key twice (`\"3\"`)", dataset_stage(folder)

    folder, items = fixture(tmp, "dict")
    edit_items(items, lambda d: d["2"].update(title={"en": "Two"}))
    yield "a dict where a title should be", dataset_stage(folder)

    folder, items = fixture(tmp, "na")
    edit_items(items, lambda d: d["2"].update(title="<NA>"))
    yield "a title made only of angle-bracketed text, `<NA>`", dataset_stage(folder)

    folder, items = fixture(tmp, "utf8json")
    items.write_bytes(items.read_bytes().replace(b'"title": "', b'"title": "caf\xe9 ', 1))
    yield "item JSON that is not UTF-8 (Latin-1 `é`)", dataset_stage(folder)

    folder, _ = fixture(tmp, "utf8csv")
    data = (folder / "test.csv").read_bytes().split(b"\n")
    data[3] = data[3].replace(b",", b"\xff,", 1)
    (folder / "test.csv").write_bytes(b"\n".join(data))
    yield "test.csv with a byte that is not UTF-8 on line 4", dataset_stage(folder)

    folder, _ = fixture(tmp, "empty")
    with open(folder / "valid.csv") as f:
        header = next(csv.reader(f))
    with open(folder / "valid.csv", "w", newline="") as f:
        csv.writer(f).writerow(header)
    yield "an empty valid split (valid.csv with only its header)", dataset_stage(folder)

    yield "a dataset named `..`", snakemake_dry_run(
        tmp / "dots", 'run: [".."]\ndatasets:\n  "..": {source: movielens}\n')
    yield "`datasets.ml-100k.sft.epochs: -3`", snakemake_dry_run(
        tmp / "epochs", "datasets:\n  ml-100k: {source: movielens, sft: {epochs: -3}}\n")
    yield '`datasets.ml-100k.sft.lr: "fast"`', snakemake_dry_run(
        tmp / "lr", 'datasets:\n  ml-100k: {source: movielens, sft: {lr: "fast"}}\n')
    yield "`datasets.ml-100k.rl.betta: 0.1` (misspelt key)", snakemake_dry_run(
        tmp / "betta", "datasets:\n  ml-100k: {source: movielens, rl: {betta: 0.1}}\n")

    model = tmp / "swap" / "model"
    with atomic_dir(model) as new:
        (new / "weights").write_text("v1")
    real = os.replace
    calls = []

    def killed_on_second(src, dst):
        calls.append(src)
        if len(calls) == 2:
            raise KeyboardInterrupt("killed")
        return real(src, dst)

    os.replace = killed_on_second
    try:
        with atomic_dir(model) as new:
            (new / "weights").write_text("v2")
    except KeyboardInterrupt:
        pass
    finally:
        os.replace = real
    left = sorted(p.name for p in model.parent.iterdir())
    yield ("`atomic_dir` interrupted after the old model was moved aside, before the new one "
           "was renamed in", f"old model back in place (`weights` = {(model / 'weights').read_text()!r}); "
                             f"folder holds {left}")

    (model.parent / ".model.tmp-killed").mkdir()
    (model.parent / ".model.old-killed").mkdir()
    with atomic_dir(model) as new:
        (new / "weights").write_text("v3")
    yield ("leftovers of a killed write (`.model.tmp-*`, `.model.old-*`)",
           f"removed by the next write of `model`; folder holds {sorted(p.name for p in model.parent.iterdir())}")

    conf = tmp / "etc-slurm"
    conf.mkdir()
    (conf / "slurm.conf").write_text("ClusterName=site\n")
    env = {k: v for k, v in os.environ.items() if k != "SLURM_CONF"} | {"LOCAL_SLURM_CONF_DIR": str(conf)}
    out = subprocess.run(["bash", str(ROOT / "ci/slurm/start_local_slurm.sh"), "start"],
                         capture_output=True, text=True, env=env)
    msg = next(ln for ln in out.stderr.splitlines() if "REFUSED" in ln).split("] ", 1)[1]
    yield ("SLURM harness `start` on a machine whose slurm.conf it did not write",
           f"exit {out.returncode}, nothing installed or written: `{msg}`")


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        print("| bad input or fault | outcome |\n|---|---|")
        for what, outcome in cases(Path(tmp)):
            outcome = re.sub(rf"{re.escape(tmp)}/[^\s:`']*/", "", outcome)  # file names only
            print(f"| {what} | {outcome.replace('|', '&#124;')} |")


if __name__ == "__main__":
    main()
