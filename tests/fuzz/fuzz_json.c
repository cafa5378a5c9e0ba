/* tests/fuzz/fuzz_json.c - libFuzzer target for the >>json section.

   The whole input is a document: counted (toks == NULL), parsed into a fixed
   array, into one token short, and with parse_alloc; all must agree. A valid
   document is walked token by token (tests/lib/json_walk.h: bounds, next order,
   subtree tiling, unescape with exact and short buffers, strdup, eq, int and
   double, get/find/member, write_str round trip). The raw input is also given
   to write_str (valid UTF-8 must round-trip, anything else must be refused
   with nothing appended) and wrapped in quotes as a string. If the input holds
   a NUL byte, the bytes before it are a get() path and the bytes after it a
   document to look it up in.

   make build/fuzz_json && build/fuzz_json -dict=tests/fuzz/json.dict CORPUS_COPY
   make build/replay_json && build/replay_json tests/fuzz/corpus/json */
#define SANDBOX_IMPLEMENTATION
#include "sandbox.h"
#include <stdint.h>
#include "json_walk.h"

#define FZ_NT 256

static void fz_fail(const char *what, int a, int b)
{
    fprintf(stderr, "fuzz_json: %s (%d, %d)\n", what, a, b);
    abort();
}

static int fz_same(const sbx__jtok *a, const sbx__jtok *b, int n)
{
    int i;
    for (i = 0; i < n; i++)
        if (a[i].type != b[i].type || a[i].start != b[i].start || a[i].end != b[i].end || a[i].size != b[i].size ||
            a[i].next != b[i].next)
            return 0;
    return 1;
}

/* Every way of parsing the same bytes agrees; returns the count (or error). */
static int fz_parse_all(const char *js, size_t len, sbx__jtok *fixed, sbx__jtok **alloc, const sbx_allocator *a)
{
    size_t pos = (size_t)-1;
    int n = sbx__json_parse_pos(js, len, NULL, 0, &pos), r;
    if (n == 0) fz_fail("count 0", n, 0);
    if (n < 0 && (n < SBX__JSON_ERR_DEPTH || pos > len)) fz_fail("bad error or position", n, (int)pos);
    if (n == SBX__JSON_ERR_PARTIAL && pos != len) fz_fail("PARTIAL before the end", n, (int)pos);
    r = sbx__json_parse(js, len, fixed, FZ_NT);
    if (n < 0 ? r != n : r != (n <= FZ_NT ? n : SBX__JSON_ERR_NOMEM)) fz_fail("fixed array disagrees", n, r);
    if (n > 1 && n - 1 <= FZ_NT && sbx__json_parse(js, len, fixed, n - 1) != SBX__JSON_ERR_NOMEM)
        fz_fail("one token short did not say NOMEM", n, 0);
    if (n > 0 && n <= FZ_NT && sbx__json_parse(js, len, fixed, n) != n) fz_fail("exact array", n, 0);
    r = sbx__json_parse_alloc(a, js, len, alloc);
    if (r != n || (n > 0) != (*alloc != NULL)) fz_fail("parse_alloc disagrees", n, r);
    if (n > 0 && n <= FZ_NT && !fz_same(fixed, *alloc, n)) fz_fail("token arrays differ", n, 0);
    return n;
}

