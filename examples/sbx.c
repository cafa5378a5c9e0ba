/* sbx.c - agent sandboxes from the command line: a small tool built on
   sandbox.h's public API only (also the proof that the header embeds in one).

   Build:  make build/sbx   (or: cc -std=c99 -Os -I.. sbx.c -o sbx -pthread)
   Try:    make devcluster-up; KUBECONFIG=build/devcluster/kubeconfig \
           build/sbx run -t python-sandbox-template -- echo hello
   `sbx --help` and `sbx COMMAND --help` say the rest.

   Signals: the library installs no handler, so the tool does: SIGINT, SIGTERM
   and SIGHUP are blocked in every thread (the library's threads inherit the
   mask) and one thread takes them with sigwait. During `run` and `shell -t`
   it deletes the claim this process created (its name is chosen here, before
   the open, so it is known even while the open waits for Ready) and exits
   128 + the signal; a claim whose create lands after that DELETE is the
   library supervisor's to delete once this process is gone. */
#define SANDBOX_IMPLEMENTATION
#include "sandbox.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#define EXIT_OK 0
#define EXIT_FAIL 1
#define EXIT_USAGE 2
#define EXIT_TIMEOUT 124
#define EXIT_SANDBOX 125
#define EXIT_NOPROG 127

#define OWNER_SELECTOR "app.kubernetes.io/managed-by=sandbox.h"
#define KEEP_LABEL "sbx.sandbox.h/keep" /* claims of `run --keep`: gc leaves them */
#define MAX_ENV 64
#define DEFAULT_TIMEOUT_S 3600

/* ---- options ------------------------------------------------------------ */

enum {
    F_NS = 1 << 0, F_CONTEXT = 1 << 1, F_KUBECONFIG = 1 << 2, F_OUTPUT = 1 << 3, F_VERBOSE = 1 << 4,
    F_HELP = 1 << 5, F_TEMPLATE = 1 << 6, F_POOL = 1 << 7, F_ENV = 1 << 8, F_TIMEOUT = 1 << 9,
    F_KEEP = 1 << 10, F_LONG = 1 << 11, F_ALL = 1 << 12, F_DRY = 1 << 13
};
#define F_COMMON (F_NS | F_CONTEXT | F_KUBECONFIG | F_VERBOSE | F_HELP)

typedef struct flag_def {
    const char *s, *l; /* short and long spelling ("-n", "--namespace") */
    int bit, value;
} flag_def;

static const flag_def flags[] = {
    {"-n", "--namespace", F_NS, 1},   {NULL, "--context", F_CONTEXT, 1}, {NULL, "--kubeconfig", F_KUBECONFIG, 1},
    {"-o", "--output", F_OUTPUT, 1},  {"-v", "--v", F_VERBOSE, 0},       {"-h", "--help", F_HELP, 0},
    {"-t", "--template", F_TEMPLATE, 1}, {"-p", "--pool", F_POOL, 1},    {"-e", "--env", F_ENV, 1},
    {NULL, "--timeout", F_TIMEOUT, 1}, {NULL, "--keep", F_KEEP, 0},      {"-l", NULL, F_LONG, 0},
    {"-A", "--all-namespaces", F_ALL, 0}, {NULL, "--dry-run", F_DRY, 0},
};

typedef struct cmd_def {
    const char *name;
    int allowed;
    const char *usage, *help;
} cmd_def;

static const cmd_def cmds[] = {
    {"run", F_COMMON | F_TEMPLATE | F_POOL | F_ENV | F_TIMEOUT | F_KEEP | F_OUTPUT,
     "sbx run [-t TEMPLATE | -p POOL] [-e K=V]... [--timeout S] [--keep] -- CMD [ARG...]",
     "Create a sandbox, run CMD in it, copy its stdout and stderr to ours, delete the\n"
     "sandbox and exit with CMD's exit code.\n\n"
     "  -t, --template NAME  SandboxTemplate (default $SBX_TEMPLATE)\n"
     "  -p, --pool NAME      or a SandboxWarmPool\n"
     "  -e, --env K=V        environment of CMD (repeatable). Where the runtime takes a\n"
     "                       per-process environment (sandboxd) it is passed so; else CMD\n"
     "                       runs as `env K=V... CMD` (needs env(1) in the image; the\n"
     "                       claim's env would force a cold start and a template policy)\n"
     "      --timeout S      CMD's deadline in seconds (default 3600); exit 124 after it\n"
     "      --keep           leave the sandbox and print its claim name on stderr as the\n"
     "                       last line (-o json: {\"claim\":...,\"namespace\":...}); kept\n"
     "                       claims are labelled " KEEP_LABEL " and gc leaves them\n\n"
     "CMD's stdin is empty. Ctrl-C deletes the sandbox, then exits 130. Exit 125:\n"
     "the sandbox could not be created or CMD could not be run; 127: no such program.\n"},
    {"exec", F_COMMON | F_TIMEOUT | F_ENV, "sbx exec NAME [-e K=V]... [--timeout S] -- CMD [ARG...]",
     "Run CMD in the existing claim NAME (attach, run, detach) and exit with its code.\n"
     "-e and --timeout as for run. Exit 125: the claim could not be reached.\n"},
    {"cp", F_COMMON | F_TIMEOUT, "sbx cp SRC DST",
     "Copy a file into or out of a sandbox; the sandbox side is NAME:PATH (a local path\n"
     "with a colon in it: write it as ./a:b). Streamed, never held whole. On a terminal,\n"
     "stderr shows a progress line (bytes, rate, ETA). A download goes to a temporary\n"
     "file beside DST, renamed over DST only when complete. A PATH or DST ending in /\n"
     "(or a local directory) gets the source's base name.\n"
     "      --timeout S      deadline of the whole transfer (default 3600)\n"},
    {"ls", F_COMMON | F_LONG | F_OUTPUT, "sbx ls [-l] NAME:PATH",
     "List a directory of the sandbox NAME (NAME: alone is its root directory).\n"
     "  -l                   type, size, modification time\n"
     "  -o json              [{\"name\",\"size\",\"is_dir\",\"mod_time\"}...]\n"},
    {"shell", F_COMMON | F_TEMPLATE | F_POOL, "sbx shell NAME | sbx shell [-t TEMPLATE | -p POOL]",
     "Interactive shell in the claim NAME, or in a new sandbox (deleted at the end).\n"
     "With a runtime that streams processes (sandboxd) and a terminal: a real terminal\n"
     "(raw mode, resized with the window, Ctrl-C goes to the sandbox). Otherwise a line\n"
     "loop: each line runs as sh -c LINE, its output is printed and then [exit N].\n"
     "`exit` or end of input ends it.\n"},
    {"ps", F_COMMON | F_ALL | F_OUTPUT, "sbx ps [-A] [-o json]",
     "List the claims sandbox.h programs created (label " OWNER_SELECTOR "):\n"
     "name, ready, age, owner host and pid, and the owner's state: running, orphan\n"
     "(its process is gone), kept (run --keep), other-host (cannot be checked from\n"
     "here), unknown (no owner annotations) or deleting.\n"
     "  -A, --all-namespaces\n"},
    {"rm", F_COMMON, "sbx rm NAME...", "Delete claims (and so their sandboxes) by name.\n"},
    {"gc", F_COMMON | F_ALL | F_DRY, "sbx gc [-A] [--dry-run]",
     "Delete the claims whose owner process is gone (state orphan in sbx ps): owned by\n"
     "this host, and the owner's pid is not running or is a newer process (its start\n"
     "time differs). Claims of other hosts, kept claims and claims without owner\n"
     "annotations are left alone and reported.\n"
     "      --dry-run        only say what would be deleted\n"},
};
#define NCMDS (sizeof cmds / sizeof cmds[0])

