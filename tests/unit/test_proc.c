/* tests/unit/test_proc.c - the child-process manager (>>proc): spawn, readiness
   lines, exit and exec failures, environment and descriptors of the child,
   the never-blocking drainer (5,000 connections while the library is idle),
   stop with grace and SIGKILL escalation, grandchildren holding the pipes,
   16 concurrent children, and the real kubectl when it is on PATH.

   Every test ends with two checks: the descriptors open in this process are
   exactly those open before the test, and no child of ours is left
   (waitpid(-1, WNOHANG) fails with ECHILD; only the test may do that). */
#define SANDBOX_IMPLEMENTATION
#include "sandbox.h"
#include "test.h"

#include <dirent.h>

#define HELPER "build/helpers/proc_child"

/* ---- cleanliness checks --------------------------------------------------- */

typedef struct fdlist {
    int n;
    int fd[256];
} fdlist;

static void fd_snapshot(fdlist *l)
{
    DIR *d = opendir("/proc/self/fd");
    struct dirent *de;
    l->n = 0;
    if (!d) d = opendir("/dev/fd");
    if (!d) return;
    while ((de = readdir(d)) != NULL && l->n < 256) {
        int fd;
        if (de->d_name[0] < '0' || de->d_name[0] > '9') continue;
        fd = atoi(de->d_name);
        if (fd == dirfd(d)) continue;
        l->fd[l->n++] = fd;
    }
    closedir(d);
}

static int fd_same(const fdlist *a, const fdlist *b)
{
    int i, j;
    if (a->n != b->n) return 0;
    for (i = 0; i < a->n; i++) {
        int found = 0;
        for (j = 0; j < b->n && !found; j++) found = a->fd[i] == b->fd[j];
        if (!found) return 0;
    }
    return 1;
}

static void check_clean(const fdlist *before)
{
    fdlist after;
    pid_t w;
    fd_snapshot(&after);
    CHECK_MSG(fd_same(before, &after), "descriptors before %d, after %d", before->n, after.n);
    errno = 0;
    w = waitpid(-1, NULL, WNOHANG);
    CHECK_MSG(w == -1 && errno == ECHILD, "a child of ours is left: waitpid(-1) = %ld (%s)", (long)w,
              strerror(errno));
}

/* A test whose body is wrapped in the descriptor and zombie checks. */
#define CLEAN_TEST(name)                \
    static void name##_body(void);      \
    TEST(name)                          \
    {                                   \
        fdlist before_;                 \
        fd_snapshot(&before_);          \
        name##_body();                  \
        check_clean(&before_);          \
    }                                   \
    static void name##_body(void)

/* ---- small helpers ------------------------------------------------------------ */

/* A string literal as the char * an argv wants (exec never writes to it). */
static char *W(const char *s)
{
    union {
        const char *c;
        char *m;
    } u;
    u.c = s;
    return u.m;
}


static int spawn_helper(sbx__proc *p, const char *a1, const char *a2, const char *a3, sbx_error *e)
{
    char *argv[5];
    argv[0] = W(HELPER);
    argv[1] = W(a1);
    argv[2] = W(a2);
    argv[3] = a2 ? W(a3) : NULL;
    argv[4] = NULL;
    memset(p, 0, sizeof *p);
    sbx__err_clear(e);
    return sbx__proc_spawn(p, argv, NULL, NULL, e);
}

/* Lines the child printed on stdout so far (the drainer counts them). */
static unsigned long long stdout_lines(sbx__proc *p)
{
    unsigned long long n;
    pthread_mutex_lock(&p->st->mu);
    n = p->st->out_lines;
    pthread_mutex_unlock(&p->st->mu);
    return n;
}

static int has(const char *hay, const char *needle)
{
    return hay && strstr(hay, needle) != NULL;
}

static int connect_port(int port, int timeout_ms)
{
    struct sockaddr_in sa;
    int s = socket(AF_INET, SOCK_STREAM, 0);
    (void)timeout_ms;
    if (s < 0) return -1;
    sbx__set_cloexec(s);
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_port = htons((unsigned short)port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(s, (struct sockaddr *)&sa, sizeof sa) != 0) {
        close(s);
        return -1;
    }
    return s;
}

/* One connection to a "serve" helper: connect, read "ok N\n" within timeout_ms.
   Returns N, or -1 when no answer came in time. */
static long one_connection(int port, int timeout_ms)
{
    char buf[64];
    size_t got = 0;
    long long dl = sbx__deadline(timeout_ms);
    int s = connect_port(port, timeout_ms);
    long n = -1;
    if (s < 0) return -1;
    while (got < sizeof buf - 1) {
        ssize_t r;
        if (sbx__poll1(s, POLLIN, dl) != 1) break;
        r = read(s, buf + got, sizeof buf - 1 - got);
        if (r <= 0) break;
        got += (size_t)r;
        if (memchr(buf, '\n', got)) break;
    }
    buf[got] = '\0';
    if (got > 3 && !strncmp(buf, "ok ", 3) && buf[got - 1] == '\n') n = strtol(buf + 3, NULL, 10);
    close(s);
    return n;
}

/* Is `pid` gone (or a zombie waiting for someone else)? Waits up to ms. */
static int pid_gone(long pid, int ms)
{
    long long dl = sbx__deadline(ms);
    char path[64], buf[512];
    for (;;) {
        FILE *f;
        snprintf(path, sizeof path, "/proc/%ld/stat", pid);
        f = fopen(path, "r");
        if (!f) {
            if (kill((pid_t)pid, 0) != 0 && errno == ESRCH) return 1;
        } else {
            size_t n = fread(buf, 1, sizeof buf - 1, f);
            char *rp;
            fclose(f);
            buf[n] = '\0';
            rp = strrchr(buf, ')');
            if (rp && rp[1] == ' ' && (rp[2] == 'Z' || rp[2] == 'X')) return 1;
        }
        if (sbx__now_ms() >= dl) return 0;
        poll(NULL, 0, 10); /* test-side polling of someone else's process */
    }
}

/* ---- tests ---------------------------------------------------------------------- */

CLEAN_TEST(t_zeroed_handle)
{
    sbx__proc p;
    sbx_error e;
    char buf[128];
    memset(&p, 0, sizeof p);
    sbx__err_clear(&e);
    CHECK_EQ_INT(sbx__proc_stop(&p, SIGINT, 100), SBX_OK);
    CHECK_EQ_INT(sbx__proc_stop(&p, SIGINT, 100), SBX_OK);
    CHECK_EQ_INT(sbx__proc_running(&p), 0);
    sbx__proc_describe(&p, buf, sizeof buf);
    CHECK_STR(buf, "not started");
    CHECK_EQ_INT(sbx__proc_wait_line(&p, "x", buf, sizeof buf, sbx__deadline(10), &e), SBX_ERR_CLOSED);
    CHECK_EQ_INT(sbx__proc_status(&p), -1);
    CHECK_EQ_INT(sbx__proc_stop(NULL, SIGINT, 0), SBX_OK);
    {
        char *empty[1];
        empty[0] = NULL;
        CHECK_EQ_INT(sbx__proc_spawn(&p, empty, NULL, NULL, &e), SBX_ERR_INVALID_ARG);
    }
}

