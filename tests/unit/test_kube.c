/* White-box tests of the kube/api layer that need no cluster: claim states
   and their result codes (every terminal reason), names, path rules and
   their encoding, and the claim body the library sends. */
#define SANDBOX_IMPLEMENTATION
#include "sandbox.h"
#include "test.h"

static sbx_allocator A;
static char claim_c1[] = "c1", claim_long[] = "sandbox-claim-0a1b2c3d", pool_name[] = "python-sandbox-warmpool",
            tmpl_name[] = "python-sandbox-template", short_c[] = "c", short_p[] = "p";

/* Evaluate one claim JSON with sbx__claim_state. */
static int state_of(const char *json, sbx_error *e, char *sandbox_out, size_t cap)
{
    struct sbx__client cl;
    struct sbx__sandbox s;
    sbx__jtok *t = NULL;
    char last[256];
    int n, r;
    memset(&cl, 0, sizeof cl);
    memset(&s, 0, sizeof s);
    cl.a = A;
    s.cl = &cl;
    s.claim = claim_c1;
    n = sbx__json_parse_alloc(&A, json, strlen(json), &t);
    if (n <= 0) return -100;
    sbx__err_clear(e);
    r = sbx__claim_state(&s, json, t, n, 0, last, sizeof last, e);
    if (sandbox_out) {
        sandbox_out[0] = '\0';
        if (s.sandbox) snprintf(sandbox_out, cap, "%s", s.sandbox);
    }
    sbx__free(&A, s.sandbox);
    sbx__free(&A, t);
    return r;
}

static void claim_json(char *out, size_t cap, const char *status, const char *reason, const char *sbkey)
{
    snprintf(out, cap,
             "{\"metadata\":{\"name\":\"c1\"},\"status\":{\"sandbox\":{\"%s\":\"pool-abcde\"},"
             "\"conditions\":[{\"type\":\"Other\",\"status\":\"True\"},"
             "{\"type\":\"Ready\",\"status\":\"%s\",\"reason\":\"%s\",\"message\":\"the controller's words\"}]}}",
             sbkey, status, reason);
}

TEST(ready_true_with_name)
{
    char js[512], name[64];
    sbx_error e;
    claim_json(js, sizeof js, "True", "DependenciesReady", "name");
    CHECK_EQ_INT(state_of(js, &e, name, sizeof name), 1);
    CHECK_STR(name, "pool-abcde");
    /* controllers before the rename wrote "Name" */
    claim_json(js, sizeof js, "True", "DependenciesReady", "Name");
    CHECK_EQ_INT(state_of(js, &e, name, sizeof name), 1);
    CHECK_STR(name, "pool-abcde");
}

TEST(ready_true_without_sandbox_is_not_ready)
{
    sbx_error e;
    CHECK_EQ_INT(state_of("{\"status\":{\"conditions\":[{\"type\":\"Ready\",\"status\":\"True\"}]}}", &e, NULL, 0), 0);
    CHECK_EQ_INT(state_of("{\"status\":null}", &e, NULL, 0), 0);
    CHECK_EQ_INT(state_of("{\"metadata\":{}}", &e, NULL, 0), 0);
    CHECK_EQ_INT(state_of("{\"status\":{\"conditions\":\"garbage\",\"sandbox\":7}}", &e, NULL, 0), 0);
}

TEST(waiting_reasons_keep_waiting)
{
    static const char *const waiting[] = {"SandboxNotReady", "SandboxMissing", "DependenciesNotReady",
                                          "AdoptionConflict", "SandboxCreatePending", "ReconcilerError", NULL};
    char js[512];
    sbx_error e;
    int i;
    for (i = 0; waiting[i]; i++) {
        claim_json(js, sizeof js, "False", waiting[i], "name");
        CHECK_MSG(state_of(js, &e, NULL, 0) == 0, "%s should keep waiting", waiting[i]);
    }
}

TEST(every_terminal_reason_fails_at_once)
{
    static const char *const terminal[] = {"InvalidMetadata", "EnvVarsInjectionRejected", "VolumeClaimTemplatesError",
                                           "ClaimExpired", "SandboxExpired", NULL};
    char js[512];
    sbx_error e;
    int i;
    for (i = 0; terminal[i]; i++) {
        claim_json(js, sizeof js, "False", terminal[i], "name");
        CHECK_EQ_INT(state_of(js, &e, NULL, 0), SBX_ERR_SANDBOX);
        CHECK_MSG(strstr(e.msg, terminal[i]) && strstr(e.msg, "the controller's words") && strstr(e.msg, "c1"),
                  "%s", e.msg);
    }
}

