/* tests/fuzz/fuzz_grpcmsg.c - libFuzzer target for the process.v1 messages the
   server sends (>>route: sbx__pm_exec_resp, sbx__pm_start_event) and for the
   request encoders fed with strings taken from the input (sbx__pm_config).

   The first byte picks the decoder (ExecuteResponse or StartResponse); the
   rest is the message. Invariants: a decoded stdout/stderr view lies inside
   the message; an event kind is one of the five; an encoded ProcessConfig
   decodes again (walked with sbx__pb_next) into the same argv strings.

   make build/fuzz_grpcmsg && build/fuzz_grpcmsg CORPUS_COPY
   make build/replay_grpcmsg && build/replay_grpcmsg tests/fuzz/corpus/grpcmsg */
#define SANDBOX_IMPLEMENTATION
#include "sandbox.h"
#include <stdint.h>

static void fz_fail(const char *what)
{
    fprintf(stderr, "fuzz_grpcmsg: %s\n", what);
    abort();
}

static void fz_inside(const unsigned char *p, size_t n, const uint8_t *msg, size_t size)
{
    if (n == 0) return;
    if (!p || p < msg || p + n > msg + size) fz_fail("a view outside the message");
}

/* argv from the input: up to 4 NUL-separated words */
static void fz_encode(const uint8_t *data, size_t size)
{
    sbx_allocator a = sbx__allocator(NULL);
    char *copy = (char *)malloc(size + 1), *w[5];
    const char *argv[5];
    sbx__buf out;
    sbx_error e;
    int n = 0, i;
    size_t k;
    if (!copy) return;
    memcpy(copy, data, size);
    copy[size] = '\0';
    w[n++] = copy;
    for (k = 0; k < size && n < 4; k++)
        if (copy[k] == '\0') w[n++] = copy + k + 1;
    for (i = 0; i < n; i++) argv[i] = w[i];
    argv[n] = NULL;
    sbx__buf_init(&out, &a);
    if (sbx__pm_config(&out, 1, argv, NULL, NULL, n > 1 ? argv[1] : NULL, &e) == SBX_OK) {
        sbx__pb r, inner;
        int f, wt, got = 0;
        unsigned long long v;
        const unsigned char *d, *cfg = NULL;
        size_t len, cfg_len = 0;
        sbx__pb_init(&r, out.data, out.len);
        if (sbx__pb_next(&r, &f, &wt, &v, &cfg, &cfg_len) != 1 || f != 1 || wt != 2) fz_fail("no config field");
        if (sbx__pb_next(&r, &f, &wt, &v, &d, &len) != 0) fz_fail("bytes after the config");
        sbx__pb_init(&inner, cfg, cfg_len);
        while (sbx__pb_next(&inner, &f, &wt, &v, &d, &len) == 1) {
            if (f != 1) continue;
            if (got >= n || len != strlen(argv[got]) || memcmp(d, argv[got], len) != 0) fz_fail("argv differs");
            got++;
        }
        if (got != n) fz_fail("argv lost a word");
    }
    sbx__buf_free(&out);
    free(copy);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *msg;
    size_t n;
    if (size == 0) return 0;
    msg = data + 1;
    n = size - 1;
    if (data[0] & 1) {
        sbx__pm_exec x;
        if (sbx__pm_exec_resp(msg, n, &x) == 0) {
            fz_inside(x.out, x.out_len, msg, n);
            fz_inside(x.err, x.err_len, msg, n);
        }
    } else {
        sbx__pm_event ev;
        if (sbx__pm_start_event(msg, n, &ev) == 0) {
            if (ev.kind < SBX__PM_NONE || ev.kind > SBX__PM_EXIT) fz_fail("bad kind");
            fz_inside(ev.data, ev.len, msg, n);
            if (ev.kind != SBX__PM_STDOUT && ev.kind != SBX__PM_STDERR && (ev.data || ev.len))
                fz_fail("data without an output event");
        }
    }
    if (data[0] & 2) fz_encode(msg, n);
    return 0;
}
