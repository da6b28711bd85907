"""Captions to conditioning: a word tokenizer over the training captions' own vocabulary and a small transformer text
encoder trained with the world model (nothing is downloaded).

A caption becomes one vector per chunk, added to the chunk's noise-level and action embedding, which adaLN-Zero turns
into every block's modulation (as DiT conditions on a class and SDXL on a pooled text embedding). A vector rather than
caption tokens in the sequence: the KV cache, the window and a step's cost stay as they are, and the captions this
project trains on are short lists of facts (time of day, biome, what is in view; Craft2D's are 3-12 words from a
vocabulary of ~40). The words attend to each other first, so "pig left of player, sheep right of player" keeps which
animal is where.

The empty caption (or one whose words the model never saw) adds exactly zero: it is the unconditioned model, what
caption dropout trains and classifier-free guidance contrasts with. The output projection starts at zero, so a model
that gains a text encoder (a fine-tune of an unconditioned checkpoint) starts as the model it was.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

WORD = re.compile(r"[a-z0-9]+")  # what a caption word is: lower-case letters and digits; the rest separates words


def words(caption: str) -> list[str]:
    """A caption's words: lower-cased, split on anything but letters and digits."""
    if not isinstance(caption, str):
        raise TypeError(f"caption {caption!r}: expected a string")
    return WORD.findall(caption.lower())


def vocabulary(captions: Iterable[str]) -> tuple[str, ...]:
    """The sorted distinct words of some captions: a text encoder's vocabulary."""
    return tuple(sorted({w for c in captions for w in words(c)}))


def tokenize(captions: Sequence[str], vocab: Sequence[str], max_words: int) -> torch.Tensor:
    """(N, max_words) int64 word ids of N captions: 1 + the word's index in `vocab`, 0 for padding. Words outside the
    vocabulary are dropped (the model has nothing for them: worldsim.prompt reports them to the user), and a caption
    is cut at max_words."""
    index = {w: i + 1 for i, w in enumerate(vocab)}
    ids = torch.zeros((len(captions), max_words), dtype=torch.long)
    for n, caption in enumerate(captions):
        known = [index[w] for w in words(caption) if w in index][:max_words]
        ids[n, :len(known)] = torch.tensor(known, dtype=torch.long)
    return ids


def remap_embedding(weight: torch.Tensor, old: Sequence[str], new: Sequence[str], fresh: torch.Tensor) -> torch.Tensor:
    """An embedding table (1 + len(old), D) of vocabulary `old` laid out for vocabulary `new`: a word keeps its row,
    words new to it take theirs from `fresh` (1 + len(new), D), the table of a model just made."""
    out = fresh.clone()
    out[0] = weight[0]  # padding
    where = {w: i + 1 for i, w in enumerate(old)}
    for j, w in enumerate(new):
        if w in where:
            out[j + 1] = weight[where[w]]
    return out


class _Layer(nn.Module):
    """A pre-norm transformer layer over the words of captions, padding masked out."""

    def __init__(self, width: int, heads: int):
        super().__init__()
        self.heads = heads
        self.norm1, self.norm2 = nn.LayerNorm(width), nn.LayerNorm(width)
        self.qkv, self.proj = nn.Linear(width, 3 * width), nn.Linear(width, width)
        self.mlp = nn.Sequential(nn.Linear(width, 2 * width), nn.GELU(approximate="tanh"), nn.Linear(2 * width, width))

    def forward(self, x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        # x (N, L, D); keep (N, 1, 1, L) True where a key is a word
        n, L, d = x.shape
        q, k, v = self.qkv(self.norm1(x)).view(n, L, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=keep)  # (N, nh, L, hs)
        x = x + self.proj(y.transpose(1, 2).reshape(n, L, d))
        return x + self.mlp(self.norm2(x))


class TextEncoder(nn.Module):
    """Word ids (..., L) -> one conditioning vector (..., D) per caption; all-padding rows give exactly 0."""

    def __init__(self, vocab_size: int, width: int, heads: int, depth: int, max_words: int):
        super().__init__()
        self.embed = nn.Embedding(vocab_size + 1, width, padding_idx=0)  # row 0: padding
        self.pos = nn.Parameter(torch.randn(max_words, width) * 0.02)  # learned positions: word order counts
        self.layers = nn.ModuleList(_Layer(width, heads) for _ in range(depth))
        self.norm = nn.LayerNorm(width)
        self.proj = nn.Linear(width, width)  # zero-initialised by DiT.initialize_weights: starts unconditioned

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        *lead, L = ids.shape
        # captions repeat (a clip's frames mostly share theirs): each distinct one is encoded once
        unique, inverse = torch.unique(ids.reshape(-1, L), dim=0, return_inverse=True)  # (U, L), (prod(lead),)
        word = unique != 0  # (U, L)
        has_words = word.any(-1, keepdim=True)  # (U, 1)
        # an empty caption attends to its first slot all the same (a row with no key at all would be NaN); its
        # output is zeroed below
        keep = (word | ~has_words)[:, None, None, :]  # (U, 1, 1, L)
        x = self.embed(unique) + self.pos[:L]  # (U, L, D)
        for layer in self.layers:
            x = layer(x, keep)
        pooled = (x * word[..., None]).sum(1) / word.sum(1, keepdim=True).clamp_min(1)  # (U, D) mean over words
        out = self.proj(self.norm(pooled)) * has_words  # (U, D): exactly 0 for an empty caption
        return out[inverse].view(*lead, -1)  # (..., D)
