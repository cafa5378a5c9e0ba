/* tests/unit/test_http.c - the >>http and >>conn sections: parsers (every prefix, per byte,
   guard pages), endpoints, and the client against tests/fakes/servers/http_fake.py
   (well-behaved and hostile answers). Every network test checks that no
   descriptor is left open; ASan checks that nothing leaks. */
#define SANDBOX_IMPLEMENTATION
#include "sandbox.h"
#include "test.h"

#include <dirent.h>
#include <sys/mman.h>
#include <sys/resource.h>

/* ------------------------------------------------------------ helpers */

static int contains(const char *hay, const char *needle)
{
    return hay && needle && strstr(hay, needle) != NULL;
}

#define CHECK_HAS(hay, needle) CHECK_MSG(contains((hay), (needle)), "\"%s\" lacks \"%s\"", (hay), (needle))

typedef struct srv {
    pid_t pid;
    int in_fd;
    int port;
} srv;

static srv S;        /* the TCP server every network test uses */
static char URL[64]; /* http://127.0.0.1:PORT */

/* Start tests/fakes/servers/http_fake.py with up to two arguments. */
static int srv_start(srv *s, const char *a1, const char *a2)
{
    s->port = test_spawn_server("tests/fakes/servers/http_fake.py", a1, a2, &s->pid, &s->in_fd, 15000);
    return s->port >= 0 ? 0 : -1; /* a unix-socket server says "PORT 0" */
}

static void srv_stop(srv *s)
{
    int st;
    if (s->in_fd >= 0) close(s->in_fd);
    s->in_fd = -1;
    if (s->pid > 0) {
        kill(s->pid, SIGTERM);
        waitpid(s->pid, &st, 0);
    }
    s->pid = -1;
}

/* A connection to URL with a fresh error. */
typedef struct cli {
    sbx__endpoint ep;
    sbx__conn c;
    sbx_error e;
    sbx__buf body;
    sbx__http_resp r;
} cli;

static int cli_open(cli *k, const char *url)
{
    memset(k, 0, sizeof *k);
    sbx__err_clear(&k->e);
    if (sbx__endpoint_parse(url, &k->ep, &k->e) != SBX_OK) return -1;
    sbx__conn_init(&k->c, &k->ep, NULL);
    sbx__buf_init(&k->body, &k->c.a);
    return 0;
}

static void cli_close(cli *k)
{
    sbx__http_resp_free(&k->r);
    sbx__buf_free(&k->body);
    sbx__conn_free(&k->c);
}

/* One request; the body (if any) lands in k->body (reset first). */
static int cli_req(cli *k, const char *method, const char *target, const char *headers, const char *body,
                   int idempotent, int ms)
{
    sbx__http_req q;
    sbx__http_req_init(&q);
    q.method = method;
    q.target = target;
    q.headers = headers;
    q.body = body;
    q.body_len = body ? strlen(body) : 0;
    q.idempotent = idempotent;
    k->body.len = 0;
    sbx__http_resp_free(&k->r);
    sbx__err_clear(&k->e);
    return sbx__http_do(&k->c, &q, &k->r, &k->body, 1u << 20, sbx__deadline(ms), &k->e);
}

static int cli_get(cli *k, const char *target)
{
    return cli_req(k, "GET", target, NULL, NULL, 1, 5000);
}

typedef struct stats {
    int conns, reqs, posts, drops;
} stats;

static stats get_stats(const char *tag)
{
    cli k;
    stats st;
    char target[96];
    memset(&st, -1, sizeof st);
    snprintf(target, sizeof target, "/_stats?t=%s", tag);
    if (cli_open(&k, URL) == 0 && cli_get(&k, target) == SBX_OK && k.r.status == 200)
        sscanf(k.body.data, "conns=%d reqs=%d posts=%d drops=%d", &st.conns, &st.reqs, &st.posts, &st.drops);
    cli_close(&k);
    return st;
}

/* The value of "key=..." in an echo answer (up to the newline), or "". */
static const char *field(const char *text, const char *key, char *out, size_t cap)
{
    char pat[64];
    const char *p;
    size_t n = 0;
    snprintf(pat, sizeof pat, "\n%s=", key);
    out[0] = '\0';
    if (!text) return out;
    if (strncmp(text, pat + 1, strlen(pat + 1)) == 0) p = text + strlen(pat + 1);
    else if ((p = strstr(text, pat)) != NULL) p += strlen(pat);
    else return out;
    while (p[n] && p[n] != '\n' && n + 1 < cap) n++;
    memcpy(out, p, n);
    out[n] = '\0';
    return out;
}

static unsigned char pattern_byte(unsigned long long i) { return (unsigned char)(i % 251); }

static void fill_pattern(char *p, size_t n, unsigned long long off)
{
    size_t i;
    for (i = 0; i < n; i++) p[i] = (char)pattern_byte(off + i);
}

/* Buffer whose last byte sits right before a PROT_NONE page. */
typedef struct guard {
    char *map;
    size_t page;
} guard;

static char *guard_place(guard *g, const char *data, size_t n)
{
    g->page = (size_t)sysconf(_SC_PAGESIZE);
    if (n > g->page) return NULL;
    {
    int zfd = open("/dev/zero", O_RDWR); /* (MAP_ANONYMOUS is not POSIX.1-2008) */
    if (zfd < 0) return NULL;
    g->map = (char *)mmap(NULL, 2 * g->page, PROT_READ | PROT_WRITE, MAP_PRIVATE, zfd, 0);
    close(zfd);
    if (g->map == MAP_FAILED) return NULL;
    if (mprotect(g->map + g->page, g->page, PROT_NONE) != 0) return NULL;
    }
    memcpy(g->map + g->page - n, data, n);
    return g->map + g->page - n;
}

static void guard_free(guard *g)
{
    munmap(g->map, 2 * g->page);
}

/* ------------------------------------------------------------ endpoints */

TEST(endpoint_parse)
{
    sbx__endpoint ep;
    sbx_error e;
    static const char *const bad[] = {
        "ftp://127.0.0.1/", "http://", "http://:80", "http://127.0.0.1:0", "http://127.0.0.1:65536",
        "http://127.0.0.1:80x", "http://127.0.0.1:", "http://user@127.0.0.1:1", "http://[::1",
        "http://[zz]:1", "unix:", "http://127.0.0.1/a b", "http://127.0.0.1/a?b", "http://127.0.0.1/a#b",
        "127.0.0.1:8001", "", "http://[::1]x", "http://bad_host:1", NULL};
    char longpath[200];
    int i;
    sbx__err_clear(&e);
    CHECK_EQ_INT(sbx__endpoint_parse("http://127.0.0.1:8001", &ep, &e), SBX_OK);
    CHECK_STR(ep.name, "127.0.0.1:8001");
    CHECK_STR(ep.host, "127.0.0.1:8001");
    CHECK_STR(ep.prefix, "");
    CHECK_EQ_INT(ep.addr[0].sa.sa_family, AF_INET);
    CHECK_EQ_INT(ntohs(ep.addr[0].in4.sin_port), 8001);
    CHECK_EQ_INT(sbx__endpoint_parse("http://127.0.0.1", &ep, &e), SBX_OK);
    CHECK_STR(ep.name, "127.0.0.1:80");
    CHECK_EQ_INT(sbx__endpoint_parse("HTTP://127.0.0.1:1/k8s//", &ep, &e), SBX_OK);
    CHECK_STR(ep.prefix, "/k8s");
    CHECK_EQ_INT(sbx__endpoint_parse("http://127.0.0.1:2/", &ep, &e), SBX_OK);
    CHECK_STR(ep.prefix, "");
    CHECK_EQ_INT(sbx__endpoint_parse("http://[::1]:9/p", &ep, &e), SBX_OK);
    CHECK_STR(ep.name, "[::1]:9");
    CHECK_STR(ep.host, "[::1]:9");
    CHECK_STR(ep.prefix, "/p");
    CHECK_EQ_INT(ep.addr[0].sa.sa_family, AF_INET6);
    CHECK_EQ_INT(sbx__endpoint_parse("http://[0:0::1]:9", &ep, &e), SBX_OK);
    CHECK_STR(ep.name, "[::1]:9");
    CHECK_EQ_INT(sbx__endpoint_parse("http://localhost:8001", &ep, &e), SBX_OK);
    CHECK_STR(ep.host, "localhost:8001");
    CHECK(ep.naddr >= 1);
    CHECK_EQ_INT(sbx__endpoint_parse("unix:/tmp/x.sock", &ep, &e), SBX_OK);
    CHECK(ep.is_unix);
    CHECK_STR(ep.host, "localhost");
    CHECK_STR(ep.name, "unix:/tmp/x.sock");
    CHECK_STR(ep.addr[0].un.sun_path, "/tmp/x.sock");
    CHECK_EQ_INT(sbx__endpoint_parse("https://127.0.0.1:6443", &ep, &e), SBX_ERR_INVALID_ARG);
    CHECK_HAS(e.msg, "https is not supported");
    CHECK_EQ_INT(sbx__endpoint_parse("HTTPS://x", &ep, &e), SBX_ERR_INVALID_ARG);
    CHECK_HAS(e.msg, "no TLS");
    for (i = 0; bad[i]; i++) {
        e.msg[0] = '\0';
        CHECK_MSG(sbx__endpoint_parse(bad[i], &ep, &e) == SBX_ERR_INVALID_ARG, "accepted \"%s\"", bad[i]);
        CHECK_MSG(e.msg[0] != '\0', "no message for \"%s\"", bad[i]);
    }
    memset(longpath, 'a', sizeof longpath);
    memcpy(longpath, "unix:/", 6);
    longpath[sizeof longpath - 1] = '\0';
    CHECK_EQ_INT(sbx__endpoint_parse(longpath, &ep, &e), SBX_ERR_INVALID_ARG);
    CHECK_HAS(e.msg, "longer than");
    CHECK_EQ_INT(sbx__endpoint_parse(NULL, &ep, &e), SBX_ERR_INVALID_ARG);
}

/* ------------------------------------------------------------ head parser */

static int parse(const char *buf, size_t len, size_t cap, const char **why)
{
    int minor, status;
    const char *reason;
    size_t rlen, n = cap;
    sbx__http_hdr h[SBX_MAX_HEADERS + 8];
    return sbx__http_parse_head(buf, len, &minor, &status, &reason, &rlen, h, &n, why);
}

static const char *const VALID_HEADS[] = {
    "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-Empty:\r\nX-Sp:  a b  \r\n\r\n",
    "HTTP/1.0 404 \r\n\r\n",
    "HTTP/1.1 204\r\n\r\n",
    "HTTP/1.1 200 OK\nA: b\n\n",
    "HTTP/1.1 200 \xc3\xa9t\xc3\xa9 ok\r\nX:\t tab\t\r\n\r\n",
    "HTTP/1.1 599 Whatever Reason Here\r\nA:b\r\nB: c\r\n\r\n",
    NULL};

