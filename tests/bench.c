/* bench.c - `make bench`: how fast sandbox.h is against baselines measured in
   the same run, on the dev cluster with the real kubectl. Not a test: it
   prints medians and ratios, and asserts nothing.

   1. N lifecycles (open -> run -> write 1 KB -> read -> close), per phase.
   2. 500 sequential run("echo hi") in one sandbox, against curl doing the same
      POST /execute over one kept-alive connection through the same tunnel.
   3. Warm open-to-first-result against kubectl port-forward start-to-line
      plus two API round trips through the same kubectl proxy.
   4. Peak RSS of a client process moving 100 MB through write_fd / read_fd. */
#define SANDBOX_IMPLEMENTATION
#include "sandbox.h"
#include "e2e.h"

#include <sys/resource.h>

static int cmp_ll(const void *a, const void *b)
{
    long long x = *(const long long *)a, y = *(const long long *)b;
    return x < y ? -1 : x > y;
}

static long long now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static double median_ms(long long *us, int n)
{
    qsort(us, (size_t)n, sizeof *us, cmp_ll);
    return n ? (n % 2 ? us[n / 2] : (us[n / 2 - 1] + us[n / 2]) / 2) / 1000.0 : 0.0;
}

static e2e_cluster C;
static sbx_client client;

#define LIFECYCLES 20
#define RUNS 500

static void bench_lifecycles(double *open_med)
{
    long long t_open[LIFECYCLES], t_run[LIFECYCLES], t_write[LIFECYCLES], t_read[LIFECYCLES], t_close[LIFECYCLES],
        t_total[LIFECYCLES], t_first[LIFECYCLES];
    char kb[1024];
    int i, n = 0;
    memset(kb, 'k', sizeof kb);
    for (i = 0; i < LIFECYCLES; i++) {
        sbx_sandbox sb;
        sbx_sandbox_config cfg;
        sbx_exec_result res;
        void *back = NULL;
        size_t len;
        long long t0, t1, t2, t3, t4, t5;
        memset(&cfg, 0, sizeof cfg);
        cfg.template_name = "python-sandbox-template";
        t0 = now_us();
        if (sbx_open(&sb, &client, &cfg) != SBX_OK) { printf("open: %s\n", sb.err.msg); continue; }
        t1 = now_us();
        if (sbx_run(&sb, "echo hi", &res) != SBX_OK) printf("run: %s\n", sb.err.msg);
        t2 = now_us();
        sbx_exec_result_free(&res);
        if (sbx_write(&sb, "kb.bin", kb, sizeof kb) != SBX_OK) printf("write: %s\n", sb.err.msg);
        t3 = now_us();
        if (sbx_read(&sb, "kb.bin", &back, &len) != SBX_OK) printf("read: %s\n", sb.err.msg);
        t4 = now_us();
        sbx_free(back);
        sbx_close(&sb);
        t5 = now_us();
        t_open[n] = t1 - t0; t_run[n] = t2 - t1; t_write[n] = t3 - t2; t_read[n] = t4 - t3;
        t_close[n] = t5 - t4; t_total[n] = t5 - t0; t_first[n] = t2 - t0;
        n++;
        /* let the pool replace the adopted sandbox so every open is warm */
        poll(NULL, 0, 150);
    }
    printf("\n%d lifecycles (warm pool), median ms per phase:\n", n);
    printf("  %-8s %8.2f\n", "open", median_ms(t_open, n));
    printf("  %-8s %8.2f\n", "run", median_ms(t_run, n));
    printf("  %-8s %8.2f\n", "write1KB", median_ms(t_write, n));
    printf("  %-8s %8.2f\n", "read1KB", median_ms(t_read, n));
    printf("  %-8s %8.2f\n", "close", median_ms(t_close, n));
    printf("  %-8s %8.2f\n", "total", median_ms(t_total, n));
    *open_med = median_ms(t_first, n);
}

/* curl: RUNS POSTs over one kept-alive connection through the same tunnel;
   -w prints each transfer's time, so we get a median too. */
static double curl_median(int port)
{
    char path[700], cmd[1200], line[128];
    FILE *f, *p;
    long long us[RUNS];
    int i, n = 0;
    E2E_FMT(path, sizeof path, "%s/curl.cfg", C.dir);
    f = fopen(path, "w");
    if (!f) return 0;
    fprintf(f, "silent\nheader = \"Content-Type: application/json\"\n"
               "data = \"{\\\"command\\\":\\\"echo hi\\\"}\"\nwrite-out = \"%%{time_total}\\n\"\n");
    for (i = 0; i < RUNS; i++) fprintf(f, "url = \"http://127.0.0.1:%d/execute\"\noutput = \"/dev/null\"\n", port);
    fclose(f);
    snprintf(cmd, sizeof cmd, "curl -K '%s'", path);
    p = popen(cmd, "r");
    if (!p) return 0;
    while (n < RUNS && fgets(line, sizeof line, p)) us[n++] = (long long)(atof(line) * 1e6);
    pclose(p);
    return median_ms(us, n);
}

