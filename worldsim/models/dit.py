"""The world model's backbone: a block-causal diffusion transformer over spacetime patches of latent video.

Tokens are (pt, ph, pw) patches of the latents; the pt latent frames of a chunk are one simulator step. Attention is
full inside a chunk, causal across chunks and limited to a sliding window of `context` chunks at every layer (as in
Mistral): a chunk's layer-l keys already summarise its own window, so deeper layers reach further back than `context`,
and the KV cache is exact for it (the window alone, recomputed, is not the same function). With `memory` > 0 a chunk
also sees a strided memory beyond its window: the latest `memory` older chunks whose absolute index is a multiple of
`memory_stride`, kept by the cache as they leave the window (a memory for any env: what is kept depends on time
alone, never on the env's state). Positions are 3-axis rotary (absolute chunk index, row, column): one set of weights
runs at any frame size and episode length, attention depends only on relative time, and cached keys stay valid as
the window slides. Each chunk is conditioned on its own noise level and action by adaLN-Zero, and on its caption where
the model has a text encoder (worldsim/models/text.py).
`out` is a raw prediction: worldsim/models/diffusion.py says what it means.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace
from typing import NamedTuple, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from einops import rearrange

from worldsim.config import check
from worldsim.models.attend import KVCache, block_causal_mask, history_mask
from worldsim.models.reward import classified_reward, nonzero_probability
from worldsim.models.text import TextEncoder, tokenize


@dataclass(frozen=True)
class DiTConfig:
    """Shape of the transformer; stored in every checkpoint."""

    latent_channels: int = 8  # C of the latents: the autoencoder's (stored with it)
    patch: tuple[int, int, int] = (1, 2, 2)  # (pt, ph, pw): pt=1 keeps chunk = env step; 2x2 -> 16 tokens at 8x8
    width: int = 256  # D: between presets S and M
    depth: int = 6  # blocks
    heads: int = 4  # head_dim 64, the usual; rotary splits it 24/20/20 over (t, h, w)
    mlp_ratio: float = 4.0  # as in GPT and DiT
    n_actions: int = 12  # Craft2D's; the table has one more row, for -1 (no action, an episode's first frame)
    context: int = 16  # chunks in the sliding window, the new one included: 15 of history
    memory: int = 0  # chunks kept beyond the window: the latest `memory` that left it whose absolute index is a
    #                  multiple of memory_stride, at their true distance (a strided memory; 0: the window alone)
    memory_stride: int = 8  # one chunk in this many is kept in the memory once it leaves the window
    rope_base: float = 10000.0  # positions stay small (window, grid): any base >= 100 resolves them
    prev_frame: bool = False  # the previous chunk's latents are an input of each new token (channel-concatenated),
    #                           and `out` is the change from them: copying the last frame is the starting point
    prev_halo: int = 0  # prev_frame models: each token also reads the previous chunk's latents in a border of this
    #                     many cells around its patch, so a one-cell move (a scroll, a fall) is a linear map of its
    #                     own input rather than half a token fetched by attention (0: its patch alone)
    reward_values: tuple[float, ...] = ()  # () regresses the reward; K values: the reward head classifies among them
    heads_read: str = "frame"  # the pass the reward and termination heads read: "frame", the one that caches the
    #                            new frame (the reward of what the model drew); "action", the first solver pass, the
    #                            new frame still pure noise (the reward the history and the action imply, whatever the
    #                            model then draws, as a Dreamer reads its reward from the prior)
    vocab: tuple[str, ...] = ()  # caption words (the training data's); () : no text encoder, no captions
    caption_words: int = 32  # words of a caption the text encoder reads (Craft2D's have 3-12)
    text_depth: int = 2  # layers of the text encoder

    def __post_init__(self):
        object.__setattr__(self, "patch", tuple(int(p) for p in self.patch))  # OmegaConf hands back a list
        object.__setattr__(self, "reward_values", tuple(float(v) for v in self.reward_values))
        object.__setattr__(self, "vocab", tuple(self.vocab))
        check(list(self.vocab) == sorted(set(self.vocab)) and all(isinstance(w, str) and w.isalnum() and w == w.lower()
                                                                  for w in self.vocab),
              "vocab", list(self.vocab)[:8], "distinct lower-case words of letters and digits, sorted")
        check(self.caption_words >= 1 and self.text_depth >= 1, "caption_words, text_depth",
              (self.caption_words, self.text_depth), "integers >= 1")
        values = self.reward_values
        check(len(values) != 1 and list(values) == sorted(set(values)) and all(map(math.isfinite, values)),
              "reward_values", list(values), "() or >= 2 distinct finite values in increasing order")
        check(self.prev_halo >= 0 and (self.prev_frame or not self.prev_halo), "prev_halo", self.prev_halo,
              "an integer >= 0, and 0 unless prev_frame is true")
        check(self.heads_read in HEADS_READ, "heads_read", self.heads_read, f"one of {HEADS_READ}")
        if len(self.patch) != 3 or min(self.patch) < 1:
            raise ValueError(f"patch={self.patch}: expected three positive sizes (pt, ph, pw)")
        for name in ("latent_channels", "width", "depth", "heads"):
            check(getattr(self, name) >= 1, name, getattr(self, name), "an integer >= 1")
        if self.width % self.heads or (self.width // self.heads) % 2 or self.width // self.heads < 6:
            raise ValueError(f"width={self.width}, heads={self.heads}: head_dim = width / heads must be an even "
                             "integer >= 6 (rotary splits it in pairs over t, h, w)")
        check(self.context >= 1, "context", self.context, "an integer >= 1")
        check(self.memory >= 0 and self.memory_stride >= 1, "memory, memory_stride", (self.memory, self.memory_stride),
              "memory >= 0 chunks, kept one in memory_stride >= 1")
        check(self.n_actions >= 1, "n_actions", self.n_actions, "an integer >= 1")
        check(self.mlp_ratio > 0, "mlp_ratio", self.mlp_ratio, "> 0")
        check(self.rope_base > 1, "rope_base", self.rope_base, "> 1")


HEADS_READ = ("frame", "action")

# Compute per token ~ width^2 * depth (attention and MLP matmuls): 1x / 4.2x / 16.6x, head_dim 64 throughout and
# width/depth ~32-37, so a larger model is both wider and deeper.
DIT_PRESETS = {
    "S": DiTConfig(width=192, depth=6, heads=3),
    "M": DiTConfig(width=320, depth=9, heads=5),
    "L": DiTConfig(width=512, depth=14, heads=8),
}


def dit_config(preset: str, **overrides) -> DiTConfig:
    """The config of a preset in DIT_PRESETS, with some fields overridden (e.g. n_actions, latent_channels)."""
    if preset not in DIT_PRESETS:
        raise ValueError(f"unknown DiT preset {preset!r}; known presets: {sorted(DIT_PRESETS)}")
    known = {f.name for f in fields(DiTConfig)}
    if unknown := sorted(set(overrides) - known):
        raise ValueError(f"unknown DiTConfig fields {unknown} for preset {preset!r}; known fields: {sorted(known)}")
    return replace(DIT_PRESETS[preset], **overrides)


class Condition(NamedTuple):
    """One conditioning of a chunk in play (DiT.forward_conditions): its actions (B,) or an int (-1: none), its
    caption as word ids (B, L) or None, and how many of the latest cached chunks it sees (None: the whole history)."""

    actions: torch.Tensor | int
    text: torch.Tensor | None = None
    recent: int | None = None


class DiTOutput(NamedTuple):
    """What the network predicts; `out` is interpreted by the diffusion module."""

    out: torch.Tensor  # (B, T, C, h, w) like x: the network's prediction
    reward: torch.Tensor  # (B, n_chunks), or (B, n_chunks, K) logits over config.reward_values: DiT.reward_of reads it
    terminated_logit: torch.Tensor  # (B, n_chunks)


# --- spacetime patches ------------------------------------------------------------------------------------------

def patchify(x: torch.Tensor, patch: tuple[int, int, int]) -> torch.Tensor:
    """(B, T, C, h, w) latents -> (B, T/pt, (h/ph)*(w/pw), pt*ph*pw*C) tokens, one row per chunk, row-major."""
    pt, ph, pw = patch
    if x.ndim != 5 or x.shape[1] % pt or x.shape[3] % ph or x.shape[4] % pw:
        raise ValueError(f"latents of shape {tuple(x.shape)}: expected 5 dims (B, T, C, h, w) with T, h, w multiples "
                         f"of the patch (pt, ph, pw) = {patch}")
    return rearrange(x, "b (t pt) c (h ph) (w pw) -> b t (h w) (pt ph pw c)", pt=pt, ph=ph, pw=pw)


def unpatchify(tokens: torch.Tensor, patch: tuple[int, int, int], channels: int, height: int,
               width: int) -> torch.Tensor:
    """Inverse of patchify: (B, n_chunks, N, pt*ph*pw*C) -> (B, n_chunks*pt, C, height, width), sizes in latents."""
    pt, ph, pw = patch
    b, t, n, p = tokens.shape
    if height % ph or width % pw or n != (height // ph) * (width // pw) or p != pt * ph * pw * channels:
        raise ValueError(f"tokens of shape {tuple(tokens.shape)} do not tile latents (C, h, w) = "
                         f"{(channels, height, width)} with patch {patch}: expected N = {height // ph}*{width // pw} "
                         f"and {pt * ph * pw * channels} values per token, h and w multiples of (ph, pw)")
    return rearrange(tokens, "b t (h w) (pt ph pw c) -> b (t pt) c (h ph) (w pw)",
                     h=height // ph, w=width // pw, pt=pt, ph=ph, pw=pw, c=channels)


# --- 3-axis rotary positions ------------------------------------------------------------------------------------

def rope_dims(head_dim: int) -> tuple[int, int, int]:
    """How a head's dimensions split over (t, h, w): even parts, time gets the remainder (64 -> 24, 20, 20)."""
    d = 2 * (head_dim // 6)
    return head_dim - 2 * d, d, d


def token_positions(t_index: torch.Tensor, gh: int, gw: int) -> torch.Tensor:
    """(T*gh*gw, 3) (t, row, col) of each token, chunk by chunk, row-major."""
    t, r, c = torch.meshgrid(t_index, torch.arange(gh, device=t_index.device),
                             torch.arange(gw, device=t_index.device), indexing="ij")  # (T, gh, gw) each
    return torch.stack([t, r, c], -1).view(-1, 3)  # (T*N, 3)


def rope_tables(pos: torch.Tensor, head_dim: int, base: float) -> tuple[torch.Tensor, torch.Tensor]:
    """cos, sin (L, head_dim/2) float32 for positions (L, 3)."""
    # float64: the absolute chunk index grows with the episode, and float32 angles of t ~ 1e5 lose the small ones
    f = torch.float32 if pos.device.type == "mps" else torch.float64
    angles = []
    for axis, d in enumerate(rope_dims(head_dim)):
        freqs = base ** (-torch.arange(0, d, 2, dtype=f, device=pos.device) / d)  # (d/2,)
        angles.append(pos[:, axis, None].to(f) * freqs)  # (L, d/2)
    angle = torch.cat(angles, -1)  # (L, head_dim/2)
    return angle.cos().float(), angle.sin().float()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate consecutive pairs of x (B, nh, L, hs) by each token's angles, in float32 (bf16 cos/sin are coarse)."""
    x1, x2 = x.float()[..., 0::2], x.float()[..., 1::2]  # (B, nh, L, hs/2) each
    return torch.stack([x1 * cos - x2 * sin, x1 * sin + x2 * cos], -1).flatten(-2).to(x.dtype)  # (B, nh, L, hs)


def halo_patches(x: torch.Tensor, patch: tuple[int, int, int], halo: int) -> torch.Tensor:
    """(B, T, C, h, w) latents -> (B, T/pt, N, pt*C*(ph+2*halo)*(pw+2*halo)): each token's patch with a border of
    `halo` cells (zeros past the frame's edge), tokens in patchify's order."""
    b, t, c, h, w = x.shape
    pt, ph, pw = patch
    frames = x.reshape(b * (t // pt), pt * c, h, w)  # a chunk's frames side by side as channels
    out = F.unfold(frames, (ph + 2 * halo, pw + 2 * halo), padding=halo, stride=(ph, pw))  # (B*T/pt, P', N) row-major
    return out.transpose(1, 2).reshape(b, t // pt, out.shape[-1], -1)


def previous_chunks(x: torch.Tensor, pt: int) -> torch.Tensor:
    """(B, T, C, h, w) latents shifted one chunk of pt frames later: each chunk's previous one, zeros for the first."""
    return torch.cat([torch.zeros_like(x[:, :pt]), x[:, :-pt]], 1)


# --- the network ------------------------------------------------------------------------------------------------

def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return x * (1 + scale) + shift


class SigmaEmbedder(nn.Module):
    """Noise level in [0, 1] -> (D,): sinusoidal features, then an MLP (DiT's TimestepEmbedder)."""

    def __init__(self, width: int, freq_dim: int = 256):
        super().__init__()
        self.freq_dim = freq_dim
        self.mlp = nn.Sequential(nn.Linear(freq_dim, width), nn.SiLU(), nn.Linear(width, width))

    def forward(self, sigma: torch.Tensor) -> torch.Tensor:
        half = self.freq_dim // 2
        freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=sigma.device) / half)  # (F/2,)
        args = sigma.float()[..., None] * 1000.0 * freqs  # x1000: DiT's timestep range, so small steps in sigma show
        return self.mlp(torch.cat([args.cos(), args.sin()], -1).to(self.mlp[0].weight.dtype))  # (..., D)


class Attention(nn.Module):
    """Multi-head self-attention with rotary positions, over a mask or a KV cache."""

    def __init__(self, cfg: DiTConfig):
        super().__init__()
        self.heads, self.head_dim = cfg.heads, cfg.width // cfg.heads
        self.qkv = nn.Linear(cfg.width, 3 * cfg.width)
        self.proj = nn.Linear(cfg.width, cfg.width)

    def forward(self, x, rope, mask, cache: KVCache | None = None, layer: int = 0) -> torch.Tensor:
        b, n, d = x.shape
        q, k, v = self.qkv(x).view(b, n, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)  # 3 x (B, nh, L, hs)
        q, k = apply_rope(q, *rope), apply_rope(k, *rope)
        if cache is not None:
            k, v = cache._insert(layer, k, v)  # (B, nh, S, hs): the history, with this call's tokens written in
            k, v = k.to(q.dtype), v.to(q.dtype)  # no-op unless the cache was filled under another autocast dtype
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)  # (B, nh, L, hs)
        return self.proj(y.transpose(1, 2).reshape(b, n, d))  # (B, L, D)


class Block(nn.Module):
    """A DiT block: adaLN-Zero-modulated attention and MLP, modulation per chunk."""

    def __init__(self, cfg: DiTConfig):
        super().__init__()
        d, hidden = cfg.width, int(cfg.width * cfg.mlp_ratio)
        self.norm1 = nn.LayerNorm(d, elementwise_affine=False, eps=1e-6)
        self.attn = Attention(cfg)
        self.norm2 = nn.LayerNorm(d, elementwise_affine=False, eps=1e-6)
        self.mlp = nn.Sequential(nn.Linear(d, hidden), nn.GELU(approximate="tanh"), nn.Linear(hidden, d))
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(d, 6 * d))

    def forward(self, x, c, rows, rope, mask, cache=None, layer=0) -> torch.Tensor:
        # x (B, L, D); c (B, T, D) conditioning of each chunk; rows (L,) each token's row of c
        mod = self.adaLN_modulation(c)[:, rows]  # (B, L, 6D): computed per chunk, broadcast to its tokens
        shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = mod.chunk(6, dim=-1)
        x = x + gate_msa * self.attn(modulate(self.norm1(x), shift_msa, scale_msa), rope, mask, cache, layer)
        return x + gate_mlp * self.mlp(modulate(self.norm2(x), shift_mlp, scale_mlp))


