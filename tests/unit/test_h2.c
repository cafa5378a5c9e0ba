/* test_h2: the gRPC transport (>>hpack, >>h2, >>grpc), white-box.
   - HPACK: the RFC 7541 Appendix C examples C.2-C.6 (with and without
     Huffman, table sizes and evictions), the derived Huffman tables
     recomputed from Appendix B, Huffman round trips against python3-hpack as
     the oracle, integers, malformed blocks, size updates, list limits.
   - protobuf writer and reader.
   - HTTP/2 against a hostile server written with python3-h2
     (tests/fakes/servers/h2_fake.py, one scenario per connection).
   - gRPC against a REAL grpcio server (tests/fakes/servers/grpc_echo.py):
     unary, server streaming with flat memory, 16 concurrent calls from
     threads on one connection, deadlines, every status code, and the same
     over an sbx__conn transport hook.
   - keepalive PING (handles set small intervals): a dead peer fails reads
     naming the PING, a quiet live stream is pinged and lives, no PING
     without a stream, stray acks ignored, and grpcio's real ping policy
     (permissive; default: GOAWAY too_many_pings).
   Python parts run on /usr/bin/python3 (Debian's grpcio, h2, hpack); a test
   whose module is missing SKIPs, naming it. No descriptor leaks. */
#define SBX_GRPC_MAX_MESSAGE (1024u * 1024u) /* small, so the bound is testable */
#define SANDBOX_IMPLEMENTATION
#include "sandbox.h"
#include "test.h"

/* ---- helpers ------------------------------------------------------------- */

static int py_has(const char *module)
{
    char cmd[256];
    E2E_FMT(cmd, sizeof cmd, "/usr/bin/python3 -c 'import %s' >/dev/null 2>&1", module);
    return system(cmd) == 0;
}

static size_t unhex(const char *h, unsigned char *out)
{
    size_t n = 0;
    while (h[0] && h[1]) {
        unsigned v;
        sscanf(h, "%2x", &v);
        out[n++] = (unsigned char)v;
        h += 2;
    }
    return n;
}

typedef struct hl {
    char text[8192];
    size_t len;
} hl;

static int collect(void *u, const char *n, size_t nl, const char *v, size_t vl)
{
    hl *x = (hl *)u;
    if (x->len + nl + vl + 2 >= sizeof x->text) return -1;
    memcpy(x->text + x->len, n, nl);
    x->len += nl;
    x->text[x->len++] = '\n';
    memcpy(x->text + x->len, v, vl);
    x->len += vl;
    x->text[x->len++] = '\n';
    x->text[x->len] = '\0';
    return 0;
}

static unsigned char scratch[SBX__H2_MAX_HEADER_LIST];

/* ---- HPACK ------------------------------------------------------------------ */

/* RFC 7541 Appendix C (the hex dumps, decoded lists and table sizes, taken
   from the RFC text): name, in sequence with the one before, table size
   limit, block, table size after, decoded list as name\nvalue\n... */
static const struct {
    const char *name;
    int seq;
    int limit;
    const char *hex;
    int size_after;
    const char *list;
} rfc_vectors[] = {
    {"C.2.1", 0, 4096, "400a637573746f6d2d6b65790d637573746f6d2d686561646572", 55,
     "custom-key\ncustom-header\n"},
    {"C.2.2", 0, 4096, "040c2f73616d706c652f70617468", 0,
     ":path\n/sample/path\n"},
    {"C.2.3", 0, 4096, "100870617373776f726406736563726574", 0,
     "password\nsecret\n"},
    {"C.2.4", 0, 4096, "82", 0,
     ":method\nGET\n"},
    {"C.3.1", 1, 4096, "828684410f7777772e6578616d706c652e636f6d", 57,
     ":method\nGET\n:scheme\nhttp\n:path\n/\n:authority\nwww.example.com\n"},
    {"C.3.2", 1, 4096, "828684be58086e6f2d6361636865", 110,
     ":method\nGET\n:scheme\nhttp\n:path\n/\n:authority\nwww.example.com\ncache-control\nno-cache\n"},
    {"C.3.3", 1, 4096, "828785bf400a637573746f6d2d6b65790c637573746f6d2d76616c7565", 164,
     ":method\nGET\n:scheme\nhttps\n:path\n/index.html\n:authority\nwww.example.com\ncustom-key\ncustom-value\n"},
    {"C.4.1", 1, 4096, "828684418cf1e3c2e5f23a6ba0ab90f4ff", 57,
     ":method\nGET\n:scheme\nhttp\n:path\n/\n:authority\nwww.example.com\n"},
    {"C.4.2", 1, 4096, "828684be5886a8eb10649cbf", 110,
     ":method\nGET\n:scheme\nhttp\n:path\n/\n:authority\nwww.example.com\ncache-control\nno-cache\n"},
    {"C.4.3", 1, 4096, "828785bf408825a849e95ba97d7f8925a849e95bb8e8b4bf", 164,
     ":method\nGET\n:scheme\nhttps\n:path\n/index.html\n:authority\nwww.example.com\ncustom-key\ncustom-value\n"},
    {"C.5.1", 1, 256,
     "4803333032580770726976617465611d4d6f6e2c203231204f637420323031332032303a31333a323120474d546e1768"
     "747470733a2f2f7777772e6578616d706c652e636f6d", 222,
     ":status\n302\ncache-control\nprivate\ndate\nMon, 21 Oct 2013 20:13:21 GMT\nlocation\nhttps://www.example.com\n"},
    {"C.5.2", 1, 256, "4803333037c1c0bf", 222,
     ":status\n307\ncache-control\nprivate\ndate\nMon, 21 Oct 2013 20:13:21 GMT\nlocation\nhttps://www.example.com\n"},
    {"C.5.3", 1, 256,
     "88c1611d4d6f6e2c203231204f637420323031332032303a31333a323220474d54c05a04677a69707738666f6f3d4153"
     "444a4b48514b425a584f5157454f50495541585157454f49553b206d61782d6167653d333630303b2076657273696f6e"
     "3d31", 215,
     ":status\n200\ncache-control\nprivate\ndate\nMon, 21 Oct 2013 20:13:22 GMT\nlocation\nhttps://www.example.com\ncontent-encoding\ngzip\nset-cookie\nfoo=ASDJKHQKBZXOQWEOPIUAXQWEOIU; max-age=3600; version=1\n"},
    {"C.6.1", 1, 256,
     "488264025885aec3771a4b6196d07abe941054d444a8200595040b8166e082a62d1bff6e919d29ad171863c78f0b97c8"
     "e9ae82ae43d3", 222,
     ":status\n302\ncache-control\nprivate\ndate\nMon, 21 Oct 2013 20:13:21 GMT\nlocation\nhttps://www.example.com\n"},
    {"C.6.2", 1, 256, "4883640effc1c0bf", 222,
     ":status\n307\ncache-control\nprivate\ndate\nMon, 21 Oct 2013 20:13:21 GMT\nlocation\nhttps://www.example.com\n"},
    {"C.6.3", 1, 256,
     "88c16196d07abe941054d444a8200595040b8166e084a62d1bffc05a839bd9ab77ad94e7821dd7f2e6c7b335dfdfcd5b"
     "3960d5af27087f3672c1ab270fb5291f9587316065c003ed4ee5b1063d5007", 215,
     ":status\n200\ncache-control\nprivate\ndate\nMon, 21 Oct 2013 20:13:22 GMT\nlocation\nhttps://www.example.com\ncontent-encoding\ngzip\nset-cookie\nfoo=ASDJKHQKBZXOQWEOPIUAXQWEOIU; max-age=3600; version=1\n"},
};

TEST(hpack_rfc7541_examples)
{
    static sbx__hpack t;
    size_t i;
    for (i = 0; i < sizeof rfc_vectors / sizeof rfc_vectors[0]; i++) {
        unsigned char block[512];
        size_t n = unhex(rfc_vectors[i].hex, block);
        hl out;
        int r;
        if (!rfc_vectors[i].seq || strcmp(rfc_vectors[i].name + 4, "1") == 0)
            sbx__hpack_init(&t, (size_t)rfc_vectors[i].limit);
        out.len = 0;
        out.text[0] = '\0';
        r = sbx__hpack_decode(&t, block, n, scratch, sizeof scratch, 65536, collect, &out);
        CHECK_MSG(r == 0, "%s: decode %d (%s)", rfc_vectors[i].name, r, t.why);
        CHECK_MSG(strcmp(out.text, rfc_vectors[i].list) == 0, "%s: got\n%s", rfc_vectors[i].name, out.text);
        CHECK_MSG((int)t.size == rfc_vectors[i].size_after, "%s: table size %d, want %d", rfc_vectors[i].name,
                  (int)t.size, rfc_vectors[i].size_after);
    }
}

/* C.1: integers; and our encoder against the RFC's bytes. */
TEST(hpack_integers)
{
    const unsigned char c12[] = {0x1f, 0x9a, 0x0a}, c13[] = {0x2a};
    const unsigned char *p;
    unsigned long v;
    sbx__buf b;
    sbx_allocator a = sbx__allocator(NULL);
    p = c12;
    CHECK(sbx__hpack_get_int(&p, c12 + 3, 5, &v) == 0 && v == 1337 && p == c12 + 3);
    p = c13;
    CHECK(sbx__hpack_get_int(&p, c13 + 1, 8, &v) == 0 && v == 42);
    p = c12;
    CHECK(sbx__hpack_get_int(&p, c12 + 2, 5, &v) == -1); /* truncated */
    {
        const unsigned char big[] = {0x1f, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f};
        p = big;
        CHECK(sbx__hpack_get_int(&p, big + sizeof big, 5, &v) == -1); /* too many bytes */
    }
    sbx__buf_init(&b, &a);
    CHECK(sbx__hpack_int(&b, 0, 5, 10) == 0 && b.len == 1 && (unsigned char)b.data[0] == 10);
    b.len = 0;
    CHECK(sbx__hpack_int(&b, 0, 5, 1337) == 0 && b.len == 3 && memcmp(b.data, c12, 3) == 0);
    /* the RFC's C.4.1 :authority value, Huffman-coded by our encoder */
    b.len = 0;
    CHECK(sbx__hpack_str(&b, "www.example.com", 15) == 0);
    {
        unsigned char want[16];
        size_t n = unhex("8cf1e3c2e5f23a6ba0ab90f4ff", want);
        CHECK(b.len == n && memcmp(b.data, want, n) == 0);
    }
    sbx__buf_free(&b);
}

/* The decoder's per-length tables follow from Appendix B's codes and lengths. */
TEST(huffman_tables_derived)
{
    int len, k = 0, ok = 1;
    unsigned long code = 0;
    int prev = 5;
    for (len = 1; len <= 30; len++) {
        int s;
        if (sbx__huff_count[len]) CHECK_EQ_INT(sbx__huff_start[len], k);
        for (s = 0; s <= 256; s++) {
            if (sbx__huff_len[s] != len) continue;
            if (k > 0) code = (code + 1) << (len - prev);
            prev = len;
            if (sbx__huff_code[s] != code || sbx__huff_sym[k] != s) ok = 0;
            if (s == 0 || sbx__huff_sym[sbx__huff_start[len]] == s) {
                if (sbx__huff_first[len] != code && sbx__huff_sym[sbx__huff_start[len]] == s) ok = 0;
            }
            k++;
        }
    }
    CHECK(ok);
    CHECK_EQ_INT(k, 257);
    CHECK_EQ_INT(sbx__huff_code[256], 0x3fffffff);
    CHECK_EQ_INT(sbx__huff_len[256], 30);
}

