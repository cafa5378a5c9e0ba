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
/* A small, strict HTTP/1.1 client. One exchange at a time per connection;
   every wait is bounded by an absolute deadline (sbx__now_ms() based, see
   sbx__deadline); never raises SIGPIPE; never follows redirects. An HTTP
   error status is NOT a failure here: the caller reads resp.status.

   ENDPOINT
   int sbx__endpoint_parse(const char *url, sbx__endpoint *ep, sbx_error *e);
       "http://HOST[:PORT][/PREFIX]": HOST is an IPv4 literal, an [IPv6] literal
       or a name (resolved now with getaddrinfo; up to 4 addresses are tried in
       order); PORT defaults to 80; PREFIX is put in front of every target.
       "unix:PATH": a unix socket (kubectl proxy --unix-socket); Host: localhost.
       "https://" is refused (SBX_ERR_INVALID_ARG): there is no TLS here.
       ep->name ("127.0.0.1:8001", "[::1]:8001", "unix:/p") appears in messages.

   CONNECTION (keep-alive; not thread-safe; do not copy while open)
   void sbx__conn_init(sbx__conn *c, const sbx__endpoint *ep, const sbx_allocator *a);
       copies *ep and *a (a may be NULL); connects lazily on the first request.
   void sbx__conn_close(sbx__conn *c);   drop the socket (the next request reconnects)
   void sbx__conn_free(sbx__conn *c);    close and free the buffer; idempotent

   REQUEST  sbx__http_req_init(&req) first (it sets body_fd = -1, body_fd_len = -1).
       method, target ("/api/v1/...": printable ASCII, already percent-encoded),
       headers (NULL or lines "Name: value\r\n"...; Host, Content-Length and
       Transfer-Encoding are set here and refused from the caller, as is
       Content-Type with multipart). Body: body/body_len from memory, or body_fd
       with body_fd_len bytes (-1: unknown length, sent chunked, e.g. a pipe; the
       descriptor, blocking or not, is polled and read in 64 KiB pieces, never
       buffered whole and never closed; ending early is SBX_ERR_SYS). multipart_name + multipart_filename wrap that body as
       multipart/form-data with one file part (application/octet-stream) and a
       random boundary; the field name and file name must not contain control
       characters (CR, LF, NUL...), '"' or '\\' (SBX_ERR_INVALID_ARG: they are
       refused, never encoded); bytes >= 0x80 (UTF-8) are sent as they are.
       idempotent: if a kept-alive connection turns out to have been closed by
       the server (EOF/reset while sending or before the first response byte),
       the request is sent again once on a new connection, provided the body
       is in memory. Otherwise that case is SBX_ERR_CONNECT ("... may have
       reached the server"). A connection already seen closed before sending
       is replaced silently, whatever the request.
       Sent headers: Host, User-Agent: sandbox.h/VERSION (unless given),
       Content-Length or Transfer-Encoding: chunked (POST/PUT/PATCH without a
       body get Content-Length: 0), then the caller's lines.

   EXCHANGE
   int sbx__http_send(c, req, resp, deadline, e)   request out, response head in.
       Interim 1xx answers are skipped. `resp` is (re)initialised here and owns
       no memory: its reason and header views point into the connection and
       stay valid until the next send on it or sbx__conn_free (so
       sbx__http_resp_free only clears it; calling it is optional).
       resp->status, ->minor, ->reason, ->hdr[0..nhdr) (names and values are
       NUL-terminated views), ->content_length (-1 unknown), ->chunked,
       ->keep_alive. Look-up: sbx__http_header(resp, "content-type", &len).
   Then read the body with exactly one of (each may be called again after 0/OK):
   int sbx__http_body_mem(c, resp, sbx__buf *out, size_t cap, deadline, e)
       appends the body to out (NUL-terminated, allocated even when empty);
       more than cap bytes is SBX_ERR_TOO_BIG (nothing is silently cut).
   int sbx__http_body_fd(c, resp, int fd, deadline, e)   streams through a 64 KiB buffer
       (memory stays flat); fd may be blocking or not (it is polled; a
       blocking pipe gets PIPE_BUF-sized writes); EPIPE is SBX_ERR_SYS and
       never a SIGPIPE (the signal is held back in this thread meanwhile).
   int sbx__http_body_line(c, resp, sbx__buf *line, size_t cap, deadline, e)
       1: one line in `line` (replaced; without "\n" and one trailing "\r";
       empty lines are returned too), 0: end of body (an unterminated last
       line is returned as a line first), < 0: error. A line longer than cap
       bytes is SBX_ERR_TOO_BIG. For a watch: send, then loop on body_line
       with the deadline of your wait.
   int sbx__http_body_discard(c, resp, deadline, e)  best effort, always SBX_OK:
       drains up to 256 KiB to keep the connection, else closes it.
   int sbx__http_do(c, req, resp, sbx__buf *body, size_t cap, deadline, e)
       send + body_mem (or discard when body is NULL).
   The connection is kept only when the body was read to its end and neither
   side said "Connection: close" (HTTP/1.0: only with keep-alive). Any error,
   and any body left unread when the next request starts, closes it.
   Error codes: SBX_ERR_CONNECT (refused, reset, closed early), SBX_ERR_TIMEOUT
   (connect, send, response head, body), SBX_ERR_PROTOCOL (the rule broken is
   named), SBX_ERR_TOO_BIG, SBX_ERR_NOMEM, SBX_ERR_SYS, SBX_ERR_INVALID_ARG.

   size_t sbx__http_error_text(int status, const char *body, size_t len, char *out, size_t cap)
       "HTTP 404: pods \"x\" not found": the top-level "message" (else "detail")
       string of a JSON object body, else the first 300 bytes of the body with
       control characters and invalid UTF-8 replaced. Returns strlen(out).

   PARSERS (no allocation, usable on any split of the input; fuzzed)
   int sbx__http_parse_head(buf, len, &minor, &status, &reason, &reason_len,
                            hdr, &nhdr (in: capacity, out: count), &why)
       > 0: bytes of the head (through the empty line); SBX__HTTP_INCOMPLETE;
       SBX__HTTP_INVALID (why names the rule); SBX__HTTP_TOO_MANY (more than
       the capacity); SBX__HTTP_TOO_LONG (longer than SBX_MAX_HEADER_BYTES).
   int sbx__chunked_decode(d, buf, len, &out, &used)   in place: buf[0..out)
       receives the data bytes of buf[0..used). 1: last chunk and trailers
       done (bytes after `used` are not part of the body), 0: need more (used
       == len), -1: invalid (d->why).
   int sbx__linesplit_feed(ls, p, n, &used)  1: line ends at p[used-1] ('\n'),
       0: all n bytes continue the line, -1: the line would pass ls->cap.
*/

#if SBX_MAX_HEADER_BYTES > 0x3fffffff || SBX_MAX_HEADER_BYTES < 256
#error "SBX_MAX_HEADER_BYTES must be between 256 and 2^30"
#endif
#if SBX_MAX_HEADERS < 1
#error "SBX_MAX_HEADERS must be at least 1"
#endif

#define SBX__HTTP_INVALID (-1)
#define SBX__HTTP_INCOMPLETE (-2)
#define SBX__HTTP_TOO_MANY (-3)
#define SBX__HTTP_TOO_LONG (-4)

#define SBX__HTTP_IO_SIZE 65536  /* body buffer: memory stays flat */
#define SBX__HTTP_BUF_SIZE (SBX_MAX_HEADER_BYTES > SBX__HTTP_IO_SIZE ? SBX_MAX_HEADER_BYTES : SBX__HTTP_IO_SIZE)
#define SBX__HTTP_MAX_ADDRS 4
#define SBX__HTTP_MAX_INTERIM 32             /* 1xx answers skipped per request */
#define SBX__HTTP_DISCARD_MAX (256u * 1024u) /* drained to keep a connection   */
#define SBX__HTTP_CHUNK_EXT_MAX 4096         /* one chunk-size line            */
#define SBX__HTTP_NAME_MAX 1024              /* multipart field and file name  */
#define SBX__HTTP_MEM_INLINE 16384           /* small bodies go out with the head */

typedef struct sbx__http_hdr {
    const char *name;
    size_t name_len;
    const char *value;  /* leading and trailing blanks removed */
    size_t value_len;
} sbx__http_hdr;

/* ---- character classes -------------------------------------------------- */

SBX__PRIVATE int sbx__http_tchar(unsigned char c)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) return 1;
    return c != 0 && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

/* A byte of a field value or reason phrase: HTAB, SP, VCHAR, obs-text. */
SBX__PRIVATE int sbx__http_vchar(unsigned char c)
{
    return c == '\t' || (c >= 0x20 && c != 0x7f);
}

/* Case-insensitive: does s[0..n) equal the lower-case NUL-terminated `lower`? */
SBX__PRIVATE int sbx__http_ieq(const char *s, size_t n, const char *lower)
{
    size_t i;
    for (i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 'A' && c <= 'Z') c = (unsigned char)(c + 32);
        if (lower[i] == '\0' || c != (unsigned char)lower[i]) return 0;
    }
    return lower[n] == '\0';
}

/* Does the comma-separated list s[0..n) contain the token `lower`? */
SBX__PRIVATE int sbx__http_has_token(const char *s, size_t n, const char *lower)
{
    size_t i = 0;
    while (i < n) {
        size_t b, t;
        while (i < n && (s[i] == ' ' || s[i] == '\t' || s[i] == ',')) i++;
        b = i;
        while (i < n && s[i] != ',') i++;
        t = i;
        while (t > b && (s[t - 1] == ' ' || s[t - 1] == '\t')) t--;
        if (t > b && sbx__http_ieq(s + b, t - b, lower)) return 1;
    }
    return 0;
}

/* ---- response head parser ----------------------------------------------- */

#define SBX__HTTP_MORE() \
    return (len >= (size_t)SBX_MAX_HEADER_BYTES ? SBX__HTTP_TOO_LONG : SBX__HTTP_INCOMPLETE)
#define SBX__HTTP_BAD(w) \
    do { *why = (w); return SBX__HTTP_INVALID; } while (0)
/* At buf[i] == CR or LF: step over CRLF or a lone LF (RFC 9112 2.2). */
#define SBX__HTTP_EOL()                                      \
    do {                                                     \
        if (buf[i] == '\r') {                                \
            if (i + 1 >= lim) SBX__HTTP_MORE();              \
            if (buf[i + 1] != '\n') SBX__HTTP_BAD("bare CR in the response head"); \
            i += 2;                                          \
        } else {                                             \
            i += 1;                                          \
        }                                                    \
    } while (0)

/* Parse a response head (status line, header fields, empty line) without
   allocating. Views point into buf. Strict: HTTP/1.0 or 1.1 only, status
   100-599, field names are tokens with no blank before the colon, obs-fold
   and control characters are refused. Every proper prefix of a valid head is
   SBX__HTTP_INCOMPLETE; bytes past SBX_MAX_HEADER_BYTES are never read. */
