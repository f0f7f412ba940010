"""What every member of a pack shares, read from the template Keras model its family's builder
makes (train/models/): the layer sequence, the positions of each layer's weights in the Keras
weight list, batch norm's momentum and epsilon, LeakyReLU's slope, the pools, where Dropout sits,
and the builder's default dropout. The fused forward (forward.py) follows what is read here,
so a change to a builder changes the fused form with it, or is refused in one line."""

from __future__ import annotations

import functools
import inspect
from dataclasses import dataclass, field
from typing import Any, Callable


@dataclass(frozen=True)
class MLPStructure:
    """What all members of a pack share: ``build_mlp``'s structural arguments."""

    units: int = 64
    batchnorm: bool = False
    activation: str = "relu"
    kernel_initializer: str = "glorot_uniform"


@dataclass(frozen=True)
class CNNStructure:
    """``build_cnn``'s structural arguments."""

    filters: int = 32
    units: int = 128
    batchnorm: bool = False
    activation: str = "relu"
    kernel_initializer: str = "glorot_uniform"


Structure = MLPStructure | CNNStructure


@dataclass(frozen=True)
class Block:
    """One hidden block: conv or dense [+ BN] + activation [+ dropout] [+ max pool]; the positions
    of its weights in the Keras weight list, and the settings of its layers."""

    kind: str  # "conv" or "dense"
    kernel: int  # its kernel; the bias follows
    bn: int | None  # gamma; beta, moving mean and moving variance follow
    prelu: int | None  # PReLU's alpha
    dropout: bool
    pool: bool
    bn_momentum: float = 0.99
    bn_epsilon: float = 1e-3
    slope: float | None = None  # LeakyReLU's negative slope
    pool_size: int = 2


@dataclass(frozen=True)
class Layout:
    blocks: tuple[Block, ...]
    out: int  # the output kernel's position (its bias follows)
    count: int  # weights in all
    extra: dict[str, Any] = field(default_factory=dict, compare=False)


def family_builder(structure: Structure) -> Callable[..., Any]:
    if isinstance(structure, CNNStructure):
        from sweeper.train.models.cnn import build_cnn

        return build_cnn
    from sweeper.train.models.mlp import build_mlp

    return build_mlp


@functools.lru_cache(maxsize=None)
def default_dropout(model: str) -> float:
    """The family builder's own default dropout (what a member without ``model__dropout`` has)."""
    structure = CNNStructure() if model == "cnn" else MLPStructure()
    return float(inspect.signature(family_builder(structure)).parameters["dropout"].default)


def template_model(structure: Structure) -> Any:
    """The family's Keras model for ``structure``, with a dropout so that its Dropout layers show."""
    meta = {"X_shape_": (None, 8, 8, 1), "n_classes_": 10}
    return family_builder(structure)(meta, dropout=0.5, **vars(structure))


@functools.lru_cache(maxsize=64)
def layout(structure: Structure) -> tuple[tuple[Block, ...], int, int]:
    """The hidden blocks, the output kernel's position and the weight count, read from the
    template model (built once per structure and process)."""
    found = read_layout(template_model(structure))
    return found.blocks, found.out, found.count


def read_layout(model: Any) -> Layout:
    """A Keras model as fused blocks; a layer with no fused form is refused, naming it."""
    blocks: list[dict[str, Any]] = []
    index = 0
    for layer in model.layers:
        kind = type(layer).__name__
        if kind in ("Dense", "Conv2D"):
            blocks.append({"kind": "conv" if kind == "Conv2D" else "dense", "kernel": index, "bn": None,
                           "prelu": None, "dropout": False, "pool": False})
            activation = getattr(layer.activation, "__name__", "")
            if activation not in ("linear", "softmax"):
                raise ValueError(f"{layer.name}: an activation inside {kind} has no fused form")
        elif kind == "BatchNormalization":
            blocks[-1].update(bn=index, bn_momentum=float(layer.momentum), bn_epsilon=float(layer.epsilon))
        elif kind == "PReLU":
            blocks[-1]["prelu"] = index
        elif kind == "LeakyReLU":
            blocks[-1]["slope"] = float(layer.negative_slope)
        elif kind == "Dropout":
            blocks[-1]["dropout"] = True
        elif kind == "MaxPooling2D":
            blocks[-1].update(pool=True, pool_size=int(layer.pool_size[0]))
        elif kind not in ("InputLayer", "Flatten", "Activation"):
            raise ValueError(f"{layer.name}: a {kind} layer has no fused form")
        index += len(layer.weights)
    last = blocks.pop()
    if last["kind"] != "dense" or last["bn"] is not None or last["dropout"]:
        raise ValueError("the model's last layer is not a plain softmax Dense")
    return Layout(tuple(Block(**b) for b in blocks), last["kernel"], index)
