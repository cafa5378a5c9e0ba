/* test_e2e_sbx.c - the sbx command-line tool (examples/sbx.c, issue 12),
   driven as a user drives it: the BUILT binary build/sbx, fork/exec with
   pipes (a pty where a terminal matters), against a dev cluster with the real
   kubectl. The library is included only for the cluster helpers of test.h. */
#define _XOPEN_SOURCE 700 /* posix_openpt: the progress line needs a terminal */
#define SANDBOX_IMPLEMENTATION
#include "sandbox.h"
#include "test.h"

#include <fcntl.h>
#include <sys/ioctl.h>
#include <time.h>

/* build/sbx-asan (make builds it with the suite: ASan+UBSan, so a leak or an
   overflow in sbx changes the exit codes checked below), else build/sbx */
static const char *SBX_BIN = "build/sbx-asan";
#define TMPL "python-sandbox-template"
#define CLAIMS_NS "/apis/extensions.agents.x-k8s.io/v1beta1/namespaces/default/sandboxclaims"

static e2e_cluster C;
static em_base base;

typedef struct run_out {
    int rc;                  /* exit code; 128+N when killed by signal N; -1 when it did not run */
    sbx__buf out, err;       /* stdout; stderr (or the pty's output) */
} run_out;

static void run_free(run_out *r)
{
    sbx__buf_free(&r->out);
    sbx__buf_free(&r->err);
}

/* Run build/sbx with argv (NULL-terminated, without argv[0]), stdin from
   `in` (NULL: empty), extra environment `env` ({"K","V",...,NULL}, V NULL
   unsets), stderr on a pty when `pty`. Waits at most limit_ms, then SIGKILL. */
static void sbx_run_tool(const char *const *argv, const char *in, const char *const *env, int pty, int limit_ms,
                         run_out *r)
{
    int po[2], pe[2] = {-1, -1}, pi[2], master = -1, status = 0, n = 0, i;
    const char *args[64];
    pid_t pid;
    long long deadline = sbx__deadline(limit_ms);
    sbx__buf_init(&r->out, &C.a);
    sbx__buf_init(&r->err, &C.a);
    r->rc = -1;
    args[n++] = SBX_BIN;
    for (i = 0; argv[i] && n < 63; i++) args[n++] = argv[i];
    args[n] = NULL;
    if (pipe(po) != 0 || pipe(pi) != 0) return;
    if (pty) {
        master = posix_openpt(O_RDWR | O_NOCTTY);
        if (master < 0 || grantpt(master) != 0 || unlockpt(master) != 0) return;
    } else if (pipe(pe) != 0) {
        return;
    }
    pid = fork();
    if (pid == 0) {
        const char *const *kv;
        dup2(pi[0], 0);
        dup2(po[1], 1);
        if (pty) {
            int slave;
            setsid();
            slave = open(ptsname(master), O_RDWR);
            if (slave < 0) _exit(99);
            dup2(slave, 2);
            close(slave);
            close(master);
        } else {
            dup2(pe[1], 2);
            close(pe[0]);
            close(pe[1]);
        }
        close(po[0]);
        close(po[1]);
        close(pi[0]);
        close(pi[1]);
        for (kv = env; kv && kv[0]; kv += 2) {
            if (kv[1]) setenv(kv[0], kv[1], 1);
            else unsetenv(kv[0]);
        }
        execv(SBX_BIN, (char *const *)(void *)args);
        _exit(98);
    }
    close(po[1]);
    close(pi[0]);
    if (!pty) close(pe[1]);
    if (in && *in && write(pi[1], in, strlen(in)) < 0) printf("  stdin write failed\n");
    close(pi[1]);
    {
        struct pollfd fds[2];
        int open_out = 1, open_err = 1;
        fds[0].fd = po[0];
        fds[1].fd = pty ? master : pe[0];
        while ((open_out || open_err) && sbx__ms_left(deadline) > 0) {
            char buf[65536];
            int k;
            fds[0].events = open_out ? POLLIN : 0;
            fds[1].events = open_err ? POLLIN : 0;
            if (!open_out) fds[0].fd = -1;
            if (!open_err) fds[1].fd = -1;
            if (poll(fds, 2, 200) < 0) break;
            if (pty && open_err && waitpid(pid, &status, WNOHANG) == pid) {
                /* the pty has no EOF while we hold the master: drain what is left */
                ssize_t m;
                int fl = fcntl(master, F_GETFL);
                fcntl(master, F_SETFL, fl | O_NONBLOCK);
                while ((m = read(master, buf, sizeof buf)) > 0) sbx__buf_append(&r->err, buf, (size_t)m);
                open_err = 0;
                pid = -pid; /* reaped */
                continue;
            }
            for (k = 0; k < 2; k++) {
                ssize_t m;
                if (fds[k].fd < 0 || !(fds[k].revents & (POLLIN | POLLHUP | POLLERR))) continue;
                m = read(fds[k].fd, buf, sizeof buf);
                if (m > 0) sbx__buf_append(k ? &r->err : &r->out, buf, (size_t)m);
                else if (k) open_err = 0;
                else open_out = 0;
            }
        }
    }
    if (pid > 0) {
        while (waitpid(pid, &status, WNOHANG) == 0) {
            if (sbx__ms_left(deadline) == 0) {
                printf("  sbx did not end in %d ms: killed\n", limit_ms);
                kill(pid, SIGKILL);
                waitpid(pid, &status, 0);
                break;
            }
            poll(NULL, 0, 20);
        }
    }
    close(po[0]);
    if (pty) close(master);
    else close(pe[0]);
    r->rc = WIFEXITED(status) ? WEXITSTATUS(status) : WIFSIGNALED(status) ? 128 + WTERMSIG(status) : -1;
    if (!r->out.data) sbx__buf_append(&r->out, "", 0);
    if (!r->err.data) sbx__buf_append(&r->err, "", 0);
}

static const char *S(const sbx__buf *b) { return b->data ? b->data : ""; }

/* Is claim `name` in default present (not counting one being deleted)? */
static int claim_present(const char *name)
{
    char target[300];
    sbx__buf out;
    int st;
    E2E_FMT(target, sizeof target, "%s/%s", CLAIMS_NS, name);
    st = e2e_http(&C, "GET", target, NULL, &out);
    if (st == 200 && out.data && strstr(out.data, "\"deletionTimestamp\"")) st = 404;
    sbx__buf_free(&out);
    return st == 200;
}