TEST(missing_template_or_pool_fails_at_once)
{
    char js[512];
    sbx_error e;
    claim_json(js, sizeof js, "False", "TemplateNotFound", "name");
    CHECK_EQ_INT(state_of(js, &e, NULL, 0), SBX_ERR_NOT_FOUND);
    CHECK(strstr(e.msg, "TemplateNotFound") != NULL);
    claim_json(js, sizeof js, "False", "WarmPoolNotFound", "name");
    CHECK_EQ_INT(state_of(js, &e, NULL, 0), SBX_ERR_NOT_FOUND);
    CHECK(strstr(e.msg, "WarmPoolNotFound") != NULL);
}

TEST(dns_names)
{
    CHECK(sbx__valid_dns_name("default", 0));
    CHECK(sbx__valid_dns_name("a", 0));
    CHECK(sbx__valid_dns_name("sandbox-claim-1234abcd", 1));
    CHECK(sbx__valid_dns_name("a.b-c.d", 1));
    CHECK(!sbx__valid_dns_name("a.b", 0));
    CHECK(!sbx__valid_dns_name("", 1));
    CHECK(!sbx__valid_dns_name("-a", 1));
    CHECK(!sbx__valid_dns_name("a-", 1));
    CHECK(!sbx__valid_dns_name("A", 1));
    CHECK(!sbx__valid_dns_name("a..b", 1));
    CHECK(!sbx__valid_dns_name("a.-b", 1));
    CHECK(!sbx__valid_dns_name("a_b", 1));
    CHECK(!sbx__valid_dns_name("a/b", 1));
    CHECK(!sbx__valid_dns_name("0123456789012345678901234567890123456789012345678901234567890123", 0));
    CHECK(sbx__valid_dns_name("012345678901234567890123456789012345678901234567890123456789012", 0));
    /* a Kubernetes subdomain has no cap per label; a host name caps labels at 63 */
    CHECK(sbx__valid_dns_name("0123456789012345678901234567890123456789012345678901234567890123.a", 1));
    CHECK(!sbx__valid_dns_name("a.", 1));
    CHECK(!sbx__valid_dns_name(".a", 1));
    CHECK(!sbx__valid_dns_name("a-.b", 1));
    CHECK(!sbx__valid_dns_name(NULL, 1));
    CHECK(sbx__dns_why("GW.Example-1.com", 16, 1, 1) == NULL);
    CHECK_STR(sbx__dns_why("GW", 2, 1, 0), "has a character other than letters, digits, '-' and '.'");
    CHECK_STR(sbx__dns_why("a.b", 3, 0, 0), "has a '.'");
    CHECK_STR(sbx__dns_why("a..b", 4, 1, 1), "has an empty label or one longer than 63 characters");
    CHECK_STR(sbx__dns_why("0123456789012345678901234567890123456789012345678901234567890123.a", 66, 1, 1),
              "has an empty label or one longer than 63 characters");
    CHECK_STR(sbx__dns_why("a.-b", 4, 1, 1), "has a label that starts or ends with '-'");
    CHECK_STR(sbx__dns_why("", 0, 1, 1), "not a DNS name of 1 to 253 characters");
}

static const char *target_of(const char *path, int allow_root, char *out, size_t cap, sbx_result *r)
{
    sbx__buf b;
    sbx_error e;
    sbx__buf_init(&b, &A);
    *r = sbx__rt_target_enc("/download/", path, allow_root, 1, &b, &e); /* the python runtime's form */
    snprintf(out, cap, "%s", b.data ? b.data : "");
    sbx__buf_free(&b);
    return out;
}

