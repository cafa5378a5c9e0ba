/* End-to-end: every connection mode (pod tunnel, shared router tunnel, gateway,
   direct router URL, in-cluster, API server proxy) and both runtimes (python,
   sandboxd) against the dev cluster, with the real kubectl. Router errors
   (400, 502, 504) must surface with the router's own words; Gateway addresses
   are validated. After every test nothing is left behind: no claim, no extra
   pod, no descriptor, no child process. */
#define SANDBOX_IMPLEMENTATION
#include "sandbox.h"
#include "test.h"
#include "../fakes/capture.h"

static e2e_cluster C;
static em_base B;

static void cfg_python(sbx_sandbox_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->template_name = "python-sandbox-template";
}

static void cfg_sandboxd(sbx_sandbox_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->warm_pool = "sandboxd-pool";
}

/* run + write + read + list + exists on a python-runtime sandbox */
static void python_round_trip(sbx_sandbox *sb, const char *tag)
{
    sbx_exec_result res;
    sbx_file_entry *ents = NULL;
    char *back = NULL;
    size_t len = 0, count = 0, i;
    int ex = -1, found = 0;
    CHECK_EQ_INT(sbx_run(sb, "echo routed", &res), SBX_OK);
    CHECK_MSG(res.out && res.out_len == 7 && memcmp(res.out, "routed\n", 7) == 0, "%s: %s", tag, sb->err.msg);
    sbx_exec_result_free(&res);
    CHECK_EQ_INT(sbx_write(sb, "dir/a file %41.txt", "payload", 7), SBX_OK);
    CHECK_EQ_INT(sbx_read(sb, "dir/a file %41.txt", &back, &len), SBX_OK);
    CHECK(back && len == 7 && memcmp(back, "payload", 7) == 0);
    sbx_free(back);
    CHECK_EQ_INT(sbx_exists(sb, "dir/a file %41.txt", &ex), SBX_OK);
    CHECK_EQ_INT(ex, 1);
    CHECK_EQ_INT(sbx_exists(sb, "dir/missing", &ex), SBX_OK);
    CHECK_EQ_INT(ex, 0);
    CHECK_EQ_INT(sbx_list_dir(sb, "dir", &ents, &count), SBX_OK);
    for (i = 0; i < count; i++)
        if (strcmp(ents[i].name, "a file %41.txt") == 0 && ents[i].size == 7) found = 1;
    CHECK_MSG(found, "%s: listing lacks the file", tag);
    sbx_free(ents);
}

TEST(pod_tunnel_is_the_default)
{
    sbx_client cl;
    sbx_sandbox sb;
    sbx_sandbox_config cfg;
    if (em_client(&C, &cl, SBX_MODE_POD_TUNNEL, NULL) != SBX_OK) { CHECK(0); return; }
    cfg_python(&cfg);
    CHECK_EQ_INT(sbx_open(&sb, &cl, &cfg), SBX_OK);
    if (sb.impl) {
        const char *env = getenv("SANDBOX_POD_ROUTE");
        int kubectl = env && strcmp(env, "kubectl") == 0;
        CHECK_STR(sbx_route(&sb), kubectl ? "kubectl port-forward" : "websocket");
        /* kubectl proxy (+ this sandbox's port-forward on the kubectl route) */
        CHECK_EQ_INT(e2e_child_count(), B.children + (kubectl ? 2 : 1));
        CHECK_EQ_INT(sbx_capabilities(&sb), SBX_CAP_EXEC | SBX_CAP_WRITE | SBX_CAP_READ | SBX_CAP_LIST | SBX_CAP_EXISTS);
        python_round_trip(&sb, "pod tunnel");
        CHECK_EQ_INT(sbx_remove_file(&sb, "dir", 1), SBX_ERR_UNSUPPORTED);
        CHECK_MSG(strstr(sb.err.msg, "python runtime") && strstr(sb.err.msg, "delete"), "%s", sb.err.msg);
        CHECK_EQ_INT(sbx_close(&sb), SBX_OK);
    } else {
        printf("  %s\n", sb.err.msg);
    }
    sbx_client_close(&cl);
    em_settle(&C, &B);
}

/* Router log lines "proxying METHOD PATH for sandbox 'NAME'" count requests
   that went through the router for that sandbox. */
static int router_log_count(const char *router_pod, const char *needle)
{
    char target[300];
    sbx__buf out;
    int n = 0;
    const char *p;
    E2E_FMT(target, sizeof target, "/api/v1/namespaces/agent-sandbox-system/pods/%s/log", router_pod);
    if (e2e_http(&C, "GET", target, NULL, &out) == 200 && out.data)
        for (p = out.data; (p = strstr(p, needle)) != NULL; p++) n++;
    sbx__buf_free(&out);
    return n;
}

