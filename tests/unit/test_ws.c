/* test_ws: the WebSocket port-forward client (>>ws): SHA-1 and base64 against
   published vectors, the frame head parser and builder, masking, the channel
   decoder (prefixes, fragments, control frames, the error channel, bounds,
   every split of the input), then the real client against a C WebSocket peer
   on 127.0.0.1: the upgrade and its checks, ping/pong, the close handshake,
   split frames, several ports on one WebSocket, the error channel, and HTTP
   keep-alive riding on it as an sbx__conn transport. No descriptor leaks. */
#define SBX_WS_MAX_MESSAGE 100000u /* small, so the bound is testable */
#define SANDBOX_IMPLEMENTATION
#include "sandbox.h"
#include "test.h"
#include <dirent.h>

/* ---- helpers ------------------------------------------------------------ */

static void hex(const unsigned char *p, size_t n, char *out)
{
    size_t i;
    for (i = 0; i < n; i++) sprintf(out + 2 * i, "%02x", p[i]);
}

/* A server frame (unmasked) into out; returns its length. */
static size_t srv_frame(unsigned char *out, int fin, int op, const void *p, size_t n)
{
    size_t o = 2;
    out[0] = (unsigned char)((fin ? 0x80 : 0) | op);
    if (n < 126) out[1] = (unsigned char)n;
    else if (n <= 0xffff) { out[1] = 126; out[2] = (unsigned char)(n >> 8); out[3] = (unsigned char)n; o = 4; }
    else {
        int i;
        out[1] = 127;
        for (i = 0; i < 8; i++) out[2 + i] = (unsigned char)((unsigned long long)n >> (56 - 8 * i));
        o = 10;
    }
    if (n) memcpy(out + o, p, n);
    return o + n;
}

/* A data message: channel byte + payload. */
static size_t srv_data(unsigned char *out, int chan, const void *p, size_t n)
{
    unsigned char tmp[70000];
    tmp[0] = (unsigned char)chan;
    if (n) memcpy(tmp + 1, p, n);
    return srv_frame(out, 1, 2, tmp, n + 1);
}

static size_t srv_prefix(unsigned char *out, int chan, int port)
{
    unsigned char b[2];
    b[0] = (unsigned char)(port & 255);
    b[1] = (unsigned char)(port >> 8);
    return srv_data(out, chan, b, 2);
}

/* Feed the decoder the input in pieces of `step` bytes (0: at once); collect
   data of port 0 into data[], and the sequence of events into evs[]. */
typedef struct dec_out {
    char data[4096];
    size_t dlen;
    char data1[256];
    size_t d1len;
    int evs[64];
    int nev;
    int last;
} dec_out;

static void decode(sbx__wsd *d, const unsigned char *in, size_t n, size_t step, size_t max, dec_out *o)
{
    size_t off = 0;
    memset(o, 0, sizeof *o);
    while (off < n) {
        size_t piece = step && n - off > step ? step : n - off, used = 0, pos = 0;
        static unsigned char copy[8192];
        if (piece > sizeof copy) piece = sizeof copy;
        memcpy(copy, in + off, piece);
        for (;;) {
            sbx__wse ev;
            int r = sbx__wsd_step(d, copy + pos, piece - pos, max, &used, &ev);
            pos += used;
            if (r == SBX__WSE_DATA) {
                if (ev.port == 0 && o->dlen + ev.n <= sizeof o->data) {
                    memcpy(o->data + o->dlen, ev.p, ev.n);
                    o->dlen += ev.n;
                } else if (ev.port == 1 && o->d1len + ev.n <= sizeof o->data1) {
                    memcpy(o->data1 + o->d1len, ev.p, ev.n);
                    o->d1len += ev.n;
                }
                continue;
            }
            if (r == SBX__WSE_MORE) break;
            if (o->nev < 64) o->evs[o->nev++] = r;
            o->last = r;
            if (r == SBX__WSE_BAD) return;
        }
        off += piece;
    }
}

/* ---- SHA-1, base64 ------------------------------------------------------ */

TEST(sha1_vectors)
{
    static const struct { const char *in; const char *want; } v[] = {
        {"abc", "a9993e364706816aba3e25717850c26c9cd0d89d"},
        {"", "da39a3ee5e6b4b0d3255bfef95601890afd80709"},
        {"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq", "84983e441c3bd26ebaae4aa1f95129e5e54670f1"},
        {"The quick brown fox jumps over the lazy dog", "2fd4e1c67a2d28fced849ee1bb76e7391b93eb12"},
    };
    static const struct { size_t n; const char *want; } x[] = {
        {55, "cef734ba81a024479e09eb5a75b6ddae62e6abf1"}, {56, "901305367c259952f4e7af8323f480d59f81335b"},
        {63, "0ddc4e0cccd9a12850deb5abb0853a4425559fec"}, {64, "bb2fa3ee7afb9f54c6dfb5d021f14b1ffe40c163"},
        {65, "78c741ddc482e4cdf8c474a0876347a0905b6233"}, {119, "4300320394f7ee239bcdce7d3b8bcee173a0cd5c"},
        {120, "ceb2821639c4b6dcb10bce0e522ca2e608ce056d"},
    };
    unsigned char d[20];
    char h[41];
    size_t i;
    static char million[1000000];
    for (i = 0; i < sizeof v / sizeof v[0]; i++) {
        sbx__sha1(v[i].in, strlen(v[i].in), d);
        hex(d, 20, h);
        CHECK_STR(h, v[i].want);
    }
    for (i = 0; i < sizeof x / sizeof x[0]; i++) {  /* padding edges: 55/56, 63/64/65 bytes */
        char buf[128];
        memset(buf, 'x', x[i].n);
        sbx__sha1(buf, x[i].n, d);
        hex(d, 20, h);
        CHECK_STR(h, x[i].want);
    }
    memset(million, 'a', sizeof million); /* FIPS 180 long message */
    sbx__sha1(million, sizeof million, d);
    hex(d, 20, h);
    CHECK_STR(h, "34aa973cd4c4daa4f61eeb2bdbad27316534016f");
}

