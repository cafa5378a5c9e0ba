#!/usr/bin/python3
"""sandboxd's gRPC process.v1.ProcessService for the dev cluster's sandboxd pods.

Runs under Debian's /usr/bin/python3 with python3-grpcio and python3-protobuf
(the dev cluster itself is stdlib-only and may run on another interpreter);
runtime.py --flavor sandboxd starts it beside the REST API and supervises it.

    /usr/bin/python3 tests/devcluster/grpc_server.py --host IP --port 9090 --root DIR
        [--gen-dir DIR] [--faults-file PATH] [--pod NS/NAME]

Prints exactly one line on stdout: `grpc listening on IP:PORT` once it serves,
or `grpc unavailable: WHY` (exit status 3) when grpc/protobuf/protoc are
missing. Serves until SIGTERM/SIGINT, then kills every process group it started.

Messages come from tests/devcluster/proto/process.proto, compiled by protoc
into --gen-dir (default /tmp/devcluster-grpc-gen-UID) at start; the service is
registered by hand (protoc alone does not write *_pb2_grpc.py).

Wire layout: this process owns the TCP listener at IP:PORT. Each accepted
connection is spliced byte for byte to the real grpcio server, which listens
on an abstract unix socket; a connection accepted while one of the
connection-level faults is on is served instead by a python3-h2 front that
relays each call to grpcio (see FAULTS). The splice lets one port switch
per connection between the two HTTP/2 implementations at run time.

Semantics (protocol.md 5.4, upstream pkg/server/process.go):
  * ProcessConfig: command argv (empty -> INVALID_ARGUMENT), env_vars appended
    to this daemon's environment, cwd confined to --root like the REST API's
    paths (escape -> PERMISSION_DENIED, missing -> NOT_FOUND; default the root).
    Unknown binary -> NOT_FOUND.
  * Every process runs in its own process group (pipes: setpgid, staying in
    the pod's session, which the kubelet sweeps when the pod goes or is
    killed; PTY: setsid with the PTY as controlling terminal and
    PR_SET_PDEATHSIG), so a killed pod leaves nothing behind.
  * Execute: stdin /dev/null, returns exit_code/stdout/stderr; at the call's
    deadline the group is SIGKILLed and the call ends DEADLINE_EXCEEDED.
  * Start: init{process_id} first, then stdout/stderr chunks of at most 4096
    bytes as they come, exit{exit_code} last (-1 when killed by a signal).
    Output is read only as fast as grpcio takes it (a queue of 4 chunks per
    process), so a slow client stalls the child instead of growing memory.
    The call ending early (cancel, deadline, connection lost) SIGKILLs the group.
    process_id is a virtual id (1, 2, 3...); it is forgotten when Start ends.
  * PTY: os.openpty, TIOCSWINSZ with the requested cols/rows; stdout carries
    the terminal output (no stderr events); WriteStdin eof sends the
    terminal's EOF character (^D) since the master stays open for output.
  * WriteStdin input/eof (unknown id -> NOT_FOUND; input after eof ->
    FAILED_PRECONDITION); SendSignal 2/9/15 to the group (others
    INVALID_ARGUMENT); ResizeTTY (FAILED_PRECONDITION without a PTY).

FAULTS: read from --faults-file (STATE/runtime-faults.json, which the
cluster writes from the `runtime` key of POST /_admin/faults), key "grpc":
    {"grpc": {"NS/POD" | "POD" | "*": {KNOB: VALUE, ...}}}
The entries that name this pod ("*", then "POD", then "NS/POD") are merged.
The file is stat'ed at every call and connection, so a knob applies to calls
(and, for the connection-level ones, connections) started after the admin
call that set it returned. Knobs are listed in FAULT_DOC below.
"""
import argparse
import ctypes
import errno
import fcntl
import hashlib
import json
import os
import queue
import select
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import termios
import threading
import time
import types

HERE = os.path.dirname(os.path.abspath(__file__))
PROTO_DIR = os.path.join(HERE, "proto")
SERVICE = "process.v1.ProcessService"
CHUNK = 4096
QUEUE_CHUNKS = 4
EXEC_WAIT_DELAY = 10.0                  # upstream's executeWaitDelay

