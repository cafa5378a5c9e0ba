/* End-to-end: sandbox.h against the dev cluster (tests/devcluster) with the
   real kubectl (proxy + port-forward), on a v1beta1 cluster. After every test
   the cluster must be back to its seed state (no claim, no extra pod) and this
   process must hold no extra descriptor or child. */
#define SANDBOX_IMPLEMENTATION
#include "sandbox.h"
#include "test.h"

#include <pthread.h>
#include <sys/time.h>

static e2e_cluster C;
static sbx_client client;
static int base_fds, base_pods, base_children;

/* Descriptors besides the client's idle keep-alive connections to the API
   (a pool of at most SBX__POOL_MAX, kept on purpose). */
static int fds_now(void)
{
    int idle;
    pthread_mutex_lock(&client.impl->mu);
    idle = client.impl->nidle;
    pthread_mutex_unlock(&client.impl->mu);
    return e2e_fd_count() - idle;
}

static void cfg_template(sbx_sandbox_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->template_name = "python-sandbox-template";
    cfg->ns = "default";
}

/* Pod processes the dev cluster reports alive (each pod is a real process). */
static int alive_processes(void)
{
    sbx__buf out;
    sbx__jtok *t = NULL;
    int n, arr, i, k, alive = -1;
    if (e2e_http(&C, "GET", "/_admin/state", NULL, &out) == 200) {
        n = sbx__json_parse_alloc(&C.a, out.data, out.len, &t);
        arr = n > 0 ? sbx__json_get(out.data, t, n, 0, "processes") : -1;
        if (arr >= 0 && t[arr].type == SBX__JSON_ARRAY) {
            alive = 0;
            for (i = arr + 1, k = 0; k < t[arr].size; k++, i = t[i].next) {
                int a = sbx__json_mem(out.data, t, n, i, "alive");
                if (a >= 0 && t[a].type == SBX__JSON_TRUE) alive++;
            }
        }
        sbx__free(&C.a, t);
    }
    sbx__buf_free(&out);
    return alive;
}

/* Wait (bounded) until no claim exists and the pods are back to the seed
   count, then check descriptors and children. */
static void settle(void)
{
    long long deadline = sbx__deadline(10000);
    int claims = -1, pods = -1, procs = -1;
    /* faults off first: they may hit the very requests that count */
    e2e_faults(&C, "{\"never_ready\":null,\"delete_claim_after_ms\":null,\"watch_expired\":null,"
                   "\"watch_drop_after\":null,\"cold_start_ms\":null,\"api_error_every\":null,"
                   "\"api_fault_match\":null,\"portforward\":null,\"runtime\":null}");
    while (sbx__ms_left(deadline) > 0) {
        claims = e2e_count(&C, E2E_CLAIMS);
        pods = e2e_count(&C, E2E_PODS);
        procs = alive_processes();
        if (claims == 0 && pods == base_pods && procs == base_pods) break;
        poll(NULL, 0, 50);
    }
    CHECK_EQ_INT(claims, 0);
    CHECK_EQ_INT(pods, base_pods);
    CHECK_EQ_INT(procs, base_pods); /* no runtime process outlives its pod */
    CHECK_EQ_INT(fds_now(), base_fds);
    CHECK_EQ_INT(e2e_child_count(), base_children);
}

static long long ms_since(long long t0) { return sbx__now_ms() - t0; }

TEST(quickstart_warm)
{
    sbx_sandbox sb;
    sbx_sandbox_config cfg;
    sbx_exec_result res;
    long long t0 = sbx__now_ms();
    cfg_template(&cfg);
    CHECK_EQ_INT(sbx_open(&sb, &client, &cfg), SBX_OK);
    printf("  open (warm) took %lld ms: %s\n", ms_since(t0), sb.err.msg);
    if (!sb.impl) return;
    CHECK(strncmp(sbx_claim_name(&sb), "sandbox-claim-", 14) == 0 && strlen(sbx_claim_name(&sb)) == 22);
    /* warm adoption: the sandbox is a pool member, not named after the claim */
    CHECK(strncmp(sbx_sandbox_name(&sb), "python-sandbox-warmpool-", 24) == 0);
    CHECK_STR(sbx_pod_name(&sb), sbx_sandbox_name(&sb));
    CHECK_STR(sbx_namespace(&sb), "default");
    CHECK_EQ_INT(sbx_run(&sb, "echo 'Hello, World!'", &res), SBX_OK);
    CHECK_EQ_INT(res.exit_code, 0);
    CHECK(res.out && res.out_len == 14 && memcmp(res.out, "Hello, World!\n", 14) == 0);
    CHECK(res.diag && res.diag_len == 0);
    sbx_exec_result_free(&res);
    CHECK_EQ_INT(sbx_close(&sb), SBX_OK);
    CHECK(sb.impl == NULL);
    CHECK_EQ_INT(sbx_close(&sb), SBX_OK); /* idempotent */
    CHECK_EQ_INT(sbx_run(&sb, "true", &res), SBX_ERR_CLOSED);
    settle();
}

