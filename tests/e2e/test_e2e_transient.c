/* End-to-end: transient errors never fail an open, and a dead kubectl proxy
   is restarted (issue 8), with the real kubectl against the dev cluster:
   - sbx_open succeeds while every Nth API request of every client (kubectl's
     included, any method) answers 500, and while every Nth answers 429;
   - a claim create whose answer was lost (the server stored it, then answered
     500 or cut the connection) is sent again with the same name, and the 409
     that follows adopts the claim because it carries this open's nonce;
   - a claim of that name that is someone else's is neither adopted nor deleted;
   - a transient 500 or 429 on the start of the claim watch does not fail open;
   - a killed kubectl proxy is restarted by the next API call (once, however
     many threads find it dead), and sbx_close deletes the claim after the
     proxy was killed;
   - kubectl port-forward (kubectl pod route) is started again after a
     transient error at start and at a restart; a permanent one (pod gone)
     fails at once, in kubectl's words.
   After every test nothing is left behind. */
#define SANDBOX_IMPLEMENTATION
#include "sandbox.h"
#include "test.h"

#include <signal.h>

static e2e_cluster C;
static em_base B;

#define CLAIMS_NS "/apis/extensions.agents.x-k8s.io/v1beta1/namespaces/default/sandboxclaims"
#define POD_GET_MATCH "^GET /api/v1/namespaces/default/pods/[^/?]+$"

static sbx_result open_client(sbx_client *cl)
{
    return em_client(&C, cl, SBX_MODE_POD_TUNNEL, NULL);
}

/* kubectl pod route: a client whose sandboxes use one `kubectl port-forward`
   each. That is the only pod route on this branch; SANDBOX_POD_ROUTE=kubectl
   forces it where the in-process WebSocket route is the default. */
static sbx_result open_kubectl_client(sbx_client *cl)
{
    const char *was = getenv("SANDBOX_POD_ROUTE");
    char keep[64];
    sbx_result r;
    E2E_FMT(keep, sizeof keep, "%s", was ? was : "");
    setenv("SANDBOX_POD_ROUTE", "kubectl", 1);
    r = open_client(cl);
    if (was) setenv("SANDBOX_POD_ROUTE", keep, 1);
    else unsetenv("SANDBOX_POD_ROUTE");
    return r;
}

static void sandbox_cfg(sbx_sandbox_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->template_name = "python-sandbox-template";
    cfg->ready_timeout_ms = 60000;
}

static void clear_faults(void)
{
    CHECK_EQ_INT(e2e_faults(&C, "{\"api_error_every\":null,\"api_error_code\":null,\"api_429_every\":null,"
                                "\"retry_after\":null,\"api_fault_match\":null,\"create_then_fail\":null,"
                                "\"create_then_drop\":null}"),
                 0);
}

/* Run a command and check its output. */
static void run_echo(sbx_sandbox *sb, const char *word)
{
    sbx_exec_result res;
    char cmd[64], want[64];
    E2E_FMT(cmd, sizeof cmd, "echo %s", word);
    E2E_FMT(want, sizeof want, "%s\n", word);
    CHECK_MSG(sbx_run(sb, cmd, &res) == SBX_OK, "%s", sb->err.msg);
    CHECK(res.out && res.out_len == strlen(want) && memcmp(res.out, want, res.out_len) == 0);
    sbx_exec_result_free(&res);
}

/* ---- the API request log ------------------------------------------------ */

/* The newest entry of the request log. */
static long long log_seq(void)
{
    sbx__buf log;
    sbx__jtok *t = NULL;
    long long seq = 0;
    int n, arr, i, k;
    if (em_requests(&C, &log) != 0) return 0;
    n = sbx__json_parse_alloc(&C.a, log.data, log.len, &t);
    arr = n > 0 ? sbx__json_get(log.data, t, n, 0, "requests") : -1;
    if (arr >= 0) {
        SBX__JSON_FOREACH(t, arr, i, k) {
            int q = sbx__json_get(log.data, t, n, i, "seq");
            long long v = 0;
            if (q >= 0 && sbx__json_int(log.data, t, q, &v) == 0 && v > seq) seq = v;
        }
    }
    sbx__free(&C.a, t);
    sbx__buf_free(&log);
    return seq;
}

/* Statuses (in order) of the logged requests after `since` whose method is
   `method` (NULL: any), whose path contains `needle`, and whose User-Agent contains
   `agent` (NULL: any). The server logs a request just after answering it, so
   this waits (bounded) until `want` are there. */
static int logged(const char *method, const char *needle, const char *agent, long long since, int *st, int max,
                  int want)
{
    long long deadline = sbx__deadline(2000);
    int count;
    do {
        sbx__buf log;
        sbx__jtok *t = NULL;
        int n, arr, i, k;
        count = 0;
        if (em_requests(&C, &log) != 0) return -1;
        n = sbx__json_parse_alloc(&C.a, log.data, log.len, &t);
        arr = n > 0 ? sbx__json_get(log.data, t, n, 0, "requests") : -1;
        if (arr >= 0) {
            SBX__JSON_FOREACH(t, arr, i, k) {
                int m = sbx__json_get(log.data, t, n, i, "method");
                int p = sbx__json_get(log.data, t, n, i, "path");
                int s = sbx__json_get(log.data, t, n, i, "status");
                int q = sbx__json_get(log.data, t, n, i, "seq");
                int ua = sbx__json_get(log.data, t, n, i, "headers");
                char path[512], uas[256];
                long long v = 0, seq = 0;
                path[0] = uas[0] = '\0';
                if (p >= 0) sbx__json_unescape(log.data, t, p, path, sizeof path, NULL);
                if (ua >= 0) ua = sbx__json_mem(log.data, t, n, ua, "user-agent");
                if (ua >= 0) sbx__json_unescape(log.data, t, ua, uas, sizeof uas, NULL);
                if (q >= 0) sbx__json_int(log.data, t, q, &seq);
                if (m < 0 || (method && !sbx__json_eq(log.data, t, m, method)) || !strstr(path, needle) || seq <= since ||
                    (agent && !strstr(uas, agent)))
                    continue;
                if (s >= 0) sbx__json_int(log.data, t, s, &v);
                if (count < max) st[count] = (int)v;
                count++;
            }
        }
        sbx__free(&C.a, t);
        sbx__buf_free(&log);
        if (count >= want) break;
        poll(NULL, 0, 20);
    } while (sbx__ms_left(deadline) > 0);
    return count;
}

