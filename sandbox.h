/* sandbox.h - v0.1.0 - agent sandboxes on Kubernetes, from C - MIT license (see end of file)

   DRAFT MANUAL (completed as the library grows)

   Do this:
       #define SANDBOX_IMPLEMENTATION
   before you include this file in *one* C or C++ file to create the implementation.
   Link with -pthread (glibc >= 2.34 needs nothing).

   Manual sections: QUICKSTART, REQUIREMENTS, CONFIGURATION MACROS, API, ERRORS,
   MEMORY AND OWNERSHIP, THREAD SAFETY, LIMITS AND SECURITY.
*/
#ifndef SANDBOX_H
#define SANDBOX_H

#include <stddef.h>

#define SANDBOX_VERSION_MAJOR 0
#define SANDBOX_VERSION_MINOR 1
#define SANDBOX_VERSION_PATCH 0
#define SANDBOX_VERSION_STRING "0.1.0"

#ifndef SBX_API
#ifdef SBX_STATIC
#if defined(__GNUC__) || defined(__clang__)
#define SBX_API static __attribute__((unused))
#else
#define SBX_API static
#endif
#else
#define SBX_API extern
#endif
#endif

/* Size of the message buffer inside every handle (bytes, including the NUL). */
#ifndef SBX_ERRMSG_SIZE
#define SBX_ERRMSG_SIZE 512
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* ---------------------------------------------------------------- results */
typedef enum sbx_result {
    SBX_OK = 0,
    SBX_ERR_INVALID_ARG = -1,  /* a caller mistake: bad name, path, option        */
    SBX_ERR_NOMEM = -2,        /* an allocation failed                            */
    SBX_ERR_SYS = -3,          /* a system call failed (err.sys_errno says which) */
    SBX_ERR_SPAWN = -4,        /* kubectl could not start or exited early         */
    SBX_ERR_TIMEOUT = -5,      /* a deadline passed                               */
    SBX_ERR_CONNECT = -6,      /* could not connect, or the peer closed           */
    SBX_ERR_HTTP = -7,         /* the server answered with an error status        */
    SBX_ERR_PROTOCOL = -8,     /* the peer broke HTTP or JSON rules               */
    SBX_ERR_TOO_BIG = -9,      /* a response exceeded its configured cap          */
    SBX_ERR_NOT_FOUND = -10,   /* the object or file does not exist               */
    SBX_ERR_SANDBOX = -11,     /* the controller reported a failure (reason)      */
    SBX_ERR_DELETED = -12,     /* the claim was deleted while we waited           */
    SBX_ERR_UNSUPPORTED = -13, /* this runtime or cluster cannot do that          */
    SBX_ERR_CLOSED = -14       /* the handle is closed or was never opened        */
} sbx_result;

/* Detail of the last failure, kept inside each handle (never global). */
typedef struct sbx_error {
    sbx_result code;            /* result of the last call on the handle        */
    int sys_errno;              /* errno of a failed system call, else 0        */
    int http_status;            /* HTTP status of a failed request, else 0      */
    char msg[SBX_ERRMSG_SIZE];  /* what failed, with the server's own words     */
} sbx_error;

/* Runtime allocator; all-NULL means SBX_MALLOC / SBX_REALLOC / SBX_FREE.
   Must be thread-safe when handles are used from several threads. */
typedef struct sbx_allocator {
    void *(*alloc)(size_t size, void *user);
    void *(*realloc)(void *ptr, size_t size, void *user);
    void (*free)(void *ptr, void *user);
    void *user;
} sbx_allocator;

/* ---------------------------------------------------------------- handles
   Caller-owned; fields are read-only for the caller. Do not copy a live handle. */
struct sbx__client;
struct sbx__sandbox;

typedef struct sbx_client {
    sbx_error err;               /* why the last client-level call failed */
    struct sbx__client *impl;    /* private; NULL when closed */
} sbx_client;

typedef struct sbx_sandbox {
    sbx_error err;               /* why the last call on this sandbox failed */
    struct sbx__sandbox *impl;   /* private; NULL when closed */
} sbx_sandbox;

typedef struct sbx_client_config {
    const char *kubectl;       /* default: $SANDBOX_KUBECTL, else "kubectl" on PATH   */
    const char *kubeconfig;    /* default: kubectl's choice ($KUBECONFIG, ~/.kube/config) */
    const char *context;       /* default: the kubeconfig's current context            */
    const char *ns;            /* default namespace of sandboxes: "default"           */
    const char *api_url;       /* default: $SANDBOX_API_URL; unset: start kubectl proxy.
                                  "http://127.0.0.1:8001" or "unix:/path/to/socket"   */
    int proxy_timeout_ms;      /* kubectl proxy start-up deadline; default 15000      */
    int api_timeout_ms;        /* each Kubernetes API request; default 30000          */
    sbx_allocator allocator;   /* default: SBX_MALLOC / SBX_REALLOC / SBX_FREE        */
} sbx_client_config;

