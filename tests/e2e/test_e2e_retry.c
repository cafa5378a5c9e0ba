/* End-to-end: the retry rules, each proven with the dev cluster's fault knobs
   and the runtime's own request counters (GET /_runtime/stats):
   - a command (POST /execute) is sent once, whatever happens: 5xx, an answer
     cut short, a connection closed before the answer;
   - read, list and exists are retried after 502/503/504 and broken
     connections, with backoff, within the call's deadline;
   - 429 waits for Retry-After, and fails at once when that is past the deadline;
   - API GET and DELETE are retried (500, 503, 429); a claim create (POST)
     too, a bounded number of times, with the same name;
   - redirects are never followed.
   After every test nothing is left behind. */
#define SANDBOX_IMPLEMENTATION
#include "sandbox.h"
#include "test.h"

static e2e_cluster C;
static em_base B;
static sbx_client client;
static sbx_sandbox shared; /* python runtime, pod tunnel */

#define CLAIMS_NS "/apis/extensions.agents.x-k8s.io/v1beta1/namespaces/default/sandboxclaims"

/* Descriptors that come and go on purpose: the client's idle API
   connections and the shared sandbox's keep-alive connection (closed here). */
static int idle_fds(void)
{
    int idle;
    if (shared.impl && shared.impl->rt_ready) sbx__conn_close(&shared.impl->rt);
    pthread_mutex_lock(&client.impl->mu);
    idle = client.impl->nidle;
    pthread_mutex_unlock(&client.impl->mu);
    return idle;
}

static void settle(void)
{
    em_base now = B;
    now.fds = B.fds + idle_fds();
    em_settle(&C, &now);
}

/* Runtime faults for the shared sandbox's pod (merge patch of faults.runtime). */
static void runtime_faults(const char *json)
{
    char body[600];
    E2E_FMT(body, sizeof body, "{\"runtime\":%s}", json);
    CHECK_EQ_INT(e2e_faults(&C, body), 0);
}

/* How many requests "<METHOD> <raw path>" the shared pod received, and its exec count. */
static long long received(const char *key, long long *execs)
{
    long long ex = -1, n = -1;
    CHECK(em_runtime_stats(&C, sbx_pod_ip(&shared), 8888, key, &ex, &n) == 0);
    if (execs) *execs = ex;
    return n;
}

static void reset_stats(void)
{
    char url[96];
    sbx__endpoint ep;
    sbx__conn conn;
    sbx__http_req req;
    sbx__http_resp resp;
    E2E_FMT(url, sizeof url, "http://%s:8888", sbx_pod_ip(&shared));
    if (sbx__endpoint_parse(url, &ep, NULL) != SBX_OK) return;
    sbx__conn_init(&conn, &ep, &C.a);
    sbx__http_req_init(&req);
    req.method = "POST";
    req.target = "/_runtime/reset";
    CHECK(sbx__http_do(&conn, &req, &resp, NULL, 0, sbx__deadline(5000), NULL) == SBX_OK && resp.status == 200);
    sbx__conn_free(&conn);
}

TEST(run_is_not_resent_after_a_5xx)
{
    sbx_exec_result res;
    long long execs = -1;
    reset_stats();
    runtime_faults("{\"fail_paths\":[\"/execute\"],\"fail_first\":1,\"status_5xx\":503}");
    CHECK_EQ_INT(sbx_run(&shared, "echo once", &res), SBX_ERR_HTTP);
    CHECK_EQ_INT(shared.err.http_status, 503);
    CHECK_MSG(strstr(shared.err.msg, "injected fault 503"), "%s", shared.err.msg);
    CHECK_EQ_INT(received("POST /execute", &execs), 1);
    CHECK_EQ_INT(execs, 0);
    /* the next command is a new call: it runs, once */
    CHECK_EQ_INT(sbx_run(&shared, "echo once", &res), SBX_OK);
    CHECK(res.out_len == 5 && memcmp(res.out, "once\n", 5) == 0);
    sbx_exec_result_free(&res);
    CHECK_EQ_INT(received("POST /execute", &execs), 2);
    CHECK_EQ_INT(execs, 1);
    settle();
}

