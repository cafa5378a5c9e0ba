/* tests/e2e/faults.c - the fault matrix (issue 8): the seed workflow (open a
   sandbox from python-sandbox-template, run a command, write and read a file,
   close) through sandbox.h with the real kubectl against ONE dev cluster, once
   per fault, then what was left behind: claims, sandboxes and pods (beyond the
   seed's), processes started during the row that still exist, and descriptors
   of this process. Prints one table and "faults: N passed, N failed"; exits 1
   when a row failed. A row passes when the workflow succeeds (or, for "never
   ready", fails with SBX_ERR_TIMEOUT within ready_timeout_ms + 2 s) AND leaves
   nothing behind.

   build/faults [ROW-SUBSTRING...]   run all rows, or those whose name contains one
   build/faults --child kill|exit KUBECONFIG   (internal) the client of the SIGKILL /
                                     exit-without-close rows

   Processes are told apart by an environment marker (SBX_FAULTS_ROW=<pid>-<row>)
   set before each row: whatever the library starts inherits it, so a process it
   leaves behind is found even after it was re-parented to init. */
#define SANDBOX_IMPLEMENTATION
#include "sandbox.h"
#include "test.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/types.h>
#include <sys/wait.h>

#define READY_TIMEOUT_NEVER 3000
#define MAX_PIDS 256

enum row_kind {
    K_FLOW,        /* the workflow under the row's fault knobs */
    K_NEVER,       /* never ready: must fail with SBX_ERR_TIMEOUT in time */
    K_KILL_PROXY,  /* SIGKILL the client's kubectl proxy after open */
    K_KILL_TUNNEL, /* cut the sandbox's tunnel after open (its kubectl port-forward, or server side) */
    K_RESTART,     /* restart the API server (down 1 s) after open */
    K_CHILD_KILL,  /* a client program SIGKILLed after open */
    K_CHILD_EXIT   /* a client program returning from main without closing */
};

typedef struct row {
    const char *name;
    const char *faults; /* JSON merge patch of the dev cluster's knobs, or NULL */
    const char *pool;   /* a warm pool to use instead of the template (cold start rows) */
    enum row_kind kind;
    /* results */
    int ran, pass;
    long long ms;
    int claims, sandboxes, pods, procs, fds;
    char outcome[48];
    char note[1200];
} row;

#define ROW(name, faults, pool, kind) {name, faults, pool, kind, 0, 0, 0, 0, 0, 0, 0, 0, "", ""}
#define COLD "python-sandbox-coldpool"
static row ROWS[] = {
    ROW("none", NULL, NULL, K_FLOW),
    ROW("slow ready", "{\"cold_start_ms\":1500}", COLD, K_FLOW),
    ROW("slow create", "{\"controller_delay_ms\":300}", NULL, K_FLOW),
    ROW("watch drop (abrupt)", "{\"watch_drop_after\":1,\"cold_start_ms\":800}", COLD, K_FLOW),
    ROW("watch drop (clean)", "{\"watch_end_after\":1,\"cold_start_ms\":800}", COLD, K_FLOW),
    ROW("410 on resume", "{\"watch_drop_after\":1,\"watch_expired_every\":2,\"cold_start_ms\":800}", COLD, K_FLOW),
    ROW("410 every 2nd watch",
        "{\"watch_end_after\":1,\"watch_expired_every\":2,\"watch_expired_http\":true,\"cold_start_ms\":800}", COLD,
        K_FLOW),
    ROW("API 500 every 2nd request", "{\"api_error_every\":2}", NULL, K_FLOW),
    ROW("API 500 every 3rd request", "{\"api_error_every\":3}", NULL, K_FLOW),
    ROW("API 500 every 5th request", "{\"api_error_every\":5}", NULL, K_FLOW),
    ROW("API 500 every 7th request", "{\"api_error_every\":7}", NULL, K_FLOW),
    ROW("+50 ms API latency", "{\"api_latency_ms\":50}", NULL, K_FLOW),
    ROW("proxy killed mid-session", NULL, NULL, K_KILL_PROXY),
    ROW("tunnel killed mid-session", NULL, NULL, K_KILL_TUNNEL),
    ROW("API server restarted mid-session", NULL, NULL, K_RESTART),
    ROW("never ready", "{\"never_ready\":true}", NULL, K_NEVER),
    ROW("client SIGKILLed mid-session", NULL, NULL, K_CHILD_KILL),
    ROW("client exits without close", NULL, NULL, K_CHILD_EXIT),
};
#define NROWS ((int)(sizeof ROWS / sizeof ROWS[0]))

