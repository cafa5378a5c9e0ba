/* End-to-end (issue 10): what a newcomer sees, with the real kubectl against
   the dev cluster.
   - The one-handle quickstart: sbx_open with a NULL client starts a private
     client (settings from cfg.client) and sbx_close stops it: nothing left.
   - The logger hook receives one structured event per step, in order, for an
     open/run/close, a fallback (WebSocket upgrade refused -> kubectl
     port-forward), retries (every 3rd API request answers 500), watch restarts
     (410 Expired, streams that end), a proxy restart (kubectl proxy
     SIGKILLed), and the router tunnel's start.
   - The first failures say what to fix: no cluster (KUBECONFIG names a missing
     file; a kubeconfig whose server refuses connections) names the kubeconfig,
     context and server tried; a cluster without the agent-sandbox CRDs
     (devcluster --no-crds) names the API group and what to install. */
#define SANDBOX_IMPLEMENTATION
#include "sandbox.h"
#include "test.h"

#include <signal.h>

static e2e_cluster C;
static em_base B;

/* ---- an event recorder (the logger may be called from several threads) --- */
#define REC_MAX 256
typedef struct rec_event {
    sbx_log_level level;
    sbx_event_kind kind;
    char name[80];
    long long number;
    char message[400];
} rec_event;

typedef struct recorder {
    pthread_mutex_t mu;
    int n;
    rec_event ev[REC_MAX];
} recorder;

static void rec_log(const sbx_event *ev, void *user)
{
    recorder *r = (recorder *)user;
    pthread_mutex_lock(&r->mu);
    if (r->n < REC_MAX) {
        rec_event *e = &r->ev[r->n++];
        e->level = ev->level;
        e->kind = ev->kind;
        E2E_FMT(e->name, sizeof e->name, "%s", ev->name);
        e->number = ev->number;
        E2E_FMT(e->message, sizeof e->message, "%s", ev->message);
    }
    pthread_mutex_unlock(&r->mu);
}

static void rec_init(recorder *r)
{
    memset(r, 0, sizeof *r);
    pthread_mutex_init(&r->mu, NULL);
}

static const char *kind_name(sbx_event_kind k)
{
    switch (k) {
    case SBX_EVENT_PROXY_STARTED: return "proxy";
    case SBX_EVENT_CLAIM_CREATED: return "created";
    case SBX_EVENT_READY: return "ready";
    case SBX_EVENT_ROUTE: return "route";
    case SBX_EVENT_TUNNEL_STARTED: return "tunnel";
    case SBX_EVENT_FALLBACK: return "fallback";
    case SBX_EVENT_RETRY: return "retry";
    case SBX_EVENT_CLAIM_DELETED: return "deleted";
    case SBX_EVENT_CHILDREN_STOPPED: return "stopped";
    }
    return "?";
}

/* The recorded kinds as "proxy created ready ...", retries left out when
   skip_retries (they come wherever a fault hits). */
static void rec_kinds(recorder *r, int skip_retries, char *out, size_t cap)
{
    int i;
    out[0] = '\0';
    pthread_mutex_lock(&r->mu);
    for (i = 0; i < r->n; i++) {
        size_t len = strlen(out);
        if (skip_retries && r->ev[i].kind == SBX_EVENT_RETRY) continue;
        E2E_FMT(out + len, cap - len, "%s%s", len ? " " : "", kind_name(r->ev[i].kind));
    }
    pthread_mutex_unlock(&r->mu);
}

static void rec_dump(recorder *r)
{
    int i;
    for (i = 0; i < r->n; i++)
        printf("    event %d: level %d %s name \"%s\" number %lld: %s\n", i, (int)r->ev[i].level,
               kind_name(r->ev[i].kind), r->ev[i].name, r->ev[i].number, r->ev[i].message);
}

/* first recorded event of `kind`, or NULL */
static rec_event *rec_find(recorder *r, sbx_event_kind kind)
{
    int i;
    for (i = 0; i < r->n; i++)
        if (r->ev[i].kind == kind) return &r->ev[i];
    return NULL;
}

static int rec_count(recorder *r, sbx_event_kind kind)
{
    int i, n = 0;
    for (i = 0; i < r->n; i++) n += r->ev[i].kind == kind;
    return n;
}

