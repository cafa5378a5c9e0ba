/* End-to-end: the lifecycle calls against the dev cluster - attach to a claim
   by name, detach without deleting, delete and list claims by name and label,
   the claim's status (ready / not ready / gone with the controller's reason),
   TTL with each shutdown policy, env and pod metadata on create, and the
   identity accessors (claim, sandbox, pod, pod IP, namespace). After every test
   nothing is left behind. */
#define SANDBOX_IMPLEMENTATION
#include "sandbox.h"
#include "test.h"

static e2e_cluster C;
static em_base B;
static sbx_client client;

#define CLAIMS_NS "/apis/extensions.agents.x-k8s.io/v1beta1/namespaces/default/sandboxclaims"

static void cfg_python(sbx_sandbox_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->template_name = "python-sandbox-template";
}

/* 200 if the claim exists, 404 if not */
/* attach takes the claim's name and namespace from its config, as open does */
static sbx_result attach_to(sbx_sandbox *sb, sbx_client *c, const char *ns, const char *name)
{
    sbx_sandbox_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.ns = ns;
    cfg.claim_name = name;
    return sbx_attach(sb, c, &cfg);
}

static int claim_http(const char *name, sbx__buf *out)
{
    char target[300];
    E2E_FMT(target, sizeof target, CLAIMS_NS "/%s", name);
    return e2e_http(&C, "GET", target, NULL, out);
}

static int claim_exists(const char *name)
{
    sbx__buf out;
    int st = claim_http(name, &out);
    sbx__buf_free(&out);
    return st == 200;
}

/* settle with the shared client still open: its kubectl proxy and idle API
   connections are part of the baseline of this suite */
static void settle(void)
{
    int idle;
    em_base now = B;
    pthread_mutex_lock(&client.impl->mu);
    idle = client.impl->nidle;
    pthread_mutex_unlock(&client.impl->mu);
    now.fds = B.fds + idle;
    em_settle(&C, &now);
}

TEST(detach_then_attach_by_name_then_delete_by_name)
{
    sbx_sandbox sb;
    sbx_sandbox_config cfg;
    sbx_exec_result res;
    char claim[128], sandbox[128], pod[128], ip[64];
    char *back = NULL;
    size_t len = 0;
    cfg_python(&cfg);
    CHECK_EQ_INT(sbx_open(&sb, &client, &cfg), SBX_OK);
    if (!sb.impl) { printf("  %s\n", sb.err.msg); return; }
    E2E_FMT(claim, sizeof claim, "%s", sbx_claim_name(&sb));
    E2E_FMT(sandbox, sizeof sandbox, "%s", sbx_sandbox_name(&sb));
    E2E_FMT(pod, sizeof pod, "%s", sbx_pod_name(&sb));
    E2E_FMT(ip, sizeof ip, "%s", sbx_pod_ip(&sb) ? sbx_pod_ip(&sb) : "");
    CHECK_EQ_INT(sbx_write(&sb, "kept.txt", "still here", 10), SBX_OK);
    CHECK_EQ_INT(sbx_detach(&sb), SBX_OK);
    CHECK(sb.impl == NULL);
    CHECK_EQ_INT(sbx_detach(&sb), SBX_OK); /* idempotent */
    CHECK(claim_exists(claim));
    CHECK_EQ_INT(e2e_child_count(), B.children); /* its port-forward is gone */

    CHECK_EQ_INT(attach_to(&sb, &client, "default", claim), SBX_OK);
    if (sb.impl) {
        CHECK_STR(sbx_claim_name(&sb), claim);
        CHECK_STR(sbx_sandbox_name(&sb), sandbox);
        CHECK_STR(sbx_pod_name(&sb), pod);
        CHECK_STR(sbx_pod_ip(&sb), ip);
        CHECK_EQ_INT(sbx_read(&sb, "kept.txt", &back, &len), SBX_OK); /* the same pod */
        CHECK(back && len == 10 && memcmp(back, "still here", 10) == 0);
        sbx_free(back);
        CHECK_EQ_INT(sbx_run(&sb, "echo attached", &res), SBX_OK);
        CHECK(res.out_len == 9 && memcmp(res.out, "attached\n", 9) == 0);
        sbx_exec_result_free(&res);
        CHECK_EQ_INT(sbx_detach(&sb), SBX_OK);
    } else {
        printf("  %s\n", sb.err.msg);
    }
    CHECK(claim_exists(claim));
    {
        sbx_error err;
        CHECK_EQ_INT(sbx_delete_claim(&client, NULL, claim, &err), SBX_OK);
        CHECK_EQ_INT(err.code, SBX_OK);
        CHECK(!claim_exists(claim));
        CHECK_EQ_INT(sbx_delete_claim(&client, "default", claim, &err), SBX_ERR_NOT_FOUND);
        CHECK_EQ_INT(err.http_status, 404);
        CHECK_MSG(strstr(err.msg, claim), "%s", err.msg);
        CHECK_EQ_INT(sbx_delete_claim(&client, "default", claim, NULL), SBX_ERR_NOT_FOUND); /* err may be NULL */
        CHECK_EQ_INT(sbx_delete_claim(&client, "default", "Bad_Name", &err), SBX_ERR_INVALID_ARG);
    }
    settle();
}

