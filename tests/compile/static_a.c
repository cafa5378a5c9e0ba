/* SBX_STATIC: two units each with a private copy must link without clashes. */
#define SBX_STATIC
#define SANDBOX_IMPLEMENTATION
#include "sandbox.h"
int static_b(void);
int main(void) { return (sbx_strerror(SBX_OK)[0] == 's' && static_b() == 0) ? 0 : 1; }