TEST(router_tunnel_is_shared_and_restarted)
{
    sbx_client cl;
    sbx_sandbox a, b;
    sbx_sandbox_config cfg;
    sbx_exec_result res;
    char rpod[128], rip[64], needle[200];
    sbx__buf out;
    int before, after;
    if (em_router_pod(&C, rpod, sizeof rpod, rip, sizeof rip) != 0) { CHECK(0); return; }
    if (em_client(&C, &cl, SBX_MODE_ROUTER_TUNNEL, NULL) != SBX_OK) { CHECK(0); return; }
    cfg_python(&cfg);
    CHECK_EQ_INT(sbx_open(&a, &cl, &cfg), SBX_OK);
    CHECK_EQ_INT(sbx_open(&b, &cl, &cfg), SBX_OK);
    if (a.impl && b.impl) {
        /* one kubectl proxy + ONE port-forward to the router, whatever the number of sandboxes */
        CHECK_EQ_INT(e2e_child_count(), B.children + 2);
        E2E_FMT(needle, sizeof needle, "proxying POST /execute for sandbox '%s'", sbx_sandbox_name(&a));
        before = router_log_count(rpod, needle);
        python_round_trip(&a, "router tunnel a");
        python_round_trip(&b, "router tunnel b");
        CHECK_MSG(router_log_count(rpod, needle) == before + 1, "the router did not see a's command with X-Sandbox-ID");
        /* the tunnel dies (router pod connection lost): the next call starts a new one */
        CHECK(e2e_http(&C, "POST", "/_admin/kill-portforwards", "{}", &out) == 200);
        sbx__buf_free(&out);
        poll(NULL, 0, 200);
        CHECK_EQ_INT(sbx_run(&b, "echo again", &res), SBX_OK);
        CHECK_MSG(res.out_len == 6 && memcmp(res.out, "again\n", 6) == 0, "%s", b.err.msg);
        sbx_exec_result_free(&res);
        CHECK_EQ_INT(e2e_child_count(), B.children + 2);
        after = router_log_count(rpod, "proxying POST /execute");
        CHECK(after >= before + 3);
    } else {
        printf("  %s / %s\n", a.err.msg, b.err.msg);
    }
    CHECK_EQ_INT(sbx_close(&a), SBX_OK);
    CHECK_EQ_INT(sbx_close(&b), SBX_OK);
    sbx_client_close(&cl);
    em_settle(&C, &B);
}

struct opener {
    sbx_client *cl;
    int index, ok;
    char msg[SBX_ERRMSG_SIZE];
};

static void *open_run_close(void *arg)
{
    struct opener *o = (struct opener *)arg;
    sbx_sandbox sb;
    sbx_sandbox_config cfg;
    sbx_exec_result res;
    char cmd[32], want[32];
    cfg_python(&cfg);
    E2E_FMT(cmd, sizeof cmd, "echo t%d", o->index);
    E2E_FMT(want, sizeof want, "t%d\n", o->index);
    if (sbx_open(&sb, o->cl, &cfg) != SBX_OK) {
        E2E_FMT(o->msg, sizeof o->msg, "%s", sb.err.msg);
        return NULL;
    }
    if (sbx_run(&sb, cmd, &res) == SBX_OK && res.out_len == strlen(want) && memcmp(res.out, want, res.out_len) == 0)
        o->ok = 1;
    else
        E2E_FMT(o->msg, sizeof o->msg, "%s", sb.err.msg);
    sbx_exec_result_free(&res);
    if (sbx_close(&sb) != SBX_OK) o->ok = 0;
    return NULL;
}

/* Many sandboxes opened at once share ONE router tunnel (started once, under
   the client's lock, while their claims become Ready). */
TEST(router_tunnel_concurrent_opens)
{
    sbx_client cl;
    pthread_t th[8];
    struct opener o[8];
    int i, ok = 0;
    if (em_client(&C, &cl, SBX_MODE_ROUTER_TUNNEL, NULL) != SBX_OK) { CHECK(0); return; }
    for (i = 0; i < 8; i++) {
        memset(&o[i], 0, sizeof o[i]);
        o[i].cl = &cl;
        o[i].index = i;
        CHECK(pthread_create(&th[i], NULL, open_run_close, &o[i]) == 0);
    }
    for (i = 0; i < 8; i++) {
        pthread_join(th[i], NULL);
        if (o[i].ok) ok++;
        else printf("  thread %d: %s\n", i, o[i].msg);
    }
    CHECK_EQ_INT(ok, 8);
    CHECK_EQ_INT(e2e_child_count(), B.children + 2); /* kubectl proxy + one router tunnel */
    sbx_client_close(&cl);
    em_settle(&C, &B);
}

/* No router Service where the client looks: kubectl's own words, the claim
   rolled back, the failed tunnel not kept. */
TEST(router_tunnel_without_a_router)
{
    sbx_client cl;
    sbx_client_config cc;
    sbx_sandbox sb;
    sbx_sandbox_config cfg;
    memset(&cc, 0, sizeof cc);
    cc.router_namespace = "default";
    if (em_client(&C, &cl, SBX_MODE_ROUTER_TUNNEL, &cc) != SBX_OK) { CHECK(0); return; }
    cfg_python(&cfg);
    CHECK_EQ_INT(sbx_open(&sb, &cl, &cfg), SBX_ERR_SPAWN);
    CHECK_MSG(strstr(sb.err.msg, "services \"sandbox-router-svc\" not found") &&
              strstr(sb.err.msg, "router tunnel to default/svc/sandbox-router-svc"), "%s", sb.err.msg);
    CHECK_EQ_INT(e2e_child_count(), B.children + 1);
    sbx_client_close(&cl);
    em_settle(&C, &B);
}

/* The router tunnel is started while the claim is still becoming Ready: its
   port-forward asks the API for the router Service before the library reads
   the Ready Sandbox. */
TEST(router_tunnel_starts_during_the_ready_wait)
{
    sbx_client cl;
    sbx_sandbox sb;
    sbx_sandbox_config cfg;
    sbx__buf log;
    const char *svc, *sbget;
    char probe[200];
    if (em_client(&C, &cl, SBX_MODE_ROUTER_TUNNEL, NULL) != SBX_OK) { CHECK(0); return; }
    e2e_http(&C, "DELETE", "/_admin/requests", NULL, &log);
    sbx__buf_free(&log);
    e2e_faults(&C, "{\"cold_start_ms\":800}");
    memset(&cfg, 0, sizeof cfg);
    cfg.warm_pool = "python-sandbox-coldpool";
    CHECK_EQ_INT(sbx_open(&sb, &cl, &cfg), SBX_OK);
    if (sb.impl) {
        CHECK(em_requests(&C, &log) == 0);
        E2E_FMT(probe, sizeof probe, "/sandboxes/%s\"", sbx_sandbox_name(&sb));
        svc = log.data ? strstr(log.data, "services/sandbox-router-svc") : NULL;
        sbget = log.data ? strstr(log.data, probe) : NULL;
        CHECK_MSG(svc && sbget && svc < sbget, "the router port-forward started after the claim was Ready");
        sbx__buf_free(&log);
        CHECK_EQ_INT(sbx_close(&sb), SBX_OK);
    } else {
        printf("  %s\n", sb.err.msg);
    }
    sbx_client_close(&cl);
    em_settle(&C, &B);
}

