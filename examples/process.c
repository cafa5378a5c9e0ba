/* process.c - a streaming process on sandboxd (its gRPC process API).

     ./process [TEMPLATE]   default "sandboxd-template" (the dev cluster's
                            sandboxd template: make devcluster-up, then set
                            KUBECONFIG to its kubeconfig)

   Starts a shell loop, prints its output as it arrives, answers its prompt
   on stdin, reads the exit code; then a one-shot sbx_exec with an
   environment variable and a working directory.

   Build:  cc -std=c99 -I.. process.c -o process -pthread  (or: make build/process) */
#define SANDBOX_IMPLEMENTATION
#include "sandbox.h"

#include <stdio.h>
#include <string.h>

int main(int argc, char **argv)
{
    static const char *const env[] = {"GREETING", "hello from env", NULL};
    sbx_sandbox sb;
    sbx_sandbox_config cfg;
    sbx_process p;
    sbx_process_config pc;
    sbx_process_event ev;
    sbx_exec_result res;
    int rc = 0;

    memset(&cfg, 0, sizeof cfg);
    cfg.template_name = argc > 1 ? argv[1] : "sandboxd-template";
    if (sbx_open(&sb, NULL, &cfg) != SBX_OK) {
        fprintf(stderr, "open: %s\n", sb.err.msg);
        return 1;
    }
    if (!(sbx_capabilities(&sb) & SBX_CAP_PROCESS)) {
        fprintf(stderr, "this sandbox has no process API (route %s)\n", sbx_route(&sb));
        sbx_close(&sb);
        return 1;
    }

    memset(&pc, 0, sizeof pc);
    pc.command = "for i in 1 2 3; do echo tick $i; sleep 0.3; done; "
                 "printf 'name? '; read name; echo \"hi $name\" >&2; exit 4";
    if (sbx_process_start(&p, &sb, &pc) != SBX_OK) {
        fprintf(stderr, "start: %s\n", p.err.msg);
        rc = 1;
    } else {
        printf("process %d started\n", sbx_process_id(&p));
        for (;;) {
            if (sbx_process_read(&p, &ev, 10000) != SBX_OK) { /* wait up to 10 s per event */
                fprintf(stderr, "read: %s\n", p.err.msg);
                rc = 1;
                break;
            }
            if (ev.stream == SBX_STREAM_EXIT) {
                printf("exit code %d\n", ev.exit_code);
                break;
            }
            printf("%s: %.*s%s", ev.stream == SBX_STREAM_STDOUT ? "out" : "err", (int)ev.len, ev.data,
                   ev.len && ev.data[ev.len - 1] == '\n' ? "" : "\n");
            if (ev.len >= 6 && memcmp(ev.data + ev.len - 6, "name? ", 6) == 0 &&
                (sbx_process_write(&p, "sandbox.h\n", 10) != SBX_OK || sbx_process_close_stdin(&p) != SBX_OK))
                fprintf(stderr, "stdin: %s\n", p.err.msg);
        }
    }
    sbx_process_close(&p); /* kills it if it still ran; always frees the handle */

    memset(&pc, 0, sizeof pc);
    pc.command = "echo \"$GREETING in $(pwd)\"";
    pc.env = env;
    pc.cwd = "work";
    if (sbx_write(&sb, "work/.keep", "", 0) != SBX_OK || sbx_exec(&sb, &pc, &res) != SBX_OK) {
        fprintf(stderr, "exec: %s\n", sb.err.msg);
        rc = 1;
    } else {
        printf("exec: %s", res.out);
        sbx_exec_result_free(&res);
    }
    sbx_close(&sb);
    return rc;
}
