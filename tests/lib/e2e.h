/* tests/lib/e2e.h - helpers for the end-to-end suites: each suite starts its own
   dev cluster (tests/devcluster) and drives it with the real kubectl through
   sandbox.h, then checks that nothing was left behind: no claim, no extra pod,
   no runtime process, no descriptor, no child process.

   Include after sandbox.h's implementation (the helpers use its HTTP client
   to talk to the cluster's API and admin endpoints). */
#ifndef SBX_E2E_H
#define SBX_E2E_H
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <stdarg.h>

#if defined(__GNUC__) || defined(__clang__)
#define E2E_UNUSED __attribute__((unused))
#else
#define E2E_UNUSED
#endif

/* snprintf where a cut-off is acceptable (keeps gcc's truncation warning for
   the library itself, where it matters) */
static E2E_UNUSED void E2E_FMT(char *buf, size_t cap, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, cap, fmt, ap);
    va_end(ap);
}

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
        char path[300], buf[8192];
        size_t len, i;
        FILE *f;
        if (de->d_name[0] < '0' || de->d_name[0] > '9') continue;
        E2E_FMT(path, sizeof path, "/proc/%s/cmdline", de->d_name);
        if (!(f = fopen(path, "r"))) continue;
        len = fread(buf, 1, sizeof buf - 1, f);
        fclose(f);
        buf[len] = '\0';
        for (i = 0; i < len; i += strlen(buf + i) + 1)
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

/* Descriptors open in this process. */
static E2E_UNUSED int e2e_fd_count(void)
{
    DIR *d = opendir("/proc/self/fd");
    struct dirent *de;
    int n = 0;
    if (!d) return -1;
    while ((de = readdir(d)) != NULL)
        if (de->d_name[0] != '.') n++;
    closedir(d);
    return n - 1; /* the DIR's own descriptor */
}

/* Child processes of this process that still exist (running or zombie). */
static E2E_UNUSED int e2e_child_count(void)
{
    DIR *d = opendir("/proc");
    struct dirent *de;
    int n = 0;
    pid_t me = getpid();
    if (!d) return -1;
    while ((de = readdir(d)) != NULL) {
        char path[300], buf[4096];
        FILE *f;
        char *p;
        if (de->d_name[0] < '0' || de->d_name[0] > '9') continue;
        E2E_FMT(path, sizeof path, "/proc/%s/stat", de->d_name);
        f = fopen(path, "r");
        if (!f) continue;
        buf[0] = '\0';
        if (!fgets(buf, sizeof buf, f)) buf[0] = '\0';
        fclose(f);
        p = strrchr(buf, ')');
        if (p) {
            char state;
            int ppid;
            if (sscanf(p + 1, " %c %d", &state, &ppid) == 2 && ppid == (int)me) n++;
        }
    }
    closedir(d);
    return n;
}
#endif
