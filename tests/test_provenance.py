"""provenance.json (sidrec/provenance.py): what it records, that its hashes are the
files' own, and that the tiny pipeline's record goes stale when what it describes changes."""
import hashlib
import json
import os
import re

import pytest
import snakemake

from conftest import run_snakemake
from sidrec.provenance import config_hash, file_hashes, git_state, read_benchmark


def test_file_hashes_expand_folders_file_by_file(tmp_path):
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "a.bin").write_bytes(b"abc")
    (tmp_path / "model" / "sub").mkdir()
    (tmp_path / "model" / "sub" / "b.json").write_text("{}")
    (tmp_path / "x.tsv").write_text("k\tv\n")
    hashes = file_hashes([tmp_path / "model", tmp_path / "x.tsv"])
    assert list(hashes) == [str(tmp_path / "model" / "a.bin"), str(tmp_path / "model" / "sub" / "b.json"),
                            str(tmp_path / "x.tsv")]
    assert hashes[str(tmp_path / "model" / "a.bin")] == {"sha256": hashlib.sha256(b"abc").hexdigest(), "bytes": 3}


def test_the_config_hash_ignores_key_order_and_sees_every_value():
    assert config_hash({"a": 1, "b": [1, 2]}) == config_hash({"b": [1, 2], "a": 1})
    assert config_hash({"a": 1, "b": [1, 2]}) != config_hash({"a": 1, "b": [2, 1]})


def test_benchmark_rows_give_wall_cpu_and_memory(tmp_path):
    path = tmp_path / "sft.tsv"
    path.write_text("s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"
                    "12.5\t0:00:12\t512.0\t1.0\t1.0\t1.0\t0\t0\t90.0\t20.25\n")
    assert read_benchmark(path) == {"wall_s": 12.5, "cpu_s": 20.25, "max_rss_mb": 512.0}
    path.write_text("s\th:m:s\tmax_rss\tcpu_time\n0.5\t0:00:00\tNA\tNA\n")  # psutil could not measure
    assert read_benchmark(path) == {"wall_s": 0.5, "cpu_s": None, "max_rss_mb": None}


def test_git_state_outside_a_repository_says_so(tmp_path):
    assert "error" in git_state(tmp_path)


@pytest.fixture(scope="module")
def record(tiny_pipeline):
    return json.loads((tiny_pipeline[0] / "results" / "synth" / "seed-0" / "provenance.json").read_text())


def test_the_record_names_code_environment_config_seeds_and_devices(record):
    assert re.fullmatch(r"[0-9a-f]{40}", record["git"]["commit"]) and isinstance(record["git"]["dirty"], bool)
    assert record["python"]["version"].split()[0].count(".") == 2
    assert record["packages"]["snakemake"] == snakemake.__version__ and "torch" in record["packages"]
    config = record["config"]
    assert config["run"] == ["synth"] and config["quantizer"]["levels"] == 2
    assert record["config_sha256"] == config_hash(config)
    assert record["seeds"]["run"] == 0 and record["seeds"]["sft"] == config["sft"]["seed"]
    assert record["devices"]["stages"] == {"sft": "cpu", "rl": "cpu"}
    assert record["devices"]["host"]["cpu_count"] == os.cpu_count()


def test_every_file_from_the_source_on_is_hashed_as_it_is(record, tiny_pipeline):
    work = tiny_pipeline[0]
    source = record["files"]["source"]
    assert {os.path.basename(p) for p in source} == {"Synth.item.json", "valid.csv", "test.csv"}
    artifacts = record["files"]["artifacts"]
    for name in ("data/items.parquet", "embeddings.npy", "rqvae.ckpt", "sid.json", "sft/sft_report.json",
                 "rl/rl_report.json", "sasrec.ckpt", "sasrec_selection.json", "predictions/rl_test.parquet", "metrics.tsv",
                 "significance.tsv"):
        folder = "results/synth" if name.startswith(("data/", "embeddings")) else "results/synth/seed-0"
        assert f"{folder}/{name}" in artifacts, name
    for path, entry in {**source, **artifacts}.items():
        data = (work / path).read_bytes()
        assert entry == {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}, path
    assert any(p.startswith("results/models/tiny-synth-seed-0/") for p in artifacts)


def test_each_model_has_its_section_and_each_job_its_times(record):
    models = record["models"]
    assert set(models) == {"sft", "rl", "popularity", "sasrec"}
    assert models["rl"]["report"]["device"] == "cpu" and "selected" in models["rl"]["report"]
    assert "results/synth/predictions/popularity_valid.parquet" in models["popularity"]["files"]
    jobs = record["rules"]
    assert {"dataset", "embed", "item_vectors", "quantize", "sid", "base_tiny-synth-seed-0", "sft", "rl",
            "predict_sft", "predict_rl",
            "popularity", "sasrec_grid/dropout0.1", "sasrec_grid/dropout0.3", "sasrec_select", "metrics",
            "significance"} == set(jobs)
    assert all(t["wall_s"] > 0 for t in jobs.values())
    assert record["total_wall_s"] == pytest.approx(sum(t["wall_s"] for t in jobs.values()))


def test_a_newer_benchmark_makes_the_record_stale(tiny_pipeline):
    """A job that reran (here: its benchmark file rewritten) changes the times the record
    holds: provenance, and the figure of the times, are planned again; nothing else."""
    work, configs = tiny_pipeline
    bench = work / "results" / "synth" / "seed-0" / "benchmarks" / "sasrec_select.tsv"
    original, before = bench.read_bytes(), bench.stat()
    try:
        # A real edit: Snakemake ignores a newer mtime when a small file's checksum is unchanged.
        header, row = bench.read_text().splitlines()[:2]
        bench.write_text(f"{header}\n9{row}\n")
        out = run_snakemake(work, "-n", "--cores", "1", configfiles=configs)
    finally:
        bench.write_bytes(original)
        os.utime(bench, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert out.returncode == 0, out.stdout + out.stderr
    planned = set(re.findall(r"^rule (\w+):$", out.stdout, flags=re.M)) - {"all"}
    assert planned == {"provenance", "plots"}, out.stdout
