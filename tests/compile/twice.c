/* Including the implementation twice in one unit is harmless. */
#define SANDBOX_IMPLEMENTATION
#include "sandbox.h"
#include "sandbox.h"
int main(void) { return 0; }
