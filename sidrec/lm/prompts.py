"""The one prompt builder: every text the LM is trained on, validated on, evaluated on
(and later rewarded on) comes from here, so training and inference cannot drift apart.

Templates are plain text, not a chat template: the from-scratch tiny model has no chat
format, and a chat template would also drag an Instruct model's conventions (system
prompt, sampling defaults) into what should be a pure next-token task. Every prompt ends
with ``":\\n"`` so that a completion is a fresh line: a title then tokenizes the way it
would at the start of any line, and a SID completion starts with its first code token.

Tasks (MiniOneRec's current three, the alignment one in both directions):

  next_item         SID history          -> next item's SID
  sid_to_title      an item's SID        -> its title
  title_to_sid      an item's title      -> its SID
  history_to_title  SID history          -> next item's title

A history item is its SID, or, with `PromptFormat.history_title_words` N > 0, its SID
followed by the first N words of its title (text the LM can read beside the codes). The
format is an SFT setting saved in the model folder (`prompt.json`): RL, evaluation and
serving read it from the model they load, so they cannot prompt it differently.

Prompt and completion are tokenized separately and concatenated (`encode_example`), and
evaluation tokenizes the prompt alone with the same call (`encode_prompt`), so the prompt
ids the model sees at evaluation are exactly those it was trained on. SID tokens are
added tokens of the tokenizer, so they never merge with their neighbours.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from ..errors import InputError, config_from_section
from ..sid import code_token

TASKS = ("next_item", "sid_to_title", "title_to_sid", "history_to_title")
# Between two items of a history. A single space costs one token; the item boundaries
# are unambiguous anyway (every SID has the same length and starts with an `<a_..>`).
ITEM_SEPARATOR = " "

TEMPLATES = {
    "next_item": "History: {history}\nNext item:\n",
    "history_to_title": "History: {history}\nNext title:\n",
    "sid_to_title": "Item: {sid}\nTitle:\n",
    "title_to_sid": "Title: {title}\nItem:\n",
}


@dataclass(frozen=True)
class Example:
    """One training pair; `completion` excludes the end-of-sequence token."""
    prompt: str
    completion: str
    task: str = "next_item"


PROMPT_FILE = "prompt.json"


@dataclass(frozen=True)
class PromptFormat:
    """How a history is written: fixed when SFT trains the model, saved beside its
    weights (`write`), read back by everything that prompts that model (`read`)."""
    history_title_words: int = 0    # 0: SIDs only; N: each item's SID, then N title words

    def __post_init__(self):
        words = self.history_title_words
        if isinstance(words, bool) or not isinstance(words, int) or words < 0:
            raise InputError("sft", f"must be an integer >= 0, got {words!r}", key="history_title_words")

    def write(self, folder) -> None:
        (Path(folder) / PROMPT_FILE).write_text(json.dumps(asdict(self), indent=1) + "\n")

    @classmethod
    def read(cls, folder) -> "PromptFormat":
        """The format saved in a model folder; the SID-only default for a folder without
        one (models trained before the format was saved)."""
        path = Path(folder) / PROMPT_FILE
        if not path.exists():
            return cls()
        try:
            values = json.loads(path.read_text())
        except (OSError, ValueError) as err:
            raise InputError(path, f"not readable JSON: {err}") from None
        if not isinstance(values, dict):
            raise InputError(path, f"expected a JSON object, got {type(values).__name__}")
        try:
            return config_from_section(cls, values, str(path))  # names an unknown key
        except InputError as err:
            raise InputError(path, err.reason, key=err.key) from None


def clean_title(title) -> str:
    """One line, single spaces: a newline inside a title would fake a template line."""
    return " ".join(str(title).split())


class PromptBuilder:
    """Renders prompts from item SIDs (`sid_codes[i]` = codes of item i, one per level)
    and titles (`titles[i]` = title of item i)."""

    def __init__(self, sid_codes: np.ndarray, titles: Sequence[str], max_history: int | None = None,
                 prompt_format: PromptFormat = PromptFormat()):
        """`max_history`: the most recent items a prompt keeps; None keeps the whole
        history, already cut to the dataset's `max_history` by the data stage (the one
        setting, shared with SASRec), for training and evaluation alike. `prompt_format`:
        how a history item is written (the model folder's, see `PromptFormat`)."""
        codes = np.asarray(sid_codes)
        if codes.ndim != 2 or not np.issubdtype(codes.dtype, np.integer):
            raise ValueError(f"sid_codes must be an integer array [n_items, levels], got "
                             f"{codes.dtype} of shape {codes.shape}")
        if len(titles) != len(codes):
            raise ValueError(f"{len(titles)} titles for {len(codes)} items")
        if max_history is not None and max_history < 1:
            raise ValueError(f"max_history must be >= 1 or None, got {max_history}")
        self.codes = codes
        self.max_history = None if max_history is None else int(max_history)
        self.sids = ["".join(code_token(level, c) for level, c in enumerate(row)) for row in codes]
        self.titles = [clean_title(t) for t in titles]
        self.prompt_format = prompt_format
        words = prompt_format.history_title_words
        # What a history shows of each item: its SID, then (if asked) its title's first words.
        self._history_items = self.sids if not words else [
            " ".join([sid, *title.split()[:words]]) for sid, title in zip(self.sids, self.titles)]

    @property
    def n_items(self) -> int:
        return len(self.sids)

    def sid(self, item: int) -> str:
        return self.sids[int(item)]

    def history_text(self, history: Iterable[int]) -> str:
        """The most recent `max_history` items (all when None), oldest first."""
        recent = [int(i) for i in history]
        if self.max_history is not None:
            recent = recent[-self.max_history:]
        if not recent:
            raise ValueError("empty history")
        return ITEM_SEPARATOR.join(self._history_items[i] for i in recent)

    # -- the four tasks ---------------------------------------------------------------

    def eval_prompt(self, history: Iterable[int]) -> str:
        """The next-item prompt, exactly as in training (used by evaluation and RL)."""
        return TEMPLATES["next_item"].format(history=self.history_text(history))

    def next_item(self, history: Iterable[int], target: int) -> Example:
        return Example(self.eval_prompt(history), self.sid(target), "next_item")

    def history_to_title(self, history: Iterable[int], target: int) -> Example:
        prompt = TEMPLATES["history_to_title"].format(history=self.history_text(history))
        return Example(prompt, self.titles[int(target)], "history_to_title")

    def sid_to_title(self, item: int) -> Example:
        return Example(TEMPLATES["sid_to_title"].format(sid=self.sid(item)), self.titles[int(item)],
                       "sid_to_title")

    def title_to_sid(self, item: int) -> Example:
        return Example(TEMPLATES["title_to_sid"].format(title=self.titles[int(item)]), self.sid(item),
                       "title_to_sid")

    def examples(self, samples, tasks: Sequence[str] = TASKS) -> list[Example]:
        """Every example of `tasks`, deterministic: grouped by task in the order given;
        sample tasks follow the rows of `samples` (columns `history`, `target`), item
        tasks follow item ids (every item, once per direction)."""
        unknown = [t for t in tasks if t not in TASKS]
        if unknown:
            raise ValueError(f"unknown task(s) {unknown}; expected some of {list(TASKS)}")
        out: list[Example] = []
        for task in dict.fromkeys(tasks):  # de-duplicated, order kept
            make = getattr(self, task)
            if task in ("next_item", "history_to_title"):
                out.extend(make(h, t) for h, t in zip(samples["history"], samples["target"]))
            else:
                out.extend(make(i) for i in range(self.n_items))
        return out


# -- tokenization: the one way text becomes ids ---------------------------------------

def encode_prompt(tokenizer, prompt: str) -> list[int]:
    """Prompt ids, no special tokens added (no BOS: models disagree on it, and the same
    call serves training and evaluation, so nothing is lost)."""
    return list(tokenizer(prompt, add_special_tokens=False)["input_ids"])


def encode_example(tokenizer, example: Example) -> tuple[list[int], list[int]]:
    """(input_ids, completion_mask): prompt ids + completion ids + eos; the mask is 1 on
    the completion and the eos (the tokens the loss is taken on), 0 on the prompt."""
    if tokenizer.eos_token_id is None:
        raise ValueError("the tokenizer has no eos token")
    prompt_ids = encode_prompt(tokenizer, example.prompt)
    completion_ids = list(tokenizer(example.completion, add_special_tokens=False)["input_ids"])
    completion_ids.append(tokenizer.eos_token_id)
    return prompt_ids + completion_ids, [0] * len(prompt_ids) + [1] * len(completion_ids)


def encode_examples(tokenizer, examples: Sequence[Example]) -> list[tuple[list[int], list[int]]]:
    """`encode_example` for many examples at once (one batched tokenizer call per side:
    the same ids, much faster on hundreds of thousands of examples)."""
    if tokenizer.eos_token_id is None:
        raise ValueError("the tokenizer has no eos token")
    if not examples:
        return []
    eos = tokenizer.eos_token_id
    prompts = tokenizer([e.prompt for e in examples], add_special_tokens=False)["input_ids"]
    completions = tokenizer([e.completion for e in examples], add_special_tokens=False)["input_ids"]
    return [(list(p) + list(c) + [eos], [0] * len(p) + [1] * (len(c) + 1))
            for p, c in zip(prompts, completions)]


def tokenizer_corpus(titles: Sequence[str], template_weight: int = 100) -> list[str]:
    """Texts to train a tokenizer on: every title once, plus each template's words
    `template_weight` times, so the template words become whole tokens even when the
    titles rarely use them (BPE merges by frequency)."""
    words = []
    for template in TEMPLATES.values():
        words.append(template.format(history="", sid="", title=""))
    return [clean_title(t) for t in titles] + words * int(template_weight)
