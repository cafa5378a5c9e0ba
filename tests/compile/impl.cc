// Compile test: the implementation as C++ (c++11 and c++17, g++ and clang++).
#define SANDBOX_IMPLEMENTATION
#include "sandbox.h"
int main() { return sbx_strerror(SBX_OK)[0] == 's' ? 0 : 1; }
