"""Plain ``nn.Module`` networks: :class:`MLP` and :class:`ConvNet`, as in TorchRL.

They read and return tensors (not tensordicts); wrap them in an :class:`Actor` or a
``TensorDictModule`` to use them as policies.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

__all__ = ["MLP", "ConvNet", "SquashDims"]

_DEFAULT_NUM_CELLS = 32
_DEFAULT_DEPTH = 3


def _resolve_cells(
    owner: str, num_cells: int | Sequence[int] | None, depth: int | None
) -> list[int]:
    """The width of each hidden layer from ``num_cells`` and ``depth`` (TorchRL's rules)."""
    if num_cells is None:
        depth = _DEFAULT_DEPTH if depth is None else depth
        return [_DEFAULT_NUM_CELLS] * depth
    if isinstance(num_cells, int):
        if depth is None:
            raise ValueError(
                f"{owner}(num_cells={num_cells}) needs depth= too: pass depth=3 or a list "
                f"of widths such as num_cells=[{num_cells}, {num_cells}]."
            )
        return [num_cells] * depth
    cells = [int(c) for c in num_cells]
    if depth is not None and depth != len(cells):
        raise ValueError(
            f"{owner} got depth={depth} but {len(cells)} widths in num_cells={cells}; "
            "pass only one of them, or make them agree."
        )
    return cells


def _per_layer(owner: str, name: str, value: int | Sequence[int], n: int) -> list[int]:
    if isinstance(value, int):
        return [value] * n
    values = list(value)
    if len(values) != n:
        raise ValueError(f"{owner} got {len(values)} {name} for {n} layers: pass one per layer.")
    return values


class _Net(nn.Sequential):
    """An ``nn.Sequential`` whose slices are plain ``nn.Sequential`` (its own ``__init__``
    takes hyper-parameters, not modules)."""

    def __getitem__(self, idx: int | slice) -> nn.Module:
        if isinstance(idx, slice):
            return nn.Sequential(*list(self)[idx])
        return super().__getitem__(idx)


class MLP(_Net):
    """A multi-layer perceptron: ``depth`` hidden layers, then an output layer.

    Each hidden layer is ``layer_class`` followed by ``activation_class``; the output layer
    is ``layer_class`` (followed by the activation only with ``activate_last_layer``).
    Several inputs are concatenated along the last dimension first.

    Args:
        in_features: the size of the input's last dimension. ``None`` makes the first layer
            an ``nn.LazyLinear`` that learns its size at the first call.
        out_features: the size of the output's last dimension; a shape such as ``(2, 3)``
            reshapes the last dimension of the output to it.
        num_cells: the width of the hidden layers: a list (one per layer), or an int used
            for ``depth`` layers. Defaults to ``[32, 32, 32]``.
        depth: the number of hidden layers. Defaults to ``len(num_cells)``, or 3.
        activation_class: the activation after each hidden layer. Defaults to ``nn.Tanh``.
        activation_kwargs: keyword arguments of ``activation_class``.
        activate_last_layer: whether the output layer is followed by the activation too.
        bias_last_layer: whether the output layer has a bias.
        layer_class: the layer type, ``nn.Linear`` by default; it is called as
            ``layer_class(in_features, out_features, bias=..., device=...)``.
        device: where the parameters are created.

    Raises:
        ValueError: ``out_features`` is missing, ``num_cells`` and ``depth`` disagree, or
            ``in_features`` is ``None`` with a ``layer_class`` other than ``nn.Linear``.

    Examples:
        >>> import torch
        >>> from rlpol.toolkit.modules import MLP
        >>> net = MLP(3, 1, num_cells=[32, 64])
        >>> net
        MLP(
          (0): Linear(in_features=3, out_features=32, bias=True)
          (1): Tanh()
          (2): Linear(in_features=32, out_features=64, bias=True)
          (3): Tanh()
          (4): Linear(in_features=64, out_features=1, bias=True)
        )
        >>> net(torch.zeros(10, 3)).shape
        torch.Size([10, 1])
        >>> MLP(out_features=(2, 3), depth=1)(torch.zeros(5, 4)).shape
        torch.Size([5, 2, 3])
    """

    def __init__(
        self,
        in_features: int | None = None,
        out_features: int | Sequence[int] | None = None,
        *,
        num_cells: int | Sequence[int] | None = None,
        depth: int | None = None,
        activation_class: type[nn.Module] = nn.Tanh,
        activation_kwargs: dict | None = None,
        activate_last_layer: bool = False,
        bias_last_layer: bool = True,
        layer_class: type[nn.Module] = nn.Linear,
        device: torch.device | str | None = None,
    ) -> None:
        if out_features is None:
            raise ValueError("MLP needs out_features=, the size of the output (an int or a shape).")
        cells = _resolve_cells("MLP", num_cells, depth)
        if isinstance(out_features, int):
            out_shape: tuple[int, ...] | None = None
            out_num = out_features
        else:
            out_shape = tuple(int(d) for d in out_features)
            out_num = math.prod(out_shape)
        if in_features is None and layer_class is not nn.Linear:
            raise ValueError(
                f"MLP(in_features=None) builds an nn.LazyLinear first layer, which only "
                f"works with layer_class=nn.Linear; pass in_features= for {layer_class.__name__}."
            )
        activation_kwargs = activation_kwargs or {}
        widths_in = [in_features, *cells]
        widths_out = [*cells, out_num]
        layers: list[nn.Module] = []
        for i, (w_in, w_out) in enumerate(zip(widths_in, widths_out)):
            last = i == len(cells)
            bias = bias_last_layer if last else True
            if w_in is None:
                layers.append(nn.LazyLinear(w_out, bias=bias, device=device))
            else:
                layers.append(layer_class(w_in, w_out, bias=bias, device=device))
            if not last or activate_last_layer:
                layers.append(activation_class(**activation_kwargs))
        super().__init__(*layers)
        self.in_features = in_features
        self.out_features = out_features
        self.num_cells = cells
        self.depth = len(cells)
        self._out_shape = out_shape

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        """Map ``[*B, in_features]`` (or several tensors, concatenated) to ``[*B, out]``."""
        x = inputs[0] if len(inputs) == 1 else torch.cat(inputs, dim=-1)
        out = super().forward(x)
        if self._out_shape is not None:
            out = out.reshape(*out.shape[:-1], *self._out_shape)
        return out


class SquashDims(nn.Module):
    """Flatten the last ``ndims_in`` dimensions into one (ConvNet's default aggregator).

    Examples:
        >>> import torch
        >>> from rlpol.toolkit.modules import SquashDims
        >>> SquashDims()(torch.zeros(5, 8, 4, 4)).shape
        torch.Size([5, 128])
    """

    def __init__(self, ndims_in: int = 3) -> None:
        super().__init__()
        self.ndims_in = ndims_in

    def forward(self, value: torch.Tensor) -> torch.Tensor:
        return value.flatten(-self.ndims_in, -1)


class ConvNet(_Net):
    """A stack of 2-d convolutions for pixel inputs ``[*B, C, H, W]``, then an aggregator.

    Each layer is ``nn.Conv2d`` followed by ``activation_class``; the aggregator (by default
    :class:`SquashDims`) flattens ``[C', H', W']`` into one feature dimension. Any number of
    leading batch dimensions is accepted (none included).

    Args:
        in_features: the number of input channels ``C``. ``None`` makes the first layer an
            ``nn.LazyConv2d``.
        depth: the number of convolution layers. Defaults to ``len(num_cells)``, or 3.
        num_cells: the output channels of each layer: a list, or an int used for ``depth``
            layers. Defaults to ``[32, 32, 32]``.
        kernel_sizes: one kernel size for every layer, or one per layer. Defaults to 3.
        strides: one stride for every layer, or one per layer. Defaults to 1.
        paddings: one padding for every layer, or one per layer. Defaults to 0.
        activation_class: the activation after each convolution. Defaults to ``nn.ELU``.
        activation_kwargs: keyword arguments of ``activation_class``.
        bias_last_layer: whether the last convolution has a bias.
        aggregator_class: the module applied last, ``SquashDims`` by default; ``None`` keeps
            the ``[*B, C', H', W']`` feature maps.
        aggregator_kwargs: keyword arguments of ``aggregator_class``.
        device: where the parameters are created.

    Examples:
        >>> import torch
        >>> from rlpol.toolkit.modules import ConvNet
        >>> net = ConvNet(3, num_cells=[8, 16], kernel_sizes=3, strides=2)
        >>> net(torch.zeros(4, 3, 32, 32)).shape
        torch.Size([4, 784])
        >>> net(torch.zeros(2, 5, 3, 32, 32)).shape  # two batch dims
        torch.Size([2, 5, 784])
    """

    def __init__(
        self,
        in_features: int | None = None,
        depth: int | None = None,
        num_cells: int | Sequence[int] | None = None,
        kernel_sizes: int | Sequence[int] = 3,
        strides: int | Sequence[int] = 1,
        paddings: int | Sequence[int] = 0,
        *,
        activation_class: type[nn.Module] = nn.ELU,
        activation_kwargs: dict | None = None,
        bias_last_layer: bool = True,
        aggregator_class: type[nn.Module] | None = SquashDims,
        aggregator_kwargs: dict | None = None,
        device: torch.device | str | None = None,
    ) -> None:
        cells = _resolve_cells("ConvNet", num_cells, depth)
        n = len(cells)
        kernels = _per_layer("ConvNet", "kernel_sizes", kernel_sizes, n)
        strides_ = _per_layer("ConvNet", "strides", strides, n)
        pads = _per_layer("ConvNet", "paddings", paddings, n)
        activation_kwargs = activation_kwargs or {}
        channels_in = [in_features, *cells[:-1]]
        layers: list[nn.Module] = []
        for i, (c_in, c_out, k, s, p) in enumerate(
            zip(channels_in, cells, kernels, strides_, pads)
        ):
            bias = bias_last_layer if i == n - 1 else True
            if c_in is None:
                conv = nn.LazyConv2d(c_out, k, stride=s, padding=p, bias=bias, device=device)
            else:
                conv = nn.Conv2d(c_in, c_out, k, stride=s, padding=p, bias=bias, device=device)
            layers += [conv, activation_class(**activation_kwargs)]
        if aggregator_class is not None:
            layers.append(aggregator_class(**(aggregator_kwargs or {})))
        super().__init__(*layers)
        self.in_features = in_features
        self.num_cells = cells
        self.depth = n

    @classmethod
    def default_atari_dqn(cls, num_actions: int) -> nn.Sequential:
        """The Nature DQN (Mnih et al., 2015) Q-network, as TorchRL builds it.

        ``nn.Sequential(ConvNet, MLP)``: three ReLU convolutions (32, 64, 64 channels,
        kernels 8, 4, 3, strides 4, 2, 1, no padding) flattened by :class:`SquashDims`,
        then a ReLU :class:`MLP` with one hidden layer of 512 units and ``num_actions``
        outputs. Both input sizes are lazy (``nn.LazyConv2d``, ``nn.LazyLinear``), so the
        weights are created at the first call: for float32 ``[*B, 4, 84, 84]`` frames the
        maps are ``[*B, 32, 20, 20]``, ``[*B, 64, 9, 9]``, ``[*B, 64, 7, 7]``, the features
        ``[*B, 3136]`` and the output ``[*B, num_actions]`` (float32 Q-values).

        Args:
            num_actions: the number of discrete actions of the game (the output size).

        Returns:
            The network, with uninitialised (lazy) first layers until its first call.

        Examples:
            >>> import torch
            >>> from rlpol.toolkit.modules import ConvNet
            >>> net = ConvNet.default_atari_dqn(6)
            >>> net(torch.zeros(2, 4, 84, 84)).shape
            torch.Size([2, 6])
            >>> net[1][0]  # the MLP's first layer, materialised by that call
            Linear(in_features=3136, out_features=512, bias=True)
        """
        cnn = cls(
            activation_class=nn.ReLU,
            num_cells=[32, 64, 64],
            kernel_sizes=[8, 4, 3],
            strides=[4, 2, 1],
        )
        mlp = MLP(activation_class=nn.ReLU, out_features=num_actions, num_cells=[512])
        return nn.Sequential(cnn, mlp)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        """Map ``[*B, C, H, W]`` to ``[*B, features]`` (or ``[*B, C', H', W']``)."""
        batch = inputs.shape[:-3]
        if len(batch) > 1:
            inputs = inputs.flatten(0, len(batch) - 1)
        out = super().forward(inputs)
        if len(batch) > 1:
            out = out.unflatten(0, batch)
        return out
