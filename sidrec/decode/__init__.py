"""Decoding semantic IDs: the catalogue trie as device tensors (trie.py) and exact
constrained top-K search with a causal LM (beam.py), trie-masked sampling (sample.py)."""
from .beam import DecodeResult, constrained_topk, score_all_items
from .sample import SampleResult, sample_items
from .trie import SIDTrie

__all__ = ["DecodeResult", "SIDTrie", "SampleResult", "constrained_topk", "sample_items", "score_all_items"]
