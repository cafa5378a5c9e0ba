/* fuzz_watch: the watch path. The input (after an 8-byte seed) is a body of
   newline-delimited records; it is chunk-encoded with random chunk sizes,
   extensions, upper/lower-case hex and trailers, decoded by the chunked
   decoder in random splits (exact-size pieces), and cut into lines by the
   same line code sbx__http_body_line uses. Invariant: the lines equal the
   body's own lines ("\n"-terminated, one trailing "\r" removed, an
   unterminated last piece kept as it is), and a line over the cap is
   reported at exactly the first line that is too long. */
#define SANDBOX_IMPLEMENTATION
#include "sandbox.h"
#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static unsigned long long fw_next(unsigned long long *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

static void fw_check(int ok)
{
    if (!ok) abort();
}

/* The next expected line of body[*pos..n): 1 and [*ls, *le), or 0 at the end.
   *too_long when its bytes before "\n" exceed cap. */
static int fw_ref_line(const char *body, size_t n, size_t *pos, size_t cap, size_t *ls, size_t *le, int *too_long)
{
    const char *nl;
    size_t s = *pos, e;
    if (s >= n) return 0;
    nl = (const char *)memchr(body + s, '\n', n - s);
    if (nl) {
        e = (size_t)(nl - body);
        *pos = e + 1;
        *too_long = e - s > cap;
        if (e > s && body[e - 1] == '\r') e--;
    } else {
        e = n;
        *pos = n;
        *too_long = e - s > cap;
    }
    *ls = s;
    *le = e;
    return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    unsigned long long rng = 88172645463325252ull, seed = 0;
    const char *body;
    size_t n, i, cap, elen = 0, ecap, pos = 0, refpos = 0;
    char *enc;
    sbx__chunked d;
    sbx__linesplit ls;
    sbx__buf line;
    sbx_allocator a = sbx__allocator(NULL);
    int failed = 0, dr = 0;
    for (i = 0; i < 8 && i < size; i++) seed = seed << 8 | data[i];
    rng ^= seed;
    if (rng == 0) rng = 1;
    body = (const char *)data + (size < 8 ? size : 8);
    n = size < 8 ? 0 : size - 8;
    cap = seed % 3 == 0 ? (size_t)(seed >> 8) % 48 : (size_t)1 << 20;
    /* chunk-encode: each chunk at most 64 bytes of data plus < 40 bytes framing */
    ecap = n * 41 + 256;
    enc = (char *)malloc(ecap);
    for (i = 0; i < n;) {
        size_t k = (size_t)(fw_next(&rng) % 64) + 1;
        if (k > n - i) k = n - i;
        elen += (size_t)sprintf(enc + elen, fw_next(&rng) % 2 ? "%s%lx" : "%s%lX", fw_next(&rng) % 5 ? "" : "00",
                                (unsigned long)k);
        if (fw_next(&rng) % 4 == 0) elen += (size_t)sprintf(enc + elen, ";ext=%lu", (unsigned long)(fw_next(&rng) % 1000));
        memcpy(enc + elen, fw_next(&rng) % 8 ? "\r\n" : "\n", 2);
        elen += enc[elen] == '\r' ? 2 : 1;
        memcpy(enc + elen, body + i, k);
        elen += k;
        memcpy(enc + elen, "\r\n", 2);
        elen += 2;
        i += k;
    }
    elen += (size_t)sprintf(enc + elen, "0\r\n%s\r\n", fw_next(&rng) % 2 ? "X-Trailer: 1\r\n" : "");
    fw_check(elen <= ecap);

    sbx__chunked_init(&d);
    ls.len = 0;
    ls.cap = cap;
    sbx__buf_init(&line, &a);
    sbx__buf_append(&line, "", 0);
    while (pos < elen && !failed) {
        size_t step = (size_t)(fw_next(&rng) % 3 == 0 ? fw_next(&rng) % 300 : fw_next(&rng) % 5) + 1, o = 0, u = 0, off = 0;
        char *piece;
        if (step > elen - pos) step = elen - pos;
        piece = (char *)malloc(step);
        memcpy(piece, enc + pos, step);
        dr = sbx__chunked_decode(&d, piece, step, &o, &u);
        fw_check(dr >= 0); /* our own encoding is always valid */
        while (off < o && !failed) {
            size_t used = 0, rs, re;
            int too_long = 0, t = sbx__http_line_take(&ls, &line, piece + off, o - off, &used);
            fw_check(t != -2);
            if (t == -1) {
                /* must be the first line that is too long */
                fw_check(fw_ref_line(body, n, &refpos, cap, &rs, &re, &too_long) == 1 && too_long);
                failed = 1;
                break;
            }
            fw_check(used <= o - off);
            off += used;
            if (t == 1) {
                fw_check(fw_ref_line(body, n, &refpos, cap, &rs, &re, &too_long) == 1 && !too_long);
                fw_check(line.len == re - rs && memcmp(line.data, body + rs, line.len) == 0);
                line.len = 0;
                line.data[0] = '\0';
            }
        }
        free(piece);
        pos += u;
        if (dr == 1) break;
    }
    if (!failed) {
        size_t rs, re;
        int too_long = 0;
        fw_check(dr == 1 && pos == elen);
        if (ls.len > 0) { /* the unterminated last line, as body_line returns it */
            fw_check(fw_ref_line(body, n, &refpos, cap, &rs, &re, &too_long) == 1 && !too_long);
            fw_check(refpos == n && line.len == n - rs && memcmp(line.data, body + rs, line.len) == 0);
        }
        fw_check(fw_ref_line(body, n, &refpos, cap, &rs, &re, &too_long) == 0);
    }
    sbx__buf_free(&line);
    free(enc);
    return 0;
}