TEST(huffman_bad_input)
{
    unsigned char out[64];
    const unsigned char eos[] = {0xff, 0xff, 0xff, 0xfc}; /* EOS (30 ones) + 00 */
    const unsigned char longpad[] = {0x1f, 0xff};          /* 'a'? no: 00011 + 11 ones */
    const unsigned char zeropad[] = {0x00};                /* '0' (00000) + 000: padding not ones */
    const unsigned char ok[] = {0x07};                     /* '0' + 111 */
    CHECK(sbx__huff_decode(eos, sizeof eos, out, sizeof out) == -1);
    CHECK(sbx__huff_decode(longpad, sizeof longpad, out, sizeof out) == -1);
    CHECK(sbx__huff_decode(zeropad, sizeof zeropad, out, sizeof out) == -1);
    CHECK(sbx__huff_decode(ok, sizeof ok, out, sizeof out) == 1 && out[0] == '0');
    CHECK(sbx__huff_decode(ok, sizeof ok, out, 0) == -2);
}

/* Both directions against python3-hpack: its encoding of random strings must
   decode to them, and our encoding must be byte-identical to its. */
TEST(huffman_vs_python_hpack)
{
    FILE *f;
    static char line[80000];
    int rounds = 0, bad = 0;
    if (!py_has("hpack")) SKIP("/usr/bin/python3 has no hpack module (apt-get install -y python3-hpack)");
    f = popen("/usr/bin/python3 -c '"
              "import random\n"
              "from hpack.huffman import HuffmanEncoder\n"
              "from hpack.huffman_constants import REQUEST_CODES, REQUEST_CODES_LENGTH\n"
              "e = HuffmanEncoder(REQUEST_CODES, REQUEST_CODES_LENGTH)\n"
              "r = random.Random(7541)\n"
              "for i in range(2000):\n"
              "    n = r.choice([0, 1, 2, 3, 7, 8, 20, 100, 300, 1500])\n"
              "    if i % 3 == 0: s = bytes(r.randrange(256) for _ in range(n))\n"
              "    elif i % 3 == 1: s = bytes(r.choice(b\"abcdefghijklmnopqrstuvwxyz0123456789-_./:\") for _ in range(n))\n"
              "    else: s = bytes(r.choice([0, 1, 10, 13, 22, 255, 254, 127, 128, 200]) for _ in range(n))\n"
              "    print(s.hex(), e.encode(s).hex())\n"
              "'", "r");
    CHECK(f != NULL);
    if (!f) return;
    while (fgets(line, sizeof line, f)) {
        static unsigned char raw[5000], enc[16000], dec[5000], mine[16000];
        char *sp = strchr(line, ' ');
        size_t rn, en;
        long dn;
        if (!sp) continue;
        *sp = '\0';
        sp[strcspn(sp + 1, "\n") + 1] = '\0';
        rn = unhex(line, raw);
        en = unhex(sp + 1, enc);
        dn = sbx__huff_decode(enc, en, dec, sizeof dec);
        if (dn != (long)rn || memcmp(dec, raw, rn) != 0) bad++;
        if (sbx__huff_len_of(raw, rn) != en) bad++;
        else {
            sbx__huff_encode(raw, rn, mine);
            if (memcmp(mine, enc, en) != 0) bad++;
        }
        rounds++;
    }
    CHECK(pclose(f) == 0);
    CHECK_EQ_INT(rounds, 2000);
    CHECK_EQ_INT(bad, 0);
}

TEST(hpack_size_updates_and_limits)
{
    static sbx__hpack t;
    unsigned char blk[256];
    size_t n;
    hl out;
    sbx__hpack_init(&t, 4096);
    /* fill: two indexed literals (custom-key: custom-header = 55 each) */
    n = unhex("400a637573746f6d2d6b65790d637573746f6d2d686561646572"
              "400a637573746f6d2d6b65790d637573746f6d2d686561646572", blk);
    out.len = 0;
    CHECK(sbx__hpack_decode(&t, blk, n, scratch, sizeof scratch, 65536, collect, &out) == 0);
    CHECK_EQ_INT(t.n, 2);
    CHECK_EQ_INT(t.size, 110);
    /* size update to 60 evicts one, to 0 empties, back to 4096 is allowed */
    n = unhex("3f1d", blk); /* 001 11111 + 29 = 60 */
    CHECK(sbx__hpack_decode(&t, blk, n, scratch, sizeof scratch, 65536, collect, &out) == 0);
    CHECK_EQ_INT(t.n, 1);
    n = unhex("203fe11f", blk); /* 0, then 4096 */
    CHECK(sbx__hpack_decode(&t, blk, n, scratch, sizeof scratch, 65536, collect, &out) == 0);
    CHECK_EQ_INT(t.n, 0);
    CHECK_EQ_INT(t.max, 4096);
    /* above our limit: an error */
    n = unhex("3fe21f", blk); /* 4127 */
    CHECK(sbx__hpack_decode(&t, blk, n, scratch, sizeof scratch, 65536, collect, &out) == -1);
    CHECK(strstr(t.why, "limit") != NULL);
    /* a size update after a field is an error */
    n = unhex("8220", blk);
    CHECK(sbx__hpack_decode(&t, blk, n, scratch, sizeof scratch, 65536, collect, &out) == -1);
    /* index past the table */
    n = unhex("be", blk); /* 62 with an empty dynamic table */
    CHECK(sbx__hpack_decode(&t, blk, n, scratch, sizeof scratch, 65536, collect, &out) == -1);
    n = unhex("80", blk); /* index 0 */
    CHECK(sbx__hpack_decode(&t, blk, n, scratch, sizeof scratch, 65536, collect, &out) == -1);
    /* integers cut short name the field, not a made-up number */
    n = unhex("ff80", blk);
    CHECK(sbx__hpack_decode(&t, blk, n, scratch, sizeof scratch, 65536, collect, &out) == -1);
    CHECK_MSG(strstr(t.why, "bad indexed field") != NULL, "%s", t.why);
    n = unhex("3f", blk);
    CHECK(sbx__hpack_decode(&t, blk, n, scratch, sizeof scratch, 65536, collect, &out) == -1);
    CHECK_MSG(strstr(t.why, "bad table size update") != NULL, "%s", t.why);
    /* a string running past the block */
    n = unhex("000a6162", blk);
    CHECK(sbx__hpack_decode(&t, blk, n, scratch, sizeof scratch, 65536, collect, &out) == -1);
    /* list limit: decoded to the end (table in step), reported as 1 */
    sbx__hpack_init(&t, 4096);
    n = unhex("400a637573746f6d2d6b65790d637573746f6d2d686561646572"
              "400a637573746f6d2d6b65790d637573746f6d2d686561646572", blk);
    out.len = 0;
    CHECK(sbx__hpack_decode(&t, blk, n, scratch, sizeof scratch, 60, collect, &out) == 1);
    CHECK_EQ_INT(t.n, 2);
    /* a field larger than scratch still keeps the table in step (emptied) */
    CHECK(sbx__hpack_decode(&t, blk, n, scratch, 8, 65536, collect, &out) == 1);
    CHECK_EQ_INT(t.n, 0);
}

/* ---- protobuf --------------------------------------------------------------------- */

TEST(protobuf_round_trip)
{
    sbx_allocator a = sbx__allocator(NULL);
    sbx__buf b, inner;
    sbx__pb r, r2;
    int field, wt, k = 0;
    unsigned long long v;
    const unsigned char *d;
    size_t len;
    sbx__buf_init(&b, &a);
    sbx__buf_init(&inner, &a);
    CHECK(sbx__pb_uint(&inner, 1, 150) == 0);
    CHECK(inner.len == 3 && memcmp(inner.data, "\x08\x96\x01", 3) == 0); /* the classic example */
    CHECK(sbx__pb_bytes(&b, 2, "testing", 7) == 0);
    CHECK(sbx__pb_uint(&b, 3, (unsigned long long)(long long)-1) == 0);
    CHECK(sbx__pb_bytes(&b, 4, inner.data, inner.len) == 0);
    CHECK(sbx__pb_uint(&b, 536870911, 0) == 0);
    sbx__pb_init(&r, b.data, b.len);
    while (sbx__pb_next(&r, &field, &wt, &v, &d, &len) == 1) {
        if (k == 0) CHECK(field == 2 && wt == 2 && len == 7 && memcmp(d, "testing", 7) == 0);
        if (k == 1) CHECK(field == 3 && wt == 0 && v == 0xffffffffffffffffULL);
        if (k == 2) {
            CHECK(field == 4 && wt == 2);
            sbx__pb_init(&r2, d, len);
            CHECK(sbx__pb_next(&r2, &field, &wt, &v, &d, &len) == 1 && field == 1 && v == 150);
            CHECK(sbx__pb_next(&r2, &field, &wt, &v, &d, &len) == 0);
        }
        if (k == 3) CHECK(field == 536870911 && v == 0);
        k++;
    }
    CHECK_EQ_INT(k, 4);
    CHECK(sbx__pb_next(&r, &field, &wt, &v, &d, &len) == 0);
    {
        const unsigned char fixed[] = {0x0d, 1, 2, 3, 4, 0x11, 1, 0, 0, 0, 0, 0, 0, 0x80};
        sbx__pb_init(&r, fixed, sizeof fixed);
        CHECK(sbx__pb_next(&r, &field, &wt, &v, &d, &len) == 1 && wt == 5 && v == 0x04030201ULL);
        CHECK(sbx__pb_next(&r, &field, &wt, &v, &d, &len) == 1 && wt == 1 && v == 0x8000000000000001ULL);
    }
    {   /* malformed: truncated, field 0, groups, a long varint, 6/7 */
        static const char *bad[] = {"0a05616263", "0001", "0b", "0c", "08ffffffffffffffffffff01",
                                    "08ffffffffffffffffff02", "0e", "0f", "0d0102", "08"};
        size_t i;
        for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
            unsigned char m[32];
            size_t n = unhex(bad[i], m);
            sbx__pb_init(&r, m, n);
            CHECK_MSG(sbx__pb_next(&r, &field, &wt, &v, &d, &len) == -1, "%s", bad[i]);
        }
    }
    sbx__buf_free(&b);
    sbx__buf_free(&inner);
}