static int wait_claims(int want, int limit_ms)
{
    long long deadline = sbx__deadline(limit_ms);
    int n = -1;
    while (sbx__ms_left(deadline) > 0) {
        n = e2e_count(&C, E2E_CLAIMS);
        if (n == want) break;
        poll(NULL, 0, 50);
    }
    return n;
}

/* The claim name `sbx run --keep -o json` prints as its last stderr line. */
static int kept_name(const run_out *r, char *name, size_t cap)
{
    const char *p = strstr(S(&r->err), "{\"claim\":\"");
    size_t n;
    if (!p) return -1;
    p += 10;
    n = strcspn(p, "\"");
    if (n == 0 || n >= cap) return -1;
    memcpy(name, p, n);
    name[n] = '\0';
    return 0;
}

static int keep_one(char *name, size_t cap)
{
    static const char *const a[] = {"run", "--keep", "-o", "json", "-t", TMPL, "--", "true", NULL};
    run_out r;
    int rc;
    sbx_run_tool(a, NULL, NULL, 0, 60000, &r);
    rc = r.rc == 0 ? kept_name(&r, name, cap) : -1;
    if (rc != 0) printf("  run --keep: exit %d: %s\n", r.rc, S(&r.err));
    run_free(&r);
    return rc;
}

/* Merge-patch a claim's metadata through the admin listener. */
static int patch_claim(const char *name, const char *json)
{
    char target[300];
    sbx__buf out;
    int st;
    E2E_FMT(target, sizeof target, "%s/%s", CLAIMS_NS, name);
    st = em_http(&C, "PATCH", target, "application/merge-patch+json", json, &out);
    sbx__buf_free(&out);
    return st == 200 ? 0 : -1;
}

/* ---- usage errors: exit 2, one line, and no contact with any cluster ------ */

TEST(usage_errors_exit_2_without_contact)
{
    static const char *const bad[][12] = {
        {"frobnicate", NULL},
        {NULL},
        {"run", "--bogus", "-t", TMPL, "--", "true", NULL},
        {"run", "-t", TMPL, "echo", "hi", NULL},
        {"run", "-t", TMPL, "--", NULL},
        {"run", "--", "true", NULL},
        {"run", "-t", "a", "-p", "b", "--", "true", NULL},
        {"run", "-e", "NOEQUALS", "-t", TMPL, "--", "true", NULL},
        {"run", "--timeout", "soon", "-t", TMPL, "--", "true", NULL},
        {"run", "-o", "yaml", "-t", TMPL, "--", "true", NULL},
        {"run", "-t", TMPL, NULL},
        {"exec", "--", "true", NULL},
        {"exec", "some-claim", "true", NULL},
        {"exec", "Bad_Name", "--", "true", NULL},
        {"cp", "/nonexistent/file", "some-claim:x", NULL},
        {"cp", "a", "b", NULL},
        {"cp", "Bad_Name:/x", "/tmp/y", NULL},
        {"cp", ":x", "/tmp/y", NULL},
        {"cp", "one-claim:a", "two-claim:b", NULL},
        {"cp", "some-claim:x", "/nonexistent/dir/", NULL},
        {"cp", "only-one-arg:x", NULL},
        {"cp", "some-claim:x", "", NULL},
        {"ls", "no-colon", NULL},
        {"ls", "-x", "some-claim:", NULL},
        {"ls", NULL},
        {"ps", "-o", "yaml", NULL},
        {"ps", "extra", NULL},
        {"rm", NULL},
        {"rm", "Bad_Name", NULL},
        {"gc", "--keep", NULL},
        {"-n", "Bad_NS", "ps", NULL},
        {"--kubeconfig", "/nonexistent/kubeconfig", "ps", NULL},
        {"shell", "a", "b", NULL},
        {"shell", "some-claim", "-t", TMPL, NULL},
        {"--context", NULL},
    };
    static const char *env[] = {"SANDBOX_KUBECTL", NULL, "KUBECONFIG", NULL, "SBX_TEMPLATE", NULL, NULL};
    char dir[1200], marker[1300], script[1300], kcfg[1300], body[2048], kc_arg[1400];
    struct sockaddr_in sa;
    socklen_t sl = sizeof sa;
    int lfd, port, fd;
    size_t i;
    FILE *f;
    /* a kubeconfig whose API server is a socket we listen on (nobody may
       connect), and a "kubectl" that leaves a marker when it is started at all */
    E2E_FMT(dir, sizeof dir, "%s/usage", C.dir);
    mkdir(dir, 0700);
    lfd = socket(AF_INET, SOCK_STREAM, 0);
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    CHECK(bind(lfd, (struct sockaddr *)&sa, sizeof sa) == 0 && listen(lfd, 16) == 0 &&
          getsockname(lfd, (struct sockaddr *)&sa, &sl) == 0);
    port = ntohs(sa.sin_port);
    fcntl(lfd, F_SETFL, fcntl(lfd, F_GETFL) | O_NONBLOCK);
    E2E_FMT(kcfg, sizeof kcfg, "%s/kubeconfig", dir);
    E2E_FMT(body, sizeof body,
            "apiVersion: v1\nkind: Config\nclusters:\n- name: trap\n  cluster:\n    server: http://127.0.0.1:%d\n"
            "contexts:\n- name: trap\n  context:\n    cluster: trap\n    user: trap\ncurrent-context: trap\n"
            "users:\n- name: trap\n  user: {}\n", port);
    f = fopen(kcfg, "w");
    if (f) {
        fputs(body, f);
        fclose(f);
    }
    E2E_FMT(marker, sizeof marker, "%s/kubectl-started", dir);
    E2E_FMT(script, sizeof script, "%s/kubectl", dir);
    f = fopen(script, "w");
    if (f) {
        fprintf(f, "#!/bin/sh\necho \"$@\" >> '%s'\nexec kubectl \"$@\"\n", marker);
        fclose(f);
    }
    chmod(script, 0755);
    env[1] = script;
    env[3] = kcfg;
    E2E_FMT(kc_arg, sizeof kc_arg, "--kubeconfig=%s", kcfg);
    for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        const char *argv[16];
        run_out r;
        int k, n = 0;
        size_t nl = 0;
        const char *e;
        argv[n++] = kc_arg;
        for (k = 0; bad[i][k]; k++) argv[n++] = bad[i][k];
        argv[n] = NULL;
        sbx_run_tool(argv, NULL, env, 0, 10000, &r);
        for (e = S(&r.err); *e; e++) nl += *e == '\n';
        CHECK_MSG(r.rc == 2, "case %d (%s ...): exit %d: %s", (int)i, bad[i][0] ? bad[i][0] : "(none)", r.rc,
                  S(&r.err));
        CHECK_MSG(nl == 1 && strncmp(S(&r.err), "sbx", 3) == 0, "case %d: not one line: \"%s\"", (int)i, S(&r.err));
        CHECK_MSG(r.out.len == 0, "case %d: stdout \"%s\"", (int)i, S(&r.out));
        run_free(&r);
    }
    CHECK_MSG(access(marker, F_OK) != 0, "kubectl was started by a usage error");
    fd = accept(lfd, NULL, NULL);
    CHECK_MSG(fd < 0 && (errno == EAGAIN || errno == EWOULDBLOCK), "something connected to the API server");
    if (fd >= 0) close(fd);
    /* the control: a valid command does reach kubectl (which the marker sees) */
    {
        static const char *const ok[] = {"ps", NULL};
        const char *argv[4] = {kc_arg, ok[0], NULL, NULL};
        run_out r;
        static const char *env2[] = {"SANDBOX_KUBECTL", NULL, "SANDBOX_API_URL", NULL, NULL};
        char bogus[1300];
        /* the API is "reached" through a bogus kubectl so the control ends at once */
        E2E_FMT(bogus, sizeof bogus, "%s/kubectl-fail", dir);
        f = fopen(bogus, "w");
        if (f) {
            fprintf(f, "#!/bin/sh\necho \"$@\" >> '%s'\necho 'error: no cluster here' >&2\nexit 1\n", marker);
            fclose(f);
        }
        chmod(bogus, 0755);
        env2[1] = bogus;
        sbx_run_tool(argv, NULL, env2, 0, 30000, &r);
        CHECK_MSG(r.rc == 1, "control: exit %d: %s", r.rc, S(&r.err));
        CHECK_MSG(access(marker, F_OK) == 0, "control: kubectl was not started");
        run_free(&r);
    }
    close(lfd);
    /* -h and --help on every command: exit 0, usage on stdout, nothing else */
    {
        static const char *const names[] = {"run", "exec", "cp", "ls", "shell", "ps", "rm", "gc", NULL};
        for (i = 0; names[i]; i++) {
            const char *argv[3] = {names[i], i % 2 ? "-h" : "--help", NULL};
            run_out r;
            char want[64];
            sbx_run_tool(argv, NULL, env, 0, 10000, &r);
            E2E_FMT(want, sizeof want, "usage: sbx %s", names[i]);
            CHECK_MSG(r.rc == 0 && strncmp(S(&r.out), want, strlen(want)) == 0, "%s --help: exit %d: %s", names[i],
                      r.rc, S(&r.out));
            run_free(&r);
        }
    }
    unlink(marker);
}

