#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <malloc.h>
#include <spawn.h>
#include <unistd.h>
#include <sys/syscall.h>
#include <sys/eventfd.h>
#include "CSpawn.h"

int cspawn_pipe_cloexec(int fds[2]) { return pipe2(fds, O_CLOEXEC); }

int cspawn_addclosefrom(posix_spawn_file_actions_t *actions, int from) {
    return posix_spawn_file_actions_addclosefrom_np(actions, from);
}

int cspawn_addchdir(posix_spawn_file_actions_t *actions, const char *path) {
    return posix_spawn_file_actions_addchdir_np(actions, path);
}

int cspawn_set_mmap_threshold(int bytes) { return mallopt(M_MMAP_THRESHOLD, bytes); }

int cspawn_become_subreaper(void) { return prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); }

int cspawn_start(const char *path, char *const argv[], char *const envp[],
                 int in_fd, int out_fd, int err_fd, const char *dir, int *error) {
    int report[2];
    if (pipe2(report, O_CLOEXEC) != 0) {
        *error = errno;
        return -1;
    }
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0) {
        *error = errno;
        close(report[0]);
        close(report[1]);
        return -1;
    }
    if (pid == 0) {
        struct sigaction fallback = {0};
        fallback.sa_handler = SIG_DFL;
        for (int signal = 1; signal < NSIG; signal++) {
            if (signal != SIGKILL && signal != SIGSTOP) sigaction(signal, &fallback, NULL);
        }
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        int failed = 0;
        if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0) failed = errno;
        else if (getppid() != parent) failed = ESRCH; /* poold is already gone */
        else if (setpgid(0, 0) != 0) failed = errno;
        else if (dup2(in_fd, 0) < 0 || dup2(out_fd, 1) < 0 || dup2(err_fd, 2) < 0) failed = errno;
        else if (dir != NULL && chdir(dir) != 0) failed = errno;
        if (failed == 0) {
            /* Nothing else crosses: not the control socket, not a socket systemd passed, not a
             * database file. The report pipe closes itself at exec. */
            if (report[1] > 3) close_range(3, (unsigned)report[1] - 1, 0);
            close_range((unsigned)report[1] + 1, ~0U, 0);
            execve(path, argv, envp);
            failed = errno;
        }
        ssize_t ignored = write(report[1], &failed, sizeof failed);
        (void)ignored;
        _exit(127);
    }
    close(report[1]);
    int failed = 0;
    ssize_t n;
    do {
        n = read(report[0], &failed, sizeof failed);
    } while (n < 0 && errno == EINTR);
    close(report[0]);
    if (n == (ssize_t)sizeof failed) {
        while (waitpid(pid, NULL, 0) < 0 && errno == EINTR) {}
        *error = failed;
        return -1;
    }
    return pid;
}

#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434 /* the same on every architecture since Linux 5.3 */
#endif

int cspawn_pidfd_open(int pid) {
    int fd = (int)syscall(SYS_pidfd_open, pid, 0);
    if (fd >= 0) fcntl(fd, F_SETFD, FD_CLOEXEC);
    return fd;
}

int cspawn_has_exited(int pid) {
    siginfo_t info;
    info.si_pid = 0;
    if (waitid(P_PID, (id_t)pid, &info, WEXITED | WNOHANG | WNOWAIT) != 0) return errno == ECHILD ? 1 : -1;
    return info.si_pid == pid ? 1 : 0;
}

int cspawn_eventfd(void) { return eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK); }