TEST(cold_pool)
{
    sbx_sandbox sb;
    sbx_sandbox_config cfg;
    sbx_exec_result res;
    cfg_template(&cfg);
    cfg.template_name = NULL;
    cfg.warm_pool = "python-sandbox-coldpool";
    CHECK_EQ_INT(sbx_open(&sb, &client, &cfg), SBX_OK);
    if (!sb.impl) { printf("  %s\n", sb.err.msg); return; }
    CHECK_STR(sbx_sandbox_name(&sb), sbx_claim_name(&sb)); /* cold: named after the claim */
    CHECK_EQ_INT(sbx_run(&sb, "pwd", &res), SBX_OK);
    CHECK(res.out_len > 1 && res.exit_code == 0);
    sbx_exec_result_free(&res);
    CHECK_EQ_INT(sbx_close(&sb), SBX_OK);
    settle();
}

/* The wait is a watch, never a poll: no GET of the claim by name. */
TEST(waits_by_watching)
{
    sbx_sandbox sb;
    sbx_sandbox_config cfg;
    sbx__buf log;
    char byname[128], watch[160];
    cfg_template(&cfg);
    cfg.template_name = NULL;
    cfg.warm_pool = "python-sandbox-coldpool";
    e2e_faults(&C, "{\"cold_start_ms\":400}");
    CHECK_EQ_INT(sbx_open(&sb, &client, &cfg), SBX_OK);
    if (!sb.impl) { printf("  %s\n", sb.err.msg); settle(); return; }
    CHECK(e2e_http(&C, "GET", "/_admin/requests", NULL, &log) == 200);
    snprintf(byname, sizeof byname, "sandboxclaims/%s", sbx_claim_name(&sb));
    snprintf(watch, sizeof watch, "metadata.name%%3D%s", sbx_claim_name(&sb));
    CHECK_MSG(log.data && !strstr(log.data, byname), "the claim was fetched by name (polling)");
    CHECK_MSG(log.data && strstr(log.data, watch) && strstr(log.data, "watch=true"), "no watch on the claim");
    sbx__buf_free(&log);
    CHECK_EQ_INT(sbx_close(&sb), SBX_OK);
    settle();
}

TEST(template_without_pool)
{
    sbx_sandbox sb;
    sbx_sandbox_config cfg;
    cfg_template(&cfg);
    cfg.template_name = "no-such-template";
    CHECK_EQ_INT(sbx_open(&sb, &client, &cfg), SBX_ERR_NOT_FOUND);
    CHECK_MSG(strstr(sb.err.msg, "no SandboxWarmPool") && strstr(sb.err.msg, "no-such-template"), "%s", sb.err.msg);
    CHECK(sb.impl == NULL);
    CHECK_EQ_INT(sbx_close(&sb), SBX_OK);
    settle();
}

TEST(warm_pool_not_found)
{
    sbx_sandbox sb;
    sbx_sandbox_config cfg;
    long long t0 = sbx__now_ms();
    cfg_template(&cfg);
    cfg.template_name = NULL;
    cfg.warm_pool = "no-such-pool";
    CHECK_EQ_INT(sbx_open(&sb, &client, &cfg), SBX_ERR_NOT_FOUND);
    CHECK_MSG(strstr(sb.err.msg, "WarmPoolNotFound") && strstr(sb.err.msg, "no-such-pool"), "%s", sb.err.msg);
    CHECK_MSG(ms_since(t0) < 5000, "took %lld ms: must fail fast", ms_since(t0));
    settle();
}

TEST(invalid_metadata_is_terminal)
{
    sbx_sandbox sb;
    sbx_sandbox_config cfg;
    static const char *const labels[] = {"not-allowed.example.com/team", "x", NULL};
    cfg_template(&cfg);
    cfg.pod_labels = labels;
    CHECK_EQ_INT(sbx_open(&sb, &client, &cfg), SBX_ERR_SANDBOX);
    CHECK_MSG(strstr(sb.err.msg, "InvalidMetadata"), "%s", sb.err.msg);
    settle();
}