typedef struct sbx_sandbox_config {
    const char *template_name; /* SandboxTemplate (the seed's API); on v1beta1 it is
                                  resolved to a warm pool of that template           */
    const char *warm_pool;     /* or name the SandboxWarmPool directly (v1beta1)      */
    const char *ns;            /* default: the client's namespace                     */
    const char *claim_name;    /* default: "sandbox-claim-" + 8 random hex digits    */
    const char *const *labels;      /* NULL, or {"key","value", ..., NULL} on the claim */
    const char *const *annotations; /* likewise                                      */
    const char *const *env;    /* {"NAME","value",...,NULL}: spec.env; forces a cold start and
                                  needs the template's envVarsInjectionPolicy to allow it */
    const char *const *pod_labels;      /* spec.additionalPodMetadata.labels (keys need an
                                           allowed domain prefix, e.g. sandbox.users.io/) */
    const char *const *pod_annotations; /* spec.additionalPodMetadata.annotations          */
    int ttl_seconds;           /* > 0: the claim expires (spec.lifecycle); default none */
    int ready_timeout_ms;      /* wait for Ready; default 180000                       */
    int tunnel_timeout_ms;     /* kubectl port-forward start-up; default 30000          */
    int call_timeout_ms;       /* run / write / read / list / exists; default 60000    */
    int server_port;           /* runtime port inside the pod; default 8888             */
    size_t max_output_bytes;   /* cap on run output and read size; default SBX_MAX_RESPONSE_BYTES */
} sbx_sandbox_config;

typedef struct sbx_exec_result {
    int exit_code;
    char *out;                 /* stdout bytes, NUL-terminated (not counted); free with */
    size_t out_len;            /* sbx_exec_result_free                                  */
    char *err;                 /* stderr bytes, likewise                                */
    size_t err_len;
} sbx_exec_result;

typedef struct sbx_file_entry {
    const char *name;          /* points into the same block as the array */
    long long size;
    int is_dir;
    double mod_time;           /* seconds since the epoch */
} sbx_file_entry;

/* ---------------------------------------------------------------- API */
SBX_API const char *sbx_strerror(sbx_result r);

SBX_API sbx_result sbx_client_open(sbx_client *c, const sbx_client_config *cfg);
SBX_API void sbx_client_close(sbx_client *c);

SBX_API sbx_result sbx_open(sbx_sandbox *sb, sbx_client *c, const sbx_sandbox_config *cfg);
SBX_API sbx_result sbx_close(sbx_sandbox *sb);

SBX_API sbx_result sbx_run(sbx_sandbox *sb, const char *command, sbx_exec_result *res);
SBX_API sbx_result sbx_write(sbx_sandbox *sb, const char *path, const void *data, size_t len);
SBX_API sbx_result sbx_read(sbx_sandbox *sb, const char *path, void **data, size_t *len);
SBX_API sbx_result sbx_write_fd(sbx_sandbox *sb, const char *path, int fd);
SBX_API sbx_result sbx_read_fd(sbx_sandbox *sb, const char *path, int fd);
SBX_API sbx_result sbx_list(sbx_sandbox *sb, const char *path, sbx_file_entry **entries, size_t *count);
SBX_API sbx_result sbx_exists(sbx_sandbox *sb, const char *path, int *exists);
SBX_API void sbx_set_call_timeout(sbx_sandbox *sb, int timeout_ms);

SBX_API const char *sbx_claim_name(const sbx_sandbox *sb);
SBX_API const char *sbx_sandbox_name(const sbx_sandbox *sb);
SBX_API const char *sbx_pod_name(const sbx_sandbox *sb);
SBX_API const char *sbx_namespace(const sbx_sandbox *sb);

SBX_API void sbx_exec_result_free(sbx_exec_result *res);
SBX_API void sbx_free(void *p);

#ifdef __cplusplus
}
#endif
#endif /* SANDBOX_H */

/* ======================================================================== */
/*                              IMPLEMENTATION                              */
/* ======================================================================== */
#ifdef SANDBOX_IMPLEMENTATION
#ifndef SANDBOX_IMPLEMENTATION_INCLUDED
#define SANDBOX_IMPLEMENTATION_INCLUDED

#ifdef _WIN32
#error "sandbox.h requires a POSIX system"
#endif