static void cfg_python(sbx_sandbox_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->template_name = "python-sandbox-template";
    cfg->ready_timeout_ms = 60000;
}

static int run_echo(sbx_sandbox *sb, const char *word)
{
    sbx_exec_result res;
    char cmd[64];
    int ok;
    E2E_FMT(cmd, sizeof cmd, "echo %s", word);
    if (sbx_run(sb, cmd, &res) != SBX_OK) {
        printf("  run: %s\n", sb->err.msg);
        return 0;
    }
    ok = res.out_len == strlen(word) + 1 && memcmp(res.out, word, strlen(word)) == 0 && res.diag_len == 0;
    sbx_exec_result_free(&res);
    return ok;
}

/* ---- one handle, and the events of its life ---------------------------- */

TEST(one_handle_open_run_close_events_in_order)
{
    recorder rec;
    sbx_client_config cc;
    sbx_sandbox_config cfg;
    sbx_sandbox sb;
    char kinds[512], claim[80];
    rec_event *ev;
    rec_init(&rec);
    memset(&cc, 0, sizeof cc);
    cc.kubeconfig = C.kubeconfig;
    cc.logger.func = rec_log;
    cc.logger.user = &rec;
    cfg_python(&cfg);
    cfg.client = &cc;
    CHECK_MSG(sbx_open(&sb, NULL, &cfg) == SBX_OK, "%s", sb.err.msg);
    if (!sb.impl) { rec_dump(&rec); return; }
    E2E_FMT(claim, sizeof claim, "%s", sbx_claim_name(&sb));
    /* the private client: its kubectl proxy and its supervisor */
    CHECK_EQ_INT(e2e_child_count(), B.children + 1);
    CHECK_EQ_INT(e2e_supervisor_count(), B.supervisors + 1);
    CHECK(run_echo(&sb, "one-handle"));
    CHECK_MSG(sbx_close(&sb) == SBX_OK, "%s", sb.err.msg);
    CHECK(sb.impl == NULL);
    CHECK_EQ_INT(sbx_close(&sb), SBX_OK); /* twice is harmless */
    rec_kinds(&rec, 0, kinds, sizeof kinds);
    CHECK_STR(kinds, "proxy created ready route deleted stopped");
    if (strcmp(kinds, "proxy created ready route deleted stopped") != 0) rec_dump(&rec);
    ev = rec_find(&rec, SBX_EVENT_PROXY_STARTED);
    CHECK(ev && ev->number == 0 && ev->level == SBX_LOG_INFO && ev->name[0] == '\0');
    ev = rec_find(&rec, SBX_EVENT_CLAIM_CREATED);
    CHECK(ev && strcmp(ev->name, claim) == 0 && ev->number == 1 && strstr(ev->message, claim));
    ev = rec_find(&rec, SBX_EVENT_READY);
    CHECK(ev && strcmp(ev->name, claim) == 0 && ev->number >= 0 && ev->number < 60000 && strstr(ev->message, "ms"));
    ev = rec_find(&rec, SBX_EVENT_ROUTE);
    CHECK(ev && strcmp(ev->name, claim) == 0);
    if (ev) CHECK_STR(ev->message, "websocket");
    ev = rec_find(&rec, SBX_EVENT_CLAIM_DELETED);
    CHECK(ev && strcmp(ev->name, claim) == 0 && ev->level == SBX_LOG_INFO);
    ev = rec_find(&rec, SBX_EVENT_CHILDREN_STOPPED);
    CHECK(ev && ev->number == 1 && strstr(ev->message, "supervisor done"));
    pthread_mutex_destroy(&rec.mu);
    em_settle(&C, &B); /* the private client is gone with the handle: no child, no supervisor */
}

TEST(one_handle_open_failure_leaves_nothing)
{
    sbx_sandbox_config cfg;
    sbx_client_config cc;
    sbx_sandbox sb;
    memset(&cc, 0, sizeof cc);
    cc.kubeconfig = C.kubeconfig;
    cfg_python(&cfg);
    cfg.client = &cc;
    cfg.template_name = "no-such-template";
    CHECK_EQ_INT(sbx_open(&sb, NULL, &cfg), SBX_ERR_NOT_FOUND);
    CHECK(sb.impl == NULL);
    CHECK_MSG(strstr(sb.err.msg, "no-such-template") != NULL, "%s", sb.err.msg);
    /* bad client settings fail the open, saying it was the client */
    cc.mode = (sbx_mode)42;
    cfg.template_name = "python-sandbox-template";
    CHECK_EQ_INT(sbx_open(&sb, NULL, &cfg), SBX_ERR_INVALID_ARG);
    CHECK_MSG(strstr(sb.err.msg, "open sandbox: start its client: mode 42") != NULL, "%s", sb.err.msg);
    em_settle(&C, &B);
}