TEST(paths_are_cleaned_and_encoded_twice)
{
    char out[256];
    sbx_result r;
    CHECK_STR(target_of("a/b.txt", 0, out, sizeof out, &r), "/download/a%252Fb.txt");
    CHECK_EQ_INT(r, SBX_OK);
    CHECK_STR(target_of("//a//b/", 0, out, sizeof out, &r), "/download/a%252Fb");
    CHECK_STR(target_of("x y%41~", 0, out, sizeof out, &r), "/download/x%2520y%252541~");
    CHECK_STR(target_of("", 1, out, sizeof out, &r), "/download/%252E");
    CHECK_STR(target_of("/", 1, out, sizeof out, &r), "/download/%252E");
    target_of("", 0, out, sizeof out, &r);
    CHECK_EQ_INT(r, SBX_ERR_INVALID_ARG);
    target_of("a/../b", 0, out, sizeof out, &r);
    CHECK_EQ_INT(r, SBX_ERR_INVALID_ARG);
    target_of("..", 1, out, sizeof out, &r);
    CHECK_EQ_INT(r, SBX_ERR_INVALID_ARG);
    target_of("./a", 0, out, sizeof out, &r);
    CHECK_EQ_INT(r, SBX_ERR_INVALID_ARG);
    target_of("a\tb", 0, out, sizeof out, &r);
    CHECK_EQ_INT(r, SBX_ERR_INVALID_ARG);
    target_of("a\x7f", 0, out, sizeof out, &r);
    CHECK_EQ_INT(r, SBX_ERR_INVALID_ARG);
    target_of("\xc3\x28", 0, out, sizeof out, &r); /* invalid UTF-8 */
    CHECK_EQ_INT(r, SBX_ERR_INVALID_ARG);
    CHECK_STR(target_of("caf\xc3\xa9", 0, out, sizeof out, &r), "/download/caf%25C3%25A9");
    CHECK_EQ_INT(r, SBX_OK);
    /* what the runtime sees after its two decodings is the cleaned path */
    CHECK_STR(target_of("...", 0, out, sizeof out, &r), "/download/...");
}

/* The claim body, parsed back: every field where upstream expects it. */
TEST(claim_body_fields)
{
    struct sbx__client cl;
    struct sbx__sandbox s;
    sbx_sandbox_config cfg;
    sbx__buf b;
    sbx_error e;
    sbx__jtok *t = NULL;
    int n, i;
    static const char *const labels[] = {"team", "a\"b", NULL};
    static const char *const ann[] = {"note", "line\nbreak", NULL};
    static const char *const env[] = {"FOO", "bar", "EMPTY", "", NULL};
    static const char *const podl[] = {"sandbox.users.io/x", "1", NULL};
    char v[128];
    double before;
    memset(&cl, 0, sizeof cl);
    memset(&s, 0, sizeof s);
    memset(&cfg, 0, sizeof cfg);
    cl.a = A;
    cl.ext_version = "v1beta1";
    s.cl = &cl;
    s.claim = claim_long;
    s.pool = pool_name;
    cfg.labels = labels;
    cfg.annotations = ann;
    cfg.env = env;
    cfg.pod_labels = podl;
    cfg.ttl_seconds = 3600;
    sbx__buf_init(&b, &A);
    before = test_realtime();
    s.expiry = sbx__epoch_up() + cfg.ttl_seconds; /* as sbx_open fixes it before the first create */
    CHECK_EQ_INT(sbx__claim_body(&s, &cfg, &b, &e), SBX_OK);
    n = sbx__json_parse_alloc(&A, b.data, b.len, &t);
    CHECK_MSG(n > 0, "body is not JSON: %s", b.data);
    if (n <= 0) { sbx__buf_free(&b); return; }
    CHECK(sbx__json_eq(b.data, t, sbx__json_get(b.data, t, n, 0, "apiVersion"), "extensions.agents.x-k8s.io/v1beta1"));
    CHECK(sbx__json_eq(b.data, t, sbx__json_get(b.data, t, n, 0, "kind"), "SandboxClaim"));
    CHECK(sbx__json_eq(b.data, t, sbx__json_get(b.data, t, n, 0, "metadata.name"), "sandbox-claim-0a1b2c3d"));
    CHECK(sbx__json_eq(b.data, t, sbx__json_get(b.data, t, n, 0, "spec.warmPoolRef.name"), "python-sandbox-warmpool"));
    i = sbx__json_get(b.data, t, n, 0, "metadata.labels");
    CHECK(sbx__json_eq(b.data, t, sbx__json_mem(b.data, t, n, i, "agents.x-k8s.io/created-by"), "sandbox-h"));
    CHECK(sbx__json_eq(b.data, t, sbx__json_mem(b.data, t, n, i, "team"), "a\"b"));
    i = sbx__json_get(b.data, t, n, 0, "metadata.annotations");
    CHECK(sbx__json_eq(b.data, t, sbx__json_mem(b.data, t, n, i, "note"), "line\nbreak"));
    sbx__json_copy(b.data, t, sbx__json_mem(b.data, t, n, i, "agents.x-k8s.io/client-first-requested-at"), v, sizeof v);
    CHECK_MSG(strlen(v) == 27 && v[4] == '-' && v[10] == 'T' && v[19] == '.' && v[26] == 'Z', "%s", v);
    sbx__json_copy(b.data, t, sbx__json_get(b.data, t, n, 0, "spec.lifecycle.shutdownTime"), v, sizeof v);
    CHECK_MSG(strlen(v) == 20 && v[19] == 'Z', "%s", v);
    {
        /* whole seconds, rounded up: at least the TTL from before the call,
           at most a second more than from after it */
        double at = sbx__parse_rfc3339(v, strlen(v));
        CHECK_MSG(at >= before + 3600 && at <= test_realtime() + 3601, "%s: %.3f..%.3f + 3600", v, before,
                  test_realtime());
    }
    CHECK(sbx__json_eq(b.data, t, sbx__json_get(b.data, t, n, 0, "spec.lifecycle.shutdownPolicy"), "Delete"));
    CHECK(sbx__json_eq(b.data, t, sbx__json_get(b.data, t, n, 0, "spec.env[1].name"), "EMPTY"));
    CHECK(sbx__json_eq(b.data, t, sbx__json_get(b.data, t, n, 0, "spec.env[1].value"), ""));
    CHECK(sbx__json_eq(b.data, t, sbx__json_get(b.data, t, n, 0, "spec.env[0].value"), "bar"));
    i = sbx__json_get(b.data, t, n, 0, "spec.additionalPodMetadata.labels");
    CHECK(sbx__json_eq(b.data, t, sbx__json_mem(b.data, t, n, i, "sandbox.users.io/x"), "1"));
    sbx__free(&A, t);
    sbx__buf_free(&b);

    /* v1alpha1 names the template instead */
    cl.ext_version = "v1alpha1";
    s.pool = NULL;
    s.template_name = tmpl_name;
    memset(&cfg, 0, sizeof cfg);
    s.expiry = 0; /* no ttl_seconds */
    sbx__buf_init(&b, &A);
    CHECK_EQ_INT(sbx__claim_body(&s, &cfg, &b, &e), SBX_OK);
    n = sbx__json_parse_alloc(&A, b.data, b.len, &t);
    CHECK(n > 0 && sbx__json_eq(b.data, t, sbx__json_get(b.data, t, n, 0, "spec.sandboxTemplateRef.name"),
                                "python-sandbox-template"));
    CHECK(n > 0 && sbx__json_get(b.data, t, n, 0, "spec.warmPoolRef") < 0);
    CHECK(n > 0 && sbx__json_get(b.data, t, n, 0, "spec.lifecycle") < 0);
    sbx__free(&A, t);
    sbx__buf_free(&b);
}

