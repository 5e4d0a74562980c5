#include <cblas.h>
// OpenBLAS extensions: its thread count is process-wide.
void openblas_set_num_threads(int num_threads);
int openblas_get_num_threads(void);
// The kernel family OpenBLAS's DYNAMIC_ARCH picked at load ("Prescott", "SkylakeX", "Haswell", ...).
char *openblas_get_corename(void);