CLEAN_TEST(t_ready_after_noise)
{
    sbx__proc p;
    sbx_error e;
    char line[128], buf[256];
    int r;
    r = spawn_helper(&p, "ready", "5", "Forwarding from 127.0.0.1:4242 -> 8888", &e);
    CHECK_MSG(r == SBX_OK, "%s", e.msg);
    CHECK(p.pid > 0);
    r = sbx__proc_wait_line(&p, "Forwarding from 127.0.0.1:", line, sizeof line, sbx__deadline(5000), &e);
    CHECK_MSG(r == SBX_OK, "%s", e.msg);
    CHECK_STR(line, "Forwarding from 127.0.0.1:4242 -> 8888");
    /* earlier lines are kept too, and the copy respects cap */
    r = sbx__proc_wait_line(&p, "noise 3", line, sizeof line, sbx__deadline(1000), &e);
    CHECK_EQ_INT(r, SBX_OK);
    CHECK_STR(line, "noise 3");
    r = sbx__proc_wait_line(&p, "Forwarding", line, 11, sbx__deadline(1000), &e);
    CHECK_EQ_INT(r, SBX_OK);
    CHECK_STR(line, "Forwarding");
    CHECK_EQ_INT(stdout_lines(&p), 6);
    CHECK_EQ_INT(sbx__proc_running(&p), 1);
    sbx__proc_describe(&p, buf, sizeof buf);
    CHECK_STR(buf, "running");
    CHECK_EQ_INT(sbx__proc_stop(&p, SIGINT, 2000), SBX_OK);
    CHECK(WIFSIGNALED(sbx__proc_status(&p)) && WTERMSIG(sbx__proc_status(&p)) == SIGINT);
    sbx__proc_describe(&p, buf, sizeof buf);
    CHECK_STR(buf, "killed by signal 2");
    CHECK_EQ_INT(sbx__proc_stop(&p, SIGINT, 2000), SBX_OK); /* idempotent */
    sbx__proc_describe(&p, buf, sizeof buf);
    CHECK_STR(buf, "killed by signal 2");
    CHECK_EQ_INT(sbx__proc_running(&p), 0);
    CHECK_EQ_INT(p.pid, 0);
    CHECK_EQ_INT(sbx__proc_wait_line(&p, "x", line, sizeof line, sbx__deadline(10), &e), SBX_ERR_CLOSED);
}

/* 20 noise lines before the readiness line: it is found although it was
   printed (most likely) before the wait began, beyond the first 8 lines. */
CLEAN_TEST(t_ready_after_many_lines)
{
    sbx__proc p;
    sbx_error e;
    char line[128];
    int r = spawn_helper(&p, "ready", "20", "Starting to serve on 127.0.0.1:39985", &e);
    CHECK_MSG(r == SBX_OK, "%s", e.msg);
    r = sbx__proc_wait_line(&p, "Starting to serve on ", line, sizeof line, sbx__deadline(5000), &e);
    CHECK_MSG(r == SBX_OK, "%s", e.msg);
    CHECK_STR(line, "Starting to serve on 127.0.0.1:39985");
    r = sbx__proc_wait_line(&p, "noise 20", line, sizeof line, sbx__deadline(1000), &e);
    CHECK_EQ_INT(r, SBX_OK);
    CHECK_EQ_INT(stdout_lines(&p), 21);
    CHECK_EQ_INT(sbx__proc_stop(&p, SIGTERM, 2000), SBX_OK);
    CHECK(WIFSIGNALED(sbx__proc_status(&p)) && WTERMSIG(sbx__proc_status(&p)) == SIGTERM);
}

CLEAN_TEST(t_exit_before_line)
{
    sbx__proc p;
    sbx_error e;
    char line[128], buf[256];
    long long t0;
    int r = spawn_helper(&p, "fail", "3", NULL, &e);
    CHECK_MSG(r == SBX_OK, "%s", e.msg);
    t0 = sbx__now_ms();
    r = sbx__proc_wait_line(&p, "Forwarding from", line, sizeof line, sbx__deadline(10000), &e);
    CHECK_EQ_INT(r, SBX_ERR_SPAWN);
    CHECK_EQ_INT(e.code, SBX_ERR_SPAWN);
    CHECK_STR(e.msg, "proc_child exited with status 3: error: lost connection to pod");
    CHECK_STR(line, "");
    CHECK_MSG(sbx__now_ms() - t0 < 2000, "took %lld ms", sbx__now_ms() - t0);
    CHECK_EQ_INT(sbx__proc_running(&p), 0);
    sbx__proc_describe(&p, buf, sizeof buf);
    CHECK_STR(buf, "exited with status 3: error: lost connection to pod");
    CHECK_EQ_INT(sbx__proc_stop(&p, SIGINT, 2000), SBX_OK);
    CHECK(WIFEXITED(sbx__proc_status(&p)) && WEXITSTATUS(sbx__proc_status(&p)) == 3);
    sbx__proc_describe(&p, buf, sizeof buf);
    CHECK_STR(buf, "exited with status 3: error: lost connection to pod");

    /* no "error:" line: the last non-empty line is shown */
    r = spawn_helper(&p, "refused", "1", NULL, &e);
    CHECK_MSG(r == SBX_OK, "%s", e.msg);
    r = sbx__proc_wait_line(&p, "Forwarding from", line, sizeof line, sbx__deadline(10000), &e);
    CHECK_EQ_INT(r, SBX_ERR_SPAWN);
    CHECK_MSG(has(e.msg, "proc_child exited with status 1: The connection to the server 127.0.0.1:1 was refused"),
              "%s", e.msg);
    sbx__proc_stop(&p, SIGINT, 2000);

    /* nothing at all on stderr */
    r = spawn_helper(&p, "quiet", NULL, NULL, &e);
    CHECK_MSG(r == SBX_OK, "%s", e.msg);
    r = sbx__proc_wait_line(&p, "Starting to serve on ", line, sizeof line, sbx__deadline(10000), &e);
    CHECK_EQ_INT(r, SBX_ERR_SPAWN);
    CHECK_STR(e.msg, "proc_child exited with status 0 without printing a line starting with \"Starting to serve on \"");
    /* a child that already exited is stopped without waiting for the grace */
    t0 = sbx__now_ms();
    CHECK_EQ_INT(sbx__proc_stop(&p, SIGTERM, 5000), SBX_OK);
    CHECK_MSG(sbx__now_ms() - t0 < 1000, "stop took %lld ms", sbx__now_ms() - t0);
    CHECK(WIFEXITED(sbx__proc_status(&p)) && WEXITSTATUS(sbx__proc_status(&p)) == 0);
}

CLEAN_TEST(t_timeout)
{
    sbx__proc p;
    sbx_error e;
    char line[128];
    long long t0, dt;
    int r = spawn_helper(&p, "ready", "2", "Something else", &e);
    CHECK_MSG(r == SBX_OK, "%s", e.msg);
    t0 = sbx__now_ms();
    r = sbx__proc_wait_line(&p, "Forwarding from", line, sizeof line, sbx__deadline(300), &e);
    dt = sbx__now_ms() - t0;
    CHECK_EQ_INT(r, SBX_ERR_TIMEOUT);
    CHECK_MSG(has(e.msg, "printed no line starting with \"Forwarding from\" within"), "%s", e.msg);
    CHECK_MSG(dt >= 300 && dt < 1500, "waited %lld ms", dt);
    CHECK_EQ_INT(sbx__proc_running(&p), 1);
    CHECK_EQ_INT(sbx__proc_stop(&p, SIGINT, 2000), SBX_OK);

    /* the error output so far is part of the message */
    r = spawn_helper(&p, "warn", NULL, NULL, &e);
    CHECK_MSG(r == SBX_OK, "%s", e.msg);
    r = sbx__proc_wait_line(&p, "Forwarding from", line, sizeof line, sbx__deadline(300), &e);
    CHECK_EQ_INT(r, SBX_ERR_TIMEOUT);
    CHECK_MSG(has(e.msg, "; its error output: W1126 12:00:00.000000 1 warn.go:1] slow start"), "%s", e.msg);
    CHECK_EQ_INT(sbx__proc_stop(&p, SIGINT, 2000), SBX_OK);
}