FAULT_DOC = """
  grpc_slow_stream        int ms: Start sleeps this long before each stdout/stderr event
  grpc_goaway_mid_stream  true | {"after_messages": N (1), "grace_ms": G (1000)}: once a
                          Start stream has sent init and N output events, grpcio is
                          stopped with grace G (GOAWAY to every connection; calls still
                          running after G are cancelled) and a fresh grpcio server takes
                          new connections. Every Start stream while it is set does it.
  grpc_oversized          true | int bytes (4 MiB + 1 KiB): Execute's stdout and Start's
                          first stdout event are padded with 'x' to this many bytes
  grpc_rst_stream         true | int HTTP/2 error code (8 CANCEL) | {"code": C,
                          "after_messages": N (0)}: connection-level (h2 front); every
                          call is answered with response HEADERS, N messages, then
                          RST_STREAM(C)
  grpc_deadline           true | {"extra_ms": N (1000)}: connection-level (h2 front); the
                          call runs without its deadline and the answer is held until
                          the client's grpc-timeout + N ms has passed, so only the
                          client's own deadline can end it
  grpc_hpack_updates      true | {"headers": N (24), "value_bytes": B (180)}:
                          connection-level (h2 front); every response header block
                          starts with two dynamic-table size updates (0, then the
                          client's SETTINGS_HEADER_TABLE_SIZE) and carries N incremental-
                          indexing x-devcluster-fill-* headers of B bytes (evicting
                          earlier entries); trailers too
"""
FRONT_KNOBS = ("grpc_rst_stream", "grpc_deadline", "grpc_hpack_updates")


def log(msg):
    sys.stderr.write("grpc_server: %s\n" % msg)
    sys.stderr.flush()


# ---------------------------------------------------------------- generated code

def default_gen_dir():
    return os.path.join(tempfile.gettempdir(), "devcluster-grpc-gen-%d" % os.getuid())