/* Line up an "every Nth matching request fails" knob (its counter runs on
   across tests) so that the next matching request after ours is number
   `next` of the period (1 = the first after a failure): send requests of our
   own to `target` until one fails, then next - 1 more. */
static void prime(const char *method, const char *target, int code, int next)
{
    sbx__buf out;
    int i, st = 0;
    for (i = 0; i < 12 && st != code; i++) {
        st = e2e_http(&C, method, target, method[0] == 'P' ? "{}" : NULL, &out);
        sbx__buf_free(&out);
    }
    CHECK_EQ_INT(st, code);
    for (i = 1; i < next; i++) {
        e2e_http(&C, method, target, method[0] == 'P' ? "{}" : NULL, &out);
        sbx__buf_free(&out);
    }
}

/* ---- processes ---------------------------------------------------------- */

/* The pid of this process's child whose command line has `a` and `b` in it
   (kubectl proxy: "proxy", "--unix-socket"); 0 if none. */
static pid_t child_with(const char *a, const char *b)
{
    DIR *d = opendir("/proc");
    struct dirent *de;
    pid_t found = 0;
    if (!d) return 0;
    while (!found && (de = readdir(d)) != NULL) {
        char buf[4096];
        int ppid = 0;
        char state;
        unsigned long long start;
        if (de->d_name[0] < '0' || de->d_name[0] > '9') continue;
        if (!test_proc_read(atoi(de->d_name), &state, &ppid, &start) || ppid != (int)getpid() || state == 'Z') continue;
        if (test_cmdline(de->d_name, buf, sizeof buf, 1) < 0) continue;
        if (strstr(buf, a) && strstr(buf, b)) found = (pid_t)atoi(de->d_name);
    }
    closedir(d);
    return found;
}

static pid_t proxy_pid(void) { return child_with(" proxy ", "--unix-socket"); }

/* SIGKILL the client's kubectl proxy and wait until the library's drainer
   has seen it go. 0 on success. */
static int kill_proxy(sbx_client *cl)
{
    pid_t pid = proxy_pid();
    long long deadline = sbx__deadline(5000);
    if (pid <= 0) return -1;
    if (kill(pid, SIGKILL) != 0) return -1;
    while (sbx__ms_left(deadline) > 0) {
        int running;
        pthread_mutex_lock(&cl->impl->pmu);
        running = sbx__proc_running(&cl->impl->proxy);
        pthread_mutex_unlock(&cl->impl->pmu);
        if (!running) return 0;
        poll(NULL, 0, 10);
    }
    return -1;
}

static unsigned restarts(sbx_client *cl)
{
    unsigned n;
    pthread_mutex_lock(&cl->impl->pmu);
    n = cl->impl->proxy_restarts;
    pthread_mutex_unlock(&cl->impl->pmu);
    return n;
}

/* ---- API faults during open ------------------------------------------- */

/* Every Nth API request of every client (the library's through kubectl
   proxy, and kubectl port-forward's own) answers 500, any method. */
static void open_with_500_every(int every)
{
    sbx_client cl;
    sbx_sandbox sb;
    sbx_sandbox_config cfg;
    char knob[128];
    long long t0, since = log_seq(), open_ms = 0, close_ms = 0;
    int st[512], n, i, round, failed = 0, kubectl_failed = 0, opened = 0;
    sbx_result r;
    if (open_client(&cl) != SBX_OK) { CHECK(0); return; }
    sandbox_cfg(&cfg);
    E2E_FMT(knob, sizeof knob, "{\"api_error_every\":%d,\"api_error_code\":500}", every);
    CHECK_EQ_INT(e2e_faults(&C, knob), 0);
    /* at least three rounds, so the faults land on different steps, and more
       (up to eight) until three requests were answered 500: an open makes few
       requests now (the pool is remembered), so every 7th can take a while */
    for (round = 0; round < 8; round++) {
        if (round >= 3) {
            failed = 0;
            n = logged(NULL, "/api", NULL, since, st, 512, 1);
            for (i = 0; i < n && i < 512; i++) failed += st[i] == 500;
            if (failed >= 3) break;
        }
        t0 = sbx__now_ms();
        r = sbx_open(&sb, &cl, &cfg);
        open_ms += em_since(t0);
        CHECK_MSG(r == SBX_OK, "every %d, round %d: %s", every, round, sb.err.msg);
        if (r != SBX_OK) continue;
        opened++;
        run_echo(&sb, "through");
        t0 = sbx__now_ms();
        CHECK_MSG(sbx_close(&sb) == SBX_OK, "every %d: close: %s", every, sb.err.msg);
        close_ms += em_since(t0);
    }
    /* the faults were there, for the library and for kubectl */
    failed = 0;
    n = logged(NULL, "/api", NULL, since, st, 512, 1);
    for (i = 0; i < n && i < 512; i++) failed += st[i] == 500;
    n = logged(NULL, "/api", "kubectl", since, st, 512, 1);
    for (i = 0; i < n && i < 512; i++) kubectl_failed += st[i] == 500;
    printf("  500 on every %d: %d/%d opened, open %lld ms and close %lld ms on average; %d API requests answered "
           "500 (%d of them kubectl's own)\n", every, opened, round, open_ms / (round ? round : 1),
           close_ms / (opened ? opened : 1), failed, kubectl_failed);
    CHECK(failed >= 3);
    clear_faults();
    sbx_client_close(&cl);
    em_settle(&C, &B);
}

