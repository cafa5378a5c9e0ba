/* End-to-end: the in-process WebSocket pod route (v4.channel.k8s.io through
   the client's kubectl proxy) against the dev cluster and the real kubectl:
   it is the default and the proxy is the only child; a refused upgrade makes
   the client fall back to kubectl port-forward once and for all its
   sandboxes; error-channel text reaches sb.err.msg; split frames and a server
   ping are handled; an abrupt close and a deleted pod give clear errors and
   later calls reconnect. After every test nothing is left behind. */
#define SANDBOX_IMPLEMENTATION
#include "sandbox.h"
#include "test.h"
#include <pthread.h>

static e2e_cluster C;
static em_base B;

static void cfg_python(sbx_sandbox_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->template_name = "python-sandbox-template";
}

/* Channel port-forward events of the dev cluster newer than `since` (its
   clock, seconds): how many of `kind` ("portforward.open", ".close",
   ".reject"), and the last one's integer `field` (or -1). */
typedef struct pf_seen {
    int count;
    long long field;
    char reason[200];
    double last_time;
} pf_seen;

static char pf_pod[256]; /* "" or only events of this pod */

static void pf_events(const char *kind, double since, const char *field, pf_seen *out)
{
    sbx__buf st;
    sbx__jtok *t = NULL;
    int n, ev, k;
    memset(out, 0, sizeof *out);
    out->field = -1;
    out->last_time = since;
    if (e2e_http(&C, "GET", "/_admin/state", NULL, &st) != 200) { sbx__buf_free(&st); return; }
    n = sbx__json_parse_alloc(&C.a, st.data, st.len, &t);
    ev = n > 0 ? sbx__json_get(st.data, t, n, 0, "portforwards.events") : -1;
    for (k = 0; ev >= 0 && k < t[ev].size; k++) {
        int i = sbx__json_index(t, n, ev, k), ti = sbx__json_mem(st.data, t, n, i, "time");
        double tm = 0;
        if (ti >= 0) sbx__json_double(st.data, t, ti, &tm);
        if (tm > out->last_time) out->last_time = tm;
        if (tm <= since || !sbx__json_eq(st.data, t, sbx__json_mem(st.data, t, n, i, "transport"), "channel")) continue;
        if (kind && !sbx__json_eq(st.data, t, sbx__json_mem(st.data, t, n, i, "event"), kind)) continue;
        if (pf_pod[0] && !sbx__json_eq(st.data, t, sbx__json_get(st.data, t, n, i, "pod[1]"), pf_pod)) continue;
        out->count++;
        if (field) {
            int f = sbx__json_mem(st.data, t, n, i, field);
            if (f >= 0 && sbx__json_int(st.data, t, f, &out->field) != 0) out->field = -1;
        }
        sbx__json_copy(st.data, t, sbx__json_mem(st.data, t, n, i, "reason"), out->reason, sizeof out->reason);
    }
    sbx__free(&C.a, t);
    sbx__buf_free(&st);
}

static double pf_now(void)
{
    pf_seen s;
    pf_events(NULL, 0, NULL, &s);
    return s.last_time;
}

/* The same, waiting (bounded) until at least `want` such events were logged:
   the server logs a close when its side of the tunnel has ended. */
static void pf_wait(const char *kind, double since, const char *field, int want, pf_seen *out)
{
    long long until = sbx__deadline(5000);
    do {
        pf_events(kind, since, field, out);
        if (out->count >= want) return;
        poll(NULL, 0, 50);
    } while (sbx__ms_left(until) > 0);
}

/* The dev cluster cuts a tunnel at once, but the cut reaches our socket
   through kubectl proxy a moment later: wait until the idle connection reads
   as cut, so the next call meets a known state (a request sent on a socket
   that is being cut is, rightly, not sent again). */
static void wait_cut(sbx_sandbox *sb)
{
    long long d = sbx__deadline(3000);
    while (sbx__ms_left(d) > 0 && sb->impl && sb->impl->rt_ready && sb->impl->rt.fd >= 0 &&
           !sbx__conn_stale(&sb->impl->rt))
        poll(NULL, 0, 10);
}

