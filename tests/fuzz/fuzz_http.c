/* fuzz_http: the response head parser, then the chunked decoder fed the rest
   of the input in random splits (derived from the input), plus the error-text
   scanner. Invariants checked (abort on violation):
   - a complete head: views inside it, every tested proper prefix is
     INCOMPLETE, one header fewer of capacity gives TOO_MANY;
   - the chunked decoder gives the same result, output and consumed count
     whether fed at once or in pieces (each piece an exact-size copy);
   - error text is NUL-terminated, fits its buffer, and its length is returned. */
#define SANDBOX_IMPLEMENTATION
#include "sandbox.h"
#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static unsigned long long fz_next(unsigned long long *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

static void fz_check(int ok)
{
    if (!ok) abort();
}

static void fz_head(const char *in, size_t size, size_t *body_off, unsigned long long *rng)
{
    int minor = -1, status = -1, r, k;
    const char *reason = NULL, *why = NULL;
    size_t rl = 0, nh = SBX_MAX_HEADERS, i;
    sbx__http_hdr hdr[SBX_MAX_HEADERS];
    r = sbx__http_parse_head(in, size, &minor, &status, &reason, &rl, hdr, &nh, &why);
    *body_off = 0;
    if (r == SBX__HTTP_INVALID) fz_check(why != NULL);
    if (r <= 0) return;
    fz_check((size_t)r <= size && r <= SBX_MAX_HEADER_BYTES);
    fz_check(minor == 0 || minor == 1);
    fz_check(status >= 100 && status <= 599);
    fz_check(reason >= in && reason + rl <= in + r);
    fz_check(nh <= SBX_MAX_HEADERS);
    for (i = 0; i < nh; i++) {
        size_t j;
        fz_check(hdr[i].name >= in && hdr[i].name + hdr[i].name_len <= in + r && hdr[i].name_len > 0);
        fz_check(hdr[i].value >= in && hdr[i].value + hdr[i].value_len <= in + r);
        for (j = 0; j < hdr[i].name_len; j++) fz_check(sbx__http_tchar((unsigned char)hdr[i].name[j]));
        for (j = 0; j < hdr[i].value_len; j++) fz_check(hdr[i].value[j] != '\r' && hdr[i].value[j] != '\n');
    }
    for (k = 0; k < 6; k++) {
        size_t plen = (size_t)(fz_next(rng) % (unsigned long long)r);
        char *cp = (char *)malloc(plen ? plen : 1);
        size_t n2 = SBX_MAX_HEADERS;
        memcpy(cp, in, plen);
        fz_check(sbx__http_parse_head(cp, plen, &minor, &status, &reason, &rl, hdr, &n2, &why) == SBX__HTTP_INCOMPLETE);
        free(cp);
    }
    if (nh > 0) {
        size_t n2 = nh - 1;
        fz_check(sbx__http_parse_head(in, size, &minor, &status, &reason, &rl, hdr, &n2, &why) == SBX__HTTP_TOO_MANY);
    }
    *body_off = (size_t)r;
}

static void fz_chunked(const char *in, size_t n, unsigned long long *rng)
{
    char *all = (char *)malloc(n ? n : 1), *out = (char *)malloc(n ? n : 1);
    sbx__chunked d;
    size_t ref_out = 0, ref_used = 0, pos = 0, got = 0, used_total = 0;
    int ref, rc = 0;
    memcpy(all, in, n);
    sbx__chunked_init(&d);
    ref = sbx__chunked_decode(&d, all, n, &ref_out, &ref_used);
    fz_check(ref_out <= ref_used && ref_used <= n);
    fz_check(ref != -1 || d.why != NULL);
    if (ref == 0) fz_check(ref_used == n);
    sbx__chunked_init(&d);
    while (pos < n) {
        size_t step = (size_t)(fz_next(rng) % 4 == 0 ? fz_next(rng) % 512 : fz_next(rng) % 8) + 1, o = 0, u = 0;
        char *piece;
        if (step > n - pos) step = n - pos;
        piece = (char *)malloc(step);
        memcpy(piece, in + pos, step);
        rc = sbx__chunked_decode(&d, piece, step, &o, &u);
        fz_check(o <= u && u <= step);
        memcpy(out + got, piece, o);
        got += o;
        used_total += u;
        free(piece);
        if (rc != 0) break;
        fz_check(u == step);
        pos += step;
    }
    if (n == 0) rc = 0;
    fz_check(rc == ref);
    fz_check(got == ref_out && memcmp(out, all, got) == 0);
    fz_check(used_total == ref_used);
    free(all);
    free(out);
}

static void fz_error_text(const char *in, size_t n, unsigned long long *rng)
{
    static const size_t caps[] = {1, 9, 12, 40, 512};
    size_t i;
    for (i = 0; i < sizeof caps / sizeof caps[0]; i++) {
        char *out = (char *)malloc(caps[i]);
        size_t len = sbx__http_error_text((int)(fz_next(rng) % 600), in, n, out, caps[i]);
        fz_check(len < caps[i] && strlen(out) == len);
        free(out);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *in = (const char *)data;
    unsigned long long rng = 1469598103934665603ull;
    size_t i, off;
    long long v;
    for (i = 0; i < size; i++) rng = (rng ^ data[i]) * 1099511628211ull;
    if (rng == 0) rng = 1;
    fz_head(in, size, &off, &rng);
    fz_chunked(in + off, size - off, &rng);
    fz_error_text(in + off, size - off, &rng);
    if (sbx__http_parse_length(in, size < 30 ? size : 30, &v) == 0) fz_check(v >= 0);
    return 0;
}