TEST(base64_vectors)
{
    static const char *in[] = {"", "f", "fo", "foo", "foob", "fooba", "foobar"};
    static const char *out[] = {"", "Zg==", "Zm8=", "Zm9v", "Zm9vYg==", "Zm9vYmE=", "Zm9vYmFy"};
    char b[64], both[80];
    unsigned char d[20], all[256];
    size_t i, n;
    for (i = 0; i < 7; i++) {
        n = sbx__base64((const unsigned char *)in[i], strlen(in[i]), b);
        CHECK_STR(b, out[i]);
        CHECK_EQ_INT(n, strlen(out[i]));
    }
    /* RFC 6455 section 1.3: the sample key and its accept value */
    snprintf(both, sizeof both, "%s%s", "dGhlIHNhbXBsZSBub25jZQ==", "258EAFA5-E914-47DA-95CA-C5AB0DC85B11");
    sbx__sha1(both, strlen(both), d);
    sbx__base64(d, 20, b);
    CHECK_STR(b, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    for (i = 0; i < 256; i++) all[i] = (unsigned char)i;
    {
        char big[400];
        n = sbx__base64(all, 256, big);
        CHECK_EQ_INT(n, 344);
        CHECK(strncmp(big, "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8gISIjJCUmJygpKissLS4vMDEyMzQ1Njc4OTo7PD0+P0BB", 88) == 0);
        CHECK_STR(big + 340, "/w==");
    }
}

/* ---- frames ------------------------------------------------------------- */

TEST(frame_head_parser)
{
    sbx__ws_fh h;
    const char *why = NULL;
    unsigned char b[16];
    memcpy(b, "\x82\x05", 2);
    CHECK_EQ_INT(sbx__ws_frame_head(b, 2, &h, &why), 2);
    CHECK_EQ_INT(h.fin, 1); CHECK_EQ_INT(h.op, 2); CHECK_EQ_INT(h.len, 5);
    CHECK_EQ_INT(sbx__ws_frame_head(b, 1, &h, &why), 0);
    memcpy(b, "\x02\x7e\x01\x00", 4); /* 256, not FIN */
    CHECK_EQ_INT(sbx__ws_frame_head(b, 3, &h, &why), 0);
    CHECK_EQ_INT(sbx__ws_frame_head(b, 4, &h, &why), 4);
    CHECK_EQ_INT(h.fin, 0); CHECK_EQ_INT(h.len, 256);
    memcpy(b, "\x82\x7f\x00\x00\x00\x00\x00\x01\x00\x00", 10);
    CHECK_EQ_INT(sbx__ws_frame_head(b, 9, &h, &why), 0);
    CHECK_EQ_INT(sbx__ws_frame_head(b, 10, &h, &why), 10);
    CHECK_EQ_INT(h.len, 65536);
    /* refused: */
    memcpy(b, "\x82\x7e\x00\x10", 4);             /* 16 in the 16-bit form */
    CHECK_EQ_INT(sbx__ws_frame_head(b, 4, &h, &why), -1);
    CHECK(why && strstr(why, "shortest"));
    memcpy(b, "\x82\x7f\x00\x00\x00\x00\x00\x00\xff\xff", 10);
    CHECK_EQ_INT(sbx__ws_frame_head(b, 10, &h, &why), -1);
    memcpy(b, "\x82\x7f\x80\x00\x00\x00\x00\x01\x00\x00", 10);
    CHECK_EQ_INT(sbx__ws_frame_head(b, 10, &h, &why), -1);
    memcpy(b, "\xc2\x00", 2);                     /* RSV1 */
    CHECK_EQ_INT(sbx__ws_frame_head(b, 2, &h, &why), -1);
    memcpy(b, "\x83\x00", 2);                     /* opcode 3 */
    CHECK_EQ_INT(sbx__ws_frame_head(b, 2, &h, &why), -1);
    memcpy(b, "\x82\x81", 2);                     /* masked from the server */
    CHECK_EQ_INT(sbx__ws_frame_head(b, 2, &h, &why), -1);
    CHECK(strstr(why, "masked") != NULL);
    memcpy(b, "\x09\x00", 2);                     /* fragmented ping */
    CHECK_EQ_INT(sbx__ws_frame_head(b, 2, &h, &why), -1);
    memcpy(b, "\x89\x7e", 2);                     /* ping longer than 125 */
    CHECK_EQ_INT(sbx__ws_frame_head(b, 2, &h, &why), -1);
}

TEST(frame_build_and_mask)
{
    unsigned char out[14], mask[4] = {1, 2, 3, 4}, p[6] = {'a', 'b', 'c', 'd', 'e', 'f'};
    size_t n = sbx__ws_frame_build(out, 2, 5, mask);
    CHECK_EQ_INT(n, 6);
    CHECK_EQ_INT(out[0], 0x82); CHECK_EQ_INT(out[1], 0x85);
    CHECK(memcmp(out + 2, mask, 4) == 0);
    n = sbx__ws_frame_build(out, 2, 300, mask);
    CHECK_EQ_INT(n, 8);
    CHECK_EQ_INT(out[1], 0xfe); CHECK_EQ_INT(out[2], 1); CHECK_EQ_INT(out[3], 44);
    n = sbx__ws_frame_build(out, 8, 70000, mask);
    CHECK_EQ_INT(n, 14);
    CHECK_EQ_INT(out[0], 0x88); CHECK_EQ_INT(out[1], 0xff); CHECK_EQ_INT(out[7], 1); CHECK_EQ_INT(out[9], 0x70);
    /* masking: XOR with the key, continuing at an offset; twice is identity */
    sbx__ws_mask(p, 3, mask, 0);
    sbx__ws_mask(p + 3, 3, mask, 3);
    CHECK_EQ_INT(p[0], 'a' ^ 1); CHECK_EQ_INT(p[3], 'd' ^ 4); CHECK_EQ_INT(p[4], 'e' ^ 1);
    sbx__ws_mask(p, 6, mask, 0);
    CHECK(memcmp(p, "abcdef", 6) == 0);
    {   /* the word-at-a-time path agrees with the definition at every offset and length */
        unsigned char a[64], b[64];
        size_t off, len, i;
        for (off = 0; off < 4; off++)
            for (len = 0; len <= 40; len++) {
                for (i = 0; i < len; i++) a[i] = b[i] = (unsigned char)(i * 37 + off);
                sbx__ws_mask(a, len, mask, off);
                for (i = 0; i < len; i++) b[i] ^= mask[(off + i) & 3];
                CHECK(memcmp(a, b, len) == 0);
            }
    }
}

/* ---- decoder ------------------------------------------------------------ */

TEST(decoder_channels_fragments_control)
{
    unsigned char in[4096];
    size_t n = 0, step;
    int port = 8888;
    sbx__wsd d;
    dec_out o;
    n += srv_prefix(in + n, 0, port);
    n += srv_prefix(in + n, 1, port);
    n += srv_data(in + n, 0, "hello ", 6);
    /* a fragmented message with a ping between its fragments */
    n += srv_frame(in + n, 0, 2, "\x00wor", 4);
    n += srv_frame(in + n, 1, 9, "sbx", 3);
    n += srv_frame(in + n, 0, 0, "l", 1);
    n += srv_frame(in + n, 1, 0, "d", 1);
    n += srv_frame(in + n, 1, 10, "", 0);
    n += srv_frame(in + n, 1, 2, "", 0);            /* empty message: nothing */
    n += srv_frame(in + n, 1, 8, "\x03\xe8" "bye", 5);
    for (step = 0; step <= 7; step++) {   /* at once, then at every byte boundary, ... */
        sbx__wsd_init(&d, &port, 1);
        decode(&d, in, n, step, step == 3 ? 2 : 4096, &o);
        CHECK_EQ_INT(o.dlen, 11);
        CHECK(memcmp(o.data, "hello world", 11) == 0);
        CHECK_MSG(o.nev == 3, "step %d: %d events, last %d: %s", (int)step, o.nev, o.last, d.why);
        CHECK_EQ_INT(o.evs[0], SBX__WSE_PING);
        CHECK_EQ_INT(o.evs[1], SBX__WSE_PONG);
        CHECK_EQ_INT(o.evs[2], SBX__WSE_CLOSE);
        CHECK_EQ_INT(d.close_code, 1000);
        CHECK_STR(d.why, "bye");
    }
}

TEST(decoder_error_channel_and_ports)
{
    unsigned char in[4096];
    size_t n = 0;
    int ports[2] = {8080, 9090};
    sbx__wsd d;
    dec_out o;
    n += srv_prefix(in + n, 0, 8080);
    n += srv_prefix(in + n, 1, 8080);
    n += srv_prefix(in + n, 2, 9090);
    n += srv_prefix(in + n, 3, 9090);
    n += srv_data(in + n, 2, "grpc", 4);
    n += srv_data(in + n, 0, "rest", 4);
    n += srv_data(in + n, 3, "error forwarding port 9090 to pod x:\nrefused", 44);
    sbx__wsd_init(&d, ports, 2);
    decode(&d, in, n, 1, 4096, &o);
    CHECK_EQ_INT(o.dlen, 4); CHECK(memcmp(o.data, "rest", 4) == 0);
    CHECK_EQ_INT(o.d1len, 4); CHECK(memcmp(o.data1, "grpc", 4) == 0);
    CHECK_EQ_INT(o.nev, 1);
    CHECK_EQ_INT(o.evs[0], SBX__WSE_ERROR);
    CHECK_STR(d.err, "error forwarding port 9090 to pod x: refused");
    /* a wrong port prefix */
    n = srv_prefix(in, 0, 8081);
    sbx__wsd_init(&d, ports, 2);
    decode(&d, in, n, 0, 4096, &o);
    CHECK_EQ_INT(o.last, SBX__WSE_BAD);
    CHECK(strstr(d.why, "port 8081") && strstr(d.why, "8080"));
    /* a channel past the ports asked for */
    n = srv_prefix(in, 4, 1);
    sbx__wsd_init(&d, ports, 2);
    decode(&d, in, n, 0, 4096, &o);
    CHECK_EQ_INT(o.last, SBX__WSE_BAD);
    CHECK(strstr(d.why, "channel 4") != NULL);
    /* and once failed, it stays failed */
    {
        sbx__wse ev;
        size_t used = 99;
        CHECK_EQ_INT(sbx__wsd_step(&d, in, n, 10, &used, &ev), SBX__WSE_BAD);
        CHECK_EQ_INT(used, 0);
    }
}

TEST(decoder_refusals_and_bound)
{
    unsigned char in[200100];
    size_t n;
    int port = 8888;
    sbx__wsd d;
    dec_out o;
    static const struct { const char *bytes; size_t n; const char *why; } bad[] = {
        {"\x81\x01x", 3, "text message"},
        {"\x80\x01x", 3, "continuation frame outside"},
        {"\x02\x01\x00\x82\x01\x00", 6, "new message inside"},
        {"\x88\x01x", 3, "bad status code"},
        {"\x88\x02\x03\xed", 4, "bad status code"},  /* 1005 may not be sent */
    };
    size_t i;
    for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        sbx__wsd_init(&d, &port, 1);
        decode(&d, (const unsigned char *)bad[i].bytes, bad[i].n, 0, 4096, &o);
        CHECK_EQ_INT(o.last, SBX__WSE_BAD);
        CHECK_MSG(strstr(d.why, bad[i].why) != NULL, "%s", d.why);
    }
    /* the message bound: fragments add up; a frame head is enough to refuse */
    n = srv_frame(in, 0, 2, NULL, 0);
    in[1] = 127;
    memcpy(in + 2, "\x00\x00\x00\x00\x00\x01\x86\xa1", 8); /* 100001 */
    sbx__wsd_init(&d, &port, 1);
    decode(&d, in, 10, 0, 4096, &o);
    CHECK_EQ_INT(o.last, SBX__WSE_BAD);
    CHECK(strstr(d.why, "SBX_WS_MAX_MESSAGE") != NULL);
    n = srv_prefix(in, 0, port);
    n += srv_frame(in + n, 0, 2, NULL, 0);
    in[n - 2] = 0x02; in[n - 1] = 126;
    {
        unsigned char *p = in + n, big[60001];
        size_t k;
        memset(big, 'z', sizeof big);
        big[0] = 0;
        n -= 2;
        k = srv_frame(p - 2, 0, 2, big, 60001);
        n += k;
        n += srv_frame(in + n, 1, 0, big, 40000);  /* 100001 + 3 in all */
    }
    sbx__wsd_init(&d, &port, 1);
    decode(&d, in, n, 0, 4096, &o);
    CHECK_EQ_INT(o.last, SBX__WSE_BAD);
}