TEST(env_rejected_is_terminal)
{
    sbx_sandbox sb;
    sbx_sandbox_config cfg;
    static const char *const env[] = {"FOO", "bar", NULL};
    cfg_template(&cfg);
    cfg.env = env;
    CHECK_EQ_INT(sbx_open(&sb, &client, &cfg), SBX_ERR_SANDBOX);
    CHECK_MSG(strstr(sb.err.msg, "EnvVarsInjectionRejected"), "%s", sb.err.msg);
    settle();
}

TEST(claim_expired_is_terminal)
{
    sbx_sandbox sb;
    sbx_sandbox_config cfg;
    sbx_result r;
    cfg_template(&cfg);
    cfg.ttl_seconds = 1;
    e2e_faults(&C, "{\"never_ready\":true}");
    r = sbx_open(&sb, &client, &cfg);
    CHECK_MSG(r == SBX_ERR_SANDBOX || r == SBX_ERR_DELETED, "%d %s", r, sb.err.msg);
    CHECK_MSG(strstr(sb.err.msg, "ClaimExpired") || strstr(sb.err.msg, "deleted"), "%s", sb.err.msg);
    settle();
}

TEST(deleted_while_waiting)
{
    sbx_sandbox sb;
    sbx_sandbox_config cfg;
    cfg_template(&cfg);
    e2e_faults(&C, "{\"never_ready\":true,\"delete_claim_after_ms\":300}");
    CHECK_EQ_INT(sbx_open(&sb, &client, &cfg), SBX_ERR_DELETED);
    CHECK_MSG(strstr(sb.err.msg, "deleted while waiting"), "%s", sb.err.msg);
    settle();
}

TEST(ready_timeout)
{
    sbx_sandbox sb;
    sbx_sandbox_config cfg;
    long long t0 = sbx__now_ms(), took;
    cfg_template(&cfg);
    cfg.ready_timeout_ms = 1500;
    e2e_faults(&C, "{\"never_ready\":true}");
    CHECK_EQ_INT(sbx_open(&sb, &client, &cfg), SBX_ERR_TIMEOUT);
    took = ms_since(t0);
    CHECK_MSG(took >= 1400 && took < 5000, "took %lld ms for a 1500 ms deadline", took);
    CHECK_MSG(strstr(sb.err.msg, "not Ready in time"), "%s", sb.err.msg);
    settle();
}

TEST(watch_410_rewatches)
{
    sbx_sandbox sb;
    sbx_sandbox_config cfg;
    cfg_template(&cfg);
    cfg.template_name = NULL;
    cfg.warm_pool = "python-sandbox-coldpool";
    e2e_faults(&C, "{\"watch_expired\":1,\"cold_start_ms\":300}");
    CHECK_EQ_INT(sbx_open(&sb, &client, &cfg), SBX_OK);
    if (!sb.impl) printf("  %s\n", sb.err.msg);
    CHECK_EQ_INT(sbx_close(&sb), SBX_OK);
    settle();
}

TEST(watch_dropped_rewatches)
{
    sbx_sandbox sb;
    sbx_sandbox_config cfg;
    cfg_template(&cfg);
    cfg.template_name = NULL;
    cfg.warm_pool = "python-sandbox-coldpool";
    e2e_faults(&C, "{\"watch_drop_after\":1,\"cold_start_ms\":300}");
    CHECK_EQ_INT(sbx_open(&sb, &client, &cfg), SBX_OK);
    if (!sb.impl) printf("  %s\n", sb.err.msg);
    CHECK_EQ_INT(sbx_close(&sb), SBX_OK);
    settle();
}

TEST(claim_name_conflict_keeps_the_other_claim)
{
    sbx_sandbox sb;
    sbx_sandbox_config cfg;
    sbx__buf out;
    int st = e2e_http(&C, "POST", "/apis/extensions.agents.x-k8s.io/v1beta1/namespaces/default/sandboxclaims",
                      "{\"apiVersion\":\"extensions.agents.x-k8s.io/v1beta1\",\"kind\":\"SandboxClaim\","
                      "\"metadata\":{\"name\":\"taken-claim\"},\"spec\":{\"warmPoolRef\":{\"name\":\"python-sandbox-coldpool\"}}}",
                      &out);
    sbx__buf_free(&out);
    CHECK_EQ_INT(st, 201);
    cfg_template(&cfg);
    cfg.claim_name = "taken-claim";
    CHECK_EQ_INT(sbx_open(&sb, &client, &cfg), SBX_ERR_HTTP);
    CHECK_EQ_INT(sb.err.http_status, 409);
    CHECK_MSG(strstr(sb.err.msg, "already exists"), "%s", sb.err.msg);
    /* the other claim is untouched */
    CHECK_EQ_INT(e2e_count(&C, E2E_CLAIMS), 1);
    st = e2e_http(&C, "DELETE", "/apis/extensions.agents.x-k8s.io/v1beta1/namespaces/default/sandboxclaims/taken-claim",
                  NULL, &out);
    sbx__buf_free(&out);
    CHECK_EQ_INT(st, 200);
    settle();
}

