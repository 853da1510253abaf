#ifndef CSPAWN_H
#define CSPAWN_H
#include <spawn.h>

/* glibc's GNU extensions that Swift's Glibc module does not show (they need _GNU_SOURCE):
 * the calls poold needs to start worker processes safely. */

/* pipe2(fds, O_CLOEXEC). */
int cspawn_pipe_cloexec(int fds[2]);
/* posix_spawn_file_actions_addclosefrom_np: close every descriptor >= from in the child. */
int cspawn_addclosefrom(posix_spawn_file_actions_t *actions, int from);
/* posix_spawn_file_actions_addchdir_np: start the child in this directory. */
int cspawn_addchdir(posix_spawn_file_actions_t *actions, const char *path);

/* mallopt(M_MMAP_THRESHOLD, bytes) (malloc.h, which Swift's Glibc module does not show):
 * allocations of at least `bytes` get their own mapping, returned to the system on free. */
int cspawn_set_mmap_threshold(int bytes);

/* Starts `path` (a resolved path) with `argv` and `envp`, `in_fd`, `out_fd` and `err_fd` as
 * its stdin, stdout and stderr and no other descriptor, in a process group of its own, with
 * every signal at its default and none blocked, in `dir` (NULL: the caller's), and with the
 * parent-death signal SIGKILL: it dies when the calling thread does. Returns its pid, or -1
 * with *error set to the errno of what failed (in the child: before exec). fork() and only
 * async-signal-safe calls in the child, so it is safe from a multithreaded process. */
int cspawn_start(const char *path, char *const argv[], char *const envp[],
                 int in_fd, int out_fd, int err_fd, const char *dir, int *error);

/* prctl(PR_SET_CHILD_SUBREAPER, 1): orphaned descendants are reparented to the caller rather
 * than to init. */
int cspawn_become_subreaper(void);

/* pidfd_open(pid, 0), close-on-exec: a descriptor that becomes readable when the process
 * exits (Linux 5.3). -1 with errno set (ENOSYS on older kernels). */
int cspawn_pidfd_open(int pid);

/* Whether child `pid` has exited, without reaping it (waitid with WNOWAIT): 1 if it has (or
 * is not a child any more), 0 if it runs, -1 on another error. */
int cspawn_has_exited(int pid);

/* eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK): for waking a thread blocked in poll(). */
int cspawn_eventfd(void);

#endif
