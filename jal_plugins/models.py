"""Networks of the reference recipes (losses-and-noise.md §4), registered through ``register_models``."""

from __future__ import annotations

import inspect

from torch import nn
from torch.nn import functional as F

from jal_plugins import checks


def _scaled(channels: int, width: float) -> int:
    return max(1, round(channels * width))


def _check_width(width) -> float:
    return checks.positive("width", width)


def input_spec(shape: tuple) -> tuple[int, int]:
    """``(in_channels, input_size)`` of one sample's shape: (C, H, W) images or (F,) feature vectors."""
    shape = tuple(int(s) for s in shape)
    if len(shape) == 1:
        return shape[0], 1
    if len(shape) == 3:
        if shape[1] != shape[2]:
            raise ValueError(f"images must be square for the built-in networks, got {shape[1]}x{shape[2]}")
        return shape[0], shape[1]
    raise ValueError(f"inputs must be feature vectors (N, F) or images (N, C, H, W); one sample has shape {shape}")


def check_input(name: str, factory, shape: tuple) -> None:
    """Refuse feature vectors for a network that needs images (its factory has ``needs_images = True``)."""
    if len(shape) == 1 and getattr(factory, "needs_images", False):
        raise ValueError(
            f"model {name} needs images (C, H, W); the dataset gives feature vectors of {shape[0]} features"
        )


def _check_side(name: str, input_size: int, pools: int) -> int:
    """The side after ``pools`` 2x2 max-pools, which must leave at least one pixel."""
    side = int(input_size) // 2**pools
    if side < 1:
        raise ValueError(f"{name} needs images of at least {2**pools} px, got input_size={input_size!r}")
    return side


def auto_model(shape: tuple) -> str:
    """``mlp`` for feature vectors, ``cnn8`` for colour images of 32 px or more, ``cnn4`` for the rest."""
    if len(shape) == 1:
        return "mlp"
    return "cnn8" if shape[0] == 3 and shape[1] >= 32 else "cnn4"


def takes_input_size(factory) -> bool:
    """Whether a network factory accepts ``input_size`` (the built-in CNNs and MLP do)."""
    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        return False
    return "input_size" in params or any(p.kind is p.VAR_KEYWORD for p in params.values())


def reference_init(module: nn.Module) -> None:
    """Kaiming-uniform (fan_in, ReLU) convs and Xavier-uniform linears; biases and BN keep PyTorch defaults."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_uniform_(m.weight, mode="fan_in", nonlinearity="relu")
        elif isinstance(m, nn.Linear):
            nn.init.xavier_uniform_(m.weight)


def _conv_block(c_in: int, c_out: int) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, 3, padding=1), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]


class CNN8(nn.Sequential):
    """The 8-layer CNN of the CIFAR-10 recipes (1,639,794 parameters at width 1, 32-px input)."""

    needs_images = True

    def __init__(self, num_classes=10, in_channels=3, *, width=1.0, input_size=32):
        w = _check_width(width)
        c1, c2, c3, fc = (_scaled(c, w) for c in (64, 128, 196, 256))
        side = _check_side("cnn8", input_size, 3)
        super().__init__(
            *_conv_block(in_channels, c1), *_conv_block(c1, c1), nn.MaxPool2d(2),
            *_conv_block(c1, c2), *_conv_block(c2, c2), nn.MaxPool2d(2),
            *_conv_block(c2, c3), *_conv_block(c3, c3), nn.MaxPool2d(2),
            nn.Flatten(1),
            nn.Linear(c3 * side * side, fc), nn.BatchNorm1d(fc), nn.ReLU(inplace=True),
            nn.Linear(fc, num_classes),
        )  # fmt: skip
        reference_init(self)


class CNN4(nn.Sequential):
    """The 4-layer CNN of the MNIST recipes (422,090 parameters at width 1, 28-px input)."""

    needs_images = True

    def __init__(self, num_classes=10, in_channels=1, *, width=1.0, input_size=28):
        w = _check_width(width)
        c1, c2, fc = (_scaled(c, w) for c in (32, 64, 128))
        side = _check_side("cnn4", input_size, 2)
        super().__init__(
            *_conv_block(in_channels, c1), nn.MaxPool2d(2),
            *_conv_block(c1, c2), nn.MaxPool2d(2),
            nn.Flatten(1),
            nn.Linear(c2 * side * side, fc), nn.BatchNorm1d(fc), nn.ReLU(inplace=True),
            nn.Linear(fc, num_classes),
        )  # fmt: skip
        reference_init(self)


class MLP(nn.Sequential):
    """Fully connected network for tabular (or flattened) input: ``in_channels`` input features.

    One hidden layer of 384 by default: on noisy digits (``benchmarks/choose_a.py``, JAL-CE choosing
    its settings) it beat two layers of (128, 64) and one of 256 under symmetric and pair-flip noise,
    also on seeds the choice was not made on; 512 was no better and slower.
    """

    def __init__(self, num_classes=2, in_channels=1, *, hidden=(384,), input_size=1):
        layers: list[nn.Module] = [nn.Flatten(1)]
        width = in_channels * input_size * input_size
        for h in hidden:
            layers += [nn.Linear(width, int(h)), nn.ReLU(inplace=True)]
            width = int(h)
        super().__init__(*layers, nn.Linear(width, num_classes))
        reference_init(self)


class BasicBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut = nn.Sequential()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class ResNet34(nn.Module):
    """CIFAR ResNet-34: 3x3 stem without max-pool, [3, 4, 6, 3] basic blocks, 4x4 average pool."""

    needs_images = True

    def __init__(self, num_classes=100, in_channels=3, *, width=1.0):
        super().__init__()
        w = _check_width(width)
        widths = [_scaled(c, w) for c in (64, 128, 256, 512)]
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, widths[0], 3, 1, 1, bias=False), nn.BatchNorm2d(widths[0]), nn.ReLU(inplace=True)
        )
        blocks, c_in = [], widths[0]
        for c_out, n, stride in zip(widths, (3, 4, 6, 3), (1, 2, 2, 2)):
            for i in range(n):
                blocks.append(BasicBlock(c_in, c_out, stride if i == 0 else 1))
                c_in = c_out
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(c_in, num_classes)
        reference_init(self)

    def forward(self, x):
        out = self.blocks(self.stem(x))
        # Deterministic-safe global average (AdaptiveAvgPool2d backward is not deterministic on CUDA).
        return self.fc(out.mean((2, 3)))


def resnet50(num_classes=50, in_channels=3, *, weights=None, zero_init_residual=True):
    """torchvision ResNet-50 for 224-px images (WebVision: random init, zero-init residual)."""
    from torchvision.models import resnet50 as tv_resnet50

    if in_channels != 3:
        raise ValueError(f"resnet50 takes 3-channel images, got in_channels={in_channels}")
    if weights is None:
        return tv_resnet50(weights=None, num_classes=num_classes, zero_init_residual=zero_init_residual)
    model = tv_resnet50(weights=weights)
    model.fc = nn.Linear(model.fc.in_features, num_classes)
    return model


resnet50.needs_images = True

CATALOGUE = {
    "cnn8": (CNN8, ("cifar-cnn", "toymodel")),
    "cnn4": (CNN4, ("mnist-cnn",)),
    "mlp": (MLP, ()),
    "resnet34": (ResNet34, ()),
    "resnet50": (resnet50, ()),
}


def register_all(register) -> None:
    for name, (factory, aliases) in CATALOGUE.items():
        register(name, factory, aliases=aliases)
