"""Server image preprocessing (numpy/Pillow) against open_clip's own eval transform."""

from __future__ import annotations

import numpy as np
import pytest

from omnivec.server.bundle import ImagePreprocess
from omnivec.server.errors import ErrorCode, OmnivecError
from omnivec.server.preprocess.image import decode_image, image_to_array, preprocess_image
from tests.media import encode, open_as_user_expects, sample_files, scene

FILES = sample_files()


def _open_clip_transform(spec: ImagePreprocess):
    from open_clip.transform import image_transform

    return image_transform(
        spec.size, is_train=False, mean=spec.mean, std=spec.std, resize_mode=spec.resize_mode,
        interpolation=spec.interpolation, fill_color=spec.fill_color,
    )


SPECS = {
    "shortest-224-bicubic": ImagePreprocess(size=(224, 224), mean=(0.48145466, 0.4578275, 0.40821073), std=(0.26862954, 0.26130258, 0.27577711)),
    "shortest-64": ImagePreprocess(size=(64, 64), mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5)),
    "squash-96-bilinear": ImagePreprocess(size=(96, 96), resize_mode="squash", interpolation="bilinear", mean=(0.5, 0.4, 0.3), std=(0.2, 0.3, 0.25)),
    "longest-80-fill": ImagePreprocess(size=(80, 80), resize_mode="longest", mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), fill_color=128),
    "shortest-nonsquare": ImagePreprocess(size=(64, 96), mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5)),
}


@pytest.mark.parametrize("spec_name", sorted(SPECS))
@pytest.mark.parametrize("name", sorted(FILES))
def test_pixels_match_open_clip(name, spec_name):
    spec = SPECS[spec_name]
    ours = preprocess_image(FILES[name], spec, max_pixels=10**8)
    reference = _open_clip_transform(spec)(open_as_user_expects(FILES[name])).numpy()
    assert ours.shape == reference.shape == (3, *spec.size)
    assert ours.dtype == np.float32
    np.testing.assert_allclose(ours, reference, atol=1e-5)


def test_exif_orientation_applied():
    img = decode_image(FILES["rotated.jpg"], max_pixels=10**8)
    assert img.size == (90, 120), "EXIF orientation 6 swaps width and height"


def test_gif_first_frame_and_modes_become_rgb():
    for name in ("anim.gif", "alpha.png", "grey.png", "palette.png"):
        assert decode_image(FILES[name], max_pixels=10**8).mode == "RGB"


@pytest.mark.parametrize(
    "data,code",
    [
        (b"", ErrorCode.INVALID_IMAGE),
        (b"definitely not an image", ErrorCode.INVALID_IMAGE),
        (FILES["photo.jpg"][:300], ErrorCode.INVALID_IMAGE),
        (encode(scene(40, 40), "TIFF"), ErrorCode.UNSUPPORTED_MEDIA_TYPE),
    ],
    ids=["empty", "garbage", "truncated-jpeg", "tiff"],
)
def test_bad_bytes_raise_specific_errors(data, code):
    with pytest.raises(OmnivecError) as info:
        decode_image(data, max_pixels=10**8, label="images[0]")
    assert info.value.code == code and "images[0]" in info.value.message


def test_decompression_bomb_is_refused():
    with pytest.raises(OmnivecError) as info:
        decode_image(encode(scene(200, 200), "PNG"), max_pixels=10_000)
    assert info.value.code == ErrorCode.IMAGE_TOO_LARGE and "40000" in info.value.message


def test_array_layout_is_chw_normalised():
    spec = SPECS["shortest-64"]
    from PIL import Image

    arr = image_to_array(Image.new("RGB", (64, 64), (255, 0, 128)), spec)
    np.testing.assert_allclose(arr[:, 0, 0], [(1 - 0.5) / 0.5, (0 - 0.5) / 0.5, (128 / 255 - 0.5) / 0.5], atol=1e-6)