/* What a router receives: a capturing server plays the router (DIRECT). */
TEST(router_headers_on_every_request)
{
    sbx_client cl;
    sbx_client_config cc;
    sbx_sandbox sb;
    sbx_sandbox_config cfg;
    sbx_exec_result res;
    em_capture cap;
    char url[64], v[256];
    if (em_capture_start(&cap) != 0) { CHECK(0); return; }
    memset(&cc, 0, sizeof cc);
    E2E_FMT(url, sizeof url, "http://127.0.0.1:%d/", cap.port);
    cc.router_url = url;
    cc.router_token = "s3cr3t-token";
    if (em_client(&C, &cl, SBX_MODE_DIRECT, &cc) != SBX_OK) { CHECK(0); em_capture_stop(&cap); return; }
    cfg_python(&cfg);
    cfg.call_timeout_ms = 2500;
    CHECK_EQ_INT(sbx_open(&sb, &cl, &cfg), SBX_OK);
    if (sb.impl) {
        CHECK_EQ_INT(sbx_run(&sb, "anything", &res), SBX_OK);
        CHECK(res.out_len == 9 && memcmp(res.out, "captured\n", 9) == 0);
        sbx_exec_result_free(&res);
        pthread_mutex_lock(&cap.mu);
        CHECK_MSG(strncmp(cap.last, "POST /execute HTTP/1.1", 22) == 0, "%.60s", cap.last);
        em_header(cap.last, "X-Sandbox-ID", v, sizeof v);
        CHECK_STR(v, sbx_sandbox_name(&sb));
        em_header(cap.last, "X-Sandbox-Namespace", v, sizeof v);
        CHECK_STR(v, "default");
        em_header(cap.last, "X-Sandbox-Port", v, sizeof v);
        CHECK_STR(v, "8888");
        em_header(cap.last, "X-Sandbox-Pod-IP", v, sizeof v);
        CHECK_STR(v, sbx_pod_ip(&sb));
        em_header(cap.last, "X-Sandbox-Timeout", v, sizeof v);
        CHECK_STR(v, "2.5");
        em_header(cap.last, "Authorization", v, sizeof v);
        CHECK_STR(v, "Bearer s3cr3t-token");
        CHECK_EQ_INT(cap.nreq, 2); /* the health check GET / and the command */
        pthread_mutex_unlock(&cap.mu);
        sbx_set_call_timeout(&sb, 60000);
        CHECK_EQ_INT(sbx_write(&sb, "f", "x", 1), SBX_OK);
        pthread_mutex_lock(&cap.mu);
        em_header(cap.last, "X-Sandbox-Timeout", v, sizeof v);
        CHECK_STR(v, "60");
        CHECK_MSG(strncmp(cap.last, "POST /upload HTTP/1.1", 21) == 0, "%.60s", cap.last);
        pthread_mutex_unlock(&cap.mu);
        /* a redirect is never followed: the error names where it pointed */
        cap.redirect = 1;
        CHECK_EQ_INT(sbx_run(&sb, "again", &res), SBX_ERR_HTTP);
        CHECK_EQ_INT(sb.err.http_status, 301);
        CHECK_MSG(strstr(sb.err.msg, "http://127.0.0.1:1/elsewhere") && strstr(sb.err.msg, "not followed"), "%s",
                  sb.err.msg);
        CHECK_EQ_INT(sbx_close(&sb), SBX_OK);
    } else {
        printf("  %s\n", sb.err.msg);
    }
    sbx_client_close(&cl);
    em_capture_stop(&cap);
    em_settle(&C, &B);
}

TEST(direct_url_to_the_router)
{
    sbx_client cl;
    sbx_client_config cc;
    sbx_sandbox sb;
    sbx_sandbox_config cfg;
    char rpod[128], rip[64], url[128];
    if (em_router_pod(&C, rpod, sizeof rpod, rip, sizeof rip) != 0) { CHECK(0); return; }
    memset(&cc, 0, sizeof cc);
    E2E_FMT(url, sizeof url, "http://%s:8080", rip);
    cc.router_url = url;
    if (em_client(&C, &cl, SBX_MODE_DIRECT, &cc) != SBX_OK) { CHECK(0); return; }
    CHECK_EQ_INT(e2e_child_count(), B.children + 1); /* only kubectl proxy */
    cfg_python(&cfg);
    CHECK_EQ_INT(sbx_open(&sb, &cl, &cfg), SBX_OK);
    if (sb.impl) {
        CHECK_EQ_INT(e2e_child_count(), B.children + 1); /* no process per sandbox */
        python_round_trip(&sb, "direct");
        CHECK_EQ_INT(sbx_close(&sb), SBX_OK);
    } else {
        printf("  %s\n", sb.err.msg);
    }
    sbx_client_close(&cl);
    em_settle(&C, &B);
}

