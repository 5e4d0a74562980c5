#!/usr/bin/env python3
"""Writes the golden fixtures of Tests/Fixtures/vision.

The reference for every number is what Python produces:

* decoding, in three flavours ("alpha" in the index):
  - "discard": transformers' `load_image` (PIL.ImageOps.exif_transpose, then convert("RGB"));
  - "load_image_then_processor": transformers' `convert_to_rgb` applied to `load_image`'s result, which is
    what the image processor feeds on; it differs from "discard" only where PIL kept a tRNS colour key;
  - "composite": `convert_to_rgb` applied to `PIL.Image.open(path)` (transparency composited over white,
    no EXIF transposition), what an image processor does with a freshly opened PIL image;
* resizing: `PIL.Image.resize` on the decoded RGB image;
* preprocessing: `AutoImageProcessor.from_pretrained(config_dir)` on the decoded image. Without torchvision
  installed (as here) transformers 5 resolves CLIPImageProcessor to its PIL backend, `CLIPImageProcessorPil`;
  the script refuses to run if it resolves to anything else, so the fixtures are pinned to the PIL path.

Input images are real photographs from scikit-image's bundled data, shrunk and cropped with PIL so each file
stays small, plus synthetic PNG layouts written by a small encoder below (PIL cannot write 16-bit RGB,
interlaced, 2/4-bit grey, or an eXIf chunk after the image data).

Binary references are raw little-endian arrays: uint8 images as (height, width, 3), pixel_values as float32
(3, height, width). index.json lists every case with its shape and options.

Run (it rewrites the whole Fixtures folder, deterministically; the path of the script is all it needs):
    /tmp/refvenv/bin/python tools/reference/make_image_fixtures.py     # from the package root
"""

import io
import json
import shutil
import struct
import sys
import warnings
import zlib
from pathlib import Path

import numpy as np
import PIL
import skimage
import skimage.data
import transformers
from PIL import Image, PngImagePlugin, features
from transformers import AutoImageProcessor, LlavaProcessor, PreTrainedTokenizerFast
from transformers.image_transforms import convert_to_rgb
from transformers.image_utils import load_image
from transformers.utils import is_torchvision_available

# Converting a palette image whose tRNS holds per-entry alphas drops them, which is exactly the behaviour recorded.
warnings.filterwarnings("ignore", message="Palette images with Transparency expressed in bytes")

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "Tests" / "Fixtures" / "vision"
IMAGES = FIXTURES / "images"
BAD = IMAGES / "bad"
CONFIGS = FIXTURES / "configs"
REFERENCE = FIXTURES / "reference"

CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
CLIP_STD = [0.26862954, 0.26130258, 0.27577711]

index = {
    "generator": {
        "script": "tools/reference/make_image_fixtures.py",
        "python": sys.version.split()[0],
        "transformers": transformers.__version__,
        "pillow": PIL.__version__,
        "pillow_libjpeg_turbo": features.version("libjpeg_turbo"),
        "numpy": np.__version__,
        "scikit_image": skimage.__version__,
        "torchvision_installed": is_torchvision_available(),
        "image_processor_backend": "pil (CLIPImageProcessorPil)",
    },
    "configs": [],
    "decoded": [],
    "resized": [],
    "pixel_values": [],
    "bad_inputs": [],
    "resize_sizes": [],
}


def relative(path: Path) -> str:
    return path.relative_to(FIXTURES).as_posix()


# ---------------------------------------------------------------------------------------------------------
# A minimal PNG encoder for the layouts PIL cannot write.

ADAM7_PASSES = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)]
CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}


def png_chunk(tag: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)


def pack_scanlines(samples: np.ndarray, bit_depth: int) -> bytes:
    """samples: (height, width, channels) integers; every row gets filter type 0."""
    out = bytearray()
    for row in samples:
        out.append(0)
        flat = row.reshape(-1)
        if bit_depth == 16:
            out += flat.astype(">u2").tobytes()
        elif bit_depth == 8:
            out += flat.astype(np.uint8).tobytes()
        else:
            bits = (flat[:, None].astype(np.uint16) >> np.arange(bit_depth - 1, -1, -1)) & 1
            out += np.packbits(bits.reshape(-1).astype(np.uint8)).tobytes()
    return bytes(out)