TEST(parse_head_valid)
{
    int minor = -1, status = -1, r;
    const char *reason = NULL, *why = NULL, *s = VALID_HEADS[0];
    size_t rlen = 0, n = 8, len = strlen(s);
    sbx__http_hdr h[8];
    r = sbx__http_parse_head(s, len, &minor, &status, &reason, &rlen, h, &n, &why);
    CHECK_EQ_INT(r, (int)len);
    CHECK_EQ_INT(minor, 1);
    CHECK_EQ_INT(status, 200);
    CHECK(rlen == 2 && memcmp(reason, "OK", 2) == 0);
    CHECK_EQ_INT(n, 3);
    CHECK(h[0].name_len == 14 && memcmp(h[0].name, "Content-Length", 14) == 0);
    CHECK(h[0].value_len == 1 && h[0].value[0] == '5');
    CHECK_EQ_INT(h[1].value_len, 0);
    CHECK(h[2].value_len == 3 && memcmp(h[2].value, "a b", 3) == 0);
    /* bytes after the head are not part of it */
    {
        char more[256];
        snprintf(more, sizeof more, "%sBODYBYTES", s);
        n = 8;
        CHECK_EQ_INT(sbx__http_parse_head(more, strlen(more), &minor, &status, &reason, &rlen, h, &n, &why), (int)len);
    }
    s = "HTTP/1.1 204\r\n\r\n";
    n = 8;
    CHECK_EQ_INT(sbx__http_parse_head(s, strlen(s), &minor, &status, &reason, &rlen, h, &n, &why), (int)strlen(s));
    CHECK_EQ_INT(status, 204);
    CHECK_EQ_INT(rlen, 0);
    s = "HTTP/1.0 404 \r\n\r\n";
    n = 8;
    CHECK(sbx__http_parse_head(s, strlen(s), &minor, &status, &reason, &rlen, h, &n, &why) > 0);
    CHECK_EQ_INT(minor, 0);
    CHECK_EQ_INT(status, 404);
}

TEST(parse_head_every_prefix_incomplete)
{
    int i;
    for (i = 0; VALID_HEADS[i]; i++) {
        const char *s = VALID_HEADS[i];
        size_t len = strlen(s), k;
        CHECK_MSG(parse(s, len, 8, NULL) == (int)len, "head %d not accepted", i);
        for (k = 0; k < len; k++) {
            /* exact-size copies so ASan sees a read past the end */
            char *cp = (char *)malloc(k ? k : 1);
            int r;
            memcpy(cp, s, k);
            r = parse(cp, k, 8, NULL);
            CHECK_MSG(r == SBX__HTTP_INCOMPLETE, "head %d prefix %lu gave %d", i, (unsigned long)k, r);
            free(cp);
        }
    }
}

TEST(parse_head_guard_page)
{
    int i;
    for (i = 0; VALID_HEADS[i]; i++) {
        const char *s = VALID_HEADS[i];
        size_t len = strlen(s), k;
        for (k = 0; k <= len; k++) {
            guard g;
            char *p = guard_place(&g, s, k);
            int r;
            if (!p) SKIP("mmap/mprotect guard page not available");
            r = parse(p, k, 8, NULL);
            CHECK(k == len ? r == (int)len : r == SBX__HTTP_INCOMPLETE);
            guard_free(&g);
        }
    }
    {
        /* invalid input ending at the guard page */
        static const char *const bad[] = {"HTTP/1.1 200 OK\r\nA", "HTTP/1.1 200 OK\r\nA:", "HTTP/1.1 2", "HTTP/1.1 200 OK\r",
                                          NULL};
        for (i = 0; bad[i]; i++) {
            guard g;
            char *p = guard_place(&g, bad[i], strlen(bad[i]));
            if (!p) SKIP("mmap/mprotect guard page not available");
            CHECK_EQ_INT(parse(p, strlen(bad[i]), 8, NULL), SBX__HTTP_INCOMPLETE);
            guard_free(&g);
        }
    }
}

TEST(parse_head_invalid)
{
    static const struct { const char *in; size_t len; const char *why; } cases[] = {
        {"HTTP/2 200 OK\r\n\r\n", 0, "bad status line"},
        {"HTTP/1.2 200 OK\r\n\r\n", 0, "unsupported HTTP version"},
        {"HTTP/1.1 20 OK\r\n\r\n", 0, "bad status code"},
        {"HTTP/1.1 2000 OK\r\n\r\n", 0, "bad status code"},
        {"HTTP/1.1 099 OK\r\n\r\n", 0, "not 100-599"},
        {"HTTP/1.1 600 OK\r\n\r\n", 0, "not 100-599"},
        {"HTTP/1.1 2x0 OK\r\n\r\n", 0, "bad status code"},
        {"HTTP/1.1  200 OK\r\n\r\n", 0, "bad status code"},
        {"HTTP/1.1 200 O\x01K\r\n\r\n", 0, "reason phrase"},
        {"HTTP/1.1 200 OK\r\n A: b\r\n\r\n", 0, "obs-fold"},
        {"HTTP/1.1 200 OK\r\nA: b\r\n c\r\n\r\n", 0, "obs-fold"},
        {"HTTP/1.1 200 OK\r\nA : b\r\n\r\n", 0, "whitespace between"},
        {"HTTP/1.1 200 OK\r\nA\r\n\r\n", 0, "without a colon"},
        {"HTTP/1.1 200 OK\r\n: b\r\n\r\n", 0, "empty header name"},
        {"HTTP/1.1 200 OK\r\nA(: b\r\n\r\n", 0, "bad character in a header name"},
        {"HTTP/1.1 200 OK\r\nA: b\0c\r\n\r\n", 26, "control character in a header value"},
        {"HTTP/1.1 200 OK\r\nA: b\x7f\r\n\r\n", 0, "control character in a header value"},
        {"HTTP/1.1 200 OK\rX", 0, "bare CR"},
        {"HTTP/1.1 200 OK\r\nA: b\r\n\rX", 0, "bare CR"},
        {"HTTP/1.1 200 OK\r\nA: b\rX\r\n\r\n", 0, "bare CR"},
        {"garbage", 0, "bad status line"},
        {"FOO/1.1 200 OK\r\n\r\n", 0, "bad status line"},
        {"http/1.1 200 OK\r\n\r\n", 0, "bad status line"},
        {"HTTP/1.1\t200 OK\r\n\r\n", 0, "no space after the version"},
    };
    size_t i;
    for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *why = NULL;
        size_t len = cases[i].len ? cases[i].len : strlen(cases[i].in);
        int r = parse(cases[i].in, len, 8, &why);
        CHECK_MSG(r == SBX__HTTP_INVALID, "case %lu gave %d", (unsigned long)i, r);
        CHECK_MSG(contains(why, cases[i].why), "case %lu: why \"%s\" lacks \"%s\"", (unsigned long)i, why ? why : "(null)",
                  cases[i].why);
    }
}

TEST(parse_head_limits)
{
    sbx__buf b;
    const char *why = NULL;
    int i;
    sbx_allocator a = sbx__allocator(NULL);
    sbx__buf_init(&b, &a);
    /* exactly SBX_MAX_HEADERS fields: fine; one more: too many */
    sbx__buf_puts(&b, "HTTP/1.1 200 OK\r\n");
    for (i = 0; i < SBX_MAX_HEADERS; i++) sbx__buf_printf(&b, "X-%d: v\r\n", i);
    sbx__buf_puts(&b, "\r\n");
    CHECK_EQ_INT(parse(b.data, b.len, SBX_MAX_HEADERS, NULL), (int)b.len);
    b.len -= 2;
    sbx__buf_puts(&b, "X-last: v\r\n\r\n");
    CHECK_EQ_INT(parse(b.data, b.len, SBX_MAX_HEADERS, &why), SBX__HTTP_TOO_MANY);
    CHECK_HAS(why, "too many");
    CHECK_EQ_INT(parse(b.data, b.len, 3, NULL), SBX__HTTP_TOO_MANY);
    /* a head longer than SBX_MAX_HEADER_BYTES */
    b.len = 0;
    sbx__buf_puts(&b, "HTTP/1.1 200 OK\r\nX: ");
    while (b.len < SBX_MAX_HEADER_BYTES + 100) sbx__buf_puts(&b, "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa");
    CHECK_EQ_INT(parse(b.data, SBX_MAX_HEADER_BYTES - 1, 8, NULL), SBX__HTTP_INCOMPLETE);
    CHECK_EQ_INT(parse(b.data, SBX_MAX_HEADER_BYTES, 8, NULL), SBX__HTTP_TOO_LONG);
    CHECK_EQ_INT(parse(b.data, b.len, 8, NULL), SBX__HTTP_TOO_LONG);
    /* a complete head of exactly SBX_MAX_HEADER_BYTES bytes is fine */
    b.len = SBX_MAX_HEADER_BYTES - 4;
    sbx__buf_puts(&b, "\r\n\r\n");
    CHECK_EQ_INT(parse(b.data, b.len, 8, NULL), SBX_MAX_HEADER_BYTES);
    sbx__buf_free(&b);
}

TEST(content_length_strict)
{
    long long v = -7;
    CHECK_EQ_INT(sbx__http_parse_length("0", 1, &v), 0);
    CHECK_EQ_INT(v, 0);
    CHECK_EQ_INT(sbx__http_parse_length("9223372036854775807", 19, &v), 0);
    CHECK(v == 9223372036854775807LL);
    CHECK_EQ_INT(sbx__http_parse_length("9223372036854775808", 19, &v), -1);
    CHECK_EQ_INT(sbx__http_parse_length("99999999999999999999999", 23, &v), -1);
    CHECK_EQ_INT(sbx__http_parse_length("+5", 2, &v), -1);
    CHECK_EQ_INT(sbx__http_parse_length("-5", 2, &v), -1);
    CHECK_EQ_INT(sbx__http_parse_length("5 ", 2, &v), -1);
    CHECK_EQ_INT(sbx__http_parse_length("5,5", 3, &v), -1);
    CHECK_EQ_INT(sbx__http_parse_length("", 0, &v), -1);
    CHECK_EQ_INT(sbx__http_parse_length("0x5", 3, &v), -1);
}

/* ------------------------------------------------------------ chunked decoder */

static const char CHUNKED_OK[] =
    "5;ext=1;q=\"a b\"\r\nhello\r\n1 \r\n,\r\n6 ; x\r\n world\r\n0;last\r\nX-Trailer: yes\r\nY: z\r\n\r\nNEXT";

/* Decode `in` in pieces of `step` bytes (0: all at once): returns the decoder
   result, output in out (cap 256), *consumed total. */
static int decode_steps(const char *in, size_t len, size_t step, char *out, size_t *outlen, size_t *consumed,
                        const char **why)
{
    sbx__chunked d;
    size_t i = 0;
    int r = 0;
    sbx__chunked_init(&d);
    *outlen = 0;
    *consumed = 0;
    while (i < len) {
        size_t n = step && len - i > step ? step : len - i, o = 0, u = 0;
        char *piece = (char *)malloc(n);
        memcpy(piece, in + i, n);
        r = sbx__chunked_decode(&d, piece, n, &o, &u);
        memcpy(out + *outlen, piece, o);
        *outlen += o;
        *consumed += u;
        free(piece);
        if (r != 0) break;
        i += n;
    }
    *why = d.why;
    return r;
}

TEST(chunked_valid_any_split)
{
    char out[256];
    size_t ol, used, step, len = strlen(CHUNKED_OK);
    const char *why;
    for (step = 0; step <= len; step++) {
        int r = decode_steps(CHUNKED_OK, len, step, out, &ol, &used, &why);
        CHECK_MSG(r == 1, "step %lu: %d (%s)", (unsigned long)step, r, why ? why : "");
        CHECK(ol == 12 && memcmp(out, "hello, world", 12) == 0);
        CHECK_EQ_INT(used, len - 4); /* "NEXT" is not part of the body */
    }
    /* every two-piece split */
    for (step = 0; step <= len; step++) {
        sbx__chunked d;
        char a[256];
        size_t o1 = 0, u1 = 0, o2 = 0, u2 = 0;
        int r;
        memcpy(a, CHUNKED_OK, len);
        sbx__chunked_init(&d);
        r = sbx__chunked_decode(&d, a, step, &o1, &u1);
        if (r == 0) {
            memmove(a + o1, a + step, len - step);
            r = sbx__chunked_decode(&d, a + o1, len - step, &o2, &u2);
        }
        CHECK_EQ_INT(r, 1);
        CHECK(o1 + o2 == 12 && memcmp(a, "hello, world", 12) == 0);
    }
    {
        static const struct { const char *in; const char *out; } ok[] = {
            {"3\nabc\n0\n\n", "abc"},
            {"A\r\n0123456789\r\n0\r\n\r\n", "0123456789"},
            {"a\r\n0123456789\r\n0\r\n\r\n", "0123456789"},
            {"00000000000000000003\r\nabc\r\n0000\r\n\r\n", "abc"},
            {"0\r\n\r\n", ""},
            {"1\t;\tx=y\r\nz\r\n0\r\nT: 1\r\n\r\n", "z"},
        };
        size_t i;
        for (i = 0; i < sizeof ok / sizeof ok[0]; i++) {
            for (step = 0; step < 4; step++) {
                int r = decode_steps(ok[i].in, strlen(ok[i].in), step, out, &ol, &used, &why);
                CHECK_MSG(r == 1, "case %lu step %lu: %d %s", (unsigned long)i, (unsigned long)step, r, why ? why : "");
                CHECK(ol == strlen(ok[i].out) && memcmp(out, ok[i].out, ol) == 0);
            }
        }
    }
}