TEST(run_is_not_resent_when_the_answer_is_cut)
{
    sbx_exec_result res;
    long long execs = -1;
    sbx_result r;
    reset_stats();
    runtime_faults("{\"fail_paths\":[\"/execute\"],\"fail_first\":1,\"close_early\":\"body\",\"close_after_bytes\":5}");
    r = sbx_run(&shared, "echo ran", &res);
    CHECK_MSG(r == SBX_ERR_CONNECT || r == SBX_ERR_PROTOCOL, "%d: %s", r, shared.err.msg);
    CHECK(res.out == NULL);
    CHECK_EQ_INT(received("POST /execute", &execs), 1);
    CHECK_EQ_INT(execs, 1); /* it ran, and only once */
    /* the sandbox stays usable: the next call gets a fresh tunnel */
    CHECK_EQ_INT(sbx_run(&shared, "echo next", &res), SBX_OK);
    CHECK(res.out_len == 5 && memcmp(res.out, "next\n", 5) == 0);
    sbx_exec_result_free(&res);
    CHECK_EQ_INT(received("POST /execute", &execs), 2);
    settle();
}

TEST(run_is_not_resent_when_the_connection_closes_unanswered)
{
    sbx_exec_result res;
    long long execs = -1;
    sbx_result r;
    reset_stats();
    runtime_faults("{\"fail_paths\":[\"/execute\"],\"fail_first\":1,\"close_early\":\"headers\"}");
    r = sbx_run(&shared, "echo never", &res);
    CHECK_MSG(r == SBX_ERR_CONNECT, "%d: %s", r, shared.err.msg);
    CHECK_EQ_INT(received("POST /execute", &execs), 1);
    CHECK_EQ_INT(execs, 0);
    CHECK_EQ_INT(sbx_run(&shared, "echo next", &res), SBX_OK);
    sbx_exec_result_free(&res);
    CHECK_EQ_INT(received("POST /execute", &execs), 2);
    CHECK_EQ_INT(execs, 1);
    settle();
}

TEST(read_is_retried_after_503_then_succeeds)
{
    char *back = NULL;
    size_t len = 0;
    CHECK_EQ_INT(sbx_write(&shared, "r.txt", "retry me", 8), SBX_OK);
    reset_stats();
    runtime_faults("{\"fail_paths\":[\"/download/\"],\"fail_first\":2,\"status_5xx\":503}");
    CHECK_EQ_INT(sbx_read(&shared, "r.txt", &back, &len), SBX_OK);
    CHECK(back && len == 8 && memcmp(back, "retry me", 8) == 0);
    sbx_free(back);
    CHECK_EQ_INT(received("GET /download/r.txt", NULL), 3);
    settle();
}

TEST(list_and_exists_are_retried_after_502_and_504)
{
    sbx_file_entry *ents = NULL;
    size_t count = 0;
    int ex = 0;
    reset_stats();
    runtime_faults("{\"fail_paths\":[\"/list/\"],\"fail_first\":1,\"status_5xx\":502}");
    CHECK_EQ_INT(sbx_list_dir(&shared, "/", &ents, &count), SBX_OK);
    CHECK(count >= 1);
    sbx_free(ents);
    CHECK_EQ_INT(received("GET /list/%252E", NULL), 2);
    runtime_faults("{\"fail_paths\":[\"/exists/\"],\"fail_first\":1,\"status_5xx\":504}");
    CHECK_EQ_INT(sbx_exists(&shared, "r.txt", &ex), SBX_OK);
    CHECK_EQ_INT(ex, 1);
    CHECK_EQ_INT(received("GET /exists/r.txt", NULL), 2);
    settle();
}

