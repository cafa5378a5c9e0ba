#define SBX_STATIC
#define SANDBOX_IMPLEMENTATION
#include "sandbox.h"
int static_b(void);
int static_b(void) { return sbx_strerror(SBX_ERR_NOMEM)[0] == 'o' ? 0 : 1; }