SBX__PRIVATE int sbx__http_parse_head(const char *buf, size_t len, int *minor, int *status,
                                      const char **reason, size_t *reason_len,
                                      sbx__http_hdr *hdr, size_t *nhdr, const char **why)
{
    static const char proto[] = "HTTP/1.";
    const char *ignored;
    size_t i, lim = len, cap = *nhdr, n = 0, rs, re;
    int k, st = 0;
    if (!why) why = &ignored;
    *why = NULL;
    *nhdr = 0;
    if (lim > (size_t)SBX_MAX_HEADER_BYTES) lim = (size_t)SBX_MAX_HEADER_BYTES;
    for (i = 0; i < 7; i++) {
        if (i >= lim) SBX__HTTP_MORE();
        if (buf[i] != proto[i]) SBX__HTTP_BAD("bad status line (no HTTP/1.x version)");
    }
    if (i >= lim) SBX__HTTP_MORE();
    if (buf[i] != '0' && buf[i] != '1') SBX__HTTP_BAD("unsupported HTTP version (only 1.0 and 1.1)");
    *minor = buf[i] - '0';
    i++;
    if (i >= lim) SBX__HTTP_MORE();
    if (buf[i] != ' ') SBX__HTTP_BAD("bad status line (no space after the version)");
    i++;
    for (k = 0; k < 3; k++, i++) {
        if (i >= lim) SBX__HTTP_MORE();
        if (buf[i] < '0' || buf[i] > '9') SBX__HTTP_BAD("bad status code");
        st = st * 10 + (buf[i] - '0');
    }
    if (st < 100 || st > 599) SBX__HTTP_BAD("bad status code (not 100-599)");
    if (i >= lim) SBX__HTTP_MORE();
    if (buf[i] == ' ') {
        i++;
        rs = i;
        for (;;) {
            if (i >= lim) SBX__HTTP_MORE();
            if (buf[i] == '\r' || buf[i] == '\n') break;
            if (!sbx__http_vchar((unsigned char)buf[i])) SBX__HTTP_BAD("control character in the reason phrase");
            i++;
        }
        re = i;
    } else if (buf[i] == '\r' || buf[i] == '\n') {
        rs = re = i;
    } else {
        SBX__HTTP_BAD("bad status code");
    }
    SBX__HTTP_EOL();
    *status = st;
    *reason = buf + rs;
    *reason_len = re - rs;
    for (;;) {
        size_t ns, ne, vs, ve;
        if (i >= lim) SBX__HTTP_MORE();
        if (buf[i] == '\r' || buf[i] == '\n') {
            SBX__HTTP_EOL();
            *nhdr = n;
            return (int)i;
        }
        if (buf[i] == ' ' || buf[i] == '\t') SBX__HTTP_BAD("obsolete line folding (obs-fold) in a header field");
        ns = i;
        for (;;) {
            unsigned char c;
            if (i >= lim) SBX__HTTP_MORE();
            c = (unsigned char)buf[i];
            if (c == ':') break;
            if (!sbx__http_tchar(c)) {
                if (c == ' ' || c == '\t') SBX__HTTP_BAD("whitespace between a header name and the colon");
                if (c == '\r' || c == '\n') SBX__HTTP_BAD("header line without a colon");
                SBX__HTTP_BAD("bad character in a header name");
            }
            i++;
        }
        if (i == ns) SBX__HTTP_BAD("empty header name");
        ne = i++;
        for (;;) {
            if (i >= lim) SBX__HTTP_MORE();
            if (buf[i] != ' ' && buf[i] != '\t') break;
            i++;
        }
        vs = ve = i;
        for (;;) {
            unsigned char c;
            if (i >= lim) SBX__HTTP_MORE();
            c = (unsigned char)buf[i];
            if (c == '\r' || c == '\n') break;
            if (!sbx__http_vchar(c)) SBX__HTTP_BAD("control character in a header value");
            i++;
            if (c != ' ' && c != '\t') ve = i;
        }
        SBX__HTTP_EOL();
        if (n >= cap) {
            *why = "too many header fields";
            *nhdr = n;
            return SBX__HTTP_TOO_MANY;
        }
        hdr[n].name = buf + ns;
        hdr[n].name_len = ne - ns;
        hdr[n].value = buf + vs;
        hdr[n].value_len = ve - vs;
        n++;
    }
}
#undef SBX__HTTP_MORE
#undef SBX__HTTP_BAD
#undef SBX__HTTP_EOL

/* Strict Content-Length: digits only, at most 2^63 - 1. 0 ok, -1 bad. */
SBX__PRIVATE int sbx__http_parse_length(const char *s, size_t n, long long *out)
{
    unsigned long long v = 0;
    size_t i;
    if (n == 0) return -1;
    for (i = 0; i < n; i++) {
        unsigned d;
        if (s[i] < '0' || s[i] > '9') return -1;
        d = (unsigned)(s[i] - '0');
        if (v > (0x7fffffffffffffffull - d) / 10) return -1;
        v = v * 10 + d;
    }
    *out = (long long)v;
    return 0;
}

/* ---- chunked transfer coding: in-place decoder ------------------------- */

enum {
    SBX__CH_SIZE, SBX__CH_SIZE_WS, SBX__CH_EXT, SBX__CH_SIZE_LF, SBX__CH_DATA, SBX__CH_DATA_CR,
    SBX__CH_DATA_LF, SBX__CH_TRAILER_START, SBX__CH_TRAILER, SBX__CH_TRAILER_LF, SBX__CH_END_LF,
    SBX__CH_DONE
};

typedef struct sbx__chunked {
    int state;
    int ndigits;                /* hex digits of the current size      */
    unsigned long long left;    /* data bytes left in the current chunk */
    size_t line;                /* bytes of the extension line          */
    size_t trailer;             /* bytes of trailer fields so far       */
    const char *why;            /* the rule broken, after -1            */
} sbx__chunked;

SBX__PRIVATE void sbx__chunked_init(sbx__chunked *d)
{
    memset(d, 0, sizeof *d);
    d->state = SBX__CH_SIZE;
}

#define SBX__CH_FAIL(w) do { d->why = (w); *out = o; *used = i; return -1; } while (0)

/* Decode buf[0..len) in place (works on any split, even one byte at a time).
   Chunk extensions are skipped, trailer fields are consumed and dropped,
   sizes are strict hex (no sign, no blank before, overflow checked). */
SBX__PRIVATE int sbx__chunked_decode(sbx__chunked *d, char *buf, size_t len, size_t *out, size_t *used)
{
    size_t i = 0, o = 0;
    while (i < len && d->state != SBX__CH_DONE) {
        unsigned char c = (unsigned char)buf[i];
        switch (d->state) {
        case SBX__CH_SIZE: {
            int v = -1;
            if (c >= '0' && c <= '9') v = c - '0';
            else if (c >= 'a' && c <= 'f') v = c - 'a' + 10;
            else if (c >= 'A' && c <= 'F') v = c - 'A' + 10;
            if (v >= 0) {
                if (d->left > (0x7fffffffffffffffull >> 4)) SBX__CH_FAIL("chunk size overflows");
                d->left = d->left * 16 + (unsigned)v;
                d->ndigits++;
                i++;
                break;
            }
            if (d->ndigits == 0) SBX__CH_FAIL("bad chunk size (not a hex number)");
            if (c == ' ' || c == '\t') d->state = SBX__CH_SIZE_WS;
            else if (c == ';') { d->state = SBX__CH_EXT; d->line = 0; }
            else if (c == '\r') d->state = SBX__CH_SIZE_LF;
            else if (c == '\n') goto size_done;
            else SBX__CH_FAIL("bad chunk size (not a hex number)");
            i++;
            break;
        }
        case SBX__CH_SIZE_WS:
            if (c == ';') { d->state = SBX__CH_EXT; d->line = 0; }
            else if (c == '\r') d->state = SBX__CH_SIZE_LF;
            else if (c == '\n') goto size_done;
            else if (c != ' ' && c != '\t') SBX__CH_FAIL("bad chunk size (junk after the size)");
            i++;
            break;
        case SBX__CH_EXT:
            if (c == '\r') d->state = SBX__CH_SIZE_LF;
            else if (c == '\n') goto size_done;
            else if (!sbx__http_vchar(c)) SBX__CH_FAIL("control character in a chunk extension");
            else if (++d->line > SBX__HTTP_CHUNK_EXT_MAX) SBX__CH_FAIL("chunk extension too long");
            i++;
            break;
        case SBX__CH_SIZE_LF:
            if (c != '\n') SBX__CH_FAIL("bare CR in a chunk size line");
        size_done:
            i++;
            d->ndigits = 0;
            if (d->left == 0) {
                d->state = SBX__CH_TRAILER_START;
                d->trailer = 0;
            } else {
                d->state = SBX__CH_DATA;
            }
            break;
        case SBX__CH_DATA: {
            size_t n = len - i;
            if ((unsigned long long)n > d->left) n = (size_t)d->left;
            if (o != i) memmove(buf + o, buf + i, n);
            o += n;
            i += n;
            d->left -= n;
            if (d->left == 0) d->state = SBX__CH_DATA_CR;
            break;
        }
        case SBX__CH_DATA_CR:
            if (c == '\r') d->state = SBX__CH_DATA_LF;
            else if (c == '\n') d->state = SBX__CH_SIZE;
            else SBX__CH_FAIL("missing CRLF after chunk data");
            i++;
            break;
        case SBX__CH_DATA_LF:
            if (c != '\n') SBX__CH_FAIL("missing CRLF after chunk data");
            d->state = SBX__CH_SIZE;
            i++;
            break;
        case SBX__CH_TRAILER_START:
            if (c == '\r') d->state = SBX__CH_END_LF;
            else if (c == '\n') d->state = SBX__CH_DONE;
            else if (c == ' ' || c == '\t') SBX__CH_FAIL("obsolete line folding (obs-fold) in a trailer");
            else { d->state = SBX__CH_TRAILER; continue; }
            i++;
            break;
        case SBX__CH_TRAILER:
            if (c == '\r') d->state = SBX__CH_TRAILER_LF;
            else if (c == '\n') d->state = SBX__CH_TRAILER_START;
            else if (!sbx__http_vchar(c)) SBX__CH_FAIL("control character in a trailer field");
            if (++d->trailer > (size_t)SBX_MAX_HEADER_BYTES) SBX__CH_FAIL("trailer fields too long");
            i++;
            break;
        case SBX__CH_TRAILER_LF:
            if (c != '\n') SBX__CH_FAIL("bare CR in a trailer field");
            d->state = SBX__CH_TRAILER_START;
            i++;
            break;
        case SBX__CH_END_LF:
            if (c != '\n') SBX__CH_FAIL("bare CR after the last chunk");
            d->state = SBX__CH_DONE;
            i++;
            break;
        default:
            SBX__CH_FAIL("chunked decoder in a bad state");
        }
    }
    *out = o;
    *used = i;
    return d->state == SBX__CH_DONE ? 1 : 0;
}
#undef SBX__CH_FAIL