TEST(grpc_status_mapping)
{
    CHECK(sbx__grpc_result(0) == SBX_OK);
    CHECK(sbx__grpc_result(3) == SBX_ERR_INVALID_ARG);
    CHECK(sbx__grpc_result(9) == SBX_ERR_INVALID_ARG);
    CHECK(sbx__grpc_result(11) == SBX_ERR_INVALID_ARG);
    CHECK(sbx__grpc_result(4) == SBX_ERR_TIMEOUT);
    CHECK(sbx__grpc_result(5) == SBX_ERR_NOT_FOUND);
    CHECK(sbx__grpc_result(7) == SBX_ERR_DENIED);
    CHECK(sbx__grpc_result(16) == SBX_ERR_DENIED);
    CHECK(sbx__grpc_result(8) == SBX_ERR_TOO_BIG);
    CHECK(sbx__grpc_result(12) == SBX_ERR_UNSUPPORTED);
    CHECK(sbx__grpc_result(14) == SBX_ERR_CONNECT);
    CHECK(sbx__grpc_result(1) == SBX_ERR_CLOSED);
    CHECK(sbx__grpc_result(2) == SBX_ERR_RPC);
    CHECK(sbx__grpc_result(13) == SBX_ERR_RPC);
    CHECK(sbx__grpc_result(99) == SBX_ERR_RPC);
    CHECK_STR(sbx__grpc_status_name(5), "NOT_FOUND");
    CHECK_STR(sbx__grpc_status_name(16), "UNAUTHENTICATED");
    CHECK_STR(sbx_strerror(SBX_ERR_DENIED), "permission denied");
    CHECK_STR(sbx_strerror(SBX_ERR_RPC), "remote call failed");
    {
        char out[64];
        sbx__grpc_pct_decode(out, sizeof out, "a%20b%e2%9C%93%zz%4");
        CHECK_STR(out, "a b\xe2\x9c\x93%zz%4");
    }
}

/* ---- a real grpcio server ------------------------------------------------------------- */

typedef struct server {
    pid_t pid;
    int in;
    int port;
    sbx__endpoint ep;
} server;

static int server_start(server *s, const char *script, const char *arg)
{
    char url[64];
    sbx_error e;
    s->port = test_spawn_server(script, arg, NULL, &s->pid, &s->in, 20000);
    if (s->port <= 0) return -1;
    E2E_FMT(url, sizeof url, "http://127.0.0.1:%d", s->port);
    return sbx__endpoint_parse(url, &s->ep, &e) == SBX_OK ? 0 : -1;
}

static void server_stop(server *s)
{
    if (s->in >= 0) close(s->in);
    if (s->pid > 0) waitpid(s->pid, NULL, 0);
    s->in = -1;
    s->pid = -1;
}

/* A transport that is just a socket of its own, so the transport code path
   (poll, then read under the write lock) runs against the real server. h2
   makes one per connection (trs_make) and frees it with the connection
   (trs_free); tr_counts, the test's, outlives them all and counts. */
typedef struct tr_counts {
    int made, freed, opens, closes;
} tr_counts;
typedef struct tr_maker_arg {
    sbx__endpoint ep;
    tr_counts *n;
} tr_maker_arg;
typedef struct tr_sock {
    sbx__conn inner;
    tr_counts *n;
} tr_sock;
static int trs_open(void *st, long long deadline, sbx_error *e)
{
    tr_sock *t = (tr_sock *)st;
    int r = sbx__http_connect(&t->inner, deadline, e);
    if (r != SBX_OK) return r;
    t->n->opens++;
    return t->inner.fd;
}
static void trs_close(void *st)
{
    tr_sock *t = (tr_sock *)st;
    t->n->closes++;
    sbx__conn_close(&t->inner);
}
static long trs_recv(void *st, char *p, size_t n, long long deadline)
{
    return sbx__conn_recv(&((tr_sock *)st)->inner, p, n, deadline);
}
static int trs_send(void *st, const char *p, size_t n, long long deadline)
{
    return sbx__conn_send(&((tr_sock *)st)->inner, p, n, deadline);
}
static int trs_stale(void *st)
{
    return sbx__conn_stale(&((tr_sock *)st)->inner);
}
static const sbx__transport tr_sock_ops = {trs_open, trs_close, trs_recv, trs_send, trs_stale};
static void *trs_make(void *arg, const sbx__transport **tr)
{
    tr_maker_arg *m = (tr_maker_arg *)arg;
    tr_sock *t = (tr_sock *)calloc(1, sizeof *t);
    if (!t) return NULL;
    sbx__conn_init(&t->inner, &m->ep, NULL);
    t->n = m->n;
    t->n->made++;
    *tr = &tr_sock_ops;
    return t;
}
static void trs_free(void *st)
{
    tr_sock *t = (tr_sock *)st;
    t->n->freed++;
    sbx__conn_free(&t->inner);
    free(t);
}
/* h over tr_sock transports to ep; m (the maker's arg) must outlive sbx__h2_free(h) */
static sbx__h2 *h2_over_tr_sock(const sbx__endpoint *ep, tr_maker_arg *m, tr_counts *n)
{
    sbx__h2_trmaker mk;
    memset(n, 0, sizeof *n);
    m->ep = *ep;
    m->n = n;
    mk.make = trs_make;
    mk.drop = trs_free;
    mk.arg = m;
    return sbx__h2_new(NULL, ep, &mk, "localhost");
}

static int grpc_ok = -1;
static server gs = {-1, -1, 0, {0, 0, {{{0}}}, {0}, {0}, {0}, {0}}};

static int need_grpc(void)
{
    if (grpc_ok < 0) {
        grpc_ok = py_has("grpc") && server_start(&gs, "tests/fakes/servers/grpc_echo.py", NULL) == 0;
    }
    return grpc_ok;
}

static void unary_and_stream(sbx__h2 *h)
{
    sbx_error e;
    sbx__buf resp;
    sbx_allocator a = sbx__allocator(NULL);
    sbx__grpc_call *c = NULL;
    const unsigned char *m;
    size_t ml, max_in = 0, max_msg = 0;
    int r, count = 0, good = 1;
    unsigned long long total = 0;
    sbx__buf_init(&resp, &a);
    memset(&e, 0, sizeof e);
    r = sbx__grpc_unary(h, "/test.Echo/Unary", "hello\0world", 11, &resp, 0, NULL, sbx__deadline(10000), &e);
    CHECK_MSG(r == SBX_OK, "%d %s", r, e.msg);
    CHECK(resp.len == 11 && memcmp(resp.data, "hello\0world", 11) == 0);
    /* an empty request and answer */
    r = sbx__grpc_unary(h, "/test.Echo/Unary", "", 0, &resp, 0, NULL, sbx__deadline(10000), &e);
    CHECK_MSG(r == SBX_OK && resp.len == 0, "%d %s", r, e.msg);
    /* server streaming: 2000 messages of 16 KiB (32 MB) through a 256 KiB window */
    r = sbx__grpc_start(h, "/test.Echo/Stream", "2000 16384", 10, 1, sbx__deadline(60000), &c, &e);
    CHECK_MSG(r == SBX_OK, "%d %s", r, e.msg);
    if (r == SBX_OK) {
        while ((r = sbx__grpc_recv(c, &m, &ml, 0, &e)) == 1) {
            if (ml != 16384 || m[0] != (unsigned char)(count % 251) || m[ml - 1] != (unsigned char)(count % 251)) good = 0;
            count++;
            total += ml;
            if (c->s.in.cap > max_in) max_in = c->s.in.cap;
            if (c->msg.cap > max_msg) max_msg = c->msg.cap;
        }
        CHECK_MSG(r == 0, "%d %s", r, e.msg);
        CHECK_EQ_INT(count, 2000);
        CHECK(good);
        CHECK(total == 2000ull * 16384);
        CHECK_EQ_INT(sbx__grpc_status(c, NULL), 0);
        /* flat memory: the stream buffer never passes its window (+ one frame,
           rounded up to the buffer's doubling), the message buffer one message */
        CHECK_MSG(max_in <= 2 * SBX__H2_STREAM_WINDOW, "stream buffer grew to %lu", (unsigned long)max_in);
        printf("  32 MB streamed: stream buffer peaked at %lu bytes, message buffer at %lu\n", (unsigned long)max_in,
               (unsigned long)max_msg);
        CHECK_MSG(max_msg <= 32768, "message buffer grew to %lu", (unsigned long)max_msg);
        sbx__grpc_free(c);
    }
    sbx__buf_free(&resp);
}

TEST(grpcio_unary_and_streaming)
{
    sbx__h2 *h;
    int fds;
    if (!need_grpc()) SKIP("no grpcio server: /usr/bin/python3 lacks grpc (apt-get install -y python3-grpcio)");
    fds = test_fd_count();
    h = sbx__h2_new(NULL, &gs.ep, NULL, "localhost");
    CHECK(h != NULL);
    unary_and_stream(h);
    CHECK_EQ_INT(h->connects, 1);
    sbx__h2_free(h);
    CHECK_EQ_INT(test_fd_count(), fds);
}

TEST(grpcio_over_transport_hook)
{
    sbx__h2 *h;
    tr_maker_arg m;
    tr_counts n;
    int fds;
    if (!need_grpc()) SKIP("no grpcio server: /usr/bin/python3 lacks grpc (apt-get install -y python3-grpcio)");
    fds = test_fd_count();
    h = h2_over_tr_sock(&gs.ep, &m, &n);
    CHECK(h != NULL);
    unary_and_stream(h);
    CHECK_EQ_INT(n.opens, 1);
    sbx__h2_free(h);
    CHECK_EQ_INT(n.closes, 1);
    CHECK_EQ_INT(n.made, 1);
    CHECK_EQ_INT(n.freed, 1);
    CHECK_EQ_INT(test_fd_count(), fds);
}

typedef struct worker {
    sbx__h2 *h;
    int id;
    int ok;
    char why[600];
} worker;

static void *work(void *arg)
{
    worker *w = (worker *)arg;
    sbx_allocator a = sbx__allocator(NULL);
    sbx__buf resp;
    sbx_error e;
    int i;
    sbx__buf_init(&resp, &a);
    w->ok = 1;
    for (i = 0; i < 20 && w->ok; i++) {
        char req[64];
        int r;
        E2E_FMT(req, sizeof req, "worker %d call %d", w->id, i);
        r = sbx__grpc_unary(w->h, "/test.Echo/Unary", req, strlen(req), &resp, 0, NULL, sbx__deadline(30000), &e);
        if (r != SBX_OK || resp.len != strlen(req) || memcmp(resp.data, req, resp.len) != 0) {
            w->ok = 0;
            E2E_FMT(w->why, sizeof w->why, "call %d: %d %s", i, r, e.msg);
        }
    }
    if (w->ok) { /* and a stream each, interleaved with the others */
        sbx__grpc_call *c = NULL;
        const unsigned char *m;
        size_t ml;
        int r = sbx__grpc_start(w->h, "/test.Echo/Stream", "300 3000", 8, 1, sbx__deadline(60000), &c, &e), n = 0;
        if (r == SBX_OK)
            while ((r = sbx__grpc_recv(c, &m, &ml, 0, &e)) == 1)
                if (ml == 3000 && m[0] == (unsigned char)(n % 251)) n++;
        if (r != 0 || n != 300) {
            w->ok = 0;
            E2E_FMT(w->why, sizeof w->why, "stream: %d after %d: %s", r, n, e.msg);
        }
        sbx__grpc_free(c);
    }
    sbx__buf_free(&resp);
    return NULL;
}

