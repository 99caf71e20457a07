"""quantizer.input: the SIDs from text vectors, the SASRec item embeddings, or both."""
import numpy as np
import pytest
import torch
import yaml

from sidrec.baselines.sasrec import SASRec, SASRecConfig, save_sasrec
from sidrec.errors import InputError
from sidrec.quantize.inputs import collaborative_vectors, quantizer_input, unit_rows
from sidrec.stages.item_vectors import build_item_vectors

from conftest import ROOT
from test_pipeline import built, dry_run  # noqa: F401  (the session's tiny pipeline)


def test_text_is_passed_through_unchanged_so_default_sids_do_not_move():
    text = np.array([[3.0, 4.0], [1.0, 0.0]], dtype=np.float32)
    np.testing.assert_array_equal(quantizer_input("text", text), text)


def test_both_puts_unit_text_beside_weighted_unit_collaborative_rows():
    text = np.array([[3.0, 4.0], [0.0, 2.0]], dtype=np.float32)
    collab = np.array([[0.0, 0.0, 5.0], [1.0, 1.0, 0.0]], dtype=np.float32)
    both = quantizer_input("both", text, collab, collaborative_weight=0.5)
    assert both.shape == (2, 5) and both.dtype == np.float32
    np.testing.assert_allclose(both[0], [0.6, 0.8, 0.0, 0.0, 0.5])
    np.testing.assert_allclose(np.linalg.norm(both[:, :2], axis=1), 1.0)
    np.testing.assert_allclose(np.linalg.norm(both[:, 2:], axis=1), 0.5, rtol=1e-6)
    np.testing.assert_allclose(quantizer_input("collaborative", text, collab), unit_rows(collab))


def test_a_zero_row_stays_zero_instead_of_nan():
    assert np.isfinite(unit_rows(np.zeros((2, 3)))).all()


@pytest.mark.parametrize("kind, collab, weight, message", [
    ("words", np.ones((2, 2)), 1.0, "must be one of"),
    ("both", None, 1.0, "needs the collaborative vectors"),
    ("both", np.ones((3, 2)), 1.0, "2 text vectors but 3"),
    ("both", np.ones((2, 2)), -1.0, "collaborative_weight must be >= 0"),
])
def test_bad_inputs_are_refused(kind, collab, weight, message):
    with pytest.raises(ValueError, match=message):
        quantizer_input(kind, np.ones((2, 2)), collab, collaborative_weight=weight)


def test_the_sasrec_table_loses_its_padding_row_and_must_cover_the_catalogue():
    table = np.arange(12, dtype=np.float32).reshape(4, 3)
    np.testing.assert_array_equal(collaborative_vectors(table, 3), table[:3])
    with pytest.raises(ValueError, match=">= 5 rows"):
        collaborative_vectors(table, 5)


def saved_sasrec(path, n_items):
    torch.manual_seed(0)
    model = SASRec(n_items, SASRecConfig(hidden=8, heads=2, inner_size=16))
    save_sasrec(path, model, model.config if hasattr(model, "config") else SASRecConfig(hidden=8, heads=2,
                                                                                        inner_size=16))
    return model


def test_the_stage_writes_each_items_own_sasrec_row_beside_its_text(tmp_path):
    model = saved_sasrec(tmp_path / "sasrec.ckpt", 6)
    text = np.random.default_rng(0).normal(size=(6, 4)).astype(np.float32)
    np.save(tmp_path / "embeddings.npy", text)
    out = tmp_path / "seed-0" / "item_vectors.npy"
    made = build_item_vectors("both", tmp_path / "embeddings.npy", tmp_path / "sasrec.ckpt", out,
                              collaborative_weight=2.0)
    on_disk = np.load(out)
    np.testing.assert_array_equal(made, on_disk)
    assert on_disk.shape == (6, 12)
    np.testing.assert_allclose(on_disk[:, :4], unit_rows(text), rtol=1e-6)
    want = 2.0 * unit_rows(model.item_emb.weight.detach().numpy()[:6])
    np.testing.assert_allclose(on_disk[:, 4:], want, rtol=1e-5, atol=1e-6)
    assert not list(out.parent.glob(".*tmp"))  # written through a temp file