/* ---- line splitter ------------------------------------------------------ */

typedef struct sbx__linesplit {
    size_t len;  /* bytes of the current line seen so far */
    size_t cap;  /* the most bytes a line may have before its "\n" */
} sbx__linesplit;

SBX__PRIVATE int sbx__linesplit_feed(sbx__linesplit *ls, const char *p, size_t n, size_t *used)
{
    const char *nl = n ? (const char *)memchr(p, '\n', n) : NULL;
    size_t k = nl ? (size_t)(nl - p) : n;
    *used = 0;
    if (k > ls->cap || ls->len > ls->cap - k) return -1;
    if (nl) {
        ls->len = 0;
        *used = k + 1;
        return 1;
    }
    ls->len += n;
    *used = n;
    return 0;
}

/* Move the current line's bytes from p[0..n) into `line`: 1 line complete
   (one trailing "\r" removed), 0 all taken, -1 too long, -2 no memory. */
SBX__PRIVATE int sbx__http_line_take(sbx__linesplit *ls, sbx__buf *line, const char *p, size_t n, size_t *used)
{
    int r = sbx__linesplit_feed(ls, p, n, used);
    size_t k;
    if (r < 0) return -1;
    k = r == 1 ? *used - 1 : *used;
    if (sbx__buf_append(line, p, k) != 0) return -2;
    if (r == 1 && line->len > 0 && line->data[line->len - 1] == '\r') line->data[--line->len] = '\0';
    return r;
}

/* ---- error text of an HTTP error response ------------------------------ */

SBX__PRIVATE size_t sbx__http_skip_ws(const char *s, size_t i, size_t n)
{
    while (i < n && (s[i] == ' ' || s[i] == '\t' || s[i] == '\r' || s[i] == '\n')) i++;
    return i;
}

/* s[i] == '"': index just past the closing quote, or 0 if unterminated. */
SBX__PRIVATE size_t sbx__http_skip_jstr(const char *s, size_t i, size_t n)
{
    for (i++; i < n; i++) {
        if (s[i] == '\\') { i++; continue; }
        if (s[i] == '"') return i + 1;
    }
    return 0;
}

/* Skip one JSON value of any kind (not validated); 0 on malformed input. */
SBX__PRIVATE size_t sbx__http_skip_jval(const char *s, size_t i, size_t n)
{
    int depth = 0;
    while (i < n) {
        char c = s[i];
        if (c == '"') {
            i = sbx__http_skip_jstr(s, i, n);
            if (i == 0) return 0;
            if (depth == 0) return i;
            continue;
        }
        if (c == '{' || c == '[') depth++;
        else if (c == '}' || c == ']') {
            if (depth == 0) return i;  /* end of the enclosing object */
            if (--depth == 0) return i + 1;
        } else if (depth == 0 && (c == ',' || c == ' ' || c == '\t' || c == '\r' || c == '\n')) {
            return i;
        }
        i++;
    }
    return depth == 0 ? i : 0;
}

