"""Image files in and out (Pillow, imported lazily) and a numpy resize.

`load_image` gives every input the same form, uint8 [H, W, 3] RGB upright:
EXIF orientation applied (phones and some traps store portrait frames sideways), grey and
palette images expanded, alpha composited onto black (a transparent pixel shows nothing).
16-bit images are scaled to 8 bits. Files that are not images, too small to code (under 16 px
a side) or absurdly large (over 100 megapixels, a decompression-bomb guard) raise `ImageError`.

EXIF: `exif_capture_time` reads when the camera took a picture (DateTimeOriginal), and
`picture_exif` makes the tags the base station writes into decoded pictures (DateTimeOriginal,
trap id), which `save_image(..., exif=)` stores in JPEG, PNG (eXIf chunk) and WebP alike.
"""

from __future__ import annotations

import datetime
import re
import time
import warnings
from pathlib import Path

import numpy as np

from device.errors import ImageError

MIN_SIDE = 16
MAX_PIXELS = 100_000_000

# EXIF 2.32 tag numbers (CIPA DC-008): IFD0, then the Exif sub-IFD it points to.
TAG_IMAGE_DESCRIPTION = 0x010E
TAG_SOFTWARE = 0x0131
TAG_EXIF_IFD = 0x8769
TAG_DATETIME_ORIGINAL = 0x9003
TAG_DATETIME_DIGITIZED = 0x9004
TAG_OFFSET_TIME_ORIGINAL = 0x9011
TAG_BODY_SERIAL_NUMBER = 0xA431
#: "YYYY:MM:DD HH:MM:SS" (EXIF); some cameras use "-" or "/" in the date or a "T".
_EXIF_TIME = re.compile(r"\s*(\d{4})[:/-](\d{2})[:/-](\d{2})[ T](\d{2}):(\d{2}):(\d{2})")
_EXIF_OFFSET = re.compile(r"\s*([+-])(\d{2}):(\d{2})")
#: The container stores capture time as uint32 unix seconds (docs/container.md).
_LATEST = 0xFFFFFFFF