TEST(grpcio_16_threads_one_connection)
{
    sbx__h2 *h;
    pthread_t th[16];
    worker w[16];
    int i, fds;
    if (!need_grpc()) SKIP("no grpcio server: /usr/bin/python3 lacks grpc (apt-get install -y python3-grpcio)");
    fds = test_fd_count();
    h = sbx__h2_new(NULL, &gs.ep, NULL, "localhost");
    for (i = 0; i < 16; i++) {
        w[i].h = h;
        w[i].id = i;
        w[i].why[0] = '\0';
        pthread_create(&th[i], NULL, work, &w[i]);
    }
    for (i = 0; i < 16; i++) {
        pthread_join(th[i], NULL);
        CHECK_MSG(w[i].ok, "worker %d: %s", i, w[i].why);
    }
    CHECK_EQ_INT(h->connects, 1);
    sbx__h2_free(h);
    CHECK_EQ_INT(test_fd_count(), fds);
}

TEST(grpcio_deadlines)
{
    sbx__h2 *h;
    sbx_error e;
    sbx_allocator a = sbx__allocator(NULL);
    sbx__buf resp;
    sbx__grpc_call *c = NULL;
    const unsigned char *m;
    size_t ml;
    long long t0;
    int r;
    if (!need_grpc()) SKIP("no grpcio server: /usr/bin/python3 lacks grpc (apt-get install -y python3-grpcio)");
    sbx__buf_init(&resp, &a);
    h = sbx__h2_new(NULL, &gs.ep, NULL, "localhost");
    /* the call's deadline: the server sees grpc-timeout, we stop waiting at it */
    t0 = sbx__now_ms();
    r = sbx__grpc_unary(h, "/test.Echo/Sleep", "3000", 4, &resp, 0, NULL, sbx__deadline(400), &e);
    CHECK_MSG(r == SBX_ERR_TIMEOUT, "%d %s", r, e.msg);
    CHECK(sbx__now_ms() - t0 < 2000);
    /* a wait shorter than the call: TIMEOUT, and the call goes on to its answer */
    r = sbx__grpc_start(h, "/test.Echo/Sleep", "600", 3, 1, sbx__deadline(10000), &c, &e);
    CHECK(r == SBX_OK);
    if (r == SBX_OK) {
        r = sbx__grpc_recv(c, &m, &ml, sbx__deadline(100), &e);
        CHECK_MSG(r == SBX_ERR_TIMEOUT, "%d %s", r, e.msg);
        r = sbx__grpc_recv(c, &m, &ml, 0, &e);
        CHECK_MSG(r == 1 && ml == 5 && memcmp(m, "slept", 5) == 0, "%d %s", r, e.msg);
        CHECK(sbx__grpc_recv(c, &m, &ml, 0, &e) == 0);
        sbx__grpc_free(c);
    }
    /* freeing a call in the middle cancels it; the connection stays good */
    r = sbx__grpc_start(h, "/test.Echo/Stream", "100000 1000", 11, 1, sbx__deadline(10000), &c, &e);
    CHECK(r == SBX_OK);
    if (r == SBX_OK) {
        CHECK(sbx__grpc_recv(c, &m, &ml, 0, &e) == 1);
        sbx__grpc_free(c);
    }
    r = sbx__grpc_unary(h, "/test.Echo/Unary", "x", 1, &resp, 0, NULL, sbx__deadline(10000), &e);
    CHECK_MSG(r == SBX_OK, "%d %s", r, e.msg);
    CHECK_EQ_INT(h->connects, 1);
    sbx__h2_free(h);
    sbx__buf_free(&resp);
}

TEST(grpcio_status_codes)
{
    sbx__h2 *h;
    sbx_error e;
    sbx_allocator a = sbx__allocator(NULL);
    sbx__buf resp;
    int code;
    if (!need_grpc()) SKIP("no grpcio server: /usr/bin/python3 lacks grpc (apt-get install -y python3-grpcio)");
    sbx__buf_init(&resp, &a);
    h = sbx__h2_new(NULL, &gs.ep, NULL, "localhost");
    for (code = 1; code <= 16; code++) {
        char req[80], want[200];
        int r;
        E2E_FMT(req, sizeof req, "%d no such thing: 100%% \xe2\x9c\x93", code);
        memset(&e, 0, sizeof e);
        r = sbx__grpc_unary(h, "/test.Echo/Status", req, strlen(req), &resp, 0, NULL, sbx__deadline(10000), &e);
        CHECK_MSG(r == (int)sbx__grpc_result(code), "code %d: %d %s", code, r, e.msg);
        CHECK_EQ_INT(e.grpc_status, code);
        E2E_FMT(want, sizeof want, "gRPC /test.Echo/Status: %s: no such thing: 100%% \xe2\x9c\x93",
                sbx__grpc_status_name(code));
        CHECK_STR(e.msg, want);
    }
    {   /* an unknown method: UNIMPLEMENTED from the server */
        int r = sbx__grpc_unary(h, "/test.Echo/Nope", "", 0, &resp, 0, NULL, sbx__deadline(10000), &e);
        CHECK_MSG(r == SBX_ERR_UNSUPPORTED && e.grpc_status == 12, "%d %s", r, e.msg);
    }
    sbx__h2_free(h);
    sbx__buf_free(&resp);
}

/* An allocator that is the default one under another name: its buffers are
   not the call's to take (sbx__same_allocator), so the answer is copied. */
static int other_user;
static void *other_alloc(size_t n, void *u) { (void)u; return malloc(n); }
static void *other_realloc(void *p, size_t n, void *u) { (void)u; return realloc(p, n); }
static void other_free(void *p, void *u) { (void)u; free(p); }

/* A unary answer's limit: SBX_GRPC_MAX_MESSAGE (1 MiB in this file) unless
   the call names its own (Execute: max_output_bytes); memory follows the
   bytes up to the exact size, and the answer is handed over, not copied. */
TEST(grpcio_answer_limits)
{
    sbx__h2 *h;
    sbx_error e;
    sbx_allocator a = sbx__allocator(NULL), other = {other_alloc, other_realloc, other_free, &other_user};
    sbx__buf resp, resp2;
    size_t big = 1536u * 1024, i, bad = 0;
    char *req = (char *)malloc(big);
    int r;
    if (!need_grpc()) {
        free(req);
        SKIP("no grpcio server: /usr/bin/python3 lacks grpc (apt-get install -y python3-grpcio)");
    }
    for (i = 0; i < big; i++) req[i] = (char)('a' + i % 23);
    sbx__buf_init(&resp, &a);
    sbx__buf_init(&resp2, &other);
    h = sbx__h2_new(NULL, &gs.ep, NULL, "localhost");
    memset(&e, 0, sizeof e);
    r = sbx__grpc_unary(h, "/test.Echo/Unary", req, big, &resp, 0, NULL, sbx__deadline(20000), &e);
    CHECK_MSG(r == SBX_ERR_TOO_BIG && strstr(e.msg, "passes SBX_GRPC_MAX_MESSAGE (1048576)"), "%d %s", r, e.msg);
    memset(&e, 0, sizeof e);
    r = sbx__grpc_unary(h, "/test.Echo/Unary", req, big, &resp, big - 1, "max_output_bytes", sbx__deadline(20000), &e);
    CHECK_MSG(r == SBX_ERR_TOO_BIG && strstr(e.msg, "1572864 bytes passes max_output_bytes (1572863)"), "%d %s", r,
              e.msg);
    memset(&e, 0, sizeof e);
    r = sbx__grpc_unary(h, "/test.Echo/Unary", req, big, &resp, big, "max_output_bytes", sbx__deadline(20000), &e);
    CHECK_MSG(r == SBX_OK, "%d %s", r, e.msg);
    CHECK_EQ_INT((long long)resp.len, (long long)big);
    if (resp.len == big) for (i = 0; i < big; i++) bad += resp.data[i] != req[i];
    CHECK_EQ_INT((long long)bad, 0);
    /* the call's buffer, grown to the message's exact size (not a doubling past it) */
    CHECK_EQ_INT((long long)resp.cap, (long long)big + 1);
    r = sbx__grpc_unary(h, "/test.Echo/Unary", req, big, &resp2, big, "max_output_bytes", sbx__deadline(20000), &e);
    CHECK_MSG(r == SBX_OK && resp2.len == big && memcmp(resp2.data, req, big) == 0, "%d %s", r, e.msg);
    CHECK(resp2.a == &other);
    sbx__h2_free(h);
    sbx__buf_free(&resp);
    sbx__buf_free(&resp2);
    free(req);
}

/* A call nobody reads holds at most its stream window; the others go on. */
TEST(grpcio_unread_call_does_not_stall_others)
{
    sbx__h2 *h;
    sbx_error e;
    sbx_allocator a = sbx__allocator(NULL);
    sbx__buf resp;
    sbx__grpc_call *idle = NULL;
    worker w;
    int i, r;
    if (!need_grpc()) SKIP("no grpcio server: /usr/bin/python3 lacks grpc (apt-get install -y python3-grpcio)");
    sbx__buf_init(&resp, &a);
    h = sbx__h2_new(NULL, &gs.ep, NULL, "localhost");
    /* 100 MB offered, never read */
    r = sbx__grpc_start(h, "/test.Echo/Stream", "100000 1000", 11, 1, sbx__deadline(60000), &idle, &e);
    CHECK_MSG(r == SBX_OK, "%d %s", r, e.msg);
    for (i = 0; i < 20; i++) {
        r = sbx__grpc_unary(h, "/test.Echo/Unary", "u", 1, &resp, 0, NULL, sbx__deadline(10000), &e);
        CHECK_MSG(r == SBX_OK, "%d %s", r, e.msg);
    }
    w.h = h;
    w.id = 99;
    w.why[0] = '\0';
    work(&w);
    CHECK_MSG(w.ok, "%s", w.why);
    if (idle) {
        pthread_mutex_lock(&h->mu);
        CHECK_MSG(idle->s.in.len - idle->s.in_pos <= SBX__H2_STREAM_WINDOW, "%lu buffered",
                  (unsigned long)(idle->s.in.len - idle->s.in_pos));
        CHECK(idle->s.in.len > 0); /* it did get its window's worth */
        pthread_mutex_unlock(&h->mu);
        sbx__grpc_free(idle);
    }
    r = sbx__grpc_unary(h, "/test.Echo/Unary", "after", 5, &resp, 0, NULL, sbx__deadline(10000), &e);
    CHECK_MSG(r == SBX_OK, "%d %s", r, e.msg);
    CHECK_EQ_INT(h->connects, 1);
    sbx__h2_free(h);
    sbx__buf_free(&resp);
}

/* A port-forward WebSocket per connection, as the WebSocket route makes them. */
typedef struct ws_maker_arg {
    sbx__endpoint api;
    int port;
    int made;
} ws_maker_arg;
static void *ws_make(void *arg, const sbx__transport **tr)
{
    ws_maker_arg *m = (ws_maker_arg *)arg;
    sbx__ws *ws = sbx__ws_new(NULL, &m->api, "/api/v1/namespaces/default/pods/relay/portforward?ports=9090", &m->port, 1);
    if (ws) *tr = &ws->tr;
    m->made++;
    return ws;
}