typedef struct opts {
    const cmd_def *cmd;
    int seen;
    const char *ns, *context, *kubeconfig, *tmpl, *pool;
    int json, verbose, timeout_s, keep, long_ls, all_ns, dry_run;
    const char *env[2 * MAX_ENV + 1];
    int nenv;
    char *envbuf[MAX_ENV];
    char **pos;
    int npos;
    char **argv_cmd; /* after "--" (NULL-terminated), or NULL */
} opts;

static const char *prog_cmd = ""; /* "run" etc., for messages */

#if defined(__GNUC__) || defined(__clang__)
#define SBX_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define SBX_PRINTF(a, b)
#endif
static int usage(const char *fmt, ...) SBX_PRINTF(1, 2);
static void fail(const char *fmt, ...) SBX_PRINTF(1, 2);

static int usage(const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "sbx%s%s: ", prog_cmd[0] ? " " : "", prog_cmd);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, " (see sbx %s%s--help)\n", prog_cmd, prog_cmd[0] ? " " : "");
    return EXIT_USAGE;
}

static void hold_if_interrupted(void);

static void fail(const char *fmt, ...)
{
    va_list ap;
    hold_if_interrupted(); /* a call failing because the signal thread deleted its claim */
    fprintf(stderr, "sbx%s%s: ", prog_cmd[0] ? " " : "", prog_cmd);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

static void print_main_help(void)
{
    size_t i;
    printf("sbx - agent sandboxes on Kubernetes from the command line (sandbox.h %s)\n\n", SANDBOX_VERSION_STRING);
    for (i = 0; i < NCMDS; i++) printf("  %s\n", cmds[i].usage);
    printf("\nCommon flags (as kubectl spells them):\n"
           "  -n, --namespace NS   namespace (default $SBX_NAMESPACE, else the kubeconfig's)\n"
           "      --context NAME   kubeconfig context\n"
           "      --kubeconfig F   kubeconfig file (default $KUBECONFIG, ~/.kube/config)\n"
           "  -o json              machine output (ps, ls, run --keep)\n"
           "  -v                   the library's log on stderr\n"
           "  -h, --help           help (also after a command)\n\n"
           "Exit codes: run and exec exit with the command's code (124 when --timeout\n"
           "passed, 125 when the sandbox could not be created or reached, 127 no such\n"
           "program, 130 after Ctrl-C); otherwise 0 ok, 1 failure, 2 usage error (nothing\n"
           "was sent to the cluster).\n");
}

static int valid_dns(const char *s, size_t max, int dots)
{
    size_t n = strlen(s), i;
    if (n == 0 || n > max) return 0;
    for (i = 0; i < n; i++) {
        char ch = s[i];
        int alnum = (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9');
        if (!alnum && ch != '-' && !(dots && ch == '.')) return 0;
        if ((i == 0 || i == n - 1) && !alnum) return 0;
    }
    return 1;
}

static int parse_args(int argc, char **argv, opts *o)
{
    int i;
    size_t k;
    const char *env_ns = getenv("SBX_NAMESPACE");
    memset(o, 0, sizeof *o);
    o->pos = (char **)calloc((size_t)argc + 1, sizeof(char *));
    if (!o->pos) return usage("out of memory");
    for (i = 1; i < argc; i++) {
        const char *a = argv[i], *val = NULL;
        const flag_def *f = NULL;
        if (strcmp(a, "--") == 0) {
            o->argv_cmd = argv + i + 1;
            break;
        }
        if (a[0] != '-' || a[1] == '\0') {
            if (!o->cmd) {
                for (k = 0; k < NCMDS; k++)
                    if (strcmp(a, cmds[k].name) == 0) o->cmd = &cmds[k];
                if (!o->cmd) return usage("unknown command \"%s\"", a);
                prog_cmd = o->cmd->name;
            } else {
                o->pos[o->npos++] = argv[i];
            }
            continue;
        }
        for (k = 0; k < sizeof flags / sizeof flags[0] && !f; k++) {
            const flag_def *d = &flags[k];
            size_t ln = d->l ? strlen(d->l) : 0;
            if ((d->s && strcmp(a, d->s) == 0) || (d->l && strcmp(a, d->l) == 0)) {
                f = d;
            } else if (d->l && strncmp(a, d->l, ln) == 0 && a[ln] == '=') {
                f = d;
                val = a + ln + 1;
            } else if (d->s && strncmp(a, d->s, 2) == 0 && a[2] && d->value) {
                f = d; /* -nNS, -ojson */
                val = a + 2 + (a[2] == '=');
            } else if (d->bit == F_VERBOSE && strncmp(a, "-v=", 3) == 0) {
                f = d; /* kubectl's -v=N: any level means "log" here */
                val = a + 3;
            }
        }
        if (!f) return usage("unknown flag \"%s\"", a);
        if (f->value && !val) {
            if (i + 1 >= argc) return usage("flag %s needs a value", a);
            val = argv[++i];
        } else if (!f->value && val && f->bit != F_VERBOSE) {
            return usage("flag %s takes no value", f->l ? f->l : f->s);
        }
        o->seen |= f->bit;
        switch (f->bit) {
        case F_NS: o->ns = val; break;
        case F_CONTEXT: o->context = val; break;
        case F_KUBECONFIG: o->kubeconfig = val; break;
        case F_OUTPUT:
            if (strcmp(val, "json") != 0) return usage("-o: only \"json\" is supported, not \"%s\"", val);
            o->json = 1;
            break;
        case F_VERBOSE: o->verbose = 1; break;
        case F_TEMPLATE: o->tmpl = val; break;
        case F_POOL: o->pool = val; break;
        case F_ENV: {
            const char *eq = strchr(val, '=');
            char *kv;
            if (!eq || eq == val) return usage("-e wants K=V, not \"%s\"", val);
            if (o->nenv >= MAX_ENV) return usage("at most %d -e", MAX_ENV);
            kv = strdup(val);
            if (!kv) return usage("out of memory");
            kv[eq - val] = '\0';
            o->envbuf[o->nenv] = kv;
            o->env[2 * o->nenv] = kv;
            o->env[2 * o->nenv + 1] = kv + (eq - val) + 1;
            o->nenv++;
            break;
        }
        case F_TIMEOUT: {
            char *end = NULL;
            long v;
            errno = 0;
            v = strtol(val, &end, 10);
            if (errno || !end || *end || v <= 0 || v > 7L * 86400) /* ms must fit an int */
                return usage("--timeout wants seconds, 1 to 604800, not \"%s\"", val);
            o->timeout_s = (int)v;
            break;
        }
        case F_KEEP: o->keep = 1; break;
        case F_LONG: o->long_ls = 1; break;
        case F_ALL: o->all_ns = 1; break;
        case F_DRY: o->dry_run = 1; break;
        default: break;
        }
    }
    if (o->seen & F_HELP) return -1; /* the caller prints the help */
    if (!o->cmd) return usage("no command given");
    for (k = 0; k < sizeof flags / sizeof flags[0]; k++)
        if ((o->seen & flags[k].bit) && !(o->cmd->allowed & flags[k].bit))
            return usage("flag %s is not for %s", flags[k].l ? flags[k].l : flags[k].s, o->cmd->name);
    if (!o->ns && env_ns && *env_ns) o->ns = env_ns;
    if (o->ns && !valid_dns(o->ns, 63, 0)) return usage("namespace \"%s\" is not a valid name", o->ns);
    if (o->context && !*o->context) return usage("--context is empty");
    if (o->kubeconfig && access(o->kubeconfig, R_OK) != 0)
        return usage("kubeconfig %s: %s", o->kubeconfig, strerror(errno));
    if (!o->timeout_s) o->timeout_s = DEFAULT_TIMEOUT_S;
    if (o->argv_cmd && strcmp(o->cmd->name, "run") != 0 && strcmp(o->cmd->name, "exec") != 0)
        return usage("unexpected \"--\"");
    return 0;
}

/* ---- signals, and what to undo when one comes ---------------------------- */

static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;
static sbx_client *g_client;       /* the one client, shared by all threads */
static char g_claim[64], g_claim_ns[64]; /* a claim this process is creating or owns */
static char g_tmpfile[4300];       /* a download's temporary file */
static struct termios g_saved_tio; /* the terminal before raw mode */
static int g_raw;
static sbx_process *g_proc;        /* a PTY process: resized on SIGWINCH */
static int g_proc_done;
static int g_interrupted;          /* the signal thread is cleaning up and will exit */

/* Once a signal came, the signal thread owns the exit (with 128 + signal):
   the main thread, whose call may fail because that thread deleted the
   claim, must neither report that nor exit first. */
static void hold_if_interrupted(void)
{
    int held;
    pthread_mutex_lock(&g_mu);
    held = g_interrupted;
    pthread_mutex_unlock(&g_mu);
    while (held) pause();
}

static void restore_tty(void)
{
    if (g_raw) tcsetattr(0, TCSAFLUSH, &g_saved_tio);
    g_raw = 0;
}

static void winsize(unsigned *cols, unsigned *rows)
{
    struct winsize ws;
    *cols = 80;
    *rows = 24;
    if (ioctl(0, TIOCGWINSZ, &ws) == 0 && ws.ws_col && ws.ws_row) {
        *cols = ws.ws_col;
        *rows = ws.ws_row;
    }
}

static void *signal_thread(void *arg)
{
    sigset_t *set = (sigset_t *)arg;
    int sig = 0;
    for (;;) {
        if (sigwait(set, &sig) != 0) continue;
        if (sig == SIGWINCH) {
            pthread_mutex_lock(&g_mu);
            if (g_proc && !g_proc_done) {
                unsigned c, r;
                winsize(&c, &r);
                sbx_process_resize(g_proc, c, r);
            }
            pthread_mutex_unlock(&g_mu);
            continue;
        }
        break;
    }
    {
        char claim[64], ns[64];
        sbx_client *cl;
        pthread_mutex_lock(&g_mu);
        g_interrupted = 1;
        memcpy(claim, g_claim, sizeof claim);
        memcpy(ns, g_claim_ns, sizeof ns);
        cl = g_client;
        pthread_mutex_unlock(&g_mu);
        restore_tty();
        if (g_tmpfile[0]) unlink(g_tmpfile);
        if (claim[0] && cl) {
            sbx_error e;
            sbx_result r = sbx_delete_claim(cl, ns[0] ? ns : NULL, claim, &e);
            if (r == SBX_OK || r == SBX_ERR_NOT_FOUND)
                fprintf(stderr, "sbx: interrupted; sandbox %s deleted\n", claim);
            else
                fprintf(stderr, "sbx: interrupted; %s\n", e.msg);
        }
    }
    _exit(128 + sig);
    return NULL;
}

static int start_signal_thread(void)
{
    static sigset_t set;
    pthread_t th;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGHUP);
    sigaddset(&set, SIGWINCH);
    /* a closed stdout (sbx run ... | head -1) is a failed write, not death:
       the sandbox is still deleted on the way out (the library's children
       get default dispositions back) */
    signal(SIGPIPE, SIG_IGN);
    if (pthread_sigmask(SIG_BLOCK, &set, NULL) != 0) return -1;
    if (pthread_create(&th, NULL, signal_thread, &set) != 0) return -1;
    pthread_detach(th);
    return 0;
}

/* ---- output helpers ------------------------------------------------------ */

static int write_all(int fd, const char *p, size_t n)
{
    while (n) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

static void json_str(FILE *f, const char *s)
{
    fputc('"', f);
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\') fprintf(f, "\\%c", ch);
        else if (ch < 0x20) fprintf(f, "\\u%04x", ch);
        else fputc(ch, f);
    }
    fputc('"', f);
}

static void logger(const sbx_event *ev, void *user)
{
    static const char *const kinds[] = {"?", "proxy-started", "claim-created", "ready", "route", "tunnel-started",
                                        "fallback", "retry", "claim-deleted", "children-stopped"};
    const char *kind = (int)ev->kind >= 1 && (int)ev->kind <= 9 ? kinds[ev->kind] : "?";
    const char *lvl = ev->level == SBX_LOG_ERROR ? "error" : ev->level == SBX_LOG_WARN ? "warn" : "info";
    (void)user;
    fprintf(stderr, "sbx: [%s] %s%s%s (%lld)%s%s\n", lvl, kind, ev->name && *ev->name ? " " : "",
            ev->name ? ev->name : "", ev->number, ev->message && *ev->message ? ": " : "",
            ev->message ? ev->message : "");
}

/* ---- the client and sandboxes -------------------------------------------- */

static sbx_client g_client_store;

static int open_client(const opts *o)
{
    sbx_client_config cc;
    memset(&cc, 0, sizeof cc);
    cc.kubeconfig = o->kubeconfig;
    cc.context = o->context;
    cc.ns = o->ns;
    if (o->verbose) cc.logger.func = logger;
    if (sbx_client_open(&g_client_store, &cc) != SBX_OK) {
        fail("%s", g_client_store.err.msg);
        sbx_client_close(&g_client_store);
        return -1;
    }
    pthread_mutex_lock(&g_mu);
    g_client = &g_client_store;
    pthread_mutex_unlock(&g_mu);
    return 0;
}

static void close_client(void)
{
    hold_if_interrupted(); /* the signal thread may be using the client */
    pthread_mutex_lock(&g_mu);
    if (g_interrupted) {
        pthread_mutex_unlock(&g_mu);
        hold_if_interrupted();
    }
    g_client = NULL;
    pthread_mutex_unlock(&g_mu);
    sbx_client_close(&g_client_store);
}

static void random_claim_name(char *out, size_t cap)
{
    unsigned char b[4] = {0, 0, 0, 0};
    int fd = open("/dev/urandom", O_RDONLY);
    if (fd < 0 || read(fd, b, sizeof b) != (ssize_t)sizeof b) {
        unsigned long x = (unsigned long)time(NULL) ^ ((unsigned long)getpid() << 16) ^ (unsigned long)clock();
        memcpy(b, &x, sizeof b);
    }
    if (fd >= 0) close(fd);
    snprintf(out, cap, "sbx-%02x%02x%02x%02x", b[0], b[1], b[2], b[3]);
}

/* A new sandbox for run / shell: its claim name is published for the signal
   thread before the create is sent. */
static int open_new(const opts *o, sbx_sandbox *sb, int keep)
{
    static const char *const keep_labels[] = {KEEP_LABEL, "true", NULL};
    sbx_sandbox_config cfg;
    const char *tmpl = o->tmpl, *env_t = getenv("SBX_TEMPLATE");
    char name[64];
    memset(&cfg, 0, sizeof cfg);
    if (!tmpl && !o->pool && env_t && *env_t) tmpl = env_t;
    cfg.template_name = tmpl;
    cfg.warm_pool = o->pool;
    cfg.ns = o->ns;
    random_claim_name(name, sizeof name);
    cfg.claim_name = name;
    if (keep) cfg.labels = keep_labels;
    pthread_mutex_lock(&g_mu);
    snprintf(g_claim, sizeof g_claim, "%s", name);
    snprintf(g_claim_ns, sizeof g_claim_ns, "%s", o->ns ? o->ns : "");
    pthread_mutex_unlock(&g_mu);
    if (sbx_open(sb, g_client, &cfg) != SBX_OK) {
        fail("%s", sb->err.msg);
        sbx_close(sb);
        return -1;
    }
    sbx_set_call_timeout(sb, o->timeout_s * 1000 + 5000);
    return 0;
}

static void forget_claim(void)
{
    pthread_mutex_lock(&g_mu);
    g_claim[0] = '\0';
    pthread_mutex_unlock(&g_mu);
}

static int attach(const opts *o, sbx_sandbox *sb, const char *name)
{
    sbx_sandbox_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.claim_name = name;
    cfg.ns = o->ns;
    if (sbx_attach(sb, g_client, &cfg) != SBX_OK) {
        fail("%s", sb->err.msg);
        sbx_detach(sb);
        return -1;
    }
    sbx_set_call_timeout(sb, o->timeout_s * 1000 + 5000);
    return 0;
}

/* ---- running a command --------------------------------------------------- */

static int exit_of(int code)
{
    if (code < 0) return 128 + ((-code) & 0x7f); /* killed by a signal */
    return code & 0xff;
}

/* Exit code for a failed call: its kind, with the library's message. */
static int call_failed(const sbx_sandbox *sb, sbx_result r, int timeout_s)
{
    if (r == SBX_ERR_TIMEOUT) {
        fail("timed out after %d s: %s", timeout_s, sb->err.msg);
        return EXIT_TIMEOUT;
    }
    fail("%s", sb->err.msg);
    return r == SBX_ERR_NOT_FOUND ? EXIT_NOPROG : EXIT_SANDBOX;
}

/* Run argv with env (K,V pairs, may be NULL) and copy its output to ours;
   returns its exit code, or 124/125/127 after printing why. Streams where the
   runtime can (sbx_process_*), else one sbx_exec. */
static int run_argv(sbx_sandbox *sb, const char *const *argv, const char *const *env, int nenv, int timeout_s)
{
    sbx_process_config pc;
    unsigned caps = sbx_capabilities(sb);
    const char **full = NULL;
    char *kvs[MAX_ENV];
    int i, n = 0, nkv = 0, code;
    sbx_result r;
    memset(&pc, 0, sizeof pc);
    pc.argv = argv;
    pc.timeout_ms = timeout_s * 1000;
    if (nenv && (caps & SBX_CAP_EXEC_ENV)) {
        pc.env = env;
    } else if (nenv) {
        /* no per-process environment here: `env K=V... CMD` */
        while (argv[n]) n++;
        full = (const char **)calloc((size_t)(n + nenv + 2), sizeof(char *));
        if (!full) {
            fail("out of memory");
            return EXIT_SANDBOX;
        }
        full[0] = "env";
        for (i = 0; i < nenv; i++) {
            size_t kl = strlen(env[2 * i]), vl = strlen(env[2 * i + 1]);
            char *kv = (char *)malloc(kl + vl + 2);
            if (!kv || nkv >= MAX_ENV) {
                fail("out of memory");
                free(kv);
                code = EXIT_SANDBOX;
                goto out;
            }
            memcpy(kv, env[2 * i], kl);
            kv[kl] = '=';
            memcpy(kv + kl + 1, env[2 * i + 1], vl + 1);
            kvs[nkv++] = kv;
            full[1 + i] = kv;
        }
        for (i = 0; i < n; i++) full[1 + nenv + i] = argv[i];
        pc.argv = full;
    }
    if (caps & SBX_CAP_PROCESS) {
        sbx_process p;
        sbx_process_event ev;
        code = -1000;
        r = sbx_process_start(&p, sb, &pc);
        /* no stdin for run; a process that already ended answers NOT_FOUND */
        if (r == SBX_OK) sbx_process_close_stdin(&p);
        while (r == SBX_OK) {
            r = sbx_process_read(&p, &ev, -1);
            if (r != SBX_OK) break;
            if (ev.stream == SBX_STREAM_EXIT) {
                code = exit_of(ev.exit_code);
                break;
            }
            write_all(ev.stream == SBX_STREAM_STDERR ? 2 : 1, ev.data, ev.len);
        }
        if (r != SBX_OK) {
            int k = r == SBX_ERR_TIMEOUT ? EXIT_TIMEOUT : r == SBX_ERR_NOT_FOUND ? EXIT_NOPROG : EXIT_SANDBOX;
            fail("%s%s", r == SBX_ERR_TIMEOUT ? "timed out: " : "", p.err.msg);
            code = k;
        }
        sbx_process_close(&p);
    } else {
        sbx_exec_result res;
        r = sbx_exec(sb, &pc, &res);
        if (r == SBX_OK) {
            write_all(1, res.out, res.out_len);
            write_all(2, res.diag, res.diag_len);
            code = exit_of(res.exit_code);
        } else {
            code = call_failed(sb, r, timeout_s);
        }
        sbx_exec_result_free(&res);
    }
out:
    for (i = 0; i < nkv; i++) free(kvs[i]);
    free((void *)full);
    return code;
}

static int need_template(const opts *o)
{
    const char *env_t = getenv("SBX_TEMPLATE");
    if (o->tmpl && o->pool) return usage("give -t or -p, not both");
    if (o->tmpl && !valid_dns(o->tmpl, 253, 1)) return usage("template \"%s\" is not a valid name", o->tmpl);
    if (o->pool && !valid_dns(o->pool, 253, 1)) return usage("pool \"%s\" is not a valid name", o->pool);
    if (!o->tmpl && !o->pool && !(env_t && *env_t)) return usage("no template: give -t TEMPLATE, -p POOL or set SBX_TEMPLATE");
    if (!o->tmpl && !o->pool && !valid_dns(env_t, 253, 1)) return usage("SBX_TEMPLATE \"%s\" is not a valid name", env_t);
    return 0;
}

static int cmd_run(const opts *o)
{
    sbx_sandbox sb;
    int code;
    if (o->npos) return usage("unexpected \"%s\": the command goes after --", o->pos[0]);
    if (!o->argv_cmd) return usage("missing -- before the command");
    if (!o->argv_cmd[0]) return usage("no command after --");
    if ((code = need_template(o)) != 0) return code;
    if (open_client(o) != 0) return EXIT_SANDBOX;
    if (open_new(o, &sb, o->keep) != 0) {
        forget_claim();
        close_client();
        return EXIT_SANDBOX;
    }
    code = run_argv(&sb, (const char *const *)o->argv_cmd, o->env, o->nenv, o->timeout_s);
    if (o->keep) {
        char name[64], ns[64];
        snprintf(name, sizeof name, "%s", sbx_claim_name(&sb));
        snprintf(ns, sizeof ns, "%s", sbx_namespace(&sb));
        if (sbx_detach(&sb) != SBX_OK) fail("%s", sb.err.msg);
        forget_claim();
        if (o->json) {
            fprintf(stderr, "{\"claim\":");
            json_str(stderr, name);
            fprintf(stderr, ",\"namespace\":");
            json_str(stderr, ns);
            fprintf(stderr, "}\n");
        } else {
            fprintf(stderr, "%s\n", name);
        }
    } else {
        if (sbx_close(&sb) != SBX_OK) fail("%s", sb.err.msg);
        forget_claim();
    }
    close_client();
    return code;
}

static int cmd_exec(const opts *o)
{
    sbx_sandbox sb;
    int code;
    if (o->npos != 1) return usage(o->npos ? "one NAME, then -- CMD" : "no NAME given");
    if (!valid_dns(o->pos[0], 253, 1)) return usage("\"%s\" is not a valid claim name", o->pos[0]);
    if (!o->argv_cmd) return usage("missing -- before the command");
    if (!o->argv_cmd[0]) return usage("no command after --");
    if (open_client(o) != 0) return EXIT_SANDBOX;
    if (attach(o, &sb, o->pos[0]) != 0) {
        close_client();
        return EXIT_SANDBOX;
    }
    code = run_argv(&sb, (const char *const *)o->argv_cmd, o->env, o->nenv, o->timeout_s);
    if (sbx_detach(&sb) != SBX_OK) fail("%s", sb.err.msg);
    close_client();
    return code;
}

/* ---- NAME:PATH ------------------------------------------------------------ */

/* 1: arg is NAME:PATH (name and path split out), 0: a local path, -1: it
   looks like NAME:PATH but is not a valid one. Local paths with a colon are
   written ./a:b or /a:b. */
static int split_remote(const char *arg, char *name, size_t ncap, const char **path)
{
    const char *colon = strchr(arg, ':');
    size_t n;
    if (!colon || arg[0] == '/' || arg[0] == '.') return 0;
    n = (size_t)(colon - arg);
    if (n == 0 || n >= ncap) return -1;
    memcpy(name, arg, n);
    name[n] = '\0';
    if (!valid_dns(name, 253, 1)) return -1;
    *path = colon + 1;
    return 1;
}

static const char *base_name(const char *p)
{
    const char *s = strrchr(p, '/');
    return s ? s + 1 : p;
}

/* ---- progress ------------------------------------------------------------- */

typedef struct progress {
    int fd, upload;
    long long total, t0;
    int stop;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    pthread_t th;
} progress;

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void human(char *out, size_t cap, double v)
{
    static const char *const u[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    int i = 0;
    while (v >= 1024 && i < 4) {
        v /= 1024;
        i++;
    }
    snprintf(out, cap, i ? "%.1f %s" : "%.0f %s", v, u[i]);
}

static void progress_line(progress *p, int last)
{
    struct stat st;
    long long done = 0, el = now_ms() - p->t0;
    char a[32], b[32], r[32], eta[32] = "";
    double rate;
    if (p->upload) done = (long long)lseek(p->fd, 0, SEEK_CUR); /* what the library has read */
    else if (fstat(p->fd, &st) == 0) done = (long long)st.st_size;
    if (done < 0) done = 0;
    rate = el > 0 ? (double)done * 1000.0 / (double)el : 0;
    human(a, sizeof a, (double)done);
    human(r, sizeof r, rate);
    if (p->total > 0) {
        human(b, sizeof b, (double)p->total);
        if (!last && rate > 0 && done < p->total) {
            long long s = (long long)((double)(p->total - done) / rate + 0.5);
            snprintf(eta, sizeof eta, "  ETA %lld:%02lld", s / 60, s % 60);
        }
        fprintf(stderr, "\r%s / %s  %3d%%  %s/s%s   ", a, b, (int)(done * 100 / p->total), r, eta);
    } else {
        fprintf(stderr, "\r%s  %s/s   ", a, r);
    }
    if (last) fputc('\n', stderr);
}

static void *progress_thread(void *arg)
{
    progress *p = (progress *)arg;
    pthread_mutex_lock(&p->mu);
    while (!p->stop) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 250000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&p->cv, &p->mu, &ts);
        if (!p->stop) progress_line(p, 0);
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

/* Starts only when stderr is a terminal; returns 1 when started. */
static int progress_start(progress *p, int fd, int upload, long long total)
{
    memset(p, 0, sizeof *p);
    if (!isatty(2)) return 0;
    p->fd = fd;
    p->upload = upload;
    p->total = total;
    p->t0 = now_ms();
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    if (pthread_create(&p->th, NULL, progress_thread, p) != 0) return 0;
    return 1;
}

static void progress_stop(progress *p, int on, int ok)
{
    if (!on) return;
    pthread_mutex_lock(&p->mu);
    p->stop = 1;
    pthread_cond_signal(&p->cv);
    pthread_mutex_unlock(&p->mu);
    pthread_join(p->th, NULL);
    if (ok) progress_line(p, 1);
    else fputc('\n', stderr);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv);
}

/* ---- cp -------------------------------------------------------------------- */

static int cmd_cp(const opts *o)
{
    char sname[300], dname[300], rpath[4200], dir[4200], dest[4200];
    const char *spath = NULL, *dpath = NULL;
    int sr, dr, fd = -1, on, code = EXIT_OK;
    sbx_sandbox sb;
    sbx_result r;
    struct stat st;
    progress pg;
    if (o->npos != 2) return usage("wants SRC and DST");
    if (!o->pos[0][0] || !o->pos[1][0]) return usage("an empty path");
    sr = split_remote(o->pos[0], sname, sizeof sname, &spath);
    dr = split_remote(o->pos[1], dname, sizeof dname, &dpath);
    if (sr < 0) return usage("\"%s\" is not NAME:PATH (NAME: a claim name)", o->pos[0]);
    if (dr < 0) return usage("\"%s\" is not NAME:PATH (NAME: a claim name)", o->pos[1]);
    if (sr == dr) return usage(sr ? "both sides are in a sandbox; one must be local" : "one side must be NAME:PATH");
    if (dr) { /* upload */
        size_t dl = strlen(dpath);
        if (stat(o->pos[0], &st) != 0) return usage("%s: %s", o->pos[0], strerror(errno));
        if (!S_ISREG(st.st_mode)) return usage("%s is not a regular file", o->pos[0]);
        if (dl == 0 || dpath[dl - 1] == '/') snprintf(rpath, sizeof rpath, "%s%s", dpath, base_name(o->pos[0]));
        else snprintf(rpath, sizeof rpath, "%s", dpath);
        fd = open(o->pos[0], O_RDONLY);
        if (fd < 0) return usage("%s: %s", o->pos[0], strerror(errno));
        if (open_client(o) != 0) {
            close(fd);
            return EXIT_FAIL;
        }
        if (attach(o, &sb, dname) != 0) {
            close(fd);
            close_client();
            return EXIT_FAIL;
        }
        on = progress_start(&pg, fd, 1, (long long)st.st_size);
        r = sbx_write_fd(&sb, rpath, fd);
        progress_stop(&pg, on, r == SBX_OK);
        if (r != SBX_OK) {
            fail("%s", sb.err.msg);
            code = EXIT_FAIL;
        }
        close(fd);
    } else { /* download */
        size_t sl = strlen(spath);
        const char *bn;
        long long total = 0;
        if (sl == 0 || spath[sl - 1] == '/') return usage("\"%s\" names a directory; cp copies files", o->pos[0]);
        bn = base_name(spath);
        if (stat(o->pos[1], &st) == 0 && S_ISDIR(st.st_mode)) {
            snprintf(dest, sizeof dest, "%s/%s", o->pos[1], bn);
        } else if (o->pos[1][strlen(o->pos[1]) - 1] == '/') {
            return usage("%s: no such directory", o->pos[1]);
        } else {
            snprintf(dest, sizeof dest, "%s", o->pos[1]);
        }
        snprintf(dir, sizeof dir, "%s", dest);
        if (strrchr(dir, '/')) *strrchr(dir, '/') = '\0';
        else snprintf(dir, sizeof dir, ".");
        if (!dir[0]) snprintf(dir, sizeof dir, "/");
        if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) return usage("%s: no such directory", dir);
        if (access(dir, W_OK) != 0) return usage("%s: %s", dir, strerror(errno));
        if (open_client(o) != 0) return EXIT_FAIL;
        if (attach(o, &sb, sname) != 0) {
            close_client();
            return EXIT_FAIL;
        }
        if (isatty(2)) { /* the size, for the progress line's ETA */
            sbx_file_entry *ents = NULL;
            size_t n = 0, i;
            char parent[4200];
            snprintf(parent, sizeof parent, "%.*s", (int)(bn - spath), spath);
            if (!parent[0]) snprintf(parent, sizeof parent, "/"); /* the root, as ls says it */
            if (sbx_list_dir(&sb, parent, &ents, &n) == SBX_OK)
                for (i = 0; i < n; i++)
                    if (strcmp(ents[i].name, bn) == 0) total = ents[i].size;
            sbx_free(ents);
        }
        pthread_mutex_lock(&g_mu);
        snprintf(g_tmpfile, sizeof g_tmpfile, "%s/.sbx-cp-XXXXXX", dir);
        fd = mkstemp(g_tmpfile);
        if (fd < 0) g_tmpfile[0] = '\0';
        pthread_mutex_unlock(&g_mu);
        if (fd < 0) {
            fail("%s: %s", dir, strerror(errno));
            code = EXIT_FAIL;
        } else {
            mode_t um = umask(0);
            umask(um);
            fchmod(fd, 0666 & ~um);
            on = progress_start(&pg, fd, 0, total);
            r = sbx_read_fd(&sb, spath, fd);
            progress_stop(&pg, on, r == SBX_OK);
            if (r != SBX_OK) {
                fail("%s", sb.err.msg);
                code = EXIT_FAIL;
            } else if (close(fd) != 0 || rename(g_tmpfile, dest) != 0) {
                fail("%s: %s", dest, strerror(errno));
                code = EXIT_FAIL;
            }
            if (code != EXIT_OK) {
                close(fd);
                unlink(g_tmpfile);
            }
            pthread_mutex_lock(&g_mu);
            g_tmpfile[0] = '\0';
            pthread_mutex_unlock(&g_mu);
        }
    }
    if (sbx_detach(&sb) != SBX_OK) fail("%s", sb.err.msg);
    close_client();
    return code;
}