/* Append one code point as UTF-8 (replacement '?' for surrogates). */
SBX__PRIVATE size_t sbx__http_utf8(unsigned long cp, char *o)
{
    if (cp < 0x80) { o[0] = (char)cp; return 1; }
    if (cp < 0x800) { o[0] = (char)(0xc0 | (cp >> 6)); o[1] = (char)(0x80 | (cp & 0x3f)); return 2; }
    if (cp >= 0xd800 && cp <= 0xdfff) { o[0] = '?'; return 1; }
    if (cp < 0x10000) {
        o[0] = (char)(0xe0 | (cp >> 12)); o[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
        o[2] = (char)(0x80 | (cp & 0x3f));
        return 3;
    }
    o[0] = (char)(0xf0 | (cp >> 18)); o[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
    o[2] = (char)(0x80 | ((cp >> 6) & 0x3f)); o[3] = (char)(0x80 | (cp & 0x3f));
    return 4;
}

/* Length of a valid UTF-8 sequence at s[0..n), or 0 if invalid there. */
SBX__PRIVATE size_t sbx__http_utf8_len(const unsigned char *s, size_t n)
{
    size_t k, need;
    unsigned long cp;
    if (s[0] < 0x80) return 1;
    if (s[0] >= 0xc2 && s[0] <= 0xdf) { need = 2; cp = s[0] & 0x1fu; }
    else if (s[0] >= 0xe0 && s[0] <= 0xef) { need = 3; cp = s[0] & 0x0fu; }
    else if (s[0] >= 0xf0 && s[0] <= 0xf4) { need = 4; cp = s[0] & 0x07u; }
    else return 0;
    if (n < need) return 0;
    for (k = 1; k < need; k++) {
        if ((s[k] & 0xc0) != 0x80) return 0;
        cp = (cp << 6) | (s[k] & 0x3fu);
    }
    if ((need == 3 && cp < 0x800) || (need == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
        (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return need;
}

SBX__PRIVATE int sbx__http_hex4(const char *s, unsigned long *v)
{
    int k;
    *v = 0;
    for (k = 0; k < 4; k++) {
        char c = s[k];
        int d = (c >= '0' && c <= '9') ? c - '0' : (c >= 'a' && c <= 'f') ? c - 'a' + 10
              : (c >= 'A' && c <= 'F') ? c - 'A' + 10 : -1;
        if (d < 0) return -1;
        *v = *v * 16 + (unsigned long)d;
    }
    return 0;
}

/* Append the JSON string s[i..end) (inside the quotes) to out[*o..cap-1). */
SBX__PRIVATE void sbx__http_put_jstr(const char *s, size_t i, size_t end, char *out, size_t cap, size_t *o)
{
    while (i < end) {
        char tmp[4];
        size_t tn = 1, k;
        unsigned char c = (unsigned char)s[i];
        if (c == '\\' && i + 1 < end) {
            char x = s[i + 1];
            i += 2;
            switch (x) {
            case 'n': case 'r': case 't': case 'b': case 'f': tmp[0] = ' '; break;
            case 'u': {
                unsigned long cp, lo;
                if (i + 4 > end || sbx__http_hex4(s + i, &cp) != 0) { tmp[0] = '?'; break; }
                i += 4;
                if (cp >= 0xd800 && cp <= 0xdbff && i + 6 <= end && s[i] == '\\' && s[i + 1] == 'u' &&
                    sbx__http_hex4(s + i + 2, &lo) == 0 && lo >= 0xdc00 && lo <= 0xdfff) {
                    cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
                    i += 6;
                }
                if (cp < 0x20 || cp == 0x7f) tmp[0] = ' ';
                else tn = sbx__http_utf8(cp, tmp);
                break;
            }
            default: tmp[0] = (x >= 0x20 && x < 0x7f) ? x : '?'; break;  /* invalid escapes too */
            }
        } else {
            tn = sbx__http_utf8_len((const unsigned char *)s + i, end - i);
            if (tn == 0) { tmp[0] = '?'; tn = 1; i++; }
            else if (c < 0x20 || c == 0x7f) { tmp[0] = ' '; i++; }
            else { memcpy(tmp, s + i, tn); i += tn; }
        }
        if (*o + tn >= cap) return;  /* whole characters only */
        for (k = 0; k < tn; k++) out[(*o)++] = tmp[k];
    }
}

/* Find the top-level string member `key` of the JSON object in s[0..n):
   sets [*vs, *ve) to the inside of its quotes. 0 found, -1 not. */
SBX__PRIVATE int sbx__http_json_member(const char *s, size_t n, const char *key, size_t *vs, size_t *ve)
{
    size_t i = sbx__http_skip_ws(s, 0, n), klen = strlen(key);
    if (i >= n || s[i] != '{') return -1;
    i++;
    for (;;) {
        size_t ks, ke;
        i = sbx__http_skip_ws(s, i, n);
        if (i >= n || s[i] != '"') return -1;
        ks = i + 1;
        i = sbx__http_skip_jstr(s, i, n);
        if (i == 0) return -1;
        ke = i - 1;
        i = sbx__http_skip_ws(s, i, n);
        if (i >= n || s[i] != ':') return -1;
        i = sbx__http_skip_ws(s, i + 1, n);
        if (i >= n) return -1;
        if (s[i] == '"' && ke - ks == klen && memcmp(s + ks, key, klen) == 0) {
            size_t e = sbx__http_skip_jstr(s, i, n);
            if (e == 0) return -1;
            *vs = i + 1;
            *ve = e - 1;
            return 0;
        }
        i = sbx__http_skip_jval(s, i, n);
        if (i == 0) return -1;
        i = sbx__http_skip_ws(s, i, n);
        if (i >= n || s[i] != ',') return -1;
        i++;
    }
}

SBX__PRIVATE size_t sbx__http_error_text(int status, const char *body, size_t len, char *out, size_t cap)
{
    size_t o, o0, vs, ve, i, lim;
    int n;
    if (!out || cap == 0) return 0;
    n = snprintf(out, cap, "HTTP %d", status);
    if (n < 0) { out[0] = '\0'; return 0; }
    o = (size_t)n < cap ? (size_t)n : cap - 1;
    if (!body || len == 0 || o + 3 >= cap) return o;
    memcpy(out + o, ": ", 2);
    o += 2;
    o0 = o;
    if (sbx__http_json_member(body, len, "message", &vs, &ve) == 0 ||
        sbx__http_json_member(body, len, "detail", &vs, &ve) == 0) {
        sbx__http_put_jstr(body, vs, ve, out, cap, &o);
    } else {
        lim = len > 300 ? 300 : len;
        for (i = 0; i < lim;) {
            size_t k = sbx__http_utf8_len((const unsigned char *)body + i, lim - i);
            unsigned char c = (unsigned char)body[i];
            if (k == 0) {
                k = 1;
                c = '?';
            } else if (c < 0x20 || c == 0x7f) c = ' ';
            if (o + k >= cap) break;
            if (k == 1) out[o++] = (char)c;
            else { memcpy(out + o, body + i, k); o += k; }
            i += k;
        }
        if (len > lim && o + 3 < cap) { memcpy(out + o, "...", 3); o += 3; }
    }
    while (o > o0 && out[o - 1] == ' ') o--;
    if (o == o0) o -= 2;  /* nothing to say after "HTTP 404" */
    out[o] = '\0';
    return o;
}

/* ---- endpoints ---------------------------------------------------------- */

typedef union sbx__sockaddr {
    struct sockaddr sa;
    struct sockaddr_in in4;
    struct sockaddr_in6 in6;
    struct sockaddr_un un;
    struct sockaddr_storage ss;
} sbx__sockaddr;

typedef struct sbx__endpoint {
    int is_unix;
    int naddr;                             /* addresses to try, in order */
    sbx__sockaddr addr[SBX__HTTP_MAX_ADDRS];
    socklen_t addrlen[SBX__HTTP_MAX_ADDRS];
    char name[300];                        /* for messages: "127.0.0.1:8001", "unix:/p" */
    char host[300];                        /* Host header value */
    char prefix[512];                      /* "" or "/k8s" (no trailing slash) */
} sbx__endpoint;

SBX__PRIVATE int sbx__endpoint_parse(const char *url, sbx__endpoint *ep, sbx_error *e)
{
    const char *p, *hs, *he, *path;
    char host[256], portstr[8];
    unsigned long port = 80;
    size_t hl, pl, i;
    int v6 = 0;
    memset(ep, 0, sizeof *ep);
    if (!url || !*url) return sbx__fail(e, SBX_ERR_INVALID_ARG, "API URL is empty");
    if (strncmp(url, "unix:", 5) == 0) {
        const char *sp = url + 5;
        size_t n = strlen(sp);
        if (n == 0) return sbx__fail(e, SBX_ERR_INVALID_ARG, "API URL \"%s\": no socket path after unix:", url);
        if (n >= sizeof ep->addr[0].un.sun_path)
            return sbx__fail(e, SBX_ERR_INVALID_ARG, "API URL \"%.200s\": unix socket path longer than %u bytes",
                             url, (unsigned)sizeof ep->addr[0].un.sun_path - 1);
        ep->is_unix = 1;
        ep->naddr = 1;
        ep->addr[0].un.sun_family = AF_UNIX;
        memcpy(ep->addr[0].un.sun_path, sp, n + 1);
        ep->addrlen[0] = (socklen_t)sizeof(struct sockaddr_un);
        snprintf(ep->name, sizeof ep->name, "unix:%s", sp);
        strcpy(ep->host, "localhost");
        return SBX_OK;
    }
    if (sbx__http_ieq(url, 8, "https://"))
        return sbx__fail(e, SBX_ERR_INVALID_ARG,
                         "API URL \"%.200s\": https is not supported (sandbox.h has no TLS); "
                         "use kubectl proxy, which serves plain http on 127.0.0.1", url);
    if (!sbx__http_ieq(url, 7, "http://"))
        return sbx__fail(e, SBX_ERR_INVALID_ARG, "API URL \"%.200s\" must start with http:// or unix:", url);
    p = url + 7;
    if (*p == '[') {
        hs = p + 1;
        he = strchr(hs, ']');
        if (!he) return sbx__fail(e, SBX_ERR_INVALID_ARG, "API URL \"%.200s\": unterminated [IPv6] address", url);
        p = he + 1;
        v6 = 1;
    } else {
        hs = p;
        while (*p && *p != ':' && *p != '/') p++;
        he = p;
    }
    hl = (size_t)(he - hs);
    if (hl == 0) return sbx__fail(e, SBX_ERR_INVALID_ARG, "API URL \"%.200s\" has no host", url);
    if (hl >= sizeof host) return sbx__fail(e, SBX_ERR_INVALID_ARG, "API URL \"%.200s\": host name too long", url);
    memcpy(host, hs, hl);
    host[hl] = '\0';
    if (*p == ':') {
        p++;
        port = 0;
        for (i = 0; p[i] >= '0' && p[i] <= '9' && i < 6; i++) port = port * 10 + (unsigned long)(p[i] - '0');
        if (i == 0 || i > 5 || port == 0 || port > 65535 || (p[i] && p[i] != '/'))
            return sbx__fail(e, SBX_ERR_INVALID_ARG, "API URL \"%.200s\": bad port (1-65535)", url);
        p += i;
    }
    if (*p && *p != '/')
        return sbx__fail(e, SBX_ERR_INVALID_ARG, "API URL \"%.200s\": unexpected '%c' after the host", url, *p);
    path = p;
    pl = strlen(path);
    for (i = 0; i < pl; i++) {
        unsigned char c = (unsigned char)path[i];
        if (c <= 0x20 || c >= 0x7f || c == '?' || c == '#')
            return sbx__fail(e, SBX_ERR_INVALID_ARG,
                             "API URL \"%.200s\": the path prefix may not contain blanks, control "
                             "characters, non-ASCII bytes, '?' or '#'", url);
    }
    while (pl > 0 && path[pl - 1] == '/') pl--;
    if (pl >= sizeof ep->prefix)
        return sbx__fail(e, SBX_ERR_INVALID_ARG, "API URL \"%.200s\": path prefix too long", url);
    memcpy(ep->prefix, path, pl);
    ep->prefix[pl] = '\0';
    snprintf(portstr, sizeof portstr, "%lu", port);
    if (v6) {
        char canon[INET6_ADDRSTRLEN];
        if (inet_pton(AF_INET6, host, &ep->addr[0].in6.sin6_addr) != 1)
            return sbx__fail(e, SBX_ERR_INVALID_ARG, "API URL \"%.200s\": \"%s\" is not an IPv6 address", url, host);
        ep->addr[0].in6.sin6_family = AF_INET6;
        ep->addr[0].in6.sin6_port = htons((unsigned short)port);
        ep->addrlen[0] = (socklen_t)sizeof(struct sockaddr_in6);
        ep->naddr = 1;
        if (!inet_ntop(AF_INET6, &ep->addr[0].in6.sin6_addr, canon, sizeof canon)) strcpy(canon, host);
        snprintf(ep->name, sizeof ep->name, "[%s]:%s", canon, portstr);
    } else if (inet_pton(AF_INET, host, &ep->addr[0].in4.sin_addr) == 1) {
        ep->addr[0].in4.sin_family = AF_INET;
        ep->addr[0].in4.sin_port = htons((unsigned short)port);
        ep->addrlen[0] = (socklen_t)sizeof(struct sockaddr_in);
        ep->naddr = 1;
        snprintf(ep->name, sizeof ep->name, "%s:%s", host, portstr);
    } else {
        struct addrinfo hints, *res = NULL, *ai;
        int rc;
        for (i = 0; i < hl; i++) {
            char c = host[i];
            if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '.'))
                return sbx__fail(e, SBX_ERR_INVALID_ARG, "API URL \"%.200s\": bad host name \"%s\"", url, host);
        }
        memset(&hints, 0, sizeof hints);
        hints.ai_family = AF_UNSPEC;
        hints.ai_socktype = SOCK_STREAM;
        hints.ai_flags = AI_NUMERICSERV;
        rc = getaddrinfo(host, portstr, &hints, &res);
        if (rc != 0)
            return sbx__fail(e, SBX_ERR_CONNECT, "resolve %s: %s", host,
                             rc == EAI_SYSTEM ? strerror(errno) : gai_strerror(rc));
        for (ai = res; ai && ep->naddr < SBX__HTTP_MAX_ADDRS; ai = ai->ai_next) {
            if ((ai->ai_family != AF_INET && ai->ai_family != AF_INET6) || ai->ai_addrlen > sizeof(sbx__sockaddr))
                continue;
            memcpy(&ep->addr[ep->naddr], ai->ai_addr, ai->ai_addrlen);
            ep->addrlen[ep->naddr] = (socklen_t)ai->ai_addrlen;
            ep->naddr++;
        }
        freeaddrinfo(res);
        if (ep->naddr == 0) return sbx__fail(e, SBX_ERR_CONNECT, "resolve %s: no IPv4 or IPv6 address", host);
        snprintf(ep->name, sizeof ep->name, "%s:%s", host, portstr);
    }
    memcpy(ep->host, ep->name, sizeof ep->host);
    return SBX_OK;
}

/* ---- connections -------------------------------------------------------- */

typedef struct sbx__conn {
    sbx__endpoint ep;
    sbx_allocator a;
    int fd;                 /* -1: not connected */
    int busy;               /* a response body is still unread */
    unsigned long seq;      /* exchange number; a response is current while resp->seq == seq */
    unsigned long served;   /* exchanges completed on the open socket */
    char *buf;              /* SBX__HTTP_BUF_SIZE bytes */
    char *head;             /* copy of the last response head (resp views point here) */
    size_t headcap;
    size_t rpos, rlen;      /* received, not yet parsed: buf[rpos, rlen) */
    size_t bpos, bend;      /* decoded body not yet delivered: buf[bpos, bend) */
} sbx__conn;

enum { SBX__BODY_NONE, SBX__BODY_LENGTH, SBX__BODY_CHUNKED, SBX__BODY_CLOSE };

typedef struct sbx__http_req {
    const char *method;             /* "GET", "POST", ...                          */
    const char *target;             /* "/path?query" (the endpoint prefix goes first) */
    const char *headers;            /* NULL or "Name: value\r\n" lines             */
    const void *body;               /* memory body (NULL when body_len is 0)       */
    size_t body_len;
    int body_fd;                    /* >= 0: read the body from here; -1 none      */
    long long body_fd_len;          /* bytes to send from body_fd; -1: chunked     */
    const char *multipart_name;     /* non-NULL: multipart/form-data, one file part */
    const char *multipart_filename;
    int idempotent;                 /* may be re-sent once (see above)             */
} sbx__http_req;

typedef struct sbx__http_resp {
    int status;                     /* 100-599                                     */
    int minor;                      /* 0: HTTP/1.0, 1: HTTP/1.1                    */
    const char *reason;             /* NUL-terminated, may be ""                   */
    sbx__http_hdr hdr[SBX_MAX_HEADERS];
    size_t nhdr;
    long long content_length;       /* -1 when not given                          */
    int chunked;                    /* Transfer-Encoding: chunked                  */
    int keep_alive;                 /* connection reusable once the body is read   */
    int body_done;                  /* the whole body has been delivered           */
    unsigned long long body_read;   /* body bytes delivered so far                 */
    /* private */
    int mode;
    unsigned long long left;
    sbx__chunked ch;
    unsigned long seq;
} sbx__http_resp;

SBX__PRIVATE void sbx__http_req_init(sbx__http_req *r)
{
    memset(r, 0, sizeof *r);
    r->method = "GET";
    r->target = "/";
    r->body_fd = -1;
    r->body_fd_len = -1;
}

SBX__PRIVATE void sbx__conn_init(sbx__conn *c, const sbx__endpoint *ep, const sbx_allocator *a)
{
    memset(c, 0, sizeof *c);
    c->ep = *ep;
    c->a = sbx__allocator(a);
    c->fd = -1;
}

SBX__PRIVATE void sbx__conn_close(sbx__conn *c)
{
    if (c->fd >= 0) close(c->fd);
    c->fd = -1;
    c->busy = 0;
    c->served = 0;
    c->rpos = c->rlen = c->bpos = c->bend = 0;
}

SBX__PRIVATE void sbx__conn_free(sbx__conn *c)
{
    sbx__conn_close(c);
    sbx__free(&c->a, c->buf);
    sbx__free(&c->a, c->head);
    c->buf = c->head = NULL;
    c->headcap = 0;
}

/* A response owns no memory (its views live in the connection until the next
   send); this only clears it, and is safe on a zeroed or already-cleared one. */
SBX__PRIVATE void sbx__http_resp_free(sbx__http_resp *r)
{
    if (!r) return;
    r->nhdr = 0;
    r->reason = "";
}

/* First header named `name` (case-insensitive); NULL if absent. */
SBX__PRIVATE const char *sbx__http_header(const sbx__http_resp *r, const char *name, size_t *len)
{
    size_t i, n = strlen(name);
    for (i = 0; i < r->nhdr; i++) {
        size_t k;
        if (r->hdr[i].name_len != n) continue;
        for (k = 0; k < n; k++) {
            int x = (unsigned char)r->hdr[i].name[k], y = (unsigned char)name[k];
            if (x >= 'A' && x <= 'Z') x += 32;
            if (y >= 'A' && y <= 'Z') y += 32;
            if (x != y) break;
        }
        if (k == n) {
            if (len) *len = r->hdr[i].value_len;
            return r->hdr[i].value;
        }
    }
    if (len) *len = 0;
    return NULL;
}

/* recv with a deadline: > 0 bytes, 0 EOF, -1 error (errno), -2 deadline passed. */
SBX__PRIVATE long sbx__http_recv(int fd, char *p, size_t n, long long deadline)
{
    for (;;) {
        ssize_t r;
        int pr;
        if (sbx__now_ms() >= deadline) return -2;
        r = recv(fd, p, n, 0);
        if (r >= 0) return (long)r;
        if (errno == EINTR) continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK) return -1;
        pr = sbx__poll1(fd, POLLIN, deadline);
        if (pr == 0) return -2;
        if (pr < 0) return -1;
    }
}

/* send everything with a deadline: 0 done, -1 error (errno), -2 deadline passed. */
SBX__PRIVATE int sbx__http_send_all(int fd, const char *p, size_t n, long long deadline)
{
    while (n > 0) {
        ssize_t r;
        int pr;
        if (sbx__now_ms() >= deadline) return -2;
        r = send(fd, p, n, SBX__SEND_FLAGS);
        if (r > 0) {
            p += r;
            n -= (size_t)r;
            continue;
        }
        if (r < 0 && errno == EINTR) continue;
        if (r < 0 && errno != EAGAIN && errno != EWOULDBLOCK) return -1;
        pr = sbx__poll1(fd, POLLOUT, deadline);
        if (pr == 0) return -2;
        if (pr < 0) return -1;
    }
    return 0;
}

/* read from a caller's descriptor, blocking or not: > 0, 0 EOF, -1 error
   (errno), -2 deadline. poll() first, so a blocking pipe cannot hang us. */
SBX__PRIVATE long sbx__http_fd_read(int fd, char *p, size_t n, long long deadline)
{
    for (;;) {
        ssize_t r;
        int pr;
        if (sbx__now_ms() >= deadline) return -2;
        pr = sbx__poll1(fd, POLLIN, deadline);
        if (pr == 0) return -2;
        if (pr < 0) return -1;
        r = read(fd, p, n);
        if (r >= 0) return (long)r;
        if (errno != EINTR && errno != EAGAIN && errno != EWOULDBLOCK) return -1;
    }
}

/* How to write to a caller's descriptor without blocking past a deadline. */
enum { SBX__OUT_FILE, SBX__OUT_NONBLOCK, SBX__OUT_BLOCKING, SBX__OUT_SOCKET };

SBX__PRIVATE int sbx__http_out_kind(int fd)
{
    struct stat st;
    int fl;
    if (fstat(fd, &st) != 0 || S_ISREG(st.st_mode) || S_ISBLK(st.st_mode)) return SBX__OUT_FILE;
#ifdef MSG_NOSIGNAL
    if (S_ISSOCK(st.st_mode)) return SBX__OUT_SOCKET;
#endif
    fl = fcntl(fd, F_GETFL);
    return fl >= 0 && (fl & O_NONBLOCK) ? SBX__OUT_NONBLOCK : SBX__OUT_BLOCKING;
}

/* Write all of p to a caller's descriptor: 0, -1 (errno), -2 deadline. A
   blocking pipe gets at most PIPE_BUF bytes per poll() so that no write can
   block; SIGPIPE is the caller's (sbx__http_body_fd) to hold back. */
SBX__PRIVATE int sbx__http_fd_write(int fd, const char *p, size_t n, int kind, long long deadline)
{
    while (n > 0) {
        ssize_t r;
        size_t k = n;
        int pr;
        if (sbx__now_ms() >= deadline) return -2;
        if (kind == SBX__OUT_BLOCKING) {
            pr = sbx__poll1(fd, POLLOUT, deadline);
            if (pr == 0) return -2;
            if (pr < 0) return -1;
            if (k > PIPE_BUF) k = PIPE_BUF;
        }
#ifdef MSG_NOSIGNAL
        if (kind == SBX__OUT_SOCKET) r = send(fd, p, k, MSG_NOSIGNAL);
        else
#endif
            r = write(fd, p, k);
        if (r > 0) {
            p += r;
            n -= (size_t)r;
            continue;
        }
        if (r < 0 && errno == EINTR) continue;
        if (r < 0 && errno != EAGAIN && errno != EWOULDBLOCK) return -1;
        pr = sbx__poll1(fd, POLLOUT, deadline);
        if (pr == 0) return -2;
        if (pr < 0) return -1;
    }
    return 0;
}

SBX__PRIVATE int sbx__http_connect(sbx__conn *c, long long deadline, sbx_error *e)
{
    int k, fd = -1, err = ECONNREFUSED, soerr, one = 1;
    socklen_t sl;
    for (k = 0; k < c->ep.naddr; k++) {
        int type = SOCK_STREAM;
#ifdef SOCK_CLOEXEC
        type |= SOCK_CLOEXEC;
#endif
        fd = socket(c->ep.addr[k].sa.sa_family, type, 0);
        if (fd < 0) return sbx__fail_sys(e, SBX_ERR_SYS, errno, "socket for %s", c->ep.name);
        if (sbx__set_cloexec(fd) != 0 || sbx__set_nonblock(fd, 1) != 0) {
            err = errno;
            close(fd);
            return sbx__fail_sys(e, SBX_ERR_SYS, err, "socket options for %s", c->ep.name);
        }
#if !defined(MSG_NOSIGNAL) && defined(SO_NOSIGPIPE)
        setsockopt(fd, SOL_SOCKET, SO_NOSIGPIPE, &one, sizeof one);
#endif
        if (connect(fd, &c->ep.addr[k].sa, c->ep.addrlen[k]) == 0) goto connected;
        err = errno;
        if (err == EINPROGRESS || err == EINTR) {
            int pr = sbx__poll1(fd, POLLOUT, deadline);
            if (pr == 0) {
                close(fd);
                return sbx__fail(e, SBX_ERR_TIMEOUT, "connect %s: timed out", c->ep.name);
            }
            if (pr < 0) {
                err = errno;
                close(fd);
                return sbx__fail_sys(e, SBX_ERR_SYS, err, "connect %s: poll", c->ep.name);
            }
            soerr = 0;
            sl = (socklen_t)sizeof soerr;
            if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) != 0) soerr = errno;
            if (soerr == 0) goto connected;
            err = soerr;
        }
        close(fd);
        fd = -1;
    }
    return sbx__fail_sys(e, SBX_ERR_CONNECT, err, "connect %s", c->ep.name);
connected:
    if (!c->ep.is_unix) setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    c->fd = fd;
    c->served = 0;
    return SBX_OK;
}

