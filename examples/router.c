/* router.c - reaching sandboxes through the sandbox-router instead of one
   port-forward per pod. The mode comes from the first argument:

     ./router tunnel             one `kubectl port-forward svc/sandbox-router-svc`
                                 shared by every sandbox of the client
     ./router gateway [NAME]     the router behind a Gateway (default
                                 external-http-gateway in namespace default)
     ./router direct URL         the router at URL, e.g. from inside the cluster:
                                 http://sandbox-router-svc.agent-sandbox-system.svc.cluster.local:8080

   SANDBOX_ROUTER_TOKEN, if set, is sent as "Authorization: Bearer ...".
   Opens two sandboxes, runs a command in each, closes them.

   Build:  cc -std=c99 -I.. router.c -o router -pthread     (or: make build/router) */
#define SANDBOX_IMPLEMENTATION
#include "sandbox.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv)
{
    sbx_client client;
    sbx_client_config cc = {0};
    sbx_sandbox_config cfg = {0};
    sbx_sandbox sb[2];
    int i, rc = 0;

    if (argc < 2 || (strcmp(argv[1], "direct") == 0 && argc < 3)) {
        fprintf(stderr, "usage: router tunnel | gateway [NAME] | direct URL\n");
        return 2;
    }
    if (strcmp(argv[1], "tunnel") == 0) {
        cc.mode = SBX_MODE_ROUTER_TUNNEL;
    } else if (strcmp(argv[1], "gateway") == 0) {
        cc.mode = SBX_MODE_GATEWAY;
        if (argc > 2) cc.gateway_name = argv[2];
    } else if (strcmp(argv[1], "direct") == 0) {
        cc.mode = SBX_MODE_DIRECT;
        cc.router_url = argv[2];
    } else {
        fprintf(stderr, "router: unknown mode \"%s\"\n", argv[1]);
        return 2;
    }
    cc.router_token = getenv("SANDBOX_ROUTER_TOKEN");
    if (sbx_client_open(&client, &cc) != SBX_OK) {
        fprintf(stderr, "router: %s\n", client.err.msg);
        return 1;
    }
    cfg.template_name = "python-sandbox-template";
    for (i = 0; i < 2; i++) {
        sbx_exec_result res;
        char cmd[64];
        if (sbx_open(&sb[i], &client, &cfg) != SBX_OK) {
            fprintf(stderr, "router: %s\n", sb[i].err.msg);
            rc = 1;
            continue;
        }
        snprintf(cmd, sizeof cmd, "echo hello from sandbox %d", i);
        if (sbx_run(&sb[i], cmd, &res) == SBX_OK) {
            printf("%s: %.*s", sbx_sandbox_name(&sb[i]), (int)res.out_len, res.out);
            sbx_exec_result_free(&res);
        } else {
            /* router errors carry the router's words, e.g.
               "HTTP 502: Could not connect to the backend sandbox: ..." */
            fprintf(stderr, "router: %s\n", sb[i].err.msg);
            rc = 1;
        }
    }
    for (i = 0; i < 2; i++)
        if (sbx_close(&sb[i]) != SBX_OK) fprintf(stderr, "router: %s\n", sb[i].err.msg);
    sbx_client_close(&client);
    return rc;
}