/* 400: a sandbox name the router refuses (a dotted name is no DNS label). */
TEST(router_400_says_why)
{
    sbx_client cl;
    sbx_sandbox sb;
    sbx_sandbox_config cfg;
    if (em_client(&C, &cl, SBX_MODE_ROUTER_TUNNEL, NULL) != SBX_OK) { CHECK(0); return; }
    memset(&cfg, 0, sizeof cfg);
    cfg.warm_pool = "python-sandbox-coldpool";
    cfg.claim_name = "dotted.claim";
    CHECK_EQ_INT(sbx_open(&sb, &cl, &cfg), SBX_ERR_HTTP);
    CHECK_EQ_INT(sb.err.http_status, 400);
    CHECK_MSG(strstr(sb.err.msg, "HTTP 400") && strstr(sb.err.msg, "Invalid sandbox ID format."), "%s", sb.err.msg);
    CHECK(sb.impl == NULL);
    sbx_client_close(&cl);
    em_settle(&C, &B);
}

/* 502: nothing listens on the port the router is told to reach. */
TEST(router_502_says_why)
{
    sbx_client cl;
    sbx_sandbox sb;
    sbx_sandbox_config cfg;
    long long t0 = sbx__now_ms();
    if (em_client(&C, &cl, SBX_MODE_ROUTER_TUNNEL, NULL) != SBX_OK) { CHECK(0); return; }
    cfg_python(&cfg);
    cfg.runtime = SBX_RUNTIME_PYTHON;
    cfg.server_port = 9999;
    CHECK_EQ_INT(sbx_open(&sb, &cl, &cfg), SBX_ERR_HTTP);
    CHECK_EQ_INT(sb.err.http_status, 502);
    CHECK_MSG(strstr(sb.err.msg, "Could not connect to the backend sandbox: python-sandbox-warmpool-"), "%s",
              sb.err.msg);
    CHECK_MSG(em_since(t0) < 10000, "took %lld ms", em_since(t0));
    sbx_client_close(&cl);
    em_settle(&C, &B);
}

/* 504: the router gives up after X-Sandbox-Timeout; the command is not sent
   again (it still runs once, late). */
TEST(router_504_says_why_and_run_is_not_resent)
{
    sbx_client cl;
    sbx_sandbox sb;
    sbx_sandbox_config cfg;
    sbx_exec_result res;
    long long t0, took, execs = -1, posts = -1;
    if (em_client(&C, &cl, SBX_MODE_ROUTER_TUNNEL, NULL) != SBX_OK) { CHECK(0); return; }
    cfg_python(&cfg);
    CHECK_EQ_INT(sbx_open(&sb, &cl, &cfg), SBX_OK);
    if (sb.impl) {
        sbx_set_call_timeout(&sb, 1000);
        t0 = sbx__now_ms();
        CHECK_EQ_INT(sbx_run(&sb, "sleep 2", &res), SBX_ERR_HTTP);
        took = em_since(t0);
        CHECK_EQ_INT(sb.err.http_status, 504);
        CHECK_MSG(strstr(sb.err.msg, "Timed out waiting for the backend sandbox"), "%s", sb.err.msg);
        CHECK_MSG(took >= 900 && took < 2000, "took %lld ms for X-Sandbox-Timeout 1", took);
        poll(NULL, 0, 1500); /* the command finishes in the pod */
        CHECK(em_runtime_stats(&C, sbx_pod_ip(&sb), 8888, "POST /execute", &execs, &posts) == 0);
        CHECK_EQ_INT(execs, 1);
        CHECK_EQ_INT(posts, 1);
        CHECK_EQ_INT(sbx_close(&sb), SBX_OK);
    } else {
        printf("  %s\n", sb.err.msg);
    }
    sbx_client_close(&cl);
    em_settle(&C, &B);
}

TEST(gateway_mode)
{
    sbx_client cl;
    sbx_sandbox sb;
    sbx_sandbox_config cfg;
    char rpod[128], rip[64], needle[200];
    int before;
    if (em_router_pod(&C, rpod, sizeof rpod, rip, sizeof rip) != 0) { CHECK(0); return; }
    if (em_client(&C, &cl, SBX_MODE_GATEWAY, NULL) != SBX_OK) { CHECK(0); return; }
    cfg_python(&cfg);
    CHECK_EQ_INT(sbx_open(&sb, &cl, &cfg), SBX_OK);
    if (sb.impl) {
        CHECK_EQ_INT(e2e_child_count(), B.children + 1);
        E2E_FMT(needle, sizeof needle, "proxying POST /execute for sandbox '%s'", sbx_sandbox_name(&sb));
        before = router_log_count(rpod, needle);
        python_round_trip(&sb, "gateway");
        CHECK_EQ_INT(router_log_count(rpod, needle), before + 1);
        /* the router's address came from the Gateway, port 80 */
        CHECK_MSG(strstr(sb.impl->rt.ep.name, rip) && strstr(sb.impl->rt.ep.name, ":80"), "%s", sb.impl->rt.ep.name);
        CHECK_EQ_INT(sbx_close(&sb), SBX_OK);
    } else {
        printf("  %s\n", sb.err.msg);
    }
    sbx_client_close(&cl);
    em_settle(&C, &B);
}

/* A Gateway with a given status (created here; the dev cluster's controller
   only manages external-http-gateway). */
static void make_gateway(const char *name, const char *status_json)
{
    char body[600], target[300];
    sbx__buf out;
    E2E_FMT(body, sizeof body, "{\"apiVersion\":\"gateway.networking.k8s.io/v1\",\"kind\":\"Gateway\","
                               "\"metadata\":{\"name\":\"%s\"},\"spec\":{\"gatewayClassName\":\"x\",\"listeners\":[]}}",
            name);
    CHECK_EQ_INT(e2e_http(&C, "POST", "/apis/gateway.networking.k8s.io/v1/namespaces/default/gateways", body, &out), 201);
    sbx__buf_free(&out);
    if (status_json) {
        E2E_FMT(target, sizeof target, "/apis/gateway.networking.k8s.io/v1/namespaces/default/gateways/%s/status", name);
        CHECK_EQ_INT(em_http(&C, "PATCH", target, "application/merge-patch+json", status_json, &out), 200);
        sbx__buf_free(&out);
    }
}