/* ---- ls -------------------------------------------------------------------- */

static int cmp_entry(const void *a, const void *b)
{
    return strcmp(((const sbx_file_entry *)a)->name, ((const sbx_file_entry *)b)->name);
}

static int cmd_ls(const opts *o)
{
    char name[300];
    const char *path = NULL;
    sbx_sandbox sb;
    sbx_file_entry *ents = NULL;
    size_t n = 0, i;
    int code = EXIT_OK;
    if (o->npos != 1) return usage("wants one NAME:PATH");
    if (split_remote(o->pos[0], name, sizeof name, &path) != 1)
        return usage("\"%s\" is not NAME:PATH (NAME: a claim name)", o->pos[0]);
    if (open_client(o) != 0) return EXIT_FAIL;
    if (attach(o, &sb, name) != 0) {
        close_client();
        return EXIT_FAIL;
    }
    if (sbx_list_dir(&sb, *path ? path : "/", &ents, &n) != SBX_OK) {
        fail("%s", sb.err.msg);
        code = EXIT_FAIL;
    } else {
        qsort(ents, n, sizeof *ents, cmp_entry);
        if (o->json) printf("[");
        for (i = 0; i < n; i++) {
            if (o->json) {
                printf("%s{\"name\":", i ? "," : "");
                json_str(stdout, ents[i].name);
                printf(",\"size\":%lld,\"is_dir\":%s,\"mod_time\":%.3f}", ents[i].size,
                       ents[i].is_dir ? "true" : "false", ents[i].mod_time);
            } else if (o->long_ls) {
                char when[32] = "-";
                time_t t = (time_t)ents[i].mod_time;
                struct tm tm;
                if (t > 0 && localtime_r(&t, &tm)) strftime(when, sizeof when, "%Y-%m-%d %H:%M", &tm);
                printf("%c %12lld  %s  %s%s\n", ents[i].is_dir ? 'd' : '-', ents[i].size, when, ents[i].name,
                       ents[i].is_dir ? "/" : "");
            } else {
                printf("%s%s\n", ents[i].name, ents[i].is_dir ? "/" : "");
            }
        }
        if (o->json) printf("]\n");
    }
    sbx_free(ents);
    if (sbx_detach(&sb) != SBX_OK) fail("%s", sb.err.msg);
    close_client();
    fflush(stdout);
    return code;
}