TEST(fallback_events)
{
    recorder rec;
    sbx_client_config cc;
    sbx_client cl;
    sbx_sandbox_config cfg;
    sbx_sandbox sb;
    char kinds[512];
    rec_event *ev;
    rec_init(&rec);
    memset(&cc, 0, sizeof cc);
    cc.logger.func = rec_log;
    cc.logger.user = &rec;
    cfg_python(&cfg);
    e2e_faults(&C, "{\"portforward\":{\"refuse_channel_ws\":true}}");
    if (em_client(&C, &cl, SBX_MODE_POD_TUNNEL, &cc) != SBX_OK) { CHECK(0); return; }
    CHECK_MSG(sbx_open(&sb, &cl, &cfg) == SBX_OK, "%s", sb.err.msg);
    CHECK_STR(sbx_route(&sb), "kubectl port-forward");
    CHECK(run_echo(&sb, "fell-back"));
    CHECK_MSG(sbx_close(&sb) == SBX_OK, "%s", sb.err.msg);
    sbx_client_close(&cl);
    rec_kinds(&rec, 0, kinds, sizeof kinds);
    CHECK_STR(kinds, "proxy created ready fallback tunnel route deleted stopped");
    ev = rec_find(&rec, SBX_EVENT_FALLBACK);
    CHECK(ev && ev->level == SBX_LOG_WARN && ev->number == 403);
    CHECK(ev && strstr(ev->message, "refuse_channel_ws") && strstr(ev->message, "kubectl port-forward"));
    ev = rec_find(&rec, SBX_EVENT_TUNNEL_STARTED);
    CHECK(ev && ev->number == 1 && ev->level == SBX_LOG_INFO && strstr(ev->message, "127.0.0.1:"));
    ev = rec_find(&rec, SBX_EVENT_ROUTE);
    if (ev) CHECK_STR(ev->message, "kubectl port-forward");
    if (strcmp(kinds, "proxy created ready fallback tunnel route deleted stopped") != 0) rec_dump(&rec);
    pthread_mutex_destroy(&rec.mu);
    em_settle(&C, &B);
}

TEST(retry_events)
{
    recorder rec;
    sbx_client_config cc;
    sbx_client cl;
    sbx_sandbox_config cfg;
    sbx_sandbox sb;
    char kinds[512];
    rec_event *ev;
    int i, http500 = 0;
    rec_init(&rec);
    memset(&cc, 0, sizeof cc);
    cc.logger.func = rec_log;
    cc.logger.user = &rec;
    cfg_python(&cfg);
    if (em_client(&C, &cl, SBX_MODE_POD_TUNNEL, &cc) != SBX_OK) { CHECK(0); return; }
    e2e_faults(&C, "{\"api_error_every\":3}");
    CHECK_MSG(sbx_open(&sb, &cl, &cfg) == SBX_OK, "%s", sb.err.msg);
    CHECK(run_echo(&sb, "retried"));
    CHECK_MSG(sbx_close(&sb) == SBX_OK, "%s", sb.err.msg);
    e2e_faults(&C, "{\"api_error_every\":null}");
    sbx_client_close(&cl);
    /* the steps in their order, whatever retries came between them */
    rec_kinds(&rec, 1, kinds, sizeof kinds);
    CHECK_STR(kinds, "proxy created ready route deleted stopped");
    CHECK_MSG(rec_count(&rec, SBX_EVENT_RETRY) >= 1, "%d retries", rec_count(&rec, SBX_EVENT_RETRY));
    for (i = 0; i < rec.n; i++) {
        if (rec.ev[i].kind != SBX_EVENT_RETRY) continue;
        CHECK(rec.ev[i].level == SBX_LOG_WARN && rec.ev[i].number >= 1 && rec.ev[i].number < 5);
        if (strstr(rec.ev[i].message, "HTTP 500") && strstr(rec.ev[i].message, "again in")) http500++;
    }
    CHECK_MSG(http500 >= 1, "no retry says why (HTTP 500)");
    /* no retry before the proxy was there, none after the client closed */
    CHECK(rec.n > 0 && rec.ev[0].kind == SBX_EVENT_PROXY_STARTED);
    CHECK(rec.n > 0 && rec.ev[rec.n - 1].kind == SBX_EVENT_CHILDREN_STOPPED);
    ev = rec_find(&rec, SBX_EVENT_RETRY);
    if (ev) printf("  first retry: %s\n", ev->message);
    if (http500 == 0 || strcmp(kinds, "proxy created ready route deleted stopped") != 0) rec_dump(&rec);
    pthread_mutex_destroy(&rec.mu);
    em_settle(&C, &B);
}