static int run_echo(sbx_sandbox *sb, const char *word)
{
    sbx_exec_result res;
    char cmd[64], want[64];
    int ok;
    snprintf(cmd, sizeof cmd, "echo %s", word);
    snprintf(want, sizeof want, "%s\n", word);
    if (sbx_run(sb, cmd, &res) != SBX_OK) return 0;
    ok = res.out && strcmp(res.out, want) == 0 && res.exit_code == 0;
    sbx_exec_result_free(&res);
    return ok;
}

TEST(default_route_is_websocket_with_one_child)
{
    sbx_client cl;
    sbx_sandbox sb;
    sbx_sandbox_config cfg;
    double t0 = pf_now();
    long long ms;
    pf_seen s;
    int i, ok = 1;
    static char big[256 * 1024];
    char *back = NULL;
    size_t len = 0;
    if (em_client(&C, &cl, SBX_MODE_POD_TUNNEL, NULL) != SBX_OK) { CHECK(0); return; }
    cfg_python(&cfg);
    ms = sbx__now_ms();
    CHECK_EQ_INT(sbx_open(&sb, &cl, &cfg), SBX_OK);
    ms = sbx__now_ms() - ms;
    if (sb.impl) {
        printf("  warm open over the websocket route: %lld ms\n", ms);
        CHECK_STR(sbx_route(&sb), "websocket");
        CHECK_EQ_INT(e2e_child_count(), B.children + 1); /* the kubectl proxy, nothing per sandbox */
        for (i = 0; i < 20; i++) ok &= run_echo(&sb, "hi");
        CHECK_MSG(ok, "%s", sb.err.msg);
        for (i = 0; i < (int)sizeof big; i++) big[i] = (char)(i * 7 + (i >> 9));
        CHECK_EQ_INT(sbx_write(&sb, "big.bin", big, sizeof big), SBX_OK);
        CHECK_EQ_INT(sbx_read(&sb, "big.bin", &back, &len), SBX_OK);
        CHECK(back && len == sizeof big && memcmp(back, big, len) == 0);
        sbx_free(back);
        snprintf(pf_pod, sizeof pf_pod, "%s", sbx_pod_name(&sb));
        pf_events("portforward.open", t0, NULL, &s);
        CHECK_EQ_INT(s.count, 1);   /* health check, 20 runs and the files: ONE WebSocket */
        CHECK_EQ_INT(sbx_close(&sb), SBX_OK);
        CHECK_STR(sbx_route(&sb), "");
        pf_wait("portforward.close", t0, "client_close", 1, &s);
        pf_pod[0] = '\0';
        CHECK_EQ_INT(s.count, 1);
        CHECK_EQ_INT(s.field, 1000); /* our close handshake */
    } else {
        printf("  %s\n", sb.err.msg);
    }
    sbx_client_close(&cl);
    em_settle(&C, &B);
}

