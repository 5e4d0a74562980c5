#ifndef VISION_CPNG_SHIM_H
#define VISION_CPNG_SHIM_H

// libpng reports a failure by longjmp-ing out of the libpng call that failed. Swift cannot call setjmp, and a
// longjmp that crosses Swift frames is undefined behaviour, so every libpng call that can fail runs inside one
// of the small wrappers below. Each wrapper arms its own setjmp before calling libpng, so the only frames a
// longjmp ever unwinds are libpng's and the wrapper's; the wrapper then returns 0 and leaves the reason in
// `message`.
//
// The low-level API is used rather than the simplified png_image_* API because the simplified API converts
// what it reads: it applies gAMA/sRGB gamma, treats 16-bit data as linear light, premultiplies 16-bit alpha
// and composites alpha away when asked for RGB. PIL does none of that, and the decoder must match PIL.

#include <setjmp.h>
#include <stdlib.h>
#include <string.h>
#include <png.h>

typedef struct vision_png_reader {
    png_structp png;
    png_infop info;
    const unsigned char *data;  // (size) the whole encoded file, owned by the caller
    size_t size;
    size_t offset;
    int ran_out_of_data;        // set when libpng asked for bytes past the end: the file is truncated
    char message[256];
} vision_png_reader;

static inline void vision_png_on_error(png_structp png, png_const_charp message) {
    vision_png_reader *reader = (vision_png_reader *)png_get_error_ptr(png);
    if (reader != NULL) {
        strncpy(reader->message, message != NULL ? message : "unknown libpng error", sizeof(reader->message) - 1);
        reader->message[sizeof(reader->message) - 1] = '\0';
    }
    png_longjmp(png, 1);
}

// PIL ignores what libpng would warn about (unknown chunks, bad ancillary CRCs), so warnings are dropped.
static inline void vision_png_on_warning(png_structp png, png_const_charp message) {
    (void)png;
    (void)message;
}

static inline void vision_png_read_from_memory(png_structp png, png_bytep destination, size_t length) {
    vision_png_reader *reader = (vision_png_reader *)png_get_io_ptr(png);
    if (length > reader->size - reader->offset) {
        reader->ran_out_of_data = 1;
        png_error(png, "unexpected end of data");
    }
    memcpy(destination, reader->data + reader->offset, length);
    reader->offset += length;
}

// Returns NULL only when memory runs out. `data` must outlive the reader.
static inline vision_png_reader *vision_png_reader_create(const unsigned char *data, size_t size) {
    vision_png_reader *reader = (vision_png_reader *)calloc(1, sizeof *reader);
    if (reader == NULL) {
        return NULL;
    }
    reader->data = data;
    reader->size = size;
    reader->png = png_create_read_struct(PNG_LIBPNG_VER_STRING, reader, vision_png_on_error, vision_png_on_warning);
    if (reader->png == NULL) {
        free(reader);
        return NULL;
    }
    reader->info = png_create_info_struct(reader->png);
    if (reader->info == NULL) {
        png_destroy_read_struct(&reader->png, NULL, NULL);
        free(reader);
        return NULL;
    }
    png_set_read_fn(reader->png, reader, vision_png_read_from_memory);
    return reader;
}

static inline void vision_png_reader_destroy(vision_png_reader *reader) {
    if (reader == NULL) {
        return;
    }
    png_destroy_read_struct(&reader->png, &reader->info, NULL);
    free(reader);
}

// Reads the signature and every chunk before the first IDAT. 1 on success, 0 with `message` set.
static inline int vision_png_read_header(vision_png_reader *reader) {
    if (setjmp(png_jmpbuf(reader->png))) {
        return 0;
    }
    png_read_info(reader->png, reader->info);
    return 1;
}

// Chooses the output layout and lets libpng compute it; afterwards png_get_channels, png_get_bit_depth and
// png_get_rowbytes describe one output row. Palette images become RGB, or RGBA when they have a tRNS chunk
// (png_set_palette_to_rgb expands it); 1/2/4-bit grey becomes 8-bit grey, its tRNS key left to the caller.
// keep_16_bit: otherwise 16-bit samples keep only their high byte, which is what PIL's ";16B" unpackers do.
static inline int vision_png_prepare(vision_png_reader *reader, int keep_16_bit) {
    if (setjmp(png_jmpbuf(reader->png))) {
        return 0;
    }
    png_structp png = reader->png;
    png_infop info = reader->info;
    int color_type = png_get_color_type(png, info);
    int bit_depth = png_get_bit_depth(png, info);
    if (color_type == PNG_COLOR_TYPE_PALETTE) {
        png_set_palette_to_rgb(png);
    }
    if (color_type == PNG_COLOR_TYPE_GRAY && bit_depth < 8) {
        png_set_expand_gray_1_2_4_to_8(png);
    }
    if (bit_depth == 16 && !keep_16_bit) {
        png_set_strip_16(png);
    }
    (void)png_set_interlace_handling(png);
    png_read_update_info(png, info);
    return 1;
}

// Decodes every row into `pixels` ((height, row_bytes), row_bytes from png_get_rowbytes after prepare).
// Interlaced images take several passes over the same rows, exactly as png_read_image does.
static inline int vision_png_read_rows(vision_png_reader *reader, unsigned char *pixels, size_t row_bytes) {
    if (setjmp(png_jmpbuf(reader->png))) {
        return 0;
    }
    png_structp png = reader->png;
    png_uint_32 height = png_get_image_height(png, reader->info);
    int passes = png_get_interlace_type(png, reader->info) == PNG_INTERLACE_NONE ? 1 : 7;
    for (int pass = 0; pass < passes; pass++) {
        for (png_uint_32 y = 0; y < height; y++) {
            png_read_row(png, pixels + (size_t)y * row_bytes, NULL);
        }
    }
    return 1;
}

// Reads the chunks after the image data (an eXIf or text chunk may live there). PIL ignores damage after the
// pixels, so the caller may ignore a 0 result.
static inline int vision_png_read_trailer(vision_png_reader *reader) {
    if (setjmp(png_jmpbuf(reader->png))) {
        return 0;
    }
    png_read_end(reader->png, reader->info);
    return 1;
}

#endif
