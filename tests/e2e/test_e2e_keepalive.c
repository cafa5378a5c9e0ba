/* End-to-end: the HTTP/2 keepalive PING (SBX_H2_KEEPALIVE_MS /
   SBX_H2_PING_TIMEOUT_MS, see KEEPALIVE in sandbox.h's >>h2 section) through
   the REAL route to a dev cluster sandboxd pod, on the route SANDBOX_POD_ROUTE
   picks (the WebSocket route by default; `make test` runs it again with
   SANDBOX_POD_ROUTE=kubectl, where kubectl port-forward relays to the pod):
   - a frozen pod (its gRPC server SIGSTOPped: the socket stays open, nothing
     answers, no FIN or reset) fails a waiting process read with
     SBX_ERR_CONNECT "no answer to PING" within keepalive + PING timeout,
     not at the read's 30 s timeout; once thawed, the next call connects again;
   - a healthy quiet stream is not cut: PINGs go out during 2.5 s of silence,
     grpcio answers them, and the late line and the exit arrive.
   The intervals are small here; defined before the header they win over its
   defaults (#ifndef-guarded there). 1 s, not less: grpcio's default ping
   policy (5 min between PINGs while it sends nothing, 2 strikes) answers the
   4th PING of one silence with GOAWAY too_many_pings and kills the stream
   (tests/unit/test_h2.c grpcio_keepalive_policy), so 300 ms would cut the
   quiet stream after about 1.2 s; at 1 s a 2.5 s silence holds 2 PINGs, and
   it could stretch to 4 s under load before a 4th PING goes out. Built with -DSBX_H2_KEEPALIVE_MS=0 (keepalive off),
   frozen_runtime_fails_calls_by_ping fails: the read runs to its 30 s
   timeout. Skips (saying why) when /usr/bin/python3 has no grpc. */
#ifndef SBX_H2_KEEPALIVE_MS
#define SBX_H2_KEEPALIVE_MS 1000
#endif
#ifndef SBX_H2_PING_TIMEOUT_MS
#define SBX_H2_PING_TIMEOUT_MS 1500
#endif
#define SANDBOX_IMPLEMENTATION
#include "sandbox.h"
#include "test.h"
#include <arpa/inet.h>

static e2e_cluster C;
static em_base B;
static sbx_client CL;
static pid_t frozen; /* a gRPC server we stopped: thawed on every path */

/* Descriptors of this process but the client's idle keep-alive
   connections to the API (its pool grows as opens overlap requests; they are
   the client's, closed by sbx_client_close, which no_leftovers checks). */
static int own_fds(void)
{
    struct sbx__client *cl = CL.impl;
    int n = test_fd_count(), i;
    pthread_mutex_lock(&cl->mu);
    for (i = 0; i < cl->nidle; i++) n -= cl->idle[i]->fd >= 0;
    pthread_mutex_unlock(&cl->mu);
    return n;
}

static void thaw(void)
{
    if (frozen > 0) kill(frozen, SIGCONT);
    frozen = 0;
}

/* The host process that owns the LISTEN socket at ip:port (the pods are
   host processes here): its socket inode from /proc/net/tcp, then the one
   process with that socket among its descriptors. Its pid, or -1 after
   saying why. */
static pid_t listener_pid(const char *ip, int port)
{
    FILE *f = fopen("/proc/net/tcp", "r");
    char line[512], want[32], inode_link[64];
    struct in_addr a;
    unsigned long inode = 0;
    DIR *d;
    struct dirent *de;
    pid_t found = -1;
    int holders = 0;
    if (!f || inet_pton(AF_INET, ip, &a) != 1) {
        if (f) fclose(f);
        printf("  no /proc/net/tcp or a bad pod IP \"%s\"\n", ip);
        return -1;
    }
    E2E_FMT(want, sizeof want, "%08X:%04X", (unsigned)a.s_addr, (unsigned)port);
    while (fgets(line, sizeof line, f)) {
        char loc[64], st[8];
        unsigned long ino;
        if (sscanf(line, " %*d: %63s %*s %7s %*s %*s %*s %*s %*s %lu", loc, st, &ino) == 3 &&
            strcmp(loc, want) == 0 && strcmp(st, "0A") == 0)
            inode = ino;
    }
    fclose(f);
    if (!inode) {
        printf("  nobody listens on %s:%d\n", ip, port);
        return -1;
    }
    E2E_FMT(inode_link, sizeof inode_link, "socket:[%lu]", inode);
    if (!(d = opendir("/proc"))) return -1;
    while ((de = readdir(d)) != NULL) {
        char fdpath[300], lpath[600], target[128];
        DIR *fdd;
        struct dirent *fe;
        int mine = 0;
        if (de->d_name[0] < '0' || de->d_name[0] > '9') continue;
        E2E_FMT(fdpath, sizeof fdpath, "/proc/%s/fd", de->d_name);
        if (!(fdd = opendir(fdpath))) continue;
        while (!mine && (fe = readdir(fdd)) != NULL) {
            ssize_t n;
            if (fe->d_name[0] < '0' || fe->d_name[0] > '9') continue;
            E2E_FMT(lpath, sizeof lpath, "%s/%s", fdpath, fe->d_name);
            n = readlink(lpath, target, sizeof target - 1);
            if (n <= 0) continue;
            target[n] = '\0';
            mine = strcmp(target, inode_link) == 0;
        }
        closedir(fdd);
        if (mine) {
            holders++;
            found = (pid_t)atoi(de->d_name);
        }
    }
    closedir(d);
    if (holders != 1) {
        printf("  %d processes hold the listener %s:%d (want 1)\n", holders, ip, port);
        return -1;
    }
    return found;
}