static void fz_writer(const char *s, size_t n, const sbx_allocator *a)
{
    sbx__buf b;
    sbx__jtok t[2];
    int r, valid = jw_is_utf8(s, n);
    sbx__buf_init(&b, a);
    r = sbx__json_write_str(&b, s, n);
    if (!valid) {
        if (r != -2 || b.len != 0) fz_fail("writer took invalid UTF-8", r, (int)b.len);
    } else {
        char *back;
        size_t blen = 0;
        if (r != 0) fz_fail("writer refused valid UTF-8", r, 0);
        if (sbx__json_parse(b.data, b.len, t, 2) != 1 || t[0].type != SBX__JSON_STRING)
            fz_fail("writer output does not parse", 0, 0);
        back = (char *)malloc(n + 1);
        if (back) {
            if (sbx__json_unescape(b.data, t, 0, back, n + 1, &blen) != 0 || blen != n || memcmp(back, s, n) != 0)
                fz_fail("writer round trip", (int)blen, (int)n);
            free(back);
        }
    }
    sbx__buf_free(&b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *paths[] = {"", "a", "a.b", "[0]", "[1][0]", "status.conditions[0].type",
                                  "items[0].metadata.name", "object.metadata.resourceVersion",
                                  "[\"a.b\"]", "metadata.annotations[\"agents.x-k8s.io/sandbox-name\"]", "\xc3\xa9"};
    static sbx__jtok fixed[FZ_NT];
    sbx_allocator a = sbx__allocator(NULL);
    const char *js = (const char *)data;
    sbx__jtok *t = NULL;
    const char *w;
    const uint8_t *nul;
    size_t k;
    int n, i;

    n = fz_parse_all(js, size, fixed, &t, &a);
    if (n > 0) {
        if ((w = json_walk(js, size, t, n)) != NULL) {
            fprintf(stderr, "fuzz_json: invariant: %s\n", w);
            abort();
        }
        for (k = 0; k < sizeof paths / sizeof paths[0]; k++) {
            i = sbx__json_get(js, t, n, 0, paths[k]);
            if (i < -1 || i >= n) fz_fail("get out of range", i, n);
        }
        i = sbx__json_find(js, t, n, 0, "type", "Ready");
        if (i != -1 && (i <= 0 || i >= n || !sbx__json_eq(js, t, sbx__json_get(js, t, n, i, "type"), "Ready")))
            fz_fail("find", i, n);
    }
    sbx__free(&a, t);
    t = NULL;

    /* the raw bytes through the writer, and as the inside of a string */
    if (size <= 65536) {
        char *q = (char *)malloc(size + 2);
        fz_writer(js, size, &a);
        if (q) {
            sbx__jtok st[1];
            int r, utf8 = jw_is_utf8(js, size), plain = 1;
            q[0] = '"';
            if (size) memcpy(q + 1, data, size);
            q[size + 1] = '"';
            r = sbx__json_parse(q, size + 2, st, 1);
            for (k = 0; k < size; k++)
                if (data[k] < 0x20 || data[k] == '"' || data[k] == '\\') plain = 0;
            /* bytes without quotes, backslashes or controls form a string exactly when they are UTF-8 */
            if (plain && (r == 1) != utf8) fz_fail("quoted raw bytes", r, utf8);
            if (r == 1 && (st[0].start != 1 || st[0].end != size + 1)) fz_fail("quoted raw bytes bounds", r, 0);
            free(q);
        }
    }

    /* "path\0document": look the path up */
    nul = size ? (const uint8_t *)memchr(data, 0, size) : NULL;
    if (nul && (size_t)(nul - data) < 256) {
        char path[256];
        size_t plen = (size_t)(nul - data);
        const char *doc = (const char *)nul + 1;
        size_t dlen = size - plen - 1;
        memcpy(path, data, plen);
        path[plen] = '\0';
        n = fz_parse_all(doc, dlen, fixed, &t, &a);
        if (n > 0) {
            for (k = 0; k < 3; k++) {
                int at = k == 0 ? 0 : k == 1 ? n - 1 : n / 2;
                i = sbx__json_get(doc, t, n, at, path);
                if (i < -1 || i >= n || (i >= 0 && i < at)) fz_fail("get(path) out of range", i, n);
                if (i >= 0 && i >= t[at].next) fz_fail("get(path) left the subtree", i, at);
                if (plen == 0 && i != at) fz_fail("get(\"\")", i, at);
                /* a plain member name finds a key with exactly those bytes */
                if (i > at && plen && !strpbrk(path, ".[") && !sbx__json_eqn(doc, t, i - 1, path, plen))
                    fz_fail("get(name) found another key", i, at);
            }
        }
        sbx__free(&a, t);
    }
    return 0;
}