/* ---- run ------------------------------------------------------------------ */

TEST(run_streams_and_exit_code)
{
    static const char *const a[] = {"run", "-t", TMPL, "--", "sh", "-c", "echo out; echo err >&2; exit 7", NULL};
    static const char *const b[] = {"-v",  "run", "-e", "FOO=bar baz", "-e", "X=y=z", "-t", TMPL,
                                    "--",  "sh",  "-c", "printf '%s|%s' \"$FOO\" \"$X\"", NULL};
    static const char *const c[] = {"run", "--", "sh", "-c", "exit 300", NULL};
    run_out r;
    sbx_run_tool(a, NULL, NULL, 0, 60000, &r);
    CHECK_EQ_INT(r.rc, 7);
    CHECK_STR(S(&r.out), "out\n");
    CHECK_STR(S(&r.err), "err\n");
    run_free(&r);
    /* -e reaches the command; -v logs the library's steps on stderr */
    sbx_run_tool(b, NULL, NULL, 0, 60000, &r);
    CHECK_EQ_INT(r.rc, 0);
    CHECK_STR(S(&r.out), "bar baz|y=z");
    CHECK_MSG(strstr(S(&r.err), "claim-created") && strstr(S(&r.err), "claim-deleted"), "%s", S(&r.err));
    run_free(&r);
    /* SBX_TEMPLATE and SBX_NAMESPACE are the defaults; codes wrap like a shell's */
    {
        static const char *envt[] = {"SBX_TEMPLATE", TMPL, "SBX_NAMESPACE", "default", NULL};
        sbx_run_tool(c, NULL, envt, 0, 60000, &r);
        CHECK_EQ_INT(r.rc, 300 & 0xff);
        run_free(&r);
    }
    CHECK_EQ_INT(wait_claims(base.claims, 5000), base.claims);
}

/* stdout closed early (sbx run ... | head -c 1): sbx does not die of SIGPIPE
   but ends normally, deleting its sandbox */
TEST(run_with_closed_stdout_still_deletes)
{
    const char *argv[] = {SBX_BIN, "run", "-t", TMPL, "--", "sh", "-c", "echo hi; exit 3", NULL};
    int po[2], status = 0, devnull;
    long long dl = sbx__deadline(60000);
    pid_t pid;
    CHECK(pipe(po) == 0);
    close(po[0]); /* nobody reads */
    pid = fork();
    if (pid == 0) {
        devnull = open("/dev/null", O_RDWR);
        dup2(devnull, 0);
        dup2(po[1], 1);
        dup2(devnull, 2);
        execv(SBX_BIN, (char *const *)(void *)argv);
        _exit(98);
    }
    close(po[1]);
    while (waitpid(pid, &status, WNOHANG) == 0 && sbx__ms_left(dl) > 0) poll(NULL, 0, 20);
    if (sbx__ms_left(dl) == 0) {
        kill(pid, SIGKILL);
        waitpid(pid, &status, 0);
    }
    CHECK_MSG(WIFEXITED(status) && WEXITSTATUS(status) == 3, "status 0x%x", status);
    CHECK_EQ_INT(wait_claims(base.claims, 1000), base.claims);
}