/* kubectl pod route. kubectl port-forward asks for the pod twice in a row
   (resource builder, then the phase check), so with every 2nd request of
   every client failing it can never start: that row is proven here with the
   faults on every request but kubectl port-forward's pod reads (every
   request of the library, any method); the other periods on everything. */
TEST(open_survives_500_on_every_2nd_request)
{
    sbx_client cl;
    sbx_sandbox sb;
    sbx_sandbox_config cfg;
    long long t0, since = log_seq();
    int st[64], n;
    sbx_result r;
    if (open_client(&cl) != SBX_OK) { CHECK(0); return; }
    sandbox_cfg(&cfg);
    CHECK_EQ_INT(e2e_faults(&C, "{\"api_error_every\":2,\"api_error_code\":500,"
                                "\"api_fault_match\":\"^[A-Z]+ /apis?/(?!v1/namespaces/[^/]+/pods/[^/?]+($|/portforward))\"}"),
                 0);
    t0 = sbx__now_ms();
    r = sbx_open(&sb, &cl, &cfg);
    CHECK_MSG(r == SBX_OK, "%s", sb.err.msg);
    printf("  500 on every 2nd: open %s in %lld ms\n", r == SBX_OK ? "ok" : "FAILED", em_since(t0));
    /* the create met a 500 or was the request after one: either way one claim */
    n = logged("POST", "/sandboxclaims", NULL, since, st, 64, 1);
    CHECK(n >= 1 && n <= 2 && st[n - 1] == 201);
    if (r == SBX_OK) {
        run_echo(&sb, "two");
        CHECK_MSG(sbx_close(&sb) == SBX_OK, "close: %s", sb.err.msg);
    }
    clear_faults();
    sbx_client_close(&cl);
    em_settle(&C, &B);
}

TEST(open_survives_500_on_every_3rd_request) { open_with_500_every(3); }
TEST(open_survives_500_on_every_5th_request) { open_with_500_every(5); }
TEST(open_survives_500_on_every_7th_request) { open_with_500_every(7); }

/* 429 with Retry-After on every 3rd request of every client. */
TEST(open_survives_429s)
{
    sbx_client cl;
    sbx_sandbox sb;
    sbx_sandbox_config cfg;
    long long t0;
    sbx_result r;
    if (open_client(&cl) != SBX_OK) { CHECK(0); return; }
    sandbox_cfg(&cfg);
    CHECK_EQ_INT(e2e_faults(&C, "{\"api_429_every\":3,\"retry_after\":1}"), 0);
    t0 = sbx__now_ms();
    r = sbx_open(&sb, &cl, &cfg);
    CHECK_MSG(r == SBX_OK, "%s", sb.err.msg);
    printf("  429 on every 3rd: open %s in %lld ms\n", r == SBX_OK ? "ok" : "FAILED", em_since(t0));
    if (r == SBX_OK) {
        run_echo(&sb, "slow");
        CHECK_MSG(sbx_close(&sb) == SBX_OK, "close: %s", sb.err.msg);
    }
    clear_faults();
    sbx_client_close(&cl);
    em_settle(&C, &B);
}

/* The create POST itself: a 429 is waited out (Retry-After), a 503 retried. */
TEST(create_is_retried_after_429_and_503)
{
    static const char *const knobs[] = {
        "{\"api_429_every\":2,\"retry_after\":1,\"api_fault_match\":\"^POST .*/sandboxclaims$\"}",
        "{\"api_error_every\":2,\"api_error_code\":503,\"api_fault_match\":\"^POST .*/sandboxclaims$\"}"};
    static const int code[] = {429, 503};
    int i;
    for (i = 0; i < 2; i++) {
        sbx_client cl;
        sbx_sandbox sb;
        sbx_sandbox_config cfg;
        int st[8], n;
        long long since, t0;
        if (open_client(&cl) != SBX_OK) { CHECK(0); return; }
        sandbox_cfg(&cfg);
        CHECK_EQ_INT(e2e_faults(&C, knobs[i]), 0);
        prime("POST", CLAIMS_NS, code[i], 2); /* our create is the failing one */
        since = log_seq();
        t0 = sbx__now_ms();
        CHECK_MSG(sbx_open(&sb, &cl, &cfg) == SBX_OK, "%s", sb.err.msg);
        n = logged("POST", "/sandboxclaims", "sandbox.h", since, st, 8, 2);
        CHECK_MSG(n == 2 && st[0] == code[i] && st[1] == 201, "%d creates: %d, %d", n, st[0], st[1]);
        if (code[i] == 429) CHECK_MSG(em_since(t0) >= 1000, "Retry-After not waited: %lld ms", em_since(t0));
        if (sb.impl) CHECK_MSG(sbx_close(&sb) == SBX_OK, "close: %s", sb.err.msg);
        clear_faults();
        sbx_client_close(&cl);
        em_settle(&C, &B);
    }
}

