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
 * - `--serve` reads the task's request on the control descriptor until its end
 *   (`supervise.encode_request`: NUL-separated, counts first: argc, argv..., envc,
 *   NAME=value..., the working directory, the rlimits); nothing read: the sandbox was not
 *   needed, exit 0 quietly;
 * - SIGTERM, SIGINT and SIGHUP (a timeout, a cancel) are passed on to every process of the
 *   sandbox (kill(-1, ...): PID 1 itself is spared);
 * - the task is forked and exec'd with its limits set in the child (PID 1 counts towards
 *   `processes`), its PATH searched as execvpe would, no descriptor but 0, 1 and 2;
 * - every orphan is reaped; when the task itself ends, one of `exit <code>`,
 *   `signal <number>`, `error <message>` is written to the status descriptor in one
 *   write, and PID 1 exits: the kernel then kills whatever is left in the namespace.
 *
 * `--as` is its third use, outside the sandbox: a root worker starts bwrap as the tenant's uid
 * and gid with no supplementary groups through it (what util-linux's setpriv does, at a
 * static binary's start instead of a dynamic one's: runs/tasktypes/process.py, `_drop_to`).
 *
 * Built by `make install` (and the image) into the virtual environment's bin directory;
 * tests/runs/tasktypes run every sandbox test over both.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <grp.h>
#include <sys/resource.h>
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
    if ((size_t)n >= sizeof text)
        n = sizeof text - 1;
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

static int init(int status_fd, const char *limits, char **argv, char **env) {
    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_handler = on_signal;
    action.sa_flags = SA_RESTART;
    sigemptyset(&action.sa_mask);
    for (size_t i = 0; i < sizeof FORWARDED / sizeof FORWARDED[0]; i++)
        sigaction(FORWARDED[i], &action, NULL);
    fcntl(status_fd, F_SETFD, FD_CLOEXEC);

    char failed[4096];
    pid_t pid = start(argv, env, limits, failed, sizeof failed);
    if (!pid)
        return report(status_fd, 127, "error %s", failed);
    int status = 0;
    for (;;) { /* reap every orphan; the task's own end ends the sandbox */
        pid_t reaped = waitpid(-1, &status, 0);
        if (reaped < 0) {
            if (errno == EINTR)
                continue;
            break; /* ECHILD: nothing left (cannot happen before the task's end) */
        }
        if (reaped == pid)
            break;
    }
    if (WIFSIGNALED(status))
        return report(status_fd, 128 + WTERMSIG(status), "signal %d", WTERMSIG(status));
    return report(status_fd, WEXITSTATUS(status), "exit %d", WEXITSTATUS(status));
}

/* --- --serve: the request --------------------------------------------------------- */

static char *read_all(int fd, size_t *length) {
    size_t size = 65536, used = 0;
    char *data = malloc(size + 1);
    if (!data)
        return NULL;
    for (;;) {
        if (used == size) {
            char *grown = realloc(data, size * 2 + 1);
            if (!grown) {
                free(data);
                return NULL;
            }
            data = grown;
            size *= 2;
        }
        ssize_t n = read(fd, data + used, size - used);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        used += (size_t)n;
    }
    data[used] = '\0';
    *length = used;
    return data;
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

static int serve(int status_fd, int control_fd) {
    fcntl(status_fd, F_SETFD, FD_CLOEXEC);
    size_t length = 0;
    char *data = read_all(control_fd, &length);
    close(control_fd);
    if (!data)
        return report(status_fd, 127, "error the sandbox could not read its task: %s",
                      strerror(errno));
    if (length == 0)
        return 0; /* not needed */
    size_t count = 0, at = 0;
    char **fields = split(data, length, &count);
    if (!fields)
        return report(status_fd, 127, "error the sandbox could not read its task: %s",
                      strerror(errno));
    long argc = strtol(fields[at++], NULL, 10);
    if (argc < 1 || (size_t)argc + 2 > count)
        return report(status_fd, 127, "error the sandbox's task request is malformed");
    char **argv = fields + at;
    at += (size_t)argc;
    long envc = strtol(fields[at], NULL, 10);
    fields[at++] = NULL; /* ends argv */
    if (envc < 0 || at + (size_t)envc + 2 > count)
        return report(status_fd, 127, "error the sandbox's task request is malformed");
    char **env = calloc((size_t)envc + 1, sizeof *env);
    if (!env)
        return report(status_fd, 127, "error the sandbox could not read its task: %s",
                      strerror(errno));
    for (long i = 0; i < envc; i++)
        env[i] = fields[at++];
    const char *cwd = fields[at++];
    const char *limits = fields[at];
    if (chdir(cwd) != 0)
        return report(status_fd, 127, "error cannot enter the working directory '%s': %s", cwd,
                      strerror(errno));
    return init(status_fd, limits, argv, env);
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