TEST(read_is_retried_after_a_reset_connection)
{
    char *back = NULL;
    size_t len = 0;
    reset_stats();
    runtime_faults("{\"fail_paths\":[\"/download/\"],\"fail_first\":1,\"close_early\":\"reset\"}");
    CHECK_EQ_INT(sbx_read(&shared, "r.txt", &back, &len), SBX_OK);
    CHECK(back && len == 8);
    sbx_free(back);
    CHECK_EQ_INT(received("GET /download/r.txt", NULL), 2);
    settle();
}

TEST(retries_stop_at_the_deadline)
{
    char *back = NULL;
    size_t len = 0;
    long long t0, took, n;
    reset_stats();
    runtime_faults("{\"fail_paths\":[\"/download/\"],\"status_5xx\":503}");
    sbx_set_call_timeout(&shared, 1000);
    t0 = sbx__now_ms();
    CHECK_EQ_INT(sbx_read(&shared, "r.txt", &back, &len), SBX_ERR_HTTP);
    took = em_since(t0);
    sbx_set_call_timeout(&shared, 0);
    CHECK_EQ_INT(shared.err.http_status, 503);
    CHECK_MSG(took < 1300, "took %lld ms for a 1000 ms call", took);
    n = received("GET /download/r.txt", NULL);
    CHECK_MSG(n >= 3 && n <= SBX__RETRY_ATTEMPTS, "%lld tries", n);
    settle();
}

TEST(runtime_429_waits_for_retry_after)
{
    char *back = NULL;
    size_t len = 0;
    long long t0, took;
    reset_stats();
    runtime_faults("{\"fail_paths\":[\"/download/\"],\"fail_first\":1,\"status_5xx\":429,\"retry_after\":1}");
    t0 = sbx__now_ms();
    CHECK_EQ_INT(sbx_read(&shared, "r.txt", &back, &len), SBX_OK);
    took = em_since(t0);
    CHECK_MSG(took >= 1000 && took < 1800, "took %lld ms with Retry-After: 1", took);
    sbx_free(back);
    CHECK_EQ_INT(received("GET /download/r.txt", NULL), 2);
    settle();
}

TEST(runtime_429_past_the_deadline_fails_at_once)
{
    char *back = NULL;
    size_t len = 0;
    long long t0, took;
    reset_stats();
    runtime_faults("{\"fail_paths\":[\"/download/\"],\"fail_first\":1,\"status_5xx\":429,\"retry_after\":5}");
    sbx_set_call_timeout(&shared, 2000);
    t0 = sbx__now_ms();
    CHECK_EQ_INT(sbx_read(&shared, "r.txt", &back, &len), SBX_ERR_HTTP);
    took = em_since(t0);
    sbx_set_call_timeout(&shared, 0);
    CHECK_EQ_INT(shared.err.http_status, 429);
    CHECK_MSG(took < 500, "took %lld ms: a Retry-After past the deadline must not be slept", took);
    CHECK_EQ_INT(received("GET /download/r.txt", NULL), 1);
    settle();
}

TEST(redirects_are_not_followed)
{
    char *back = NULL;
    size_t len = 0;
    sbx_exec_result res;
    long long execs = -1;
    reset_stats();
    runtime_faults("{\"fail_paths\":[\"/download/\",\"/execute\"],\"redirect\":\"http://127.0.0.1:9/elsewhere\"}");
    CHECK_EQ_INT(sbx_read(&shared, "r.txt", &back, &len), SBX_ERR_HTTP);
    CHECK_EQ_INT(shared.err.http_status, 307);
    CHECK_MSG(strstr(shared.err.msg, "HTTP 307 redirect to \"http://127.0.0.1:9/elsewhere\"") &&
              strstr(shared.err.msg, "not followed"), "%s", shared.err.msg);
    CHECK(back == NULL);
    CHECK_EQ_INT(sbx_run(&shared, "echo x", &res), SBX_ERR_HTTP);
    CHECK_EQ_INT(received("GET /download/r.txt", &execs), 1);
    CHECK_EQ_INT(received("POST /execute", &execs), 1);
    CHECK_EQ_INT(execs, 0);
    settle();
}

