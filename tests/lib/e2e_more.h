/* tests/lib/e2e_more.h - helpers shared by the connection-mode, lifecycle and
   retry suites (test_e2e_modes.c, test_e2e_lifecycle.c, test_e2e_retry.c), on
   top of e2e.h: a settle check (nothing left behind), a sandboxd template and
   warm pool, a runtime's /_runtime/stats, the API request log, the router
   pod, and a tiny capturing HTTP server that plays a router or runtime.

   Include after e2e.h. */
#ifndef SBX_E2E_MORE_H
#define SBX_E2E_MORE_H
#include <poll.h>
#include <pthread.h>
#include <strings.h>
#include <netinet/in.h>
#include <sys/socket.h>

typedef struct em_base {
    int fds, pods, children;
    int claims;               /* claims that stay (a suite's shared sandbox) */
    int supervisors;          /* of clients that stay open (a suite's shared client) */
} em_base;

/* Baseline of a suite: taken with no client open. */
static E2E_UNUSED void em_baseline(e2e_cluster *c, em_base *b)
{
    b->fds = e2e_fd_count();
    b->pods = e2e_count(c, E2E_PODS);
    b->children = e2e_child_count();
    b->claims = e2e_count(c, E2E_CLAIMS);
    b->supervisors = e2e_supervisor_count();
}

/* Wait (bounded) until the claims and pods are back to the baseline,
   then check that this process holds no extra descriptor or child; reset the
   fault knobs. Call with every client closed. */
static E2E_UNUSED void em_settle(e2e_cluster *c, const em_base *b)
{
    long long deadline = sbx__deadline(10000);
    int claims = -1, pods = -1, sups = -1;
    while (sbx__ms_left(deadline) > 0) {
        claims = e2e_count(c, E2E_CLAIMS);
        pods = e2e_count(c, E2E_PODS);
        sups = e2e_supervisor_count(); /* a closed client's exits just after close */
        if (claims == b->claims && pods == b->pods && sups == b->supervisors) break;
        poll(NULL, 0, 50);
    }
    CHECK_EQ_INT(claims, b->claims);
    CHECK_EQ_INT(pods, b->pods);
    CHECK_EQ_INT(sups, b->supervisors);
    CHECK_EQ_INT(e2e_fd_count(), b->fds);
    CHECK_EQ_INT(e2e_child_count(), b->children);
    e2e_faults(c, "{\"never_ready\":null,\"delete_claim_after_ms\":null,\"watch_expired\":null,"
                  "\"watch_drop_after\":null,\"cold_start_ms\":null,\"api_error_every\":null,"
                  "\"api_error_code\":null,\"api_429_every\":null,\"retry_after\":null,"
                  "\"api_fault_match\":null,\"portforward\":null,\"runtime\":null}");
}

static E2E_UNUSED long long em_since(long long t0) { return sbx__now_ms() - t0; }

/* A client of the dev cluster in `mode` (other mode fields from *extra if given). */
static E2E_UNUSED sbx_result em_client(e2e_cluster *c, sbx_client *cl, sbx_mode mode, const sbx_client_config *extra)
{
    sbx_client_config cc;
    if (extra) cc = *extra;
    else memset(&cc, 0, sizeof cc);
    cc.kubeconfig = c->kubeconfig;
    cc.mode = mode;
    if (sbx_client_open(cl, &cc) != SBX_OK) {
        printf("  client open (mode %d): %s\n", (int)mode, cl->err.msg);
        return cl->err.code;
    }
    return SBX_OK;
}

/* Template "sandboxd-template" (image with "sandboxd" in it: the dev cluster
   runs its sandboxd flavour on 8080) and warm pool "sandboxd-pool" with
   `replicas` sandboxes; waits until the pool is full. 0 on success. */