/* ---- shell ------------------------------------------------------------------ */

typedef struct pump {
    sbx_process *p;
} pump;

/* stdin -> the process, until end of input or the process is done */
static void *stdin_thread(void *arg)
{
    pump *pu = (pump *)arg;
    char buf[4096];
    for (;;) {
        ssize_t n = read(0, buf, sizeof buf);
        if (n < 0 && errno == EINTR) continue;
        pthread_mutex_lock(&g_mu);
        if (g_proc_done) {
            pthread_mutex_unlock(&g_mu);
            break;
        }
        if (n <= 0) sbx_process_close_stdin(pu->p);
        else sbx_process_write(pu->p, buf, (size_t)n);
        pthread_mutex_unlock(&g_mu);
        if (n <= 0) break;
    }
    return NULL;
}

static int shell_pty(sbx_sandbox *sb)
{
    static const char *const argv[] = {"/bin/sh", NULL};
    const char *env[3] = {"TERM", NULL, NULL};
    sbx_process_config pc;
    sbx_process p;
    sbx_process_event ev;
    struct termios raw;
    pthread_t th;
    pump pu;
    int code = EXIT_FAIL;
    sbx_result r;
    memset(&pc, 0, sizeof pc);
    env[1] = getenv("TERM") && *getenv("TERM") ? getenv("TERM") : "xterm";
    pc.argv = argv;
    pc.env = env;
    pc.pty = 1;
    winsize(&pc.cols, &pc.rows);
    if (sbx_process_start(&p, sb, &pc) != SBX_OK) {
        fail("%s", p.err.msg);
        sbx_process_close(&p);
        return EXIT_FAIL;
    }
    if (tcgetattr(0, &g_saved_tio) == 0) {
        raw = g_saved_tio;
        /* raw: bytes as typed (Ctrl-C included) go to the sandbox's terminal */
        raw.c_iflag &= ~(tcflag_t)(BRKINT | ICRNL | INPCK | ISTRIP | IXON);
        raw.c_oflag &= ~(tcflag_t)OPOST;
        raw.c_cflag |= CS8;
        raw.c_lflag &= ~(tcflag_t)(ECHO | ICANON | IEXTEN | ISIG);
        raw.c_cc[VMIN] = 1;
        raw.c_cc[VTIME] = 0;
        if (tcsetattr(0, TCSAFLUSH, &raw) == 0) g_raw = 1;
    }
    pthread_mutex_lock(&g_mu);
    g_proc = &p;
    g_proc_done = 0;
    pthread_mutex_unlock(&g_mu);
    pu.p = &p;
    if (pthread_create(&th, NULL, stdin_thread, &pu) == 0) pthread_detach(th);
    for (;;) {
        r = sbx_process_read(&p, &ev, -1);
        if (r != SBX_OK) {
            restore_tty();
            fail("%s", p.err.msg);
            break;
        }
        if (ev.stream == SBX_STREAM_EXIT) {
            code = exit_of(ev.exit_code);
            break;
        }
        write_all(1, ev.data, ev.len);
    }
    restore_tty();
    pthread_mutex_lock(&g_mu);
    g_proc_done = 1;
    g_proc = NULL;
    sbx_process_close(&p);
    pthread_mutex_unlock(&g_mu);
    return code;
}