/* The API request log: statuses of the library's requests (they send
   "Accept: application/json"; the test's own requests send no Accept) with
   seq > since, whose path contains `needle`. The server logs a request just
   after answering it, so this waits (bounded) until `want` are there. */
static int api_statuses(const char *method, const char *needle, long long since, int *st, int max, int want)
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
                int lib = sbx__json_get(log.data, t, n, i, "headers.accept");
                char path[512];
                long long v = 0, seq = 0;
                path[0] = '\0';
                if (p >= 0) sbx__json_unescape(log.data, t, p, path, sizeof path, NULL);
                if (q >= 0) sbx__json_int(log.data, t, q, &seq);
                if (m < 0 || !sbx__json_eq(log.data, t, m, method) || !strstr(path, needle) || lib < 0 || seq <= since)
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

/* Line up an "every 2nd request fails" knob (its counter runs on across
   tests) so that OUR next matching request is a failing one: send requests of
   our own until one fails, then one more (which passes). */
static void prime(const char *method, const char *target, int code)
{
    sbx__buf out;
    int i, st = 0;
    for (i = 0; i < 4 && st != code; i++) {
        st = e2e_http(&C, method, target, NULL, &out);
        sbx__buf_free(&out);
    }
    CHECK_EQ_INT(st, code);
    e2e_http(&C, method, target, NULL, &out);
    sbx__buf_free(&out);
}

TEST(api_get_is_retried_after_500_and_503)
{
    static const int codes[] = {500, 503};
    char target[300], faults[400], needle[300];
    sbx_claim_status st;
    int i, seen[8], n;
    long long since;
    E2E_FMT(target, sizeof target, CLAIMS_NS "/%s", sbx_claim_name(&shared));
    E2E_FMT(needle, sizeof needle, "/sandboxclaims/%s", sbx_claim_name(&shared));
    for (i = 0; i < 2; i++) {
        E2E_FMT(faults, sizeof faults,
                "{\"api_error_every\":2,\"api_error_code\":%d,\"api_fault_match\":\"^GET .*/sandboxclaims/%s$\"}",
                codes[i], sbx_claim_name(&shared));
        e2e_faults(&C, faults);
        prime("GET", target, codes[i]); /* ours fails, our retry passes */
        since = log_seq();
        CHECK_EQ_INT(sbx_status(&shared, &st), SBX_OK);
        CHECK_EQ_INT(st.state, SBX_STATE_READY);
        n = api_statuses("GET", needle, since, seen, 8, 2);
        CHECK_EQ_INT(n, 2);
        CHECK_MSG(n == 2 && seen[0] == codes[i] && seen[1] == 200, "code %d: %d requests: %d %d %d", codes[i], n, seen[0], seen[1], seen[2]);
        e2e_faults(&C, "{\"api_error_every\":null,\"api_error_code\":null,\"api_fault_match\":null}");
    }
    settle();
}

TEST(api_429_waits_for_retry_after)
{
    char target[300], faults[400];
    sbx_claim_status st;
    long long t0, took;
    E2E_FMT(target, sizeof target, CLAIMS_NS "/%s", sbx_claim_name(&shared));
    E2E_FMT(faults, sizeof faults,
            "{\"api_429_every\":2,\"retry_after\":1,\"api_fault_match\":\"^GET .*/sandboxclaims/%s$\"}",
            sbx_claim_name(&shared));
    e2e_faults(&C, faults);
    prime("GET", target, 429);
    t0 = sbx__now_ms();
    CHECK_EQ_INT(sbx_status(&shared, &st), SBX_OK);
    took = em_since(t0);
    CHECK_EQ_INT(st.state, SBX_STATE_READY);
    CHECK_MSG(took >= 1000 && took < 1800, "took %lld ms with Retry-After: 1", took);
    settle();
}

