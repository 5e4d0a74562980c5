#ifndef VISION_CJPEG_SHIM_H
#define VISION_CJPEG_SHIM_H

// libjpeg reports a fatal error through error_exit, which must not return. The usual answer is to longjmp
// back to the caller, but Swift cannot call setjmp and a longjmp that crosses Swift frames is undefined
// behaviour. So every libjpeg call that can fail runs inside one of the small wrappers below: each arms its own
// setjmp, the error handler longjmps back into that wrapper (only libjpeg frames lie in between), and the
// wrapper returns 0 with the formatted reason in `message`.

#include <stdio.h>  // jpeglib.h uses FILE and size_t without including their headers
#include <setjmp.h>
#include <stdlib.h>
#include <string.h>
#include <jpeglib.h>
#include <jerror.h>

typedef struct vision_jpeg_reader {
    struct jpeg_decompress_struct decompressor;
    struct jpeg_error_mgr error_manager;
    jmp_buf recovery;
    // libjpeg treats running out of data as a warning and pads with an end-of-image marker; PIL refuses a file
    // whose scanlines need bytes past its end, so the warning is remembered and the caller refuses it too.
    int saw_premature_end;
    char message[JMSG_LENGTH_MAX];
} vision_jpeg_reader;

static inline void vision_jpeg_on_error(j_common_ptr common) {
    vision_jpeg_reader *reader = (vision_jpeg_reader *)common->client_data;
    (*common->err->format_message)(common, reader->message);
    longjmp(reader->recovery, 1);
}

// Other warnings (corrupt-but-recoverable entropy data, extraneous bytes) are ignored, as PIL ignores them.
static inline void vision_jpeg_on_message(j_common_ptr common, int level) {
    if (level < 0 && common->err->msg_code == JWRN_JPEG_EOF) {
        vision_jpeg_reader *reader = (vision_jpeg_reader *)common->client_data;
        reader->saw_premature_end = 1;
    }
}

// Returns NULL only when memory runs out.
static inline vision_jpeg_reader *vision_jpeg_reader_create(void) {
    vision_jpeg_reader *reader = (vision_jpeg_reader *)calloc(1, sizeof *reader);
    if (reader == NULL) {
        return NULL;
    }
    reader->decompressor.err = jpeg_std_error(&reader->error_manager);
    reader->error_manager.error_exit = vision_jpeg_on_error;
    reader->error_manager.emit_message = vision_jpeg_on_message;
    reader->decompressor.client_data = reader;  // jpeg_create_decompress keeps err and client_data
    if (setjmp(reader->recovery)) {
        jpeg_destroy_decompress(&reader->decompressor);
        free(reader);
        return NULL;
    }
    jpeg_create_decompress(&reader->decompressor);
    return reader;
}

static inline void vision_jpeg_reader_destroy(vision_jpeg_reader *reader) {
    if (reader == NULL) {
        return;
    }
    jpeg_destroy_decompress(&reader->decompressor);
    free(reader);
}

// Reads the markers up to the first scan, keeping APP1 (EXIF, XMP) for the caller. `data` must outlive the
// reader. 1 on success, 0 with `message` set.
static inline int vision_jpeg_read_header(vision_jpeg_reader *reader, const unsigned char *data, size_t size) {
    if (setjmp(reader->recovery)) {
        return 0;
    }
    jpeg_mem_src(&reader->decompressor, data, (unsigned long)size);
    jpeg_save_markers(&reader->decompressor, JPEG_APP0 + 1, 0xFFFF);
    if (jpeg_read_header(&reader->decompressor, TRUE) != JPEG_HEADER_OK) {
        strncpy(reader->message, "the JPEG stream holds tables but no image", sizeof(reader->message) - 1);
        return 0;
    }
    return 1;
}

// Starts decompression with the given output colour space; afterwards output_width, output_height and
// output_components describe the rows. The default IDCT (JDCT_ISLOW) and fancy upsampling are kept because
// they are what PIL uses.
static inline int vision_jpeg_start(vision_jpeg_reader *reader, J_COLOR_SPACE output_color_space) {
    if (setjmp(reader->recovery)) {
        return 0;
    }
    reader->decompressor.out_color_space = output_color_space;
    if (!jpeg_start_decompress(&reader->decompressor)) {
        strncpy(reader->message, "the JPEG decoder suspended", sizeof(reader->message) - 1);
        return 0;
    }
    return 1;
}

// Decodes every scanline into `pixels` ((output_height, row_bytes)). jpeg_finish_decompress is deliberately
// not called: PIL stops once the last scanline is out and accepts a file that lacks only what follows it (the
// end-of-image marker), while a file whose scanlines need bytes past the end sets saw_premature_end.
static inline int vision_jpeg_read_rows(vision_jpeg_reader *reader, unsigned char *pixels, size_t row_bytes) {
    if (setjmp(reader->recovery)) {
        return 0;
    }
    struct jpeg_decompress_struct *decompressor = &reader->decompressor;
    while (decompressor->output_scanline < decompressor->output_height) {
        JSAMPROW row = pixels + (size_t)decompressor->output_scanline * row_bytes;
        if (jpeg_read_scanlines(decompressor, &row, 1) != 1) {
            strncpy(reader->message, "the JPEG decoder made no progress", sizeof(reader->message) - 1);
            return 0;
        }
    }
    return 1;
}

#endif