/* Did the server close (or write to) a kept-alive connection while it was idle? */
SBX__PRIVATE int sbx__http_stale(int fd)
{
    struct pollfd pf;
    char b;
    ssize_t r;
    int pr;
    pf.fd = fd;
    pf.events = POLLIN;
    pf.revents = 0;
    do pr = poll(&pf, 1, 0); while (pr < 0 && errno == EINTR);
    if (pr == 0) return 0;
    if (pr < 0) return 1;
    r = recv(fd, &b, 1, MSG_PEEK);
    if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) return 0;
    return 1;  /* EOF, an error, or bytes nobody asked for */
}

/* The exchange is over: keep the socket only if it is clean and kept alive. */
SBX__PRIVATE void sbx__http_finish(sbx__conn *c, sbx__http_resp *r)
{
    r->body_done = 1;
    c->busy = 0;
    if (!r->keep_alive || c->rpos != c->rlen || c->bpos != c->bend) {
        sbx__conn_close(c);
    } else {
        c->served++;
        c->rpos = c->rlen = c->bpos = c->bend = 0;
    }
}

/* ---- requests ------------------------------------------------------------ */

SBX__PRIVATE int sbx__http_check_name(const char *what, const char *s, sbx_error *e)
{
    size_t i, n = strlen(s);
    if (n == 0 || n > SBX__HTTP_NAME_MAX)
        return sbx__fail(e, SBX_ERR_INVALID_ARG, "multipart %s must be 1 to %d bytes", what, SBX__HTTP_NAME_MAX);
    for (i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 || c == 0x7f || c == '"' || c == '\\')
            return sbx__fail(e, SBX_ERR_INVALID_ARG,
                             "multipart %s \"%.100s\" contains a control character, '\"' or '\\' "
                             "(these cannot be sent safely and are refused)", what, s);
    }
    return SBX_OK;
}