/* ---- a WebSocket peer on 127.0.0.1 ------------------------------------- */

enum { P_ECHO, P_HTTP, P_REFUSE, P_NOTFOUND, P_BADACCEPT, P_NOPROTO, P_PINGCLOSE, P_SPLIT, P_ERRCHAN, P_PORTS,
       P_ABRUPT, P_MUTE };

typedef struct peer {
    int lfd, port, mode;
    pthread_t th;
    int upgrades;          /* upgrades answered */
    int pongs;             /* pongs with the right payload */
    int close_echo;        /* our close frame was answered... */
    int client_close;      /* the client sent a close frame of its own (code 1000) */
    int masks_differ;      /* two client frames used different keys */
    int all_masked;
    char got[256];         /* data the client sent (port 0) */
    size_t glen;
    char got1[64];         /* port 1 */
    size_t g1len;
    int requests;          /* P_HTTP: requests answered */
} peer;

static int rd_full(int fd, void *p, size_t n)
{
    size_t got = 0;
    while (got < n) {
        ssize_t r = recv(fd, (char *)p + got, n - got, 0);
        if (r <= 0) return -1;
        got += (size_t)r;
    }
    return 0;
}

/* One client frame: opcode, unmasked payload (<= cap), length; -1 at EOF. */
static int rd_frame(peer *pp, int fd, int *op, unsigned char *p, size_t cap, size_t *n, unsigned char mask[4])
{
    unsigned char h[2], ext[8];
    unsigned long long len;
    size_t i;
    if (rd_full(fd, h, 2) != 0) return -1;
    *op = h[0] & 15;
    if (!(h[1] & 0x80)) pp->all_masked = 0;
    len = h[1] & 127;
    if (len == 126) { if (rd_full(fd, ext, 2)) return -1; len = ((unsigned)ext[0] << 8) | ext[1]; }
    else if (len == 127) {
        if (rd_full(fd, ext, 8)) return -1;
        for (len = 0, i = 0; i < 8; i++) len = (len << 8) | ext[i];
    }
    if (rd_full(fd, mask, 4) != 0 || len > cap || rd_full(fd, p, (size_t)len) != 0) return -1;
    for (i = 0; i < len; i++) p[i] ^= mask[i & 3];
    *n = (size_t)len;
    return 0;
}