TEST(close_after_attach_deletes_the_claim)
{
    sbx_sandbox sb;
    sbx_sandbox_config cfg;
    char claim[128];
    cfg_python(&cfg);
    cfg.claim_name = "attach-then-close";
    CHECK_EQ_INT(sbx_open(&sb, &client, &cfg), SBX_OK);
    if (!sb.impl) { printf("  %s\n", sb.err.msg); return; }
    E2E_FMT(claim, sizeof claim, "%s", sbx_claim_name(&sb));
    CHECK_STR(claim, "attach-then-close");
    CHECK_EQ_INT(sbx_detach(&sb), SBX_OK);
    CHECK_EQ_INT(attach_to(&sb, &client, NULL, claim), SBX_OK);
    CHECK_EQ_INT(sbx_close(&sb), SBX_OK);
    CHECK(!claim_exists(claim));
    settle();
}

TEST(attach_fails_clearly)
{
    sbx_sandbox sb;
    sbx__buf out;
    int st;
    long long t0;
    /* gone */
    CHECK_EQ_INT(attach_to(&sb, &client, "default", "no-such-claim"), SBX_ERR_NOT_FOUND);
    CHECK_MSG(strstr(sb.err.msg, "no SandboxClaim \"no-such-claim\""), "%s", sb.err.msg);
    CHECK(sb.impl == NULL);
    CHECK_EQ_INT(attach_to(&sb, &client, "default", "Not/A/Name"), SBX_ERR_INVALID_ARG);
    {
        sbx_client closed;
        memset(&closed, 0, sizeof closed);
        CHECK_EQ_INT(attach_to(&sb, &closed, "default", "x"), SBX_ERR_CLOSED);
    }
    CHECK_EQ_INT(sbx_attach(&sb, &client, NULL), SBX_ERR_INVALID_ARG); /* no claim_name */
    /* not Ready: refused at once, and the claim (not ours) is kept */
    e2e_faults(&C, "{\"never_ready\":true}");
    st = e2e_http(&C, "POST", CLAIMS_NS,
                  "{\"apiVersion\":\"extensions.agents.x-k8s.io/v1beta1\",\"kind\":\"SandboxClaim\","
                  "\"metadata\":{\"name\":\"pending-claim\"},\"spec\":{\"warmPoolRef\":{\"name\":\"python-sandbox-coldpool\"}}}",
                  &out);
    sbx__buf_free(&out);
    CHECK_EQ_INT(st, 201);
    t0 = sbx__now_ms();
    CHECK_EQ_INT(attach_to(&sb, &client, "default", "pending-claim"), SBX_ERR_SANDBOX);
    CHECK_MSG(strstr(sb.err.msg, "is not Ready"), "%s", sb.err.msg);
    CHECK(em_since(t0) < 3000);
    CHECK(claim_exists("pending-claim"));
    CHECK_EQ_INT(sbx_delete_claim(&client, "default", "pending-claim", NULL), SBX_OK);
    settle();
}

