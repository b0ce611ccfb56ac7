"""The two preprocessing families reproduce the official transforms' geometry."""

from __future__ import annotations

import torch
from PIL import Image

from craft_bench.rewards.preprocess import OPENAI_MEAN, OPENAI_STD, PadToSquare, ResizeCenterCrop


def test_pad_to_square_keeps_the_whole_image_and_pads_with_black():
    wide = Image.new("RGB", (448, 224), (255, 255, 255))
    x = PadToSquare(224)([wide])[0]
    assert x.shape == (3, 224, 224)
    black = torch.tensor([-m / s for m, s in zip(OPENAI_MEAN, OPENAI_STD)])
    white = torch.tensor([(1 - m) / s for m, s in zip(OPENAI_MEAN, OPENAI_STD)])
    torch.testing.assert_close(x[:, :50, 112], black[:, None].expand(3, 50))  # 56 rows of padding above, 56 below
    torch.testing.assert_close(x[:, 60:160, 112], white[:, None].expand(3, 100), atol=1e-3, rtol=0)
    torch.testing.assert_close(x[:, 170:, 112], black[:, None].expand(3, 54))


def test_pad_to_square_pads_a_non_square_image_already_at_size():
    x = PadToSquare(224)([Image.new("RGB", (224, 100), (255, 0, 0))])
    assert x.shape == (1, 3, 224, 224)


def test_center_crop_drops_the_sides():
    im = Image.new("RGB", (400, 200), (0, 0, 255))
    im.paste((255, 0, 0), (0, 0, 50, 200))  # a red band that the centre crop removes
    x = ResizeCenterCrop(224)([im])[0]
    blue = torch.tensor(
        [
            (0 - OPENAI_MEAN[0]) / OPENAI_STD[0],
            (0 - OPENAI_MEAN[1]) / OPENAI_STD[1],
            (1 - OPENAI_MEAN[2]) / OPENAI_STD[2],
        ]
    )
    assert x.shape == (3, 224, 224)
    torch.testing.assert_close(x[:, :, 0].mean(1), blue, atol=1e-3, rtol=0)


def test_grayscale_and_rgba_become_rgb():
    for mode in ("L", "RGBA", "P"):
        im = Image.new(mode, (64, 32))
        assert PadToSquare(224)([im]).shape == (1, 3, 224, 224)
        assert ResizeCenterCrop(224)([im]).shape == (1, 3, 224, 224)