class FinalLayer(nn.Module):
    """adaLN then a linear map to the patch values."""

    def __init__(self, width: int, patch_dim: int):
        super().__init__()
        self.norm = nn.LayerNorm(width, elementwise_affine=False, eps=1e-6)
        self.linear = nn.Linear(width, patch_dim)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(width, 2 * width))

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        shift, scale = self.adaLN_modulation(c)[:, :, None].chunk(2, dim=-1)  # (B, T, 1, D) each
        return self.linear(modulate(self.norm(x), shift, scale))  # (B, T, N, P)


def _head(width: int, outputs: int = 1) -> nn.Module:
    return nn.Sequential(nn.LayerNorm(width), nn.Linear(width, width), nn.SiLU(), nn.Linear(width, outputs))


class DiT(nn.Module):
    """Block-causal diffusion transformer over spacetime latent patches, with reward and termination heads."""

    def __init__(self, config: DiTConfig):
        super().__init__()
        self.config = cfg = config
        self.patch_dim = math.prod(cfg.patch) * cfg.latent_channels
        self.x_embed = nn.Linear(self.patch_dim * (2 if cfg.prev_frame else 1), cfg.width)
        if cfg.prev_halo:  # zero-initialised (initialize_weights): a model given a halo starts as it was without one
            side = (cfg.patch[1] + 2 * cfg.prev_halo, cfg.patch[2] + 2 * cfg.prev_halo)
            self.halo_embed = nn.Linear(cfg.patch[0] * cfg.latent_channels * side[0] * side[1], cfg.width)
        self.sigma_embed = SigmaEmbedder(cfg.width)
        self.action_embed = nn.Embedding(cfg.n_actions + 1, cfg.width)  # row n_actions: "no action" (-1)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.depth))
        self.final_layer = FinalLayer(cfg.width, self.patch_dim)
        self.reward_head = _head(cfg.width, len(cfg.reward_values) or 1)
        if 0.0 in cfg.reward_values:
            # the probability of a non-zero reward above which a step pays: rewards are rare events, so it is chosen
            # on held-out data after training (worldsim.train.world.fit_reward_threshold), not left at argmax's 0.5
            self.register_buffer("reward_threshold", torch.tensor(0.5))
        self.terminated_head = _head(cfg.width)
        self.text = TextEncoder(len(cfg.vocab), cfg.width, cfg.heads, cfg.text_depth, cfg.caption_words) \
            if cfg.vocab else None
        self.initialize_weights()

    def initialize_weights(self) -> None:
        def _basic_init(module):
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)
        self.apply(_basic_init)
        for weight in (self.action_embed.weight, self.sigma_embed.mlp[0].weight, self.sigma_embed.mlp[2].weight):
            nn.init.normal_(weight, std=0.02)
        # adaLN-Zero: every block starts as the identity, and the output layer at 0
        zeroed = [block.adaLN_modulation[-1] for block in self.blocks]
        if self.text is not None:
            nn.init.normal_(self.text.embed.weight, std=0.02)
            nn.init.normal_(self.text.pos, std=0.02)
            zeroed.append(self.text.proj)  # captions add nothing until trained: a fine-tune starts where it was
        if self.config.prev_halo:
            zeroed.append(self.halo_embed)
        for layer in zeroed + [self.final_layer.adaLN_modulation[-1], self.final_layer.linear]:
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def tokenize(self, captions) -> torch.Tensor:
        """Word ids of captions for `text=`: a list of N strings -> (N, L), a list of B lists of T -> (B, T, L)."""
        if self.text is None:
            raise ValueError("this model has no text encoder (it was trained without captions): pass text=None")
        nested = len(captions) > 0 and not isinstance(captions[0], str)
        flat = [c for row in captions for c in row] if nested else list(captions)
        ids = tokenize(flat, self.config.vocab, self.config.caption_words)
        return ids.view(len(captions), -1, ids.shape[-1]) if nested else ids

    def new_cache(self, batch_size: int) -> KVCache:
        """An empty KV cache for forward_chunk, `batch_size` independent rows."""
        return KVCache(self.config, batch_size)

    def forward(self, x: torch.Tensor, sigma: torch.Tensor, actions: torch.Tensor, t_start: int = 0,
                history: torch.Tensor | None = None, history_sigma: torch.Tensor | None = None,
                text: torch.Tensor | None = None, recent: torch.Tensor | None = None) -> DiTOutput:
        """A whole clip in one pass (training).

        x (B, T, C, h, w) noisy latents; sigma (B, n_chunks) float noise levels in [0, 1]; actions (B, n_chunks) int64,
        -1 = no action; t_start the absolute index of the first chunk.

        Without `history`, the clip runs under the block-causal sliding-window mask: each chunk's history is the clip's
        earlier chunks as noisy as they are in x (diffusion forcing). With `history` (B, T, C, h, w), the clip's clean
        (or lightly noised) latents at levels `history_sigma` (B, n_chunks), the clip runs as two streams
        (history_mask): chunk i of x is denoised against history chunks before it, exactly as a solver pass against
        the cache at play time; the reward and termination heads read the stream the simulator reads them on
        (config.heads_read): the history stream, as the pass that caches a chunk, or the noisy one, as a solver pass.
        `text` (B, n_chunks, L): each chunk's caption as word ids (DiT.tokenize; all zeros: none), or None.
        `recent` (B, n_chunks) int, with `history`: r >= 1 denoises chunk i against only the latest r history chunks
        before it and no memory, as a pass under Condition(recent=r) against the cache (history guidance's short
        pass); 0 against its whole history.
        """
        cfg, pt = self.config, self.config.patch[0]
        tokens, cond = self._inputs(x, sigma, actions, text)  # (B, T', N, P), (B, T', D), T' = n_chunks
        t, n = tokens.shape[1:3]
        chunk = torch.arange(t, device=x.device)
        ids = chunk.repeat_interleave(n) + t_start  # (T'*N,) the absolute chunk of each token
        span = (cfg.context, cfg.memory, cfg.memory_stride)
        if history is None:
            if recent is not None:
                raise ValueError("recent without history: a short history is of the clean stream (history=...)")
            prev = previous_chunks(x, pt) if cfg.prev_frame else None
            return self._run(x, tokens, cond, chunk + t_start, block_causal_mask(ids, *span), prev=prev)
        if history.shape != x.shape or history_sigma is None:
            raise ValueError(f"history of shape {tuple(history.shape)} with history_sigma {history_sigma is not None}: "
                             f"expected latents shaped like x {tuple(x.shape)} and their noise levels (B, n_chunks)")
        if recent is not None and (tuple(recent.shape) != (x.shape[0], t) or recent.is_floating_point()
                                   or (recent < 0).any()):
            raise ValueError(f"recent of shape {tuple(recent.shape)}: expected history chunks >= 0 (0: all) as "
                             f"integers (B, n_chunks) = {(x.shape[0], t)}")
        h_tokens, h_cond = self._inputs(history, history_sigma, actions, text)
        prev = previous_chunks(history, pt) if cfg.prev_frame else None
        mask = history_mask(ids, *span, recent=None if recent is None else recent.repeat_interleave(n, dim=1))
        both = self._run(torch.cat([history, x], 1), torch.cat([h_tokens, tokens], 1), torch.cat([h_cond, cond], 1),
                         torch.cat([chunk, chunk]) + t_start, mask,
                         prev=None if prev is None else torch.cat([prev, prev], 1))
        heads = slice(0, t) if cfg.heads_read == "frame" else slice(t, 2 * t)  # (history, noisy) chunks
        return DiTOutput(both.out[:, t * pt:], both.reward[:, heads], both.terminated_logit[:, heads])

    @torch.no_grad()
    def forward_chunk(self, x_chunk: torch.Tensor, sigma, actions, t_index: int, cache: KVCache,
                      write: bool = False, text: torch.Tensor | None = None) -> DiTOutput:
        """One chunk against the cache (inference): the same result as `forward` on the whole history.

        x_chunk (B, pt, C, h, w); sigma (B,) or a float; actions (B,) int64 (-1: none) or an int; t_index the absolute
        chunk index, shared by all rows (only differences matter: it need not restart when a row is reset).
        write=True keeps this chunk's K/V as history: once per step, on the clean chunk (sigma 0), after the solver's
        write=False calls. `text` (B, L): the chunk's caption as word ids, or None. Returns what `forward` would for
        a one-chunk clip: out like x_chunk, reward (B, 1).
        """
        out = self.forward_conditions(x_chunk, sigma, [Condition(actions, text)], t_index, cache)[0]
        if write:
            cache._advance(t_index)
            if self.config.prev_frame:
                cache.prev = x_chunk.clone()  # as committed: the next chunk's previous frame
        return out

    @torch.no_grad()
    def forward_conditions(self, x_chunk: torch.Tensor, sigma, conditions: Sequence[Condition], t_index: int,
                           cache: KVCache) -> list[DiTOutput]:
        """The chunk x_chunk (B, pt, C, h, w) at noise level sigma against the cache under each of G `conditions` in
        one call (guidance's passes: at batch 1 most of a pass is fixed cost, so G conditionings cost far less than G
        calls); each result is forward_chunk's for its condition alone, write=False (equal up to float rounding)."""
        b, pt, dev = x_chunk.shape[0], self.config.patch[0], x_chunk.device
        if x_chunk.ndim != 5 or x_chunk.shape[1] != pt:
            raise ValueError(f"x_chunk of shape {tuple(x_chunk.shape)}: expected (B, pt={pt}, C, h, w)")
        sigma = torch.as_tensor(sigma, dtype=torch.float32, device=dev).expand(b)[:, None]  # (B, 1)
        g, conds = len(conditions), []
        for c in conditions:
            actions = torch.as_tensor(c.actions, dtype=torch.long, device=dev).expand(b)[:, None]  # (B, 1)
            tokens, cond = self._inputs(x_chunk, sigma, actions, None if c.text is None else c.text[:, None])
            conds.append(cond)  # (B, 1, D)
        mask = cache._prepare(b, tokens.shape[2], dev, tuple(c.recent for c in conditions))  # (B, 1, G*N, S)
        prev = None
        if self.config.prev_frame:
            if cache.prev is None or cache.prev.shape != x_chunk.shape:
                cache.prev = torch.zeros_like(x_chunk)
            prev = cache.prev.to(x_chunk.dtype).repeat(1, g, 1, 1, 1)  # (B, G*pt, C, h, w)
        # the G copies run as G chunks of one clip, all at time t_index: each its own conditioning and mask rows
        out = self._run(x_chunk.repeat(1, g, 1, 1, 1), tokens.repeat(1, g, 1, 1), torch.cat(conds, 1),
                        torch.full((g,), t_index, device=dev), mask, cache, prev)
        return [DiTOutput(out.out[:, i * pt:(i + 1) * pt], out.reward[:, i:i + 1], out.terminated_logit[:, i:i + 1])
                for i in range(g)]

    def reward_of(self, reward: torch.Tensor, threshold: float | None = None) -> torch.Tensor:
        """A DiTOutput's reward as values (B, n_chunks): the regression as is; for classes, 0 unless the probability
        of a non-zero reward passes `threshold` (default: the model's `reward_threshold`), then the most likely
        non-zero value (the most likely value when 0 is not among them)."""
        values = self.config.reward_values
        if not values:
            return reward
        if 0.0 not in values:
            return torch.tensor(values, device=reward.device)[reward.argmax(-1)]
        return classified_reward(reward, values, self.reward_threshold if threshold is None else threshold)

    def reward_scores(self, reward: torch.Tensor) -> torch.Tensor:
        """(B, n_chunks) the probability of a non-zero reward, what `reward_threshold` is compared with."""
        return nonzero_probability(reward, self.config.reward_values)

    def _inputs(self, x, sigma, actions, text=None) -> tuple[torch.Tensor, torch.Tensor]:
        """Checked tokens (B, T', N, P) and per-chunk conditioning (B, T', D) = sigma + action (+ caption)
        embeddings."""
        cfg, n = self.config, self.config.n_actions
        if x.ndim != 5 or x.shape[2] != cfg.latent_channels:
            raise ValueError(f"latents of shape {tuple(x.shape)}: expected (B, T, C={cfg.latent_channels}, h, w)")
        tokens = patchify(x, cfg.patch)
        shape = tuple(tokens.shape[:2])
        if tuple(sigma.shape) != shape or tuple(actions.shape) != shape:
            raise ValueError(f"sigma {tuple(sigma.shape)} and actions {tuple(actions.shape)}: expected (B, n_chunks) "
                             f"= {shape}, one per chunk of pt={cfg.patch[0]} latent frames")
        # note: CPU-GPU sync point, worth it for a readable error instead of a device-side assert
        if actions.is_floating_point() or ((actions < -1) | (actions >= n)).any():
            raise ValueError(f"actions {actions.unique().tolist()}: expected integers in [0, {n}), or -1 for none")
        cond = self.sigma_embed(sigma) + self.action_embed(torch.where(actions < 0, n, actions))  # (B, T', D)
        if text is None:
            return tokens, cond
        if self.text is None:
            raise ValueError("captions for a model without a text encoder (trained without captions): pass text=None")
        if text.shape[:2] != shape or text.ndim != 3 or text.is_floating_point():
            raise ValueError(f"text of shape {tuple(text.shape)}: expected word ids (B, n_chunks, L) = {shape} + (L,)")
        return tokens, cond + self.text(text).to(cond.dtype)

    def _run(self, x_in, tokens, cond, t_index, mask, cache=None, prev=None) -> DiTOutput:
        # tokens (B, T, N, P) of the latents x_in; cond (B, T, D); t_index (T,) absolute chunk indices; prev like x_in:
        # each chunk's previous one (prev_frame models)
        cfg = self.config
        (b, t, n, _), (h, w) = tokens.shape, x_in.shape[-2:]
        if prev is not None:
            tokens = torch.cat([tokens, patchify(prev, cfg.patch)], -1)  # (B, T, N, 2P)
        x = self.x_embed(tokens)  # (B, T, N, D)
        if prev is not None and cfg.prev_halo:
            x = x + self.halo_embed(halo_patches(prev, cfg.patch, cfg.prev_halo))
        x = x.flatten(1, 2)  # (B, T*N, D)
        rows = torch.arange(t, device=x.device).repeat_interleave(n)  # (T*N,) each token's chunk: its row of cond
        pos = token_positions(t_index, h // cfg.patch[1], w // cfg.patch[2])  # (T*N, 3)
        rope = rope_tables(pos, cfg.width // cfg.heads, cfg.rope_base)
        for i, block in enumerate(self.blocks):
            x = block(x, cond, rows, rope, mask, cache, i)
        x = x.reshape(b, t, n, -1)  # (B, T, N, D)
        pooled = x.mean(2)  # (B, T, D): the chunk's final hidden state, before the output projection
        out = unpatchify(self.final_layer(x, cond), cfg.patch, x_in.shape[2], h, w)  # (B, T*pt, C, h, w)
        if prev is not None:
            out = out + prev  # the change from the previous chunk: a zero output copies it
        reward = self.reward_head(pooled)  # (B, T, K)
        return DiTOutput(out, reward if cfg.reward_values else reward.squeeze(-1),
                         self.terminated_head(pooled).squeeze(-1))