def encode_png(samples, color_type, bit_depth, *, palette=None, trns=None, interlaced=False,
               before_image=(), after_image=()) -> bytes:
    samples = np.asarray(samples)
    if samples.ndim == 2:
        samples = samples[:, :, None]
    height, width, channels = samples.shape
    assert channels == CHANNELS[color_type]
    if interlaced:
        raw = b"".join(
            pack_scanlines(samples[y0::dy, x0::dx], bit_depth)
            for x0, y0, dx, dy in ADAM7_PASSES
            if samples[y0::dy, x0::dx].size
        )
    else:
        raw = pack_scanlines(samples, bit_depth)
    header = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 1 if interlaced else 0)
    chunks = [png_chunk(b"IHDR", header)]
    chunks += [png_chunk(tag, data) for tag, data in before_image]
    if palette is not None:
        chunks.append(png_chunk(b"PLTE", np.asarray(palette, dtype=np.uint8).tobytes()))
    if trns is not None:
        chunks.append(png_chunk(b"tRNS", trns))
    chunks.append(png_chunk(b"IDAT", zlib.compress(raw, 9)))
    chunks += [png_chunk(tag, data) for tag, data in after_image]
    chunks.append(png_chunk(b"IEND", b""))
    return b"\x89PNG\r\n\x1a\n" + b"".join(chunks)


# ---------------------------------------------------------------------------------------------------------
# Configurations.

def clip_config(shortest_edge, crop, **overrides):
    config = {
        "crop_size": {"height": crop[0], "width": crop[1]},
        "do_center_crop": True,
        "do_convert_rgb": True,
        "do_normalize": True,
        "do_rescale": True,
        "do_resize": True,
        "image_mean": CLIP_MEAN,
        "image_processor_type": "CLIPImageProcessor",
        "image_std": CLIP_STD,
        "resample": 3,
        "rescale_factor": 0.00392156862745098,
        "size": {"shortest_edge": shortest_edge},
    }
    config.update(overrides)
    return config


CONFIG_FILES = {
    # What llava-hf/llava-1.5-7b-hf ships as preprocessor_config.json.
    "llava-1.5-7b-hf": dict(clip_config(336, (336, 336)), processor_class="LlavaProcessor"),
    "clip-112": clip_config(112, (112, 112)),
    "clip-64": clip_config(64, (64, 64)),
    "clip-24": clip_config(24, (24, 24)),
    "exif-32-crop-32x24": clip_config(32, (32, 24)),
    "odd-101-crop-97x90-bilinear": clip_config(101, (97, 90), resample=2),
    "exact-60x90-lanczos-no-crop": clip_config(0, (1, 1), size={"height": 60, "width": 90}, resample=1,
                                               do_center_crop=False),
    "shortest-80-longest-100-crop-72": clip_config(80, (72, 72), size={"shortest_edge": 80, "longest_edge": 100}),
    "rescale-only-24": clip_config(24, (24, 24), do_normalize=False),
    "normalize-only-24": clip_config(24, (24, 24), do_rescale=False),
    "hamming-box": clip_config(40, (40, 40), resample=5),
    # Parsing-only: every key absent (class defaults), and the legacy integer sizes.
    "defaults-only": {"image_processor_type": "CLIPImageProcessor"},
    "legacy-int-sizes": {"image_processor_type": "CLIPImageProcessor", "size": 50, "crop_size": 40,
                         "image_mean": 0.5, "image_std": 0.25, "resample": 4},
}

processors = {}


def processor_summary(processor):
    return {
        "do_resize": processor.do_resize,
        "size": {key: value for key, value in dict(processor.size).items() if value is not None},
        "resample": int(processor.resample),
        "do_center_crop": processor.do_center_crop,
        "crop_size": {key: value for key, value in dict(processor.crop_size).items() if value is not None},
        "do_rescale": processor.do_rescale,
        "rescale_factor": processor.rescale_factor,
        "do_normalize": processor.do_normalize,
        "image_mean": [float(value) for value in np.broadcast_to(processor.image_mean, 3)],
        "image_std": [float(value) for value in np.broadcast_to(processor.image_std, 3)],
        "do_convert_rgb": processor.do_convert_rgb,
    }