TEST(rollback_when_sandbox_lookup_fails)
{
    sbx_sandbox sb;
    sbx_sandbox_config cfg;
    cfg_template(&cfg);
    e2e_faults(&C, "{\"api_error_every\":1,\"api_error_code\":500,\"api_fault_match\":\"^GET .*/sandboxes/\"}");
    CHECK_EQ_INT(sbx_open(&sb, &client, &cfg), SBX_ERR_HTTP);
    CHECK_EQ_INT(sb.err.http_status, 500);
    CHECK_MSG(strstr(sb.err.msg, "get Sandbox"), "%s", sb.err.msg);
    settle();
}

TEST(rollback_when_tunnel_fails)
{
    sbx_sandbox sb;
    sbx_sandbox_config cfg;
    cfg_template(&cfg);
    /* error_text: kubectl's transports; channel_error: the WebSocket route's */
    e2e_faults(&C, "{\"portforward\":{\"error_text\":\"simulated kubelet failure\","
                   "\"channel_error\":\"simulated kubelet failure\"}}");
    CHECK(sbx_open(&sb, &client, &cfg) != SBX_OK);
    CHECK_MSG(strstr(sb.err.msg, "simulated kubelet failure") || strstr(sb.err.msg, "lost connection"), "%s", sb.err.msg);
    settle();
}

/* The Sandbox expires on its own (someone set spec.shutdownTime): the claim
   forwards SandboxExpired, which is terminal. */
struct expire_job {
    const char *claim;
};

static void *expire_sandbox(void *arg)
{
    struct expire_job *job = (struct expire_job *)arg;
    char target[256];
    sbx__buf out;
    long long deadline = sbx__deadline(5000);
    E2E_FMT(target, sizeof target, "/apis/agents.x-k8s.io/v1beta1/namespaces/default/sandboxes/%s", job->claim);
    while (sbx__ms_left(deadline) > 0) {
        int st = e2e_http(&C, "PATCH", target, "{\"spec\":{\"shutdownTime\":\"2020-01-01T00:00:00Z\"}}", &out);
        sbx__buf_free(&out);
        if (st == 200) break;
        poll(NULL, 0, 50);
    }
    return NULL;
}

TEST(sandbox_expired_is_terminal)
{
    sbx_sandbox sb;
    sbx_sandbox_config cfg;
    pthread_t th;
    struct expire_job job;
    cfg_template(&cfg);
    cfg.template_name = NULL;
    cfg.warm_pool = "python-sandbox-coldpool";
    cfg.claim_name = "expiring-claim";
    cfg.ready_timeout_ms = 20000;
    job.claim = cfg.claim_name;
    e2e_faults(&C, "{\"never_ready\":true}");
    CHECK(pthread_create(&th, NULL, expire_sandbox, &job) == 0);
    CHECK_EQ_INT(sbx_open(&sb, &client, &cfg), SBX_ERR_SANDBOX);
    CHECK_MSG(strstr(sb.err.msg, "SandboxExpired"), "%s", sb.err.msg);
    pthread_join(th, NULL);
    settle();
}

TEST(rollback_when_create_fails)
{
    sbx_sandbox sb;
    sbx_sandbox_config cfg;
    cfg_template(&cfg);
    e2e_faults(&C, "{\"api_error_every\":1,\"api_error_code\":500,\"api_fault_match\":\"^POST .*/sandboxclaims\"}");
    CHECK_EQ_INT(sbx_open(&sb, &client, &cfg), SBX_ERR_HTTP);
    CHECK_EQ_INT(sb.err.http_status, 500);
    CHECK_MSG(strstr(sb.err.msg, "create SandboxClaim: HTTP 500"), "%s", sb.err.msg);
    settle();
}

