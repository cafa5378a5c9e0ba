/* in_cluster.c - no port-forward at all. Two ways:

     ./in_cluster api      (default) through the Kubernetes API server's pod
                           proxy (pods/POD:PORT/proxy) over the client's own
                           kubectl proxy: works from anywhere kubectl works,
                           one process for all sandboxes
     ./in_cluster pod-ip   straight to http://<pod IP>:8888; for programs that
                           run inside the cluster (the default NetworkPolicy
                           may only let the router in)

   Opens a sandbox, asks which runtime answered, runs a command or (sandboxd)
   writes and deletes a file, closes.

   Build:  cc -std=c99 -I.. in_cluster.c -o in_cluster -pthread  (or: make build/in_cluster) */
#define SANDBOX_IMPLEMENTATION
#include "sandbox.h"

#include <stdio.h>
#include <string.h>

int main(int argc, char **argv)
{
    sbx_client client;
    sbx_client_config cc = {0};
    sbx_sandbox sb;
    sbx_sandbox_config cfg = {0};
    sbx_exec_result res;
    unsigned caps;
    int rc = 0;

    cc.mode = argc > 1 && strcmp(argv[1], "pod-ip") == 0 ? SBX_MODE_IN_CLUSTER : SBX_MODE_API_PROXY;
    if (sbx_client_open(&client, &cc) != SBX_OK) {
        fprintf(stderr, "in_cluster: %s\n", client.err.msg);
        return 1;
    }
    cfg.template_name = "python-sandbox-template"; /* runtime: detected (SBX_RUNTIME_AUTO) */
    if (sbx_open(&sb, &client, &cfg) != SBX_OK) {
        fprintf(stderr, "in_cluster: %s\n", sb.err.msg);
        sbx_client_close(&client);
        return 1;
    }
    caps = sbx_capabilities(&sb);
    printf("pod %s at %s: exec %s, delete %s\n", sbx_pod_name(&sb), sbx_pod_ip(&sb) ? sbx_pod_ip(&sb) : "?",
           caps & SBX_CAP_EXEC ? "yes" : "no", caps & SBX_CAP_REMOVE ? "yes" : "no");
    if (caps & SBX_CAP_EXEC) {
        if (sbx_run(&sb, "uname -a", &res) == SBX_OK) {
            printf("%.*s", (int)res.out_len, res.out);
            sbx_exec_result_free(&res);
        } else {
            rc = 1;
        }
    } else if (sbx_write(&sb, "tmp/x", "x", 1) != SBX_OK || sbx_remove_file(&sb, "tmp", 1) != SBX_OK) {
        rc = 1; /* sandboxd: files only, its exec is gRPC */
    }
    if (rc) fprintf(stderr, "in_cluster: %s\n", sb.err.msg);
    if (sbx_close(&sb) != SBX_OK) fprintf(stderr, "in_cluster: %s\n", sb.err.msg);
    sbx_client_close(&client);
    return rc;
}