/* Owner metadata (interfaces.md) beside the user's own; a user key that is
   ours is not written twice; a lease sets the earlier shutdownTime. */
TEST(claim_body_owner_and_lease)
{
    struct sbx__client cl;
    struct sbx__sandbox s;
    sbx_sandbox_config cfg;
    sbx__buf b;
    sbx_error e;
    sbx__jtok *t = NULL;
    int n, i;
    static const char *const labels[] = {"app.kubernetes.io/managed-by", "someone", "team", "x", NULL};
    static const char *const ann[] = {"sandbox.h/open-nonce", "fake", "note", "y", NULL};
    char v[128];
    double when;
    memset(&cl, 0, sizeof cl);
    memset(&s, 0, sizeof s);
    memset(&cfg, 0, sizeof cfg);
    cl.a = A;
    cl.ext_version = "v1beta1";
    snprintf(cl.owner_host, sizeof cl.owner_host, "build-7");
    snprintf(cl.owner_pid, sizeof cl.owner_pid, "4242");
    snprintf(cl.owner_start, sizeof cl.owner_start, "1764800000");
    snprintf(s.nonce, sizeof s.nonce, "0123456789abcdef");
    s.cl = &cl;
    s.claim = short_c;
    s.pool = short_p;
    cfg.labels = labels;
    cfg.annotations = ann;
    cfg.lease_seconds = 60;
    cfg.ttl_seconds = 3600;
    cfg.shutdown_policy = "Retain";
    s.expiry = sbx__epoch_up() + cfg.ttl_seconds;
    sbx__buf_init(&b, &A);
    CHECK_EQ_INT(sbx__claim_body(&s, &cfg, &b, &e), SBX_OK);
    n = sbx__json_parse_alloc(&A, b.data, b.len, &t);
    CHECK_MSG(n > 0, "body is not JSON: %s", b.data);
    if (n <= 0) { sbx__buf_free(&b); return; }
    i = sbx__json_get(b.data, t, n, 0, "metadata.labels");
    CHECK(sbx__json_eq(b.data, t, sbx__json_mem(b.data, t, n, i, "app.kubernetes.io/managed-by"), "sandbox.h"));
    CHECK(sbx__json_eq(b.data, t, sbx__json_mem(b.data, t, n, i, "team"), "x"));
    CHECK_EQ_INT(t[i].size, 3); /* managed-by once, created-by, team */
    i = sbx__json_get(b.data, t, n, 0, "metadata.annotations");
    CHECK(sbx__json_eq(b.data, t, sbx__json_mem(b.data, t, n, i, "sandbox.h/owner-host"), "build-7"));
    CHECK(sbx__json_eq(b.data, t, sbx__json_mem(b.data, t, n, i, "sandbox.h/owner-pid"), "4242"));
    CHECK(sbx__json_eq(b.data, t, sbx__json_mem(b.data, t, n, i, "sandbox.h/owner-start"), "1764800000"));
    CHECK(sbx__json_eq(b.data, t, sbx__json_mem(b.data, t, n, i, "sandbox.h/open-nonce"), "0123456789abcdef"));
    CHECK(sbx__json_eq(b.data, t, sbx__json_mem(b.data, t, n, i, "note"), "y"));
    CHECK_EQ_INT(t[i].size, 6); /* 4 owner + requested-at + note: the fake nonce is not written */
    sbx__json_copy(b.data, t, sbx__json_get(b.data, t, n, 0, "spec.lifecycle.shutdownTime"), v, sizeof v);
    when = sbx__parse_rfc3339(v, strlen(v));
    CHECK_MSG(when >= (double)time(NULL) + 58 && when <= (double)time(NULL) + 61, "lease: %s", v);
    CHECK(sbx__json_eq(b.data, t, sbx__json_get(b.data, t, n, 0, "spec.lifecycle.shutdownPolicy"), "Retain"));
    sbx__free(&A, t);
    sbx__buf_free(&b);
}

