"""Vision Mamba (Vim, Zhu et al. 2024) in plain PyTorch: bidirectional selective state-space blocks over image
patches, as a 4-scale backbone for :class:`medzoo.networks.hybridmednet.HybridMedNet`.

Vim is an isotropic model: a 16x16 patch embedding gives a ``(H / 16) x (W / 16)`` grid of tokens that every block
keeps. Each block is ``x + BidirectionalMamba(RMSNorm(x))``: the tokens in row-major order are read once forwards and
once backwards by two selective state-space models (Mamba, Gu and Dao 2023) that share the input projection and the
output gate. The multi-scale features HybridMedNet needs are taken as in DPT (Ranftl et al. 2021): the token maps
after blocks ``depth / 4``, ``depth / 2``, ``3 depth / 4`` and ``depth`` (stride 16) are normalised and resampled to
strides 4 (two 2x transposed convolutions), 8 (one), 16 (as is) and 32 (2x2 max pooling). No class token is used
(HybridMedNet pools the fused feature map itself); positions are learned for one grid, so the backbone is built for
one input size (``img_size``, both sides multiples of 32), as Swin is.

The selective scan (:func:`selective_scan`) is a loop of fused multiply-adds over the tokens
(:func:`linear_recurrence`), so the network trains with autograd, scripts with TorchScript and traces to ONNX (the
loop unrolled for the one sequence length); no CUDA kernel is needed. It keeps every state ``[B, L, 2 dim, 16]`` for
the backward pass, so in training each block is recomputed in the backward pass (activation checkpointing) instead
of keeping its states.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

__all__ = [
    "VIM_BACKBONES",
    "BidirectionalMamba",
    "SelectiveSSM",
    "VisionMambaBackbone",
    "linear_recurrence",
    "selective_scan",
]

#: Vim sizes of the paper (embedding width, blocks); state size 16, expansion 2, convolution width 4 for both.
VIM_BACKBONES: dict[str, dict[str, int]] = {
    "vim_tiny": {"dim": 192, "depth": 24},
    "vim_small": {"dim": 384, "depth": 24},
}


def linear_recurrence(decay: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
    """All states of ``h_t = decay_t * h_{t-1} + inputs_t`` with ``h_{-1} = 0``, along dimension 1.

    ``decay`` and ``inputs``: ``[B, L, ...]`` (same shape) -> ``h``: ``[B, L, ...]``. One fused multiply-add per
    position on ``[B, ...]`` slices: on the CPU this beats the parallel (Hillis-Steele, Blelloch) scans, whose
    ``log2 L`` passes over the whole ``[B, L, E, N]`` tensors cost more memory traffic than the ``L`` small steps.
    """
    state = torch.zeros_like(inputs[:, 0])
    states: list[torch.Tensor] = []
    for t in range(inputs.size(1)):
        state = torch.addcmul(inputs[:, t], decay[:, t], state)
        states.append(state)
    return torch.stack(states, dim=1)


def selective_scan(
    x: torch.Tensor, delta: torch.Tensor, A: torch.Tensor, B: torch.Tensor, C: torch.Tensor, D: torch.Tensor
) -> torch.Tensor:
    """Mamba's selective scan (zero-order-hold discretisation of ``A``, Euler step for ``B``).

    Shapes: ``x``, ``delta`` (step sizes, > 0): ``[B, L, E]``; ``A`` (< 0): ``[E, N]``; ``B``, ``C``: ``[B, L, N]``;
    ``D``: ``[E]`` -> ``y``: ``[B, L, E]``, with the state ``h_t`` ``[B, E, N]``:

        h_t = exp(delta_t A) * h_{t-1} + delta_t B_t x_t,    y_t = h_t C_t + D x_t
    """
    decay = torch.exp(delta.unsqueeze(-1) * A)  # [B, L, E, N]
    drive = (delta * x).unsqueeze(-1) * B.unsqueeze(2)  # [B, L, E, N]
    states = linear_recurrence(decay, drive)  # [B, L, E, N]
    return (states @ C.unsqueeze(-1)).squeeze(-1) + D * x


class RMSNorm(nn.Module):
    """Root-mean-square normalisation over the last dimension with a learned scale (``[..., dim]`` -> same)."""

    def __init__(self, dim: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


class SelectiveSSM(nn.Module):
    """One direction of a Mamba block: causal depthwise convolution, SiLU, input-dependent ``delta``, ``B``, ``C``,
    selective scan. ``[B, L, width]`` -> ``[B, L, width]``.

    Initialised as Mamba is: ``A = -(1, ..., N)`` per channel (S4D-real, stored as ``log(-A)``), ``D = 1``, step
    sizes ``softplus(dt_proj(.))`` starting log-uniform in [1e-3, 1e-1].
    """

    def __init__(self, width: int, d_state: int = 16, d_conv: int = 4, dt_rank: int = 0) -> None:
        super().__init__()
        self.d_state = d_state
        self.dt_rank = dt_rank if dt_rank > 0 else math.ceil(width / 32)
        # depthwise causal convolution over the tokens: taps [width, d_conv], the last tap on the current token
        bound = d_conv**-0.5  # nn.Conv1d's default initialisation for this fan-in
        self.conv_weight = nn.Parameter(torch.empty(width, d_conv).uniform_(-bound, bound))
        self.conv_bias = nn.Parameter(torch.empty(width).uniform_(-bound, bound))
        self.x_proj = nn.Linear(width, self.dt_rank + 2 * d_state, bias=False)
        self.dt_proj = nn.Linear(self.dt_rank, width)
        nn.init.uniform_(self.dt_proj.weight, -(self.dt_rank**-0.5), self.dt_rank**-0.5)
        dt = torch.exp(torch.rand(width) * (math.log(0.1) - math.log(1e-3)) + math.log(1e-3)).clamp(min=1e-4)
        with torch.no_grad():
            self.dt_proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))  # softplus(bias) = dt
        self.A_log = nn.Parameter(torch.log(torch.arange(1, d_state + 1, dtype=torch.float32)).repeat(width, 1))
        self.D = nn.Parameter(torch.ones(width))

    def _causal_conv(self, x: torch.Tensor) -> torch.Tensor:
        """Depthwise causal convolution along the tokens, ``[B, L, width]`` -> same: a sum of shifted copies
        (cheaper on the CPU than a depthwise ``conv1d`` with its two transposes)."""
        length = x.size(1)
        taps = self.conv_weight.size(1)
        padded = F.pad(x, [0, 0, taps - 1, 0])  # [B, taps - 1 + L, width], zeros before the first token
        out = self.conv_bias + padded[:, 0:length] * self.conv_weight[:, 0]
        for k in range(1, taps):
            out = out + padded[:, k : k + length] * self.conv_weight[:, k]
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.silu(self._causal_conv(x))
        dt, B, C = torch.split(self.x_proj(x), [self.dt_rank, self.d_state, self.d_state], dim=-1)
        delta = F.softplus(self.dt_proj(dt))
        return selective_scan(x, delta, -torch.exp(self.A_log), B, C, self.D)


class BidirectionalMamba(nn.Module):
    """Vim's bidirectional Mamba mixer: ``[B, L, dim]`` -> ``[B, L, dim]``.

    ``x, z = in_proj(u)`` (each ``[B, L, expand * dim]``); ``y = (forward(x) + flip(backward(flip(x)))) / 2``, the
    two directions with their own convolution and state-space parameters; output ``out_proj(y * silu(z))``.
    """

    def __init__(self, dim: int, d_state: int = 16, expand: int = 2, d_conv: int = 4) -> None:
        super().__init__()
        width = expand * dim
        self.in_proj = nn.Linear(dim, 2 * width, bias=False)
        self.forward_ssm = SelectiveSSM(width, d_state, d_conv)
        self.backward_ssm = SelectiveSSM(width, d_state, d_conv)
        self.out_proj = nn.Linear(width, dim, bias=False)

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        x, z = self.in_proj(u).chunk(2, dim=-1)
        y = self.forward_ssm(x) + self.backward_ssm(x.flip([1])).flip([1])
        return self.out_proj(0.5 * y * F.silu(z))


class VimBlock(nn.Module):
    """Pre-norm residual block ``x + BidirectionalMamba(RMSNorm(x))``, ``[B, L, dim]`` -> same."""

    def __init__(self, dim: int, d_state: int = 16, expand: int = 2, d_conv: int = 4) -> None:
        super().__init__()
        self.norm = RMSNorm(dim)
        self.mixer = BidirectionalMamba(dim, d_state, expand, d_conv)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.mixer(self.norm(x))


class _FeatureInfo:
    """What HybridMedNet reads of a timm ``features_only`` model: the channels and strides of the 4 maps."""

    def __init__(self, channels: Sequence[int], reductions: Sequence[int]) -> None:
        self._channels, self._reductions = list(channels), list(reductions)

    def channels(self) -> list[int]:
        return list(self._channels)

    def reduction(self) -> list[int]:
        return list(self._reductions)


class VisionMambaBackbone(nn.Module):
    """Vim backbone giving 4 maps ``[B, C_i, H / s_i, W / s_i]`` at strides ``s = (4, 8, 16, 32)`` with
    ``C = (dim / 4, dim / 2, dim, dim)`` (see the module docstring).

    Args:
        img_size: input ``(H, W)``, both multiples of 32 (the learned positions are for this grid).
        in_channels: image channels.
        dim: token width.
        depth: number of Vim blocks (a multiple of 4: the maps are taken at each quarter).
        d_state, expand, d_conv: Mamba state size, expansion of the mixer width, causal convolution width.
        patch_size: side of the square patches (16 in Vim).
    """

    def __init__(
        self,
        img_size: Sequence[int],
        in_channels: int = 1,
        dim: int = 384,
        depth: int = 24,
        d_state: int = 16,
        expand: int = 2,
        d_conv: int = 4,
        patch_size: int = 16,
    ) -> None:
        super().__init__()
        size = tuple(int(s) for s in img_size)
        if len(size) != 2 or any(s < 2 * patch_size or s % (2 * patch_size) for s in size):
            raise ValueError(
                f"Vision Mamba needs img_size=(H, W) with both sides multiples of {2 * patch_size}, got {img_size}"
            )
        if depth < 4 or depth % 4 or dim % 4:
            raise ValueError(f"Vision Mamba needs depth and dim multiples of 4, got depth={depth}, dim={dim}")
        self.img_size = size
        self.grid = (size[0] // patch_size, size[1] // patch_size)
        self.patch_embed = nn.Conv2d(in_channels, dim, patch_size, stride=patch_size)
        self.pos_embed = nn.Parameter(torch.zeros(1, self.grid[0] * self.grid[1], dim))
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        self.blocks = nn.ModuleList([VimBlock(dim, d_state, expand, d_conv) for _ in range(depth)])
        # indices of the blocks whose token maps are the 4 scales
        self.taps = [depth // 4 - 1, depth // 2 - 1, 3 * depth // 4 - 1, depth - 1]
        self.norms = nn.ModuleList([RMSNorm(dim) for _ in self.taps])
        self.resample = nn.ModuleList(
            [
                nn.Sequential(
                    nn.ConvTranspose2d(dim, dim // 2, 2, stride=2),
                    nn.GELU(),
                    nn.ConvTranspose2d(dim // 2, dim // 4, 2, stride=2),
                ),
                nn.ConvTranspose2d(dim, dim // 2, 2, stride=2),
                nn.Identity(),
                nn.MaxPool2d(2),
            ]
        )
        self.feature_info = _FeatureInfo([dim // 4, dim // 2, dim, dim], [4, 8, 16, 32])

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """``[B, in_channels, H, W]`` (``(H, W) = img_size``) -> 4 maps, finest first."""
        tokens = self.patch_embed(x)  # [B, dim, H / 16, W / 16]
        batch, dim, rows, cols = tokens.shape
        if rows != self.grid[0] or cols != self.grid[1]:
            raise ValueError(f"Vision Mamba was built for {self.img_size} inputs, got {list(x.shape[-2:])}")
        tokens = tokens.flatten(2).transpose(1, 2) + self.pos_embed  # [B, L, dim], row-major
        tapped: list[torch.Tensor] = []
        for index, block in enumerate(self.blocks):
            if not torch.jit.is_scripting() and self.training and torch.is_grad_enabled():
                tokens = checkpoint(block, tokens, use_reentrant=False)
            else:
                tokens = block(tokens)
            if index in self.taps:
                tapped.append(tokens)
        features: list[torch.Tensor] = []
        for level, (norm, resample) in enumerate(zip(self.norms, self.resample)):
            grid = norm(tapped[level]).transpose(1, 2).reshape(batch, dim, rows, cols)
            features.append(resample(grid))
        return features
