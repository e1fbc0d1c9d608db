"""Image bytes -> model input, reproducing open_clip's eval transform with Pillow and numpy only.

The order mirrors training: decode, apply EXIF orientation, convert to RGB, resize
(shortest edge / longest edge + pad / squash) with the manifest's interpolation,
centre crop, scale to [0, 1], normalise with the manifest's mean/std, CHW float32.
"""

from __future__ import annotations

import io
import warnings

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ..bundle import ImagePreprocess
from ..errors import ErrorCode, OmnivecError

SUPPORTED_FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP")
_RESAMPLE = {"bicubic": Image.Resampling.BICUBIC, "bilinear": Image.Resampling.BILINEAR}


def decode_image(data: bytes, *, max_pixels: int, label: str = "image") -> Image.Image:
    """Decode one encoded image to RGB, refusing anything that is not a supported, sane image."""
    if not data:
        raise OmnivecError(ErrorCode.INVALID_IMAGE, f"{label} is empty: send the bytes of a JPEG, PNG, WebP, GIF or BMP file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
            fmt = img.format
            if fmt not in SUPPORTED_FORMATS:
                raise OmnivecError(
                    ErrorCode.UNSUPPORTED_MEDIA_TYPE,
                    f"{label} is {fmt or 'an unknown format'}; supported formats are JPEG, PNG, WebP, GIF (first frame) and BMP",
                )
            width, height = img.size
            if width * height > max_pixels:
                raise OmnivecError(
                    ErrorCode.IMAGE_TOO_LARGE,
                    f"{label} is {width}x{height} = {width * height} pixels, over the limit of {max_pixels}; downscale it first",
                )
            img.seek(0)  # GIF / animated WebP: first frame
            img.load()
            img = ImageOps.exif_transpose(img) or img
            return _to_rgb(img)
    except OmnivecError:
        raise
    except (UnidentifiedImageError, Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise OmnivecError(
            ErrorCode.INVALID_IMAGE,
            f"{label} could not be decoded ({exc.__class__.__name__}); send a valid JPEG, PNG, WebP, GIF or BMP file",
        ) from exc
    except (OSError, ValueError, SyntaxError, EOFError) as exc:
        raise OmnivecError(
            ErrorCode.INVALID_IMAGE, f"{label} is corrupt or truncated ({exc}); re-encode the file and retry"
        ) from exc


def _to_rgb(img: Image.Image) -> Image.Image:
    """RGB the way training saw it (PIL convert drops alpha, palette and greyscale expand)."""
    if img.mode == "RGB":
        return img
    if img.mode in ("P", "PA"):
        img = img.convert("RGBA")
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(img, dtype=np.float64)
        img = Image.fromarray(np.clip(arr / max(arr.max(), 1.0) * 255.0, 0, 255).astype(np.uint8), mode="L")
    return img.convert("RGB")


def resize_and_crop(img: Image.Image, spec: ImagePreprocess) -> Image.Image:
    """Geometric part of the transform: matches torchvision Resize/CenterCrop on PIL images."""
    target_h, target_w = spec.size
    resample = _RESAMPLE[spec.interpolation]
    width, height = img.size
    if spec.resize_mode == "squash":
        return img.resize((target_w, target_h), resample)
    if spec.resize_mode == "shortest" and target_h == target_w:
        # torchvision Resize(int): shorter edge -> size, longer edge truncated (int()).
        if width <= height:
            new_w, new_h = target_w, int(target_w * height / width)
        else:
            new_w, new_h = int(target_h * width / height), target_h
    else:
        # open_clip ResizeKeepRatio: longest=1 for 'longest', 0 for non-square 'shortest'; sizes rounded.
        longest = 1.0 if spec.resize_mode == "longest" else 0.0
        ratio_h, ratio_w = height / target_h, width / target_w
        ratio = max(ratio_h, ratio_w) * longest + min(ratio_h, ratio_w) * (1.0 - longest)
        new_h, new_w = round(height / ratio), round(width / ratio)
    if (new_w, new_h) != (width, height):
        img = img.resize((new_w, new_h), resample)
    return _center_crop_or_pad(img, target_h, target_w, spec.fill_color)


def _center_crop_or_pad(img: Image.Image, crop_h: int, crop_w: int, fill: int) -> Image.Image:
    width, height = img.size
    if crop_w > width or crop_h > height:
        left = (crop_w - width) // 2 if crop_w > width else 0
        top = (crop_h - height) // 2 if crop_h > height else 0
        padded = Image.new("RGB", (max(width, crop_w), max(height, crop_h)), (fill, fill, fill))
        padded.paste(img, (left, top))
        img = padded
        width, height = img.size
        if (width, height) == (crop_w, crop_h):
            return img
    top = int(round((height - crop_h) / 2.0))
    left = int(round((width - crop_w) / 2.0))
    return img.crop((left, top, left + crop_w, top + crop_h))


def image_to_array(img: Image.Image, spec: ImagePreprocess) -> np.ndarray:
    """RGB PIL image -> normalised CHW float32 array of the manifest's size."""
    img = resize_and_crop(img, spec)
    arr = np.asarray(img, dtype=np.float32) / np.float32(255.0)
    mean = np.asarray(spec.mean, dtype=np.float32)
    std = np.asarray(spec.std, dtype=np.float32)
    arr = (arr - mean) / std
    return np.ascontiguousarray(arr.transpose(2, 0, 1))


def preprocess_image(data: bytes, spec: ImagePreprocess, *, max_pixels: int, label: str = "image") -> np.ndarray:
    """Encoded bytes -> model input; raises OmnivecError (4xx) for bad input."""
    return image_to_array(decode_image(data, max_pixels=max_pixels, label=label), spec)