/* A watch started again is a retry too: the first watch of the claim (from
   the create's resourceVersion) is answered 410 Expired, and every watch
   stream ends after one event while the cold pod is still starting. */
TEST(watch_restart_events)
{
    recorder rec;
    sbx_client_config cc;
    sbx_client cl;
    sbx_sandbox_config cfg;
    sbx_sandbox sb;
    char kinds[512], claim[80];
    int i, expired = 0, ended = 0, created = -1, ready = -1;
    rec_init(&rec);
    memset(&cc, 0, sizeof cc);
    cc.logger.func = rec_log;
    cc.logger.user = &rec;
    cfg_python(&cfg);
    cfg.template_name = NULL;
    cfg.warm_pool = "python-sandbox-coldpool"; /* no warm pod: Ready takes cold_start_ms */
    if (em_client(&C, &cl, SBX_MODE_POD_TUNNEL, &cc) != SBX_OK) { CHECK(0); return; }
    e2e_faults(&C, "{\"watch_expired\":1,\"watch_end_after\":1,\"cold_start_ms\":800}");
    CHECK_MSG(sbx_open(&sb, &cl, &cfg) == SBX_OK, "%s", sb.err.msg);
    E2E_FMT(claim, sizeof claim, "%s", sbx_claim_name(&sb) ? sbx_claim_name(&sb) : "?");
    e2e_faults(&C, "{\"watch_expired\":null,\"watch_end_after\":null,\"cold_start_ms\":null}");
    CHECK_MSG(sbx_close(&sb) == SBX_OK, "%s", sb.err.msg);
    sbx_client_close(&cl);
    rec_kinds(&rec, 1, kinds, sizeof kinds);
    CHECK_STR(kinds, "proxy created ready route deleted stopped");
    for (i = 0; i < rec.n; i++) {
        rec_event *ev = &rec.ev[i];
        if (ev->kind == SBX_EVENT_CLAIM_CREATED) created = i;
        if (ev->kind == SBX_EVENT_READY) ready = i;
        if (ev->kind != SBX_EVENT_RETRY || !strstr(ev->message, "watch SandboxClaim")) continue;
        CHECK(ev->level == SBX_LOG_WARN && ev->number >= 1);
        CHECK_MSG(created >= 0 && ready < 0, "watch retry %d outside the wait for Ready", i);
        CHECK_STR(ev->name, claim);
        if (strstr(ev->message, "expired (410 Gone), watching again from the current state")) expired++;
        if (strstr(ev->message, "the stream ended, watching again from resourceVersion ")) ended++;
    }
    CHECK_EQ_INT(expired, 1);
    CHECK_MSG(ended >= 1, "no retry says the watch stream ended");
    if (expired != 1 || ended < 1 || strcmp(kinds, "proxy created ready route deleted stopped") != 0) rec_dump(&rec);
    pthread_mutex_destroy(&rec.mu);
    em_settle(&C, &B);
}