def write_configs():
    for name, config in CONFIG_FILES.items():
        directory = CONFIGS / name
        directory.mkdir(parents=True)
        (directory / "preprocessor_config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
        register_config(name, directory / "preprocessor_config.json", directory)

    # The nested layout, written by transformers itself: LlavaProcessor.save_pretrained.
    from tokenizers import Tokenizer, models, pre_tokenizers

    vocabulary = Tokenizer(models.WordLevel({"<unk>": 0, "<image>": 1}, unk_token="<unk>"))
    vocabulary.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=vocabulary, unk_token="<unk>")
    image_processor = AutoImageProcessor.from_pretrained(CONFIGS / "llava-1.5-7b-hf")
    processor = LlavaProcessor(image_processor=image_processor, tokenizer=tokenizer, patch_size=14,
                               vision_feature_select_strategy="default")
    staging = FIXTURES / "_staging"
    processor.save_pretrained(staging)
    directory = CONFIGS / "llava-1.5-7b-hf-processor"
    directory.mkdir()
    shutil.copy(staging / "processor_config.json", directory / "processor_config.json")
    shutil.rmtree(staging)
    register_config("llava-1.5-7b-hf-processor", directory / "processor_config.json", directory)


def register_config(name, path, directory):
    processor = AutoImageProcessor.from_pretrained(directory)
    if type(processor).__name__ != "CLIPImageProcessorPil":
        raise SystemExit(f"{name}: AutoImageProcessor gave {type(processor).__name__}; the fixtures are pinned "
                         "to the PIL backend, run without torchvision")
    processors[name] = processor
    index["configs"].append({"name": name, "file": relative(path), "class": type(processor).__name__,
                             "parsed": processor_summary(processor)})


# ---------------------------------------------------------------------------------------------------------
# Input images.