/* The server stored the claim, and its answer was lost (500, or the
   connection cut: kubectl proxy answers that with 502). The create is sent
   again with the same name, gets 409, finds its own nonce, adopts the claim
   and watches it from its resourceVersion. One claim, deleted at close. */
TEST(retried_create_adopts_its_own_claim)
{
    static const char *const knobs[] = {"{\"create_then_fail\":1}", "{\"create_then_drop\":1}"};
    static const int first[] = {500, 499}; /* as the server logs it: 499 = no answer (kubectl proxy says 502) */
    int i;
    for (i = 0; i < 2; i++) {
        sbx_client cl;
        sbx_sandbox sb;
        sbx_sandbox_config cfg;
        int st[8], n;
        long long since;
        sbx_result r;
        if (open_client(&cl) != SBX_OK) { CHECK(0); return; }
        sandbox_cfg(&cfg);
        CHECK_EQ_INT(e2e_faults(&C, knobs[i]), 0);
        since = log_seq();
        r = sbx_open(&sb, &cl, &cfg);
        CHECK_MSG(r == SBX_OK, "%s: %s", knobs[i], sb.err.msg);
        n = logged("POST", "/sandboxclaims", "sandbox.h", since, st, 8, 2);
        CHECK_MSG(n == 2 && st[0] == first[i] && st[1] == 409, "%d creates: %d, %d", n, st[0], st[1]);
        CHECK_EQ_INT(e2e_count(&C, E2E_CLAIMS), B.claims + 1);
        if (r == SBX_OK) {
            char path[300];
            sbx__buf out;
            E2E_FMT(path, sizeof path, CLAIMS_NS "/%s", sbx_claim_name(&sb));
            CHECK_EQ_INT(e2e_http(&C, "GET", path, NULL, &out), 200);
            CHECK(out.data && strstr(out.data, "\"sandbox.h/open-nonce\""));
            sbx__buf_free(&out);
            run_echo(&sb, "adopted");
            CHECK_MSG(sbx_close(&sb) == SBX_OK, "close: %s", sb.err.msg);
            CHECK_EQ_INT(e2e_http(&C, "GET", path, NULL, &out), 404);
            sbx__buf_free(&out);
        }
        clear_faults();
        sbx_client_close(&cl);
        em_settle(&C, &B);
    }
}

/* Someone else's claim has the name we ask for. Our first create fails with
   a 500 (so it might have landed), the retry gets 409; the claim there has no
   nonce of ours: the open fails with the 409 in the server's words, and the
   claim is neither adopted nor deleted (same UID, no DELETE sent). */
TEST(foreign_claim_is_neither_adopted_nor_deleted)
{
    sbx_client cl;
    sbx_sandbox sb;
    sbx_sandbox_config cfg;
    sbx__buf out;
    char uid_before[128], uid_after[128];
    int st[8], n;
    long long since;
    const char *p;
    if (open_client(&cl) != SBX_OK) { CHECK(0); return; }
    CHECK_EQ_INT(e2e_http(&C, "POST", CLAIMS_NS,
                          "{\"apiVersion\":\"extensions.agents.x-k8s.io/v1beta1\",\"kind\":\"SandboxClaim\","
                          "\"metadata\":{\"name\":\"foreign-claim\",\"annotations\":{\"sandbox.h/open-nonce\":"
                          "\"0123456789abcdef\"}},\"spec\":{\"warmPoolRef\":{\"name\":\"python-sandbox-warmpool\"}}}",
                          &out),
                 201);
    p = out.data ? strstr(out.data, "\"uid\":\"") : NULL;
    E2E_FMT(uid_before, sizeof uid_before, "%.36s", p ? p + 7 : "");
    sbx__buf_free(&out);
    sandbox_cfg(&cfg);
    cfg.claim_name = "foreign-claim";
    CHECK_EQ_INT(e2e_faults(&C, "{\"api_error_every\":2,\"api_error_code\":500,"
                                "\"api_fault_match\":\"^POST .*/sandboxclaims$\"}"),
                 0);
    prime("POST", CLAIMS_NS, 500, 2);
    since = log_seq();
    CHECK_EQ_INT(sbx_open(&sb, &cl, &cfg), SBX_ERR_HTTP);
    CHECK_EQ_INT(sb.err.http_status, 409);
    CHECK_MSG(strstr(sb.err.msg, "already exists"), "%s", sb.err.msg);
    printf("  %s\n", sb.err.msg);
    n = logged("POST", "/sandboxclaims", "sandbox.h", since, st, 8, 2);
    CHECK_MSG(n == 2 && st[0] == 500 && st[1] == 409, "%d creates: %d, %d", n, st[0], st[1]);
    poll(NULL, 0, 300); /* a DELETE would be logged by now */
    CHECK_EQ_INT(logged("DELETE", "/sandboxclaims/foreign-claim", NULL, since, st, 8, 0), 0);
    CHECK_EQ_INT(e2e_http(&C, "GET", CLAIMS_NS "/foreign-claim", NULL, &out), 200);
    p = out.data ? strstr(out.data, "\"uid\":\"") : NULL;
    E2E_FMT(uid_after, sizeof uid_after, "%.36s", p ? p + 7 : "");
    sbx__buf_free(&out);
    CHECK_STR(uid_after, uid_before);
    clear_faults();
    /* the claim is ours to delete (the test made it) */
    CHECK_EQ_INT(e2e_http(&C, "DELETE", CLAIMS_NS "/foreign-claim", NULL, &out), 200);
    sbx__buf_free(&out);
    sbx_client_close(&cl);
    em_settle(&C, &B);
}