TEST(run_fails_with_125_when_no_sandbox)
{
    static const char *const a[] = {"run", "-t", "no-such-template", "--", "true", NULL};
    run_out r;
    const char *e;
    size_t nl = 0;
    sbx_run_tool(a, NULL, NULL, 0, 60000, &r);
    CHECK_EQ_INT(r.rc, 125);
    for (e = S(&r.err); *e; e++) nl += *e == '\n';
    CHECK_MSG(nl == 1 && strstr(S(&r.err), "no-such-template"), "%s", S(&r.err));
    run_free(&r);
    CHECK_EQ_INT(wait_claims(base.claims, 5000), base.claims);
}

/* ---- keep, exec, ls, ps, rm ----------------------------------------------- */

TEST(keep_exec_ls_ps_rm)
{
    char name[128], target[300];
    run_out r;
    sbx__jtok *t = NULL;
    int n, i, k, found = 0;
    if (keep_one(name, sizeof name) != 0) {
        CHECK(0);
        return;
    }
    CHECK(claim_present(name));
    {
        const char *a[] = {"exec", name, "--", "sh", "-c", "mkdir -p d && printf hi > d/f && echo done; exit 3", NULL};
        sbx_run_tool(a, NULL, NULL, 0, 60000, &r);
        CHECK_EQ_INT(r.rc, 3);
        CHECK_STR(S(&r.out), "done\n");
        run_free(&r);
    }
    {
        const char *a[] = {"ls", target, NULL};
        E2E_FMT(target, sizeof target, "%s:", name);
        sbx_run_tool(a, NULL, NULL, 0, 60000, &r);
        CHECK_EQ_INT(r.rc, 0);
        CHECK_MSG(strstr(S(&r.out), "d/\n") != NULL, "%s", S(&r.out));
        run_free(&r);
    }
    {
        const char *a[] = {"ls", "-l", target, NULL};
        E2E_FMT(target, sizeof target, "%s:d", name);
        sbx_run_tool(a, NULL, NULL, 0, 60000, &r);
        CHECK_EQ_INT(r.rc, 0);
        {
            char ty = 0;
            long long sz = -1;
            CHECK_MSG(sscanf(S(&r.out), "%c %lld", &ty, &sz) == 2 && ty == '-' && sz == 2 && strstr(S(&r.out), "  f\n"),
                      "%s", S(&r.out));
        }
        run_free(&r);
    }
    {
        const char *a[] = {"ls", "-o", "json", target, NULL};
        sbx_run_tool(a, NULL, NULL, 0, 60000, &r);
        CHECK_EQ_INT(r.rc, 0);
        n = sbx__json_parse_alloc(&C.a, r.out.data, r.out.len, &t);
        CHECK_MSG(n > 0 && t[0].type == SBX__JSON_ARRAY && t[0].size == 1, "%s", S(&r.out));
        if (n > 0 && t[0].type == SBX__JSON_ARRAY && t[0].size == 1) {
            long long size = -1;
            int sz = sbx__json_get(r.out.data, t, n, 1, "size");
            CHECK(sbx__json_eq(r.out.data, t, sbx__json_get(r.out.data, t, n, 1, "name"), "f"));
            CHECK(sz >= 0 && sbx__json_int(r.out.data, t, sz, &size) == 0 && size == 2);
            CHECK(t[sbx__json_get(r.out.data, t, n, 1, "is_dir")].type == SBX__JSON_FALSE);
        }
        sbx__free(&C.a, t);
        run_free(&r);
    }
    {
        const char *a[] = {"ps", "-o", "json", NULL};
        sbx_run_tool(a, NULL, NULL, 0, 60000, &r);
        CHECK_EQ_INT(r.rc, 0);
        n = sbx__json_parse_alloc(&C.a, r.out.data, r.out.len, &t);
        CHECK_MSG(n > 0 && t[0].type == SBX__JSON_ARRAY, "%s", S(&r.out));
        if (n > 0 && t[0].type == SBX__JSON_ARRAY) {
            SBX__JSON_FOREACH(t, 0, i, k) {
                long long pid = 0, created = 0, now = (long long)time(NULL);
                if (!sbx__json_eq(r.out.data, t, sbx__json_get(r.out.data, t, n, i, "name"), name)) continue;
                found = 1;
                CHECK(sbx__json_eq(r.out.data, t, sbx__json_get(r.out.data, t, n, i, "state"), "kept"));
                CHECK(sbx__json_eq(r.out.data, t, sbx__json_get(r.out.data, t, n, i, "namespace"), "default"));
                CHECK(t[sbx__json_get(r.out.data, t, n, i, "ready")].type == SBX__JSON_TRUE);
                sbx__json_int(r.out.data, t, sbx__json_get(r.out.data, t, n, i, "owner_pid"), &pid);
                sbx__json_int(r.out.data, t, sbx__json_get(r.out.data, t, n, i, "created"), &created);
                CHECK(pid > 0 && pid != getpid());
                CHECK_MSG(created > now - 120 && created <= now + 2, "created %lld now %lld", created, now);
            }
        }
        CHECK_MSG(found, "%s not in ps: %s", name, S(&r.out));
        sbx__free(&C.a, t);
        run_free(&r);
    }
    /* -A: every namespace (a NAMESPACE column); -n elsewhere: not there;
       --context reaches kubectl (a bad one fails in kubectl's words) */
    {
        const char *a[] = {"ps", "-A", NULL};
        const char *b[] = {"-n", "kube-system", "ps", NULL};
        const char *c[] = {"--context", "no-such-context", "ps", NULL};
        char row[200];
        sbx_run_tool(a, NULL, NULL, 0, 60000, &r);
        E2E_FMT(row, sizeof row, "\ndefault              %s ", name);
        CHECK_MSG(r.rc == 0 && strncmp(S(&r.out), "NAMESPACE", 9) == 0 && strstr(S(&r.out), row), "%s", S(&r.out));
        run_free(&r);
        sbx_run_tool(b, NULL, NULL, 0, 60000, &r);
        CHECK_MSG(r.rc == 0 && !strstr(S(&r.out), name), "%s", S(&r.out));
        run_free(&r);
        sbx_run_tool(c, NULL, NULL, 0, 60000, &r);
        CHECK_MSG(r.rc == 1 && strstr(S(&r.err), "context \"no-such-context\" does not exist"), "%s", S(&r.err));
        run_free(&r);
    }
    {
        const char *a[] = {"rm", name, NULL};
        sbx_run_tool(a, NULL, NULL, 0, 60000, &r);
        CHECK_EQ_INT(r.rc, 0);
        run_free(&r);
        CHECK(!claim_present(name));
        sbx_run_tool(a, NULL, NULL, 0, 60000, &r);
        CHECK_EQ_INT(r.rc, 1);
        CHECK_MSG(strstr(S(&r.err), name) && strstr(S(&r.err), "no SandboxClaim"), "%s", S(&r.err));
        run_free(&r);
    }
    CHECK_EQ_INT(wait_claims(base.claims, 5000), base.claims);
}

