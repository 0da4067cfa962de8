"""Reading one image file safely: a regular file only, within a byte and a pixel budget, decoded
from its real mode (16-bit images scaled to 8 bits, not clipped), every failure a one-line
ImageFileError naming the file.

    image = read_image(path, "RGB")   # a decoded PIL image in mode "RGB" (or "L")
"""
from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
from PIL import Image

from negaug.files import read_limited

MAX_IMAGE_FILE_BYTES = 256 * 2**20  # a photo is a few MB
MAX_IMAGE_PIXELS = 50_000_000  # decoded pixels of one file (an 8K photo is 33 MP); a bomb is refused before decoding
SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I")


class ImageFileError(ValueError):
    """An image file that cannot be used (not a regular file, too large, not decodable); the
    message names the file. A ValueError: before a run it is a user error (one line, exit 2)."""


def read_image(path: str | Path, mode: str) -> Image.Image:
    """The image file `path` decoded and converted to `mode` ("RGB" or "L"). A FIFO, a device, a
    file over MAX_IMAGE_FILE_BYTES or MAX_IMAGE_PIXELS, a truncated or foreign file: ImageFileError
    naming it."""
    try:
        data = read_limited(path, MAX_IMAGE_FILE_BYTES, "image file")
    except FileNotFoundError:
        raise ImageFileError(f"image file {path} does not exist (was it removed?)") from None
    except (OSError, ValueError) as err:
        raise ImageFileError(str(err) if isinstance(err, ValueError) else f"image file {path}: {err.strerror}") from None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            width, height = image.size
            if width * height > MAX_IMAGE_PIXELS:
                raise ImageFileError(f"image file {path} is {width}x{height} pixels, more than negaug decodes "
                                     f"({MAX_IMAGE_PIXELS:,}); resize it")
            image.load()
            return to_mode(image, mode)
    except ImageFileError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):  # PIL's own limit, at open
        raise ImageFileError(f"image file {path} declares more pixels than negaug decodes ({MAX_IMAGE_PIXELS:,}): "
                             f"a decompression bomb or a huge image; resize it") from None
    except (OSError, ValueError, SyntaxError, EOFError, MemoryError, IndexError, TypeError) as err:  # broken files
        reason = " ".join(str(err).split())[:160] or type(err).__name__
        raise ImageFileError(f"image file {path} cannot be decoded ({reason}); replace it or remove it") from None


def to_mode(image: Image.Image, mode: str) -> Image.Image:
    """`image` in `mode` ("RGB" or "L"), converted from its real mode: 16-bit greys are scaled
    (x / 257) to 8 bits, where PIL's convert would clip every value above 255 to white."""
    if image.mode in SIXTEEN_BIT_MODES:
        array = np.asarray(image, dtype=np.float64)
        image = Image.fromarray(np.clip(np.rint(array / 257.0), 0, 255).astype(np.uint8), "L")
    elif image.mode == "F":  # floats: taken as 0..1
        array = np.asarray(image, dtype=np.float64)
        image = Image.fromarray(np.clip(np.rint(np.nan_to_num(array) * 255.0), 0, 255).astype(np.uint8), "L")
    return image if image.mode == mode else image.convert(mode)