TEST(discovery_failure_is_reported)
{
    sbx_client c2;
    sbx_client_config cc;
    sbx_sandbox sb;
    sbx_sandbox_config cfg;
    memset(&cc, 0, sizeof cc);
    cc.kubeconfig = C.kubeconfig;
    CHECK_EQ_INT(sbx_client_open(&c2, &cc), SBX_OK);
    e2e_faults(&C, "{\"api_error_every\":1,\"api_error_code\":403,\"api_fault_match\":\"^GET /apis/extensions.agents.x-k8s.io\"}");
    cfg_template(&cfg);
    CHECK_EQ_INT(sbx_open(&sb, &c2, &cfg), SBX_ERR_HTTP);
    CHECK_EQ_INT(sb.err.http_status, 403);
    CHECK_MSG(strstr(sb.err.msg, "extensions.agents.x-k8s.io"), "%s", sb.err.msg);
    sbx_client_close(&c2);
    settle();
}

TEST(kubectl_missing)
{
    sbx_client c2;
    sbx_client_config cc;
    memset(&cc, 0, sizeof cc);
    cc.kubectl = "/nonexistent/kubectl";
    cc.kubeconfig = C.kubeconfig;
    CHECK_EQ_INT(sbx_client_open(&c2, &cc), SBX_ERR_SPAWN);
    CHECK_MSG(strstr(c2.err.msg, "No such file"), "%s", c2.err.msg);
    CHECK(c2.impl == NULL);
    sbx_client_close(&c2);
    settle();
}

TEST(kubectl_failing)
{
    sbx_client c2;
    sbx_client_config cc;
    char script[700];
    FILE *f;
    E2E_FMT(script, sizeof script, "%s/failing-kubectl", C.dir);
    f = fopen(script, "w");
    CHECK(f != NULL);
    if (!f) return;
    fprintf(f, "#!/bin/sh\necho 'error: the server has asked for the client to provide credentials' >&2\nexit 1\n");
    fclose(f);
    chmod(script, 0755);
    memset(&cc, 0, sizeof cc);
    cc.kubectl = script;
    CHECK_EQ_INT(sbx_client_open(&c2, &cc), SBX_ERR_SPAWN);
    CHECK_MSG(strstr(c2.err.msg, "provide credentials") && strstr(c2.err.msg, "status 1"), "%s", c2.err.msg);
    settle();
}

static sbx_sandbox shared;

TEST(binary_files_round_trip)
{
    unsigned char data[1024];
    char *back = NULL;
    size_t len = 0, i, count = 0;
    int ex = 0, found = 0;
    sbx_file_entry *ents = NULL;
    for (i = 0; i < sizeof data; i++) data[i] = (unsigned char)(i * 7 + i / 256);
    for (i = 0; i < 256; i++) data[i] = (unsigned char)i;
    CHECK_EQ_INT(sbx_write(&shared, "bin/all.bin", data, sizeof data), SBX_OK);
    CHECK_EQ_INT(sbx_read(&shared, "bin/all.bin", &back, &len), SBX_OK);
    CHECK(len == sizeof data && back && memcmp(back, data, len) == 0);
    sbx_free(back);
    CHECK_EQ_INT(sbx_exists(&shared, "bin/all.bin", &ex), SBX_OK);
    CHECK_EQ_INT(ex, 1);
    CHECK_EQ_INT(sbx_exists(&shared, "bin/none.bin", &ex), SBX_OK);
    CHECK_EQ_INT(ex, 0);
    CHECK_EQ_INT(sbx_list_dir(&shared, "bin", &ents, &count), SBX_OK);
    for (i = 0; i < count; i++)
        if (strcmp(ents[i].name, "all.bin") == 0 && ents[i].size == 1024 && !ents[i].is_dir && ents[i].mod_time > 1e9) found = 1;
    CHECK(found);
    sbx_free(ents);
    /* an empty file */
    CHECK_EQ_INT(sbx_write(&shared, "empty", "", 0), SBX_OK);
    CHECK_EQ_INT(sbx_read(&shared, "empty", &back, &len), SBX_OK);
    CHECK(back && len == 0);
    sbx_free(back);
}

