/* fuzz_hpack: the HPACK block decoder with its dynamic table, and Huffman
   (>>hpack). Input: byte 0 picks the table limit (0, 64, 256 or 4096),
   then blocks, each a 2-byte big-endian length and that many bytes (the last
   one takes what is left). Invariants checked (abort on violation):
   - every field passed to the callback lies inside the scratch buffer, and
     the list never passes max_list;
   - the table stays consistent: size = sum of (name + value + 32) over the
     entries, size <= max <= limit, the bytes in use match the entries;
   - a decoder with the smallest scratch we allow (the table limit) ends every
     block with exactly the same table as one with a large scratch (fields
     too long to keep must still move the table as the RFC says);
   - a failing block names the rule; nothing past the block is read (each
     block is an exact-size copy, so ASan sees it);
   - Huffman: whatever decodes, re-encodes to a string that decodes to it. */
#define SANDBOX_IMPLEMENTATION
#include "sandbox.h"
#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fz_check(int ok)
{
    if (!ok) abort();
}

typedef struct fz_cb {
    const unsigned char *lo, *hi;
    size_t list, max_list;
} fz_cb;

static int fz_field(void *u, const char *n, size_t nl, const char *v, size_t vl)
{
    fz_cb *x = (fz_cb *)u;
    fz_check((const unsigned char *)n >= x->lo && (const unsigned char *)n + nl <= x->hi);
    fz_check((const unsigned char *)v >= x->lo && (const unsigned char *)v + vl <= x->hi);
    x->list += nl + vl + 32;
    fz_check(x->list <= x->max_list);
    return 0;
}

static void fz_table_ok(const sbx__hpack *t)
{
    size_t sum = 0, bytes = 0;
    unsigned i;
    fz_check(t->size <= t->max && t->max <= t->limit && t->limit <= SBX__HPACK_TABLE_MAX);
    fz_check(t->n <= SBX__HPACK_ENTRIES && t->used <= SBX__HPACK_TABLE_MAX);
    for (i = 0; i < t->n; i++) {
        fz_check(t->ent[i].off == bytes);
        bytes += t->ent[i].nlen + t->ent[i].vlen;
        sum += t->ent[i].nlen + t->ent[i].vlen + 32;
    }
    fz_check(sum == t->size && bytes == t->used);
}

static void fz_same(const sbx__hpack *a, const sbx__hpack *b)
{
    fz_check(a->n == b->n && a->size == b->size && a->max == b->max && a->used == b->used);
    fz_check(memcmp(a->ent, b->ent, a->n * sizeof a->ent[0]) == 0);
    fz_check(memcmp(a->data, b->data, a->used) == 0);
}

static sbx__hpack fz_big, fz_small;
static unsigned char fz_scr_big[65536], fz_scr_small[SBX__HPACK_TABLE_MAX];
static unsigned char fz_h1[65536], fz_h2[65536 * 8 / 5 + 8], fz_h3[65536];

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const size_t limits[4] = {0, 64, 256, SBX__HPACK_TABLE_MAX};
    size_t pos = 1, limit;
    int dead = 0;
    if (size < 1) return 0;
    limit = limits[data[0] & 3];
    sbx__hpack_init(&fz_big, limit);
    sbx__hpack_init(&fz_small, limit);
    while (pos < size && !dead) {
        size_t n = size - pos;
        unsigned char *blk;
        int r1, r2;
        fz_cb cb1, cb2;
        if (n >= 2) {
            size_t want = ((size_t)data[pos] << 8) | data[pos + 1];
            pos += 2;
            n = size - pos;
            if (want < n) n = want;
        }
        blk = (unsigned char *)malloc(n ? n : 1);
        if (!blk) return 0;
        memcpy(blk, data + pos, n);
        pos += n;
        cb1.lo = fz_scr_big, cb1.hi = fz_scr_big + sizeof fz_scr_big, cb1.list = 0, cb1.max_list = 65536;
        cb2.lo = fz_scr_small, cb2.hi = fz_scr_small + sizeof fz_scr_small, cb2.list = 0, cb2.max_list = 65536;
        r1 = sbx__hpack_decode(&fz_big, blk, n, fz_scr_big, sizeof fz_scr_big, 65536, fz_field, &cb1);
        r2 = sbx__hpack_decode(&fz_small, blk, n, fz_scr_small, sizeof fz_scr_small, 65536, fz_field, &cb2);
        fz_check(r1 >= -1 && r1 <= 1 && r2 >= -1 && r2 <= 1);
        fz_check((r1 == -1) == (r2 == -1));
        if (r1 == -1) {
            fz_check(fz_big.why[0] != '\0' && strlen(fz_big.why) < sizeof fz_big.why);
            dead = 1; /* the connection would end here */
        } else {
            fz_table_ok(&fz_big);
            fz_table_ok(&fz_small);
            fz_same(&fz_big, &fz_small);
        }
        /* the same bytes as one Huffman string */
        if (n <= 65536) {
            long d = sbx__huff_decode(blk, n, fz_h1, sizeof fz_h1);
            fz_check(d >= -1 && (size_t)(d < 0 ? 0 : d) <= n * 8 / 5 + 1);
            if (d >= 0) {
                size_t e = sbx__huff_len_of(fz_h1, (size_t)d);
                long d2;
                fz_check(e <= n);
                sbx__huff_encode(fz_h1, (size_t)d, fz_h2);
                d2 = sbx__huff_decode(fz_h2, e, fz_h3, sizeof fz_h3);
                fz_check(d2 == d && memcmp(fz_h1, fz_h3, (size_t)d) == 0);
            }
        }
        free(blk);
    }
    return 0;
}
