/* fuzz_pb: the protobuf reader (>>grpc). The input is one message; every
   field is walked, and every length-delimited one is walked again as a
   message of its own (to depth 16), as a reader of nested messages would.
   Invariants checked (abort on violation):
   - the reader moves forward on every field and stays inside its input;
     bytes fields lie inside it; end (0) and malformed (-1) stay put;
   - field numbers are 1..2^29-1, wire types 0, 1, 2 or 5;
   - a varint field written back with sbx__pb_uint and a bytes field with
     sbx__pb_bytes read back as the same field and value. */
#define SANDBOX_IMPLEMENTATION
#include "sandbox.h"
#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fz_check(int ok)
{
    if (!ok) abort();
}

static void fz_walk(const unsigned char *p, size_t n, int depth, sbx__buf *b)
{
    sbx__pb r;
    int field, wt, k;
    unsigned long long v;
    const unsigned char *d;
    size_t len;
    sbx__pb_init(&r, p, n);
    for (;;) {
        const unsigned char *before = r.p;
        k = sbx__pb_next(&r, &field, &wt, &v, &d, &len);
        fz_check(k >= -1 && k <= 1);
        fz_check(r.p >= p && r.p <= p + n);
        if (k <= 0) {
            if (k == 0) fz_check(r.p == p + n);
            break;
        }
        fz_check(r.p > before);
        fz_check(field >= 1 && field <= 0x1fffffff);
        fz_check(wt == 0 || wt == 1 || wt == 2 || wt == 5);
        if (wt == 2) {
            fz_check(d >= p && d + len <= r.p);
            if (depth < 16) fz_walk(d, len, depth + 1, b);
        }
        if (wt == 0 || wt == 2) {
            sbx__pb r2;
            int f2, w2;
            unsigned long long v2;
            const unsigned char *d2;
            size_t l2;
            b->len = 0;
            if ((wt == 0 ? sbx__pb_uint(b, field, v) : sbx__pb_bytes(b, field, d, len)) != 0) continue;
            sbx__pb_init(&r2, b->data, b->len);
            fz_check(sbx__pb_next(&r2, &f2, &w2, &v2, &d2, &l2) == 1);
            fz_check(f2 == field && w2 == wt);
            if (wt == 0) fz_check(v2 == v);
            else fz_check(l2 == len && (len == 0 || memcmp(d2, d, len) == 0));
            fz_check(sbx__pb_next(&r2, &f2, &w2, &v2, &d2, &l2) == 0);
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    sbx_allocator a = sbx__allocator(NULL);
    sbx__buf b;
    sbx__buf_init(&b, &a);
    fz_walk(data, size, 0, &b);
    sbx__buf_free(&b);
    return 0;
}