TEST(chunked_invalid)
{
    static const struct { const char *in; const char *why; } bad[] = {
        {"-1\r\nx\r\n0\r\n\r\n", "bad chunk size"},
        {"zz\r\n", "bad chunk size"},
        {"ffffffffffffffffff\r\n", "overflows"},
        {"8000000000000000\r\n", "overflows"},
        {"\r\n", "bad chunk size"},
        {" 5\r\nhello\r\n", "bad chunk size"},
        {"0x5\r\n", "bad chunk size"},
        {"5 x\r\n", "junk after the size"},
        {"5\r\nhelloX\r\n", "missing CRLF"},
        {"5\r\nhello\rX", "missing CRLF"},
        {"5\rX", "bare CR"},
        {"0\r\n\rX", "bare CR after the last chunk"},
        {"0\r\n a\r\n\r\n", "obs-fold"},
        {"0\r\nA: b\rX", "bare CR"},
        {"5;\x01\r\n", "control character in a chunk extension"},
        {"0\r\nA: \x01\r\n\r\n", "control character in a trailer"},
    };
    size_t i;
    char out[256];
    for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        size_t step;
        for (step = 0; step < 3; step++) {
            size_t ol, used;
            const char *why = NULL;
            int r = decode_steps(bad[i].in, strlen(bad[i].in), step, out, &ol, &used, &why);
            CHECK_MSG(r == -1, "case %lu step %lu: %d", (unsigned long)i, (unsigned long)step, r);
            CHECK_MSG(contains(why, bad[i].why), "case %lu: \"%s\" lacks \"%s\"", (unsigned long)i, why ? why : "", bad[i].why);
        }
    }
    {
        /* an overlong extension */
        sbx__buf b;
        size_t ol, used;
        const char *why = NULL;
        sbx_allocator a = sbx__allocator(NULL);
        sbx__buf_init(&b, &a);
        sbx__buf_puts(&b, "1;");
        while (b.len < SBX__HTTP_CHUNK_EXT_MAX + 10) sbx__buf_puts(&b, "x");
        sbx__buf_puts(&b, "\r\n");
        {
            sbx__chunked d;
            sbx__chunked_init(&d);
            CHECK_EQ_INT(sbx__chunked_decode(&d, b.data, b.len, &ol, &used), -1);
            why = d.why;
            CHECK_HAS(why, "extension too long");
        }
        sbx__buf_free(&b);
    }
    /* the largest legal size decodes its size line without complaint */
    {
        sbx__chunked d;
        char s[] = "7fffffffffffffff\r\nab";
        size_t ol, used;
        sbx__chunked_init(&d);
        CHECK_EQ_INT(sbx__chunked_decode(&d, s, strlen(s), &ol, &used), 0);
        CHECK_EQ_INT(ol, 2);
        CHECK(d.left == 0x7fffffffffffffffull - 2);
    }
}

TEST(chunked_guard_page)
{
    size_t len = strlen(CHUNKED_OK) - 4, k;
    for (k = 0; k <= len; k++) {
        guard g;
        sbx__chunked d;
        size_t o = 0, u = 0;
        char *p = guard_place(&g, CHUNKED_OK, k);
        int r;
        if (!p) SKIP("mmap/mprotect guard page not available");
        sbx__chunked_init(&d);
        r = sbx__chunked_decode(&d, p, k, &o, &u);
        CHECK(k == len ? r == 1 : r == 0);
        CHECK_EQ_INT(u, k);
        guard_free(&g);
    }
}

/* ------------------------------------------------------------ line splitter */

TEST(line_splitter)
{
    sbx__linesplit ls;
    size_t used;
    sbx__buf line;
    sbx_allocator a = sbx__allocator(NULL);
    ls.len = 0;
    ls.cap = 5;
    CHECK_EQ_INT(sbx__linesplit_feed(&ls, "12345\nab", 8, &used), 1);
    CHECK_EQ_INT(used, 6);
    CHECK_EQ_INT(sbx__linesplit_feed(&ls, "ab", 2, &used), 0);
    CHECK_EQ_INT(used, 2);
    CHECK_EQ_INT(sbx__linesplit_feed(&ls, "cde", 3, &used), 0); /* exactly the cap so far */
    CHECK_EQ_INT(sbx__linesplit_feed(&ls, "f", 1, &used), -1);  /* 6 bytes before any \n */
    ls.len = 0;
    CHECK_EQ_INT(sbx__linesplit_feed(&ls, "123456\n", 7, &used), -1);
    ls.len = 0;
    CHECK_EQ_INT(sbx__linesplit_feed(&ls, "", 0, &used), 0);
    CHECK_EQ_INT(used, 0);
    CHECK_EQ_INT(sbx__linesplit_feed(&ls, "\n", 1, &used), 1);
    /* line_take across pieces, CR stripped */
    sbx__buf_init(&line, &a);
    sbx__buf_append(&line, "", 0);
    ls.len = 0;
    ls.cap = 100;
    CHECK_EQ_INT(sbx__http_line_take(&ls, &line, "ab", 2, &used), 0);
    CHECK_EQ_INT(sbx__http_line_take(&ls, &line, "c\r", 2, &used), 0);
    CHECK_EQ_INT(sbx__http_line_take(&ls, &line, "\nrest", 5, &used), 1);
    CHECK_EQ_INT(used, 1);
    CHECK_STR(line.data, "abc");
    sbx__buf_free(&line);
}

/* The NDJSON watch stream, chunk-encoded and fed one byte at a time and at
   every two-piece split: the lines come out whole. */
TEST(watch_lines_every_split)
{
    static const char body[] = "{\"type\":\"ADDED\",\"object\":{\"a\":1}}\n{\"type\":\"MODIFIED\"}\r\n\n"
                               "{\"type\":\"DELETED\",\"object\":{}}\nno-newline";
    static const char *const want[] = {"{\"type\":\"ADDED\",\"object\":{\"a\":1}}", "{\"type\":\"MODIFIED\"}", "",
                                       "{\"type\":\"DELETED\",\"object\":{}}", "no-newline"};
    char enc[1024];
    size_t elen = 0, i, split;
    sbx_allocator a = sbx__allocator(NULL);
    /* chunks of 3 bytes with extensions */
    for (i = 0; i < sizeof body - 1; i += 3) {
        size_t n = sizeof body - 1 - i < 3 ? sizeof body - 1 - i : 3;
        elen += (size_t)sprintf(enc + elen, "%lx;i=%lu\r\n", (unsigned long)n, (unsigned long)i);
        memcpy(enc + elen, body + i, n);
        elen += n;
        memcpy(enc + elen, "\r\n", 2);
        elen += 2;
    }
    elen += (size_t)sprintf(enc + elen, "0\r\nTrailer: x\r\n\r\n");
    for (split = 0; split <= elen + 1; split++) {
        /* split == elen + 1: one byte at a time */
        sbx__chunked d;
        sbx__linesplit ls;
        sbx__buf line;
        size_t pos = 0, nlines = 0;
        int done = 0, bad = 0;
        sbx__chunked_init(&d);
        ls.len = 0;
        ls.cap = 1000;
        sbx__buf_init(&line, &a);
        sbx__buf_append(&line, "", 0);
        while (pos < elen && !done && !bad) {
            size_t n = split == elen + 1 ? 1 : (pos < split ? split - pos : elen - pos), o = 0, u = 0, off = 0;
            char piece[1024];
            int r;
            if (n == 0) n = elen - pos;
            memcpy(piece, enc + pos, n);
            r = sbx__chunked_decode(&d, piece, n, &o, &u);
            if (r < 0) { bad = 1; break; }
            while (off < o) {
                size_t used = 0;
                int t = sbx__http_line_take(&ls, &line, piece + off, o - off, &used);
                if (t < 0) { bad = 1; break; }
                off += used;
                if (t == 1) {
                    if (nlines >= 5 || strcmp(line.data, want[nlines]) != 0) bad = 1;
                    nlines++;
                    line.len = 0;
                    line.data[0] = '\0';
                }
            }
            pos += n;
            done = r == 1;
        }
        if (line.len > 0) {
            if (nlines >= 5 || strcmp(line.data, want[nlines]) != 0) bad = 1;
            nlines++;
        }
        CHECK_MSG(!bad && done && nlines == 5, "split %lu: bad %d done %d lines %lu", (unsigned long)split, bad, done,
                  (unsigned long)nlines);
        sbx__buf_free(&line);
    }
}

/* ------------------------------------------------------------ error text */

TEST(error_text)
{
    char out[512], small[12];
    static const char status[] = "{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"metadata\":{},\"status\":\"Failure\","
                                 "\"message\":\"pods \\\"x\\\" not found\",\"reason\":\"NotFound\","
                                 "\"details\":{\"name\":\"x\",\"kind\":\"pods\"},\"code\":404}";
    static const char nested[] = "{\"details\":{\"message\":\"inner\",\"causes\":[{\"message\":\"deep\"}]},"
                                 "\"message\":\"outer\"}";
    static const char proxy[] = "dial tcp 127.0.0.1:35185: connect: connection refused\n";
    char big[1000];
    size_t n;
    n = sbx__http_error_text(404, status, strlen(status), out, sizeof out);
    CHECK_STR(out, "HTTP 404: pods \"x\" not found");
    CHECK_EQ_INT(n, strlen(out));
    sbx__http_error_text(409, nested, strlen(nested), out, sizeof out);
    CHECK_STR(out, "HTTP 409: outer");
    sbx__http_error_text(404, "{\"detail\":\"Not Found\"}", 22, out, sizeof out);
    CHECK_STR(out, "HTTP 404: Not Found");
    sbx__http_error_text(403, "{\"message\":\"Access denied\"}", 27, out, sizeof out);
    CHECK_STR(out, "HTTP 403: Access denied");
    sbx__http_error_text(500, proxy, strlen(proxy), out, sizeof out);
    CHECK_STR(out, "HTTP 500: dial tcp 127.0.0.1:35185: connect: connection refused");
    sbx__http_error_text(400, "{\"message\":\"caf\\u00e9\\nline\\ud83d\\ude00\"}", 41, out, sizeof out);
    CHECK_STR(out, "HTTP 400: caf\xc3\xa9 line\xf0\x9f\x98\x80");
    sbx__http_error_text(400, "a\x01" "b\tc\xff" "d", 7, out, sizeof out);
    CHECK_STR(out, "HTTP 400: a b c?d");
    sbx__http_error_text(503, "", 0, out, sizeof out);
    CHECK_STR(out, "HTTP 503");
    sbx__http_error_text(503, NULL, 0, out, sizeof out);
    CHECK_STR(out, "HTTP 503");
    sbx__http_error_text(502, "  \n", 3, out, sizeof out);
    CHECK_STR(out, "HTTP 502");
    /* a detail that is not a string (FastAPI's 422 list): the raw text */
    sbx__http_error_text(422, "{\"detail\":[{\"msg\":\"field required\"}]}", 37, out, sizeof out);
    CHECK_STR(out, "HTTP 422: {\"detail\":[{\"msg\":\"field required\"}]}");
    sbx__http_error_text(500, "{\"message\":\"abc", 15, out, sizeof out); /* truncated JSON: raw text */
    CHECK_STR(out, "HTTP 500: {\"message\":\"abc");
    memset(big, 'z', sizeof big);
    n = sbx__http_error_text(500, big, sizeof big, out, sizeof out);
    CHECK_EQ_INT(n, strlen("HTTP 500: ") + 300 + 3);
    CHECK(memcmp(out + n - 3, "...", 3) == 0);
    /* a small buffer: cut, terminated, never overrun (ASan watches) */
    n = sbx__http_error_text(404, status, strlen(status), small, sizeof small);
    CHECK_EQ_INT(n, strlen(small));
    CHECK(n < sizeof small);
    CHECK(strncmp(small, "HTTP 404: p", 11) == 0);
    /* a multi-byte character is never cut in half */
    n = sbx__http_error_text(404, "{\"message\":\"\xc3\xa9\xc3\xa9\"}", 18, small, sizeof small);
    CHECK_STR(small, "HTTP 404"); /* no room for one whole character */
    CHECK_EQ_INT(sbx__http_error_text(404, "x", 1, small, 0), 0);
    /* invalid escapes (a NUL or a non-ASCII byte after the backslash): not
       JSON, so the raw text, NUL as a space and the stray byte as '?' */
    n = sbx__http_error_text(400, "{\"message\":\"a\\\0b\\\xa2" "c\"}", 20, out, sizeof out);
    CHECK_STR(out, "HTTP 400: {\"message\":\"a\\ b\\?c\"");
    CHECK_EQ_INT(n, strlen(out));
}