def load_messages(gen_dir):
    """protoc process.proto into gen_dir/<hash of the .proto>/ once; import process_pb2."""
    src = os.path.join(PROTO_DIR, "process.proto")
    with open(src, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()[:16]
    out = os.path.join(gen_dir, digest)
    if not os.path.exists(os.path.join(out, "process_pb2.py")):
        os.makedirs(gen_dir, exist_ok=True)
        tmp = tempfile.mkdtemp(prefix=".gen-", dir=gen_dir)
        try:
            r = subprocess.run(["protoc", "-I", PROTO_DIR, "--python_out=" + tmp, src],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
            if r.returncode != 0:
                raise RuntimeError("protoc failed: %s" % r.stdout.decode(errors="replace"))
            try:
                os.rename(tmp, out)         # another pod may have won the race: fine
            except OSError:
                pass
        finally:
            if os.path.isdir(tmp):
                for n in os.listdir(tmp):
                    os.unlink(os.path.join(tmp, n))
                os.rmdir(tmp)
    sys.path.insert(0, out)
    import process_pb2                      # noqa: E402
    return process_pb2


# ---------------------------------------------------------------- faults

class PodFaults:
    def __init__(self, path, pod):
        self.path, self.lock = path, threading.Lock()
        ns, _, name = (pod or "").rpartition("/")
        self.keys = ["*"] + ([name, "%s/%s" % (ns, name)] if name else [])
        self.sig, self.knobs = None, {}

    def current(self):
        if not self.path:
            return {}
        try:
            st = os.stat(self.path)
            sig = (st.st_mtime_ns, st.st_size, st.st_ino)
        except OSError:
            sig = None
        with self.lock:
            if sig != self.sig:
                self.sig, self.knobs = sig, {}
                if sig is not None:
                    try:
                        with open(self.path, "rb") as f:
                            cfg = json.loads(f.read() or b"{}")
                        per = cfg.get("grpc") if isinstance(cfg, dict) else None
                        for k in self.keys:
                            v = per.get(k) if isinstance(per, dict) else None
                            if isinstance(v, dict):
                                self.knobs.update({a: b for a, b in v.items() if b is not None})
                        if self.knobs:
                            log("faults: %s" % json.dumps(self.knobs, sort_keys=True))
                    except (OSError, ValueError) as e:
                        log("faults: ignoring %s: %s" % (self.path, e))
            return dict(self.knobs)


def knob_dict(v, **defaults):
    """A knob given as true, a number or a dict -> dict with defaults."""
    out = dict(defaults)
    if isinstance(v, dict):
        out.update(v)
    return out


# ---------------------------------------------------------------- processes

_libc = ctypes.CDLL(None, use_errno=True)
PR_SET_PDEATHSIG = 1


def _pty_child_setup():
    # runs in the child between fork and exec (after setsid): take the PTY as
    # controlling terminal so ^C/^D and job control behave, and die with this
    # server, since a new session is out of reach of the kubelet's sweep
    _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


class Abort(Exception):
    def __init__(self, code, msg):
        Exception.__init__(self, msg)
        self.code, self.msg = code, msg


class Proc:
    def __init__(self, pid, popen, stdin_fd, master):
        self.id, self.popen = pid, popen
        self.stdin_fd = stdin_fd        # pipe write end, or None after eof
        self.master = master            # PTY master fd or None
        self.lock = threading.Lock()    # done flag, signals, resize
        self.wlock = threading.Lock()   # stdin writers and the close of stdin
        self.done = False

    def signal_group(self, sig):
        with self.lock:
            if self.done:
                return
            try:
                os.killpg(self.popen.pid, sig)
            except ProcessLookupError:
                pass
            except OSError:
                try:
                    self.popen.send_signal(sig)
                except OSError:
                    pass


class Registry:
    def __init__(self):
        self.lock = threading.Lock()
        self.procs = {}
        self.next = 1
        self.all = set()                # every live Popen (Execute included), for shutdown

    def add(self, popen, stdin_fd, master):
        with self.lock:
            pid = self.next
            self.next += 1
            p = Proc(pid, popen, stdin_fd, master)
            self.procs[pid] = p
            return p

    def get(self, pid):
        with self.lock:
            return self.procs.get(pid)

    def remove(self, pid):
        with self.lock:
            self.procs.pop(pid, None)

    def track(self, popen, on):
        with self.lock:
            (self.all.add if on else self.all.discard)(popen)

    def kill_all(self):
        with self.lock:
            live = list(self.all)
        for p in live:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except OSError:
                pass


class ProcessService:
    def __init__(self, grpc, pb, root, faults, registry, upstream):
        self.grpc, self.pb, self.faults = grpc, pb, faults
        self.registry, self.upstream = registry, upstream
        import runtime                      # the REST API's path rules (stdlib module)
        self.paths = types.SimpleNamespace(root=root)
        self.paths.sanitize = lambda p: runtime.SandboxdFlavor.sanitize(self.paths, p)
        self.PathEscapes, self.SanitizeError = runtime.PathEscapes, runtime.SanitizeError
        self.root = self.paths.sanitize(".")
        self.env = dict(os.environ)

    # ---- helpers
    def _abort(self, ctx, e):
        ctx.abort(getattr(self.grpc.StatusCode, e.code), e.msg)

    def _prepare(self, config):
        argv = list(config.command)
        if not argv:
            raise Abort("INVALID_ARGUMENT", "command is required")
        env = self.env
        if config.env_vars:
            env = dict(self.env)
            env.update(config.env_vars)
        cwd = self.root
        if config.HasField("cwd") and config.cwd != "":
            try:
                cwd = self.paths.sanitize(config.cwd)
            except self.PathEscapes:
                raise Abort("PERMISSION_DENIED",
                            "cwd: path traversal outside sandbox root is forbidden")
            except self.SanitizeError as e:
                raise Abort("INTERNAL", "cwd: %s" % e)
            except ValueError as e:         # a NUL byte
                raise Abort("INVALID_ARGUMENT", "cwd: %s" % e)
            if not os.path.exists(cwd):
                raise Abort("NOT_FOUND", "cwd: %s: no such file or directory" % config.cwd)
            if not os.path.isdir(cwd):
                raise Abort("INVALID_ARGUMENT", "cwd: %s: not a directory" % config.cwd)
        return argv, env, cwd

    def _spawn(self, argv, env, cwd, pty_size=None, stdin=subprocess.PIPE):
        master = slave = None
        try:
            if pty_size is not None:
                master, slave = os.openpty()
                cols, rows = pty_size
                if cols and rows:
                    fcntl.ioctl(master, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
                p = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, cwd=cwd,
                                     env=env, start_new_session=True, close_fds=True,
                                     preexec_fn=_pty_child_setup)
                os.close(slave)
                slave = None
            else:
                # no preexec_fn here: it forces fork() over vfork(), ~50 ms per command
                # on a busy machine. The child keeps the pod's session, which the
                # kubelet sweeps when the pod goes, so it cannot outlive the pod.
                p = subprocess.Popen(argv, stdin=stdin, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, cwd=cwd, env=env,
                                     process_group=0, close_fds=True, bufsize=0)
        except FileNotFoundError:
            for fd in (master, slave):
                if fd is not None:
                    os.close(fd)
            raise Abort("NOT_FOUND", 'exec: "%s": executable file not found in $PATH' % argv[0])
        except (OSError, ValueError, subprocess.SubprocessError) as e:
            for fd in (master, slave):
                if fd is not None:
                    os.close(fd)
            code = "INTERNAL"
            if isinstance(e, ValueError):   # a NUL byte in argv/env, '=' in an env name
                code = "INVALID_ARGUMENT"
            elif isinstance(e, OSError) and e.errno == errno.EACCES:
                code = "PERMISSION_DENIED"
            raise Abort(code, "failed to start command: %s" % e)
        self.registry.track(p, True)
        return p, master

    @staticmethod
    def _exit_code(rc):
        return rc if rc >= 0 else -1

    # ---- Execute
    def Execute(self, req, ctx):
        try:
            argv, env, cwd = self._prepare(req.config)
            p, _ = self._spawn(argv, env, cwd, stdin=subprocess.DEVNULL)
        except Abort as e:
            return self._abort(ctx, e)
        done = threading.Event()

        def on_end():                       # cancelled / deadline / connection lost
            if not done.is_set():
                try:
                    os.killpg(p.pid, signal.SIGKILL)
                except OSError:
                    pass
        ctx.add_callback(on_end)
        try:
            left = ctx.time_remaining()
            end = time.monotonic() + left if left is not None and left < 1e7 else None
            out, err, expired = self._collect(p, end)
            if expired:
                try:
                    os.killpg(p.pid, signal.SIGKILL)
                except OSError:
                    pass
                p.wait()
                done.set()
                return ctx.abort(self.grpc.StatusCode.DEADLINE_EXCEEDED,
                                 "deadline exceeded: command killed")
        finally:
            done.set()
            for fobj in (p.stdout, p.stderr):
                fobj.close()
            self.registry.track(p, False)
        f = self.faults.current()
        if f.get("grpc_oversized"):
            out = self._pad(out, f["grpc_oversized"])
        return self.pb.ExecuteResponse(exit_code=self._exit_code(p.returncode),
                                       stdout=out, stderr=err)

    @staticmethod
    def _collect(p, end):
        """stdout, stderr and whether `end` (monotonic, or None) passed first. Like
        upstream's WaitDelay, output still open EXEC_WAIT_DELAY s after the process
        exited (a background grandchild holding the pipe) is not waited for."""
        bufs = {p.stdout.fileno(): [], p.stderr.fileno(): []}
        fds = list(bufs)
        exited_at = None
        while fds:
            now = time.monotonic()
            if end is not None and now >= end:
                return b"", b"", True
            if exited_at is None and p.poll() is not None:
                exited_at = now
            if exited_at is not None and now - exited_at >= EXEC_WAIT_DELAY:
                break
            wait = 0.05 if end is None else max(0.0, min(0.05, end - now))
            for fd in select.select(fds, [], [], wait)[0]:
                data = os.read(fd, 65536)
                if data:
                    bufs[fd].append(data)
                else:
                    fds.remove(fd)
        try:
            p.wait(timeout=None if end is None else max(0.0, end - time.monotonic()))
        except subprocess.TimeoutExpired:
            return b"", b"", True
        return b"".join(bufs[p.stdout.fileno()]), b"".join(bufs[p.stderr.fileno()]), False

    @staticmethod
    def _pad(data, knob):
        n = knob if isinstance(knob, int) and not isinstance(knob, bool) else (4 << 20) + 1024
        return data + b"x" * max(0, n - len(data))

    # ---- Start
    def Start(self, req, ctx):
        pb = self.pb
        size = None
        if req.HasField("pty"):
            size = (req.pty.cols, req.pty.rows)
        try:
            argv, env, cwd = self._prepare(req.config)
            p, master = self._spawn(argv, env, cwd, size)
        except Abort as e:
            return self._abort(ctx, e)
        stdin_fd = master if master is not None else p.stdin.fileno()
        # stdin is written without blocking, so a child that does not read cannot
        # pin a WriteStdin call (and its lock) forever; the PTY reader copes too
        os.set_blocking(stdin_fd, False)
        proc = self.registry.add(p, stdin_fd, master)
        q = queue.Queue(QUEUE_CHUNKS)
        ended = threading.Event()

        def put(item):
            while not ended.is_set():
                try:
                    q.put(item, timeout=0.2)
                    return True
                except queue.Full:
                    continue
            return False

        def reader(fd, kind, pty_mode):
            try:
                while True:
                    if pty_mode:
                        # a grandchild may hold the slave open: stop once the child is reaped
                        r, _, _ = select.select([fd], [], [], 0.1)
                        if not r:
                            if p.poll() is not None and not select.select([fd], [], [], 0.05)[0]:
                                break
                            continue
                    try:
                        data = os.read(fd, CHUNK)
                    except BlockingIOError:
                        continue
                    except OSError:          # EIO: the slave side is gone
                        break
                    if not data or not put((kind, data)):
                        break
            finally:
                put(("eof", kind))

        def on_end():
            ended.set()
            if p.poll() is None:
                proc.signal_group(signal.SIGKILL)
        ctx.add_callback(on_end)

        if master is not None:
            streams = [(master, "stdout", True)]
        else:
            streams = [(p.stdout.fileno(), "stdout", False), (p.stderr.fileno(), "stderr", False)]
        for fd, kind, pm in streams:
            threading.Thread(target=reader, args=(fd, kind, pm), daemon=True,
                             name="out-%d-%s" % (proc.id, kind)).start()
        try:
            yield pb.StartResponse(init=pb.InitEvent(process_id=proc.id))
            open_streams = len(streams)
            sent = 0
            first_out = True
            while open_streams:
                try:
                    kind, data = q.get(timeout=0.2)
                except queue.Empty:
                    if ended.is_set():      # cancelled while idle: the readers put nothing
                        return              # more; finally reaps the child
                    continue
                if kind == "eof":
                    open_streams -= 1
                    continue
                f = self.faults.current()
                if f.get("grpc_slow_stream"):
                    time.sleep(float(f["grpc_slow_stream"]) / 1000.0)
                if first_out and kind == "stdout" and f.get("grpc_oversized"):
                    data = self._pad(data, f["grpc_oversized"])
                first_out = False
                yield pb.StartResponse(**{kind: data})
                sent += 1
                g = f.get("grpc_goaway_mid_stream")
                if g:
                    g = knob_dict(g, after_messages=1, grace_ms=1000)
                    if sent == int(g["after_messages"]):
                        self.upstream.goaway(float(g["grace_ms"]) / 1000.0)
            rc = p.wait()
            with proc.lock:
                proc.done = True
            yield pb.StartResponse(exit=pb.ExitEvent(exit_code=self._exit_code(rc)))
        finally:
            ended.set()
            self.registry.remove(proc.id)
            if p.poll() is None:
                proc.signal_group(signal.SIGKILL)
                p.wait()
            with proc.lock:
                proc.done = True
            self.registry.track(p, False)
            with proc.wlock:                # writers see done and leave within 0.2 s
                for fobj in (p.stdin, p.stdout, p.stderr):
                    if fobj is not None:
                        try:
                            fobj.close()
                        except OSError:
                            pass
                if master is not None:
                    os.close(master)
                proc.stdin_fd = proc.master = None

    # ---- unary control calls
    def _proc(self, pid):
        p = self.registry.get(pid)
        if p is None:
            raise Abort("NOT_FOUND", "process %d not found" % pid)
        return p

    def WriteStdin(self, req, ctx):
        try:
            p = self._proc(req.process_id)
            which = req.WhichOneof("payload")
            with p.wlock:
                if which == "eof":
                    if p.master is not None and not p.done:
                        self._write_all(p, p.master, b"\x04", ctx)     # the terminal's VEOF
                    elif p.stdin_fd is not None:
                        p.popen.stdin.close()
                        p.stdin_fd = None
                elif req.input:
                    if p.stdin_fd is None:
                        raise Abort("FAILED_PRECONDITION",
                                    "process %d has no stdin (closed)" % req.process_id)
                    self._write_all(p, p.stdin_fd, req.input, ctx)
        except Abort as e:
            return self._abort(ctx, e)
        return self.pb.WriteStdinResponse()

    @staticmethod
    def _write_all(p, fd, data, ctx):
        view = memoryview(data)
        while view:
            if p.done:
                raise Abort("FAILED_PRECONDITION", "process %d has exited" % p.id)
            try:
                view = view[os.write(fd, view):]
            except BlockingIOError:
                left = ctx.time_remaining()
                if left is not None and left <= 0:
                    raise Abort("DEADLINE_EXCEEDED", "deadline exceeded: the process did "
                                "not read its stdin (%d bytes left)" % len(view))
                if not ctx.is_active():
                    return
                select.select([], [fd], [], 0.2)
            except OSError as e:
                raise Abort("INTERNAL", "failed to write stdin: %s" % e)

    SIGNALS = {2: signal.SIGINT, 9: signal.SIGKILL, 15: signal.SIGTERM}

    def SendSignal(self, req, ctx):
        try:
            p = self._proc(req.process_id)
            sig = self.SIGNALS.get(req.signal)
            if sig is None:
                raise Abort("INVALID_ARGUMENT",
                            "unsupported or unspecified signal: %d" % req.signal)
        except Abort as e:
            return self._abort(ctx, e)
        p.signal_group(sig)
        return self.pb.SendSignalResponse()

    def ResizeTTY(self, req, ctx):
        try:
            p = self._proc(req.process_id)
            with p.lock:
                if p.master is None or p.done:
                    raise Abort("FAILED_PRECONDITION",
                                "failed to resize TTY: process is completed or has no active PTY")
                fcntl.ioctl(p.master, termios.TIOCSWINSZ,
                            struct.pack("HHHH", req.rows, req.cols, 0, 0))
        except Abort as e:
            return self._abort(ctx, e)
        return self.pb.ResizeTTYResponse()

    def handler(self):
        grpc, pb = self.grpc, self.pb

        def uu(fn, req, resp):
            return grpc.unary_unary_rpc_method_handler(
                fn, request_deserializer=req.FromString, response_serializer=resp.SerializeToString)
        return grpc.method_handlers_generic_handler(SERVICE, {
            "Execute": uu(self.Execute, pb.ExecuteRequest, pb.ExecuteResponse),
            "Start": grpc.unary_stream_rpc_method_handler(
                self.Start, request_deserializer=pb.StartRequest.FromString,
                response_serializer=pb.StartResponse.SerializeToString),
            "WriteStdin": uu(self.WriteStdin, pb.WriteStdinRequest, pb.WriteStdinResponse),
            "SendSignal": uu(self.SendSignal, pb.SendSignalRequest, pb.SendSignalResponse),
            "ResizeTTY": uu(self.ResizeTTY, pb.ResizeTTYRequest, pb.ResizeTTYResponse),
        })


# ---------------------------------------------------------------- grpcio servers

class Upstream:
    """The real grpcio server, on an abstract unix socket; replaced on a GOAWAY fault."""

    def __init__(self, grpc):
        self.grpc = grpc
        self.lock = threading.Lock()
        self.gen = 0
        self.server = None
        self.address = None             # "\0name" for socket.connect
        self.target = None              # the same for a grpcio channel
        self.service = None
        self.executor = None

    def start(self, service):
        from concurrent import futures
        self.service = service
        self.executor = futures.ThreadPoolExecutor(max_workers=128, thread_name_prefix="rpc")
        self._new_server()

    def _new_server(self):
        with self.lock:
            self.gen += 1
            name = "devcluster-grpc-%d-%d" % (os.getpid(), self.gen)
            server = self.grpc.server(self.executor, handlers=[self.service.handler()],
                                      options=[("grpc.so_reuseport", 0)])
            if server.add_insecure_port("unix-abstract:" + name) == 0:
                raise RuntimeError("grpcio could not bind unix-abstract:" + name)
            server.start()
            old, self.server = self.server, server
            self.address, self.target = "\0" + name, "unix-abstract:" + name
        return old

    def goaway(self, grace):
        """GOAWAY on every live connection (grpcio's graceful stop) while new ones
        reach a fresh server; runs in its own thread so the calling RPC goes on."""
        old = self._new_server()
        if old is not None:
            threading.Thread(target=lambda: old.stop(grace).wait(), daemon=True,
                             name="goaway").start()
        log("goaway: generation %d serves new connections; grace %.3fs" % (self.gen, grace))

    def stop(self):
        with self.lock:
            s = self.server
        if s is not None:
            s.stop(0).wait(5)


# ---------------------------------------------------------------- front listener

def _splice(a, b):
    """Copy a -> b until EOF/error; then half-close b (and wake the other direction)."""
    try:
        while True:
            data = a.recv(65536)
            if not data:
                break
            b.sendall(data)
    except OSError:
        pass
    try:
        b.shutdown(socket.SHUT_WR)
    except OSError:
        pass


class Front:
    def __init__(self, host, port, upstream, faults, h2front=None):
        self.upstream, self.faults, self.h2front = upstream, faults, h2front
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, port))
        self.sock.listen(128)
        self.port = self.sock.getsockname()[1]

    def serve_forever(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError as e:
                if e.errno in (errno.EINTR, errno.ECONNABORTED):
                    continue
                return
            c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            f = self.faults.current()
            if self.h2front is not None and any(f.get(k) for k in FRONT_KNOBS):
                threading.Thread(target=self.h2front.serve, args=(c, f), daemon=True,
                                 name="h2front").start()
                continue
            threading.Thread(target=self._pipe, args=(c,), daemon=True, name="splice").start()

    def _pipe(self, c):
        u = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            u.connect(self.upstream.address)
        except OSError as e:
            log("splice: upstream connect failed: %s" % e)
            u.close()
            c.close()
            return
        t = threading.Thread(target=_splice, args=(u, c), daemon=True, name="splice-down")
        t.start()
        _splice(c, u)
        t.join()
        u.close()
        c.close()


# ---------------------------------------------------------------- main

class _Shutdown(Exception):
    pass


def main(argv=None):
    ap = argparse.ArgumentParser(description="dev cluster sandboxd gRPC server")
    ap.add_argument("--host", required=True)
    ap.add_argument("--port", type=int, default=9090)
    ap.add_argument("--root", required=True)
    ap.add_argument("--gen-dir", default=default_gen_dir())
    ap.add_argument("--faults-file", default=None)
    ap.add_argument("--pod", default="")
    args = ap.parse_args(argv)
    try:
        import grpc
        pb = load_messages(args.gen_dir)
    except Exception as e:              # missing package or protoc: say so, REST goes on
        sys.stdout.write("grpc unavailable: %s: %s\n" % (type(e).__name__, e))
        sys.stdout.flush()
        return 3
    sys.path.insert(0, HERE)
    faults = PodFaults(args.faults_file, args.pod)
    registry = Registry()
    upstream = Upstream(grpc)
    service = ProcessService(grpc, pb, os.path.abspath(args.root), faults, registry, upstream)
    upstream.start(service)
    h2front = None
    try:
        import h2front as h2mod         # python3-h2 based front for connection-level faults
        h2front = h2mod.FaultFront(grpc, upstream, log)
    except ImportError as e:
        log("h2 front unavailable (%s): connection-level faults are ignored" % e)
    front = Front(args.host, args.port, upstream, faults, h2front)

    def on_signal(signum, frame):
        raise _Shutdown()
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    t = threading.Thread(target=front.serve_forever, daemon=True, name="front")
    t.start()
    sys.stdout.write("grpc listening on %s:%d\n" % (args.host, front.port))
    sys.stdout.flush()
    try:
        while True:
            time.sleep(3600)
    except _Shutdown:
        pass
    finally:
        registry.kill_all()
        try:
            front.sock.close()
        except OSError:
            pass
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)


if __name__ == "__main__":
    sys.exit(main())