static void write_file(const char *path, const char *text, int mode)
{
    FILE *f = fopen(path, "w");
    if (f) {
        fputs(text, f);
        fclose(f);
    }
    chmod(path, (mode_t)mode);
}

CLEAN_TEST(t_exec_failure)
{
    sbx__proc p;
    sbx_error e;
    char buf[256], dir[64], file[128], *argv[2], *oldpath;
    int r;
    memset(&p, 0, sizeof p);
    argv[1] = NULL;

    argv[0] = W("/nonexistent/kubectl");
    sbx__err_clear(&e);
    r = sbx__proc_spawn(&p, argv, NULL, NULL, &e);
    CHECK_EQ_INT(r, SBX_ERR_SPAWN);
    CHECK_EQ_INT(e.sys_errno, ENOENT);
    CHECK_STR(e.msg, "cannot run \"/nonexistent/kubectl\": No such file or directory");
    CHECK(p.st == NULL && p.pid == 0);
    CHECK_EQ_INT(sbx__proc_stop(&p, SIGINT, 100), SBX_OK);
    sbx__proc_describe(&p, buf, sizeof buf);
    CHECK_STR(buf, "not started");

    argv[0] = W("sbx-no-such-program-4711");
    r = sbx__proc_spawn(&p, argv, NULL, NULL, &e);
    CHECK_EQ_INT(r, SBX_ERR_SPAWN);
    CHECK_EQ_INT(e.sys_errno, ENOENT);
    CHECK_STR(e.msg, "cannot run \"sbx-no-such-program-4711\": No such file or directory");

    snprintf(dir, sizeof dir, "/tmp/sbx-proc-XXXXXX");
    CHECK(mkdtemp(dir) != NULL);
    /* not executable: found by the PATH search (EACCES), and exec'd by path */
    snprintf(file, sizeof file, "%s/noexec", dir);
    write_file(file, "#!/bin/sh\necho hi\n", 0644);
    argv[0] = file;
    r = sbx__proc_spawn(&p, argv, NULL, NULL, &e);
    CHECK_EQ_INT(r, SBX_ERR_SPAWN);
    CHECK_EQ_INT(e.sys_errno, EACCES);
    CHECK_MSG(has(e.msg, "Permission denied"), "%s", e.msg);
    oldpath = getenv("PATH") ? strdup(getenv("PATH")) : NULL;
    setenv("PATH", dir, 1);
    argv[0] = W("noexec");
    r = sbx__proc_spawn(&p, argv, NULL, NULL, &e);
    CHECK_EQ_INT(r, SBX_ERR_SPAWN);
    CHECK_EQ_INT(e.sys_errno, EACCES);
    CHECK_STR(e.msg, "cannot run \"noexec\": Permission denied");
    if (oldpath) setenv("PATH", oldpath, 1);
    else unsetenv("PATH");
    free(oldpath);
    /* executable garbage: exec fails in the child, errno comes back by the pipe */
    snprintf(file, sizeof file, "%s/garbage", dir);
    write_file(file, "\177ELF-not-really\n", 0755);
    argv[0] = file;
    r = sbx__proc_spawn(&p, argv, NULL, NULL, &e);
    CHECK_EQ_INT(r, SBX_ERR_SPAWN);
    CHECK_EQ_INT(e.sys_errno, ENOEXEC);
    CHECK_MSG(has(e.msg, "cannot run \"") && has(e.msg, "Exec format error"), "%s", e.msg);
    /* a directory */
    argv[0] = dir;
    r = sbx__proc_spawn(&p, argv, NULL, NULL, &e);
    CHECK_EQ_INT(r, SBX_ERR_SPAWN);
    CHECK_EQ_INT(e.sys_errno, EACCES);
    CHECK_EQ_INT(sbx__proc_stop(&p, SIGINT, 100), SBX_OK);
    snprintf(file, sizeof file, "%s/noexec", dir);
    unlink(file);
    snprintf(file, sizeof file, "%s/garbage", dir);
    unlink(file);
    rmdir(dir);
}

CLEAN_TEST(t_env_extra)
{
    sbx__proc p;
    sbx_error e;
    char line[256];
    char *argv[7], *extra[6];
    int r;
    setenv("SBX_TEST_A", "parent", 1);
    setenv("SBX_TEST_B", "keep", 1);
    setenv("SBX_TEST_C", "gone", 1);
    unsetenv("SBX_TEST_D");
    argv[0] = W(HELPER);
    argv[1] = W("env");
    argv[2] = W("SBX_TEST_A");
    argv[3] = W("SBX_TEST_B");
    argv[4] = W("SBX_TEST_C");
    argv[5] = W("SBX_TEST_D");
    argv[6] = NULL;
    extra[0] = W("SBX_TEST_A=child");
    extra[1] = W("SBX_TEST_C");        /* a bare name removes */
    extra[2] = W("SBX_TEST_D=new");
    extra[3] = W("SBX_TEST_D=newer");  /* the last one wins */
    extra[4] = W("SBX_TEST_AA=other"); /* a longer name is another variable */
    extra[5] = NULL;
    memset(&p, 0, sizeof p);
    r = sbx__proc_spawn(&p, argv, extra, NULL, &e);
    CHECK_MSG(r == SBX_OK, "%s", e.msg);
    CHECK_EQ_INT(sbx__proc_wait_line(&p, "ENV SBX_TEST_A=", line, sizeof line, sbx__deadline(5000), &e), SBX_OK);
    CHECK_STR(line, "ENV SBX_TEST_A=child count=1");
    CHECK_EQ_INT(sbx__proc_wait_line(&p, "ENV SBX_TEST_B=", line, sizeof line, sbx__deadline(5000), &e), SBX_OK);
    CHECK_STR(line, "ENV SBX_TEST_B=keep count=1");
    CHECK_EQ_INT(sbx__proc_wait_line(&p, "ENV SBX_TEST_C=", line, sizeof line, sbx__deadline(5000), &e), SBX_OK);
    CHECK_STR(line, "ENV SBX_TEST_C=(unset) count=0");
    CHECK_EQ_INT(sbx__proc_wait_line(&p, "ENV SBX_TEST_D=", line, sizeof line, sbx__deadline(5000), &e), SBX_OK);
    CHECK_STR(line, "ENV SBX_TEST_D=newer count=1");
    CHECK_EQ_INT(sbx__proc_stop(&p, SIGINT, 2000), SBX_OK);
    CHECK_STR(getenv("SBX_TEST_A"), "parent"); /* the parent's environment is untouched */
    CHECK_STR(getenv("SBX_TEST_C"), "gone");
    unsetenv("SBX_TEST_A");
    unsetenv("SBX_TEST_B");
    unsetenv("SBX_TEST_C");
}

CLEAN_TEST(t_stdin_is_devnull)
{
    sbx__proc p;
    sbx_error e;
    char line[128];
    int r = spawn_helper(&p, "stdin", NULL, NULL, &e);
    CHECK_MSG(r == SBX_OK, "%s", e.msg);
    r = sbx__proc_wait_line(&p, "STDIN", line, sizeof line, sbx__deadline(5000), &e);
    CHECK_MSG(r == SBX_OK, "%s", e.msg);
    CHECK_STR(line, "STDIN devnull=1 eof=1");
    CHECK_EQ_INT(sbx__proc_stop(&p, SIGINT, 2000), SBX_OK);
}

/* Our descriptors are close-on-exec, and even descriptors the host program
   left inheritable do not reach the child. */
