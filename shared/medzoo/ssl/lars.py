"""LARS: SGD with momentum and a layer-wise trust ratio (You et al. 2017), as used by SimCLR and REMEDIS."""

from __future__ import annotations

from collections.abc import Iterable

import torch

__all__ = ["LARS", "lars_param_groups"]


def lars_param_groups(module: torch.nn.Module, weight_decay: float) -> list[dict]:
    """Two parameter groups: weights (decayed and adapted) and biases/normalisation parameters (neither).

    A parameter is in the second group when it has one dimension: every bias and every BatchNorm/GroupNorm/LayerNorm
    scale and shift, as SimCLR excludes them by name. Parameters that do not require gradients are left out.

    Returns:
        ``[{"params": [...], "weight_decay": weight_decay, "lars_adapt": True},
        {"params": [...], "weight_decay": 0.0, "lars_adapt": False}]``
    """
    trainable = [p for p in module.parameters() if p.requires_grad]
    if not trainable:
        raise ValueError("the module has no trainable parameters")
    return [
        {"params": [p for p in trainable if p.ndim > 1], "weight_decay": weight_decay, "lars_adapt": True},
        {"params": [p for p in trainable if p.ndim <= 1], "weight_decay": 0.0, "lars_adapt": False},
    ]


class LARS(torch.optim.Optimizer):
    """Layer-wise adaptive rate scaling on top of SGD with (heavy-ball) momentum, following SimCLR's implementation.

    For each parameter tensor ``w`` with gradient ``g`` in a group with ``lars_adapt=True``::

        g = g + weight_decay * w
        trust = eta * ||w|| / ||g||      (1 if either norm is 0)
        v = momentum * v + lr * trust * g
        w = w - v

    In a group with ``lars_adapt=False`` the trust ratio is 1 (plain momentum SGD); pass such groups with
    ``weight_decay=0`` for biases and normalisation parameters, as :func:`lars_param_groups` does.

    Args:
        params: parameters or parameter groups (a group may set ``lars_adapt``, ``weight_decay``, ``lr``, ...).
        lr: base learning rate (SimCLR: 0.3 x batch / 256, or 0.075 x sqrt(batch) for small batches).
        momentum: momentum of the velocity ``v``.
        weight_decay: L2 coefficient added to the gradient.
        eta: trust coefficient.

    Example::

        net = torch.nn.Linear(4, 2)
        opt = LARS(lars_param_groups(net, weight_decay=1e-6), lr=0.3)
    """

    def __init__(
        self,
        params: Iterable[torch.Tensor] | Iterable[dict],
        lr: float,
        momentum: float = 0.9,
        weight_decay: float = 0.0,
        eta: float = 0.001,
    ) -> None:
        if lr < 0 or momentum < 0 or weight_decay < 0 or eta <= 0:
            raise ValueError(
                f"invalid LARS settings: lr={lr}, momentum={momentum}, weight_decay={weight_decay}, eta={eta}"
            )
        super().__init__(
            params, {"lr": lr, "momentum": momentum, "weight_decay": weight_decay, "eta": eta, "lars_adapt": True}
        )

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for w in group["params"]:
                if w.grad is None:
                    continue
                g = w.grad
                if group["weight_decay"]:
                    g = g.add(w, alpha=group["weight_decay"])
                scaled_lr = group["lr"]
                if group["lars_adapt"]:
                    w_norm, g_norm = torch.linalg.vector_norm(w), torch.linalg.vector_norm(g)
                    trust = torch.where(
                        (w_norm > 0) & (g_norm > 0), group["eta"] * w_norm / g_norm, torch.ones_like(w_norm)
                    )
                    scaled_lr = scaled_lr * trust
                state = self.state[w]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = torch.zeros_like(w)
                velocity = state["momentum_buffer"]
                velocity.mul_(group["momentum"]).add_(g * scaled_lr)
                w.sub_(velocity)
        return loss