/* ---- cp ------------------------------------------------------------------- */

static int file_equal(const char *a, const char *b)
{
    FILE *fa = fopen(a, "rb"), *fb = fopen(b, "rb");
    int eq = fa && fb;
    while (eq) {
        char x[65536], y[65536];
        size_t na = fread(x, 1, sizeof x, fa), nb = fread(y, 1, sizeof y, fb);
        if (na != nb || memcmp(x, y, na) != 0) eq = 0;
        if (na == 0) break;
    }
    if (fa) fclose(fa);
    if (fb) fclose(fb);
    return eq;
}

TEST(cp_50mb_round_trip_and_progress_on_tty)
{
    char name[128], src[1200], back[1200], remote[300], dir[1200];
    run_out r;
    FILE *f;
    int i;
    long long t0;
    if (keep_one(name, sizeof name) != 0) {
        CHECK(0);
        return;
    }
    E2E_FMT(src, sizeof src, "%s/cp-src.bin", C.dir);
    E2E_FMT(back, sizeof back, "%s/cp-back.bin", C.dir);
    E2E_FMT(dir, sizeof dir, "%s/cpdir", C.dir);
    mkdir(dir, 0700);
    f = fopen(src, "wb");
    {
        /* 50 MB of every byte value in a pseudo-random order */
        unsigned long x = 88172645463325252ul & 0xfffffffful;
        static unsigned char blk[1 << 20];
        for (i = 0; i < 50 && f; i++) {
            size_t k;
            for (k = 0; k < sizeof blk; k++) {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                x &= 0xfffffffful;
                blk[k] = (unsigned char)(x >> 7);
            }
            fwrite(blk, 1, sizeof blk, f);
        }
        if (f) fclose(f);
    }
    E2E_FMT(remote, sizeof remote, "%s:up/big.bin", name);
    {
        const char *a[] = {"cp", src, remote, NULL};
        t0 = sbx__now_ms();
        sbx_run_tool(a, NULL, NULL, 0, 120000, &r);
        printf("  50 MiB up: %lld ms\n", em_since(t0));
        CHECK_EQ_INT(r.rc, 0);
        CHECK_MSG(r.err.len == 0, "no progress off a terminal: \"%s\"", S(&r.err)); /* not a TTY: silent */
        run_free(&r);
    }
    {
        const char *a[] = {"cp", remote, back, NULL};
        t0 = sbx__now_ms();
        sbx_run_tool(a, NULL, NULL, 0, 120000, &r);
        printf("  50 MiB down: %lld ms\n", em_since(t0));
        CHECK_EQ_INT(r.rc, 0);
        CHECK_MSG(r.err.len == 0, "\"%s\"", S(&r.err));
        run_free(&r);
        CHECK(file_equal(src, back));
    }
    /* into a directory: the base name; nothing left beside it */
    {
        const char *a[] = {"cp", remote, dir, NULL};
        char got[1300];
        DIR *d;
        struct dirent *de;
        int files = 0;
        sbx_run_tool(a, NULL, NULL, 0, 120000, &r);
        CHECK_EQ_INT(r.rc, 0);
        run_free(&r);
        E2E_FMT(got, sizeof got, "%s/big.bin", dir);
        CHECK(file_equal(src, got));
        unlink(got);
        /* a file that is not there: exit 1, the message, no partial file */
        E2E_FMT(remote, sizeof remote, "%s:up/nope.bin", name);
        sbx_run_tool(a, NULL, NULL, 0, 60000, &r);
        CHECK_EQ_INT(r.rc, 1);
        CHECK_MSG(strstr(S(&r.err), "nope.bin") != NULL, "%s", S(&r.err));
        run_free(&r);
        d = opendir(dir);
        while (d && (de = readdir(d)) != NULL) files += de->d_name[0] != '.' || strncmp(de->d_name, ".sbx", 4) == 0;
        if (d) closedir(d);
        CHECK_EQ_INT(files, 0);
        E2E_FMT(remote, sizeof remote, "%s:up/big.bin", name);
    }
    /* stderr on a terminal: the progress line (bytes, rate; ETA while it runs) */
    {
        const char *a[] = {"cp", src, remote, NULL};
        sbx_run_tool(a, NULL, NULL, 1, 120000, &r);
        CHECK_EQ_INT(r.rc, 0);
        CHECK_MSG(strstr(S(&r.err), "50.0 MiB / 50.0 MiB  100%") && strstr(S(&r.err), "/s"), "%s", S(&r.err));
        run_free(&r);
        a[1] = remote;
        a[2] = back;
        unlink(back);
        sbx_run_tool(a, NULL, NULL, 1, 120000, &r);
        CHECK_EQ_INT(r.rc, 0);
        CHECK_MSG(strstr(S(&r.err), "50.0 MiB / 50.0 MiB  100%") != NULL, "%s", S(&r.err));
        run_free(&r);
        CHECK(file_equal(src, back));
    }
    unlink(src);
    unlink(back);
    {
        const char *a[] = {"rm", name, NULL};
        sbx_run_tool(a, NULL, NULL, 0, 60000, &r);
        CHECK_EQ_INT(r.rc, 0);
        run_free(&r);
    }
    CHECK_EQ_INT(wait_claims(base.claims, 5000), base.claims);
}

/* ---- ps and gc: only orphans go ---------------------------------------------- */

/* The claims, as they would be met:
   - kept: `sbx run --keep` (label sbx.sandbox.h/keep): gc leaves it;
   - orphan: another `run --keep` whose keep label is then removed. Its owner
     (that sbx process) has exited, so this is exactly what a program that
     died without its supervisor's cleanup (SIGKILLed together with it, or its
     machine rebooted) leaves behind: the library's owner annotations naming a
     process that is gone. (A real owner killed alone would see its claim
     deleted by its supervisor within ~2 s: nothing left for gc.)
   - other-host: like orphan, with sandbox.h/owner-host patched to another
     host: gc cannot judge that pid from here and must leave it;
   - reused: like orphan, but owner-pid names a live process (this test)
     whose start time is not owner-start: the pid was reused, the owner is gone;
   - running: `sbx shell -t` still running (its stdin held open);
   - foreign: a claim made without the library (no owner label): not listed. */