/* POSIX.1-2008 is needed (clock_gettime, gmtime_r, getaddrinfo...). Under a
   strict -std=c99 this only takes effect if no system header was included
   before this point; otherwise compile with -D_POSIX_C_SOURCE=200809L. */
#if !defined(_POSIX_C_SOURCE) && !defined(_XOPEN_SOURCE) && !defined(_GNU_SOURCE) && \
    !defined(_DEFAULT_SOURCE) && !defined(_BSD_SOURCE) && !defined(__APPLE__)
#define _POSIX_C_SOURCE 200809L
#endif

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/un.h>
#include <sys/wait.h>

#if defined(SBX_MALLOC) || defined(SBX_REALLOC) || defined(SBX_FREE)
#if !defined(SBX_MALLOC) || !defined(SBX_REALLOC) || !defined(SBX_FREE)
#error "define all or none of SBX_MALLOC, SBX_REALLOC and SBX_FREE"
#endif
#else
#define SBX_MALLOC(sz) malloc(sz)
#define SBX_REALLOC(p, sz) realloc(p, sz)
#define SBX_FREE(p) free(p)
#endif

#ifndef SBX_ASSERT
#include <assert.h>
#define SBX_ASSERT(c) assert(c)
#endif

/* Limits; every one can be overridden before including the implementation. */
#ifndef SBX_MAX_HEADER_BYTES
#define SBX_MAX_HEADER_BYTES 65536          /* whole response head */
#endif
#ifndef SBX_MAX_HEADERS
#define SBX_MAX_HEADERS 64
#endif
#ifndef SBX_MAX_RESPONSE_BYTES
#define SBX_MAX_RESPONSE_BYTES (256u * 1024u * 1024u)  /* run output, read, in memory */
#endif
#ifndef SBX_MAX_API_BYTES
#define SBX_MAX_API_BYTES (16u * 1024u * 1024u)        /* one Kubernetes API answer */
#endif
#ifndef SBX_MAX_LINE_BYTES
#define SBX_MAX_LINE_BYTES (16u * 1024u * 1024u)       /* one watch event */
#endif
#ifndef SBX_JSON_MAX_DEPTH
#define SBX_JSON_MAX_DEPTH 64
#endif

#if defined(__GNUC__) || defined(__clang__)
#define SBX__PRIVATE __attribute__((unused)) static
#else
#define SBX__PRIVATE static
#endif

#ifdef MSG_NOSIGNAL
#define SBX__SEND_FLAGS MSG_NOSIGNAL
#else
#define SBX__SEND_FLAGS 0
#endif

/* ======================================================================== */
/* >>util: allocation, errors, buffers, clocks, descriptors                 */
/* ======================================================================== */

static void *sbx__default_alloc(size_t n, void *u) { (void)u; return SBX_MALLOC(n); }
static void *sbx__default_realloc(void *p, size_t n, void *u) { (void)u; return SBX_REALLOC(p, n); }
static void sbx__default_free(void *p, void *u) { (void)u; SBX_FREE(p); }

/* Fill in the defaults of a user allocator: all three functions or none. */
SBX__PRIVATE sbx_allocator sbx__allocator(const sbx_allocator *user)
{
    sbx_allocator a;
    if (user && user->alloc && user->realloc && user->free) {
        a = *user;
    } else {
        a.alloc = sbx__default_alloc;
        a.realloc = sbx__default_realloc;
        a.free = sbx__default_free;
        a.user = NULL;
    }
    return a;
}

SBX__PRIVATE void *sbx__malloc(const sbx_allocator *a, size_t n)
{
    return a->alloc(n ? n : 1, a->user);
}

SBX__PRIVATE void *sbx__realloc(const sbx_allocator *a, void *p, size_t n)
{
    return a->realloc(p, n ? n : 1, a->user);
}

SBX__PRIVATE void sbx__free(const sbx_allocator *a, void *p)
{
    if (p) a->free(p, a->user);
}

SBX__PRIVATE char *sbx__strndup(const sbx_allocator *a, const char *s, size_t n)
{
    char *d = (char *)sbx__malloc(a, n + 1);
    if (!d) return NULL;
    memcpy(d, s, n);
    d[n] = '\0';
    return d;
}

SBX__PRIVATE char *sbx__strdup(const sbx_allocator *a, const char *s)
{
    return s ? sbx__strndup(a, s, strlen(s)) : NULL;
}

/* Blocks handed to the caller (run output, file contents, listings) carry a
   small header naming their allocator, so that sbx_free(p) needs no handle and
   works even after the client is closed. */