/* ------------------------------------------------------------ network: basics */

TEST(get_content_length)
{
    cli k;
    size_t len = 0;
    const char *v;
    int fds = test_fd_count();
    CHECK_EQ_INT(cli_open(&k, URL), 0);
    CHECK_EQ_INT(cli_get(&k, "/ok"), SBX_OK);
    CHECK_EQ_INT(k.r.status, 200);
    CHECK_STR(k.r.reason, "OK");
    CHECK_EQ_INT(k.r.minor, 1);
    CHECK_STR(k.body.data, "hello");
    CHECK_EQ_INT(k.body.len, 5);
    CHECK_EQ_INT(k.r.content_length, 5);
    v = sbx__http_header(&k.r, "CONTENT-LENGTH", &len);
    CHECK(v && len == 1 && strcmp(v, "5") == 0);
    CHECK(sbx__http_header(&k.r, "x-missing", &len) == NULL && len == 0);
    CHECK(k.r.keep_alive);
    CHECK(k.c.fd >= 0); /* kept for the next request */
    cli_close(&k);
    CHECK_EQ_INT(test_fd_count(), fds);
}

TEST(post_echo_headers)
{
    cli k;
    char v[300];
    int fds = test_fd_count();
    char host[64];
    CHECK_EQ_INT(cli_open(&k, URL), 0);
    CHECK_EQ_INT(cli_req(&k, "POST", "/echo?a=1&b=%2F", "X-Test: yes\r\nContent-Type: text/plain\r\n", "abc\ndef", 0,
                         5000), SBX_OK);
    CHECK_EQ_INT(k.r.status, 200);
    CHECK_STR(field(k.body.data, "method", v, sizeof v), "POST");
    CHECK_STR(field(k.body.data, "target", v, sizeof v), "/echo?a=1&b=%2F");
    CHECK_STR(field(k.body.data, "version", v, sizeof v), "HTTP/1.1");
    snprintf(host, sizeof host, "127.0.0.1:%d", S.port);
    CHECK_STR(field(k.body.data, "host", v, sizeof v), host);
    CHECK_STR(field(k.body.data, "ua", v, sizeof v), "sandbox.h/" SANDBOX_VERSION_STRING);
    CHECK_STR(field(k.body.data, "cl", v, sizeof v), "7");
    CHECK_STR(field(k.body.data, "te", v, sizeof v), "");
    CHECK_STR(field(k.body.data, "x", v, sizeof v), "yes");
    CHECK_STR(field(k.body.data, "ctype", v, sizeof v), "text/plain");
    CHECK_STR(field(k.body.data, "body", v, sizeof v), "abc\\ndef");
    /* the caller's User-Agent replaces ours; an empty POST says Content-Length: 0 */
    CHECK_EQ_INT(cli_req(&k, "POST", "/echo", "User-Agent: mine/1\r\n", NULL, 0, 5000), SBX_OK);
    CHECK_STR(field(k.body.data, "ua", v, sizeof v), "mine/1");
    CHECK_STR(field(k.body.data, "cl", v, sizeof v), "0");
    CHECK_EQ_INT(cli_req(&k, "DELETE", "/echo", NULL, NULL, 1, 5000), SBX_OK);
    CHECK_STR(field(k.body.data, "method", v, sizeof v), "DELETE");
    CHECK_STR(field(k.body.data, "cl", v, sizeof v), "");
    cli_close(&k);
    CHECK_EQ_INT(test_fd_count(), fds);
}

TEST(endpoint_prefix)
{
    cli k;
    char url[96], v[128];
    int fds = test_fd_count();
    snprintf(url, sizeof url, "http://127.0.0.1:%d/pre/fix/", S.port);
    CHECK_EQ_INT(cli_open(&k, url), 0);
    CHECK_EQ_INT(cli_get(&k, "/echo?x=1"), SBX_OK);
    CHECK_STR(field(k.body.data, "target", v, sizeof v), "/pre/fix/echo?x=1");
    cli_close(&k);
    CHECK_EQ_INT(test_fd_count(), fds);
}

TEST(request_validation)
{
    cli k;
    sbx__http_req q;
    int fds = test_fd_count();
    static const char *const bad_headers[] = {"X: a\r\nHost: evil\r\n", "X: a\n", "X: a", "X a\r\n", "X: a\rb\r\n",
                                              "Content-Length: 5\r\n", "transfer-encoding: chunked\r\n",
                                              "X: a\r\n\r\nGET / HTTP/1.1\r\n", NULL};
    int i;
    CHECK_EQ_INT(cli_open(&k, URL), 0);
    CHECK_EQ_INT(cli_req(&k, "GE T", "/ok", NULL, NULL, 1, 1000), SBX_ERR_INVALID_ARG);
    CHECK_EQ_INT(cli_req(&k, "", "/ok", NULL, NULL, 1, 1000), SBX_ERR_INVALID_ARG);
    CHECK_EQ_INT(cli_req(&k, "GET", "ok", NULL, NULL, 1, 1000), SBX_ERR_INVALID_ARG);
    CHECK_EQ_INT(cli_req(&k, "GET", "/a b", NULL, NULL, 1, 1000), SBX_ERR_INVALID_ARG);
    CHECK_HAS(k.e.msg, "percent-encoded");
    CHECK_EQ_INT(cli_req(&k, "GET", "/a\r\nX: y", NULL, NULL, 1, 1000), SBX_ERR_INVALID_ARG);
    CHECK_EQ_INT(cli_req(&k, "GET", "/\xc3\xa9", NULL, NULL, 1, 1000), SBX_ERR_INVALID_ARG);
    for (i = 0; bad_headers[i]; i++)
        CHECK_MSG(cli_req(&k, "GET", "/ok", bad_headers[i], NULL, 1, 1000) == SBX_ERR_INVALID_ARG, "headers %d accepted", i);
    sbx__http_req_init(&q);
    q.body_len = 3;
    CHECK_EQ_INT(sbx__http_send(&k.c, &q, &k.r, sbx__deadline(1000), &k.e), SBX_ERR_INVALID_ARG);
    sbx__http_resp_free(&k.r);
    sbx__http_req_init(&q);
    q.multipart_name = "file";
    CHECK_EQ_INT(sbx__http_send(&k.c, &q, &k.r, sbx__deadline(1000), &k.e), SBX_ERR_INVALID_ARG);
    sbx__http_resp_free(&k.r);
    CHECK_EQ_INT(k.c.fd, -1); /* nothing was sent */
    cli_close(&k);
    CHECK_EQ_INT(test_fd_count(), fds);
}

TEST(chunked_response)
{
    cli k;
    int fds = test_fd_count();
    CHECK_EQ_INT(cli_open(&k, URL), 0);
    CHECK_EQ_INT(cli_get(&k, "/chunked?t=ch"), SBX_OK);
    CHECK_STR(k.body.data, "hello, world");
    CHECK(k.r.chunked);
    CHECK_EQ_INT(k.r.content_length, -1);
    CHECK(k.c.fd >= 0);
    CHECK_EQ_INT(cli_get(&k, "/ok?t=ch"), SBX_OK);
    CHECK_EQ_INT(get_stats("ch").conns, 1);
    cli_close(&k);
    CHECK_EQ_INT(test_fd_count(), fds);
}

TEST(read_until_close)
{
    cli k;
    int fds = test_fd_count();
    CHECK_EQ_INT(cli_open(&k, URL), 0);
    CHECK_EQ_INT(cli_get(&k, "/close"), SBX_OK);
    CHECK_STR(k.body.data, "until the server closes");
    CHECK(!k.r.keep_alive);
    CHECK_EQ_INT(k.c.fd, -1);
    cli_close(&k);
    CHECK_EQ_INT(test_fd_count(), fds);
}

TEST(no_body_head_204_304)
{
    cli k;
    int fds = test_fd_count();
    stats st;
    CHECK_EQ_INT(cli_open(&k, URL), 0);
    CHECK_EQ_INT(cli_req(&k, "HEAD", "/head?t=nb", NULL, NULL, 1, 3000), SBX_OK);
    CHECK_EQ_INT(k.r.status, 200);
    CHECK_EQ_INT(k.r.content_length, 1000);
    CHECK_EQ_INT(k.body.len, 0);
    CHECK_EQ_INT(cli_req(&k, "GET", "/204?t=nb", NULL, NULL, 1, 3000), SBX_OK);
    CHECK_EQ_INT(k.r.status, 204);
    CHECK_EQ_INT(k.body.len, 0);
    CHECK_EQ_INT(cli_req(&k, "GET", "/304?t=nb", NULL, NULL, 1, 3000), SBX_OK);
    CHECK_EQ_INT(k.r.status, 304);
    CHECK_EQ_INT(cli_req(&k, "GET", "/ok?t=nb", NULL, NULL, 1, 3000), SBX_OK);
    CHECK_STR(k.body.data, "hello");
    st = get_stats("nb");
    CHECK_EQ_INT(st.conns, 1); /* no body was waited for, the connection stayed in step */
    CHECK_EQ_INT(st.reqs, 4);
    cli_close(&k);
    CHECK_EQ_INT(test_fd_count(), fds);
}

TEST(interim_1xx_skipped)
{
    cli k;
    CHECK_EQ_INT(cli_open(&k, URL), 0);
    CHECK_EQ_INT(cli_get(&k, "/continue"), SBX_OK);
    CHECK_EQ_INT(k.r.status, 200);
    CHECK_STR(k.body.data, "final");
    cli_close(&k);
}