/* The first claim watch of the open answers 500, then 429: open goes on. */
TEST(watch_start_500_or_429_does_not_fail_open)
{
    static const char *const knobs[] = {
        "{\"api_error_every\":2,\"api_error_code\":500,\"api_fault_match\":\"^GET .*/sandboxclaims\\\\?watch=true\"}",
        "{\"api_429_every\":2,\"retry_after\":1,\"api_fault_match\":\"^GET .*/sandboxclaims\\\\?watch=true\"}"};
    static const int code[] = {500, 429};
    int i;
    for (i = 0; i < 2; i++) {
        sbx_client cl;
        sbx_sandbox sb;
        sbx_sandbox_config cfg;
        int st[8], n;
        long long since;
        if (open_client(&cl) != SBX_OK) { CHECK(0); return; }
        sandbox_cfg(&cfg);
        CHECK_EQ_INT(e2e_faults(&C, knobs[i]), 0);
        prime("GET", CLAIMS_NS "?watch=true&timeoutSeconds=1&fieldSelector=metadata.name%3Dnone", code[i], 2);
        since = log_seq();
        CHECK_MSG(sbx_open(&sb, &cl, &cfg) == SBX_OK, "%s", sb.err.msg);
        n = logged("GET", "/sandboxclaims?watch=true", "sandbox.h", since, st, 8, 2);
        CHECK_MSG(n >= 2 && st[0] == code[i], "%d watches, first %d", n, st[0]);
        if (sb.impl) CHECK_MSG(sbx_close(&sb) == SBX_OK, "close: %s", sb.err.msg);
        clear_faults();
        sbx_client_close(&cl);
        em_settle(&C, &B);
    }
}

/* ---- the proxy ---------------------------------------------------------- */

/* kubectl proxy SIGKILLed mid-session: the next API call (a GET here, then
   the DELETE of sbx_close, then the POST of a new open) restarts it within
   its deadline and succeeds; the claim is deleted. */
TEST(killed_proxy_is_restarted_by_the_next_call)
{
    sbx_client cl;
    sbx_sandbox sb, sb2;
    sbx_sandbox_config cfg;
    sbx_claim_status cs;
    pid_t first, second;
    long long t0;
    if (open_client(&cl) != SBX_OK) { CHECK(0); return; }
    sandbox_cfg(&cfg);
    first = proxy_pid();
    CHECK(first > 0);
    CHECK_MSG(sbx_open(&sb, &cl, &cfg) == SBX_OK, "%s", sb.err.msg);
    if (!sb.impl) {
        sbx_client_close(&cl);
        return;
    }
    /* a GET */
    CHECK_EQ_INT(kill_proxy(&cl), 0);
    run_echo(&sb, "tunnel-is-separate"); /* the pod tunnel does not need the proxy */
    t0 = sbx__now_ms();
    CHECK_MSG(sbx_status(&sb, &cs) == SBX_OK, "%s", sb.err.msg);
    printf("  status after the proxy was killed: %lld ms (restart included)\n", em_since(t0));
    CHECK_EQ_INT(cs.state, SBX_STATE_READY);
    CHECK_EQ_INT(restarts(&cl), 1);
    second = proxy_pid();
    CHECK(second > 0 && second != first);
    /* the DELETE of close */
    CHECK_EQ_INT(kill_proxy(&cl), 0);
    t0 = sbx__now_ms();
    CHECK_MSG(sbx_close(&sb) == SBX_OK, "close: %s", sb.err.msg);
    printf("  close after the proxy was killed: %lld ms\n", em_since(t0));
    CHECK_EQ_INT(restarts(&cl), 2);
    CHECK_EQ_INT(e2e_count(&C, E2E_CLAIMS), B.claims);
    /* a whole open (discovery is cached: the first request is a GET, the create a POST) */
    CHECK_EQ_INT(kill_proxy(&cl), 0);
    CHECK_MSG(sbx_open(&sb2, &cl, &cfg) == SBX_OK, "%s", sb2.err.msg);
    CHECK_EQ_INT(restarts(&cl), 3);
    if (sb2.impl) CHECK_MSG(sbx_close(&sb2) == SBX_OK, "close: %s", sb2.err.msg);
    sbx_client_close(&cl);
    CHECK_EQ_INT(proxy_pid(), 0);
    em_settle(&C, &B);
}

/* A POST whose connect() failed sent nothing, so it is sent after the
   restart: the create right after the kill goes out once. */
TEST(create_after_the_proxy_died_is_sent_once)
{
    sbx_client cl;
    sbx_sandbox sb;
    sbx_sandbox_config cfg;
    int st[8], n;
    long long since;
    char name[64];
    if (open_client(&cl) != SBX_OK) { CHECK(0); return; }
    sandbox_cfg(&cfg);
    E2E_FMT(name, sizeof name, "after-proxy-kill-%d", (int)getpid());
    /* warm up discovery; with a warm pool named there is no pool list, so
       the POST is the first request after the kill */
    cfg.warm_pool = "python-sandbox-warmpool";
    {
        sbx_sandbox w;
        CHECK_MSG(sbx_open(&w, &cl, &cfg) == SBX_OK, "%s", w.err.msg);
        if (w.impl) CHECK_MSG(sbx_close(&w) == SBX_OK, "%s", w.err.msg);
    }
    cfg.claim_name = name;
    CHECK_EQ_INT(kill_proxy(&cl), 0);
    since = log_seq();
    CHECK_MSG(sbx_open(&sb, &cl, &cfg) == SBX_OK, "%s", sb.err.msg);
    n = logged("POST", "/sandboxclaims", "sandbox.h", since, st, 8, 1);
    CHECK_MSG(n == 1 && st[0] == 201, "%d creates", n);
    CHECK_EQ_INT(restarts(&cl), 1);
    if (sb.impl) CHECK_MSG(sbx_close(&sb) == SBX_OK, "close: %s", sb.err.msg);
    sbx_client_close(&cl);
    em_settle(&C, &B);
}