CLEAN_TEST(t_only_std_fds)
{
    sbx__proc p;
    sbx_error e;
    char line[256];
    int leak1 = open("/dev/null", O_RDONLY), leak2[2] = {-1, -1}, r;
    CHECK(leak1 >= 0);
    CHECK(pipe(leak2) == 0);
    r = spawn_helper(&p, "fds", NULL, NULL, &e);
    CHECK_MSG(r == SBX_OK, "%s", e.msg);
    r = sbx__proc_wait_line(&p, "FDS", line, sizeof line, sbx__deadline(5000), &e);
    CHECK_MSG(r == SBX_OK, "%s", e.msg);
    CHECK_STR(line, "FDS 0 1 2 out=fifo err=fifo");
    CHECK_EQ_INT(sbx__proc_stop(&p, SIGINT, 2000), SBX_OK);
    close(leak1);
    close(leak2[0]);
    close(leak2[1]);
}

CLEAN_TEST(t_own_process_group)
{
    sbx__proc p;
    sbx_error e;
    char line[128], want[128];
    int r = spawn_helper(&p, "pgrp", NULL, NULL, &e);
    CHECK_MSG(r == SBX_OK, "%s", e.msg);
    r = sbx__proc_wait_line(&p, "PGRP", line, sizeof line, sbx__deadline(5000), &e);
    CHECK_MSG(r == SBX_OK, "%s", e.msg);
    snprintf(want, sizeof want, "PGRP pid=%ld pgrp=%ld", (long)p.pid, (long)p.pid);
    CHECK_STR(line, want);
    CHECK((long)getpgrp() != (long)p.pid);
    CHECK_EQ_INT(sbx__proc_stop(&p, SIGINT, 2000), SBX_OK);
}

static int serve_port(sbx__proc *p, sbx_error *e)
{
    char line[128];
    const char *pre = "Listening on 127.0.0.1:";
    if (sbx__proc_wait_line(p, pre, line, sizeof line, sbx__deadline(5000), e) != SBX_OK) return -1;
    return atoi(line + strlen(pre));
}

/* The child prints one line per connection for 5,000 connections while the
   library is idle (nobody calls it): every connection is answered, the child
   is alive and still answers afterwards, and every line was counted. */
CLEAN_TEST(t_5000_lines_while_idle)
{
    sbx__proc p;
    sbx_error e;
    char buf[256];
    int r = spawn_helper(&p, "serve", NULL, NULL, &e), port, i, answered = 0;
    long long t0, dt;
    CHECK_MSG(r == SBX_OK, "%s", e.msg);
    port = serve_port(&p, &e);
    CHECK_MSG(port > 0, "%s", e.msg);
    if (port <= 0) {
        sbx__proc_stop(&p, SIGKILL, 0);
        return;
    }
    t0 = sbx__now_ms();
    for (i = 1; i <= 5000; i++) {
        long n = one_connection(port, 5000);
        if (n != i) {
            CHECK_MSG(n == i, "connection %d answered %ld", i, n);
            break;
        }
        answered++;
    }
    dt = sbx__now_ms() - t0;
    printf("  info: 5000 connections (5000 'Handling connection' lines) in %lld ms\n", dt);
    CHECK_EQ_INT(answered, 5000);
    CHECK_EQ_INT(sbx__proc_running(&p), 1);
    CHECK_EQ_INT(one_connection(port, 5000), 5001); /* still responsive */
    /* the drainer may still be reading the last lines: wait for the count (bounded) */
    {
        long long dl = sbx__deadline(5000);
        while (stdout_lines(&p) < 5002 && sbx__now_ms() < dl) poll(NULL, 0, 5);
    }
    CHECK_EQ_INT(stdout_lines(&p), 5002);
    CHECK_EQ_INT(sbx__proc_stderr_tail(&p, buf, sizeof buf), 0);
    sbx__proc_describe(&p, buf, sizeof buf);
    CHECK_STR(buf, "running");
    t0 = sbx__now_ms();
    CHECK_EQ_INT(sbx__proc_stop(&p, SIGINT, 2000), SBX_OK);
    printf("  info: stop (SIGINT honoured) took %lld ms\n", sbx__now_ms() - t0);
    CHECK(WIFSIGNALED(sbx__proc_status(&p)) && WTERMSIG(sbx__proc_status(&p)) == SIGINT);
}

/* Control for the test above: the same child with a pipe nobody reads
   stalls after about 64 KiB of lines, so the test would catch a library
   that stops draining. */
CLEAN_TEST(t_5000_control_undrained_pipe_stalls)
{
    int outp[2], port = -1, i, answered = 0;
    pid_t pid;
    char buf[128];
    size_t got = 0;
    long long dl;
    if (pipe(outp) != 0) {
        CHECK(0);
        return;
    }
    pid = fork();
    if (pid == 0) {
        dup2(outp[1], 1);
        close(outp[0]);
        close(outp[1]);
        execl(HELPER, HELPER, "serve", (char *)NULL);
        _exit(127);
    }
    close(outp[1]);
    dl = sbx__deadline(5000);
    while (got < sizeof buf - 1 && !memchr(buf, '\n', got)) { /* only the first line is read */
        ssize_t n;
        if (sbx__poll1(outp[0], POLLIN, dl) != 1) break;
        n = read(outp[0], buf + got, 1);
        if (n <= 0) break;
        got += (size_t)n;
    }
    buf[got] = '\0';
    if (!strncmp(buf, "Listening on 127.0.0.1:", 23)) port = atoi(buf + 23);
    CHECK(port > 0);
    for (i = 1; port > 0 && i <= 5000; i++) {
        if (one_connection(port, 300) != i) break;
        answered++;
    }
    printf("  info: with an undrained pipe the child stalled after %d connections\n", answered);
    CHECK_MSG(answered > 1000 && answered < 5000, "answered %d", answered);
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    close(outp[0]);
}

CLEAN_TEST(t_stop_sigint_graceful)
{
    sbx__proc p;
    sbx_error e;
    char line[64], buf[128];
    long long t0, dt;
    int r = spawn_helper(&p, "graceful", NULL, NULL, &e);
    CHECK_MSG(r == SBX_OK, "%s", e.msg);
    CHECK_EQ_INT(sbx__proc_wait_line(&p, "ready", line, sizeof line, sbx__deadline(5000), &e), SBX_OK);
    t0 = sbx__now_ms();
    CHECK_EQ_INT(sbx__proc_stop(&p, SIGINT, 5000), SBX_OK);
    dt = sbx__now_ms() - t0;
    printf("  info: graceful SIGINT stop took %lld ms\n", dt);
    CHECK_MSG(dt < 1000, "stop took %lld ms", dt);
    CHECK(WIFEXITED(sbx__proc_status(&p)) && WEXITSTATUS(sbx__proc_status(&p)) == 0);
    sbx__proc_describe(&p, buf, sizeof buf);
    CHECK_STR(buf, "exited with status 0: bye");
}

/* The host ignores SIGINT (as `cmd &` in a script does): the child still gets
   the default disposition, so a SIGINT stop needs no escalation. */
CLEAN_TEST(t_stop_sigint_when_parent_ignores_it)
{
    sbx__proc p;
    sbx_error e;
    char line[64];
    long long t0, dt;
    void (*old)(int) = signal(SIGINT, SIG_IGN);
    int r = spawn_helper(&p, "ready", "0", "ready", &e);
    signal(SIGINT, old);
    CHECK_MSG(r == SBX_OK, "%s", e.msg);
    CHECK_EQ_INT(sbx__proc_wait_line(&p, "ready", line, sizeof line, sbx__deadline(5000), &e), SBX_OK);
    t0 = sbx__now_ms();
    CHECK_EQ_INT(sbx__proc_stop(&p, SIGINT, 3000), SBX_OK);
    dt = sbx__now_ms() - t0;
    CHECK_MSG(dt < 1000, "stop took %lld ms", dt);
    CHECK(WIFSIGNALED(sbx__proc_status(&p)) && WTERMSIG(sbx__proc_status(&p)) == SIGINT);
}

