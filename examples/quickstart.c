/* quickstart.c - the seed's example in C: open a sandbox from the template
   "python-sandbox-template" in namespace "default", run a command, print its
   output, close (which deletes the claim and its pod).

   Build:  cc -std=c99 -I.. quickstart.c -o quickstart -pthread
           (or as C++: c++ -x c++ -I.. quickstart.c -o quickstart -pthread)
   Run:    ./quickstart                 (uses kubectl and your current context)
           KUBECONFIG=path ./quickstart (any cluster running agent-sandbox)
   `make demo` runs it against the bundled dev cluster. */
#define SANDBOX_IMPLEMENTATION
#include "sandbox.h"

#include <stdio.h>
#include <string.h>

int main(void)
{
    sbx_sandbox sb;
    sbx_sandbox_config cfg;
    sbx_exec_result res;
    int rc = 0;

    memset(&cfg, 0, sizeof cfg); /* zero = defaults; builds as C and as C++ */
    cfg.template_name = "python-sandbox-template";
    cfg.ns = "default";
    /* no client: the sandbox starts its own (cfg.client NULL = defaults) and
       sbx_close stops it */
    if (sbx_open(&sb, NULL, &cfg) != SBX_OK) {
        fprintf(stderr, "quickstart: %s\n", sb.err.msg);
        return 1;
    }
    if (sbx_run(&sb, "echo 'Hello, World!'", &res) == SBX_OK) {
        fwrite(res.out, 1, res.out_len, stdout);
        fwrite(res.diag, 1, res.diag_len, stderr);
        sbx_exec_result_free(&res);
    } else {
        fprintf(stderr, "quickstart: %s\n", sb.err.msg);
        rc = 1;
    }
    if (sbx_close(&sb) != SBX_OK) {
        fprintf(stderr, "quickstart: %s\n", sb.err.msg);
        rc = 1;
    }
    return rc;
}
