/*
 * PID 1 of a task's sandbox, compiled: what `supervise.py --init` and `--serve` do
 * (runs/tasktypes/supervise.py), without a Python interpreter's start, about 20 ms of CPU
 * per task on the 2-core machine (docs/performance.md, "Shell tasks: a compiled PID 1").
 *
 *   orc-sandbox-init --init <status fd>:<rlimits> -- argv...
 *   orc-sandbox-init --serve <status fd>:<control fd>
 *   orc-sandbox-init --as <uid>:<gid> -- bwrap ...
 *
 * Same protocol, same reports, same behaviour as the Python supervisor, which stays the
 * fallback where this is not built (runs/tasktypes/sandbox.py, `init_program`):
 * - `--serve` reads task after task on the control descriptor, each request framed as
 *   `<length>\0<request>` (`supervise.encode_request`: NUL-separated, counts first: argc,
 *   argv..., envc, NAME=value..., the working directory, the rlimits, then `last` or
 *   `more`); the descriptor's end before a request: no more tasks, exit 0 quietly;
 * - after each task it kills and reaps every process left in the sandbox, then reports the
 *   status (one line); after the `last` one it exits, after the others it empties what a task can write (its HOME and /tmp, /dev/shm,
 *   /dev/mqueue, the System V IPC objects of its namespace) and writes `ready` on its own
 *   line (it also clears the keys the task added to its user's keyrings, and the flags
 *   it set on descriptors 0-2, which every task shares; each task gets a session keyring
 *   of its own); one it cannot empty, or one with a mount inside what it would empty (a tenant's
 *   directory bound under /tmp), is reported as `spent` instead, and PID 1 exits: the
 *   sandbox is not used again. PID 1 is not dumpable there, so no task can trace it or open its
 *   descriptors;
 * - SIGTERM, SIGINT and SIGHUP (a timeout, a cancel) are passed on to every process of the
 *   sandbox (kill(-1, ...): PID 1 itself is spared);
 * - the task is forked and exec'd with its limits set in the child (PID 1 counts towards
 *   `processes`), its PATH searched as execvpe would, no descriptor but 0, 1 and 2;
 * - every orphan is reaped; when the task itself ends, one of `exit <code>`,
 *   `signal <number>`, `error <message>` is written to the status descriptor in one
 *   write, ending with a newline (`--init`: PID 1 then exits, and the kernel kills whatever
 *   is left in the namespace).
 *
 * `--as` is its third use, outside the sandbox: a root worker starts bwrap as the tenant's uid
 * and gid with no supplementary groups through it (what util-linux's setpriv does, at a
 * static binary's start instead of a dynamic one's: runs/tasktypes/process.py, `_drop_to`).
 *
 * Built by `make install` (and the image) into the virtual environment's bin directory;
 * tests/runs/tasktypes run every sandbox test over both.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <grp.h>
#include <sys/ipc.h>
#include <sys/msg.h>
#include <sys/prctl.h>
#include <sys/xattr.h>
#include <sys/resource.h>
#include <sys/sem.h>
#include <sys/shm.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

static void on_signal(int signum) {
    int saved = errno;
    kill(-1, signum); /* every process of the namespace but this one */
    errno = saved;
}

static int write_all(int fd, const char *data, size_t length) {
    while (length > 0) {
        ssize_t n = write(fd, data, length);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        data += n;
        length -= (size_t)n;
    }
    return 0;
}

static int report(int status_fd, int code, const char *format, ...) {
    char text[4096];
    va_list args;
    va_start(args, format);
    int n = vsnprintf(text, sizeof text, format, args);
    va_end(args);
    if (n < 0)
        n = 0;
    if ((size_t)n >= sizeof text - 1)
        n = sizeof text - 2;
    for (int i = 0; i < n; i++) /* one line: a path or a message may hold a newline */
        if (text[i] == '\n')
            text[i] = ' ';
    text[n++] = '\n';
    write_all(status_fd, text, (size_t)n);
    return code;
}

/* --- limits: "name=value,..." (supervise.format_limits) ----------------------------- */

