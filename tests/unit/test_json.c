/* tests/unit/test_json.c - white-box tests of the >>json section of sandbox.h:
   the strict scanner (grammar, errors and their offsets, depth limit, token
   layout and counts, input against a guard page), lookups, unescaping,
   numbers, the string writer, and the JSONTestSuite vectors when present
   ($SBX_JSONTESTSUITE, else ../shared/testdata/JSONTestSuite/test_parsing
   relative to the repository, where make test runs). */
#define SANDBOX_IMPLEMENTATION
#include "sandbox.h"
#include "test.h"
#include "json_walk.h"

#include <dirent.h>
#include <sys/mman.h>

#define NT 512
static sbx__jtok toks[NT];

/* ---- helpers ------------------------------------------------------------ */

/* Input placed so that its last byte is the last byte before a PROT_NONE page. */
typedef struct guard {
    char *map;
    size_t maplen;
    char *data;
} guard;

static char *guard_put(guard *g, const void *src, size_t n)
{
    size_t ps = (size_t)sysconf(_SC_PAGESIZE), pages = (n + ps - 1) / ps + 1;
    int fd = open("/dev/zero", O_RDWR);
    g->map = NULL;
    g->data = NULL;
    if (fd < 0) return NULL;
    g->maplen = pages * ps;
    g->map = (char *)mmap(NULL, g->maplen, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
    close(fd);
    if (g->map == (char *)MAP_FAILED) { g->map = NULL; return NULL; }
    if (mprotect(g->map + (pages - 1) * ps, ps, PROT_NONE) != 0) {
        munmap(g->map, g->maplen);
        g->map = NULL;
        return NULL;
    }
    g->data = g->map + (pages - 1) * ps - n;
    if (n) memcpy(g->data, src, n);
    return g->data;
}

static void guard_free(guard *g)
{
    if (g->map) munmap(g->map, g->maplen);
    g->map = NULL;
}

/* Parse n bytes placed against a guard page. */
static int gparse(const char *s, size_t n, sbx__jtok *t, int nt, size_t *errpos)
{
    guard g;
    int r;
    char *d = guard_put(&g, s, n);
    if (!d) return -100;
    r = sbx__json_parse_pos(d, n, t, nt, errpos);
    guard_free(&g);
    return r;
}

static int gparse_s(const char *s, sbx__jtok *t, int nt, size_t *errpos)
{
    return gparse(s, strlen(s), t, nt, errpos);
}

static int P(const char *s)
{
    return sbx__json_parse(s, strlen(s), toks, NT);
}

/* Allocator that counts, and can be told to fail. */
typedef struct countalloc {
    int live, calls, fail;
} countalloc;
static void *ca_alloc(size_t n, void *u)
{
    countalloc *c = (countalloc *)u;
    c->calls++;
    if (c->fail) return NULL;
    c->live++;
    return malloc(n);
}
static void *ca_realloc(void *p, size_t n, void *u)
{
    countalloc *c = (countalloc *)u;
    c->calls++;
    if (c->fail) return NULL;
    if (!p) c->live++;
    return realloc(p, n);
}
static void ca_free(void *p, void *u)
{
    countalloc *c = (countalloc *)u;
    if (p) c->live--;
    free(p);
}
static sbx_allocator ca_make(countalloc *c, int fail)
{
    sbx_allocator a;
    c->live = c->calls = 0;
    c->fail = fail;
    a.alloc = ca_alloc;
    a.realloc = ca_realloc;
    a.free = ca_free;
    a.user = c;
    return a;
}

/* Field by field: the struct has padding that memcmp would compare. */
static int toks_same(const sbx__jtok *a, const sbx__jtok *b, int n)
{
    int i;
    for (i = 0; i < n; i++)
        if (a[i].type != b[i].type || a[i].start != b[i].start || a[i].end != b[i].end || a[i].size != b[i].size ||
            a[i].next != b[i].next)
            return 0;
    return 1;
}

static int tok_is(const char *js, int i, int type, const char *text, int size, int next)
{
    const sbx__jtok *t = &toks[i];
    size_t n = strlen(text);
    return t->type == type && t->end - t->start == n && memcmp(js + t->start, text, n) == 0 && t->size == size &&
           t->next == next;
}

/* Unescape token i of js into a static buffer; NULL when that fails. */
static char ubuf[4096];
static size_t ulen;
static const char *U(const char *js, int i)
{
    return sbx__json_unescape(js, toks, i, ubuf, sizeof ubuf, &ulen) == 0 ? ubuf : NULL;
}

/* ---- scanner -------------------------------------------------------------- */

TEST(token_layout)
{
    const char *js = "{\"a\":[1,2,{\"b\":null}],\"c\":\"x\",\"d\":{},\"e\":[]}";
    int n = P(js);
    CHECK_EQ_INT(n, 14);
    CHECK(tok_is(js, 0, SBX__JSON_OBJECT, js, 4, 14));
    CHECK(tok_is(js, 1, SBX__JSON_STRING, "a", 0, 2));
    CHECK(tok_is(js, 2, SBX__JSON_ARRAY, "[1,2,{\"b\":null}]", 3, 8));
    CHECK(tok_is(js, 3, SBX__JSON_NUMBER, "1", 0, 4));
    CHECK(tok_is(js, 4, SBX__JSON_NUMBER, "2", 0, 5));
    CHECK(tok_is(js, 5, SBX__JSON_OBJECT, "{\"b\":null}", 1, 8));
    CHECK(tok_is(js, 6, SBX__JSON_STRING, "b", 0, 7));
    CHECK(tok_is(js, 7, SBX__JSON_NULL, "null", 0, 8));
    CHECK(tok_is(js, 8, SBX__JSON_STRING, "c", 0, 9));
    CHECK(tok_is(js, 9, SBX__JSON_STRING, "x", 0, 10));
    CHECK(tok_is(js, 11, SBX__JSON_OBJECT, "{}", 0, 12));
    CHECK(tok_is(js, 13, SBX__JSON_ARRAY, "[]", 0, 14));
    CHECK(json_walk(js, strlen(js), toks, n) == NULL);
}

TEST(scalars_at_top_level)
{
    const char *js;
    CHECK_EQ_INT(P(js = " \t\r\n-12.5e+3 \n"), 1);
    CHECK(tok_is(js, 0, SBX__JSON_NUMBER, "-12.5e+3", 0, 1));
    CHECK_EQ_INT(P(js = "true"), 1);
    CHECK(tok_is(js, 0, SBX__JSON_TRUE, "true", 0, 1));
    CHECK_EQ_INT(P(js = "false"), 1);
    CHECK(tok_is(js, 0, SBX__JSON_FALSE, "false", 0, 1));
    CHECK_EQ_INT(P(js = "null"), 1);
    CHECK(tok_is(js, 0, SBX__JSON_NULL, "null", 0, 1));
    CHECK_EQ_INT(P(js = "\"\""), 1);
    CHECK(tok_is(js, 0, SBX__JSON_STRING, "", 0, 1));
    CHECK_EQ_INT(toks[0].start, 1);
    CHECK_EQ_INT(P(js = "0"), 1);
    CHECK_EQ_INT(P(js = "[0,-0,0.0,1E5,1e-5,-0.5E+10,123456789012345678901234567890]"), 8);
    CHECK_EQ_INT(sbx__json_parse(NULL, 0, toks, NT), SBX__JSON_ERR_PARTIAL);
}

typedef struct errcase {
    const char *s;
    size_t n;     /* 0: strlen */
    int rc;
    size_t pos;
} errcase;

TEST(errors_and_offsets)
{
    static const errcase cases[] = {
        {"", 0, SBX__JSON_ERR_PARTIAL, 0},
        {"  \n\t\r", 0, SBX__JSON_ERR_PARTIAL, 5},
        {"[1,]", 0, SBX__JSON_ERR_INVALID, 3},
        {"[,1]", 0, SBX__JSON_ERR_INVALID, 1},
        {"[1 2]", 0, SBX__JSON_ERR_INVALID, 3},
        {"[1,,2]", 0, SBX__JSON_ERR_INVALID, 3},
        {"{\"a\" 1}", 0, SBX__JSON_ERR_INVALID, 5},
        {"{\"a\":1,}", 0, SBX__JSON_ERR_INVALID, 7},
        {"{\"a\":1 \"b\":2}", 0, SBX__JSON_ERR_INVALID, 7},
        {"{,}", 0, SBX__JSON_ERR_INVALID, 1},
        {"{1:2}", 0, SBX__JSON_ERR_INVALID, 1},
        {"{\"a\"::1}", 0, SBX__JSON_ERR_INVALID, 5},
        {"{\"a\":}", 0, SBX__JSON_ERR_INVALID, 5},
        {"[", 0, SBX__JSON_ERR_PARTIAL, 1},
        {"[1", 0, SBX__JSON_ERR_PARTIAL, 2},
        {"[1,", 0, SBX__JSON_ERR_PARTIAL, 3},
        {"{\"a\"", 0, SBX__JSON_ERR_PARTIAL, 4},
        {"{\"a\" ", 0, SBX__JSON_ERR_PARTIAL, 5},
        {"{\"a\":", 0, SBX__JSON_ERR_PARTIAL, 5},
        {"]", 0, SBX__JSON_ERR_INVALID, 0},
        {"}", 0, SBX__JSON_ERR_INVALID, 0},
        {"[}", 0, SBX__JSON_ERR_INVALID, 1},
        {"{]", 0, SBX__JSON_ERR_INVALID, 1},
        {"[1}", 0, SBX__JSON_ERR_INVALID, 2},
        {"{\"a\":1]", 0, SBX__JSON_ERR_INVALID, 6},
        {"[1]]", 0, SBX__JSON_ERR_INVALID, 3},
        {"{\"a\":1}}", 0, SBX__JSON_ERR_INVALID, 7},
        {"1 2", 0, SBX__JSON_ERR_INVALID, 2},
        {"[] []", 0, SBX__JSON_ERR_INVALID, 3},
        {"01", 0, SBX__JSON_ERR_INVALID, 1},
        {"-01", 0, SBX__JSON_ERR_INVALID, 2},
        {"00", 0, SBX__JSON_ERR_INVALID, 1},
        {"+1", 0, SBX__JSON_ERR_INVALID, 0},
        {".5", 0, SBX__JSON_ERR_INVALID, 0},
        {"[.5]", 0, SBX__JSON_ERR_INVALID, 1},
        {"1.", 0, SBX__JSON_ERR_PARTIAL, 2},
        {"[1.]", 0, SBX__JSON_ERR_INVALID, 3},
        {"1.e3", 0, SBX__JSON_ERR_INVALID, 2},
        {"1e", 0, SBX__JSON_ERR_PARTIAL, 2},
        {"1E-", 0, SBX__JSON_ERR_PARTIAL, 3},
        {"[1e]", 0, SBX__JSON_ERR_INVALID, 3},
        {"1ex", 0, SBX__JSON_ERR_INVALID, 2},
        {"1e+-1", 0, SBX__JSON_ERR_INVALID, 3},
        {"-", 0, SBX__JSON_ERR_PARTIAL, 1},
        {"-a", 0, SBX__JSON_ERR_INVALID, 1},
        {"--1", 0, SBX__JSON_ERR_INVALID, 1},
        {"- 1", 0, SBX__JSON_ERR_INVALID, 1},
        {"0x10", 0, SBX__JSON_ERR_INVALID, 1},
        {"1.5.", 0, SBX__JSON_ERR_INVALID, 3},
        {"[NaN]", 0, SBX__JSON_ERR_INVALID, 1},
        {"[Infinity]", 0, SBX__JSON_ERR_INVALID, 1},
        {"[-Infinity]", 0, SBX__JSON_ERR_INVALID, 2},
        {"tru", 0, SBX__JSON_ERR_PARTIAL, 3},
        {"[nul", 0, SBX__JSON_ERR_PARTIAL, 4},
        {"trUe", 0, SBX__JSON_ERR_INVALID, 2},
        {"True", 0, SBX__JSON_ERR_INVALID, 0},
        {"nulll", 0, SBX__JSON_ERR_INVALID, 4},
        {"[truefalse]", 0, SBX__JSON_ERR_INVALID, 5},
        {"'a'", 0, SBX__JSON_ERR_INVALID, 0},
        {"\"abc", 0, SBX__JSON_ERR_PARTIAL, 4},
        {"\"\\", 0, SBX__JSON_ERR_PARTIAL, 2},
        {"\"\\x\"", 0, SBX__JSON_ERR_INVALID, 2},
        {"\"\\U0041\"", 0, SBX__JSON_ERR_INVALID, 2},
        {"\"\\'\"", 0, SBX__JSON_ERR_INVALID, 2},
        {"\"\\u12G4\"", 0, SBX__JSON_ERR_INVALID, 5},
        {"\"\\u12", 0, SBX__JSON_ERR_PARTIAL, 5},
        {"\"a\tb\"", 0, SBX__JSON_ERR_INVALID, 2},
        {"\"a\nb\"", 0, SBX__JSON_ERR_INVALID, 2},
        {"\"a\0b\"", 5, SBX__JSON_ERR_INVALID, 2},
        {"[1]\0", 4, SBX__JSON_ERR_INVALID, 3},
        {"\0", 1, SBX__JSON_ERR_INVALID, 0},
        {"\xef\xbb\xbf{}", 0, SBX__JSON_ERR_INVALID, 0},
        {"[\f1]", 0, SBX__JSON_ERR_INVALID, 1},
        {"[\v1]", 0, SBX__JSON_ERR_INVALID, 1},
        {"[\xc2\xa0" "1]", 0, SBX__JSON_ERR_INVALID, 1},
        {"//c\n1", 0, SBX__JSON_ERR_INVALID, 0},
        {"[1]//", 0, SBX__JSON_ERR_INVALID, 3},
        {"{\"a\":1,\"a\"}", 0, SBX__JSON_ERR_INVALID, 10},
        {"{'a':1}", 0, SBX__JSON_ERR_INVALID, 1},
        {"{a:1}", 0, SBX__JSON_ERR_INVALID, 1},
        {"{\"a\":1", 0, SBX__JSON_ERR_PARTIAL, 6},
    };
    size_t k;
    for (k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        size_t n = cases[k].n ? cases[k].n : strlen(cases[k].s), pos = 9999;
        int r = gparse(cases[k].s, n, toks, NT, &pos);
        CHECK_MSG(r == cases[k].rc && pos == cases[k].pos, "case %u \"%s\": got %d at %u, want %d at %u",
                  (unsigned)k, cases[k].s, r, (unsigned)pos, cases[k].rc, (unsigned)cases[k].pos);
        /* the counting pass agrees */
        CHECK_EQ_INT(sbx__json_parse(cases[k].s, n, NULL, 0), cases[k].rc);
    }
}

TEST(strings_and_utf8)
{
    static const char *valid[] = {
        "", "a", "\\\"\\\\\\/\\b\\f\\n\\r\\t", "\\u0000", "\\uFFFF", "\\ud800", "\\udc00x", "\x7f",
        "\xc2\x80", "\xdf\xbf", "\xe0\xa0\x80", "\xed\x9f\xbf", "\xee\x80\x80", "\xef\xbf\xbf",
        "\xf0\x90\x80\x80", "\xf4\x8f\xbf\xbf", "\xe2\x82\xac", "\xf0\x9f\x98\x80 ok",
    };
    static const char *invalid[] = {
        "\xc0\x80", "\xc1\xbf", "\xe0\x9f\xbf", "\xe0\x80\x80", "\xed\xa0\x80", "\xed\xbf\xbf",
        "\xf0\x8f\xbf\xbf", "\xf0\x80\x80\x80", "\xf4\x90\x80\x80", "\xf5\x80\x80\x80", "\xf8\x88\x80\x80\x80",
        "\xfc\x84\x80\x80\x80\x80", "\xfe", "\xff", "\x80", "\xbf", "\xc2", "\xe2\x82", "\xf0\x90\x80", "\xc2\x41",
        "\xe2\x41\x82", "\xf0\x90\x41\x80", "a\x1f", "\x01",
    };
    char doc[64];
    size_t k, pos;
    for (k = 0; k < sizeof valid / sizeof valid[0]; k++) {
        snprintf(doc, sizeof doc, "\"%s\"", valid[k]);
        CHECK_MSG(gparse_s(doc, toks, NT, &pos) == 1, "valid string %u", (unsigned)k);
    }
    for (k = 0; k < sizeof invalid / sizeof invalid[0]; k++) {
        int r;
        pos = 9999;
        snprintf(doc, sizeof doc, "\"%s\"", invalid[k]);
        r = gparse_s(doc, toks, NT, &pos);
        CHECK_MSG(r == SBX__JSON_ERR_INVALID && pos >= 1 && pos < strlen(doc), "invalid string %u: %d at %u",
                  (unsigned)k, r, (unsigned)pos);
    }
    /* a sequence cut by the end of the input is PARTIAL, not INVALID */
    CHECK_EQ_INT(gparse_s("\"\xe2\x82", toks, NT, NULL), SBX__JSON_ERR_PARTIAL);
    CHECK_EQ_INT(gparse_s("\"\xf0\x90\x80", toks, NT, NULL), SBX__JSON_ERR_PARTIAL);
    CHECK_EQ_INT(gparse_s("\"\xf0\x80", toks, NT, NULL), SBX__JSON_ERR_INVALID);   /* overlong already */
}

/* Every byte 0x00-0xFF: as a whole document, and as the only byte of a string. */
TEST(every_single_byte)
{
    int b;
    for (b = 0; b < 256; b++) {
        char doc[3];
        int want, r;
        size_t pos = 9999;
        doc[0] = (char)b;
        if (b >= '0' && b <= '9') want = 1;
        else if (b == ' ' || b == '\t' || b == '\n' || b == '\r') want = SBX__JSON_ERR_PARTIAL;
        else if (b && strchr("{[\"-tfn", b)) want = SBX__JSON_ERR_PARTIAL;
        else want = SBX__JSON_ERR_INVALID;
        r = gparse(doc, 1, toks, NT, &pos);
        CHECK_MSG(r == want && pos == (want == SBX__JSON_ERR_INVALID ? 0u : want == 1 ? 9999u : 1u),
                  "byte 0x%02x alone: %d at %u", b, r, (unsigned)pos);

        doc[0] = '"';
        doc[1] = (char)b;
        doc[2] = '"';
        pos = 9999;
        r = gparse(doc, 3, toks, NT, &pos);
        if (b < 0x20) {
            CHECK_MSG(r == SBX__JSON_ERR_INVALID && pos == 1, "byte 0x%02x in a string: %d", b, r);
        } else if (b == '"') {
            CHECK_MSG(r == SBX__JSON_ERR_INVALID && pos == 2, "three quotes: %d at %u", r, (unsigned)pos);
        } else if (b == '\\') {
            CHECK_MSG(r == SBX__JSON_ERR_PARTIAL, "\"\\\": %d", r);
        } else if (b < 0x80) {
            CHECK_MSG(r == 1 && U(doc, 0) && ulen == 1 && (unsigned char)ubuf[0] == b, "byte 0x%02x: %d", b, r);
        } else {
            /* a lone continuation byte, an impossible byte, or a lead byte whose
               sequence is cut short by the closing quote */
            CHECK_MSG(r == SBX__JSON_ERR_INVALID && pos == 1, "byte 0x%02x in a string: %d", b, r);
        }
    }
}

static char *nest(char *buf, int depth, const char *open, const char *mid, const char *close)
{
    int k;
    buf[0] = '\0';
    for (k = 0; k < depth; k++) strcat(buf, open);
    strcat(buf, mid);
    for (k = 0; k < depth; k++) strcat(buf, close);
    return buf;
}

TEST(depth_limit)
{
    static char buf[200000];
    size_t pos = 0;
    int d = SBX_JSON_MAX_DEPTH;
    CHECK_EQ_INT(d, 64);
    CHECK_EQ_INT(gparse_s(nest(buf, d, "[", "", "]"), toks, NT, NULL), d);
    CHECK_EQ_INT(sbx__json_parse(buf, strlen(buf), NULL, 0), d);
    CHECK(json_walk(buf, strlen(buf), toks, d) == NULL);
    CHECK_EQ_INT(gparse_s(nest(buf, d + 1, "[", "", "]"), toks, NT, &pos), SBX__JSON_ERR_DEPTH);
    CHECK_EQ_INT(pos, d);
    CHECK_EQ_INT(sbx__json_parse(buf, strlen(buf), NULL, 0), SBX__JSON_ERR_DEPTH);
    /* objects count the same way; the scalar at the bottom is not a level */
    CHECK_EQ_INT(gparse_s(nest(buf, d, "{\"a\":", "1", "}"), toks, NT, NULL), 2 * d + 1);
    CHECK_EQ_INT(gparse_s(nest(buf, d + 1, "{\"a\":", "1", "}"), toks, NT, &pos), SBX__JSON_ERR_DEPTH);
    CHECK_EQ_INT(pos, 5 * d);
    CHECK_EQ_INT(gparse_s(nest(buf, d / 2, "[{\"k\":", "1", "}]"), toks, NT, NULL), 3 * (d / 2) + 1);
    CHECK_EQ_INT(gparse_s(nest(buf, d / 2, "[{\"k\":", "[]", "}]"), toks, NT, NULL), SBX__JSON_ERR_DEPTH);
    /* the limit is checked as containers open: an unclosed nest says DEPTH, not PARTIAL */
    memset(buf, '[', (size_t)d + 1);
    CHECK_EQ_INT(sbx__json_parse(buf, (size_t)d, toks, NT), SBX__JSON_ERR_PARTIAL);
    CHECK_EQ_INT(sbx__json_parse(buf, (size_t)d + 1, toks, NT), SBX__JSON_ERR_DEPTH);
    /* and the depth goes back down: many shallow siblings are fine */
    strcpy(buf, "[");
    for (d = 0; d < 1000; d++) strcat(buf, d ? ",[[1]]" : "[[1]]");
    strcat(buf, "]");
    CHECK_EQ_INT(sbx__json_parse(buf, strlen(buf), NULL, 0), 3001);
    memset(buf, '[', 100000);
    CHECK_EQ_INT(gparse(buf, 100000, NULL, 0, NULL), SBX__JSON_ERR_DEPTH);
}

static const char *sample_docs[] = {
    "[]", "{}", "[[]]", "{\"a\":{}}", "[1,\"two\",true,false,null,{\"x\":[-1.5e3]}]",
    "{\"a\":[1,2,{\"b\":null}],\"c\":\"x\\u00e9\\n\",\"d\":{},\"e\":[]}",
    "{\"apiVersion\":\"extensions.agents.x-k8s.io/v1beta1\",\"kind\":\"SandboxClaim\",\"metadata\":"
    "{\"name\":\"sandbox-claim-3f9a01bc\",\"namespace\":\"default\",\"resourceVersion\":\"12346\","
    "\"annotations\":{\"agents.x-k8s.io/sandbox-name\":\"python-pool-x7k2q\",\"a.b\":\"dot\"},"
    "\"labels\":{\"agents.x-k8s.io/created-by\":\"c-client\"}},\"spec\":{\"warmPoolRef\":{\"name\":"
    "\"python-pool\"}},\"status\":{\"sandbox\":{\"name\":\"python-pool-x7k2q\",\"podIPs\":[\"10.244.1.17\"]},"
    "\"conditions\":[{\"type\":\"Finished\",\"status\":\"False\"},{\"type\":\"Ready\",\"status\":\"True\","
    "\"reason\":\"DependenciesReady\",\"message\":\"Pod is Ready\",\"observedGeneration\":1,"
    "\"lastTransitionTime\":\"2026-08-22T10:00:03Z\"}]}}",
    "{\"type\":\"ERROR\",\"object\":{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"metadata\":{},"
    "\"status\":\"Failure\",\"message\":\"too old resource version: 12345 (12399)\",\"reason\":\"Expired\","
    "\"code\":410}}",
    " [ \"\\ud83d\\ude00\" , \"\\ud800\" , \"\xf0\x9f\x98\x80\" ] ",
    "\"just a string \\\" with escapes \\\\ \\/ \\t\"",
};
#define SAMPLE_CLAIM 6

TEST(token_count_exactness)
{
    size_t k;
    for (k = 0; k < sizeof sample_docs / sizeof sample_docs[0]; k++) {
        const char *js = sample_docs[k];
        size_t len = strlen(js);
        int n = sbx__json_parse(js, len, NULL, 0), r;
        sbx__jtok more[NT];
        CHECK_MSG(n > 0, "doc %u counts %d", (unsigned)k, n);
        if (n <= 0) continue;
        CHECK_EQ_INT(sbx__json_parse(js, len, toks, n), n);
        CHECK_EQ_INT(sbx__json_parse(js, len, more, NT), n);
        CHECK(toks_same(toks, more, n));
        CHECK_EQ_INT(sbx__json_parse(js, len, toks, n - 1), SBX__JSON_ERR_NOMEM);
        CHECK_EQ_INT(sbx__json_parse(js, len, toks, 0), SBX__JSON_ERR_NOMEM);
        r = json_walk(js, len, more, n) == NULL;
        CHECK_MSG(r, "doc %u: %s", (unsigned)k, json_walk(js, len, more, n));
    }
    /* NOMEM only for valid text: the grammar error wins even when tokens run out */
    CHECK_EQ_INT(sbx__json_parse("[1,2,3,]", 8, toks, 1), SBX__JSON_ERR_INVALID);
    CHECK_EQ_INT(sbx__json_parse("[1,2,3", 6, toks, 1), SBX__JSON_ERR_PARTIAL);
    {
        size_t pos = 0;
        CHECK_EQ_INT(sbx__json_parse_pos("[1,2,3]", 7, toks, 2, &pos), SBX__JSON_ERR_NOMEM);
        CHECK_EQ_INT(pos, 7);
    }
}

TEST(every_prefix_is_partial_against_guard_page)
{
    size_t k, cut;
    for (k = 0; k < sizeof sample_docs / sizeof sample_docs[0]; k++) {
        const char *js = sample_docs[k];
        size_t len = strlen(js), vend = len;
        int full = sbx__json_parse(js, len, NULL, 0);
        while (vend > 0 && js[vend - 1] == ' ') vend--;   /* blanks after the value */
        for (cut = 0; cut < len; cut++) {
            int r = gparse(js, cut, toks, NT, NULL);
            CHECK_MSG(r == (cut < vend ? SBX__JSON_ERR_PARTIAL : full), "doc %u cut at %u: %d", (unsigned)k,
                      (unsigned)cut, r);
        }
        CHECK_EQ_INT(gparse(js, len, toks, NT, NULL), sbx__json_parse(js, len, NULL, 0));
    }
}

/* The guard page really faults: a child that reads one byte past the data dies. */
TEST(guard_page_is_armed)
{
    guard g;
    pid_t pid;
    int st = 0;
    char *d = guard_put(&g, "[1]", 3);
    CHECK(d != NULL);
    if (!d) return;
    fflush(stdout);
    pid = fork();
    if (pid == 0) {
        volatile char c;
        int nul = open("/dev/null", O_WRONLY);
        if (nul >= 0) dup2(nul, 2);
        c = d[3];
        (void)c;
        _exit(0);
    }
    CHECK(pid > 0);
    if (pid > 0) {
        while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {
        }
        CHECK(!(WIFEXITED(st) && WEXITSTATUS(st) == 0));
    }
    /* while the parser, reading exactly 3 bytes, is fine */
    CHECK_EQ_INT(sbx__json_parse(d, 3, toks, NT), 2);
    CHECK_EQ_INT(sbx__json_parse(d + 1, 2, toks, NT), SBX__JSON_ERR_INVALID);
    guard_free(&g);
}

/* Token values read from input that ends at the guard page. */
TEST(values_against_guard_page)
{
    static const char *docs[] = {"123", "-9223372036854775808", "1.5e3", "\"\\ud83d\\ude00\"", "\"\\u00\"",
                                 "\"abc\\n\"", "[\"x\",7]"};
    size_t k;
    for (k = 0; k < sizeof docs / sizeof docs[0]; k++) {
        guard g;
        size_t len = strlen(docs[k]);
        char *d = guard_put(&g, docs[k], len);
        int n = d ? sbx__json_parse(d, len, toks, NT) : -100, i;
        if (k == 4) {
            CHECK_EQ_INT(n, SBX__JSON_ERR_INVALID);
        } else {
            CHECK_MSG(n > 0, "doc %u: %d", (unsigned)k, n);
            for (i = 0; i < n; i++) {
                long long v;
                double x;
                (void)sbx__json_int(d, toks, i, &v);
                (void)sbx__json_double(d, toks, i, &x);
                (void)U(d, i);
                (void)sbx__json_eq(d, toks, i, "x");
            }
            if (n > 0) CHECK(json_walk(d, len, toks, n) == NULL);
        }
        guard_free(&g);
    }
}

/* ---- lookups ------------------------------------------------------------- */

TEST(get_paths)
{
    const char *js = sample_docs[SAMPLE_CLAIM];
    int n = P(js), conds, i;
    long long v = 0;
    CHECK(n > 30);
    CHECK(sbx__json_eq(js, toks, sbx__json_get(js, toks, n, 0, "status.sandbox.name"), "python-pool-x7k2q"));
    CHECK(sbx__json_eq(js, toks, sbx__json_get(js, toks, n, 0, "status.sandbox.podIPs[0]"), "10.244.1.17"));
    CHECK_EQ_INT(sbx__json_get(js, toks, n, 0, "status.sandbox.podIPs[1]"), -1);
    CHECK(sbx__json_eq(js, toks, sbx__json_get(js, toks, n, 0, "metadata.annotations[\"agents.x-k8s.io/sandbox-name\"]"),
                       "python-pool-x7k2q"));
    CHECK(sbx__json_eq(js, toks, sbx__json_get(js, toks, n, 0, "metadata.annotations[\"a.b\"]"), "dot"));
    CHECK(sbx__json_eq(js, toks, sbx__json_get(js, toks, n, 0, "[\"metadata\"][\"name\"]"), "sandbox-claim-3f9a01bc"));
    CHECK_EQ_INT(sbx__json_get(js, toks, n, 0, "metadata.annotations.agents"), -1);
    CHECK_EQ_INT(sbx__json_int(js, toks, sbx__json_get(js, toks, n, 0, "status.conditions[1].observedGeneration"), &v), 0);
    CHECK_EQ_INT(v, 1);
    conds = sbx__json_get(js, toks, n, 0, "status.conditions");
    CHECK(conds > 0 && toks[conds].type == SBX__JSON_ARRAY && toks[conds].size == 2);
    CHECK(sbx__json_eq(js, toks, sbx__json_get(js, toks, n, conds, "[0].type"), "Finished"));
    CHECK_EQ_INT(sbx__json_get(js, toks, n, conds, ""), conds);
    CHECK_EQ_INT(sbx__json_get(js, toks, n, 0, ""), 0);
    /* find: the [?type=="Ready"] lookup */
    i = sbx__json_find(js, toks, n, conds, "type", "Ready");
    CHECK_EQ_INT(i, sbx__json_get(js, toks, n, 0, "status.conditions[1]"));
    CHECK(sbx__json_eq(js, toks, sbx__json_get(js, toks, n, i, "reason"), "DependenciesReady"));
    CHECK_EQ_INT(sbx__json_find(js, toks, n, conds, "type", "Finished"), conds + 1);
    CHECK_EQ_INT(sbx__json_find(js, toks, n, conds, "type", "Missing"), -1);
    CHECK_EQ_INT(sbx__json_find(js, toks, n, conds, "observedGeneration", "1"), -1);   /* a number, not a string */
    CHECK_EQ_INT(sbx__json_find(js, toks, n, 0, "type", "Ready"), -1);                 /* not an array */
    CHECK_EQ_INT(sbx__json_find(js, toks, n, sbx__json_get(js, toks, n, 0, "status.sandbox.podIPs"), "x", "y"), -1);
    CHECK_EQ_INT(sbx__json_find(js, toks, n, conds, NULL, "Ready"), -1);
    /* bad paths and wrong types */
    {
        static const char *bad[] = {".status", "status.", "status..sandbox", "status[", "status[x]", "status[0",
                                    "[-1]", "status.conditions[99999999999]", "status.conditions[2]",
                                    "[\"status\"", "[\"status]", "kind.x", "kind[0]", "status.conditions.type",
                                    "status.conditions[0]type", "nope", "Kind", "status.sandbox.name.x",
                                    "status.conditions[ 0]", "[0]"};
        size_t k;
        for (k = 0; k < sizeof bad / sizeof bad[0]; k++)
            CHECK_MSG(sbx__json_get(js, toks, n, 0, bad[k]) == -1, "path %s", bad[k]);
    }
    CHECK_EQ_INT(sbx__json_get(js, toks, n, -1, ""), -1);
    CHECK_EQ_INT(sbx__json_get(js, toks, n, n, ""), -1);
    CHECK_EQ_INT(sbx__json_get(js, toks, n, 0, NULL), -1);
    CHECK_EQ_INT(sbx__json_get(js, NULL, n, 0, ""), -1);
    /* a token array cut short (ntok smaller than the tree) is never read past */
    CHECK_EQ_INT(sbx__json_get(js, toks, 3, 0, "status.sandbox.name"), -1);
}

TEST(keys_compared_after_unescaping)
{
    const char *js = "{\"a\\u002eb\":1,\"x\\\"y\":2,\"\\u00e9\":3,\"nul\\u0000\":4,\"a\":5,\"a\":6,\"\":7,"
                     "\"\\ud83d\\ude00\":8,\"sl\\/ash\":9}";
    int n = P(js);
    long long v = 0;
    CHECK_EQ_INT(n, 19);
#define GETI(path) (v = -1, sbx__json_int(js, toks, sbx__json_get(js, toks, n, 0, path), &v), v)
    CHECK_EQ_INT(GETI("[\"a.b\"]"), 1);
    CHECK_EQ_INT(GETI("x\"y"), 2);
    CHECK_EQ_INT(GETI("\xc3\xa9"), 3);
    CHECK_EQ_INT(GETI("nul"), -1);
    CHECK_EQ_INT(GETI("a"), 6);                        /* duplicate: the last one wins */
    CHECK_EQ_INT(GETI("[\"\"]"), 7);
    CHECK_EQ_INT(GETI("\xf0\x9f\x98\x80"), 8);
    CHECK_EQ_INT(GETI("sl/ash"), 9);
    CHECK_EQ_INT(sbx__json_int(js, toks, sbx__json_member(js, toks, n, 0, "nul\0", 4), &v), 0);
    CHECK_EQ_INT(v, 4);
    CHECK_EQ_INT(sbx__json_member(js, toks, n, 0, "nul\0x", 5), -1);
    CHECK_EQ_INT(sbx__json_member(js, toks, n, 1, "a", 1), -1);   /* not an object */
#undef GETI
}

TEST(iteration_macros)
{
    const char *js = "{\"a\":[10,[20,21],{\"x\":30},40],\"b\":{\"p\":1,\"q\":[2,3],\"r\":{}},\"c\":[]}";
    int n = P(js), arr, obj, i, k, sum = 0;
    char names[16] = "";
    long long v;
    CHECK(n > 0);
    arr = sbx__json_get(js, toks, n, 0, "a");
    SBX__JSON_FOREACH(toks, arr, i, k) {
        if (sbx__json_int(js, toks, i, &v) == 0) sum += (int)v;
        else sum += 1000 * toks[i].type;
    }
    CHECK_EQ_INT(sum, 10 + 40 + 1000 * SBX__JSON_ARRAY + 1000 * SBX__JSON_OBJECT);
    CHECK_EQ_INT(k, 4);
    obj = sbx__json_get(js, toks, n, 0, "b");
    SBX__JSON_FOREACH_MEMBER(toks, obj, i, k) {
        strncat(names, js + toks[i].start, toks[i].end - toks[i].start);
        CHECK(i + 1 < n && toks[i].type == SBX__JSON_STRING);
    }
    CHECK_STR(names, "pqr");
    k = -1;
    SBX__JSON_FOREACH(toks, sbx__json_get(js, toks, n, 0, "c"), i, k) CHECK(0);
    CHECK_EQ_INT(k, 0);
    SBX__JSON_FOREACH_MEMBER(toks, 0, i, k) {
    }
    CHECK_EQ_INT(k, 3);
}

/* ---- string values ------------------------------------------------------- */

static int unesc_is(const char *json_str_body, const char *want, size_t wantlen)
{
    char doc[256];
    snprintf(doc, sizeof doc, "\"%s\"", json_str_body);
    if (P(doc) != 1) return 0;
    if (!U(doc, 0)) return 0;
    return ulen == wantlen && memcmp(ubuf, want, wantlen) == 0 && ubuf[ulen] == '\0';
}

TEST(unescape)
{
    char small[4];
    size_t need = 0;
    char *dup = NULL;
    countalloc c;
    sbx_allocator a = ca_make(&c, 0);
    CHECK(unesc_is("\\\"\\\\\\/\\b\\f\\n\\r\\t", "\"\\/\b\f\n\r\t", 8));
    CHECK(unesc_is("\\u0041\\u00e9\\u20AC\\ud83d\\ude00", "A\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80", 10));
    CHECK(unesc_is("\\u0000", "\0", 1));
    CHECK(unesc_is("a\\u0000b", "a\0b", 3));
    CHECK(unesc_is("\\u007f\\u0080\\u07ff\\u0800\\uffff", "\x7f\xc2\x80\xdf\xbf\xe0\xa0\x80\xef\xbf\xbf", 11));
    CHECK(unesc_is("\\uD800\\uDC00", "\xf0\x90\x80\x80", 4));
    CHECK(unesc_is("\\uDBFF\\uDFFF", "\xf4\x8f\xbf\xbf", 4));
    /* lone surrogates become U+FFFD; the bytes after them are kept */
    CHECK(unesc_is("\\ud800", "\xef\xbf\xbd", 3));
    CHECK(unesc_is("\\ud800x", "\xef\xbf\xbdx", 4));
    CHECK(unesc_is("\\udc00", "\xef\xbf\xbd", 3));
    CHECK(unesc_is("\\udc00\\ud800", "\xef\xbf\xbd\xef\xbf\xbd", 6));
    CHECK(unesc_is("\\ud800\\ud800\\udc00", "\xef\xbf\xbd\xf0\x90\x80\x80", 7));
    CHECK(unesc_is("\\ud800\\u0041", "\xef\xbf\xbd" "A", 4));
    CHECK(unesc_is("\\ud800\\n", "\xef\xbf\xbd\n", 4));
    CHECK(unesc_is("\\ud800\\\\udc00", "\xef\xbf\xbd\\udc00", 9));
    CHECK(unesc_is("\xf0\x9f\x98\x80", "\xf0\x9f\x98\x80", 4));
    /* buffer sizes: the NUL needs room too */
    CHECK_EQ_INT(P("\"abc\""), 1);
    CHECK_EQ_INT(sbx__json_unescape("\"abc\"", toks, 0, small, 4, &need), 0);
    CHECK_STR(small, "abc");
    CHECK_EQ_INT(need, 3);
    memcpy(small, "zzzz", 4);
    need = 0;
    CHECK_EQ_INT(sbx__json_unescape("\"abc\"", toks, 0, small, 3, &need), -1);
    CHECK_EQ_INT(need, 3);
    CHECK_EQ_INT(small[0], 0);
    memcpy(small, "zzzz", 4);
    CHECK_EQ_INT(sbx__json_unescape("\"abc\"", toks, 0, small, 0, &need), -1);
    CHECK_EQ_INT(small[0], 'z');
    CHECK_EQ_INT(sbx__json_unescape("\"abc\"", toks, 0, small, 4, NULL), 0);
    CHECK_EQ_INT(P("[1]"), 2);
    CHECK_EQ_INT(sbx__json_unescape("[1]", toks, 1, small, 4, &need), -2);
    CHECK_EQ_INT(sbx__json_unescape("[1]", toks, 0, small, 4, &need), -2);
    CHECK_EQ_INT(sbx__json_unescape("[1]", toks, -1, small, 4, &need), -2);
    /* tokens not made by the scanner (malformed escapes) are read safely and never grow */
    {
        const char *raw = "\\u12\\uZZZZ\\";
        sbx__jtok hand[1];
        char out[32];
        hand[0].type = SBX__JSON_STRING;
        hand[0].start = 0;
        hand[0].end = strlen(raw);
        hand[0].size = 0;
        hand[0].next = 1;
        CHECK_EQ_INT(sbx__json_unescape(raw, hand, 0, out, sizeof out, &need), 0);
        CHECK_STR(out, raw);
        CHECK(sbx__json_eq(raw, hand, 0, raw));
    }
    /* strdup: exact, counted allocations, failures */
    CHECK_EQ_INT(P("[\"x\\u0000y\",2]"), 3);
    CHECK_EQ_INT(sbx__json_strdup(&a, "[\"x\\u0000y\",2]", toks, 1, &dup, &need), 0);
    CHECK(dup && need == 3 && memcmp(dup, "x\0y", 4) == 0);
    CHECK_EQ_INT(c.live, 1);
    sbx__free(&a, dup);
    CHECK_EQ_INT(c.live, 0);
    dup = (char *)&need;
    CHECK_EQ_INT(sbx__json_strdup(&a, "[\"x\\u0000y\",2]", toks, 2, &dup, &need), -2);
    CHECK(dup == NULL);
    a = ca_make(&c, 1);
    dup = (char *)&need;
    CHECK_EQ_INT(sbx__json_strdup(&a, "[\"x\\u0000y\",2]", toks, 1, &dup, NULL), -1);
    CHECK(dup == NULL && c.calls == 1 && c.live == 0);
}

TEST(eq)
{
    const char *js = "[\"Ready\",\"Re\\u0061dy\",\"a\\u0000b\",\"\",5,\"\\u00e9\"]";
    CHECK_EQ_INT(P(js), 7);
    CHECK(sbx__json_eq(js, toks, 1, "Ready"));
    CHECK(sbx__json_eq(js, toks, 2, "Ready"));
    CHECK(!sbx__json_eq(js, toks, 1, "Read"));
    CHECK(!sbx__json_eq(js, toks, 1, "Ready!"));
    CHECK(!sbx__json_eq(js, toks, 1, "ready"));
    CHECK(!sbx__json_eq(js, toks, 3, "a"));          /* the \u0000 does not cut the value */
    CHECK(sbx__json_eqn(js, toks, 3, "a\0b", 3));
    CHECK(sbx__json_eq(js, toks, 4, ""));
    CHECK(!sbx__json_eq(js, toks, 4, "x"));
    CHECK(!sbx__json_eq(js, toks, 5, "5"));          /* a number is not a string */
    CHECK(!sbx__json_eq(js, toks, 0, ""));
    CHECK(sbx__json_eq(js, toks, 6, "\xc3\xa9"));
    CHECK(!sbx__json_eq(js, toks, -1, ""));
    CHECK(!sbx__json_eq(js, toks, 1, NULL));
}

/* ---- numbers ------------------------------------------------------------- */

TEST(int_edges)
{
    static const struct { const char *s; int rc; long long v; } cases[] = {
        {"0", 0, 0},
        {"-0", 0, 0},
        {"7", 0, 7},
        {"-1", 0, -1},
        {"123456789", 0, 123456789LL},
        {"9223372036854775807", 0, LLONG_MAX},
        {"9223372036854775808", -1, 0},
        {"9223372036854775810", -1, 0},
        {"-9223372036854775808", 0, LLONG_MIN},
        {"-9223372036854775809", -1, 0},
        {"18446744073709551615", -1, 0},
        {"18446744073709551616", -1, 0},
        {"99999999999999999999999", -1, 0},
        {"1.0", -1, 0},
        {"1e3", -1, 0},
        {"1E0", -1, 0},
        {"-5.5", -1, 0},
    };
    size_t k;
    for (k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        long long v = 42;
        int r;
        CHECK_EQ_INT(P(cases[k].s), 1);
        r = sbx__json_int(cases[k].s, toks, 0, &v);
        CHECK_MSG(r == cases[k].rc && v == (r == 0 ? cases[k].v : 42), "%s: %d %lld", cases[k].s, r, v);
    }
    {
        long long v = 42;
        CHECK_EQ_INT(P("\"1\""), 1);
        CHECK_EQ_INT(sbx__json_int("\"1\"", toks, 0, &v), -1);
        CHECK_EQ_INT(v, 42);
    }
}

static double dbl(const char *s, int *rc)
{
    double d = -12345;
    *rc = P(s) == 1 ? sbx__json_double(s, toks, 0, &d) : -100;
    return d;
}

/* Distance in units in the last place between two finite doubles of one sign. */
static long long ulps(double a, double b)
{
    long long ia, ib;
    memcpy(&ia, &a, sizeof ia);
    memcpy(&ib, &b, sizeof ib);
    return ia > ib ? ia - ib : ib - ia;
}

TEST(double_values)
{
    int rc;
    double d;
    static const char *vs[] = {
        "1755856000.12", "1755856000.123456", "0.1", "3.141592653589793", "2.718281828459045",
        "1e22", "1e23", "9007199254740993", "123456789012345678901234567890", "1.7976931348623157e308",
        "2.2250738585072014e-308", "4.9e-324", "5e-324", "1E2", "1e+2", "1e-2", "12345678901234567890e-5",
        "0.000001", "-0.5", "100000000000000000000000000000000000000000000000000000000000000001",
        "0.30000000000000004", "1.0000000000000002", "9.999999999999999e22", "1e-300", "7e-10",
        "0.00000000000000000000000000000000000000000000000000000000000000000000000123",
        "1448997766.839191", "-1755856000.5", "4503599627370497.5", "2.5e-3", "1e308", "1e-307"};
    size_t k;
    d = dbl("1755856000.12", &rc);
    CHECK_EQ_INT(rc, 0);
    CHECK(d == 1755856000.12);
    d = dbl("-0", &rc);
    CHECK(rc == 0 && d == 0 && signbit(d));
    d = dbl("0.0e99", &rc);
    CHECK(rc == 0 && d == 0 && !signbit(d));
    d = dbl("1e400", &rc);
    CHECK_EQ_INT(rc, -1);
    CHECK(d == -12345);
    d = dbl("-1e400", &rc);
    CHECK_EQ_INT(rc, -1);
    d = dbl("1.8e308", &rc);
    CHECK_EQ_INT(rc, -1);
    d = dbl("1e-400", &rc);
    CHECK(rc == 0 && d == 0);
    d = dbl("-1e-99999999999999999999", &rc);
    CHECK(rc == 0 && d == 0 && signbit(d));
    d = dbl("1e99999999999999999999", &rc);
    CHECK_EQ_INT(rc, -1);
    d = dbl("1.5", &rc);
    CHECK(rc == 0 && d == 1.5);
    CHECK_EQ_INT(P("\"1\""), 1);
    CHECK_EQ_INT(sbx__json_double("\"1\"", toks, 0, &d), -1);
    for (k = 0; k < sizeof vs / sizeof vs[0]; k++) {
        double want = strtod(vs[k], NULL);
        d = dbl(vs[k], &rc);
        CHECK_MSG(rc == 0 && ulps(d, want) <= 1, "%s: %.17g vs strtod %.17g (%lld ulp)", vs[k], d, want,
                  ulps(d, want));
    }
}

/* Many generated decimals: within 1 ulp of strtod, and exact on the fast path. */
TEST(double_against_strtod)
{
    unsigned long long x = 88172645463325252ull;
    long long worst = 0, inexact = 0;
    int k;
    for (k = 0; k < 200000; k++) {
        char s[64];
        int nd, e, fast, rc, j;
        size_t n = 0;
        double d, want;
        x ^= x << 13; x ^= x >> 7; x ^= x << 17;
        nd = 1 + (int)(x % 20);
        e = (int)((x >> 8) % 640) - 330;
        if (x & 0x100000) s[n++] = '-';
        s[n++] = (char)('1' + (x >> 24) % 9);
        for (j = 1; j < nd; j++) {
            x ^= x << 13; x ^= x >> 7; x ^= x << 17;
            s[n++] = (char)('0' + x % 10);
        }
        fast = nd <= 15 && e >= -22 && e <= 22;
        snprintf(s + n, sizeof s - n, "e%d", e);
        want = strtod(s, NULL);
        if (!(want <= DBL_MAX && want >= -DBL_MAX) || want == 0) continue;
        d = dbl(s, &rc);
        if (rc != 0) {
            CHECK_MSG(0, "%s refused", s);
            break;
        }
        if (ulps(d, want) > worst) worst = ulps(d, want);
        if (d != want) {
            inexact++;
            if (fast) {
                CHECK_MSG(0, "%s: fast path not exact: %.17g vs %.17g", s, d, want);
                break;
            }
        }
    }
    printf("  200000 decimals: worst %lld ulp, %lld not correctly rounded\n", worst, inexact);
    CHECK(worst <= 1);
}

/* ---- writer -------------------------------------------------------------- */

static int write_is(const char *s, size_t n, const char *want)
{
    sbx_allocator a = sbx__allocator(NULL);
    sbx__buf b;
    int ok;
    sbx__buf_init(&b, &a);
    ok = sbx__json_write_str(&b, s, n) == 0 && b.len == strlen(want) && memcmp(b.data, want, b.len) == 0 &&
         b.data[b.len] == '\0';
    sbx__buf_free(&b);
    return ok;
}

TEST(write_str)
{
    sbx_allocator a = sbx__allocator(NULL);
    countalloc c;
    sbx_allocator fa = ca_make(&c, 1);
    sbx__buf b;
    static const char *bad[] = {"\xff", "\x80", "\xc0\x80", "\xc1\xbf", "\xed\xa0\x80", "\xf4\x90\x80\x80",
                                "\xe2\x82", "ok\xf0\x9f\x98", "ok\x80", "\xe0\x80\xaf", "\xf8\x88\x80\x80\x80"};
    size_t k;
    CHECK(write_is("abc", 3, "\"abc\""));
    CHECK(write_is("", 0, "\"\""));
    CHECK(write_is(NULL, 0, "\"\""));
    CHECK(write_is("a\"b\\c/d", 7, "\"a\\\"b\\\\c/d\""));
    CHECK(write_is("\n\r\t\b\f", 5, "\"\\n\\r\\t\\b\\f\""));
    CHECK(write_is("\x01\x1f\0\x0b", 4, "\"\\u0001\\u001f\\u0000\\u000b\""));
    CHECK(write_is("\x7f", 1, "\"\x7f\""));
    CHECK(write_is("\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\xf4\x8f\xbf\xbf", 13,
                   "\"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\xf4\x8f\xbf\xbf\""));
    /* invalid UTF-8: -2 and nothing appended to what was there */
    sbx__buf_init(&b, &a);
    CHECK_EQ_INT(sbx__buf_puts(&b, "{\"k\":"), 0);
    for (k = 0; k < sizeof bad / sizeof bad[0]; k++) {
        CHECK_MSG(sbx__json_write_str(&b, bad[k], strlen(bad[k])) == -2, "bad %u", (unsigned)k);
        CHECK(b.len == 5 && strcmp(b.data, "{\"k\":") == 0);
    }
    CHECK_EQ_INT(sbx__json_write_str(&b, NULL, 1), -2);
    /* appending continues the buffer */
    CHECK_EQ_INT(sbx__json_write_str(&b, "v", 1), 0);
    CHECK_EQ_INT(sbx__buf_puts(&b, ",\"e\":"), 0);
    CHECK_EQ_INT(sbx__json_write_str(&b, "x\ny", 3), 0);
    CHECK_EQ_INT(sbx__buf_puts(&b, "}"), 0);
    CHECK_STR(b.data, "{\"k\":\"v\",\"e\":\"x\\ny\"}");
    CHECK_EQ_INT(P(b.data), 5);
    sbx__buf_free(&b);
    /* no memory: -1, nothing appended */
    sbx__buf_init(&b, &fa);
    CHECK_EQ_INT(sbx__json_write_str(&b, "abc", 3), -1);
    CHECK(b.len == 0 && b.data == NULL && c.live == 0);
}

TEST(write_str_every_single_byte)
{
    int v;
    for (v = 0; v < 256; v++) {
        char s[1], want[16];
        sbx_allocator a = sbx__allocator(NULL);
        sbx__buf b;
        int r;
        s[0] = (char)v;
        if (v == '"') strcpy(want, "\"\\\"\"");
        else if (v == '\\') strcpy(want, "\"\\\\\"");
        else if (v == '\b') strcpy(want, "\"\\b\"");
        else if (v == '\f') strcpy(want, "\"\\f\"");
        else if (v == '\n') strcpy(want, "\"\\n\"");
        else if (v == '\r') strcpy(want, "\"\\r\"");
        else if (v == '\t') strcpy(want, "\"\\t\"");
        else if (v < 0x20) snprintf(want, sizeof want, "\"\\u%04x\"", v);
        else if (v < 0x80) snprintf(want, sizeof want, "\"%c\"", v);
        else want[0] = '\0';
        sbx__buf_init(&b, &a);
        r = sbx__json_write_str(&b, s, 1);
        if (v < 0x80) {
            CHECK_MSG(r == 0 && b.len == strlen(want) && memcmp(b.data, want, b.len) == 0, "byte 0x%02x", v);
            /* and it reads back as that byte */
            CHECK_MSG(r == 0 && P(b.data) == 1 && U(b.data, 0) && ulen == 1 && (unsigned char)ubuf[0] == v,
                      "byte 0x%02x round trip", v);
        } else {
            CHECK_MSG(r == -2 && b.len == 0, "byte 0x%02x: %d", v, r);
        }
        sbx__buf_free(&b);
    }
}

/* Long runs of one ASCII byte: the size counted before writing must match
   what is written (ASan catches a short reservation; the buffer grows from
   256 bytes, so short strings would hide it). */
TEST(write_str_long_runs)
{
    static char run[3000];
    int v;
    for (v = 0; v < 0x80; v++) {
        sbx_allocator a = sbx__allocator(NULL);
        sbx__buf b;
        size_t per = v == '"' || v == '\\' || v == '\b' || v == '\f' || v == '\n' || v == '\r' || v == '\t' ? 2
                     : v < 0x20 ? 6 : 1;
        sbx__jtok t[1];
        size_t blen = 0;
        static char back[3001];
        memset(run, v, sizeof run);
        sbx__buf_init(&b, &a);
        CHECK_EQ_INT(sbx__json_write_str(&b, run, sizeof run), 0);
        CHECK_MSG(b.len == per * sizeof run + 2, "byte 0x%02x: %u bytes", v, (unsigned)b.len);
        CHECK(sbx__json_parse(b.data, b.len, t, 1) == 1 &&
              sbx__json_unescape(b.data, t, 0, back, sizeof back, &blen) == 0 && blen == sizeof run &&
              memcmp(back, run, sizeof run) == 0);
        sbx__buf_free(&b);
    }
}

static int roundtrip(const char *s, size_t n, sbx__buf *b)
{
    sbx__jtok t[2];
    static char back[64];
    size_t blen = 0;
    b->len = 0;
    if (sbx__json_write_str(b, s, n) != 0) return 0;
    if (sbx__json_parse(b->data, b->len, t, 2) != 1 || t[0].type != SBX__JSON_STRING) return 0;
    if (sbx__json_unescape(b->data, t, 0, back, sizeof back, &blen) != 0) return 0;
    return blen == n && memcmp(back, s, n) == 0 && sbx__json_eqn(b->data, t, 0, s, n);
}

/* write_str -> parse -> unescape gives the bytes back: every code point alone,
   every code point between two escaped bytes, and a few mixed strings. */
TEST(write_str_round_trip)
{
    sbx_allocator a = sbx__allocator(NULL);
    sbx__buf b;
    unsigned long cp;
    long fails = 0, count = 0;
    static const char *mixed[] = {"", "plain", "tab\there", "quote\"back\\slash", "nul\0inside",
                                  "\xc3\xa9t\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80 \x7f \x1b[0m", "/\\/\\"};
    size_t k;
    sbx__buf_init(&b, &a);
    for (cp = 0; cp <= 0x10FFFF; cp++) {
        unsigned char u[8];
        size_t n;
        if (cp >= 0xD800 && cp <= 0xDFFF) continue;
        n = sbx__json_utf8_put(cp, u + 1);
        u[0] = '\n';
        u[n + 1] = '"';
        count++;
        if (!roundtrip((const char *)u + 1, n, &b) || !roundtrip((const char *)u, n + 2, &b)) {
            if (fails++ < 5) CHECK_MSG(0, "U+%04lX does not round-trip", cp);
        }
    }
    CHECK_EQ_INT(count, 0x110000 - 0x800);
    CHECK_EQ_INT(fails, 0);
    CHECK(roundtrip(mixed[4], 11, &b));
    for (k = 0; k < sizeof mixed / sizeof mixed[0]; k++) CHECK_MSG(roundtrip(mixed[k], strlen(mixed[k]), &b), "%u", (unsigned)k);
    /* UTF-8-encoded surrogates are refused, as the scanner refuses them */
    for (cp = 0xD800; cp <= 0xDFFF; cp += 0x7F) {
        char u[3];
        u[0] = (char)(0xE0 | (cp >> 12));
        u[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        u[2] = (char)(0x80 | (cp & 0x3F));
        b.len = 0;
        CHECK(sbx__json_write_str(&b, u, 3) == -2 && b.len == 0);
    }
    sbx__buf_free(&b);
}

/* ---- parse_alloc ------------------------------------------------------- */

TEST(parse_alloc)
{
    countalloc c;
    sbx_allocator a = ca_make(&c, 0);
    sbx__jtok *t = NULL;
    const char *js = sample_docs[SAMPLE_CLAIM];
    int n = sbx__json_parse_alloc(&a, js, strlen(js), &t);
    CHECK(n > 30 && t != NULL && c.live == 1);
    CHECK(sbx__json_eq(js, t, sbx__json_get(js, t, n, 0, "kind"), "SandboxClaim"));
    CHECK(json_walk(js, strlen(js), t, n) == NULL);
    sbx__free(&a, t);
    CHECK_EQ_INT(c.live, 0);
    /* errors allocate nothing */
    t = toks;
    CHECK_EQ_INT(sbx__json_parse_alloc(&a, "[1,]", 4, &t), SBX__JSON_ERR_INVALID);
    CHECK(t == NULL && c.calls == 1);
    CHECK_EQ_INT(sbx__json_parse_alloc(&a, "[1,", 3, &t), SBX__JSON_ERR_PARTIAL);
    CHECK_EQ_INT(sbx__json_parse_alloc(&a, "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[", 65, &t),
                 SBX__JSON_ERR_DEPTH);
    CHECK(c.calls == 1 && c.live == 0);
    /* allocation failure */
    a = ca_make(&c, 1);
    t = toks;
    CHECK_EQ_INT(sbx__json_parse_alloc(&a, "[1]", 3, &t), SBX__JSON_ERR_NOMEM);
    CHECK(t == NULL && c.calls == 1 && c.live == 0);
}

TEST(strerror_texts)
{
    CHECK_STR(sbx__json_strerror(SBX__JSON_ERR_NOMEM), "too many JSON tokens");
    CHECK_STR(sbx__json_strerror(SBX__JSON_ERR_INVALID), "invalid JSON");
    CHECK_STR(sbx__json_strerror(SBX__JSON_ERR_PARTIAL), "truncated JSON");
    CHECK_STR(sbx__json_strerror(SBX__JSON_ERR_DEPTH), "JSON nested too deeply");
    CHECK_STR(sbx__json_strerror(-99), "unknown JSON error");
    CHECK_STR(sbx__json_strerror(3), "valid JSON");
}

/* ---- JSONTestSuite ------------------------------------------------------- */

static int name_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    char *buf = NULL;
    size_t cap = 0, n = 0, r;
    if (!f) return NULL;
    for (;;) {
        if (n == cap) {
            char *nb = (char *)realloc(buf, cap ? cap * 2 : 4096);
            if (!nb) break;
            buf = nb;
            cap = cap ? cap * 2 : 4096;
        }
        r = fread(buf + n, 1, cap - n, f);
        if (r == 0) break;
        n += r;
    }
    fclose(f);
    *len = n;
    return buf;
}

TEST(json_test_suite)
{
    const char *env = getenv("SBX_JSONTESTSUITE");
    const char *cands[2];
    const char *dir = NULL;
    DIR *d;
    struct dirent *de;
    char **names = NULL;
    size_t nn = 0, cap = 0, k;
    int y = 0, yok = 0, nv = 0, nok = 0, iv = 0, iacc = 0;
    countalloc c;
    sbx_allocator a = ca_make(&c, 0);
    /* $SBX_JSONTESTSUITE alone when set, else beside the repository */
    cands[0] = env && *env ? env : NULL;
    cands[1] = cands[0] ? NULL : "../shared/testdata/JSONTestSuite/test_parsing";
    for (k = 0; k < 2 && !dir; k++) {
        if (!cands[k]) continue;
        d = opendir(cands[k]);
        if (d) {
            closedir(d);
            dir = cands[k];
        }
    }
    if (!dir)
        SKIP("JSONTestSuite vectors not found at %s; set SBX_JSONTESTSUITE to a checkout's test_parsing directory",
             cands[0] ? cands[0] : "../shared/testdata/JSONTestSuite/test_parsing (relative to the repository)");
    printf("  vectors from %s\n", dir);
    d = opendir(dir);
    CHECK(d != NULL);
    if (!d) return;
    while ((de = readdir(d)) != NULL) {
        size_t l = strlen(de->d_name);
        if (l < 6 || strcmp(de->d_name + l - 5, ".json") != 0 || de->d_name[1] != '_') continue;
        if (nn == cap) {
            char **nb = (char **)realloc(names, (cap ? cap * 2 : 512) * sizeof *names);
            if (!nb) break;
            names = nb;
            cap = cap ? cap * 2 : 512;
        }
        names[nn++] = strdup(de->d_name);
    }
    closedir(d);
    if (nn) qsort(names, nn, sizeof *names, name_cmp);
    for (k = 0; k < nn; k++) {
        char path[4096];
        size_t len = 0, pos = 0;
        char *buf;
        int n, r, na;
        sbx__jtok *t = NULL;
        snprintf(path, sizeof path, "%s/%s", dir, names[k]);
        buf = read_file(path, &len);
        CHECK_MSG(buf != NULL || len == 0, "cannot read %s", path);
        n = gparse(buf, len, NULL, 0, &pos);
        r = n >= 0 ? gparse(buf, len, toks, NT, NULL) : n;
        na = sbx__json_parse_alloc(&a, buf, len, &t);
        CHECK_MSG(na == n && (n < 0) == (t == NULL), "%s: parse_alloc %d, count %d", names[k], na, n);
        if (n > 0 && t) {
            const char *w = json_walk(buf, len, t, n);
            CHECK_MSG(w == NULL, "%s: %s", names[k], w);
            CHECK_MSG(n > NT ? r == SBX__JSON_ERR_NOMEM : (r == n && toks_same(t, toks, n)),
                      "%s: fixed array gave %d", names[k], r);
        }
        sbx__free(&a, t);
        switch (names[k][0]) {
        case 'y':
            y++;
            if (n > 0) yok++;
            else CHECK_MSG(0, "%s rejected: %s at byte %u", names[k], sbx__json_strerror(n), (unsigned)pos);
            break;
        case 'n':
            nv++;
            if (n < 0) nok++;
            else CHECK_MSG(0, "%s accepted (%d tokens)", names[k], n);
            break;
        default:
            iv++;
            if (n > 0) {
                iacc++;
                printf("  %-50s accepted (%d tokens)\n", names[k], n);
            } else {
                printf("  %-50s rejected: %s at byte %u\n", names[k], sbx__json_strerror(n), (unsigned)pos);
            }
            break;
        }
        free(buf);
        free(names[k]);
    }
    free(names);
    CHECK_EQ_INT(c.live, 0);
    CHECK(y > 0 && nv > 0);
    printf("  JSONTestSuite: y %d/%d accepted, n %d/%d rejected, i %d run (%d accepted, %d rejected)\n", yok, y,
           nok, nv, iv, iacc, iv - iacc);
}

int main(void)
{
    RUN(token_layout);
    RUN(scalars_at_top_level);
    RUN(errors_and_offsets);
    RUN(strings_and_utf8);
    RUN(every_single_byte);
    RUN(depth_limit);
    RUN(token_count_exactness);
    RUN(every_prefix_is_partial_against_guard_page);
    RUN(guard_page_is_armed);
    RUN(values_against_guard_page);
    RUN(get_paths);
    RUN(keys_compared_after_unescaping);
    RUN(iteration_macros);
    RUN(unescape);
    RUN(eq);
    RUN(int_edges);
    RUN(double_values);
    RUN(double_against_strtod);
    RUN(write_str);
    RUN(write_str_every_single_byte);
    RUN(write_str_long_runs);
    RUN(write_str_round_trip);
    RUN(parse_alloc);
    RUN(strerror_texts);
    RUN(json_test_suite);
    return test_summary("test_json");
}