static int shell_lines(sbx_sandbox *sb, const char *name)
{
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    int code = 0, prompt = isatty(0) && isatty(2);
    for (;;) {
        const char *argv[4];
        if (prompt) fprintf(stderr, "%s$ ", name);
        n = getline(&line, &cap, stdin);
        if (n < 0) break;
        while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r')) line[--n] = '\0';
        if (strspn(line, " \t") == (size_t)n) continue;
        if (strcmp(line, "exit") == 0) break;
        argv[0] = "sh";
        argv[1] = "-c";
        argv[2] = line;
        argv[3] = NULL;
        code = run_argv(sb, argv, NULL, 0, DEFAULT_TIMEOUT_S);
        fprintf(stderr, "[exit %d]\n", code);
    }
    if (prompt && n < 0) fputc('\n', stderr);
    free(line);
    return code;
}

static int cmd_shell(const opts *o)
{
    sbx_sandbox sb;
    int code, created = 0;
    if (o->npos > 1) return usage("wants one NAME at most");
    if (o->npos == 1) {
        if (o->tmpl || o->pool) return usage("give NAME or -t/-p, not both");
        if (!valid_dns(o->pos[0], 253, 1)) return usage("\"%s\" is not a valid claim name", o->pos[0]);
    } else if ((code = need_template(o)) != 0) {
        return code;
    }
    if (open_client(o) != 0) return EXIT_SANDBOX;
    if (o->npos == 1) {
        if (attach(o, &sb, o->pos[0]) != 0) {
            close_client();
            return EXIT_SANDBOX;
        }
    } else {
        if (open_new(o, &sb, 0) != 0) {
            forget_claim();
            close_client();
            return EXIT_SANDBOX;
        }
        created = 1;
        if (isatty(2)) fprintf(stderr, "sbx: sandbox %s (deleted when the shell ends)\n", sbx_claim_name(&sb));
    }
    if ((sbx_capabilities(&sb) & SBX_CAP_PROCESS) && isatty(0) && isatty(1))
        code = shell_pty(&sb);
    else
        code = shell_lines(&sb, sbx_claim_name(&sb));
    if (created) {
        if (sbx_close(&sb) != SBX_OK) fail("%s", sb.err.msg);
        forget_claim();
    } else if (sbx_detach(&sb) != SBX_OK) {
        fail("%s", sb.err.msg);
    }
    close_client();
    return code;
}