TEST(ps_and_gc_remove_only_orphans)
{
    char kept[128], orphan[128], other[128], reused[128], live[128] = "", patch[300];
    const char *shell[] = {SBX_BIN, "shell", "-t", TMPL, NULL};
    int pin[2], st, n, i, k;
    pid_t sh;
    run_out r;
    sbx__buf out;
    sbx__jtok *t = NULL;
    long long deadline;
    if (keep_one(kept, sizeof kept) != 0 || keep_one(orphan, sizeof orphan) != 0 || keep_one(other, sizeof other) != 0 ||
        keep_one(reused, sizeof reused) != 0) {
        CHECK(0);
        return;
    }
    CHECK_EQ_INT(patch_claim(orphan, "{\"metadata\":{\"labels\":{\"sbx.sandbox.h/keep\":null}}}"), 0);
    CHECK_EQ_INT(patch_claim(other, "{\"metadata\":{\"labels\":{\"sbx.sandbox.h/keep\":null},"
                                    "\"annotations\":{\"sandbox.h/owner-host\":\"elsewhere.example\"}}}"), 0);
    E2E_FMT(patch, sizeof patch, "{\"metadata\":{\"labels\":{\"sbx.sandbox.h/keep\":null},"
                                 "\"annotations\":{\"sandbox.h/owner-pid\":\"%d\",\"sandbox.h/owner-start\":\"12345\"}}}",
            (int)getpid());
    CHECK_EQ_INT(patch_claim(reused, patch), 0);
    st = e2e_http(&C, "POST", CLAIMS_NS,
                  "{\"apiVersion\":\"extensions.agents.x-k8s.io/v1beta1\",\"kind\":\"SandboxClaim\","
                  "\"metadata\":{\"name\":\"foreign-claim\"},\"spec\":{\"warmPoolRef\":{\"name\":\"python-sandbox-coldpool\"}}}",
                  &out);
    sbx__buf_free(&out);
    CHECK_EQ_INT(st, 201);
    /* the live owner: a shell in its line loop, waiting on a pipe we hold */
    CHECK(pipe(pin) == 0);
    sh = fork();
    if (sh == 0) {
        int devnull = open("/dev/null", O_WRONLY);
        dup2(pin[0], 0);
        dup2(devnull, 1);
        dup2(devnull, 2);
        close(pin[0]);
        close(pin[1]);
        execv(SBX_BIN, (char *const *)(void *)shell);
        _exit(98);
    }
    close(pin[0]);
    deadline = sbx__deadline(30000);
    while (!live[0] && sbx__ms_left(deadline) > 0) { /* its claim: the one not ours above */
        static const char *const a[] = {"ps", "-o", "json", NULL};
        sbx_run_tool(a, NULL, NULL, 0, 30000, &r);
        n = sbx__json_parse_alloc(&C.a, r.out.data, r.out.len, &t);
        if (n > 0 && t[0].type == SBX__JSON_ARRAY) {
            SBX__JSON_FOREACH(t, 0, i, k) {
                int nm = sbx__json_get(r.out.data, t, n, i, "name");
                if (sbx__json_eq(r.out.data, t, sbx__json_get(r.out.data, t, n, i, "state"), "running") &&
                    t[sbx__json_get(r.out.data, t, n, i, "ready")].type == SBX__JSON_TRUE)
                    sbx__json_unescape(r.out.data, t, nm, live, sizeof live, NULL);
            }
        }
        sbx__free(&C.a, t);
        run_free(&r);
        if (!live[0]) poll(NULL, 0, 200);
    }
    CHECK_MSG(live[0], "the running shell's claim never showed in ps");
    /* ps: every claim of ours, with its owner's state; not the foreign one */
    {
        static const char *const a[] = {"ps", "-o", "json", NULL};
        const char *names[5] = {kept, orphan, other, live, reused};
        const char *states[5] = {"kept", "orphan", "other-host", "running", "orphan"};
        int seen[5] = {0, 0, 0, 0, 0}, total = 0, q;
        sbx_run_tool(a, NULL, NULL, 0, 30000, &r);
        CHECK_EQ_INT(r.rc, 0);
        n = sbx__json_parse_alloc(&C.a, r.out.data, r.out.len, &t);
        if (n > 0 && t[0].type == SBX__JSON_ARRAY) {
            SBX__JSON_FOREACH(t, 0, i, k) {
                int nm = sbx__json_get(r.out.data, t, n, i, "name"), s2 = sbx__json_get(r.out.data, t, n, i, "state");
                total++;
                CHECK_MSG(!sbx__json_eq(r.out.data, t, nm, "foreign-claim"), "ps lists a claim not made by sandbox.h");
                for (q = 0; q < 5; q++)
                    if (sbx__json_eq(r.out.data, t, nm, names[q])) {
                        seen[q] = 1;
                        CHECK_MSG(sbx__json_eq(r.out.data, t, s2, states[q]), "%s: want state %s: %s", names[q],
                                  states[q], S(&r.out));
                    }
            }
        }
        sbx__free(&C.a, t);
        CHECK_EQ_INT(total, 5);
        CHECK(seen[0] && seen[1] && seen[2] && seen[3] && seen[4]);
        run_free(&r);
        /* the table: a header and one row per claim, the orphan marked */
        {
            static const char *const b[] = {"ps", NULL};
            sbx_run_tool(b, NULL, NULL, 0, 30000, &r);
            CHECK_EQ_INT(r.rc, 0);
            CHECK_MSG(strncmp(S(&r.out), "NAME", 4) == 0 && strstr(S(&r.out), orphan) &&
                      strstr(S(&r.out), " orphan\n") && strstr(S(&r.out), "elsewhere.example:"), "%s", S(&r.out));
            run_free(&r);
        }
    }
    /* gc --dry-run says, deletes nothing */
    {
        static const char *const a[] = {"gc", "--dry-run", NULL};
        sbx_run_tool(a, NULL, NULL, 0, 30000, &r);
        CHECK_EQ_INT(r.rc, 0);
        CHECK_MSG(strstr(S(&r.out), orphan) && strstr(S(&r.out), "would delete") && strstr(S(&r.out), "left alone") &&
                  !strstr(S(&r.out), kept) && !strstr(S(&r.out), live), "%s", S(&r.out));
        run_free(&r);
        CHECK(claim_present(orphan));
    }
    /* gc deletes the orphan only */
    {
        static const char *const a[] = {"gc", NULL};
        sbx_run_tool(a, NULL, NULL, 0, 30000, &r);
        CHECK_EQ_INT(r.rc, 0);
        CHECK_MSG(strstr(S(&r.out), orphan) && strstr(S(&r.out), reused) && strstr(S(&r.out), "deleted"), "%s",
                  S(&r.out));
        run_free(&r);
        CHECK(!claim_present(orphan));
        CHECK(!claim_present(reused));
        CHECK(claim_present(kept));
        CHECK(claim_present(other));
        CHECK(claim_present(live));
        CHECK(claim_present("foreign-claim"));
    }
    /* the live shell ends at end of input and deletes its own claim */
    close(pin[1]);
    {
        int status = 0;
        long long dl = sbx__deadline(30000);
        while (waitpid(sh, &status, WNOHANG) == 0 && sbx__ms_left(dl) > 0) poll(NULL, 0, 20);
        if (sbx__ms_left(dl) == 0) {
            kill(sh, SIGKILL);
            waitpid(sh, &status, 0);
        }
        CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    }
    {
        const char *a[] = {"rm", kept, other, "foreign-claim", NULL};
        sbx_run_tool(a, NULL, NULL, 0, 30000, &r);
        CHECK_EQ_INT(r.rc, 0);
        run_free(&r);
    }
    CHECK_EQ_INT(wait_claims(base.claims, 10000), base.claims);
}