TEST(keep_alive_reuse)
{
    cli k;
    int i, fds = test_fd_count();
    stats st;
    CHECK_EQ_INT(cli_open(&k, URL), 0);
    for (i = 0; i < 25; i++) {
        CHECK_EQ_INT(cli_get(&k, i % 2 ? "/ok?t=ka" : "/chunked?t=ka"), SBX_OK);
        CHECK_EQ_INT(k.r.status, 200);
    }
    CHECK_EQ_INT(k.c.served, 25);
    st = get_stats("ka");
    CHECK_EQ_INT(st.conns, 1);
    CHECK_EQ_INT(st.reqs, 25);
    cli_close(&k);
    CHECK_EQ_INT(test_fd_count(), fds);
}

TEST(connection_close_rules)
{
    cli k;
    int fds = test_fd_count();
    CHECK_EQ_INT(cli_open(&k, URL), 0);
    CHECK_EQ_INT(cli_get(&k, "/http10?t=h10"), SBX_OK);
    CHECK_EQ_INT(k.r.minor, 0);
    CHECK(!k.r.keep_alive);
    CHECK_EQ_INT(k.c.fd, -1);
    CHECK_EQ_INT(cli_get(&k, "/http10?t=h10"), SBX_OK);
    CHECK_EQ_INT(get_stats("h10").conns, 2);
    CHECK_EQ_INT(cli_get(&k, "/http10ka?t=h10ka"), SBX_OK);
    CHECK(k.r.keep_alive);
    CHECK_EQ_INT(cli_get(&k, "/http10ka?t=h10ka"), SBX_OK);
    CHECK_EQ_INT(get_stats("h10ka").conns, 1);
    CHECK_EQ_INT(cli_get(&k, "/connclose?t=cc"), SBX_OK);
    CHECK_EQ_INT(k.c.fd, -1);
    CHECK_EQ_INT(cli_get(&k, "/connclose?t=cc"), SBX_OK);
    CHECK_EQ_INT(get_stats("cc").conns, 2);
    /* the client asking for close */
    CHECK_EQ_INT(cli_req(&k, "GET", "/ok?t=rc", "Connection: close\r\n", NULL, 1, 3000), SBX_OK);
    CHECK(!k.r.keep_alive);
    CHECK_EQ_INT(k.c.fd, -1);
    cli_close(&k);
    CHECK_EQ_INT(test_fd_count(), fds);
}

/* Wait (bounded) until the server's FIN is visible on the idle socket. */
static int wait_readable(int fd, int ms)
{
    return sbx__poll1(fd, POLLIN, sbx__deadline(ms)) == 1;
}

TEST(idle_close_seen_before_sending)
{
    cli k;
    stats st;
    int fds = test_fd_count();
    CHECK_EQ_INT(cli_open(&k, URL), 0);
    CHECK_EQ_INT(cli_get(&k, "/idleclose?t=ic"), SBX_OK);
    CHECK(k.c.fd >= 0); /* the server did not say close */
    CHECK(wait_readable(k.c.fd, 3000));
    /* a non-idempotent POST is safe: nothing was sent on the dead socket */
    CHECK_EQ_INT(cli_req(&k, "POST", "/ok?t=ic", NULL, "data", 0, 3000), SBX_OK);
    CHECK_EQ_INT(k.r.status, 200);
    st = get_stats("ic");
    CHECK_EQ_INT(st.posts, 1);
    CHECK_EQ_INT(st.conns, 2);
    cli_close(&k);
    CHECK_EQ_INT(test_fd_count(), fds);
}

TEST(dropped_reused_connection_retry_rules)
{
    cli k;
    stats st;
    int fds = test_fd_count();
    CHECK_EQ_INT(cli_open(&k, URL), 0);
    /* idempotent: sent again on a new connection */
    CHECK_EQ_INT(cli_get(&k, "/dropnext?t=dr"), SBX_OK);
    CHECK_EQ_INT(cli_get(&k, "/ok?t=dr"), SBX_OK);
    CHECK_EQ_INT(k.r.status, 200);
    CHECK_STR(k.body.data, "hello");
    st = get_stats("dr");
    CHECK_EQ_INT(st.drops, 1);
    CHECK_EQ_INT(st.reqs, 3);
    CHECK_EQ_INT(st.conns, 2);
    /* not idempotent: fails, and the server saw the POST exactly once */
    CHECK_EQ_INT(cli_get(&k, "/dropnext?t=dp"), SBX_OK);
    CHECK_EQ_INT(cli_req(&k, "POST", "/ok?t=dp", NULL, "payload", 0, 3000), SBX_ERR_CONNECT);
    CHECK_HAS(k.e.msg, "may have reached the server");
    CHECK_HAS(k.e.msg, "not idempotent");
    CHECK_HAS(k.e.msg, "POST /ok?t=dp");
    CHECK_EQ_INT(k.c.fd, -1);
    st = get_stats("dp");
    CHECK_EQ_INT(st.posts, 1);
    CHECK_EQ_INT(st.drops, 1);
    CHECK_EQ_INT(st.conns, 1);
    /* idempotent but the body came from a descriptor: cannot be re-sent */
    {
        int p[2];
        sbx__http_req q;
        CHECK_EQ_INT(cli_get(&k, "/dropnext?t=dfd"), SBX_OK);
        CHECK_EQ_INT(sbx__pipe_cloexec(p), 0);
        CHECK_EQ_INT(write(p[1], "abcd", 4), 4);
        close(p[1]);
        sbx__http_req_init(&q);
        q.method = "PUT";
        q.target = "/ok?t=dfd";
        q.body_fd = p[0];
        q.body_fd_len = 4;
        q.idempotent = 1;
        sbx__http_resp_free(&k.r);
        CHECK_EQ_INT(sbx__http_send(&k.c, &q, &k.r, sbx__deadline(3000), &k.e), SBX_ERR_CONNECT);
        CHECK_HAS(k.e.msg, "descriptor");
        close(p[0]);
        CHECK_EQ_INT(get_stats("dfd").conns, 1);
    }
    cli_close(&k);
    CHECK_EQ_INT(test_fd_count(), fds);
}

TEST(unread_body_closes_connection)
{
    cli k;
    sbx__http_req q;
    int fds = test_fd_count();
    CHECK_EQ_INT(cli_open(&k, URL), 0);
    sbx__http_req_init(&q);
    q.target = "/big?n=1000000&t=ub";
    CHECK_EQ_INT(sbx__http_send(&k.c, &q, &k.r, sbx__deadline(3000), &k.e), SBX_OK);
    CHECK_EQ_INT(k.r.content_length, 1000000);
    sbx__http_resp_free(&k.r);
    CHECK_EQ_INT(cli_get(&k, "/ok?t=ub"), SBX_OK);
    CHECK_STR(k.body.data, "hello");
    CHECK_EQ_INT(get_stats("ub").conns, 2);
    /* a stale response cannot be read any more */
    {
        sbx__http_resp old;
        sbx__buf b;
        CHECK_EQ_INT(sbx__http_send(&k.c, &q, &old, sbx__deadline(3000), &k.e), SBX_OK);
        CHECK_EQ_INT(cli_get(&k, "/ok?t=ub"), SBX_OK);
        sbx__buf_init(&b, &k.c.a);
        CHECK_EQ_INT(sbx__http_body_mem(&k.c, &old, &b, 100, sbx__deadline(1000), &k.e), SBX_ERR_INVALID_ARG);
        sbx__buf_free(&b);
        sbx__http_resp_free(&old);
    }
    /* discard: small bodies are drained (connection kept), big ones close it */
    q.target = "/big?n=1000&t=ds";
    CHECK_EQ_INT(sbx__http_do(&k.c, &q, &k.r, NULL, 0, sbx__deadline(3000), &k.e), SBX_OK);
    sbx__http_resp_free(&k.r);
    CHECK(k.c.fd >= 0);
    q.target = "/big?n=10000000&t=ds";
    CHECK_EQ_INT(sbx__http_do(&k.c, &q, &k.r, NULL, 0, sbx__deadline(3000), &k.e), SBX_OK);
    sbx__http_resp_free(&k.r);
    CHECK_EQ_INT(k.c.fd, -1);
    CHECK_EQ_INT(get_stats("ds").conns, 1);
    cli_close(&k);
    CHECK_EQ_INT(test_fd_count(), fds);
}

TEST(redirect_not_followed)
{
    cli k;
    size_t len;
    CHECK_EQ_INT(cli_open(&k, URL), 0);
    CHECK_EQ_INT(cli_get(&k, "/redirect?t=rd"), SBX_OK);
    CHECK_EQ_INT(k.r.status, 302);
    CHECK_STR(sbx__http_header(&k.r, "location", &len), "/ok");
    CHECK_STR(k.body.data, "move");
    CHECK_EQ_INT(get_stats("rd").reqs, 1);
    cli_close(&k);
}

TEST(status_is_not_a_failure)
{
    cli k;
    char msg[256];
    CHECK_EQ_INT(cli_open(&k, URL), 0);
    CHECK_EQ_INT(cli_get(&k, "/status404"), SBX_OK);
    CHECK_EQ_INT(k.r.status, 404);
    CHECK_STR(k.r.reason, "Not Found");
    sbx__http_error_text(k.r.status, k.body.data, k.body.len, msg, sizeof msg);
    CHECK_STR(msg, "HTTP 404: pods \"x\" not found");
    CHECK_EQ_INT(cli_get(&k, "/lf"), SBX_OK); /* bare LF line ends are accepted */
    CHECK_STR(k.body.data, "ok");
    CHECK_EQ_INT(cli_get(&k, "/same_cl"), SBX_OK); /* duplicate equal lengths are fine */
    CHECK_STR(k.body.data, "hello");
    cli_close(&k);
}

/* ------------------------------------------------------------ other transports */

TEST(unix_socket_endpoint)
{
    srv u;
    cli k;
    char path[108], url[128], v[64];
    int fds = test_fd_count();
    snprintf(path, sizeof path, "/tmp/sbx-http-test-%d.sock", (int)getpid());
    unlink(path);
    if (srv_start(&u, "--unix", path) != 0) {
        srv_stop(&u);
        CHECK(0);
        return;
    }
    snprintf(url, sizeof url, "unix:%s", path);
    CHECK_EQ_INT(cli_open(&k, url), 0);
    CHECK_EQ_INT(cli_req(&k, "POST", "/echo", NULL, "over unix", 0, 5000), SBX_OK);
    CHECK_STR(field(k.body.data, "host", v, sizeof v), "localhost");
    CHECK_STR(field(k.body.data, "body", v, sizeof v), "over unix");
    CHECK_EQ_INT(cli_get(&k, "/ok"), SBX_OK);
    CHECK_EQ_INT(k.c.served, 2);
    cli_close(&k);
    srv_stop(&u);
    unlink(path);
    /* nobody listening on the path */
    CHECK_EQ_INT(cli_open(&k, url), 0);
    CHECK_EQ_INT(cli_get(&k, "/ok"), SBX_ERR_CONNECT);
    CHECK_HAS(k.e.msg, "connect unix:/tmp/sbx-http-test-");
    CHECK_HAS(k.e.msg, "No such file or directory");
    cli_close(&k);
    CHECK_EQ_INT(test_fd_count(), fds);
}

TEST(ipv6_literal)
{
    srv u;
    cli k;
    char url[64], want[64], v[64];
    struct sockaddr_in6 a;
    int fd = socket(AF_INET6, SOCK_STREAM, 0), ok;
    memset(&a, 0, sizeof a);
    a.sin6_family = AF_INET6;
    a.sin6_addr = in6addr_loopback;
    ok = fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof a) == 0;
    if (fd >= 0) close(fd);
    if (!ok) SKIP("no IPv6 loopback here (socket/bind on [::1] failed: %s)", strerror(errno));
    if (srv_start(&u, "--host", "::1") != 0) {
        srv_stop(&u);
        SKIP("the test server could not listen on [::1]");
    }
    snprintf(url, sizeof url, "http://[::1]:%d", u.port);
    snprintf(want, sizeof want, "[::1]:%d", u.port);
    CHECK_EQ_INT(cli_open(&k, url), 0);
    CHECK_EQ_INT(cli_get(&k, "/echo"), SBX_OK);
    CHECK_STR(field(k.body.data, "host", v, sizeof v), want);
    cli_close(&k);
    srv_stop(&u);
}