/* ---- ps, rm, gc --------------------------------------------------------------- */

/* The host name as the library writes it into sandbox.h/owner-host
   (gethostname, anything but printable ASCII as '?'). */
static void owner_host(char *out, size_t cap)
{
    size_t i;
    if (gethostname(out, cap - 1) != 0) out[0] = '\0';
    out[cap - 1] = '\0';
    for (i = 0; out[i]; i++)
        if ((unsigned char)out[i] < 0x21 || (unsigned char)out[i] > 0x7e || out[i] == '"' || out[i] == '\\')
            out[i] = '?';
}

/* Start of process pid, seconds since the epoch, computed as the library
   computes sandbox.h/owner-start (Linux: starttime of /proc/PID/stat in clock
   ticks after boot + btime of /proc/stat); 0 when unknown. */
static long long proc_start(long long pid)
{
    char path[64], buf[1024], line[256];
    const char *p;
    unsigned long long ticks = 0, btime = 0;
    long hz = sysconf(_SC_CLK_TCK);
    int field;
    size_t n;
    FILE *f;
    snprintf(path, sizeof path, "/proc/%lld/stat", pid);
    if (!(f = fopen(path, "r"))) return 0;
    n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    if (!(p = strrchr(buf, ')'))) return 0;
    for (field = 2; *p && field < 22; p++)
        if (*p == ' ') field++;
    while (*p >= '0' && *p <= '9') ticks = ticks * 10 + (unsigned long long)(*p++ - '0');
    if (!(f = fopen("/proc/stat", "r"))) return 0;
    while (!btime && fgets(line, sizeof line, f))
        if (strncmp(line, "btime ", 6) == 0)
            for (p = line + 6; *p >= '0' && *p <= '9'; p++) btime = btime * 10 + (unsigned long long)(*p - '0');
    fclose(f);
    if (hz <= 0 || !btime || !ticks) return 0;
    return (long long)(btime + ticks / (unsigned long long)hz);
}