/* raw sockets: the same request written with one send() on one kept-alive
   connection, the answer read by Content-Length: the floor for any client. */
static double raw_median(int port)
{
    static const char req[] = "POST /execute HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                              "Content-Length: 21\r\n\r\n{\"command\":\"echo hi\"}";
    long long us[RUNS];
    struct sockaddr_in sa;
    int fd, i, n = 0, one = 1;
    fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) return 0;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_port = htons((unsigned short)port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) { close(fd); return 0; }
    for (i = 0; i < RUNS; i++) {
        char buf[8192];
        size_t got = 0;
        long long t0 = now_us();
        char *hdr_end = NULL;
        long clen = -1;
        if (send(fd, req, sizeof req - 1, 0) != (ssize_t)(sizeof req - 1)) break;
        for (;;) {
            ssize_t r = recv(fd, buf + got, sizeof buf - 1 - got, 0);
            if (r <= 0) break;
            got += (size_t)r;
            buf[got] = '\0';
            if (!hdr_end && (hdr_end = strstr(buf, "\r\n\r\n")) != NULL) {
                char *cl = strstr(buf, "content-length:");
                if (!cl) cl = strstr(buf, "Content-Length:");
                clen = cl ? atol(cl + 15) : 0;
            }
            if (hdr_end && (long)(got - (size_t)(hdr_end + 4 - buf)) >= clen) break;
        }
        if (!hdr_end) break;
        us[n++] = now_us() - t0;
    }
    close(fd);
    return median_ms(us, n);
}

static void bench_runs(void)
{
    sbx_sandbox sb;
    sbx_sandbox_config cfg;
    long long us[RUNS];
    int i;
    double ours, curl, raw;
    memset(&cfg, 0, sizeof cfg);
    cfg.template_name = "python-sandbox-template";
    if (sbx_open(&sb, &client, &cfg) != SBX_OK) { printf("open: %s\n", sb.err.msg); return; }
    for (i = 0; i < RUNS; i++) {
        sbx_exec_result res;
        long long t0 = now_us();
        if (sbx_run(&sb, "echo hi", &res) != SBX_OK) printf("run: %s\n", sb.err.msg);
        us[i] = now_us() - t0;
        sbx_exec_result_free(&res);
    }
    ours = median_ms(us, RUNS);
    curl = curl_median(sb.impl->local_port);
    raw = raw_median(sb.impl->local_port);
    printf("\n%d sequential run(\"echo hi\") in one sandbox, median ms:\n", RUNS);
    printf("  sandbox.h %8.3f\n  curl      %8.3f   (same POST /execute, one kept-alive connection, same tunnel)\n", ours, curl);
    printf("  raw       %8.3f   (the same bytes in one send() on one kept-alive socket)\n", raw);
    printf("  ratio vs curl %8.3f   (target <= 1.15)\n", curl > 0 ? ours / curl : 0.0);
    printf("  ratio vs raw  %8.3f\n", raw > 0 ? ours / raw : 0.0);
    sbx_close(&sb);
}

/* kubectl port-forward start-to-line, and API round trips through the proxy. */
static void bench_baselines(double open_med)
{
    long long pf[10], api[50];
    int i, n = 0;
    char pod[128] = "";
    sbx__buf out;
    sbx__jtok *t = NULL;
    int cnt;
    /* a warm pool pod to forward to */
    if (e2e_http(&C, "GET", "/api/v1/namespaces/default/pods", NULL, &out) == 200) {
        cnt = sbx__json_parse_alloc(&C.a, out.data, out.len, &t);
        if (cnt > 0) sbx__json_copy(out.data, t, sbx__json_get(out.data, t, cnt, 0, "items[0].metadata.name"), pod, sizeof pod);
        sbx__free(&C.a, t);
    }
    sbx__buf_free(&out);
    for (i = 0; i < 10 && pod[0]; i++) {
        sbx__proc p;
        sbx_error e;
        char line[256], kc[700], podarg[200];
        char *argv[10];
        long long t0;
        E2E_FMT(kc, sizeof kc, "--kubeconfig=%s", C.kubeconfig);
        snprintf(podarg, sizeof podarg, "pod/%s", pod);
        argv[0] = (char *)"kubectl"; argv[1] = kc; argv[2] = (char *)"port-forward"; argv[3] = podarg;
        argv[4] = (char *)"0:8888"; argv[5] = (char *)"--address=127.0.0.1"; argv[6] = NULL;
        if (getenv("SANDBOX_KUBECTL")) argv[0] = getenv("SANDBOX_KUBECTL");
        memset(&p, 0, sizeof p);
        t0 = now_us();
        if (sbx__proc_spawn(&p, argv, NULL, &C.a, &e) == SBX_OK &&
            sbx__proc_wait_line(&p, "Forwarding from 127.0.0.1:", line, sizeof line, sbx__deadline(10000), &e) == SBX_OK)
            pf[n++] = now_us() - t0;
        sbx__proc_stop(&p, SIGINT, 2000);
    }
    for (i = 0; i < 50; i++) {
        sbx__buf b;
        int st;
        long long t0 = now_us();
        sbx__buf_init(&b, &client.impl->a);
        sbx__api_call(client.impl, "GET", "/apis/extensions.agents.x-k8s.io/v1beta1/namespaces/default/sandboxwarmpools",
                      NULL, 0, NULL, &b, &st, sbx__deadline(5000), NULL);
        api[i] = now_us() - t0;
        sbx__buf_free(&b);
    }
    {
        double pfm = median_ms(pf, n), apim = median_ms(api, 50);
        printf("\nwarm open-to-first-result vs its floor, median ms:\n");
        printf("  kubectl port-forward start-to-line %8.2f\n", pfm);
        printf("  API round trip via kubectl proxy   %8.2f\n", apim);
        printf("  floor (port-forward + 2 round trips) %6.2f\n", pfm + 2 * apim);
        printf("  sandbox.h open + first run          %6.2f\n", open_med);
        printf("  ratio                              %8.3f   (target <= 1.5)\n",
               pfm + 2 * apim > 0 ? open_med / (pfm + 2 * apim) : 0.0);
    }
}