/* The pod's gRPC server: the process serving POD_IP:9090, checked to be
   grpc_server.py of that very pod (its --root is the pod's directory). */
static pid_t grpc_server_of(sbx_sandbox *sb)
{
    const char *ip = sbx_pod_ip(sb), *pod = sbx_pod_name(sb);
    char pidname[32], cmd[4096], podroot[300];
    pid_t pid;
    if (!ip || !pod) {
        printf("  no pod IP / name\n");
        return -1;
    }
    if ((pid = listener_pid(ip, 9090)) <= 0) return -1;
    E2E_FMT(pidname, sizeof pidname, "%d", (int)pid);
    E2E_FMT(podroot, sizeof podroot, "/%s/root", pod);
    if (test_cmdline(pidname, cmd, sizeof cmd, 1) < 0 || !strstr(cmd, "grpc_server.py") || !strstr(cmd, podroot)) {
        printf("  pid %d serves %s:9090 but is not pod %s's grpc_server.py: %s\n", (int)pid, ip, pod, cmd);
        return -1;
    }
    printf("  pod %s (%s): gRPC server pid %d: %.200s\n", pod, ip, (int)pid, cmd);
    return pid;
}

/* SIGSTOP pid and wait (bounded) until /proc says it is stopped. */
static int freeze(pid_t pid)
{
    long long d = sbx__deadline(2000);
    if (kill(pid, SIGSTOP) != 0) return -1;
    frozen = pid;
    while (sbx__ms_left(d) > 0) {
        char state = 0;
        int ppid;
        unsigned long long start;
        if (test_proc_read((int)pid, &state, &ppid, &start) && state == 'T') return 0;
        poll(NULL, 0, 10);
    }
    return -1;
}

/* Keepalive counters of the sandbox's current HTTP/2 connection (white-box). */
typedef struct ka_counts {
    unsigned long pings, acks, connects;
    long keepalive_ms;
} ka_counts;

static ka_counts ka_of(sbx_sandbox *sb)
{
    ka_counts k;
    sbx__h2 *h = sb->impl && sb->impl->gchan ? sb->impl->gchan->h : NULL;
    memset(&k, 0, sizeof k);
    if (!h) return k;
    pthread_mutex_lock(&h->mu);
    if (h->cur) {
        k.pings = h->cur->pings;
        k.acks = h->cur->ping_acks;
    }
    k.connects = h->connects;
    k.keepalive_ms = h->keepalive_ms;
    pthread_mutex_unlock(&h->mu);
    return k;
}

/* A line written to `exec cat` comes back (the connection works), the
   pod's gRPC server is frozen, and a read that would wait 30 s fails by the
   keepalive PING; after the thaw a new connection serves the next call. */