/* How gc decides that a claim's owner is gone. Every claim the library creates
   names its owner: sandbox.h/owner-host (gethostname), owner-pid and
   owner-start (the process's start time; empty off Linux). Only the owner's
   own host can look at that process, so:
   - another host's claim is never touched here ("other-host"): the pid means
     nothing on this machine (run gc there, or use a lease);
   - on this host the owner is gone ("orphan") when no process has that pid
     (kill(pid, 0) fails with ESRCH), or when one does but started at another
     time than owner-start: the pid was reused by a newer process. Without
     owner-start (or /proc), a live pid counts as the owner: never delete what
     might still be in use;
   - claims without owner annotations ("unknown"), claims made by `run --keep`
     ("kept", label sbx.sandbox.h/keep) and claims being deleted are left alone.
   Caveat: programs in other PID namespaces (containers) with the same host
   name look alike; containers normally have their own host names. */
static const char *owner_state(const sbx_claim_entry *e, int kept, const char *host)
{
    if (e->deleting) return "deleting";
    if (kept) return "kept";
    if (!e->owner_host[0] || e->owner_pid <= 0) return "unknown";
    if (strcmp(e->owner_host, host) != 0) return "other-host";
    if (e->owner_pid > INT_MAX || (kill((pid_t)e->owner_pid, 0) != 0 && errno == ESRCH)) return "orphan";
    if (e->owner_start > 0) {
        long long st = proc_start(e->owner_pid);
        if (st > 0 && st != e->owner_start) return "orphan";
    }
    return "running";
}

static int in_list(const sbx_claim_entry *list, size_t n, const sbx_claim_entry *e)
{
    size_t i;
    for (i = 0; i < n; i++)
        if (strcmp(list[i].name, e->name) == 0 && strcmp(list[i].ns, e->ns) == 0) return 1;
    return 0;
}