TEST(list_claims_by_label_selector)
{
    static const char *const la[] = {"team", "a", "tier", "x", NULL};
    static const char *const lb[] = {"team", "b", NULL};
    sbx_sandbox s1, s2, s3;
    sbx_sandbox_config cfg;
    sbx_error err;
    sbx_claim_entry *ents = NULL;
    size_t count = 99, i;
    int f1 = 0, f2 = 0;
    long long now = (long long)time(NULL);
    cfg_python(&cfg);
    cfg.warm_pool = "python-sandbox-coldpool";
    cfg.template_name = NULL;
    cfg.labels = la;
    CHECK_EQ_INT(sbx_open(&s1, &client, &cfg), SBX_OK);
    CHECK_EQ_INT(sbx_open(&s2, &client, &cfg), SBX_OK);
    cfg.labels = lb;
    CHECK_EQ_INT(sbx_open(&s3, &client, &cfg), SBX_OK);
    if (s1.impl && s2.impl && s3.impl) {
        char host[256];
        if (gethostname(host, sizeof host - 1) != 0) host[0] = '\0';
        host[sizeof host - 1] = '\0';
        CHECK_EQ_INT(sbx_list_claims(&client, NULL, "team=a", &ents, &count, &err), SBX_OK);
        CHECK_EQ_INT(count, 2);
        for (i = 0; ents && i < count; i++) {
            if (strcmp(ents[i].name, sbx_claim_name(&s1)) == 0) f1 = 1;
            if (strcmp(ents[i].name, sbx_claim_name(&s2)) == 0) f2 = 1;
            /* what sbx ps and gc read: Ready, age, owner */
            CHECK_STR(ents[i].ns, "default");
            CHECK_EQ_INT(ents[i].ready, 1);
            CHECK_EQ_INT(ents[i].deleting, 0);
            CHECK(ents[i].reason[0] != '\0');
            CHECK_MSG(ents[i].created > now - 60 && ents[i].created <= now + 5, "created %lld, now %lld",
                      ents[i].created, now);
            CHECK_STR(ents[i].owner_host, host);
            CHECK_EQ_INT(ents[i].owner_pid, getpid());
            CHECK(ents[i].owner_start > now - 3600 && ents[i].owner_start <= now);
        }
        CHECK(f1 && f2);
        sbx_free(ents);
        CHECK_EQ_INT(sbx_list_claims(&client, "default", "team in (a,b),tier!=x", &ents, &count, &err), SBX_OK);
        CHECK_EQ_INT(count, 1);
        CHECK(count == 1 && strcmp(ents[0].name, sbx_claim_name(&s3)) == 0);
        sbx_free(ents);
        CHECK_EQ_INT(sbx_list_claims(&client, NULL, NULL, &ents, &count, NULL), SBX_OK);
        CHECK_EQ_INT(count, 3);
        sbx_free(ents);
        /* "*": every namespace, each entry naming its own */
        CHECK_EQ_INT(sbx_list_claims(&client, "*", "team", &ents, &count, &err), SBX_OK);
        CHECK_EQ_INT(count, 3);
        for (i = 0; ents && i < count; i++) CHECK_STR(ents[i].ns, "default");
        sbx_free(ents);
        CHECK_EQ_INT(sbx_list_claims(&client, NULL, "team=nobody", &ents, &count, &err), SBX_OK);
        CHECK(count == 0 && ents);
        sbx_free(ents);
        CHECK_EQ_INT(sbx_list_claims(&client, NULL, "===", &ents, &count, &err), SBX_ERR_HTTP);
        CHECK_EQ_INT(err.http_status, 400);
        CHECK(ents == NULL && count == 0);
        CHECK_EQ_INT(sbx_list_claims(&client, "Bad_NS", NULL, &ents, &count, &err), SBX_ERR_INVALID_ARG);
    } else {
        printf("  %s / %s / %s\n", s1.err.msg, s2.err.msg, s3.err.msg);
    }
    sbx_close(&s1);
    sbx_close(&s2);
    sbx_close(&s3);
    settle();
}

