/* tests/fuzz/fuzz_route.c - libFuzzer target for the untrusted inputs of the
   >>kube routes: Gateway status addresses (sbx__gateway_host), RFC 3339 times
   from sandboxd listings (sbx__parse_rfc3339), claim objects from the API
   (sbx__claim_info_read) and sandbox paths as sent to the runtimes
   (sbx__rt_target_enc, encoded once for sandboxd, twice for the python runtime).

   Invariants: an accepted address is a bracketed IPv6 literal or has no ':',
   and never holds '/', '?', '#', '@' or a blank; an encoded path holds only
   unreserved bytes and %XX after the endpoint, and percent-decoding it once
   (sandboxd) or twice (python runtime) gives back the cleaned path.

   make build/fuzz_route && build/fuzz_route CORPUS_COPY
   make build/replay_route && build/replay_route tests/fuzz/corpus/route */
#define SANDBOX_IMPLEMENTATION
#include "sandbox.h"
#include <stdint.h>

static void fz_fail(const char *what, const char *in)
{
    fprintf(stderr, "fuzz_route: %s: \"%s\"\n", what, in);
    abort();
}

static int fz_hex(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
}

/* percent-decode in place; -1 on a broken escape */
static long fz_decode(char *s, size_t n)
{
    size_t i, o = 0;
    for (i = 0; i < n; i++) {
        if (s[i] == '%') {
            int h, l;
            if (i + 2 >= n) return -1;
            h = fz_hex(s[i + 1]);
            l = fz_hex(s[i + 2]);
            if (h < 0 || l < 0) return -1;
            s[o++] = (char)(h * 16 + l);
            i += 2;
        } else {
            s[o++] = s[i];
        }
    }
    return (long)o;
}

static void fz_target(const char *str, int twice)
{
    sbx_allocator a = sbx__allocator(NULL);
    sbx__buf target, clean;
    sbx_result r1, r2;
    sbx__buf_init(&target, &a);
    sbx__buf_init(&clean, &a);
    r1 = sbx__rt_target_enc("/x/", str, 1, twice, &target, NULL);
    r2 = sbx__clean_path(str, &clean, 1, NULL);
    if ((r1 == SBX_OK) != (r2 == SBX_OK)) fz_fail("rt_target and clean_path disagree", str);
    if (r1 == SBX_OK) {
        size_t i, n = target.len - 3;
        char *p = target.data + 3;
        long m;
        if (strncmp(target.data, "/x/", 3) != 0) fz_fail("endpoint lost", str);
        for (i = 0; i < n; i++) {
            char c = p[i];
            if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.' ||
                  c == '_' || c == '~' || c == '%'))
                fz_fail("unencoded byte in the target", str);
        }
        m = fz_decode(p, n);
        if (m >= 0 && twice) m = fz_decode(p, (size_t)m);
        if (m < 0) fz_fail("target does not decode", str);
        if (twice && clean.len == 0) {
            if (m != 1 || p[0] != '.') fz_fail("root is not \".\"", str);
        } else if ((size_t)m != clean.len || memcmp(p, clean.data, clean.len) != 0) {
            fz_fail("decoded target differs from the cleaned path", str);
        }
    }
    sbx__buf_free(&target);
    sbx__buf_free(&clean);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *str = (char *)malloc(size + 1);
    char host[300];
    const char *why = NULL;
    sbx_allocator a = sbx__allocator(NULL);
    sbx__jtok *t = NULL;
    int n;
    if (!str) return 0;
    memcpy(str, data, size);
    str[size] = '\0';
    /* the address, up to the first NUL */
    if (sbx__gateway_host(str, host, sizeof host, &why)) {
        if (strpbrk(host, "/?#@ \t\r\n")) fz_fail("accepted address holds a forbidden byte", str);
        if (strchr(host, ':') && (host[0] != '[' || host[strlen(host) - 1] != ']'))
            fz_fail("IPv6 address not bracketed", str);
        if (!host[0]) fz_fail("empty host accepted", str);
    } else if (!why || !*why) {
        fz_fail("refused without a reason", str);
    }
    (void)sbx__parse_rfc3339((const char *)data, size);
    fz_target(str, 0);
    fz_target(str, 1);
    /* a claim object */
    n = sbx__json_parse_alloc(&a, (const char *)data, size, &t);
    if (n > 0) {
        sbx__claim_info ci;
        sbx__claim_info_read(&a, (const char *)data, t, n, 0, &ci);
        if (strlen(ci.sandbox) >= sizeof ci.sandbox || strlen(ci.reason) >= sizeof ci.reason ||
            strlen(ci.message) >= sizeof ci.message || strlen(ci.ready) >= sizeof ci.ready)
            fz_fail("claim field overflow", "(json)");
        sbx__free(&a, t);
    }
    free(str);
    return 0;
}
