#!/usr/bin/env python3
"""Writes the small images of kiln's ImageDecoder tests and what Pillow decodes
them to (ONNX's reference decodes with Pillow): `expected.txt` holds, per image
and pixel format, the dims and the pixels in hex. RGB and BGR are Pillow's
convert("RGB"), Grayscale its convert("L"). Also hostile streams that declare
huge images (decompression bombs) and truncated ones, which must fail.

Run from anywhere: python3 tests/data/images/make_images.py (needs Pillow
built with JPEG, JPEG 2000, TIFF and WebP support, as PyPI's wheels are)."""
import io
import os
import random
import struct
import zlib

from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
rng = random.Random(20)


def picture(width, height):
    """A gradient with noise, so lossy codecs have edges and texture to keep."""
    img = Image.new("RGB", (width, height))
    img.putdata([((x * 255 // max(width - 1, 1) + rng.randrange(40)) % 256,
                  (y * 255 // max(height - 1, 1) + rng.randrange(40)) % 256,
                  rng.randrange(256)) for y in range(height) for x in range(width)])
    return img


def encoded(img, fmt, **options):
    out = io.BytesIO()
    img.save(out, fmt, **options)
    return out.getvalue()


def png_chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_rgb16(width, height):
    """A 16-bit RGB PNG (Pillow writes none): Pillow reads the high bytes."""
    rows = b"".join(b"\0" + b"".join(struct.pack(">HHH", rng.randrange(65536), rng.randrange(65536), rng.randrange(65536))
                                       for _ in range(width)) for _ in range(height))
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 16, 2, 0, 0, 0)) +
            png_chunk(b"IDAT", zlib.compress(rows)) + png_chunk(b"IEND", b""))


def bmp_bitfields_top_down(img):
    """A 32-bit BITFIELDS BMP stored top-down (a negative height), red in the high byte (a layout Pillow reads)."""
    width, height = img.size
    masks = (0xFF000000, 0x00FF0000, 0x0000FF00)  # red, green, blue
    raw = img.tobytes()
    pixels = b"".join(struct.pack("<I", raw[i] << 24 | raw[i + 1] << 16 | raw[i + 2] << 8) for i in range(0, len(raw), 3))
    header = struct.pack("<IiiHHIIiiII", 40, width, -height, 1, 32, 3, len(pixels), 2835, 2835, 0, 0) + struct.pack("<III", *masks)
    offset = 14 + len(header)
    return b"BM" + struct.pack("<IHHI", offset + len(pixels), 0, 0, offset) + header + pixels


def images():
    rgb = picture(7, 5)
    gray = rgb.convert("L")
    palette = rgb.convert("P", palette=Image.Palette.ADAPTIVE, colors=13)
    rgba = rgb.copy()
    rgba.putalpha(Image.new("L", rgb.size, 77))
    bits = gray.point(lambda v: 255 if v > 128 else 0).convert("1")
    yield "bmp_rgb.bmp", encoded(rgb, "BMP")
    yield "bmp_rgba.bmp", encoded(rgba, "BMP")
    yield "bmp_palette.bmp", encoded(palette, "BMP")
    yield "bmp_gray.bmp", encoded(gray, "BMP")
    yield "bmp_1bit.bmp", encoded(bits, "BMP")
    yield "bmp_bitfields.bmp", bmp_bitfields_top_down(rgb)
    yield "jpeg_rgb.jpg", encoded(picture(33, 17), "JPEG", quality=90)
    yield "jpeg_444.jpg", encoded(rgb, "JPEG", quality=75, subsampling=0)
    yield "jpeg_progressive.jpg", encoded(picture(9, 11), "JPEG", progressive=True)
    yield "jpeg_gray.jpg", encoded(gray, "JPEG")
    yield "jp2_rgb.jp2", encoded(rgb, "JPEG2000")
    yield "j2k_gray.j2k", encoded(gray, "JPEG2000", no_jp2=True)
    yield "png_rgb.png", encoded(rgb, "PNG")
    yield "png_rgba.png", encoded(rgba, "PNG")
    yield "png_gray.png", encoded(gray, "PNG")
    yield "png_palette.png", encoded(palette, "PNG")
    yield "png_1bit.png", encoded(bits, "PNG")
    yield "png_interlaced.png", encoded(rgb, "PNG", interlace=1)
    yield "png_rgb16.png", png_rgb16(6, 4)
    yield "pnm_rgb.ppm", encoded(rgb, "PPM")
    yield "pnm_gray.pgm", encoded(gray, "PPM")
    yield "pnm_bits.pbm", encoded(bits, "PPM")
    # Plain (ASCII) forms and a maxval other than 255, which Pillow scales.
    yield "pnm_plain.ppm", ("P3\n# plain\n3 2\n100\n" + " ".join(str(rng.randrange(101)) for _ in range(18)) + "\n").encode()
    yield "pnm_plain.pbm", b"P1\n4 2\n0110\n1 0 0 1\n"
    yield "pnm_maxval.ppm", b"P6 3 2 1000\n" + b"".join(struct.pack(">H", rng.randrange(1001)) for _ in range(18))
    yield "tiff_rgb.tif", encoded(rgb, "TIFF")
    yield "tiff_lzw.tif", encoded(rgb, "TIFF", compression="tiff_lzw")
    yield "tiff_gray.tif", encoded(gray, "TIFF", compression="tiff_deflate")
    yield "tiff_palette.tif", encoded(palette, "TIFF")
    yield "webp_lossless.webp", encoded(rgb, "WEBP", lossless=True)
    yield "webp_lossy.webp", encoded(picture(13, 6), "WEBP", quality=80)
    yield "webp_alpha.webp", encoded(rgba, "WEBP", lossless=True)