/* ------------------------------------------------------------ request bodies */

typedef struct feeder {
    int fd;
    unsigned long long n;
} feeder;

static void *feed_pattern(void *arg)
{
    feeder *f = (feeder *)arg;
    char buf[8192];
    unsigned long long off = 0;
    while (off < f->n) {
        size_t k = f->n - off < sizeof buf ? (size_t)(f->n - off) : sizeof buf;
        ssize_t w;
        fill_pattern(buf, k, off);
        w = write(f->fd, buf, k);
        if (w <= 0) break;
        off += (unsigned long long)w;
    }
    close(f->fd);
    return NULL;
}

static int pattern_file(size_t n)
{
    char path[] = "/tmp/sbx-http-body-XXXXXX";
    char *buf = (char *)malloc(n ? n : 1);
    int fd = mkstemp(path);
    if (fd < 0 || !buf) {
        free(buf);
        return -1;
    }
    unlink(path);
    fill_pattern(buf, n, 0);
    if (write(fd, buf, n) != (ssize_t)n || lseek(fd, 0, SEEK_SET) != 0) {
        close(fd);
        fd = -1;
    }
    free(buf);
    return fd;
}

static int fd_req(cli *k, const char *target, int fd, long long len, const char *mp_name, const char *mp_file)
{
    sbx__http_req q;
    sbx__http_req_init(&q);
    q.method = "POST";
    q.target = target;
    q.body_fd = fd;
    q.body_fd_len = len;
    q.multipart_name = mp_name;
    q.multipart_filename = mp_file;
    k->body.len = 0;
    sbx__http_resp_free(&k->r);
    return sbx__http_do(&k->c, &q, &k->r, &k->body, 1u << 20, sbx__deadline(20000), &k->e);
}

TEST(fd_bodies)
{
    cli k;
    char v[128];
    int fds = test_fd_count(), fd, p[2];
    pthread_t th;
    feeder f;
    CHECK_EQ_INT(cli_open(&k, URL), 0);
    /* known length from a file */
    fd = pattern_file(300000);
    CHECK(fd >= 0);
    CHECK_EQ_INT(fd_req(&k, "/pattern_upload", fd, 300000, NULL, NULL), SBX_OK);
    CHECK_STR(field(k.body.data, "len", v, sizeof v), "300000");
    CHECK_STR(field(k.body.data, "bad", v, sizeof v), "0");
    CHECK_STR(field(k.body.data, "cl", v, sizeof v), "300000");
    CHECK_STR(field(k.body.data, "te", v, sizeof v), "");
    /* a length shorter than the file: only that much is sent */
    CHECK_EQ_INT(lseek(fd, 0, SEEK_SET), 0);
    CHECK_EQ_INT(fd_req(&k, "/pattern_upload", fd, 1000, NULL, NULL), SBX_OK);
    CHECK_STR(field(k.body.data, "len", v, sizeof v), "1000");
    /* a file shorter than the length: an error, the connection is dropped */
    CHECK_EQ_INT(lseek(fd, 299990, SEEK_SET), 299990);
    CHECK_EQ_INT(fd_req(&k, "/pattern_upload", fd, 100, NULL, NULL), SBX_ERR_SYS);
    CHECK_HAS(k.e.msg, "ended after 10 of 100 body bytes");
    CHECK_EQ_INT(k.c.fd, -1);
    close(fd);
    /* unknown length from a pipe: chunked */
    CHECK_EQ_INT(sbx__pipe_cloexec(p), 0);
    f.fd = p[1];
    f.n = 200000;
    CHECK_EQ_INT(pthread_create(&th, NULL, feed_pattern, &f), 0);
    CHECK_EQ_INT(fd_req(&k, "/pattern_upload", p[0], -1, NULL, NULL), SBX_OK);
    pthread_join(th, NULL);
    close(p[0]);
    CHECK_STR(field(k.body.data, "len", v, sizeof v), "200000");
    CHECK_STR(field(k.body.data, "bad", v, sizeof v), "0");
    CHECK_STR(field(k.body.data, "te", v, sizeof v), "chunked");
    CHECK_STR(field(k.body.data, "cl", v, sizeof v), "");
    /* an empty pipe */
    CHECK_EQ_INT(sbx__pipe_cloexec(p), 0);
    close(p[1]);
    CHECK_EQ_INT(fd_req(&k, "/pattern_upload", p[0], -1, NULL, NULL), SBX_OK);
    close(p[0]);
    CHECK_STR(field(k.body.data, "len", v, sizeof v), "0");
    /* a pipe whose writer stalls: the send deadline applies */
    {
        sbx__http_req q;
        long long t0;
        CHECK_EQ_INT(sbx__pipe_cloexec(p), 0);
        sbx__http_req_init(&q);
        q.method = "PUT";
        q.target = "/pattern_upload";
        q.body_fd = p[0];
        t0 = sbx__now_ms();
        CHECK_EQ_INT(sbx__http_send(&k.c, &q, &k.r, sbx__deadline(300), &k.e), SBX_ERR_TIMEOUT);
        CHECK(sbx__now_ms() - t0 < 1000);
        CHECK_HAS(k.e.msg, "timed out reading the body from descriptor");
        sbx__http_resp_free(&k.r);
        close(p[0]);
        close(p[1]);
    }
    cli_close(&k);
    CHECK_EQ_INT(test_fd_count(), fds);
}

TEST(multipart_bodies)
{
    cli k;
    sbx__http_req q;
    char v[256], *mem;
    int fds = test_fd_count(), fd, p[2];
    pthread_t th;
    feeder f;
    static const char *const bad_names[] = {"a\"b", "a\r\nb", "a\\b", "", "tab\there", "del\x7f", NULL};
    int i;
    CHECK_EQ_INT(cli_open(&k, URL), 0);
    /* from memory, small (sent with the head) */
    sbx__http_req_init(&q);
    q.method = "POST";
    q.target = "/multipart";
    q.body = "hello\r\n--world";
    q.body_len = 14;
    q.multipart_name = "file";
    q.multipart_filename = "dir/a b \xc3\xa9.txt";
    CHECK_EQ_INT(sbx__http_do(&k.c, &q, &k.r, &k.body, 1 << 20, sbx__deadline(5000), &k.e), SBX_OK);
    CHECK_STR(field(k.body.data, "parts", v, sizeof v), "1");
    CHECK_STR(field(k.body.data, "name", v, sizeof v), "file");
    CHECK_STR(field(k.body.data, "filename", v, sizeof v), "dir/a b \xc3\xa9.txt");
    CHECK_STR(field(k.body.data, "ctype", v, sizeof v), "application/octet-stream");
    CHECK_STR(field(k.body.data, "len", v, sizeof v), "14");
    CHECK_STR(field(k.body.data, "text", v, sizeof v), "hello\\r\\n--world");
    CHECK_STR(field(k.body.data, "closed", v, sizeof v), "1");
    CHECK_STR(field(k.body.data, "te", v, sizeof v), "");
    CHECK(atoi(field(k.body.data, "cl", v, sizeof v)) > 14);
    /* from memory, large (streamed after the head) */
    mem = (char *)malloc(100000);
    fill_pattern(mem, 100000, 0);
    k.body.len = 0;
    sbx__http_resp_free(&k.r);
    q.body = mem;
    q.body_len = 100000;
    q.multipart_filename = "big.bin";
    CHECK_EQ_INT(sbx__http_do(&k.c, &q, &k.r, &k.body, 1 << 20, sbx__deadline(5000), &k.e), SBX_OK);
    CHECK_STR(field(k.body.data, "len", v, sizeof v), "100000");
    CHECK_STR(field(k.body.data, "pattern", v, sizeof v), "1");
    CHECK_STR(field(k.body.data, "filename", v, sizeof v), "big.bin");
    free(mem);
    /* empty file */
    k.body.len = 0;
    sbx__http_resp_free(&k.r);
    q.body = NULL;
    q.body_len = 0;
    CHECK_EQ_INT(sbx__http_do(&k.c, &q, &k.r, &k.body, 1 << 20, sbx__deadline(5000), &k.e), SBX_OK);
    CHECK_STR(field(k.body.data, "len", v, sizeof v), "0");
    CHECK_STR(field(k.body.data, "closed", v, sizeof v), "1");
    /* from a file with a known length: Content-Length covers it all */
    fd = pattern_file(150000);
    CHECK_EQ_INT(fd_req(&k, "/multipart", fd, 150000, "file", "from-fd.bin"), SBX_OK);
    close(fd);
    CHECK_STR(field(k.body.data, "len", v, sizeof v), "150000");
    CHECK_STR(field(k.body.data, "pattern", v, sizeof v), "1");
    CHECK_STR(field(k.body.data, "closed", v, sizeof v), "1");
    CHECK_STR(field(k.body.data, "te", v, sizeof v), "");
    /* from a pipe: chunked */
    CHECK_EQ_INT(sbx__pipe_cloexec(p), 0);
    f.fd = p[1];
    f.n = 123457;
    CHECK_EQ_INT(pthread_create(&th, NULL, feed_pattern, &f), 0);
    CHECK_EQ_INT(fd_req(&k, "/multipart", p[0], -1, "upload", "pipe.bin"), SBX_OK);
    pthread_join(th, NULL);
    close(p[0]);
    CHECK_STR(field(k.body.data, "te", v, sizeof v), "chunked");
    CHECK_STR(field(k.body.data, "name", v, sizeof v), "upload");
    CHECK_STR(field(k.body.data, "len", v, sizeof v), "123457");
    CHECK_STR(field(k.body.data, "pattern", v, sizeof v), "1");
    CHECK_STR(field(k.body.data, "closed", v, sizeof v), "1");
    /* names that cannot be sent safely are refused */
    for (i = 0; bad_names[i]; i++) {
        sbx__http_req_init(&q);
        q.method = "POST";
        q.target = "/multipart";
        q.multipart_name = "file";
        q.multipart_filename = bad_names[i];
        sbx__http_resp_free(&k.r);
        CHECK_MSG(sbx__http_send(&k.c, &q, &k.r, sbx__deadline(1000), &k.e) == SBX_ERR_INVALID_ARG, "name %d", i);
        q.multipart_name = bad_names[i];
        q.multipart_filename = "ok";
        CHECK_MSG(sbx__http_send(&k.c, &q, &k.r, sbx__deadline(1000), &k.e) == SBX_ERR_INVALID_ARG, "field %d", i);
    }
    CHECK_HAS(k.e.msg, "refused");
    /* Content-Type is the client's with multipart */
    sbx__http_req_init(&q);
    q.method = "POST";
    q.target = "/multipart";
    q.headers = "Content-Type: text/plain\r\n";
    q.multipart_name = "file";
    q.multipart_filename = "x";
    CHECK_EQ_INT(sbx__http_send(&k.c, &q, &k.r, sbx__deadline(1000), &k.e), SBX_ERR_INVALID_ARG);
    sbx__http_resp_free(&k.r);
    cli_close(&k);
    CHECK_EQ_INT(test_fd_count(), fds);
}

/* ------------------------------------------------------------ big bodies, memory */

typedef struct checker {
    int fd;
    unsigned long long got;
    unsigned long long bad;
} checker;

static void *check_pattern(void *arg)
{
    checker *c = (checker *)arg;
    static char buf[65536];
    for (;;) {
        ssize_t r = read(c->fd, buf, sizeof buf), i;
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break;
        for (i = 0; i < r; i++)
            if ((unsigned char)buf[i] != pattern_byte(c->got + (unsigned long long)i)) c->bad++;
        c->got += (unsigned long long)r;
    }
    return NULL;
}