static void age(char *out, size_t cap, long long created)
{
    long long s = created > 0 ? (long long)time(NULL) - created : -1;
    if (s < 0) snprintf(out, cap, "-");
    else if (s < 120) snprintf(out, cap, "%llds", s);
    else if (s < 7200) snprintf(out, cap, "%lldm", s / 60);
    else if (s < 172800) snprintf(out, cap, "%lldh", s / 3600);
    else snprintf(out, cap, "%lldd", s / 86400);
}

/* Our claims and the kept ones among them (two selectors: the label's
   absence cannot be read from an entry). */
static int list_ours(const opts *o, sbx_claim_entry **all, size_t *nall, sbx_claim_entry **kept, size_t *nkept)
{
    sbx_error e;
    const char *ns = o->all_ns ? "*" : o->ns;
    *kept = NULL;
    *nkept = 0;
    if (sbx_list_claims(g_client, ns, OWNER_SELECTOR, all, nall, &e) != SBX_OK ||
        sbx_list_claims(g_client, ns, OWNER_SELECTOR "," KEEP_LABEL, kept, nkept, &e) != SBX_OK) {
        fail("%s", e.msg);
        sbx_free(*all);
        *all = NULL;
        return -1;
    }
    return 0;
}

static int cmd_ps(const opts *o)
{
    sbx_claim_entry *all = NULL, *kept = NULL;
    size_t nall = 0, nkept = 0, i;
    char host[256];
    if (o->npos) return usage("unexpected \"%s\"", o->pos[0]);
    if (open_client(o) != 0) return EXIT_FAIL;
    if (list_ours(o, &all, &nall, &kept, &nkept) != 0) {
        close_client();
        return EXIT_FAIL;
    }
    owner_host(host, sizeof host);
    if (o->json) printf("[");
    else if (o->all_ns) printf("%-20s %-30s %-6s %-6s %-30s %s\n", "NAMESPACE", "NAME", "READY", "AGE", "OWNER", "STATE");
    else printf("%-30s %-6s %-6s %-30s %s\n", "NAME", "READY", "AGE", "OWNER", "STATE");
    for (i = 0; i < nall; i++) {
        const sbx_claim_entry *e = &all[i];
        const char *st = owner_state(e, in_list(kept, nkept, e), host);
        char ag[32], own[300];
        if (o->json) {
            printf("%s{\"name\":", i ? "," : "");
            json_str(stdout, e->name);
            printf(",\"namespace\":");
            json_str(stdout, e->ns);
            printf(",\"ready\":%s,\"reason\":", e->ready ? "true" : "false");
            json_str(stdout, e->reason);
            printf(",\"created\":%lld,\"owner_host\":", e->created);
            json_str(stdout, e->owner_host);
            printf(",\"owner_pid\":%lld,\"owner_start\":%lld,\"state\":\"%s\"}", e->owner_pid, e->owner_start, st);
            continue;
        }
        age(ag, sizeof ag, e->created);
        if (e->owner_host[0]) snprintf(own, sizeof own, "%s:%lld", e->owner_host, e->owner_pid);
        else snprintf(own, sizeof own, "-");
        if (o->all_ns) printf("%-20s ", e->ns);
        printf("%-30s %-6s %-6s %-30s %s\n", e->name, e->ready ? "True" : "False", ag, own, st);
    }
    if (o->json) printf("]\n");
    fflush(stdout);
    sbx_free(all);
    sbx_free(kept);
    close_client();
    return EXIT_OK;
}

static int cmd_rm(const opts *o)
{
    int i, code = EXIT_OK;
    if (!o->npos) return usage("no NAME given");
    for (i = 0; i < o->npos; i++)
        if (!valid_dns(o->pos[i], 253, 1)) return usage("\"%s\" is not a valid claim name", o->pos[i]);
    if (open_client(o) != 0) return EXIT_FAIL;
    for (i = 0; i < o->npos; i++) {
        sbx_error e;
        if (sbx_delete_claim(g_client, o->ns, o->pos[i], &e) != SBX_OK) {
            fail("%s", e.msg);
            code = EXIT_FAIL;
        } else {
            printf("%s deleted\n", o->pos[i]);
        }
    }
    fflush(stdout);
    close_client();
    return code;
}

static int cmd_gc(const opts *o)
{
    sbx_claim_entry *all = NULL, *kept = NULL;
    size_t nall = 0, nkept = 0, i;
    char host[256];
    int code = EXIT_OK;
    if (o->npos) return usage("unexpected \"%s\"", o->pos[0]);
    if (open_client(o) != 0) return EXIT_FAIL;
    if (list_ours(o, &all, &nall, &kept, &nkept) != 0) {
        close_client();
        return EXIT_FAIL;
    }
    owner_host(host, sizeof host);
    for (i = 0; i < nall; i++) {
        const sbx_claim_entry *e = &all[i];
        const char *st = owner_state(e, in_list(kept, nkept, e), host);
        sbx_error err;
        sbx_result r;
        if (strcmp(st, "other-host") == 0) {
            printf("%s/%s: left alone: its owner runs on host %s (pid %lld)\n", e->ns, e->name, e->owner_host,
                   e->owner_pid);
            continue;
        }
        if (strcmp(st, "orphan") != 0) continue;
        if (o->dry_run) {
            printf("%s/%s: would delete (owner %s:%lld is gone)\n", e->ns, e->name, e->owner_host, e->owner_pid);
            continue;
        }
        r = sbx_delete_claim(g_client, e->ns, e->name, &err);
        if (r == SBX_OK || r == SBX_ERR_NOT_FOUND) {
            printf("%s/%s: deleted (owner %s:%lld is gone)\n", e->ns, e->name, e->owner_host, e->owner_pid);
        } else {
            fail("%s", err.msg);
            code = EXIT_FAIL;
        }
    }
    fflush(stdout);
    sbx_free(all);
    sbx_free(kept);
    close_client();
    return code;
}

/* ---- main ------------------------------------------------------------------- */

int main(int argc, char **argv)
{
    opts o;
    int rc, i;
    rc = parse_args(argc, argv, &o);
    if (rc == -1) {
        if (o.cmd) printf("usage: %s\n\n%s", o.cmd->usage, o.cmd->help);
        else print_main_help();
        rc = EXIT_OK;
    } else if (rc == 0) {
        /* everything is checked: only now may the cluster be contacted */
        if (start_signal_thread() != 0) {
            fail("cannot start the signal thread");
            rc = EXIT_FAIL;
        } else if (strcmp(o.cmd->name, "run") == 0) rc = cmd_run(&o);
        else if (strcmp(o.cmd->name, "exec") == 0) rc = cmd_exec(&o);
        else if (strcmp(o.cmd->name, "cp") == 0) rc = cmd_cp(&o);
        else if (strcmp(o.cmd->name, "ls") == 0) rc = cmd_ls(&o);
        else if (strcmp(o.cmd->name, "shell") == 0) rc = cmd_shell(&o);
        else if (strcmp(o.cmd->name, "ps") == 0) rc = cmd_ps(&o);
        else if (strcmp(o.cmd->name, "rm") == 0) rc = cmd_rm(&o);
        else rc = cmd_gc(&o);
    }
    hold_if_interrupted();
    for (i = 0; i < o.nenv; i++) free(o.envbuf[i]);
    free(o.pos);
    return rc;
}