CLEAN_TEST(t_stop_escalates_to_sigkill)
{
    sbx__proc p;
    sbx_error e;
    char line[64], buf[128];
    long long t0, dt;
    int r = spawn_helper(&p, "ignore", NULL, NULL, &e);
    CHECK_MSG(r == SBX_OK, "%s", e.msg);
    CHECK_EQ_INT(sbx__proc_wait_line(&p, "ready", line, sizeof line, sbx__deadline(5000), &e), SBX_OK);
    t0 = sbx__now_ms();
    CHECK_EQ_INT(sbx__proc_stop(&p, SIGTERM, 300), SBX_OK);
    dt = sbx__now_ms() - t0;
    printf("  info: stop of a SIGTERM-ignoring child with 300 ms grace took %lld ms\n", dt);
    CHECK_MSG(dt >= 300 && dt < 300 + 700, "stop took %lld ms", dt);
    CHECK(WIFSIGNALED(sbx__proc_status(&p)) && WTERMSIG(sbx__proc_status(&p)) == SIGKILL);
    sbx__proc_describe(&p, buf, sizeof buf);
    CHECK_STR(buf, "killed by signal 9");
}

static long grandchild_pid(sbx__proc *p, sbx_error *e)
{
    char line[64];
    if (sbx__proc_wait_line(p, "GRANDCHILD ", line, sizeof line, sbx__deadline(5000), e) != SBX_OK) return -1;
    if (sbx__proc_wait_line(p, "ready", NULL, 0, sbx__deadline(5000), e) != SBX_OK) return -1;
    return atol(line + 11);
}

/* The child dies on SIGINT but its grandchild (same group, ignoring SIGINT)
   keeps the pipes open: after the grace the group SIGKILL ends both. */
CLEAN_TEST(t_grandchild_holds_pipes)
{
    sbx__proc p;
    sbx_error e;
    long g;
    long long t0, dt;
    int r = spawn_helper(&p, "grandchild", NULL, NULL, &e);
    CHECK_MSG(r == SBX_OK, "%s", e.msg);
    g = grandchild_pid(&p, &e);
    CHECK_MSG(g > 0, "%s", e.msg);
    t0 = sbx__now_ms();
    CHECK_EQ_INT(sbx__proc_stop(&p, SIGINT, 300), SBX_OK);
    dt = sbx__now_ms() - t0;
    printf("  info: stop with a grandchild holding the pipes (300 ms grace) took %lld ms\n", dt);
    CHECK_MSG(dt >= 300 && dt < 300 + 700, "stop took %lld ms", dt);
    CHECK(WIFSIGNALED(sbx__proc_status(&p)) && WTERMSIG(sbx__proc_status(&p)) == SIGINT);
    if (g > 0) CHECK_MSG(pid_gone(g, 2000), "grandchild %ld still alive", g);
}

/* The grandchild leaves the process group, so the group SIGKILL misses it and
   it holds the pipes forever: stop must still return (the drainer gives the
   pipes up) and reap the child. */
CLEAN_TEST(t_escaped_grandchild_bounded)
{
    sbx__proc p;
    sbx_error e;
    long g;
    long long t0, dt;
    int r = spawn_helper(&p, "escape", NULL, NULL, &e);
    CHECK_MSG(r == SBX_OK, "%s", e.msg);
    g = grandchild_pid(&p, &e);
    CHECK_MSG(g > 0, "%s", e.msg);
    t0 = sbx__now_ms();
    CHECK_EQ_INT(sbx__proc_stop(&p, SIGINT, 300), SBX_OK);
    dt = sbx__now_ms() - t0;
    printf("  info: stop with an escaped grandchild holding the pipes (300 ms grace) took %lld ms\n", dt);
    CHECK_MSG(dt >= 300 && dt < 300 + 700, "stop took %lld ms", dt);
    CHECK(WIFSIGNALED(sbx__proc_status(&p)) && WTERMSIG(sbx__proc_status(&p)) == SIGINT);
    if (g > 0) {
        CHECK_MSG(!pid_gone(g, 0), "the escaped grandchild should have survived the group kill");
        kill((pid_t)g, SIGKILL);
        CHECK(pid_gone(g, 2000));
    }
}

CLEAN_TEST(t_child_closes_stdout)
{
    sbx__proc p;
    sbx_error e;
    char line[64];
    long long t0, dt;
    int r = spawn_helper(&p, "closeout", NULL, NULL, &e);
    CHECK_MSG(r == SBX_OK, "%s", e.msg);
    t0 = sbx__now_ms();
    r = sbx__proc_wait_line(&p, "Forwarding", line, sizeof line, sbx__deadline(10000), &e);
    dt = sbx__now_ms() - t0;
    CHECK_EQ_INT(r, SBX_ERR_SPAWN);
    CHECK_STR(e.msg, "proc_child closed its output without printing a line starting with \"Forwarding\": closing stdout");
    CHECK_MSG(dt < 3000, "took %lld ms", dt);
    CHECK_EQ_INT(sbx__proc_running(&p), 1);
    CHECK_EQ_INT(sbx__proc_stop(&p, SIGINT, 2000), SBX_OK);
    CHECK(WIFSIGNALED(sbx__proc_status(&p)) && WTERMSIG(sbx__proc_status(&p)) == SIGINT);
}

/* Megabytes on both pipes, a 1 MB line, NUL and control bytes: memory stays
   bounded, lines are counted, the stderr tail holds only the last bytes. */
CLEAN_TEST(t_spam_bounded)
{
    sbx__proc p;
    sbx_error e;
    char line[SBX__PROC_LINE_MAX + 16], tail[4096], buf[256];
    size_t n;
    int r = spawn_helper(&p, "spam", NULL, NULL, &e);
    CHECK_MSG(r == SBX_OK, "%s", e.msg);
    r = sbx__proc_wait_line(&p, "READY", line, sizeof line, sbx__deadline(20000), &e);
    CHECK_MSG(r == SBX_OK, "%s", e.msg);
    CHECK_STR(line, "READY");
    CHECK_EQ_INT(stdout_lines(&p), 4096 + 4);
    /* the 1 MB line was kept cut to SBX__PROC_LINE_MAX bytes */
    r = sbx__proc_wait_line(&p, "yyyy", line, sizeof line, sbx__deadline(1000), &e);
    CHECK_EQ_INT(r, SBX_OK);
    CHECK_EQ_INT(strlen(line), SBX__PROC_LINE_MAX);
    {
        long long dl = sbx__deadline(5000);
        do n = sbx__proc_stderr_tail(&p, tail, sizeof tail);
        while (!has(tail, "error: final words") && sbx__now_ms() < dl && poll(NULL, 0, 5) >= 0);
    }
    CHECK_EQ_INT(n, SBX__PROC_ERR_TAIL);
    CHECK_MSG(n >= 19 && !strcmp(tail + n - 19, "error: final words\n"), "tail ends %s", tail + (n > 40 ? n - 40 : 0));
    sbx__proc_describe(&p, buf, sizeof buf);
    CHECK_STR(buf, "running");
    CHECK_EQ_INT(sbx__proc_stop(&p, SIGTERM, 2000), SBX_OK);
    sbx__proc_describe(&p, buf, sizeof buf);
    CHECK_STR(buf, "killed by signal 15: error: final words");
}