static void wr(int fd, const void *p, size_t n, int split)
{
    size_t i;
    if (!split) { send(fd, p, n, MSG_NOSIGNAL); return; }
    for (i = 0; i < n; i++) {
        struct timespec ts = {0, 50000};
        send(fd, (const char *)p + i, 1, MSG_NOSIGNAL);
        nanosleep(&ts, NULL);
    }
}

/* Read the upgrade request and answer it; 1 when upgraded. */
static int handshake(peer *pp, int fd)
{
    char req[4096], resp[512], both[128];
    size_t n = 0;
    const char *k, *e;
    unsigned char d[20];
    char acc[40];
    req[0] = '\0';
    while (n < sizeof req - 1 && !strstr(req, "\r\n\r\n")) {
        ssize_t r = recv(fd, req + n, 1, 0);
        if (r <= 0) return 0;
        n += (size_t)r;
        req[n] = '\0';
    }
    if (pp->mode == P_REFUSE) {
        const char *body = "{\"kind\":\"Status\",\"message\":\"upgrade refused (test)\"}";
        snprintf(resp, sizeof resp, "HTTP/1.1 403 Forbidden\r\nContent-Type: application/json\r\nContent-Length: %u\r\n\r\n%s",
                 (unsigned)strlen(body), body);
        wr(fd, resp, strlen(resp), 0);
        return 0;
    }
    if (pp->mode == P_NOTFOUND) {
        const char *body = "{\"message\":\"pods \\\"p\\\" not found\"}";
        snprintf(resp, sizeof resp, "HTTP/1.1 404 Not Found\r\nContent-Length: %u\r\n\r\n%s", (unsigned)strlen(body), body);
        wr(fd, resp, strlen(resp), 0);
        return 0;
    }
    k = strstr(req, "Sec-WebSocket-Key: ");
    if (!k || !strstr(req, "Sec-WebSocket-Protocol: v4.channel.k8s.io\r\n") || !strstr(req, "GET /pf?ports=")) return 0;
    k += 19;
    e = strstr(k, "\r\n");
    snprintf(both, sizeof both, "%.*s258EAFA5-E914-47DA-95CA-C5AB0DC85B11", (int)(e - k), k);
    sbx__sha1(both, strlen(both), d);
    sbx__base64(d, 20, acc);
    if (pp->mode == P_BADACCEPT) acc[3] ^= 1;
    snprintf(resp, sizeof resp, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
             "Sec-WebSocket-Accept: %s\r\n%s\r\n", acc,
             pp->mode == P_NOPROTO ? "" : "Sec-WebSocket-Protocol: v4.channel.k8s.io\r\n");
    wr(fd, resp, strlen(resp), 0);
    pp->upgrades++;
    return pp->mode != P_BADACCEPT && pp->mode != P_NOPROTO;
}