TEST(run_output_is_binary_safe)
{
    sbx_exec_result res;
    int i, ok = 1;
    CHECK_EQ_INT(sbx_run(&shared, "python3 -c \"import sys; sys.stdout.write(''.join(map(chr, range(1, 128))) + chr(0)); sys.stderr.write('to-stderr')\"", &res), SBX_OK);
    CHECK_EQ_INT(res.out_len, 128);
    /* every byte survives the JSON round trip, NUL included; the upstream
       runtime decodes output as text, turning a lone \r into \n */
    for (i = 0; i < 127 && res.out_len == 128; i++)
        if ((unsigned char)res.out[i] != (i + 1 == '\r' ? '\n' : i + 1)) ok = 0;
    CHECK(ok && res.out_len == 128 && res.out[127] == '\0');
    CHECK(res.diag_len == 9 && memcmp(res.diag, "to-stderr", 9) == 0);
    sbx_exec_result_free(&res);
    CHECK_EQ_INT(sbx_run(&shared, "ls /definitely-not-here", &res), SBX_OK);
    CHECK(res.exit_code != 0 && res.diag_len > 0);
    sbx_exec_result_free(&res);
    CHECK_EQ_INT(sbx_run(&shared, "no-such-program-xyz", &res), SBX_OK);
    CHECK_EQ_INT(res.exit_code, 1);
    CHECK(res.diag && strstr(res.diag, "Failed to execute command"));
    sbx_exec_result_free(&res);
}

TEST(exec_argv_on_python_runtime)
{
    /* the python runtime splits one line like a shell's words: argv must come
       back as the same words, quotes, spaces and empty words included */
    static const char *const argv[] = {"python3", "-c", "import sys; print(repr(sys.argv[1:]))", "a b", "it's", "",
                                       "$HOME", "x\"y", NULL};
    static const char *const env[] = {"A", "1", NULL};
    sbx_process_config pc;
    sbx_exec_result res;
    sbx_process p;
    memset(&pc, 0, sizeof pc);
    pc.argv = argv;
    CHECK_EQ_INT(sbx_exec(&shared, &pc, &res), SBX_OK);
    CHECK_MSG(res.out && strcmp(res.out, "['a b', \"it's\", '', '$HOME', 'x\"y']\n") == 0, "%s", res.out ? res.out : "(null)");
    CHECK_EQ_INT(res.exit_code, 0);
    sbx_exec_result_free(&res);
    pc.argv = NULL;
    pc.command = "sh -c 'exit 3'";
    CHECK_EQ_INT(sbx_exec(&shared, &pc, &res), SBX_OK);
    CHECK_EQ_INT(res.exit_code, 3);
    sbx_exec_result_free(&res);
    /* what the python runtime cannot do is refused, saying so */
    pc.env = env;
    CHECK_EQ_INT(sbx_exec(&shared, &pc, &res), SBX_ERR_UNSUPPORTED);
    CHECK_MSG(strstr(shared.err.msg, "python runtime") && strstr(shared.err.msg, "environment"), "%s", shared.err.msg);
    pc.env = NULL;
    pc.argv = argv;
    CHECK_EQ_INT(sbx_exec(&shared, &pc, &res), SBX_ERR_INVALID_ARG); /* both argv and command */
    CHECK_EQ_INT(sbx_process_start(&p, &shared, &pc), SBX_ERR_INVALID_ARG);
    pc.argv = NULL;
    CHECK_EQ_INT(sbx_process_start(&p, &shared, &pc), SBX_ERR_UNSUPPORTED);
    CHECK_MSG(strstr(p.err.msg, "python runtime") && strstr(p.err.msg, "no process API"), "%s", p.err.msg);
    CHECK_EQ_INT(shared.err.code, SBX_OK);
    CHECK_EQ_INT(sbx_process_close(&p), SBX_OK);
    CHECK(!(sbx_capabilities(&shared) & SBX_CAP_PROCESS));
}

TEST(path_rules)
{
    char *back = NULL;
    size_t len = 0;
    CHECK_EQ_INT(sbx_write(&shared, "../escape", "x", 1), SBX_ERR_INVALID_ARG);
    CHECK_EQ_INT(sbx_write(&shared, "a/../../b", "x", 1), SBX_ERR_INVALID_ARG);
    CHECK_EQ_INT(sbx_write(&shared, "a/./b", "x", 1), SBX_ERR_INVALID_ARG);
    CHECK_EQ_INT(sbx_write(&shared, "bad\nname", "x", 1), SBX_ERR_INVALID_ARG);
    CHECK_EQ_INT(sbx_write(&shared, "/", "x", 1), SBX_ERR_INVALID_ARG);
    CHECK_EQ_INT(sbx_write(&shared, "bad\xff", "x", 1), SBX_ERR_INVALID_ARG);
    CHECK_EQ_INT(sbx_read(&shared, "../etc/passwd", &back, &len), SBX_ERR_INVALID_ARG);
    /* a leading slash means the sandbox's base directory */
    CHECK_EQ_INT(sbx_write(&shared, "/abs/dir/file name %41.txt", "hello", 5), SBX_OK);
    CHECK_EQ_INT(sbx_read(&shared, "abs/dir/file name %41.txt", &back, &len), SBX_OK);
    CHECK(back && len == 5 && memcmp(back, "hello", 5) == 0);
    sbx_free(back);
    back = NULL;
    CHECK_EQ_INT(sbx_read(&shared, "no/such/file", &back, &len), SBX_ERR_NOT_FOUND);
    CHECK_MSG(strstr(shared.err.msg, "File not found"), "%s", shared.err.msg);
    CHECK(back == NULL);
}

