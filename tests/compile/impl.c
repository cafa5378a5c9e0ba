/* Compile test: the implementation as C (c99 and c11, gcc and clang). */
#define SANDBOX_IMPLEMENTATION
#include "sandbox.h"
int main(void) { return sbx_strerror(SBX_OK)[0] == 's' ? 0 : 1; }
