/* tests/lib/json_walk.h - invariants of a successful sbx__json_parse, checked token
   by token; shared by tests/unit/test_json.c and tests/fuzz/fuzz_json.c (include
   after the sandbox.h implementation).

   json_walk(js, len, t, n) returns NULL when every invariant holds, else a
   static description of the first one that failed:
   - types are known, [start, end) lies in the text, size >= 0;
   - next > i, next <= n, t[0].next == n; scalars have next == i + 1, size 0;
   - the children of a container tile its subtree exactly (siblings' next
     strictly increasing, the last child's next == the container's next),
     objects hold key/value pairs with STRING keys, children lie inside the
     container's bytes;
   - strings sit between quotes; unescape works with an exact buffer and
     refuses one byte less; the result is well-formed UTF-8, no longer than
     the escaped form, equals strdup's, eqn() agrees; write_str() of it parses
     back to the same bytes;
   - numbers: double works unless the exponent is huge, int works exactly when
     the text is an integer that fits, and then agrees with double;
   - literals are spelled right;
   - get() finds every member (by ["key"] and by plain name) and every element,
     and find() finds an element that matches. */
#ifndef SBX_JSON_WALK_H
#define SBX_JSON_WALK_H
#include <math.h>
#include <stdlib.h>
#include <string.h>

static int jw_is_utf8(const char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        int k = sbx__json_utf8_seq((const unsigned char *)s + i, n - i);
        if (k <= 0) return 0;
        i += (size_t)k;
    }
    return 1;
}

/* The value of the LAST member of obj named like key token kt (get's rule). */
static int jw_last_member(const char *js, const sbx__jtok *t, int obj, const char *key, size_t keylen)
{
    int k, i, found = -1;
    SBX__JSON_FOREACH_MEMBER(t, obj, i, k) {
        if (sbx__json_eqn(js, t, i, key, keylen)) found = i + 1;
    }
    return found;
}

static const char *jw_string(const char *js, size_t len, const sbx__jtok *t, int i)
{
    sbx_allocator a = sbx__allocator(NULL);
    size_t need = 0, need2 = 0, dlen = 0, raw = t[i].end - t[i].start;
    char *buf, *dup = NULL;
    const char *err = NULL;
    sbx__buf b;
    sbx__jtok rt[2];
    if (t[i].start == 0 || t[i].end >= len || js[t[i].start - 1] != '"' || js[t[i].end] != '"')
        return "string token not between quotes";
    if (sbx__json_unescape(js, t, i, NULL, 0, &need) != -1) return "unescape into nothing did not say -1";
    if (need > raw) return "unescaped string longer than escaped";
    buf = (char *)malloc(need + 1);
    if (!buf) return NULL;
    if (need > 0) {
        memset(buf, 'x', need);
        if (sbx__json_unescape(js, t, i, buf, need, &need2) != -1 || need2 != need || buf[0] != '\0')
            err = "unescape with one byte too few did not refuse";
    }
    if (!err && (sbx__json_unescape(js, t, i, buf, need + 1, &need2) != 0 || need2 != need || buf[need] != '\0'))
        err = "unescape with the exact buffer failed";
    if (!err && !jw_is_utf8(buf, need)) err = "unescaped string is not UTF-8";
    if (!err && (sbx__json_strdup(&a, js, t, i, &dup, &dlen) != 0 || dlen != need || memcmp(dup, buf, need) != 0))
        err = "strdup differs from unescape";
    if (!err && !sbx__json_eqn(js, t, i, buf, need)) err = "eqn(own value) is 0";
    if (!err && need > 0 && sbx__json_eqn(js, t, i, buf, need - 1)) err = "eqn(shorter) is 1";
    if (!err && !memchr(buf, 0, need) && !sbx__json_eq(js, t, i, buf)) err = "eq(own value) is 0";
    if (!err) {
        sbx__buf_init(&b, &a);
        if (sbx__json_write_str(&b, buf, need) != 0) {
            err = "write_str refused an unescaped string";
        } else if (sbx__json_parse(b.data, b.len, rt, 2) != 1 || rt[0].type != SBX__JSON_STRING) {
            err = "write_str output does not parse as one string";
        } else {
            char *back = (char *)malloc(need + 1);
            size_t blen = 0;
            if (back && (sbx__json_unescape(b.data, rt, 0, back, need + 1, &blen) != 0 || blen != need ||
                         memcmp(back, buf, need) != 0))
                err = "write_str round trip changed the bytes";
            free(back);
        }
        sbx__buf_free(&b);
    }
    sbx__free(&a, dup);
    free(buf);
    return err;
}

