/* Two-translation-unit link test, part 1: declarations only. */
#include "sandbox.h"
int main(void)
{
    sbx_sandbox sb;
    sb.impl = 0;
    return sbx_close(&sb) == SBX_OK && sbx_strerror(SBX_ERR_TIMEOUT)[0] ? 0 : 1;
}
