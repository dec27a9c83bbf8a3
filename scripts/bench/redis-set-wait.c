/* Redis SET load for `make bench-compare`: CONNECTIONS connections, each in its own thread,
 * each sending `SET key <SIZE bytes>` (followed by `WAIT 1 1000` when WAIT is 1, so the
 * answer comes once a replica has the write) and reading the answer before the next one,
 * for SECONDS seconds. Prints "<requests per second> <errors>".
 * redis-benchmark cannot send WAIT after each SET, hence this client; it runs both the
 * plain and the WAIT load so the two are measured alike.
 * Usage: redis-set-wait HOST PORT CONNECTIONS SECONDS SIZE WAIT */
#include <arpa/inet.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <netinet/tcp.h>

static const char *host;
static int port, seconds, size, wait_replica;
static char *request;
static size_t request_length;

typedef struct { long done; long errors; } result_t;

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

static void *run(void *arg) {
    result_t *r = arg;
    int fd = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(port) };
    inet_pton(AF_INET, host, &a.sin_addr);
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) { perror("connect"); exit(1); }
    int lines_per_request = wait_replica ? 2 : 1;
    char buffer[4096];
    double end = now() + seconds;
    while (now() < end) {
        if (write(fd, request, request_length) != (ssize_t)request_length) { perror("write"); exit(1); }
        int lines = 0;
        while (lines < lines_per_request) {
            ssize_t n = read(fd, buffer, sizeof buffer);
            if (n <= 0) { perror("read"); exit(1); }
            for (ssize_t i = 0; i < n; i++) {
                if (buffer[i] == '-' || (wait_replica && buffer[i] == ':' && i + 1 < n && buffer[i + 1] == '0')) r->errors++;
                if (buffer[i] == '\n') lines++;
            }
        }
        r->done++;
    }
    close(fd);
    return NULL;
}

int main(int argc, char **argv) {
    if (argc != 7) { fprintf(stderr, "usage: %s HOST PORT CONNECTIONS SECONDS SIZE WAIT\n", argv[0]); return 2; }
    host = argv[1]; port = atoi(argv[2]);
    int connections = atoi(argv[3]);
    seconds = atoi(argv[4]); size = atoi(argv[5]); wait_replica = atoi(argv[6]);
    request = malloc(size + 256);
    int n = sprintf(request, "*3\r\n$3\r\nSET\r\n$5\r\nbench\r\n$%d\r\n", size);
    memset(request + n, 'v', size);
    n += size;
    n += sprintf(request + n, "\r\n");
    if (wait_replica) n += sprintf(request + n, "*3\r\n$4\r\nWAIT\r\n$1\r\n1\r\n$4\r\n1000\r\n");
    request_length = n;
    pthread_t threads[connections];
    result_t results[connections];
    memset(results, 0, sizeof results);
    double start = now();
    for (int i = 0; i < connections; i++) pthread_create(&threads[i], NULL, run, &results[i]);
    long done = 0, errors = 0;
    for (int i = 0; i < connections; i++) { pthread_join(threads[i], NULL); done += results[i].done; errors += results[i].errors; }
    printf("%.0f %ld\n", done / (now() - start), errors);
    return 0;
}