/* ---- Ctrl-C --------------------------------------------------------------- */

/* SIGINT to `sbx -v run` (as a terminal's Ctrl-C sends it) at the step its
   log names on stderr ("[info] route": the command is about to run or
   running; "[info] claim-created": the sandbox is still starting): exit 130
   and no claim left. */
static void interrupt_run(const char **argv, const char *step, int after_ms)
{
    pid_t pid;
    int status = 0, devnull, pe[2];
    long long deadline = sbx__deadline(30000), t0;
    char log[8192];
    size_t got = 0;
    if (pipe(pe) != 0) return;
    pid = fork();
    if (pid == 0) {
        devnull = open("/dev/null", O_RDWR);
        dup2(devnull, 0);
        dup2(devnull, 1);
        dup2(pe[1], 2);
        close(pe[0]);
        close(pe[1]);
        execv(SBX_BIN, (char *const *)(void *)argv);
        _exit(98);
    }
    close(pe[1]);
    log[0] = '\0';
    while (!strstr(log, step) && sbx__ms_left(deadline) > 0 && got < sizeof log - 1) {
        struct pollfd pf;
        ssize_t m;
        pf.fd = pe[0];
        pf.events = POLLIN;
        if (poll(&pf, 1, 100) <= 0) continue;
        m = read(pe[0], log + got, sizeof log - 1 - got);
        if (m <= 0) break;
        got += (size_t)m;
        log[got] = '\0';
    }
    CHECK_MSG(strstr(log, step) != NULL, "no \"%s\" in: %s", step, log);
    poll(NULL, 0, after_ms);
    kill(pid, SIGINT);
    t0 = sbx__now_ms();
    while (waitpid(pid, &status, WNOHANG) == 0 && sbx__ms_left(deadline) > 0) poll(NULL, 0, 20);
    if (sbx__ms_left(deadline) == 0) {
        kill(pid, SIGKILL);
        waitpid(pid, &status, 0);
    }
    close(pe[0]);
    CHECK_MSG(WIFEXITED(status) && WEXITSTATUS(status) == 130, "status 0x%x", status);
    printf("  exit %lld ms after SIGINT at %s\n", em_since(t0), step);
    /* its DELETE was answered before it exited: gone at once (bounded wait
       only for a create that landed after that DELETE: the supervisor's) */
    CHECK_EQ_INT(wait_claims(base.claims, 5000), base.claims);
}

TEST(ctrl_c_during_run_leaves_no_claim)
{
    const char *a[] = {SBX_BIN, "-v", "run", "-t", TMPL, "--", "sleep", "30", NULL};
    const char *b[] = {SBX_BIN, "-v", "run", "-p", "python-sandbox-coldpool", "--", "true", NULL};
    interrupt_run(a, "[info] route", 500);
    /* while the sandbox is still starting (a slow cold start) */
    e2e_faults(&C, "{\"cold_start_ms\":4000}");
    interrupt_run(b, "[info] claim-created", 100);
    e2e_faults(&C, "{\"cold_start_ms\":null}");
}

/* ---- shell (line loop on the python runtime) -------------------------------- */

TEST(shell_line_loop)
{
    static const char *const a[] = {"shell", "-t", TMPL, NULL};
    run_out r;
    sbx_run_tool(a, "echo a\n\nprintf 'b\\n' >&2; exit 4\nexit\necho never\n", NULL, 0, 60000, &r);
    CHECK_EQ_INT(r.rc, 4);
    CHECK_STR(S(&r.out), "a\n");
    CHECK_STR(S(&r.err), "[exit 0]\nb\n[exit 4]\n");
    run_free(&r);
    CHECK_EQ_INT(wait_claims(base.claims, 5000), base.claims);
}

/* ---- sandboxd: streamed run, per-process env, the PTY shell ------------------ */

/* Read the pty master for ms milliseconds into out. */
static void pty_pump(int master, sbx__buf *out, int ms)
{
    long long deadline = sbx__deadline(ms);
    while (sbx__ms_left(deadline) > 0) {
        struct pollfd pf;
        char buf[8192];
        ssize_t m;
        pf.fd = master;
        pf.events = POLLIN;
        if (poll(&pf, 1, sbx__ms_left(deadline)) <= 0) continue;
        m = read(master, buf, sizeof buf);
        if (m <= 0) break;
        sbx__buf_append(out, buf, (size_t)m);
    }
}

static void pty_say(int master, const char *s)
{
    if (write(master, s, strlen(s)) < 0) printf("  pty write failed\n");
}