static E2E_UNUSED int em_sandboxd_setup(e2e_cluster *c, int replicas)
{
    char body[1024];
    sbx__buf out;
    int st1, st2;
    long long deadline = sbx__deadline(15000);
    st1 = e2e_http(c, "POST", "/apis/extensions.agents.x-k8s.io/v1beta1/namespaces/default/sandboxtemplates",
                   "{\"apiVersion\":\"extensions.agents.x-k8s.io/v1beta1\",\"kind\":\"SandboxTemplate\","
                   "\"metadata\":{\"name\":\"sandboxd-template\"},\"spec\":{\"podTemplate\":{\"spec\":{"
                   "\"containers\":[{\"name\":\"sandboxd\",\"image\":\"registry.example/sandboxd:dev\","
                   "\"ports\":[{\"containerPort\":8080},{\"containerPort\":9090}]}]}}}}",
                   &out);
    sbx__buf_free(&out);
    E2E_FMT(body, sizeof body,
            "{\"apiVersion\":\"extensions.agents.x-k8s.io/v1beta1\",\"kind\":\"SandboxWarmPool\","
            "\"metadata\":{\"name\":\"sandboxd-pool\"},\"spec\":{\"replicas\":%d,"
            "\"sandboxTemplateRef\":{\"name\":\"sandboxd-template\"}}}", replicas);
    st2 = e2e_http(c, "POST", "/apis/extensions.agents.x-k8s.io/v1beta1/namespaces/default/sandboxwarmpools", body,
                   &out);
    sbx__buf_free(&out);
    if (st1 != 201 || st2 != 201) {
        printf("  sandboxd template/pool: HTTP %d / %d\n", st1, st2);
        return -1;
    }
    while (sbx__ms_left(deadline) > 0) {
        sbx__jtok *t = NULL;
        long long ready = -1;
        int n, rd;
        if (e2e_http(c, "GET", "/apis/extensions.agents.x-k8s.io/v1beta1/namespaces/default/sandboxwarmpools/sandboxd-pool",
                     NULL, &out) == 200) {
            n = sbx__json_parse_alloc(&c->a, out.data, out.len, &t);
            rd = n > 0 ? sbx__json_get(out.data, t, n, 0, "status.readyReplicas") : -1;
            if (rd >= 0) sbx__json_int(out.data, t, rd, &ready);
            sbx__free(&c->a, t);
        }
        sbx__buf_free(&out);
        if (ready >= replicas) return 0;
        poll(NULL, 0, 50);
    }
    printf("  sandboxd pool not ready in time\n");
    return -1;
}

/* GET http://ip:port/_runtime/stats: the runtime's exec_count and how many
   requests "<METHOD> <raw path>" it received (key NULL: skip). 0 on success. */
static E2E_UNUSED int em_runtime_stats(e2e_cluster *c, const char *ip, int port, const char *key, long long *exec_count,
                                       long long *requests)
{
    char url[128];
    sbx__endpoint ep;
    sbx__conn conn;
    sbx__http_req req;
    sbx__http_resp resp;
    sbx__buf out;
    sbx__jtok *t = NULL;
    int n, rc = -1;
    *exec_count = -1;
    if (requests) *requests = 0;
    E2E_FMT(url, sizeof url, "http://%s:%d", ip, port);
    if (sbx__endpoint_parse(url, &ep, NULL) != SBX_OK) return -1;
    sbx__conn_init(&conn, &ep, &c->a);
    sbx__buf_init(&out, &c->a);
    sbx__http_req_init(&req);
    req.target = "/_runtime/stats";
    if (sbx__http_do(&conn, &req, &resp, &out, 1 << 20, sbx__deadline(5000), NULL) == SBX_OK && resp.status == 200) {
        n = sbx__json_parse_alloc(&c->a, out.data, out.len, &t);
        if (n > 0) {
            int ec = sbx__json_get(out.data, t, n, 0, "exec_count");
            int rq = sbx__json_get(out.data, t, n, 0, "requests");
            if (ec >= 0) sbx__json_int(out.data, t, ec, exec_count);
            if (key && requests && rq >= 0) {
                int v = sbx__json_member(out.data, t, n, rq, key, strlen(key));
                if (v >= 0) sbx__json_int(out.data, t, v, requests);
            }
            rc = 0;
        }
        sbx__free(&c->a, t);
    }
    sbx__buf_free(&out);
    sbx__conn_free(&conn);
    return rc;
}

