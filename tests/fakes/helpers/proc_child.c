/* tests/fakes/helpers/proc_child.c - the child programs test_proc.c runs (built by
   the test with cc). One program, one mode per run; every mode ends by itself
   within 60 s (alarm) so nothing can outlive a broken test.

   proc_child ready N LINE      N noise lines, then LINE, then wait for a signal
   proc_child fail CODE         klog noise and "error: lost connection to pod" on
                                stderr, then exit CODE
   proc_child refused CODE      one non-"error:" stderr line, then exit CODE
   proc_child quiet             exit 0 at once, printing nothing
   proc_child warn              a stderr warning, no stdout, wait
   proc_child env NAME...       "ENV NAME=value count=N" per name ((unset) if absent)
   proc_child stdin             "STDIN devnull=D eof=E"
   proc_child fds               "FDS <open descriptors> out=fifo err=fifo"
   proc_child pgrp              "PGRP pid=P pgrp=G"
   proc_child serve             listen on 127.0.0.1:0, print "Listening on 127.0.0.1:PORT";
                                per connection print "Handling connection for PORT"
                                (each write checked) and answer "ok N\n"
   proc_child ignore            ignore SIGINT, SIGTERM, SIGHUP; print "ready"; wait
   proc_child graceful          SIGINT: "bye" on stderr, exit 0 (like port-forward)
   proc_child grandchild        a grandchild that ignores SIGINT/SIGTERM keeps the
                                pipes; prints "GRANDCHILD pid"
   proc_child escape            the same, but the grandchild leaves the process group
   proc_child closeout          close stdout, keep running
   proc_child spam              megabytes on both pipes, a 1 MB line, NUL bytes, then
                                "READY" and "error: final words" on stderr
*/
#include <errno.h>
#include <fcntl.h>
#include <dirent.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>

extern char **environ;

static void say(int fd, const char *s)
{
    size_t n = strlen(s), off = 0;
    while (off < n) {
        ssize_t w = write(fd, s + off, n - off);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) _exit(3); /* a failed write is a test failure */
        off += (size_t)w;
    }
}

static void wait_forever(void)
{
    for (;;) pause();
}

static void on_int(int sig)
{
    (void)sig;
    say(2, "bye\n");
    _exit(0);
}

static void ignore_stops(void)
{
    signal(SIGINT, SIG_IGN);
    signal(SIGTERM, SIG_IGN);
    signal(SIGHUP, SIG_IGN);
}

static void grandchild(int leave_group)
{
    char buf[64];
    int sync[2];
    pid_t pid;
    if (pipe(sync) != 0) _exit(4);
    pid = fork();
    if (pid < 0) _exit(4);
    if (pid == 0) {
        ignore_stops();
        if (leave_group) setsid();
        alarm(60);
        say(sync[1], "k"); /* set up: now the parent may say so */
        close(sync[0]);
        close(sync[1]);
        wait_forever();
    }
    close(sync[1]);
    while (read(sync[0], buf, 1) < 0 && errno == EINTR) {}
    close(sync[0]);
    snprintf(buf, sizeof buf, "GRANDCHILD %ld\n", (long)pid);
    say(1, buf);
    say(1, "ready\n");
    wait_forever();
}

static void serve(void)
{
    struct sockaddr_in sa;
    socklen_t sl = sizeof sa;
    char line[128];
    unsigned long count = 0;
    int ls = socket(AF_INET, SOCK_STREAM, 0);
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (ls < 0 || bind(ls, (struct sockaddr *)&sa, sizeof sa) != 0 || listen(ls, 128) != 0 ||
        getsockname(ls, (struct sockaddr *)&sa, &sl) != 0) {
        say(2, "error: cannot listen\n");
        _exit(5);
    }
    snprintf(line, sizeof line, "Listening on 127.0.0.1:%d\n", ntohs(sa.sin_port));
    say(1, line);
    for (;;) {
        int c = accept(ls, NULL, NULL);
        if (c < 0) {
            if (errno == EINTR) continue;
            _exit(6);
        }
        count++;
        snprintf(line, sizeof line, "Handling connection for %d\n", ntohs(sa.sin_port));
        say(1, line); /* blocks here if nobody drains stdout */
        snprintf(line, sizeof line, "ok %lu\n", count);
        say(c, line);
        close(c);
    }
}

static void spam(void)
{
    static char big[1 << 16];
    int i;
    memset(big, 'x', sizeof big);
    for (i = 0; i < 64; i++) { /* 4 MB of 1 KB lines on stdout and stderr */
        int j;
        for (j = 0; j < 64; j++) big[j * 1024 + 1023] = '\n';
        say(1, big);
        say(2, big);
    }
    memset(big, 'y', sizeof big);
    for (i = 0; i < 16; i++) { /* one 1 MB line: stored cut, never grows memory */
        size_t off = 0;
        while (off < sizeof big) {
            ssize_t w = write(1, big + off, sizeof big - off);
            if (w <= 0) _exit(3);
            off += (size_t)w;
        }
    }
    if (write(1, "\n\0\001\377junk\0more\n\r\n", 16) != 16) _exit(3);
    say(1, "READY\n");
    say(2, "error: final words\n");
    wait_forever();
}

