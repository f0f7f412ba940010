"""The forward pass of a pack, written once (``forward``) over the blocks read from the template
model, on one of two sets of layers: ``Batched``, K members at once on the stacked ``(K, ...)``
variables (XLA, GPUs: static shapes), or ``Member``, one member on its own rows with the ops,
shapes and constants its Keras layers run (the CPU's loop mode: a standalone fit's weights, bit
for bit). Each layer is the ``batched`` or ``member`` form of its op module (fused/ops/)."""

from __future__ import annotations

from typing import Any, Protocol

from sweeper.train.fused.ops import activations, batchnorm, conv, dense, dropout, pooling
from sweeper.train.fused.structure import Block


class Layers(Protocol):
    """A set of layers ``forward`` strings together. ``moving``: the new moving statistics by
    weight position, filled in training; ``drops``: whether its Dropout layers act."""

    moving: dict[int, Any]
    drops: bool

    def dense(self, h: Any, j: int) -> Any: ...
    def conv(self, h: Any, j: int) -> Any: ...
    def batchnorm(self, h: Any, block: Block) -> Any: ...
    def activation(self, h: Any, block: Block) -> Any: ...
    def dropout(self, h: Any, layer: int) -> Any: ...
    def pool(self, h: Any, size: int) -> Any: ...


def forward(blocks: tuple[Block, ...], out: int, layers: Layers, h: Any) -> tuple[Any, dict[int, Any]]:
    """Logits of the inputs ``h`` through the hidden blocks (conv or dense [+ batch norm] +
    activation [+ dropout] [+ max pool]) and the output Dense at weight position ``out``; and, in
    training, the batch norm layers' new moving statistics by weight position."""
    drop = 0  # dropout layers passed
    for block in blocks:
        h = (layers.conv if block.kind == "conv" else layers.dense)(h, block.kernel)
        if block.bn is not None:
            h = layers.batchnorm(h, block)
        h = layers.activation(h, block)
        if block.dropout and layers.drops:
            h = layers.dropout(h, drop)
        drop += block.dropout
        if block.pool:
            h = layers.pool(h, block.pool_size)
    return layers.dense(h, out), layers.moving


class Batched:
    """K members' layers on the stacked variables ``w``: activations (K, B, ...); the first
    layer's input may be rows every member shares, (B, ...) (``shared``). ``mask`` (K, B), given
    in training: each member's real rows (masked batch norm statistics; dropout acts).
    ``dropout``: the members' Dropout seeds (K, layers), steps, rates and scales (K,)."""

    def __init__(self, tf: Any, w: list[Any], k: int, conv_mode: str, activation: str, shared: bool,
                 mask: Any, drops: bool, dropout: tuple[Any, Any, Any, Any]) -> None:
        self.tf, self.w, self.k, self.conv_mode, self.name = tf, w, k, conv_mode, activation
        self.shared, self.mask, self.drops, self.dropout_args = shared, mask, drops, dropout
        self.moving: dict[int, Any] = {}

    def dense(self, h: Any, j: int) -> Any:
        if len(h.shape) > 3:  # Flatten
            h = dense.flatten_batched(self.tf, h, self.k)
        h, self.shared = dense.batched(self.tf, h, self.w[j], self.w[j + 1], self.shared), False
        return h

    def conv(self, h: Any, j: int) -> Any:
        h, self.shared = conv.batched(self.tf, h, self.w[j], self.w[j + 1], self.k, self.shared, self.conv_mode), False
        return h

    def batchnorm(self, h: Any, block: Block) -> Any:
        j = block.bn
        h, moving = batchnorm.batched(self.tf, h, self.w[j:j + 4], self.k, self.mask, block.bn_momentum,
                                      block.bn_epsilon)
        if moving is not None:
            self.moving[j + 2], self.moving[j + 3] = moving
        return h

    def activation(self, h: Any, block: Block) -> Any:
        alpha = None if block.prelu is None else self.w[block.prelu]
        return activations.batched(self.tf, h, self.name, alpha, block.slope)

    def dropout(self, h: Any, layer: int) -> Any:
        return dropout.batched(self.tf, h, *self.dropout_args, layer, self.k)

    def pool(self, h: Any, size: int) -> Any:
        return pooling.batched(self.tf, h, size, self.k)


class Member:
    """One member's layers on its variables ``w`` and its rows only (a partial batch stays
    partial). ``training``: batch statistics (and their moving update) and, when ``drops``,
    dropout with ``dropout``: its Dropout layers' seeds, its optimizer steps, rate and scale."""

    def __init__(self, tf: Any, w: list[Any], activation: str, training: bool, drops: bool,
                 dropout: tuple[Any, ...] = ()) -> None:
        self.tf, self.w, self.name, self.training = tf, w, activation, training
        self.drops, self.dropout_args = training and drops, dropout
        self.moving: dict[int, Any] = {}

    def dense(self, h: Any, j: int) -> Any:
        if len(h.shape) > 2:  # Flatten
            h = dense.flatten_member(h)
        return dense.member(h, self.w[j], self.w[j + 1])

    def conv(self, h: Any, j: int) -> Any:
        return conv.member(h, self.w[j], self.w[j + 1])

    def batchnorm(self, h: Any, block: Block) -> Any:
        j = block.bn
        h, moving = batchnorm.member(self.tf, h, self.w[j:j + 4], self.training, block.bn_momentum, block.bn_epsilon)
        if moving is not None:
            self.moving[j + 2], self.moving[j + 3] = moving
        return h

    def activation(self, h: Any, block: Block) -> Any:
        alpha = None if block.prelu is None else self.w[block.prelu]
        return activations.member(h, self.name, alpha, block.slope)

    def dropout(self, h: Any, layer: int) -> Any:
        seeds, step, rate, scale = self.dropout_args
        return dropout.member(self.tf, h, seeds[layer], step, rate, scale)

    def pool(self, h: Any, size: int) -> Any:
        return pooling.member(h, size)