TEST(refused_upgrade_falls_back_to_kubectl_once)
{
    sbx_client cl, strict;
    sbx_client_config cc;
    sbx_sandbox a, b, c;
    sbx_sandbox_config cfg;
    double t0;
    pf_seen s;
    cfg_python(&cfg);
    e2e_faults(&C, "{\"portforward\":{\"refuse_channel_ws\":true}}");
    t0 = pf_now();
    /* WEBSOCKET only: the refusal is the error, with the server's words */
    memset(&cc, 0, sizeof cc);
    cc.pod_route = SBX_POD_ROUTE_WEBSOCKET;
    if (em_client(&C, &strict, SBX_MODE_POD_TUNNEL, &cc) != SBX_OK) { CHECK(0); return; }
    CHECK_EQ_INT(sbx_open(&c, &strict, &cfg), SBX_ERR_HTTP);
    CHECK_EQ_INT(c.err.http_status, 403);
    CHECK_MSG(strstr(c.err.msg, "upgrade refused (fault refuse_channel_ws)") != NULL, "%s", c.err.msg);
    sbx_client_close(&strict);
    /* AUTO: this sandbox falls back at once, and so does the client */
    if (em_client(&C, &cl, SBX_MODE_POD_TUNNEL, NULL) != SBX_OK) { CHECK(0); return; }
    CHECK_EQ_INT(sbx_open(&a, &cl, &cfg), SBX_OK);
    if (!a.impl) { printf("  %s\n", a.err.msg); sbx_client_close(&cl); em_settle(&C, &B); return; }
    CHECK_STR(sbx_route(&a), "kubectl port-forward");
    CHECK_EQ_INT(e2e_child_count(), B.children + 2);
    CHECK(run_echo(&a, "fallback"));
    pf_events("portforward.reject", t0, NULL, &s);
    CHECK_EQ_INT(s.count, 2);    /* the strict client's and this one's */
    /* the upgrade works again, but the client's choice stays */
    e2e_faults(&C, "{\"portforward\":null}");
    t0 = pf_now();
    CHECK_EQ_INT(sbx_open(&b, &cl, &cfg), SBX_OK);
    CHECK_STR(sbx_route(&b), "kubectl port-forward");
    CHECK(run_echo(&b, "sticks"));
    CHECK_EQ_INT(e2e_child_count(), B.children + 3);
    pf_events(NULL, t0, NULL, &s);
    CHECK_EQ_INT(s.count, 0);    /* no channel upgrade was even tried */
    CHECK_EQ_INT(sbx_close(&b), SBX_OK);
    CHECK_EQ_INT(sbx_close(&a), SBX_OK);
    sbx_client_close(&cl);
    em_settle(&C, &B);
}

/* An idle WebSocket cut under the client is replaced silently; a new one
   whose error channel speaks fails the call with the server's words; when
   the fault is gone the next call reconnects. */
TEST(error_channel_text_reaches_the_message)
{
    sbx_client cl;
    sbx_sandbox sb;
    sbx_sandbox_config cfg;
    sbx__buf out;
    char body[300];
    if (em_client(&C, &cl, SBX_MODE_POD_TUNNEL, NULL) != SBX_OK) { CHECK(0); return; }
    cfg_python(&cfg);
    CHECK_EQ_INT(sbx_open(&sb, &cl, &cfg), SBX_OK);
    if (sb.impl) {
        snprintf(body, sizeof body, "{\"namespace\":\"default\",\"pod\":\"%s\"}", sbx_pod_name(&sb));
        CHECK_EQ_INT(e2e_http(&C, "POST", "/_admin/kill-portforwards", body, &out), 200);
        sbx__buf_free(&out);
        wait_cut(&sb);
        CHECK_MSG(run_echo(&sb, "again"), "%s", sb.err.msg);  /* idle cut: reconnected, no error */
        CHECK_EQ_INT(e2e_http(&C, "POST", "/_admin/kill-portforwards", body, &out), 200);
        sbx__buf_free(&out);
        wait_cut(&sb);
        e2e_faults(&C, "{\"portforward\":{\"channel_error\":\"error forwarding port 8888 to pod: simulated refusal\"}}");
        CHECK(!run_echo(&sb, "x"));
        CHECK_EQ_INT(sb.err.code, SBX_ERR_CONNECT);
        CHECK_MSG(strstr(sb.err.msg, "port 8888: error forwarding port 8888 to pod: simulated refusal") != NULL, "%s",
                  sb.err.msg);
        e2e_faults(&C, "{\"portforward\":null}");
        CHECK_MSG(run_echo(&sb, "back"), "%s", sb.err.msg);
        CHECK_STR(sbx_route(&sb), "websocket");
        CHECK_EQ_INT(sbx_close(&sb), SBX_OK);
    } else {
        printf("  %s\n", sb.err.msg);
    }
    sbx_client_close(&cl);
    em_settle(&C, &B);
}

