"""SFT distillation from SASRec (sidrec/lm/distill.py and its use in sidrec/lm/sft.py)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import yaml

from sidrec.baselines.sasrec import SASRec, SASRecConfig, encode_histories
from sidrec.errors import InputError
from sidrec.lm.base import load_causal_lm
from sidrec.lm.distill import (labelled_items, level_distributions, level_token_ids, sasrec_soft_targets,
                               soft_cross_entropy)
from sidrec.lm.prompts import PromptBuilder
from sidrec.lm.sft import CompletionCollator, EncodedExamples, SFTConfig, completion_loss, train_sft
from sidrec.lm.vocab import add_sid_tokens
from sidrec.sid import code_token

from conftest import ROOT
from test_lm import CODES, N_ITEMS, TITLES, TRAIN, VALID, tiny_dir  # noqa: F401  (its fixture)
from test_pipeline import built, dry_run  # noqa: F401  (the session's tiny pipeline)


@pytest.fixture(scope="module")
def teacher():
    torch.manual_seed(0)
    model = SASRec(N_ITEMS, SASRecConfig(hidden=16, max_len=10))
    return model.eval()


@pytest.fixture(scope="module")
def model_and_tokenizer(tiny_dir):
    model, tokenizer = load_causal_lm(tiny_dir, dtype=torch.float32)
    sid_ids = add_sid_tokens(model, tokenizer, CODES)
    return model, tokenizer, sid_ids


def test_level_distributions_condition_on_the_targets_prefix():
    codes = torch.tensor([[0, 0], [0, 1], [1, 0], [1, 1]])
    probs = torch.tensor([[0.1, 0.2, 0.3, 0.4]])
    out = level_distributions(probs, torch.tensor([1]), codes, codebook=2)
    assert out.shape == (1, 2, 2)
    assert torch.allclose(out[0, 0], torch.tensor([0.3, 0.7]))              # code 0 of every item
    assert torch.allclose(out[0, 1], torch.tensor([0.1, 0.2]) / 0.3)        # items 0, 1 share item 1's code 0
    # Target item 3: level 1 among items 2 and 3 only.
    out = level_distributions(probs, torch.tensor([3]), codes, codebook=2)
    assert torch.allclose(out[0, 1], torch.tensor([0.3, 0.4]) / 0.7)
    # No mass on the target's prefix (underflow): the target's own code, not a NaN.
    out = level_distributions(torch.tensor([[1.0, 0.0, 0.0, 0.0]]), torch.tensor([3]), codes, codebook=2)
    assert torch.equal(out[0, 1], torch.tensor([0.0, 1.0]))


def test_labelled_items_match_the_losses_of_sft():
    assert list(labelled_items(4, history_loss=True)) == [1, 2, 3]
    assert list(labelled_items(4, history_loss=False)) == [3]
    assert list(labelled_items(2, history_loss=True)) == [1]


def test_soft_targets_are_the_teachers_view_of_each_prefix(teacher):
    histories, targets = [[3, 4, 5], [7]], [6, 8]
    out = sasrec_soft_targets(teacher, histories, targets, CODES, history_loss=True, temperature=2.0)
    codebook = int(CODES.max()) + 1
    assert [t.shape for t in out] == [(3, 3, codebook), (1, 3, codebook)]
    assert all(t.dtype == np.float16 for t in out)
    for t in out:
        np.testing.assert_allclose(t.astype(np.float32).sum(-1), 1.0, atol=2e-3)
    # Row 0's labelled items are 4, 5, 6: the second, item 5, has the history [3, 4].
    with torch.no_grad():
        probs = torch.softmax(teacher(encode_histories([[3, 4]], N_ITEMS, teacher.max_len)) / 2.0, dim=1)
    expected = level_distributions(probs, torch.tensor([5]), torch.as_tensor(CODES), codebook)[0].numpy()
    np.testing.assert_allclose(out[0][1].astype(np.float32), expected, atol=1e-3)
    # Codes the target's prefix rules out get nothing: item 5 is the only item with its
    # first two codes, so level 2 is certain of its code.
    assert ((CODES[:, 0] == CODES[5, 0]) & (CODES[:, 1] == CODES[5, 1])).sum() == 1
    np.testing.assert_array_equal(out[0][1, 2], np.eye(codebook)[CODES[5, 2]])
    # Without the history loss only the target is labelled.
    plain = sasrec_soft_targets(teacher, histories, targets, CODES, history_loss=False)
    assert [t.shape[0] for t in plain] == [1, 1]
    with pytest.raises(ValueError, match="temperature"):
        sasrec_soft_targets(teacher, histories, targets, CODES, history_loss=False, temperature=0)


def test_level_token_ids_name_each_levels_code_tokens(model_and_tokenizer):
    _, tokenizer, _ = model_and_tokenizer
    ids = level_token_ids(tokenizer, CODES)
    assert ids.shape == (3, int(CODES.max()) + 1)
    assert tokenizer.convert_ids_to_tokens(int(ids[1, 5])) == code_token(1, 5)
    assert int(ids[0, 7]) == 0    # level 0 uses codes 0..3 only


def _batch(model_and_tokenizer, teacher, history_loss=True):
    model, tokenizer, sid_ids = model_and_tokenizer
    builder = PromptBuilder(CODES, TITLES)
    rows = TRAIN.iloc[:6]
    examples = builder.examples(rows, ("next_item", "sid_to_title"))[:8]  # 6 next-item, 2 title
    soft = sasrec_soft_targets(teacher, list(rows["history"]), rows["target"].tolist(), CODES,
                               history_loss=history_loss)
    soft = soft + [None] * (len(examples) - len(soft))
    levels = {"history_loss_levels": 3} if history_loss else {}
    data = EncodedExamples.encode(tokenizer, examples, sid_token_ids=sid_ids, soft_targets=soft, **levels)
    return data, CompletionCollator(tokenizer.pad_token_id)([data[i] for i in range(len(data))]), soft


def test_teacher_targets_sit_on_the_labelled_sid_tokens(model_and_tokenizer, teacher):
    _, tokenizer, _ = model_and_tokenizer
    data, batch, soft = _batch(model_and_tokenizer, teacher)
    levels, targets, labels = batch["teacher_levels"], batch["teacher_targets"], batch["labels"]
    assert targets.shape[:2] == levels.shape == labels.shape
    for row in range(len(data)):
        have = levels[row] >= 0
        if soft[row] is None:
            assert not have.any()
            continue
        # Exactly the labelled SID tokens, level by level, with the row's targets in order.
        tokens = tokenizer.convert_ids_to_tokens(batch["input_ids"][row][have].tolist())
        assert [t[1] for t in tokens] == ["abc"[int(l)] for l in levels[row][have]]
        assert (labels[row][have] != -100).all()
        assert int(have.sum()) == soft[row].shape[0] * 3
        np.testing.assert_allclose(targets[row][have].numpy(), soft[row].reshape(-1, soft[row].shape[2]))
    # Examples out of step with their targets are refused, not silently misaligned.
    model, tokenizer, sid_ids = model_and_tokenizer
    example = PromptBuilder(CODES, TITLES).next_item([1, 2, 3], 4)
    wrong = sasrec_soft_targets(teacher, [[1, 2]], [3], CODES, history_loss=True)
    with pytest.raises(ValueError, match="out of step"):
        EncodedExamples.encode(tokenizer, [example], history_loss_levels=3, sid_token_ids=sid_ids,
                               soft_targets=wrong)


def test_soft_cross_entropy_with_one_hot_targets_is_the_sid_tokens_loss(model_and_tokenizer, teacher):
    """One-hot teacher targets on the true codes make the soft loss the plain loss of the
    same tokens: this pins the position arithmetic under logits_to_keep."""
    model, tokenizer, _ = model_and_tokenizer
    data, batch, _ = _batch(model_and_tokenizer, teacher)
    levels, soft = batch.pop("teacher_levels"), batch.pop("teacher_targets")
    labels, keep = batch.pop("labels"), batch.pop("logits_to_keep")
    token_ids = level_token_ids(tokenizer, CODES)
    one_hot = torch.zeros_like(soft)
    have = levels >= 0
    # The code of each SID token: its position in its level's row of token ids.
    codes = (token_ids[levels[have]] == batch["input_ids"][have][:, None]).float().argmax(1)
    one_hot[have] = torch.nn.functional.one_hot(codes, soft.shape[2]).float()
    sid_labels = torch.where(have, labels, torch.full_like(labels, -100))
    with torch.no_grad():
        outputs = model(**batch, logits_to_keep=keep)
        assert soft_cross_entropy(outputs.logits, one_hot, levels, token_ids).item() == pytest.approx(
            completion_loss(outputs, sid_labels).item(), rel=1e-5)
        # A different teacher moves the loss (it is not the labels' loss in disguise).
        assert soft_cross_entropy(outputs.logits, soft, levels, token_ids).item() != pytest.approx(
            completion_loss(outputs, sid_labels).item(), rel=1e-3)


def test_sft_distils_and_selects_on_the_plain_loss(tiny_dir, tmp_path, teacher):
    config = dict(max_steps=12, lr=3e-3, batch_size=16, eval_steps=6, history_loss=True, tasks=["next_item"])
    with pytest.raises(InputError, match="distill_weight"):
        train_sft(tiny_dir, TRAIN, VALID, CODES, TITLES, tmp_path / "x", SFTConfig(**config, distill_weight=0.5),
                  device="cpu", log=lambda *_: None)
    with pytest.raises(InputError, match="distill_weight"):
        SFTConfig(distill_weight=1.5)
    with pytest.raises(InputError, match="distill_temperature"):
        SFTConfig(distill_temperature=0)
    plain = train_sft(tiny_dir, TRAIN, VALID, CODES, TITLES, tmp_path / "plain", SFTConfig(**config),
                      device="cpu", log=lambda *_: None)
    lines = []
    distilled = train_sft(tiny_dir, TRAIN, VALID, CODES, TITLES, tmp_path / "distilled",
                          SFTConfig(**config, distill_weight=1.0), device="cpu", log=lines.append,
                          teacher=teacher)
    assert plain["distilled_from"] is None
    assert distilled["distilled_from"] == {"teacher": "sasrec", "n_items": N_ITEMS, "weight": 1.0,
                                           "temperature": 1.0}
    assert any(l.startswith("distillation: teacher targets for") for l in lines)
    # A random teacher's soft targets are near uniform: with weight 1 the model learns
    # them instead of the walk, so its plain validation loss ends higher than plain SFT's.
    assert distilled["best_eval_loss"] > plain["best_eval_loss"]
    # A teacher of another catalogue is refused before training.
    other = SASRec(N_ITEMS + 1, SASRecConfig(hidden=16, max_len=10))
    with pytest.raises(InputError, match="not the same catalogue"):
        train_sft(tiny_dir, TRAIN, VALID, CODES, TITLES, tmp_path / "y", SFTConfig(**config, distill_weight=0.5),
                  device="cpu", log=lambda *_: None, teacher=other)


# ---------------------------------------------------------------- the DAG

def test_the_dag_gives_sft_the_seeds_sasrec_only_when_distilling(built, tmp_path):
    def sft_job(extra: str):
        overlay = tmp_path / "distill.yaml"
        overlay.write_text(extra)
        out = dry_run(built, "-p", "--forceall", extra=[overlay])
        assert out.returncode == 0, out.stderr
        return out.stdout.split("rule sft:")[1].split("rule ")[0], out.stdout

    plain, _ = sft_job("sft: {distill_weight: 0}\n")
    assert "sasrec.ckpt" not in plain and "--teacher" not in plain
    asked, text = sft_job("sft: {distill_weight: 0.5, distill_temperature: 2}\n")
    assert "--teacher results/synth/seed-0/sasrec.ckpt" in asked
    assert text.index("rule sasrec_select:") < text.index("rule sft:")
    bad = tmp_path / "bad.yaml"
    bad.write_text("sft: {distill_weight: 2}\n")
    out = dry_run(built, extra=[bad])
    assert out.returncode != 0 and "distill_weight" in out.stderr + out.stdout


def test_changing_the_distillation_weight_reruns_sft_and_what_follows_only(built, tmp_path):
    built_weight = yaml.safe_load((ROOT / "config/config.yaml").read_text())["sft"].get("distill_weight", 0)
    overlay = tmp_path / "weight.yaml"
    overlay.write_text(f"sft: {{distill_weight: {0.5 if built_weight != 0.5 else 0.25}}}\n")
    out = dry_run(built, extra=[overlay])
    assert out.returncode == 0, out.stderr
    for rule in ("sft", "rl", "metrics"):
        assert f"rule {rule}:" in out.stdout, rule
    for rule in ("dataset", "embed", "sasrec", "sasrec_select", "quantize", "sid", "base_tiny"):
        assert f"rule {rule}:" not in out.stdout, rule
    # The weight that was built: nothing to do.
    overlay.write_text(f"sft: {{distill_weight: {built_weight}}}\n")
    out = dry_run(built, extra=[overlay])
    assert out.returncode == 0 and "rule sft:" not in out.stdout, out.stdout


def test_distillation_pairs_targets_with_sid_tokens_when_titles_sit_between_them(tiny_dir, tmp_path, teacher):
    """Titles in the history put text between the labelled SID tokens (the history loss
    labels the titles too): the teacher's targets still go to exactly the SID tokens."""
    config = SFTConfig(max_steps=2, lr=3e-3, batch_size=16, eval_steps=2, history_loss=True, tasks=["next_item"],
                       distill_weight=0.5, history_title_words=2)
    report = train_sft(tiny_dir, TRAIN, VALID, CODES, TITLES, tmp_path / "titled", config, device="cpu",
                       log=lambda *_: None, teacher=teacher)
    assert report["distilled_from"]["weight"] == 0.5 and report["steps"] == 2
