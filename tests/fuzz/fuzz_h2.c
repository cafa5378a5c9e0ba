/* fuzz_h2: the HTTP/2 frame parser and connection state machine (>>h2) and
   the gRPC message framing on top of it (>>grpc), fed bytes as if from a
   server. One connection with three calls open (streams 1, 3, 5, our side
   ended, as after sbx__grpc_start) over a transport that drops what we
   send; frames are dispatched straight from the input. Input: byte 0 bit 0
   puts an empty SETTINGS first (else the input must start with one), all
   of it seeds the splits; the rest arrives in pieces of random size, and
   between pieces the calls read whatever messages are complete (the gRPC
   layer, never blocking). Invariants
   checked (abort on violation):
   - a partial frame is all that is ever kept (< 9 + 16384 bytes);
   - no more PING acks are taken for ours than we sent (3, by the setup);
   - the windows we grant are never overrun: each stream buffers at most
     its window, no window goes negative;
   - a dead connection says why, and its calls fail with a code and a
     message; a message handed up has the length its prefix announced and
     is within SBX_GRPC_MAX_MESSAGE;
   - everything is freed (LeakSanitizer) and no lock is left held. */
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

#define FZ_CALLS 3

/* What we send goes nowhere; nothing is ever read from it (the input is
   placed in the read buffer directly). */
static int fz_open(void *st, long long deadline, sbx_error *e)
{
    (void)st, (void)deadline;
    return sbx__fail(e, SBX_ERR_CONNECT, "no connects while fuzzing");
}
static void fz_close(void *st) { (void)st; }
static long fz_recv(void *st, char *p, size_t n, long long deadline)
{
    (void)st, (void)p, (void)n, (void)deadline;
    return -2;
}
static int fz_send(void *st, const char *p, size_t n, long long deadline)
{
    (void)st, (void)p, (void)n, (void)deadline;
    return 0;
}
static int fz_stale(void *st) { (void)st; return 0; }
static const sbx__transport fz_tr = {fz_open, fz_close, fz_recv, fz_send, fz_stale};
static int fz_state; /* the transport keeps no state: any non-NULL pointer */
static void *fz_make(void *arg, const sbx__transport **tr)
{
    (void)arg;
    *tr = &fz_tr;
    return &fz_state;
}
static void fz_free(void *st) { (void)st; }
static const sbx__h2_trmaker fz_mk = {fz_make, fz_free, NULL};

static void fz_invariants(sbx__h2c *c, sbx__grpc_call **calls)
{
    int i;
    fz_check(c->rlen < 9 + SBX__H2_FRAME_MAX);
    fz_check(c->recv_window >= 0);
    fz_check(c->ping_acked <= c->pings && c->ping_acks <= c->pings);
    if (c->dead) fz_check(c->dead_why[0] != '\0' && c->dead_code < 0);
    for (i = 0; i < FZ_CALLS; i++) {
        sbx__h2s *s = &calls[i]->s;
        fz_check(s->in_pos <= s->in.len);
        fz_check(s->in.len - s->in_pos <= SBX__H2_STREAM_WINDOW);
        fz_check(s->recv_window >= 0);
        if (s->failed) fz_check(s->why[0] != '\0' && s->err < 0);
    }
}

static void fz_read_calls(sbx__grpc_call **calls)
{
    int i;
    for (i = 0; i < FZ_CALLS; i++) {
        for (;;) {
            const unsigned char *m;
            size_t ml;
            sbx_error e;
            /* a wait deadline in the past: take what is buffered, never wait */
            int r = sbx__grpc_recv(calls[i], &m, &ml, 1, &e);
            if (r == 1) {
                fz_check(ml == calls[i]->need && ml <= SBX_GRPC_MAX_MESSAGE);
                continue;
            }
            if (r == 0) {
                const char *t;
                sbx__grpc_status(calls[i], &t);
                fz_check(t != NULL && strlen(t) < SBX__H2_MSG_MAX);
            } else {
                fz_check(r < 0 && e.msg[0] != '\0');
            }
            break;
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    sbx__endpoint ep;
    sbx__h2 *h;
    sbx__h2c *c;
    sbx__grpc_call *calls[FZ_CALLS];
    unsigned long long seed;
    size_t pos = 1;
    int i;
    if (size < 1) return 0;
    seed = 0x9e3779b97f4a7c15ULL ^ data[0];
    memset(&ep, 0, sizeof ep);
    strcpy(ep.name, "fuzz:0");
    strcpy(ep.host, "fuzz");
    h = sbx__h2_new(NULL, &ep, &fz_mk, "fuzz");
    if (!h) return 0;
    c = sbx__h2c_new(h);
    if (!c) {
        sbx__h2_free(h);
        return 0;
    }
    /* the state sbx__h2_conn leaves: current, one reference for h->cur */
    c->next = h->conns;
    h->conns = c;
    h->nconns = 1;
    h->cur = c;
    c->refs = 1;
    c->pings = 3; /* as if three keepalive PINGs went out: acks of "sbxk" 1..3 are ours */
    for (i = 0; i < FZ_CALLS; i++) {
        sbx__grpc_call *k = (sbx__grpc_call *)calloc(1, sizeof *k);
        fz_check(k != NULL);
        k->h = h;
        strcpy(k->path, "/fuzz.F/Call");
        sbx__buf_init(&k->msg, &h->a);
        sbx__buf_init(&k->s.in, &h->a);
        k->s.grpc_status = -1;
        k->s.c = c;
        k->s.id = c->next_id;
        c->next_id += 2;
        k->s.send_window = c->peer_window;
        k->s.recv_window = SBX__H2_STREAM_WINDOW;
        k->s.local_end = 1;
        k->s.open = 1;
        k->s.next = c->streams;
        c->streams = &k->s;
        c->nstreams++;
        c->refs++;
        h->refs++;
        calls[i] = k;
    }
    pthread_mutex_lock(&h->mu);
    if (data[0] & 1) {
        static const unsigned char settings[9] = {0, 0, 0, 4, 0, 0, 0, 0, 0};
        memcpy(c->rbuf, settings, 9);
        c->rlen = 9;
        sbx__h2c_frames(c);
    }
    while (pos < size && !c->dead) {
        size_t n = size - pos, room = SBX__H2_RBUF - c->rlen;
        size_t k = 1 + (size_t)(fz_next(&seed) % 20000);
        if (k < n) n = k;
        if (n > room) n = room;
        memcpy(c->rbuf + c->rlen, data + pos, n);
        c->rlen += n;
        pos += n;
        sbx__h2c_frames(c);
        c->ctl.len = 0; /* "sent" */
        fz_invariants(c, calls);
        pthread_mutex_unlock(&h->mu);
        fz_read_calls(calls);
        pthread_mutex_lock(&h->mu);
        c->ctl.len = 0;
        fz_invariants(c, calls);
    }
    pthread_mutex_unlock(&h->mu);
    fz_read_calls(calls);
    /* free as a program would: the calls (each resets its stream when it has
       not ended), then the handle; nothing may be left (LeakSanitizer) */
    pthread_mutex_lock(&h->mu);
    c->ctl.len = 0;
    pthread_mutex_unlock(&h->mu);
    for (i = 0; i < FZ_CALLS; i++) {
        /* the call was calloc'ed here, so free it the same way sbx__grpc_free does */
        sbx__h2_close(&calls[i]->s);
        sbx__buf_free(&calls[i]->msg);
        free(calls[i]);
    }
    sbx__h2_free(h);
    return 0;
}