typedef struct sbx__blockhdr {
    void (*free)(void *ptr, void *user);
    void *user;
} sbx__blockhdr;
#define SBX__BLOCKHDR_SIZE 16  /* keeps the payload 16-byte aligned */

SBX__PRIVATE void *sbx__block_alloc(const sbx_allocator *a, size_t n)
{
    char *raw;
    sbx__blockhdr h;
    if (n > (size_t)-1 - SBX__BLOCKHDR_SIZE - 1) return NULL;
    raw = (char *)sbx__malloc(a, n + SBX__BLOCKHDR_SIZE + 1);
    if (!raw) return NULL;
    h.free = a->free;
    h.user = a->user;
    memcpy(raw, &h, sizeof h);
    raw[SBX__BLOCKHDR_SIZE + n] = '\0';
    return raw + SBX__BLOCKHDR_SIZE;
}

SBX_API void sbx_free(void *p)
{
    sbx__blockhdr h;
    char *raw;
    if (!p) return;
    raw = (char *)p - SBX__BLOCKHDR_SIZE;
    memcpy(&h, raw, sizeof h);
    h.free(raw, h.user);
}

/* ---- errors: every failure is described in an sbx_error ---------------- */

SBX__PRIVATE void sbx__err_clear(sbx_error *e)
{
    if (!e) return;
    e->code = SBX_OK;
    e->sys_errno = 0;
    e->http_status = 0;
    e->msg[0] = '\0';
}

#if defined(__GNUC__) || defined(__clang__)
#define SBX__PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define SBX__PRINTF(f, a)
#endif

/* Record a failure and return its code: return sbx__fail(e, SBX_ERR_X, "...", ...). */
SBX__PRIVATE SBX__PRINTF(3, 4) sbx_result sbx__fail(sbx_error *e, sbx_result code, const char *fmt, ...)
{
    va_list ap;
    if (!e) return code;
    e->code = code;
    va_start(ap, fmt);
    vsnprintf(e->msg, sizeof e->msg, fmt, ap);
    va_end(ap);
    return code;
}

/* Like sbx__fail, for a failed system call: saves errno and appends strerror. */
SBX__PRIVATE SBX__PRINTF(4, 5) sbx_result sbx__fail_sys(sbx_error *e, sbx_result code, int err, const char *fmt, ...)
{
    va_list ap;
    size_t n;
    if (!e) return code;
    e->code = code;
    e->sys_errno = err;
    va_start(ap, fmt);
    vsnprintf(e->msg, sizeof e->msg, fmt, ap);
    va_end(ap);
    n = strlen(e->msg);
    snprintf(e->msg + n, sizeof e->msg - n, ": %s", strerror(err));
    return code;
}

/* Put "context: " in front of the message already recorded; returns e->code.
   The message is cut at SBX_ERRMSG_SIZE - 1 bytes. */
SBX__PRIVATE SBX__PRINTF(2, 3) sbx_result sbx__err_prefix(sbx_error *e, const char *fmt, ...)
{
    char pre[SBX_ERRMSG_SIZE];
    size_t plen, mlen;
    va_list ap;
    if (!e) return SBX_OK;
    va_start(ap, fmt);
    vsnprintf(pre, sizeof pre, fmt, ap);
    va_end(ap);
    plen = strlen(pre);
    if (plen > sizeof e->msg - 3) plen = sizeof e->msg - 3;
    mlen = strlen(e->msg);
    if (plen + 2 + mlen > sizeof e->msg - 1) mlen = sizeof e->msg - 1 - plen - 2;
    memmove(e->msg + plen + 2, e->msg, mlen);
    memcpy(e->msg, pre, plen);
    e->msg[plen] = ':';
    e->msg[plen + 1] = ' ';
    e->msg[plen + 2 + mlen] = '\0';
    return e->code;
}

/* ---- growable byte buffer (always NUL-terminated once allocated) ------- */

typedef struct sbx__buf {
    char *data;
    size_t len;
    size_t cap;
    const sbx_allocator *a;
} sbx__buf;

SBX__PRIVATE void sbx__buf_init(sbx__buf *b, const sbx_allocator *a)
{
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
    b->a = a;
}