static void serve(peer *pp, int fd)
{
    unsigned char f[70100], p[70000], m1[4] = {0, 0, 0, 0};
    size_t n, k;
    int op, split = pp->mode == P_SPLIT, frames = 0;
    if (!handshake(pp, fd)) return;
    n = srv_prefix(f, 0, 8888);
    n += srv_prefix(f + n, 1, 8888);
    if (pp->mode == P_PORTS) {
        n = srv_prefix(f, 0, 8080);
        n += srv_prefix(f + n, 1, 8080);
        n += srv_prefix(f + n, 2, 9090);
        n += srv_prefix(f + n, 3, 9090);
    }
    /* the prefixes come in the same segment as the 101 sometimes: here they follow it */
    wr(fd, f, n, split);
    if (pp->mode == P_ERRCHAN) {
        n = srv_data(f, 1, "error forwarding port 8888 to pod p, uid 1: connection refused", 62);
        n += srv_frame(f + n, 1, 8, "\x03\xe8", 2);
        wr(fd, f, n, 0);
        rd_frame(pp, fd, &op, p, sizeof p, &k, m1);
        return;
    }
    if (pp->mode == P_PINGCLOSE || pp->mode == P_SPLIT) {
        n = srv_frame(f, 1, 9, "sbx", 3);
        wr(fd, f, n, split);
    }
    for (;;) {
        unsigned char mask[4];
        if (rd_frame(pp, fd, &op, p, sizeof p, &k, mask) != 0) return;
        if (frames++ && memcmp(mask, m1, 4) != 0) pp->masks_differ = 1;
        memcpy(m1, mask, 4);
        if (op == 10) { if (k == 3 && memcmp(p, "sbx", 3) == 0) pp->pongs++; continue; }
        if (op == 8) {
            pp->client_close = k == 2 && p[0] == 3 && p[1] == 0xe8;
            if (pp->mode == P_MUTE) { /* never answers a close: waits for the client's TCP close */
                while (read(fd, p, sizeof p) > 0) {}
                return;
            }
            n = srv_frame(f, 1, 8, p, k);
            wr(fd, f, n, 0);
            return;
        }
        if (op != 2 || k < 1) return;
        if (p[0] == 2) { memcpy(pp->got1 + pp->g1len, p + 1, k - 1); pp->g1len += k - 1; }
        else if (pp->glen + k - 1 < sizeof pp->got) { memcpy(pp->got + pp->glen, p + 1, k - 1); pp->glen += k - 1; }
        if (pp->mode == P_HTTP) {
            /* one HTTP exchange per request head received */
            if (pp->glen >= 4 && memcmp(pp->got + pp->glen - 4, "\r\n\r\n", 4) == 0) {
                static const char ans[] = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi";
                pp->glen = 0;
                n = srv_data(f, 0, ans, sizeof ans - 1);
                /* after the 1st answer an idle ping; after the 2nd a close */
                if (++pp->requests == 1) n += srv_frame(f + n, 1, 9, "sbx", 3);
                if (pp->requests == 2) n += srv_frame(f + n, 1, 8, "\x03\xe8", 2);
                wr(fd, f, n, 0);
                if (pp->requests == 2) {
                    while (rd_frame(pp, fd, &op, p, sizeof p, &k, mask) == 0 && op != 8) {}
                    return;
                }
            }
        } else if (pp->mode == P_PORTS) {
            if (p[0] == 2) { n = srv_data(f, 2, "from 9090", 9); wr(fd, f, n, 0); }
            else { n = srv_data(f, 0, "from 8080", 9); wr(fd, f, n, 0); }
        } else if (pp->mode == P_ABRUPT) {
            n = srv_data(f, 0, "partial", 7);
            wr(fd, f, n, 0);
            return;   /* TCP close, no close frame */
        } else {
            /* echo, then (PINGCLOSE) a close frame of the server's */
            n = srv_data(f, 0, p + 1, k - 1);
            wr(fd, f, n, split);
            if (pp->mode == P_PINGCLOSE) {
                n = srv_frame(f, 1, 8, "\x03\xe9going away", 12);
                wr(fd, f, n, 0);
                while (rd_frame(pp, fd, &op, p, sizeof p, &k, mask) == 0) {
                    if (op == 10 && k == 3 && memcmp(p, "sbx", 3) == 0) pp->pongs++;
                    if (op == 8) { pp->close_echo = k == 2 && p[0] == 3 && p[1] == 0xe9; break; }
                }
                return;
            }
        }
    }
}

