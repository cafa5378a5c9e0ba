/* tests/fakes/capture.h - a tiny capturing HTTP server on 127.0.0.1 (one
   connection at a time) that plays a router or a runtime for the e2e suites:
   it answers GET / like a runtime, records the head of every other request,
   and answers it with a canned exec result (or 301 when asked to).

   Include after tests/lib/test.h. */
#ifndef SBX_FAKES_CAPTURE_H
#define SBX_FAKES_CAPTURE_H

typedef struct em_capture {
    int lfd, port, wake[2];
    pthread_t th;
    pthread_mutex_t mu;
    int nreq;                 /* requests answered */
    char last[4096];          /* head of the last request other than GET / */
    int redirect;             /* answer everything but GET / with 301 */
} em_capture;

static int em_cap_read_request(int fd, char *buf, size_t cap, size_t *have, size_t *head_len, size_t *total)
{
    for (;;) {
        char *end;
        struct pollfd p;
        ssize_t r;
        buf[*have] = '\0';
        end = strstr(buf, "\r\n\r\n");
        if (end) {
            const char *cl = buf;
            long long clen = 0;
            *head_len = (size_t)(end - buf) + 4;
            while ((cl = strchr(cl, '\n')) != NULL) {
                cl++;
                if (strncasecmp(cl, "content-length:", 15) == 0) clen = atoll(cl + 15);
            }
            *total = *head_len + (size_t)clen;
            if (*total >= cap) return -1;
            if (*have >= *total) return 0;
        }
        if (*have + 1 >= cap) return -1;
        p.fd = fd;
        p.events = POLLIN;
        if (poll(&p, 1, 3000) <= 0) return -1;
        r = read(fd, buf + *have, cap - 1 - *have);
        if (r <= 0) return -1;
        *have += (size_t)r;
    }
}

static void *em_cap_main(void *arg)
{
    em_capture *s = (em_capture *)arg;
    static char buf[1 << 16];
    for (;;) {
        struct pollfd p[2];
        int fd;
        size_t have = 0;
        p[0].fd = s->lfd;
        p[0].events = POLLIN;
        p[1].fd = s->wake[0];
        p[1].events = POLLIN;
        if (poll(p, 2, 10000) <= 0 || (p[1].revents & POLLIN)) break;
        fd = accept(s->lfd, NULL, NULL);
        if (fd < 0) continue;
        for (;;) {
            size_t head_len = 0, total = 0;
            char resp[1024];
            const char *body;
            int status = 200, root;
            if (em_cap_read_request(fd, buf, sizeof buf, &have, &head_len, &total) != 0) break;
            root = strncmp(buf, "GET / HTTP/1.1\r\n", 16) == 0;
            pthread_mutex_lock(&s->mu);
            s->nreq++;
            if (!root) E2E_FMT(s->last, sizeof s->last, "%.*s", (int)head_len, buf);
            pthread_mutex_unlock(&s->mu);
            if (root) body = "{\"status\":\"ok\",\"message\":\"Sandbox Runtime is active.\"}";
            else if (s->redirect) status = 301, body = "";
            else body = "{\"stdout\":\"captured\\n\",\"stderr\":\"\",\"exit_code\":0}";
            E2E_FMT(resp, sizeof resp, "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\n%sContent-Length: %d\r\n\r\n%s",
                    status, status == 200 ? "OK" : "Moved Permanently",
                    status == 301 ? "Location: http://127.0.0.1:1/elsewhere\r\n" : "", (int)strlen(body), body);
            if (write(fd, resp, strlen(resp)) < 0) break;
            memmove(buf, buf + total, have - total);
            have -= total;
        }
        close(fd);
    }
    return NULL;
}

static E2E_UNUSED int em_capture_start(em_capture *s)
{
    struct sockaddr_in a;
    socklen_t len = sizeof a;
    memset(s, 0, sizeof *s);
    pthread_mutex_init(&s->mu, NULL);
    s->lfd = socket(AF_INET, SOCK_STREAM, 0);
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (s->lfd < 0 || bind(s->lfd, (struct sockaddr *)&a, sizeof a) != 0 || listen(s->lfd, 8) != 0 ||
        getsockname(s->lfd, (struct sockaddr *)&a, &len) != 0 || pipe(s->wake) != 0)
        return -1;
    s->port = ntohs(a.sin_port);
    return pthread_create(&s->th, NULL, em_cap_main, s) == 0 ? 0 : -1;
}

static E2E_UNUSED void em_capture_stop(em_capture *s)
{
    if (write(s->wake[1], "x", 1) < 0) return;
    pthread_join(s->th, NULL);
    close(s->lfd);
    close(s->wake[0]);
    close(s->wake[1]);
    pthread_mutex_destroy(&s->mu);
}

/* The value of header `name` in a captured head ("" if absent). */
static E2E_UNUSED void em_header(const char *head, const char *name, char *out, size_t cap)
{
    const char *p = head;
    size_t n = strlen(name);
    out[0] = '\0';
    while ((p = strchr(p, '\n')) != NULL) {
        p++;
        if (strncasecmp(p, name, n) == 0 && p[n] == ':') {
            const char *v = p + n + 1, *end;
            while (*v == ' ') v++;
            end = strstr(v, "\r\n");
            if (!end) end = v + strlen(v);
            E2E_FMT(out, cap, "%.*s", (int)(end - v), v);
            return;
        }
    }
}
#endif