SBX__PRIVATE void sbx__buf_free(sbx__buf *b)
{
    sbx__free(b->a, b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

/* Room for `extra` more bytes plus a NUL. 0 on success, -1 on overflow or no memory. */
SBX__PRIVATE int sbx__buf_reserve(sbx__buf *b, size_t extra)
{
    size_t need, ncap;
    char *p;
    if (extra > (size_t)-1 - b->len - 1) return -1;
    need = b->len + extra + 1;
    if (need <= b->cap) return 0;
    ncap = b->cap ? b->cap : 256;
    while (ncap < need) {
        if (ncap > (size_t)-1 / 2) { ncap = need; break; }
        ncap *= 2;
    }
    p = (char *)sbx__realloc(b->a, b->data, ncap);
    if (!p) return -1;
    b->data = p;
    b->cap = ncap;
    return 0;
}

SBX__PRIVATE int sbx__buf_append(sbx__buf *b, const void *p, size_t n)
{
    if (sbx__buf_reserve(b, n) != 0) return -1;
    if (n) memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = '\0';
    return 0;
}

SBX__PRIVATE int sbx__buf_puts(sbx__buf *b, const char *s)
{
    return sbx__buf_append(b, s, strlen(s));
}

SBX__PRIVATE SBX__PRINTF(2, 3) int sbx__buf_printf(sbx__buf *b, const char *fmt, ...)
{
    va_list ap;
    int n;
    char small[256];
    va_start(ap, fmt);
    n = vsnprintf(small, sizeof small, fmt, ap);
    va_end(ap);
    if (n < 0) return -1;
    if ((size_t)n < sizeof small) return sbx__buf_append(b, small, (size_t)n);
    if (sbx__buf_reserve(b, (size_t)n) != 0) return -1;
    va_start(ap, fmt);
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
    return 0;
}

/* Hand the buffer's bytes to the caller as an sbx_free-able block. */
SBX__PRIVATE void *sbx__buf_to_block(sbx__buf *b, size_t *len)
{
    char *blk = (char *)sbx__block_alloc(b->a, b->len);
    if (!blk) return NULL;
    if (b->len) memcpy(blk, b->data, b->len);
    if (len) *len = b->len;
    return blk;
}

/* ---- clocks and deadlines (milliseconds, CLOCK_MONOTONIC) -------------- */

SBX__PRIVATE long long sbx__now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* A deadline `ms` from now (ms <= 0 gives "now"). */
SBX__PRIVATE long long sbx__deadline(int ms)
{
    return sbx__now_ms() + (ms > 0 ? ms : 0);
}

/* Milliseconds left until `deadline`, clamped to [0, INT_MAX]. */
SBX__PRIVATE int sbx__ms_left(long long deadline)
{
    long long left = deadline - sbx__now_ms();
    if (left < 0) return 0;
    if (left > INT_MAX) return INT_MAX;
    return (int)left;
}

/* Wall clock as RFC 3339 UTC: 2026-08-22T10:00:00Z, or with microseconds
   2026-08-22T10:00:00.123456Z. `offset_s` seconds are added first (expiry). */
SBX__PRIVATE void sbx__rfc3339(char out[40], long long offset_s, int with_fraction)
{
    struct timespec ts;
    struct tm tm;
    time_t t;
    size_t n;
    clock_gettime(CLOCK_REALTIME, &ts);
    t = (time_t)(ts.tv_sec + offset_s);
    gmtime_r(&t, &tm);
    n = strftime(out, 40, "%Y-%m-%dT%H:%M:%S", &tm);
    if (with_fraction && n + 9 < 40) {
        unsigned long us = (unsigned long)(ts.tv_nsec / 1000) % 1000000ul;
        int i;
        out[n++] = '.';
        for (i = 5; i >= 0; i--, us /= 10) out[n + (size_t)i] = (char)('0' + us % 10);
        n += 6;
    }
    out[n++] = 'Z';
    out[n] = '\0';
}

/* ---- descriptors ------------------------------------------------------- */

SBX__PRIVATE int sbx__set_cloexec(int fd)
{
    int fl = fcntl(fd, F_GETFD);
    if (fl < 0) return -1;
    return fcntl(fd, F_SETFD, fl | FD_CLOEXEC);
}

SBX__PRIVATE int sbx__set_nonblock(int fd, int on)
{
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0) return -1;
    return fcntl(fd, F_SETFL, on ? (fl | O_NONBLOCK) : (fl & ~O_NONBLOCK));
}

/* A close-on-exec pipe. (pipe2 is not POSIX.1-2008; the window between pipe()
   and fcntl() only matters to other threads that fork, and they must exec.) */
SBX__PRIVATE int sbx__pipe_cloexec(int fds[2])
{
    if (pipe(fds) != 0) return -1;
    if (sbx__set_cloexec(fds[0]) != 0 || sbx__set_cloexec(fds[1]) != 0) {
        int err = errno;
        close(fds[0]);
        close(fds[1]);
        errno = err;
        return -1;
    }
    return 0;
}

/* Wait until fd is ready for `events` or the deadline passes.
   1 = ready (or hung up / error: the next read/write tells), 0 = timeout, -1 = poll failed. */
SBX__PRIVATE int sbx__poll1(int fd, short events, long long deadline)
{
    struct pollfd p;
    int r;
    for (;;) {
        p.fd = fd;
        p.events = events;
        p.revents = 0;
        r = poll(&p, 1, sbx__ms_left(deadline));
        if (r > 0) return 1;
        if (r == 0) return 0;
        if (errno != EINTR) return -1;
    }
}

/* ---- random and names -------------------------------------------------- */

/* n random bytes from /dev/urandom; falls back to clock and pid mixing. */
SBX__PRIVATE void sbx__random(unsigned char *out, size_t n)
{
    size_t got = 0;
    int fd = open("/dev/urandom", O_RDONLY);
    if (fd >= 0) {
        sbx__set_cloexec(fd);
        while (got < n) {
            ssize_t r = read(fd, out + got, n - got);
            if (r > 0) got += (size_t)r;
            else if (r < 0 && errno == EINTR) continue;
            else break;
        }
        close(fd);
    }
    if (got < n) {
        struct timespec ts;
        unsigned long long x;
        clock_gettime(CLOCK_REALTIME, &ts);
        x = (unsigned long long)ts.tv_nsec ^ ((unsigned long long)ts.tv_sec << 20) ^
            ((unsigned long long)getpid() << 40) ^ (unsigned long long)(size_t)out;
        for (; got < n; got++) {
            x ^= x << 13; x ^= x >> 7; x ^= x << 17;
            out[got] = (unsigned char)(x >> 24);
        }
    }
}

/* ---- percent-encoding -------------------------------------------------- */

/* Append `s` as ONE path segment: every byte except RFC 3986 unreserved
   characters (A-Z a-z 0-9 - . _ ~) becomes %XX, so "/" becomes %2F.
   Whole "." and ".." are sent as %2E and %2E%2E so no HTTP stack can take
   them for dot segments. */
SBX__PRIVATE int sbx__pct_encode_segment(sbx__buf *b, const char *s, size_t n)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t i;
    int dots = (n == 1 && s[0] == '.') || (n == 2 && s[0] == '.' && s[1] == '.');
    for (i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        char enc[3];
        if (!dots && ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                      c == '-' || c == '.' || c == '_' || c == '~')) {
            if (sbx__buf_append(b, &s[i], 1) != 0) return -1;
            continue;
        }
        enc[0] = '%';
        enc[1] = hex[c >> 4];
        enc[2] = hex[c & 15];
        if (sbx__buf_append(b, enc, 3) != 0) return -1;
    }
    return 0;
}

