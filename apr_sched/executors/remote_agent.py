"""The agent that runs on a remote host, one per host, over one long-lived SSH channel.

It is sent as source over the channel's command line and runs under the host's python3
(3.6 or newer, standard library only: this file must not import apr_sched). It starts job
wrappers, signals their process groups, reports exits, streams log bytes by offset, and
answers probes; the login shell is paid once per host instead of once per job.

Every process of an attempt carries ``APR_SCHED_RUN=<absolute rc path>`` in its
environment, so a signal reaches the children that left the process group (``setsid``)
too: they are found through /proc/PID/environ.

Protocol: JSON lines. The scheduler writes commands to stdin, each with a ``req`` number
the reply repeats; the agent also sends ``log`` and ``exit`` notices unasked. A job keeps
running when the agent or its connection dies: wrappers are session leaders of their own,
and the next agent finds them again from the spool (rc file or /proc).
"""

import base64
import errno
import fcntl
import json
import os
import select
import signal
import subprocess
import sys
import time

VERSION = 1
TICK_SEC = 0.1
"""How often running jobs' logs are checked for new bytes (and adopted wrappers for exit)."""
CHUNK = 256 * 1024
ARGV0 = "apr-sched-job"
RUN_MARKER = "APR_SCHED_RUN"
"""Environment variable naming the attempt's rc file, in every process of the attempt."""
KILL_PASSES = 10
"""SIGKILL sweeps repeat until no marked process is left (a child forked meanwhile)."""


class Watch(object):
    """One attempt the agent reports on: its files, its process, how far its log was sent."""

    def __init__(self, job_id, attempt, directory, pgid, offset, child):
        self.job_id = job_id
        self.attempt = attempt
        self.log = os.path.join(directory, "%d.log" % attempt)
        self.rc = os.path.join(directory, "%d.rc" % attempt)
        self.pgid = pgid
        self.offset = offset
        self.child = child  # a Popen we started, or None for a wrapper adopted after restart
        self.pid_file = os.path.join(directory, "%d.pid" % attempt)
        self.lock_file = os.path.join(directory, "%d.lock" % attempt)
        self.abandoned = os.path.join(directory, "%d.abandoned" % attempt)