TEST(t_pick_line)
{
    char out[64];
    const char *s;
    s = "I1 klog\nerror: first\nE2 more\nerror: second\n  \n";
    sbx__proc_pick_line(s, strlen(s), 0, out, sizeof out);
    CHECK_STR(out, "error: second");
    s = "W1 warn\nError from server (NotFound): pods \"x\" not found\nlast words\n";
    sbx__proc_pick_line(s, strlen(s), 0, out, sizeof out);
    CHECK_STR(out, "Error from server (NotFound): pods \"x\" not found");
    s = "one\ntwo\r\n\n   \t\n";
    sbx__proc_pick_line(s, strlen(s), 0, out, sizeof out);
    CHECK_STR(out, "two");
    s = "error: cut fragment\nreal line";
    sbx__proc_pick_line(s, strlen(s), 1, out, sizeof out);
    CHECK_STR(out, "real line");
    s = "error: only a fragment";
    CHECK_EQ_INT(sbx__proc_pick_line(s, strlen(s), 1, out, sizeof out), 0);
    CHECK_STR(out, "");
    CHECK_EQ_INT(sbx__proc_pick_line("", 0, 0, out, sizeof out), 0);
    CHECK_STR(out, "");
    sbx__proc_pick_line("a\001b\tc\177\n", 7, 0, out, sizeof out);
    CHECK_STR(out, "a?b c?");
    s = "error: a very long line that does not fit in the small output buffer at all";
    CHECK_EQ_INT(sbx__proc_pick_line(s, strlen(s), 0, out, 11), 10);
    CHECK_STR(out, "error: a v");
    {
        char bin[3];
        bin[0] = '\0';
        bin[1] = 'x';
        bin[2] = '\n';
        sbx__proc_pick_line(bin, 3, 0, out, sizeof out);
        CHECK_EQ_INT(out[0], '?');
        CHECK_EQ_INT(out[1], 'x');
    }
}

static unsigned long long rng_state = 0x9e3779b97f4a7c15ull;
static unsigned rnd(unsigned n)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (unsigned)(rng_state >> 11) % n;
}

/* The drainer's line splitter and stderr ring against a reference model, on
   random bytes (NUL, CR, high bytes, lines longer than the cap) cut into
   random chunks. ASan checks the bounds. */
TEST(t_line_splitter_random)
{
    static char data[40000];
    int iter;
    for (iter = 0; iter < 300; iter++) {
        struct sbx__proc_state *st = (struct sbx__proc_state *)calloc(1, sizeof *st);
        size_t n = rnd(iter % 10 == 0 || iter % 4 == 1 ? sizeof data : 3000), i, off, start, nl = 0;
        size_t line_no = 0, later = 0, total_later = 0;
        int ok = 1;
        char tail[SBX__PROC_ERR_TAIL], pick[80];
        if (!st) {
            CHECK(0);
            return;
        }
        pthread_mutex_init(&st->mu, NULL);
        pthread_cond_init(&st->cv, NULL);
        for (i = 0; i < n; i++) {
            unsigned k = rnd(20);
            data[i] = k == 0 ? '\n' : k == 1 ? '\r' : k == 2 ? '\0' : k == 3 ? (char)0xff
                    : k == 4 && iter % 7 == 0 ? 'x' : (char)('a' + rnd(26));
            if (iter % 5 == 0 && rnd(400) == 0) data[i] = '\n';
            if (iter % 5 == 0 && data[i] == '\n' && rnd(2)) data[i] = 'L'; /* long lines */
        }
        pthread_mutex_lock(&st->mu);
        for (off = 0; off < n;) {
            size_t c = 1 + rnd(iter % 3 == 0 ? 7 : iter % 4 == 1 ? 6000 : 700);
            if (c > n - off) c = n - off;
            sbx__proc_feed_out(st, data + off, c);
            sbx__proc_feed_err(st, data + off, c);
            off += c;
        }
        pthread_mutex_unlock(&st->mu);
        /* reference: complete lines, each cut to LINE_MAX, then one trailing CR dropped */
        for (i = 0; i < n; i++) total_later += data[i] == '\n';
        total_later = total_later > SBX__PROC_KEEP_LINES ? total_later - SBX__PROC_KEEP_LINES : 0;
        for (i = 0, start = 0; i < n; i++) {
            size_t len, slot;
            const char *got;
            if (data[i] != '\n') continue;
            nl++;
            len = i - start;
            if (len > SBX__PROC_LINE_MAX) len = SBX__PROC_LINE_MAX;
            if (len > 0 && data[start + len - 1] == '\r') len--;
            if (line_no < SBX__PROC_KEEP_LINES) {
                got = st->kept[line_no];
            } else {
                /* only the last KEEP of the later lines are in the ring; check those */
                later++;
                got = NULL;
                if (later + SBX__PROC_KEEP_LINES > total_later) {
                    slot = (later - 1) % SBX__PROC_KEEP_LINES;
                    got = st->recent[slot];
                }
            }
            if (got && (memcmp(got, data + start, len) != 0 || got[len] != '\0')) ok = 0;
            line_no++;
            start = i + 1;
        }
        CHECK_MSG(ok, "iteration %d: a kept line differs", iter);
        CHECK_MSG(st->out_lines == nl, "iteration %d: %llu lines, expected %lu", iter, st->out_lines,
                  (unsigned long)nl);
        CHECK_EQ_INT(st->nkept, nl < SBX__PROC_KEEP_LINES ? nl : SBX__PROC_KEEP_LINES);
        {
            int cut = 0;
            size_t tn = sbx__proc_tail_copy(st, tail, &cut), want = n < SBX__PROC_ERR_TAIL ? n : SBX__PROC_ERR_TAIL;
            size_t pn;
            CHECK_EQ_INT(tn, want);
            CHECK_MSG(memcmp(tail, data + n - want, want) == 0, "iteration %d: stderr tail differs", iter);
            CHECK_EQ_INT(cut, n > SBX__PROC_ERR_TAIL);
            pn = sbx__proc_pick_line(tail, tn, cut, pick, sizeof pick);
            CHECK(pn < sizeof pick && strlen(pick) == pn);
            for (i = 0; i < pn; i++) CHECK((unsigned char)pick[i] >= 0x20 && pick[i] != 0x7f);
        }
        pthread_cond_destroy(&st->cv);
        pthread_mutex_destroy(&st->mu);
        free(st);
    }
}

/* ---- 16 children from 16 threads ------------------------------------------------ */

typedef struct worker {
    int id, ok, rounds;
    long long max_stop_ms;
    char err[SBX_ERRMSG_SIZE + 600];
} worker;

/* Descriptors the process pid has open (/proc/PID/fd), or -1 without /proc. */
static int pid_fd_count(pid_t pid)
{
    char path[64];
    DIR *d;
    struct dirent *de;
    int n = 0;
    snprintf(path, sizeof path, "/proc/%ld/fd", (long)pid);
    d = opendir(path);
    if (!d) return -1;
    while ((de = readdir(d)) != NULL)
        if (de->d_name[0] != '.') n++;
    closedir(d);
    return n;
}

/* The grace each stop gives its child. A stop ends at the reap, which needs
   no timer: the child dies of the SIGTERM, the drainer reads end-of-file and
   reaps, the stopper wakes and joins the drainer. Under TSan at load 20 on 2
   cores each of those steps waited up to 0.8 s for a CPU or for TSan's global
   lock (which every fork in the 15 other threads takes), 2.8 s in all; the
   only bound the code sets is this grace, so that is what is checked. */
#define STOP_GRACE_MS 10000

