/* tests/lib/e2e_owner.h - a client program that ends without closing, and what
   it leaves behind (issue 8): processes followed by pid and start time (a
   recycled pid is not a survivor), claims by name, and a forked copy of the
   suite that opens a client and a sandbox on the dev cluster and then ends as
   asked (returns without closing, waits to be SIGKILLed or Ctrl-C'ed, detaches
   first...). Linux (/proc). Used by test_e2e_owner.c; the fault matrix can use
   it for its "client SIGKILLed" and "client exits without close" rows.

   Include after e2e.h. */
#ifndef SBX_E2E_OWNER_H
#define SBX_E2E_OWNER_H
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>

#define EO_CLAIMS_NS "/apis/extensions.agents.x-k8s.io/v1beta1/namespaces/default/sandboxclaims"

/* ---- processes, by pid and start time ----------------------------------- */

typedef struct eo_proc_id {
    int pid;
    unsigned long long start;
} eo_proc_id;

/* state, parent and start time of pid from /proc; 0 if it does not exist */
static E2E_UNUSED int eo_proc_read(int pid, char *state, int *ppid, unsigned long long *start)
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

/* the process still runs (a zombie has ended; a new process on the pid is another one) */
static E2E_UNUSED int eo_proc_alive(const eo_proc_id *id)
{
    char st;
    int ppid;
    unsigned long long start;
    return eo_proc_read(id->pid, &st, &ppid, &start) && start == id->start && st != 'Z' && st != 'X';
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
        if (eo_proc_read(p, &st, &ppid, &start) && ppid == pid && st != 'Z') {
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
    return eo_proc_read(pid, &st, &ppid, &id->start);
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
