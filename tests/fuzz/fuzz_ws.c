/* fuzz_ws: the WebSocket frame head parser and the port-forward channel
   decoder (>>ws). Input: byte 0 picks the ports asked for (1 to 3 of 8888,
   9090, 1), byte 1 seeds the splits, the rest is what the server sends.
   Invariants checked (abort on violation):
   - a frame head is at most 14 bytes and within the input; every proper
     prefix of a complete head is "need more";
   - the decoder consumes within its input, DATA points into it and carries
     at most `max` bytes, MORE means all input was used, BAD names a rule and
     stays BAD;
   - the events and the data of every port are the same whether the input
     comes at once or in random pieces with random `max` (each piece an
     exact-size copy, so ASan sees reads past it);
   - error text is NUL-terminated inside its buffer. */
#define SANDBOX_IMPLEMENTATION
#include "sandbox.h"
#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fz_check(int ok)
{
    if (!ok) abort();
}

static unsigned long long fz_next(unsigned long long *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

typedef struct fz_run {
    int ev[256];
    int nev;
    unsigned long long dsum[3];   /* per port: length and a checksum of the data */
    unsigned long long dlen[3];
    unsigned long long esum;
} fz_run;

static void fz_record(fz_run *o, const sbx__wsd *d, int r, const sbx__wse *ev)
{
    size_t i;
    if (r == SBX__WSE_DATA) {
        fz_check(ev->port >= 0 && ev->port < d->nports && ev->n > 0);
        for (i = 0; i < ev->n; i++) o->dsum[ev->port] = o->dsum[ev->port] * 31 + ev->p[i];
        o->dlen[ev->port] += ev->n;
        return;
    }
    if (o->nev < 256) o->ev[o->nev++] = r * 16 + (ev->port + 1);
    if (r == SBX__WSE_ERROR) {
        fz_check(strlen(d->err) == d->err_len && d->err_len < sizeof d->err && d->err_len > 0);
        for (i = 0; i < d->err_len; i++) o->esum = o->esum * 31 + (unsigned char)d->err[i];
    }
    if (r == SBX__WSE_CLOSE) o->esum = o->esum * 31 + (unsigned)d->close_code;
    if (r == SBX__WSE_PING || r == SBX__WSE_PONG) {
        fz_check(d->ctl_len <= 125);
        for (i = 0; i < d->ctl_len; i++) o->esum = o->esum * 31 + d->ctl[i];
    }
    if (r == SBX__WSE_BAD) fz_check(d->why[0] != '\0' && strlen(d->why) < sizeof d->why);
}

/* Decode in[0..n) in pieces; rng == 0: at once with a large max. */
static void fz_decode(const int *ports, int np, const unsigned char *in, size_t n, unsigned long long rng, fz_run *o)
{
    sbx__wsd d;
    size_t off = 0;
    memset(o, 0, sizeof *o);
    sbx__wsd_init(&d, ports, np);
    while (off < n) {
        size_t piece = n - off, pos = 0;
        unsigned char *copy;
        if (rng) piece = 1 + (size_t)(fz_next(&rng) % (piece < 64 ? piece : 64));
        copy = (unsigned char *)malloc(piece);
        if (!copy) abort();
        memcpy(copy, in + off, piece);
        for (;;) {
            sbx__wse ev;
            size_t used = (size_t)-1, max = rng ? 1 + (size_t)(fz_next(&rng) % 40) : 1u << 20;
            int r = sbx__wsd_step(&d, copy + pos, piece - pos, max, &used, &ev);
            fz_check(used <= piece - pos);
            if (r == SBX__WSE_DATA) fz_check(ev.p >= copy + pos && ev.p + ev.n <= copy + pos + used && ev.n <= max);
            pos += used;
            if (r == SBX__WSE_MORE) {
                fz_check(pos == piece);
                break;
            }
            fz_record(o, &d, r, &ev);
            if (r == SBX__WSE_BAD) {
                sbx__wse ev2;
                size_t u2 = 1;
                fz_check(sbx__wsd_step(&d, copy, piece, 8, &u2, &ev2) == SBX__WSE_BAD && u2 == 0);
                free(copy);
                return;
            }
        }
        free(copy);
        off += piece;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const int all[3] = {8888, 9090, 1};
    int np;
    unsigned long long seed;
    const unsigned char *in;
    size_t n, k;
    fz_run whole, split;
    if (size < 2) return 0;
    np = 1 + data[0] % 3;
    seed = 0x9e3779b97f4a7c15ull ^ ((unsigned long long)data[1] << 17) ^ size;
    in = data + 2;
    n = size - 2;
    {
        sbx__ws_fh h;
        const char *why = NULL;
        int r = sbx__ws_frame_head(in, n, &h, &why);
        if (r < 0) fz_check(why != NULL);
        if (r > 0) {
            fz_check(r >= 2 && r <= 14 && (size_t)r <= n);
            for (k = 0; k < (size_t)r; k++) fz_check(sbx__ws_frame_head(in, k, &h, &why) == 0);
            if (h.op >= 8) fz_check(h.len <= 125 && h.fin);
        }
    }
    fz_decode(all, np, in, n, 0, &whole);
    fz_decode(all, np, in, n, seed, &split);
    fz_check(whole.nev == split.nev && memcmp(whole.ev, split.ev, sizeof whole.ev[0] * (size_t)whole.nev) == 0);
    fz_check(memcmp(whole.dlen, split.dlen, sizeof whole.dlen) == 0);
    fz_check(memcmp(whole.dsum, split.dsum, sizeof whole.dsum) == 0);
    fz_check(whole.esum == split.esum);
    return 0;
}