/* ws_relay.py in *relay in front of 127.0.0.1:target, and an h2 handle
   whose every connection gets a WebSocket of its own through it (wm, mk:
   the caller's, living until the handle is freed); NULL when the relay did
   not start (a failed check says so). */
static sbx__h2 *h2_over_ws_relay(server *relay, int target, ws_maker_arg *wm, sbx__h2_trmaker *mk)
{
    char arg[16];
    E2E_FMT(arg, sizeof arg, "%d", target);
    if (server_start(relay, "tests/fakes/servers/ws_relay.py", arg) != 0) {
        server_stop(relay);
        CHECK_MSG(0, "ws_relay.py did not start");
        return NULL;
    }
    memset(wm, 0, sizeof *wm);
    wm->api = relay->ep;
    wm->port = 9090;
    mk->make = ws_make;
    mk->drop = sbx__ws_drop;
    mk->arg = wm;
    return sbx__h2_new(NULL, &relay->ep, mk, "localhost");
}

/* The in-process WebSocket route: sbx__ws (the kubelet's v4.channel.k8s.io
   port-forward, served by the dev cluster's own portforward.py in front of
   the grpcio server) as the connection's transport, with 4 threads at once. */
TEST(grpcio_over_websocket_portforward)
{
    server relay = {-1, -1, 0, {0, 0, {{{0}}}, {0}, {0}, {0}, {0}}};
    int i, fds;
    ws_maker_arg wm;
    sbx__h2_trmaker mk;
    sbx__h2 *h;
    pthread_t th[4];
    worker w[4];
    if (!need_grpc()) SKIP("no grpcio server: /usr/bin/python3 lacks grpc (apt-get install -y python3-grpcio)");
    fds = test_fd_count();
    if (!(h = h2_over_ws_relay(&relay, gs.port, &wm, &mk))) return;
    fds += 1; /* the relay's stdin pipe, closed below */
    unary_and_stream(h);
    for (i = 0; i < 4; i++) {
        w[i].h = h;
        w[i].id = i;
        w[i].why[0] = '\0';
        pthread_create(&th[i], NULL, work, &w[i]);
    }
    for (i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        CHECK_MSG(w[i].ok, "worker %d: %s", i, w[i].why);
    }
    CHECK_EQ_INT(h->connects, 1);
    CHECK_EQ_INT(wm.made, 1);
    sbx__h2_free(h);
    server_stop(&relay);
    CHECK_EQ_INT(test_fd_count(), fds - 1);
}

/* The last stream ids of a connection: the one at 2^31-1 is used, the next
   call opens a new connection. */
TEST(grpcio_stream_ids_run_out)
{
    sbx__h2 *h;
    sbx_error e;
    sbx_allocator a = sbx__allocator(NULL);
    sbx__buf resp;
    int i, r;
    if (!need_grpc()) SKIP("no grpcio server: /usr/bin/python3 lacks grpc (apt-get install -y python3-grpcio)");
    sbx__buf_init(&resp, &a);
    h = sbx__h2_new(NULL, &gs.ep, NULL, "localhost");
    r = sbx__grpc_unary(h, "/test.Echo/Unary", "1", 1, &resp, 0, NULL, sbx__deadline(10000), &e);
    CHECK_MSG(r == SBX_OK, "%d %s", r, e.msg);
    pthread_mutex_lock(&h->mu);
    if (h->cur) h->cur->next_id = 0x7ffffffdu;
    pthread_mutex_unlock(&h->mu);
    for (i = 0; i < 3; i++) {
        r = sbx__grpc_unary(h, "/test.Echo/Unary", "abc", 3, &resp, 0, NULL, sbx__deadline(10000), &e);
        CHECK_MSG(r == SBX_OK && resp.len == 3, "call %d: %d %s", i, r, e.msg);
    }
    CHECK_EQ_INT(h->connects, 2);
    sbx__h2_free(h);
    sbx__buf_free(&resp);
}

/* ---- a hostile HTTP/2 server ------------------------------------------------------------ */

static int h2fake_ok = -1;
static server hs = {-1, -1, 0, {0, 0, {{{0}}}, {0}, {0}, {0}, {0}}};

static int need_h2fake(void)
{
    if (h2fake_ok < 0)
        h2fake_ok = py_has("h2") && py_has("hpack") && server_start(&hs, "tests/fakes/servers/h2_fake.py", NULL) == 0;
    return h2fake_ok;
}
#define NEED_H2FAKE()                                                                                  \
    do {                                                                                               \
        if (!need_h2fake()) SKIP("no hostile HTTP/2 server: /usr/bin/python3 lacks h2 or hpack "       \
                                 "(apt-get install -y python3-h2 python3-hpack)");                    \
    } while (0)

/* One unary call of scenario `name` on h. */
static int fake_unary(sbx__h2 *h, const char *name, const void *body, size_t n, sbx__buf *resp, int ms, sbx_error *e)
{
    char path[96];
    E2E_FMT(path, sizeof path, "/fake.H2/%s", name);
    memset(e, 0, sizeof *e);
    return sbx__grpc_unary(h, path, body, n, resp, 0, NULL, sbx__deadline(ms), e);
}

TEST(h2_well_formed_oddities)
{
    static const char *names[] = {"ok", "padding", "continuation", "hpack_update", "ping", "settings"};
    sbx_allocator a = sbx__allocator(NULL);
    sbx__buf resp;
    sbx_error e;
    size_t i;
    int fds;
    NEED_H2FAKE();
    fds = test_fd_count();
    sbx__buf_init(&resp, &a);
    for (i = 0; i < sizeof names / sizeof names[0]; i++) {
        sbx__h2 *h = sbx__h2_new(NULL, &hs.ep, NULL, "localhost");
        char body[64];
        int r, k;
        E2E_FMT(body, sizeof body, "hello %s", names[i]);
        /* twice: the second call rides on what the first left (table, settings) */
        for (k = 0; k < 2; k++) {
            r = fake_unary(h, names[i], body, strlen(body), &resp, 10000, &e);
            CHECK_MSG(r == SBX_OK, "%s: %d %s", names[i], r, e.msg);
            CHECK_MSG(resp.len == strlen(body) && memcmp(resp.data, body, resp.len) == 0, "%s", names[i]);
        }
        CHECK_EQ_INT(h->connects, 1);
        sbx__h2_free(h);
    }
    {   /* after new SETTINGS (frames up to 64 KiB, window 70000): a 100 kB request */
        sbx__h2 *h = sbx__h2_new(NULL, &hs.ep, NULL, "localhost");
        static char big[100000];
        int r;
        memset(big, 'q', sizeof big);
        r = fake_unary(h, "settings", "s", 1, &resp, 10000, &e);
        CHECK_MSG(r == SBX_OK, "%d %s", r, e.msg);
        r = fake_unary(h, "settings", big, sizeof big, &resp, 10000, &e);
        CHECK_MSG(r == SBX_OK && resp.len == sizeof big, "%d %s", r, e.msg);
        sbx__h2_free(h);
    }
    sbx__buf_free(&resp);
    CHECK_EQ_INT(test_fd_count(), fds);
}

TEST(h2_goaway_mid_stream)
{
    sbx__h2 *h;
    sbx__grpc_call *a1 = NULL, *b1 = NULL;
    sbx_error e;
    const unsigned char *m;
    size_t ml;
    int r;
    sbx_allocator al = sbx__allocator(NULL);
    sbx__buf resp;
    NEED_H2FAKE();
    sbx__buf_init(&resp, &al);
    h = sbx__h2_new(NULL, &hs.ep, NULL, "localhost");
    CHECK(sbx__grpc_start(h, "/fake.H2/goaway", "A", 1, 1, sbx__deadline(10000), &a1, &e) == SBX_OK);
    CHECK(sbx__grpc_start(h, "/fake.H2/goaway", "B", 1, 1, sbx__deadline(10000), &b1, &e) == SBX_OK);
    if (a1 && b1) {
        r = sbx__grpc_recv(b1, &m, &ml, 0, &e);
        CHECK_MSG(r == SBX_ERR_CONNECT, "%d %s", r, e.msg);
        CHECK_MSG(strstr(e.msg, "GOAWAY (NO_ERROR: going away)") && strstr(e.msg, "may be retried"), "%s", e.msg);
        r = sbx__grpc_recv(a1, &m, &ml, 0, &e);
        CHECK_MSG(r == 1 && ml == 1 && m[0] == 'A', "%d %s", r, e.msg);
        r = sbx__grpc_recv(a1, &m, &ml, 0, &e);
        CHECK_MSG(r == 0 && sbx__grpc_status(a1, NULL) == 0, "%d %s", r, e.msg);
    }
    sbx__grpc_free(a1);
    sbx__grpc_free(b1);
    /* the next call reconnects */
    r = fake_unary(h, "ok", "again", 5, &resp, 10000, &e);
    CHECK_MSG(r == SBX_OK && resp.len == 5, "%d %s", r, e.msg);
    CHECK_EQ_INT(h->connects, 2);
    sbx__h2_free(h);
    sbx__buf_free(&resp);
}

TEST(h2_rst_stream)
{
    sbx__h2 *h;
    sbx__grpc_call *c = NULL;
    sbx_error e;
    const unsigned char *m;
    size_t ml;
    int r;
    sbx_allocator al = sbx__allocator(NULL);
    sbx__buf resp;
    NEED_H2FAKE();
    sbx__buf_init(&resp, &al);
    h = sbx__h2_new(NULL, &hs.ep, NULL, "localhost");
    CHECK(sbx__grpc_start(h, "/fake.H2/rst", "R", 1, 1, sbx__deadline(10000), &c, &e) == SBX_OK);
    if (c) {
        r = sbx__grpc_recv(c, &m, &ml, 0, &e);
        CHECK_MSG(r == 1 && ml == 1, "%d %s", r, e.msg);
        r = sbx__grpc_recv(c, &m, &ml, 0, &e);
        CHECK_MSG(r == SBX_ERR_PROTOCOL && strstr(e.msg, "reset stream 1 (INTERNAL_ERROR)"), "%d %s", r, e.msg);
        r = sbx__grpc_recv(c, &m, &ml, 0, &e); /* sticky */
        CHECK(r == SBX_ERR_PROTOCOL);
        sbx__grpc_free(c);
    }
    r = fake_unary(h, "rst", "second", 6, &resp, 10000, &e);
    CHECK_MSG(r == SBX_OK && resp.len == 6, "%d %s", r, e.msg);
    CHECK_EQ_INT(h->connects, 1);
    sbx__h2_free(h);
    h = sbx__h2_new(NULL, &hs.ep, NULL, "localhost");
    r = fake_unary(h, "refused", "x", 1, &resp, 10000, &e);
    CHECK_MSG(r == SBX_ERR_CONNECT && strstr(e.msg, "REFUSED_STREAM") && strstr(e.msg, "may be retried"), "%d %s", r, e.msg);
    sbx__h2_free(h);
    sbx__buf_free(&resp);
}

