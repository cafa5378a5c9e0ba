/* tests/lib/test.h - the one helper header of sandbox.h's C test suites
   (unit, e2e, the fault matrix and the bench). Include it after sandbox.h's
   implementation. Sections:
   - the harness: TEST/CHECK/SKIP/RUN and the summary line make test reads;
   - processes and descriptors: fd and child counts, /proc stat, a Python fake
     server started with its "PORT n" line read back;
   - the dev cluster (tests/devcluster) driven with the real kubectl: e2e_up/
     e2e_down, admin requests, fault knobs, counts of claims, pods, supervisors;
   - e2e suite helpers (em_*): baselines and settle checks, clients per mode,
     the sandboxd pool, runtime stats, the router pod;
   - a client program that ends without closing (eo_*, issue 8).

   TEST(name) { CHECK(cond); CHECK_EQ_INT(a, b); ... }
   int main(void) { RUN(name); ...; return test_summary("suite"); }

   CHECK failures are reported with file:line and the test goes on; the summary
   line is the one `make test` aggregates: "<suite>: N passed, N failed, N skipped". */
#ifndef SBX_TEST_H
#define SBX_TEST_H
#include <dirent.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#if defined(__GNUC__) || defined(__clang__)
#define TEST_UNUSED __attribute__((unused))
#else
#define TEST_UNUSED
#endif
#define E2E_UNUSED TEST_UNUSED
#if defined(__GNUC__) || defined(__clang__)
#define TEST_PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define TEST_PRINTF(f, a)
#endif

/* snprintf where a cut-off is acceptable (keeps gcc's truncation warning for
   the library itself, where it matters); checked like printf, which also
   lets clang's -Wformat-nonliteral accept the vsnprintf below */
static TEST_UNUSED TEST_PRINTF(3, 4) void E2E_FMT(char *buf, size_t cap, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, cap, fmt, ap);
    va_end(ap);
}

/* ==== the harness ========================================================= */
static TEST_UNUSED int test_failures_in_current;
static TEST_UNUSED int test_passed, test_failed, test_skipped;
static TEST_UNUSED const char *test_current;
static TEST_UNUSED int test_skip_flag;

/* TEST_ONLY=name in the environment runs that one test of a suite (to loop
   a flaky one); the suite's set-up and checks around the tests still run. */
static TEST_UNUSED int test_selected(const char *name)
{
    const char *only = getenv("TEST_ONLY");
    return !only || !*only || strcmp(only, name) == 0;
}

