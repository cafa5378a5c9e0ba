/* End-to-end: nothing outlives the program (issue 8). A client program that
   ends without closing - it returns without sbx_client_close, is SIGKILLed, or
   gets Ctrl-C (SIGINT to its process group) - leaves no kubectl child after
   2 s and no claim after 10 s; a detached claim and another program's claim
   survive; every claim carries its owner; sbx_client_close leaves no
   supervisor behind. The client programs are forked copies of this suite
   (each opens its own client after the fork); their children are found in
   /proc before they die (they are reparented after) and followed by pid and
   start time, so a recycled pid is never mistaken for a survivor. */
#define SANDBOX_IMPLEMENTATION
#include "sandbox.h"
#include "test.h"

static e2e_cluster C;
static em_base B;

#define CLAIMS_NS "/apis/extensions.agents.x-k8s.io/v1beta1/namespaces/default/sandboxclaims"

/* After the client program ended: its children gone within 2 s, its claims
   within 10 s, and then its supervisor too. */
static void check_cleaned(eo_client_run *r, const char *how)
{
    eo_proc_id sup;
    long long kids_ms, claim_ms, claim2_ms = 0, sup_ms;
    int have_sup = eo_proc_id_of(r->sup, &sup);
    int want = strcmp(r->sockdir, "-") == 0 ? 1 : 2; /* port-forward (and kubectl proxy) */
    CHECK_MSG(r->nkids >= want, "%s: expected %d kubectl children, found %d", how, want, r->nkids);
    kids_ms = eo_wait_gone(r->kids, r->nkids, 2000);
    if (kids_ms >= 0) kids_ms = sbx__now_ms() - r->end_ms; /* counted from the end of the owner */
    CHECK_MSG(kids_ms >= 0, "%s: a kubectl child still runs 2 s after its owner ended", how);
    claim_ms = eo_wait_claim_gone(&C, r->claim, 10000);
    if (claim_ms >= 0) claim_ms = sbx__now_ms() - r->end_ms;
    CHECK_MSG(claim_ms >= 0, "%s: claim %s still there 10 s after its owner ended", how, r->claim);
    if (strcmp(r->claim2, "-") != 0) {
        claim2_ms = eo_wait_claim_gone(&C, r->claim2, 10000);
        if (claim2_ms >= 0) claim2_ms = sbx__now_ms() - r->end_ms;
        CHECK_MSG(claim2_ms >= 0, "%s: claim %s still there 10 s after its owner ended", how, r->claim2);
    }
    sup_ms = have_sup ? eo_wait_gone(&sup, 1, 10000) : 0;
    CHECK_MSG(sup_ms >= 0, "%s: the supervisor %d still runs", how, r->sup);
    CHECK_MSG(want == 1 || access(r->sockdir, F_OK) != 0, "%s: kubectl proxy's directory %s is still there", how,
              r->sockdir);
    printf("  %s: %d children gone after %lld ms, claim%s gone after %lld ms, supervisor after %lld ms\n", how,
           r->nkids, kids_ms, claim2_ms ? "s" : "", claim_ms > claim2_ms ? claim_ms : claim2_ms, sup_ms);
}

/* ---- tests --------------------------------------------------------------- */

TEST(return_without_close_cleans_up)
{
    eo_client_run r;
    int st;
    if (eo_client_start(&C, &r, EO_END_RETURN_2, NULL) != 0) {
        CHECK(0);
        return;
    }
    st = eo_client_wait(&r);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    check_cleaned(&r, "exit without close (2 sandboxes)");
    em_settle(&C, &B);
}