TEST(claim_body_refuses_bad_input)
{
    struct sbx__client cl;
    struct sbx__sandbox s;
    sbx_sandbox_config cfg;
    sbx__buf b;
    sbx_error e;
    static const char *const bad_utf8[] = {"k", "\xff\xfe", NULL};
    static const char *const odd[] = {"lonely", NULL};
    memset(&cl, 0, sizeof cl);
    memset(&s, 0, sizeof s);
    memset(&cfg, 0, sizeof cfg);
    cl.a = A;
    cl.ext_version = "v1beta1";
    s.cl = &cl;
    s.claim = short_c;
    s.pool = short_p;
    cfg.labels = bad_utf8;
    sbx__buf_init(&b, &A);
    CHECK_EQ_INT(sbx__claim_body(&s, &cfg, &b, &e), SBX_ERR_INVALID_ARG);
    CHECK(strstr(e.msg, "UTF-8") != NULL);
    sbx__buf_free(&b);
    cfg.labels = NULL;
    cfg.env = odd;
    sbx__buf_init(&b, &A);
    CHECK_EQ_INT(sbx__claim_body(&s, &cfg, &b, &e), SBX_ERR_INVALID_ARG);
    CHECK(strstr(e.msg, "lonely") != NULL);
    sbx__buf_free(&b);
}

