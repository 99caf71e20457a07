"""Log-probabilities of SID completions renormalised over what the trie allows.

Why: GRPO's loss and its k3 KL term read each completion token's log-probability. Over
the full vocabulary, a rollout with negative advantage can be pushed down by moving
probability onto tokens no item can use (text tokens, other levels' SID tokens): the
constrained decoder's choices hardly change, but the completions' full-vocabulary
log-probabilities fall without bound and the k3 estimate exp(ref - logp) runs away
(Industrial, bench/RESULTS.md: KL 2e4 after 120 steps). Renormalised over the codes the
trie allows after each prefix, a token can only lose probability to a sibling item, so
the policy the loss sees is the policy the decoder samples from; the eos after a complete
SID (the only continuation) has log-probability 0.

`TrieLogProbs(trie, vocab_size)(logits, completion_ids)`: logits [B, L+1, V] that predict
the completion's L SID tokens and eos; returns float32 log-probabilities [B, L+1] and,
when asked, the entropy of each position's renormalised distribution.
"""
from __future__ import annotations

import torch

from ..decode.trie import SIDTrie


class TrieLogProbs:
    def __init__(self, trie: SIDTrie, vocab_size: int):
        self.trie = trie
        # code_of[d][token] = code of `token` at level d, -1 for any other token
        self.code_of = []
        for d in range(trie.levels):
            used = (trie.child[d] >= 0).any(0)               # codes some item uses at level d
            lookup = torch.full((vocab_size,), -1, dtype=torch.long, device=trie.device)
            codes = torch.nonzero(used).squeeze(1)
            lookup[trie.level_tokens[d][codes]] = codes
            self.code_of.append(lookup)

    def to(self, device) -> "TrieLogProbs":
        device = torch.device(device)
        if self.trie.device != device:
            self.trie = self.trie.to(device)
            self.code_of = [c.to(device) for c in self.code_of]
        return self

    def __call__(self, logits: torch.Tensor, completion_ids: torch.Tensor, *, temperature: float = 1.0,
                 compute_entropy: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        L = self.trie.levels
        if logits.dim() != 3 or completion_ids.shape != logits.shape[:2] or logits.shape[1] != L + 1:
            raise ValueError(f"expected logits [B, {L + 1}, V] and completion ids [B, {L + 1}] (L SID "
                             f"tokens and eos), got {tuple(logits.shape)} and {tuple(completion_ids.shape)}")
        self.to(logits.device)
        B = logits.shape[0]
        node = torch.zeros(B, dtype=torch.long, device=logits.device)
        logps, entropies = [], []
        for d in range(L):
            code = self.code_of[d][completion_ids[:, d]]
            if (code < 0).any():
                row = int(torch.nonzero(code < 0)[0])
                raise ValueError(f"completion {row}: token {int(completion_ids[row, d])} at position {d} "
                                 f"is no level-{d} SID token")
            children = self.trie.child[d][node]                          # [B, K_d]
            if (children.gather(1, code[:, None]) < 0).any():
                row = int(torch.nonzero(children.gather(1, code[:, None])[:, 0] < 0)[0])
                raise ValueError(f"completion {row}: SID prefix {completion_ids[row, :d + 1].tolist()} "
                                 f"is no catalogue item's")
            level = logits[:, d].index_select(-1, self.trie.level_tokens[d]).float() / temperature
            level = level.masked_fill(children < 0, float("-inf"))
            log_p = torch.log_softmax(level, -1)
            logps.append(log_p.gather(1, code[:, None])[:, 0])
            if compute_entropy:
                p = log_p.exp()
                entropies.append(-(p * log_p.masked_fill(children < 0, 0.0)).sum(-1))
            node = children.gather(1, code[:, None])[:, 0].long()
        zero = torch.zeros(B, dtype=torch.float32, device=logits.device)
        logps.append(zero)                                                # eos: the only way on
        entropy = torch.stack(entropies + [zero], 1) if compute_entropy else None
        return torch.stack(logps, 1), entropy


def trie_grpo_trainer(trie_logprobs: TrieLogProbs):
    """A GRPOTrainer subclass whose per-token log-probabilities (policy, old policy and
    reference alike, so the ratio and the KL compare the same distributions) are
    `trie_logprobs`' renormalised ones. Only the completion's L+1 positions' logits are
    computed (`logits_to_keep`), as TRL's fused head does."""
    from trl import GRPOTrainer

    class TrieGRPOTrainer(GRPOTrainer):
        def _get_per_token_logps_and_entropies(self, model, input_ids, attention_mask, logits_to_keep,
                                               batch_size=None, compute_entropy=False, compute_aux_loss=False,
                                               **multimodal):
            if compute_aux_loss or any(v is not None for k, v in multimodal.items() if k != "num_images"):
                raise ValueError("trie log-probabilities support text-only dense models")
            batch_size = batch_size or input_ids.size(0)
            all_logps, all_entropies = [], []
            for start in range(0, input_ids.size(0), batch_size):
                ids = input_ids[start:start + batch_size]
                with self.accelerator.autocast():
                    logits = model(input_ids=ids, attention_mask=attention_mask[start:start + batch_size],
                                   logits_to_keep=logits_to_keep + 1).logits
                logps, entropy = trie_logprobs(logits[:, :-1], ids[:, -logits_to_keep:],
                                               temperature=self.temperature, compute_entropy=compute_entropy)
                all_logps.append(logps)
                if compute_entropy:
                    all_entropies.append(entropy)
            return (torch.cat(all_logps), torch.cat(all_entropies) if compute_entropy else None, None)

    return TrieGRPOTrainer