/* e2e_http with a Content-Type of our choice (merge patches). Returns the status or -1. */
static E2E_UNUSED int em_http(e2e_cluster *c, const char *method, const char *target, const char *ctype,
                              const char *body, sbx__buf *out)
{
    sbx__conn conn;
    sbx__http_req req;
    sbx__http_resp resp;
    char hdr[128];
    int status = -1;
    sbx__buf_init(out, &c->a);
    sbx__conn_init(&conn, &c->ep, &c->a);
    sbx__http_req_init(&req);
    E2E_FMT(hdr, sizeof hdr, "Content-Type: %s\r\n", ctype);
    req.method = method;
    req.target = target;
    req.headers = hdr;
    req.body = body;
    req.body_len = body ? strlen(body) : 0;
    if (sbx__http_do(&conn, &req, &resp, out, 1 << 20, sbx__deadline(10000), NULL) == SBX_OK) status = resp.status;
    sbx__conn_free(&conn);
    return status;
}

/* RUN with the test's duration printed. */
#define EM_RUN(name)                                                  \
    do {                                                              \
        long long em_t0_ = sbx__now_ms();                             \
        RUN(name);                                                    \
        printf("  (%lld ms)\n", em_since(em_t0_));                    \
    } while (0)

/* The API server's request log since `since` (GET /_admin/requests); caller frees. */
static E2E_UNUSED int em_requests(e2e_cluster *c, sbx__buf *out)
{
    return e2e_http(c, "GET", "/_admin/requests", NULL, out) == 200 ? 0 : -1;
}

/* Name and IP of the router pod in agent-sandbox-system. 0 on success. */
static E2E_UNUSED int em_router_pod(e2e_cluster *c, char *name, size_t ncap, char *ip, size_t ipcap)
{
    sbx__buf out;
    sbx__jtok *t = NULL;
    int n, rc = -1;
    if (e2e_http(c, "GET", "/api/v1/namespaces/agent-sandbox-system/pods?labelSelector=app%3Dsandbox-router", NULL,
                 &out) == 200) {
        n = sbx__json_parse_alloc(&c->a, out.data, out.len, &t);
        if (n > 0) {
            int nm = sbx__json_get(out.data, t, n, 0, "items[0].metadata.name");
            int pi = sbx__json_get(out.data, t, n, 0, "items[0].status.podIP");
            if (nm >= 0 && pi >= 0 && sbx__json_unescape(out.data, t, nm, name, ncap, NULL) == 0 &&
                sbx__json_unescape(out.data, t, pi, ip, ipcap, NULL) == 0)
                rc = 0;
        }
        sbx__free(&c->a, t);
    }
    sbx__buf_free(&out);
    return rc;
}

/* ---- a capturing HTTP server on 127.0.0.1 (one connection at a time) ---- */

typedef struct em_capture {
    int lfd, port, wake[2];
    pthread_t th;
    pthread_mutex_t mu;
    int nreq;                 /* requests answered */
    char last[4096];          /* head of the last request other than GET / */
    int redirect;             /* answer everything but GET / with 301 */
} em_capture;

static int em_cap_read_request(int fd, char *buf, size_t cap, size_t *have, size_t *head_len, size_t *total)
{
    for (;;) {
        char *end;
        struct pollfd p;
        ssize_t r;
        buf[*have] = '\0';
        end = strstr(buf, "\r\n\r\n");
        if (end) {
            const char *cl = buf;
            long long clen = 0;
            *head_len = (size_t)(end - buf) + 4;
            while ((cl = strchr(cl, '\n')) != NULL) {
                cl++;
                if (strncasecmp(cl, "content-length:", 15) == 0) clen = atoll(cl + 15);
            }
            *total = *head_len + (size_t)clen;
            if (*total >= cap) return -1;
            if (*have >= *total) return 0;
        }
        if (*have + 1 >= cap) return -1;
        p.fd = fd;
        p.events = POLLIN;
        if (poll(&p, 1, 3000) <= 0) return -1;
        r = read(fd, buf + *have, cap - 1 - *have);
        if (r <= 0) return -1;
        *have += (size_t)r;
    }
}

