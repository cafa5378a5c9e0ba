/* tunnel.c - the default connection: a port-forward to the pod of each
   sandbox, in-process over a WebSocket through the client's kubectl proxy
   (SANDBOX_POD_ROUTE=kubectl runs one `kubectl port-forward` per sandbox
   instead). Opens a sandbox from "python-sandbox-template", writes a file,
   runs a command on it, reads it back, lists the directory and closes (which
   deletes the claim and its pod).

   Build:  cc -std=c99 -I.. tunnel.c -o tunnel -pthread     (or: make build/tunnel)
   Run:    ./tunnel                     (kubectl and its current context)
           KUBECONFIG=path ./tunnel     (any cluster running agent-sandbox) */
#define SANDBOX_IMPLEMENTATION
#include "sandbox.h"

#include <stdio.h>
#include <string.h>

int main(void)
{
    sbx_client client;
    sbx_sandbox sb;
    sbx_sandbox_config cfg = {0};
    sbx_exec_result res;
    sbx_file_entry *ents;
    size_t count, i;
    char *data;
    size_t len;
    const char *text = "line one\nline two\n";
    int rc = 1;

    if (sbx_client_open(&client, NULL) != SBX_OK) { /* mode 0: SBX_MODE_POD_TUNNEL */
        fprintf(stderr, "tunnel: %s\n", client.err.msg);
        return 1;
    }
    cfg.template_name = "python-sandbox-template";
    if (sbx_open(&sb, &client, &cfg) != SBX_OK) {
        fprintf(stderr, "tunnel: %s\n", sb.err.msg);
        sbx_client_close(&client);
        return 1;
    }
    printf("sandbox %s (pod %s, claim %s) via %s\n", sbx_sandbox_name(&sb), sbx_pod_name(&sb), sbx_claim_name(&sb),
           sbx_route(&sb));
    if (sbx_write(&sb, "work/notes.txt", text, strlen(text)) == SBX_OK &&
        sbx_run(&sb, "wc -l work/notes.txt", &res) == SBX_OK) { /* no shell: argv only */
        printf("wc says: %.*s", (int)res.out_len, res.out);
        sbx_exec_result_free(&res);
        if (sbx_read(&sb, "work/notes.txt", &data, &len) == SBX_OK) {
            printf("read back %zu bytes, %s\n", len, len == strlen(text) && memcmp(data, text, len) == 0 ? "same" : "DIFFERENT");
            sbx_free(data);
            if (sbx_list_dir(&sb, "work", &ents, &count) == SBX_OK) {
                for (i = 0; i < count; i++) printf("  %s %lld bytes\n", ents[i].name, ents[i].size);
                sbx_free(ents);
                rc = 0;
            }
        }
    }
    if (rc != 0) fprintf(stderr, "tunnel: %s\n", sb.err.msg);
    if (sbx_close(&sb) != SBX_OK) {
        fprintf(stderr, "tunnel: %s\n", sb.err.msg);
        rc = 1;
    }
    sbx_client_close(&client);
    return rc;
}
