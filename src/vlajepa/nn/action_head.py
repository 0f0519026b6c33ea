"""Flow-matching action head: a small DiT that turns noise into an action chunk, reading the embodied tokens.

Convention (as in pi0): ``x_t = t * noise + (1 - t) * actions`` with ``t = 1`` pure noise; the network
predicts the velocity ``noise - actions``. Training draws ``t ~ Beta(alpha, beta)`` rescaled to
``[time_min, 1]``; inference integrates from ``t = 1`` to ``t = 0`` with a configurable number of Euler steps.

Tokens: ``H`` noisy action tokens (plus one optional state token); the flow time modulates every block
(adaLN-Zero, as in DiT). ``action_head.layout`` picks the block stack: ``self_cross`` (:class:`DiTBlock`, every
block self-attends and cross-attends to the student's embodied-action tokens) or ``alternating``
(:class:`AlternatingDiTBlock`, even blocks cross-attend, odd blocks self-attend). Padded steps of a chunk (past the
end of an episode) are zeroed before noising and masked out of the loss, so their values have no effect at all.
"""

from __future__ import annotations

import math

import torch
from einops import repeat
from torch import Tensor, nn

from vlajepa.nn.config import ActionHeadConfig
from vlajepa.nn.transformer import MLP, Attention, init_weights, learned_embedding


def timestep_features(time: Tensor, dim: int) -> Tensor:
    """Sinusoidal features ``(b, dim)`` of flow times ``(b,)`` in ``[0, 1]``."""
    half = dim // 2
    freqs = torch.exp(-math.log(10_000.0) * torch.arange(half, device=time.device) / half)
    args = 1000.0 * time[:, None].float() * freqs[None]  # scale [0, 1] to the usual diffusion-step range
    return torch.cat([args.cos(), args.sin()], dim=-1)


def _modulate(x: Tensor, shift: Tensor, scale: Tensor) -> Tensor:
    return x * (1 + scale) + shift


