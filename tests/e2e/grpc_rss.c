/* tests/e2e/grpc_rss.c - the client side of test_e2e_grpc's flat-memory test:
   opens a sandboxd sandbox of the dev cluster (kubeconfig in argv[1]), streams
   `head -c N /dev/zero` (N = argv[2]) through sbx_process_read and prints
   "bytes N hwm_kb K ms T": the stdout bytes seen, this process's peak RSS
   (VmHWM) and the stream's time. Built -O2 without sanitizers (make
   build/grpc_rss) so the figure is the library's, not ASan's. Exit 0 when all
   bytes came and the process exited 0. */
#define SANDBOX_IMPLEMENTATION
#include "sandbox.h"

static long long hwm_kb(void)
{
    char line[256];
    long long v = -1;
    FILE *f = fopen("/proc/self/status", "r");
    if (!f) return -1;
    while (fgets(line, sizeof line, f))
        if (strncmp(line, "VmHWM:", 6) == 0) v = atoll(line + 6);
    fclose(f);
    return v;
}

int main(int argc, char **argv)
{
    sbx_client_config cc;
    sbx_sandbox_config cfg;
    sbx_client cl;
    sbx_sandbox sb;
    sbx_process p;
    sbx_process_config pc;
    sbx_process_event ev;
    char cmd[64];
    long long total = 0, t0;
    int exit_code = -999, rc = 1;
    if (argc < 3) {
        fprintf(stderr, "usage: grpc_rss KUBECONFIG BYTES\n");
        return 2;
    }
    memset(&cc, 0, sizeof cc);
    cc.kubeconfig = argv[1];
    if (sbx_client_open(&cl, &cc) != SBX_OK) {
        fprintf(stderr, "client: %s\n", cl.err.msg);
        return 1;
    }
    memset(&cfg, 0, sizeof cfg);
    cfg.template_name = "sandboxd-template";
    if (sbx_open(&sb, &cl, &cfg) != SBX_OK) {
        fprintf(stderr, "open: %s\n", sb.err.msg);
        sbx_client_close(&cl);
        return 1;
    }
    snprintf(cmd, sizeof cmd, "head -c %s /dev/zero", argv[2]);
    memset(&pc, 0, sizeof pc);
    pc.command = cmd;
    t0 = sbx__now_ms();
    if (sbx_process_start(&p, &sb, &pc) != SBX_OK) {
        fprintf(stderr, "start: %s\n", p.err.msg);
    } else {
        for (;;) {
            if (sbx_process_read(&p, &ev, 30000) != SBX_OK) {
                fprintf(stderr, "read: %s\n", p.err.msg);
                break;
            }
            if (ev.stream == SBX_STREAM_EXIT) {
                exit_code = ev.exit_code;
                break;
            }
            total += (long long)ev.len;
        }
        printf("bytes %lld hwm_kb %lld ms %lld\n", total, hwm_kb(), sbx__now_ms() - t0);
        rc = exit_code == 0 && total == atoll(argv[2]) ? 0 : 1;
    }
    sbx_process_close(&p);
    sbx_close(&sb);
    sbx_client_close(&cl);
    return rc;
}