struct limit {
    const char *name;
    int resource;
    rlim_t unit;
};

static const struct limit LIMITS[] = {
    {"cpu_seconds", RLIMIT_CPU, 1},
    {"memory_mb", RLIMIT_AS, 1024 * 1024},
    {"open_files", RLIMIT_NOFILE, 1},
    {"processes", RLIMIT_NPROC, 1},
    {"file_size_mb", RLIMIT_FSIZE, 1024 * 1024},
};

/* Applied in the forked child, before exec. Returns 0, or -1 with errno set. */
static int set_limits(const char *text) {
    const char *at = text;
    while (*at) {
        const char *end = strchr(at, ',');
        size_t length = end ? (size_t)(end - at) : strlen(at);
        const char *equals = memchr(at, '=', length);
        if (equals) {
            size_t name_length = (size_t)(equals - at);
            rlim_t value = (rlim_t)strtoull(equals + 1, NULL, 10);
            for (size_t i = 0; value && i < sizeof LIMITS / sizeof LIMITS[0]; i++) {
                if (strlen(LIMITS[i].name) != name_length ||
                    strncmp(LIMITS[i].name, at, name_length) != 0)
                    continue;
                struct rlimit limit;
                limit.rlim_cur = value * LIMITS[i].unit;
                if (LIMITS[i].resource == RLIMIT_NPROC)
                    limit.rlim_cur += 1; /* PID 1 counts too */
                /* CPU: SIGXCPU at the limit (the task's failure names it), SIGKILL a
                 * second on. */
                limit.rlim_max =
                    LIMITS[i].resource == RLIMIT_CPU ? limit.rlim_cur + 1 : limit.rlim_cur;
                if (setrlimit(LIMITS[i].resource, &limit) != 0)
                    return -1;
            }
        }
        if (!end)
            break;
        at = end + 1;
    }
    return 0;
}

/* --- the task ---------------------------------------------------------------------- */

static const int FORWARDED[] = {SIGTERM, SIGINT, SIGHUP};

static void close_from(int first, int keep) {
    /* Everything from `first` on but `keep`. */
    long most = sysconf(_SC_OPEN_MAX);
    if (most < 0 || most > 65536)
        most = 65536;
#ifdef SYS_close_range
    if (keep >= first) {
        if (keep > first)
            syscall(SYS_close_range, (unsigned)first, (unsigned)(keep - 1), 0);
        if (syscall(SYS_close_range, (unsigned)(keep + 1), ~0U, 0) == 0)
            return;
    } else if (syscall(SYS_close_range, (unsigned)first, ~0U, 0) == 0) {
        return;
    }
#endif
    for (int fd = first; fd < most; fd++)
        if (fd != keep)
            close(fd);
}

/* Linux's keyctl operations and special keyrings (linux/keyctl.h), called directly: the C
 * library has no wrapper. */
#define KEYCTL_JOIN_SESSION_KEYRING 1
#define KEYCTL_CLEAR 7
#define KEY_SPEC_USER_KEYRING -4
#define KEY_SPEC_USER_SESSION_KEYRING -5

static int serving; /* --serve: tasks follow one another in this sandbox */