static void delete_gateway(const char *name)
{
    char target[300];
    sbx__buf out;
    E2E_FMT(target, sizeof target, "/apis/gateway.networking.k8s.io/v1/namespaces/default/gateways/%s", name);
    e2e_http(&C, "DELETE", target, NULL, &out);
    sbx__buf_free(&out);
}

TEST(gateway_bad_address_is_refused_before_any_claim)
{
    sbx_client cl;
    sbx_client_config cc;
    sbx_sandbox sb;
    sbx_sandbox_config cfg;
    sbx__buf log;
    make_gateway("evil-gw", "{\"status\":{\"addresses\":[{\"type\":\"Hostname\",\"value\":\"evil.example/steal?x=1\"},"
                            "{\"value\":\"999.1.1.1\"}]}}");
    memset(&cc, 0, sizeof cc);
    cc.gateway_name = "evil-gw";
    if (em_client(&C, &cl, SBX_MODE_GATEWAY, &cc) != SBX_OK) { CHECK(0); delete_gateway("evil-gw"); return; }
    e2e_http(&C, "DELETE", "/_admin/requests", NULL, &log);
    sbx__buf_free(&log);
    cfg_python(&cfg);
    CHECK_EQ_INT(sbx_open(&sb, &cl, &cfg), SBX_ERR_PROTOCOL);
    CHECK_MSG(strstr(sb.err.msg, "evil.example/steal?x=1") && strstr(sb.err.msg, "default/evil-gw"), "%s", sb.err.msg);
    CHECK(em_requests(&C, &log) == 0);
    CHECK_MSG(log.data && !strstr(log.data, "\"POST\""), "a claim was created for an unusable gateway");
    sbx__buf_free(&log);
    sbx_client_close(&cl);
    delete_gateway("evil-gw");
    em_settle(&C, &B);
}

TEST(gateway_without_address_times_out)
{
    sbx_client cl;
    sbx_client_config cc;
    sbx_sandbox sb;
    sbx_sandbox_config cfg;
    long long t0, took;
    make_gateway("pending-gw", NULL);
    memset(&cc, 0, sizeof cc);
    cc.gateway_name = "pending-gw";
    cc.gateway_timeout_ms = 800;
    if (em_client(&C, &cl, SBX_MODE_GATEWAY, &cc) != SBX_OK) { CHECK(0); delete_gateway("pending-gw"); return; }
    cfg_python(&cfg);
    t0 = sbx__now_ms();
    CHECK_EQ_INT(sbx_open(&sb, &cl, &cfg), SBX_ERR_TIMEOUT);
    took = em_since(t0);
    CHECK_MSG(took >= 750 && took < 3000, "took %lld ms for an 800 ms deadline", took);
    CHECK_MSG(strstr(sb.err.msg, "default/pending-gw has no address") && strstr(sb.err.msg, "no status.addresses"),
              "%s", sb.err.msg);
    sbx_client_close(&cl);
    delete_gateway("pending-gw");
    em_settle(&C, &B);
}

/* The address rules, case by case. */
TEST(gateway_address_validation)
{
    static const struct {
        const char *in, *host;
    } cases[] = {
        {"10.0.0.7", "10.0.0.7"},
        {"gw.example.com", "gw.example.com"},
        {"GW.Example.COM.", "GW.Example.COM"},
        {"123.example.com", "123.example.com"},
        {"2001:db8::1", "[2001:db8::1]"},
        {"::ffff:10.0.0.1", "[::ffff:10.0.0.1]"},
        {"evil.com/path", NULL},
        {"evil.com?q", NULL},
        {"evil.com#f", NULL},
        {"user@evil.com", NULL},
        {"evil.com:8080", NULL},
        {"[2001:db8::1]", NULL},
        {"1.2.3", NULL},
        {"999.1.1.1", NULL},
        {"127.1", NULL},
        {"0x7f.0.0.1", NULL},
        {"a.0x7f", NULL},
        {"", NULL},
        {"a..b", NULL},
        {"-a.example", NULL},
        {"a-.example", NULL},
        {"under_score.example", NULL},
        {"sp ace.example", NULL},
        {"caf\xc3\xa9.example", NULL},
        {"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.example", NULL}, /* 64 */
    };
    size_t i;
    for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char host[300];
        const char *why = NULL;
        int ok = sbx__gateway_host(cases[i].in, host, sizeof host, &why);
        if (cases[i].host) {
            CHECK_MSG(ok && strcmp(host, cases[i].host) == 0, "\"%s\" -> %d \"%s\" (%s)", cases[i].in, ok, ok ? host : "",
                      why ? why : "");
        } else {
            CHECK_MSG(!ok && why && *why, "\"%s\" was accepted as \"%s\"", cases[i].in, ok ? host : "");
        }
    }
}

TEST(in_cluster_straight_to_the_pod)
{
    sbx_client cl;
    sbx_sandbox sb;
    sbx_sandbox_config cfg;
    char url[80];
    if (em_client(&C, &cl, SBX_MODE_IN_CLUSTER, NULL) != SBX_OK) { CHECK(0); return; }
    cfg_python(&cfg);
    CHECK_EQ_INT(sbx_open(&sb, &cl, &cfg), SBX_OK);
    if (sb.impl) {
        CHECK_EQ_INT(e2e_child_count(), B.children + 1);
        python_round_trip(&sb, "in-cluster");
        E2E_FMT(url, sizeof url, "%s:8888", sbx_pod_ip(&sb));
        CHECK_STR(sb.impl->rt.ep.name, url);
        CHECK(sb.impl->rhdr == NULL); /* no router headers */
        CHECK_EQ_INT(sbx_close(&sb), SBX_OK);
    } else {
        printf("  %s\n", sb.err.msg);
    }
    sbx_client_close(&cl);
    em_settle(&C, &B);
}