def test_a_sasrec_of_another_catalogue_is_named(tmp_path):
    saved_sasrec(tmp_path / "sasrec.ckpt", 5)
    np.save(tmp_path / "embeddings.npy", np.ones((6, 4), dtype=np.float32))
    with pytest.raises(InputError, match="sasrec.ckpt.*5 items.*has 6"):
        build_item_vectors("collaborative", tmp_path / "embeddings.npy", tmp_path / "sasrec.ckpt",
                           tmp_path / "out.npy")
    assert not (tmp_path / "out.npy").exists()


def test_the_dag_feeds_the_quantiser_sasrec_vectors_only_when_asked(built, tmp_path):
    def planned(setting):
        overlay = tmp_path / f"{setting}.yaml"
        overlay.write_text(f"quantizer: {{input: {setting}, collaborative_weight: 0.5}}\n")
        out = dry_run(built, "-p", "--forceall", extra=[overlay])
        assert out.returncode == 0, out.stderr
        return out.stdout

    text = planned("text")
    assert "rule item_vectors:" not in text
    assert "--embeddings results/synth/embeddings.npy" in text.split("rule quantize:")[1].split("rule ")[0]
    both = planned("both")
    quantize = both.split("rule quantize:")[1].split("rule ")[0]
    assert "rule item_vectors:" in both and "results/synth/seed-0/item_vectors.npy" in quantize
    assert both.index("rule sasrec_select:") < both.index("rule item_vectors:") < both.index("rule quantize:")


def test_changing_the_quantizer_input_rebuilds_from_the_sids_on_and_keeps_sasrec(built, tmp_path):
    built_input = yaml.safe_load((ROOT / "config/config.yaml").read_text())["quantizer"]["input"]
    other = "text" if built_input != "text" else "both"
    overlay = tmp_path / "other.yaml"
    overlay.write_text(f"quantizer: {{input: {other}}}\n")
    out = dry_run(built, extra=[overlay])
    assert out.returncode == 0, out.stderr
    for rule in ("quantize", "sid", "sft", "rl", "metrics"):
        assert f"rule {rule}:" in out.stdout, rule
    for rule in ("dataset", "embed", "sasrec", "sasrec_select", "popularity"):
        assert f"rule {rule}:" not in out.stdout, rule


def test_the_similarity_reward_reads_what_the_quantiser_read_only_when_asked(built, tmp_path):
    built_input = yaml.safe_load((ROOT / "config/config.yaml").read_text())["quantizer"]["input"]
    assert built_input != "text"  # the tiny pipeline's SIDs read item_vectors.npy

    def rl_job(extra: str):
        overlay = tmp_path / "rl.yaml"
        overlay.write_text(extra)
        out = dry_run(built, "-p", "--forceall", extra=[overlay])
        assert out.returncode == 0, out.stderr
        return out.stdout.split("rule rl:")[1].split("rule ")[0]

    default = rl_job("rl: {rewards: {similarity: 0.5}}\n")
    assert "--embeddings results/synth/embeddings.npy" in default
    asked = rl_job("rl: {similarity_vectors: quantizer, rewards: {similarity: 0.5}}\n")
    assert "--embeddings results/synth/seed-0/item_vectors.npy" in asked
    # the choice is an input file, not an RL hyperparameter: sidrec.cli.rl never sees it
    assert "similarity_vectors" not in asked.split("--params")[1]
    bad = tmp_path / "bad.yaml"
    bad.write_text("rl: {similarity_vectors: sasrec}\n")
    out = dry_run(built, extra=[bad])
    assert out.returncode != 0 and "similarity_vectors" in out.stderr + out.stdout


def test_switching_the_similarity_vectors_reruns_rl_only(built, tmp_path):
    overlay = tmp_path / "sim.yaml"
    overlay.write_text("rl: {similarity_vectors: quantizer}\n")
    out = dry_run(built, extra=[overlay])
    assert out.returncode == 0, out.stderr
    assert "rule rl:" in out.stdout and "rule metrics:" in out.stdout
    for rule in ("sft", "sid", "quantize", "item_vectors", "sasrec"):
        assert f"rule {rule}:" not in out.stdout, rule