static long vm_hwm_kb(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long kb = -1;
    if (!f) return -1;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "VmHWM: %ld kB", &kb) == 1) break;
    fclose(f);
    return kb;
}

static int reset_hwm(void)
{
    FILE *f = fopen("/proc/self/clear_refs", "w");
    int ok;
    if (!f) return -1;
    ok = fputs("5", f) >= 0;
    return fclose(f) == 0 && ok ? 0 : -1;
}

static void stream_to_fd(const char *target, unsigned long long n, const char *label)
{
    cli k;
    sbx__http_req q;
    int p[2], fds = test_fd_count();
    pthread_t th;
    checker ch;
    long before, after;
    long long t0;
    struct rusage ru;
    CHECK_EQ_INT(cli_open(&k, URL), 0);
    CHECK_EQ_INT(sbx__pipe_cloexec(p), 0);
    ch.fd = p[0];
    ch.got = ch.bad = 0;
    CHECK_EQ_INT(pthread_create(&th, NULL, check_pattern, &ch), 0);
    if (reset_hwm() != 0) printf("  (VmHWM could not be reset; the figure includes earlier peaks)\n");
    before = vm_hwm_kb();
    t0 = sbx__now_ms();
    sbx__http_req_init(&q);
    q.target = target;
    CHECK_EQ_INT(sbx__http_send(&k.c, &q, &k.r, sbx__deadline(10000), &k.e), SBX_OK);
    CHECK_EQ_INT(sbx__http_body_fd(&k.c, &k.r, p[1], sbx__deadline(60000), &k.e), SBX_OK);
    CHECK_MSG(k.e.msg[0] == '\0', "%s", k.e.msg);
    close(p[1]);
    pthread_join(th, NULL);
    close(p[0]);
    after = vm_hwm_kb();
    getrusage(RUSAGE_SELF, &ru);
    CHECK(ch.got == n);
    CHECK(ch.bad == 0);
    CHECK(k.r.body_done);
    CHECK(k.c.fd >= 0); /* kept alive after the whole body */
    printf("  %s: %llu bytes in %lld ms; VmHWM %ld kB -> %ld kB (+%ld kB); ru_maxrss %ld kB\n", label, ch.got,
           sbx__now_ms() - t0, before, after, after - before, (long)ru.ru_maxrss);
    CHECK_MSG(after - before < 8 * 1024, "peak RSS grew by %ld kB", after - before);
    cli_close(&k);
    CHECK_EQ_INT(test_fd_count(), fds);
}

TEST(stream_100mb_to_fd_flat_memory)
{
    stream_to_fd("/big?n=104857600", 104857600ull, "100 MiB Content-Length body to a pipe");
    stream_to_fd("/big?n=33554432&chunked=1", 33554432ull, "32 MiB chunked body to a pipe");
}

TEST(stream_upload_flat_memory)
{
    cli k;
    char v[64];
    int p[2], fds = test_fd_count();
    pthread_t th;
    feeder f;
    long before, after;
    CHECK_EQ_INT(cli_open(&k, URL), 0);
    CHECK_EQ_INT(sbx__pipe_cloexec(p), 0);
    f.fd = p[1];
    f.n = 50ull * 1024 * 1024;
    reset_hwm();
    before = vm_hwm_kb();
    CHECK_EQ_INT(pthread_create(&th, NULL, feed_pattern, &f), 0);
    CHECK_EQ_INT(fd_req(&k, "/pattern_upload", p[0], -1, NULL, NULL), SBX_OK);
    pthread_join(th, NULL);
    close(p[0]);
    after = vm_hwm_kb();
    CHECK_STR(field(k.body.data, "len", v, sizeof v), "52428800");
    CHECK_STR(field(k.body.data, "bad", v, sizeof v), "0");
    printf("  50 MiB chunked upload from a pipe: VmHWM %ld kB -> %ld kB (+%ld kB)\n", before, after, after - before);
    CHECK_MSG(after - before < 8 * 1024, "peak RSS grew by %ld kB", after - before);
    cli_close(&k);
    CHECK_EQ_INT(test_fd_count(), fds);
}

TEST(body_mem_cap)
{
    cli k;
    sbx__http_req q;
    int fds = test_fd_count();
    CHECK_EQ_INT(cli_open(&k, URL), 0);
    sbx__http_req_init(&q);
    q.target = "/big?n=100000";
    CHECK_EQ_INT(sbx__http_do(&k.c, &q, &k.r, &k.body, 1000, sbx__deadline(5000), &k.e), SBX_ERR_TOO_BIG);
    CHECK_HAS(k.e.msg, "1000-byte cap");
    CHECK_HAS(k.e.msg, "100000 bytes");
    CHECK_EQ_INT(k.body.len, 0); /* refused before reading */
    CHECK_EQ_INT(k.c.fd, -1);
    sbx__http_resp_free(&k.r);
    k.body.len = 0;
    q.target = "/big?n=100000&chunked=1";
    CHECK_EQ_INT(sbx__http_do(&k.c, &q, &k.r, &k.body, 1000, sbx__deadline(5000), &k.e), SBX_ERR_TOO_BIG);
    CHECK_HAS(k.e.msg, "1000-byte cap");
    CHECK(k.body.len <= 1000);
    sbx__http_resp_free(&k.r);
    k.body.len = 0;
    q.target = "/big?n=1000&chunked=1"; /* exactly the cap is fine */
    CHECK_EQ_INT(sbx__http_do(&k.c, &q, &k.r, &k.body, 1000, sbx__deadline(5000), &k.e), SBX_OK);
    CHECK_EQ_INT(k.body.len, 1000);
    cli_close(&k);
    CHECK_EQ_INT(test_fd_count(), fds);
}

/* ------------------------------------------------------------ watch lines */

TEST(watch_line_reader)
{
    cli k;
    sbx__http_req q;
    sbx__buf line;
    int fds = test_fd_count(), pass, r;
    CHECK_EQ_INT(cli_open(&k, URL), 0);
    sbx__buf_init(&line, &k.c.a);
    for (pass = 0; pass < 2; pass++) {
        int n = 0;
        sbx__http_req_init(&q);
        q.target = pass ? "/ndjson?mode=bytewise&t=wl" : "/ndjson?t=wl";
        CHECK_EQ_INT(sbx__http_send(&k.c, &q, &k.r, sbx__deadline(5000), &k.e), SBX_OK);
        while ((r = sbx__http_body_line(&k.c, &k.r, &line, 4096, sbx__deadline(5000), &k.e)) == 1) {
            char want[64];
            snprintf(want, sizeof want, "{\"type\":\"ADDED\",\"object\":{\"n\":%d,\"pad\":\"", n);
            CHECK_MSG(strncmp(line.data, want, strlen(want)) == 0, "line %d: %s", n, line.data);
            CHECK_EQ_INT(line.len, strlen(want) + (size_t)(n * 37 % 300) + 3);
            CHECK(line.data[line.len - 1] == '}');
            n++;
        }
        CHECK_EQ_INT(r, 0);
        CHECK_EQ_INT(n, 12);
        CHECK(k.r.body_done);
        sbx__http_resp_free(&k.r);
        CHECK_EQ_INT(sbx__http_body_line(&k.c, &k.r, &line, 4096, sbx__deadline(100), &k.e), 0);
    }
    CHECK_EQ_INT(get_stats("wl").conns, 1);
    /* unterminated last line, CRLF and empty lines */
    sbx__http_req_init(&q);
    q.target = "/unterminated";
    CHECK_EQ_INT(sbx__http_send(&k.c, &q, &k.r, sbx__deadline(5000), &k.e), SBX_OK);
    CHECK_EQ_INT(sbx__http_body_line(&k.c, &k.r, &line, 100, sbx__deadline(5000), &k.e), 1);
    CHECK_STR(line.data, "a");
    CHECK_EQ_INT(sbx__http_body_line(&k.c, &k.r, &line, 100, sbx__deadline(5000), &k.e), 1);
    CHECK_STR(line.data, "b");
    CHECK_EQ_INT(sbx__http_body_line(&k.c, &k.r, &line, 100, sbx__deadline(5000), &k.e), 1);
    CHECK_STR(line.data, "");
    CHECK_EQ_INT(sbx__http_body_line(&k.c, &k.r, &line, 100, sbx__deadline(5000), &k.e), 1);
    CHECK_STR(line.data, "last-no-newline");
    CHECK_EQ_INT(sbx__http_body_line(&k.c, &k.r, &line, 100, sbx__deadline(5000), &k.e), 0);
    sbx__http_resp_free(&k.r);
    /* a line over the cap */
    sbx__http_req_init(&q);
    q.target = "/longline?n=1000";
    CHECK_EQ_INT(sbx__http_send(&k.c, &q, &k.r, sbx__deadline(5000), &k.e), SBX_OK);
    CHECK_EQ_INT(sbx__http_body_line(&k.c, &k.r, &line, 100, sbx__deadline(5000), &k.e), 1);
    CHECK_STR(line.data, "short");
    CHECK_EQ_INT(sbx__http_body_line(&k.c, &k.r, &line, 100, sbx__deadline(5000), &k.e), SBX_ERR_TOO_BIG);
    CHECK_HAS(k.e.msg, "100-byte cap");
    CHECK(line.len <= 100);
    CHECK_EQ_INT(k.c.fd, -1);
    sbx__http_resp_free(&k.r);
    sbx__buf_free(&line);
    cli_close(&k);
    CHECK_EQ_INT(test_fd_count(), fds);
}

/* ------------------------------------------------------------ hostile servers */

typedef struct hostile {
    const char *target;
    sbx_result code;
    const char *msg;
} hostile;

TEST(hostile_servers)
{
    static const hostile cases[] = {
        {"/truncated_cl", SBX_ERR_CONNECT, "connection closed after 10 of 100 bytes"},
        {"/truncated_chunk", SBX_ERR_CONNECT, "closed inside the chunked body after 3 bytes"},
        {"/bighead", SBX_ERR_TOO_BIG, "SBX_MAX_HEADER_BYTES"},
        {"/manyheaders", SBX_ERR_TOO_BIG, "SBX_MAX_HEADERS"},
        {"/badchunk?v=-1", SBX_ERR_PROTOCOL, "bad chunk size"},
        {"/badchunk?v=zz", SBX_ERR_PROTOCOL, "bad chunk size"},
        {"/badchunk?v=", SBX_ERR_PROTOCOL, "bad chunk size"},
        {"/badchunk?v=ffffffffffffffffff", SBX_ERR_PROTOCOL, "chunk size overflows"},
        {"/badchunk?v=0x10", SBX_ERR_PROTOCOL, "bad chunk size"},
        {"/conflict_cl", SBX_ERR_PROTOCOL, "conflicting Content-Length"},
        {"/garbage", SBX_ERR_PROTOCOL, "bad status line"},
        {"/garbage2", SBX_ERR_PROTOCOL, "bad status code"},
        {"/earlyclose", SBX_ERR_CONNECT, "connection closed before any response byte"},
        {"/tegzip", SBX_ERR_PROTOCOL, "unsupported Transfer-Encoding"},
        {"/obsfold", SBX_ERR_PROTOCOL, "obs-fold"},
        {"/te_and_cl", SBX_ERR_PROTOCOL, "both Transfer-Encoding and Content-Length"},
    };
    size_t i;
    int fds = test_fd_count();
    char name[64];
    snprintf(name, sizeof name, "127.0.0.1:%d", S.port);
    for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        cli k;
        long long t0 = sbx__now_ms();
        int rc;
        CHECK_EQ_INT(cli_open(&k, URL), 0);
        rc = cli_req(&k, "GET", cases[i].target, NULL, NULL, 1, 5000);
        CHECK_MSG(rc == (int)cases[i].code, "%s: %d (%s)", cases[i].target, rc, k.e.msg);
        CHECK_MSG(contains(k.e.msg, cases[i].msg), "%s: \"%s\" lacks \"%s\"", cases[i].target, k.e.msg, cases[i].msg);
        CHECK_MSG(contains(k.e.msg, name), "%s: \"%s\" does not name the endpoint", cases[i].target, k.e.msg);
        CHECK_MSG(sbx__now_ms() - t0 < 1500, "%s took %lld ms", cases[i].target, sbx__now_ms() - t0);
        CHECK_EQ_INT(k.c.fd, -1);
        cli_close(&k);
    }
    CHECK_EQ_INT(test_fd_count(), fds);
}