TEST(status_ready_not_ready_gone)
{
    sbx_sandbox sb;
    sbx_sandbox_config cfg;
    sbx_claim_status st;
    cfg_python(&cfg);
    CHECK_EQ_INT(sbx_open(&sb, &client, &cfg), SBX_OK);
    if (!sb.impl) { printf("  %s\n", sb.err.msg); return; }
    CHECK_EQ_INT(sbx_status(&sb, &st), SBX_OK);
    CHECK_EQ_INT(st.state, SBX_STATE_READY);
    CHECK_STR(st.reason, "DependenciesReady");
    CHECK_MSG(strstr(st.message, "Ready"), "%s", st.message);
    /* deleted behind the handle's back: gone, and close still succeeds */
    CHECK_EQ_INT(sbx_delete_claim(&client, NULL, sbx_claim_name(&sb), NULL), SBX_OK);
    CHECK_EQ_INT(sbx_status(&sb, &st), SBX_OK);
    CHECK_EQ_INT(st.state, SBX_STATE_GONE);
    CHECK_STR(st.reason, "NotFound");
    CHECK_MSG(strstr(st.message, "not found"), "%s", st.message);
    CHECK_EQ_INT(sbx_close(&sb), SBX_OK);
    CHECK_EQ_INT(sbx_status(&sb, &st), SBX_ERR_CLOSED);
    CHECK_EQ_INT(sbx_status(NULL, &st), SBX_ERR_INVALID_ARG);
    settle();
}

/* The claim as stored: its spec.lifecycle. */
/* `before`: time(NULL) just before the open. The library writes the create
   + ttl rounded up to a whole second, so that lies between before + ttl and
   now + ttl + 1 however long the open took. */
static void check_lifecycle(const char *claim, const char *policy, int ttl, long long before)
{
    sbx__buf out;
    sbx__jtok *t = NULL;
    int n, pol, tm;
    char when[40];
    CHECK_EQ_INT(claim_http(claim, &out), 200);
    n = sbx__json_parse_alloc(&C.a, out.data, out.len, &t);
    pol = n > 0 ? sbx__json_get(out.data, t, n, 0, "spec.lifecycle.shutdownPolicy") : -1;
    tm = n > 0 ? sbx__json_get(out.data, t, n, 0, "spec.lifecycle.shutdownTime") : -1;
    CHECK(pol >= 0 && sbx__json_eq(out.data, t, pol, policy));
    when[0] = '\0';
    if (tm >= 0) sbx__json_unescape(out.data, t, tm, when, sizeof when, NULL);
    {
        double at = sbx__parse_rfc3339(when, strlen(when));
        double now = (double)time(NULL);
        CHECK_MSG(at >= (double)before + ttl && at <= now + ttl + 1, "shutdownTime %s is not the create + %d s (open %lld..%.0f)",
                  when, ttl, before, now);
    }
    sbx__free(&C.a, t);
    sbx__buf_free(&out);
}