class DiTBlock(nn.Module):
    """``self_cross`` layout: adaLN-Zero self-attention and MLP, plus cross-attention to the conditioning tokens."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float, context_dim: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, elementwise_affine=False)
        self.attn = Attention(dim, heads)
        self.norm_cross = nn.LayerNorm(dim)
        self.cross = Attention(dim, heads, context_dim=context_dim)
        self.norm2 = nn.LayerNorm(dim, elementwise_affine=False)
        self.mlp = MLP(dim, mlp_ratio)
        self.modulation = nn.Sequential(nn.SiLU(), nn.Linear(dim, 6 * dim))

    def context_keys_values(self, context: Tensor) -> tuple[Tensor, Tensor]:
        """Cross-attention keys and values of the (normed) conditioning tokens, computed once per chunk."""
        return self.cross.keys_values(context)

    def forward(self, x: Tensor, context_keys_values: tuple[Tensor, Tensor], modulation: Tensor) -> Tensor:
        """``context_keys_values``: :meth:`context_keys_values`; ``modulation``:
        ``self.modulation(time_embedding)[:, None]`` ``(b or 1, 1, 6d)``."""
        shift1, scale1, gate1, shift2, scale2, gate2 = modulation.chunk(6, dim=-1)
        x = x + gate1 * self.attn(_modulate(self.norm1(x), shift1, scale1))
        x = x + self.cross(self.norm_cross(x), keys_values=context_keys_values)
        return x + gate2 * self.mlp(_modulate(self.norm2(x), shift2, scale2))


class AlternatingDiTBlock(nn.Module):
    """``alternating`` layout: one attention and an MLP; the attention cross-attends to the conditioning tokens when
    the block is given a ``context_dim`` (the even blocks) and self-attends over the action (and state) tokens
    otherwise (the odd blocks).

    Followed: the DiT of GR00T N1.5's action head as the official VLA-JEPA code configures it (starVLA's
    ``cross_attention_dit.DiT`` with ``interleave_self_attention``, ``norm_type: ada_norm``, ``cross_attention_dim``
    = the VLM's width, 16 layers of DiT-B's 12 heads x 64, no positional embeddings inside the blocks): block ``i``
    cross-attends when ``i`` is even and self-attends when odd, the flow time shifts and scales the normed attention
    input, and the MLP reads a plain LayerNorm without learned affine.
    Differs: theirs has two modulation outputs and ungated residuals; here a third output, a gate initialised to
    zero that scales both residual branches, makes every block start as the identity (adaLN-Zero, like the
    gated branches of the ``self_cross`` blocks). The MLP is exact GELU with ``mlp_ratio`` (theirs
    tanh-approximated, 4x); no dropout (theirs 0.2). The head around the blocks keeps this library's tokens (a
    linear action embedding with learned positions, one state token, the embodied tokens layer-normed once, a
    linear output), not their 3-layer action encoder, 32 learned future tokens and MLP decoder.
    """

    def __init__(self, dim: int, heads: int, mlp_ratio: float, context_dim: int | None) -> None:
        super().__init__()
        self.cross_attends = context_dim is not None
        self.norm1 = nn.LayerNorm(dim, elementwise_affine=False)
        self.attn = Attention(dim, heads, context_dim=context_dim)
        self.norm2 = nn.LayerNorm(dim, elementwise_affine=False)
        self.mlp = MLP(dim, mlp_ratio)
        self.modulation = nn.Sequential(nn.SiLU(), nn.Linear(dim, 3 * dim))

    def context_keys_values(self, context: Tensor) -> tuple[Tensor, Tensor] | None:
        """Keys and values of the (normed) conditioning tokens for a cross-attending block; None for a
        self-attending one (its keys come from the action tokens, which change every Euler step)."""
        return self.attn.keys_values(context) if self.cross_attends else None

    def forward(self, x: Tensor, context_keys_values: tuple[Tensor, Tensor] | None, modulation: Tensor) -> Tensor:
        """``context_keys_values``: :meth:`context_keys_values`; ``modulation``:
        ``self.modulation(time_embedding)[:, None]`` ``(b or 1, 1, 3d)``."""
        if self.cross_attends and context_keys_values is None:
            raise ValueError("a cross-attending block needs the conditioning tokens' keys and values")
        shift, scale, gate = modulation.chunk(3, dim=-1)
        x = x + gate * self.attn(_modulate(self.norm1(x), shift, scale), keys_values=context_keys_values)
        return x + gate * self.mlp(self.norm2(x))


def dit_blocks(config: ActionHeadConfig, context_dim: int) -> nn.ModuleList:
    """The ``config.depth`` blocks of ``config.layout`` reading conditioning tokens ``context_dim`` wide."""
    dim, heads, ratio = config.dim, config.heads, config.mlp_ratio
    if config.layout == "self_cross":
        return nn.ModuleList(DiTBlock(dim, heads, ratio, context_dim) for _ in range(config.depth))
    return nn.ModuleList(
        AlternatingDiTBlock(dim, heads, ratio, context_dim if i % 2 == 0 else None) for i in range(config.depth)
    )


class FlowMatchingActionHead(nn.Module):
    """DiT velocity field over action chunks ``(b, H, A)`` conditioned on embodied tokens ``(b, M, d_c)``."""

    def __init__(
        self, config: ActionHeadConfig, action_dim: int, chunk_size: int, state_dim: int, context_dim: int
    ) -> None:
        super().__init__()
        dim = config.dim
        self.config = config
        self.chunk_size = chunk_size
        self.action_dim = action_dim
        self.action_in = nn.Linear(action_dim, dim)
        self.action_pos = learned_embedding(chunk_size, dim)
        if config.use_state:
            self.state_in = nn.Linear(state_dim, dim)
            self.missing_state = learned_embedding(dim)
        self.time_mlp = nn.Sequential(nn.Linear(dim, dim), nn.SiLU(), nn.Linear(dim, dim))
        self.context_norm = nn.LayerNorm(context_dim)
        self.blocks = dit_blocks(config, context_dim)
        self.final_norm = nn.LayerNorm(dim, elementwise_affine=False)
        self.final_modulation = nn.Sequential(nn.SiLU(), nn.Linear(dim, 2 * dim))
        self.action_out = nn.Linear(dim, action_dim)
        self.apply(init_weights)
        for block in self.blocks:  # adaLN-Zero: every gated residual branch starts closed
            nn.init.zeros_(block.modulation[-1].weight)
            nn.init.zeros_(block.modulation[-1].bias)
        for layer in (self.final_modulation[-1], self.action_out):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    def context_keys_values(self, context: Tensor) -> list[tuple[Tensor, Tensor] | None]:
        """Cross-attention keys and values of the embodied tokens ``(b, M, d_c)`` for every block (None for a
        self-attending block of the ``alternating`` layout)."""
        context = self.context_norm(context)
        return [block.context_keys_values(context) for block in self.blocks]

    def time_conditioning(self, time: Tensor) -> tuple[list[Tensor], Tensor]:
        """adaLN modulations for flow times ``time`` ``(n,)``: per block ``(n, 1, k*d)`` (k = 6 for ``self_cross``,
        3 for ``alternating``), final ``(n, 1, 2d)``."""
        time_embedding = self.time_mlp(timestep_features(time, self.config.dim))  # (n, d)
        blocks = [block.modulation(time_embedding)[:, None] for block in self.blocks]
        return blocks, self.final_modulation(time_embedding)[:, None]

    def state_token(self, state: Tensor | None, batch: int) -> Tensor:
        """The state token ``(b, 1, d)`` (the learned placeholder when ``state`` is None)."""
        if state is None:
            return self.missing_state.expand(batch, 1, -1)
        return self.state_in(state)[:, None]

    def velocity(
        self,
        noisy_actions: Tensor,
        time: Tensor | tuple[list[Tensor], Tensor],
        context: Tensor | list[tuple[Tensor, Tensor] | None],
        state: Tensor | None = None,
        state_token: Tensor | None = None,
    ) -> Tensor:
        """Predicted velocity ``(b, H, A)`` at flow time ``time`` ``(b,)``.

        ``time`` may be its :meth:`time_conditioning` instead, ``context`` the embodied tokens ``(b, M, d_c)`` or
        their :meth:`context_keys_values`, and ``state_token`` the :meth:`state_token` of ``state``: the sampler
        computes all three once per chunk rather than once per Euler step.
        """
        if isinstance(context, Tensor):
            context = self.context_keys_values(context)
        b = noisy_actions.shape[0]
        x = self.action_in(noisy_actions) + self.action_pos  # (b, H, d)
        if self.config.use_state:
            token = self.state_token(state, b) if state_token is None else state_token
            x = torch.cat([token, x], dim=1)  # (b, 1 + H, d)
        modulations, final = self.time_conditioning(time) if isinstance(time, Tensor) else time
        for block, keys_values, modulation in zip(self.blocks, context, modulations, strict=True):
            x = block(x, keys_values, modulation)
        shift, scale = final.chunk(2, dim=-1)
        x = _modulate(self.final_norm(x), shift, scale)[:, -self.chunk_size :]  # drop the state token
        return self.action_out(x)

    def sample_time(self, batch: int, device: torch.device) -> Tensor:
        """Training flow times ``(b,)``: ``Beta(alpha, beta)`` rescaled to ``[time_min, 1]``."""
        beta = torch.distributions.Beta(
            torch.tensor(self.config.time_beta_alpha, device=device),
            torch.tensor(self.config.time_beta_beta, device=device),
        )
        return beta.sample((batch,)) * (1.0 - self.config.time_min) + self.config.time_min

    def loss(
        self,
        actions: Tensor,
        context: Tensor,
        state: Tensor | None = None,
        action_is_pad: Tensor | None = None,
        noise: Tensor | None = None,
        time: Tensor | None = None,
    ) -> Tensor:
        """Flow-matching MSE over the real (non-padded) steps of ``actions`` ``(b, H, A)``.

        Each sample is noised ``config.loss_samples`` (k) times. ``noise`` ``(k*b, H, A)`` and ``time``
        ``(k*b,)`` (draw-major: rows ``i*b .. (i+1)*b - 1`` are draw ``i``) default to fresh samples; pass them
        to make the loss deterministic.
        """
        k = self.config.loss_samples
        if k > 1:  # every input repeated draw-major; the student's tokens are shared, not recomputed
            actions, context = (repeat(x, "b ... -> (k b) ...", k=k) for x in (actions, context))
            state = None if state is None else repeat(state, "b s -> (k b) s", k=k)
            action_is_pad = None if action_is_pad is None else repeat(action_is_pad, "b h -> (k b) h", k=k)
        if action_is_pad is not None:
            actions = actions.masked_fill(action_is_pad[..., None], 0.0)
        noise = torch.randn_like(actions) if noise is None else noise
        time = self.sample_time(actions.shape[0], actions.device) if time is None else time
        t = time[:, None, None]
        noisy = t * noise + (1.0 - t) * actions
        error = (self.velocity(noisy, time, context, state) - (noise - actions)).square()  # (b, H, A)
        if action_is_pad is None:
            return error.mean()
        valid = (~action_is_pad)[..., None].to(error.dtype)  # (b, H, 1)
        return (error * valid).sum() / (valid.sum() * self.action_dim).clamp_min(1.0)

    def sample(
        self,
        context: Tensor,
        state: Tensor | None = None,
        num_steps: int | None = None,
        noise: Tensor | None = None,
        generator: torch.Generator | None = None,
        noise_scale: float = 1.0,
    ) -> Tensor:
        """Integrate the flow from noise (``t = 1``) to an action chunk (``t = 0``) with Euler steps.

        ``noise_scale`` multiplies freshly drawn noise (a sampling temperature: 0 starts every chunk from the
        centre of the noise distribution, a deterministic policy); given ``noise`` is used as it is.
        """
        steps = num_steps or self.config.num_inference_steps
        b = context.shape[0]
        if noise is None:
            noise = noise_scale * torch.randn(
                b, self.chunk_size, self.action_dim, generator=generator, device=context.device
            )
        # Everything but the noisy actions is fixed over the Euler steps: compute it once per chunk.
        keys_values = self.context_keys_values(context)
        token = self.state_token(state, b) if self.config.use_state else None
        dt = 1.0 / steps
        times = 1.0 - torch.arange(steps, device=context.device) * dt  # (steps,)
        modulations, final = self.time_conditioning(times)  # (steps, 1, k*d) per block, (steps, 1, 2d)
        x = noise
        for i in range(steps):
            conditioning = ([m[i : i + 1] for m in modulations], final[i : i + 1])  # broadcast over the batch
            x = x - dt * self.velocity(x, conditioning, keys_values, state_token=token)
        return x