def save_bytes(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def save_pil(image, name, **params) -> Path:
    path = IMAGES / name
    image.save(path, **params)
    return path


def exif_with_orientation(value: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = value
    return exif.tobytes()


def make_photographs():
    """Returns {name: path} of the photographic inputs."""
    astronaut = Image.fromarray(skimage.data.astronaut())
    coffee = Image.fromarray(skimage.data.coffee())
    chelsea = Image.fromarray(skimage.data.chelsea())
    rocket = Image.fromarray(skimage.data.rocket())
    camera = Image.fromarray(skimage.data.camera())

    paths = {}
    paths["astronaut_400.jpg"] = save_pil(astronaut.resize((400, 400), Image.LANCZOS), "astronaut_400.jpg", quality=80)
    coffee_wide = coffee.resize((300, 200), Image.LANCZOS)
    paths["coffee_wide.jpg"] = save_pil(coffee_wide, "coffee_wide.jpg", quality=90)
    paths["coffee_wide.png"] = save_pil(coffee.resize((150, 100), Image.LANCZOS), "coffee_wide.png", optimize=True)
    paths["coffee_progressive.jpg"] = save_pil(coffee.resize((120, 80), Image.LANCZOS), "coffee_progressive.jpg",
                                               quality=90, progressive=True)
    rocket_tall = rocket.crop((230, 0, 430, 427)).resize((150, 320), Image.LANCZOS)
    paths["rocket_tall.jpg"] = save_pil(rocket_tall, "rocket_tall.jpg", quality=90)
    paths["chelsea_small.jpg"] = save_pil(chelsea.resize((72, 48), Image.LANCZOS), "chelsea_small.jpg", quality=92)
    camera_small = camera.resize((200, 200), Image.LANCZOS)
    paths["camera_gray.jpg"] = save_pil(camera_small, "camera_gray.jpg", quality=90)
    paths["camera_gray.png"] = save_pil(camera.resize((120, 120), Image.LANCZOS), "camera_gray.png", optimize=True)

    chelsea_72 = chelsea.resize((72, 48), Image.LANCZOS)
    for orientation in range(1, 9):
        name = f"chelsea_orientation_{orientation}.jpg"
        paths[name] = save_pil(chelsea_72, name, quality=90, exif=exif_with_orientation(orientation))
    xmp_6 = b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF><rdf:Description tiff:Orientation="6"/></rdf:RDF></x:xmpmeta>'
    paths["chelsea_xmp_orientation_6.jpg"] = save_pil(chelsea_72, "chelsea_xmp_orientation_6.jpg", quality=90, xmp=xmp_6)
    # EXIF says upright, XMP says rotate: PIL trusts EXIF and ignores the XMP.
    paths["chelsea_exif_1_xmp_6.jpg"] = save_pil(chelsea_72, "chelsea_exif_1_xmp_6.jpg", quality=90,
                                                 exif=exif_with_orientation(1), xmp=xmp_6)
    paths["chelsea_444.jpg"] = save_pil(chelsea_72, "chelsea_444.jpg", quality=90, subsampling=0)
    paths["chelsea_422.jpg"] = save_pil(chelsea_72, "chelsea_422.jpg", quality=90, subsampling=1)
    paths["chelsea_cmyk.jpg"] = save_pil(chelsea_72.convert("CMYK"), "chelsea_cmyk.jpg", quality=90)
    return paths


def make_png_layouts():
    """Every PNG colour type, depth and transparency variant from one small crop of a photograph."""
    face = Image.fromarray(skimage.data.astronaut()).crop((160, 40, 288, 136)).resize((48, 36), Image.LANCZOS)
    rgb = np.asarray(face)  # (36, 48, 3)
    height, width = rgb.shape[:2]
    gray = np.asarray(face.convert("L"))  # (36, 48)
    ys, xs = np.mgrid[0:height, 0:width]
    # Alpha covering 0, 255 and everything between.
    alpha = ((xs * 255) // (width - 1)).astype(np.uint8)
    alpha[: height // 4] = 0
    alpha[-height // 4:] = 255
    rng = np.random.default_rng(7)
    wide = lambda values: values.astype(np.uint16) * 257 + rng.integers(0, 257, values.shape).astype(np.uint16)  # noqa: E731

    paths = {}

    def png(name, data):
        paths[name] = save_bytes(IMAGES / name, data)

    png("face_rgb8.png", encode_png(rgb, 2, 8))
    png("face_rgba8.png", encode_png(np.dstack([rgb, alpha]), 6, 8))
    png("face_gray8.png", encode_png(gray, 0, 8))
    png("face_gray_alpha8.png", encode_png(np.dstack([gray, alpha]), 4, 8))
    png("face_rgb16.png", encode_png(wide(rgb), 2, 16))
    png("face_rgba16.png", encode_png(np.dstack([wide(rgb), wide(alpha)]), 6, 16))
    # 16-bit grey in a low range, so PIL's clip-to-255 conversion shows its shape instead of plain white.
    png("face_gray16.png", encode_png(gray.astype(np.uint16) + (gray.astype(np.uint16) // 2), 0, 16))
    png("face_gray_alpha16.png", encode_png(np.dstack([wide(gray), wide(alpha)]), 4, 16))
    png("face_gray1.png", encode_png((gray > 110).astype(np.uint8), 0, 1))
    png("face_gray2.png", encode_png(gray >> 6, 0, 2))
    png("face_gray4.png", encode_png(gray >> 4, 0, 4))

    quantized = face.quantize(colors=200, method=Image.Quantize.MEDIANCUT)
    indices = np.asarray(quantized)
    palette = np.asarray(quantized.getpalette()[: 3 * 200], dtype=np.uint8).reshape(-1, 3)
    png("face_palette8.png", encode_png(indices, 3, 8, palette=palette))
    palette_alpha = ((np.arange(200) * 37) % 256).astype(np.uint8)
    palette_alpha[:20] = 255
    png("face_palette8_trns.png", encode_png(indices, 3, 8, palette=palette, trns=palette_alpha[:150].tobytes()))
    quantized16 = face.quantize(colors=16, method=Image.Quantize.MEDIANCUT)
    palette16 = np.asarray(quantized16.getpalette()[: 3 * 16], dtype=np.uint8).reshape(-1, 3)
    png("face_palette4.png", encode_png(np.asarray(quantized16), 3, 4, palette=palette16))
    png("face_palette4_interlaced.png", encode_png(np.asarray(quantized16), 3, 4, palette=palette16, interlaced=True))

    # Colour keys: PIL matches them against the 8-bit pixels.
    key_rgb = rgb[height // 2, width // 2]
    png("face_rgb8_trns.png", encode_png(rgb, 2, 8, trns=struct.pack(">HHH", *map(int, key_rgb))))
    key_gray = int(gray[height // 2, width // 2])
    png("face_gray8_trns.png", encode_png(gray, 0, 8, trns=struct.pack(">H", key_gray)))
    png("face_gray4_trns.png", encode_png(gray >> 4, 0, 4, trns=struct.pack(">H", 15)))
    png("face_gray1_trns.png", encode_png((gray > 110).astype(np.uint8), 0, 1, trns=struct.pack(">H", 0)))
    dark16 = gray.astype(np.uint16) // 2
    dark16[::5, ::3] = 0
    png("face_gray16_trns.png", encode_png(dark16, 0, 16, trns=struct.pack(">H", 0)))
    # One fully transparent entry among opaque ones: PIL keeps an index rather than the alphas.
    transparent_entry = int(indices[height // 2, width // 2])
    single = np.full(transparent_entry + 3, 255, dtype=np.uint8)
    single[transparent_entry] = 0
    png("face_palette8_trns_single.png", encode_png(indices, 3, 8, palette=palette, trns=single.tobytes()))

    png("face_rgb8_interlaced.png", encode_png(rgb, 2, 8, interlaced=True))
    png("face_rgba16_interlaced.png", encode_png(np.dstack([wide(rgb), wide(alpha)]), 6, 16, interlaced=True))
    png("face_gray2_interlaced.png", encode_png(gray >> 6, 0, 2, interlaced=True))
    # Gamma 1.0 and sRGB-incompatible chromaticities: PIL ignores both, and so must the decoder.
    png("face_rgb8_gamma.png", encode_png(rgb, 2, 8, before_image=[(b"gAMA", struct.pack(">I", 100000))]))

    # Orientation in the four places Pillow looks for it in a PNG.
    tiff_6 = exif_with_orientation(6)[6:]  # eXIf holds the TIFF structure without the "Exif\0\0" prefix
    png("face_exif_6.png", encode_png(rgb, 2, 8, before_image=[(b"eXIf", tiff_6)]))
    png("face_exif_3_after_image.png", encode_png(rgb, 2, 8, after_image=[(b"eXIf", exif_with_orientation(3)[6:])]))
    info = PngImagePlugin.PngInfo()
    info.add_itxt("XML:com.adobe.xmp",
                  '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF><rdf:Description>'
                  "<tiff:Orientation>8</tiff:Orientation></rdf:Description></rdf:RDF></x:xmpmeta>")
    paths["face_xmp_8.png"] = save_pil(face, "face_xmp_8.png", pnginfo=info)
    raw_exif = exif_with_orientation(5)
    hex_digits = raw_exif.hex()
    profile = f"\nexif\n{len(raw_exif):8}\n" + "\n".join(hex_digits[i:i + 72] for i in range(0, len(hex_digits), 72)) + "\n"
    info = PngImagePlugin.PngInfo()
    info.add_text("Raw profile type exif", profile, zip=True)
    paths["face_raw_profile_5.png"] = save_pil(face, "face_raw_profile_5.png", pnginfo=info)

    png("dot_1x1.png", encode_png(np.array([[[200, 30, 90]]], dtype=np.uint8), 2, 8))
    return paths


def make_bad_inputs(photos):
    BAD.mkdir(parents=True, exist_ok=True)
    coffee_png = photos["coffee_wide.png"].read_bytes()
    coffee_jpg = photos["coffee_wide.jpg"].read_bytes()

    astronaut_stream = io.BytesIO()
    Image.fromarray(skimage.data.astronaut()).resize((128, 128)).save(astronaut_stream, "JPEG", quality=90)
    astronaut_128 = astronaut_stream.getvalue()
    tiny_rgb = np.zeros((1, 1, 3), dtype=np.uint8)
    bomb_png = bytearray(encode_png(tiny_rgb, 2, 8))
    bomb_header = struct.pack(">IIBBBBB", 100000, 100000, 8, 2, 0, 0, 0)
    bomb_png[8:33] = png_chunk(b"IHDR", bomb_header)
    bomb_jpg = bytearray(photos["chelsea_small.jpg"].read_bytes())
    start_of_frame = bomb_jpg.index(b"\xff\xc0")
    bomb_jpg[start_of_frame + 5:start_of_frame + 9] = struct.pack(">HH", 65000, 65000)
    broken_ihdr_crc = bytearray(coffee_png)
    broken_ihdr_crc[29] ^= 0xFF
    idat = coffee_png.index(b"IDAT")
    idat_length = struct.unpack(">I", coffee_png[idat - 4:idat])[0]
    garbage = bytes(np.random.default_rng(3).integers(0, 256, idat_length, dtype=np.uint8))
    broken_idat = coffee_png[:idat + 4] + garbage + struct.pack(">I", zlib.crc32(b"IDAT" + garbage) & 0xFFFFFFFF) \
        + coffee_png[idat + 8 + idat_length:]
    bad_dqt = bytearray(coffee_jpg)
    quantization = bad_dqt.index(b"\xff\xdb")
    bad_dqt[quantization + 4] = 0x0F  # table number 15: libjpeg allows 0-3
    gif = io.BytesIO()
    Image.new("RGB", (2, 2)).save(gif, "GIF")

    cases = [
        ("empty.png", b"", "notAnImage"),
        ("random_bytes.bin", np.random.default_rng(1).bytes(4096), "notAnImage"),
        ("text_not_image.jpg", b"This is a text file, not an image.\n", "notAnImage"),
        ("tiny.gif", gif.getvalue(), "unsupportedFormat"),
        ("truncated_half.png", coffee_png[: len(coffee_png) // 2], "truncated"),
        ("truncated_in_header.png", coffee_png[:20], "truncated"),
        ("truncated_half.jpg", coffee_jpg[: len(coffee_jpg) // 2], "truncated"),
        ("truncated_in_header.jpg", coffee_jpg[:120], "truncated"),
        # Without its end-of-image marker PIL still loads this one (every scanline decodes from the bytes
        # present) but not the next (the decoder wants bytes past the end to finish the last row).
        ("missing_end_marker.jpg", coffee_jpg[:-2], "loads"),
        ("missing_end_marker_short_of_data.jpg", astronaut_128[:-2], "truncated"),
        ("bomb_100000x100000.png", bytes(bomb_png), "tooManyPixels"),
        ("bomb_65000x65000.jpg", bytes(bomb_jpg), "tooManyPixels"),
        ("bad_ihdr_crc.png", bytes(broken_ihdr_crc), "corrupt"),
        ("bad_image_data.png", broken_idat, "corrupt"),
        # A marker length below 2: libjpeg skips on and runs out of data looking for the next marker.
        ("bad_marker_length.jpg", b"\xff\xd8\xff\xe0\x00\x01" + bytes(100), "truncated"),
        ("bad_quantization_table.jpg", bytes(bad_dqt), "corrupt"),
    ]
    for name, data, expected in cases:
        path = save_bytes(BAD / name, data)
        try:
            load_image(str(path))
            pil_outcome = "loaded"
        except Exception as error:  # noqa: BLE001 - recording whatever PIL raises
            pil_outcome = f"{type(error).__name__}: {error}".replace(str(FIXTURES) + "/", "")[:200]
        index["bad_inputs"].append({"file": relative(path), "expected": expected, "pil": pil_outcome})
    # The file that loads without its last marker gives exactly the pixels of the complete file.
    complete = np.asarray(load_image(str(photos["coffee_wide.jpg"])))
    assert np.array_equal(np.asarray(load_image(str(BAD / "missing_end_marker.jpg"))), complete)


# ---------------------------------------------------------------------------------------------------------
# References.

def write_array(name: str, array: np.ndarray) -> str:
    path = REFERENCE / name
    array = np.ascontiguousarray(array)
    if array.dtype == np.float32:
        array = array.astype("<f4")
    path.write_bytes(array.tobytes())
    return relative(path)


ALPHA_TAGS = {"discard": "discard", "load_image_then_processor": "loaded", "composite": "composite"}


def reference_image(path: Path, alpha: str) -> Image.Image:
    if alpha == "load_image_then_processor":
        return load_image(str(path))
    assert alpha == "composite"
    return Image.open(path)  # the processor's convert_to_rgb composites it; no exif_transpose on this path


def decoded_rgb(path: Path, alpha: str) -> np.ndarray:
    if alpha == "discard":
        return np.asarray(load_image(str(path)))
    return convert_to_rgb(reference_image(path, alpha), return_numpy=True)


def add_decoded(path: Path, alpha="discard"):
    rgb = decoded_rgb(path, alpha)
    assert rgb.dtype == np.uint8 and rgb.ndim == 3 and rgb.shape[2] == 3
    stem = f"{path.stem}.{path.suffix[1:]}.{ALPHA_TAGS[alpha]}"
    index["decoded"].append({
        "image": relative(path), "alpha": alpha, "exif_orientation": alpha != "composite",
        "reference": write_array(f"{stem}.decoded.u8", rgb), "height": rgb.shape[0], "width": rgb.shape[1],
    })


RESAMPLE_NAMES = {1: "lanczos", 2: "bilinear", 3: "bicubic", 4: "box", 5: "hamming"}


def add_resized(path: Path, width: int, height: int, resample: int):
    source = load_image(str(path))
    resized = np.asarray(source.resize((width, height), resample=resample))
    name = f"{path.stem}.{width}x{height}.{RESAMPLE_NAMES[resample]}.resized.u8"
    index["resized"].append({
        "image": relative(path), "filter": resample, "width": width, "height": height,
        "reference": write_array(name, resized),
    })


def expand2square(image: Image.Image, background) -> Image.Image:
    """LLaVA's original padding (llava/mm_utils.py)."""
    width, height = image.size
    if width == height:
        return image
    if width > height:
        result = Image.new(image.mode, (width, width), background)
        result.paste(image, (0, (width - height) // 2))
        return result
    result = Image.new(image.mode, (height, height), background)
    result.paste(image, ((height - width) // 2, 0))
    return result


def add_pixel_values(path: Path, config: str, alpha="load_image_then_processor", pad_to_square=False):
    processor = processors[config]
    image = reference_image(path, alpha)
    if pad_to_square:
        image = expand2square(image, tuple(int(x * 255) for x in processor.image_mean))
    values = processor(images=image, return_tensors="np")["pixel_values"][0]
    assert values.dtype == np.float32 and values.shape[0] == 3, (values.dtype, values.shape)
    suffix = ".square" if pad_to_square else ""
    name = f"{path.stem}.{path.suffix[1:]}.{config}.{ALPHA_TAGS[alpha]}{suffix}.pixel_values.f32"
    index["pixel_values"].append({
        "image": relative(path), "config": config, "alpha": alpha, "exif_orientation": alpha != "composite",
        "pad_to_square": pad_to_square, "shape": list(values.shape), "reference": write_array(name, values),
    })


def add_resize_sizes():
    """Output sizes of transformers' resize for awkward input sizes (int truncation, round-half-even)."""
    from transformers.image_transforms import get_resize_output_image_size, get_size_with_aspect_ratio
    from transformers.image_utils import ChannelDimension

    sizes = [(1, 1), (1, 1000), (1000, 1), (333, 500), (500, 333), (336, 336), (335, 337), (480, 640), (640, 480),
             (1080, 1920), (4032, 3024), (7, 3), (3, 7), (299, 301), (224, 1000), (1000, 224), (10, 15), (15, 10)]
    for height, width in sizes:
        image = np.zeros((3, height, width), dtype=np.uint8)
        for shortest in (336, 224, 80, 101):
            out = get_resize_output_image_size(image, size=shortest, default_to_square=False,
                                               input_data_format=ChannelDimension.FIRST)
            index["resize_sizes"].append({"height": height, "width": width, "shortest_edge": shortest,
                                          "longest_edge": None, "output": list(out)})
        for shortest, longest in ((80, 100), (336, 672), (20, 21)):
            out = get_size_with_aspect_ratio((height, width), shortest, longest)
            index["resize_sizes"].append({"height": height, "width": width, "shortest_edge": shortest,
                                          "longest_edge": longest, "output": list(out)})


def main():
    if FIXTURES.exists():
        shutil.rmtree(FIXTURES)
    for directory in (IMAGES, CONFIGS, REFERENCE):
        directory.mkdir(parents=True)

    write_configs()
    photos = make_photographs()
    layouts = make_png_layouts()
    make_bad_inputs(photos)

    # Decoding, compared exactly.
    small_photos = [name for name in photos if name.startswith("chelsea") or name == "coffee_progressive.jpg"]
    for name in small_photos + ["camera_gray.png"]:
        add_decoded(photos[name])
    for path in layouts.values():
        add_decoded(path)
    transparent = ["face_rgba8.png", "face_gray_alpha8.png", "face_palette8_trns.png", "face_rgba16.png",
                   "face_gray_alpha16.png", "face_rgb8_trns.png", "face_gray8_trns.png", "face_gray4_trns.png",
                   "face_gray1_trns.png", "face_gray16_trns.png", "face_palette8_trns_single.png",
                   "face_rgba16_interlaced.png"]
    for name in transparent:
        add_decoded(layouts[name], alpha="load_image_then_processor")
        add_decoded(layouts[name], alpha="composite")

    # Resizing: every filter, down and up, one axis only, an exact 2x reduction, a 1x1 source.
    coffee, chelsea = photos["coffee_wide.jpg"], photos["chelsea_small.jpg"]
    add_resized(coffee, 112, 75, 3)
    add_resized(coffee, 61, 103, 3)
    add_resized(coffee, 89, 59, 2)
    add_resized(coffee, 64, 43, 1)
    add_resized(coffee, 77, 51, 5)
    add_resized(coffee, 100, 67, 4)
    add_resized(chelsea, 36, 24, 4)
    add_resized(chelsea, 72, 30, 3)
    add_resized(chelsea, 50, 48, 3)
    add_resized(chelsea, 120, 80, 3)
    # Pillow 13 runs the vertical pass first when the height shrinks by more than twice the width's reduction.
    add_resized(coffee, 290, 100, 3)
    add_resized(chelsea, 100, 30, 1)
    add_resized(layouts["dot_1x1.png"], 5, 3, 3)

    # pixel_values.
    add_pixel_values(photos["astronaut_400.jpg"], "llava-1.5-7b-hf")
    for name in ["rocket_tall.jpg", "chelsea_small.jpg"]:
        add_pixel_values(photos[name], "clip-112")
    for name in ["coffee_wide.jpg", "camera_gray.jpg", "coffee_wide.png", "coffee_progressive.jpg"]:
        add_pixel_values(photos[name], "clip-64")
    add_pixel_values(photos["rocket_tall.jpg"], "clip-64", pad_to_square=True)
    add_pixel_values(photos["coffee_wide.png"], "clip-64", pad_to_square=True)
    add_pixel_values(photos["camera_gray.png"], "odd-101-crop-97x90-bilinear")
    add_pixel_values(photos["coffee_wide.png"], "exact-60x90-lanczos-no-crop")
    add_pixel_values(photos["rocket_tall.jpg"], "shortest-80-longest-100-crop-72")
    add_pixel_values(photos["chelsea_small.jpg"], "hamming-box")
    for name in photos:
        if name.startswith("chelsea_orientation") or name.startswith("chelsea_xmp") or name.startswith("chelsea_exif"):
            add_pixel_values(photos[name], "exif-32-crop-32x24")
    for name in ["chelsea_444.jpg", "chelsea_422.jpg", "chelsea_cmyk.jpg"]:
        add_pixel_values(photos[name], "clip-24")
    for path in layouts.values():
        add_pixel_values(path, "clip-24")
    for name in ["face_rgba8.png", "face_palette8_trns.png", "face_gray_alpha16.png", "face_rgb8_trns.png",
                 "face_palette8_trns_single.png", "face_gray16_trns.png"]:
        add_pixel_values(layouts[name], "clip-24", alpha="composite")
    add_pixel_values(layouts["face_rgb8.png"], "rescale-only-24")
    add_pixel_values(layouts["face_rgb8.png"], "normalize-only-24")

    add_resize_sizes()
    (FIXTURES / "index.json").write_text(json.dumps(index, indent=1) + "\n")
    total = sum(path.stat().st_size for path in FIXTURES.rglob("*") if path.is_file())
    print(f"wrote {sum(1 for p in FIXTURES.rglob('*') if p.is_file())} files, {total / 1e6:.2f} MB into {FIXTURES}")


if __name__ == "__main__":
    main()