/* Validate the request; flags: *close_req when it says Connection: close, *has_ua. */
SBX__PRIVATE int sbx__http_check_req(const sbx__http_req *q, int *close_req, int *has_ua, sbx_error *e)
{
    const char *s;
    size_t i, n;
    *close_req = *has_ua = 0;
    if (!q->method || !*q->method || strlen(q->method) > 32)
        return sbx__fail(e, SBX_ERR_INVALID_ARG, "HTTP method missing or too long");
    for (s = q->method; *s; s++)
        if (!sbx__http_tchar((unsigned char)*s))
            return sbx__fail(e, SBX_ERR_INVALID_ARG, "bad HTTP method \"%.40s\"", q->method);
    if (!q->target || q->target[0] != '/')
        return sbx__fail(e, SBX_ERR_INVALID_ARG, "request target must start with '/'");
    for (s = q->target; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c <= 0x20 || c >= 0x7f || c == '#')
            return sbx__fail(e, SBX_ERR_INVALID_ARG,
                             "request target \"%.100s\" has a byte that must be percent-encoded (0x%02x)",
                             q->target, c);
    }
    s = q->headers ? q->headers : "";
    n = strlen(s);
    for (i = 0; i < n;) {
        size_t ns = i, ne, vs, ve;
        while (i < n && sbx__http_tchar((unsigned char)s[i])) i++;
        ne = i;
        if (ne == ns || i >= n || s[i] != ':')
            return sbx__fail(e, SBX_ERR_INVALID_ARG, "request headers: bad line at byte %lu (want \"Name: value\\r\\n\")",
                             (unsigned long)ns);
        i++;
        while (i < n && (s[i] == ' ' || s[i] == '\t')) i++;
        vs = i;
        while (i < n && s[i] != '\r' && s[i] != '\n') {
            if (!sbx__http_vchar((unsigned char)s[i]))
                return sbx__fail(e, SBX_ERR_INVALID_ARG, "request headers: control character in a value");
            i++;
        }
        ve = i;
        if (i + 1 >= n || s[i] != '\r' || s[i + 1] != '\n')
            return sbx__fail(e, SBX_ERR_INVALID_ARG, "request headers: each line must end with \\r\\n");
        i += 2;
        if (sbx__http_ieq(s + ns, ne - ns, "host") || sbx__http_ieq(s + ns, ne - ns, "content-length") ||
            sbx__http_ieq(s + ns, ne - ns, "transfer-encoding") ||
            (q->multipart_name && sbx__http_ieq(s + ns, ne - ns, "content-type")))
            return sbx__fail(e, SBX_ERR_INVALID_ARG, "request headers: %.*s is set by the HTTP client",
                             (int)(ne - ns), s + ns);
        if (sbx__http_ieq(s + ns, ne - ns, "connection") && sbx__http_has_token(s + vs, ve - vs, "close"))
            *close_req = 1;
        if (sbx__http_ieq(s + ns, ne - ns, "user-agent")) *has_ua = 1;
    }
    if (q->body_len > 0 && !q->body) return sbx__fail(e, SBX_ERR_INVALID_ARG, "request body is NULL but body_len > 0");
    if (q->body_fd >= 0 && q->body_len > 0)
        return sbx__fail(e, SBX_ERR_INVALID_ARG, "request has both a memory body and body_fd");
    if (q->body_fd >= 0 && q->body_fd_len < -1)
        return sbx__fail(e, SBX_ERR_INVALID_ARG, "body_fd_len must be >= 0, or -1 for unknown");
    if (q->multipart_name || q->multipart_filename) {
        if (!q->multipart_name || !q->multipart_filename)
            return sbx__fail(e, SBX_ERR_INVALID_ARG, "multipart needs both a field name and a file name");
        if (sbx__http_check_name("field name", q->multipart_name, e) != SBX_OK) return SBX_ERR_INVALID_ARG;
        if (sbx__http_check_name("file name", q->multipart_filename, e) != SBX_OK) return SBX_ERR_INVALID_ARG;
    }
    return SBX_OK;
}

/* The parts of a request that are built once and re-sent on a retry. */
typedef struct sbx__http_out {
    sbx__buf head;            /* request head, then whatever goes out with it */
    char tail[160];           /* multipart close delimiter (+ chunked end)     */
    size_t tail_len;
    int chunked;              /* body sent with Transfer-Encoding: chunked      */
    int inline_body;          /* the memory body is already inside `head`       */
} sbx__http_out;

SBX__PRIVATE int sbx__http_build(sbx__conn *c, const sbx__http_req *q, int has_ua, sbx__http_out *o, sbx_error *e)
{
    char boundary[48], pre_hdr[24];
    unsigned char rnd[16];
    const char *m = q->method;
    int has_body = q->body_len > 0 || q->body_fd >= 0 || q->multipart_name != NULL;
    int mp = q->multipart_name != NULL, k;
    size_t pre_len;
    unsigned long long total = 0, inner;
    sbx__buf *b = &o->head;
    o->chunked = q->body_fd >= 0 && q->body_fd_len < 0;
    o->inline_body = 0;
    o->tail_len = 0;
    if (sbx__buf_printf(b, "%s %s%s HTTP/1.1\r\nHost: %s\r\n", m, c->ep.prefix, q->target, c->ep.host) != 0) goto nomem;
    if (!has_ua && sbx__buf_puts(b, "User-Agent: sandbox.h/" SANDBOX_VERSION_STRING "\r\n") != 0) goto nomem;
    if (q->headers && sbx__buf_puts(b, q->headers) != 0) goto nomem;
    if (mp) {
        sbx__random(rnd, sizeof rnd);
        memcpy(boundary, "sandbox-h-", 10);
        for (k = 0; k < 16; k++) {
            boundary[10 + 2 * k] = "0123456789abcdef"[rnd[k] >> 4];
            boundary[11 + 2 * k] = "0123456789abcdef"[rnd[k] & 15];
        }
        boundary[42] = '\0';
        if (sbx__buf_printf(b, "Content-Type: multipart/form-data; boundary=%s\r\n", boundary) != 0) goto nomem;
    }
    inner = q->body_fd >= 0 ? (unsigned long long)q->body_fd_len : (unsigned long long)q->body_len;
    if (mp) {
        /* the part header; its length is known before the head is finished */
        sbx__buf pre;
        sbx__buf_init(&pre, &c->a);
        if (sbx__buf_printf(&pre, "--%s\r\nContent-Disposition: form-data; name=\"%s\"; filename=\"%s\"\r\n"
                                  "Content-Type: application/octet-stream\r\n\r\n",
                            boundary, q->multipart_name, q->multipart_filename) != 0) {
            sbx__buf_free(&pre);
            goto nomem;
        }
        o->tail_len = (size_t)snprintf(o->tail, sizeof o->tail, "\r\n--%s--\r\n", boundary);
        pre_len = pre.len;
        if (!o->chunked) {
            total = (unsigned long long)pre_len + o->tail_len;
            if (inner > 0x7fffffffffffffffull - total) {
                sbx__buf_free(&pre);
                return sbx__fail(e, SBX_ERR_INVALID_ARG, "request body too large");
            }
            total += inner;
        }
        if ((o->chunked ? sbx__buf_puts(b, "Transfer-Encoding: chunked\r\n\r\n")
                        : sbx__buf_printf(b, "Content-Length: %llu\r\n\r\n", total)) != 0) {
            sbx__buf_free(&pre);
            goto nomem;
        }
        if (o->chunked) {
            snprintf(pre_hdr, sizeof pre_hdr, "%lx\r\n", (unsigned long)pre_len);
            if (sbx__buf_puts(b, pre_hdr) != 0) { sbx__buf_free(&pre); goto nomem; }
        }
        k = sbx__buf_append(b, pre.data, pre.len);
        sbx__buf_free(&pre);
        if (k != 0 || (o->chunked && sbx__buf_puts(b, "\r\n") != 0)) goto nomem;
        if (o->chunked) {
            /* the close delimiter becomes the last data chunk, then the end */
            char t[160];
            int tl = snprintf(t, sizeof t, "%lx\r\n%s\r\n0\r\n\r\n", (unsigned long)o->tail_len, o->tail);
            memcpy(o->tail, t, (size_t)tl + 1);
            o->tail_len = (size_t)tl;
        }
    } else if (o->chunked) {
        if (sbx__buf_puts(b, "Transfer-Encoding: chunked\r\n\r\n") != 0) goto nomem;
        memcpy(o->tail, "0\r\n\r\n", 6);
        o->tail_len = 5;
    } else if (has_body) {
        if (sbx__buf_printf(b, "Content-Length: %llu\r\n\r\n", inner) != 0) goto nomem;
    } else if (strcmp(m, "POST") == 0 || strcmp(m, "PUT") == 0 || strcmp(m, "PATCH") == 0) {
        if (sbx__buf_puts(b, "Content-Length: 0\r\n\r\n") != 0) goto nomem;
    } else if (sbx__buf_puts(b, "\r\n") != 0) {
        goto nomem;
    }
    if (q->body_fd < 0 && q->body_len <= SBX__HTTP_MEM_INLINE) {
        if (q->body_len && sbx__buf_append(b, q->body, q->body_len) != 0) goto nomem;
        o->inline_body = 1;
        if (o->tail_len && !o->chunked) {
            if (sbx__buf_append(b, o->tail, o->tail_len) != 0) goto nomem;
            o->tail_len = 0;
        }
    }
    return SBX_OK;
nomem:
    return sbx__fail(e, SBX_ERR_NOMEM, "out of memory building a request for %s", c->ep.name);
}

/* Send the request. *dropped: the server closed the connection (EPIPE/reset). */
SBX__PRIVATE int sbx__http_write_req(sbx__conn *c, const sbx__http_req *q, const sbx__http_out *o,
                                     long long deadline, int *dropped, sbx_error *e)
{
    int r;
    unsigned long long sent = 0;
    const char *what = "request head";
    *dropped = 0;
    r = sbx__http_send_all(c->fd, o->head.data, o->head.len, deadline);
    if (r != 0) goto fail;
    what = "request body";
    if (q->body_fd < 0 && q->body_len > 0 && !o->inline_body) {
        r = sbx__http_send_all(c->fd, (const char *)q->body, q->body_len, deadline);
        if (r != 0) goto fail;
        sent = q->body_len;
    } else if (q->body_fd >= 0) {
        /* staging in the receive buffer (empty now): room for a chunk header */
        const size_t front = 24, room = SBX__HTTP_IO_SIZE - front - 2;
        unsigned long long want = o->chunked ? 0 : (unsigned long long)q->body_fd_len;
        for (;;) {
            size_t ask = room;
            long got;
            char *d = c->buf + front;
            if (!o->chunked) {
                if (sent == want) break;
                if (want - sent < ask) ask = (size_t)(want - sent);
            }
            got = sbx__http_fd_read(q->body_fd, d, ask, deadline);
            if (got == -2) {
                return sbx__fail(e, SBX_ERR_TIMEOUT, "send request to %s: timed out reading the body from descriptor %d "
                                 "after %llu bytes", c->ep.name, q->body_fd, sent);
            }
            if (got < 0)
                return sbx__fail_sys(e, SBX_ERR_SYS, errno, "send request to %s: read the body from descriptor %d",
                                     c->ep.name, q->body_fd);
            if (got == 0) {
                if (o->chunked) break;
                return sbx__fail(e, SBX_ERR_SYS, "send request to %s: descriptor %d ended after %llu of %lld body bytes",
                                 c->ep.name, q->body_fd, sent, q->body_fd_len);
            }
            if (o->chunked) {
                char h[20];
                int hl = snprintf(h, sizeof h, "%lx\r\n", (unsigned long)got);
                memcpy(d - hl, h, (size_t)hl);
                d[got] = '\r';
                d[got + 1] = '\n';
                r = sbx__http_send_all(c->fd, d - hl, (size_t)got + (size_t)hl + 2, deadline);
            } else {
                r = sbx__http_send_all(c->fd, d, (size_t)got, deadline);
            }
            if (r != 0) goto fail;
            sent += (unsigned long long)got;
        }
    }
    if (o->tail_len) {
        r = sbx__http_send_all(c->fd, o->tail, o->tail_len, deadline);
        if (r != 0) goto fail;
    }
    return SBX_OK;
fail:
    if (r == -2) return sbx__fail(e, SBX_ERR_TIMEOUT, "send %s to %s: timed out", what, c->ep.name);
    if (errno == EPIPE || errno == ECONNRESET || errno == ENOTCONN || errno == ECONNABORTED) *dropped = 1;
    return sbx__fail_sys(e, SBX_ERR_CONNECT, errno, "send %s to %s", what, c->ep.name);
}