typedef struct open_job {
    sbx_client *cl;
    sbx_sandbox sb;
    sbx_result r;
} open_job;

static void *open_thread(void *arg)
{
    open_job *j = (open_job *)arg;
    sbx_sandbox_config cfg;
    sandbox_cfg(&cfg);
    cfg.warm_pool = "python-sandbox-coldpool";
    j->r = sbx_open(&j->sb, j->cl, &cfg);
    return NULL;
}

/* The proxy dies while open watches the claim (a cold start of 1.5 s): the
   watch stream breaks, the next watch finds the proxy gone, restarts it and
   goes on; open succeeds. */
TEST(proxy_killed_during_the_ready_watch)
{
    sbx_client cl;
    open_job job;
    pthread_t th;
    long long since, deadline;
    int st[16], n, i, watching = 0;
    if (open_client(&cl) != SBX_OK) { CHECK(0); return; }
    CHECK_EQ_INT(e2e_faults(&C, "{\"cold_start_ms\":1500}"), 0);
    since = log_seq();
    memset(&job, 0, sizeof job);
    job.cl = &cl;
    pthread_create(&th, NULL, open_thread, &job);
    /* wait until the claim exists, then until its watch has started */
    deadline = sbx__deadline(10000);
    while (!watching && sbx__ms_left(deadline) > 0) {
        n = logged("POST", "/sandboxclaims", "sandbox.h", since, st, 16, 0);
        if (n >= 1) watching = 1;
        else poll(NULL, 0, 20);
    }
    CHECK(watching);
    poll(NULL, 0, 300);
    CHECK_EQ_INT(kill_proxy(&cl), 0);
    pthread_join(th, NULL);
    CHECK_MSG(job.r == SBX_OK, "%s", job.sb.err.msg);
    CHECK_EQ_INT(restarts(&cl), 1);
    n = logged("GET", "/sandboxclaims?watch=true", "sandbox.h", since, st, 16, 2);
    CHECK_MSG(n >= 2, "%d watches", n);
    for (i = 0; i < n && i < 16; i++) CHECK(st[i] == 200);
    if (job.sb.impl) {
        run_echo(&job.sb, "watched");
        CHECK_MSG(sbx_close(&job.sb) == SBX_OK, "close: %s", job.sb.err.msg);
    }
    e2e_faults(&C, "{\"cold_start_ms\":null}");
    sbx_client_close(&cl);
    em_settle(&C, &B);
}

typedef struct status_job {
    sbx_sandbox *sb;
    sbx_result r;
    char msg[SBX_ERRMSG_SIZE];
} status_job;

static void *status_thread(void *arg)
{
    status_job *j = (status_job *)arg;
    sbx_claim_status cs;
    j->r = sbx_status(j->sb, &cs);
    memcpy(j->msg, j->sb->err.msg, sizeof j->msg);
    return NULL;
}

/* Four threads, four sandboxes, one client whose proxy was killed: every
   call succeeds and the proxy is restarted once. */
TEST(proxy_is_restarted_once_for_many_threads)
{
    sbx_client cl;
    sbx_sandbox sb[4];
    sbx_sandbox_config cfg;
    status_job jobs[4];
    pthread_t th[4];
    int i, ok = 1;
    if (open_client(&cl) != SBX_OK) { CHECK(0); return; }
    sandbox_cfg(&cfg);
    cfg.warm_pool = "python-sandbox-coldpool";
    for (i = 0; i < 4; i++) {
        CHECK_MSG(sbx_open(&sb[i], &cl, &cfg) == SBX_OK, "%s", sb[i].err.msg);
        if (!sb[i].impl) ok = 0;
    }
    if (ok) {
        CHECK_EQ_INT(kill_proxy(&cl), 0);
        for (i = 0; i < 4; i++) {
            jobs[i].sb = &sb[i];
            pthread_create(&th[i], NULL, status_thread, &jobs[i]);
        }
        for (i = 0; i < 4; i++) {
            pthread_join(th[i], NULL);
            CHECK_MSG(jobs[i].r == SBX_OK, "thread %d: %s", i, jobs[i].msg);
        }
        CHECK_EQ_INT(restarts(&cl), 1);
    }
    for (i = 0; i < 4; i++)
        if (sb[i].impl) CHECK_MSG(sbx_close(&sb[i]) == SBX_OK, "close: %s", sb[i].err.msg);
    sbx_client_close(&cl);
    em_settle(&C, &B);
}

/* SBX_MODE_API_PROXY: runtime calls travel through the proxy too, so a dead
   proxy is restarted before a runtime call (nothing was sent yet). */
TEST(api_proxy_route_restarts_the_proxy)
{
    sbx_client cl;
    sbx_sandbox sb;
    sbx_sandbox_config cfg;
    if (em_client(&C, &cl, SBX_MODE_API_PROXY, NULL) != SBX_OK) { CHECK(0); return; }
    sandbox_cfg(&cfg);
    CHECK_MSG(sbx_open(&sb, &cl, &cfg) == SBX_OK, "%s", sb.err.msg);
    if (sb.impl) {
        run_echo(&sb, "before");
        CHECK_EQ_INT(kill_proxy(&cl), 0);
        run_echo(&sb, "after");
        CHECK_EQ_INT(restarts(&cl), 1);
        CHECK_MSG(sbx_close(&sb) == SBX_OK, "close: %s", sb.err.msg);
    }
    sbx_client_close(&cl);
    em_settle(&C, &B);
}

