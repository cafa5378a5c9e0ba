/* Unit: a build with SBX_NO_GRPC. The HTTP/2 + gRPC client is left out, and
   every call that needs it on sandboxd answers SBX_ERR_UNSUPPORTED saying the
   library was built without gRPC, before anything is sent (a handle made by
   hand: no cluster, no network); the python runtime's calls are unchanged and
   process handles stay closed. */
#define SBX_NO_GRPC
#define SANDBOX_IMPLEMENTATION
#include "sandbox.h"
#include "test.h"

#ifdef SBX__H2_FRAME_MAX
#error "SBX_NO_GRPC still compiles the >>h2 section"
#endif

static struct sbx__client CLI;
static struct sbx__sandbox SBI;
static char NAME[] = "sbx-test";

static void handle(sbx_sandbox *sb, sbx_runtime rt, sbx_mode mode)
{
    memset(&CLI, 0, sizeof CLI);
    memset(&SBI, 0, sizeof SBI);
    CLI.a = sbx__allocator(NULL);
    CLI.mode = mode;
    SBI.cl = &CLI;
    SBI.runtime = rt;
    SBI.sandbox = NAME;
    SBI.call_timeout_ms = 1000;
    memset(sb, 0, sizeof *sb);
    sb->impl = &SBI;
}

TEST(sandboxd_calls_say_built_without_grpc)
{
    static const char *const argv[] = {"/bin/true", NULL};
    sbx_sandbox sb;
    sbx_exec_result res;
    sbx_process_config pc;
    sbx_process p;
    sbx_process_event ev;
    handle(&sb, SBX_RUNTIME_SANDBOXD, SBX_MODE_POD_TUNNEL);
    CHECK_EQ_INT(sbx_capabilities(&sb) & (SBX_CAP_EXEC | SBX_CAP_PROCESS | SBX_CAP_EXEC_ENV), 0);
    CHECK(sbx_capabilities(&sb) & SBX_CAP_REMOVE);
    CHECK_EQ_INT(sbx_run(&sb, "echo hi", &res), SBX_ERR_UNSUPPORTED);
    CHECK_MSG(strstr(sb.err.msg, "SBX_NO_GRPC") != NULL, "%s", sb.err.msg);
    CHECK(res.out == NULL);
    memset(&pc, 0, sizeof pc);
    pc.argv = argv;
    CHECK_EQ_INT(sbx_exec(&sb, &pc, &res), SBX_ERR_UNSUPPORTED);
    CHECK(strstr(sb.err.msg, "without gRPC") != NULL);
    CHECK_EQ_INT(sbx_process_start(&p, &sb, &pc), SBX_ERR_UNSUPPORTED);
    CHECK_MSG(strstr(p.err.msg, "SBX_NO_GRPC") != NULL, "%s", p.err.msg);
    CHECK(p.impl == NULL);
    CHECK_EQ_INT(sbx_process_read(&p, &ev, 0), SBX_ERR_CLOSED);
    CHECK_EQ_INT(sbx_process_write(&p, "x", 1), SBX_ERR_CLOSED);
    CHECK_EQ_INT(sbx_process_signal(&p, 9), SBX_ERR_CLOSED);
    CHECK_EQ_INT(sbx_process_id(&p), 0);
    CHECK_EQ_INT(sbx_process_close(&p), SBX_OK);
}

TEST(python_runtime_is_unchanged)
{
    sbx_sandbox sb;
    sbx_process_config pc;
    sbx_process p;
    handle(&sb, SBX_RUNTIME_PYTHON, SBX_MODE_POD_TUNNEL);
    CHECK(sbx_capabilities(&sb) & SBX_CAP_EXEC);
    memset(&pc, 0, sizeof pc);
    pc.command = "cat";
    CHECK_EQ_INT(sbx_process_start(&p, &sb, &pc), SBX_ERR_UNSUPPORTED);
    CHECK_MSG(strstr(p.err.msg, "python runtime") != NULL, "%s", p.err.msg);
}

int main(void)
{
    RUN(sandboxd_calls_say_built_without_grpc);
    RUN(python_runtime_is_unchanged);
    return test_summary("nogrpc");
}
