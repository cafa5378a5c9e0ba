/* End-to-end on a cluster that serves only v1alpha1 (controllers before
   v1beta1): claims name a template, claim status may say "Name". The same
   user code as on v1beta1 must work unchanged. */
#define SANDBOX_IMPLEMENTATION
#include "sandbox.h"
#include "test.h"

static e2e_cluster C;
static sbx_client client;

TEST(template_claim_on_v1alpha1)
{
    sbx_sandbox sb;
    sbx_sandbox_config cfg;
    sbx_exec_result res;
    char *back = NULL;
    size_t len = 0;
    memset(&cfg, 0, sizeof cfg);
    cfg.template_name = "python-sandbox-template";
    CHECK_EQ_INT(sbx_open(&sb, &client, &cfg), SBX_OK);
    if (!sb.impl) { printf("  %s\n", sb.err.msg); return; }
    CHECK(sbx_sandbox_name(&sb) && sbx_sandbox_name(&sb)[0]);
    CHECK_EQ_INT(sbx_run(&sb, "echo 'Hello, World!'", &res), SBX_OK);
    CHECK(res.out_len == 14 && memcmp(res.out, "Hello, World!\n", 14) == 0);
    sbx_exec_result_free(&res);
    CHECK_EQ_INT(sbx_write(&sb, "f.txt", "alpha", 5), SBX_OK);
    CHECK_EQ_INT(sbx_read(&sb, "f.txt", &back, &len), SBX_OK);
    CHECK(len == 5 && back && memcmp(back, "alpha", 5) == 0);
    sbx_free(back);
    CHECK_EQ_INT(sbx_close(&sb), SBX_OK);
}

TEST(warm_pool_alone_needs_a_template_on_v1alpha1)
{
    sbx_sandbox sb;
    sbx_sandbox_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.warm_pool = "python-sandbox-warmpool";
    CHECK_EQ_INT(sbx_open(&sb, &client, &cfg), SBX_ERR_INVALID_ARG);
    CHECK_MSG(strstr(sb.err.msg, "v1alpha1") && strstr(sb.err.msg, "template_name"), "%s", sb.err.msg);
}

TEST(nothing_left_behind)
{
    long long deadline = sbx__deadline(10000);
    int claims = -1;
    while (sbx__ms_left(deadline) > 0 &&
           (claims = e2e_count(&C, "/apis/extensions.agents.x-k8s.io/v1alpha1/sandboxclaims")) != 0)
        poll(NULL, 0, 50);
    CHECK_EQ_INT(claims, 0);
}

int main(void)
{
    sbx_client_config cc;
    e2e_pick_kubectl();
    if (e2e_up(&C, "e2e-alpha", "--v1alpha1-only") != 0) {
        printf("e2e_alpha: 0 passed, 1 failed\n");
        return 1;
    }
    memset(&cc, 0, sizeof cc);
    cc.kubeconfig = C.kubeconfig;
    if (sbx_client_open(&client, &cc) != SBX_OK) {
        printf("client open failed: %s\n", client.err.msg);
        e2e_down(&C);
        printf("e2e_alpha: 0 passed, 1 failed\n");
        return 1;
    }
    RUN(template_claim_on_v1alpha1);
    RUN(warm_pool_alone_needs_a_template_on_v1alpha1);
    RUN(nothing_left_behind);
    sbx_client_close(&client);
    CHECK_EQ_INT(e2e_child_count(), 0);
    e2e_down(&C);
    return test_summary("e2e_alpha");
}