TEST(sandboxd_streams_and_pty_shell)
{
    static const char *const a[] = {"run", "-p", "sandboxd-pool", "-e", "FOO=bar baz", "--",
                                    "sh", "-c", "echo out $FOO; echo err >&2; exit 7", NULL};
    static const char *const b[] = {"run", "-p", "sandboxd-pool", "--timeout", "1", "--", "sleep", "5", NULL};
    const char *sh[] = {SBX_BIN, "shell", "-p", "sandboxd-pool", NULL};
    sbx_client cl;
    sbx_sandbox sb;
    sbx_sandbox_config cfg;
    unsigned caps = 0;
    run_out r;
    if (em_sandboxd_setup(&C, 1) != 0) {
        CHECK(0);
        return;
    }
    base.pods = e2e_count(&C, E2E_PODS); /* the pool's pod stays (and is replaced after each claim) */
    /* does this build speak sandboxd's process API (gRPC)? ask the library */
    memset(&cfg, 0, sizeof cfg);
    cfg.warm_pool = "sandboxd-pool";
    if (em_client(&C, &cl, SBX_MODE_POD_TUNNEL, NULL) == SBX_OK && sbx_open(&sb, &cl, &cfg) == SBX_OK)
        caps = sbx_capabilities(&sb);
    sbx_close(&sb);
    sbx_client_close(&cl);
    if (!(caps & SBX_CAP_PROCESS)) SKIP("sandboxd has no process API in this build (sbx_capabilities lacks SBX_CAP_PROCESS)");
    /* streamed, each stream to its own; -e as the process's environment */
    sbx_run_tool(a, NULL, NULL, 0, 60000, &r);
    CHECK_EQ_INT(r.rc, 7);
    CHECK_STR(S(&r.out), "out bar baz\n");
    CHECK_STR(S(&r.err), "err\n");
    run_free(&r);
    sbx_run_tool(b, NULL, NULL, 0, 60000, &r);
    CHECK_MSG(r.rc == 124 && strstr(S(&r.err), "timed out"), "exit %d: %s", r.rc, S(&r.err));
    run_free(&r);
    /* a real terminal: size, resize (SIGWINCH), Ctrl-C to the sandbox's
       foreground job (not to sbx), exit code of the shell */
    {
        int master = posix_openpt(O_RDWR | O_NOCTTY), status = 0;
        struct winsize ws;
        sbx__buf out;
        pid_t pid;
        long long dl;
        CHECK(master >= 0 && grantpt(master) == 0 && unlockpt(master) == 0);
        if (master < 0) return;
        memset(&ws, 0, sizeof ws);
        ws.ws_row = 40;
        ws.ws_col = 100;
        ioctl(master, TIOCSWINSZ, &ws);
        pid = fork();
        if (pid == 0) {
            int slave;
            setsid();
            slave = open(ptsname(master), O_RDWR); /* the controlling terminal */
            if (slave < 0) _exit(99);
            dup2(slave, 0);
            dup2(slave, 1);
            dup2(slave, 2);
            close(slave);
            close(master);
            execv(SBX_BIN, (char *const *)(void *)sh);
            _exit(98);
        }
        sbx__buf_init(&out, &C.a);
        pty_pump(master, &out, 3000);
        pty_say(master, "stty size\r");
        pty_pump(master, &out, 1500);
        ws.ws_row = 33;
        ws.ws_col = 77;
        ioctl(master, TIOCSWINSZ, &ws);
        kill(pid, SIGWINCH);
        pty_pump(master, &out, 500);
        pty_say(master, "stty size\r");
        pty_pump(master, &out, 1500);
        pty_say(master, "sleep 30; echo not-reached\r");
        pty_pump(master, &out, 1000);
        pty_say(master, "\003");
        pty_pump(master, &out, 1000);
        pty_say(master, "echo after-$((6*7))\r");
        pty_pump(master, &out, 1500);
        pty_say(master, "exit 5\r");
        dl = sbx__deadline(15000);
        while (waitpid(pid, &status, WNOHANG) == 0 && sbx__ms_left(dl) > 0) pty_pump(master, &out, 100);
        if (sbx__ms_left(dl) == 0) {
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
        }
        close(master);
        sbx__buf_append(&out, "", 0);
        CHECK_MSG(WIFEXITED(status) && WEXITSTATUS(status) == 5, "status 0x%x", status);
        CHECK_MSG(strstr(S(&out), "40 100") && strstr(S(&out), "33 77") && strstr(S(&out), "after-42") &&
                  !strstr(S(&out), "\nnot-reached"), "%s", S(&out));
        sbx__buf_free(&out);
    }
    CHECK_EQ_INT(wait_claims(base.claims, 5000), base.claims);
}

TEST(nothing_left)
{
    em_settle(&C, &base);
}

int main(void)
{
    long long t0 = sbx__now_ms();
    if (access(SBX_BIN, X_OK) != 0) SBX_BIN = "build/sbx";
    printf("driving %s\n", SBX_BIN);
    if (access(SBX_BIN, X_OK) != 0) {
        printf("test_e2e_sbx: %s is not built (make %s)\n", SBX_BIN, SBX_BIN);
        printf("e2e_sbx: 0 passed, 1 failed, 0 skipped\n");
        return 1;
    }
    e2e_pick_kubectl();
    if (e2e_up(&C, "e2e-sbx", NULL) != 0) {
        printf("e2e_sbx: 0 passed, 1 failed, 0 skipped\n");
        return 1;
    }
    setenv("KUBECONFIG", C.kubeconfig, 1);
    unsetenv("SBX_TEMPLATE");
    unsetenv("SBX_NAMESPACE");
    em_baseline(&C, &base);
    EM_RUN(usage_errors_exit_2_without_contact);
    EM_RUN(run_streams_and_exit_code);
    EM_RUN(run_with_closed_stdout_still_deletes);
    EM_RUN(run_fails_with_125_when_no_sandbox);
    EM_RUN(keep_exec_ls_ps_rm);
    EM_RUN(cp_50mb_round_trip_and_progress_on_tty);
    EM_RUN(ps_and_gc_remove_only_orphans);
    EM_RUN(ctrl_c_during_run_leaves_no_claim);
    EM_RUN(shell_line_loop);
    EM_RUN(sandboxd_streams_and_pty_shell);
    EM_RUN(nothing_left);
    e2e_down(&C);
    printf("suite took %lld ms\n", em_since(t0));
    return test_summary("e2e_sbx");
}