TEST(api_delete_and_create_are_retried)
{
    sbx_sandbox sb;
    sbx_sandbox_config cfg;
    int seen[8], n;
    long long since;
    memset(&cfg, 0, sizeof cfg);
    cfg.template_name = "python-sandbox-template";
    cfg.claim_name = "delete-retried";
    CHECK_EQ_INT(sbx_open(&sb, &client, &cfg), SBX_OK);
    if (sb.impl) {
        e2e_faults(&C, "{\"api_error_every\":2,\"api_error_code\":503,\"api_fault_match\":\"^DELETE .*/sandboxclaims/\"}");
        prime("DELETE", CLAIMS_NS "/not-there", 503);
        since = log_seq();
        CHECK_EQ_INT(sbx_close(&sb), SBX_OK);
        n = api_statuses("DELETE", "/sandboxclaims/delete-retried", since, seen, 8, 2);
        CHECK(n == 2 && seen[0] == 503 && seen[1] == 200);
    } else {
        printf("  %s\n", sb.err.msg);
    }
    /* a claim create is retried with the same name (a 409 then proves by the
       open's nonce whether an earlier try landed: test_e2e_transient.c), a
       bounded number of times; the last answer is reported */
    since = log_seq();
    e2e_faults(&C, "{\"api_error_every\":1,\"api_error_code\":503,\"api_fault_match\":\"^POST .*/sandboxclaims\"}");
    cfg.claim_name = "post-retried";
    CHECK_EQ_INT(sbx_open(&sb, &client, &cfg), SBX_ERR_HTTP);
    CHECK_EQ_INT(sb.err.http_status, 503);
    CHECK_MSG(strstr(sb.err.msg, "unable to handle the request"), "%s", sb.err.msg);
    n = api_statuses("POST", "/sandboxclaims", since, seen, 8, SBX__RETRY_ATTEMPTS);
    CHECK_MSG(n == SBX__RETRY_ATTEMPTS, "%d creates", n);
    poll(NULL, 0, 300); /* one more POST would show up by now */
    CHECK_EQ_INT(api_statuses("POST", "/sandboxclaims", since, seen, 8, SBX__RETRY_ATTEMPTS), SBX__RETRY_ATTEMPTS);
    /* none landed (the rollback looked: 404), so nothing was deleted */
    CHECK_EQ_INT(api_statuses("GET", "/sandboxclaims/post-retried", since, seen, 8, 1), 1);
    CHECK_EQ_INT(seen[0], 404);
    CHECK_EQ_INT(api_statuses("DELETE", "/sandboxclaims/post-retried", since, seen, 8, 0), 0);
    settle();
}

/* The same rules hold on the other routes: a 503 from the runtime through the
   router tunnel and through the API server's proxy is retried for a read. */
TEST(read_retries_on_other_routes)
{
    static const sbx_mode modes[] = {SBX_MODE_ROUTER_TUNNEL, SBX_MODE_API_PROXY};
    size_t m;
    for (m = 0; m < 2; m++) {
        sbx_client cl;
        sbx_sandbox sb;
        sbx_sandbox_config cfg;
        sbx_exec_result res;
        char *back = NULL;
        size_t len = 0;
        long long n = -1, execs = -1;
        if (em_client(&C, &cl, modes[m], NULL) != SBX_OK) { CHECK(0); continue; }
        memset(&cfg, 0, sizeof cfg);
        cfg.template_name = "python-sandbox-template";
        CHECK_EQ_INT(sbx_open(&sb, &cl, &cfg), SBX_OK);
        if (sb.impl) {
            CHECK_EQ_INT(sbx_write(&sb, "m.txt", "via", 3), SBX_OK);
            runtime_faults("{\"fail_paths\":[\"/download/\",\"/execute\"],\"fail_first\":1,\"status_5xx\":503}");
            CHECK_EQ_INT(sbx_read(&sb, "m.txt", &back, &len), SBX_OK);
            CHECK(back && len == 3 && memcmp(back, "via", 3) == 0);
            sbx_free(back);
            CHECK(em_runtime_stats(&C, sbx_pod_ip(&sb), 8888, "GET /download/m.txt", &execs, &n) == 0);
            CHECK_EQ_INT(n, 2);
            runtime_faults("{\"fail_paths\":[\"/execute\"],\"fail_first\":1,\"status_5xx\":503}");
            CHECK_EQ_INT(sbx_run(&sb, "echo x", &res), SBX_ERR_HTTP);
            CHECK(em_runtime_stats(&C, sbx_pod_ip(&sb), 8888, "POST /execute", &execs, &n) == 0);
            CHECK_EQ_INT(n, 1);
            CHECK_EQ_INT(execs, 0);
            CHECK_EQ_INT(sbx_close(&sb), SBX_OK);
        } else {
            printf("  mode %d: %s\n", (int)modes[m], sb.err.msg);
        }
        sbx_client_close(&cl);
        runtime_faults("null");
    }
    settle();
}