static void *worker_main(void *arg)
{
    worker *w = (worker *)arg;
    int round;
    for (round = 0; round < w->rounds; round++) {
        sbx__proc p;
        sbx_error e;
        char want[64], line[64], *argv[5];
        long long t0, dt;
        snprintf(want, sizeof want, "READY %d.%d", w->id, round);
        argv[0] = W(HELPER);
        argv[1] = W("ready");
        argv[2] = W("3");
        argv[3] = want;
        argv[4] = NULL;
        memset(&p, 0, sizeof p);
        if (sbx__proc_spawn(&p, argv, NULL, NULL, &e) != SBX_OK) {
            snprintf(w->err, sizeof w->err, "spawn: %s", e.msg);
            return NULL;
        }
        if (sbx__proc_wait_line(&p, "READY ", line, sizeof line, sbx__deadline(10000), &e) != SBX_OK ||
            strcmp(line, want) != 0) {
            snprintf(w->err, sizeof w->err, "wait: %s (line \"%s\")", e.msg, line);
            sbx__proc_stop(&p, SIGKILL, 0);
            return NULL;
        }
        /* only 0, 1 and 2, though 15 other threads fork while its pipes are
           open: a sibling's pipe end here would keep that sibling's stop
           waiting until this child ends */
        {
            int nfd = pid_fd_count(p.pid);
            if (nfd >= 0 && nfd != 3) {
                snprintf(w->err, sizeof w->err, "child %s has %d descriptors open, not 0-2", want, nfd);
                sbx__proc_stop(&p, SIGKILL, 0);
                return NULL;
            }
        }
        t0 = sbx__now_ms();
        /* a stop that waits out the grace means something else kept our pipes */
        if (sbx__proc_stop(&p, SIGTERM, STOP_GRACE_MS) != SBX_OK ||
            !(WIFSIGNALED(sbx__proc_status(&p)) && WTERMSIG(sbx__proc_status(&p)) == SIGTERM)) {
            snprintf(w->err, sizeof w->err, "stop: status %d", sbx__proc_status(&p));
            return NULL;
        }
        dt = sbx__now_ms() - t0;
        if (dt > w->max_stop_ms) w->max_stop_ms = dt;
    }
    w->ok = 1;
    return NULL;
}

CLEAN_TEST(t_16_threads)
{
    pthread_t th[16];
    worker w[16];
    int i, started = 0;
    long long t0 = sbx__now_ms(), worst = 0;
    for (i = 0; i < 16; i++) {
        memset(&w[i], 0, sizeof w[i]);
        w[i].id = i;
        w[i].rounds = 4;
        if (pthread_create(&th[i], NULL, worker_main, &w[i]) == 0) started++;
        else break;
    }
    CHECK_EQ_INT(started, 16);
    for (i = 0; i < started; i++) pthread_join(th[i], NULL);
    for (i = 0; i < started; i++) {
        CHECK_MSG(w[i].ok, "worker %d: %s", i, w[i].err);
        if (w[i].max_stop_ms > worst) worst = w[i].max_stop_ms;
    }
    printf("  info: 16 threads x 4 rounds (spawn, wait line, stop) in %lld ms; slowest stop %lld ms\n",
           sbx__now_ms() - t0, worst);
    CHECK_MSG(worst < STOP_GRACE_MS, "a stop took %lld ms: it waited out its grace", worst);
}

/* ---- the real kubectl ---------------------------------------------------------- */

static int unused_port(void)
{
    struct sockaddr_in sa;
    socklen_t sl = sizeof sa;
    int port = -1, s = socket(AF_INET, SOCK_STREAM, 0);
    if (s < 0) return -1;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(s, (struct sockaddr *)&sa, sizeof sa) == 0 && getsockname(s, (struct sockaddr *)&sa, &sl) == 0)
        port = ntohs(sa.sin_port);
    close(s);
    return port;
}

CLEAN_TEST(t_real_kubectl)
{
    sbx__proc p;
    sbx_error e;
    sbx_allocator a = sbx__allocator(NULL);
    char dir[64], kc[128], cache[160], cacheenv[200], line[256], buf[256], *found;
    char *argv[12], *extra[2];
    int err = 0, r, port, api_port;
    long long t0, dt;
    found = sbx__proc_which(&a, "kubectl", &err);
    if (!found) SKIP("kubectl is not on PATH");
    sbx__free(&a, found);
    snprintf(dir, sizeof dir, "/tmp/sbx-kubectl-XXXXXX");
    if (!mkdtemp(dir)) SKIP("mkdtemp failed");
    api_port = unused_port();
    snprintf(kc, sizeof kc, "%s/kubeconfig", dir);
    {
        FILE *f = fopen(kc, "w");
        if (!f) SKIP("cannot write %s", kc);
        fprintf(f, "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n"
                   "    server: http://127.0.0.1:%d\ncontexts:\n- name: fake\n  context:\n"
                   "    cluster: fake\ncurrent-context: fake\n", api_port);
        fclose(f);
    }
    snprintf(cache, sizeof cache, "%s/cache", dir);
    snprintf(cacheenv, sizeof cacheenv, "KUBECACHEDIR=%s", cache);
    extra[0] = cacheenv;
    extra[1] = NULL;

    argv[0] = W("kubectl");
    argv[1] = W("--kubeconfig");
    argv[2] = kc;
    argv[3] = W("proxy");
    argv[4] = W("--port=0");
    argv[5] = NULL;
    memset(&p, 0, sizeof p);
    t0 = sbx__now_ms();
    r = sbx__proc_spawn(&p, argv, extra, NULL, &e);
    CHECK_MSG(r == SBX_OK, "%s", e.msg);
    r = sbx__proc_wait_line(&p, "Starting to serve on 127.0.0.1:", line, sizeof line, sbx__deadline(20000), &e);
    dt = sbx__now_ms() - t0;
    CHECK_MSG(r == SBX_OK, "%s", e.msg);
    port = r == SBX_OK ? atoi(line + strlen("Starting to serve on 127.0.0.1:")) : 0;
    printf("  info: kubectl proxy printed \"%s\" %lld ms after spawn\n", line, dt);
    CHECK(port > 0 && port < 65536);
    if (port > 0) {
        int s = connect_port(port, 1000);
        CHECK_MSG(s >= 0, "cannot connect to the proxy on port %d", port);
        if (s >= 0) close(s);
    }
    CHECK_EQ_INT(sbx__proc_running(&p), 1);
    t0 = sbx__now_ms();
    CHECK_EQ_INT(sbx__proc_stop(&p, SIGTERM, 3000), SBX_OK);
    dt = sbx__now_ms() - t0;
    printf("  info: kubectl proxy stopped by SIGTERM in %lld ms\n", dt);
    CHECK_MSG(dt < 2000, "stop took %lld ms", dt);
    sbx__proc_describe(&p, buf, sizeof buf);
    CHECK_STR(buf, "killed by signal 15");

    /* port-forward against an API server that is not there: exit 1 and the reason */
    argv[3] = W("port-forward");
    argv[4] = W("pod/web-0");
    argv[5] = W("0:8888");
    argv[6] = W("--address");
    argv[7] = W("127.0.0.1");
    argv[8] = NULL;
    memset(&p, 0, sizeof p);
    t0 = sbx__now_ms();
    r = sbx__proc_spawn(&p, argv, extra, NULL, &e);
    CHECK_MSG(r == SBX_OK, "%s", e.msg);
    r = sbx__proc_wait_line(&p, "Forwarding from 127.0.0.1:", line, sizeof line, sbx__deadline(20000), &e);
    dt = sbx__now_ms() - t0;
    CHECK_EQ_INT(r, SBX_ERR_SPAWN);
    printf("  info: kubectl port-forward without an API server failed after %lld ms: %s\n", dt, e.msg);
    CHECK_MSG(has(e.msg, "kubectl exited with status 1: ") && has(e.msg, "refused"), "%s", e.msg);
    CHECK_EQ_INT(sbx__proc_stop(&p, SIGINT, 2000), SBX_OK);
    {
        char cmd[128];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
        CHECK(system(cmd) == 0);
    }
}

/* ------------------------------------------------------------------------------------ */

/* Build the helper under a private name, then rename it into place, so runs
   in parallel never execute a half-written file. */