TEST(split_frames_and_server_ping)
{
    sbx_client cl;
    sbx_sandbox sb;
    sbx_sandbox_config cfg;
    double t0 = pf_now();
    pf_seen s;
    static char data[20000];
    char *back = NULL;
    size_t len = 0, i;
    e2e_faults(&C, "{\"portforward\":{\"split_frames\":true,\"ping_first\":true}}");
    if (em_client(&C, &cl, SBX_MODE_POD_TUNNEL, NULL) != SBX_OK) { CHECK(0); return; }
    cfg_python(&cfg);
    CHECK_EQ_INT(sbx_open(&sb, &cl, &cfg), SBX_OK);
    if (sb.impl) {
        CHECK_MSG(run_echo(&sb, "split"), "%s", sb.err.msg);
        for (i = 0; i < sizeof data; i++) data[i] = (char)(i % 251);
        CHECK_EQ_INT(sbx_write(&sb, "d.bin", data, sizeof data), SBX_OK);
        CHECK_EQ_INT(sbx_read(&sb, "d.bin", &back, &len), SBX_OK);
        CHECK(back && len == sizeof data && memcmp(back, data, len) == 0);
        sbx_free(back);
        snprintf(pf_pod, sizeof pf_pod, "%s", sbx_pod_name(&sb));
        CHECK_EQ_INT(sbx_close(&sb), SBX_OK);
        pf_wait("portforward.close", t0, "pongs", 1, &s);
        CHECK_EQ_INT(s.count, 1);
        CHECK_EQ_INT(s.field, 1);    /* the server's ping was answered */
        pf_events("portforward.close", t0, "split_sends", &s);
        CHECK_MSG(s.field > 1000, "split_sends %lld", s.field);
        pf_pod[0] = '\0';
    } else {
        printf("  %s\n", sb.err.msg);
    }
    sbx_client_close(&cl);
    em_settle(&C, &B);
}

TEST(abrupt_close_is_clear_and_the_next_call_reconnects)
{
    sbx_client cl;
    sbx_sandbox sb;
    sbx_sandbox_config cfg;
    sbx__buf out;
    char body[300];
    if (em_client(&C, &cl, SBX_MODE_POD_TUNNEL, NULL) != SBX_OK) { CHECK(0); return; }
    cfg_python(&cfg);
    CHECK_EQ_INT(sbx_open(&sb, &cl, &cfg), SBX_OK);
    if (sb.impl) {
        snprintf(body, sizeof body, "{\"namespace\":\"default\",\"pod\":\"%s\"}", sbx_pod_name(&sb));
        e2e_faults(&C, "{\"portforward\":{\"abrupt_after_bytes\":10}}");
        CHECK_EQ_INT(e2e_http(&C, "POST", "/_admin/kill-portforwards", body, &out), 200);
        sbx__buf_free(&out);
        wait_cut(&sb);
        CHECK(!run_echo(&sb, "cut"));
        CHECK_EQ_INT(sb.err.code, SBX_ERR_CONNECT);
        CHECK_MSG(strstr(sb.err.msg, "port-forward WebSocket: the connection ended without a close frame") &&
                  strstr(sb.err.msg, "/execute"), "%s", sb.err.msg);
        e2e_faults(&C, "{\"portforward\":null}");
        CHECK_MSG(run_echo(&sb, "whole"), "%s", sb.err.msg);
        CHECK_EQ_INT(sbx_close(&sb), SBX_OK);
    } else {
        printf("  %s\n", sb.err.msg);
    }
    sbx_client_close(&cl);
    em_settle(&C, &B);
}

typedef struct del_job {
    char path[300];
    int status;
} del_job;

static void *delete_pod_later(void *arg)
{
    del_job *j = (del_job *)arg;
    sbx__buf out;
    poll(NULL, 0, 700);
    j->status = e2e_http(&C, "DELETE", j->path, NULL, &out);
    sbx__buf_free(&out);
    return NULL;
}