/* ======================================================================== */
/* >>json: strict RFC 8259 scanner (no allocation) and a string writer      */
/* ======================================================================== */
/* CONTRACT (implemented by the json section):

   Token types: SBX__JSON_OBJECT, _ARRAY, _STRING, _NUMBER, _TRUE, _FALSE, _NULL.
   typedef struct sbx__jtok {
       int type;
       size_t start, end;  -- byte range in the text; strings exclude the quotes
       int size;           -- object: number of members; array: number of elements
       int next;           -- index of the first token after this token's subtree
   } sbx__jtok;
   An object token is followed by key, value-subtree, key, value-subtree...
   Iterate an array: for (i = arr + 1, k = 0; k < t[arr].size; k++, i = t[i].next)

   int sbx__json_parse(const char *js, size_t len, sbx__jtok *toks, int ntoks);
       Strict: exactly one value, surrounding whitespace only; depth <= SBX_JSON_MAX_DEPTH.
       Returns the token count, or SBX__JSON_ERR_NOMEM (-1, more tokens needed),
       SBX__JSON_ERR_INVALID (-2), SBX__JSON_ERR_PARTIAL (-3, input ended early),
       SBX__JSON_ERR_DEPTH (-4). toks == NULL: only count (returns the count needed).
   int sbx__json_parse_alloc(const sbx_allocator *a, const char *js, size_t len, sbx__jtok **toks);
       Counts, allocates, parses. Same returns; on success *toks is freed with sbx__free(a, ...).
   int sbx__json_get(const char *js, const sbx__jtok *t, int ntok, int at, const char *path);
       "status.sandbox.name", "items[0].metadata.name", "" (at itself). Token index or -1.
   int sbx__json_find(const char *js, const sbx__jtok *t, int ntok, int arr, const char *key, const char *val);
       The element of array `arr` that is an object whose member `key` is the string `val`; -1 if none.
   int sbx__json_eq(const char *js, const sbx__jtok *t, int i, const char *s);
       1 if token i is a string whose unescaped value equals s.
   int sbx__json_unescape(const char *js, const sbx__jtok *t, int i, char *out, size_t cap, size_t *outlen);
       String token to UTF-8 bytes (\uXXXX and surrogate pairs; \u0000 gives a NUL byte).
       0 ok (NUL-terminated), -1 cap too small (*outlen = bytes needed without NUL), -2 not a string.
   int sbx__json_strdup(const sbx_allocator *a, const char *js, const sbx__jtok *t, int i, char **out, size_t *outlen);
       Same into fresh memory (sbx__free). 0 ok, -1 no memory, -2 not a string.
   int sbx__json_int(const char *js, const sbx__jtok *t, int i, long long *out);
       Integer number token (no fraction/exponent); 0 ok, -1 not an integer or overflow.
   int sbx__json_double(const char *js, const sbx__jtok *t, int i, double *out);
       Any number token, parsed without locale dependence; 0 ok, -1 not a number.
   int sbx__json_write_str(sbx__buf *b, const char *s, size_t n);
       Append s as a quoted JSON string (escapes ", \, control chars). 0 ok, -1 no memory,
       -2 s is not valid UTF-8 (nothing appended): invalid bytes are refused, never altered.
*/

