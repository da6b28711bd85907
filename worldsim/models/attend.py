"""What a chunk attends to: the masks of a whole clip in training (`reach`, `block_causal_mask`, `history_mask`) and
the KV cache of play, which must agree exactly (tests/test_dit.py checks the cache against the full forward). A
chunk sees its window of `context` chunks, itself included, and where the model has one, its strided memory beyond
it (worldsim.models.dit.DiTConfig.memory)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from worldsim.models.dit import DiTConfig


def reach(q: torch.Tensor, k: torch.Tensor, context: int, memory: int = 0, stride: int = 1) -> torch.Tensor:
    """Whether chunk q may see the earlier or same chunk k (absolute indices, broadcast): k is in q's window,
    q - context < k, or in its memory, the latest `memory` chunks before the window whose index is a multiple of
    `stride` (those of (q - context - memory * stride, q - context]), as the KV cache keeps them."""
    seen = (k <= q) & (k > q - context)
    if memory:
        seen |= (k <= q - context) & (k > q - context - memory * stride) & (k % stride == 0)
    return seen


def block_causal_mask(chunk_ids: torch.Tensor, context: int, memory: int = 0, stride: int = 1) -> torch.Tensor:
    """(L, L) bool, True = may attend, from each token's absolute chunk index.

    Chunk i sees chunks i - context < j <= i, and its memory (reach). Stacked, the layers reach further: the output of
    chunk i depends on chunks down to i - depth * (context - 1), and further through the memory.
    """
    return reach(chunk_ids[:, None], chunk_ids[None, :], context, memory, stride)


def history_mask(chunk_ids: torch.Tensor, context: int, memory: int = 0, stride: int = 1,
                 recent: torch.Tensor | None = None) -> torch.Tensor:
    """(2L, 2L) bool for a clip run as two streams, its history then its noisy chunks, from each stream's absolute
    chunk indices.

    The history stream is block-causal, as the passes that wrote the cache were; noisy chunk i sees the history
    chunks before it that chunk i may see (its window and memory, reach) and itself, as a solver pass sees the cache
    at play time (so training and play agree exactly). `recent` (B, L) int, per noisy token: r >= 1 lets it see
    only the latest r history chunks before it and no memory, as a pass under Condition(recent=r) sees the cache
    (history guidance's short pass); 0 the whole history. With it the mask is (B, 1, 2L, 2L).
    """
    q, k = chunk_ids[:, None], chunk_ids[None, :]
    seen = reach(q, k, context, memory, stride)
    top = torch.cat([seen, torch.zeros_like(seen)], 1)  # history queries never see noisy chunks
    bottom = torch.cat([seen & (k < q), k == q], 1)
    if recent is None:
        return torch.cat([top, bottom], 0)
    b = recent.shape[0]
    r = recent[:, :, None]  # (B, L, 1)
    short = (r == 0) | ((k >= q - r) & (k > q - context))  # (B, L, L): the window's latest r chunks alone
    bottom = bottom[None].expand(b, -1, -1) & torch.cat([short, torch.ones_like(short)], 2)  # (B, L, 2L)
    return torch.cat([top[None].expand(b, -1, -1), bottom], 1)[:, None]  # (B, 1, 2L, 2L)


class KVCache:
    """Per-layer K/V of the last context - 1 finished chunks, in preallocated ring buffers; batch rows independent.

    Layout per layer: (B, heads, context * N, head_dim): a ring of `context` chunk slots. The slot at `head` holds
    the chunk in flight (written on every call, so no copies); the cached chunks of row b sit in the lengths[b] slots
    before it. A write advances `head`, evicting the oldest chunk once context - 1 are held. Rows share the ring and
    step together; `reset_rows` empties single rows (a vector env resetting one sub-env) by setting their length to 0.
    Buffers are allocated on the first call (N is unknown before). `prev` holds each row's last written chunk (zeros
    for an empty row): the previous-frame input of a `prev_frame` model.
    A model with a memory has `memory` more slots after the ring, a ring of their own: a chunk leaving the window
    whose absolute index is a multiple of memory_stride is copied there (each row counts its own, as for the window).
    A call may denoise its chunk under several conditionings at once (guidance: `recent` in _prepare), each a copy
    of the chunk in flight: the first is written at `head`, the others in slots after the memory (added on first use),
    each seen by its own copy alone; none of them is kept.
    """

    def __init__(self, config: DiTConfig, batch_size: int):
        self.config, self.batch_size = config, batch_size
        self.k: list[torch.Tensor] | None = None
        self.v: list[torch.Tensor] | None = None
        self.n_tokens = 0  # N per chunk, fixed at allocation
        self.head = 0  # ring slot of the chunk in flight
        self.lengths = torch.zeros(batch_size, dtype=torch.long)  # cached chunks per row, <= context - 1
        self.prev: torch.Tensor | None = None  # (B, pt, C, h, w) the last chunk written, zeros for an empty row
        self.memory_head = 0  # memory slot the next kept chunk goes to
        self.memory_lengths = torch.zeros(batch_size, dtype=torch.long)  # kept chunks per row, <= memory
        self.extra = 0  # slots for the chunk in flight under more conditionings than one (the largest call so far)

    def reset(self) -> None:
        """Forget every row's history; keeps the buffers."""
        self.lengths.zero_()
        self.memory_lengths.zero_()
        self.head = self.memory_head = 0
        self.prev = None

    def clear(self) -> None:
        """Forget everything and free the buffers (the next call may use another frame size)."""
        self.reset()
        self.k = self.v = None
        self.n_tokens = self.extra = 0

    def reset_rows(self, rows) -> None:
        """Forget the history of some rows: `rows` a (B,) bool mask (numpy or torch) or indices."""
        rows = torch.as_tensor(rows, device=self.lengths.device)
        self.lengths[rows] = 0
        self.memory_lengths[rows.to(self.memory_lengths.device)] = 0
        if self.prev is not None:
            self.prev[rows.to(self.prev.device)] = 0

    def _prepare(self, b: int, n: int, device: torch.device, recent: tuple[int | None, ...] = (None,)) -> torch.Tensor:
        """Check sizes; the attention mask (B, 1, G * N, S) of this call's queries over the buffers, for a chunk of N
        tokens in flight under G = len(recent) conditionings: copy g sees its row's cached chunks, only the latest
        recent[g] of them and no memory where that is not None, and itself."""
        cfg = self.config
        if b != self.batch_size:
            raise ValueError(f"a batch of {b} for a cache of batch size {self.batch_size}: make one with "
                             f"model.new_cache({b})")
        if self.k is not None and n != self.n_tokens:
            raise ValueError(f"chunks of {n} tokens for a cache holding chunks of {self.n_tokens}: call cache.clear() "
                             "to change the frame size")
        if any(r is not None and r < 1 for r in recent):
            raise ValueError(f"recent={recent}: expected None (the whole history) or at least 1 cached chunk each")
        self.n_tokens, self.lengths, self.extra = n, self.lengths.to(device), max(self.extra, len(recent) - 1)
        age = (self.head - torch.arange(cfg.context, device=device)) % cfg.context  # (R,) 0 = in flight
        kept = torch.zeros(b, 0, dtype=torch.bool, device=device)  # (B, M): each row's memory slots that hold a chunk
        if cfg.memory:
            self.memory_lengths = self.memory_lengths.to(device)
            newest = (self.memory_head - 1 - torch.arange(cfg.memory, device=device)) % cfg.memory  # (M,) 0 = newest
            kept = newest[None, :] < self.memory_lengths[:, None]
        copies, extra = [], torch.arange(self.extra, device=device)[None, :].expand(b, -1)  # (B, X)
        for g, r in enumerate(recent):
            lengths = self.lengths if r is None else self.lengths.clamp(max=r)
            ring = (age[None, :] <= lengths[:, None]) & ((age > 0) | (g == 0))  # (B, R): copy 0 is in flight at head
            own = extra == g - 1  # (B, X): copies after the first are in flight in the extra slots, each its own
            copies.append(torch.cat([ring, kept & (r is None), own], 1))  # (B, R + M + X)
        seen = torch.stack(copies, 1).repeat_interleave(n, dim=2)  # (B, G, (R + M + X) * N)
        return seen[:, :, None].expand(-1, -1, n, -1).reshape(b, 1, len(recent) * n, -1)  # each copy's N queries

    def _insert(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Write this call's k, v (B, nh, G * N, hs) into the buffers; returns them whole (B, nh, S, hs)."""
        cfg, n = self.config, self.n_tokens
        slots = cfg.context + cfg.memory + self.extra
        if self.k is None:  # allocated here, where the dtype (autocast or not) is known
            shape = (self.batch_size, cfg.heads, slots * n, cfg.width // cfg.heads)
            # zeros, not empty: masked slots still meet V in the matmul, and 0 * NaN garbage would be NaN
            self.k = [k.new_zeros(shape) for _ in range(cfg.depth)]
            self.v = [v.new_zeros(shape) for _ in range(cfg.depth)]
        if self.k[layer].shape[2] < slots * n:  # a call under more conditionings than before: room for its copies
            grow = slots * n - self.k[layer].shape[2]
            self.k[layer], self.v[layer] = (torch.cat([b, b.new_zeros(*b.shape[:2], grow, b.shape[3])], 2)
                                            for b in (self.k[layer], self.v[layer]))
        kb, vb = self.k[layer], self.v[layer]
        at, rest = self.head * n, (cfg.context + cfg.memory) * n
        kb[:, :, at:at + n], vb[:, :, at:at + n] = k[:, :, :n], v[:, :, :n]
        if k.shape[2] > n:
            kb[:, :, rest:rest + k.shape[2] - n], vb[:, :, rest:rest + k.shape[2] - n] = k[:, :, n:], v[:, :, n:]
        return kb, vb

    def _advance(self, t_index: int) -> None:
        """Keep the chunk in flight (absolute index t_index): it becomes history, and the oldest beyond context - 1
        leaves the window, into the memory when its index is a multiple of memory_stride (rows whose window held it)."""
        cfg, n = self.config, self.n_tokens
        self.head = (self.head + 1) % cfg.context
        leaving = t_index + 1 - cfg.context  # the chunk in the slot the next one overwrites
        if cfg.memory and leaving >= 0 and leaving % cfg.memory_stride == 0 and self.k is not None:
            full = self.lengths == cfg.context - 1  # rows whose window holds it (the others: stale slots, not counted)
            src, dst = self.head * n, (cfg.context + self.memory_head) * n
            for kb, vb in zip(self.k, self.v):
                kb[:, :, dst:dst + n], vb[:, :, dst:dst + n] = kb[:, :, src:src + n], vb[:, :, src:src + n]
            self.memory_head = (self.memory_head + 1) % cfg.memory
            self.memory_lengths = torch.where(full, (self.memory_lengths + 1).clamp(max=cfg.memory),
                                              self.memory_lengths)
        self.lengths = (self.lengths + 1).clamp_(max=cfg.context - 1)