TEST(pod_deleted_mid_stream)
{
    sbx_client cl;
    sbx_sandbox sb;
    sbx_sandbox_config cfg;
    sbx_exec_result res;
    pthread_t th;
    del_job job;
    long long until;
    int back = 0;
    if (em_client(&C, &cl, SBX_MODE_POD_TUNNEL, NULL) != SBX_OK) { CHECK(0); return; }
    cfg_python(&cfg);
    CHECK_EQ_INT(sbx_open(&sb, &cl, &cfg), SBX_OK);
    if (sb.impl) {
        snprintf(job.path, sizeof job.path, "/api/v1/namespaces/default/pods/%s", sbx_pod_name(&sb));
        job.status = 0;
        pthread_create(&th, NULL, delete_pod_later, &job);
        CHECK(sbx_run(&sb, "sleep 5", &res) != SBX_OK);
        pthread_join(th, NULL);
        CHECK_EQ_INT(job.status, 200);
        CHECK_MSG(strstr(sb.err.msg, "is gone (deleted)") && strstr(sb.err.msg, sbx_pod_name(&sb)), "%s", sb.err.msg);
        printf("  mid-stream: %s\n", sb.err.msg);
        /* the controller makes the pod again under the same name: later calls reconnect */
        until = sbx__deadline(30000);
        while (!back && sbx__ms_left(until) > 0) {
            back = run_echo(&sb, "again");
            if (!back) poll(NULL, 0, 300);
        }
        CHECK_MSG(back, "%s", sb.err.msg);
        CHECK_STR(sbx_route(&sb), "websocket");
        CHECK_EQ_INT(sbx_close(&sb), SBX_OK);
    } else {
        printf("  %s\n", sb.err.msg);
    }
    sbx_client_close(&cl);
    em_settle(&C, &B);
}

/* Several ports on one WebSocket (the internal API sandboxd's REST + gRPC
   will need): ports=8888,8888 gives two independent connections to the
   runtime, each answering its own request on its own channel pair. */
TEST(two_ports_on_one_websocket)
{
    sbx_client cl;
    sbx_sandbox sb;
    sbx_sandbox_config cfg;
    if (em_client(&C, &cl, SBX_MODE_POD_TUNNEL, NULL) != SBX_OK) { CHECK(0); return; }
    cfg_python(&cfg);
    CHECK_EQ_INT(sbx_open(&sb, &cl, &cfg), SBX_OK);
    if (sb.impl) {
        char target[300], got[2][4096];
        size_t have[2] = {0, 0};
        int ports[2] = {8888, 8888}, fd, port = -1, fds = e2e_fd_count();
        long long deadline = sbx__deadline(10000);
        sbx__ws *ws;
        sbx_error e;
        static const char q0[] = "GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n";
        static const char q1[] = "GET /nothing-here HTTP/1.1\r\nHost: b\r\nConnection: close\r\n\r\n";
        snprintf(target, sizeof target, "/api/v1/namespaces/default/pods/%s/portforward?ports=8888,8888", sbx_pod_name(&sb));
        ws = sbx__ws_new(&cl.impl->a, &cl.impl->api, target, ports, 2);
        CHECK(ws != NULL);
        sbx__err_clear(&e);
        fd = ws ? sbx__ws_open(ws, deadline, &e) : -1;
        CHECK_MSG(fd >= 0, "%s", e.msg);
        if (fd >= 0) {
            CHECK_EQ_INT(sbx__ws_write(ws, 1, q1, sizeof q1 - 1, deadline), 0);
            CHECK_EQ_INT(sbx__ws_write(ws, 0, q0, sizeof q0 - 1, deadline), 0);
            while (!(strstr(got[0], "\"status\"") && strstr(got[1], "404")) && sbx__ms_left(deadline) > 0) {
                char buf[1024];
                long n = sbx__ws_read(ws, &port, buf, sizeof buf, deadline);
                if (n <= 0) break;
                if (have[port] + (size_t)n < sizeof got[0]) {
                    memcpy(got[port] + have[port], buf, (size_t)n);
                    have[port] += (size_t)n;
                    got[port][have[port]] = '\0';
                }
            }
            CHECK_MSG(strncmp(got[0], "HTTP/1.", 7) == 0 && strstr(got[0], " 200 ") && strstr(got[0], "\"status\""),
                      "port 0: %.200s", got[0]);
            CHECK_MSG(strncmp(got[1], "HTTP/1.", 7) == 0 && strstr(got[1], " 404 "), "port 1: %.200s", got[1]);
        }
        sbx__ws_free(ws);
        CHECK_EQ_INT(e2e_fd_count(), fds);
        CHECK_EQ_INT(sbx_close(&sb), SBX_OK);
    } else {
        printf("  %s\n", sb.err.msg);
    }
    sbx_client_close(&cl);
    em_settle(&C, &B);
}