static const char *jw_number(const char *js, const sbx__jtok *t, int i)
{
    double d = 0;
    long long v = 0;
    size_t p, ndig = 0;
    int frac = 0, expo = 0, rd, ri;
    for (p = t[i].start; p < t[i].end; p++) {
        if (js[p] == '.') frac = 1;
        else if (js[p] == 'e' || js[p] == 'E') expo = 1;
        else if (js[p] >= '0' && js[p] <= '9' && !frac && !expo) ndig++;
    }
    rd = sbx__json_double(js, t, i, &d);
    ri = sbx__json_int(js, t, i, &v);
    if (rd != 0 && !expo && ndig < 300) return "double refused a plain number";
    if ((frac || expo) && ri == 0) return "int accepted a fraction or exponent";
    if (!frac && !expo && ndig < 19 && ri != 0) return "int refused a small integer";
    if (!frac && !expo && ndig > 19 && ri == 0) return "int accepted more than 19 digits";
    if (ri == 0 && rd == 0 && fabs((double)v - d) > fabs(d) * 1e-15) return "int and double disagree";
    if (rd == 0 && (d != d)) return "double gave NaN";
    return NULL;
}

static const char *json_walk(const char *js, size_t len, const sbx__jtok *t, int n)
{
    int i, k, c, prev;
    const char *err;
    if (n < 1) return "no tokens";
    if (t[0].next != n) return "t[0].next != n";
    for (i = 0; i < n; i++) {
        if (t[i].type < SBX__JSON_OBJECT || t[i].type > SBX__JSON_NULL) return "unknown type";
        if (t[i].start > t[i].end || t[i].end > len) return "token out of bounds";
        if (t[i].next <= i || t[i].next > n) return "next out of order";
        if (t[i].size < 0) return "negative size";
        if (t[i].type == SBX__JSON_OBJECT || t[i].type == SBX__JSON_ARRAY) {
            int obj = t[i].type == SBX__JSON_OBJECT;
            if (js[t[i].start] != (obj ? '{' : '[') || js[t[i].end - 1] != (obj ? '}' : ']'))
                return "container brackets";
            prev = i;
            c = i + 1;
            for (k = 0; k < t[i].size * (obj ? 2 : 1); k++) {
                if (c >= t[i].next || c <= prev) return "children do not tile the subtree";
                if (t[c].start <= t[i].start || t[c].end >= t[i].end) return "child outside its container";
                if (obj && k % 2 == 0 && t[c].type != SBX__JSON_STRING) return "object key is not a string";
                prev = c;
                c = t[c].next;
            }
            if (c != t[i].next) return "last child's next != container's next";
            if (obj) {
                int key, m;
                SBX__JSON_FOREACH_MEMBER(t, i, key, m) {
                    char kb[256], path[300];
                    size_t kl = 0;
                    int want, got;
                    if (m >= 64) break;   /* quadratic below; enough for the fuzzer */
                    if (sbx__json_unescape(js, t, key, kb, sizeof kb, &kl) != 0) continue;
                    want = jw_last_member(js, t, i, kb, kl);
                    if (want < 0 || !sbx__json_eqn(js, t, want - 1, kb, kl)) return "member lookup lost a key";
                    if (sbx__json_member(js, t, n, i, kb, kl) != want) return "member() is not the last match";
                    if (memchr(kb, 0, kl) || strstr(kb, "\"]")) continue;
                    snprintf(path, sizeof path, "[\"%s\"]", kb);
                    got = sbx__json_get(js, t, n, i, path);
                    if (got != want) return "get([\"key\"]) missed a member";
                    if (kl && !strchr(kb, '.') && !strchr(kb, '[')) {
                        if (sbx__json_get(js, t, n, i, kb) != want) return "get(key) missed a member";
                    }
                }
            } else {
                int el, m;
                char path[32];
                SBX__JSON_FOREACH(t, i, el, m) {
                    if (m < 8) {
                        snprintf(path, sizeof path, "[%d]", m);
                        if (sbx__json_get(js, t, n, i, path) != el) return "get([n]) missed an element";
                        if (sbx__json_index(t, n, i, m) != el) return "index() missed an element";
                    }
                    if (m == 0 && t[el].type == SBX__JSON_OBJECT && t[el].size > 0 &&
                        t[el + 2].type == SBX__JSON_STRING) {
                        char kb[64], vb[64];
                        size_t kl = 0, vl = 0;
                        if (sbx__json_unescape(js, t, el + 1, kb, sizeof kb, &kl) == 0 &&
                            sbx__json_unescape(js, t, el + 2, vb, sizeof vb, &vl) == 0 && kl == strlen(kb) &&
                            vl == strlen(vb) && kl && !strchr(kb, '.') && !strchr(kb, '[')) {
                            int f = sbx__json_find(js, t, n, i, kb, vb);
                            int w = jw_last_member(js, t, el, kb, kl);
                            /* element 0 matches unless a later duplicate key overrides it */
                            if (w == el + 2 && f != el) return "find() missed element 0";
                            if (f >= 0 && !sbx__json_eq(js, t, sbx__json_member(js, t, n, f, kb, kl), vb))
                                return "find() returned a non-matching element";
                        }
                    }
                }
                snprintf(path, sizeof path, "[%d]", t[i].size);
                if (sbx__json_get(js, t, n, i, path) != -1) return "get([size]) found something";
            }
        } else {
            if (t[i].next != i + 1 || t[i].size != 0) return "scalar with children";
            if (sbx__json_get(js, t, n, i, "a") != -1 || sbx__json_get(js, t, n, i, "[0]") != -1)
                return "get() inside a scalar";
        }
        if (sbx__json_get(js, t, n, i, "") != i) return "get(\"\") is not the token itself";
        switch (t[i].type) {
        case SBX__JSON_STRING:
            if ((err = jw_string(js, len, t, i)) != NULL) return err;
            break;
        case SBX__JSON_NUMBER:
            if ((err = jw_number(js, t, i)) != NULL) return err;
            break;
        case SBX__JSON_TRUE:
            if (t[i].end - t[i].start != 4 || memcmp(js + t[i].start, "true", 4) != 0) return "true";
            break;
        case SBX__JSON_FALSE:
            if (t[i].end - t[i].start != 5 || memcmp(js + t[i].start, "false", 5) != 0) return "false";
            break;
        case SBX__JSON_NULL:
            if (t[i].end - t[i].start != 4 || memcmp(js + t[i].start, "null", 4) != 0) return "null";
            break;
        default:
            break;
        }
        if (t[i].type != SBX__JSON_STRING) {
            if (sbx__json_unescape(js, t, i, NULL, 0, NULL) != -2) return "unescape of a non-string";
            if (sbx__json_eq(js, t, i, "")) return "eq of a non-string";
        }
        if (t[i].type != SBX__JSON_NUMBER) {
            double d;
            long long v;
            if (sbx__json_int(js, t, i, &v) != -1 || sbx__json_double(js, t, i, &d) != -1)
                return "number of a non-number";
        }
    }
    return NULL;
}
#endif
