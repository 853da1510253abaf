/*
 * pipe-roundtrip: the cost of a job on a worker with no daemon in front. Spawns the worker
 * (argv after the options), then sends it N jobs one after another over a pipe, in poold's
 * worker protocol ({"id":N,"input":…} in, one line out), and prints the round-trip
 * percentiles. make bench-daemon compares it with the same worker behind poold.
 *
 *   pipe-roundtrip [--jobs N] [--warmup N] -- /usr/bin/python3 worker.py
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <spawn.h>
#include <sys/wait.h>

extern char **environ;

static double now_us(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e6 + t.tv_nsec / 1e3;
}

static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv) {
    int jobs = 20000, warmup = 2000, i = 1;
    for (; i < argc; i++) {
        if (!strcmp(argv[i], "--jobs") && i + 1 < argc) jobs = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--warmup") && i + 1 < argc) warmup = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--")) { i++; break; }
    }
    if (i >= argc || jobs < 1) {
        fprintf(stderr, "usage: pipe-roundtrip [--jobs N] [--warmup N] -- COMMAND...\n");
        return 2;
    }
    int to[2], from[2];
    if (pipe(to) || pipe(from)) { perror("pipe"); return 1; }
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, to[0], 0);
    posix_spawn_file_actions_adddup2(&fa, from[1], 1);
    posix_spawn_file_actions_addclose(&fa, to[1]);
    posix_spawn_file_actions_addclose(&fa, from[0]);
    pid_t pid;
    if (posix_spawnp(&pid, argv[i], &fa, NULL, &argv[i], environ)) { perror("posix_spawn"); return 1; }
    close(to[0]);
    close(from[1]);
    FILE *in = fdopen(from[0], "r");
    double *rtt = malloc(sizeof(double) * jobs);
    char *line = NULL;
    size_t cap = 0;
    for (int n = 0; n < warmup + jobs; n++) {
        char request[128];
        int len = snprintf(request, sizeof request, "{\"id\":%d,\"input\":{\"n\":%d}}\n", n + 1, n);
        double start = now_us();
        if (write(to[1], request, len) != len) { perror("write"); return 1; }
        if (getline(&line, &cap, in) < 0) { fprintf(stderr, "the worker closed its stdout\n"); return 1; }
        if (n >= warmup) rtt[n - warmup] = now_us() - start;
    }
    close(to[1]);
    waitpid(pid, NULL, 0);
    qsort(rtt, jobs, sizeof(double), cmp);
    double total = 0;
    for (int n = 0; n < jobs; n++) total += rtt[n];
    printf("direct pipe: %d jobs one after another, %.0f jobs/s, p50 %.1f us, p99 %.1f us\n",
           jobs, jobs / (total / 1e6), rtt[jobs / 2], rtt[(int)(jobs * 0.99)]);
    return 0;
}