/* Request-log entries (since the last clear) of `method` whose path holds `needle`. */
static int logged(const char *method, const char *needle)
{
    sbx__buf out;
    sbx__jtok *t = NULL;
    int n, arr, i, k, count = 0;
    if (e2e_http(&C, "GET", "/_admin/requests", NULL, &out) != 200) {
        sbx__buf_free(&out);
        return -1;
    }
    n = sbx__json_parse_alloc(&C.a, out.data, out.len, &t);
    arr = n > 0 ? sbx__json_get(out.data, t, n, 0, "requests") : -1;
    if (arr >= 0)
        SBX__JSON_FOREACH(t, arr, i, k) {
            char m[16], path[600];
            sbx__json_copy(out.data, t, sbx__json_mem(out.data, t, n, i, "method"), m, sizeof m);
            sbx__json_copy(out.data, t, sbx__json_mem(out.data, t, n, i, "path"), path, sizeof path);
            if (strcmp(m, method) == 0 && strstr(path, needle)) count++;
        }
    sbx__free(&C.a, t);
    sbx__buf_free(&out);
    return count;
}

static void log_clear(void)
{
    sbx__buf out;
    e2e_http(&C, "DELETE", "/_admin/requests", NULL, &out);
    sbx__buf_free(&out);
}

/* A client lists the warm pools once per template, and connects to the pod
   named after the sandbox while it reads the Sandbox. What it remembers is
   checked: a wrong port is dropped for the right one, and a pool that is gone
   (WarmPoolNotFound) makes it list the pools again, with the first claim
   deleted. Nothing of either detour is left. */
TEST(open_remembers_pool_and_port)
{
    sbx_client cl;
    sbx_sandbox a, b, c, d;
    sbx_sandbox_config cfg;
    struct sbx__client *ci;
    cfg_python(&cfg);
    if (em_client(&C, &cl, SBX_MODE_POD_TUNNEL, NULL) != SBX_OK) { CHECK(0); return; }
    ci = cl.impl;
    log_clear();
    CHECK_EQ_INT(sbx_open(&a, &cl, &cfg), SBX_OK);
    CHECK_EQ_INT(logged("GET", "/sandboxwarmpools"), 1);
    CHECK_EQ_INT(ci->nmemo, 1);
    CHECK_STR(ci->memo[0].pool, "python-sandbox-warmpool");
    CHECK_EQ_INT(ci->memo[0].port, 8888);
    log_clear();
    CHECK_EQ_INT(sbx_open(&b, &cl, &cfg), SBX_OK);
    CHECK_EQ_INT(logged("GET", "/sandboxwarmpools"), 0);   /* remembered */
    CHECK_EQ_INT(logged("GET", "/sandboxes/"), 1);         /* the pod is still confirmed */
    CHECK_EQ_INT(logged("GET", "/portforward?ports=8888"), 1);
    CHECK_STR(sbx_route(&b), "websocket");
    CHECK(run_echo(&b, "remembered"));
    CHECK_EQ_INT(sbx_close(&a), SBX_OK);
    CHECK_EQ_INT(sbx_close(&b), SBX_OK);
    /* a wrong port: that WebSocket is dropped, the right one made */
    ci->memo[0].port = 9;
    log_clear();
    CHECK_EQ_INT(sbx_open(&c, &cl, &cfg), SBX_OK);
    CHECK(logged("GET", "/portforward?ports=9") >= 1);
    CHECK_EQ_INT(logged("GET", "/portforward?ports=8888"), 1);
    CHECK_EQ_INT(ci->memo[0].port, 8888);
    CHECK(run_echo(&c, "port"));
    CHECK_EQ_INT(sbx_close(&c), SBX_OK);
    /* a pool that is gone: the claim naming it goes, the pools are listed again */
    snprintf(ci->memo[0].pool, sizeof ci->memo[0].pool, "gone-pool");
    log_clear();
    CHECK_EQ_INT(sbx_open(&d, &cl, &cfg), SBX_OK);
    CHECK_MSG(d.impl != NULL, "%s", d.err.msg);
    CHECK_EQ_INT(logged("POST", "/sandboxclaims"), 2);
    CHECK_EQ_INT(logged("DELETE", "/sandboxclaims/"), 1);
    CHECK_EQ_INT(logged("GET", "/sandboxwarmpools"), 1);
    CHECK_STR(ci->memo[0].pool, "python-sandbox-warmpool");
    CHECK(run_echo(&d, "pool"));
    CHECK_EQ_INT(e2e_count(&C, "/apis/extensions.agents.x-k8s.io/v1beta1/namespaces/default/sandboxclaims"), 1);
    CHECK_EQ_INT(sbx_close(&d), SBX_OK);
    sbx_client_close(&cl);
    /* the API server proxy route asks the pod named after the sandbox the same way */
    if (em_client(&C, &cl, SBX_MODE_API_PROXY, NULL) != SBX_OK) { CHECK(0); return; }
    CHECK_EQ_INT(sbx_open(&a, &cl, &cfg), SBX_OK);
    CHECK_EQ_INT(sbx_close(&a), SBX_OK);
    log_clear();
    CHECK_EQ_INT(sbx_open(&b, &cl, &cfg), SBX_OK);
    CHECK_EQ_INT(logged("GET", "/sandboxwarmpools"), 0);
    CHECK_EQ_INT(logged("GET", "/sandboxes/"), 1);
    CHECK(b.impl && logged("GET", sbx_pod_name(&b)) >= 1);
    CHECK(run_echo(&b, "proxy"));
    CHECK_EQ_INT(sbx_close(&b), SBX_OK);
    sbx_client_close(&cl);
    em_settle(&C, &B);
}