TEST(trickled_response)
{
    cli k;
    size_t len;
    CHECK_EQ_INT(cli_open(&k, URL), 0);
    CHECK_EQ_INT(cli_get(&k, "/trickle"), SBX_OK);
    CHECK_EQ_INT(k.r.status, 200);
    CHECK_STR(sbx__http_header(&k.r, "x-a", &len), "1");
    CHECK_STR(k.body.data, "trickled body");
    CHECK(k.c.fd >= 0);
    cli_close(&k);
}

TEST(deadlines)
{
    cli k;
    long long t0, dt;
    int fds = test_fd_count();
    CHECK_EQ_INT(cli_open(&k, URL), 0);
    /* a body that trickles past the deadline */
    t0 = sbx__now_ms();
    CHECK_EQ_INT(cli_req(&k, "GET", "/slowbody", NULL, NULL, 1, 500), SBX_ERR_TIMEOUT);
    dt = sbx__now_ms() - t0;
    CHECK_HAS(k.e.msg, "read response body from");
    CHECK_HAS(k.e.msg, "timed out after");
    CHECK_MSG(dt >= 450 && dt < 800, "took %lld ms for a 500 ms deadline", dt);
    printf("  slow body: gave up after %lld ms (deadline 500 ms)\n", dt);
    /* accepted, never answered */
    t0 = sbx__now_ms();
    CHECK_EQ_INT(cli_req(&k, "GET", "/hang", NULL, NULL, 1, 300), SBX_ERR_TIMEOUT);
    dt = sbx__now_ms() - t0;
    CHECK_HAS(k.e.msg, "wait for the response head from");
    CHECK_MSG(dt >= 250 && dt < 600, "took %lld ms for a 300 ms deadline", dt);
    printf("  silent server: gave up after %lld ms (deadline 300 ms)\n", dt);
    /* a server that never reads the request body: the send deadline */
    {
        sbx__http_req q;
        int zero = open("/dev/zero", O_RDONLY);
        sbx__http_req_init(&q);
        q.method = "PUT";
        q.target = "/stallread";
        q.body_fd = zero;
        q.body_fd_len = 1LL << 32;
        t0 = sbx__now_ms();
        sbx__http_resp_free(&k.r);
        CHECK_EQ_INT(sbx__http_send(&k.c, &q, &k.r, sbx__deadline(500), &k.e), SBX_ERR_TIMEOUT);
        dt = sbx__now_ms() - t0;
        CHECK_HAS(k.e.msg, "send request body to");
        CHECK_MSG(dt >= 450 && dt < 800, "took %lld ms for a 500 ms deadline", dt);
        printf("  server not reading: gave up after %lld ms (deadline 500 ms)\n", dt);
        close(zero);
    }
    cli_close(&k);
    CHECK_EQ_INT(test_fd_count(), fds);
}

/* The deadline holds even while data keeps arriving: a body already waiting
   in the kernel is not read once the deadline has passed. */
TEST(expired_deadline_with_data_ready)
{
    cli k;
    sbx__http_req q;
    int fds = test_fd_count(), rc;
    struct timespec ts;
    CHECK_EQ_INT(cli_open(&k, URL), 0);
    sbx__http_req_init(&q);
    q.target = "/big?n=300000";
    CHECK_EQ_INT(sbx__http_send(&k.c, &q, &k.r, sbx__deadline(3000), &k.e), SBX_OK);
    ts.tv_sec = 0;
    ts.tv_nsec = 200 * 1000000L; /* let the server finish writing into the socket buffers */
    nanosleep(&ts, NULL);
    rc = sbx__http_body_mem(&k.c, &k.r, &k.body, 1u << 20, sbx__now_ms() - 1, &k.e);
    CHECK_EQ_INT(rc, SBX_ERR_TIMEOUT);
    CHECK_HAS(k.e.msg, "timed out after");
    CHECK(k.body.len < 300000);
    CHECK_EQ_INT(k.c.fd, -1);
    cli_close(&k);
    CHECK_EQ_INT(test_fd_count(), fds);
}

TEST(connection_refused)
{
    cli k;
    char url[64], want[96];
    struct sockaddr_in a;
    socklen_t al = sizeof a;
    int fd = socket(AF_INET, SOCK_STREAM, 0), fds;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    CHECK_EQ_INT(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    CHECK_EQ_INT(getsockname(fd, (struct sockaddr *)&a, &al), 0);
    close(fd); /* nobody listens on that port now */
    fds = test_fd_count();
    snprintf(url, sizeof url, "http://127.0.0.1:%d", ntohs(a.sin_port));
    snprintf(want, sizeof want, "connect 127.0.0.1:%d: Connection refused", ntohs(a.sin_port));
    CHECK_EQ_INT(cli_open(&k, url), 0);
    CHECK_EQ_INT(cli_get(&k, "/ok"), SBX_ERR_CONNECT);
    CHECK_STR(k.e.msg, want);
    CHECK_EQ_INT(k.e.sys_errno, ECONNREFUSED);
    cli_close(&k);
    CHECK_EQ_INT(test_fd_count(), fds);
}

TEST(connect_timeout)
{
    /* a listener with a full backlog that never accepts: SYNs go unanswered */
    struct sockaddr_in a;
    socklen_t al = sizeof a;
    int lfd = socket(AF_INET, SOCK_STREAM, 0), fill[8], nfill = 0, i, rc, fds;
    cli k;
    char url[64];
    long long t0, dt;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (lfd < 0 || bind(lfd, (struct sockaddr *)&a, sizeof a) != 0 || listen(lfd, 0) != 0 ||
        getsockname(lfd, (struct sockaddr *)&a, &al) != 0) {
        if (lfd >= 0) close(lfd);
        SKIP("cannot set up a listener");
    }
    for (i = 0; i < 8; i++) {
        fill[i] = socket(AF_INET, SOCK_STREAM, 0);
        sbx__set_nonblock(fill[i], 1);
        connect(fill[i], (struct sockaddr *)&a, sizeof a);
        nfill++;
    }
    fds = test_fd_count();
    snprintf(url, sizeof url, "http://127.0.0.1:%d", ntohs(a.sin_port));
    cli_open(&k, url);
    t0 = sbx__now_ms();
    rc = cli_req(&k, "GET", "/ok", NULL, NULL, 1, 300);
    dt = sbx__now_ms() - t0;
    for (i = 0; i < nfill; i++) close(fill[i]);
    close(lfd);
    if (rc != SBX_ERR_TIMEOUT) {
        cli_close(&k);
        SKIP("the kernel completed or refused the connection anyway (%s)", k.e.msg);
    }
    CHECK_HAS(k.e.msg, "connect 127.0.0.1:");
    CHECK_HAS(k.e.msg, "timed out");
    CHECK_MSG(dt >= 250 && dt < 600, "took %lld ms", dt);
    printf("  connect: gave up after %lld ms (deadline 300 ms)\n", dt);
    cli_close(&k);
    CHECK_EQ_INT(test_fd_count(), fds - nfill - 1);
}

TEST(body_fd_broken_pipe_no_sigpipe)
{
    /* the reader of the output pipe is gone: EPIPE, not SIGPIPE */
    cli k;
    sbx__http_req q;
    int p[2], fds = test_fd_count();
    CHECK_EQ_INT(cli_open(&k, URL), 0);
    CHECK_EQ_INT(sbx__pipe_cloexec(p), 0);
    close(p[0]);
    sbx__http_req_init(&q);
    q.target = "/big?n=100000";
    CHECK_EQ_INT(sbx__http_send(&k.c, &q, &k.r, sbx__deadline(3000), &k.e), SBX_OK);
    CHECK_EQ_INT(sbx__http_body_fd(&k.c, &k.r, p[1], sbx__deadline(3000), &k.e), SBX_ERR_SYS);
    CHECK_EQ_INT(k.e.sys_errno, EPIPE);
    CHECK_HAS(k.e.msg, "write response body to descriptor");
    close(p[1]);
    {
        sigset_t pend;
        sigpending(&pend);
        CHECK(!sigismember(&pend, SIGPIPE));
    }
    cli_close(&k);
    CHECK_EQ_INT(test_fd_count(), fds);
}

TEST(sockets_close_on_exec)
{
    cli k;
    CHECK_EQ_INT(cli_open(&k, URL), 0);
    CHECK_EQ_INT(cli_get(&k, "/ok"), SBX_OK);
    CHECK(k.c.fd >= 0);
    CHECK(fcntl(k.c.fd, F_GETFD) & FD_CLOEXEC);
    {
        int one = 0;
        socklen_t l = sizeof one;
        CHECK_EQ_INT(getsockopt(k.c.fd, IPPROTO_TCP, TCP_NODELAY, &one, &l), 0);
        CHECK(one != 0);
    }
    cli_close(&k);
}

int main(void)
{
    int rc;
    signal(SIGPIPE, SIG_DFL); /* a SIGPIPE would kill the suite: the library must never raise one */
    RUN(endpoint_parse);
    RUN(parse_head_valid);
    RUN(parse_head_every_prefix_incomplete);
    RUN(parse_head_guard_page);
    RUN(parse_head_invalid);
    RUN(parse_head_limits);
    RUN(content_length_strict);
    RUN(chunked_valid_any_split);
    RUN(chunked_invalid);
    RUN(chunked_guard_page);
    RUN(line_splitter);
    RUN(watch_lines_every_split);
    RUN(error_text);
    if (srv_start(&S, NULL, NULL) != 0) {
        printf("  FAIL: tests/fakes/servers/http_fake.py did not start\n");
        srv_stop(&S);
        test_failed++;
        return test_summary("test_http");
    }
    snprintf(URL, sizeof URL, "http://127.0.0.1:%d", S.port);
    RUN(stream_100mb_to_fd_flat_memory);
    RUN(stream_upload_flat_memory);
    RUN(get_content_length);
    RUN(post_echo_headers);
    RUN(endpoint_prefix);
    RUN(request_validation);
    RUN(chunked_response);
    RUN(read_until_close);
    RUN(no_body_head_204_304);
    RUN(interim_1xx_skipped);
    RUN(keep_alive_reuse);
    RUN(connection_close_rules);
    RUN(idle_close_seen_before_sending);
    RUN(dropped_reused_connection_retry_rules);
    RUN(unread_body_closes_connection);
    RUN(redirect_not_followed);
    RUN(status_is_not_a_failure);
    RUN(unix_socket_endpoint);
    RUN(ipv6_literal);
    RUN(fd_bodies);
    RUN(multipart_bodies);
    RUN(body_mem_cap);
    RUN(watch_line_reader);
    RUN(hostile_servers);
    RUN(trickled_response);
    RUN(deadlines);
    RUN(expired_deadline_with_data_ready);
    RUN(connection_refused);
    RUN(connect_timeout);
    RUN(body_fd_broken_pipe_no_sigpipe);
    RUN(sockets_close_on_exec);
    srv_stop(&S);
    rc = test_summary("test_http");
    return rc;
}