int main(int argc, char **argv)
{
    const char *mode = argc > 1 ? argv[1] : "";
    char buf[4096];
    alarm(60);
    if (!strcmp(mode, "ready") && argc > 3) {
        int i, n = atoi(argv[2]);
        for (i = 1; i <= n; i++) {
            snprintf(buf, sizeof buf, "noise %d\n", i);
            say(1, buf);
        }
        snprintf(buf, sizeof buf, "%s\n", argv[3]);
        say(1, buf);
        wait_forever();
    } else if (!strcmp(mode, "fail") && argc > 2) {
        say(2, "I1126 12:46:18.581843   15651 portforward.go:100] starting\n");
        say(2, "E1126 12:46:18.581843   15651 portforward.go:424] \"Unhandled Error\" err=\"x\"\n");
        say(2, "error: lost connection to pod\n");
        say(2, "  \n");
        return atoi(argv[2]);
    } else if (!strcmp(mode, "refused") && argc > 2) {
        say(2, "The connection to the server 127.0.0.1:1 was refused - did you specify the right host or port?\n");
        return atoi(argv[2]);
    } else if (!strcmp(mode, "quiet")) {
        return 0;
    } else if (!strcmp(mode, "warn")) {
        say(2, "W1126 12:00:00.000000 1 warn.go:1] slow start\n");
        wait_forever();
    } else if (!strcmp(mode, "env")) {
        int i;
        for (i = 2; i < argc; i++) {
            size_t k = strlen(argv[i]);
            int count = 0;
            char **e;
            const char *v = getenv(argv[i]);
            for (e = environ; *e; e++)
                if (!strncmp(*e, argv[i], k) && (*e)[k] == '=') count++;
            snprintf(buf, sizeof buf, "ENV %s=%s count=%d\n", argv[i], v ? v : "(unset)", count);
            say(1, buf);
        }
        wait_forever();
    } else if (!strcmp(mode, "stdin")) {
        struct stat a, b;
        ssize_t r = read(0, buf, sizeof buf);
        int devnull = fstat(0, &a) == 0 && stat("/dev/null", &b) == 0 && a.st_rdev == b.st_rdev &&
                      S_ISCHR(a.st_mode);
        snprintf(buf, sizeof buf, "STDIN devnull=%d eof=%d\n", devnull, r == 0);
        say(1, buf);
        wait_forever();
    } else if (!strcmp(mode, "fds")) {
        DIR *d = opendir("/proc/self/fd");
        struct dirent *de;
        struct stat s1, s2;
        int fds[64], n = 0, i, j;
        size_t len;
        if (!d) d = opendir("/dev/fd");
        if (!d) _exit(7);
        while ((de = readdir(d)) != NULL && n < 64) {
            if (de->d_name[0] < '0' || de->d_name[0] > '9') continue;
            if (atoi(de->d_name) == dirfd(d)) continue;
            fds[n++] = atoi(de->d_name);
        }
        closedir(d);
        for (i = 1; i < n; i++) /* sort */
            for (j = i; j > 0 && fds[j - 1] > fds[j]; j--) {
                int t = fds[j];
                fds[j] = fds[j - 1];
                fds[j - 1] = t;
            }
        strcpy(buf, "FDS");
        for (i = 0; i < n; i++) {
            len = strlen(buf);
            snprintf(buf + len, sizeof buf - len, " %d", fds[i]);
        }
        len = strlen(buf);
        snprintf(buf + len, sizeof buf - len, " out=%s err=%s\n",
                 fstat(1, &s1) == 0 && S_ISFIFO(s1.st_mode) ? "fifo" : "other",
                 fstat(2, &s2) == 0 && S_ISFIFO(s2.st_mode) ? "fifo" : "other");
        say(1, buf);
        wait_forever();
    } else if (!strcmp(mode, "pgrp")) {
        snprintf(buf, sizeof buf, "PGRP pid=%ld pgrp=%ld\n", (long)getpid(), (long)getpgrp());
        say(1, buf);
        wait_forever();
    } else if (!strcmp(mode, "serve")) {
        serve();
    } else if (!strcmp(mode, "ignore")) {
        ignore_stops();
        say(1, "ready\n");
        wait_forever();
    } else if (!strcmp(mode, "graceful")) {
        signal(SIGINT, on_int);
        say(1, "ready\n");
        wait_forever();
    } else if (!strcmp(mode, "grandchild")) {
        grandchild(0);
    } else if (!strcmp(mode, "escape")) {
        grandchild(1);
    } else if (!strcmp(mode, "closeout")) {
        close(1);
        say(2, "closing stdout\n");
        wait_forever();
    } else if (!strcmp(mode, "spam")) {
        spam();
    }
    say(2, "error: proc_child: unknown mode\n");
    return 2;
}
