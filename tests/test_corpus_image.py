"""Making a corpus photograph from an original file: decoders, orientation, RGB, the resize rule, PNG."""
from __future__ import annotations

import bz2
import io

import numpy as np
import pytest
from PIL import Image

from scripts.corpus.image import corpus_photo, decode_int_rows, decode_raw_bz2, fitted_size, save_png
from scripts.training.dataset import load_rgb
from tests.photos import synthetic_photo


def encoded(image: Image.Image, fmt: str = "PNG", **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def int_rows_pickle(rows: list[list[int]]) -> bytes:
    """A protocol-2 pickle of a list of lists of small ints, opcode by opcode (as scipy's ascent.dat)."""
    out = bytearray(b"\x80\x02]q\x00(")  # PROTO 2, EMPTY_LIST, BINPUT 0, MARK
    for row in rows:
        out += b"](" + b"".join(b"K" + bytes([value]) for value in row) + b"e"  # EMPTY_LIST, MARK, BININT1..., APPENDS
    return bytes(out + b"e.")  # APPENDS, STOP


@pytest.mark.parametrize("size, long_side, expected", [
    ((2126, 1463), 1024, (1024, 705)),   # visp-solvay-1927: 704.67 rounds up
    ((1306, 1530), 1024, (874, 1024)),   # portrait: the height is the long side
    ((1600, 1203), 1024, (1024, 770)),
    ((1024, 731), 768, (768, 548)),      # a GCompris photo
    ((512, 512), 1024, (512, 512)),      # never enlarged
    ((1024, 681), 1024, (1024, 681)),    # already at the limit
])
def test_fitted_size_follows_the_corpus_rule(size, long_side, expected) -> None:
    assert fitted_size(size, long_side) == expected


def test_a_large_photo_is_shrunk_with_lanczos_and_a_small_one_kept() -> None:
    big = Image.fromarray(synthetic_photo(300, 200))
    made = corpus_photo(encoded(big), 150)
    assert made.mode == "RGB" and made.size == (150, 100)
    assert np.array_equal(np.asarray(made), np.asarray(big.resize((150, 100), Image.Resampling.LANCZOS)))
    assert np.array_equal(np.asarray(corpus_photo(encoded(big), 300)), synthetic_photo(300, 200))


def test_grey_is_copied_into_three_channels() -> None:
    grey = Image.fromarray(synthetic_photo(40, 30)[..., 0])
    pixels = np.asarray(corpus_photo(encoded(grey), 1024))
    assert pixels.shape == (30, 40, 3)
    assert np.array_equal(pixels[..., 0], pixels[..., 1]) and np.array_equal(pixels[..., 1], pixels[..., 2])


def test_the_exif_orientation_is_applied() -> None:
    image = Image.fromarray(synthetic_photo(40, 20))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    made = corpus_photo(encoded(image, "JPEG", exif=exif.tobytes(), quality=95), 1024)
    assert made.size == (20, 40)


def test_raw_bz2_pixels_are_reshaped() -> None:
    pixels = synthetic_photo(8, 6)
    made = corpus_photo(bz2.compress(pixels.tobytes()), 1024, "raw-bz2", [6, 8, 3])
    assert np.array_equal(np.asarray(made), pixels)
    with pytest.raises(ValueError, match="shape"):
        decode_raw_bz2(bz2.compress(pixels.tobytes()))


def test_pickled_int_rows_are_read_without_unpickling() -> None:
    rows = [[0, 1, 2, 255], [10, 20, 30, 40], [7, 7, 7, 7]]
    made = corpus_photo(int_rows_pickle(rows), 1024, "int-rows", [3, 4])
    assert np.array_equal(np.asarray(made)[..., 0], np.asarray(rows, dtype=np.uint8))
    with pytest.raises(ValueError, match="shape"):
        decode_int_rows(int_rows_pickle(rows))


def test_a_pickle_that_would_import_anything_is_refused() -> None:
    with pytest.raises(ValueError, match="unexpected pickle opcode GLOBAL"):
        decode_int_rows(b"\x80\x02cos\nsystem\nq\x00.", [1, 1])


def test_values_outside_a_byte_are_refused() -> None:
    with pytest.raises(ValueError, match="0-255"):
        decode_int_rows(b"\x80\x02](M\x00\x01e.", [1, 1])  # BININT2 256


def test_save_png_is_lossless_and_leaves_no_partial_file(tmp_path) -> None:
    target = tmp_path / "train" / "photo.png"
    save_png(Image.fromarray(synthetic_photo(50, 30)), target)
    assert np.array_equal(load_rgb(target), synthetic_photo(50, 30))
    assert [p.name for p in target.parent.iterdir()] == ["photo.png"]