/* The TTL tests open with a TTL long enough to outlast any open, then make
   the claim due at once. A short TTL (it was 2 s) is a budget the whole open
   must fit in, and the open is not bounded under load: on the kubectl route
   it starts kubectl port-forward (0.7 s on a quiet machine, over 2 s at load
   8), and shutdownTime has whole seconds, so a 2 s TTL ended 1.0 to 2.0 s after
   the create; the claim then expired before the tunnel started, and kubectl
   said the pod was NotFound. check_lifecycle proves the library wrote the
   TTL; moving shutdownTime to now is what a lease renewal or a user's edit
   does, and the controller acts on it as on the TTL. */
#define LONG_TTL_S 60

static void expire_now(const char *claim)
{
    char target[300], body[160], now[40];
    sbx__buf out;
    E2E_FMT(target, sizeof target, CLAIMS_NS "/%s", claim);
    sbx__rfc3339(now, (long long)time(NULL));
    E2E_FMT(body, sizeof body, "{\"spec\":{\"lifecycle\":{\"shutdownTime\":\"%s\"}}}", now);
    CHECK_EQ_INT(e2e_http(&C, "PATCH", target, body, &out), 200);
    sbx__buf_free(&out);
}

/* Poll the status until `want` (bounded). */
static sbx_state wait_state(sbx_sandbox *sb, sbx_state want, int ms, sbx_claim_status *st)
{
    long long deadline = sbx__deadline(ms);
    do {
        if (sbx_status(sb, st) != SBX_OK) return (sbx_state)-1;
        if (st->state == want) break;
        poll(NULL, 0, 100);
    } while (sbx__ms_left(deadline) > 0);
    return st->state;
}

TEST(ttl_delete_policy_by_default)
{
    sbx_sandbox sb;
    sbx_sandbox_config cfg;
    sbx_claim_status st;
    long long before;
    cfg_python(&cfg);
    cfg.ttl_seconds = LONG_TTL_S;
    before = (long long)time(NULL);
    CHECK_EQ_INT(sbx_open(&sb, &client, &cfg), SBX_OK);
    if (!sb.impl) { printf("  %s\n", sb.err.msg); return; }
    check_lifecycle(sbx_claim_name(&sb), "Delete", LONG_TTL_S, before);
    CHECK_EQ_INT(sbx_status(&sb, &st), SBX_OK);
    CHECK_EQ_INT(st.state, SBX_STATE_READY);
    expire_now(sbx_claim_name(&sb));
    CHECK_EQ_INT(wait_state(&sb, SBX_STATE_GONE, 6000, &st), SBX_STATE_GONE);
    CHECK(!claim_exists(sbx_claim_name(&sb)));
    CHECK_EQ_INT(sbx_close(&sb), SBX_OK);
    settle();
}

TEST(ttl_retain_policy_keeps_the_claim)
{
    sbx_sandbox sb;
    sbx_sandbox_config cfg;
    sbx_claim_status st;
    long long before;
    char target[300];
    sbx__buf out;
    int code = 0;
    long long deadline;
    cfg_python(&cfg);
    cfg.ttl_seconds = LONG_TTL_S;
    cfg.shutdown_policy = "Retain";
    before = (long long)time(NULL);
    CHECK_EQ_INT(sbx_open(&sb, &client, &cfg), SBX_OK);
    if (!sb.impl) { printf("  %s\n", sb.err.msg); return; }
    check_lifecycle(sbx_claim_name(&sb), "Retain", LONG_TTL_S, before);
    expire_now(sbx_claim_name(&sb));
    CHECK_EQ_INT(wait_state(&sb, SBX_STATE_NOT_READY, 6000, &st), SBX_STATE_NOT_READY);
    CHECK_STR(st.reason, "ClaimExpired");
    CHECK(claim_exists(sbx_claim_name(&sb)));
    /* its sandbox goes */
    E2E_FMT(target, sizeof target, "/apis/agents.x-k8s.io/v1beta1/namespaces/default/sandboxes/%s", sbx_sandbox_name(&sb));
    deadline = sbx__deadline(5000);
    while (sbx__ms_left(deadline) > 0 && (code = e2e_http(&C, "GET", target, NULL, &out)) != 404) {
        sbx__buf_free(&out);
        poll(NULL, 0, 100);
    }
    sbx__buf_free(&out);
    CHECK_EQ_INT(code, 404);
    /* attaching to an expired claim says why */
    {
        sbx_sandbox again;
        CHECK_EQ_INT(attach_to(&again, &client, NULL, sbx_claim_name(&sb)), SBX_ERR_SANDBOX);
        CHECK_MSG(strstr(again.err.msg, "ClaimExpired"), "%s", again.err.msg);
    }
    CHECK_EQ_INT(sbx_close(&sb), SBX_OK); /* deletes the retained claim */
    settle();
}