TEST(response_cap)
{
    sbx_sandbox sb;
    sbx_sandbox_config cfg;
    char big[5000];
    char *back = NULL;
    size_t len;
    cfg_template(&cfg);
    cfg.max_output_bytes = 1000;
    CHECK_EQ_INT(sbx_open(&sb, &client, &cfg), SBX_OK);
    if (!sb.impl) return;
    memset(big, 'z', sizeof big);
    CHECK_EQ_INT(sbx_write(&sb, "big", big, sizeof big), SBX_OK);
    CHECK_EQ_INT(sbx_read(&sb, "big", &back, &len), SBX_ERR_TOO_BIG);
    CHECK(back == NULL);
    CHECK_MSG(strstr(sb.err.msg, "1000"), "%s", sb.err.msg);
    /* the sandbox stays usable after a refused answer */
    CHECK_EQ_INT(sbx_write(&sb, "small", "ok", 2), SBX_OK);
    CHECK_EQ_INT(sbx_close(&sb), SBX_OK);
    settle();
}

/* 50 MB through the descriptor variants: file in, file out, identical. */
TEST(large_file_through_descriptors)
{
    char src[700], dst[700];
    size_t size = 50u << 20, i, done;
    unsigned char *chunk = (unsigned char *)malloc(1 << 20);
    int fd, same = 1;
    FILE *a, *b;
    long long t0;
    if (!chunk) return;
    E2E_FMT(src, sizeof src, "%s/big.src", C.dir);
    E2E_FMT(dst, sizeof dst, "%s/big.dst", C.dir);
    fd = open(src, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    for (done = 0; done < size; done += 1u << 20) {
        for (i = 0; i < (1u << 20); i++) chunk[i] = (unsigned char)((i * 31 + done / 4096) & 0xff);
        if (write(fd, chunk, 1u << 20) != (ssize_t)(1u << 20)) same = 0;
    }
    close(fd);
    fd = open(src, O_RDONLY);
    t0 = sbx__now_ms();
    CHECK_EQ_INT(sbx_write_fd(&shared, "big/file.bin", fd), SBX_OK);
    printf("  write_fd 50 MB: %lld ms\n", ms_since(t0));
    close(fd);
    fd = open(dst, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    t0 = sbx__now_ms();
    CHECK_EQ_INT(sbx_read_fd(&shared, "big/file.bin", fd), SBX_OK);
    printf("  read_fd 50 MB: %lld ms\n", ms_since(t0));
    close(fd);
    a = fopen(src, "rb");
    b = fopen(dst, "rb");
    if (a && b) {
        static unsigned char other[1 << 20];
        size_t na, nb;
        do {
            na = fread(chunk, 1, 1 << 20, a);
            nb = fread(other, 1, 1 << 20, b);
            if (na != nb || memcmp(chunk, other, na) != 0) same = 0;
        } while (na > 0 && same);
    } else {
        same = 0;
    }
    if (a) fclose(a);
    if (b) fclose(b);
    CHECK(same);
    unlink(src);
    unlink(dst);
    free(chunk);
}

struct thread_job {
    int index;
    int ok;
    char msg[SBX_ERRMSG_SIZE];
};

static void *thread_main(void *arg)
{
    struct thread_job *job = (struct thread_job *)arg;
    sbx_sandbox sb;
    sbx_sandbox_config cfg;
    sbx_exec_result res;
    char cmd[64], expect[64], path[64];
    char *back = NULL;
    size_t len = 0;
    cfg_template(&cfg);
    snprintf(cmd, sizeof cmd, "echo thread-%d", job->index);
    snprintf(expect, sizeof expect, "thread-%d\n", job->index);
    snprintf(path, sizeof path, "t%d.txt", job->index);
    job->ok = 0;
    if (sbx_open(&sb, &client, &cfg) != SBX_OK) {
        snprintf(job->msg, sizeof job->msg, "%s", sb.err.msg);
        return NULL;
    }
    if (sbx_run(&sb, cmd, &res) == SBX_OK && res.out_len == strlen(expect) && memcmp(res.out, expect, res.out_len) == 0 &&
        sbx_write(&sb, path, expect, strlen(expect)) == SBX_OK && sbx_read(&sb, path, &back, &len) == SBX_OK &&
        len == strlen(expect) && memcmp(back, expect, len) == 0)
        job->ok = 1;
    else
        snprintf(job->msg, sizeof job->msg, "%s", sb.err.msg);
    sbx_exec_result_free(&res);
    sbx_free(back);
    if (sbx_close(&sb) != SBX_OK) {
        job->ok = 0;
        snprintf(job->msg, sizeof job->msg, "%s", sb.err.msg);
    }
    return NULL;
}

TEST(sixteen_sandboxes_from_sixteen_threads)
{
    pthread_t th[16];
    struct thread_job jobs[16];
    int i, ok = 0;
    long long t0 = sbx__now_ms();
    for (i = 0; i < 16; i++) {
        jobs[i].index = i;
        jobs[i].ok = 0;
        jobs[i].msg[0] = '\0';
        CHECK(pthread_create(&th[i], NULL, thread_main, &jobs[i]) == 0);
    }
    for (i = 0; i < 16; i++) {
        pthread_join(th[i], NULL);
        if (jobs[i].ok) ok++;
        else printf("  thread %d: %s\n", i, jobs[i].msg);
    }
    printf("  16 concurrent lifecycles: %lld ms\n", ms_since(t0));
    CHECK_EQ_INT(ok, 16);
    settle();
}

int main(void)
{
    sbx_client_config cc;
    sbx_sandbox_config cfg;
    e2e_pick_kubectl();
    if (e2e_up(&C, "e2e", "") != 0) {
        printf("e2e: the dev cluster did not start\n");
        printf("e2e: 0 passed, 1 failed\n");
        return 1;
    }
    memset(&cc, 0, sizeof cc);
    cc.kubeconfig = C.kubeconfig;
    if (sbx_client_open(&client, &cc) != SBX_OK) {
        printf("client open failed: %s\n", client.err.msg);
        e2e_down(&C);
        printf("e2e: 0 passed, 1 failed\n");
        return 1;
    }
    base_fds = fds_now();
    base_pods = e2e_count(&C, E2E_PODS);
    base_children = e2e_child_count();
    printf("baseline: %d fds, %d pods, %d children (the kubectl proxy)\n", base_fds, base_pods, base_children);

    RUN(quickstart_warm);
    RUN(cold_pool);
    RUN(waits_by_watching);
    RUN(template_without_pool);
    RUN(warm_pool_not_found);
    RUN(invalid_metadata_is_terminal);
    RUN(env_rejected_is_terminal);
    RUN(claim_expired_is_terminal);
    RUN(deleted_while_waiting);
    RUN(ready_timeout);
    RUN(watch_410_rewatches);
    RUN(watch_dropped_rewatches);
    RUN(claim_name_conflict_keeps_the_other_claim);
    RUN(rollback_when_sandbox_lookup_fails);
    RUN(rollback_when_tunnel_fails);
    RUN(sandbox_expired_is_terminal);
    RUN(rollback_when_create_fails);
    RUN(discovery_failure_is_reported);
    RUN(kubectl_missing);
    RUN(kubectl_failing);
    RUN(response_cap);

    cfg_template(&cfg);
    if (sbx_open(&shared, &client, &cfg) == SBX_OK) {
        int pf = strcmp(sbx_route(&shared), "kubectl port-forward") == 0;
        base_children += pf; /* its port-forward child (kubectl route), while it is open */
        RUN(binary_files_round_trip);
        RUN(run_output_is_binary_safe);
        RUN(exec_argv_on_python_runtime);
        RUN(path_rules);
        RUN(large_file_through_descriptors);
        sbx_close(&shared);
        base_children -= pf;
    } else {
        printf("shared sandbox: %s\n", shared.err.msg);
        test_failed++;
    }
    RUN(sixteen_sandboxes_from_sixteen_threads);

    sbx_client_close(&client);
    CHECK_EQ_INT(e2e_child_count(), 0);
    e2e_down(&C);
    return test_summary("e2e");
}