static int stream_count(sbx__h2 *h, const char *path, const void *body, size_t n, const char *last, sbx_error *e)
{
    sbx__grpc_call *c = NULL;
    const unsigned char *m;
    size_t ml;
    int r, count = 0, good = 1;
    r = sbx__grpc_start(h, path, body, n, 1, sbx__deadline(20000), &c, e);
    if (r != SBX_OK) return r;
    while ((r = sbx__grpc_recv(c, &m, &ml, 0, e)) == 1) {
        if (count < 64 && (ml != 16384 || m[0] != (unsigned char)(count % 251))) good = 0;
        if (count == 64 && (ml != strlen(last) || memcmp(m, last, ml) != 0)) good = 0;
        count++;
    }
    if (r == 0 && sbx__grpc_status(c, NULL) != 0) r = -100;
    sbx__grpc_free(c);
    return r < 0 ? r : good ? count : -200;
}

TEST(h2_flow_control_windows)
{
    sbx__h2 *h;
    sbx_error e;
    static char big[5000];
    int r;
    long long t0;
    sbx_allocator al = sbx__allocator(NULL);
    sbx__buf resp;
    NEED_H2FAKE();
    sbx__buf_init(&resp, &al);
    memset(big, 'w', sizeof big);
    memcpy(big, "0123456789", 10);
    /* 1 MiB back through our window updates; then a 5000-byte request through a
       1000-byte window the server replenishes */
    h = sbx__h2_new(NULL, &hs.ep, NULL, "localhost");
    r = stream_count(h, "/fake.H2/window", "abcdefghij", 10, "abcdefghij", &e);
    CHECK_MSG(r == 65, "%d %s", r, e.msg);
    r = stream_count(h, "/fake.H2/window", big, sizeof big, "0123456789", &e);
    CHECK_MSG(r == 65, "%d %s", r, e.msg);
    CHECK_EQ_INT(h->connects, 1);
    sbx__h2_free(h);
    /* a server that never gives window back: the send waits to its deadline */
    h = sbx__h2_new(NULL, &hs.ep, NULL, "localhost");
    r = fake_unary(h, "window_stuck", "x", 1, &resp, 10000, &e);
    CHECK_MSG(r == SBX_OK, "%d %s", r, e.msg);
    t0 = sbx__now_ms();
    r = fake_unary(h, "window_stuck", big, sizeof big, &resp, 800, &e);
    CHECK_MSG(r == SBX_ERR_TIMEOUT && strstr(e.msg, "flow-control window"), "%d %s", r, e.msg);
    CHECK(sbx__now_ms() - t0 >= 700 && sbx__now_ms() - t0 < 3000);
    sbx__h2_free(h);
    sbx__buf_free(&resp);
}

TEST(h2_hostile_answers)
{
    static const struct {
        const char *name;
        int code;
        const char *words;
        int grpc_status;
    } cases[] = {
        {"oversize", SBX_ERR_TOO_BIG, "passes SBX_GRPC_MAX_MESSAGE", 0},
        {"compressed", SBX_ERR_PROTOCOL, "compressed message", 0},
        {"trailers_only", SBX_ERR_NOT_FOUND, "gRPC /fake.H2/trailers_only: NOT_FOUND: no such thing: \xe2\x9c\x93.", 5},
        {"http503", SBX_ERR_CONNECT, "UNAVAILABLE: HTTP status 503", 14},
        {"status_long", SBX_ERR_PROTOCOL, "a bad grpc-status", 0},
        {"eof_mid", SBX_ERR_CONNECT, "closed by the server", 0},
        {"bad_frame", SBX_ERR_PROTOCOL, "(PROTOCOL_ERROR): DATA on stream 0", 0},
        {"big_frame", SBX_ERR_PROTOCOL, "(FRAME_SIZE_ERROR): a frame of 20000 bytes", 0},
        {"push", SBX_ERR_PROTOCOL, "PUSH_PROMISE", 0},
        {"hpack_over", SBX_ERR_PROTOCOL, "(COMPRESSION_ERROR): HPACK: table size update to 65536", 0},
    };
    sbx_allocator al = sbx__allocator(NULL);
    sbx__buf resp;
    sbx_error e;
    size_t i;
    int fds;
    NEED_H2FAKE();
    fds = test_fd_count();
    sbx__buf_init(&resp, &al);
    for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        sbx__h2 *h = sbx__h2_new(NULL, &hs.ep, NULL, "localhost");
        int r = fake_unary(h, cases[i].name, "x", 1, &resp, 10000, &e);
        CHECK_MSG(r == cases[i].code, "%s: %d %s", cases[i].name, r, e.msg);
        CHECK_MSG(strstr(e.msg, cases[i].words) != NULL, "%s: %s", cases[i].name, e.msg);
        CHECK_EQ_INT(e.grpc_status, cases[i].grpc_status);
        /* and the handle goes on: the same connection, or a new one */
        r = fake_unary(h, "ok", "next", 4, &resp, 10000, &e);
        CHECK_MSG(r == SBX_OK && resp.len == 4, "%s then ok: %d %s", cases[i].name, r, e.msg);
        sbx__h2_free(h);
    }
    sbx__buf_free(&resp);
    CHECK_EQ_INT(test_fd_count(), fds);
}

TEST(h2_silent_server_deadline)
{
    sbx__h2 *h;
    sbx_error e;
    long long t0;
    int r;
    sbx_allocator al = sbx__allocator(NULL);
    sbx__buf resp;
    NEED_H2FAKE();
    sbx__buf_init(&resp, &al);
    h = sbx__h2_new(NULL, &hs.ep, NULL, "localhost");
    t0 = sbx__now_ms();
    r = fake_unary(h, "silent", "x", 1, &resp, 500, &e);
    CHECK_MSG(r == SBX_ERR_TIMEOUT && strstr(e.msg, "deadline"), "%d %s", r, e.msg);
    CHECK(sbx__now_ms() - t0 >= 450 && sbx__now_ms() - t0 < 2500);
    sbx__h2_free(h);
    sbx__buf_free(&resp);
}

/* Pointed at an HTTP/1.1 server (the REST port, a proxy): said in those words. */
TEST(h2_http1_server)
{
    server relay = {-1, -1, 0, {0, 0, {{{0}}}, {0}, {0}, {0}, {0}}};
    sbx__h2 *h;
    sbx_error e;
    sbx_allocator al = sbx__allocator(NULL);
    sbx__buf resp;
    int r;
    if (server_start(&relay, "tests/fakes/servers/ws_relay.py", "1") != 0) {
        server_stop(&relay);
        CHECK_MSG(0, "ws_relay.py did not start");
        return;
    }
    sbx__buf_init(&resp, &al);
    h = sbx__h2_new(NULL, &relay.ep, NULL, "localhost");
    r = fake_unary(h, "ok", "x", 1, &resp, 5000, &e);
    CHECK_MSG(r == SBX_ERR_PROTOCOL && strstr(e.msg, "answered in HTTP/1 (\"HTTP/1.1 400") &&
                  strstr(e.msg, "is this the gRPC port?"), "%d %s", r, e.msg);
    sbx__h2_free(h);
    sbx__buf_free(&resp);
    server_stop(&relay);
}

/* Over a transport, a connection that died lets go of it at once (not when
   its failed call is freed): a new call reconnects over a new one. */
TEST(h2_transport_reconnect_after_failure)
{
    tr_maker_arg tm;
    tr_counts t;
    sbx__h2 *h;
    sbx__grpc_call *held = NULL;
    sbx_error e;
    const unsigned char *m;
    size_t ml;
    int r, fds;
    sbx_allocator al = sbx__allocator(NULL);
    sbx__buf resp;
    NEED_H2FAKE();
    fds = test_fd_count();
    sbx__buf_init(&resp, &al);
    h = h2_over_tr_sock(&hs.ep, &tm, &t);
    CHECK(sbx__grpc_start(h, "/fake.H2/eof_mid", "x", 1, 1, sbx__deadline(10000), &held, &e) == SBX_OK);
    if (held) {
        r = sbx__grpc_recv(held, &m, &ml, 0, &e);
        CHECK_MSG(r == SBX_ERR_CONNECT, "%d %s", r, e.msg);
    }
    r = fake_unary(h, "ok", "again", 5, &resp, 3000, &e);
    CHECK_MSG(r == SBX_OK && resp.len == 5, "%d %s", r, e.msg);
    CHECK_EQ_INT(t.opens, 2);
    CHECK_EQ_INT(t.closes, 1);
    CHECK_EQ_INT(t.made, 2);
    CHECK_EQ_INT(t.freed, 0); /* the dead one's state goes with its held call */
    sbx__grpc_free(held);
    CHECK_EQ_INT(t.freed, 1);
    sbx__h2_free(h);
    CHECK_EQ_INT(t.closes, 2);
    CHECK_EQ_INT(t.freed, 2);
    sbx__buf_free(&resp);
    CHECK_EQ_INT(test_fd_count(), fds);
}

/* Over the WebSocket route (ws_relay.py in front of h2_fake.py), after a
   GOAWAY that keeps a stream going: a new call goes at once over a new
   connection with a WebSocket of its own (it does not wait the 2 s the old
   stream has left), the old stream still delivers its message and status on
   the old WebSocket, which closes when that call is freed. */
TEST(h2_websocket_goaway_new_calls_do_not_wait)
{
    server relay = {-1, -1, 0, {0, 0, {{{0}}}, {0}, {0}, {0}, {0}}};
    ws_maker_arg wm;
    sbx__h2_trmaker mk;
    sbx__h2 *h;
    sbx__grpc_call *old = NULL;
    sbx_error e;
    const unsigned char *m;
    size_t ml;
    int r, fds, fds_two;
    long long t0, took;
    sbx_allocator al = sbx__allocator(NULL);
    sbx__buf resp;
    NEED_H2FAKE();
    fds = test_fd_count();
    if (!(h = h2_over_ws_relay(&relay, hs.port, &wm, &mk))) return;
    fds += 1; /* the relay's stdin pipe, closed below */
    sbx__buf_init(&resp, &al);
    r = sbx__grpc_start(h, "/fake.H2/goaway_hold", "A", 1, 1, sbx__deadline(10000), &old, &e);
    CHECK_MSG(r == SBX_OK, "%d %s", r, e.msg);
    if (old) {
        r = sbx__grpc_recv(old, &m, &ml, 0, &e); /* after the GOAWAY on the wire */
        CHECK_MSG(r == 1 && ml == 1 && m[0] == 'A', "%d %s", r, e.msg);
        t0 = sbx__now_ms();
        r = fake_unary(h, "ok", "new", 3, &resp, 5000, &e);
        took = sbx__now_ms() - t0;
        CHECK_MSG(r == SBX_OK && resp.len == 3 && memcmp(resp.data, "new", 3) == 0, "%d %s", r, e.msg);
        CHECK_MSG(took < 1000, "the new call took %lld ms (the old stream holds its connection 2 s)", took);
        printf("  new call after GOAWAY: %lld ms\n", took);
        CHECK_EQ_INT(h->connects, 2);
        CHECK_EQ_INT(wm.made, 2);
        fds_two = test_fd_count(); /* two WebSockets open */
        r = sbx__grpc_recv(old, &m, &ml, 0, &e);
        CHECK_MSG(r == 1 && ml == 1 && m[0] == 'A', "%d %s", r, e.msg);
        r = sbx__grpc_recv(old, &m, &ml, 0, &e);
        CHECK_MSG(r == 0 && sbx__grpc_status(old, NULL) == 0, "%d %s", r, e.msg);
        sbx__grpc_free(old);
        CHECK_EQ_INT(test_fd_count(), fds_two - 1); /* the old one closed with its last call */
        r = fake_unary(h, "ok", "more", 4, &resp, 5000, &e);
        CHECK_MSG(r == SBX_OK && resp.len == 4, "%d %s", r, e.msg);
        CHECK_EQ_INT(h->connects, 2);
    }
    sbx__h2_free(h);
    server_stop(&relay);
    CHECK_EQ_INT(test_fd_count(), fds - 1);
    /* a WebSocket that cannot connect (the relay is gone): the call fails
       saying so, and the connection's WebSocket is freed with it (LSan) */
    wm.made = 0;
    h = sbx__h2_new(NULL, &relay.ep, &mk, "localhost");
    r = fake_unary(h, "ok", "x", 1, &resp, 3000, &e);
    CHECK_MSG(r == SBX_ERR_CONNECT && strstr(e.msg, "Connection refused"), "%d %s", r, e.msg);
    printf("  a WebSocket that cannot connect: %s\n", e.msg);
    CHECK_EQ_INT(wm.made, 1);
    CHECK_EQ_INT(h->nconns, 0);
    sbx__h2_free(h);
    sbx__buf_free(&resp);
    CHECK_EQ_INT(test_fd_count(), fds - 1);
}