TEST(api_proxy_through_kubectl_proxy)
{
    sbx_client cl;
    sbx_sandbox sb;
    sbx_sandbox_config cfg;
    sbx__buf log;
    char path[300];
    if (em_client(&C, &cl, SBX_MODE_API_PROXY, NULL) != SBX_OK) { CHECK(0); return; }
    cfg_python(&cfg);
    CHECK_EQ_INT(sbx_open(&sb, &cl, &cfg), SBX_OK);
    if (sb.impl) {
        CHECK_EQ_INT(e2e_child_count(), B.children + 1); /* no process per sandbox */
        python_round_trip(&sb, "api proxy");
        CHECK(em_requests(&C, &log) == 0);
        E2E_FMT(path, sizeof path, "/api/v1/namespaces/default/pods/%s:8888/proxy/execute", sbx_pod_name(&sb));
        CHECK_MSG(log.data && strstr(log.data, path), "no %s in the API log", path);
        sbx__buf_free(&log);
        CHECK_EQ_INT(sbx_close(&sb), SBX_OK);
    } else {
        printf("  %s\n", sb.err.msg);
    }
    sbx_client_close(&cl);
    em_settle(&C, &B);
}

/* sandboxd: files, listing, delete, capabilities; run over gRPC where the
   route carries it (pod tunnel, in-cluster), UNSUPPORTED saying why elsewhere */
static void sandboxd_round_trip(sbx_sandbox *sb, const char *tag, int grpc)
{
    sbx_exec_result res;
    sbx_file_entry *ents = NULL;
    unsigned char bin[300];
    char *back = NULL;
    size_t len = 0, count = 0, i;
    int ex = -1, found = 0, dir_found = 0;
    for (i = 0; i < sizeof bin; i++) bin[i] = (unsigned char)(i * 13);
    if (grpc) {
        CHECK_EQ_INT(sbx_capabilities(sb), SBX_CAP_WRITE | SBX_CAP_READ | SBX_CAP_LIST | SBX_CAP_EXISTS |
                                               SBX_CAP_REMOVE | SBX_CAP_EXEC | SBX_CAP_PROCESS | SBX_CAP_EXEC_ENV);
        CHECK_EQ_INT(sbx_run(sb, "echo yes", &res), SBX_OK);
        CHECK_MSG(res.out && strcmp(res.out, "yes\n") == 0, "%s: %s", tag, sb->err.msg);
        sbx_exec_result_free(&res);
    } else {
        CHECK_EQ_INT(sbx_capabilities(sb), SBX_CAP_WRITE | SBX_CAP_READ | SBX_CAP_LIST | SBX_CAP_EXISTS | SBX_CAP_REMOVE);
        CHECK_EQ_INT(sbx_run(sb, "echo no", &res), SBX_ERR_UNSUPPORTED);
        CHECK_MSG(strstr(sb->err.msg, "gRPC") && strstr(sb->err.msg, "HTTP/1.1"), "%s: %s", tag, sb->err.msg);
        CHECK(res.out == NULL);
    }
    CHECK_EQ_INT(sbx_write(sb, "/work/sub dir/b %41.bin", bin, sizeof bin), SBX_OK);
    CHECK_EQ_INT(sbx_read(sb, "work/sub dir/b %41.bin", &back, &len), SBX_OK);
    CHECK_MSG(back && len == sizeof bin && memcmp(back, bin, len) == 0, "%s: %s", tag, sb->err.msg);
    sbx_free(back);
    back = NULL;
    CHECK_EQ_INT(sbx_write(sb, "work/empty", "", 0), SBX_OK);
    CHECK_EQ_INT(sbx_exists(sb, "work/sub dir/b %41.bin", &ex), SBX_OK);
    CHECK_EQ_INT(ex, 1);
    CHECK_EQ_INT(sbx_exists(sb, "work/empty", &ex), SBX_OK); /* a GET of 0..0 of an empty file says 416 */
    CHECK_EQ_INT(ex, 1);
    CHECK_EQ_INT(sbx_exists(sb, "work/sub dir", &ex), SBX_OK);
    CHECK_EQ_INT(ex, 1);
    CHECK_EQ_INT(sbx_exists(sb, "work/nope", &ex), SBX_OK);
    CHECK_EQ_INT(ex, 0);
    CHECK_EQ_INT(sbx_list_dir(sb, "work/sub dir", &ents, &count), SBX_OK);
    for (i = 0; i < count; i++)
        if (strcmp(ents[i].name, "b %41.bin") == 0 && ents[i].size == (long long)sizeof bin && !ents[i].is_dir &&
            ents[i].mod_time > 1.7e9)
            found = 1;
    CHECK_MSG(found, "%s: listing lacks the file", tag);
    sbx_free(ents);
    CHECK_EQ_INT(sbx_list_dir(sb, "/", &ents, &count), SBX_OK);
    for (i = 0; i < count; i++)
        if (strcmp(ents[i].name, "work") == 0 && ents[i].is_dir) dir_found = 1;
    CHECK(dir_found);
    sbx_free(ents);
    /* the wrong kind of path says so */
    CHECK_EQ_INT(sbx_read(sb, "work/sub dir", &back, &len), SBX_ERR_NOT_FOUND);
    CHECK_MSG(strstr(sb->err.msg, "is a directory"), "%s", sb->err.msg);
    CHECK_EQ_INT(sbx_list_dir(sb, "work/empty", &ents, &count), SBX_ERR_NOT_FOUND);
    CHECK_MSG(strstr(sb->err.msg, "not a directory"), "%s", sb->err.msg);
    CHECK_EQ_INT(sbx_read(sb, "work/missing", &back, &len), SBX_ERR_NOT_FOUND);
    /* delete: a non-empty directory needs recursive */
    CHECK_EQ_INT(sbx_remove_file(sb, "work", 0), SBX_ERR_HTTP);
    CHECK_EQ_INT(sb->err.http_status, 409);
    CHECK_EQ_INT(sbx_remove_file(sb, "work/empty", 0), SBX_OK);
    CHECK_EQ_INT(sbx_remove_file(sb, "work/empty", 0), SBX_ERR_NOT_FOUND);
    CHECK_EQ_INT(sbx_remove_file(sb, "work", 1), SBX_OK);
    CHECK_EQ_INT(sbx_exists(sb, "work", &ex), SBX_OK);
    CHECK_EQ_INT(ex, 0);
    CHECK_EQ_INT(sbx_remove_file(sb, "/", 1), SBX_ERR_INVALID_ARG); /* the root is never deleted */
    CHECK_EQ_INT(sbx_remove_file(sb, "../x", 1), SBX_ERR_INVALID_ARG);
    /* streaming: from a pipe (unknown length: chunked PUT) and back into a file */
    {
        int p[2], fd, same = 0;
        char path[700], got[sizeof bin + 8];
        ssize_t n;
        CHECK(pipe(p) == 0);
        CHECK(write(p[1], bin, sizeof bin) == (ssize_t)sizeof bin);
        close(p[1]);
        CHECK_EQ_INT(sbx_write_fd(sb, "streamed/from-pipe", p[0]), SBX_OK);
        close(p[0]);
        E2E_FMT(path, sizeof path, "%s/sandboxd-read.bin", C.dir);
        fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
        CHECK_EQ_INT(sbx_read_fd(sb, "streamed/from-pipe", fd), SBX_OK);
        CHECK_EQ_INT(sbx_read_fd(sb, "streamed", fd), SBX_ERR_NOT_FOUND); /* a directory: nothing written */
        lseek(fd, 0, SEEK_SET);
        n = read(fd, got, sizeof got);
        same = n == (ssize_t)sizeof bin && memcmp(got, bin, sizeof bin) == 0;
        CHECK_MSG(same, "%s: %ld bytes came back", tag, (long)n);
        close(fd);
        unlink(path);
        CHECK_EQ_INT(sbx_remove_file(sb, "streamed", 1), SBX_OK);
    }
}