TEST(backoff_is_capped_and_jittered)
{
    int i, lo = 1 << 30, hi = 0, v;
    for (i = 0; i < 200; i++) {
        v = sbx__backoff_ms(1);
        if (v < lo) lo = v;
        if (v > hi) hi = v;
    }
    CHECK_MSG(lo >= SBX__RETRY_BASE_MS * 3 / 4 && hi <= SBX__RETRY_BASE_MS * 5 / 4 && hi > lo, "%d..%d", lo, hi);
    for (i = 0; i < 200; i++) {
        v = sbx__backoff_ms(30);
        CHECK(v >= SBX__RETRY_CAP_MS * 3 / 4 && v <= SBX__RETRY_CAP_MS * 5 / 4);
    }
    CHECK(sbx__backoff_ms(2) >= SBX__RETRY_BASE_MS * 2 * 3 / 4);
}

int main(void)
{
    sbx_client_config cc;
    sbx_sandbox_config cfg;
    long long t0 = sbx__now_ms();
    e2e_pick_kubectl();
    if (e2e_up(&C, "e2e-retry", "") != 0) {
        printf("e2e_retry: 0 passed, 1 failed\n");
        return 1;
    }
    memset(&cc, 0, sizeof cc);
    cc.kubeconfig = C.kubeconfig;
    if (sbx_client_open(&client, &cc) != SBX_OK) {
        printf("client open failed: %s\n", client.err.msg);
        e2e_down(&C);
        printf("e2e_retry: 0 passed, 1 failed\n");
        return 1;
    }
    EM_RUN(backoff_is_capped_and_jittered);
    memset(&cfg, 0, sizeof cfg);
    cfg.template_name = "python-sandbox-template";
    if (sbx_open(&shared, &client, &cfg) == SBX_OK) {
        int idle = idle_fds();
        em_baseline(&C, &B); /* with the shared sandbox's port-forward */
        B.fds -= idle;
        printf("baseline: %d fds, %d pods, %d children (kubectl proxy, port-forward)\n", B.fds, B.pods, B.children);
        EM_RUN(run_is_not_resent_after_a_5xx);
        EM_RUN(run_is_not_resent_when_the_answer_is_cut);
        EM_RUN(run_is_not_resent_when_the_connection_closes_unanswered);
        EM_RUN(read_is_retried_after_503_then_succeeds);
        EM_RUN(list_and_exists_are_retried_after_502_and_504);
        EM_RUN(read_is_retried_after_a_reset_connection);
        EM_RUN(retries_stop_at_the_deadline);
        EM_RUN(runtime_429_waits_for_retry_after);
        EM_RUN(runtime_429_past_the_deadline_fails_at_once);
        EM_RUN(redirects_are_not_followed);
        EM_RUN(api_get_is_retried_after_500_and_503);
        EM_RUN(api_429_waits_for_retry_after);
        EM_RUN(api_delete_and_create_are_retried);
        EM_RUN(read_retries_on_other_routes);
        CHECK_EQ_INT(sbx_close(&shared), SBX_OK);
    } else {
        printf("shared sandbox: %s\n", shared.err.msg);
        test_failed++;
    }
    sbx_client_close(&client);
    CHECK_EQ_INT(e2e_child_count(), 0);
    e2e_down(&C);
    printf("suite took %lld ms\n", em_since(t0));
    return test_summary("e2e_retry");
}
