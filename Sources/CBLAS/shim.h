#include <cblas.h>
// OpenBLAS extensions: its thread count is process-wide.
void openblas_set_num_threads(int num_threads);
int openblas_get_num_threads(void);
// OPENBLAS_THREAD_TIMEOUT as OpenBLAS read it at load (0 when unset): its idle threads wait 2^value cycles.
int openblas_thread_timeout(void);
// The kernel family OpenBLAS's DYNAMIC_ARCH picked at load ("Prescott", "SkylakeX", "Haswell", ...).
char *openblas_get_corename(void);
