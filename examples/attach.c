/* attach.c - a sandbox that outlives the program that made it: open, detach
   (the claim keeps running), attach again by claim name (as a later run or
   another process would), check the file left behind, then delete the claim
   by name.

   Build:  cc -std=c99 -I.. attach.c -o attach -pthread     (or: make build/attach)
   Run:    ./attach */
#define SANDBOX_IMPLEMENTATION
#include "sandbox.h"

#include <stdio.h>
#include <string.h>

int main(void)
{
    sbx_client client;
    sbx_sandbox sb;
    sbx_sandbox_config cfg = {0};
    sbx_claim_status st;
    sbx_error err;
    char claim[256];
    char *data;
    size_t len;
    int rc = 1;

    if (sbx_client_open(&client, NULL) != SBX_OK) {
        fprintf(stderr, "attach: %s\n", client.err.msg);
        return 1;
    }
    cfg.template_name = "python-sandbox-template";
    cfg.ttl_seconds = 3600; /* a safety net: the claim goes away in an hour anyway */
    if (sbx_open(&sb, &client, &cfg) != SBX_OK) {
        fprintf(stderr, "attach: %s\n", sb.err.msg);
        sbx_client_close(&client);
        return 1;
    }
    snprintf(claim, sizeof claim, "%s", sbx_claim_name(&sb));
    if (sbx_write(&sb, "state.txt", "left here", 9) != SBX_OK) fprintf(stderr, "attach: %s\n", sb.err.msg);
    sbx_detach(&sb); /* the claim and its pod keep running */
    printf("detached from claim %s\n", claim);

    memset(&cfg, 0, sizeof cfg);
    cfg.claim_name = claim;                      /* attach reads its inputs from the config, as open does */
    if (sbx_attach(&sb, &client, &cfg) == SBX_OK) {
        if (sbx_status(&sb, &st) == SBX_OK)
            printf("claim %s: %s (%s)\n", claim, st.state == SBX_STATE_READY ? "ready" : "not ready", st.reason);
        if (sbx_read(&sb, "state.txt", &data, &len) == SBX_OK) {
            printf("found: %.*s\n", (int)len, (const char *)data);
            sbx_free(data);
            rc = 0;
        } else {
            fprintf(stderr, "attach: %s\n", sb.err.msg);
        }
        sbx_detach(&sb);
    } else {
        fprintf(stderr, "attach: %s\n", sb.err.msg);
    }
    if (sbx_delete_claim(&client, NULL, claim, &err) != SBX_OK) {
        fprintf(stderr, "attach: %s\n", err.msg);
        rc = 1;
    } else {
        printf("deleted claim %s\n", claim);
    }
    sbx_client_close(&client);
    return rc;
}