TEST(ttl_delete_foreground_policy)
{
    sbx_sandbox sb;
    sbx_sandbox_config cfg;
    sbx_claim_status st;
    long long before;
    cfg_python(&cfg);
    cfg.ttl_seconds = LONG_TTL_S;
    cfg.shutdown_policy = "DeleteForeground";
    before = (long long)time(NULL);
    CHECK_EQ_INT(sbx_open(&sb, &client, &cfg), SBX_OK);
    if (!sb.impl) { printf("  %s\n", sb.err.msg); return; }
    check_lifecycle(sbx_claim_name(&sb), "DeleteForeground", LONG_TTL_S, before);
    expire_now(sbx_claim_name(&sb));
    CHECK_EQ_INT(wait_state(&sb, SBX_STATE_GONE, 6000, &st), SBX_STATE_GONE);
    CHECK_EQ_INT(sbx_close(&sb), SBX_OK);
    settle();
}

/* A TTL that runs out while the route comes up (the runtime's first answer
   is slowed past it; on a loaded machine it may run out before Ready): the
   open fails as DELETED and says the TTL did it, not only what was seen of
   the vanished claim or pod; nothing is left. */
TEST(ttl_running_out_during_the_open_says_so)
{
    sbx_sandbox sb;
    sbx_sandbox_config cfg;
    sbx_result r;
    long long t0 = sbx__now_ms();
    cfg_python(&cfg);
    cfg.ttl_seconds = 1;
    cfg.claim_name = "ttl-runs-out";
    CHECK_EQ_INT(e2e_faults(&C, "{\"runtime\":{\"slow_ms\":4000,\"fail_methods\":[\"GET\"]}}"), 0);
    r = sbx_open(&sb, &client, &cfg);
    CHECK_EQ_INT(e2e_faults(&C, "{\"runtime\":null}"), 0);
    printf("  %lld ms: %s\n", em_since(t0), sb.err.msg);
    CHECK_EQ_INT(r, SBX_ERR_DELETED);
    CHECK_MSG(strstr(sb.err.msg, "ttl_seconds (1 s) ran out during the open") != NULL, "%s", sb.err.msg);
    CHECK(sb.impl == NULL);
    CHECK(!claim_exists("ttl-runs-out"));
    settle();
}

TEST(bad_shutdown_policy_is_refused)
{
    sbx_sandbox sb;
    sbx_sandbox_config cfg;
    cfg_python(&cfg);
    cfg.ttl_seconds = 5;
    cfg.shutdown_policy = "delete";
    CHECK_EQ_INT(sbx_open(&sb, &client, &cfg), SBX_ERR_INVALID_ARG);
    CHECK_MSG(strstr(sb.err.msg, "shutdown_policy"), "%s", sb.err.msg);
    cfg.shutdown_policy = NULL;
    cfg.runtime = (sbx_runtime)7;
    CHECK_EQ_INT(sbx_open(&sb, &client, &cfg), SBX_ERR_INVALID_ARG);
    settle();
}