/* Argument checks answer before anything is started. */
TEST(open_argument_checks)
{
    sbx_client c;
    sbx_sandbox sb;
    sbx_sandbox_config cfg;
    sbx_client_config cc;
    memset(&cc, 0, sizeof cc);
    cc.api_url = "http://127.0.0.1:1"; /* nothing is contacted by these checks */
    CHECK_EQ_INT(sbx_client_open(&c, &cc), SBX_OK);
    memset(&cfg, 0, sizeof cfg);
    CHECK_EQ_INT(sbx_open(&sb, &c, &cfg), SBX_ERR_INVALID_ARG);
    CHECK(strstr(sb.err.msg, "template_name or warm_pool") != NULL);
    cfg.template_name = "Bad_Name";
    CHECK_EQ_INT(sbx_open(&sb, &c, &cfg), SBX_ERR_INVALID_ARG);
    cfg.template_name = "ok";
    cfg.ns = "no.dots";
    CHECK_EQ_INT(sbx_open(&sb, &c, &cfg), SBX_ERR_INVALID_ARG);
    cfg.ns = NULL;
    cfg.claim_name = "UPPER";
    CHECK_EQ_INT(sbx_open(&sb, &c, &cfg), SBX_ERR_INVALID_ARG);
    cfg.claim_name = NULL;
    cfg.lease_seconds = 2; /* shutdownTime has whole seconds: too short to renew safely */
    CHECK_EQ_INT(sbx_open(&sb, &c, &cfg), SBX_ERR_INVALID_ARG);
    CHECK_MSG(strstr(sb.err.msg, "lease_seconds 2") != NULL, "%s", sb.err.msg);
    cfg.lease_seconds = -1;
    CHECK_EQ_INT(sbx_open(&sb, &c, &cfg), SBX_ERR_INVALID_ARG);
    cfg.lease_seconds = 0;
    cfg.server_port = 70000;
    CHECK_EQ_INT(sbx_open(&sb, &c, &cfg), SBX_ERR_INVALID_ARG);
    CHECK(sb.impl == NULL);
    /* the API is down: a connect error names the endpoint, nothing leaks */
    cfg.server_port = 0;
    CHECK_EQ_INT(sbx_open(&sb, &c, &cfg), SBX_ERR_CONNECT);
    CHECK_MSG(strstr(sb.err.msg, "127.0.0.1:1") != NULL, "%s", sb.err.msg);
    sbx_client_close(&c);
    CHECK(c.impl == NULL);
    sbx_client_close(&c); /* twice is fine */
    cc.ns = "Not-Valid";
    CHECK_EQ_INT(sbx_client_open(&c, &cc), SBX_ERR_INVALID_ARG);
    cc.ns = NULL;
    cc.api_url = "https://127.0.0.1:6443";
    CHECK(sbx_client_open(&c, &cc) != SBX_OK);
    CHECK(c.impl == NULL);
    CHECK_EQ_INT(sbx_open(&sb, &c, &cfg), SBX_ERR_CLOSED);
}

TEST(closed_sandbox_calls)
{
    sbx_sandbox sb;
    sbx_exec_result res;
    char *data = (char *)&sb;
    size_t len = 7;
    sbx_file_entry *ents = (sbx_file_entry *)&sb;
    size_t count = 3;
    int ex = 5;
    memset(&sb, 0, sizeof sb);
    CHECK_EQ_INT(sbx_run(&sb, "true", &res), SBX_ERR_CLOSED);
    CHECK(res.out == NULL && res.diag == NULL);
    CHECK_EQ_INT(sbx_read(&sb, "x", &data, &len), SBX_ERR_CLOSED);
    CHECK(data == NULL && len == 0);
    CHECK_EQ_INT(sbx_list_dir(&sb, "x", &ents, &count), SBX_ERR_CLOSED);
    CHECK(ents == NULL && count == 0);
    CHECK_EQ_INT(sbx_exists(&sb, "x", &ex), SBX_ERR_CLOSED);
    CHECK_EQ_INT(ex, 0);
    CHECK_EQ_INT(sbx_write(&sb, "x", "y", 1), SBX_ERR_CLOSED);
    CHECK_EQ_INT(sbx_close(&sb), SBX_OK);
    CHECK(sbx_claim_name(&sb) == NULL && sbx_pod_name(&sb) == NULL);
    sbx_exec_result_free(NULL);
    sbx_free(NULL);
}

int main(void)
{
    A = sbx__allocator(NULL);
    RUN(ready_true_with_name);
    RUN(ready_true_without_sandbox_is_not_ready);
    RUN(waiting_reasons_keep_waiting);
    RUN(every_terminal_reason_fails_at_once);
    RUN(missing_template_or_pool_fails_at_once);
    RUN(dns_names);
    RUN(paths_are_cleaned_and_encoded_twice);
    RUN(claim_body_fields);
    RUN(claim_body_refuses_bad_input);
    RUN(claim_body_owner_and_lease);
    RUN(open_argument_checks);
    RUN(closed_sandbox_calls);
    return test_summary("kube");
}