TEST(frozen_runtime_fails_calls_by_ping)
{
    sbx_sandbox sb;
    sbx_process p;
    sbx_process_event ev;
    sbx_exec_result res;
    sbx_result r;
    ka_counts k0;
    long long t0, took;
    pid_t srv;
    char msg[SBX_ERRMSG_SIZE];
    int fds0 = own_fds();
    if (em_open_sandboxd(&CL, &sb) != 0) { CHECK(0); return; }
    CHECK_EQ_INT(em_start_sh(&p, &sb, "exec cat"), SBX_OK);
    CHECK_EQ_INT(sbx_process_write(&p, "ping?\n", 6), SBX_OK);
    CHECK_EQ_INT(sbx_process_read(&p, &ev, 5000), SBX_OK);
    CHECK(ev.stream == SBX_STREAM_STDOUT && ev.len == 6 && memcmp(ev.data, "ping?\n", 6) == 0);
    k0 = ka_of(&sb);
    CHECK_EQ_INT(k0.connects, 1);
    srv = grpc_server_of(&sb);
    CHECK(srv > 0);
    if (srv > 0 && freeze(srv) == 0) {
        t0 = sbx__now_ms();
        r = sbx_process_read(&p, &ev, 30000);
        took = em_since(t0);
        snprintf(msg, sizeof msg, "%s", p.err.msg);
        thaw();
        printf("  frozen server: read failed after %lld ms (keepalive %d ms + PING timeout %d ms): %s\n", took,
               SBX_H2_KEEPALIVE_MS, SBX_H2_PING_TIMEOUT_MS, msg);
        CHECK_EQ_INT(r, SBX_ERR_CONNECT);
        CHECK_MSG(strstr(msg, "no answer to PING in") != NULL, "%s", msg);
        /* the PING goes out within the keepalive (the line was the last
           thing received), and the connection dies a PING timeout later */
        CHECK_MSG(took >= SBX_H2_PING_TIMEOUT_MS - 50 && took < SBX_H2_KEEPALIVE_MS + SBX_H2_PING_TIMEOUT_MS + 2500,
                  "%lld ms", took);
        /* the stream's end stays: every later read repeats it */
        CHECK_EQ_INT(sbx_process_read(&p, &ev, 0), SBX_ERR_CONNECT);
    } else {
        thaw();
        CHECK_MSG(0, "could not freeze the pod's gRPC server");
    }
    /* thawed: a new connection serves the next call */
    r = sbx_run(&sb, "echo again", &res);
    CHECK_MSG(r == SBX_OK, "%s", sb.err.msg);
    CHECK_STR(res.out ? res.out : "", "again\n");
    CHECK_EQ_INT(res.exit_code, 0);
    sbx_exec_result_free(&res);
    CHECK_EQ_INT(ka_of(&sb).connects, 2);
    r = sbx_process_close(&p);
    CHECK_MSG(r == SBX_OK, "%s", p.err.msg);
    CHECK(p.impl == NULL);
    CHECK_EQ_INT(sbx_close(&sb), SBX_OK);
    CHECK_EQ_INT(own_fds(), fds0);
}

/* A healthy stream quiet for 2.5 s (several keepalive intervals): the PINGs
   are answered, the stream is not cut, the late line and the exit come. */
TEST(quiet_stream_is_not_cut)
{
    sbx_sandbox sb;
    sbx_process p;
    ka_counts k;
    em_drained d;
    long long t0;
    int fds0 = own_fds();
    if (em_open_sandboxd(&CL, &sb) != 0) { CHECK(0); return; }
    CHECK_EQ_INT(em_start_sh(&p, &sb, "sleep 2.5; echo late"), SBX_OK);
    t0 = sbx__now_ms();
    em_drain(&p, &d, 10000);
    k = ka_of(&sb);
    printf("  %lld ms quiet then \"late\": %lu PINGs sent, %lu acked, %lu connection(s), keepalive now %ld ms\n",
           em_since(t0), k.pings, k.acks, k.connects, k.keepalive_ms);
    CHECK_MSG(d.r == SBX_OK, "%s", d.msg);
    CHECK_STR(d.out, "late\n");
    CHECK_EQ_INT(d.exit_code, 0);
    CHECK_EQ_INT(k.connects, 1);
    CHECK_EQ_INT(k.keepalive_ms, SBX_H2_KEEPALIVE_MS); /* no GOAWAY too_many_pings */
#if SBX_H2_KEEPALIVE_MS > 0 && SBX_H2_KEEPALIVE_MS <= 1000
    /* the silence was long enough for keepalive to act (else this proves
       nothing): PINGs went out and came back (a second one depends on how
       fast the first was answered, so it is not asserted) */
    CHECK_MSG(k.pings >= 1 && k.acks >= 1, "%lu PINGs, %lu answered in 2.5 s of silence", k.pings, k.acks);
    CHECK(k.acks + 1 >= k.pings);
#endif
    CHECK_EQ_INT(sbx_process_close(&p), SBX_OK);
    CHECK_EQ_INT(sbx_close(&sb), SBX_OK);
    CHECK_EQ_INT(own_fds(), fds0);
}

TEST(no_leftovers)
{
    em_settle(&C, &B);
}

int main(void)
{
    long long t0 = sbx__now_ms();
    const char *route = getenv("SANDBOX_POD_ROUTE");
    int stop;
    e2e_pick_kubectl();
    if ((stop = em_sandboxd_suite_up(&C, &B, "e2e_keepalive", 2)) >= 0) return stop;
    printf("route: %s; keepalive %d ms, PING timeout %d ms; baseline: %d fds, %d pods, %d children\n",
           route ? route : "(default)", SBX_H2_KEEPALIVE_MS, SBX_H2_PING_TIMEOUT_MS, B.fds, B.pods, B.children);
    if (em_client(&C, &CL, SBX_MODE_POD_TUNNEL, NULL) == SBX_OK) {
        EM_RUN(frozen_runtime_fails_calls_by_ping);
        EM_RUN(quiet_stream_is_not_cut);
        sbx_client_close(&CL);
    } else {
        CHECK(0);
    }
    thaw();
    EM_RUN(no_leftovers);
    e2e_down(&C);
    printf("suite took %lld ms\n", em_since(t0));
    return test_summary("e2e_keepalive");
}