typedef struct blocked {
    sbx__grpc_call *c;
    int r;
    char why[SBX_ERRMSG_SIZE];
} blocked;

static void *recv_blocked(void *arg)
{
    blocked *b = (blocked *)arg;
    const unsigned char *m;
    size_t ml;
    sbx_error e;
    b->r = sbx__grpc_recv(b->c, &m, &ml, 0, &e);
    memcpy(b->why, e.msg, sizeof b->why);
    return NULL;
}

/* sbx__h2_free with a call still live, and a thread blocked reading it: the
   reader returns SBX_ERR_CLOSED at once, the call is freed after the handle. */
TEST(h2_free_with_live_calls)
{
    sbx__h2 *h;
    sbx_error e;
    blocked b;
    pthread_t th;
    long long t0;
    int fds;
    NEED_H2FAKE();
    fds = test_fd_count();
    h = sbx__h2_new(NULL, &hs.ep, NULL, "localhost");
    memset(&b, 0, sizeof b);
    CHECK(sbx__grpc_start(h, "/fake.H2/silent", "x", 1, 1, 0, &b.c, &e) == SBX_OK);
    if (!b.c) return;
    pthread_create(&th, NULL, recv_blocked, &b);
    {
        struct timespec ts = {0, 200000000L};
        nanosleep(&ts, NULL);
    }
    t0 = sbx__now_ms();
    sbx__h2_free(h);
    pthread_join(th, NULL);
    CHECK(sbx__now_ms() - t0 < 1000);
    CHECK_MSG(b.r == SBX_ERR_CLOSED, "%d %s", b.r, b.why);
    sbx__grpc_free(b.c);
    CHECK_EQ_INT(test_fd_count(), fds);
    {   /* over a transport, whose maker's arg the caller frees right after
           sbx__h2_free: the live call must not use it again (ASan would see
           it); the connection's own transport state goes with the call */
        tr_maker_arg *tm = (tr_maker_arg *)calloc(1, sizeof *tm);
        tr_counts t;
        sbx__grpc_call *c = NULL;
        const unsigned char *m;
        size_t ml;
        h = h2_over_tr_sock(&hs.ep, tm, &t);
        CHECK(sbx__grpc_start(h, "/fake.H2/silent", "x", 1, 1, 0, &c, &e) == SBX_OK);
        sbx__h2_free(h);
        free(tm);
        CHECK_EQ_INT(t.opens, 1);
        CHECK_EQ_INT(t.closes, 1);
        CHECK_EQ_INT(test_fd_count(), fds);
        if (c) {
            CHECK(sbx__grpc_recv(c, &m, &ml, 0, &e) == SBX_ERR_CLOSED);
            sbx__grpc_free(c);
        }
        CHECK_EQ_INT(t.freed, 1);
        CHECK_EQ_INT(test_fd_count(), fds);
    }
}

/* ---- keepalive PING ---------------------------------------------------------------- */

/* h with keepalive shortened for a test (white-box: the handle's fields). */
static sbx__h2 *ka_set(sbx__h2 *h, long keepalive_ms, long ping_timeout_ms)
{
    if (h) {
        h->keepalive_ms = keepalive_ms;
        h->ping_timeout_ms = ping_timeout_ms;
    }
    return h;
}

/* The decimal number a fake answered with (a count of PINGs it saw). */
static long resp_long(const sbx__buf *resp)
{
    char txt[32];
    E2E_FMT(txt, sizeof txt, "%.*s", (int)resp->len, resp->data);
    return atol(txt);
}

/* A peer that vanished without FIN or RST (h2_fake "dead": the response
   headers, then it reads and answers nothing, the connection open): a read
   with a long wait fails with SBX_ERR_CONNECT at keepalive + ping timeout,
   naming the PING, over a plain socket and over a transport; the next call
   reconnects. */
TEST(h2_keepalive_dead_peer)
{
    sbx_allocator al = sbx__allocator(NULL);
    sbx__buf resp;
    int k, fds;
    NEED_H2FAKE();
    fds = test_fd_count();
    sbx__buf_init(&resp, &al);
    for (k = 0; k < 2; k++) {
        tr_maker_arg tm;
        tr_counts t;
        sbx__h2 *h = ka_set(k == 0 ? sbx__h2_new(NULL, &hs.ep, NULL, "localhost") : h2_over_tr_sock(&hs.ep, &tm, &t),
                            300, 500);
        sbx__grpc_call *c = NULL;
        sbx_error e;
        const unsigned char *m;
        size_t ml;
        long long t0, took;
        int r;
        r = sbx__grpc_start(h, "/fake.H2/dead", "x", 1, 1, 0, &c, &e);
        CHECK_MSG(r == SBX_OK, "%d %s", r, e.msg);
        if (r != SBX_OK) {
            sbx__h2_free(h);
            continue;
        }
        t0 = sbx__now_ms();
        r = sbx__grpc_recv(c, &m, &ml, sbx__deadline(20000), &e);
        took = sbx__now_ms() - t0;
        CHECK_MSG(r == SBX_ERR_CONNECT && strstr(e.msg, "no answer to PING in 500 ms"), "%d %s", r, e.msg);
        CHECK_MSG(took >= 650 && took < 4000, "failed after %lld ms (keepalive 300 + ping timeout 500)", took);
        CHECK_EQ_INT(c->s.c->pings, 1);
        CHECK(c->s.c->dead);
        printf("  %s: %lld ms: %s\n", k == 0 ? "socket" : "transport", took, e.msg);
        sbx__grpc_free(c);
        r = fake_unary(h, "ok", "again", 5, &resp, 5000, &e);
        CHECK_MSG(r == SBX_OK && resp.len == 5 && memcmp(resp.data, "again", 5) == 0, "%d %s", r, e.msg);
        CHECK_EQ_INT(h->connects, 2);
        sbx__h2_free(h);
    }
    sbx__buf_free(&resp);
    CHECK_EQ_INT(test_fd_count(), fds);
}

/* Two calls on that dead connection, each read by a thread of its own that
   would wait forever: the read role passes between them across the
   keepalive moments, and both end with the connection's death. */
TEST(h2_keepalive_dead_peer_two_readers)
{
    sbx__h2 *h;
    sbx_error e;
    blocked b[2];
    pthread_t th[2];
    long long t0, took;
    int i, fds;
    NEED_H2FAKE();
    fds = test_fd_count();
    h = ka_set(sbx__h2_new(NULL, &hs.ep, NULL, "localhost"), 300, 500);
    memset(b, 0, sizeof b);
    for (i = 0; i < 2; i++) CHECK(sbx__grpc_start(h, "/fake.H2/dead", "x", 1, 1, 0, &b[i].c, &e) == SBX_OK);
    if (b[0].c && b[1].c) {
        t0 = sbx__now_ms();
        for (i = 0; i < 2; i++) pthread_create(&th[i], NULL, recv_blocked, &b[i]);
        for (i = 0; i < 2; i++) pthread_join(th[i], NULL);
        took = sbx__now_ms() - t0;
        for (i = 0; i < 2; i++)
            CHECK_MSG(b[i].r == SBX_ERR_CONNECT && strstr(b[i].why, "no answer to PING"), "%d %s", b[i].r, b[i].why);
        CHECK_MSG(took >= 650 && took < 4000, "failed after %lld ms", took);
        CHECK_EQ_INT(b[0].c->s.c->pings, 1);
    }
    for (i = 0; i < 2; i++) sbx__grpc_free(b[i].c);
    CHECK_EQ_INT(h->connects, 1);
    sbx__h2_free(h);
    CHECK_EQ_INT(test_fd_count(), fds);
}

/* A live stream that sends nothing for several keepalive intervals (h2_fake
   "quiet", whose h2 acks the PINGs): PINGs go out and are acked, the call
   is not failed, and the server counted the PINGs it got. */
TEST(h2_keepalive_quiet_stream_lives)
{
    sbx_allocator al = sbx__allocator(NULL);
    sbx__buf resp;
    sbx_error e;
    sbx__h2 *h;
    long n = -1;
    int r;
    NEED_H2FAKE();
    sbx__buf_init(&resp, &al);
    h = ka_set(sbx__h2_new(NULL, &hs.ep, NULL, "localhost"), 200, 1000);
    r = fake_unary(h, "quiet", "1500", 4, &resp, 10000, &e);
    CHECK_MSG(r == SBX_OK, "%d %s", r, e.msg);
    if (r == SBX_OK && h->cur) {
        n = resp_long(&resp);
        printf("  1.5 s quiet, keepalive 200 ms: %lu PINGs sent, %lu acked, %ld seen by the server\n",
               h->cur->pings, h->cur->ping_acks, n);
        CHECK_MSG(n >= 4, "the server saw %ld PINGs", n);
        /* one more may have gone out after the server stopped reading for its answer */
        CHECK_MSG(h->cur->pings == (unsigned long)n || h->cur->pings == (unsigned long)n + 1, "%lu sent, %ld seen",
                  h->cur->pings, n);
        CHECK_EQ_INT((long)h->cur->ping_acks, n);
        CHECK_EQ_INT(h->cur->ping_stray, 0);
        CHECK(!h->cur->dead);
    }
    CHECK_EQ_INT(h->connects, 1);
    sbx__h2_free(h);
    sbx__buf_free(&resp);
}

/* The answer to a PING that came while nobody was reading counts: the next
   read, starting past the ping's deadline, finds it instead of failing
   (h2_fake "late_ack" holds the ack until 600 ms, after our read ended). */