/* env (a cold start, on a template that allows it) and pod labels/annotations */
TEST(env_and_pod_metadata_reach_the_pod)
{
    static const char *const env[] = {"GREETING", "hello from env", NULL};
    static const char *const plabels[] = {"sandbox.users.io/team", "blue", NULL};
    static const char *const pann[] = {"example.com/note", "n1", NULL};
    sbx_sandbox sb;
    sbx_sandbox_config cfg;
    sbx_exec_result res;
    sbx__buf out;
    char target[300];
    int st;
    st = e2e_http(&C, "POST", "/apis/extensions.agents.x-k8s.io/v1beta1/namespaces/default/sandboxtemplates",
                  "{\"apiVersion\":\"extensions.agents.x-k8s.io/v1beta1\",\"kind\":\"SandboxTemplate\","
                  "\"metadata\":{\"name\":\"env-template\"},\"spec\":{\"envVarsInjectionPolicy\":\"Allowed\","
                  "\"podTemplate\":{\"spec\":{\"containers\":[{\"name\":\"python-runtime\",\"image\":\"python-runtime\","
                  "\"ports\":[{\"containerPort\":8888}]}]}}}}", &out);
    sbx__buf_free(&out);
    CHECK_EQ_INT(st, 201);
    st = e2e_http(&C, "POST", "/apis/extensions.agents.x-k8s.io/v1beta1/namespaces/default/sandboxwarmpools",
                  "{\"apiVersion\":\"extensions.agents.x-k8s.io/v1beta1\",\"kind\":\"SandboxWarmPool\","
                  "\"metadata\":{\"name\":\"env-pool\"},\"spec\":{\"replicas\":0,"
                  "\"sandboxTemplateRef\":{\"name\":\"env-template\"}}}", &out);
    sbx__buf_free(&out);
    CHECK_EQ_INT(st, 201);
    memset(&cfg, 0, sizeof cfg);
    cfg.template_name = "env-template";
    cfg.env = env;
    cfg.pod_labels = plabels;
    cfg.pod_annotations = pann;
    CHECK_EQ_INT(sbx_open(&sb, &client, &cfg), SBX_OK);
    if (!sb.impl) { printf("  %s\n", sb.err.msg); return; }
    CHECK_STR(sbx_sandbox_name(&sb), sbx_claim_name(&sb)); /* env forces a cold start */
    CHECK_EQ_INT(sbx_run(&sb, "printenv GREETING", &res), SBX_OK);
    CHECK_MSG(res.out_len == 15 && memcmp(res.out, "hello from env\n", 15) == 0, "%.*s", (int)res.out_len,
              res.out ? res.out : "");
    sbx_exec_result_free(&res);
    E2E_FMT(target, sizeof target, "/api/v1/namespaces/default/pods/%s", sbx_pod_name(&sb));
    CHECK_EQ_INT(e2e_http(&C, "GET", target, NULL, &out), 200);
    CHECK_MSG(out.data && strstr(out.data, "\"sandbox.users.io/team\":\"blue\"") &&
              strstr(out.data, "\"example.com/note\":\"n1\""), "pod metadata missing");
    sbx__buf_free(&out);
    CHECK_EQ_INT(sbx_close(&sb), SBX_OK);
    settle();
}