static void *em_cap_main(void *arg)
{
    em_capture *s = (em_capture *)arg;
    static char buf[1 << 16];
    for (;;) {
        struct pollfd p[2];
        int fd;
        size_t have = 0;
        p[0].fd = s->lfd;
        p[0].events = POLLIN;
        p[1].fd = s->wake[0];
        p[1].events = POLLIN;
        if (poll(p, 2, 10000) <= 0 || (p[1].revents & POLLIN)) break;
        fd = accept(s->lfd, NULL, NULL);
        if (fd < 0) continue;
        for (;;) {
            size_t head_len = 0, total = 0;
            char resp[1024];
            const char *body;
            int status = 200, root;
            if (em_cap_read_request(fd, buf, sizeof buf, &have, &head_len, &total) != 0) break;
            root = strncmp(buf, "GET / HTTP/1.1\r\n", 16) == 0;
            pthread_mutex_lock(&s->mu);
            s->nreq++;
            if (!root) E2E_FMT(s->last, sizeof s->last, "%.*s", (int)head_len, buf);
            pthread_mutex_unlock(&s->mu);
            if (root) body = "{\"status\":\"ok\",\"message\":\"Sandbox Runtime is active.\"}";
            else if (s->redirect) status = 301, body = "";
            else body = "{\"stdout\":\"captured\\n\",\"stderr\":\"\",\"exit_code\":0}";
            E2E_FMT(resp, sizeof resp, "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\n%sContent-Length: %d\r\n\r\n%s",
                    status, status == 200 ? "OK" : "Moved Permanently",
                    status == 301 ? "Location: http://127.0.0.1:1/elsewhere\r\n" : "", (int)strlen(body), body);
            if (write(fd, resp, strlen(resp)) < 0) break;
            memmove(buf, buf + total, have - total);
            have -= total;
        }
        close(fd);
    }
    return NULL;
}

static E2E_UNUSED int em_capture_start(em_capture *s)
{
    struct sockaddr_in a;
    socklen_t len = sizeof a;
    memset(s, 0, sizeof *s);
    pthread_mutex_init(&s->mu, NULL);
    s->lfd = socket(AF_INET, SOCK_STREAM, 0);
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (s->lfd < 0 || bind(s->lfd, (struct sockaddr *)&a, sizeof a) != 0 || listen(s->lfd, 8) != 0 ||
        getsockname(s->lfd, (struct sockaddr *)&a, &len) != 0 || pipe(s->wake) != 0)
        return -1;
    s->port = ntohs(a.sin_port);
    return pthread_create(&s->th, NULL, em_cap_main, s) == 0 ? 0 : -1;
}

static E2E_UNUSED void em_capture_stop(em_capture *s)
{
    if (write(s->wake[1], "x", 1) < 0) return;
    pthread_join(s->th, NULL);
    close(s->lfd);
    close(s->wake[0]);
    close(s->wake[1]);
    pthread_mutex_destroy(&s->mu);
}

/* The value of header `name` in a captured head ("" if absent). */
static E2E_UNUSED void em_header(const char *head, const char *name, char *out, size_t cap)
{
    const char *p = head;
    size_t n = strlen(name);
    out[0] = '\0';
    while ((p = strchr(p, '\n')) != NULL) {
        p++;
        if (strncasecmp(p, name, n) == 0 && p[n] == ':') {
            const char *v = p + n + 1, *end;
            while (*v == ' ') v++;
            end = strstr(v, "\r\n");
            if (!end) end = v + strlen(v);
            E2E_FMT(out, cap, "%.*s", (int)(end - v), v);
            return;
        }
    }
}
#endif
