#ifndef TASKDATA_CZLIB_SHIM_H
#define TASKDATA_CZLIB_SHIM_H

#include <zlib.h>

// inflateInit2 is a macro (it passes zlib's version and the z_stream size to inflateInit2_), and
// Swift does not import function-like macros. 15 + 16: the largest window, gzip header expected.
static inline int taskdata_inflate_init_gzip(z_stream *stream) {
    return inflateInit2(stream, 15 + 16);
}

#endif