TEST(identity_accessors)
{
    sbx_sandbox sb;
    sbx_sandbox_config cfg;
    sbx__buf out;
    sbx__jtok *t = NULL;
    char target[300], ip[64];
    int n, i0;
    cfg_python(&cfg);
    cfg.claim_name = "named-claim";
    cfg.ns = "default";
    CHECK(sbx_pod_ip(NULL) == NULL && sbx_claim_name(NULL) == NULL);
    CHECK_EQ_INT(sbx_open(&sb, &client, &cfg), SBX_OK);
    if (!sb.impl) { printf("  %s\n", sb.err.msg); return; }
    CHECK_STR(sbx_claim_name(&sb), "named-claim");
    CHECK_STR(sbx_namespace(&sb), "default");
    CHECK(strncmp(sbx_sandbox_name(&sb), "python-sandbox-warmpool-", 24) == 0);
    E2E_FMT(target, sizeof target, "/apis/agents.x-k8s.io/v1beta1/namespaces/default/sandboxes/%s", sbx_sandbox_name(&sb));
    CHECK_EQ_INT(e2e_http(&C, "GET", target, NULL, &out), 200);
    n = sbx__json_parse_alloc(&C.a, out.data, out.len, &t);
    i0 = n > 0 ? sbx__json_get(out.data, t, n, 0, "status.podIPs[0]") : -1;
    ip[0] = '\0';
    if (i0 >= 0) sbx__json_unescape(out.data, t, i0, ip, sizeof ip, NULL);
    CHECK(ip[0]);
    CHECK_STR(sbx_pod_ip(&sb), ip);
    sbx__free(&C.a, t);
    sbx__buf_free(&out);
    CHECK_EQ_INT(sbx_close(&sb), SBX_OK);
    CHECK(sbx_pod_ip(&sb) == NULL && sbx_capabilities(&sb) == 0);
    settle();
}

TEST(rfc3339_parsing)
{
    CHECK(sbx__parse_rfc3339("1970-01-01T00:00:00Z", 20) == 0.0);
    CHECK(sbx__parse_rfc3339("2026-08-22T10:00:00Z", 20) == 1787392800.0);
    CHECK(sbx__parse_rfc3339("2026-08-22T12:00:00.5+02:00", 27) == 1787392800.5);
    CHECK(sbx__parse_rfc3339("2000-02-29T23:59:59Z", 20) == 951868799.0);
    CHECK(sbx__parse_rfc3339("2026-13-01T00:00:00Z", 20) == 0.0);
    CHECK(sbx__parse_rfc3339("2026-08-22 10:00", 16) == 0.0);
    CHECK(sbx__parse_rfc3339("2026-08-22T10:00:00", 19) == 0.0);
}

int main(void)
{
    sbx_client_config cc;
    long long t0 = sbx__now_ms();
    e2e_pick_kubectl();
    if (e2e_up(&C, "e2e-lifecycle", "") != 0) {
        printf("e2e_lifecycle: 0 passed, 1 failed\n");
        return 1;
    }
    memset(&cc, 0, sizeof cc);
    cc.kubeconfig = C.kubeconfig;
    if (sbx_client_open(&client, &cc) != SBX_OK) {
        printf("client open failed: %s\n", client.err.msg);
        e2e_down(&C);
        printf("e2e_lifecycle: 0 passed, 1 failed\n");
        return 1;
    }
    em_baseline(&C, &B);
    {
        int idle;
        pthread_mutex_lock(&client.impl->mu);
        idle = client.impl->nidle;
        pthread_mutex_unlock(&client.impl->mu);
        B.fds -= idle;
    }
    printf("baseline: %d fds, %d pods, %d children (the kubectl proxy)\n", B.fds, B.pods, B.children);
    EM_RUN(rfc3339_parsing);
    EM_RUN(detach_then_attach_by_name_then_delete_by_name);
    EM_RUN(close_after_attach_deletes_the_claim);
    EM_RUN(attach_fails_clearly);
    EM_RUN(list_claims_by_label_selector);
    EM_RUN(status_ready_not_ready_gone);
    EM_RUN(ttl_delete_policy_by_default);
    EM_RUN(ttl_retain_policy_keeps_the_claim);
    EM_RUN(ttl_delete_foreground_policy);
    EM_RUN(ttl_running_out_during_the_open_says_so);
    EM_RUN(bad_shutdown_policy_is_refused);
    EM_RUN(env_and_pod_metadata_reach_the_pod);
    EM_RUN(identity_accessors);
    sbx_client_close(&client);
    CHECK_EQ_INT(e2e_child_count(), 0);
    e2e_down(&C);
    printf("suite took %lld ms\n", em_since(t0));
    return test_summary("e2e_lifecycle");
}