TEST(sandboxd_over_each_route)
{
    static const sbx_mode modes[] = {SBX_MODE_POD_TUNNEL, SBX_MODE_ROUTER_TUNNEL, SBX_MODE_GATEWAY,
                                     SBX_MODE_IN_CLUSTER, SBX_MODE_API_PROXY};
    size_t m;
    for (m = 0; m < sizeof modes / sizeof modes[0]; m++) {
        sbx_client cl;
        sbx_sandbox sb;
        sbx_sandbox_config cfg;
        char tag[64];
        E2E_FMT(tag, sizeof tag, "sandboxd, mode %d", (int)modes[m]);
        if (em_client(&C, &cl, modes[m], NULL) != SBX_OK) { CHECK(0); continue; }
        cfg_sandboxd(&cfg);
        CHECK_EQ_INT(sbx_open(&sb, &cl, &cfg), SBX_OK);
        if (sb.impl) {
            sandboxd_round_trip(&sb, tag, modes[m] == SBX_MODE_POD_TUNNEL || modes[m] == SBX_MODE_IN_CLUSTER);
            CHECK_EQ_INT(sbx_close(&sb), SBX_OK);
        } else {
            printf("  %s: %s\n", tag, sb.err.msg);
        }
        sbx_client_close(&cl);
    }
    em_settle(&C, &B);
}

/* Detection by asking, not by port: a sandboxd pod on 8888 (annotation) is
   found by GET / failing with 404 and GET /v1/health answering. */