/* ---- kubectl port-forward (kubectl pod route) --------------------------- */

/* Wait until the sandbox's kubectl port-forward has ended (it exits on its
   own ~10 ms after its stream was cut): a run is never re-sent, so a run
   racing the exit would fail, which is not what these tests are about. */
static void tunnel_gone(sbx_sandbox *sb)
{
    long long deadline = sbx__deadline(5000);
    while (sbx__ms_left(deadline) > 0 && sbx__proc_running(&sb->impl->tunnel)) poll(NULL, 0, 10);
    CHECK(!sbx__proc_running(&sb->impl->tunnel));
}

/* kubectl port-forward's first GET of the pod answers 500 ("Error from server
   (InternalError)"): the start is retried and open succeeds; then, after the
   tunnel was killed, the restart meets the same and is retried too. */
TEST(port_forward_start_is_retried_on_a_transient_error)
{
    sbx_client cl;
    sbx_sandbox sb;
    sbx_sandbox_config cfg;
    sbx__buf out;
    int st[16], n;
    long long since, t0;
    if (open_kubectl_client(&cl) != SBX_OK) { CHECK(0); return; }
    sandbox_cfg(&cfg);
    /* every 3rd pod read fails; primed so that kubectl's first read is one */
    CHECK_EQ_INT(e2e_faults(&C, "{\"api_error_every\":3,\"api_error_code\":500,"
                                "\"api_fault_match\":\"" POD_GET_MATCH "\"}"),
                 0);
    prime("GET", "/api/v1/namespaces/default/pods/not-there", 500, 3);
    since = log_seq();
    t0 = sbx__now_ms();
    CHECK_MSG(sbx_open(&sb, &cl, &cfg) == SBX_OK, "%s", sb.err.msg);
    printf("  open with a failed port-forward start: %lld ms\n", em_since(t0));
    n = logged("GET", "/pods/", "kubectl", since, st, 16, 3);
    CHECK_MSG(n >= 3 && st[0] == 500 && st[1] == 200 && st[2] == 200, "%d pod reads: %d %d %d", n, st[0], st[1],
              st[2]);
    if (sb.impl) {
        run_echo(&sb, "first");
        /* the tunnel dies; its restart's first pod read fails again */
        prime("GET", "/api/v1/namespaces/default/pods/not-there", 500, 3);
        since = log_seq();
        CHECK_EQ_INT(e2e_http(&C, "POST", "/_admin/kill-portforwards", "{}", &out), 200);
        sbx__buf_free(&out);
        tunnel_gone(&sb);
        run_echo(&sb, "restarted");
        n = logged("GET", "/pods/", "kubectl", since, st, 16, 3);
        CHECK_MSG(n >= 3 && st[0] == 500 && st[1] == 200, "%d pod reads: %d %d", n, st[0], st[1]);
        CHECK_MSG(sbx_close(&sb) == SBX_OK, "close: %s", sb.err.msg);
    }
    clear_faults();
    sbx_client_close(&cl);
    em_settle(&C, &B);
}

/* The pod is gone when the tunnel must be restarted: kubectl says NotFound
   (or that the pod is not running), which is final: the call fails at once
   with kubectl's words, and no second kubectl is started. */
TEST(port_forward_fails_at_once_when_the_pod_is_gone)
{
    sbx_client cl;
    sbx_sandbox sb;
    sbx_sandbox_config cfg;
    sbx_exec_result res;
    sbx__buf out;
    char path[300];
    int st[16], n;
    long long since, t0, took;
    sbx_result r;
    if (open_kubectl_client(&cl) != SBX_OK) { CHECK(0); return; }
    sandbox_cfg(&cfg);
    CHECK_MSG(sbx_open(&sb, &cl, &cfg) == SBX_OK, "%s", sb.err.msg);
    if (!sb.impl) {
        sbx_client_close(&cl);
        return;
    }
    /* the claim stays; its pod goes (and the controller gets no time to make
       a new one Running) */
    CHECK_EQ_INT(e2e_faults(&C, "{\"never_ready\":true}"), 0);
    E2E_FMT(path, sizeof path, "/api/v1/namespaces/default/pods/%s?gracePeriodSeconds=0", sbx_pod_name(&sb));
    CHECK_EQ_INT(e2e_http(&C, "DELETE", path, NULL, &out), 200);
    sbx__buf_free(&out);
    CHECK_EQ_INT(e2e_http(&C, "POST", "/_admin/kill-portforwards", "{}", &out), 200);
    sbx__buf_free(&out);
    poll(NULL, 0, 200);
    since = log_seq();
    t0 = sbx__now_ms();
    r = sbx_run(&sb, "echo gone", &res);
    took = em_since(t0);
    printf("  %lld ms: %s\n", took, sb.err.msg);
    CHECK(r != SBX_OK);
    CHECK_MSG(strstr(sb.err.msg, "NotFound") || strstr(sb.err.msg, "not running") || strstr(sb.err.msg, "not found"),
              "%s", sb.err.msg);
    CHECK_MSG(took < 3000, "took %lld ms", took);
    n = logged("GET", "/pods/", "kubectl", since, st, 16, 1);
    CHECK_MSG(n >= 1 && n <= 2, "%d pod reads by kubectl (one start only)", n);
    sbx_exec_result_free(&res);
    clear_faults();
    e2e_faults(&C, "{\"never_ready\":null}");
    CHECK_MSG(sbx_close(&sb) == SBX_OK, "close: %s", sb.err.msg);
    sbx_client_close(&cl);
    em_settle(&C, &B);
}