/* The task forked and exec'd. Returns its pid, or 0 with the reason in `failed`. */
static pid_t start(char **argv, char **env, const char *limits, char *failed, size_t size) {
    int errors[2];
    if (pipe2(errors, O_CLOEXEC) != 0) {
        snprintf(failed, size, "could not start '%s': %s", argv[0], strerror(errno));
        return 0;
    }
    pid_t pid = fork();
    if (pid < 0) {
        snprintf(failed, size, "could not start '%s': %s", argv[0], strerror(errno));
        close(errors[0]);
        close(errors[1]);
        return 0;
    }
    if (pid == 0) {
        char message[4096];
        sigset_t none;
        sigemptyset(&none);
        for (size_t i = 0; i < sizeof FORWARDED / sizeof FORWARDED[0]; i++)
            signal(FORWARDED[i], SIG_DFL);
        signal(SIGPIPE, SIG_DFL);
        signal(SIGXFSZ, SIG_DFL);
        sigprocmask(SIG_SETMASK, &none, NULL);
        close(errors[0]);
        close_from(3, errors[1]);
        /* A session keyring of the task's own, gone with it (not PID 1's, which the next
         * task would share); where keyctl is refused (a seccomp profile), so is the task. */
        if (serving)
            syscall(SYS_keyctl, KEYCTL_JOIN_SESSION_KEYRING, NULL);
        if (set_limits(limits) != 0) {
            int n = snprintf(message, sizeof message, "could not set the task's limits: %s",
                             strerror(errno));
            write_all(errors[1], message, n > 0 ? (size_t)n : 0);
            _exit(127);
        }
        if (env)
            environ = env; /* execvp searches the task's own PATH */
        execvp(argv[0], argv);
        int n = snprintf(message, sizeof message, "could not start '%s': %s", argv[0],
                         strerror(errno));
        write_all(errors[1], message, n > 0 ? (size_t)n : 0);
        _exit(127);
    }
    close(errors[1]);
    size_t got = 0;
    for (;;) {
        ssize_t n = read(errors[0], failed + got, size - 1 - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        got += (size_t)n;
        if (got >= size - 1)
            break;
    }
    failed[got] = '\0';
    close(errors[0]);
    if (got) { /* exec failed: the child has ended */
        while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
            ;
        return 0;
    }
    return pid;
}

/* Every process of the sandbox but PID 1 killed and reaped: the namespace is empty when
 * no child is left, since every orphan of the namespace becomes PID 1's child. Killed
 * again after each one reaped, so that a process forked meanwhile cannot slip through. */
static void end_all(void) {
    for (;;) {
        kill(-1, SIGKILL);
        if (waitpid(-1, NULL, 0) < 0 && errno == ECHILD)
            return;
    }
}

static void forward_signals(void) {
    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_handler = on_signal;
    action.sa_flags = SA_RESTART;
    sigemptyset(&action.sa_mask);
    for (size_t i = 0; i < sizeof FORWARDED / sizeof FORWARDED[0]; i++)
        sigaction(FORWARDED[i], &action, NULL);
}

/* The task run and reaped, orphans reaped meanwhile; its status reported, once every
 * process it left is gone too when `serving` (no output of one can follow the status).
 * Returns the exit code PID 1 passes on. */
static int run_task(int status_fd, const char *limits, char **argv, char **env, int serving) {
    char failed[4096];
    pid_t pid = start(argv, env, limits, failed, sizeof failed);
    if (!pid)
        return report(status_fd, 127, "error %s", failed);
    int status = 0;
    for (;;) { /* reap every orphan until the task's own end */
        pid_t reaped = waitpid(-1, &status, 0);
        if (reaped < 0) {
            if (errno == EINTR)
                continue;
            break; /* ECHILD: nothing left (cannot happen before the task's end) */
        }
        if (reaped == pid)
            break;
    }
    if (serving)
        end_all();
    if (WIFSIGNALED(status))
        return report(status_fd, 128 + WTERMSIG(status), "signal %d", WTERMSIG(status));
    return report(status_fd, WEXITSTATUS(status), "exit %d", WEXITSTATUS(status));
}

static int init(int status_fd, const char *limits, char **argv, char **env) {
    forward_signals();
    fcntl(status_fd, F_SETFD, FD_CLOEXEC);
    return run_task(status_fd, limits, argv, env, 0);
}

/* --- --serve: task after task ------------------------------------------------------ */

#define MAX_DEPTH 256

/* Everything inside the directory `fd` removed (the directory itself stays); a directory
 * the task closed to itself is opened first. 0, or -1 if something is left. */
static int empty_dir(int fd, int depth) {
    if (depth > MAX_DEPTH) { /* deeper than a task has any need for: not emptied */
        close(fd);
        return -1;
    }
    DIR *dir = fdopendir(fd);
    if (!dir) {
        close(fd);
        return -1;
    }
    int failed = 0, at = dirfd(dir);
    struct dirent *entry;
    while ((entry = readdir(dir)) != NULL) {
        const char *name = entry->d_name;
        if (strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
            continue;
        if (unlinkat(at, name, 0) == 0)
            continue;
        if (errno != EISDIR) { /* a directory is the only thing unlinkat leaves */
            failed = -1;
            continue;
        }
        fchmodat(at, name, 0700, 0); /* a directory (never a link), which may be closed */
        int child = openat(at, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (child < 0 || empty_dir(child, depth + 1) != 0 || unlinkat(at, name, AT_REMOVEDIR) != 0)
            failed = -1;
    }
    closedir(dir);
    return failed;
}

struct writable {
    const char *path;
    mode_t mode; /* as the sandbox was made: a task may have changed it */
    int present;
};

static struct writable WRITABLE[] = {
    {"/home/task", 0, 0}, {"/tmp", 0, 0}, {"/dev/shm", 0, 0}, {"/dev/mqueue", 0, 0},
};

static void note_writable(void) {
    for (size_t i = 0; i < sizeof WRITABLE / sizeof WRITABLE[0]; i++) {
        struct stat info;
        if (lstat(WRITABLE[i].path, &info) == 0 && S_ISDIR(info.st_mode)) {
            WRITABLE[i].mode = info.st_mode & 07777;
            WRITABLE[i].present = 1;
        }
    }
}

/* Whether a mount lies inside a directory a task's end empties (a tenant's directory bound
 * under /tmp, say): the sandbox then serves one task only, since emptying would reach into
 * the tenant's own files. The mount table is the sandbox's, fixed when it was made. */
static int mounts_inside(void) {
    FILE *table = fopen("/proc/self/mountinfo", "re");
    if (!table)
        return 1;
    char line[8192], point[4096];
    int inside = 0;
    while (!inside && fgets(line, sizeof line, table)) {
        if (sscanf(line, "%*s %*s %*s %*s %4095s", point) != 1)
            continue;
        for (size_t i = 0; i < sizeof WRITABLE / sizeof WRITABLE[0]; i++) {
            size_t n = strlen(WRITABLE[i].path);
            if (strncmp(point, WRITABLE[i].path, n) == 0 && point[n] == '/')
                inside = 1;
        }
    }
    fclose(table);
    return inside;
}

/* The System V IPC objects of the sandbox's namespace, listed in `file` (/proc/sysvipc/...,
 * the id in the second column), removed. 0, or -1 if one could not be. */
static int remove_ipc(const char *file, int kind) {
    FILE *listing = fopen(file, "re");
    if (!listing)
        return errno == ENOENT ? 0 : -1;
    char line[1024];
    int failed = 0;
    if (fgets(line, sizeof line, listing)) { /* the header */
        while (fgets(line, sizeof line, listing)) {
            long key;
            int id, done;
            if (sscanf(line, "%ld %d", &key, &id) != 2)
                continue;
            if (kind == 0)
                done = shmctl(id, IPC_RMID, NULL);
            else if (kind == 1)
                done = semctl(id, 0, IPC_RMID);
            else
                done = msgctl(id, IPC_RMID, NULL);
            if (done != 0 && errno != EINVAL && errno != EIDRM)
                failed = -1;
        }
    }
    fclose(listing);
    return failed;
}

/* The extended attributes a task may set on a directory it keeps (user.*, and POSIX ACLs,
 * whose defaults would shape the next task's files) removed. 0, or -1. */
static int remove_xattrs(const char *path) {
    char names[65536];
    ssize_t length = llistxattr(path, names, sizeof names);
    if (length < 0)
        return errno == ENOTSUP ? 0 : -1;
    int failed = 0;
    for (char *name = names; name < names + length; name += strlen(name) + 1) {
        if (strncmp(name, "user.", 5) != 0 && strncmp(name, "system.posix_acl_", 17) != 0)
            continue; /* security.* and trusted.*: not the task's to set */
        if (lremovexattr(path, name) != 0 && errno != ENODATA)
            failed = -1;
    }
    return failed;
}

/* Descriptors 0, 1 and 2 are the same open files for every task: flags one task set on
 * them (O_NONBLOCK, O_ASYNC and its owner and signal) are cleared before the next. */
static void reset_stdio(void) {
    for (int fd = 0; fd <= 2; fd++) {
        fcntl(fd, F_SETFL, 0);
        fcntl(fd, F_SETOWN, 0);
        fcntl(fd, F_SETSIG, 0);
    }
}

/* What the last task could have written, emptied for the next one. 0, or -1. */
static int tidy(void) {
    int failed = 0;
    for (size_t i = 0; i < sizeof WRITABLE / sizeof WRITABLE[0]; i++) {
        if (!WRITABLE[i].present)
            continue;
        if (chmod(WRITABLE[i].path, WRITABLE[i].mode) != 0) {
            failed = -1;
            continue;
        }
        if (remove_xattrs(WRITABLE[i].path) != 0)
            failed = -1;
        int fd = open(WRITABLE[i].path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0 || empty_dir(fd, 0) != 0)
            failed = -1;
    }
    /* Keys the task added to its user's keyrings, which belong to the sandbox's user
     * namespace and so outlive the task. */
    long keyrings[] = {KEY_SPEC_USER_KEYRING, KEY_SPEC_USER_SESSION_KEYRING};
    for (size_t i = 0; i < sizeof keyrings / sizeof keyrings[0]; i++)
        if (syscall(SYS_keyctl, KEYCTL_CLEAR, keyrings[i]) != 0 && errno != ENOSYS &&
            errno != EPERM)
            failed = -1;
    failed |= remove_ipc("/proc/sysvipc/shm", 0);
    failed |= remove_ipc("/proc/sysvipc/sem", 1);
    failed |= remove_ipc("/proc/sysvipc/msg", 2);
    return failed;
}

/* Exactly `length` bytes; 0, or -1 at the descriptor's end or an error. */
static int read_exactly(int fd, char *data, size_t length) {
    while (length > 0) {
        ssize_t n = read(fd, data, length);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        data += n;
        length -= (size_t)n;
    }
    return 0;
}

/* The next request's length (its `<length>\0` prefix); 0 at the descriptor's end
 * before one, -1 if malformed. */
static long read_length(int fd) {
    char text[24];
    size_t used = 0;
    for (;;) {
        char c;
        ssize_t n = read(fd, &c, 1);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return used == 0 ? 0 : -1;
        if (c == '\0')
            break;
        if (c < '0' || c > '9' || used == sizeof text - 1)
            return -1;
        text[used++] = c;
    }
    text[used] = '\0';
    long length = strtol(text, NULL, 10);
    return length > 0 && length < (1L << 30) ? length : -1;
}

/* The request's fields split in place at their NULs; NULL if it is malformed. */
static char **split(char *data, size_t length, size_t *count) {
    size_t fields = 1;
    for (size_t i = 0; i < length; i++)
        fields += data[i] == '\0';
    char **out = calloc(fields + 1, sizeof *out);
    if (!out)
        return NULL;
    size_t n = 0;
    out[n++] = data;
    for (size_t i = 0; i < length; i++)
        if (data[i] == '\0')
            out[n++] = data + i + 1;
    *count = n;
    return out;
}

/* One request: its task run, or why not reported; `last` set when the request says it is
 * the sandbox's last task (what it leaves is its caller's to read: nothing is emptied). */
static int serve_one(int status_fd, char *data, size_t length, int *last) {
    size_t count = 0, at = 0;
    char **fields = split(data, length, &count);
    if (!fields)
        return report(status_fd, 127, "error the sandbox could not read its task: %s",
                      strerror(errno));
    int code;
    long argc = strtol(fields[at++], NULL, 10);
    if (argc < 1 || (size_t)argc + 2 > count) {
        code = report(status_fd, 127, "error the sandbox's task request is malformed");
        free(fields);
        return code;
    }
    char **argv = fields + at;
    at += (size_t)argc;
    long envc = strtol(fields[at], NULL, 10);
    fields[at++] = NULL; /* ends argv */
    if (envc < 0 || at + (size_t)envc + 2 > count) {
        code = report(status_fd, 127, "error the sandbox's task request is malformed");
        free(fields);
        return code;
    }
    char **env = calloc((size_t)envc + 1, sizeof *env);
    if (!env) {
        code = report(status_fd, 127, "error the sandbox could not read its task: %s",
                      strerror(errno));
        free(fields);
        return code;
    }
    for (long i = 0; i < envc; i++)
        env[i] = fields[at++];
    const char *cwd = fields[at++];
    const char *limits = fields[at++];
    *last = at < count && strcmp(fields[at], "last") == 0;
    if (chdir(cwd) != 0)
        code = report(status_fd, 127, "error cannot enter the working directory '%s': %s", cwd,
                      strerror(errno));
    else
        code = run_task(status_fd, limits, argv, env, 1);
    free(env);
    free(fields);
    return code;
}

static int serve(int status_fd, int control_fd) {
    fcntl(status_fd, F_SETFD, FD_CLOEXEC);
    fcntl(control_fd, F_SETFD, FD_CLOEXEC);
    /* No task may trace PID 1 or open its descriptors through /proc: it outlives them. */
    prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
    serving = 1;
    forward_signals();
    note_writable();
    int once = mounts_inside();
    int code = 0;
    for (;;) {
        long length = read_length(control_fd);
        if (length == 0)
            return code; /* no more tasks (or none: the sandbox was not needed) */
        char *data = length > 0 ? malloc((size_t)length + 1) : NULL;
        if (!data || read_exactly(control_fd, data, (size_t)length) != 0) {
            free(data);
            return report(status_fd, 127, "error the sandbox could not read its task");
        }
        data[length] = '\0';
        int last = 1;
        reset_stdio();
        code = serve_one(status_fd, data, (size_t)length, &last);
        free(data);
        end_all(); /* nothing is left by now, unless the task could not start */
        if (last)
            return code;
        if (once || chdir("/") != 0 || tidy() != 0) {
            write_all(status_fd, "spent\n", 6);
            return code;
        }
        write_all(status_fd, "ready\n", 6);
    }
}

/* --as: the command run as uid:gid, no supplementary groups. */
static int run_as(const char *ids, char **command) {
    char *colon = strchr(ids, ':');
    if (!colon)
        return -1;
    uid_t uid = (uid_t)strtoul(ids, NULL, 10);
    gid_t gid = (gid_t)strtoul(colon + 1, NULL, 10);
    if (setgroups(0, NULL) != 0 || setresgid(gid, gid, gid) != 0 ||
        setresuid(uid, uid, uid) != 0) {
        dprintf(2, "orc-sandbox-init: cannot become %u:%u: %s\n", (unsigned)uid, (unsigned)gid,
                strerror(errno));
        return 126;
    }
    execvp(command[0], command);
    dprintf(2, "orc-sandbox-init: could not start '%s': %s\n", command[0], strerror(errno));
    return 127;
}

static int usage(void) {
    static const char text[] =
        "usage: orc-sandbox-init --init <status fd>:<rlimits> -- command [args...]\n"
        "       orc-sandbox-init --serve <status fd>:<control fd>\n"
        "       orc-sandbox-init --as <uid>:<gid> -- command [args...]\n";
    write_all(2, text, sizeof text - 1);
    return 2;
}

int main(int argc, char **argv) {
    signal(SIGPIPE, SIG_IGN); /* a status nobody reads is no reason to die early */
    if (argc == 3 && strcmp(argv[1], "--serve") == 0) {
        char *colon = strchr(argv[2], ':');
        if (!colon)
            return usage();
        return serve(atoi(argv[2]), atoi(colon + 1));
    }
    if (argc >= 5 && strcmp(argv[1], "--init") == 0 && strcmp(argv[3], "--") == 0) {
        char *colon = strchr(argv[2], ':');
        if (!colon)
            return usage();
        return init(atoi(argv[2]), colon + 1, argv + 4, NULL);
    }
    if (argc >= 5 && strcmp(argv[1], "--as") == 0 && strcmp(argv[3], "--") == 0) {
        int code = run_as(argv[2], argv + 4);
        return code < 0 ? usage() : code;
    }
    return usage();
}