class Agent(object):
    def __init__(self, spool, wrapper):
        self.spool = os.path.abspath(os.path.expanduser(spool))
        self.wrapper = wrapper
        self.watches = {}
        self.out = sys.stdout.buffer
        self.buffer = b""

    def send(self, message):
        self.out.write(json.dumps(message, separators=(",", ":")).encode() + b"\n")

    def flush(self):
        self.out.flush()

    def job_dir(self, job_id):
        if not job_id or "/" in job_id or job_id.startswith("."):
            raise ValueError("invalid job id %r" % job_id)
        return os.path.join(self.spool, job_id)

    # commands ------------------------------------------------------------------------------
    def handle(self, command):
        op = command.get("op")
        req = command.get("req")
        try:
            reply = getattr(self, "op_" + str(op))(command)
        except Exception as exc:  # report, never die on one bad command
            reply = {"op": "error", "message": "%s: %s" % (type(exc).__name__, exc)}
        if reply is not None:
            reply["req"] = req
            self.send(reply)

    def op_start(self, command):
        """Start an attempt with an empty log: the scheduler streams it from offset 0, so
        bytes left by an earlier attempt of the same id (another state dir using this
        spool) must not be in it. A live wrapper of the same attempt is never replaced."""
        job_id, attempt = command["job_id"], int(command["attempt"])
        watch = Watch(job_id, attempt, self.attempt_dir(job_id), None, 0, None)
        lock = self.lock(watch)
        try:
            return self.start_locked(watch, command)
        finally:
            os.close(lock)

    def start_locked(self, watch, command):
        job_id, attempt = watch.job_id, watch.attempt
        if command.get("token") and self.abandoned_token(watch) == command["token"]:
            raise RuntimeError("attempt %d of job %s was given up by the scheduler"
                               % (attempt, job_id))
        running = self.recorded_wrapper(watch)
        if running:
            raise RuntimeError("attempt %d of job %s already runs here (pid %d)"
                               % (attempt, job_id, running))
        for stale in (watch.rc, watch.pid_file):
            if os.path.exists(stale):
                os.unlink(stale)
        log_fd = os.open(watch.log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND,
                         0o600)
        os.fchmod(log_fd, 0o600)  # owner-only, even for a log left by an earlier run
        workdir = command.get("workdir") or os.path.expanduser("~")
        argv = ["/bin/sh", "-c", self.wrapper, ARGV0, watch.rc, workdir, command["command"]]
        if command.get("output"):  # umask, output and error file: "$5 $6 $7" (no cgroup)
            argv += [""] + [str(arg) for arg in command["output"]]
        env = dict(os.environ)  # the job's variables go in the environment, never in argv
        env.update(command.get("env", {}))
        env[RUN_MARKER] = watch.rc
        try:
            child = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log_fd,
                                     stderr=subprocess.STDOUT, cwd=os.path.dirname(watch.rc),
                                     env=env,
                                     start_new_session=True, close_fds=True)
        finally:
            os.close(log_fd)
        watch.pgid, watch.child = child.pid, child
        self.write_pid_file(watch)
        self.watches[(job_id, attempt)] = watch
        return {"op": "started", "job_id": job_id, "attempt": attempt, "pgid": child.pid}

    def attempt_dir(self, job_id):
        directory = self.job_dir(job_id)
        if not os.path.isdir(directory):
            os.makedirs(directory, mode=0o700)
        return directory

    @staticmethod
    def lock(watch):
        """An exclusive lock on one attempt: a start and an abandon never interleave, even
        in two agents (after a reconnect the old one may still read its last commands)."""
        fd = os.open(watch.lock_file, os.O_WRONLY | os.O_CREAT, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX)
        return fd

    @staticmethod
    def abandoned_token(watch):
        try:
            with open(watch.abandoned) as f:
                return f.read()
        except (IOError, OSError):
            return None

    @staticmethod
    def write_pid_file(watch):
        try:
            with open(watch.pid_file, "w") as f:
                f.write("%d\n" % watch.pgid)
        except (IOError, OSError):
            pass  # only a shortcut: find_wrapper scans /proc without it

    def recorded_wrapper(self, watch):
        """The pid in the attempt's pid file, if that process is still its wrapper."""
        try:
            with open(watch.pid_file) as f:
                pid = int(f.read())
        except (IOError, OSError, ValueError):
            return None
        return pid if self.is_wrapper(pid, watch.rc) else None

    def op_watch(self, command):
        """Report on an attempt started earlier (after a reconnect or a scheduler restart)."""
        job_id, attempt = command["job_id"], int(command["attempt"])
        key = (job_id, attempt)
        offset = int(command.get("offset", 0))
        existing = self.watches.get(key)
        if existing is not None:
            existing.offset = offset
            return {"op": "watching", "job_id": job_id, "attempt": attempt, "state": "running",
                    "pgid": existing.pgid}
        directory = self.job_dir(job_id)
        watch = Watch(job_id, attempt, directory, command.get("pgid"), offset, None)
        if watch.pgid and self.is_wrapper(watch.pgid, watch.rc):
            state = "running"
        elif os.path.exists(watch.rc):
            state = "exited"
        else:
            watch.pgid = self.recorded_wrapper(watch) or self.find_wrapper(watch.rc)
            state = "running" if watch.pgid else "lost"
        if state == "lost":
            return {"op": "watching", "job_id": job_id, "attempt": attempt, "state": "lost"}
        self.watches[key] = watch
        return {"op": "watching", "job_id": job_id, "attempt": attempt, "state": state,
                "pgid": watch.pgid}

    def op_forget(self, command):
        self.watches.pop((command["job_id"], int(command["attempt"])), None)
        return {"op": "ok"}

    def op_abandon(self, command):
        """Kill an attempt the scheduler gave up on (it was requeued elsewhere). With the
        ``token`` of a start whose reply was lost, that start is also refused if it has
        not been read yet."""
        job_id, attempt = command["job_id"], int(command["attempt"])
        self.watches.pop((job_id, attempt), None)
        watch = Watch(job_id, attempt, self.attempt_dir(job_id), None, 0, None)
        lock = self.lock(watch)
        try:
            if command.get("token"):
                with open(watch.abandoned, "w") as f:
                    f.write(command["token"])
            pgid = command.get("pgid")
            if not (pgid and self.is_wrapper(pgid, watch.rc)):
                pgid = self.recorded_wrapper(watch) or self.find_wrapper(watch.rc)
            marked = self.signal_attempt(pgid, watch.rc, signal.SIGKILL)
        finally:
            os.close(lock)
        return {"op": "ok", "killed": bool(pgid or marked)}

    def op_signal(self, command):
        """Signal an attempt's process group and every process carrying its marker (those
        that left the group with setsid); works when the group itself is already gone."""
        pgid, signum = command.get("pgid") or None, int(command["signal"])
        rc = None
        if command.get("job_id") is not None:
            rc = os.path.join(self.job_dir(command["job_id"]),
                              "%d.rc" % int(command["attempt"]))
        elif pgid is None:
            raise ValueError("signal needs a process group or an attempt")
        group_alive = self.signal_attempt(pgid, rc, signum)
        return {"op": "ok", "gone": not group_alive}

    def signal_attempt(self, pgid, rc, signum):
        """Send ``signum`` to group ``pgid`` (if any) and to the processes marked with
        ``rc`` (if any). True if anything was there to signal."""
        hit = False
        if pgid is not None:
            pgid = int(pgid)
            if pgid < 2 or pgid == os.getpgrp():
                raise ValueError("refusing to signal process group %d" % pgid)
            try:
                os.killpg(pgid, signum)
                hit = True
            except OSError as exc:
                if exc.errno != errno.ESRCH:
                    raise
        if rc is None:
            return hit
        group_hit = hit
        for sweep in range(KILL_PASSES if signum == signal.SIGKILL else 1):
            marked = self.marked_pids(rc)
            for pid in marked:
                if sweep == 0 and group_hit and self.process_group(pid) == pgid:
                    continue  # had it through its group: a TERM trap must not run twice
                try:
                    os.kill(pid, signum)
                    hit = True
                except OSError:
                    pass  # ended meanwhile, or not ours to signal
            if not marked:
                break
        return hit

    @staticmethod
    def process_group(pid):
        """The process group of ``pid``, or None when it is gone."""
        try:
            with open("/proc/%d/stat" % pid) as f:
                return int(f.read().rsplit(")", 1)[1].split()[2])
        except (IOError, OSError, IndexError, ValueError):
            return None

    @staticmethod
    def marked_pids(rc):
        """Live processes whose environment holds exactly ``APR_SCHED_RUN=<rc>``; never the
        agent itself. Processes we may not read are skipped (zombies read as empty)."""
        marker = ("%s=%s" % (RUN_MARKER, rc)).encode()
        me = os.getpid()
        found = []
        for name in os.listdir("/proc"):
            if not name.isdigit() or int(name) == me:
                continue
            try:
                with open("/proc/%s/environ" % name, "rb") as f:
                    environ = f.read()
            except (IOError, OSError):
                continue
            if marker in environ.split(b"\0"):
                found.append(int(name))
        return found

    def op_trim(self, command):
        """Drop bytes ``start``..``end`` of an attempt's log (the scheduler's copy dropped
        them: it has them all and never asks for them again). Where the file system
        cannot punch holes the log is left whole."""
        path = os.path.join(self.job_dir(command["job_id"]), "%d.log" % int(command["attempt"]))
        start, end = int(command["start"]), int(command["end"])
        if not 0 <= start < end:
            raise ValueError("bad range %d..%d" % (start, end))
        fd = os.open(path, os.O_WRONLY)
        try:
            punched = punch_hole(fd, start, end - start)
        finally:
            os.close(fd)
        return {"op": "ok", "punched": punched}

    def op_probe(self, command):
        reply = {"op": "probe"}  # type: dict[str, object]
        try:
            with open("/proc/loadavg") as f:
                reply["load_avg_1m"] = float(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            pass
        try:
            with open("/proc/meminfo") as f:
                for line in f:
                    if line.startswith("MemAvailable:"):
                        reply["free_memory_gb"] = int(line.split()[1]) / (1024.0 * 1024.0)
        except (OSError, ValueError):
            pass
        try:
            if not os.path.isdir(self.spool):
                os.makedirs(self.spool)
            st = os.statvfs(self.spool)
            reply["free_disk_gb"] = st.f_bavail * st.f_frsize / float(1 << 30)
        except OSError:
            pass
        return reply

    # finding wrappers -------------------------------------------------------------------------
    @staticmethod
    def is_wrapper(pid, rc_path):
        try:
            with open("/proc/%d/cmdline" % int(pid), "rb") as f:
                argv = f.read().split(b"\0")
        except (OSError, ValueError):
            return False
        return ARGV0.encode() in argv and rc_path.encode() in argv

    def find_wrapper(self, rc_path):
        for name in os.listdir("/proc"):
            if name.isdigit() and self.is_wrapper(int(name), rc_path):
                return int(name)
        return None

    # the loop ------------------------------------------------------------------------------
    def stream(self, watch, to_end=False):
        """Send log bytes past ``watch.offset``; all of them when ``to_end``."""
        try:
            f = open(watch.log, "rb")
        except (IOError, OSError):
            return
        with f:
            f.seek(watch.offset)
            while True:
                data = f.read(CHUNK)
                if not data:
                    return
                self.send({"op": "log", "job_id": watch.job_id, "attempt": watch.attempt,
                           "offset": watch.offset,
                           "data": base64.b64encode(data).decode("ascii")})
                watch.offset += len(data)
                if not to_end:
                    return

    def has_ended(self, watch):
        if watch.child is not None:
            return watch.child.poll() is not None
        return not (watch.pgid and self.is_wrapper(watch.pgid, watch.rc))

    def finish(self, watch):
        self.stream(watch, to_end=True)
        rc = None
        try:
            with open(watch.rc) as f:
                text = f.read()
            if text.endswith("\n"):
                rc = int(text)
        except (IOError, OSError, ValueError):
            pass
        message = {"op": "exit", "job_id": watch.job_id, "attempt": watch.attempt, "rc": rc,
                   "size": watch.offset}
        if rc is None and watch.child is not None and watch.child.returncode is not None \
                and watch.child.returncode < 0:
            message["signal"] = -watch.child.returncode
            try:  # nothing may outlive its wrapper
                self.signal_attempt(watch.pgid, watch.rc, signal.SIGKILL)
            except (OSError, ValueError):
                pass
        self.send(message)
        del self.watches[(watch.job_id, watch.attempt)]

    def tick(self):
        for watch in list(self.watches.values()):
            if self.has_ended(watch):
                self.finish(watch)
            else:
                self.stream(watch)
        self.flush()

    def read_commands(self, fd):
        data = os.read(fd, 1 << 16)
        if not data:
            return False
        self.buffer += data
        while b"\n" in self.buffer:
            line, self.buffer = self.buffer.split(b"\n", 1)
            if line.strip():
                self.handle(json.loads(line.decode("utf-8")))
        return True

    def run(self):
        wake_r, wake_w = os.pipe()
        os.set_blocking(wake_w, False)
        signal.set_wakeup_fd(wake_w)
        signal.signal(signal.SIGCHLD, lambda *_: None)  # wake select when a job ends
        stdin = sys.stdin.fileno()
        os.makedirs(self.spool, mode=0o700, exist_ok=True)
        self.send({"op": "hello", "version": VERSION, "pid": os.getpid(),
                   "python": "%d.%d" % sys.version_info[:2], "spool": self.spool})
        self.flush()
        next_tick = time.monotonic()
        while True:
            timeout = max(0.0, next_tick - time.monotonic()) if self.watches else None
            try:
                ready, _, _ = select.select([stdin, wake_r], [], [], timeout)
            except InterruptedError:
                ready = []
            if wake_r in ready:
                os.read(wake_r, 4096)
            if stdin in ready and not self.read_commands(stdin):
                return  # the scheduler is gone; jobs keep running
            if wake_r in ready or time.monotonic() >= next_tick or stdin in ready:
                self.tick()
                next_tick = time.monotonic() + TICK_SEC


FALLOC_FL_KEEP_SIZE = 0x01
FALLOC_FL_PUNCH_HOLE = 0x02


def punch_hole(fd, offset, length):
    """Release ``length`` bytes at ``offset`` (they read back as zeros; the size stays).
    False where that cannot be done (no ctypes, or a file system without holes)."""
    try:
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        fallocate = libc.fallocate
        fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]
    except (ImportError, OSError, AttributeError):
        return False
    return fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, offset, length) == 0


def main():
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    config = json.loads(base64.b64decode(sys.argv[-1]).decode("utf-8"))
    try:
        Agent(config["spool"], config["wrapper"]).run()
    except (BrokenPipeError, KeyboardInterrupt):
        pass


if __name__ == "__main__":
    main()