/* Work out the body framing and keep-alive from a final response head. */
SBX__PRIVATE int sbx__http_framing(sbx__conn *c, sbx__http_resp *r, int head_req, int close_req, sbx_error *e)
{
    size_t i;
    int te = 0, conn_close = close_req, conn_ka = 0;
    long long cl = -1;
    for (i = 0; i < r->nhdr; i++) {
        const sbx__http_hdr *h = &r->hdr[i];
        if (sbx__http_ieq(h->name, h->name_len, "content-length")) {
            long long v;
            if (sbx__http_parse_length(h->value, h->value_len, &v) != 0)
                return sbx__fail(e, SBX_ERR_PROTOCOL, "response from %s: bad Content-Length \"%.40s\"",
                                 c->ep.name, h->value);
            if (cl >= 0 && v != cl)
                return sbx__fail(e, SBX_ERR_PROTOCOL, "response from %s: conflicting Content-Length values %lld and %lld",
                                 c->ep.name, cl, v);
            cl = v;
        } else if (sbx__http_ieq(h->name, h->name_len, "transfer-encoding")) {
            if (te || !sbx__http_ieq(h->value, h->value_len, "chunked"))
                return sbx__fail(e, SBX_ERR_PROTOCOL, "response from %s: unsupported Transfer-Encoding \"%.60s\" "
                                 "(only chunked)", c->ep.name, h->value);
            te = 1;
        } else if (sbx__http_ieq(h->name, h->name_len, "connection")) {
            if (sbx__http_has_token(h->value, h->value_len, "close")) conn_close = 1;
            if (sbx__http_has_token(h->value, h->value_len, "keep-alive")) conn_ka = 1;
        }
    }
    if (te && cl >= 0)
        return sbx__fail(e, SBX_ERR_PROTOCOL, "response from %s: both Transfer-Encoding and Content-Length", c->ep.name);
    r->content_length = cl;
    r->chunked = te;
    if (head_req || r->status == 204 || r->status == 304) {
        r->mode = SBX__BODY_NONE;
        r->content_length = head_req ? cl : 0;
    } else if (te) {
        r->mode = SBX__BODY_CHUNKED;
        sbx__chunked_init(&r->ch);
    } else if (cl >= 0) {
        r->mode = SBX__BODY_LENGTH;
        r->left = (unsigned long long)cl;
    } else {
        r->mode = SBX__BODY_CLOSE;
    }
    r->keep_alive = !conn_close && (r->minor == 1 || conn_ka) && r->mode != SBX__BODY_CLOSE;
    return SBX_OK;
}

/* Read the final response head (skipping 1xx). *dropped: EOF or reset before any byte. */
SBX__PRIVATE int sbx__http_read_head(sbx__conn *c, sbx__http_resp *r, int head_req, int close_req,
                                     long long deadline, int *dropped, sbx_error *e)
{
    int interim = 0;
    size_t total = 0;  /* bytes received for this response */
    *dropped = 0;
    for (;;) {
        int minor = 0, status = 0, pr = SBX__HTTP_INCOMPLETE;
        const char *reason = NULL, *why = NULL;
        size_t reason_len = 0, nh = SBX_MAX_HEADERS, scanned = 0;
        long got;
        for (;;) {
            size_t avail = c->rlen - c->rpos;
            /* parse only when a line may have ended (cheap on trickled input) */
            if (avail > 0 && (avail <= 16 || memchr(c->buf + c->rpos + scanned, '\n', avail - scanned))) {
                nh = SBX_MAX_HEADERS;
                pr = sbx__http_parse_head(c->buf + c->rpos, avail, &minor, &status, &reason, &reason_len,
                                          r->hdr, &nh, &why);
                if (pr > 0) break;
                if (pr == SBX__HTTP_INVALID)
                    return sbx__fail(e, SBX_ERR_PROTOCOL, "response from %s: %s", c->ep.name, why);
                if (pr == SBX__HTTP_TOO_MANY)
                    return sbx__fail(e, SBX_ERR_TOO_BIG, "response from %s: too big: more than SBX_MAX_HEADERS (%d) "
                                     "header fields", c->ep.name, SBX_MAX_HEADERS);
                if (pr == SBX__HTTP_TOO_LONG) goto too_long;
            }
            scanned = avail;
            if (c->rlen == SBX__HTTP_BUF_SIZE) {
                if (c->rpos == 0) goto too_long;
                memmove(c->buf, c->buf + c->rpos, avail);
                c->rlen = avail;
                c->rpos = 0;
            }
            got = sbx__http_recv(c->fd, c->buf + c->rlen, SBX__HTTP_BUF_SIZE - c->rlen, deadline);
            if (got == -2)
                return sbx__fail(e, SBX_ERR_TIMEOUT, "wait for the response head from %s: timed out (%lu bytes received)",
                                 c->ep.name, (unsigned long)total);
            if (got == 0 || (got < 0 && errno == ECONNRESET)) {
                if (total == 0) {
                    *dropped = 1;
                    if (got == 0)
                        return sbx__fail(e, SBX_ERR_CONNECT, "read response head from %s: connection closed before any "
                                         "response byte", c->ep.name);
                }
                if (got == 0)
                    return sbx__fail(e, SBX_ERR_CONNECT, "read response head from %s: connection closed after %lu bytes "
                                     "of the head", c->ep.name, (unsigned long)total);
            }
            if (got < 0) return sbx__fail_sys(e, SBX_ERR_CONNECT, errno, "read response head from %s", c->ep.name);
            c->rlen += (size_t)got;
            total += (size_t)got;
        }
        if (status >= 200) {
            size_t i;
            char *base;
            if (c->headcap < (size_t)pr + 1) {
                size_t ncap = (size_t)pr + 1 < 1024 ? 1024 : (size_t)pr + 1;
                char *grown = (char *)sbx__realloc(&c->a, c->head, ncap);
                if (!grown) return sbx__fail(e, SBX_ERR_NOMEM, "out of memory for the response head from %s", c->ep.name);
                c->head = grown;
                c->headcap = ncap;
            }
            memcpy(c->head, c->buf + c->rpos, (size_t)pr);
            c->head[pr] = '\0';
            /* re-point the views into the copy and NUL-terminate them there */
            base = c->head;
            r->nhdr = nh;
            for (i = 0; i < nh; i++) {
                r->hdr[i].name = base + (r->hdr[i].name - (c->buf + c->rpos));
                r->hdr[i].value = base + (r->hdr[i].value - (c->buf + c->rpos));
            }
            reason = base + (reason - (c->buf + c->rpos));
            for (i = 0; i < nh; i++) {
                base[(r->hdr[i].name - base) + r->hdr[i].name_len] = '\0';
                base[(r->hdr[i].value - base) + r->hdr[i].value_len] = '\0';
            }
            base[(reason - base) + reason_len] = '\0';
            r->reason = reason;
            r->status = status;
            r->minor = minor;
            c->rpos += (size_t)pr;
            return sbx__http_framing(c, r, head_req, close_req, e);
        }
        if (status == 101)
            return sbx__fail(e, SBX_ERR_PROTOCOL, "response from %s: unexpected 101 Switching Protocols", c->ep.name);
        if (++interim > SBX__HTTP_MAX_INTERIM)
            return sbx__fail(e, SBX_ERR_PROTOCOL, "response from %s: more than %d interim 1xx responses", c->ep.name,
                             SBX__HTTP_MAX_INTERIM);
        c->rpos += (size_t)pr;
    }
too_long:
    return sbx__fail(e, SBX_ERR_TOO_BIG, "response from %s: too big: head longer than SBX_MAX_HEADER_BYTES (%d bytes)",
                     c->ep.name, SBX_MAX_HEADER_BYTES);
}

SBX__PRIVATE int sbx__http_send(sbx__conn *c, const sbx__http_req *q, sbx__http_resp *r, long long deadline, sbx_error *e)
{
    sbx__http_out o;
    int rc, close_req, has_ua, dropped = 0, attempt = 0, reused = 0;
    int head_req = q && q->method && strcmp(q->method, "HEAD") == 0;
    memset(r, 0, sizeof *r);
    r->reason = "";
    r->content_length = -1;
    sbx__buf_init(&o.head, &c->a);
    if (!q) return sbx__fail(e, SBX_ERR_INVALID_ARG, "no request");
    rc = sbx__http_check_req(q, &close_req, &has_ua, e);
    if (rc != SBX_OK) return rc;
    if (!c->buf) {
        c->buf = (char *)sbx__malloc(&c->a, SBX__HTTP_BUF_SIZE);
        if (!c->buf) return sbx__fail(e, SBX_ERR_NOMEM, "out of memory for the HTTP buffer");
    }
    if (c->busy) sbx__conn_close(c);  /* the previous body was not read to its end */
    rc = sbx__http_build(c, q, has_ua, &o, e);
    if (rc != SBX_OK) goto out;
    for (;;) {
        reused = 0;
        if (c->fd >= 0) {
            if (sbx__http_stale(c->fd)) sbx__conn_close(c);
            else reused = 1;
        }
        if (c->fd < 0) {
            rc = sbx__http_connect(c, deadline, e);
            if (rc != SBX_OK) goto out;
        }
        c->seq++;
        c->busy = 1;
        c->rpos = c->rlen = c->bpos = c->bend = 0;
        r->seq = c->seq;
        rc = sbx__http_write_req(c, q, &o, deadline, &dropped, e);
        if (rc == SBX_OK) rc = sbx__http_read_head(c, r, head_req, close_req, deadline, &dropped, e);
        if (rc == SBX_OK) break;
        sbx__conn_close(c);
        sbx__http_resp_free(r);
        if (!(dropped && reused)) goto out;
        if (q->idempotent && q->body_fd < 0 && attempt == 0) {
            attempt = 1;
            continue;
        }
        if (e) {
            char orig[SBX_ERRMSG_SIZE];
            memcpy(orig, e->msg, sizeof orig);
            orig[sizeof orig - 1] = '\0';
            rc = sbx__fail(e, SBX_ERR_CONNECT, "%s %.200s%.200s: the server closed the kept-alive connection (%s); the "
                           "request may have reached the server and was not sent again (%s)", q->method, c->ep.prefix,
                           q->target, orig, q->idempotent ? "its body came from a descriptor" : "not idempotent");
        } else {
            rc = SBX_ERR_CONNECT;
        }
        goto out;
    }
    if (r->mode == SBX__BODY_NONE || (r->mode == SBX__BODY_LENGTH && r->left == 0)) sbx__http_finish(c, r);
out:
    sbx__buf_free(&o.head);
    return rc;
}

