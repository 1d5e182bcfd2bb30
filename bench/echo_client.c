/* Load generator for bench/echo.py: N connections, each sends a fixed-size message and waits
 * for it to come back, as fast as possible, for D seconds.  C and epoll so that the client is
 * never what limits the measurement.  Prints "<round trips> <seconds>". */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
    if (argc < 6) {
        fprintf(stderr, "usage: %s host port connections seconds size\n", argv[0]);
        return 2;
    }
    const char *host = argv[1];
    int port = atoi(argv[2]), conns = atoi(argv[3]), size = atoi(argv[5]);
    double seconds = atof(argv[4]);
    char *msg = malloc(size), buf[65536];
    memset(msg, 'x', size);
    int *got = calloc(conns, sizeof(int));
    int ep = epoll_create1(0);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons(port)};
    inet_pton(AF_INET, host, &addr.sin_addr);
    for (int i = 0; i < conns; i++) {
        int fd = socket(AF_INET, SOCK_STREAM, 0), one = 1;
        if (connect(fd, (struct sockaddr *)&addr, sizeof addr) < 0) { perror("connect"); return 1; }
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        struct epoll_event ev = {.events = EPOLLIN, .data.u64 = ((uint64_t)i << 32) | fd};
        epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
        if (write(fd, msg, size) != size) { perror("write"); return 1; }
    }
    long long trips = 0;
    double start = now(), end = start + seconds;
    struct epoll_event events[1024];
    while (now() < end) {
        int n = epoll_wait(ep, events, 1024, 100);
        for (int k = 0; k < n; k++) {
            int fd = (int)(events[k].data.u64 & 0xffffffff), i = (int)(events[k].data.u64 >> 32);
            ssize_t r = read(fd, buf, sizeof buf);
            if (r <= 0) { if (r < 0 && errno == EAGAIN) continue; fprintf(stderr, "closed\n"); return 1; }
            got[i] += r;
            while (got[i] >= size) {
                got[i] -= size;
                trips++;
                if (write(fd, msg, size) != size) { perror("write"); return 1; }
            }
        }
    }
    printf("%lld %.3f\n", trips, now() - start);
    return 0;
}