#define TEST(name) static void name(void)
#define CHECK(c)                                                                  \
    do {                                                                          \
        if (!(c)) {                                                               \
            printf("  FAIL %s:%d: %s: CHECK(%s)\n", __FILE__, __LINE__, test_current, #c); \
            fflush(stdout);                                                       \
            test_failures_in_current++;                                           \
        }                                                                         \
    } while (0)
#define CHECK_MSG(c, ...)                                                         \
    do {                                                                          \
        if (!(c)) {                                                               \
            printf("  FAIL %s:%d: %s: CHECK(%s): ", __FILE__, __LINE__, test_current, #c); \
            printf(__VA_ARGS__);                                                  \
            printf("\n");                                                         \
            fflush(stdout);                                                       \
            test_failures_in_current++;                                           \
        }                                                                         \
    } while (0)
#define CHECK_EQ_INT(a, b)                                                        \
    do {                                                                          \
        long long a_ = (long long)(a), b_ = (long long)(b);                       \
        CHECK_MSG(a_ == b_, "%lld != %lld", a_, b_);                              \
    } while (0)
#define CHECK_STR(a, b)                                                           \
    do {                                                                          \
        const char *a_ = (a), *b_ = (b);                                          \
        CHECK_MSG(a_ && b_ && strcmp(a_, b_) == 0, "\"%s\" != \"%s\"",            \
                  a_ ? a_ : "(null)", b_ ? b_ : "(null)");                        \
    } while (0)
/* Skip the current test, saying why (call before any CHECK). */
#define SKIP(...)                                                                 \
    do {                                                                          \
        printf("  SKIP %s: ", test_current);                                      \
        printf(__VA_ARGS__);                                                      \
        printf("\n");                                                             \
        test_skip_flag = 1;                                                       \
        return;                                                                   \
    } while (0)
#define RUN(name)                                                                 \
    do {                                                                          \
        if (!test_selected(#name)) break;                                         \
        test_current = #name;                                                     \
        test_failures_in_current = 0;                                             \
        test_skip_flag = 0;                                                       \
        printf("- %s\n", #name);                                                  \
        fflush(stdout);                                                           \
        name();                                                                   \
        if (test_skip_flag) test_skipped++;                                       \
        else if (test_failures_in_current) test_failed++;                         \
        else test_passed++;                                                       \
    } while (0)

static TEST_UNUSED int test_summary(const char *suite)
{
    printf("%s: %d passed, %d failed, %d skipped\n", suite, test_passed, test_failed, test_skipped);
    return test_failed == 0 && test_passed > 0 ? 0 : 1;
}

/* ==== processes and descriptors =========================================== */

/* The wall clock in seconds since the epoch, with its fraction. */
static TEST_UNUSED double test_realtime(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Descriptors open in this process (/proc, else /dev/fd). */
static TEST_UNUSED int test_fd_count(void)
{
    DIR *d = opendir("/proc/self/fd");
    struct dirent *de;
    int n = 0;
    if (!d) d = opendir("/dev/fd");
    if (!d) return -1;
    while ((de = readdir(d)) != NULL)
        if (de->d_name[0] >= '0' && de->d_name[0] <= '9') n++;
    closedir(d);
    return n - 1; /* the listing's own descriptor */
}

/* The command line of process `pid` (its /proc entry's name) into buf,
   NUL-terminated: its arguments NUL-separated, or joined by spaces when
   `spaces`. Its length, or -1 if it cannot be read. */
static TEST_UNUSED long test_cmdline(const char *pid, char *buf, size_t cap, int spaces)
{
    char path[300];
    size_t len, i;
    FILE *f;
    E2E_FMT(path, sizeof path, "/proc/%s/cmdline", pid);
    if (!(f = fopen(path, "r"))) return -1;
    len = fread(buf, 1, cap - 1, f);
    fclose(f);
    buf[len] = '\0';
    for (i = 0; spaces && i < len; i++)
        if (buf[i] == '\0') buf[i] = ' ';
    return (long)len;
}

/* state, parent and start time of pid from /proc; 0 if it does not exist */
static TEST_UNUSED int test_proc_read(int pid, char *state, int *ppid, unsigned long long *start)
{
    char path[64], buf[2048], *p;
    FILE *f;
    int field;
    E2E_FMT(path, sizeof path, "/proc/%d/stat", pid);
    if (!(f = fopen(path, "r"))) return 0;
    if (!fgets(buf, sizeof buf, f)) buf[0] = '\0';
    fclose(f);
    p = strrchr(buf, ')');
    if (!p || sscanf(p + 1, " %c %d", state, ppid) != 2) return 0;
    for (field = 2; *p && field < 22; p++)
        if (*p == ' ') field++;
    *start = strtoull(p, NULL, 10);
    return 1;
}

/* Child processes of this process that still exist (running or zombie). */
static TEST_UNUSED int test_child_count(void)
{
    DIR *d = opendir("/proc");
    struct dirent *de;
    int n = 0;
    if (!d) return -1;
    while ((de = readdir(d)) != NULL) {
        char state;
        int ppid;
        unsigned long long start;
        if (de->d_name[0] < '0' || de->d_name[0] > '9') continue;
        if (test_proc_read(atoi(de->d_name), &state, &ppid, &start) && ppid == (int)getpid()) n++;
    }
    closedir(d);
    return n;
}

/* Start `python3 script [a1 [a2]]` (a fake server under tests/fakes/servers)
   with a pipe on its stdin (the server ends when it closes) and read its first
   line, "PORT n". Returns the port, or -1 after saying what it read; *pid and
   *stdin_fd are set (-1 when not started). */
static TEST_UNUSED int test_spawn_server(const char *script, const char *a1, const char *a2, pid_t *pid,
                                         int *stdin_fd, int timeout_ms)
{
    int in[2], out[2], port = -1;
    char line[64];
    size_t got = 0;
    long long deadline = sbx__deadline(timeout_ms);
    *pid = -1;
    *stdin_fd = -1;
    if (sbx__pipe_cloexec(in) != 0) return -1;
    if (sbx__pipe_cloexec(out) != 0) {
        close(in[0]);
        close(in[1]);
        return -1;
    }
    *pid = fork();
    if (*pid == 0) {
        dup2(in[0], 0);
        dup2(out[1], 1);
        execlp("python3", "python3", script, a1, a2, (char *)NULL);
        _exit(127);
    }
    close(in[0]);
    close(out[1]);
    *stdin_fd = in[1];
    while (got < sizeof line - 1 && !memchr(line, '\n', got)) {
        ssize_t r;
        if (sbx__poll1(out[0], POLLIN, deadline) != 1) break;
        r = read(out[0], line + got, sizeof line - 1 - got);
        if (r <= 0) break;
        got += (size_t)r;
    }
    close(out[0]);
    line[got] = '\0';
    if (*pid < 0 || sscanf(line, "PORT %d", &port) != 1) {
        printf("  %s did not start: \"%s\"\n", script, line);
        return -1;
    }
    return port;
}

/* ==== the dev cluster ===================================================== */

/* The e2e suites' names for the counts above. */
#define e2e_fd_count test_fd_count
#define e2e_child_count test_child_count

typedef struct e2e_cluster {
    char dir[1024];
    char kubeconfig[1100];
    char api_url[256];
    char admin_url[256];      /* the admin listener (admin endpoints and the API), up while the API restarts */
    sbx__endpoint ep;         /* admin_url: e2e_http's endpoint */
    sbx_allocator a;
    int up;
} e2e_cluster;

/* Use the real kubectl when it is installed, else the shim (and say so). */
static E2E_UNUSED void e2e_pick_kubectl(void)
{
    const char *path = getenv("PATH");
    char buf[4096], cand[4200], *dir, *save = NULL;
    static char shim[600];
    char cwd[512];
    if (getenv("SANDBOX_KUBECTL")) return;
    E2E_FMT(buf, sizeof buf, "%s", path ? path : "/usr/bin:/bin");
    for (dir = strtok_r(buf, ":", &save); dir; dir = strtok_r(NULL, ":", &save)) {
        E2E_FMT(cand, sizeof cand, "%s/kubectl", dir);
        if (access(cand, X_OK) == 0) return;
    }
    if (!getcwd(cwd, sizeof cwd)) cwd[0] = '\0';
    E2E_FMT(shim, sizeof shim, "SANDBOX_KUBECTL=%s/tests/fakes/kubectl-shim/kubectl", cwd);
    setenv("SANDBOX_KUBECTL", shim + strlen("SANDBOX_KUBECTL="), 1);
    printf("NOTE: kubectl is not installed; using the shim tests/fakes/kubectl-shim/kubectl\n");
}

static E2E_UNUSED int e2e_read_file(const char *path, char *out, size_t cap)
{
    FILE *f = fopen(path, "r");
    size_t n;
    if (!f) return -1;
    n = fread(out, 1, cap - 1, f);
    fclose(f);
    out[n] = '\0';
    while (n && (out[n - 1] == '\n' || out[n - 1] == '\r')) out[--n] = '\0';
    return 0;
}

/* Start a dev cluster in build/<name>-<pid> with extra flags. 0 on success. */
static E2E_UNUSED int e2e_up(e2e_cluster *c, const char *name, const char *flags)
{
    char cmd[4096], cwd[512];
    static char cachedir[700];
    memset(c, 0, sizeof *c);
    c->a = sbx__allocator(NULL);
    if (!getcwd(cwd, sizeof cwd)) return -1;
    E2E_FMT(c->dir, sizeof c->dir, "%s/build/%s-%d", cwd, name, (int)getpid());
    E2E_FMT(cmd, sizeof cmd, "rm -rf '%s' && %s tests/devcluster/cluster.py up --state '%s' %s > '%s.up.log' 2>&1",
             c->dir, getenv("PYTHON") ? getenv("PYTHON") : "python3", c->dir, flags ? flags : "", c->dir);
    if (system(cmd) != 0) {
        printf("  devcluster did not start: see %s.up.log\n", c->dir);
        return -1;
    }
    E2E_FMT(c->kubeconfig, sizeof c->kubeconfig, "%s/kubeconfig", c->dir);
    {
        char p[600];
        E2E_FMT(p, sizeof p, "%s/api_url", c->dir);
        if (e2e_read_file(p, c->api_url, sizeof c->api_url) != 0) return -1;
        E2E_FMT(p, sizeof p, "%s/admin_url", c->dir);
        if (e2e_read_file(p, c->admin_url, sizeof c->admin_url) != 0) return -1;
    }
    if (sbx__endpoint_parse(c->admin_url, &c->ep, NULL) != SBX_OK) return -1;
    /* a private kubectl cache per run (kubectl.md §5) */
    E2E_FMT(cachedir, sizeof cachedir, "KUBECACHEDIR=%s/kubecache", c->dir);
    setenv("KUBECACHEDIR", cachedir + strlen("KUBECACHEDIR="), 1);
    c->up = 1;
    return 0;
}

static E2E_UNUSED void e2e_down(e2e_cluster *c)
{
    char cmd[1200];
    if (!c->up) return;
    E2E_FMT(cmd, sizeof cmd, "%s tests/devcluster/cluster.py down --state '%s' > '%s.down.log' 2>&1",
             getenv("PYTHON") ? getenv("PYTHON") : "python3", c->dir, c->dir);
    if (system(cmd) != 0) printf("  devcluster down failed: see %s.down.log\n", c->dir);
    c->up = 0;
}

/* One request to the cluster's admin listener (which serves the API too, is not
   restarted by /_admin/restart-api, and is never reached through kubectl); the body of
   the answer goes to *out (caller frees with sbx__buf_free). Returns the HTTP
   status, or -1. */
static E2E_UNUSED int e2e_http(e2e_cluster *c, const char *method, const char *target, const char *body, sbx__buf *out)
{
    sbx__conn conn;
    sbx__http_req req;
    sbx__http_resp resp;
    sbx_error e;
    int status = -1;
    sbx__buf_init(out, &c->a);
    sbx__conn_init(&conn, &c->ep, &c->a);
    memset(&req, 0, sizeof req);
    memset(&resp, 0, sizeof resp);
    req.method = method;
    req.target = target;
    req.headers = !body ? NULL
                  : strcmp(method, "PATCH") == 0 ? "Content-Type: application/merge-patch+json\r\n"
                                                 : "Content-Type: application/json\r\n";
    req.body = body;
    req.body_len = body ? strlen(body) : 0;
    req.body_fd = -1;
    if (sbx__http_do(&conn, &req, &resp, out, 64u << 20, sbx__deadline(10000), &e) == SBX_OK) status = resp.status;
    else printf("  e2e_http %s %s: %s\n", method, target, e.msg);
    sbx__http_resp_free(&resp);
    sbx__conn_free(&conn);
    return status;
}

/* Merge-patch the cluster's fault knobs, e.g. "{\"never_ready\":true}". */
static E2E_UNUSED int e2e_faults(e2e_cluster *c, const char *json)
{
    sbx__buf out;
    int st = e2e_http(c, "POST", "/_admin/faults", json, &out);
    sbx__buf_free(&out);
    return st == 200 ? 0 : -1;
}

/* Count items of a list answer (e.g. all SandboxClaims); -1 on error. */
static E2E_UNUSED int e2e_count(e2e_cluster *c, const char *target)
{
    sbx__buf out;
    sbx__jtok *t = NULL;
    int n, items, count = -1;
    if (e2e_http(c, "GET", target, NULL, &out) != 200) {
        sbx__buf_free(&out);
        return -1;
    }
    n = sbx__json_parse_alloc(&c->a, out.data, out.len, &t);
    items = n > 0 ? sbx__json_get(out.data, t, n, 0, "items") : -1;
    if (items >= 0) count = t[items].size;
    sbx__free(&c->a, t);
    sbx__buf_free(&out);
    return count;
}

/* Supervisors of this process's clients still running: they are not our
   children (their shell parent exited), but their $0 names our pid. */
static E2E_UNUSED int e2e_supervisor_count(void)
{
    DIR *d = opendir("/proc");
    struct dirent *de;
    char want[64];
    int n = 0;
    if (!d) return -1;
    E2E_FMT(want, sizeof want, "sandbox.h-supervisor:%d", (int)getpid());
    while ((de = readdir(d)) != NULL) {
        char buf[8192];
        long len, i;
        if (de->d_name[0] < '0' || de->d_name[0] > '9') continue;
        if ((len = test_cmdline(de->d_name, buf, sizeof buf, 0)) < 0) continue;
        for (i = 0; i < len; i += (long)strlen(buf + i) + 1)
            if (strcmp(buf + i, want) == 0) {
                n++;
                break;
            }
    }
    closedir(d);
    return n;
}

#define E2E_CLAIMS "/apis/extensions.agents.x-k8s.io/v1beta1/sandboxclaims"
#define E2E_SANDBOXES "/apis/agents.x-k8s.io/v1beta1/sandboxes"
#define E2E_PODS "/api/v1/pods"

/* ==== e2e suite helpers =================================================== */
typedef struct em_base {
    int fds, pods, children;
    int claims;               /* claims that stay (a suite's shared sandbox) */
    int supervisors;          /* of clients that stay open (a suite's shared client) */
} em_base;

/* Baseline of a suite: taken with no client open. */
static E2E_UNUSED void em_baseline(e2e_cluster *c, em_base *b)
{
    b->fds = test_fd_count();
    b->pods = e2e_count(c, E2E_PODS);
    b->children = test_child_count();
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
    CHECK_EQ_INT(test_fd_count(), b->fds);
    CHECK_EQ_INT(test_child_count(), b->children);
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

/* The start of a sandboxd suite: without Debian's grpcio, protobuf and protoc
   it is skipped (saying why, with its closing line); else a dev cluster named
   after it (e2e_grpc -> e2e-grpc) with the sandboxd pool of `replicas`, and
   the leftovers baseline. -1: go on; else the suite's exit status, its
   closing line printed. */
static E2E_UNUSED int em_sandboxd_suite_up(e2e_cluster *c, em_base *b, const char *suite, int replicas)
{
    char name[64];
    size_t i;
    if (system("/usr/bin/python3 -c 'import grpc, google.protobuf' >/dev/null 2>&1") != 0 ||
        system("command -v protoc >/dev/null 2>&1") != 0) {
        printf("SKIP %s: /usr/bin/python3 has no grpc/protobuf or protoc is missing "
               "(apt-get install -y python3-grpcio python3-protobuf protobuf-compiler)\n", suite);
        printf("%s: 0 passed, 0 failed, 1 skipped\n", suite);
        return 0;
    }
    E2E_FMT(name, sizeof name, "%s", suite);
    for (i = 0; name[i]; i++)
        if (name[i] == '_') name[i] = '-';
    if (e2e_up(c, name, "") != 0) {
        printf("%s: 0 passed, 1 failed\n", suite);
        return 1;
    }
    if (em_sandboxd_setup(c, replicas) != 0) {
        e2e_down(c);
        printf("%s: 0 passed, 1 failed\n", suite);
        return 1;
    }
    em_baseline(c, b);
    return -1;
}

/* A sandbox on em_sandboxd_setup's template. */
static E2E_UNUSED void em_cfg_sandboxd(sbx_sandbox_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->template_name = "sandboxd-template";
}

/* Open one on client cl: 0, or -1 after saying why. */
static E2E_UNUSED int em_open_sandboxd(sbx_client *cl, sbx_sandbox *sb)
{
    sbx_sandbox_config cfg;
    em_cfg_sandboxd(&cfg);
    if (sbx_open(sb, cl, &cfg) != SBX_OK) {
        printf("  open sandboxd: %s\n", sb->err.msg);
        return -1;
    }
    return 0;
}

/* `sh -c cmd` as a process of sb. */
static E2E_UNUSED sbx_result em_start_sh(sbx_process *p, sbx_sandbox *sb, const char *cmd)
{
    sbx_process_config pc;
    memset(&pc, 0, sizeof pc);
    pc.command = cmd;
    return sbx_process_start(p, sb, &pc);
}

/* Read a process to its end: stdout and stderr appended (cut at cap), exit code. */
typedef struct em_drained {
    char out[8192], err[2048];
    size_t out_len, err_len;
    unsigned long long total;
    int exit_code, events;
    sbx_result r;
    char msg[SBX_ERRMSG_SIZE];
} em_drained;

static E2E_UNUSED void em_drain(sbx_process *p, em_drained *d, int timeout_ms)
{
    sbx_process_event ev;
    memset(d, 0, sizeof *d);
    d->exit_code = -999;
    for (;;) {
        d->r = sbx_process_read(p, &ev, timeout_ms);
        if (d->r != SBX_OK) {
            snprintf(d->msg, sizeof d->msg, "%s", p->err.msg);
            return;
        }
        d->events++;
        if (ev.stream == SBX_STREAM_EXIT) {
            d->exit_code = ev.exit_code;
            return;
        }
        d->total += ev.len;
        if (ev.stream == SBX_STREAM_STDOUT) {
            size_t k = ev.len < sizeof d->out - 1 - d->out_len ? ev.len : sizeof d->out - 1 - d->out_len;
            memcpy(d->out + d->out_len, ev.data, k);
            d->out_len += k;
        } else {
            size_t k = ev.len < sizeof d->err - 1 - d->err_len ? ev.len : sizeof d->err - 1 - d->err_len;
            memcpy(d->err + d->err_len, ev.data, k);
            d->err_len += k;
        }
    }
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
        long long em_t0_;                                             \
        if (!test_selected(#name)) break;                             \
        em_t0_ = sbx__now_ms();                                       \
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

/* ==== a client program that ends without closing (issue 8) ================ */

#define EO_CLAIMS_NS "/apis/extensions.agents.x-k8s.io/v1beta1/namespaces/default/sandboxclaims"

/* ---- processes, by pid and start time ----------------------------------- */

typedef struct eo_proc_id {
    int pid;
    unsigned long long start;
} eo_proc_id;

/* the process still runs (a zombie has ended; a new process on the pid is another one) */
static E2E_UNUSED int eo_proc_alive(const eo_proc_id *id)
{
    char st;
    int ppid;
    unsigned long long start;
    return test_proc_read(id->pid, &st, &ppid, &start) && start == id->start && st != 'Z' && st != 'X';
}

/* children of `pid` (one level) into out; returns how many */
static E2E_UNUSED int eo_proc_children(int pid, eo_proc_id *out, int cap)
{
    DIR *d = opendir("/proc");
    struct dirent *de;
    int n = 0;
    if (!d) return 0;
    while ((de = readdir(d)) != NULL && n < cap) {
        char st;
        int ppid, p;
        unsigned long long start;
        if (de->d_name[0] < '0' || de->d_name[0] > '9') continue;
        p = atoi(de->d_name);
        if (test_proc_read(p, &st, &ppid, &start) && ppid == pid && st != 'Z') {
            out[n].pid = p;
            out[n].start = start;
            n++;
        }
    }
    closedir(d);
    return n;
}

static E2E_UNUSED int eo_proc_id_of(int pid, eo_proc_id *id)
{
    char st;
    int ppid;
    id->pid = pid;
    return test_proc_read(pid, &st, &ppid, &id->start);
}

/* ms until none of ids runs (polled every 10 ms), or -1 after limit_ms */
static E2E_UNUSED long long eo_wait_gone(const eo_proc_id *ids, int n, int limit_ms)
{
    long long t0 = sbx__now_ms();
    for (;;) {
        int i, alive = 0;
        for (i = 0; i < n; i++) alive += eo_proc_alive(&ids[i]);
        if (!alive) return sbx__now_ms() - t0;
        if (sbx__now_ms() - t0 > limit_ms) return -1;
        poll(NULL, 0, 10);
    }
}

static E2E_UNUSED int eo_claim_status(e2e_cluster *c, const char *name)
{
    char target[300];
    sbx__buf out;
    int st;
    E2E_FMT(target, sizeof target, EO_CLAIMS_NS "/%s", name);
    st = e2e_http(c, "GET", target, NULL, &out);
    sbx__buf_free(&out);
    return st;
}

/* ms until the claim is gone (404), or -1 after limit_ms */
static E2E_UNUSED long long eo_wait_claim_gone(e2e_cluster *c, const char *name, int limit_ms)
{
    long long t0 = sbx__now_ms();
    for (;;) {
        if (eo_claim_status(c, name) == 404) return sbx__now_ms() - t0;
        if (sbx__now_ms() - t0 > limit_ms) return -1;
        poll(NULL, 0, 100);
    }
}

/* ---- the client program -------------------------------------------------- */

enum { EO_END_RETURN, EO_END_SIGKILL, EO_END_SIGINT, EO_END_DETACH, EO_END_RETURN_2, EO_END_SIGKILL_LEASE, EO_END_SIGKILL_API_URL };

typedef struct eo_client_run {
    int pid;                  /* the client program */
    int sup;                  /* its supervisor */
    char claim[128], claim2[128];
    char sockdir[300];        /* kubectl proxy's private directory */
    eo_proc_id kids[16];         /* its children while it ran */
    int nkids;
    long long end_ms;         /* when it ended (was killed, or exited) */
} eo_client_run;

static E2E_UNUSED void eo_say(int fd, const char *s)
{
    size_t n = strlen(s);
    while (n > 0) {
        ssize_t w = write(fd, s, n);
        if (w <= 0) break;
        s += w;
        n -= (size_t)w;
    }
}

/* The forked program: a client, one sandbox (two with EO_END_RETURN_2), then
   the end `how`. */
static E2E_UNUSED void eo_client_main(e2e_cluster *c, int fd, int how, const char *try_name)
{
    sbx_client cl;
    sbx_client_config cc;
    sbx_sandbox sb, sb2;
    sbx_sandbox_config cfg;
    sbx_exec_result res;
    char line[512];
    memset(&cc, 0, sizeof cc);
    cc.kubeconfig = c->kubeconfig;
    if (how == EO_END_SIGKILL_API_URL) cc.api_url = c->api_url; /* no kubectl proxy */
    if (how == EO_END_SIGINT) setpgid(0, 0); /* its own group, like a shell job */
    if (sbx_client_open(&cl, &cc) != SBX_OK) {
        E2E_FMT(line, sizeof line, "ERR client: %s\n", cl.err.msg);
        eo_say(fd, line);
        _exit(1);
    }
    memset(&cfg, 0, sizeof cfg);
    cfg.template_name = "python-sandbox-template";
    if (how == EO_END_SIGKILL_LEASE) cfg.lease_seconds = 3;
    if (try_name) {
        /* someone else's name: 409, never ours */
        cfg.claim_name = try_name;
        if (sbx_open(&sb, &cl, &cfg) == SBX_OK) {
            eo_say(fd, "ERR opened someone else's claim\n");
            _exit(1);
        }
        cfg.claim_name = NULL;
    }
    if (sbx_open(&sb, &cl, &cfg) != SBX_OK) {
        E2E_FMT(line, sizeof line, "ERR open: %s\n", sb.err.msg);
        eo_say(fd, line);
        _exit(1);
    }
    if (sbx_run(&sb, "echo hi", &res) == SBX_OK) sbx_exec_result_free(&res);
    if (how == EO_END_RETURN_2 && sbx_open(&sb2, &cl, &cfg) != SBX_OK) {
        E2E_FMT(line, sizeof line, "ERR open 2: %s\n", sb2.err.msg);
        eo_say(fd, line);
        _exit(1);
    }
    E2E_FMT(line, sizeof line, "OK %d %s %s %s\n", (int)cl.impl->sup->pid, sbx_claim_name(&sb),
            how == EO_END_RETURN_2 ? sbx_claim_name(&sb2) : "-", cl.impl->sockdir ? cl.impl->sockdir : "-");
    eo_say(fd, line);
    if (how == EO_END_DETACH) sbx_detach(&sb);
    if (how == EO_END_SIGKILL || how == EO_END_SIGINT || how == EO_END_SIGKILL_LEASE || how == EO_END_SIGKILL_API_URL) {
        for (;;) pause(); /* the test ends it */
    }
    /* returns from main without closing anything: exit() without the
       sanitizer's leak report of what we deliberately did not free (the
       library registers no atexit handler, so this is the same to it) */
    poll(NULL, 0, 300); /* time for the parent to list our children */
    _exit(0);
}

/* Start the client program; wait for its report and list its children. 0 = ok. */
static E2E_UNUSED int eo_client_start(e2e_cluster *c, eo_client_run *r, int how, const char *try_name)
{
    int p[2], got = 0;
    char buf[512];
    long long dl = sbx__deadline(60000);
    memset(r, 0, sizeof *r);
    if (pipe(p) != 0) return -1;
    fflush(stdout);
    r->pid = (int)fork();
    if (r->pid < 0) return -1;
    if (r->pid == 0) {
        close(p[0]);
        eo_client_main(c, p[1], how, try_name);
        _exit(1);
    }
    close(p[1]);
    while (got < (int)sizeof buf - 1 && sbx__poll1(p[0], POLLIN, dl) == 1) {
        ssize_t n = read(p[0], buf + got, sizeof buf - 1 - (size_t)got);
        if (n <= 0) break;
        got += (int)n;
        if (memchr(buf, '\n', (size_t)got)) break;
    }
    close(p[0]);
    buf[got] = '\0';
    if (strncmp(buf, "OK ", 3) != 0 ||
        sscanf(buf + 3, "%d %127s %127s %299s", &r->sup, r->claim, r->claim2, r->sockdir) != 4) {
        printf("  client program: %s\n", got ? buf : "(no report)");
        kill(r->pid, SIGKILL);
        waitpid(r->pid, NULL, 0);
        return -1;
    }
    r->nkids = eo_proc_children(r->pid, r->kids, 16);
    return 0;
}

static E2E_UNUSED int eo_client_wait(eo_client_run *r)
{
    int st = 0;
    while (waitpid(r->pid, &st, 0) < 0 && errno == EINTR) {}
    if (!r->end_ms) r->end_ms = sbx__now_ms();
    return st;
}

static E2E_UNUSED int eo_client_kill(eo_client_run *r, int group, int sig)
{
    r->end_ms = sbx__now_ms();
    return kill(group ? -r->pid : r->pid, sig);
}
#endif
