/* tests/lib/test.h - a tiny test harness for sandbox.h's C suites.

   TEST(name) { CHECK(cond); CHECK_EQ_INT(a, b); ... }
   int main(void) { RUN(name); ...; return test_summary("suite"); }

   CHECK failures are reported with file:line and the test goes on; the summary
   line is the one `make test` aggregates: "<suite>: N passed, N failed, N skipped". */
#ifndef SBX_TEST_H
#define SBX_TEST_H
#include <stdio.h>
#include <string.h>

static int test_failures_in_current;
static int test_passed, test_failed, test_skipped;
static const char *test_current;
static int test_skip_flag;

#define TEST(name) static void name(void)
#define CHECK(c)                                                                  \
    do {                                                                          \
        if (!(c)) {                                                               \
            printf("  FAIL %s:%d: %s: CHECK(%s)\n", __FILE__, __LINE__, test_current, #c); \
            fflush(stdout);                                                       \
            test_failures_in_current++;                                           \
        }                                                                         \
    } while (0)
#define CHECK_MSG(c, ...)                                                         \
    do {                                                                          \
        if (!(c)) {                                                               \
            printf("  FAIL %s:%d: %s: CHECK(%s): ", __FILE__, __LINE__, test_current, #c); \
            printf(__VA_ARGS__);                                                  \
            printf("\n");                                                         \
            fflush(stdout);                                                       \
            test_failures_in_current++;                                           \
        }                                                                         \
    } while (0)
#define CHECK_EQ_INT(a, b)                                                        \
    do {                                                                          \
        long long a_ = (long long)(a), b_ = (long long)(b);                       \
        CHECK_MSG(a_ == b_, "%lld != %lld", a_, b_);                              \
    } while (0)
#define CHECK_STR(a, b)                                                           \
    do {                                                                          \
        const char *a_ = (a), *b_ = (b);                                          \
        CHECK_MSG(a_ && b_ && strcmp(a_, b_) == 0, "\"%s\" != \"%s\"",            \
                  a_ ? a_ : "(null)", b_ ? b_ : "(null)");                        \
    } while (0)
/* Skip the current test, saying why (call before any CHECK). */
#define SKIP(...)                                                                 \
    do {                                                                          \
        printf("  SKIP %s: ", test_current);                                      \
        printf(__VA_ARGS__);                                                      \
        printf("\n");                                                             \
        test_skip_flag = 1;                                                       \
        return;                                                                   \
    } while (0)
#define RUN(name)                                                                 \
    do {                                                                          \
        test_current = #name;                                                     \
        test_failures_in_current = 0;                                             \
        test_skip_flag = 0;                                                       \
        printf("- %s\n", #name);                                                  \
        fflush(stdout);                                                           \
        name();                                                                   \
        if (test_skip_flag) test_skipped++;                                       \
        else if (test_failures_in_current) test_failed++;                         \
        else test_passed++;                                                       \
    } while (0)

static int test_summary(const char *suite)
{
    printf("%s: %d passed, %d failed, %d skipped\n", suite, test_passed, test_failed, test_skipped);
    return test_failed == 0 && test_passed > 0 ? 0 : 1;
}
#endif