static int build_helper(void)
{
    const char *cc = getenv("CC");
    char cmd[512], tmp[128];
    int r;
    mkdir("build", 0755);
    mkdir("build/helpers", 0755);
    if (!cc || !*cc) cc = "cc";
    snprintf(tmp, sizeof tmp, "%s.%ld", HELPER, (long)getpid());
    snprintf(cmd, sizeof cmd,
             "%s -std=c99 -D_POSIX_C_SOURCE=200809L -O1 -Wall -Wextra -Werror -o %s tests/fakes/helpers/proc_child.c",
             cc, tmp);
    r = system(cmd);
    if (r == 0 && rename(tmp, HELPER) != 0) r = -1;
    if (r != 0) unlink(tmp);
    return r;
}

/* ---- the supervisor ---------------------------------------------------- */

/* Simulate the owner's death: our end of the socket closes (as the kernel
   closes it when a process dies), without the orderly shutdown of close. */
static void sup_owner_dies(struct sbx__sup *sup)
{
    pthread_mutex_lock(&sup->mu);
    close(sup->fd);
    sup->fd = -1;
    pthread_mutex_unlock(&sup->mu);
}

static int pid_runs(pid_t pid)
{
    char path[64], buf[512], *p;
    FILE *f;
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    if (!(f = fopen(path, "r"))) return kill(pid, 0) == 0; /* no /proc: kill -0 */
    if (!fgets(buf, sizeof buf, f)) buf[0] = '\0';
    fclose(f);
    p = strrchr(buf, ')');
    return p && p[1] == ' ' && p[2] != 'Z' && p[2] != 'X';
}

/* A registered child is killed (SIGTERM) when the owner goes; a child that
   was un-registered, or stopped (and so un-registered before its reap), is
   never touched; the supervisor is not our child, ignores SIGINT and
   SIGHUP, and exits after its work. */
TEST(t_supervisor_kills_registered_children_only)
{
    struct sbx__sup *sup = NULL;
    sbx__proc a, b;
    sbx_error e;
    char line[64], *argv[4];
    pid_t spare, sup_pid;
    long long dl;
    int st = 0, r;
    r = sbx__sup_start(NULL, "kubectl", NULL, NULL, NULL, 0, &sup, &e);
    CHECK_MSG(r == SBX_OK, "%s", e.msg);
    if (r != SBX_OK) return;
    sup_pid = sup->pid;
    errno = 0;
    CHECK(waitpid(sup_pid, NULL, WNOHANG) == -1 && errno == ECHILD); /* not ours to reap */
    CHECK(pid_runs(sup_pid));
    kill(sup_pid, SIGINT);
    kill(sup_pid, SIGHUP);
    argv[0] = W("/bin/sh");
    argv[1] = W("-c");
    argv[2] = W("echo ready; exec sleep 30");
    argv[3] = NULL;
    memset(&a, 0, sizeof a);
    memset(&b, 0, sizeof b);
    a.sup = b.sup = sup;
    CHECK_EQ_INT(sbx__proc_spawn(&a, argv, NULL, NULL, &e), SBX_OK);
    CHECK_EQ_INT(sbx__proc_spawn(&b, argv, NULL, NULL, &e), SBX_OK);
    CHECK_EQ_INT(sbx__proc_wait_line(&a, "ready", line, sizeof line, sbx__deadline(5000), &e), SBX_OK);
    CHECK_EQ_INT(sbx__proc_wait_line(&b, "ready", line, sizeof line, sbx__deadline(5000), &e), SBX_OK);
    CHECK_EQ_INT(sbx__proc_stop(&b, SIGTERM, 2000), SBX_OK);
    /* a process registered and then un-registered survives */
    spare = fork();
    if (spare == 0) {
        setpgid(0, 0);
        execl("/bin/sleep", "sleep", "30", (char *)NULL);
        _exit(127);
    }
    CHECK(spare > 0);
    CHECK_EQ_INT(sbx__sup_add_pid(sup, spare), 0);
    CHECK_EQ_INT(sbx__sup_del_pid(sup, spare), 0);
    poll(NULL, 0, 300); /* SIGINT/SIGHUP had time to land */
    CHECK(pid_runs(sup_pid));
    sup_owner_dies(sup);
    dl = sbx__deadline(2000);
    while (sbx__proc_running(&a) && sbx__now_ms() < dl) poll(NULL, 0, 10);
    CHECK_MSG(!sbx__proc_running(&a), "a registered child outlived its owner's end by 2 s");
    CHECK_EQ_INT(sbx__proc_stop(&a, 0, 1000), SBX_OK);
    CHECK(WIFSIGNALED(sbx__proc_status(&a)) && WTERMSIG(sbx__proc_status(&a)) == SIGTERM);
    dl = sbx__deadline(3000);
    while (pid_runs(sup_pid) && sbx__now_ms() < dl) poll(NULL, 0, 10);
    CHECK_MSG(!pid_runs(sup_pid), "the supervisor did not exit after its work");
    CHECK_EQ_INT(waitpid(spare, &st, WNOHANG), 0); /* still running: never touched */
    kill(spare, SIGKILL);
    waitpid(spare, &st, 0);
    sbx__sup_unref(sup); /* the handle's last reference */
}

/* sbx__sup_finish (client close) returns once the supervisor answered; it
   then exits at once (nothing to delete); closing is quick. */
TEST(t_supervisor_finish)
{
    struct sbx__sup *sup = NULL;
    sbx_error e;
    pid_t pid;
    long long t0, dl;
    CHECK_EQ_INT(sbx__sup_start(NULL, "kubectl", NULL, NULL, NULL, 1, &sup, &e), SBX_OK);
    if (!sup) return;
    pid = sup->pid;
    CHECK_EQ_INT(sbx__sup_claim(sup, 1, "default", "bad name", "v1beta1"), -1); /* never a protocol line */
    CHECK_EQ_INT(sbx__sup_claim(sup, 1, "default", "x;rm", "v1beta1"), -1);
    t0 = sbx__now_ms();
    sbx__sup_finish(sup, 3000);
    CHECK_MSG(sbx__now_ms() - t0 < 1000, "finish took %lld ms", sbx__now_ms() - t0);
    dl = sbx__deadline(2000);
    while (pid_runs(pid) && sbx__now_ms() < dl) poll(NULL, 0, 5);
    CHECK(!pid_runs(pid));
}

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (build_helper() != 0) {
        printf("  FAIL cannot build %s from tests/fakes/helpers/proc_child.c\n", HELPER);
        printf("proc: 0 passed, 1 failed, 0 skipped\n");
        return 1;
    }
    RUN(t_pick_line);
    RUN(t_line_splitter_random);
    RUN(t_zeroed_handle);
    RUN(t_ready_after_noise);
    RUN(t_ready_after_many_lines);
    RUN(t_exit_before_line);
    RUN(t_timeout);
    RUN(t_exec_failure);
    RUN(t_env_extra);
    RUN(t_stdin_is_devnull);
    RUN(t_only_std_fds);
    RUN(t_own_process_group);
    RUN(t_5000_lines_while_idle);
    RUN(t_5000_control_undrained_pipe_stalls);
    RUN(t_stop_sigint_graceful);
    RUN(t_stop_sigint_when_parent_ignores_it);
    RUN(t_stop_escalates_to_sigkill);
    RUN(t_grandchild_holds_pipes);
    RUN(t_escaped_grandchild_bounded);
    RUN(t_child_closes_stdout);
    RUN(t_spam_bounded);
    RUN(t_16_threads);
    RUN(t_real_kubectl);
    RUN(t_supervisor_kills_registered_children_only);
    RUN(t_supervisor_finish);
    return test_summary("proc");
}
