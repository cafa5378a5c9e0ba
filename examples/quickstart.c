/* quickstart.c - the seed's example in C: open a sandbox from the template
   "python-sandbox-template" in namespace "default", run a command, print its
   output, close (which deletes the claim and its pod).

   Build:  cc -std=c99 -I.. quickstart.c -o quickstart -pthread
   Run:    ./quickstart                 (uses kubectl and your current context)
           KUBECONFIG=path ./quickstart (any cluster running agent-sandbox)
   `make demo` runs it against the bundled dev cluster. */
#define SANDBOX_IMPLEMENTATION
#include "sandbox.h"

#include <stdio.h>

int main(void)
{
    sbx_client client;
    sbx_sandbox sb;
    sbx_sandbox_config cfg = {0};
    sbx_exec_result res;

    if (sbx_client_open(&client, NULL) != SBX_OK) {
        fprintf(stderr, "quickstart: %s\n", client.err.msg);
        return 1;
    }
    cfg.template_name = "python-sandbox-template";
    cfg.ns = "default";
    if (sbx_open(&sb, &client, &cfg) != SBX_OK) {
        fprintf(stderr, "quickstart: %s\n", sb.err.msg);
        sbx_client_close(&client);
        return 1;
    }
    if (sbx_run(&sb, "echo 'Hello, World!'", &res) == SBX_OK) {
        fwrite(res.out, 1, res.out_len, stdout);
        sbx_exec_result_free(&res);
    } else {
        fprintf(stderr, "quickstart: %s\n", sb.err.msg);
    }
    if (sbx_close(&sb) != SBX_OK) fprintf(stderr, "quickstart: %s\n", sb.err.msg);
    sbx_client_close(&client);
    return 0;
}