TEST(proxy_restart_events)
{
    recorder rec;
    sbx_client_config cc;
    sbx_client cl;
    sbx_sandbox_config cfg;
    sbx_sandbox sb;
    sbx_claim_status st;
    char kinds[512];
    rec_event *ev;
    pid_t pid;
    long long deadline;
    int running = 1;
    rec_init(&rec);
    memset(&cc, 0, sizeof cc);
    cc.logger.func = rec_log;
    cc.logger.user = &rec;
    cfg_python(&cfg);
    if (em_client(&C, &cl, SBX_MODE_POD_TUNNEL, &cc) != SBX_OK) { CHECK(0); return; }
    CHECK_MSG(sbx_open(&sb, &cl, &cfg) == SBX_OK, "%s", sb.err.msg);
    pthread_mutex_lock(&cl.impl->pmu);
    pid = cl.impl->proxy.pid;
    pthread_mutex_unlock(&cl.impl->pmu);
    CHECK(pid > 0 && kill(pid, SIGKILL) == 0);
    deadline = sbx__deadline(5000);
    while (running && sbx__ms_left(deadline) > 0) { /* until the drainer saw it go */
        pthread_mutex_lock(&cl.impl->pmu);
        running = sbx__proc_running(&cl.impl->proxy);
        pthread_mutex_unlock(&cl.impl->pmu);
        if (running) poll(NULL, 0, 10);
    }
    CHECK_MSG(sbx_status(&sb, &st) == SBX_OK, "%s", sb.err.msg); /* an API call: restarts the proxy */
    CHECK_MSG(sbx_close(&sb) == SBX_OK, "%s", sb.err.msg);
    sbx_client_close(&cl);
    rec_kinds(&rec, 1, kinds, sizeof kinds);
    CHECK_STR(kinds, "proxy created ready route proxy deleted stopped");
    CHECK_EQ_INT(rec_count(&rec, SBX_EVENT_PROXY_STARTED), 2);
    {
        int i;
        for (i = rec.n - 1; i >= 0; i--)
            if (rec.ev[i].kind == SBX_EVENT_PROXY_STARTED) break;
        CHECK(i >= 0 && rec.ev[i].number == 1 && rec.ev[i].level == SBX_LOG_WARN);
        CHECK(i >= 0 && strstr(rec.ev[i].message, "restarted") && strstr(rec.ev[i].message, "signal 9"));
        if (i >= 0) printf("  %s\n", rec.ev[i].message);
    }
    ev = rec_find(&rec, SBX_EVENT_CHILDREN_STOPPED);
    CHECK(ev && ev->number == 1);
    if (strcmp(kinds, "proxy created ready route proxy deleted stopped") != 0) rec_dump(&rec);
    pthread_mutex_destroy(&rec.mu);
    em_settle(&C, &B);
}

TEST(router_tunnel_events)
{
    recorder rec;
    sbx_client_config cc;
    sbx_client cl;
    sbx_sandbox_config cfg;
    sbx_sandbox sb;
    char kinds[512];
    rec_event *ev;
    rec_init(&rec);
    memset(&cc, 0, sizeof cc);
    cc.logger.func = rec_log;
    cc.logger.user = &rec;
    cfg_python(&cfg);
    if (em_client(&C, &cl, SBX_MODE_ROUTER_TUNNEL, &cc) != SBX_OK) { CHECK(0); return; }
    CHECK_MSG(sbx_open(&sb, &cl, &cfg) == SBX_OK, "%s", sb.err.msg);
    CHECK(run_echo(&sb, "routed"));
    CHECK_MSG(sbx_close(&sb) == SBX_OK, "%s", sb.err.msg);
    sbx_client_close(&cl);
    rec_kinds(&rec, 0, kinds, sizeof kinds);
    CHECK_STR(kinds, "proxy created ready tunnel route deleted stopped");
    ev = rec_find(&rec, SBX_EVENT_TUNNEL_STARTED);
    CHECK(ev && ev->number == 1 && ev->name[0] == '\0' && strstr(ev->message, "svc/sandbox-router-svc"));
    ev = rec_find(&rec, SBX_EVENT_ROUTE);
    if (ev) CHECK_STR(ev->message, "router tunnel");
    ev = rec_find(&rec, SBX_EVENT_CHILDREN_STOPPED);
    CHECK(ev && ev->number == 2); /* kubectl proxy and the router tunnel */
    if (strcmp(kinds, "proxy created ready tunnel route deleted stopped") != 0) rec_dump(&rec);
    pthread_mutex_destroy(&rec.mu);
    em_settle(&C, &B);
}

/* A logger that calls back into the library: the library holds no lock of its
   own while it calls the logger, so this must not deadlock. */
