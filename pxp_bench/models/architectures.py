"""The embedded zoo's architectures, small enough to train on digits on a CPU in about a minute.

ReLUs are not in-place so that captum's layer methods and zennit's hooks work on them unchanged.
"""

from __future__ import annotations

from torch import nn
from torchvision.models.resnet import BasicBlock
from torchvision.models.vision_transformer import VisionTransformer


def _conv_bn(in_channels: int, out_channels: int) -> list[nn.Module]:
    return [nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels), nn.ReLU()]


class DigitsVGG(nn.Module):
    """VGG-style: conv-BN-ReLU stages with max pooling, then a two-layer fully connected classifier."""

    def __init__(self, num_classes: int = 10, in_channels: int = 1) -> None:
        super().__init__()
        self.features = nn.Sequential(
            *_conv_bn(in_channels, 16), *_conv_bn(16, 16), nn.MaxPool2d(2),
            *_conv_bn(16, 32), *_conv_bn(32, 32), nn.MaxPool2d(2),
            *_conv_bn(32, 64), nn.MaxPool2d(2),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Linear(64 * 4 * 4, 128), nn.ReLU(), nn.Dropout(0.3), nn.Linear(128, num_classes),
        )

    def forward(self, x):
        return self.classifier(self.features(x))


class DigitsResNet(nn.Module):
    """A three-stage ResNet of torchvision ``BasicBlock``s; stages 2 and 3 downsample with 1x1 convs."""

    def __init__(self, num_classes: int = 10, in_channels: int = 1) -> None:
        super().__init__()
        self.stem = nn.Sequential(*_conv_bn(in_channels, 16))
        self.layer1 = self._block(16, 16, stride=1)
        self.layer2 = self._block(16, 32, stride=2)
        self.layer3 = self._block(32, 64, stride=2)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(64, num_classes)

    @staticmethod
    def _block(in_channels: int, out_channels: int, stride: int) -> BasicBlock:
        downsample = None
        if stride != 1 or in_channels != out_channels:
            downsample = nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                                       nn.BatchNorm2d(out_channels))
        block = BasicBlock(in_channels, out_channels, stride=stride, downsample=downsample)
        block.relu = nn.ReLU()
        return block

    def forward(self, x):
        x = self.layer3(self.layer2(self.layer1(self.stem(x))))
        return self.fc(self.pool(x).flatten(1))


def digits_vit(num_classes: int = 10, in_channels: int = 1) -> VisionTransformer:
    """A torchvision ViT for 1x32x32 digits: 4x4 patches, 4 blocks of 4 heads, width 64.

    The MLP is narrow (32 hidden units per block, half the width) on purpose: with the usual 4x width a
    ViT this small is so over-parameterised on digits that every method stays flat on neurons up to
    90 % sparsity, and the standard grid could not separate methods.
    """
    model = VisionTransformer(image_size=32, patch_size=4, num_layers=4, num_heads=4, hidden_dim=64,
                              mlp_dim=32, num_classes=num_classes)
    model.conv_proj = nn.Conv2d(in_channels, 64, kernel_size=4, stride=4)
    nn.init.trunc_normal_(model.heads.head.weight, std=0.02)  # torchvision zero-initialises the head
    return model


ARCHITECTURES = {"digits-vgg": DigitsVGG, "digits-resnet": DigitsResNet, "digits-vit": digits_vit}
