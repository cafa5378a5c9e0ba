/* sbx_open against a Kubernetes API server that misbehaves on purpose
   (tests/fakes/servers/kube_hostile.py): every misbehaviour gives a clear error
   within the deadline, the claim that was created is deleted again, a
   misbehaving watch is not retried in a tight loop, and server text with
   control characters never reaches the message raw. */
#define SBX_MAX_LINE_BYTES 65536 /* so that "huge-watch" need not send 16 MiB */
#define SANDBOX_IMPLEMENTATION
#include "sandbox.h"
#include "test.h"

static sbx_client client;
static sbx__endpoint server_ep;
static pid_t server_pid;
static int server_stdin = -1;

static int start_server(void)
{
    int port = test_spawn_server("tests/fakes/servers/kube_hostile.py", NULL, NULL, &server_pid, &server_stdin, 15000);
    if (port < 0) return -1;
    {
        char url[64];
        snprintf(url, sizeof url, "http://127.0.0.1:%d", port);
        if (sbx__endpoint_parse(url, &server_ep, NULL) != SBX_OK) return -1;
        memset(&client, 0, sizeof client);
        {
            sbx_client_config cc;
            memset(&cc, 0, sizeof cc);
            cc.api_url = url;
            cc.api_timeout_ms = 3000;
            if (sbx_client_open(&client, &cc) != SBX_OK) return -1;
        }
    }
    return 0;
}

static void stop_server(void)
{
    sbx_client_close(&client);
    if (server_stdin >= 0) close(server_stdin);
    if (server_pid > 0) waitpid(server_pid, NULL, 0);
}

/* creates / deletes / watches the server saw in namespace ns, and the claims still stored */
static long long live_claims;
static void stats(const char *ns, long long *creates, long long *deletes, long long *watches)
{
    sbx__conn c;
    sbx__http_req req;
    sbx__http_resp resp;
    sbx__buf body;
    sbx_allocator a = sbx__allocator(NULL);
    sbx__jtok *t = NULL;
    int n, o;
    *creates = *deletes = *watches = live_claims = -1;
    sbx__conn_init(&c, &server_ep, &a);
    sbx__buf_init(&body, &a);
    sbx__http_req_init(&req);
    req.method = "GET";
    req.target = "/_stats";
    if (sbx__http_do(&c, &req, &resp, &body, 1 << 20, sbx__deadline(3000), NULL) == SBX_OK) {
        n = sbx__json_parse_alloc(&a, body.data, body.len, &t);
        o = n > 0 ? sbx__json_mem(body.data, t, n, 0, ns) : -1;
        if (o >= 0) {
            *creates = *deletes = *watches = live_claims = 0;
            sbx__json_int(body.data, t, sbx__json_mem(body.data, t, n, o, "live"), &live_claims);
            sbx__json_int(body.data, t, sbx__json_mem(body.data, t, n, o, "creates"), creates);
            sbx__json_int(body.data, t, sbx__json_mem(body.data, t, n, o, "deletes"), deletes);
            sbx__json_int(body.data, t, sbx__json_mem(body.data, t, n, o, "watches"), watches);
        }
        sbx__free(&a, t);
    }
    sbx__http_resp_free(&resp);
    sbx__buf_free(&body);
    sbx__conn_free(&c);
}

/* Open in namespace `ns` with a 1.5 s ready deadline; check code, time and
   that the claim was deleted again. */
static void open_in(const char *ns, sbx_result want, const char *msg_part, sbx_sandbox *sb)
{
    sbx_sandbox_config cfg;
    long long t0 = sbx__now_ms(), took, creates, deletes, watches;
    sbx_result r;
    memset(&cfg, 0, sizeof cfg);
    cfg.template_name = "t";
    cfg.ns = ns;
    cfg.ready_timeout_ms = 1500;
    r = sbx_open(sb, &client, &cfg);
    took = sbx__now_ms() - t0;
    CHECK_MSG(r == want, "%s: got %d (%s), want %d", ns, r, sb->err.msg, want);
    CHECK_MSG(msg_part == NULL || strstr(sb->err.msg, msg_part), "%s: message: %s", ns, sb->err.msg);
    CHECK_MSG(took < 4000, "%s: took %lld ms", ns, took);
    CHECK(sb->impl == NULL);
    stats(ns, &creates, &deletes, &watches);
    CHECK_MSG(live_claims <= 0 && (creates <= 0 || deletes >= 1), "%s: %lld creates, %lld deletes, %lld claims left",
              ns, creates, deletes, live_claims);
    printf("  %s: %d after %lld ms, %lld watch(es): %s\n", ns, r, took, watches, sb->err.msg);
}

/* sbx_list_claims on a list whose items are odd or hostile: every string
   fits its block (ASan checks), numbers that are not numbers read 0, the
   namespace asked for fills in a missing one. */
