/* Two-translation-unit link test, part 2: the implementation. */
#define SANDBOX_IMPLEMENTATION
#include "sandbox.h"