TEST(h2_keepalive_answer_while_nobody_reads)
{
    sbx__h2 *h;
    sbx__grpc_call *c = NULL;
    sbx_error e;
    const unsigned char *m;
    size_t ml;
    int r;
    struct timespec ts = {1, 0};
    NEED_H2FAKE();
    h = ka_set(sbx__h2_new(NULL, &hs.ep, NULL, "localhost"), 200, 300);
    r = sbx__grpc_start(h, "/fake.H2/late_ack", "600", 3, 1, 0, &c, &e);
    CHECK_MSG(r == SBX_OK, "%d %s", r, e.msg);
    if (c) {
        r = sbx__grpc_recv(c, &m, &ml, sbx__deadline(400), &e); /* a PING goes out at 200 ms */
        CHECK_MSG(r == SBX_ERR_TIMEOUT, "%d %s", r, e.msg);
        CHECK_EQ_INT(c->s.c->pings, 1);
        nanosleep(&ts, NULL); /* its ack arrives at 600 ms; nobody reads */
        r = sbx__grpc_recv(c, &m, &ml, sbx__deadline(5000), &e);
        CHECK_MSG(r == 1, "%d %s", r, e.msg);
        r = sbx__grpc_recv(c, &m, &ml, sbx__deadline(5000), &e);
        CHECK_MSG(r == 0 && sbx__grpc_status(c, NULL) == 0, "%d %s", r, e.msg);
        CHECK(c->s.c->ping_acks >= 1 && !c->s.c->dead);
        sbx__grpc_free(c);
    }
    CHECK_EQ_INT(h->connects, 1);
    sbx__h2_free(h);
}

/* No stream open, nobody reading: nothing is sent, however long. */
TEST(h2_keepalive_not_without_streams)
{
    sbx_allocator al = sbx__allocator(NULL);
    sbx__buf resp;
    sbx_error e;
    sbx__h2 *h;
    int r;
    struct timespec ts = {2, 0};
    NEED_H2FAKE();
    sbx__buf_init(&resp, &al);
    h = ka_set(sbx__h2_new(NULL, &hs.ep, NULL, "localhost"), 500, 1000);
    r = fake_unary(h, "count", "", 0, &resp, 5000, &e);
    CHECK_MSG(r == SBX_OK && resp.len == 1 && resp.data[0] == '0', "%d %s", r, e.msg);
    nanosleep(&ts, NULL); /* four keepalive intervals without a stream */
    r = fake_unary(h, "count", "", 0, &resp, 5000, &e);
    CHECK_MSG(r == SBX_OK && resp.len == 1 && resp.data[0] == '0', "%d %s: the server saw PINGs", r, e.msg);
    CHECK(h->cur && h->cur->pings == 0);
    CHECK_EQ_INT(h->connects, 1);
    sbx__h2_free(h);
    sbx__buf_free(&resp);
}

/* PING acks that are not the answer to ours: ignored, never counted as
   acks (RFC 9113 6.7 makes them no error). Unsolicited ones do not disturb
   a call; acks with the wrong data (h2_fake "wrong_ack") are not taken for
   ours, but, as any bytes from the server, they prove it alive: the call
   lives on past several ping timeouts. */
TEST(h2_keepalive_stray_acks)
{
    sbx_allocator al = sbx__allocator(NULL);
    sbx__buf resp;
    sbx_error e;
    sbx__h2 *h;
    int r;
    NEED_H2FAKE();
    sbx__buf_init(&resp, &al);
    h = sbx__h2_new(NULL, &hs.ep, NULL, "localhost");
    r = fake_unary(h, "stray_ack", "hello", 5, &resp, 5000, &e);
    CHECK_MSG(r == SBX_OK && resp.len == 5 && memcmp(resp.data, "hello", 5) == 0, "%d %s", r, e.msg);
    CHECK(h->cur && h->cur->ping_stray == 2 && h->cur->ping_acks == 0 && !h->cur->dead);
    sbx__h2_free(h);
    h = ka_set(sbx__h2_new(NULL, &hs.ep, NULL, "localhost"), 200, 300);
    r = fake_unary(h, "wrong_ack", "1500", 4, &resp, 10000, &e);
    CHECK_MSG(r == SBX_OK, "%d %s", r, e.msg);
    if (r == SBX_OK && h->cur) {
        long n = resp_long(&resp);
        CHECK_MSG(n >= 3, "the server saw %ld PINGs", n);
        CHECK_EQ_INT(h->cur->ping_acks, 0);
        CHECK_EQ_INT((long)h->cur->ping_stray, n);
    }
    sbx__h2_free(h);
    sbx__buf_free(&resp);
}

/* grpc-go's answer to pings too often (h2_fake "calm"): GOAWAY
   ENHANCE_YOUR_CALM too_many_pings keeping our stream, then the connection
   closes: the call fails saying so and naming SBX_H2_KEEPALIVE_MS, the
   handle doubles its interval, the next call reconnects. */
TEST(h2_keepalive_goaway_too_many_pings)
{
    sbx_allocator al = sbx__allocator(NULL);
    sbx__buf resp;
    sbx_error e;
    sbx__h2 *h;
    int r;
    NEED_H2FAKE();
    sbx__buf_init(&resp, &al);
    h = ka_set(sbx__h2_new(NULL, &hs.ep, NULL, "localhost"), 200, 2000);
    r = fake_unary(h, "calm", "x", 1, &resp, 10000, &e);
    CHECK_MSG(r == SBX_ERR_CONNECT && strstr(e.msg, "closed by the server") &&
                  strstr(e.msg, "after GOAWAY (ENHANCE_YOUR_CALM: too_many_pings; the server allows fewer keepalive "
                                "PINGs than one per 200 ms of silence (SBX_H2_KEEPALIVE_MS): the next connection "
                                "waits 400 ms)"), "%d %s", r, e.msg);
    CHECK_EQ_INT(h->keepalive_ms, 400);
    r = fake_unary(h, "ok", "again", 5, &resp, 5000, &e);
    CHECK_MSG(r == SBX_OK && resp.len == 5, "%d %s", r, e.msg);
    CHECK_EQ_INT(h->connects, 2);
    sbx__h2_free(h);
    sbx__buf_free(&resp);
}

/* The real grpcio server. With a ping policy that allows it, a quiet call
   (Sleep) lives through PINGs every 200 ms, all acked. With gRPC's DEFAULT
   policy (5 minutes between pings while the server sends nothing, 2
   strikes), the same call dies of GOAWAY ENHANCE_YOUR_CALM too_many_pings
   after the fourth PING, which is why SBX_H2_KEEPALIVE_MS is 5 minutes: the
   message says so, the handle's next connection waits twice as long, and
   the next call works. */
TEST(grpcio_keepalive_policy)
{
    server ps = {-1, -1, 0, {0, 0, {{{0}}}, {0}, {0}, {0}, {0}}};
    sbx_allocator al = sbx__allocator(NULL);
    sbx__buf resp;
    sbx_error e;
    sbx__h2 *h;
    long long t0;
    int r;
    if (!need_grpc()) SKIP("no grpcio server: /usr/bin/python3 lacks grpc (apt-get install -y python3-grpcio)");
    sbx__buf_init(&resp, &al);
    if (server_start(&ps, "tests/fakes/servers/grpc_echo.py", "pings") != 0) {
        server_stop(&ps);
        CHECK_MSG(0, "grpc_echo.py pings did not start");
    } else {
        h = ka_set(sbx__h2_new(NULL, &ps.ep, NULL, "localhost"), 200, 2000);
        r = sbx__grpc_unary(h, "/test.Echo/Sleep", "1500", 4, &resp, 0, NULL, sbx__deadline(10000), &e);
        CHECK_MSG(r == SBX_OK && resp.len == 5, "%d %s", r, e.msg);
        if (h->cur) {
            printf("  grpcio allowing 100 ms: %lu PINGs in 1.5 s, %lu acked\n", h->cur->pings, h->cur->ping_acks);
            CHECK_MSG(h->cur->pings >= 4, "%lu PINGs", h->cur->pings);
            CHECK(h->cur->ping_acks + 1 >= h->cur->pings);
            CHECK_EQ_INT(h->cur->ping_stray, 0);
        }
        CHECK_EQ_INT(h->connects, 1);
        sbx__h2_free(h);
        server_stop(&ps);
    }
    h = ka_set(sbx__h2_new(NULL, &gs.ep, NULL, "localhost"), 200, 2000);
    t0 = sbx__now_ms();
    r = sbx__grpc_unary(h, "/test.Echo/Sleep", "5000", 4, &resp, 0, NULL, sbx__deadline(10000), &e);
    printf("  grpcio's default policy, PINGs every 200 ms: %lld ms: %s\n", sbx__now_ms() - t0, e.msg);
    CHECK_MSG(r == SBX_ERR_CONNECT && strstr(e.msg, "ENHANCE_YOUR_CALM: too_many_pings") &&
                  strstr(e.msg, "SBX_H2_KEEPALIVE_MS") && strstr(e.msg, "waits 400 ms"), "%d %s", r, e.msg);
    CHECK(sbx__now_ms() - t0 < 4500); /* not the 5 s Sleep's end */
    CHECK_EQ_INT(h->keepalive_ms, 400);
    r = sbx__grpc_unary(h, "/test.Echo/Unary", "after", 5, &resp, 0, NULL, sbx__deadline(10000), &e);
    CHECK_MSG(r == SBX_OK && resp.len == 5, "%d %s", r, e.msg);
    CHECK_EQ_INT(h->connects, 2);
    sbx__h2_free(h);
    sbx__buf_free(&resp);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    RUN(hpack_rfc7541_examples);
    RUN(hpack_integers);
    RUN(huffman_tables_derived);
    RUN(huffman_bad_input);
    RUN(huffman_vs_python_hpack);
    RUN(hpack_size_updates_and_limits);
    RUN(protobuf_round_trip);
    RUN(grpc_status_mapping);
    RUN(grpcio_unary_and_streaming);
    RUN(grpcio_over_transport_hook);
    RUN(grpcio_16_threads_one_connection);
    RUN(grpcio_unread_call_does_not_stall_others);
    RUN(grpcio_over_websocket_portforward);
    RUN(grpcio_deadlines);
    RUN(grpcio_status_codes);
    RUN(grpcio_answer_limits);
    RUN(grpcio_stream_ids_run_out);
    RUN(h2_well_formed_oddities);
    RUN(h2_goaway_mid_stream);
    RUN(h2_rst_stream);
    RUN(h2_flow_control_windows);
    RUN(h2_hostile_answers);
    RUN(h2_silent_server_deadline);
    RUN(h2_http1_server);
    RUN(h2_transport_reconnect_after_failure);
    RUN(h2_websocket_goaway_new_calls_do_not_wait);
    RUN(h2_free_with_live_calls);
    RUN(h2_keepalive_dead_peer);
    RUN(h2_keepalive_dead_peer_two_readers);
    RUN(h2_keepalive_quiet_stream_lives);
    RUN(h2_keepalive_answer_while_nobody_reads);
    RUN(h2_keepalive_not_without_streams);
    RUN(h2_keepalive_stray_acks);
    RUN(h2_keepalive_goaway_too_many_pings);
    RUN(grpcio_keepalive_policy);
    server_stop(&gs);
    server_stop(&hs);
    return test_summary("test_h2");
}