TEST(sigkill_mid_session_cleans_up)
{
    eo_client_run r;
    int st;
    if (eo_client_start(&C, &r, EO_END_SIGKILL, NULL) != 0) {
        CHECK(0);
        return;
    }
    CHECK_EQ_INT(eo_client_kill(&r, 0, SIGKILL), 0);
    st = eo_client_wait(&r);
    CHECK(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
    check_cleaned(&r, "SIGKILL");
    em_settle(&C, &B);
}

/* With an http:// api_url there is no kubectl proxy: the supervisor deletes
   through that URL (kubectl --server, no kubeconfig). */
TEST(sigkill_with_api_url_cleans_up)
{
    eo_client_run r;
    if (eo_client_start(&C, &r, EO_END_SIGKILL_API_URL, NULL) != 0) {
        CHECK(0);
        return;
    }
    CHECK_EQ_INT(eo_client_kill(&r, 0, SIGKILL), 0);
    eo_client_wait(&r);
    check_cleaned(&r, "SIGKILL, api_url");
    em_settle(&C, &B);
}

TEST(ctrl_c_to_the_group_cleans_up)
{
    eo_client_run r;
    int st;
    if (eo_client_start(&C, &r, EO_END_SIGINT, NULL) != 0) {
        CHECK(0);
        return;
    }
    poll(NULL, 0, 100); /* its setpgid happened before its report */
    CHECK_EQ_INT(eo_client_kill(&r, 1, SIGINT), 0);
    st = eo_client_wait(&r);
    CHECK(WIFSIGNALED(st) && WTERMSIG(st) == SIGINT);
    check_cleaned(&r, "SIGINT to the process group");
    em_settle(&C, &B);
}

TEST(detached_claim_survives)
{
    eo_client_run r;
    em_base b2 = B;
    eo_proc_id sup;
    if (eo_client_start(&C, &r, EO_END_DETACH, NULL) != 0) {
        CHECK(0);
        return;
    }
    eo_proc_id_of(r.sup, &sup);
    eo_client_wait(&r);
    CHECK_MSG(eo_wait_gone(r.kids, r.nkids, 2000) >= 0, "a child survived");
    CHECK_MSG(eo_wait_gone(&sup, 1, 3000) >= 0, "the supervisor survived (it had no claim to delete)");
    CHECK_MSG(access(r.sockdir, F_OK) != 0, "kubectl proxy's directory %s is still there", r.sockdir);
    poll(NULL, 0, 3000); /* longer than a supervisor would take to delete it */
    CHECK_EQ_INT(eo_claim_status(&C, r.claim), 200);
    {
        sbx_client cl;
        sbx_client_config cc;
        memset(&cc, 0, sizeof cc);
        cc.kubeconfig = C.kubeconfig;
        if (sbx_client_open(&cl, &cc) == SBX_OK) {
            CHECK_EQ_INT(sbx_delete_claim(&cl, "default", r.claim, NULL), SBX_OK);
            sbx_client_close(&cl);
        }
    }
    em_settle(&C, &b2);
}

TEST(another_programs_claim_survives)
{
    eo_client_run r;
    em_base b2 = B;
    sbx__buf out;
    int st;
    const char *body = "{\"apiVersion\":\"extensions.agents.x-k8s.io/v1beta1\",\"kind\":\"SandboxClaim\","
                       "\"metadata\":{\"name\":\"not-ours\"},\"spec\":{\"warmPoolRef\":{\"name\":\"python-pool\"}}}";
    st = e2e_http(&C, "POST", CLAIMS_NS, body, &out);
    sbx__buf_free(&out);
    CHECK_EQ_INT(st, 201);
    /* the program even tries that name first (409: not ours), then dies */
    if (eo_client_start(&C, &r, EO_END_SIGKILL, "not-ours") != 0) {
        CHECK(0);
    } else {
        CHECK_EQ_INT(eo_client_kill(&r, 0, SIGKILL), 0);
        eo_client_wait(&r);
        check_cleaned(&r, "SIGKILL beside another program's claim");
    }
    CHECK_EQ_INT(eo_claim_status(&C, "not-ours"), 200);
    st = e2e_http(&C, "DELETE", CLAIMS_NS "/not-ours", NULL, &out);
    sbx__buf_free(&out);
    CHECK_EQ_INT(st, 200);
    em_settle(&C, &b2);
}

static int json_str_at(const char *js, const sbx__jtok *t, int n, int obj, const char *key, char *out, size_t cap)
{
    int i = sbx__json_mem(js, t, n, obj, key);
    out[0] = '\0';
    if (i < 0) return -1;
    sbx__json_copy(js, t, i, out, cap);
    return 0;
}

TEST(claims_carry_their_owner)
{
    sbx_client cl;
    sbx_client_config cc;
    sbx_sandbox sb;
    sbx_sandbox_config cfg;
    static const char *const labels[] = {"team", "blue", "app.kubernetes.io/managed-by", "me", NULL};
    static const char *const ann[] = {"note", "hello", "sandbox.h/owner-pid", "1", NULL};
    sbx__buf out;
    sbx__jtok *t = NULL;
    char target[300], v[300], host[256];
    int n, lab, an, i;
    memset(&cc, 0, sizeof cc);
    cc.kubeconfig = C.kubeconfig;
    CHECK_EQ_INT(sbx_client_open(&cl, &cc), SBX_OK);
    if (!cl.impl) return;
    memset(&cfg, 0, sizeof cfg);
    cfg.template_name = "python-sandbox-template";
    cfg.labels = labels;
    cfg.annotations = ann;
    CHECK_EQ_INT(sbx_open(&sb, &cl, &cfg), SBX_OK);
    if (sb.impl) {
        E2E_FMT(target, sizeof target, CLAIMS_NS "/%s", sbx_claim_name(&sb));
        CHECK_EQ_INT(e2e_http(&C, "GET", target, NULL, &out), 200);
        n = sbx__json_parse_alloc(&C.a, out.data, out.len, &t);
        lab = n > 0 ? sbx__json_get(out.data, t, n, 0, "metadata.labels") : -1;
        an = n > 0 ? sbx__json_get(out.data, t, n, 0, "metadata.annotations") : -1;
        CHECK(lab >= 0 && an >= 0);
        if (lab >= 0 && an >= 0) {
            json_str_at(out.data, t, n, lab, "app.kubernetes.io/managed-by", v, sizeof v);
            CHECK_STR(v, "sandbox.h");
            json_str_at(out.data, t, n, lab, "team", v, sizeof v);
            CHECK_STR(v, "blue");
            json_str_at(out.data, t, n, an, "note", v, sizeof v);
            CHECK_STR(v, "hello");
            gethostname(host, sizeof host);
            json_str_at(out.data, t, n, an, "sandbox.h/owner-host", v, sizeof v);
            CHECK_STR(v, host);
            json_str_at(out.data, t, n, an, "sandbox.h/owner-pid", v, sizeof v);
            CHECK_EQ_INT(atol(v), (long)getpid());
            json_str_at(out.data, t, n, an, "sandbox.h/owner-start", v, sizeof v);
            {
                long long start = atoll(v), now = (long long)time(NULL);
                CHECK_MSG(start > now - 3600 && start <= now, "owner-start %s, now %lld", v, now);
            }
            json_str_at(out.data, t, n, an, "sandbox.h/open-nonce", v, sizeof v);
            CHECK_EQ_INT(strlen(v), 16);
            for (i = 0; v[i]; i++) CHECK(strchr("0123456789abcdef", v[i]) != NULL);
            CHECK_STR(v, sb.impl->nonce);
        }
        sbx__free(&C.a, t);
        sbx__buf_free(&out);
        CHECK_EQ_INT(sbx_close(&sb), SBX_OK);
    } else {
        printf("  %s\n", sb.err.msg);
    }
    sbx_client_close(&cl);
    em_settle(&C, &B);
}

/* kubectl proxy dies mid-session: whether or not sbx_close's DELETE gets
   through (a restarted proxy; without one it fails), the claim stays
   registered until deleted, so it is gone within 10 s of sbx_client_close. */
TEST(proxy_killed_claim_still_deleted)
{
    sbx_client cl;
    sbx_client_config cc;
    sbx_sandbox sb;
    sbx_sandbox_config cfg;
    char name[128];
    sbx_result r;
    long long t0, ms;
    memset(&cc, 0, sizeof cc);
    cc.kubeconfig = C.kubeconfig;
    CHECK_EQ_INT(sbx_client_open(&cl, &cc), SBX_OK);
    if (!cl.impl) return;
    memset(&cfg, 0, sizeof cfg);
    cfg.template_name = "python-sandbox-template";
    CHECK_EQ_INT(sbx_open(&sb, &cl, &cfg), SBX_OK);
    if (!sb.impl) {
        printf("  %s\n", sb.err.msg);
        sbx_client_close(&cl);
        return;
    }
    E2E_FMT(name, sizeof name, "%s", sbx_claim_name(&sb));
    CHECK_EQ_INT(kill(cl.impl->proxy.pid, SIGKILL), 0);
    poll(NULL, 0, 200);
    r = sbx_close(&sb);
    printf("  sbx_close after the proxy died: %s%s\n", r == SBX_OK ? "ok" : "failed: ", r == SBX_OK ? "" : sb.err.msg);
    t0 = sbx__now_ms();
    sbx_client_close(&cl);
    ms = eo_wait_claim_gone(&C, name, 10000);
    CHECK_MSG(ms >= 0, "claim %s still there 10 s after sbx_client_close", name);
    printf("  claim gone %lld ms after sbx_client_close\n", sbx__now_ms() - t0);
    em_settle(&C, &B);
}

TEST(close_leaves_no_supervisor)
{
    sbx_client cl;
    sbx_client_config cc;
    eo_proc_id sup;
    long long t0, ms;
    memset(&cc, 0, sizeof cc);
    cc.kubeconfig = C.kubeconfig;
    t0 = sbx__now_ms();
    CHECK_EQ_INT(sbx_client_open(&cl, &cc), SBX_OK);
    if (!cl.impl) return;
    printf("  client open (supervisor + kubectl proxy): %lld ms\n", sbx__now_ms() - t0);
    CHECK(eo_proc_id_of(cl.impl->sup->pid, &sup) && eo_proc_alive(&sup));
    CHECK_EQ_INT(e2e_supervisor_count(), B.supervisors + 1); /* found by its name */
    {
        char path[64], buf[4096];
        E2E_FMT(path, sizeof path, "/proc/%d/status", sup.pid);
        if (e2e_read_file(path, buf, sizeof buf) == 0 && strstr(buf, "VmRSS:")) {
            char *p = strstr(buf, "VmRSS:");
            printf("  supervisor %.*s\n", (int)strcspn(p, "\n"), p);
        }
    }
    t0 = sbx__now_ms();
    sbx_client_close(&cl);
    printf("  client close: %lld ms\n", sbx__now_ms() - t0);
    ms = eo_wait_gone(&sup, 1, 3000); /* it answered "done": exiting is all that is left */
    CHECK_MSG(ms >= 0, "the supervisor %d outlived sbx_client_close by 3 s", sup.pid);
    printf("  supervisor gone %lld ms after sbx_client_close returned\n", ms);
    em_settle(&C, &B);
}

/* spec.lifecycle of a claim: shutdownTime (epoch s, 0 if none) and policy */
static double claim_shutdown(const char *name, char *policy, size_t cap)
{
    char target[300], when[64];
    sbx__buf out;
    sbx__jtok *t = NULL;
    int n, i;
    double v = 0;
    if (policy) policy[0] = '\0';
    E2E_FMT(target, sizeof target, CLAIMS_NS "/%s", name);
    if (e2e_http(&C, "GET", target, NULL, &out) == 200) {
        n = sbx__json_parse_alloc(&C.a, out.data, out.len, &t);
        i = n > 0 ? sbx__json_get(out.data, t, n, 0, "spec.lifecycle.shutdownTime") : -1;
        if (i >= 0) {
            sbx__json_copy(out.data, t, i, when, sizeof when);
            v = sbx__parse_rfc3339(when, strlen(when));
        }
        i = n > 0 && policy ? sbx__json_get(out.data, t, n, 0, "spec.lifecycle.shutdownPolicy") : -1;
        if (i >= 0) sbx__json_copy(out.data, t, i, policy, cap);
        sbx__free(&C.a, t);
    }
    sbx__buf_free(&out);
    return v;
}

TEST(lease_sets_and_renews_shutdown_time)
{
    sbx_client cl;
    sbx_client_config cc;
    sbx_sandbox sb;
    sbx_sandbox_config cfg;
    char policy[32], name[128];
    double t1, t2, first;
    int moves = 0, i;
    memset(&cc, 0, sizeof cc);
    cc.kubeconfig = C.kubeconfig;
    CHECK_EQ_INT(sbx_client_open(&cl, &cc), SBX_OK);
    if (!cl.impl) return;
    memset(&cfg, 0, sizeof cfg);
    cfg.template_name = "python-sandbox-template";
    cfg.lease_seconds = 3;
    CHECK_EQ_INT(sbx_open(&sb, &cl, &cfg), SBX_OK);
    if (!sb.impl) {
        printf("  %s\n", sb.err.msg);
        sbx_client_close(&cl);
        return;
    }
    E2E_FMT(name, sizeof name, "%s", sbx_claim_name(&sb));
    first = t1 = claim_shutdown(name, policy, sizeof policy);
    CHECK_MSG(t1 > (double)time(NULL) && t1 <= (double)time(NULL) + 4, "shutdownTime %.0f, now %lld", t1,
              (long long)time(NULL));
    CHECK_STR(policy, "Delete");
    /* 6 s: twice the lease; it moves about every second and the claim lives */
    for (i = 0; i < 12; i++) {
        poll(NULL, 0, 500);
        t2 = claim_shutdown(name, NULL, 0);
        CHECK_MSG(t2 > 0, "the claim went while its owner lives (%d ms)", (i + 1) * 500);
        if (t2 <= 0) break;
        if (t2 > t1) moves++;
        t1 = t2;
    }
    printf("  shutdownTime moved %d times in 6 s, %.0f s further than the first\n", moves, t1 - first);
    CHECK_MSG(moves >= 3, "renewed %d times", moves);
    {
        sbx_exec_result res;
        CHECK_EQ_INT(sbx_run(&sb, "echo alive", &res), SBX_OK);
        sbx_exec_result_free(&res);
    }
    CHECK_EQ_INT(sbx_close(&sb), SBX_OK);
    sbx_client_close(&cl);
    em_settle(&C, &B);
}

TEST(lease_never_passes_the_ttl)
{
    sbx_client cl;
    sbx_client_config cc;
    sbx_sandbox sb;
    sbx_sandbox_config cfg;
    char name[128];
    double t, limit;
    memset(&cc, 0, sizeof cc);
    cc.kubeconfig = C.kubeconfig;
    CHECK_EQ_INT(sbx_client_open(&cl, &cc), SBX_OK);
    if (!cl.impl) return;
    memset(&cfg, 0, sizeof cfg);
    cfg.template_name = "python-sandbox-template";
    cfg.lease_seconds = 3;
    cfg.ttl_seconds = 5;
    limit = (double)time(NULL) + 6;
    CHECK_EQ_INT(sbx_open(&sb, &cl, &cfg), SBX_OK);
    if (sb.impl) {
        E2E_FMT(name, sizeof name, "%s", sbx_claim_name(&sb));
        poll(NULL, 0, 3000);
        t = claim_shutdown(name, NULL, 0);
        CHECK_MSG(t > 0 && t <= limit, "shutdownTime %.0f past the TTL's end %.0f", t, limit);
        sbx_close(&sb);
    }
    sbx_client_close(&cl);
    em_settle(&C, &B);
}

TEST(detach_lifts_the_lease)
{
    sbx_client cl;
    sbx_client_config cc;
    sbx_sandbox sb;
    sbx_sandbox_config cfg;
    char name[128];
    em_base b2 = B;
    memset(&cc, 0, sizeof cc);
    cc.kubeconfig = C.kubeconfig;
    CHECK_EQ_INT(sbx_client_open(&cl, &cc), SBX_OK);
    if (!cl.impl) return;
    memset(&cfg, 0, sizeof cfg);
    cfg.template_name = "python-sandbox-template";
    cfg.lease_seconds = 3;
    CHECK_EQ_INT(sbx_open(&sb, &cl, &cfg), SBX_OK);
    if (sb.impl) {
        E2E_FMT(name, sizeof name, "%s", sbx_claim_name(&sb));
        CHECK_EQ_INT(sbx_detach(&sb), SBX_OK);
        CHECK(claim_shutdown(name, NULL, 0) == 0);
        sbx_client_close(&cl);
        poll(NULL, 0, 4500); /* longer than the lease */
        CHECK_EQ_INT(eo_claim_status(&C, name), 200);
        if (sbx_client_open(&cl, &cc) == SBX_OK) {
            CHECK_EQ_INT(sbx_delete_claim(&cl, "default", name, NULL), SBX_OK);
            sbx_client_close(&cl);
        }
    } else {
        sbx_client_close(&cl);
    }
    em_settle(&C, &b2);
}

/* The machine-gone case, as near as one machine gets: the owner AND its
   supervisor are SIGKILLed; only the controller is left to act, at the
   lease's end. */
TEST(lease_owner_and_supervisor_killed_controller_deletes)
{
    eo_client_run r;
    double until;
    long long ms;
    int i;
    if (eo_client_start(&C, &r, EO_END_SIGKILL_LEASE, NULL) != 0) {
        CHECK(0);
        return;
    }
    kill(r.sup, SIGKILL);
    CHECK_EQ_INT(eo_client_kill(&r, 0, SIGKILL), 0);
    eo_client_wait(&r);
    until = claim_shutdown(r.claim, NULL, 0);
    CHECK_MSG(until > 0, "no shutdownTime on a leased claim");
    ms = eo_wait_claim_gone(&C, r.claim, 10000);
    if (ms >= 0) ms = sbx__now_ms() - r.end_ms;
    CHECK_MSG(ms >= 0, "the controller did not delete claim %s within 10 s", r.claim);
    printf("  owner and supervisor SIGKILLed: claim gone after %lld ms (lease 3 s)\n", ms);
    /* with the supervisor killed first, nothing stopped its kubectl children: we do */
    for (i = 0; i < r.nkids; i++)
        if (eo_proc_alive(&r.kids[i])) {
            kill(-r.kids[i].pid, SIGKILL);
            kill(r.kids[i].pid, SIGKILL);
        }
    eo_wait_gone(r.kids, r.nkids, 2000);
    {
        char sock[400];
        E2E_FMT(sock, sizeof sock, "%s/proxy.sock", r.sockdir);
        unlink(sock);
        rmdir(r.sockdir);
    }
    em_settle(&C, &B);
}

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    e2e_pick_kubectl();
    /* the client programs here use the kubectl port-forward pod route, so each
       has a port-forward child beside its proxy to be cleaned up; the fault
       matrix (tests/faults.c) covers the same endings on the WebSocket route */
    setenv("SANDBOX_POD_ROUTE", "kubectl", 1);
    if (e2e_up(&C, "owner", "") != 0) {
        printf("SKIP: the dev cluster did not start\n");
        return 1;
    }
    em_baseline(&C, &B);
    RUN(close_leaves_no_supervisor);
    RUN(claims_carry_their_owner);
    RUN(proxy_killed_claim_still_deleted);
    RUN(return_without_close_cleans_up);
    RUN(sigkill_mid_session_cleans_up);
    RUN(sigkill_with_api_url_cleans_up);
    RUN(ctrl_c_to_the_group_cleans_up);
    RUN(detached_claim_survives);
    RUN(another_programs_claim_survives);
    RUN(lease_sets_and_renews_shutdown_time);
    RUN(lease_never_passes_the_ttl);
    RUN(detach_lifts_the_lease);
    RUN(lease_owner_and_supervisor_killed_controller_deletes);
    e2e_down(&C);
    return test_summary("e2e_owner");
}