/* ---- response bodies ------------------------------------------------------ */

SBX__PRIVATE int sbx__http_body_fail(sbx__conn *c, int rc)
{
    sbx__conn_close(c);
    return rc;
}

/* Next decoded body bytes: 1 with *p and *n (n > 0), 0 at the end, < 0 error. */
SBX__PRIVATE int sbx__http_body_peek(sbx__conn *c, sbx__http_resp *r, const char **p, size_t *n,
                                     long long deadline, sbx_error *e)
{
    if (r->body_done) return 0;
    if (r->seq != c->seq || !c->busy || c->fd < 0)
        return sbx__fail(e, SBX_ERR_INVALID_ARG, "response body from %s can no longer be read (the connection was "
                         "closed or reused)", c->ep.name);
    for (;;) {
        long got;
        if (c->bend > c->bpos) {
            *p = c->buf + c->bpos;
            *n = c->bend - c->bpos;
            return 1;
        }
        if ((r->mode == SBX__BODY_LENGTH && r->left == 0) || (r->mode == SBX__BODY_CHUNKED && r->ch.state == SBX__CH_DONE)) {
            sbx__http_finish(c, r);
            return 0;
        }
        if (c->rlen > c->rpos) {
            size_t avail = c->rlen - c->rpos;
            if (r->mode == SBX__BODY_LENGTH) {
                size_t k = (unsigned long long)avail > r->left ? (size_t)r->left : avail;
                c->bpos = c->rpos;
                c->bend = c->rpos + k;
                c->rpos += k;
                r->left -= k;
            } else if (r->mode == SBX__BODY_CHUNKED) {
                size_t out = 0, used = 0;
                int dr = sbx__chunked_decode(&r->ch, c->buf + c->rpos, avail, &out, &used);
                if (dr < 0)
                    return sbx__http_body_fail(c, sbx__fail(e, SBX_ERR_PROTOCOL, "read response body from %s: %s",
                                                            c->ep.name, r->ch.why));
                c->bpos = c->rpos;
                c->bend = c->rpos + out;
                c->rpos += used;
            } else {
                c->bpos = c->rpos;
                c->bend = c->rlen;
                c->rpos = c->rlen;
            }
            continue;
        }
        c->rpos = c->rlen = c->bpos = c->bend = 0;
        got = sbx__http_recv(c->fd, c->buf, SBX__HTTP_IO_SIZE, deadline);
        if (got == -2)
            return sbx__http_body_fail(c, sbx__fail(e, SBX_ERR_TIMEOUT, "read response body from %s: timed out after "
                                                    "%llu bytes", c->ep.name, r->body_read));
        if (got == 0) {
            if (r->mode == SBX__BODY_CLOSE) {
                sbx__http_finish(c, r);
                return 0;
            }
            if (r->mode == SBX__BODY_LENGTH)
                return sbx__http_body_fail(c, sbx__fail(e, SBX_ERR_CONNECT, "read response body from %s: connection closed "
                                                        "after %llu of %lld bytes", c->ep.name, r->body_read,
                                                        r->content_length));
            return sbx__http_body_fail(c, sbx__fail(e, SBX_ERR_CONNECT, "read response body from %s: connection closed "
                                                    "inside the chunked body after %llu bytes", c->ep.name, r->body_read));
        }
        if (got < 0)
            return sbx__http_body_fail(c, sbx__fail_sys(e, SBX_ERR_CONNECT, errno, "read response body from %s",
                                                        c->ep.name));
        c->rlen = (size_t)got;
    }
}

SBX__PRIVATE void sbx__http_body_consume(sbx__conn *c, sbx__http_resp *r, size_t n)
{
    c->bpos += n;
    r->body_read += n;
    if (c->bpos == c->bend &&
        ((r->mode == SBX__BODY_LENGTH && r->left == 0) || (r->mode == SBX__BODY_CHUNKED && r->ch.state == SBX__CH_DONE)))
        sbx__http_finish(c, r);
}

SBX__PRIVATE int sbx__http_body_mem(sbx__conn *c, sbx__http_resp *r, sbx__buf *out, size_t cap, long long deadline,
                                    sbx_error *e)
{
    unsigned long long got = 0;
    if (sbx__buf_append(out, "", 0) != 0) return sbx__http_body_fail(c, sbx__fail(e, SBX_ERR_NOMEM, "out of memory"));
    if (r->body_done) return SBX_OK;
    if (r->seq != c->seq || !c->busy || c->fd < 0) return sbx__http_body_peek(c, r, NULL, NULL, deadline, e);
    if (r->mode == SBX__BODY_LENGTH) {
        unsigned long long rest = r->left + (c->bend - c->bpos);
        if (rest > cap)
            return sbx__http_body_fail(c, sbx__fail(e, SBX_ERR_TOO_BIG, "response body from %s is too big: %lld bytes, "
                                                    "over the %lu-byte cap", c->ep.name, r->content_length,
                                                    (unsigned long)cap));
        if (sbx__buf_reserve(out, (size_t)rest) != 0)
            return sbx__http_body_fail(c, sbx__fail(e, SBX_ERR_NOMEM, "out of memory for a %llu-byte response body", rest));
    }
    for (;;) {
        const char *p;
        size_t n;
        int pr = sbx__http_body_peek(c, r, &p, &n, deadline, e);
        if (pr < 0) return pr;
        if (pr == 0) return SBX_OK;
        if ((unsigned long long)n > cap - got)
            return sbx__http_body_fail(c, sbx__fail(e, SBX_ERR_TOO_BIG, "response body from %s is too big: over the "
                                                    "%lu-byte cap", c->ep.name, (unsigned long)cap));
        if (sbx__buf_append(out, p, n) != 0)
            return sbx__http_body_fail(c, sbx__fail(e, SBX_ERR_NOMEM, "out of memory reading the response body"));
        got += n;
        sbx__http_body_consume(c, r, n);
    }
}

SBX__PRIVATE int sbx__http_body_fd_loop(sbx__conn *c, sbx__http_resp *r, int fd, long long deadline, int *epipe,
                                        sbx_error *e)
{
    int kind = sbx__http_out_kind(fd);
    for (;;) {
        const char *p;
        size_t n;
        int wr, pr = sbx__http_body_peek(c, r, &p, &n, deadline, e);
        if (pr < 0) return pr;
        if (pr == 0) return SBX_OK;
        wr = sbx__http_fd_write(fd, p, n, kind, deadline);
        if (wr == -2)
            return sbx__http_body_fail(c, sbx__fail(e, SBX_ERR_TIMEOUT, "write response body to descriptor %d: timed out "
                                                    "after %llu bytes", fd, r->body_read));
        if (wr < 0) {
            *epipe = errno == EPIPE;
            return sbx__http_body_fail(c, sbx__fail_sys(e, SBX_ERR_SYS, errno, "write response body to descriptor %d "
                                                        "after %llu bytes", fd, r->body_read));
        }
        sbx__http_body_consume(c, r, n);
    }
}

/* SIGPIPE is blocked in this thread while writing; one we caused is consumed
   before the old mask comes back, so the process never sees it. */
SBX__PRIVATE int sbx__http_body_fd(sbx__conn *c, sbx__http_resp *r, int fd, long long deadline, sbx_error *e)
{
    sigset_t pipe_set, old, pending;
    int rc, was_pending, epipe = 0;
    sigemptyset(&pipe_set);
    sigaddset(&pipe_set, SIGPIPE);
    sigemptyset(&pending);
    sigpending(&pending);
    was_pending = sigismember(&pending, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe_set, &old);
    rc = sbx__http_body_fd_loop(c, r, fd, deadline, &epipe, e);
    if (epipe && !was_pending) {
        int sig;
        sigemptyset(&pending);
        sigpending(&pending);
        if (sigismember(&pending, SIGPIPE)) sigwait(&pipe_set, &sig);
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return rc;
}

SBX__PRIVATE int sbx__http_body_line(sbx__conn *c, sbx__http_resp *r, sbx__buf *line, size_t cap, long long deadline,
                                     sbx_error *e)
{
    sbx__linesplit ls;
    ls.len = 0;
    ls.cap = cap;
    line->len = 0;
    if (sbx__buf_append(line, "", 0) != 0) return sbx__http_body_fail(c, sbx__fail(e, SBX_ERR_NOMEM, "out of memory"));
    for (;;) {
        const char *p;
        size_t n, used = 0;
        int tr, pr = sbx__http_body_peek(c, r, &p, &n, deadline, e);
        if (pr < 0) return pr;
        if (pr == 0) return ls.len > 0 ? 1 : 0;  /* an unterminated last line */
        tr = sbx__http_line_take(&ls, line, p, n, &used);
        if (tr == -1)
            return sbx__http_body_fail(c, sbx__fail(e, SBX_ERR_TOO_BIG, "read response body from %s: a line is longer "
                                                    "than the %lu-byte cap", c->ep.name, (unsigned long)cap));
        if (tr == -2) return sbx__http_body_fail(c, sbx__fail(e, SBX_ERR_NOMEM, "out of memory reading a line"));
        sbx__http_body_consume(c, r, used);
        if (tr == 1) return 1;
    }
}

SBX__PRIVATE int sbx__http_body_discard(sbx__conn *c, sbx__http_resp *r, long long deadline, sbx_error *e)
{
    unsigned long long drained = 0;
    (void)e;
    if (r->body_done) return SBX_OK;
    if (r->seq != c->seq || !c->busy) return SBX_OK;
    if (r->mode == SBX__BODY_CLOSE || (r->mode == SBX__BODY_LENGTH && r->left > SBX__HTTP_DISCARD_MAX)) {
        sbx__conn_close(c);
        r->body_done = 1;
        return SBX_OK;
    }
    for (;;) {
        const char *p;
        size_t n;
        int pr = sbx__http_body_peek(c, r, &p, &n, deadline, NULL);
        if (pr <= 0 || drained > SBX__HTTP_DISCARD_MAX) break;
        drained += n;
        sbx__http_body_consume(c, r, n);
    }
    if (!r->body_done) sbx__conn_close(c);
    r->body_done = 1;
    return SBX_OK;
}

SBX__PRIVATE int sbx__http_do(sbx__conn *c, const sbx__http_req *q, sbx__http_resp *r, sbx__buf *body, size_t cap,
                              long long deadline, sbx_error *e)
{
    int rc = sbx__http_send(c, q, r, deadline, e);
    if (rc != SBX_OK) return rc;
    if (body) return sbx__http_body_mem(c, r, body, cap, deadline, e);
    return sbx__http_body_discard(c, r, deadline, e);
}

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