static void reentrant_log(const sbx_event *ev, void *user)
{
    sbx_sandbox *sb = (sbx_sandbox *)user;
    if (ev->kind == SBX_EVENT_ROUTE || ev->kind == SBX_EVENT_PROXY_STARTED) (void)sbx_route(sb);
}

TEST(logger_may_call_back_in)
{
    sbx_client_config cc;
    sbx_client cl;
    sbx_sandbox_config cfg;
    sbx_sandbox sb;
    sbx_claim_status st;
    pid_t pid;
    memset(&sb, 0, sizeof sb);
    memset(&cc, 0, sizeof cc);
    cc.logger.func = reentrant_log;
    cc.logger.user = &sb;
    cfg_python(&cfg);
    if (em_client(&C, &cl, SBX_MODE_POD_TUNNEL, &cc) != SBX_OK) { CHECK(0); return; }
    CHECK_MSG(sbx_open(&sb, &cl, &cfg) == SBX_OK, "%s", sb.err.msg);
    pthread_mutex_lock(&cl.impl->pmu);
    pid = cl.impl->proxy.pid;
    pthread_mutex_unlock(&cl.impl->pmu);
    kill(pid, SIGKILL);
    poll(NULL, 0, 200);
    CHECK_MSG(sbx_status(&sb, &st) == SBX_OK, "%s", sb.err.msg); /* the restart's event is logged after pmu */
    CHECK_MSG(sbx_close(&sb) == SBX_OK, "%s", sb.err.msg);
    sbx_client_close(&cl);
    em_settle(&C, &B);
}

/* ---- first failures ---------------------------------------------------- */

TEST(no_kubeconfig_says_what_was_tried)
{
    sbx_sandbox_config cfg;
    sbx_sandbox sb;
    const char *was = getenv("KUBECONFIG");
    char keep[600], missing[700], cwd[400];
    int children = e2e_child_count(), sups = e2e_supervisor_count();
    E2E_FMT(keep, sizeof keep, "%s", was ? was : "");
    if (!getcwd(cwd, sizeof cwd)) { CHECK(0); return; }
    E2E_FMT(missing, sizeof missing, "%s/build/no-such-dir/kubeconfig", cwd);
    setenv("KUBECONFIG", missing, 1);
    cfg_python(&cfg); /* one handle, client defaults: kubectl reads $KUBECONFIG */
    CHECK_EQ_INT(sbx_open(&sb, NULL, &cfg), SBX_ERR_CONNECT);
    if (was) setenv("KUBECONFIG", keep, 1);
    else unsetenv("KUBECONFIG");
    printf("  %s\n", sb.err.msg);
    CHECK(sb.impl == NULL);
    CHECK_MSG(strstr(sb.err.msg, "no Kubernetes cluster reachable") != NULL, "%s", sb.err.msg);
    CHECK_MSG(strstr(sb.err.msg, missing) != NULL, "%s", sb.err.msg);
    CHECK_MSG(strstr(sb.err.msg, "$KUBECONFIG; no such file") != NULL, "%s", sb.err.msg);
    CHECK_MSG(strstr(sb.err.msg, "context (none)") != NULL, "%s", sb.err.msg);
    CHECK_MSG(strstr(sb.err.msg, ":8080") != NULL, "%s", sb.err.msg); /* the server kubectl fell back to */
    CHECK_MSG(strstr(sb.err.msg, "Point KUBECONFIG") != NULL, "%s", sb.err.msg);
    CHECK_EQ_INT(e2e_child_count(), children);
    CHECK_EQ_INT(e2e_supervisor_count(), sups);
}

