/* tests/unit/test_proc_noshell.c - a system without /bin/sh (a distroless image):
   no supervisor can start, and the client works without one, as the manual
   says (a lease is the answer there). Compiled with the shell pointed at a
   path that does not exist. */
#define SBX__SUP_SHELL "/nonexistent/sandbox-h-test/sh"
#define SANDBOX_IMPLEMENTATION
#include "sandbox.h"
#include "test.h"

TEST(t_client_without_a_shell)
{
    sbx_client c;
    sbx_client_config cc;
    sbx_sandbox sb;
    sbx_sandbox_config cfg;
    memset(&cc, 0, sizeof cc);
    cc.api_url = "http://127.0.0.1:1"; /* nothing listens: only the open path runs */
    CHECK_EQ_INT(sbx_client_open(&c, &cc), SBX_OK);
    if (!c.impl) return;
    CHECK(c.impl->sup == NULL);
    memset(&cfg, 0, sizeof cfg);
    cfg.template_name = "t";
    cfg.lease_seconds = 30;
    CHECK_EQ_INT(sbx_open(&sb, &c, &cfg), SBX_ERR_CONNECT); /* the usual error, no crash */
    sbx_client_close(&c);
    CHECK(c.impl == NULL);
}

TEST(t_supervisor_start_reports_none)
{
    struct sbx__sup *sup = (struct sbx__sup *)&sup;
    sbx_error e;
    CHECK_EQ_INT(sbx__sup_start(NULL, "kubectl", NULL, NULL, NULL, 1, &sup, &e), SBX_OK);
    CHECK(sup == NULL);
    CHECK_EQ_INT(sbx__sup_add_pid(sup, 1234), -1); /* every call takes "none" */
    CHECK_EQ_INT(sbx__sup_claim(sup, 1, "default", "c", "v1beta1"), -1);
    sbx__sup_finish(sup, 100);
    sbx__sup_unref(sup);
}

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    RUN(t_client_without_a_shell);
    RUN(t_supervisor_start_reports_none);
    return test_summary("proc_noshell");
}
