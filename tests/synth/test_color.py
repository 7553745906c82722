import colorsys

import torch

from anomalysynth.synth.color import shift_hue_saturation


def test_hue_and_saturation_shift_match_colorsys_hsv():
    gen = torch.Generator().manual_seed(0)
    pixels = torch.rand(6, 3, 8, 8, generator=gen)
    pixels[0, :, :2] = 0.5  # grey pixels: hue 0, so added saturation makes them red
    pixels[1, :, :1] = 0.0  # black
    pixels[2, 1] = pixels[2, 0]  # r == g ties
    hue = torch.tensor([0.0, 0.1, -0.3, 0.45, 0.9, -0.05])
    saturation = torch.tensor([0.0, 0.2, -0.2, 0.1, -1.0, 0.5])
    out = shift_hue_saturation(pixels, hue, saturation)
    for i in range(pixels.shape[0]):
        for y in range(8):
            for x in range(8):
                h, s, v = colorsys.rgb_to_hsv(*pixels[i, :, y, x].tolist())
                s = min(max(s + float(saturation[i]), 0.0), 1.0)
                expected = colorsys.hsv_to_rgb((h + float(hue[i])) % 1.0, s, v)
                torch.testing.assert_close(out[i, :, y, x], torch.tensor(expected), atol=2e-6, rtol=0)


def test_hue_shift_alone_keeps_value_and_grey_images_are_unchanged():
    pixels = torch.rand(3, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    out = shift_hue_saturation(pixels, torch.tensor([0.25, 0.5, 0.75]))
    torch.testing.assert_close(out.amax(dim=1), pixels.amax(dim=1))
    assert not torch.allclose(out, pixels)
    grey = pixels[:, :1]
    assert shift_hue_saturation(grey, torch.tensor([0.25, 0.5, 0.75])) is grey