TEST(bad_pod_route_settings_are_refused)
{
    sbx_client cl;
    sbx_client_config cc;
    memset(&cc, 0, sizeof cc);
    cc.kubeconfig = C.kubeconfig;
    cc.pod_route = (sbx_pod_route)7;
    CHECK_EQ_INT(sbx_client_open(&cl, &cc), SBX_ERR_INVALID_ARG);
    CHECK(strstr(cl.err.msg, "pod_route") != NULL);
    setenv("SANDBOX_POD_ROUTE", "spdy", 1);
    cc.pod_route = SBX_POD_ROUTE_AUTO;
    CHECK_EQ_INT(sbx_client_open(&cl, &cc), SBX_ERR_INVALID_ARG);
    CHECK_MSG(strstr(cl.err.msg, "SANDBOX_POD_ROUTE=\"spdy\"") != NULL, "%s", cl.err.msg);
    unsetenv("SANDBOX_POD_ROUTE");
    CHECK_EQ_INT(e2e_child_count(), B.children);
}

int main(void)
{
    long long t0 = sbx__now_ms();
    e2e_pick_kubectl();
    unsetenv("SANDBOX_POD_ROUTE"); /* this suite is about the default route */
    if (e2e_up(&C, "e2e-ws", "") != 0) {
        printf("e2e_ws: 0 passed, 1 failed\n");
        return 1;
    }
    em_baseline(&C, &B);
    printf("baseline: %d fds, %d pods, %d children\n", B.fds, B.pods, B.children);
    EM_RUN(bad_pod_route_settings_are_refused);
    EM_RUN(default_route_is_websocket_with_one_child);
    EM_RUN(refused_upgrade_falls_back_to_kubectl_once);
    EM_RUN(error_channel_text_reaches_the_message);
    EM_RUN(split_frames_and_server_ping);
    EM_RUN(abrupt_close_is_clear_and_the_next_call_reconnects);
    EM_RUN(pod_deleted_mid_stream);
    EM_RUN(two_ports_on_one_websocket);
    EM_RUN(open_remembers_pool_and_port);
    CHECK_EQ_INT(e2e_child_count(), 0);
    e2e_down(&C);
    printf("suite took %lld ms\n", em_since(t0));
    return test_summary("e2e_ws");
}