/* ======================================================================== */
/* >>http: HTTP/1.1 client over TCP or unix sockets                         */
/* ======================================================================== */
/* CONTRACT (implemented by the http section): see the comment block there. The
   kube and api sections use only:

   sbx__endpoint: parsed from "http://host:port[/prefix]" or "unix:/path".
   int  sbx__endpoint_parse(const char *url, sbx__endpoint *ep, sbx_error *e);
   sbx__conn: one keep-alive connection. sbx__conn_init(c, ep, a), sbx__conn_close(c),
        sbx__conn_free(c).
   sbx__http_req { method, target, headers ("Name: v\r\n"... or NULL), body, body_len,
        body_fd (-1 none), body_fd_len (-1 chunked), multipart_name, multipart_filename,
        idempotent }.
   sbx__http_resp { status, ... }; sbx__http_header(r, "content-type", &len).
   int  sbx__http_send(c, req, resp, deadline, e);      request out, response head in
   int  sbx__http_body_mem(c, resp, sbx__buf *out, size_t cap, deadline, e);
   int  sbx__http_body_fd(c, resp, int fd, deadline, e);
   int  sbx__http_body_line(c, resp, sbx__buf *line, size_t cap, deadline, e); 1 line, 0 end
   int  sbx__http_body_discard(c, resp, deadline, e);
   void sbx__http_resp_free(resp);
   int  sbx__http_do(c, req, resp, sbx__buf *body, size_t cap, deadline, e);  all of the above
   Results are sbx_result codes; an HTTP error status is NOT a failure at this layer.
*/

/* ======================================================================== */
/* >>proc: child processes (kubectl proxy, kubectl port-forward)            */
/* ======================================================================== */
/* CONTRACT (implemented by the proc section):

   sbx__proc: one child with a drainer thread that reads its stdout and stderr
   for its whole life, so the child never blocks or dies on a full or closed pipe.
   int  sbx__proc_spawn(sbx__proc *p, char *const argv[], char *const env_extra[],
                        const sbx_allocator *a, sbx_error *e);
   int  sbx__proc_wait_line(sbx__proc *p, const char *prefix, char *line, size_t cap,
                            long long deadline, sbx_error *e);
   int  sbx__proc_running(sbx__proc *p);
   int  sbx__proc_stop(sbx__proc *p, int first_signal, int grace_ms);   idempotent, reaps
   void sbx__proc_describe(sbx__proc *p, char *buf, size_t cap);
        "exited with status 1: error: lost connection to pod" / "killed by signal 9" / "running"
*/

/* ======================================================================== */
/* >>kube: Kubernetes API access, claims, watch                             */
/* ======================================================================== */

/* ======================================================================== */
/* >>api: the public functions                                              */
/* ======================================================================== */

SBX_API const char *sbx_strerror(sbx_result r)
{
    switch (r) {
    case SBX_OK: return "success";
    case SBX_ERR_INVALID_ARG: return "invalid argument";
    case SBX_ERR_NOMEM: return "out of memory";
    case SBX_ERR_SYS: return "system call failed";
    case SBX_ERR_SPAWN: return "kubectl could not be started or exited";
    case SBX_ERR_TIMEOUT: return "timed out";
    case SBX_ERR_CONNECT: return "connection failed";
    case SBX_ERR_HTTP: return "server returned an error";
    case SBX_ERR_PROTOCOL: return "protocol error";
    case SBX_ERR_TOO_BIG: return "response too big";
    case SBX_ERR_NOT_FOUND: return "not found";
    case SBX_ERR_SANDBOX: return "sandbox failed";
    case SBX_ERR_DELETED: return "claim deleted";
    case SBX_ERR_UNSUPPORTED: return "unsupported by this runtime";
    case SBX_ERR_CLOSED: return "handle closed";
    }
    return "unknown error";
}