TEST(runtime_detected_by_probing)
{
    sbx_client cl;
    sbx_sandbox sb;
    sbx_sandbox_config cfg;
    sbx__buf out;
    /* a python-looking template (containerPort 8888) whose pods run sandboxd */
    CHECK_EQ_INT(e2e_http(&C, "POST", "/apis/extensions.agents.x-k8s.io/v1beta1/namespaces/default/sandboxtemplates",
                          "{\"apiVersion\":\"extensions.agents.x-k8s.io/v1beta1\",\"kind\":\"SandboxTemplate\","
                          "\"metadata\":{\"name\":\"disguised\"},\"spec\":{\"podTemplate\":{\"metadata\":{"
                          "\"annotations\":{\"devcluster.agents.x-k8s.io/flavor\":\"sandboxd\"}},\"spec\":{"
                          "\"containers\":[{\"name\":\"rt\",\"image\":\"python:3\",\"ports\":[{\"containerPort\":8888}]}]}}}}",
                          &out), 201);
    sbx__buf_free(&out);
    CHECK_EQ_INT(e2e_http(&C, "POST", "/apis/extensions.agents.x-k8s.io/v1beta1/namespaces/default/sandboxwarmpools",
                          "{\"apiVersion\":\"extensions.agents.x-k8s.io/v1beta1\",\"kind\":\"SandboxWarmPool\","
                          "\"metadata\":{\"name\":\"disguised-pool\"},\"spec\":{\"replicas\":0,"
                          "\"sandboxTemplateRef\":{\"name\":\"disguised\"}}}", &out), 201);
    sbx__buf_free(&out);
    if (em_client(&C, &cl, SBX_MODE_POD_TUNNEL, NULL) != SBX_OK) { CHECK(0); return; }
    memset(&cfg, 0, sizeof cfg);
    cfg.template_name = "disguised";
    CHECK_EQ_INT(sbx_open(&sb, &cl, &cfg), SBX_OK);
    if (sb.impl) {
        CHECK_EQ_INT(sbx_capabilities(&sb) & (SBX_CAP_EXEC | SBX_CAP_REMOVE), SBX_CAP_EXEC | SBX_CAP_REMOVE);
        CHECK_EQ_INT(sb.impl->server_port, 8888);
        CHECK_EQ_INT(sbx_write(&sb, "x", "1", 1), SBX_OK);
        CHECK_EQ_INT(sbx_remove_file(&sb, "x", 0), SBX_OK);
        CHECK_EQ_INT(sbx_close(&sb), SBX_OK);
    } else {
        printf("  %s\n", sb.err.msg);
    }
    /* the wrong runtime named explicitly: a clear error, claim rolled back */
    cfg_python(&cfg);
    cfg.runtime = SBX_RUNTIME_SANDBOXD;
    cfg.server_port = 8888;
    CHECK_EQ_INT(sbx_open(&sb, &cl, &cfg), SBX_ERR_UNSUPPORTED);
    CHECK_MSG(strstr(sb.err.msg, "GET /v1/health") && strstr(sb.err.msg, "404") && strstr(sb.err.msg, "sandboxd"), "%s",
              sb.err.msg);
    sbx_client_close(&cl);
    em_settle(&C, &B);
}

TEST(bad_mode_settings_are_refused)
{
    sbx_client cl;
    sbx_client_config cc;
    memset(&cc, 0, sizeof cc);
    cc.kubeconfig = C.kubeconfig;
    cc.mode = SBX_MODE_DIRECT;
    CHECK_EQ_INT(sbx_client_open(&cl, &cc), SBX_ERR_INVALID_ARG);
    CHECK_MSG(strstr(cl.err.msg, "router_url"), "%s", cl.err.msg);
    cc.router_url = "https://router.example";
    CHECK_EQ_INT(sbx_client_open(&cl, &cc), SBX_ERR_INVALID_ARG);
    CHECK_MSG(strstr(cl.err.msg, "https"), "%s", cl.err.msg);
    cc.router_url = "http://127.0.0.1:9";
    cc.router_token = "bad\r\ninjected: 1";
    CHECK_EQ_INT(sbx_client_open(&cl, &cc), SBX_ERR_INVALID_ARG);
    CHECK_MSG(strstr(cl.err.msg, "router_token"), "%s", cl.err.msg);
    cc.router_token = NULL;
    cc.mode = (sbx_mode)42;
    CHECK_EQ_INT(sbx_client_open(&cl, &cc), SBX_ERR_INVALID_ARG);
    cc.mode = SBX_MODE_ROUTER_TUNNEL;
    cc.router_namespace = "Not_A_Label";
    CHECK_EQ_INT(sbx_client_open(&cl, &cc), SBX_ERR_INVALID_ARG);
    CHECK(cl.impl == NULL);
    em_settle(&C, &B);
}

TEST(secs_format)
{
    char b[32];
    sbx__secs(b, sizeof b, 60000);
    CHECK_STR(b, "60");
    sbx__secs(b, sizeof b, 1500);
    CHECK_STR(b, "1.5");
    sbx__secs(b, sizeof b, 250);
    CHECK_STR(b, "0.25");
    sbx__secs(b, sizeof b, 1);
    CHECK_STR(b, "0.001");
    sbx__secs(b, sizeof b, 123456);
    CHECK_STR(b, "123.456");
}

int main(void)
{
    long long t0 = sbx__now_ms();
    e2e_pick_kubectl();
    if (e2e_up(&C, "e2e-modes", "") != 0) {
        printf("e2e_modes: 0 passed, 1 failed\n");
        return 1;
    }
    if (em_sandboxd_setup(&C, 1) != 0) {
        e2e_down(&C);
        printf("e2e_modes: 0 passed, 1 failed\n");
        return 1;
    }
    em_baseline(&C, &B);
    printf("baseline: %d fds, %d pods, %d children\n", B.fds, B.pods, B.children);
    EM_RUN(secs_format);
    EM_RUN(gateway_address_validation);
    EM_RUN(bad_mode_settings_are_refused);
    EM_RUN(pod_tunnel_is_the_default);
    EM_RUN(router_tunnel_is_shared_and_restarted);
    EM_RUN(router_tunnel_starts_during_the_ready_wait);
    EM_RUN(router_tunnel_concurrent_opens);
    EM_RUN(router_tunnel_without_a_router);
    EM_RUN(router_headers_on_every_request);
    EM_RUN(direct_url_to_the_router);
    EM_RUN(router_400_says_why);
    EM_RUN(router_502_says_why);
    EM_RUN(router_504_says_why_and_run_is_not_resent);
    EM_RUN(gateway_mode);
    EM_RUN(gateway_bad_address_is_refused_before_any_claim);
    EM_RUN(gateway_without_address_times_out);
    EM_RUN(in_cluster_straight_to_the_pod);
    EM_RUN(api_proxy_through_kubectl_proxy);
    EM_RUN(sandboxd_over_each_route);
    EM_RUN(runtime_detected_by_probing);
    CHECK_EQ_INT(e2e_child_count(), 0);
    e2e_down(&C);
    printf("suite took %lld ms\n", em_since(t0));
    return test_summary("e2e_modes");
}