def hostile(files):
    """Streams that must fail: huge declared dims, each format's header patched."""
    big = 100000
    bmp = bytearray(files["bmp_rgb.bmp"])
    bmp[18:26] = struct.pack("<ii", big, big)
    yield "bomb.bmp", bytes(bmp)
    yield "bomb.ppm", b"P6\n100000 100000\n255\n" + bytes(64)
    png = bytearray(files["png_rgb.png"])
    png[8:33] = png_chunk(b"IHDR", struct.pack(">IIBBBBB", big, big, 8, 2, 0, 0, 0))
    yield "bomb.png", bytes(png)
    jpeg = bytearray(files["jpeg_444.jpg"])
    sof = jpeg.index(b"\xff\xc0")
    jpeg[sof + 5:sof + 9] = struct.pack(">HH", 65000, 65000)
    yield "bomb.jpg", bytes(jpeg)
    tiff = Image.new("L", (1, 1))
    data = bytearray(encoded(tiff, "TIFF"))
    # The first directory's ImageWidth and ImageLength (tags 256, 257) as LONGs of a huge value.
    directory = struct.unpack("<I", data[4:8])[0]
    for i in range(struct.unpack("<H", data[directory:directory + 2])[0]):
        at = directory + 2 + 12 * i
        if struct.unpack("<H", data[at:at + 2])[0] in (256, 257):
            data[at + 2:at + 12] = struct.pack("<HII", 4, 1, big)
    yield "bomb.tif", bytes(data)
    j2k = bytearray(files["j2k_gray.j2k"])
    siz = j2k.index(b"\xff\x51")
    j2k[siz + 6:siz + 14] = struct.pack(">II", big, big)  # Xsiz, Ysiz
    j2k[siz + 22:siz + 30] = struct.pack(">II", big, big)  # XTsiz, YTsiz: one tile
    yield "bomb.j2k", bytes(j2k)


def main():
    files = dict(images())
    lines = []
    for name, data in files.items():
        with open(os.path.join(HERE, name), "wb") as f:
            f.write(data)
        img = Image.open(io.BytesIO(data))
        img.load()
        for fmt in ("RGB", "BGR", "Grayscale"):
            pixels = img.convert("L" if fmt == "Grayscale" else "RGB").tobytes()
            if fmt == "BGR":
                pixels = b"".join(pixels[i:i + 3][::-1] for i in range(0, len(pixels), 3))
            lines.append(f"{name} {fmt} {img.height} {img.width} {1 if fmt == 'Grayscale' else 3} {pixels.hex()}")
    for name, data in hostile(files):
        with open(os.path.join(HERE, name), "wb") as f:
            f.write(data)
    with open(os.path.join(HERE, "expected.txt"), "w") as f:
        f.write("# file pixel_format height width channels pixels(hex); written by make_images.py\n")
        f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