static const char RESET[] =
    "{\"controller_delay_ms\":null,\"cold_start_ms\":null,\"never_ready\":null,\"delete_claim_after_ms\":null,"
    "\"api_error_every\":null,\"api_error_code\":null,\"api_429_every\":null,\"retry_after\":null,"
    "\"api_fault_match\":null,\"api_latency_ms\":null,\"watch_drop_after\":null,\"watch_end_after\":null,"
    "\"watch_expired\":null,\"watch_expired_every\":null,\"watch_expired_http\":null,\"portforward\":null,"
    "\"runtime\":null}";

static e2e_cluster C;
static int base_sandboxes, base_pods;
static char marker[64]; /* "SBX_FAULTS_ROW=<pid>-<row>" */
static const char *route_seen;  /* the pod route the first open used, as seen from outside */

#if defined(__GNUC__) || defined(__clang__)
static void note(row *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
#endif
static void note(row *r, const char *fmt, ...)
{
    size_t n = strlen(r->note);
    va_list ap;
    if (n + 3 >= sizeof r->note) return;
    if (n) {
        memcpy(r->note + n, "; ", 3);
        n += 2;
    }
    va_start(ap, fmt);
    vsnprintf(r->note + n, sizeof r->note - n, fmt, ap);
    va_end(ap);
}

/* ------------------------------------------------------------------ processes */

typedef struct pinfo {
    int pid, ppid;
    char state;
    unsigned long long start;
} pinfo;

static int proc_stat(int pid, pinfo *p)
{
    p->pid = pid;
    return test_proc_read(pid, &p->state, &p->ppid, &p->start) ? 0 : -1;
}

/* Reads a NUL-separated /proc file (cmdline, environ) into buf; its length, or -1. */
static long proc_file(int pid, const char *what, char *buf, size_t cap)
{
    char path[64];
    int fd;
    long n = 0, k;
    E2E_FMT(path, sizeof path, "/proc/%d/%s", pid, what);
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    while ((size_t)n < cap - 1 && (k = (long)read(fd, buf + n, cap - 1 - (size_t)n)) > 0) n += k;
    close(fd);
    buf[n] = '\0';
    return n;
}

static int nul_list_has(const char *buf, long n, const char *item)
{
    long i = 0;
    while (i < n) {
        if (strcmp(buf + i, item) == 0) return 1;
        i += (long)strlen(buf + i) + 1;
    }
    return 0;
}

/* Every process (not a zombie) that carries this row's marker, besides us. */
static int marked(int *pids, int cap)
{
    DIR *d = opendir("/proc");
    struct dirent *de;
    static char env[1 << 16];
    int n = 0;
    if (!d) return 0;
    while ((de = readdir(d)) != NULL) {
        int pid = atoi(de->d_name);
        long len;
        pinfo p;
        if (pid <= 0 || pid == (int)getpid()) continue;
        if (proc_stat(pid, &p) != 0 || p.state == 'Z' || p.state == 'X') continue;
        len = proc_file(pid, "environ", env, sizeof env);
        if (len > 0 && nul_list_has(env, len, marker) && n < cap) pids[n++] = pid;
    }
    closedir(d);
    return n;
}

/* Descendants of root (any depth), zombies included; returns how many. */
static int descendants(int root, pinfo *out, int cap)
{
    DIR *d;
    struct dirent *de;
    pinfo all[4096];
    int nall = 0, n = 0, i, grew = 1;
    d = opendir("/proc");
    if (!d) return 0;
    while ((de = readdir(d)) != NULL && nall < 4096) {
        int pid = atoi(de->d_name);
        if (pid > 0 && proc_stat(pid, &all[nall]) == 0) nall++;
    }
    closedir(d);
    while (grew) {
        grew = 0;
        for (i = 0; i < nall; i++) {
            int j, parent_in = all[i].ppid == root, known = 0;
            for (j = 0; j < n; j++) {
                if (out[j].pid == all[i].pid) known = 1;
                if (out[j].pid == all[i].ppid) parent_in = 1;
            }
            if (parent_in && !known && n < cap) {
                out[n++] = all[i];
                grew = 1;
            }
        }
    }
    return n;
}

/* The pid of a descendant of ours whose argv has `arg` ("proxy", "port-forward"), or 0. */
static int find_kubectl(const char *arg)
{
    pinfo ds[MAX_PIDS];
    static char cmd[1 << 14];
    int n = descendants((int)getpid(), ds, MAX_PIDS), i;
    for (i = 0; i < n; i++) {
        long len;
        if (ds[i].state == 'Z') continue;
        len = proc_file(ds[i].pid, "cmdline", cmd, sizeof cmd);
        if (len > 0 && nul_list_has(cmd, len, arg)) return ds[i].pid;
    }
    return 0;
}

/* Our own children that are zombies (a child the library did not reap). */
static int zombie_children(void)
{
    pinfo ds[MAX_PIDS];
    int n = descendants((int)getpid(), ds, MAX_PIDS), i, z = 0;
    for (i = 0; i < n; i++)
        if (ds[i].ppid == (int)getpid() && ds[i].state == 'Z') z++;
    return z;
}

/* Processes left from this row: marked ones plus zombies of ours; r (if not
   NULL) notes what the first few are. */
static int leftover_procs(row *r)
{
    int pids[MAX_PIDS], n = marked(pids, MAX_PIDS), i;
    static char cmd[1 << 14];
    for (i = 0; r && i < n && i < 4; i++) {
        char shown[120];
        size_t used = 0;
        long len = proc_file(pids[i], "cmdline", cmd, sizeof cmd), k = 0;
        pinfo p;
        int ppid = proc_stat(pids[i], &p) == 0 ? p.ppid : -1, skip = 0;
        shown[0] = '\0';
        /* the command without its --kubeconfig path (long, and the same for all) */
        while (k < len && used + 2 < sizeof shown) {
            const char *a = cmd + k, *slash = strrchr(a, '/');
            k += (long)strlen(a) + 1;
            if (skip || strncmp(a, "--kubeconfig", 12) == 0) {
                skip = !skip && strcmp(a, "--kubeconfig") == 0;
                continue;
            }
            if (a == cmd && slash) a = slash + 1;
            used += (size_t)snprintf(shown + used, sizeof shown - used, "%s%s", used ? " " : "", a);
            if (used >= sizeof shown) used = sizeof shown - 1;
        }
        for (k = 0; shown[k]; k++)
            if (shown[k] == '\n' || shown[k] == '\t') shown[k] = ' ';
        note(r, "left: pid %d (ppid %d) %.70s", pids[i], ppid, len > 0 ? shown : "?");
    }
    return n + zombie_children();
}

/* After measuring: end what the row left (all started by this process tree). */
static void cleanup_procs(void)
{
    int pids[MAX_PIDS], n = marked(pids, MAX_PIDS), i;
    for (i = 0; i < n; i++) kill(pids[i], SIGKILL);
    if (n) poll(NULL, 0, 200);
    while (waitpid(-1, NULL, WNOHANG) > 0) {
    }
}

/* ------------------------------------------------------------------ cluster */

static int count(const char *target)
{
    return e2e_count(&C, target);
}

/* Wait up to ms for claims 0, sandboxes and pods back to the seed's; record the deltas. */
static void settle(row *r, int ms)
{
    long long deadline = sbx__deadline(ms);
    for (;;) {
        r->claims = count(E2E_CLAIMS);
        r->sandboxes = count(E2E_SANDBOXES) - base_sandboxes;
        r->pods = count(E2E_PODS) - base_pods;
        if ((r->claims == 0 && r->sandboxes == 0 && r->pods == 0) || sbx__ms_left(deadline) <= 0) break;
        poll(NULL, 0, 50);
    }
}

static void cleanup_cluster(void)
{
    sbx__buf out;
    row tmp;
    e2e_faults(&C, RESET);
    e2e_http(&C, "DELETE", "/apis/extensions.agents.x-k8s.io/v1beta1/namespaces/default/sandboxclaims", NULL,
             &out);
    sbx__buf_free(&out);
    memset(&tmp, 0, sizeof tmp);
    settle(&tmp, 15000);
}

static void admin_post(row *r, const char *target, const char *body)
{
    sbx__buf out;
    int st = e2e_http(&C, "POST", target, body, &out);
    if (st != 200) note(r, "POST %s: HTTP %d %.*s", target, st, (int)(out.len > 200 ? 200 : out.len),
                        out.data ? out.data : "");
    sbx__buf_free(&out);
}

/* ------------------------------------------------------------------ the workflow */

static void cfg_for(sbx_sandbox_config *cfg, const row *r)
{
    memset(cfg, 0, sizeof *cfg);
    if (r && r->pool) cfg->warm_pool = r->pool;
    else cfg->template_name = "python-sandbox-template";
    cfg->ns = "default";
    cfg->ready_timeout_ms = r && r->kind == K_NEVER ? READY_TIMEOUT_NEVER : 30000;
    cfg->tunnel_timeout_ms = 15000;
    cfg->call_timeout_ms = 15000;
}

static void client_cfg(sbx_client_config *cc, const char *kubeconfig)
{
    memset(cc, 0, sizeof *cc);
    cc->kubeconfig = kubeconfig;
    cc->proxy_timeout_ms = 15000;
    cc->api_timeout_ms = 10000;
}

/* Records the first failed step of the row (its outcome) and every failure's words. */
static void step_fail(row *r, const char *step, const sbx_error *e)
{
    note(r, "%s: %s: %s", step, sbx_strerror(e->code), e->msg);
    if (!r->outcome[0]) snprintf(r->outcome, sizeof r->outcome, "FAIL %s", step);
}

/* Until pid is dead (a zombie or gone), at most 2 s, then 100 ms more: the
   fault happened between two calls, as it would mid-session, not during one. */
static void wait_dead(int pid)
{
    long long deadline = sbx__deadline(2000);
    pinfo p;
    while (sbx__ms_left(deadline) > 0 && proc_stat(pid, &p) == 0 && p.state != 'Z' && p.state != 'X')
        poll(NULL, 0, 5);
    poll(NULL, 0, 100);
}

/* The mid-session fault of the row; 0 when it could not be applied. */
static int mid_session(row *r)
{
    if (r->kind == K_KILL_PROXY) {
        int pid = find_kubectl("proxy");
        if (!pid) {
            note(r, "no kubectl proxy process to kill");
            return 0;
        }
        kill(pid, SIGKILL);
        wait_dead(pid);
        note(r, "SIGKILLed kubectl proxy %d", pid);
    } else if (r->kind == K_KILL_TUNNEL) {
        int pid = find_kubectl("port-forward");
        if (pid) {
            kill(pid, SIGKILL);
            wait_dead(pid);
            note(r, "SIGKILLed kubectl port-forward %d", pid);
        } else {
            admin_post(r, "/_admin/kill-portforwards", "{}");
            poll(NULL, 0, 100);
            note(r, "no kubectl port-forward: cut the server-side tunnels");
        }
    } else if (r->kind == K_RESTART) {
        admin_post(r, "/_admin/restart-api?down_ms=1000", NULL);
        poll(NULL, 0, 100);
        note(r, "API listener down for 1000 ms");
    }
    return 1;
}

static void flow(row *r)
{
    sbx_client cl;
    sbx_client_config cc;
    sbx_sandbox sb;
    sbx_sandbox_config cfg;
    sbx_exec_result res;
    static const char data[] = "fault matrix\nline 2\n";
    char *back = NULL;
    size_t back_len = 0;
    sbx_result rc;
    long long t0;
    client_cfg(&cc, C.kubeconfig);
    cfg_for(&cfg, r);
    memset(&sb, 0, sizeof sb);
    t0 = sbx__now_ms();
    if (sbx_client_open(&cl, &cc) != SBX_OK) {
        step_fail(r, "client open", &cl.err);
        r->ms = sbx__now_ms() - t0;
        return;
    }
    rc = sbx_open(&sb, &cl, &cfg);
    if (r->kind == K_NEVER) {
        r->ms = sbx__now_ms() - t0;
        if (rc == SBX_ERR_TIMEOUT && r->ms <= READY_TIMEOUT_NEVER + 2000) {
            snprintf(r->outcome, sizeof r->outcome, "TIMEOUT (expected)");
            r->pass = 1;
        } else if (rc == SBX_OK) {
            snprintf(r->outcome, sizeof r->outcome, "FAIL opened");
            sbx_close(&sb);
        } else {
            step_fail(r, "open", &sb.err);
            if (rc == SBX_ERR_TIMEOUT) note(r, "took %lld ms, limit %d", r->ms, READY_TIMEOUT_NEVER + 2000);
        }
        sbx_client_close(&cl);
        return;
    }
    if (rc != SBX_OK) {
        step_fail(r, "open", &sb.err);
        goto out;
    }
    if (!route_seen)
        route_seen = find_kubectl("port-forward") ? "kubectl port-forward (a child per sandbox)"
                                                  : "no kubectl port-forward child (in-process)";
    if (!mid_session(r)) snprintf(r->outcome, sizeof r->outcome, "FAIL setup");
    if (sbx_run(&sb, "echo fault-matrix", &res) != SBX_OK) {
        step_fail(r, "run", &sb.err);
    } else {
        if (res.exit_code != 0 || res.out_len != 13 || memcmp(res.out, "fault-matrix\n", 13) != 0) {
            note(r, "run: exit %d, stdout \"%.40s\"", res.exit_code, res.out ? res.out : "");
            if (!r->outcome[0]) snprintf(r->outcome, sizeof r->outcome, "FAIL run output");
        }
        sbx_exec_result_free(&res);
    }
    if (sbx_write(&sb, "faults/matrix.txt", data, sizeof data - 1) != SBX_OK) {
        step_fail(r, "write", &sb.err);
    } else if (sbx_read(&sb, "faults/matrix.txt", &back, &back_len) != SBX_OK) {
        step_fail(r, "read", &sb.err);
    } else if (back_len != sizeof data - 1 || memcmp(back, data, back_len) != 0) {
        note(r, "read back %zu bytes, not what was written", back_len);
        if (!r->outcome[0]) snprintf(r->outcome, sizeof r->outcome, "FAIL read data");
    }
    sbx_free(back);
    if (sbx_close(&sb) != SBX_OK) step_fail(r, "close", &sb.err);
out:
    sbx_client_close(&cl);
    r->ms = sbx__now_ms() - t0;
    r->pass = !r->outcome[0];
    if (r->pass) snprintf(r->outcome, sizeof r->outcome, "ok");
}

/* ------------------------------------------------------------------ child client rows */

static const char *self_exe;

/* The client program of the SIGKILL / exit rows: open a sandbox, run a command,
   say "OPEN <claim>" and wait; in exit mode return from main without closing
   once told to (a byte on stdin). */
static int child_main(const char *mode, const char *kubeconfig)
{
    sbx_client cl;
    sbx_client_config cc;
    sbx_sandbox sb;
    sbx_sandbox_config cfg;
    sbx_exec_result res;
    char c;
    client_cfg(&cc, kubeconfig);
    cfg_for(&cfg, NULL);
    if (sbx_client_open(&cl, &cc) != SBX_OK) {
        printf("ERROR client open: %s\n", cl.err.msg);
        return 1;
    }
    if (sbx_open(&sb, &cl, &cfg) != SBX_OK) {
        printf("ERROR open: %s\n", sb.err.msg);
        return 1;
    }
    if (sbx_run(&sb, "echo child", &res) != SBX_OK) {
        printf("ERROR run: %s\n", sb.err.msg);
        return 1;
    }
    sbx_exec_result_free(&res);
    printf("OPEN %s\n", sbx_claim_name(&sb));
    fflush(stdout);
    while (read(0, &c, 1) < 0 && errno == EINTR) {
    }
    if (strcmp(mode, "exit") == 0) return 0; /* without sbx_close / sbx_client_close */
    for (;;) pause();
}

/* Recorded descendants still alive (same start time, not a zombie) that carry no marker
   (the marked ones are counted by leftover_procs). */
static int recorded_alive(const pinfo *ds, int n)
{
    int i, k, alive = 0;
    for (i = 0; i < n; i++) {
        pinfo now;
        if (proc_stat(ds[i].pid, &now) == 0 && now.start == ds[i].start && now.state != 'Z' && now.state != 'X') {
            int pids[MAX_PIDS], m = marked(pids, MAX_PIDS), dup = 0;
            for (k = 0; k < m; k++) dup |= pids[k] == ds[i].pid;
            if (!dup) alive++;
        }
    }
    return alive;
}

static void child_row(row *r)
{
    int in[2], outp[2], n, status;
    pid_t pid;
    pinfo ds[MAX_PIDS];
    char line[600];
    size_t len = 0;
    long long t0 = sbx__now_ms(), t_end, dl;
    const char *mode = r->kind == K_CHILD_KILL ? "kill" : "exit";
    if (pipe(in) != 0 || pipe(outp) != 0 || fcntl(in[1], F_SETFD, FD_CLOEXEC) != 0 ||
        fcntl(outp[0], F_SETFD, FD_CLOEXEC) != 0) {
        note(r, "pipe: %s", strerror(errno));
        snprintf(r->outcome, sizeof r->outcome, "FAIL setup");
        return;
    }
    fflush(stdout);
    pid = fork();
    if (pid == 0) {
        dup2(in[0], 0);
        dup2(outp[1], 1);
        close(in[0]);
        close(in[1]);
        close(outp[0]);
        close(outp[1]);
        /* the client leaks on purpose (no close): no leak report at its exit */
        setenv("ASAN_OPTIONS", "detect_leaks=0", 1);
        execl(self_exe, self_exe, "--child", mode, C.kubeconfig, (char *)NULL);
        _exit(127);
    }
    close(in[0]);
    close(outp[1]);
    /* wait for "OPEN <claim>" (or an error line / exit) */
    dl = sbx__deadline(40000);
    line[0] = '\0';
    while (sbx__ms_left(dl) > 0 && !memchr(line, '\n', len)) {
        struct pollfd p;
        ssize_t got;
        p.fd = outp[0];
        p.events = POLLIN;
        if (poll(&p, 1, 200) <= 0) continue;
        got = read(outp[0], line + len, sizeof line - 1 - len);
        if (got <= 0) break;
        len += (size_t)got;
        line[len] = '\0';
    }
    if (strncmp(line, "OPEN ", 5) != 0) {
        note(r, "child client: %s", line[0] ? line : "no answer");
        snprintf(r->outcome, sizeof r->outcome, "FAIL child open");
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        close(in[1]);
        close(outp[0]);
        r->ms = sbx__now_ms() - t0;
        return;
    }
    /* its descendants, recorded before it goes (the marker finds any others) */
    n = descendants((int)pid, ds, MAX_PIDS);
    if (r->kind == K_CHILD_KILL) {
        kill(pid, SIGKILL);
        note(r, "SIGKILLed the client (%d descendants)", n);
    } else {
        if (write(in[1], "x", 1) != 1) note(r, "could not tell the client to exit");
        note(r, "client returned from main (%d descendants)", n);
    }
    waitpid(pid, &status, 0);
    t_end = sbx__now_ms();
    close(in[1]);
    close(outp[0]);
    /* processes 2 s after the owner ended (and, to say how late they are, when they went) */
    poll(NULL, 0, 2000);
    r->procs = recorded_alive(ds, n) + leftover_procs(r);
    if (r->procs) {
        long long gone = -1;
        while (sbx__now_ms() - t_end < 10000) {
            if (recorded_alive(ds, n) + leftover_procs(NULL) == 0) {
                gone = sbx__now_ms() - t_end;
                break;
            }
            poll(NULL, 0, 50);
        }
        if (gone >= 0) note(r, "%d processes alive 2 s after the client ended, gone after %lld ms", r->procs, gone);
        else note(r, "%d processes alive 2 s after the client ended, still there after 10 s", r->procs);
    }
    /* claims: up to 10 s after the owner ended */
    settle(r, (int)(10000 - (sbx__now_ms() - t_end)));
    r->ms = sbx__now_ms() - t0;
    r->pass = r->procs == 0 && r->claims == 0;
    snprintf(r->outcome, sizeof r->outcome, r->pass ? "ok" : "FAIL leftovers");
}

/* ------------------------------------------------------------------ the matrix */

static void run_row(row *r, int index)
{
    int fds0;
    E2E_FMT(marker, sizeof marker, "SBX_FAULTS_ROW=%d-%d", (int)getpid(), index);
    setenv("SBX_FAULTS_ROW", marker + strlen("SBX_FAULTS_ROW="), 1);
    e2e_faults(&C, RESET);
    fds0 = e2e_fd_count();
    if (r->faults && e2e_faults(&C, r->faults) != 0) note(r, "could not set the faults %s", r->faults);
    r->ran = 1;
    if (r->kind == K_CHILD_KILL || r->kind == K_CHILD_EXIT) {
        child_row(r);
    } else {
        int procs;
        long long closed;
        flow(r);
        closed = sbx__now_ms();
        e2e_faults(&C, RESET);
        settle(r, 10000);
        /* processes still there 2 s after the client was closed */
        while ((procs = leftover_procs(NULL)) != 0 && sbx__now_ms() - closed < 2000) poll(NULL, 0, 50);
        r->procs = procs ? leftover_procs(r) : 0;
    }
    e2e_faults(&C, RESET);
    r->fds = e2e_fd_count() - fds0;
    if (r->claims || r->sandboxes || r->pods || r->procs || r->fds) {
        if (r->pass) snprintf(r->outcome, sizeof r->outcome, "FAIL leftovers");
        r->pass = 0;
    }
    cleanup_procs();
    if (r->claims || r->sandboxes || r->pods) cleanup_cluster();
    unsetenv("SBX_FAULTS_ROW");
}

static int wanted(const row *r, int argc, char **argv)
{
    int i;
    if (argc <= 1) return 1;
    for (i = 1; i < argc; i++)
        if (strstr(r->name, argv[i])) return 1;
    return 0;
}

static int failed_rows(void)
{
    int i, n = 0;
    for (i = 0; i < NROWS; i++) n += ROWS[i].ran && !ROWS[i].pass;
    return n;
}

static const char *route_name(void)
{
    const char *env = getenv("SANDBOX_POD_ROUTE");
    return env && *env ? env : "library default";
}

int main(int argc, char **argv)
{
    int i, passed = 0, failed = 0;
    long long t0 = sbx__now_ms();
    char exe[1024];
    ssize_t n;
    if (argc == 4 && strcmp(argv[1], "--child") == 0) return child_main(argv[2], argv[3]);
    n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0) {
        printf("faults: cannot find /proc/self/exe\nfaults: 0 passed, 1 failed\n");
        return 1;
    }
    exe[n] = '\0';
    self_exe = exe;
    setvbuf(stdout, NULL, _IOLBF, 0);
    e2e_pick_kubectl();
    if (e2e_up(&C, "faults", "") != 0) {
        printf("faults: 0 passed, 1 failed\n");
        return 1;
    }
    base_sandboxes = count(E2E_SANDBOXES);
    base_pods = count(E2E_PODS);
    printf("fault matrix: sandbox.h %s, kubectl %s, pod route: %s (SANDBOX_POD_ROUTE), seed: %d sandboxes, %d pods\n",
           SANDBOX_VERSION_STRING, getenv("SANDBOX_KUBECTL") ? getenv("SANDBOX_KUBECTL") : "on PATH",
           route_name(), base_sandboxes, base_pods);
    for (i = 0; i < NROWS; i++) {
        if (!wanted(&ROWS[i], argc, argv)) continue;
        run_row(&ROWS[i], i);
        printf("  ran %-34s %s (%lld ms)\n", ROWS[i].name, ROWS[i].outcome, ROWS[i].ms);
    }
    e2e_down(&C);
    if (!failed_rows()) { /* keep the cluster's state and logs only when something failed */
        char cmd[3300];
        E2E_FMT(cmd, sizeof cmd, "rm -rf '%s' '%s.up.log' '%s.down.log'", C.dir, C.dir, C.dir);
        if (system(cmd) != 0) printf("could not remove %s\n", C.dir);
    } else {
        printf("dev cluster state and log kept in %s\n", C.dir);
    }
    printf("\n%-34s %-20s %8s | %6s %9s %5s %5s %4s\n", "fault", "outcome", "time", "claims", "sandboxes",
           "pods", "procs", "fds");
    printf("%.*s\n", 100, "----------------------------------------------------------------------------------------------------");
    for (i = 0; i < NROWS; i++) {
        row *r = &ROWS[i];
        if (!r->ran) continue;
        printf("%-34s %-20s %6lld ms | %6d %9d %5d %5d %4d\n", r->name, r->outcome, r->ms, r->claims, r->sandboxes,
               r->pods, r->procs, r->fds);
        if (r->pass) passed++;
        else failed++;
    }
    printf("\nnotes:\n");
    for (i = 0; i < NROWS; i++) {
        row *r = &ROWS[i];
        if (!r->ran || (!r->note[0] && !r->faults && !r->pool)) continue;
        printf("  %-32s %s%s%s%s%s\n", r->name, r->faults ? r->faults : "", r->pool ? " pool " : "",
               r->pool ? r->pool : "", r->note[0] && (r->faults || r->pool) ? " | " : "", r->note);
    }
    printf("(leftovers: claims; sandboxes and pods beyond the seed's; processes started during the row that still exist\n"
           " 2 s after the owner ended or after close; descriptors of this process. Wall time %lld s.)\n",
           (sbx__now_ms() - t0) / 1000);
    if (route_seen) printf("pod route seen: %s\n", route_seen);
    printf("faults: %d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
