/* tests/unit/test_proc_orphan.c - the rare path of sbx__proc_stop: the child does
   not end within SBX__PROC_KILL_WAIT_MS of SIGKILL (in real life: stuck in
   the kernel), so stop returns SBX_ERR_TIMEOUT and leaves the reaping and the
   freeing to the detached drainer. Compiled with a kill wait of 0, which makes
   that path deterministic: stop holds the lock from SIGKILL to its check, so
   the drainer cannot have collected the child in between. The drainer must
   then finish the job alone: the child is reaped, every descriptor closed,
   all memory freed (ASan's leak check at exit). */
#define SBX__PROC_KILL_WAIT_MS 0
#define SANDBOX_IMPLEMENTATION
#include "sandbox.h"
#include "test.h"

#include <dirent.h>

static char *W(const char *s)
{
    union {
        const char *c;
        char *m;
    } u;
    u.c = s;
    return u.m;
}

TEST(t_orphaned_drainer_finishes_alone)
{
    sbx__proc p;
    sbx_error e;
    char line[64], buf[128], *argv[4];
    int fds0 = test_fd_count(), r, clean = 0;
    long long dl;
    argv[0] = W("/bin/sh");
    argv[1] = W("-c");
    argv[2] = W("trap '' INT TERM; echo ready; exec sleep 30");
    argv[3] = NULL;
    memset(&p, 0, sizeof p);
    r = sbx__proc_spawn(&p, argv, NULL, NULL, &e);
    CHECK_MSG(r == SBX_OK, "%s", e.msg);
    if (r != SBX_OK) return;
    CHECK_EQ_INT(sbx__proc_wait_line(&p, "ready", line, sizeof line, sbx__deadline(5000), &e), SBX_OK);
    CHECK_EQ_INT(sbx__proc_stop(&p, SIGTERM, 0), SBX_ERR_TIMEOUT);
    CHECK_EQ_INT(sbx__proc_stop(&p, SIGTERM, 0), SBX_ERR_TIMEOUT); /* idempotent: same answer */
    CHECK(p.st == NULL && p.pid == 0);
    CHECK_EQ_INT(sbx__proc_running(&p), 0);
    sbx__proc_describe(&p, buf, sizeof buf);
    CHECK_STR(buf, "did not end after SIGKILL (left to a reaper thread)");
    /* the detached drainer reaps the child and closes its descriptors soon.
       Only look (never waitpid here: that would race the drainer's reap). */
    dl = sbx__deadline(5000);
    while (sbx__now_ms() < dl) {
        if (test_child_count() == 0 && test_fd_count() == fds0) {
            clean = 1;
            break;
        }
        poll(NULL, 0, 5);
    }
    CHECK_MSG(clean, "descriptors %d (before %d), or the child was not reaped by the drainer", test_fd_count(), fds0);
}

/* With the same zero kill wait, a child that obeys the first signal is
   reaped during the grace and stop succeeds as usual. */
TEST(t_obedient_child_unaffected)
{
    sbx__proc p;
    sbx_error e;
    char line[64], *argv[4];
    int r;
    argv[0] = W("/bin/sh");
    argv[1] = W("-c");
    argv[2] = W("echo ready; exec sleep 30");
    argv[3] = NULL;
    memset(&p, 0, sizeof p);
    r = sbx__proc_spawn(&p, argv, NULL, NULL, &e);
    CHECK_MSG(r == SBX_OK, "%s", e.msg);
    if (r != SBX_OK) return;
    CHECK_EQ_INT(sbx__proc_wait_line(&p, "ready", line, sizeof line, sbx__deadline(5000), &e), SBX_OK);
    CHECK_EQ_INT(sbx__proc_stop(&p, SIGTERM, 3000), SBX_OK);
    CHECK(WIFSIGNALED(sbx__proc_status(&p)) && WTERMSIG(sbx__proc_status(&p)) == SIGTERM);
    errno = 0;
    CHECK(waitpid(-1, NULL, WNOHANG) == -1 && errno == ECHILD);
}

/* The same with a supervisor: the client lets go of it (sbx__sup_finish)
   while the detached drainer still holds its reference; the drainer
   un-registers the child, reaps it and frees the supervisor's handle last
   (ASan's leak check), and no descriptor stays. */
TEST(t_orphaned_drainer_holds_the_supervisor)
{
    sbx__proc p;
    struct sbx__sup *sup = NULL;
    sbx_error e;
    char line[64], *argv[4];
    int fds0 = test_fd_count(), r, clean = 0;
    long long dl;
    r = sbx__sup_start(NULL, "kubectl", NULL, NULL, NULL, 0, &sup, &e);
    CHECK_MSG(r == SBX_OK, "%s", e.msg);
    if (r != SBX_OK) return;
    argv[0] = W("/bin/sh");
    argv[1] = W("-c");
    argv[2] = W("trap '' INT TERM; echo ready; exec sleep 30");
    argv[3] = NULL;
    memset(&p, 0, sizeof p);
    p.sup = sup;
    r = sbx__proc_spawn(&p, argv, NULL, NULL, &e);
    CHECK_MSG(r == SBX_OK, "%s", e.msg);
    if (r == SBX_OK) {
        CHECK_EQ_INT(sbx__proc_wait_line(&p, "ready", line, sizeof line, sbx__deadline(5000), &e), SBX_OK);
        CHECK_EQ_INT(sbx__proc_stop(&p, SIGTERM, 0), SBX_ERR_TIMEOUT);
    }
    sbx__sup_finish(sup, 3000);
    dl = sbx__deadline(5000);
    while (sbx__now_ms() < dl) {
        if (test_child_count() == 0 && test_fd_count() == fds0) {
            clean = 1;
            break;
        }
        poll(NULL, 0, 5);
    }
    CHECK_MSG(clean, "descriptors %d (before %d), or the child was not reaped by the drainer", test_fd_count(), fds0);
}

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    RUN(t_orphaned_drainer_finishes_alone);
    RUN(t_obedient_child_unaffected);
    RUN(t_orphaned_drainer_holds_the_supervisor);
    return test_summary("proc_orphan");
}