/* PLACEHOLDERS: replaced by the kube/api work (issue 4). */
SBX_API sbx_result sbx_client_open(sbx_client *c, const sbx_client_config *cfg)
{
    (void)cfg;
    c->impl = NULL;
    sbx__err_clear(&c->err);
    return sbx__fail(&c->err, SBX_ERR_UNSUPPORTED, "sbx_client_open: not implemented yet");
}
SBX_API void sbx_client_close(sbx_client *c) { (void)c; }
SBX_API sbx_result sbx_open(sbx_sandbox *sb, sbx_client *c, const sbx_sandbox_config *cfg)
{
    (void)c; (void)cfg;
    sb->impl = NULL;
    sbx__err_clear(&sb->err);
    return sbx__fail(&sb->err, SBX_ERR_UNSUPPORTED, "sbx_open: not implemented yet");
}
SBX_API sbx_result sbx_close(sbx_sandbox *sb) { return sb->impl ? SBX_OK : SBX_ERR_CLOSED; }
SBX_API sbx_result sbx_run(sbx_sandbox *sb, const char *command, sbx_exec_result *res) { (void)sb; (void)command; (void)res; return SBX_ERR_UNSUPPORTED; }
SBX_API sbx_result sbx_write(sbx_sandbox *sb, const char *path, const void *data, size_t len) { (void)sb; (void)path; (void)data; (void)len; return SBX_ERR_UNSUPPORTED; }
SBX_API sbx_result sbx_read(sbx_sandbox *sb, const char *path, void **data, size_t *len) { (void)sb; (void)path; (void)data; (void)len; return SBX_ERR_UNSUPPORTED; }
SBX_API sbx_result sbx_write_fd(sbx_sandbox *sb, const char *path, int fd) { (void)sb; (void)path; (void)fd; return SBX_ERR_UNSUPPORTED; }
SBX_API sbx_result sbx_read_fd(sbx_sandbox *sb, const char *path, int fd) { (void)sb; (void)path; (void)fd; return SBX_ERR_UNSUPPORTED; }
SBX_API sbx_result sbx_list(sbx_sandbox *sb, const char *path, sbx_file_entry **entries, size_t *count) { (void)sb; (void)path; (void)entries; (void)count; return SBX_ERR_UNSUPPORTED; }
SBX_API sbx_result sbx_exists(sbx_sandbox *sb, const char *path, int *exists) { (void)sb; (void)path; (void)exists; return SBX_ERR_UNSUPPORTED; }
SBX_API void sbx_set_call_timeout(sbx_sandbox *sb, int timeout_ms) { (void)sb; (void)timeout_ms; }
SBX_API const char *sbx_claim_name(const sbx_sandbox *sb) { (void)sb; return NULL; }
SBX_API const char *sbx_sandbox_name(const sbx_sandbox *sb) { (void)sb; return NULL; }
SBX_API const char *sbx_pod_name(const sbx_sandbox *sb) { (void)sb; return NULL; }
SBX_API const char *sbx_namespace(const sbx_sandbox *sb) { (void)sb; return NULL; }

SBX_API void sbx_exec_result_free(sbx_exec_result *res)
{
    if (!res) return;
    sbx_free(res->out);
    sbx_free(res->err);
    res->out = res->err = NULL;
    res->out_len = res->err_len = 0;
}

#endif /* SANDBOX_IMPLEMENTATION_INCLUDED */
#endif /* SANDBOX_IMPLEMENTATION */

/*
------------------------------------------------------------------------------
MIT License

Copyright (c) 2026 The sandbox.h authors

Permission is hereby granted, free of charge, to any person obtaining a copy
of this software and associated documentation files (the "Software"), to deal
in the Software without restriction, including without limitation the rights
to use, copy, modify, merge, publish, distribute, sublicense, and/or sell
copies of the Software, and to permit persons to whom the Software is
furnished to do so, subject to the following conditions:

The above copyright notice and this permission notice shall be included in all
copies or substantial portions of the Software.

THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR
IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY,
FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE
AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER
LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM,
OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE
SOFTWARE.
------------------------------------------------------------------------------
*/
