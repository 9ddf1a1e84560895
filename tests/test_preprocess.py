"""The image → array rule of cnnkit.preprocess, step by step, on real files written here."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from cnnkit.errors import ImageError
from cnnkit.preprocess import apply_preprocessing, images_to_batch, to_array


def test_rgb_to_grey_is_the_601_luma(tmp_path):
    rgb = np.array([[[200, 100, 50], [0, 255, 0]]], np.uint8)
    Image.fromarray(rgb).save(tmp_path / "a.png")
    x = to_array(tmp_path / "a.png", (1, 2, 1))
    expected = np.round(rgb @ np.array([0.299, 0.587, 0.114])).astype(np.uint8)
    assert x.shape == (1, 2, 1) and x.dtype == np.uint8
    np.testing.assert_allclose(x[..., 0], expected, atol=1)


def test_grey_to_rgb_replicates(tmp_path):
    Image.fromarray(np.array([[7, 250]], np.uint8), "L").save(tmp_path / "g.png")
    x = to_array(tmp_path / "g.png", (1, 2, 3))
    np.testing.assert_array_equal(x, [[[7, 7, 7], [250, 250, 250]]])


def test_transparency_is_flattened_onto_black(tmp_path):
    rgba = np.array([[[200, 100, 50, 128], [10, 20, 30, 0], [1, 2, 3, 255]]], np.uint8)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "t.png")
    x = to_array(tmp_path / "t.png", (1, 3, 3))
    np.testing.assert_array_equal(x, [[[100, 50, 25], [0, 0, 0], [1, 2, 3]]])  # round(v·alpha/255)


def test_16_bit_takes_the_high_byte(tmp_path):
    Image.fromarray(np.array([[0xABCD, 0x00FF]], np.uint16)).save(tmp_path / "d.png")
    x = to_array(tmp_path / "d.png", (1, 2, 1))
    np.testing.assert_array_equal(x[..., 0], [[0xAB, 0x00]])


def test_float_images_are_refused():
    with pytest.raises(ImageError, match=r"floating-point image \(mode F\) is not supported"):
        to_array(Image.new("F", (2, 2)), (2, 2, 1))


def test_stretch_resizes_whole_image_and_error_refuses(tmp_path):
    Image.new("RGB", (20, 10), (255, 0, 0)).save(tmp_path / "wide.png")
    x = to_array(tmp_path / "wide.png", (8, 8, 3))
    assert x.shape == (8, 8, 3)
    np.testing.assert_array_equal(x[..., 0], 255)
    with pytest.raises(ImageError, match=r"wide.png: image is 10x20 \(HxW\), expected 8x8; resize it"):
        to_array(tmp_path / "wide.png", (8, 8, 3), resize="error")


def test_crop_keeps_the_centre_and_stretch_keeps_everything():
    # 30 wide, 10 high: left third red, centre green, right third blue
    a = np.zeros((10, 30, 3), np.uint8)
    a[:, :10, 0] = a[:, 10:20, 1] = a[:, 20:, 2] = 255
    cropped = to_array(a, (5, 5, 3), resize="crop")
    np.testing.assert_array_equal(cropped, np.broadcast_to([0, 255, 0], (5, 5, 3)))
    stretched = to_array(a, (5, 6, 3))
    assert stretched[:, 0, 0].min() > 200 and stretched[:, -1, 2].min() > 200


def test_exif_orientation_is_applied(tmp_path):
    img = Image.new("L", (4, 2), 0)
    img.putpixel((0, 0), 255)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise to display
    img.save(tmp_path / "photo.jpg", exif=exif, quality=100)
    x = to_array(tmp_path / "photo.jpg", (4, 2, 1), resize="error")  # displayed 2 wide, 4 high
    assert x.shape == (4, 2, 1) and x[0, 1, 0] > 200


def test_animated_gif_gives_its_first_frame(tmp_path):
    frames = [Image.new("L", (3, 3), v) for v in (10, 240)]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:])
    x = to_array(tmp_path / "anim.gif", (3, 3, 1))
    assert abs(int(x.mean()) - 10) <= 1


@pytest.mark.parametrize("content, message", [
    (b"hello, not an image", r"bad.png: not an image Pillow can read"),
    (None, r"bad.png: cannot decode the image"),
])
def test_unreadable_files_are_refused(tmp_path, content, message):
    if content is None:  # a real PNG cut short
        noise = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
        Image.fromarray(noise).save(tmp_path / "ok.png")
        content = (tmp_path / "ok.png").read_bytes()
        content = content[:len(content) // 2]
    (tmp_path / "bad.png").write_bytes(content)
    with pytest.raises(ImageError, match=message):
        to_array(tmp_path / "bad.png", (8, 8, 3))
    with pytest.raises(ImageError, match=r"missing.png: no such image file"):
        to_array(tmp_path / "missing.png", (8, 8, 3))


def test_targets_and_inputs_that_cannot_be_converted():
    with pytest.raises(ImageError, match=r"1 \(greyscale\) or 3 \(RGB\) channels; the target shape 8x8x4 has 4"):
        to_array(np.zeros((8, 8), np.uint8), (8, 8, 4))
    with pytest.raises(ImageError, match=r"expected a uint8 array .* received dtype float64"):
        to_array(np.zeros((8, 8)), (8, 8, 1))
    with pytest.raises(ImageError, match=r"resize must be one of stretch, crop, error"):
        to_array(np.zeros((8, 8), np.uint8), (8, 8, 1), resize="pad")


def test_batch_of_mixed_inputs(tmp_path):
    Image.new("RGB", (5, 7), (1, 2, 3)).save(tmp_path / "a.jpg")
    batch, names = images_to_batch([tmp_path / "a.jpg", np.zeros((3, 3, 3), np.uint8), Image.new("L", (2, 2))],
                                   (4, 4, 3))
    assert batch.shape == (3, 4, 4, 3) and batch.dtype == np.uint8
    assert names == [str(tmp_path / "a.jpg"), "image 1", "image 2"]
    assert images_to_batch(np.zeros((2, 4, 4, 1), np.uint8), (4, 4, 1))[0].shape == (2, 4, 4, 1)


def test_apply_preprocessing_formula():
    x = np.array([0, 51, 255], np.uint8).reshape(1, 1, 3, 1)
    out = apply_preprocessing(x, {"scale": 1 / 255, "mean": [0.1307], "std": [0.3081]})
    np.testing.assert_allclose(out.ravel(), (np.array([0, 51, 255]) / 255 - 0.1307) / 0.3081, rtol=1e-6)
    assert out.dtype == np.float32
    rgb = np.full((1, 1, 1, 3), 255, np.uint8)
    np.testing.assert_allclose(apply_preprocessing(rgb, {"scale": 1 / 255, "mean": [0, 0.5, 1], "std": [1, 0.5, 2]},
                                                   np.float64).ravel(), [1, 1, 0])
    np.testing.assert_allclose(apply_preprocessing(x, None).ravel(), np.array([0, 51, 255]) / 255, rtol=1e-6)
    with pytest.raises(ImageError, match=r"preprocessing 'mean' has 2 values; the images have 1 channels"):
        apply_preprocessing(x, {"mean": [0, 1]})