/* The shared router tunnel (kubectl port-forward svc/sandbox-router-svc)
   died; at its restart kubectl's read of the Service answers 500: the start
   is retried inside the call's deadline and the call succeeds. */
TEST(router_tunnel_start_is_retried_on_a_transient_error)
{
    sbx_client cl;
    sbx_sandbox sb;
    sbx_sandbox_config cfg;
    sbx__buf out;
    int st[16], n;
    long long since, deadline;
    if (em_client(&C, &cl, SBX_MODE_ROUTER_TUNNEL, NULL) != SBX_OK) { CHECK(0); return; }
    sandbox_cfg(&cfg);
    CHECK_MSG(sbx_open(&sb, &cl, &cfg) == SBX_OK, "%s", sb.err.msg);
    if (sb.impl) {
        run_echo(&sb, "routed");
        CHECK_EQ_INT(e2e_http(&C, "POST", "/_admin/kill-portforwards", "{}", &out), 200);
        sbx__buf_free(&out);
        deadline = sbx__deadline(5000);
        while (sbx__ms_left(deadline) > 0 && sbx__proc_running(&cl.impl->rtun)) poll(NULL, 0, 10);
        CHECK(!sbx__proc_running(&cl.impl->rtun));
        CHECK_EQ_INT(e2e_faults(&C, "{\"api_error_every\":2,\"api_error_code\":500,\"api_fault_match\":"
                                    "\"^GET /api/v1/namespaces/agent-sandbox-system/services/\"}"),
                     0);
        prime("GET", "/api/v1/namespaces/agent-sandbox-system/services/not-there", 500, 2);
        since = log_seq();
        run_echo(&sb, "rerouted");
        n = logged("GET", "/services/sandbox-router-svc", "kubectl", since, st, 16, 2);
        CHECK_MSG(n == 2 && st[0] == 500 && st[1] == 200, "%d service reads, first %d", n, st[0]);
        CHECK_MSG(sbx_close(&sb) == SBX_OK, "close: %s", sb.err.msg);
    }
    clear_faults();
    sbx_client_close(&cl);
    em_settle(&C, &B);
}

TEST(kubectl_words_are_classified)
{
    CHECK(sbx__kubectl_transient("Error from server (InternalError): Internal error occurred: injected fault"));
    CHECK(sbx__kubectl_transient("Error from server (ServiceUnavailable): the server is currently unable to handle"));
    CHECK(sbx__kubectl_transient("Error from server (TooManyRequests): Too many requests"));
    CHECK(sbx__kubectl_transient("Error from server (Timeout): the server was unable to return a response"));
    CHECK(sbx__kubectl_transient("error: error upgrading connection: Internal error occurred: injected fault"));
    CHECK(sbx__kubectl_transient("The connection to the server 127.0.0.1:1 was refused - did you specify the right"));
    CHECK(sbx__kubectl_transient("read tcp 127.0.0.1:1->127.0.0.1:2: read: connection reset by peer"));
    CHECK(!sbx__kubectl_transient("Error from server (NotFound): pods \"x\" not found"));
    CHECK(!sbx__kubectl_transient("Error from server (Forbidden): pods \"x\" is forbidden: User cannot get"));
    CHECK(!sbx__kubectl_transient("error: unable to forward port because pod is not running. Current status=Pending"));
    CHECK(!sbx__kubectl_transient("error: something nobody has seen before"));
}

/* E2E_ONLY=word runs only the tests whose name contains it */
#define T_RUN(name)                                              \
    do {                                                         \
        const char *only_ = getenv("E2E_ONLY");                  \
        if (!only_ || strstr(#name, only_)) EM_RUN(name);        \
    } while (0)

int main(void)
{
    long long t0 = sbx__now_ms();
    e2e_pick_kubectl();
    RUN(kubectl_words_are_classified);
    if (e2e_up(&C, "e2e-transient", "") != 0) {
        printf("e2e_transient: 0 passed, 1 failed\n");
        return 1;
    }
    em_baseline(&C, &B);
    printf("baseline: %d fds, %d pods, %d children, %d claims\n", B.fds, B.pods, B.children, B.claims);
    T_RUN(killed_proxy_is_restarted_by_the_next_call);
    T_RUN(create_after_the_proxy_died_is_sent_once);
    T_RUN(proxy_is_restarted_once_for_many_threads);
    T_RUN(proxy_killed_during_the_ready_watch);
    T_RUN(retried_create_adopts_its_own_claim);
    T_RUN(foreign_claim_is_neither_adopted_nor_deleted);
    T_RUN(create_is_retried_after_429_and_503);
    T_RUN(watch_start_500_or_429_does_not_fail_open);
    T_RUN(api_proxy_route_restarts_the_proxy);
    T_RUN(port_forward_start_is_retried_on_a_transient_error);
    T_RUN(router_tunnel_start_is_retried_on_a_transient_error);
    T_RUN(port_forward_fails_at_once_when_the_pod_is_gone);
    T_RUN(open_survives_500_on_every_2nd_request);
    T_RUN(open_survives_500_on_every_3rd_request);
    T_RUN(open_survives_500_on_every_5th_request);
    T_RUN(open_survives_500_on_every_7th_request);
    T_RUN(open_survives_429s);
    CHECK_EQ_INT(e2e_child_count(), 0);
    e2e_down(&C);
    printf("suite took %lld ms\n", em_since(t0));
    return test_summary("e2e_transient");
}