def load_image(path: str | Path) -> np.ndarray:
    """Read an image file as uint8 [H, W, 3] RGB, upright. Raises ImageError or OSError."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(21, "is a directory, not an image", str(path))
    previous = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = MAX_PIXELS
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # check_size decides
            im = Image.open(path)
        with im:
            check_size(im.height, im.width, path.name)
            im = ImageOps.exif_transpose(im)
            return to_rgb8(im)
    except FileNotFoundError:
        raise
    except (UnidentifiedImageError, Image.DecompressionBombError) as exc:
        raise ImageError(f"cannot read {path.name} as an image: {exc}") from None
    except (OSError, ValueError, SyntaxError) as exc:  # truncated or damaged files
        raise ImageError(f"{path.name} is damaged or unsupported: {exc}") from None
    finally:
        Image.MAX_IMAGE_PIXELS = previous


def check_size(height: int, width: int, name: str = "image") -> None:
    """Refuse images the codec cannot use (tiny) or should not try (huge)."""
    if min(height, width) < MIN_SIDE:
        raise ImageError(
            f"{name} is {width}x{height}; wildlink needs at least {MIN_SIDE} px a side"
        )
    if height * width > MAX_PIXELS:
        raise ImageError(f"{name} is {width}x{height}, over {MAX_PIXELS // 10**6} megapixels")


def to_rgb8(im) -> np.ndarray:
    """A Pillow image of any mode -> uint8 [H, W, 3]."""
    if im.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        array = np.asarray(im, dtype=np.float64)
        top = 65535.0 if im.mode.startswith("I;16") or array.max() > 255 else 255.0
        grey = np.clip(np.rint(array * (255.0 / top)), 0, 255).astype(np.uint8)
        return np.repeat(grey[..., None], 3, axis=2)
    if im.mode == "F":
        array = np.asarray(im, dtype=np.float64)
        top = 1.0 if array.max() <= 1.0 else 255.0
        grey = np.clip(np.rint(array * (255.0 / top)), 0, 255).astype(np.uint8)
        return np.repeat(grey[..., None], 3, axis=2)
    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
        rgba = np.asarray(im.convert("RGBA"), dtype=np.float32)
        alpha = rgba[..., 3:4] / 255.0
        return np.clip(np.rint(rgba[..., :3] * alpha), 0, 255).astype(np.uint8)
    if im.mode != "RGB":
        im = im.convert("RGB")
    return np.asarray(im, dtype=np.uint8).copy()


def as_rgb8(array: np.ndarray) -> np.ndarray:
    """An in-memory array ([H, W], [H, W, 1/3/4], uint8/uint16/float in [0, 1]) -> uint8 RGB."""
    array = np.asarray(array)
    if array.ndim == 3 and array.shape[2] == 4:
        alpha = array[..., 3:4].astype(np.float32) / (255.0 if array.dtype == np.uint8 else 1.0)
        array = array[..., :3] * alpha
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[..., 0]
    if array.ndim == 2:
        array = np.repeat(array[..., None], 3, axis=2)
    if array.ndim != 3 or array.shape[2] != 3:
        raise ImageError(f"expected an [H, W, 3] image, got shape {array.shape}")
    check_size(array.shape[0], array.shape[1])
    if array.dtype == np.uint8:
        return array
    if array.dtype == np.uint16:
        return np.clip(np.rint(array / 257.0), 0, 255).astype(np.uint8)
    if np.issubdtype(array.dtype, np.floating):
        top = 1.0 if float(np.nanmax(array)) <= 1.0 else 255.0
        return np.clip(np.rint(np.nan_to_num(array) * (255.0 / top)), 0, 255).astype(np.uint8)
    return np.clip(array, 0, 255).astype(np.uint8)


def save_image(path: str | Path, image: np.ndarray, quality: int = 95,
               exif: bytes | None = None) -> None:
    """Write uint8 [H, W, 3] as PNG, JPEG or WebP by the file suffix (PNG if none).

    Args:
        exif: an EXIF block (`picture_exif`), stored in all three formats.
    """
    from PIL import Image

    path = Path(path)
    suffix = path.suffix.lower()
    formats = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP", "": "PNG"}
    if suffix not in formats:
        raise ImageError(f"cannot write {path.name}: use .png, .jpg or .webp")
    options = {"quality": quality} if formats[suffix] in ("JPEG", "WEBP") else {}
    if exif:
        options["exif"] = exif
    Image.fromarray(np.asarray(image, np.uint8)).save(path, formats[suffix], **options)


def exif_capture_time(path: str | Path) -> float | None:
    """When the camera took the picture, from its EXIF, as unix seconds; None if not there.

    DateTimeOriginal, else DateTimeDigitized. EXIF times are the camera's wall clock without a
    zone; with OffsetTimeOriginal the offset is applied, otherwise the clock is taken as UTC, so
    that the time written back at the base (`picture_exif`) reads exactly as the camera's.
    Only the header is read (Pillow opens lazily). Unreadable files give None: the caller
    falls back to the file time, and the image reader reports what is wrong with the file.
    """
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            exif = im.getexif()
            sub = exif.get_ifd(TAG_EXIF_IFD)
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError):
        return None
    for tag in (TAG_DATETIME_ORIGINAL, TAG_DATETIME_DIGITIZED):
        seconds = parse_exif_time(sub.get(tag), sub.get(TAG_OFFSET_TIME_ORIGINAL))
        if seconds is not None:
            return seconds
    return None


def parse_exif_time(text, offset=None) -> float | None:
    """"2018:10:22 05:50:00" (and an optional "+02:00" offset) -> unix seconds, or None.

    Blank, malformed or impossible times (a camera whose clock was never set writes
    "0000:00:00 00:00:00" or spaces) and times outside the container's uint32 give None.
    """
    if isinstance(text, bytes):
        text = text.decode("ascii", "replace")
    match = _EXIF_TIME.match(text) if isinstance(text, str) else None
    if match is None:
        return None
    try:
        stamp = datetime.datetime(*(int(v) for v in match.groups()), tzinfo=datetime.UTC)
    except ValueError:  # month 0, February 30, hour 25, ...
        return None
    seconds = int(stamp.timestamp())
    if isinstance(offset, bytes):
        offset = offset.decode("ascii", "replace")
    zone = _EXIF_OFFSET.match(offset) if isinstance(offset, str) else None
    if zone is not None:
        sign = 1 if zone.group(1) == "+" else -1
        seconds -= sign * (int(zone.group(2)) * 3600 + int(zone.group(3)) * 60)
    return float(seconds) if 0 < seconds <= _LATEST else None


def exif_time_text(seconds: float) -> str:
    """Unix seconds -> the EXIF form "YYYY:MM:DD HH:MM:SS" (UTC; see `exif_capture_time`)."""
    return time.strftime("%Y:%m:%d %H:%M:%S", time.gmtime(seconds))


def picture_exif(capture_time: float | None, trap_id: int | None, description: str = "") -> bytes:
    """The EXIF block of a decoded picture: DateTimeOriginal, trap id, what made it.

    The trap id goes in BodySerialNumber (which exiftool and camera-trap tools show as the
    camera's serial number) and, readable, in ImageDescription.
    """
    from PIL import Image

    exif = Image.Exif()
    exif[TAG_SOFTWARE] = "wildlink"
    if description:
        exif[TAG_IMAGE_DESCRIPTION] = description
    sub = exif.get_ifd(TAG_EXIF_IFD)
    if capture_time:
        sub[TAG_DATETIME_ORIGINAL] = exif_time_text(capture_time)
    if trap_id is not None:
        sub[TAG_BODY_SERIAL_NUMBER] = str(trap_id)
    return exif.tobytes()


def transmit_shape(height: int, width: int, long_side: int) -> tuple[int, int]:
    """(height, width) with the long side at most `long_side`, aspect kept; never upscales."""
    if long_side <= 0 or max(height, width) <= long_side:
        return height, width
    scale = long_side / max(height, width)
    return max(1, round(height * scale)), max(1, round(width * scale))


def resize(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Antialiased resize of uint8/float [H, W(, C)] (numpy only, for the trap).

    Downscaling first averages integer blocks (a box filter: no aliasing), then bilinear
    interpolation covers the remaining fraction; upscaling is bilinear.
    """
    image = np.asarray(image)
    if image.shape[:2] == (height, width):
        return image.copy()
    dtype = image.dtype
    x = image.astype(np.float32)
    fy, fx = image.shape[0] // height, image.shape[1] // width
    if fy > 1 or fx > 1:
        fy, fx = max(fy, 1), max(fx, 1)
        h, w = image.shape[0] // fy, image.shape[1] // fx
        x = x[: h * fy, : w * fx].reshape(h, fy, w, fx, *image.shape[2:]).mean(axis=(1, 3))
    x = _bilinear(x, height, width)
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        return np.clip(np.rint(x), info.min, info.max).astype(dtype)
    return x.astype(dtype)


def _bilinear(x: np.ndarray, height: int, width: int) -> np.ndarray:
    sh, sw = x.shape[:2]
    if (sh, sw) == (height, width):
        return x
    ys = np.clip((np.arange(height) + 0.5) * sh / height - 0.5, 0, sh - 1)
    xs = np.clip((np.arange(width) + 0.5) * sw / width - 0.5, 0, sw - 1)
    y0, x0 = np.floor(ys).astype(int), np.floor(xs).astype(int)
    y1, x1 = np.minimum(y0 + 1, sh - 1), np.minimum(x0 + 1, sw - 1)
    wy = (ys - y0).astype(np.float32).reshape(-1, 1, *([1] * (x.ndim - 2)))
    wx = (xs - x0).astype(np.float32).reshape(1, -1, *([1] * (x.ndim - 2)))
    rows = x[y0] * (1 - wy) + x[y1] * wy
    return rows[:, x0] * (1 - wx) + rows[:, x1] * wx