TEST(refusing_server_says_what_was_tried)
{
    sbx_sandbox_config cfg;
    sbx_client_config cc;
    sbx_sandbox sb;
    struct sockaddr_in sa;
    socklen_t len = sizeof sa;
    char path[700], cwd[400], want[64];
    FILE *f;
    int fd, port;
    /* a port nobody listens on: bound, then closed */
    fd = socket(AF_INET, SOCK_STREAM, 0);
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof sa) != 0 ||
        getsockname(fd, (struct sockaddr *)&sa, &len) != 0) { CHECK(0); if (fd >= 0) close(fd); return; }
    port = ntohs(sa.sin_port);
    close(fd);
    if (!getcwd(cwd, sizeof cwd)) { CHECK(0); return; }
    E2E_FMT(path, sizeof path, "%s/build/e2e-events-refused-%d.kubeconfig", cwd, (int)getpid());
    f = fopen(path, "w");
    if (!f) { CHECK(0); return; }
    fprintf(f, "apiVersion: v1\nkind: Config\nclusters:\n- name: gone\n  cluster:\n    server: http://127.0.0.1:%d\n"
               "contexts:\n- name: gone-ctx\n  context:\n    cluster: gone\n    user: u\n"
               "current-context: gone-ctx\nusers:\n- name: u\n  user: {}\n", port);
    fclose(f);
    memset(&cc, 0, sizeof cc);
    cc.kubeconfig = path;
    cfg_python(&cfg);
    cfg.client = &cc;
    CHECK_EQ_INT(sbx_open(&sb, NULL, &cfg), SBX_ERR_CONNECT);
    printf("  %s\n", sb.err.msg);
    E2E_FMT(want, sizeof want, "server 127.0.0.1:%d", port);
    CHECK_MSG(strstr(sb.err.msg, "no Kubernetes cluster reachable") != NULL, "%s", sb.err.msg);
    CHECK_MSG(strstr(sb.err.msg, path) != NULL, "%s", sb.err.msg);
    CHECK_MSG(strstr(sb.err.msg, "sbx_client_config.kubeconfig)") != NULL, "%s", sb.err.msg);
    CHECK_MSG(strstr(sb.err.msg, "context gone-ctx") != NULL, "%s", sb.err.msg);
    CHECK_MSG(strstr(sb.err.msg, want) != NULL, "%s", sb.err.msg);
    CHECK_MSG(strstr(sb.err.msg, "connection refused") != NULL, "%s", sb.err.msg);
    unlink(path);
}

TEST(cluster_without_crds_names_the_group_and_the_install)
{
    e2e_cluster N;
    sbx_sandbox_config cfg;
    sbx_client_config cc;
    sbx_sandbox sb;
    if (e2e_up(&N, "e2e-events-nocrds", "--no-crds --no-router") != 0) { CHECK(0); return; }
    memset(&cc, 0, sizeof cc);
    cc.kubeconfig = N.kubeconfig;
    cfg_python(&cfg);
    cfg.client = &cc;
    CHECK_EQ_INT(sbx_open(&sb, NULL, &cfg), SBX_ERR_UNSUPPORTED);
    printf("  %s\n", sb.err.msg);
    CHECK_MSG(strstr(sb.err.msg, "does not serve API group extensions.agents.x-k8s.io") != NULL, "%s", sb.err.msg);
    CHECK_MSG(strstr(sb.err.msg, "agent-sandbox is not installed") != NULL, "%s", sb.err.msg);
    CHECK_MSG(strstr(sb.err.msg, "extensions.yaml") != NULL, "%s", sb.err.msg);
    CHECK_MSG(strstr(sb.err.msg, "kubectl api-resources --api-group=extensions.agents.x-k8s.io") != NULL, "%s",
              sb.err.msg);
    e2e_down(&N);
}

#define T_RUN(name)                                              \
    do {                                                         \
        const char *only_ = getenv("E2E_ONLY");                  \
        if (!only_ || strstr(#name, only_)) EM_RUN(name);        \
    } while (0)

int main(void)
{
    long long t0 = sbx__now_ms();
    e2e_pick_kubectl();
    T_RUN(no_kubeconfig_says_what_was_tried);
    T_RUN(refusing_server_says_what_was_tried);
    T_RUN(cluster_without_crds_names_the_group_and_the_install);
    if (e2e_up(&C, "e2e-events", "") != 0) {
        printf("e2e_events: 0 passed, 1 failed\n");
        return 1;
    }
    em_baseline(&C, &B);
    T_RUN(one_handle_open_run_close_events_in_order);
    T_RUN(one_handle_open_failure_leaves_nothing);
    T_RUN(fallback_events);
    T_RUN(retry_events);
    T_RUN(watch_restart_events);
    T_RUN(proxy_restart_events);
    T_RUN(router_tunnel_events);
    T_RUN(logger_may_call_back_in);
    CHECK_EQ_INT(e2e_child_count(), 0);
    e2e_down(&C);
    printf("suite took %lld ms\n", em_since(t0));
    return test_summary("e2e_events");
}