static void *peer_main(void *arg)
{
    peer *pp = (peer *)arg;
    for (;;) {
        int fd = accept(pp->lfd, NULL, NULL);
        if (fd < 0) return NULL;
        serve(pp, fd);
        close(fd);
    }
}

static void peer_start(peer *pp, int mode)
{
    struct sockaddr_in a;
    socklen_t al = sizeof a;
    int one = 1;
    memset(pp, 0, sizeof *pp);
    pp->mode = mode;
    pp->all_masked = 1;
    pp->lfd = socket(AF_INET, SOCK_STREAM, 0);
    setsockopt(pp->lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bind(pp->lfd, (struct sockaddr *)&a, sizeof a);
    listen(pp->lfd, 8);
    getsockname(pp->lfd, (struct sockaddr *)&a, &al);
    pp->port = ntohs(a.sin_port);
    pthread_create(&pp->th, NULL, peer_main, pp);
}

static void peer_stop(peer *pp)
{
    shutdown(pp->lfd, SHUT_RDWR);
    close(pp->lfd);
    pthread_join(pp->th, NULL);
}

static sbx__ws *ws_for(peer *pp, const int *ports, int nports)
{
    char url[64], target[64];
    sbx__endpoint ep;
    snprintf(url, sizeof url, "http://127.0.0.1:%d", pp->port);
    if (sbx__endpoint_parse(url, &ep, NULL) != SBX_OK) return NULL;
    snprintf(target, sizeof target, "/pf?ports=%d", ports[0]);
    return sbx__ws_new(NULL, &ep, target, ports, nports);
}

/* ---- the client against the peer ---------------------------------------- */

TEST(open_write_read_close)
{
    peer pp;
    int port = 8888, got_port = -1, fds = test_fd_count();
    sbx__ws *ws;
    sbx_error e;
    char buf[64];
    long n;
    size_t have = 0;
    peer_start(&pp, P_ECHO);
    ws = ws_for(&pp, &port, 1);
    CHECK(ws != NULL);
    if (!ws) { peer_stop(&pp); return; }
    sbx__err_clear(&e);
    CHECK(sbx__ws_open(ws, sbx__deadline(5000), &e) >= 0);
    CHECK_EQ_INT(sbx__ws_write(ws, 0, "ping-", 5, sbx__deadline(5000)), 0);
    CHECK_EQ_INT(sbx__ws_write(ws, 0, "pong", 4, sbx__deadline(5000)), 0);
    while (have < 9) {
        n = sbx__ws_read(ws, &got_port, buf + have, sizeof buf - have, sbx__deadline(5000));
        CHECK(n > 0);
        if (n <= 0) break;
        have += (size_t)n;
    }
    CHECK_EQ_INT(have, 9);
    CHECK(memcmp(buf, "ping-pong", 9) == 0);
    CHECK_EQ_INT(got_port, 0);
    CHECK_EQ_INT(sbx__ws_write(ws, 1, "x", 1, sbx__deadline(5000)), -1); /* only one port */
    sbx__ws_close(ws);     /* our close: 1000, answered */
    sbx__ws_free(ws);
    peer_stop(&pp);
    CHECK_EQ_INT(pp.upgrades, 1);
    CHECK(pp.client_close);
    CHECK(pp.all_masked);
    CHECK(pp.masks_differ);
    CHECK_EQ_INT(test_fd_count(), fds);
}

/* A peer that never answers our close frame: sbx__ws_close waits
   SBX__WS_CLOSE_WAIT_MS for it, sbx__ws_drop (an HTTP/2 connection's
   transport, freed under a lock others wait on) sends it and goes at once. */
TEST(drop_does_not_wait_for_the_close_answer)
{
    int port = 8888, fds = test_fd_count(), k;
    long long took[2];
    for (k = 0; k < 2; k++) {
        peer pp;
        sbx__ws *ws;
        sbx_error e;
        long long t0;
        peer_start(&pp, P_MUTE);
        ws = ws_for(&pp, &port, 1);
        CHECK(ws != NULL);
        if (!ws) { peer_stop(&pp); return; }
        sbx__err_clear(&e);
        CHECK(sbx__ws_open(ws, sbx__deadline(5000), &e) >= 0);
        t0 = sbx__now_ms();
        if (k == 0) sbx__ws_free(ws);
        else sbx__ws_drop(ws);
        took[k] = sbx__now_ms() - t0;
        peer_stop(&pp);
        CHECK(pp.client_close); /* the close frame went out either way */
    }
    printf("  free %lld ms, drop %lld ms\n", took[0], took[1]);
    CHECK(took[0] >= SBX__WS_CLOSE_WAIT_MS - 20); /* the peer really does not answer */
    CHECK(took[1] < 50);
    CHECK_EQ_INT(test_fd_count(), fds);
}

TEST(upgrade_refusals)
{
    static const int modes[] = {P_REFUSE, P_NOTFOUND, P_BADACCEPT, P_NOPROTO};
    static const sbx_result want[] = {SBX_ERR_HTTP, SBX_ERR_NOT_FOUND, SBX_ERR_PROTOCOL, SBX_ERR_PROTOCOL};
    static const char *const words[] = {"upgrade refused (test)", "pods \"p\" not found", "Sec-WebSocket-Accept",
                                        "subprotocol"};
    int i, port = 8888, fds = test_fd_count();
    for (i = 0; i < 4; i++) {
        peer pp;
        sbx__ws *ws;
        sbx_error e;
        int r;
        peer_start(&pp, modes[i]);
        ws = ws_for(&pp, &port, 1);
        sbx__err_clear(&e);
        r = sbx__ws_open(ws, sbx__deadline(5000), &e);
        CHECK_EQ_INT(r, want[i]);
        CHECK_MSG(strstr(e.msg, words[i]) != NULL, "%s", e.msg);
        CHECK_EQ_INT(ws->refused, i < 2);
        if (i < 2) CHECK_EQ_INT(ws->status, i == 0 ? 403 : 404);
        CHECK_EQ_INT(ws->fd, -1);
        sbx__ws_free(ws);
        peer_stop(&pp);
    }
    CHECK_EQ_INT(test_fd_count(), fds);
}

TEST(ping_pong_and_server_close)
{
    peer pp;
    int port = 8888, p = -1, fds = test_fd_count();
    sbx__ws *ws;
    char buf[64];
    long n;
    peer_start(&pp, P_PINGCLOSE);
    ws = ws_for(&pp, &port, 1);
    CHECK(sbx__ws_open(ws, sbx__deadline(5000), NULL) >= 0);
    CHECK_EQ_INT(sbx__ws_write(ws, 0, "abc", 3, sbx__deadline(5000)), 0);
    n = sbx__ws_read(ws, &p, buf, sizeof buf, sbx__deadline(5000));
    CHECK_EQ_INT(n, 3);
    n = sbx__ws_read(ws, &p, buf, sizeof buf, sbx__deadline(5000));
    CHECK_EQ_INT(n, 0);   /* the server's close frame ends the stream */
    CHECK_MSG(strstr(ws->why, "code 1001: going away") != NULL, "%s", ws->why);
    sbx__ws_free(ws);
    peer_stop(&pp);
    CHECK_EQ_INT(pp.pongs, 1);
    CHECK_EQ_INT(pp.close_echo, 1);
    CHECK_EQ_INT(test_fd_count(), fds);
}

TEST(split_frames_one_byte_per_send)
{
    peer pp;
    int port = 8888, p = -1;
    sbx__ws *ws;
    char buf[8];
    char all[600];
    size_t have = 0;
    static char msg[600];
    memset(msg, 'q', sizeof msg);
    peer_start(&pp, P_SPLIT);
    ws = ws_for(&pp, &port, 1);
    CHECK(sbx__ws_open(ws, sbx__deadline(5000), NULL) >= 0);
    CHECK_EQ_INT(sbx__ws_write(ws, 0, msg, 200, sbx__deadline(5000)), 0);
    while (have < 200) {  /* a small buffer: partial deliveries of one frame */
        long n = sbx__ws_read(ws, &p, buf, sizeof buf, sbx__deadline(5000));
        CHECK(n > 0 && n <= 8);
        if (n <= 0) break;
        memcpy(all + have, buf, (size_t)n);
        have += (size_t)n;
    }
    CHECK_EQ_INT(have, 200);
    CHECK(memcmp(all, msg, 200) == 0);
    sbx__ws_free(ws);
    peer_stop(&pp);
    CHECK_EQ_INT(pp.pongs, 1);
}

TEST(error_channel_is_the_message)
{
    peer pp;
    int port = 8888, p = -1;
    sbx__ws *ws;
    char buf[64];
    long n;
    peer_start(&pp, P_ERRCHAN);
    ws = ws_for(&pp, &port, 1);
    CHECK(sbx__ws_open(ws, sbx__deadline(5000), NULL) >= 0);
    n = sbx__ws_read(ws, &p, buf, sizeof buf, sbx__deadline(5000));
    CHECK_EQ_INT(n, -1);
    CHECK_EQ_INT(errno, ECONNRESET);
    CHECK_MSG(strstr(ws->why, "port 8888: error forwarding port 8888 to pod p, uid 1: connection refused") != NULL,
              "%s", ws->why);
    sbx__ws_free(ws);
    peer_stop(&pp);
}

TEST(several_ports_on_one_websocket)
{
    peer pp;
    int ports[2] = {8080, 9090}, p = -1, seen = 0;
    sbx__ws *ws;
    char buf[64];
    peer_start(&pp, P_PORTS);
    ws = ws_for(&pp, ports, 2);
    CHECK(sbx__ws_open(ws, sbx__deadline(5000), NULL) >= 0);
    CHECK_EQ_INT(sbx__ws_write(ws, 1, "to 9090", 7, sbx__deadline(5000)), 0);
    CHECK_EQ_INT(sbx__ws_write(ws, 0, "to 8080", 7, sbx__deadline(5000)), 0);
    while (seen != 3) {
        long n = sbx__ws_read(ws, &p, buf, sizeof buf, sbx__deadline(5000));
        CHECK_EQ_INT(n, 9);
        if (n != 9) break;
        if (p == 1) { CHECK(memcmp(buf, "from 9090", 9) == 0); seen |= 2; }
        else { CHECK(memcmp(buf, "from 8080", 9) == 0); seen |= 1; }
    }
    sbx__ws_free(ws);
    peer_stop(&pp);
    CHECK_EQ_INT(pp.g1len, 7);
    CHECK(memcmp(pp.got1, "to 9090", 7) == 0);
}

/* HTTP keep-alive rides on the WebSocket: one upgrade for several requests;
   an idle ping is answered and does not make the connection stale; a server
   close does, and the next request upgrades again. */
TEST(http_over_websocket_transport)
{
    peer pp;
    int port = 8888, fds = test_fd_count(), i;
    sbx__ws *ws;
    sbx__conn c;
    sbx__endpoint ep;
    sbx_error e;
    peer_start(&pp, P_HTTP);
    ws = ws_for(&pp, &port, 1);
    memset(&ep, 0, sizeof ep);
    strcpy(ep.name, "pod/p:8888 (websocket)");
    strcpy(ep.host, "localhost");
    sbx__conn_init(&c, &ep, NULL);
    sbx__conn_transport(&c, &ws->tr, ws);
    for (i = 0; i < 3; i++) {
        sbx__http_req q;
        sbx__http_resp r;
        sbx__buf body;
        sbx__http_req_init(&q);
        sbx__buf_init(&body, &c.a);
        sbx__err_clear(&e);
        CHECK_EQ_INT(sbx__http_do(&c, &q, &r, &body, 100, sbx__deadline(5000), &e), SBX_OK);
        CHECK_MSG(r.status == 200, "%s", e.msg);
        CHECK_STR(body.data, "hi");
        sbx__buf_free(&body);
        CHECK_EQ_INT(c.served, i == 2 ? 1 : i + 1);
    }
    CHECK_EQ_INT(pp.upgrades, 2);  /* the 1st WebSocket carried 2 requests */
    CHECK_EQ_INT(pp.pongs, 1);
    sbx__conn_free(&c);
    sbx__ws_free(ws);
    peer_stop(&pp);
    CHECK_EQ_INT(test_fd_count(), fds);
}

/* The stale check of an idle WebSocket, with the peer driven by hand over a
   socketpair: a ping is answered (not stale); a close frame or EOF is stale. */
TEST(stale_check_ping_vs_close)
{
    int sv[2], port = 8888;
    sbx__ws *ws;
    sbx__endpoint ep;
    unsigned char f[64], p[64], mask[4];
    size_t n, k;
    int op;
    peer pp;
    memset(&pp, 0, sizeof pp);
    memset(&ep, 0, sizeof ep);
    ws = sbx__ws_new(NULL, &ep, "/pf", &port, 1);
    CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
    sbx__set_nonblock(sv[0], 1);
    ws->fd = sv[0];
    CHECK_EQ_INT(ws->tr.stale(ws), 0);            /* nothing arrived */
    n = srv_prefix(f, 0, 8888);
    n += srv_frame(f + n, 1, 9, "sbx", 3);
    send(sv[1], f, n, 0);
    CHECK_EQ_INT(ws->tr.stale(ws), 0);            /* prefix + ping: not stale */
    CHECK_EQ_INT(rd_frame(&pp, sv[1], &op, p, sizeof p, &k, mask), 0);
    CHECK_EQ_INT(op, 10);                          /* the pong */
    CHECK(k == 3 && memcmp(p, "sbx", 3) == 0);
    n = srv_frame(f, 1, 8, "\x03\xe8", 2);
    send(sv[1], f, n, 0);
    CHECK_EQ_INT(ws->tr.stale(ws), 1);            /* a close: stale, answered */
    CHECK_EQ_INT(rd_frame(&pp, sv[1], &op, p, sizeof p, &k, mask), 0);
    CHECK_EQ_INT(op, 8);
    sbx__ws_free(ws);                              /* closes sv[0] */
    close(sv[1]);
    /* EOF while idle */
    ws = sbx__ws_new(NULL, &ep, "/pf", &port, 1);
    CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
    sbx__set_nonblock(sv[0], 1);
    ws->fd = sv[0];
    close(sv[1]);
    CHECK_EQ_INT(ws->tr.stale(ws), 1);
    sbx__ws_free(ws);
}

TEST(abrupt_close_mid_stream)
{
    peer pp;
    int port = 8888, p = -1;
    sbx__ws *ws;
    char buf[64];
    long n;
    peer_start(&pp, P_ABRUPT);
    ws = ws_for(&pp, &port, 1);
    CHECK(sbx__ws_open(ws, sbx__deadline(5000), NULL) >= 0);
    CHECK_EQ_INT(sbx__ws_write(ws, 0, "go", 2, sbx__deadline(5000)), 0);
    n = sbx__ws_read(ws, &p, buf, sizeof buf, sbx__deadline(5000));
    CHECK_EQ_INT(n, 7);
    n = sbx__ws_read(ws, &p, buf, sizeof buf, sbx__deadline(5000));
    CHECK_EQ_INT(n, 0);
    CHECK_MSG(strstr(ws->why, "without a close frame") != NULL, "%s", ws->why);
    sbx__ws_free(ws);
    peer_stop(&pp);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    RUN(sha1_vectors);
    RUN(base64_vectors);
    RUN(frame_head_parser);
    RUN(frame_build_and_mask);
    RUN(decoder_channels_fragments_control);
    RUN(decoder_error_channel_and_ports);
    RUN(decoder_refusals_and_bound);
    RUN(open_write_read_close);
    RUN(upgrade_refusals);
    RUN(drop_does_not_wait_for_the_close_answer);
    RUN(ping_pong_and_server_close);
    RUN(split_frames_one_byte_per_send);
    RUN(error_channel_is_the_message);
    RUN(several_ports_on_one_websocket);
    RUN(http_over_websocket_transport);
    RUN(stale_check_ping_vs_close);
    RUN(abrupt_close_mid_stream);
    return test_summary("test_ws");
}