TEST(hostile_claim_list)
{
    sbx_claim_entry *e = NULL;
    size_t n = 99;
    sbx_error err;
    CHECK_EQ_INT(sbx_list_claims(&client, "hostile-list", NULL, &e, &n, &err), SBX_OK);
    CHECK_EQ_INT(n, 2); /* the items with a string name */
    if (e && n == 2) {
        CHECK_STR(e[0].name, "abc");
        CHECK_STR(e[0].ns, "ns");
        CHECK_EQ_INT(e[0].ready, 1);
        CHECK_STR(e[0].reason, "R?1"); /* control characters never reach the text raw */
        CHECK_EQ_INT(e[0].created, 1796378400);
        CHECK_EQ_INT(strlen(e[0].owner_host), 100000);
        CHECK_EQ_INT(e[0].owner_pid, 0);
        CHECK_EQ_INT(e[0].owner_start, 0);
        CHECK_STR(e[1].name, "dup2"); /* the last of duplicate keys, as everywhere */
        CHECK_STR(e[1].ns, "hostile-list");
        CHECK_EQ_INT(e[1].ready, 0); /* Ready=True but no sandbox bound */
        CHECK_STR(e[1].reason, "");
        CHECK_EQ_INT(e[1].created, 0);
        CHECK_STR(e[1].owner_host, "");
        CHECK_EQ_INT(e[1].owner_pid, 43);
    }
    sbx_free(e);
    /* "*": the cluster-wide path, which this server does not serve */
    CHECK_EQ_INT(sbx_list_claims(&client, "*", NULL, &e, &n, &err), SBX_ERR_NOT_FOUND);
    CHECK_EQ_INT(err.http_status, 404);
    CHECK(e == NULL && n == 0);
}

TEST(garbage_event)
{
    sbx_sandbox sb;
    open_in("garbage-watch", SBX_ERR_PROTOCOL, "malformed event", &sb);
}

TEST(huge_event)
{
    sbx_sandbox sb;
    open_in("huge-watch", SBX_ERR_TOO_BIG, NULL, &sb);
}

TEST(silent_watch_times_out)
{
    sbx_sandbox sb;
    open_in("silent-watch", SBX_ERR_TIMEOUT, "not Ready in time", &sb);
}

TEST(gone_forever_is_not_a_tight_loop)
{
    sbx_sandbox sb;
    long long c, d, w;
    open_in("gone-watch", SBX_ERR_TIMEOUT, NULL, &sb);
    stats("gone-watch", &c, &d, &w);
    CHECK_MSG(w >= 2 && w <= 20, "%lld watches in 1.5 s", w);
}

TEST(empty_streams_are_not_a_tight_loop)
{
    sbx_sandbox sb;
    long long c, d, w;
    open_in("empty-watch", SBX_ERR_TIMEOUT, NULL, &sb);
    stats("empty-watch", &c, &d, &w);
    CHECK_MSG(w >= 2 && w <= 20, "%lld watches in 1.5 s", w);
}

TEST(hostile_sandbox_name_is_refused)
{
    sbx_sandbox sb;
    open_in("bad-name", SBX_ERR_PROTOCOL, "invalid sandbox", &sb);
}

TEST(server_text_is_sanitised_and_bounded)
{
    sbx_sandbox sb;
    size_t i;
    int clean = 1;
    open_in("ugly-status", SBX_ERR_SANDBOX, "InvalidMetadata", &sb);
    for (i = 0; sb.err.msg[i]; i++)
        if ((unsigned char)sb.err.msg[i] < 0x20 || sb.err.msg[i] == 0x7f) clean = 0;
    CHECK_MSG(clean, "control characters in: %s", sb.err.msg);
    CHECK(strlen(sb.err.msg) < SBX_ERRMSG_SIZE);
}

TEST(bad_pool_list)
{
    sbx_sandbox sb;
    open_in("bad-pools", SBX_ERR_PROTOCOL, "SandboxWarmPools", &sb);
}

TEST(create_fails_with_plain_text)
{
    sbx_sandbox sb;
    size_t i;
    int clean = 1;
    long long c, d, w;
    open_in("http-500", SBX_ERR_HTTP, "HTTP 500: internal", &sb);
    /* the create was sent again (same name) after each 500; the claim the
       first one stored carries our nonce, so the rollback deleted it, once */
    stats("http-500", &c, &d, &w);
    CHECK_MSG(c == SBX__RETRY_ATTEMPTS && d == 1, "%lld creates, %lld deletes", c, d);
    for (i = 0; sb.err.msg[i]; i++)
        if ((unsigned char)sb.err.msg[i] < 0x20) clean = 0;
    CHECK(clean);
    CHECK_EQ_INT(sb.err.http_status, 500);
}

int main(void)
{
    if (start_server() != 0) {
        printf("kube_hostile: could not start tests/fakes/servers/kube_hostile.py\n");
        printf("kube_hostile: 0 passed, 1 failed\n");
        return 1;
    }
    RUN(hostile_claim_list);
    RUN(garbage_event);
    RUN(huge_event);
    RUN(silent_watch_times_out);
    RUN(gone_forever_is_not_a_tight_loop);
    RUN(empty_streams_are_not_a_tight_loop);
    RUN(hostile_sandbox_name_is_refused);
    RUN(server_text_is_sanitised_and_bounded);
    RUN(bad_pool_list);
    RUN(create_fails_with_plain_text);
    stop_server();
    return test_summary("kube_hostile");
}
