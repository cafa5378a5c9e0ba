// Compile test: the implementation as C++ (c++11 and c++17, g++ and clang++),
// and the API's shapes as a C++ caller meets them: bytes from sbx_read and
// sbx_run used without a cast, attach configured like open (issue 10).
#define SANDBOX_IMPLEMENTATION
#include "sandbox.h"
#include <cstring>

static int use_without_casts(sbx_sandbox *sb)
{
    char *data = NULL;
    size_t len = 0;
    sbx_exec_result res;
    sbx_sandbox_config cfg;
    int n = 0;
    if (sbx_read(sb, "f.txt", &data, &len) == SBX_OK) {
        n += len > 0 && std::strchr(data, 'x') != NULL;
        sbx_free(data);
    }
    if (sbx_run(sb, "true", &res) == SBX_OK) {
        n += res.diag_len > 0 && res.diag[0] != '\0';
        sbx_exec_result_free(&res);
    }
    std::memset(&cfg, 0, sizeof cfg);
    cfg.claim_name = "kept";
    n += sbx_attach(sb, NULL, &cfg) == SBX_OK;
    return n;
}

int main()
{
    sbx_sandbox closed;
    std::memset(&closed, 0, sizeof closed);
    (void)use_without_casts;
    return sbx_strerror(SBX_OK)[0] == 's' ? 0 : 1;
}