/* A child process opens a sandbox and moves 100 MB each way through the
   descriptor variants; its peak RSS is what the client costs. */
static void bench_rss(void)
{
    char src[700], dst[700];
    int fd, i, pipefd[2];
    static char chunk[1 << 20];
    pid_t pid;
    long peak_kb = -1;
    E2E_FMT(src, sizeof src, "%s/rss.src", C.dir);
    E2E_FMT(dst, sizeof dst, "%s/rss.dst", C.dir);
    fd = open(src, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    memset(chunk, 'r', sizeof chunk);
    for (i = 0; i < 100; i++)
        if (write(fd, chunk, sizeof chunk) != (ssize_t)sizeof chunk) break;
    close(fd);
    if (pipe(pipefd) != 0) return;
    pid = fork();
    if (pid == 0) {
        sbx_client c2;
        sbx_client_config cc;
        sbx_sandbox sb;
        sbx_sandbox_config cfg;
        struct rusage ru;
        long kb;
        int in, out;
        close(pipefd[0]);
        memset(&cc, 0, sizeof cc);
        cc.kubeconfig = C.kubeconfig;
        memset(&cfg, 0, sizeof cfg);
        cfg.template_name = "python-sandbox-template";
        if (sbx_client_open(&c2, &cc) == SBX_OK && sbx_open(&sb, &c2, &cfg) == SBX_OK) {
            in = open(src, O_RDONLY);
            out = open(dst, O_WRONLY | O_CREAT | O_TRUNC, 0644);
            if (sbx_write_fd(&sb, "rss.bin", in) != SBX_OK || sbx_read_fd(&sb, "rss.bin", out) != SBX_OK)
                fprintf(stderr, "rss: %s\n", sb.err.msg);
            close(in);
            close(out);
            sbx_close(&sb);
        }
        sbx_client_close(&c2);
        getrusage(RUSAGE_SELF, &ru);
        kb = ru.ru_maxrss;
        if (write(pipefd[1], &kb, sizeof kb) != (ssize_t)sizeof kb) _exit(1);
        _exit(0);
    }
    close(pipefd[1]);
    if (read(pipefd[0], &peak_kb, sizeof peak_kb) != (ssize_t)sizeof peak_kb) peak_kb = -1;
    close(pipefd[0]);
    waitpid(pid, NULL, 0);
    printf("\nclient process moving 100 MB in and 100 MB out through write_fd/read_fd:\n");
    printf("  peak RSS %ld KB (%.2f MB; target < 4 MB)\n", peak_kb, peak_kb / 1024.0);
    unlink(src);
    unlink(dst);
}

int main(void)
{
    sbx_client_config cc;
    double open_med = 0;
    e2e_pick_kubectl();
    if (e2e_up(&C, "bench", "") != 0) return 1;
    memset(&cc, 0, sizeof cc);
    cc.kubeconfig = C.kubeconfig;
    if (sbx_client_open(&client, &cc) != SBX_OK) {
        printf("client: %s\n", client.err.msg);
        e2e_down(&C);
        return 1;
    }
    printf("sandbox.h %s bench on the dev cluster (medians; baselines measured in this run)\n", SANDBOX_VERSION_STRING);
    bench_lifecycles(&open_med);
    bench_runs();
    bench_baselines(open_med);
    sbx_client_close(&client);
    bench_rss();
    e2e_down(&C);
    return 0;
}
