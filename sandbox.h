/* sandbox.h - v0.3.2 - agent sandboxes on Kubernetes, from C - MIT license (end of file)

   Creates, uses and destroys agent sandboxes on clusters running the
   kubernetes-sigs/agent-sandbox controller: a SandboxClaim is created and
   watched until Ready, a port-forward reaches the pod (in-process, over a
   WebSocket through the client's one `kubectl proxy`), and the program runs
   commands and moves files in and out. Closing the handle ends the route and
   deletes the claim, on every path. libc + POSIX + pthreads only.

   DO THIS
       #define SANDBOX_IMPLEMENTATION
       #include "sandbox.h"
   in *one* C or C++ file (before other system headers, or compile with
   -D_POSIX_C_SOURCE=200809L); other files just #include "sandbox.h".
   Link with -pthread (glibc 2.34 and later need nothing).

   QUICKSTART (one handle: the sandbox starts and owns its client)
       sbx_sandbox sb;
       sbx_sandbox_config cfg;
       sbx_exec_result res;
       memset(&cfg, 0, sizeof cfg);             zero = defaults
       cfg.template_name = "python-sandbox-template";
       cfg.ns = "default";
       if (sbx_open(&sb, NULL, &cfg) != SBX_OK) { puts(sb.err.msg); return 1; }
       if (sbx_run(&sb, "echo 'Hello, World!'", &res) == SBX_OK) {
           fwrite(res.out, 1, res.out_len, stdout);   res.diag: its stderr
           sbx_exec_result_free(&res);
       }
       sbx_close(&sb);             deletes the claim, stops the private client
   From a shell: sbx (examples/sbx.c, `make build/sbx`) runs, copies, lists and
   sweeps sandboxes on this API; README.md "Try it in a minute".
   Many sandboxes: open one sbx_client (sbx_client_open) and pass it to each
   sbx_open; they share its kubectl proxy, supervisor and connections. With a
   NULL client, cfg.client (an sbx_client_config, NULL = defaults) configures
   the private one.

   REQUIREMENTS
       - `kubectl` on PATH (or SANDBOX_KUBECTL / sbx_client_config.kubectl),
         configured for the cluster (KUBECONFIG, ~/.kube/config, or .kubeconfig
         and .context in sbx_client_config).
       - The agent-sandbox controller with extensions (SandboxClaim,
         SandboxTemplate, SandboxWarmPool). On clusters that serve v1beta1 a claim
         names a warm pool: a template name is resolved to the warm pool of that
         template in the namespace (most ready sandboxes first); create one with
         replicas: 0 for cold starts. v1alpha1-only clusters are handled too (the
         claim names the template). The code you write is the same for both.

   HOW IT WORKS
       sbx_client_open  starts the client's supervisor (see WHEN THE PROGRAM
                        DIES), then one `kubectl proxy --unix-socket` in a private
                        0700 directory (or uses api_url / $SANDBOX_API_URL, plain
                        http:// or unix:/path), shared by all its sandboxes over
                        kept-alive connections.
       sbx_open         discovers the API version, resolves template -> pool
                        (remembered by the client when at most one pool of the
                        template has replicas),
                        creates the claim, WATCHES it (never polls) from the
                        create's resourceVersion until Ready (re-watching after a
                        clean end or 410 Gone, with a bounded backoff on transient
                        failures; failing at once on terminal reasons and on
                        TemplateNotFound / WarmPoolNotFound, except that a
                        remembered pool that is gone is forgotten, its claim
                        deleted and the open made once more), reads the sandbox
                        and pod names and the pod IP, and connects (see MODES;
                        the WebSocket and API proxy routes connect to the pod
                        named after the sandbox while the Sandbox is read, and
                        keep that only when the Sandbox confirms pod and port),
                        ready when the runtime answered a health check, which also
                        tells which runtime the pod runs. Any failure rolls back
                        what was created (tunnel stopped, claim deleted).
       sbx_run ...      HTTP to the runtime; a dead route is reconnected before a
                        call (never in the middle of one), and a dead kubectl
                        proxy is restarted before an API request (see RETRIES).
       sbx_close        closes the WebSocket (close handshake), or stops kubectl
                        port-forward (SIGINT, then SIGKILL after 2 s, always
                        reaped); DELETE of the claim (404 counts as done).
       sbx_attach       connects to an existing Ready claim by name;
       sbx_detach       lets go of it without deleting it.
       kubectl's output is drained by a thread per child for the child's whole
       life, so a tunnel never stalls or dies on a full or closed pipe.
       Every claim sbx_open creates carries its owner: label
       app.kubernetes.io/managed-by=sandbox.h and annotations sandbox.h/owner-host
       (gethostname), sandbox.h/owner-pid, sandbox.h/owner-start (the process's
       start, seconds since the epoch; "" where the system does not say, i.e.
       off Linux) and sandbox.h/open-nonce (16 random hex digits per open), so a
       sweep can tell an orphan's claim from a live owner's. Your own labels
       and annotations are kept; keys of ours that you also give are ours.

   WHEN THE PROGRAM DIES (children and claims)
       Nothing the library starts outlives the program, however it ends:
       sbx_client_close, a return from main without closing, exit(), a crash,
       SIGKILL, Ctrl-C. Each client has a supervisor: a /bin/sh process (the
       script is fixed text inside sandbox.h; paths and names reach it as
       arguments, never as code) that holds the other end of a socket only the
       library holds (close-on-exec; kubectl children get fds 0-2 only). The
       library tells it which kubectl children (their process groups) and
       which claims are ours; a child is un-registered before it is reaped
       (no pid-reuse kill), a claim after its DELETE succeeded or when it is
       detached. When the program ends, the kernel closes the socket; the
       supervisor then sends SIGTERM to the registered children, SIGKILL 1 s
       later to what is left, and deletes the registered claims with `kubectl
       delete --wait=false` (the client's kubectl, kubeconfig and context; with
       an http:// api_url that URL and no kubeconfig), retried with backoff for
       about 8 s on transient errors; kubectl proxy's private socket directory
       is removed too. Measured with the dev cluster: children gone within
       about 50 ms of the owner's end (bound: about 1.1 s), claims gone after
       1.2-2 s (bound: 10 s while the API server is reachable). In ps it shows
       as /bin/sh with the argument sandbox.h-supervisor:<owner pid>.
       - Attached claims are not registered (we did not create them); a
         detached claim and anybody else's claim are never touched. A claim
         whose DELETE failed in sbx_close (or in a failed open's rollback)
         stays registered: the supervisor tries again when the client closes
         or the program ends.
       - The supervisor is not a child of your program (its shell parent exits
         at once: nothing to reap, no zombie), runs in its own session and
         ignores SIGINT/SIGHUP, so a Ctrl-C that kills your program does not
         kill its cleaner. No signal handler is installed in your process and
         nothing depends on the thread that opened the client.
       - Why a shell and not a forked copy of your program: a fork of a
         multi-threaded process may only make async-signal-safe calls, and it
         would keep your whole heap alive copy-on-write as your program writes
         to it. Cost: one fork+exec per sbx_client_open (about 10 ms), about
         0.7 MB RSS (128 kB of it private), one descriptor, no thread.
         sbx_client_close waits for its "done" (a few ms).
       - Limits: a fork() without exec in your program keeps the socket open in
         the copy, so the supervisor acts when both have ended. With a unix:
         api_url the supervisor cannot reach the API (kubectl cannot) and only
         kills children: use a lease. If the whole machine goes (or someone
         SIGKILLs the supervisor too), only a lease helps. On a system with
         no /bin/sh at all (a distroless image) there is no supervisor and
         the client works without it: use a lease there. Failing to start it
         otherwise fails sbx_client_open (SBX_ERR_SPAWN).
       LEASE (sbx_sandbox_config.lease_seconds, off by default): the claim is
       created with spec.lifecycle.shutdownTime = now + lease_seconds (policy
       shutdown_policy, default Delete) and one thread per client (started by
       the first leased sandbox, joined by sbx_client_close) moves it to now +
       lease_seconds every lease_seconds / 3 (a failed renewal is retried after
       1 s; a renewal never waits longer than lease_seconds / 3). Once the
       program or its machine is gone, the controller deletes the claim at most
       lease_seconds later (+ 1 s: shutdownTime rounds up to whole seconds).
       With ttl_seconds too, the earlier end wins: the lease never moves
       shutdownTime past creation + ttl_seconds. sbx_detach
       lifts the lease (shutdownTime back to the TTL's end, or no lifecycle);
       if that PATCH fails, detach returns the error and the claim expires at
       its last shutdownTime. Pick a lease well above the API's worst latency
       (e.g. 30-120 s; at least 3 s, as shutdownTime has whole seconds): a
       program stalled (SIGSTOP, debugger) longer than the lease loses its
       sandbox, and the machine's clock must agree with the cluster's to well
       within the lease. Leases apply to claims sbx_open creates (not to
       attached ones).

   MODES (sbx_client_config.mode: how runtime requests reach the pod)
       SBX_MODE_POD_TUNNEL    default: a port-forward to the pod, by one of
                              two routes (sbx_client_config.pod_route, or
                              $SANDBOX_POD_ROUTE=auto|websocket|kubectl):
         websocket            (AUTO, WEBSOCKET) in-process: each kept-alive
                              runtime connection is one WebSocket (the kubelet's
                              v4.channel.k8s.io port-forward) made through the
                              client's API connection, GET .../pods/POD/
                              portforward?ports=PORT. No process per sandbox:
                              the kubectl proxy is the client's only child. Text
                              on the error channel becomes the call's message; a
                              deleted pod ends the call with the server's words,
                              and later calls reconnect if the pod is back.
         kubectl port-forward (KUBECTL) the seed's way: one `kubectl
                              port-forward pod/POD 0:PORT --address 127.0.0.1`
                              child per sandbox (~50 ms and ~48 MB each).
                              AUTO falls back to it when the upgrade is refused
                              (any answer but 101, e.g. a proxy that drops
                              upgrades; not a 404 or a 400 naming the pod:
                              those are about the pod): decided once per
                              client, then every later sandbox uses it at
                              once. Force it with SBX_POD_ROUTE_KUBECTL when
                              something between you and the API server breaks
                              WebSockets in ways that still answer 101, or to
                              compare with kubectl.
                              sbx_route() names the route a sandbox uses.
       SBX_MODE_ROUTER_TUNNEL one `kubectl port-forward svc/sandbox-router-svc
                              0:8080` per client (router_namespace, default
                              agent-sandbox-system), shared by all its sandboxes,
                              started while the first claim becomes Ready. For
                              pods that cannot be port-forwarded (gVisor, Kata).
       SBX_MODE_GATEWAY       the router behind a Gateway: its address is watched
                              for in status.addresses (gateway_name/_namespace,
                              gateway_timeout_ms) and validated (an IP literal or
                              a DNS name, nothing else), then used as DIRECT.
       SBX_MODE_DIRECT        the router at router_url.
       SBX_MODE_IN_CLUSTER    straight to http://<pod IP>:PORT, for programs that
                              run inside the cluster (IPv4 preferred).
       SBX_MODE_API_PROXY     the API server's pods/POD:PORT/proxy through the
                              client's kubectl proxy: no process per sandbox.
       The router modes send X-Sandbox-ID (the sandbox name), -Namespace, -Port,
       -Pod-IP, -Timeout (the call's deadline) and, with router_token,
       "Authorization: Bearer"; the router's own 400/502/504 text reaches the
       message. With SBX_MODE_API_PROXY and your own proxy (api_url), give it a
       --reject-paths that matches only the exec and attach subresources of a
       pod (README.md has the exact value): kubectl's default rule is unanchored
       and also blocks the runtime's /execute behind pods/POD:PORT/proxy.

   RUNTIMES (sbx_sandbox_config.runtime; AUTO asks the pod)
       python (legacy, port 8888)  run, write, read, list, exists
       sandboxd (REST 8080,        write, read, list, exists, delete over REST;
                 gRPC 9090)        run, exec (argv, env, cwd) and processes over
                                   gRPC (see PROCESSES): pod routes and in-cluster
                                   mode only
       sbx_capabilities() says which; a call the runtime cannot do fails with
       SBX_ERR_UNSUPPORTED and a message naming the runtime.

   PROCESSES (sandboxd; gRPC process.v1.ProcessService on grpc_port, 9090)
       sbx_run is Execute of ["/bin/sh", "-c", command] (as both upstream SDKs
       send it); sbx_exec is Execute of cfg->argv (or /bin/sh -c cfg->command)
       with env_vars and cwd. The call's timeout becomes the gRPC deadline
       (grpc-timeout); stdout and stderr are byte-exact; a death by a signal
       is exit code -1. One Execute per call, never retried. The server's
       status becomes the result, its grpc-message goes into err.msg and
       err.grpc_status keeps the code: NOT_FOUND (no such program, cwd or
       process) SBX_ERR_NOT_FOUND; INVALID_ARGUMENT and FAILED_PRECONDITION
       (resize without a PTY, input after eof) SBX_ERR_INVALID_ARG;
       PERMISSION_DENIED (cwd outside the root) SBX_ERR_DENIED;
       DEADLINE_EXCEEDED SBX_ERR_TIMEOUT; UNAVAILABLE SBX_ERR_CONNECT;
       RESOURCE_EXHAUSTED SBX_ERR_TOO_BIG; UNIMPLEMENTED SBX_ERR_UNSUPPORTED;
       CANCELLED SBX_ERR_CLOSED; others SBX_ERR_RPC. A response message over
       SBX_GRPC_MAX_MESSAGE (4 MiB, as gRPC's own default) is SBX_ERR_TOO_BIG,
       except Execute's answer (sbx_run, sbx_exec): its stdout and stderr
       together are capped by max_output_bytes, as on the python runtime.
       Streaming (sbx_process_start, pull-style): Start's stream names the
       process (sbx_process_id), then sbx_process_read returns its stdout /
       stderr chunks (up to 4096 bytes each from sandboxd; PTY output is all
       stdout) as they arrive and finally its exit, repeated on every later
       read. Nothing is read ahead beyond one HTTP/2 stream window (256 KiB)
       per process: a process whose output is not read is held back by flow
       control, so memory stays flat (100 MB streamed by an -O2 client: peak
       RSS about 2 MB, tests/e2e/test_e2e_grpc.c). sbx_process_write /
       _close_stdin / _signal (2, 9, 15, to the process group) / _resize are
       unary calls. sbx_process_close cancels the stream and, unless the exit
       was seen, sends SIGKILL (NOT_FOUND, already gone, is fine).
       The connection: made on the first gRPC call of a sandbox (opening one
       costs nothing more), then kept: ONE HTTP/2 connection per sandbox,
       shared by its runs and all its processes (concurrent streams), made
       again after it died or got a GOAWAY. After a GOAWAY the streams the
       server kept go on over the old connection until they end, while new
       calls go over the new one at once. A peer that vanishes silently (a
       NAT or load balancer dropping the flow, a frozen pod network: no FIN,
       no reset) is noticed by keepalive PINGs: while a call waits on the
       connection and nothing has arrived for SBX_H2_KEEPALIVE_MS (5 min), a
       PING goes out; if nothing comes back within SBX_H2_PING_TIMEOUT_MS
       (20 s), every call on the connection fails with SBX_ERR_CONNECT ("no
       answer to PING in 20 s") and the next call connects again. So a quiet
       process read with long timeouts ends within about 5 min 20 s of its
       connection's death instead of never. Nothing is sent on a connection
       no call waits on. Routes: the WebSocket pod route
       opens a port-forward WebSocket (?ports=9090) per connection, closed
       with it: when it died, or after a GOAWAY once its last call ended (a
       process's at sbx_process_close), or when the sandbox and its last
       process are closed; the kubectl route's one
       `kubectl port-forward` child forwards both ports (0:PORT 0:9090) and
       each connection is a TCP connection of its own to it; in-cluster goes
       to POD_IP:9090. The router modes and the API server proxy are HTTP/1.1
       only: there run, exec and processes answer SBX_ERR_UNSUPPORTED saying
       so, and sbx_capabilities() lacks SBX_CAP_EXEC / _PROCESS / _EXEC_ENV.
       sbx_close / sbx_detach with processes still open: the processes are
       not freed (no use-after-free): every later call on them fails
       SBX_ERR_CLOSED, except sbx_process_close, which frees them (no kill is
       sent then; sbx_close deletes the pod and its processes). A read
       already waiting in another thread ends when the pod's connection does
       or at its timeout.
       SBX_NO_GRPC leaves the HTTP/2, HPACK, gRPC and process code out: then
       sbx_run and sbx_exec on sandboxd and sbx_process_start answer
       SBX_ERR_UNSUPPORTED ("built without gRPC"). Object size (gcc 12 -Os,
       x86-64, `size` text): about 163 kB with gRPC, 124 kB with SBX_NO_GRPC.

   RETRIES
       A command is never sent twice: run, python uploads, writes from a
       descriptor and deletes of files are sent once, whatever happens. Reads,
       lists, exists (and sandboxd writes from memory) and API GET/DELETE are
       retried on connection failures and 502/503/504 (the API also 500) with a
       jittered backoff (100 ms doubling to 2 s, at most 5 tries), always inside
       the call's deadline; 429 waits for Retry-After when it fits the deadline.
       Any API request whose connection was refused (nothing was sent) is sent
       again. Redirects are never followed: a 3xx is an error naming the Location.
       Open retries every step that is safe to repeat, so a transient API error
       (5xx, 429, a lost connection) does not fail it:
       - the claim create is sent again with the same name. Every open writes a
         random annotation sandbox.h/open-nonce; a 409 after a try that may have
         landed is checked against it: our nonce means that try created the
         claim, which is adopted; any other claim of that name is never adopted
         or deleted (the open fails with the 409). A failed open deletes a claim
         whose create was not answered only if it carries its nonce.
       - discovery, the pool lookup and the claim watch retry as above (a watch
         that could not start backs off and starts again);
       - `kubectl port-forward` is started again, with backoff inside the
         tunnel deadline, when it failed on a transient server error (its words
         say InternalError, ServiceUnavailable, TooManyRequests, Timeout,
         connection refused or reset); NotFound, Forbidden or a pod that is not
         running fail at once, in kubectl's words. The same holds for the
         restart of a tunnel that died. (kubectl reads the pod twice in a row
         before it forwards, so it cannot start while every 2nd request fails.)
       The client's `kubectl proxy` is supervised like the tunnels: if it died,
       the next API call of any thread (sbx_close's DELETE included) starts a
       new one on the same socket, once, inside that call's deadline.

   LOGGING (sbx_client_config.logger; silent by default)
       A function pointer and a user pointer, as in sokol: the library calls
       func(&event, user) with one sbx_event (level, kind, claim name, a number,
       a short message) for each step it takes:
         PROXY_STARTED   kubectl proxy started (number 0) or restarted (count)
         CLAIM_CREATED   the claim exists (number: POSTs it took)
         READY           Ready after N ms (number)
         ROUTE           connected; message: sbx_route()'s words
         TUNNEL_STARTED  kubectl port-forward (re)started (number: starts)
         FALLBACK        WebSocket refused -> kubectl port-forward
         RETRY           a step tried again; number: the attempt; message: why
                         (a watch started again after its stream ended, a 410
                         Gone or a failure counts too: number: the watch)
         CLAIM_DELETED   cleanup: the claim was deleted
         CHILDREN_STOPPED cleanup: client closed, its children and supervisor gone
       For an open/run/close: PROXY_STARTED, CLAIM_CREATED, READY, ROUTE,
       CLAIM_DELETED, CHILDREN_STOPPED (the last with a private or closed client).
       Levels: INFO for the steps, WARN for retries, fallbacks and restarts.
       Threads: func runs on the thread that made the call (any thread using
       the client) and on the client's lease thread (renewal retries), possibly
       on several at once: make it thread-safe. The library holds none of its
       locks while calling it; it may call sbx_route() and the name getters,
       and must not close the handle or client it is told about.

   CONFIGURATION MACROS (define before including the implementation)
       SBX_STATIC                  all functions static (private copy per unit)
       SBX_API                     prefix of public functions; default extern
       SBX_MALLOC(n), SBX_REALLOC(p,n), SBX_FREE(p)
                                   all three or none; default malloc/realloc/free
       SBX_ERRMSG_SIZE             512; bytes of the message in every handle
       SBX_MAX_HEADER_BYTES        65536; bytes of one HTTP response head
       SBX_MAX_HEADERS             64; header fields in one HTTP response
       SBX_MAX_RESPONSE_BYTES      256 MiB; default cap of run output and reads
                                   held in memory (sbx_sandbox_config overrides)
       SBX_MAX_API_BYTES           16 MiB; one Kubernetes API answer
       SBX_MAX_LINE_BYTES          16 MiB; one watch event
       SBX_JSON_MAX_DEPTH          64; nesting of JSON documents
       SBX_WS_MAX_MESSAGE          16 MiB; one WebSocket message from the pod
                                   route (data is streamed, never held whole;
                                   frames need no allocation)
       SBX_NO_GRPC                 not defined; defined, it leaves out the HTTP/2,
                                   HPACK and gRPC client that sandboxd's process
                                   API rides on
       SBX_GRPC_MAX_MESSAGE        4 MiB; one gRPC response message (a bigger one
                                   is SBX_ERR_TOO_BIG and cancels the call);
                                   Execute's answer is bounded by max_output_bytes
       SBX_H2_KEEPALIVE_MS         300000 (5 min); silence on a gRPC connection
                                   with a call waiting after which a PING goes
                                   out (0: never). Default gRPC servers (Go and
                                   C core) refuse more than one per 5 min on a
                                   stream that sends nothing (GOAWAY
                                   too_many_pings, which doubles it)
       SBX_H2_PING_TIMEOUT_MS      20000; no answer to that PING (nothing at all
                                   received) within it: the connection is dead
   Environment (read, never written): SANDBOX_KUBECTL, SANDBOX_API_URL,
   SANDBOX_POD_ROUTE; kubectl itself reads KUBECONFIG and the rest of its usual
   environment.

   API (details beside each declaration below)
       sbx_client_open / sbx_client_close     the connection to a cluster
       sbx_open / sbx_close                   one sandbox (claim + connection)
       sbx_attach / sbx_detach                an existing claim; let go of one
       sbx_status                             Ready / not Ready / gone, and why
       sbx_delete_claim / sbx_list_claims     claims by name; by label selector, with
                                              Ready, age and owner
       sbx_run                                a command (python runtime: no shell,
                                              the string is split like a shell's words)
       sbx_exec                               a program with argv, env, cwd, timeout
       sbx_process_start / _read / _write / _close_stdin / _signal / _resize /
       _id / _close                           a streaming process (sandboxd): output
                                              as it comes, stdin, signals, a PTY
       sbx_write / sbx_read                   files from / into memory
       sbx_write_fd / sbx_read_fd             files from / into a descriptor
       sbx_list_dir / sbx_exists / sbx_remove_file
                                              directories, existence, file removal
       sbx_capabilities                       what the pod's runtime can do
       sbx_route                              which route a sandbox uses
       sbx_set_call_timeout                   deadline of later calls
       sbx_claim_name / sbx_sandbox_name / sbx_pod_name / sbx_pod_ip /
       sbx_namespace                          identity of an open sandbox
       sbx_exec_result_free / sbx_free        release what the library returned
       sbx_client_config.logger               events of the client's sandboxes
       sbx_strerror                           fixed text of a result code

   ERRORS
       Every fallible function returns an sbx_result: SBX_OK (0) or a negative
       SBX_ERR_* code, and leaves in the handle it was called on (client.err or
       sb.err) the code, errno where a system call failed, the HTTP status where
       a server answered with an error, and a message naming what failed with
       the server's or kubectl's own words, for example
         open sandbox (claim sandbox-claim-1f2e3d4c): claim "sandbox-claim-
         1f2e3d4c": WarmPoolNotFound: SandboxWarmPool "python-pool" not found
       The first failures say what to fix: with no reachable cluster,
         no Kubernetes cluster reachable: tried kubeconfig /home/u/.kube/config
         (kubectl's default; no such file), context (none), server
         127.0.0.1:8080 (...): dial tcp ...: connection refused. Point ...
       (SBX_ERR_CONNECT), and on a cluster without agent-sandbox, the API group
       that is missing and what to install (SBX_ERR_UNSUPPORTED).
       A successful call clears the error. Bad input never crashes, hangs past a
       deadline, or grows memory without bound; the library never prints, never
       exits or aborts, installs no signal handler and keeps no global state.

   MEMORY AND OWNERSHIP
       - sbx_client and sbx_sandbox are caller-owned structs. sbx_client_open and
         sbx_open always initialise them first, so closing is safe after a failed
         open and closing twice is harmless. Do not copy a live handle.
       - Strings and arrays passed in are borrowed for the duration of the call.
       - Memory the library returns (sbx_exec_result out/diag, sbx_read data,
         sbx_list_dir and sbx_list_claims entries) is released with
         sbx_exec_result_free or sbx_free, and
         only so; it stays valid after the sandbox and the client are closed.
         Returned text is NUL-terminated (the NUL is not counted in lengths).
       - Out-parameters are zeroed on entry, so releasing after a failure is safe.
       - The allocator in sbx_client_config (or SBX_MALLOC...) serves everything.

   THREAD SAFETY
       Separate sandboxes may be used from separate threads at once, and one
       client may be shared by all of them (its connection pool and shared router
       tunnel are locked); the client-level calls (sbx_delete_claim,
       sbx_list_claims) are thread-safe and report into their own err argument. One
       sandbox must not be used by two threads at the same time. Close every
       sandbox before its client.
       Processes: sbx_process_start is a call on the sandbox (the rule above).
       A process handle may be read by one thread while others write to it,
       close its stdin, signal or resize it; different processes of one sandbox
       may be used from different threads at once, and also while another
       thread uses the sandbox itself (they share only its HTTP/2 connection,
       which is locked). sbx_process_close must not overlap another call on
       the same process. A user allocator must be thread-safe when
       several threads use the library, and so must a logger (see LOGGING).
       The library starts one thread per kubectl
       child (to drain its output), one lease thread per client that has a
       leased sandbox, and never touches signal dispositions; its descriptors
       are close-on-exec, and its children get only fds 0-2.

   LIMITS AND SECURITY
       - The API is reached only through kubectl proxy on a private unix socket
         (or the URL you give); the runtime through that same API connection
         (WebSocket port-forward, API proxy) or 127.0.0.1 tunnels, or in the
         router, gateway, direct and in-cluster modes over plain HTTP to the
         address the cluster (or you) named. Redirects are never followed. There
         is no TLS in the library: kubectl does the authenticated part.
       - Names that come from the cluster (sandbox, pod, Gateway address) are
         validated before they go into a path, a header or a URL.
       - Paths inside the sandbox are relative to the runtime's base directory: a
         leading "/" is dropped; ".", ".." segments, control characters and
         invalid UTF-8 are refused. The legacy runtime decodes paths twice; the
         library encodes them twice, so names containing "%" round-trip.
       - Commands and paths must be valid UTF-8 (they travel in JSON and HTTP
         headers); invalid bytes are refused, never altered. The upstream runtime
         decodes command output as UTF-8 text (invalid output fails the command)
         and turns a lone CR into LF; file transfer is byte-exact.
       - `run` sends a command once: a failed call is never re-sent.

   THE SOURCE
       Below the API the implementation reads bottom-up: each section uses only
       those above it. Search for ">>name": util, json, http, conn, ws, [hpack, h2,
       grpc: the gRPC transport, compiled out as a unit by SBX_NO_GRPC], proc,
       kube, claim, route, api, calls.
*/
#ifndef SANDBOX_H
#define SANDBOX_H

#include <stddef.h>

#define SANDBOX_VERSION_MAJOR 0
#define SANDBOX_VERSION_MINOR 3
#define SANDBOX_VERSION_PATCH 2
#define SANDBOX_VERSION_STRING "0.3.2"

#ifndef SBX_API
#ifdef SBX_STATIC
#if defined(__GNUC__) || defined(__clang__)
#define SBX_API static __attribute__((unused))
#else
#define SBX_API static
#endif
#else
#define SBX_API extern
#endif
#endif

/* Size of the message buffer inside every handle (bytes, including the NUL). */
#ifndef SBX_ERRMSG_SIZE
#define SBX_ERRMSG_SIZE 512
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* ---------------------------------------------------------------- results */
typedef enum sbx_result {
    SBX_OK = 0,
    SBX_ERR_INVALID_ARG = -1,  /* a caller mistake: bad name, path, option        */
    SBX_ERR_NOMEM = -2,        /* an allocation failed                            */
    SBX_ERR_SYS = -3,          /* a system call failed (err.sys_errno says which) */
    SBX_ERR_SPAWN = -4,        /* kubectl could not start or exited early         */
    SBX_ERR_TIMEOUT = -5,      /* a deadline passed                               */
    SBX_ERR_CONNECT = -6,      /* could not connect, or the peer closed           */
    SBX_ERR_HTTP = -7,         /* the server answered with an error status        */
    SBX_ERR_PROTOCOL = -8,     /* the peer broke HTTP or JSON rules               */
    SBX_ERR_TOO_BIG = -9,      /* a response exceeded its configured cap          */
    SBX_ERR_NOT_FOUND = -10,   /* the object or file does not exist               */
    SBX_ERR_SANDBOX = -11,     /* the controller reported a failure (reason)      */
    SBX_ERR_DELETED = -12,     /* the claim was deleted while we waited           */
    SBX_ERR_UNSUPPORTED = -13, /* this runtime or cluster cannot do that          */
    SBX_ERR_CLOSED = -14,      /* the handle is closed or was never opened        */
    SBX_ERR_DENIED = -15,      /* the server refused: permission denied           */
    SBX_ERR_RPC = -16          /* a gRPC call failed (err.grpc_status says how)   */
} sbx_result;

/* Detail of the last failure, kept inside each handle (never global). */
typedef struct sbx_error {
    sbx_result code;            /* result of the last call on the handle        */
    int sys_errno;              /* errno of a failed system call, else 0        */
    int http_status;            /* HTTP status of a failed request, else 0      */
    int grpc_status;            /* gRPC status of a failed call, else 0         */
    char msg[SBX_ERRMSG_SIZE];  /* what failed, with the server's own words     */
} sbx_error;

/* Runtime allocator; all-NULL means SBX_MALLOC / SBX_REALLOC / SBX_FREE.
   Must be thread-safe when handles are used from several threads. */
typedef struct sbx_allocator {
    void *(*alloc)(size_t size, void *user);
    void *(*realloc)(void *ptr, size_t size, void *user);
    void (*free)(void *ptr, void *user);
    void *user;
} sbx_allocator;

/* ---------------------------------------------------------------- handles
   Caller-owned; fields are read-only for the caller. Do not copy a live handle. */
struct sbx__client;
struct sbx__sandbox;

typedef struct sbx_client {
    sbx_error err;               /* why the last client-level call failed */
    struct sbx__client *impl;    /* private; NULL when closed */
} sbx_client;

typedef struct sbx_sandbox {
    sbx_error err;               /* why the last call on this sandbox failed */
    struct sbx__sandbox *impl;   /* private; NULL when closed */
} sbx_sandbox;

/* How runtime requests reach a sandbox (sbx_client_config.mode). */
typedef enum sbx_mode {
    SBX_MODE_POD_TUNNEL = 0,   /* default: one `kubectl port-forward pod/POD 0:PORT` per sandbox  */
    SBX_MODE_ROUTER_TUNNEL,    /* one `kubectl port-forward svc/sandbox-router-svc 0:8080` per
                                  client, shared by its sandboxes; router headers on every call */
    SBX_MODE_GATEWAY,          /* the router behind a Gateway: http://<status.addresses[].value>:80 */
    SBX_MODE_DIRECT,           /* the router at router_url (e.g. an in-cluster Service URL)     */
    SBX_MODE_IN_CLUSTER,       /* straight to http://<pod IP>:PORT (the caller runs in the cluster) */
    SBX_MODE_API_PROXY         /* the API server's pods/POD:PORT/proxy, over the client's own API
                                  connection (kubectl proxy): no process per sandbox             */
} sbx_mode;

/* How SBX_MODE_POD_TUNNEL reaches the pod (sbx_client_config.pod_route). */
typedef enum sbx_pod_route {
    SBX_POD_ROUTE_AUTO = 0,    /* default: in-process WebSocket port-forward through the client's
                                  API connection; kubectl port-forward when the upgrade is refused */
    SBX_POD_ROUTE_WEBSOCKET,   /* WebSocket only (no fallback)                                   */
    SBX_POD_ROUTE_KUBECTL      /* one `kubectl port-forward` child per sandbox (the seed's way)  */
} sbx_pod_route;

/* ---------------------------------------------------------------- logging
   The logger hook (sbx_client_config.logger), sokol-style: silent unless set.
   The library calls func(&event, user) once per event below; event and its
   strings live only for the call (copy what you keep). Filter on level
   yourself. func may be called from any thread that calls into the library
   with this client (sbx_open, sbx_run, sbx_close, ...) and from the client's
   lease thread (retries of a lease renewal), possibly from several threads at
   once, so it must be thread-safe; the library holds none of its own locks
   while it calls func, so func may call sbx_route, sbx_claim_name and the
   like, but must not close the handle or the client it is told about. */
typedef enum sbx_log_level {
    SBX_LOG_ERROR = 1,         /* something failed for good (also in the call's sbx_error) */
    SBX_LOG_WARN = 2,          /* a retry, a fallback, a restart: trouble that was handled */
    SBX_LOG_INFO = 3           /* the normal steps of a sandbox's life                    */
} sbx_log_level;

typedef enum sbx_event_kind {
    SBX_EVENT_PROXY_STARTED = 1, /* kubectl proxy started; number 0 at client open, else the
                                    restart's count (the last one died)                   */
    SBX_EVENT_CLAIM_CREATED,   /* the SandboxClaim exists; name = claim; number = tries     */
    SBX_EVENT_READY,           /* the claim is Ready; number = ms from create to Ready      */
    SBX_EVENT_ROUTE,           /* connected; message = sbx_route()'s words                  */
    SBX_EVENT_TUNNEL_STARTED,  /* a kubectl port-forward child (re)started; number = starts
                                  of this sandbox's tunnel (2 and up: a restart), or of the
                                  client's router tunnel (name "")                          */
    SBX_EVENT_FALLBACK,        /* WebSocket upgrade refused: kubectl port-forward from now on
                                  for this client; message = the refusal                    */
    SBX_EVENT_RETRY,           /* a step is tried again; number = the attempt that failed;
                                  message = what and why                                    */
    SBX_EVENT_CLAIM_DELETED,   /* cleanup: the claim was deleted (close, failed open)       */
    SBX_EVENT_CHILDREN_STOPPED /* cleanup: client close stopped its children and its
                                  supervisor; number = children stopped                     */
} sbx_event_kind;

typedef struct sbx_event {
    sbx_log_level level;
    sbx_event_kind kind;
    const char *name;          /* the claim's name, or "" for client-level events         */
    long long number;          /* milliseconds, attempt or count, as the kind says        */
    const char *message;       /* one short line, e.g. "GET /apis/...: HTTP 503: ..., again in 120 ms" */
} sbx_event;

typedef struct sbx_logger {
    void (*func)(const sbx_event *event, void *user);  /* NULL: silent (default) */
    void *user;                                         /* passed back unchanged */
} sbx_logger;

typedef struct sbx_client_config {
    const char *kubectl;       /* default: $SANDBOX_KUBECTL, else "kubectl" on PATH   */
    const char *kubeconfig;    /* default: kubectl's choice ($KUBECONFIG, ~/.kube/config) */
    const char *context;       /* default: the kubeconfig's current context            */
    const char *ns;            /* default namespace of sandboxes: "default"           */
    const char *api_url;       /* default: $SANDBOX_API_URL; unset: start kubectl proxy.
                                  "http://127.0.0.1:8001" or "unix:/path/to/socket"   */
    int proxy_timeout_ms;      /* kubectl proxy start-up deadline; default 15000      */
    int api_timeout_ms;        /* each Kubernetes API request; default 30000          */
    sbx_mode mode;             /* default SBX_MODE_POD_TUNNEL                          */
    const char *router_namespace;  /* ROUTER_TUNNEL: namespace of sandbox-router-svc;
                                      default "agent-sandbox-system"                   */
    const char *router_url;    /* DIRECT (required): "http://host[:port][/prefix]"     */
    const char *router_token;  /* router modes: sent as "Authorization: Bearer <token>";
                                  default none                                         */
    const char *gateway_name;  /* GATEWAY: default "external-http-gateway"             */
    const char *gateway_namespace; /* GATEWAY: default "default"                       */
    int gateway_timeout_ms;    /* GATEWAY: wait for an address; default 180000         */
    sbx_allocator allocator;   /* default: SBX_MALLOC / SBX_REALLOC / SBX_FREE        */
    sbx_pod_route pod_route;   /* POD_TUNNEL: default $SANDBOX_POD_ROUTE (auto, websocket,
                                  kubectl), else AUTO                                  */
    sbx_logger logger;         /* events of this client and its sandboxes; default none */
} sbx_client_config;

/* Which server runs in the pod (sbx_sandbox_config.runtime). */
typedef enum sbx_runtime {
    SBX_RUNTIME_AUTO = 0,      /* default: ask the pod (GET / answers on the python runtime,
                                  GET /v1/health on sandboxd)                                  */
    SBX_RUNTIME_PYTHON,        /* the legacy python runtime (port 8888): run, files, no delete */
    SBX_RUNTIME_SANDBOXD       /* sandboxd: files and delete over REST (port 8080); run, exec
                                  and processes over gRPC (grpc_port, 9090)                    */
} sbx_runtime;

/* sbx_capabilities() bits: what the sandbox's runtime can do. */
#define SBX_CAP_EXEC   0x01u   /* sbx_run                      */
#define SBX_CAP_WRITE  0x02u   /* sbx_write, sbx_write_fd      */
#define SBX_CAP_READ   0x04u   /* sbx_read, sbx_read_fd        */
#define SBX_CAP_LIST   0x08u   /* sbx_list_dir                 */
#define SBX_CAP_EXISTS 0x10u   /* sbx_exists                   */
#define SBX_CAP_REMOVE 0x20u   /* sbx_remove_file              */
#define SBX_CAP_PROCESS 0x40u  /* sbx_process_* (sandboxd over a pod route or in-cluster) */
#define SBX_CAP_EXEC_ENV 0x80u /* sbx_exec with env / cwd      */

typedef struct sbx_sandbox_config {
    const char *template_name; /* SandboxTemplate (the seed's API); on v1beta1 it is
                                  resolved to a warm pool of that template           */
    const char *warm_pool;     /* or name the SandboxWarmPool directly (v1beta1)      */
    const char *ns;            /* default: the client's namespace                     */
    const char *claim_name;    /* default: "sandbox-claim-" + 8 random hex digits    */
    const char *const *labels;      /* NULL, or {"key","value", ..., NULL} on the claim */
    const char *const *annotations; /* likewise                                      */
    const char *const *env;    /* {"NAME","value",...,NULL}: spec.env; forces a cold start and
                                  needs the template's envVarsInjectionPolicy to allow it */
    const char *const *pod_labels;      /* spec.additionalPodMetadata.labels (keys need an
                                           allowed domain prefix, e.g. sandbox.users.io/) */
    const char *const *pod_annotations; /* spec.additionalPodMetadata.annotations          */
    int ttl_seconds;           /* > 0: the claim expires N s after sbx_open first sends it
                                  (spec.lifecycle.shutdownTime, whole seconds rounded
                                  up: it lives N to N + 1 s); default none              */
    const char *shutdown_policy; /* with ttl_seconds or lease_seconds: "Delete" (default),
                                  "DeleteForeground" or "Retain" (the claim stays, its
                                  sandbox goes)                                          */
    sbx_runtime runtime;       /* default SBX_RUNTIME_AUTO                              */
    int ready_timeout_ms;      /* wait for Ready; default 180000                       */
    int tunnel_timeout_ms;     /* connecting: tunnel start-up (kubectl port-forward) and the
                                  runtime's first answer; default 30000                 */
    int call_timeout_ms;       /* each run / write / read / list / exists / delete, retries
                                  included; default 60000. Router modes send it as
                                  X-Sandbox-Timeout and wait up to 1 s longer for the
                                  router's own answer                                   */
    int server_port;           /* runtime port inside the pod; default: 8888 (python),
                                  8080 (sandboxd), AUTO: the pod template's first
                                  containerPort, else 8888                              */
    int grpc_port;             /* sandboxd's gRPC process API port inside the pod (sbx_exec,
                                  sbx_process_*, sbx_run on sandboxd); default 9090      */
    size_t max_output_bytes;   /* cap on run output and read size; default SBX_MAX_RESPONSE_BYTES */
    int lease_seconds;         /* >= 3: the claim expires lease_seconds after the last sign
                                  of life of this process (spec.lifecycle.shutdownTime,
                                  renewed every lease_seconds / 3 while the client is open),
                                  so it goes even if the whole machine does; with ttl_seconds
                                  the earlier of the two wins. shutdown_policy as with
                                  ttl_seconds. Default 0: no lease                        */
    const struct sbx_client_config *client; /* only when sbx_open / sbx_attach get a NULL
                                  client: the settings of the private client the handle
                                  starts and owns (NULL = defaults). Ignored otherwise */
} sbx_sandbox_config;

/* What sbx_run hands back: the command's exit code and its two output streams.
   diag is the command's stderr (its diagnostics), not a library error: a call
   that failed says so in its return code and sb.err. */
typedef struct sbx_exec_result {
    int exit_code;
    char *out;                 /* stdout bytes, NUL-terminated (not counted); free with */
    size_t out_len;            /* sbx_exec_result_free                                  */
    char *diag;                /* stderr bytes, likewise                                */
    size_t diag_len;
} sbx_exec_result;

/* ---------------------------------------------------------------- processes
   sbx_exec (one-shot) and sbx_process_* (streaming) run a program with its
   arguments, environment and working directory. The streaming calls, env and
   cwd need sandboxd, whose process API is gRPC (port 9090): it is reached over
   the pod routes and in-cluster, not through the router modes or the API
   proxy (HTTP/1.1 only); there they answer SBX_ERR_UNSUPPORTED saying so. */
typedef struct sbx_process_config {
    const char *const *argv;   /* {"prog", "arg", ..., NULL}; or NULL and command:   */
    const char *command;       /* a command line: sandboxd runs /bin/sh -c command;
                                  the python runtime splits it like a shell's words  */
    const char *const *env;    /* {"NAME","value",...,NULL}: added to the runtime's
                                  environment for this process (sandboxd only)       */
    const char *cwd;           /* working directory, relative to the runtime's root
                                  (sandboxd only); default the root                   */
    int pty;                   /* != 0: run under a pseudo-terminal (sbx_process_start;
                                  its output all comes as SBX_STREAM_STDOUT)          */
    unsigned cols, rows;       /* the terminal's size; default 80 x 24                */
    int timeout_ms;            /* sbx_exec: the call's deadline (gRPC grpc-timeout),
                                  default the sandbox's call timeout; sbx_process_start:
                                  the process's whole life, default 0 = no limit      */
} sbx_process_config;

typedef struct sbx_process {
    sbx_error err;               /* why the last call on this process failed */
    struct sbx__process *impl;   /* private; NULL when closed */
} sbx_process;

typedef enum sbx_stream {
    SBX_STREAM_STDOUT = 1,
    SBX_STREAM_STDERR = 2,
    SBX_STREAM_EXIT = 3        /* the process ended: exit_code is set */
} sbx_stream;

typedef struct sbx_process_event {
    sbx_stream stream;
    const char *data;          /* STDOUT / STDERR bytes (not NUL-terminated); they belong
                                  to the handle: valid until the next call on it      */
    size_t len;
    int exit_code;             /* SBX_STREAM_EXIT: the exit code, -1 when the process
                                  ended abnormally (killed by a signal)               */
} sbx_process_event;

/* sbx_status(): what the controller says about the claim. */
typedef enum sbx_state {
    SBX_STATE_READY = 0,       /* Ready=True with a bound sandbox                        */
    SBX_STATE_NOT_READY,       /* exists, not Ready (reason says why: ClaimExpired...)    */
    SBX_STATE_GONE             /* deleted, or being deleted                              */
} sbx_state;

typedef struct sbx_claim_status {
    sbx_state state;
    char reason[128];          /* the Ready condition's reason, e.g. "DependenciesReady";
                                  "NotFound" / "Deleting" when gone; "" if none yet       */
    char message[256];         /* its message (cut to fit)                               */
} sbx_claim_status;

typedef struct sbx_file_entry {
    const char *name;          /* points into the same block as the array */
    long long size;
    int is_dir;
    double mod_time;           /* seconds since the epoch */
} sbx_file_entry;

/* One claim of sbx_list_claims: its metadata, Ready condition and owner
   annotations (see HOW IT WORKS). The strings point into the array's block. */
typedef struct sbx_claim_entry {
    const char *name;
    const char *ns;            /* the claim's namespace                                  */
    int ready;                 /* 1: Ready=True and bound to a sandbox                   */
    int deleting;              /* 1: metadata.deletionTimestamp is set                   */
    const char *reason;        /* the Ready condition's reason; "" if none yet           */
    long long created;         /* metadata.creationTimestamp, seconds since the epoch; 0 if absent */
    const char *owner_host;    /* annotation sandbox.h/owner-host; "" when absent        */
    long long owner_pid;       /* sandbox.h/owner-pid; 0 when absent                     */
    long long owner_start;     /* sandbox.h/owner-start (seconds since the epoch); 0 when
                                  absent or unknown                                      */
} sbx_claim_entry;

/* ---------------------------------------------------------------- API
   Every call that returns sbx_result also leaves the detail (code, errno, HTTP
   status, message) in the handle it was called on; "blocks" below means the
   call waits on the network or on kubectl, never longer than the deadline named. */

/* Fixed English text of a result code ("timed out"); never NULL, static (do
   not free); thread-safe, never blocks. For the detail, read handle.err.msg. */
SBX_API const char *sbx_strerror(sbx_result r);

/* Start a client: its supervisor, then one `kubectl proxy` (unless cfg->api_url
   or $SANDBOX_API_URL names the API). cfg NULL = defaults. Allocates the client's
   state (freed by sbx_client_close, also after a failure). Returns SBX_OK,
   SBX_ERR_INVALID_ARG, SBX_ERR_SPAWN (kubectl), SBX_ERR_TIMEOUT, SBX_ERR_NOMEM,
   SBX_ERR_SYS; blocks until kubectl proxy serves (proxy_timeout_ms, 15 s). */
SBX_API sbx_result sbx_client_open(sbx_client *c, const sbx_client_config *cfg);
/* Stop the client's kubectl children and its supervisor, join its lease thread
   and free it; close its sandboxes first. Safe on a closed or failed client
   (does nothing), idempotent. Blocks up to about 2 s per child and 3 s for the
   supervisor's goodbye (a few ms normally). */
SBX_API void sbx_client_close(sbx_client *c);

/* Create a SandboxClaim (cfg->template_name or ->warm_pool), watch it until
   Ready and connect to its pod's runtime. c NULL: the handle starts a private
   client (settings cfg->client, NULL = defaults) that sbx_close stops. Any
   failure rolls back what it made (SBX_ERR_NOT_FOUND, _SANDBOX, _TIMEOUT,
   _HTTP, _CONNECT, _UNSUPPORTED, ...). Blocks up to api_timeout_ms per API step
   plus ready_timeout_ms (180 s) plus tunnel_timeout_ms (30 s). */
SBX_API sbx_result sbx_open(sbx_sandbox *sb, sbx_client *c, const sbx_sandbox_config *cfg);
/* End the route, DELETE the claim (404 counts as done) and free the handle;
   with a private client, stop that client too. Safe on a closed handle
   (SBX_OK), idempotent; the handle is freed even when the DELETE fails (the
   error is returned and the supervisor retries it). Blocks up to
   api_timeout_ms (30 s) for the DELETE, about 2 s to stop a kubectl child. */
SBX_API sbx_result sbx_close(sbx_sandbox *sb);

/* Connect to an existing Ready claim: cfg->claim_name (required) in cfg->ns
   (NULL: the client's namespace), with cfg's connection fields (runtime,
   server_port, *_timeout_ms, max_output_bytes); c NULL: a private client, as
   sbx_open. Fails with SBX_ERR_INVALID_ARG, SBX_ERR_NOT_FOUND (no such claim),
   SBX_ERR_DELETED (being deleted) or SBX_ERR_SANDBOX (not Ready), never deleting
   the claim. Blocks like sbx_open without the Ready wait. */
SBX_API sbx_result sbx_attach(sbx_sandbox *sb, sbx_client *c, const sbx_sandbox_config *cfg);
/* Disconnect and free the handle, leaving the claim (and its sandbox) running:
   it is no longer deleted when the program dies, and a lease is lifted (a
   failure to lift it is returned; the handle is freed anyway). Blocks up to
   api_timeout_ms for that PATCH. sbx_close on the other hand deletes the
   claim, however the handle was made. */
SBX_API sbx_result sbx_detach(sbx_sandbox *sb);
/* What the controller says about this sandbox's claim now, into *st (caller's
   struct, nothing allocated): Ready, not Ready (reason, message) or gone.
   One GET, retried on transient errors within api_timeout_ms. Returns SBX_OK
   (also for a gone claim: st->state says so), SBX_ERR_CLOSED, _HTTP, _CONNECT. */
SBX_API sbx_result sbx_status(sbx_sandbox *sb, sbx_claim_status *st);

/* Delete a claim by name in ns (NULL: the client's namespace), whoever made
   it. Client-level: thread-safe; err (may be NULL) receives the failure.
   Returns SBX_OK, SBX_ERR_NOT_FOUND (no such claim), _INVALID_ARG, _CLOSED,
   _HTTP, _CONNECT; blocks up to the client's api_timeout_ms (30 s). */
SBX_API sbx_result sbx_delete_claim(sbx_client *c, const char *ns, const char *claim_name, sbx_error *err);
/* The claims in ns (NULL or "": the client's namespace; "*": all namespaces)
   matching a label selector ("a=b,c!=d"; NULL or "" for all): *entries is an
   array of *count sbx_claim_entry in ONE block (strings included), freed with
   sbx_free(*entries) (NULL and 0 after a failure). Thread-safe; err (may be
   NULL) receives the failure. Returns SBX_OK, SBX_ERR_INVALID_ARG, _CLOSED,
   _HTTP, _CONNECT, _PROTOCOL, _NOMEM; blocks up to api_timeout_ms (30 s). */
SBX_API sbx_result sbx_list_claims(sbx_client *c, const char *ns, const char *label_selector,
                                   sbx_claim_entry **entries, size_t *count, sbx_error *err);

/* Run a command in the sandbox (python runtime: no shell; the string is split
   like a shell's words). *res gets the exit code and the output: res->out
   (stdout) and res->diag (stderr), freed with sbx_exec_result_free. Sent once,
   never retried. sandboxd: gRPC Execute of /bin/sh -c command (see PROCESSES;
   router modes and the API proxy: SBX_ERR_UNSUPPORTED). Returns SBX_OK
   whatever the exit code; _TOO_BIG, _TIMEOUT, ... Blocks up to call_timeout_ms (60 s). */
SBX_API sbx_result sbx_run(sbx_sandbox *sb, const char *command, sbx_exec_result *res);
/* Run a program as cfg says (argv or command, env, cwd, timeout_ms; pty is
   ignored) and wait for it: *res as sbx_run's (freed with sbx_exec_result_free).
   sandboxd: gRPC Execute; python runtime: argv is quoted into one command line,
   env and cwd answer SBX_ERR_UNSUPPORTED. Sent once, never retried. Returns
   SBX_OK whatever the exit code; SBX_ERR_NOT_FOUND (no such program),
   _INVALID_ARG, _DENIED (cwd outside the root), _TIMEOUT, _UNSUPPORTED, ...
   Blocks up to cfg->timeout_ms (default call_timeout_ms, 60 s). */
SBX_API sbx_result sbx_exec(sbx_sandbox *sb, const sbx_process_config *cfg, sbx_exec_result *res);
/* Start a process on sandboxd and stream it (gRPC Start): *p is the caller's
   handle, closed with sbx_process_close (always, also after a failure). Several
   processes may run at once on one sandbox; close them before the sandbox (one
   still open after sbx_close fails SBX_ERR_CLOSED until closed; see PROCESSES).
   Returns SBX_OK once the server named the process; SBX_ERR_UNSUPPORTED (python
   runtime, router modes, API proxy), _NOT_FOUND, _INVALID_ARG, _DENIED, ...
   Blocks up to the sandbox's call timeout for the start. */
SBX_API sbx_result sbx_process_start(sbx_process *p, sbx_sandbox *sb, const sbx_process_config *cfg);
/* The next event of the process into *ev: an output chunk (data valid until the
   next call on p) or its exit (then again on every later read). Output that is
   not read holds the process back (flow control): memory stays flat. Waits up to
   timeout_ms (< 0: until the process's timeout_ms, if any); SBX_ERR_TIMEOUT when
   nothing came in time (the process goes on). Other errors end the stream. */
SBX_API sbx_result sbx_process_read(sbx_process *p, sbx_process_event *ev, int timeout_ms);
/* Send len bytes to the process's stdin (gRPC WriteStdin, 1 MiB per call).
   Nothing to free; may be called while another thread waits in
   sbx_process_read on p. Returns
   SBX_OK, SBX_ERR_CLOSED, _NOT_FOUND (the process is gone), ...; blocks up to
   the sandbox's call timeout. */
SBX_API sbx_result sbx_process_write(sbx_process *p, const void *data, size_t len);
/* Close the process's stdin (it reads end of file); as sbx_process_write. */
SBX_API sbx_result sbx_process_close_stdin(sbx_process *p);
/* Send a signal to the process's group: 2 (SIGINT), 9 (SIGKILL) or 15
   (SIGTERM); others SBX_ERR_INVALID_ARG. As sbx_process_write otherwise. */
SBX_API sbx_result sbx_process_signal(sbx_process *p, int signal);
/* Resize the process's terminal; SBX_ERR_INVALID_ARG when it has none (started
   without pty). As sbx_process_write otherwise. */
SBX_API sbx_result sbx_process_resize(sbx_process *p, unsigned cols, unsigned rows);
/* The server's id of the process; 0 when closed. Never blocks. */
SBX_API int sbx_process_id(const sbx_process *p);
/* End the stream and free the handle; a process still running is killed first
   (SIGKILL). Safe on a closed handle (SBX_OK), idempotent; the handle is freed
   even when the kill fails (returned). Blocks up to the sandbox's call timeout. */
SBX_API sbx_result sbx_process_close(sbx_process *p);

/* Write len bytes from data to path (relative to the runtime's base; parents
   are made). Nothing allocated. python uploads are sent once; sandboxd writes
   are retried on transient errors. Returns SBX_OK, SBX_ERR_INVALID_ARG (bad
   path), _HTTP, _CONNECT, _TIMEOUT; blocks up to call_timeout_ms (60 s). */
SBX_API sbx_result sbx_write(sbx_sandbox *sb, const char *path, const void *data, size_t len);
/* Read a whole file into *data (NUL-terminated, the NUL not counted in *len),
   freed with sbx_free; NULL and 0 after a failure. Retried on transient
   errors. Returns SBX_OK, SBX_ERR_NOT_FOUND, _TOO_BIG (over max_output_bytes),
   _INVALID_ARG, _HTTP, _CONNECT, _TIMEOUT; blocks up to call_timeout_ms. */
SBX_API sbx_result sbx_read(sbx_sandbox *sb, const char *path, char **data, size_t *len);
/* Write a file from a descriptor, read from its current offset to EOF and
   streamed (never held whole); fd stays open and is the caller's. Sent once.
   Returns as sbx_write (SBX_ERR_SYS when reading fd fails); blocks up to
   call_timeout_ms (60 s) for the whole transfer. */
SBX_API sbx_result sbx_write_fd(sbx_sandbox *sb, const char *path, int fd);
/* Read a file into a descriptor, streamed (no size cap, nothing held whole);
   fd stays open and is the caller's. Retried only while nothing was written.
   Returns as sbx_read (SBX_ERR_SYS when writing fd fails); blocks up to
   call_timeout_ms (60 s) for the whole transfer. */
SBX_API sbx_result sbx_read_fd(sbx_sandbox *sb, const char *path, int fd);
/* List a directory of the sandbox: *entries is an array of *count entries in
   ONE block (names included), freed with sbx_free(*entries); NULL and 0 after a
   failure. Retried on transient errors. Returns SBX_OK, SBX_ERR_NOT_FOUND,
   _INVALID_ARG, _HTTP, _CONNECT, _TIMEOUT; blocks up to call_timeout_ms. */
SBX_API sbx_result sbx_list_dir(sbx_sandbox *sb, const char *path, sbx_file_entry **entries, size_t *count);
/* *exists = 1 when path exists in the sandbox (file or directory), else 0 (also
   after a failure). Nothing allocated; retried on transient errors. Returns
   SBX_OK either way, or SBX_ERR_INVALID_ARG, _HTTP, _CONNECT, _TIMEOUT; blocks
   up to call_timeout_ms (60 s). */
SBX_API sbx_result sbx_exists(sbx_sandbox *sb, const char *path, int *exists);
/* Remove a file (a directory too; recursive != 0 removes a non-empty one) from
   the sandbox's file system; not the claim (that is sbx_delete_claim / sbx_close).
   sandboxd only, else SBX_ERR_UNSUPPORTED. Sent once. Returns SBX_OK,
   SBX_ERR_NOT_FOUND, _HTTP, ...; blocks up to call_timeout_ms (60 s). */
SBX_API sbx_result sbx_remove_file(sbx_sandbox *sb, const char *path, int recursive);
/* SBX_CAP_* bits of the runtime; 0 when the handle is closed. A call the runtime
   cannot do fails with SBX_ERR_UNSUPPORTED and a message naming the runtime.
   Never blocks, allocates nothing. */
SBX_API unsigned sbx_capabilities(const sbx_sandbox *sb);
/* Deadline of each later call on this sandbox (run, write, read, ...), retries
   included; <= 0 restores the default 60000 ms. Never blocks; no-op on a
   closed handle. */
SBX_API void sbx_set_call_timeout(sbx_sandbox *sb, int timeout_ms);

/* Identity of an open sandbox: its claim, Sandbox, pod and namespace names
   (NULL when the handle is closed). The strings belong to the handle: valid
   until sbx_close / sbx_detach, not to be freed. Never block. */
SBX_API const char *sbx_claim_name(const sbx_sandbox *sb);
/* The Sandbox object bound to the claim (see sbx_claim_name for ownership). */
SBX_API const char *sbx_sandbox_name(const sbx_sandbox *sb);
/* The sandbox's pod (see sbx_claim_name for ownership). */
SBX_API const char *sbx_pod_name(const sbx_sandbox *sb);
/* The claim's namespace (see sbx_claim_name for ownership). */
SBX_API const char *sbx_namespace(const sbx_sandbox *sb);
/* The pod's IP; NULL when the Sandbox reports none or the handle is closed
   (see sbx_claim_name for ownership). */
SBX_API const char *sbx_pod_ip(const sbx_sandbox *sb);
/* The route in use: "websocket", "kubectl port-forward", "router tunnel",
   "gateway", "direct", "in-cluster", "api proxy"; "" when closed. Static
   strings (do not free); never blocks. */
SBX_API const char *sbx_route(const sbx_sandbox *sb);

/* Free res->out and res->diag and zero them; safe on a zeroed or already freed
   result (and after a failed sbx_run). Never blocks. */
SBX_API void sbx_exec_result_free(sbx_exec_result *res);
/* Free memory the library returned (sbx_read data, sbx_list_dir entries,
   sbx_list_claims entries) with the allocator that made it; NULL is a no-op. */
SBX_API void sbx_free(void *p);

#ifdef __cplusplus
}
#endif
#endif /* SANDBOX_H */

/* ======================================================================== */
/*                              IMPLEMENTATION                              */
/* ======================================================================== */
#ifdef SANDBOX_IMPLEMENTATION
#ifndef SANDBOX_IMPLEMENTATION_INCLUDED
#define SANDBOX_IMPLEMENTATION_INCLUDED

#ifdef _WIN32
#error "sandbox.h requires a POSIX system"
#endif

/* POSIX.1-2008 is needed (clock_gettime, gmtime_r, getaddrinfo...). Under a
   strict -std=c99 this only takes effect if no system header was included
   before this point; otherwise compile with -D_POSIX_C_SOURCE=200809L. */
#if !defined(_POSIX_C_SOURCE) && !defined(_XOPEN_SOURCE) && !defined(_GNU_SOURCE) && \
    !defined(_DEFAULT_SOURCE) && !defined(_BSD_SOURCE) && !defined(__APPLE__)
#define _POSIX_C_SOURCE 200809L
#endif

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/un.h>
#include <sys/wait.h>

#if defined(SBX_MALLOC) || defined(SBX_REALLOC) || defined(SBX_FREE)
#if !defined(SBX_MALLOC) || !defined(SBX_REALLOC) || !defined(SBX_FREE)
#error "define all or none of SBX_MALLOC, SBX_REALLOC and SBX_FREE"
#endif
#else
#define SBX_MALLOC(sz) malloc(sz)
#define SBX_REALLOC(p, sz) realloc(p, sz)
#define SBX_FREE(p) free(p)
#endif

/* Limits; every one can be overridden before including the implementation. */
#ifndef SBX_MAX_HEADER_BYTES
#define SBX_MAX_HEADER_BYTES 65536          /* whole response head */
#endif
#ifndef SBX_MAX_HEADERS
#define SBX_MAX_HEADERS 64
#endif
#ifndef SBX_MAX_RESPONSE_BYTES
#define SBX_MAX_RESPONSE_BYTES (256u * 1024u * 1024u)  /* run output, read, in memory */
#endif
#ifndef SBX_MAX_API_BYTES
#define SBX_MAX_API_BYTES (16u * 1024u * 1024u)        /* one Kubernetes API answer */
#endif
#ifndef SBX_MAX_LINE_BYTES
#define SBX_MAX_LINE_BYTES (16u * 1024u * 1024u)       /* one watch event */
#endif
#ifndef SBX_JSON_MAX_DEPTH
#define SBX_JSON_MAX_DEPTH 64
#endif

#if defined(__GNUC__) || defined(__clang__)
#define SBX__PRIVATE __attribute__((unused)) static
#else
#define SBX__PRIVATE static
#endif


/* ======================================================================== */
/* >>util: allocation, errors, buffers, clocks, descriptors                 */
/* ======================================================================== */

static void *sbx__default_alloc(size_t n, void *u) { (void)u; return SBX_MALLOC(n); }
static void *sbx__default_realloc(void *p, size_t n, void *u) { (void)u; return SBX_REALLOC(p, n); }
static void sbx__default_free(void *p, void *u) { (void)u; SBX_FREE(p); }

/* Fill in the defaults of a user allocator: all three functions or none. */
SBX__PRIVATE sbx_allocator sbx__allocator(const sbx_allocator *user)
{
    sbx_allocator a;
    if (user && user->alloc && user->realloc && user->free) {
        a = *user;
    } else {
        a.alloc = sbx__default_alloc;
        a.realloc = sbx__default_realloc;
        a.free = sbx__default_free;
        a.user = NULL;
    }
    return a;
}

SBX__PRIVATE void *sbx__malloc(const sbx_allocator *a, size_t n)
{
    return a->alloc(n ? n : 1, a->user);
}

SBX__PRIVATE void *sbx__realloc(const sbx_allocator *a, void *p, size_t n)
{
    return a->realloc(p, n ? n : 1, a->user);
}

SBX__PRIVATE void sbx__free(const sbx_allocator *a, void *p)
{
    if (p) a->free(p, a->user);
}

SBX__PRIVATE char *sbx__strndup(const sbx_allocator *a, const char *s, size_t n)
{
    char *d = (char *)sbx__malloc(a, n + 1);
    if (!d) return NULL;
    memcpy(d, s, n);
    d[n] = '\0';
    return d;
}

SBX__PRIVATE char *sbx__strdup(const sbx_allocator *a, const char *s)
{
    return s ? sbx__strndup(a, s, strlen(s)) : NULL;
}

/* Blocks handed to the caller (run output, file contents, listings) carry a
   small header naming their allocator, so that sbx_free(p) needs no handle and
   works even after the client is closed. */
typedef struct sbx__blockhdr {
    void (*free)(void *ptr, void *user);
    void *user;
} sbx__blockhdr;
#define SBX__BLOCKHDR_SIZE 16  /* keeps the payload 16-byte aligned */

SBX__PRIVATE void *sbx__block_alloc(const sbx_allocator *a, size_t n)
{
    char *raw;
    sbx__blockhdr h;
    if (n > (size_t)-1 - SBX__BLOCKHDR_SIZE - 1) return NULL;
    raw = (char *)sbx__malloc(a, n + SBX__BLOCKHDR_SIZE + 1);
    if (!raw) return NULL;
    h.free = a->free;
    h.user = a->user;
    memcpy(raw, &h, sizeof h);
    raw[SBX__BLOCKHDR_SIZE + n] = '\0';
    return raw + SBX__BLOCKHDR_SIZE;
}

SBX_API void sbx_free(void *p)
{
    sbx__blockhdr h;
    char *raw;
    if (!p) return;
    raw = (char *)p - SBX__BLOCKHDR_SIZE;
    memcpy(&h, raw, sizeof h);
    h.free(raw, h.user);
}

/* ---- errors: every failure is described in an sbx_error ---------------- */

SBX__PRIVATE void sbx__err_clear(sbx_error *e)
{
    if (!e) return;
    e->code = SBX_OK;
    e->sys_errno = 0;
    e->http_status = 0;
    e->grpc_status = 0;
    e->msg[0] = '\0';
}

#if defined(__GNUC__) || defined(__clang__)
#define SBX__PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define SBX__PRINTF(f, a)
#endif

/* Record a failure and return its code: return sbx__fail(e, SBX_ERR_X, "...", ...). */
SBX__PRIVATE SBX__PRINTF(3, 4) sbx_result sbx__fail(sbx_error *e, sbx_result code, const char *fmt, ...)
{
    va_list ap;
    if (!e) return code;
    e->code = code;
    va_start(ap, fmt);
    vsnprintf(e->msg, sizeof e->msg, fmt, ap);
    va_end(ap);
    return code;
}

SBX__PRIVATE sbx_result sbx__oom(sbx_error *e, const char *what)
{
    return what ? sbx__fail(e, SBX_ERR_NOMEM, "%s: out of memory", what) : sbx__fail(e, SBX_ERR_NOMEM, "out of memory");
}

/* Like sbx__fail, for a failed system call: saves errno and appends strerror. */
SBX__PRIVATE SBX__PRINTF(4, 5) sbx_result sbx__fail_sys(sbx_error *e, sbx_result code, int err, const char *fmt, ...)
{
    va_list ap;
    size_t n;
    if (!e) return code;
    e->code = code;
    e->sys_errno = err;
    va_start(ap, fmt);
    vsnprintf(e->msg, sizeof e->msg, fmt, ap);
    va_end(ap);
    n = strlen(e->msg);
    snprintf(e->msg + n, sizeof e->msg - n, ": %s", strerror(err));
    return code;
}

/* Put "context: " in front of the message already recorded; returns e->code.
   The message is cut at SBX_ERRMSG_SIZE - 1 bytes. */
SBX__PRIVATE SBX__PRINTF(2, 3) sbx_result sbx__err_prefix(sbx_error *e, const char *fmt, ...)
{
    char pre[SBX_ERRMSG_SIZE];
    size_t plen, mlen;
    va_list ap;
    if (!e) return SBX_OK;
    va_start(ap, fmt);
    vsnprintf(pre, sizeof pre, fmt, ap);
    va_end(ap);
    plen = strlen(pre);
    if (plen > sizeof e->msg - 3) plen = sizeof e->msg - 3;
    mlen = strlen(e->msg);
    if (plen + 2 + mlen > sizeof e->msg - 1) mlen = sizeof e->msg - 1 - plen - 2;
    memmove(e->msg + plen + 2, e->msg, mlen);
    memcpy(e->msg, pre, plen);
    e->msg[plen] = ':';
    e->msg[plen + 1] = ' ';
    e->msg[plen + 2 + mlen] = '\0';
    return e->code;
}

/* snprintf into a fixed buffer where cutting the text short is acceptable
   (messages, descriptions). */
SBX__PRIVATE SBX__PRINTF(3, 4) void sbx__fmt(char *buf, size_t cap, const char *fmt, ...)
{
    va_list ap;
    if (!cap) return;
    va_start(ap, fmt);
    vsnprintf(buf, cap, fmt, ap);
    va_end(ap);
}

/* One event to the user's logger (nothing when none is set). Callers hold
   none of the library's locks, so the logger may call back in. */
SBX__PRIVATE SBX__PRINTF(6, 7) void sbx__log(const sbx_logger *lg, sbx_log_level level, sbx_event_kind kind,
                                             const char *name, long long number, const char *fmt, ...)
{
    sbx_event ev;
    char msg[384];
    va_list ap;
    if (!lg || !lg->func) return;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    ev.level = level;
    ev.kind = kind;
    ev.name = name ? name : "";
    ev.number = number;
    ev.message = msg;
    lg->func(&ev, lg->user);
}

/* ---- growable byte buffer (always NUL-terminated once allocated) ------- */

typedef struct sbx__buf {
    char *data;
    size_t len;
    size_t cap;
    const sbx_allocator *a;
} sbx__buf;

SBX__PRIVATE void sbx__buf_init(sbx__buf *b, const sbx_allocator *a)
{
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
    b->a = a;
}

SBX__PRIVATE void sbx__buf_free(sbx__buf *b)
{
    sbx__free(b->a, b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

/* Memory of one may be freed by the other. */
SBX__PRIVATE int sbx__same_allocator(const sbx_allocator *x, const sbx_allocator *y)
{
    return x->alloc == y->alloc && x->realloc == y->realloc && x->free == y->free && x->user == y->user;
}

/* Room for `extra` more bytes plus a NUL. 0 on success, -1 on overflow or no memory. */
SBX__PRIVATE int sbx__buf_reserve(sbx__buf *b, size_t extra)
{
    size_t need, ncap;
    char *p;
    if (extra > (size_t)-1 - b->len - 1) return -1;
    need = b->len + extra + 1;
    if (need <= b->cap) return 0;
    ncap = b->cap ? b->cap : 256;
    while (ncap < need) {
        if (ncap > (size_t)-1 / 2) { ncap = need; break; }
        ncap *= 2;
    }
    p = (char *)sbx__realloc(b->a, b->data, ncap);
    if (!p) return -1;
    b->data = p;
    b->cap = ncap;
    return 0;
}

SBX__PRIVATE int sbx__buf_append(sbx__buf *b, const void *p, size_t n)
{
    if (sbx__buf_reserve(b, n) != 0) return -1;
    if (n) memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = '\0';
    return 0;
}

SBX__PRIVATE int sbx__buf_puts(sbx__buf *b, const char *s)
{
    return sbx__buf_append(b, s, strlen(s));
}

SBX__PRIVATE SBX__PRINTF(2, 3) int sbx__buf_printf(sbx__buf *b, const char *fmt, ...)
{
    va_list ap;
    int n;
    char small[256];
    va_start(ap, fmt);
    n = vsnprintf(small, sizeof small, fmt, ap);
    va_end(ap);
    if (n < 0) return -1;
    if ((size_t)n < sizeof small) return sbx__buf_append(b, small, (size_t)n);
    if (sbx__buf_reserve(b, (size_t)n) != 0) return -1;
    va_start(ap, fmt);
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
    return 0;
}

/* Hand the buffer's bytes to the caller as an sbx_free-able block. */
SBX__PRIVATE void *sbx__buf_to_block(sbx__buf *b, size_t *len)
{
    char *blk = (char *)sbx__block_alloc(b->a, b->len);
    if (!blk) return NULL;
    if (b->len) memcpy(blk, b->data, b->len);
    if (len) *len = b->len;
    return blk;
}

/* ---- clocks and deadlines (milliseconds, CLOCK_MONOTONIC) -------------- */

SBX__PRIVATE long long sbx__now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* A deadline `ms` from now (ms <= 0 gives "now"). */
SBX__PRIVATE long long sbx__deadline(int ms)
{
    return sbx__now_ms() + (ms > 0 ? ms : 0);
}

/* Milliseconds left until `deadline`, clamped to [0, INT_MAX]. */
SBX__PRIVATE int sbx__ms_left(long long deadline)
{
    long long left = deadline - sbx__now_ms();
    if (left < 0) return 0;
    if (left > INT_MAX) return INT_MAX;
    return (int)left;
}

/* The wall clock in whole seconds since the epoch, rounded up. Expiries are
   made from it: shutdownTime has whole seconds, and a claim given N seconds
   must live at least N, not N - 1 and a fraction. */
SBX__PRIVATE long long sbx__epoch_up(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (long long)ts.tv_sec + (ts.tv_nsec > 0);
}

/* The wall clock in whole seconds since the epoch (the clock expiries are
   made from; time() may lag it by a tick). */
SBX__PRIVATE long long sbx__epoch_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (long long)ts.tv_sec;
}

/* RFC 3339 UTC: epoch second `at` as 2026-08-22T10:00:00Z, or, with at < 0,
   now with microseconds: 2026-08-22T10:00:00.123456Z. */
SBX__PRIVATE void sbx__rfc3339(char out[40], long long at)
{
    struct timespec ts;
    struct tm tm;
    time_t t;
    size_t n;
    clock_gettime(CLOCK_REALTIME, &ts);
    t = at < 0 ? ts.tv_sec : (time_t)at;
    gmtime_r(&t, &tm);
    n = strftime(out, 40, "%Y-%m-%dT%H:%M:%S", &tm);
    if (at < 0 && n + 9 < 40) {
        unsigned long us = (unsigned long)(ts.tv_nsec / 1000) % 1000000ul;
        int i;
        out[n++] = '.';
        for (i = 5; i >= 0; i--, us /= 10) out[n + (size_t)i] = (char)('0' + us % 10);
        n += 6;
    }
    out[n++] = 'Z';
    out[n] = '\0';
}

/* Seconds since the epoch of an RFC 3339 time ("2026-08-22T10:00:00.5Z",
   "...+02:00"); 0 when it does not parse. No timegm: days from the civil date. */
SBX__PRIVATE double sbx__parse_rfc3339(const char *s, size_t n)
{
    long long y, mo, d, h, mi, sec, days, off = 0;
    double frac = 0, scale = 0.1;
    size_t i = 19;
    int k;
    static const int at[] = {0, 1, 2, 3, 5, 6, 8, 9, 11, 12, 14, 15, 17, 18};
    if (n < 20 || s[4] != '-' || s[7] != '-' || (s[10] != 'T' && s[10] != 't' && s[10] != ' ') || s[13] != ':' ||
        s[16] != ':')
        return 0;
    for (k = 0; k < 14; k++)
        if (s[at[k]] < '0' || s[at[k]] > '9') return 0;
    y = (s[0] - '0') * 1000 + (s[1] - '0') * 100 + (s[2] - '0') * 10 + (s[3] - '0');
    mo = (s[5] - '0') * 10 + (s[6] - '0');
    d = (s[8] - '0') * 10 + (s[9] - '0');
    h = (s[11] - '0') * 10 + (s[12] - '0');
    mi = (s[14] - '0') * 10 + (s[15] - '0');
    sec = (s[17] - '0') * 10 + (s[18] - '0');
    if (mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || sec > 60) return 0;
    if (s[i] == '.') {
        for (i++; i < n && s[i] >= '0' && s[i] <= '9'; i++, scale /= 10) frac += (s[i] - '0') * scale;
    }
    if (i < n && (s[i] == '+' || s[i] == '-') && i + 6 == n && s[i + 3] == ':') {
        long long oh = (s[i + 1] - '0') * 10 + (s[i + 2] - '0'), om = (s[i + 4] - '0') * 10 + (s[i + 5] - '0');
        off = (oh * 60 + om) * 60 * (s[i] == '+' ? 1 : -1);
    } else if (!(i + 1 == n && (s[i] == 'Z' || s[i] == 'z'))) {
        return 0;
    }
    /* days since 1970-01-01 of y-mo-d (proleptic Gregorian) */
    {
        long long yy = mo <= 2 ? y - 1 : y;
        long long era = yy / 400, yoe = yy - era * 400;
        long long doy = (153 * (mo + (mo > 2 ? -3 : 9)) + 2) / 5 + d - 1;
        long long doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        days = era * 146097 + doe - 719468;
    }
    return (double)(days * 86400 + h * 3600 + mi * 60 + sec - off) + frac;
}

/* pthread_cond_timedwait on CLOCK_MONOTONIC where the system has it. */
#ifndef SBX__MONO_COND
#if defined(__APPLE__) || !defined(_POSIX_CLOCK_SELECTION)
#define SBX__MONO_COND 0
#elif _POSIX_CLOCK_SELECTION > 0
#define SBX__MONO_COND 1
#else
#define SBX__MONO_COND 0
#endif
#endif

/* *mono tells which clock the timed waits on cv must use. */
SBX__PRIVATE int sbx__cond_init(pthread_cond_t *cv, int *mono)
{
    pthread_condattr_t ca;
    int rc = pthread_condattr_init(&ca);
    *mono = 0;
    if (rc != 0) return rc;
#if SBX__MONO_COND
    *mono = pthread_condattr_setclock(&ca, CLOCK_MONOTONIC) == 0;
#endif
    rc = pthread_cond_init(cv, &ca);
    pthread_condattr_destroy(&ca);
    return rc;
}

/* pthread_cond_timedwait for left (> 0) ms on the clock sbx__cond_init chose. */
SBX__PRIVATE int sbx__cond_wait_ms(pthread_cond_t *cv, pthread_mutex_t *mu, int mono, long long left)
{
    struct timespec ts;
    clock_gettime(mono ? CLOCK_MONOTONIC : CLOCK_REALTIME, &ts);
    ts.tv_sec += (time_t)(left / 1000);
    ts.tv_nsec += (long)(left % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    return pthread_cond_timedwait(cv, mu, &ts);
}

/* ---- descriptors ------------------------------------------------------- */

SBX__PRIVATE int sbx__set_cloexec(int fd)
{
    int fl = fcntl(fd, F_GETFD);
    if (fl < 0) return -1;
    return fcntl(fd, F_SETFD, fl | FD_CLOEXEC);
}

SBX__PRIVATE int sbx__set_nonblock(int fd, int on)
{
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0) return -1;
    return fcntl(fd, F_SETFL, on ? (fl | O_NONBLOCK) : (fl & ~O_NONBLOCK));
}

/* A close-on-exec pipe. (pipe2 is not POSIX.1-2008; the window between pipe()
   and fcntl() only matters to other threads that fork, and they must exec.) */
SBX__PRIVATE int sbx__pipe_cloexec(int fds[2])
{
    if (pipe(fds) != 0) return -1;
    if (sbx__set_cloexec(fds[0]) != 0 || sbx__set_cloexec(fds[1]) != 0) {
        int err = errno;
        close(fds[0]);
        close(fds[1]);
        errno = err;
        return -1;
    }
    return 0;
}

/* Wait until fd is ready for `events` or the deadline passes.
   1 = ready (or hung up / error: the next read/write tells), 0 = timeout, -1 = poll failed. */
SBX__PRIVATE int sbx__poll1(int fd, short events, long long deadline)
{
    struct pollfd p;
    int r;
    for (;;) {
        p.fd = fd;
        p.events = events;
        p.revents = 0;
        r = poll(&p, 1, sbx__ms_left(deadline));
        if (r > 0) return 1;
        if (r == 0) return 0;
        if (errno != EINTR) return -1;
    }
}

/* ---- random and names -------------------------------------------------- */

/* n random bytes from /dev/urandom; falls back to clock and pid mixing. */
SBX__PRIVATE void sbx__random(unsigned char *out, size_t n)
{
    size_t got = 0;
    int fd = open("/dev/urandom", O_RDONLY);
    if (fd >= 0) {
        sbx__set_cloexec(fd);
        while (got < n) {
            ssize_t r = read(fd, out + got, n - got);
            if (r > 0) got += (size_t)r;
            else if (r < 0 && errno == EINTR) continue;
            else break;
        }
        close(fd);
    }
    if (got < n) {
        struct timespec ts;
        unsigned long long x;
        clock_gettime(CLOCK_REALTIME, &ts);
        x = (unsigned long long)ts.tv_nsec ^ ((unsigned long long)ts.tv_sec << 20) ^
            ((unsigned long long)getpid() << 40) ^ (unsigned long long)(size_t)out;
        for (; got < n; got++) {
            x ^= x << 13; x ^= x >> 7; x ^= x << 17;
            out[got] = (unsigned char)(x >> 24);
        }
    }
}

/* ---- DNS names --------------------------------------------------------- */

/* Why s[0..n) is not an RFC 1123 name, or NULL: one label of 1-63 bytes
   (dots 0) or labels joined by dots, 1-253 bytes in all (dots 1). Kubernetes
   names (host 0) are lower case with no cap per label; a host name (host 1)
   may have capitals and caps each label at 63 as DNS does. */
SBX__PRIVATE const char *sbx__dns_why(const char *s, size_t n, int dots, int host)
{
    size_t i, start = 0;
    if (n == 0 || n > (dots ? 253u : 63u))
        return dots ? "not a DNS name of 1 to 253 characters" : "not a DNS label of 1 to 63 characters";
    for (i = 0; i <= n; i++) {
        char c = i < n ? s[i] : '.';
        if (c == '.') {
            if (i < n && !dots) return "has a '.'";
            if (i == start || (host && i - start > 63)) return "has an empty label or one longer than 63 characters";
            if (s[start] == '-' || s[i - 1] == '-') return "has a label that starts or ends with '-'";
            start = i + 1;
        } else if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || (host && c >= 'A' && c <= 'Z'))) {
            return "has a character other than letters, digits, '-' and '.'";
        }
    }
    return NULL;
}

SBX__PRIVATE int sbx__valid_dns_name(const char *s, int subdomain)
{
    return s && !sbx__dns_why(s, strlen(s), subdomain, 0);
}

/* ---- percent-encoding -------------------------------------------------- */

/* Append `s` as ONE path segment: every byte except RFC 3986 unreserved
   characters (A-Z a-z 0-9 - . _ ~) becomes %XX, so "/" becomes %2F.
   Whole "." and ".." are sent as %2E and %2E%2E so no HTTP stack can take
   them for dot segments. */
SBX__PRIVATE int sbx__pct_encode_segment(sbx__buf *b, const char *s, size_t n)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t i;
    int dots = (n == 1 && s[0] == '.') || (n == 2 && s[0] == '.' && s[1] == '.');
    for (i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        char enc[3];
        if (!dots && ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                      c == '-' || c == '.' || c == '_' || c == '~')) {
            if (sbx__buf_append(b, &s[i], 1) != 0) return -1;
            continue;
        }
        enc[0] = '%';
        enc[1] = hex[c >> 4];
        enc[2] = hex[c & 15];
        if (sbx__buf_append(b, enc, 3) != 0) return -1;
    }
    return 0;
}

/* ======================================================================== */
/* >>json: strict RFC 8259 scanner (no allocation) and a string writer      */
/* ======================================================================== */
/* A strict RFC 8259 scanner in the style of jsmn: it never allocates and never
   copies; tokens are byte ranges into the caller's buffer (js, len), which needs
   no NUL terminator and is never read past len. No recursion: open containers
   live on a stack array of SBX_JSON_MAX_DEPTH entries (5 bytes each).

   Tokens: [start, end) in js (strings without their quotes, containers with
   their brackets); size = members or elements; next = the first token after
   the subtree, so a subtree is skipped in O(1). An object token is followed
   by key, value-subtree, key, value-subtree... (SBX__JSON_FOREACH_MEMBER).

   Accepted is the RFC grammar and nothing more (one value; no BOM; strings
   with well-formed UTF-8 only, RFC 3629), so a hostile server cannot smuggle
   bytes that a later step reads another way. Duplicate keys are allowed and
   the LAST one wins in lookups (as in Go and Python). \u escapes of lone
   surrogates are accepted as Go and Python do and unescape to U+FFFD, so every
   unescaped string is valid UTF-8 (\u0000 gives a NUL inside it).

   sbx__json_parse returns the token count or the first problem scanning left
   to right: ERR_NOMEM (valid, more than ntoks tokens; toks NULL only counts),
   ERR_INVALID, ERR_PARTIAL (every byte so far fits: empty input too), ERR_DEPTH.
   sbx__json_get paths: `name` / `.name`, `[N]`, `["raw key"]` for keys with
   dots ("metadata.annotations[\"agents.x-k8s.io/pod-name\"]"); keys compare
   after unescaping. Unescaping never grows a string. sbx__json_double works
   without strtod (no locale): exact when the digits fit 2^53 and the exponent
   is within +-22 (timestamps such as 1755856000.12), else within an ulp or so
   via long double. */

#include <float.h>

#if SBX_JSON_MAX_DEPTH < 1 || SBX_JSON_MAX_DEPTH > 100000
#error "SBX_JSON_MAX_DEPTH must be between 1 and 100000"
#endif

enum {
    SBX__JSON_OBJECT = 1,
    SBX__JSON_ARRAY = 2,
    SBX__JSON_STRING = 3,
    SBX__JSON_NUMBER = 4,
    SBX__JSON_TRUE = 5,
    SBX__JSON_FALSE = 6,
    SBX__JSON_NULL = 7
};

enum {
    SBX__JSON_ERR_NOMEM = -1,
    SBX__JSON_ERR_INVALID = -2,
    SBX__JSON_ERR_PARTIAL = -3,
    SBX__JSON_ERR_DEPTH = -4
};

typedef struct sbx__jtok {
    int type;
    size_t start, end;
    int size;
    int next;
} sbx__jtok;

#define SBX__JSON_FOREACH(t, arr, i, k) \
    for ((k) = 0, (i) = (arr) + 1; (k) < (t)[arr].size; (k)++, (i) = (t)[i].next)
#define SBX__JSON_FOREACH_MEMBER(t, obj, key, k) \
    for ((k) = 0, (key) = (obj) + 1; (k) < (t)[obj].size; (k)++, (key) = (t)[(key) + 1].next)

SBX__PRIVATE const char *sbx__json_strerror(int code)
{
    switch (code) {
    case SBX__JSON_ERR_NOMEM: return "too many JSON tokens";
    case SBX__JSON_ERR_INVALID: return "invalid JSON";
    case SBX__JSON_ERR_PARTIAL: return "truncated JSON";
    case SBX__JSON_ERR_DEPTH: return "JSON nested too deeply";
    default: return code >= 0 ? "valid JSON" : "unknown JSON error";
    }
}

SBX__PRIVATE int sbx__json_hexval(unsigned char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* The well-formed UTF-8 sequence starting at s[0] (avail >= 1 bytes there):
   its length 1..4, 0 if ill-formed, -1 if well-formed so far but cut short. */
SBX__PRIVATE int sbx__json_utf8_seq(const unsigned char *s, size_t avail)
{
    unsigned char c = s[0], lo = 0x80, hi = 0xBF;
    int n, k;
    if (c < 0x80) return 1;
    if (c < 0xC2) return 0;           /* continuation byte, or overlong 2-byte lead */
    if (c < 0xE0) {
        n = 2;
    } else if (c < 0xF0) {
        n = 3;
        if (c == 0xE0) lo = 0xA0;     /* overlong */
        else if (c == 0xED) hi = 0x9F; /* U+D800..U+DFFF */
    } else if (c < 0xF5) {
        n = 4;
        if (c == 0xF0) lo = 0x90;     /* overlong */
        else if (c == 0xF4) hi = 0x8F; /* above U+10FFFF */
    } else {
        return 0;
    }
    for (k = 1; k < n; k++) {
        if ((size_t)k >= avail) return -1;
        if (s[k] < lo || s[k] > hi) return 0;
        lo = 0x80;
        hi = 0xBF;
    }
    return n;
}

/* s[*pp] is the byte after an opening quote. 0 with *pp at the closing quote,
   or an error with *pp at the offending byte (len when cut short). */
SBX__PRIVATE int sbx__json_scan_string(const unsigned char *s, size_t len, size_t *pp)
{
    size_t p = *pp;
    for (;;) {
        unsigned char c;
        if (p >= len) { *pp = len; return SBX__JSON_ERR_PARTIAL; }
        c = s[p];
        if (c == '"') { *pp = p; return 0; }
        if (c == '\\') {
            size_t k;
            if (len - p < 2) { *pp = len; return SBX__JSON_ERR_PARTIAL; }
            c = s[p + 1];
            if (c == 'u') {
                for (k = 2; k < 6; k++) {
                    if (k >= len - p) { *pp = len; return SBX__JSON_ERR_PARTIAL; }
                    if (sbx__json_hexval(s[p + k]) < 0) { *pp = p + k; return SBX__JSON_ERR_INVALID; }
                }
                p += 6;
            } else if (c == '"' || c == '\\' || c == '/' || c == 'b' || c == 'f' || c == 'n' ||
                       c == 'r' || c == 't') {
                p += 2;
            } else {
                *pp = p + 1;
                return SBX__JSON_ERR_INVALID;
            }
        } else if (c < 0x20) {
            *pp = p;
            return SBX__JSON_ERR_INVALID;
        } else if (c < 0x80) {
            p++;
        } else {
            int n = sbx__json_utf8_seq(s + p, len - p);
            if (n < 0) { *pp = len; return SBX__JSON_ERR_PARTIAL; }
            if (n == 0) { *pp = p; return SBX__JSON_ERR_INVALID; }
            p += (size_t)n;
        }
    }
}

#define SBX__JSON_DIGIT(c) ((c) >= '0' && (c) <= '9')

/* s[*pp] is '-' or a digit. 0 with *pp just past the number, or an error. */
SBX__PRIVATE int sbx__json_scan_number(const unsigned char *s, size_t len, size_t *pp)
{
    size_t p = *pp;
    if (s[p] == '-' && ++p == len) goto partial;
    if (s[p] == '0') {
        p++;
    } else if (s[p] >= '1' && s[p] <= '9') {
        while (p < len && SBX__JSON_DIGIT(s[p])) p++;
    } else {
        goto invalid;
    }
    if (p < len && s[p] == '.') {
        if (++p == len) goto partial;
        if (!SBX__JSON_DIGIT(s[p])) goto invalid;
        while (p < len && SBX__JSON_DIGIT(s[p])) p++;
    }
    if (p < len && (s[p] == 'e' || s[p] == 'E')) {
        if (++p == len) goto partial;
        if ((s[p] == '+' || s[p] == '-') && ++p == len) goto partial;
        if (!SBX__JSON_DIGIT(s[p])) goto invalid;
        while (p < len && SBX__JSON_DIGIT(s[p])) p++;
    }
    *pp = p;
    return 0;
partial:
    *pp = len;
    return SBX__JSON_ERR_PARTIAL;
invalid:
    *pp = p;
    return SBX__JSON_ERR_INVALID;
}

SBX__PRIVATE void sbx__json_settok(sbx__jtok *toks, int ntoks, int idx, int type, size_t start, size_t end)
{
    if (idx >= ntoks) return;   /* counting only, or the array is full */
    toks[idx].type = type;
    toks[idx].start = start;
    toks[idx].end = end;
    toks[idx].size = 0;
    toks[idx].next = idx + 1;
}

/* What the scanner expects next. */
enum { SBX__JW_VALUE, SBX__JW_VALUE_OR_CLOSE, SBX__JW_KEY, SBX__JW_KEY_OR_CLOSE, SBX__JW_AFTER };

SBX__PRIVATE int sbx__json_parse_pos(const char *js, size_t len, sbx__jtok *toks, int ntoks, size_t *errpos)
{
    const unsigned char *s = (const unsigned char *)js;
    int stk[SBX_JSON_MAX_DEPTH];            /* token index of each open container */
    unsigned char isobj[SBX_JSON_MAX_DEPTH];
    int depth = 0, count = 0, want = SBX__JW_VALUE, rc = 0, idx, type;
    size_t p = 0, q, tstart, tend;
    if (!s) len = 0;
    if (!toks || ntoks < 0) ntoks = 0;
    for (;;) {
        unsigned char c;
        while (p < len && (s[p] == ' ' || s[p] == '\t' || s[p] == '\n' || s[p] == '\r')) p++;
        if (p == len) {
            if (want == SBX__JW_AFTER && depth == 0) break;
            rc = SBX__JSON_ERR_PARTIAL;
            goto fail;
        }
        c = s[p];
        if (want == SBX__JW_AFTER) {
            if (depth == 0) { rc = SBX__JSON_ERR_INVALID; goto fail; }
            if (c == ',') {
                want = isobj[depth - 1] ? SBX__JW_KEY : SBX__JW_VALUE;
                p++;
                continue;
            }
            if (c != (isobj[depth - 1] ? '}' : ']')) { rc = SBX__JSON_ERR_INVALID; goto fail; }
            goto close_container;
        }
        if ((want == SBX__JW_VALUE_OR_CLOSE && c == ']') || (want == SBX__JW_KEY_OR_CLOSE && c == '}'))
            goto close_container;
        if (count == INT_MAX) { rc = SBX__JSON_ERR_NOMEM; goto fail; }
        idx = count++;
        if (want == SBX__JW_KEY || want == SBX__JW_KEY_OR_CLOSE) {
            if (c != '"') { rc = SBX__JSON_ERR_INVALID; goto fail; }
            q = p + 1;
            rc = sbx__json_scan_string(s, len, &q);
            if (rc != 0) { p = q; goto fail; }
            sbx__json_settok(toks, ntoks, idx, SBX__JSON_STRING, p + 1, q);
            if (stk[depth - 1] < ntoks) toks[stk[depth - 1]].size++;
            p = q + 1;
            while (p < len && (s[p] == ' ' || s[p] == '\t' || s[p] == '\n' || s[p] == '\r')) p++;
            if (p == len) { rc = SBX__JSON_ERR_PARTIAL; goto fail; }
            if (s[p] != ':') { rc = SBX__JSON_ERR_INVALID; goto fail; }
            p++;
            want = SBX__JW_VALUE;
            continue;
        }
        /* a value: count it in its array (object members were counted at the key) */
        if (depth > 0 && !isobj[depth - 1] && stk[depth - 1] < ntoks) toks[stk[depth - 1]].size++;
        if (c == '{' || c == '[') {
            if (depth == SBX_JSON_MAX_DEPTH) { rc = SBX__JSON_ERR_DEPTH; goto fail; }
            /* end and next are set when it closes */
            sbx__json_settok(toks, ntoks, idx, c == '{' ? SBX__JSON_OBJECT : SBX__JSON_ARRAY, p, p);
            stk[depth] = idx;
            isobj[depth] = (unsigned char)(c == '{');
            depth++;
            p++;
            want = c == '{' ? SBX__JW_KEY_OR_CLOSE : SBX__JW_VALUE_OR_CLOSE;
            continue;
        }
        if (c == '"') {
            q = p + 1;
            rc = sbx__json_scan_string(s, len, &q);
            if (rc != 0) { p = q; goto fail; }
            type = SBX__JSON_STRING;
            tstart = p + 1;
            tend = q;
            p = q + 1;
        } else if (c == '-' || SBX__JSON_DIGIT(c)) {
            q = p;
            rc = sbx__json_scan_number(s, len, &q);
            if (rc != 0) { p = q; goto fail; }
            type = SBX__JSON_NUMBER;
            tstart = p;
            tend = p = q;
        } else if (c == 't' || c == 'f' || c == 'n') {
            const char *lit = c == 't' ? "true" : c == 'f' ? "false" : "null";
            size_t k, n = c == 'f' ? 5 : 4;
            for (k = 0; k < n; k++) {
                if (k >= len - p) { p = len; rc = SBX__JSON_ERR_PARTIAL; goto fail; }
                if (s[p + k] != (unsigned char)lit[k]) { p += k; rc = SBX__JSON_ERR_INVALID; goto fail; }
            }
            type = c == 't' ? SBX__JSON_TRUE : c == 'f' ? SBX__JSON_FALSE : SBX__JSON_NULL;
            tstart = p;
            tend = p = p + n;
        } else {
            rc = SBX__JSON_ERR_INVALID;
            goto fail;
        }
        sbx__json_settok(toks, ntoks, idx, type, tstart, tend);
        want = SBX__JW_AFTER;
        continue;
    close_container:
        depth--;
        if (stk[depth] < ntoks) {
            toks[stk[depth]].end = p + 1;
            toks[stk[depth]].next = count;
        }
        p++;
        want = SBX__JW_AFTER;
    }
    if (toks && count > ntoks) {
        p = len;
        rc = SBX__JSON_ERR_NOMEM;
        goto fail;
    }
    return count;
fail:
    if (errpos) *errpos = p;
    return rc;
}

SBX__PRIVATE int sbx__json_parse(const char *js, size_t len, sbx__jtok *toks, int ntoks)
{
    return sbx__json_parse_pos(js, len, toks, ntoks, NULL);
}

SBX__PRIVATE int sbx__json_parse_alloc(const sbx_allocator *a, const char *js, size_t len, sbx__jtok **toks)
{
    int n = sbx__json_parse(js, len, NULL, 0), r;
    *toks = NULL;
    if (n < 0) return n;
    if ((size_t)n > (size_t)-1 / sizeof(sbx__jtok)) return SBX__JSON_ERR_NOMEM;
    *toks = (sbx__jtok *)sbx__malloc(a, (size_t)n * sizeof(sbx__jtok));
    if (!*toks) return SBX__JSON_ERR_NOMEM;
    r = sbx__json_parse(js, len, *toks, n);
    if (r != n) {   /* cannot happen: the same bytes were just counted */
        sbx__free(a, *toks);
        *toks = NULL;
        return r < 0 ? r : SBX__JSON_ERR_INVALID;
    }
    return n;
}

/* Encode code point cp (<= 0x10FFFF, not a surrogate) as UTF-8; the length. */
SBX__PRIVATE size_t sbx__json_utf8_put(unsigned long cp, unsigned char out[4])
{
    if (cp < 0x80) {
        out[0] = (unsigned char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (unsigned char)(0xC0 | (cp >> 6));
        out[1] = (unsigned char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (unsigned char)(0xE0 | (cp >> 12));
        out[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (unsigned char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (unsigned char)(0xF0 | (cp >> 18));
    out[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (unsigned char)(0x80 | (cp & 0x3F));
    return 4;
}

/* Four hex digits at s (avail bytes there) as a number, or -1. */
SBX__PRIVATE long sbx__json_hex4(const char *s, size_t avail)
{
    long v = 0;
    int k, d;
    if (avail < 4) return -1;
    for (k = 0; k < 4; k++) {
        d = sbx__json_hexval((unsigned char)s[k]);
        if (d < 0) return -1;
        v = v * 16 + d;
    }
    return v;
}

/* Unescape one unit of the string bytes js[*pp..end) into out: a raw byte, or
   the UTF-8 of an escape (a surrogate pair as one code point, a lone surrogate
   as U+FFFD). Never more bytes out than in. Advances *pp; returns the count. */
SBX__PRIVATE size_t sbx__json_decode1(const char *js, size_t *pp, size_t end, unsigned char out[4])
{
    size_t p = *pp;
    long cp, lo;
    unsigned char c = (unsigned char)js[p];
    if (c != '\\' || end - p < 2) {
        out[0] = c;
        *pp = p + 1;
        return 1;
    }
    c = (unsigned char)js[p + 1];
    if (c != 'u') {
        switch (c) {
        case 'b': out[0] = '\b'; break;
        case 'f': out[0] = '\f'; break;
        case 'n': out[0] = '\n'; break;
        case 'r': out[0] = '\r'; break;
        case 't': out[0] = '\t'; break;
        default: out[0] = c; break;   /* \" \\ \/ */
        }
        *pp = p + 2;
        return 1;
    }
    cp = sbx__json_hex4(js + p + 2, end - p - 2);
    if (cp < 0) {   /* only in tokens not made by the scanner: keep the backslash */
        out[0] = '\\';
        *pp = p + 1;
        return 1;
    }
    p += 6;
    if (cp >= 0xD800 && cp <= 0xDBFF) {
        lo = -1;
        if (end - p >= 6 && js[p] == '\\' && js[p + 1] == 'u') lo = sbx__json_hex4(js + p + 2, 4);
        if (lo >= 0xDC00 && lo <= 0xDFFF) {
            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            p += 6;
        } else {
            cp = 0xFFFD;
        }
    } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
        cp = 0xFFFD;
    }
    *pp = p;
    return sbx__json_utf8_put((unsigned long)cp, out);
}

SBX__PRIVATE int sbx__json_is_string(const sbx__jtok *t, int i)
{
    return t && i >= 0 && t[i].type == SBX__JSON_STRING && t[i].start <= t[i].end;
}

SBX__PRIVATE int sbx__json_eqn(const char *js, const sbx__jtok *t, int i, const char *s, size_t n)
{
    size_t p, end, o = 0, m;
    unsigned char u[4];
    if (!sbx__json_is_string(t, i) || (!s && n)) return 0;
    p = t[i].start;
    end = t[i].end;
    while (p < end) {
        m = sbx__json_decode1(js, &p, end, u);
        if (m > n - o || memcmp(u, s + o, m) != 0) return 0;
        o += m;
    }
    return o == n;
}

SBX__PRIVATE int sbx__json_eq(const char *js, const sbx__jtok *t, int i, const char *s)
{
    return s ? sbx__json_eqn(js, t, i, s, strlen(s)) : 0;
}

SBX__PRIVATE int sbx__json_unescape(const char *js, const sbx__jtok *t, int i, char *out, size_t cap,
                                    size_t *outlen)
{
    size_t p, end, need = 0, m;
    unsigned char u[4];
    if (!sbx__json_is_string(t, i)) return -2;
    end = t[i].end;
    for (p = t[i].start; p < end;) need += sbx__json_decode1(js, &p, end, u);
    if (outlen) *outlen = need;
    if (!out || cap == 0 || need > cap - 1) {
        if (out && cap) out[0] = '\0';
        return -1;
    }
    need = 0;
    for (p = t[i].start; p < end;) {
        m = sbx__json_decode1(js, &p, end, u);
        memcpy(out + need, u, m);
        need += m;
    }
    out[need] = '\0';
    return 0;
}

SBX__PRIVATE int sbx__json_strdup(const sbx_allocator *a, const char *js, const sbx__jtok *t, int i, char **out,
                                  size_t *outlen)
{
    size_t cap;
    *out = NULL;
    if (!sbx__json_is_string(t, i)) return -2;
    cap = t[i].end - t[i].start;   /* unescaping never grows a string */
    if (cap == (size_t)-1) return -1;
    *out = (char *)sbx__malloc(a, cap + 1);
    if (!*out) return -1;
    if (sbx__json_unescape(js, t, i, *out, cap + 1, outlen) != 0) {   /* cannot happen */
        sbx__free(a, *out);
        *out = NULL;
        return -1;
    }
    return 0;
}

SBX__PRIVATE int sbx__json_member(const char *js, const sbx__jtok *t, int ntok, int obj, const char *key,
                                  size_t keylen)
{
    int i, k, found = -1;
    if (!t || obj < 0 || obj >= ntok || t[obj].type != SBX__JSON_OBJECT) return -1;
    for (k = 0, i = obj + 1; k < t[obj].size; k++, i = t[i + 1].next) {
        if (i <= obj || i >= ntok - 1) return -1;   /* tokens cut short */
        if (sbx__json_eqn(js, t, i, key, keylen)) found = i + 1;
    }
    return found;
}

SBX__PRIVATE int sbx__json_index(const sbx__jtok *t, int ntok, int arr, int n)
{
    int i, k;
    if (!t || arr < 0 || arr >= ntok || t[arr].type != SBX__JSON_ARRAY || n < 0 || n >= t[arr].size)
        return -1;
    for (k = 0, i = arr + 1; k < n; k++) {
        if (i <= arr || i >= ntok) return -1;
        i = t[i].next;
    }
    return i > arr && i < ntok ? i : -1;
}

SBX__PRIVATE int sbx__json_get(const char *js, const sbx__jtok *t, int ntok, int at, const char *path)
{
    const char *p = path, *name;
    int cur = at;
    if (!t || !path || at < 0 || at >= ntok) return -1;
    while (*p) {
        if (*p == '[' && p[1] == '"') {
            const char *e = strstr(p + 2, "\"]");
            if (!e) return -1;
            cur = sbx__json_member(js, t, ntok, cur, p + 2, (size_t)(e - (p + 2)));
            p = e + 2;
        } else if (*p == '[') {
            int n = 0;
            p++;
            if (!SBX__JSON_DIGIT(*p)) return -1;
            for (; SBX__JSON_DIGIT(*p); p++) {
                if (n > (INT_MAX - (*p - '0')) / 10) return -1;
                n = n * 10 + (*p - '0');
            }
            if (*p++ != ']') return -1;
            cur = sbx__json_index(t, ntok, cur, n);
        } else {
            if (p != path && *p++ != '.') return -1;
            name = p;
            while (*p && *p != '.' && *p != '[') p++;
            if (p == name) return -1;
            cur = sbx__json_member(js, t, ntok, cur, name, (size_t)(p - name));
        }
        if (cur < 0) return -1;
    }
    return cur;
}

SBX__PRIVATE int sbx__json_find(const char *js, const sbx__jtok *t, int ntok, int arr, const char *key,
                                const char *val)
{
    int i, k;
    if (!t || !key || !val || arr < 0 || arr >= ntok || t[arr].type != SBX__JSON_ARRAY) return -1;
    for (k = 0, i = arr + 1; k < t[arr].size; k++, i = t[i].next) {
        if (i <= arr || i >= ntok) return -1;
        if (sbx__json_eq(js, t, sbx__json_get(js, t, ntok, i, key), val)) return i;
    }
    return -1;
}

SBX__PRIVATE int sbx__json_int(const char *js, const sbx__jtok *t, int i, long long *out)
{
    size_t p, end;
    int neg = 0;
    unsigned long long v = 0, lim = (unsigned long long)LLONG_MAX, d;
    if (!t || i < 0 || t[i].type != SBX__JSON_NUMBER) return -1;
    p = t[i].start;
    end = t[i].end;
    if (p < end && js[p] == '-') {
        neg = 1;
        lim += 1;   /* |LLONG_MIN| */
        p++;
    }
    if (p >= end) return -1;
    for (; p < end; p++) {
        if (!SBX__JSON_DIGIT(js[p])) return -1;
        d = (unsigned long long)(js[p] - '0');
        if (v > (lim - d) / 10) return -1;
        v = v * 10 + d;
    }
    if (!neg) *out = (long long)v;
    else if (v == (unsigned long long)LLONG_MAX + 1) *out = LLONG_MIN;
    else *out = -(long long)v;
    return 0;
}

SBX__PRIVATE int sbx__json_double(const char *js, const sbx__jtok *t, int i, double *out)
{
    static const double exact[23] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,  1e8,  1e9,  1e10, 1e11,
                                     1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};
    static const long double pow2k[9] = {1e1L, 1e2L, 1e4L, 1e8L, 1e16L, 1e32L, 1e64L, 1e128L, 1e256L};
    size_t p, end;
    int neg = 0, nd = 0, digits = 0, eneg = 0, k;
    unsigned long long m = 0;
    long dexp = 0, e = 0, x;
    unsigned long ax;
    double r;
    long double v;
    if (!t || i < 0 || t[i].type != SBX__JSON_NUMBER) return -1;
    p = t[i].start;
    end = t[i].end;
    if (p < end && js[p] == '-') { neg = 1; p++; }
    /* significand: the first 19 significant digits in m, the rest only move dexp */
    for (; p < end && SBX__JSON_DIGIT(js[p]); p++, digits++) {
        if (m == 0 && js[p] == '0') continue;
        if (nd < 19) { m = m * 10 + (unsigned long long)(js[p] - '0'); nd++; }
        else if (dexp < 100000000L) dexp++;
    }
    if (p < end && js[p] == '.') {
        for (p++; p < end && SBX__JSON_DIGIT(js[p]); p++, digits++) {
            if (m == 0 && js[p] == '0') { if (dexp > -100000000L) dexp--; continue; }
            if (nd < 19) { m = m * 10 + (unsigned long long)(js[p] - '0'); nd++; dexp--; }
        }
    }
    if (p < end && (js[p] == 'e' || js[p] == 'E')) {
        p++;
        if (p < end && (js[p] == '+' || js[p] == '-')) eneg = js[p++] == '-';
        if (p >= end) return -1;
        for (; p < end && SBX__JSON_DIGIT(js[p]); p++)
            if (e < 100000000L) e = e * 10 + (js[p] - '0');
    }
    if (p != end || digits == 0) return -1;
    if (m == 0) {
        *out = neg ? -0.0 : 0.0;
        return 0;
    }
    x = dexp + (eneg ? -e : e);
    if (m <= (1ull << 53) && x >= -22 && x <= 22) {
        r = (double)m;
        r = x < 0 ? r / exact[-x] : r * exact[x];
    } else if (nd + x > 310) {
        return -1;   /* >= 1e310 */
    } else if (nd + x < -400) {
        r = 0.0;     /* < 1e-400 */
    } else {
        v = (long double)m;
        ax = (unsigned long)(x < 0 ? -x : x);
        for (k = 0; ax; k++, ax >>= 1)
            if (ax & 1) v = x < 0 ? v / pow2k[k] : v * pow2k[k];
        if (v > (long double)DBL_MAX) return -1;
        r = (double)v;
    }
    if (r > DBL_MAX) return -1;
    *out = neg ? -r : r;
    return 0;
}

SBX__PRIVATE int sbx__json_write_str(sbx__buf *b, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *u = (const unsigned char *)s;
    size_t i, total = 2, o;
    char *w;
    int k;
    if (!u && n) return -2;
    for (i = 0; i < n;) {
        unsigned char c = u[i];
        if (total > (size_t)-1 - 6) return -1;
        if (c >= 0x80) {
            k = sbx__json_utf8_seq(u + i, n - i);
            if (k <= 0) return -2;
            i += (size_t)k;
            total += (size_t)k;
            continue;
        }
        if (c == '"' || c == '\\' || c == '\b' || c == '\f' || c == '\n' || c == '\r' || c == '\t') total += 2;
        else if (c < 0x20) total += 6;
        else total += 1;
        i++;
    }
    if (sbx__buf_reserve(b, total) != 0) return -1;
    w = b->data + b->len;
    o = 0;
    w[o++] = '"';
    for (i = 0; i < n; i++) {
        unsigned char c = u[i];
        char e = 0;
        switch (c) {
        case '"': e = '"'; break;
        case '\\': e = '\\'; break;
        case '\b': e = 'b'; break;
        case '\f': e = 'f'; break;
        case '\n': e = 'n'; break;
        case '\r': e = 'r'; break;
        case '\t': e = 't'; break;
        default: break;
        }
        if (e) {
            w[o++] = '\\';
            w[o++] = e;
        } else if (c < 0x20) {
            w[o++] = '\\';
            w[o++] = 'u';
            w[o++] = '0';
            w[o++] = '0';
            w[o++] = hex[c >> 4];
            w[o++] = hex[c & 15];
        } else {
            w[o++] = (char)c;
        }
    }
    w[o++] = '"';
    b->len += o;
    b->data[b->len] = '\0';
    return 0;
}

/* ======================================================================== */
/* >>http: HTTP/1.1 messages: head, chunked and line parsers (no I/O)       */
/* ======================================================================== */
/* The pure half of the HTTP/1.1 client (>>conn does the I/O): the response
   head parser, the chunked decoder, a line splitter, an error response's
   text. Parsers (sbx__http_parse_head, sbx__chunked_decode,
   sbx__linesplit_feed) never allocate and accept any split of the input:
   they are fuzzed. */

#if SBX_MAX_HEADER_BYTES > 0x3fffffff || SBX_MAX_HEADER_BYTES < 256
#error "SBX_MAX_HEADER_BYTES must be between 256 and 2^30"
#endif
#if SBX_MAX_HEADERS < 1
#error "SBX_MAX_HEADERS must be at least 1"
#endif

#define SBX__HTTP_INVALID (-1)
#define SBX__HTTP_INCOMPLETE (-2)
#define SBX__HTTP_TOO_MANY (-3)
#define SBX__HTTP_TOO_LONG (-4)

#define SBX__HTTP_IO_SIZE 65536  /* body buffer: memory stays flat */
#define SBX__HTTP_BUF_SIZE (SBX_MAX_HEADER_BYTES > SBX__HTTP_IO_SIZE ? SBX_MAX_HEADER_BYTES : SBX__HTTP_IO_SIZE)
#define SBX__HTTP_MAX_ADDRS 4
#define SBX__HTTP_MAX_INTERIM 32             /* 1xx answers skipped per request */
#define SBX__HTTP_DISCARD_MAX (256u * 1024u) /* drained to keep a connection   */
#define SBX__HTTP_CHUNK_EXT_MAX 4096         /* one chunk-size line            */
#define SBX__HTTP_NAME_MAX 1024              /* multipart field and file name  */
#define SBX__HTTP_MEM_INLINE 16384           /* small bodies go out with the head */

typedef struct sbx__http_hdr {
    const char *name;
    size_t name_len;
    const char *value;  /* leading and trailing blanks removed */
    size_t value_len;
} sbx__http_hdr;

/* ---- character classes -------------------------------------------------- */

SBX__PRIVATE int sbx__http_tchar(unsigned char c)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) return 1;
    return c != 0 && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

/* A byte of a field value or reason phrase: HTAB, SP, VCHAR, obs-text. */
SBX__PRIVATE int sbx__http_vchar(unsigned char c)
{
    return c == '\t' || (c >= 0x20 && c != 0x7f);
}

SBX__PRIVATE int sbx__http_lower(unsigned char c)
{
    return c >= 'A' && c <= 'Z' ? c + 32 : c;
}

/* ASCII case-insensitive: does s[0..n) equal the NUL-terminated t? */
SBX__PRIVATE int sbx__http_ieq(const char *s, size_t n, const char *t)
{
    size_t i;
    for (i = 0; i < n; i++)
        if (t[i] == '\0' || sbx__http_lower((unsigned char)s[i]) != sbx__http_lower((unsigned char)t[i])) return 0;
    return t[n] == '\0';
}

/* Does the comma-separated list s[0..n) contain the token `lower`? */
SBX__PRIVATE int sbx__http_has_token(const char *s, size_t n, const char *lower)
{
    size_t i = 0;
    while (i < n) {
        size_t b, t;
        while (i < n && (s[i] == ' ' || s[i] == '\t' || s[i] == ',')) i++;
        b = i;
        while (i < n && s[i] != ',') i++;
        t = i;
        while (t > b && (s[t - 1] == ' ' || s[t - 1] == '\t')) t--;
        if (t > b && sbx__http_ieq(s + b, t - b, lower)) return 1;
    }
    return 0;
}

/* ---- response head parser ----------------------------------------------- */

#define SBX__HTTP_MORE() \
    return (len >= (size_t)SBX_MAX_HEADER_BYTES ? SBX__HTTP_TOO_LONG : SBX__HTTP_INCOMPLETE)
#define SBX__HTTP_BAD(w) \
    do { *why = (w); return SBX__HTTP_INVALID; } while (0)
/* At buf[i] == CR or LF: step over CRLF or a lone LF (RFC 9112 2.2). */
#define SBX__HTTP_EOL()                                      \
    do {                                                     \
        if (buf[i] == '\r') {                                \
            if (i + 1 >= lim) SBX__HTTP_MORE();              \
            if (buf[i + 1] != '\n') SBX__HTTP_BAD("bare CR in the response head"); \
            i += 2;                                          \
        } else {                                             \
            i += 1;                                          \
        }                                                    \
    } while (0)

/* Parse a response head (status line, header fields, empty line) without
   allocating. Views point into buf. Strict: HTTP/1.0 or 1.1 only, status
   100-599, field names are tokens with no blank before the colon, obs-fold
   and control characters are refused. Every proper prefix of a valid head is
   SBX__HTTP_INCOMPLETE; bytes past SBX_MAX_HEADER_BYTES are never read. */
SBX__PRIVATE int sbx__http_parse_head(const char *buf, size_t len, int *minor, int *status,
                                      const char **reason, size_t *reason_len,
                                      sbx__http_hdr *hdr, size_t *nhdr, const char **why)
{
    static const char proto[] = "HTTP/1.";
    const char *ignored;
    size_t i, lim = len, cap = *nhdr, n = 0, rs, re;
    int k, st = 0;
    if (!why) why = &ignored;
    *why = NULL;
    *nhdr = 0;
    if (lim > (size_t)SBX_MAX_HEADER_BYTES) lim = (size_t)SBX_MAX_HEADER_BYTES;
    for (i = 0; i < 7; i++) {
        if (i >= lim) SBX__HTTP_MORE();
        if (buf[i] != proto[i]) SBX__HTTP_BAD("bad status line (no HTTP/1.x version)");
    }
    if (i >= lim) SBX__HTTP_MORE();
    if (buf[i] != '0' && buf[i] != '1') SBX__HTTP_BAD("unsupported HTTP version (only 1.0 and 1.1)");
    *minor = buf[i] - '0';
    i++;
    if (i >= lim) SBX__HTTP_MORE();
    if (buf[i] != ' ') SBX__HTTP_BAD("bad status line (no space after the version)");
    i++;
    for (k = 0; k < 3; k++, i++) {
        if (i >= lim) SBX__HTTP_MORE();
        if (buf[i] < '0' || buf[i] > '9') SBX__HTTP_BAD("bad status code");
        st = st * 10 + (buf[i] - '0');
    }
    if (st < 100 || st > 599) SBX__HTTP_BAD("bad status code (not 100-599)");
    if (i >= lim) SBX__HTTP_MORE();
    if (buf[i] == ' ') {
        i++;
        rs = i;
        for (;;) {
            if (i >= lim) SBX__HTTP_MORE();
            if (buf[i] == '\r' || buf[i] == '\n') break;
            if (!sbx__http_vchar((unsigned char)buf[i])) SBX__HTTP_BAD("control character in the reason phrase");
            i++;
        }
        re = i;
    } else if (buf[i] == '\r' || buf[i] == '\n') {
        rs = re = i;
    } else {
        SBX__HTTP_BAD("bad status code");
    }
    SBX__HTTP_EOL();
    *status = st;
    *reason = buf + rs;
    *reason_len = re - rs;
    for (;;) {
        size_t ns, ne, vs, ve;
        if (i >= lim) SBX__HTTP_MORE();
        if (buf[i] == '\r' || buf[i] == '\n') {
            SBX__HTTP_EOL();
            *nhdr = n;
            return (int)i;
        }
        if (buf[i] == ' ' || buf[i] == '\t') SBX__HTTP_BAD("obsolete line folding (obs-fold) in a header field");
        ns = i;
        for (;;) {
            unsigned char c;
            if (i >= lim) SBX__HTTP_MORE();
            c = (unsigned char)buf[i];
            if (c == ':') break;
            if (!sbx__http_tchar(c)) {
                if (c == ' ' || c == '\t') SBX__HTTP_BAD("whitespace between a header name and the colon");
                if (c == '\r' || c == '\n') SBX__HTTP_BAD("header line without a colon");
                SBX__HTTP_BAD("bad character in a header name");
            }
            i++;
        }
        if (i == ns) SBX__HTTP_BAD("empty header name");
        ne = i++;
        for (;;) {
            if (i >= lim) SBX__HTTP_MORE();
            if (buf[i] != ' ' && buf[i] != '\t') break;
            i++;
        }
        vs = ve = i;
        for (;;) {
            unsigned char c;
            if (i >= lim) SBX__HTTP_MORE();
            c = (unsigned char)buf[i];
            if (c == '\r' || c == '\n') break;
            if (!sbx__http_vchar(c)) SBX__HTTP_BAD("control character in a header value");
            i++;
            if (c != ' ' && c != '\t') ve = i;
        }
        SBX__HTTP_EOL();
        if (n >= cap) {
            *why = "too many header fields";
            *nhdr = n;
            return SBX__HTTP_TOO_MANY;
        }
        hdr[n].name = buf + ns;
        hdr[n].name_len = ne - ns;
        hdr[n].value = buf + vs;
        hdr[n].value_len = ve - vs;
        n++;
    }
}
#undef SBX__HTTP_MORE
#undef SBX__HTTP_BAD
#undef SBX__HTTP_EOL

/* Strict Content-Length: digits only, at most 2^63 - 1. 0 ok, -1 bad. */
SBX__PRIVATE int sbx__http_parse_length(const char *s, size_t n, long long *out)
{
    unsigned long long v = 0;
    size_t i;
    if (n == 0) return -1;
    for (i = 0; i < n; i++) {
        unsigned d;
        if (s[i] < '0' || s[i] > '9') return -1;
        d = (unsigned)(s[i] - '0');
        if (v > (0x7fffffffffffffffull - d) / 10) return -1;
        v = v * 10 + d;
    }
    *out = (long long)v;
    return 0;
}

/* ---- chunked transfer coding: in-place decoder ------------------------- */

enum {
    SBX__CH_SIZE, SBX__CH_SIZE_WS, SBX__CH_EXT, SBX__CH_SIZE_LF, SBX__CH_DATA, SBX__CH_DATA_CR,
    SBX__CH_DATA_LF, SBX__CH_TRAILER_START, SBX__CH_TRAILER, SBX__CH_TRAILER_LF, SBX__CH_END_LF,
    SBX__CH_DONE
};

typedef struct sbx__chunked {
    int state;
    int ndigits;                /* hex digits of the current size      */
    unsigned long long left;    /* data bytes left in the current chunk */
    size_t line;                /* bytes of the extension line          */
    size_t trailer;             /* bytes of trailer fields so far       */
    const char *why;            /* the rule broken, after -1            */
} sbx__chunked;

SBX__PRIVATE void sbx__chunked_init(sbx__chunked *d)
{
    memset(d, 0, sizeof *d);
    d->state = SBX__CH_SIZE;
}

#define SBX__CH_FAIL(w) do { d->why = (w); *out = o; *used = i; return -1; } while (0)

/* Decode buf[0..len) in place (works on any split, even one byte at a time).
   Chunk extensions are skipped, trailer fields are consumed and dropped,
   sizes are strict hex (no sign, no blank before, overflow checked). */
SBX__PRIVATE int sbx__chunked_decode(sbx__chunked *d, char *buf, size_t len, size_t *out, size_t *used)
{
    size_t i = 0, o = 0;
    while (i < len && d->state != SBX__CH_DONE) {
        unsigned char c = (unsigned char)buf[i];
        switch (d->state) {
        case SBX__CH_SIZE: {
            int v = -1;
            if (c >= '0' && c <= '9') v = c - '0';
            else if (c >= 'a' && c <= 'f') v = c - 'a' + 10;
            else if (c >= 'A' && c <= 'F') v = c - 'A' + 10;
            if (v >= 0) {
                if (d->left > (0x7fffffffffffffffull >> 4)) SBX__CH_FAIL("chunk size overflows");
                d->left = d->left * 16 + (unsigned)v;
                d->ndigits++;
                i++;
                break;
            }
            if (d->ndigits == 0) SBX__CH_FAIL("bad chunk size (not a hex number)");
            if (c == ' ' || c == '\t') d->state = SBX__CH_SIZE_WS;
            else if (c == ';') { d->state = SBX__CH_EXT; d->line = 0; }
            else if (c == '\r') d->state = SBX__CH_SIZE_LF;
            else if (c == '\n') goto size_done;
            else SBX__CH_FAIL("bad chunk size (not a hex number)");
            i++;
            break;
        }
        case SBX__CH_SIZE_WS:
            if (c == ';') { d->state = SBX__CH_EXT; d->line = 0; }
            else if (c == '\r') d->state = SBX__CH_SIZE_LF;
            else if (c == '\n') goto size_done;
            else if (c != ' ' && c != '\t') SBX__CH_FAIL("bad chunk size (junk after the size)");
            i++;
            break;
        case SBX__CH_EXT:
            if (c == '\r') d->state = SBX__CH_SIZE_LF;
            else if (c == '\n') goto size_done;
            else if (!sbx__http_vchar(c)) SBX__CH_FAIL("control character in a chunk extension");
            else if (++d->line > SBX__HTTP_CHUNK_EXT_MAX) SBX__CH_FAIL("chunk extension too long");
            i++;
            break;
        case SBX__CH_SIZE_LF:
            if (c != '\n') SBX__CH_FAIL("bare CR in a chunk size line");
        size_done:
            i++;
            d->ndigits = 0;
            if (d->left == 0) {
                d->state = SBX__CH_TRAILER_START;
                d->trailer = 0;
            } else {
                d->state = SBX__CH_DATA;
            }
            break;
        case SBX__CH_DATA: {
            size_t n = len - i;
            if ((unsigned long long)n > d->left) n = (size_t)d->left;
            if (o != i) memmove(buf + o, buf + i, n);
            o += n;
            i += n;
            d->left -= n;
            if (d->left == 0) d->state = SBX__CH_DATA_CR;
            break;
        }
        case SBX__CH_DATA_CR:
            if (c == '\r') d->state = SBX__CH_DATA_LF;
            else if (c == '\n') d->state = SBX__CH_SIZE;
            else SBX__CH_FAIL("missing CRLF after chunk data");
            i++;
            break;
        case SBX__CH_DATA_LF:
            if (c != '\n') SBX__CH_FAIL("missing CRLF after chunk data");
            d->state = SBX__CH_SIZE;
            i++;
            break;
        case SBX__CH_TRAILER_START:
            if (c == '\r') d->state = SBX__CH_END_LF;
            else if (c == '\n') d->state = SBX__CH_DONE;
            else if (c == ' ' || c == '\t') SBX__CH_FAIL("obsolete line folding (obs-fold) in a trailer");
            else { d->state = SBX__CH_TRAILER; continue; }
            i++;
            break;
        case SBX__CH_TRAILER:
            if (c == '\r') d->state = SBX__CH_TRAILER_LF;
            else if (c == '\n') d->state = SBX__CH_TRAILER_START;
            else if (!sbx__http_vchar(c)) SBX__CH_FAIL("control character in a trailer field");
            if (++d->trailer > (size_t)SBX_MAX_HEADER_BYTES) SBX__CH_FAIL("trailer fields too long");
            i++;
            break;
        case SBX__CH_TRAILER_LF:
            if (c != '\n') SBX__CH_FAIL("bare CR in a trailer field");
            d->state = SBX__CH_TRAILER_START;
            i++;
            break;
        case SBX__CH_END_LF:
            if (c != '\n') SBX__CH_FAIL("bare CR after the last chunk");
            d->state = SBX__CH_DONE;
            i++;
            break;
        default:
            SBX__CH_FAIL("chunked decoder in a bad state");
        }
    }
    *out = o;
    *used = i;
    return d->state == SBX__CH_DONE ? 1 : 0;
}
#undef SBX__CH_FAIL

/* ---- line splitter ------------------------------------------------------ */

typedef struct sbx__linesplit {
    size_t len;  /* bytes of the current line seen so far */
    size_t cap;  /* the most bytes a line may have before its "\n" */
} sbx__linesplit;

SBX__PRIVATE int sbx__linesplit_feed(sbx__linesplit *ls, const char *p, size_t n, size_t *used)
{
    const char *nl = n ? (const char *)memchr(p, '\n', n) : NULL;
    size_t k = nl ? (size_t)(nl - p) : n;
    *used = 0;
    if (k > ls->cap || ls->len > ls->cap - k) return -1;
    if (nl) {
        ls->len = 0;
        *used = k + 1;
        return 1;
    }
    ls->len += n;
    *used = n;
    return 0;
}

/* Move the current line's bytes from p[0..n) into `line`: 1 line complete
   (one trailing "\r" removed), 0 all taken, -1 too long, -2 no memory. */
SBX__PRIVATE int sbx__http_line_take(sbx__linesplit *ls, sbx__buf *line, const char *p, size_t n, size_t *used)
{
    int r = sbx__linesplit_feed(ls, p, n, used);
    size_t k;
    if (r < 0) return -1;
    k = r == 1 ? *used - 1 : *used;
    if (sbx__buf_append(line, p, k) != 0) return -2;
    if (r == 1 && line->len > 0 && line->data[line->len - 1] == '\r') line->data[--line->len] = '\0';
    return r;
}

/* ---- error text of an HTTP error response ------------------------------ */

#define SBX__HTTP_ERROR_TOKENS 128   /* a Status with a dozen causes; more: the raw text */

/* Append the n-byte character s to out[*o..cap-1), a control byte as a space.
   0 when it does not fit: whole characters only. */
SBX__PRIVATE int sbx__http_put_char(const char *s, size_t n, char *out, size_t cap, size_t *o)
{
    if (*o + n >= cap) return 0;
    if (n == 1 && ((unsigned char)s[0] < 0x20 || s[0] == 0x7f)) out[(*o)++] = ' ';
    else { memcpy(out + *o, s, n); *o += n; }
    return 1;
}

/* "HTTP 404: pods \"x\" not found": the server's own words, from the "message"
   (Kubernetes) or "detail" (FastAPI) string of a JSON body, else the body's
   first 300 bytes; made safe to print. Returns strlen(out). */
SBX__PRIVATE size_t sbx__http_error_text(int status, const char *body, size_t len, char *out, size_t cap)
{
    sbx__jtok t[SBX__HTTP_ERROR_TOKENS];
    size_t o, o0, i, lim;
    int n, v = -1;
    if (!out || cap == 0) return 0;
    n = snprintf(out, cap, "HTTP %d", status);
    if (n < 0) { out[0] = '\0'; return 0; }
    o = (size_t)n < cap ? (size_t)n : cap - 1;
    if (!body || len == 0 || o + 3 >= cap) return o;
    memcpy(out + o, ": ", 2);
    o += 2;
    o0 = o;
    n = sbx__json_parse(body, len, t, SBX__HTTP_ERROR_TOKENS);
    if (n > 0) {
        v = sbx__json_member(body, t, n, 0, "message", 7);
        if (!sbx__json_is_string(t, v)) v = sbx__json_member(body, t, n, 0, "detail", 6);
    }
    if (sbx__json_is_string(t, v)) {
        for (i = t[v].start; i < t[v].end;) {
            unsigned char u[4];
            size_t k;
            if (body[i] == '\\') {
                size_t m = sbx__json_decode1(body, &i, t[v].end, u);
                if (!sbx__http_put_char((const char *)u, m, out, cap, &o)) break;
                continue;
            }
            k = (size_t)sbx__json_utf8_seq((const unsigned char *)body + i, t[v].end - i);
            if (!sbx__http_put_char(body + i, k, out, cap, &o)) break;
            i += k;
        }
    } else {
        lim = len > 300 ? 300 : len;
        for (i = 0; i < lim;) {
            int k = sbx__json_utf8_seq((const unsigned char *)body + i, lim - i);
            if (!sbx__http_put_char(k > 0 ? body + i : "?", k > 0 ? (size_t)k : 1, out, cap, &o)) break;
            i += k > 0 ? (size_t)k : 1;
        }
        if (len > lim && o + 3 < cap) { memcpy(out + o, "...", 3); o += 3; }
    }
    while (o > o0 && out[o - 1] == ' ') o--;
    if (o == o0) o -= 2;  /* nothing to say after "HTTP 404" */
    out[o] = '\0';
    return o;
}

/* ======================================================================== */
/* >>conn: endpoints, connections, the HTTP/1.1 exchange over them          */
/* ======================================================================== */
/* A small, strict HTTP/1.1 client over TCP or unix sockets. One exchange at a
   time per connection (keep-alive; not thread-safe; connects lazily); every
   wait is bounded by an absolute deadline; never raises SIGPIPE (held back
   in this thread while writing); never follows redirects. An HTTP error
   status is NOT a failure here: the caller reads resp.status. There is no
   TLS, so "https://" is refused; "unix:PATH" reaches kubectl proxy
   --unix-socket.

   Order: sbx__http_send (request out, head in; 1xx skipped), then exactly one
   body reader (mem, fd, line, discard). resp owns no memory: its views point
   into the connection until the next send. The connection is kept only when
   the body was read to its end and neither side said "Connection: close";
   any error, and any body left unread at the next send, closes it.

   Why the request rules: Host, Content-Length and Transfer-Encoding are ours
   (a caller's copy could frame the body twice); multipart names with control
   bytes, '"' or '\\' are refused rather than encoded (servers disagree on
   the escapes). A request is sent again once on a new connection only when it
   is idempotent, its body is in memory and a kept-alive connection turned out
   closed before any answer; otherwise that is SBX_ERR_CONNECT ("... may have
   reached the server"): a POST must not run twice.

   A transport (sbx__conn_transport, used by >>ws) carries the bytes of one
   kept-alive connection instead of the socket, with the same reuse rules;
   req.upgrade = 1 makes a 101 the final answer and leaves the socket and the
   bytes after the head (c->buf[rpos, rlen)) to the caller. */

/* ---- endpoints ---------------------------------------------------------- */

typedef union sbx__sockaddr {
    struct sockaddr sa;
    struct sockaddr_in in4;
    struct sockaddr_in6 in6;
    struct sockaddr_un un;
    struct sockaddr_storage ss;
} sbx__sockaddr;

typedef struct sbx__endpoint {
    int is_unix;
    int naddr;                             /* addresses to try, in order */
    sbx__sockaddr addr[SBX__HTTP_MAX_ADDRS];
    socklen_t addrlen[SBX__HTTP_MAX_ADDRS];
    char name[300];                        /* for messages: "127.0.0.1:8001", "unix:/p" */
    char host[300];                        /* Host header value */
    char prefix[512];                      /* "" or "/k8s" (no trailing slash) */
} sbx__endpoint;

SBX__PRIVATE int sbx__endpoint_parse(const char *url, sbx__endpoint *ep, sbx_error *e)
{
    const char *p, *hs, *he, *path;
    char host[256], portstr[8];
    unsigned long port = 80;
    size_t hl, pl, i;
    int v6 = 0;
    memset(ep, 0, sizeof *ep);
    if (!url || !*url) return sbx__fail(e, SBX_ERR_INVALID_ARG, "API URL is empty");
    if (strncmp(url, "unix:", 5) == 0) {
        const char *sp = url + 5;
        size_t n = strlen(sp);
        if (n == 0) return sbx__fail(e, SBX_ERR_INVALID_ARG, "API URL \"%s\": no socket path after unix:", url);
        if (n >= sizeof ep->addr[0].un.sun_path)
            return sbx__fail(e, SBX_ERR_INVALID_ARG, "API URL \"%.200s\": unix socket path longer than %u bytes",
                             url, (unsigned)sizeof ep->addr[0].un.sun_path - 1);
        ep->is_unix = 1;
        ep->naddr = 1;
        ep->addr[0].un.sun_family = AF_UNIX;
        memcpy(ep->addr[0].un.sun_path, sp, n + 1);
        ep->addrlen[0] = (socklen_t)sizeof(struct sockaddr_un);
        snprintf(ep->name, sizeof ep->name, "unix:%s", sp);
        strcpy(ep->host, "localhost");
        return SBX_OK;
    }
    if (sbx__http_ieq(url, 8, "https://"))
        return sbx__fail(e, SBX_ERR_INVALID_ARG,
                         "API URL \"%.200s\": https is not supported (sandbox.h has no TLS); "
                         "use kubectl proxy, which serves plain http on 127.0.0.1", url);
    if (!sbx__http_ieq(url, 7, "http://"))
        return sbx__fail(e, SBX_ERR_INVALID_ARG, "API URL \"%.200s\" must start with http:// or unix:", url);
    p = url + 7;
    if (*p == '[') {
        hs = p + 1;
        he = strchr(hs, ']');
        if (!he) return sbx__fail(e, SBX_ERR_INVALID_ARG, "API URL \"%.200s\": unterminated [IPv6] address", url);
        p = he + 1;
        v6 = 1;
    } else {
        hs = p;
        while (*p && *p != ':' && *p != '/') p++;
        he = p;
    }
    hl = (size_t)(he - hs);
    if (hl == 0) return sbx__fail(e, SBX_ERR_INVALID_ARG, "API URL \"%.200s\" has no host", url);
    if (hl >= sizeof host) return sbx__fail(e, SBX_ERR_INVALID_ARG, "API URL \"%.200s\": host name too long", url);
    memcpy(host, hs, hl);
    host[hl] = '\0';
    if (*p == ':') {
        p++;
        port = 0;
        for (i = 0; p[i] >= '0' && p[i] <= '9' && i < 6; i++) port = port * 10 + (unsigned long)(p[i] - '0');
        if (i == 0 || i > 5 || port == 0 || port > 65535 || (p[i] && p[i] != '/'))
            return sbx__fail(e, SBX_ERR_INVALID_ARG, "API URL \"%.200s\": bad port (1-65535)", url);
        p += i;
    }
    if (*p && *p != '/')
        return sbx__fail(e, SBX_ERR_INVALID_ARG, "API URL \"%.200s\": unexpected '%c' after the host", url, *p);
    path = p;
    pl = strlen(path);
    for (i = 0; i < pl; i++) {
        unsigned char c = (unsigned char)path[i];
        if (c <= 0x20 || c >= 0x7f || c == '?' || c == '#')
            return sbx__fail(e, SBX_ERR_INVALID_ARG,
                             "API URL \"%.200s\": the path prefix may not contain blanks, control "
                             "characters, non-ASCII bytes, '?' or '#'", url);
    }
    while (pl > 0 && path[pl - 1] == '/') pl--;
    if (pl >= sizeof ep->prefix)
        return sbx__fail(e, SBX_ERR_INVALID_ARG, "API URL \"%.200s\": path prefix too long", url);
    memcpy(ep->prefix, path, pl);
    ep->prefix[pl] = '\0';
    snprintf(portstr, sizeof portstr, "%lu", port);
    if (v6) {
        char canon[INET6_ADDRSTRLEN];
        if (inet_pton(AF_INET6, host, &ep->addr[0].in6.sin6_addr) != 1)
            return sbx__fail(e, SBX_ERR_INVALID_ARG, "API URL \"%.200s\": \"%s\" is not an IPv6 address", url, host);
        ep->addr[0].in6.sin6_family = AF_INET6;
        ep->addr[0].in6.sin6_port = htons((unsigned short)port);
        ep->addrlen[0] = (socklen_t)sizeof(struct sockaddr_in6);
        ep->naddr = 1;
        if (!inet_ntop(AF_INET6, &ep->addr[0].in6.sin6_addr, canon, sizeof canon)) strcpy(canon, host);
        snprintf(ep->name, sizeof ep->name, "[%s]:%s", canon, portstr);
    } else if (inet_pton(AF_INET, host, &ep->addr[0].in4.sin_addr) == 1) {
        ep->addr[0].in4.sin_family = AF_INET;
        ep->addr[0].in4.sin_port = htons((unsigned short)port);
        ep->addrlen[0] = (socklen_t)sizeof(struct sockaddr_in);
        ep->naddr = 1;
        snprintf(ep->name, sizeof ep->name, "%s:%s", host, portstr);
    } else {
        struct addrinfo hints, *res = NULL, *ai;
        int rc;
        for (i = 0; i < hl; i++) {
            char c = host[i];
            if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '.'))
                return sbx__fail(e, SBX_ERR_INVALID_ARG, "API URL \"%.200s\": bad host name \"%s\"", url, host);
        }
        memset(&hints, 0, sizeof hints);
        hints.ai_family = AF_UNSPEC;
        hints.ai_socktype = SOCK_STREAM;
        hints.ai_flags = AI_NUMERICSERV;
        rc = getaddrinfo(host, portstr, &hints, &res);
        if (rc != 0)
            return sbx__fail(e, SBX_ERR_CONNECT, "resolve %s: %s", host,
                             rc == EAI_SYSTEM ? strerror(errno) : gai_strerror(rc));
        for (ai = res; ai && ep->naddr < SBX__HTTP_MAX_ADDRS; ai = ai->ai_next) {
            if ((ai->ai_family != AF_INET && ai->ai_family != AF_INET6) || ai->ai_addrlen > sizeof(sbx__sockaddr))
                continue;
            memcpy(&ep->addr[ep->naddr], ai->ai_addr, ai->ai_addrlen);
            ep->addrlen[ep->naddr] = (socklen_t)ai->ai_addrlen;
            ep->naddr++;
        }
        freeaddrinfo(res);
        if (ep->naddr == 0) return sbx__fail(e, SBX_ERR_CONNECT, "resolve %s: no IPv4 or IPv6 address", host);
        snprintf(ep->name, sizeof ep->name, "%s:%s", host, portstr);
    }
    memcpy(ep->host, ep->name, sizeof ep->host);
    return SBX_OK;
}

/* ---- connections -------------------------------------------------------- */

typedef struct sbx__transport {
    int (*open)(void *state, long long deadline, sbx_error *e);
    void (*close)(void *state);
    long (*recv)(void *state, char *p, size_t n, long long deadline);
    int (*send)(void *state, const char *p, size_t n, long long deadline);
    int (*stale)(void *state);
} sbx__transport;

typedef struct sbx__conn {
    sbx__endpoint ep;
    sbx_allocator a;
    const sbx__transport *tr;  /* NULL: the socket itself */
    void *trs;                 /* the transport's state */
    int fd;                 /* -1: not connected */
    int busy;               /* a response body is still unread */
    unsigned long seq;      /* exchange number; a response is current while resp->seq == seq */
    unsigned long served;   /* exchanges completed on the open socket */
    char *buf;              /* SBX__HTTP_BUF_SIZE bytes */
    char *head;             /* copy of the last response head (resp views point here) */
    size_t headcap;
    size_t rpos, rlen;      /* received, not yet parsed: buf[rpos, rlen) */
    size_t bpos, bend;      /* decoded body not yet delivered: buf[bpos, bend) */
    int refused;            /* the last send failed in connect(): nothing of it left us */
} sbx__conn;

enum { SBX__BODY_NONE, SBX__BODY_LENGTH, SBX__BODY_CHUNKED, SBX__BODY_CLOSE };

typedef struct sbx__http_req {
    const char *method;             /* "GET", "POST", ...                          */
    const char *target;             /* "/path?query" (the endpoint prefix goes first) */
    const char *headers;            /* NULL or "Name: value\r\n" lines             */
    const void *body;               /* memory body (NULL when body_len is 0)       */
    size_t body_len;
    int body_fd;                    /* >= 0: read the body from here; -1 none      */
    long long body_fd_len;          /* bytes to send from body_fd; -1: chunked     */
    const char *multipart_name;     /* non-NULL: multipart/form-data, one file part */
    const char *multipart_filename;
    int idempotent;                 /* may be re-sent once (see above)             */
    int upgrade;                    /* 101 is a final answer (see TRANSPORT)        */
} sbx__http_req;

typedef struct sbx__http_resp {
    int status;                     /* 100-599                                     */
    int minor;                      /* 0: HTTP/1.0, 1: HTTP/1.1                    */
    const char *reason;             /* NUL-terminated, may be ""                   */
    sbx__http_hdr hdr[SBX_MAX_HEADERS];
    size_t nhdr;
    long long content_length;       /* -1 when not given                          */
    int chunked;                    /* Transfer-Encoding: chunked                  */
    int keep_alive;                 /* connection reusable once the body is read   */
    int body_done;                  /* the whole body has been delivered           */
    unsigned long long body_read;   /* body bytes delivered so far                 */
    /* private */
    int mode;
    unsigned long long left;
    sbx__chunked ch;
    unsigned long seq;
} sbx__http_resp;

SBX__PRIVATE void sbx__http_req_init(sbx__http_req *r)
{
    memset(r, 0, sizeof *r);
    r->method = "GET";
    r->target = "/";
    r->body_fd = -1;
    r->body_fd_len = -1;
}

SBX__PRIVATE void sbx__conn_init(sbx__conn *c, const sbx__endpoint *ep, const sbx_allocator *a)
{
    memset(c, 0, sizeof *c);
    c->ep = *ep;
    c->a = sbx__allocator(a);
    c->fd = -1;
}

SBX__PRIVATE void sbx__conn_transport(sbx__conn *c, const sbx__transport *tr, void *state)
{
    c->tr = tr;
    c->trs = state;
}

SBX__PRIVATE void sbx__conn_close(sbx__conn *c)
{
    if (c->fd >= 0) {
        if (c->tr) c->tr->close(c->trs);
        else close(c->fd);
    }
    c->fd = -1;
    c->busy = 0;
    c->served = 0;
    c->rpos = c->rlen = c->bpos = c->bend = 0;
}

SBX__PRIVATE void sbx__conn_free(sbx__conn *c)
{
    sbx__conn_close(c);
    sbx__free(&c->a, c->buf);
    sbx__free(&c->a, c->head);
    c->buf = c->head = NULL;
    c->headcap = 0;
}

/* A response owns no memory (its views live in the connection until the next
   send); this only clears it, and is safe on a zeroed or already-cleared one. */
SBX__PRIVATE void sbx__http_resp_free(sbx__http_resp *r)
{
    if (!r) return;
    r->nhdr = 0;
    r->reason = "";
}

/* First header named `name` (case-insensitive); NULL if absent. */
SBX__PRIVATE const char *sbx__http_header(const sbx__http_resp *r, const char *name, size_t *len)
{
    size_t i, n = strlen(name);
    for (i = 0; i < r->nhdr; i++) {
        if (r->hdr[i].name_len == n && sbx__http_ieq(r->hdr[i].name, n, name)) {
            if (len) *len = r->hdr[i].value_len;
            return r->hdr[i].value;
        }
    }
    if (len) *len = 0;
    return NULL;
}

/* recv with a deadline: > 0 bytes, 0 EOF, -1 error (errno), -2 deadline passed. */
SBX__PRIVATE long sbx__http_recv(int fd, char *p, size_t n, long long deadline)
{
    for (;;) {
        ssize_t r;
        int pr;
        if (sbx__now_ms() >= deadline) return -2;
        r = recv(fd, p, n, 0);
        if (r >= 0) return (long)r;
        if (errno == EINTR) continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK) return -1;
        pr = sbx__poll1(fd, POLLIN, deadline);
        if (pr == 0) return -2;
        if (pr < 0) return -1;
    }
}


/* read from a caller's descriptor, blocking or not: > 0, 0 EOF, -1 error
   (errno), -2 deadline. poll() first, so a blocking pipe cannot hang us. */
SBX__PRIVATE long sbx__http_fd_read(int fd, char *p, size_t n, long long deadline)
{
    for (;;) {
        ssize_t r;
        int pr;
        if (sbx__now_ms() >= deadline) return -2;
        pr = sbx__poll1(fd, POLLIN, deadline);
        if (pr == 0) return -2;
        if (pr < 0) return -1;
        r = read(fd, p, n);
        if (r >= 0) return (long)r;
        if (errno != EINTR && errno != EAGAIN && errno != EWOULDBLOCK) return -1;
    }
}

/* How to write to a caller's descriptor without blocking past a deadline. */
enum { SBX__OUT_FILE, SBX__OUT_NONBLOCK, SBX__OUT_BLOCKING, SBX__OUT_SOCKET };

SBX__PRIVATE int sbx__http_out_kind(int fd)
{
    struct stat st;
    int fl;
    if (fstat(fd, &st) != 0 || S_ISREG(st.st_mode) || S_ISBLK(st.st_mode)) return SBX__OUT_FILE;
#ifdef MSG_NOSIGNAL
    if (S_ISSOCK(st.st_mode)) return SBX__OUT_SOCKET;
#endif
    fl = fcntl(fd, F_GETFL);
    return fl >= 0 && (fl & O_NONBLOCK) ? SBX__OUT_NONBLOCK : SBX__OUT_BLOCKING;
}

/* Write all of p to a caller's descriptor: 0, -1 (errno), -2 deadline. A
   blocking pipe gets at most PIPE_BUF bytes per poll() so that no write can
   block; SIGPIPE is the caller's (sbx__http_body_fd) to hold back. */
SBX__PRIVATE int sbx__http_fd_write(int fd, const char *p, size_t n, int kind, long long deadline)
{
    while (n > 0) {
        ssize_t r;
        size_t k = n;
        int pr;
        if (sbx__now_ms() >= deadline) return -2;
        if (kind == SBX__OUT_BLOCKING) {
            pr = sbx__poll1(fd, POLLOUT, deadline);
            if (pr == 0) return -2;
            if (pr < 0) return -1;
            if (k > PIPE_BUF) k = PIPE_BUF;
        }
#ifdef MSG_NOSIGNAL
        if (kind == SBX__OUT_SOCKET) r = send(fd, p, k, MSG_NOSIGNAL);
        else
#endif
            r = write(fd, p, k);
        if (r > 0) {
            p += r;
            n -= (size_t)r;
            continue;
        }
        if (r < 0 && errno == EINTR) continue;
        if (r < 0 && errno != EAGAIN && errno != EWOULDBLOCK) return -1;
        pr = sbx__poll1(fd, POLLOUT, deadline);
        if (pr == 0) return -2;
        if (pr < 0) return -1;
    }
    return 0;
}

/* Send all of p on our own socket: 0, -1 (errno), -2 deadline. The same loop
   as a caller's socket: MSG_NOSIGNAL where there is one, else SO_NOSIGPIPE was
   set on the socket when it was made. */
SBX__PRIVATE int sbx__http_send_all(int fd, const char *p, size_t n, long long deadline)
{
    return sbx__http_fd_write(fd, p, n, SBX__OUT_SOCKET, deadline);
}

SBX__PRIVATE int sbx__http_connect(sbx__conn *c, long long deadline, sbx_error *e)
{
    int k, fd = -1, err = ECONNREFUSED, soerr, one = 1;
    socklen_t sl;
    if (c->tr) {
        fd = c->tr->open(c->trs, deadline, e);
        if (fd < 0) return fd;
        c->fd = fd;
        c->served = 0;
        return SBX_OK;
    }
    for (k = 0; k < c->ep.naddr; k++) {
        int type = SOCK_STREAM;
#ifdef SOCK_CLOEXEC
        type |= SOCK_CLOEXEC;
#endif
        fd = socket(c->ep.addr[k].sa.sa_family, type, 0);
        if (fd < 0) return sbx__fail_sys(e, SBX_ERR_SYS, errno, "socket for %s", c->ep.name);
        if (sbx__set_cloexec(fd) != 0 || sbx__set_nonblock(fd, 1) != 0) {
            err = errno;
            close(fd);
            return sbx__fail_sys(e, SBX_ERR_SYS, err, "socket options for %s", c->ep.name);
        }
#if !defined(MSG_NOSIGNAL) && defined(SO_NOSIGPIPE)
        setsockopt(fd, SOL_SOCKET, SO_NOSIGPIPE, &one, sizeof one);
#endif
        if (connect(fd, &c->ep.addr[k].sa, c->ep.addrlen[k]) == 0) goto connected;
        err = errno;
        if (err == EINPROGRESS || err == EINTR) {
            int pr = sbx__poll1(fd, POLLOUT, deadline);
            if (pr == 0) {
                close(fd);
                return sbx__fail(e, SBX_ERR_TIMEOUT, "connect %s: timed out", c->ep.name);
            }
            if (pr < 0) {
                err = errno;
                close(fd);
                return sbx__fail_sys(e, SBX_ERR_SYS, err, "connect %s: poll", c->ep.name);
            }
            soerr = 0;
            sl = (socklen_t)sizeof soerr;
            if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) != 0) soerr = errno;
            if (soerr == 0) goto connected;
            err = soerr;
        }
        close(fd);
        fd = -1;
    }
    return sbx__fail_sys(e, SBX_ERR_CONNECT, err, "connect %s", c->ep.name);
connected:
    if (!c->ep.is_unix) setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    c->fd = fd;
    c->served = 0;
    return SBX_OK;
}

/* Did the server close (or write to) a kept-alive connection while it was idle? */
SBX__PRIVATE int sbx__http_stale(int fd)
{
    struct pollfd pf;
    char b;
    ssize_t r;
    int pr;
    pf.fd = fd;
    pf.events = POLLIN;
    pf.revents = 0;
    do pr = poll(&pf, 1, 0); while (pr < 0 && errno == EINTR);
    if (pr == 0) return 0;
    if (pr < 0) return 1;
    r = recv(fd, &b, 1, MSG_PEEK);
    if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) return 0;
    return 1;  /* EOF, an error, or bytes nobody asked for */
}

SBX__PRIVATE long sbx__conn_recv(sbx__conn *c, char *p, size_t n, long long deadline)
{
    return c->tr ? c->tr->recv(c->trs, p, n, deadline) : sbx__http_recv(c->fd, p, n, deadline);
}

SBX__PRIVATE int sbx__conn_send(sbx__conn *c, const char *p, size_t n, long long deadline)
{
    return c->tr ? c->tr->send(c->trs, p, n, deadline) : sbx__http_send_all(c->fd, p, n, deadline);
}

SBX__PRIVATE int sbx__conn_stale(sbx__conn *c)
{
    return c->tr ? c->tr->stale(c->trs) : sbx__http_stale(c->fd);
}

/* The exchange is over: keep the socket only if it is clean and kept alive. */
SBX__PRIVATE void sbx__http_finish(sbx__conn *c, sbx__http_resp *r)
{
    r->body_done = 1;
    c->busy = 0;
    if (!r->keep_alive || c->rpos != c->rlen || c->bpos != c->bend) {
        sbx__conn_close(c);
    } else {
        c->served++;
        c->rpos = c->rlen = c->bpos = c->bend = 0;
    }
}

/* ---- requests ------------------------------------------------------------ */

SBX__PRIVATE int sbx__http_check_name(const char *what, const char *s, sbx_error *e)
{
    size_t i, n = strlen(s);
    if (n == 0 || n > SBX__HTTP_NAME_MAX)
        return sbx__fail(e, SBX_ERR_INVALID_ARG, "multipart %s must be 1 to %d bytes", what, SBX__HTTP_NAME_MAX);
    for (i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 || c == 0x7f || c == '"' || c == '\\')
            return sbx__fail(e, SBX_ERR_INVALID_ARG,
                             "multipart %s \"%.100s\" contains a control character, '\"' or '\\' "
                             "(these cannot be sent safely and are refused)", what, s);
    }
    return SBX_OK;
}

/* Validate the request; flags: *close_req when it says Connection: close, *has_ua. */
SBX__PRIVATE int sbx__http_check_req(const sbx__http_req *q, int *close_req, int *has_ua, sbx_error *e)
{
    const char *s;
    size_t i, n;
    *close_req = *has_ua = 0;
    if (!q->method || !*q->method || strlen(q->method) > 32)
        return sbx__fail(e, SBX_ERR_INVALID_ARG, "HTTP method missing or too long");
    for (s = q->method; *s; s++)
        if (!sbx__http_tchar((unsigned char)*s))
            return sbx__fail(e, SBX_ERR_INVALID_ARG, "bad HTTP method \"%.40s\"", q->method);
    if (!q->target || q->target[0] != '/')
        return sbx__fail(e, SBX_ERR_INVALID_ARG, "request target must start with '/'");
    for (s = q->target; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c <= 0x20 || c >= 0x7f || c == '#')
            return sbx__fail(e, SBX_ERR_INVALID_ARG,
                             "request target \"%.100s\" has a byte that must be percent-encoded (0x%02x)",
                             q->target, c);
    }
    s = q->headers ? q->headers : "";
    n = strlen(s);
    for (i = 0; i < n;) {
        size_t ns = i, ne, vs, ve;
        while (i < n && sbx__http_tchar((unsigned char)s[i])) i++;
        ne = i;
        if (ne == ns || i >= n || s[i] != ':')
            return sbx__fail(e, SBX_ERR_INVALID_ARG, "request headers: bad line at byte %lu (want \"Name: value\\r\\n\")",
                             (unsigned long)ns);
        i++;
        while (i < n && (s[i] == ' ' || s[i] == '\t')) i++;
        vs = i;
        while (i < n && s[i] != '\r' && s[i] != '\n') {
            if (!sbx__http_vchar((unsigned char)s[i]))
                return sbx__fail(e, SBX_ERR_INVALID_ARG, "request headers: control character in a value");
            i++;
        }
        ve = i;
        if (i + 1 >= n || s[i] != '\r' || s[i + 1] != '\n')
            return sbx__fail(e, SBX_ERR_INVALID_ARG, "request headers: each line must end with \\r\\n");
        i += 2;
        if (sbx__http_ieq(s + ns, ne - ns, "host") || sbx__http_ieq(s + ns, ne - ns, "content-length") ||
            sbx__http_ieq(s + ns, ne - ns, "transfer-encoding") ||
            (q->multipart_name && sbx__http_ieq(s + ns, ne - ns, "content-type")))
            return sbx__fail(e, SBX_ERR_INVALID_ARG, "request headers: %.*s is set by the HTTP client",
                             (int)(ne - ns), s + ns);
        if (sbx__http_ieq(s + ns, ne - ns, "connection") && sbx__http_has_token(s + vs, ve - vs, "close"))
            *close_req = 1;
        if (sbx__http_ieq(s + ns, ne - ns, "user-agent")) *has_ua = 1;
    }
    if (q->body_len > 0 && !q->body) return sbx__fail(e, SBX_ERR_INVALID_ARG, "request body is NULL but body_len > 0");
    if (q->body_fd >= 0 && q->body_len > 0)
        return sbx__fail(e, SBX_ERR_INVALID_ARG, "request has both a memory body and body_fd");
    if (q->body_fd >= 0 && q->body_fd_len < -1)
        return sbx__fail(e, SBX_ERR_INVALID_ARG, "body_fd_len must be >= 0, or -1 for unknown");
    if (q->multipart_name || q->multipart_filename) {
        if (!q->multipart_name || !q->multipart_filename)
            return sbx__fail(e, SBX_ERR_INVALID_ARG, "multipart needs both a field name and a file name");
        if (sbx__http_check_name("field name", q->multipart_name, e) != SBX_OK) return SBX_ERR_INVALID_ARG;
        if (sbx__http_check_name("file name", q->multipart_filename, e) != SBX_OK) return SBX_ERR_INVALID_ARG;
    }
    return SBX_OK;
}

/* The parts of a request that are built once and re-sent on a retry. */
typedef struct sbx__http_out {
    sbx__buf head;            /* request head, then whatever goes out with it */
    char tail[160];           /* multipart close delimiter (+ chunked end)     */
    size_t tail_len;
    int chunked;              /* body sent with Transfer-Encoding: chunked      */
    int inline_body;          /* the memory body is already inside `head`       */
} sbx__http_out;

SBX__PRIVATE int sbx__http_build(sbx__conn *c, const sbx__http_req *q, int has_ua, sbx__http_out *o, sbx_error *e)
{
    char boundary[48], pre_hdr[24];
    unsigned char rnd[16];
    const char *m = q->method;
    int has_body = q->body_len > 0 || q->body_fd >= 0 || q->multipart_name != NULL;
    int mp = q->multipart_name != NULL, k;
    size_t pre_len;
    unsigned long long total = 0, inner;
    sbx__buf *b = &o->head;
    o->chunked = q->body_fd >= 0 && q->body_fd_len < 0;
    o->inline_body = 0;
    o->tail_len = 0;
    if (sbx__buf_printf(b, "%s %s%s HTTP/1.1\r\nHost: %s\r\n", m, c->ep.prefix, q->target, c->ep.host) != 0) goto nomem;
    if (!has_ua && sbx__buf_puts(b, "User-Agent: sandbox.h/" SANDBOX_VERSION_STRING "\r\n") != 0) goto nomem;
    if (q->headers && sbx__buf_puts(b, q->headers) != 0) goto nomem;
    if (mp) {
        sbx__random(rnd, sizeof rnd);
        memcpy(boundary, "sandbox-h-", 10);
        for (k = 0; k < 16; k++) {
            boundary[10 + 2 * k] = "0123456789abcdef"[rnd[k] >> 4];
            boundary[11 + 2 * k] = "0123456789abcdef"[rnd[k] & 15];
        }
        boundary[42] = '\0';
        if (sbx__buf_printf(b, "Content-Type: multipart/form-data; boundary=%s\r\n", boundary) != 0) goto nomem;
    }
    inner = q->body_fd >= 0 ? (unsigned long long)q->body_fd_len : (unsigned long long)q->body_len;
    if (mp) {
        /* the part header; its length is known before the head is finished */
        sbx__buf pre;
        sbx__buf_init(&pre, &c->a);
        if (sbx__buf_printf(&pre, "--%s\r\nContent-Disposition: form-data; name=\"%s\"; filename=\"%s\"\r\n"
                                  "Content-Type: application/octet-stream\r\n\r\n",
                            boundary, q->multipart_name, q->multipart_filename) != 0) {
            sbx__buf_free(&pre);
            goto nomem;
        }
        o->tail_len = (size_t)snprintf(o->tail, sizeof o->tail, "\r\n--%s--\r\n", boundary);
        pre_len = pre.len;
        if (!o->chunked) {
            total = (unsigned long long)pre_len + o->tail_len;
            if (inner > 0x7fffffffffffffffull - total) {
                sbx__buf_free(&pre);
                return sbx__fail(e, SBX_ERR_INVALID_ARG, "request body too large");
            }
            total += inner;
        }
        if ((o->chunked ? sbx__buf_puts(b, "Transfer-Encoding: chunked\r\n\r\n")
                        : sbx__buf_printf(b, "Content-Length: %llu\r\n\r\n", total)) != 0) {
            sbx__buf_free(&pre);
            goto nomem;
        }
        if (o->chunked) {
            snprintf(pre_hdr, sizeof pre_hdr, "%lx\r\n", (unsigned long)pre_len);
            if (sbx__buf_puts(b, pre_hdr) != 0) { sbx__buf_free(&pre); goto nomem; }
        }
        k = sbx__buf_append(b, pre.data, pre.len);
        sbx__buf_free(&pre);
        if (k != 0 || (o->chunked && sbx__buf_puts(b, "\r\n") != 0)) goto nomem;
        if (o->chunked) {
            /* the close delimiter becomes the last data chunk, then the end */
            char t[160];
            int tl = snprintf(t, sizeof t, "%lx\r\n%s\r\n0\r\n\r\n", (unsigned long)o->tail_len, o->tail);
            memcpy(o->tail, t, (size_t)tl + 1);
            o->tail_len = (size_t)tl;
        }
    } else if (o->chunked) {
        if (sbx__buf_puts(b, "Transfer-Encoding: chunked\r\n\r\n") != 0) goto nomem;
        memcpy(o->tail, "0\r\n\r\n", 6);
        o->tail_len = 5;
    } else if (has_body) {
        if (sbx__buf_printf(b, "Content-Length: %llu\r\n\r\n", inner) != 0) goto nomem;
    } else if (strcmp(m, "POST") == 0 || strcmp(m, "PUT") == 0 || strcmp(m, "PATCH") == 0) {
        if (sbx__buf_puts(b, "Content-Length: 0\r\n\r\n") != 0) goto nomem;
    } else if (sbx__buf_puts(b, "\r\n") != 0) {
        goto nomem;
    }
    if (q->body_fd < 0 && q->body_len <= SBX__HTTP_MEM_INLINE) {
        if (q->body_len && sbx__buf_append(b, q->body, q->body_len) != 0) goto nomem;
        o->inline_body = 1;
        if (o->tail_len && !o->chunked) {
            if (sbx__buf_append(b, o->tail, o->tail_len) != 0) goto nomem;
            o->tail_len = 0;
        }
    }
    return SBX_OK;
nomem:
    return sbx__fail(e, SBX_ERR_NOMEM, "out of memory building a request for %s", c->ep.name);
}

/* Send the request. *dropped: the server closed the connection (EPIPE/reset). */
SBX__PRIVATE int sbx__http_write_req(sbx__conn *c, const sbx__http_req *q, const sbx__http_out *o,
                                     long long deadline, int *dropped, sbx_error *e)
{
    int r;
    unsigned long long sent = 0;
    const char *what = "request head";
    *dropped = 0;
    r = sbx__conn_send(c, o->head.data, o->head.len, deadline);
    if (r != 0) goto fail;
    what = "request body";
    if (q->body_fd < 0 && q->body_len > 0 && !o->inline_body) {
        r = sbx__conn_send(c, (const char *)q->body, q->body_len, deadline);
        if (r != 0) goto fail;
        sent = q->body_len;
    } else if (q->body_fd >= 0) {
        /* staging in the receive buffer (empty now): room for a chunk header */
        const size_t front = 24, room = SBX__HTTP_IO_SIZE - front - 2;
        unsigned long long want = o->chunked ? 0 : (unsigned long long)q->body_fd_len;
        for (;;) {
            size_t ask = room;
            long got;
            char *d = c->buf + front;
            if (!o->chunked) {
                if (sent == want) break;
                if (want - sent < ask) ask = (size_t)(want - sent);
            }
            got = sbx__http_fd_read(q->body_fd, d, ask, deadline);
            if (got == -2) {
                return sbx__fail(e, SBX_ERR_TIMEOUT, "send request to %s: timed out reading the body from descriptor %d "
                                 "after %llu bytes", c->ep.name, q->body_fd, sent);
            }
            if (got < 0)
                return sbx__fail_sys(e, SBX_ERR_SYS, errno, "send request to %s: read the body from descriptor %d",
                                     c->ep.name, q->body_fd);
            if (got == 0) {
                if (o->chunked) break;
                return sbx__fail(e, SBX_ERR_SYS, "send request to %s: descriptor %d ended after %llu of %lld body bytes",
                                 c->ep.name, q->body_fd, sent, q->body_fd_len);
            }
            if (o->chunked) {
                char h[20];
                int hl = snprintf(h, sizeof h, "%lx\r\n", (unsigned long)got);
                memcpy(d - hl, h, (size_t)hl);
                d[got] = '\r';
                d[got + 1] = '\n';
                r = sbx__conn_send(c, d - hl, (size_t)got + (size_t)hl + 2, deadline);
            } else {
                r = sbx__conn_send(c, d, (size_t)got, deadline);
            }
            if (r != 0) goto fail;
            sent += (unsigned long long)got;
        }
    }
    if (o->tail_len) {
        r = sbx__conn_send(c, o->tail, o->tail_len, deadline);
        if (r != 0) goto fail;
    }
    return SBX_OK;
fail:
    if (r == -2) return sbx__fail(e, SBX_ERR_TIMEOUT, "send %s to %s: timed out", what, c->ep.name);
    if (errno == EPIPE || errno == ECONNRESET || errno == ENOTCONN || errno == ECONNABORTED) *dropped = 1;
    return sbx__fail_sys(e, SBX_ERR_CONNECT, errno, "send %s to %s", what, c->ep.name);
}

/* Work out the body framing and keep-alive from a final response head. */
SBX__PRIVATE int sbx__http_framing(sbx__conn *c, sbx__http_resp *r, int head_req, int close_req, sbx_error *e)
{
    size_t i;
    int te = 0, conn_close = close_req, conn_ka = 0;
    long long cl = -1;
    for (i = 0; i < r->nhdr; i++) {
        const sbx__http_hdr *h = &r->hdr[i];
        if (sbx__http_ieq(h->name, h->name_len, "content-length")) {
            long long v;
            if (sbx__http_parse_length(h->value, h->value_len, &v) != 0)
                return sbx__fail(e, SBX_ERR_PROTOCOL, "response from %s: bad Content-Length \"%.40s\"",
                                 c->ep.name, h->value);
            if (cl >= 0 && v != cl)
                return sbx__fail(e, SBX_ERR_PROTOCOL, "response from %s: conflicting Content-Length values %lld and %lld",
                                 c->ep.name, cl, v);
            cl = v;
        } else if (sbx__http_ieq(h->name, h->name_len, "transfer-encoding")) {
            if (te || !sbx__http_ieq(h->value, h->value_len, "chunked"))
                return sbx__fail(e, SBX_ERR_PROTOCOL, "response from %s: unsupported Transfer-Encoding \"%.60s\" "
                                 "(only chunked)", c->ep.name, h->value);
            te = 1;
        } else if (sbx__http_ieq(h->name, h->name_len, "connection")) {
            if (sbx__http_has_token(h->value, h->value_len, "close")) conn_close = 1;
            if (sbx__http_has_token(h->value, h->value_len, "keep-alive")) conn_ka = 1;
        }
    }
    if (te && cl >= 0)
        return sbx__fail(e, SBX_ERR_PROTOCOL, "response from %s: both Transfer-Encoding and Content-Length", c->ep.name);
    r->content_length = cl;
    r->chunked = te;
    if (head_req || r->status == 204 || r->status == 304 || r->status == 101) {
        r->mode = SBX__BODY_NONE;
        r->content_length = head_req ? cl : 0;
    } else if (te) {
        r->mode = SBX__BODY_CHUNKED;
        sbx__chunked_init(&r->ch);
    } else if (cl >= 0) {
        r->mode = SBX__BODY_LENGTH;
        r->left = (unsigned long long)cl;
    } else {
        r->mode = SBX__BODY_CLOSE;
    }
    r->keep_alive = !conn_close && (r->minor == 1 || conn_ka) && r->mode != SBX__BODY_CLOSE;
    return SBX_OK;
}

/* Read the final response head (skipping 1xx). *dropped: EOF or reset before any byte. */
SBX__PRIVATE int sbx__http_read_head(sbx__conn *c, sbx__http_resp *r, int head_req, int close_req, int upgrade,
                                     long long deadline, int *dropped, sbx_error *e)
{
    int interim = 0;
    size_t total = 0;  /* bytes received for this response */
    *dropped = 0;
    for (;;) {
        int minor = 0, status = 0, pr = SBX__HTTP_INCOMPLETE;
        const char *reason = NULL, *why = NULL;
        size_t reason_len = 0, nh = SBX_MAX_HEADERS, scanned = 0;
        long got;
        for (;;) {
            size_t avail = c->rlen - c->rpos;
            /* parse only when a line may have ended (cheap on trickled input) */
            if (avail > 0 && (avail <= 16 || memchr(c->buf + c->rpos + scanned, '\n', avail - scanned))) {
                nh = SBX_MAX_HEADERS;
                pr = sbx__http_parse_head(c->buf + c->rpos, avail, &minor, &status, &reason, &reason_len,
                                          r->hdr, &nh, &why);
                if (pr > 0) break;
                if (pr == SBX__HTTP_INVALID)
                    return sbx__fail(e, SBX_ERR_PROTOCOL, "response from %s: %s", c->ep.name, why);
                if (pr == SBX__HTTP_TOO_MANY)
                    return sbx__fail(e, SBX_ERR_TOO_BIG, "response from %s: too big: more than SBX_MAX_HEADERS (%d) "
                                     "header fields", c->ep.name, SBX_MAX_HEADERS);
                if (pr == SBX__HTTP_TOO_LONG) goto too_long;
            }
            scanned = avail;
            if (c->rlen == SBX__HTTP_BUF_SIZE) {
                if (c->rpos == 0) goto too_long;
                memmove(c->buf, c->buf + c->rpos, avail);
                c->rlen = avail;
                c->rpos = 0;
            }
            got = sbx__conn_recv(c, c->buf + c->rlen, SBX__HTTP_BUF_SIZE - c->rlen, deadline);
            if (got == -2)
                return sbx__fail(e, SBX_ERR_TIMEOUT, "wait for the response head from %s: timed out (%lu bytes received)",
                                 c->ep.name, (unsigned long)total);
            if (got == 0 || (got < 0 && errno == ECONNRESET)) {
                if (total == 0) {
                    *dropped = 1;
                    if (got == 0)
                        return sbx__fail(e, SBX_ERR_CONNECT, "read response head from %s: connection closed before any "
                                         "response byte", c->ep.name);
                }
                if (got == 0)
                    return sbx__fail(e, SBX_ERR_CONNECT, "read response head from %s: connection closed after %lu bytes "
                                     "of the head", c->ep.name, (unsigned long)total);
            }
            if (got < 0) return sbx__fail_sys(e, SBX_ERR_CONNECT, errno, "read response head from %s", c->ep.name);
            c->rlen += (size_t)got;
            total += (size_t)got;
        }
        if (status >= 200 || (status == 101 && upgrade)) {
            size_t i;
            char *base;
            if (c->headcap < (size_t)pr + 1) {
                size_t ncap = (size_t)pr + 1 < 1024 ? 1024 : (size_t)pr + 1;
                char *grown = (char *)sbx__realloc(&c->a, c->head, ncap);
                if (!grown) return sbx__fail(e, SBX_ERR_NOMEM, "out of memory for the response head from %s", c->ep.name);
                c->head = grown;
                c->headcap = ncap;
            }
            memcpy(c->head, c->buf + c->rpos, (size_t)pr);
            c->head[pr] = '\0';
            /* re-point the views into the copy and NUL-terminate them there */
            base = c->head;
            r->nhdr = nh;
            for (i = 0; i < nh; i++) {
                r->hdr[i].name = base + (r->hdr[i].name - (c->buf + c->rpos));
                r->hdr[i].value = base + (r->hdr[i].value - (c->buf + c->rpos));
            }
            reason = base + (reason - (c->buf + c->rpos));
            for (i = 0; i < nh; i++) {
                base[(r->hdr[i].name - base) + r->hdr[i].name_len] = '\0';
                base[(r->hdr[i].value - base) + r->hdr[i].value_len] = '\0';
            }
            base[(reason - base) + reason_len] = '\0';
            r->reason = reason;
            r->status = status;
            r->minor = minor;
            c->rpos += (size_t)pr;
            return sbx__http_framing(c, r, head_req, close_req, e);
        }
        if (status == 101)
            return sbx__fail(e, SBX_ERR_PROTOCOL, "response from %s: unexpected 101 Switching Protocols", c->ep.name);
        if (++interim > SBX__HTTP_MAX_INTERIM)
            return sbx__fail(e, SBX_ERR_PROTOCOL, "response from %s: more than %d interim 1xx responses", c->ep.name,
                             SBX__HTTP_MAX_INTERIM);
        c->rpos += (size_t)pr;
    }
too_long:
    return sbx__fail(e, SBX_ERR_TOO_BIG, "response from %s: too big: head longer than SBX_MAX_HEADER_BYTES (%d bytes)",
                     c->ep.name, SBX_MAX_HEADER_BYTES);
}

SBX__PRIVATE int sbx__http_send(sbx__conn *c, const sbx__http_req *q, sbx__http_resp *r, long long deadline, sbx_error *e)
{
    sbx__http_out o;
    int rc, close_req, has_ua, dropped = 0, attempt = 0, reused = 0;
    int head_req = q && q->method && strcmp(q->method, "HEAD") == 0;
    memset(r, 0, sizeof *r);
    r->reason = "";
    r->content_length = -1;
    sbx__buf_init(&o.head, &c->a);
    if (!q) return sbx__fail(e, SBX_ERR_INVALID_ARG, "no request");
    rc = sbx__http_check_req(q, &close_req, &has_ua, e);
    if (rc != SBX_OK) return rc;
    if (!c->buf) {
        c->buf = (char *)sbx__malloc(&c->a, SBX__HTTP_BUF_SIZE);
        if (!c->buf) return sbx__fail(e, SBX_ERR_NOMEM, "out of memory for the HTTP buffer");
    }
    if (c->busy) sbx__conn_close(c);  /* the previous body was not read to its end */
    c->refused = 0;
    rc = sbx__http_build(c, q, has_ua, &o, e);
    if (rc != SBX_OK) goto out;
    for (;;) {
        reused = 0;
        if (c->fd >= 0) {
            if (sbx__conn_stale(c)) sbx__conn_close(c);
            else reused = 1;
        }
        if (c->fd < 0) {
            rc = sbx__http_connect(c, deadline, e);
            if (rc != SBX_OK) {
                c->refused = rc == SBX_ERR_CONNECT && attempt == 0;
                goto out;
            }
        }
        c->seq++;
        c->busy = 1;
        c->rpos = c->rlen = c->bpos = c->bend = 0;
        r->seq = c->seq;
        rc = sbx__http_write_req(c, q, &o, deadline, &dropped, e);
        if (rc == SBX_OK) rc = sbx__http_read_head(c, r, head_req, close_req, q->upgrade, deadline, &dropped, e);
        if (rc == SBX_OK) break;
        sbx__conn_close(c);
        sbx__http_resp_free(r);
        if (!(dropped && reused)) goto out;
        if (q->idempotent && q->body_fd < 0 && attempt == 0) {
            attempt = 1;
            continue;
        }
        if (e) {
            char orig[SBX_ERRMSG_SIZE];
            memcpy(orig, e->msg, sizeof orig);
            orig[sizeof orig - 1] = '\0';
            rc = sbx__fail(e, SBX_ERR_CONNECT, "%s %.200s%.200s: the server closed the kept-alive connection (%s); the "
                           "request may have reached the server and was not sent again (%s)", q->method, c->ep.prefix,
                           q->target, orig, q->idempotent ? "its body came from a descriptor" : "not idempotent");
        } else {
            rc = SBX_ERR_CONNECT;
        }
        goto out;
    }
    if (r->status == 101) {
        r->keep_alive = 0;  /* the caller takes the socket over */
        r->body_done = 1;
    } else if (r->mode == SBX__BODY_NONE || (r->mode == SBX__BODY_LENGTH && r->left == 0)) {
        sbx__http_finish(c, r);
    }
out:
    sbx__buf_free(&o.head);
    return rc;
}

/* ---- response bodies ------------------------------------------------------ */

SBX__PRIVATE int sbx__http_body_fail(sbx__conn *c, int rc)
{
    sbx__conn_close(c);
    return rc;
}

/* Next decoded body bytes: 1 with *p and *n (n > 0), 0 at the end, < 0 error. */
SBX__PRIVATE int sbx__http_body_peek(sbx__conn *c, sbx__http_resp *r, const char **p, size_t *n,
                                     long long deadline, sbx_error *e)
{
    if (r->body_done) return 0;
    if (r->seq != c->seq || !c->busy || c->fd < 0)
        return sbx__fail(e, SBX_ERR_INVALID_ARG, "response body from %s can no longer be read (the connection was "
                         "closed or reused)", c->ep.name);
    for (;;) {
        long got;
        if (c->bend > c->bpos) {
            *p = c->buf + c->bpos;
            *n = c->bend - c->bpos;
            return 1;
        }
        if ((r->mode == SBX__BODY_LENGTH && r->left == 0) || (r->mode == SBX__BODY_CHUNKED && r->ch.state == SBX__CH_DONE)) {
            sbx__http_finish(c, r);
            return 0;
        }
        if (c->rlen > c->rpos) {
            size_t avail = c->rlen - c->rpos;
            if (r->mode == SBX__BODY_LENGTH) {
                size_t k = (unsigned long long)avail > r->left ? (size_t)r->left : avail;
                c->bpos = c->rpos;
                c->bend = c->rpos + k;
                c->rpos += k;
                r->left -= k;
            } else if (r->mode == SBX__BODY_CHUNKED) {
                size_t out = 0, used = 0;
                int dr = sbx__chunked_decode(&r->ch, c->buf + c->rpos, avail, &out, &used);
                if (dr < 0)
                    return sbx__http_body_fail(c, sbx__fail(e, SBX_ERR_PROTOCOL, "read response body from %s: %s",
                                                            c->ep.name, r->ch.why));
                c->bpos = c->rpos;
                c->bend = c->rpos + out;
                c->rpos += used;
            } else {
                c->bpos = c->rpos;
                c->bend = c->rlen;
                c->rpos = c->rlen;
            }
            continue;
        }
        c->rpos = c->rlen = c->bpos = c->bend = 0;
        got = sbx__conn_recv(c, c->buf, SBX__HTTP_IO_SIZE, deadline);
        if (got == -2)
            return sbx__http_body_fail(c, sbx__fail(e, SBX_ERR_TIMEOUT, "read response body from %s: timed out after "
                                                    "%llu bytes", c->ep.name, r->body_read));
        if (got == 0) {
            if (r->mode == SBX__BODY_CLOSE) {
                sbx__http_finish(c, r);
                return 0;
            }
            if (r->mode == SBX__BODY_LENGTH)
                return sbx__http_body_fail(c, sbx__fail(e, SBX_ERR_CONNECT, "read response body from %s: connection closed "
                                                        "after %llu of %lld bytes", c->ep.name, r->body_read,
                                                        r->content_length));
            return sbx__http_body_fail(c, sbx__fail(e, SBX_ERR_CONNECT, "read response body from %s: connection closed "
                                                    "inside the chunked body after %llu bytes", c->ep.name, r->body_read));
        }
        if (got < 0)
            return sbx__http_body_fail(c, sbx__fail_sys(e, SBX_ERR_CONNECT, errno, "read response body from %s",
                                                        c->ep.name));
        c->rlen = (size_t)got;
    }
}

SBX__PRIVATE void sbx__http_body_consume(sbx__conn *c, sbx__http_resp *r, size_t n)
{
    c->bpos += n;
    r->body_read += n;
    if (c->bpos == c->bend &&
        ((r->mode == SBX__BODY_LENGTH && r->left == 0) || (r->mode == SBX__BODY_CHUNKED && r->ch.state == SBX__CH_DONE)))
        sbx__http_finish(c, r);
}

SBX__PRIVATE int sbx__http_body_mem(sbx__conn *c, sbx__http_resp *r, sbx__buf *out, size_t cap, long long deadline,
                                    sbx_error *e)
{
    unsigned long long got = 0;
    if (sbx__buf_append(out, "", 0) != 0) return sbx__http_body_fail(c, sbx__oom(e, NULL));
    if (r->body_done) return SBX_OK;
    if (r->seq != c->seq || !c->busy || c->fd < 0) return sbx__http_body_peek(c, r, NULL, NULL, deadline, e);
    if (r->mode == SBX__BODY_LENGTH) {
        unsigned long long rest = r->left + (c->bend - c->bpos);
        if (rest > cap)
            return sbx__http_body_fail(c, sbx__fail(e, SBX_ERR_TOO_BIG, "response body from %s is too big: %lld bytes, "
                                                    "over the %lu-byte cap", c->ep.name, r->content_length,
                                                    (unsigned long)cap));
        if (sbx__buf_reserve(out, (size_t)rest) != 0)
            return sbx__http_body_fail(c, sbx__fail(e, SBX_ERR_NOMEM, "out of memory for a %llu-byte response body", rest));
    }
    for (;;) {
        const char *p;
        size_t n;
        int pr = sbx__http_body_peek(c, r, &p, &n, deadline, e);
        if (pr < 0) return pr;
        if (pr == 0) return SBX_OK;
        if ((unsigned long long)n > cap - got)
            return sbx__http_body_fail(c, sbx__fail(e, SBX_ERR_TOO_BIG, "response body from %s is too big: over the "
                                                    "%lu-byte cap", c->ep.name, (unsigned long)cap));
        if (sbx__buf_append(out, p, n) != 0)
            return sbx__http_body_fail(c, sbx__fail(e, SBX_ERR_NOMEM, "out of memory reading the response body"));
        got += n;
        sbx__http_body_consume(c, r, n);
    }
}

SBX__PRIVATE int sbx__http_body_fd_loop(sbx__conn *c, sbx__http_resp *r, int fd, long long deadline, int *epipe,
                                        sbx_error *e)
{
    int kind = sbx__http_out_kind(fd);
    for (;;) {
        const char *p;
        size_t n;
        int wr, pr = sbx__http_body_peek(c, r, &p, &n, deadline, e);
        if (pr < 0) return pr;
        if (pr == 0) return SBX_OK;
        wr = sbx__http_fd_write(fd, p, n, kind, deadline);
        if (wr == -2)
            return sbx__http_body_fail(c, sbx__fail(e, SBX_ERR_TIMEOUT, "write response body to descriptor %d: timed out "
                                                    "after %llu bytes", fd, r->body_read));
        if (wr < 0) {
            *epipe = errno == EPIPE;
            return sbx__http_body_fail(c, sbx__fail_sys(e, SBX_ERR_SYS, errno, "write response body to descriptor %d "
                                                        "after %llu bytes", fd, r->body_read));
        }
        sbx__http_body_consume(c, r, n);
    }
}

/* SIGPIPE is blocked in this thread while writing; one we caused is consumed
   before the old mask comes back, so the process never sees it. */
SBX__PRIVATE int sbx__http_body_fd(sbx__conn *c, sbx__http_resp *r, int fd, long long deadline, sbx_error *e)
{
    sigset_t pipe_set, old, pending;
    int rc, was_pending, epipe = 0;
    sigemptyset(&pipe_set);
    sigaddset(&pipe_set, SIGPIPE);
    sigemptyset(&pending);
    sigpending(&pending);
    was_pending = sigismember(&pending, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe_set, &old);
    rc = sbx__http_body_fd_loop(c, r, fd, deadline, &epipe, e);
    if (epipe && !was_pending) {
        int sig;
        sigemptyset(&pending);
        sigpending(&pending);
        if (sigismember(&pending, SIGPIPE)) sigwait(&pipe_set, &sig);
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return rc;
}

/* 1: the next line in `line` (without "\n" and one "\r"), 0: end of body, < 0:
   error. A watch sends, then reads lines until its own deadline. */
SBX__PRIVATE int sbx__http_body_line(sbx__conn *c, sbx__http_resp *r, sbx__buf *line, size_t cap, long long deadline,
                                     sbx_error *e)
{
    sbx__linesplit ls;
    ls.len = 0;
    ls.cap = cap;
    line->len = 0;
    if (sbx__buf_append(line, "", 0) != 0) return sbx__http_body_fail(c, sbx__oom(e, NULL));
    for (;;) {
        const char *p;
        size_t n, used = 0;
        int tr, pr = sbx__http_body_peek(c, r, &p, &n, deadline, e);
        if (pr < 0) return pr;
        if (pr == 0) return ls.len > 0 ? 1 : 0;  /* an unterminated last line */
        tr = sbx__http_line_take(&ls, line, p, n, &used);
        if (tr == -1)
            return sbx__http_body_fail(c, sbx__fail(e, SBX_ERR_TOO_BIG, "read response body from %s: a line is longer "
                                                    "than the %lu-byte cap", c->ep.name, (unsigned long)cap));
        if (tr == -2) return sbx__http_body_fail(c, sbx__fail(e, SBX_ERR_NOMEM, "out of memory reading a line"));
        sbx__http_body_consume(c, r, used);
        if (tr == 1) return 1;
    }
}

SBX__PRIVATE int sbx__http_body_discard(sbx__conn *c, sbx__http_resp *r, long long deadline, sbx_error *e)
{
    unsigned long long drained = 0;
    (void)e;
    if (r->body_done) return SBX_OK;
    if (r->seq != c->seq || !c->busy) return SBX_OK;
    if (r->mode == SBX__BODY_CLOSE || (r->mode == SBX__BODY_LENGTH && r->left > SBX__HTTP_DISCARD_MAX)) {
        sbx__conn_close(c);
        r->body_done = 1;
        return SBX_OK;
    }
    for (;;) {
        const char *p;
        size_t n;
        int pr = sbx__http_body_peek(c, r, &p, &n, deadline, NULL);
        if (pr <= 0 || drained > SBX__HTTP_DISCARD_MAX) break;
        drained += n;
        sbx__http_body_consume(c, r, n);
    }
    if (!r->body_done) sbx__conn_close(c);
    r->body_done = 1;
    return SBX_OK;
}

SBX__PRIVATE int sbx__http_do(sbx__conn *c, const sbx__http_req *q, sbx__http_resp *r, sbx__buf *body, size_t cap,
                              long long deadline, sbx_error *e)
{
    int rc = sbx__http_send(c, q, r, deadline, e);
    if (rc != SBX_OK) return rc;
    if (body) return sbx__http_body_mem(c, r, body, cap, deadline, e);
    return sbx__http_body_discard(c, r, deadline, e);
}

/* ======================================================================== */
/* >>ws: SHA-1, base64, RFC 6455 client, port-forward channels              */
/* ======================================================================== */
/* The kubelet's plain WebSocket port-forward (subprotocol v4.channel.k8s.io)
   as a transport of sbx__conn (see >>conn): a sandbox's runtime connection is
   one WebSocket made through the client's own API connection, so no process
   runs per sandbox. One WebSocket = one kept-alive HTTP connection; there is
   no half-close.

   The frame parser and the channel decoder do no I/O and no allocation (both
   are fuzzed); buffers are allocated once in sbx__ws_new, so the data path
   allocates nothing. What a server may send is strict: frames have no RSV
   bit, a known opcode, no mask and the shortest length form, control frames
   are FIN and at most 125 bytes; a channel's first two bytes repeat its port
   (little-endian) and must match the port asked for; a channel past the ports
   asked for, a text message (the base64 variant is not asked for), a fragment
   outside a message or a message over SBX_WS_MAX_MESSAGE is refused. Data is
   passed on as it arrives (a message is never held whole).

   sbx__ws_read: > 0 bytes, 0 ended (close frame or EOF), -1 errno
   (ECONNRESET: the error channel spoke; EPROTO / EMSGSIZE: the server broke a
   rule), -2 deadline; ws->why holds the server's words. Pings are answered on
   the way, and the transport's stale check answers those that came while the
   connection was idle (anything else there means stale). */

#ifndef SBX_WS_MAX_MESSAGE
#define SBX_WS_MAX_MESSAGE (16u * 1024u * 1024u)  /* one WebSocket message from the server */
#endif
#if SBX_WS_MAX_MESSAGE < 3
#error "SBX_WS_MAX_MESSAGE must be at least 3 (a channel byte and a port number)"
#endif
#ifndef SBX__WS_CLOSE_WAIT_MS
#define SBX__WS_CLOSE_WAIT_MS 250   /* our close: wait this long for the server's */
#endif
#define SBX__WS_MAX_PORTS 8
#define SBX__WS_ERR_MAX 256         /* error channel text kept */
#define SBX__WS_OUT_SIZE 32768      /* one client frame, head included */
#define SBX__WS_PROTOCOL "v4.channel.k8s.io"

/* ---- SHA-1 (FIPS 180-4) and base64 (RFC 4648) --------------------------- */

#define SBX__ROL32(x, k) ((((x) << (k)) | ((x) >> (32 - (k)))) & 0xffffffffUL)

SBX__PRIVATE void sbx__sha1_block(unsigned long h[5], const unsigned char *b)
{
    unsigned long w[80], a, bb, c, d, x, f, k, t;
    int i;
    for (i = 0; i < 16; i++)
        w[i] = ((unsigned long)b[4 * i] << 24) | ((unsigned long)b[4 * i + 1] << 16) |
               ((unsigned long)b[4 * i + 2] << 8) | (unsigned long)b[4 * i + 3];
    for (i = 16; i < 80; i++) {
        x = w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16];
        w[i] = SBX__ROL32(x, 1);
    }
    a = h[0]; bb = h[1]; c = h[2]; d = h[3]; x = h[4];
    for (i = 0; i < 80; i++) {
        if (i < 20) { f = (bb & c) | (~bb & d); k = 0x5a827999UL; }
        else if (i < 40) { f = bb ^ c ^ d; k = 0x6ed9eba1UL; }
        else if (i < 60) { f = (bb & c) | (bb & d) | (c & d); k = 0x8f1bbcdcUL; }
        else { f = bb ^ c ^ d; k = 0xca62c1d6UL; }
        t = (SBX__ROL32(a, 5) + (f & 0xffffffffUL) + x + k + w[i]) & 0xffffffffUL;
        x = d;
        d = c;
        c = SBX__ROL32(bb, 30);
        bb = a;
        a = t;
    }
    h[0] = (h[0] + a) & 0xffffffffUL;
    h[1] = (h[1] + bb) & 0xffffffffUL;
    h[2] = (h[2] + c) & 0xffffffffUL;
    h[3] = (h[3] + d) & 0xffffffffUL;
    h[4] = (h[4] + x) & 0xffffffffUL;
}

SBX__PRIVATE void sbx__sha1(const void *data, size_t n, unsigned char out[20])
{
    const unsigned char *p = (const unsigned char *)data;
    unsigned long h[5] = {0x67452301UL, 0xefcdab89UL, 0x98badcfeUL, 0x10325476UL, 0xc3d2e1f0UL};
    unsigned char last[128];
    unsigned long long bits = (unsigned long long)n * 8u;
    size_t rest, tail, i;
    for (; n >= 64; p += 64, n -= 64) sbx__sha1_block(h, p);
    rest = n;
    memset(last, 0, sizeof last);
    if (rest) memcpy(last, p, rest);
    last[rest] = 0x80;
    tail = rest + 9 <= 64 ? 64 : 128;
    for (i = 0; i < 8; i++) last[tail - 1 - i] = (unsigned char)(bits >> (8 * i));
    sbx__sha1_block(h, last);
    if (tail == 128) sbx__sha1_block(h, last + 64);
    for (i = 0; i < 20; i++) out[i] = (unsigned char)(h[i / 4] >> (24 - 8 * (i % 4)));
}

SBX__PRIVATE size_t sbx__base64(const unsigned char *p, size_t n, char *out)
{
    static const char abc[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t i, o = 0;
    for (i = 0; i + 2 < n; i += 3) {
        unsigned long v = ((unsigned long)p[i] << 16) | ((unsigned long)p[i + 1] << 8) | p[i + 2];
        out[o++] = abc[(v >> 18) & 63];
        out[o++] = abc[(v >> 12) & 63];
        out[o++] = abc[(v >> 6) & 63];
        out[o++] = abc[v & 63];
    }
    if (i < n) {
        unsigned long v = (unsigned long)p[i] << 16;
        if (i + 1 < n) v |= (unsigned long)p[i + 1] << 8;
        out[o++] = abc[(v >> 18) & 63];
        out[o++] = abc[(v >> 12) & 63];
        out[o++] = i + 1 < n ? abc[(v >> 6) & 63] : '=';
        out[o++] = '=';
    }
    out[o] = '\0';
    return o;
}

/* ---- frames ------------------------------------------------------------- */

enum { SBX__WS_CONT = 0, SBX__WS_TEXT = 1, SBX__WS_BINARY = 2, SBX__WS_CLOSE = 8, SBX__WS_PING = 9, SBX__WS_PONG = 10 };

typedef struct sbx__ws_fh {
    int fin;
    int op;
    unsigned long long len;
} sbx__ws_fh;

SBX__PRIVATE int sbx__ws_frame_head(const unsigned char *p, size_t n, sbx__ws_fh *h, const char **why)
{
    size_t need = 2, i;
    unsigned long long len;
    if (n < 2) return 0;
    if (p[0] & 0x70) { *why = "a reserved bit (RSV1-3) is set, but no extension was agreed"; return -1; }
    h->fin = (p[0] & 0x80) != 0;
    h->op = p[0] & 0x0f;
    if (!(h->op <= 2 || (h->op >= 8 && h->op <= 10))) { *why = "unknown opcode"; return -1; }
    if (p[1] & 0x80) { *why = "a frame from the server is masked"; return -1; }
    len = p[1] & 0x7f;
    if (len == 126) need = 4;
    else if (len == 127) need = 10;
    if (h->op >= 8 && (!h->fin || len > 125)) {
        *why = "a control frame is fragmented or longer than 125 bytes";
        return -1;
    }
    if (n < need) return 0;
    if (need > 2) {
        len = 0;
        for (i = 2; i < need; i++) len = (len << 8) | p[i];
        if (need == 10 && (p[2] & 0x80)) { *why = "payload length has its top bit set"; return -1; }
        if ((need == 4 && len < 126) || (need == 10 && len <= 0xffff)) {
            *why = "payload length not in its shortest form";
            return -1;
        }
    }
    h->len = len;
    return (int)need;
}

SBX__PRIVATE size_t sbx__ws_frame_build(unsigned char *out, int op, unsigned long long len, const unsigned char mask[4])
{
    size_t o = 2;
    int i;
    out[0] = (unsigned char)(0x80 | (op & 0x0f));
    if (len < 126) {
        out[1] = (unsigned char)(0x80 | len);
    } else if (len <= 0xffff) {
        out[1] = 0x80 | 126;
        out[2] = (unsigned char)(len >> 8);
        out[3] = (unsigned char)len;
        o = 4;
    } else {
        out[1] = 0x80 | 127;
        for (i = 0; i < 8; i++) out[2 + i] = (unsigned char)(len >> (56 - 8 * i));
        o = 10;
    }
    memcpy(out + o, mask, 4);
    return o + 4;
}

SBX__PRIVATE void sbx__ws_mask(unsigned char *p, size_t n, const unsigned char mask[4], size_t off)
{
    unsigned char k[8];
    unsigned long long kk, w;
    size_t i = 0;
    int j;
    for (j = 0; j < 8; j++) k[j] = mask[(off + (size_t)j) & 3];
    memcpy(&kk, k, 8);
    for (; i + 8 <= n; i += 8) {  /* 8 bytes at a time; memcpy: no alignment needed */
        memcpy(&w, p + i, 8);
        w ^= kk;
        memcpy(p + i, &w, 8);
    }
    for (; i < n; i++) p[i] ^= k[i & 7];
}

/* ---- decoder: frames -> channel events ---------------------------------- */

enum { SBX__WSE_MORE, SBX__WSE_DATA, SBX__WSE_PING, SBX__WSE_PONG, SBX__WSE_CLOSE, SBX__WSE_ERROR, SBX__WSE_BAD };

typedef struct sbx__wsd {
    int nports;
    int port[SBX__WS_MAX_PORTS];
    unsigned char pfx_n[2 * SBX__WS_MAX_PORTS];   /* prefix bytes seen per channel */
    unsigned pfx_v[2 * SBX__WS_MAX_PORTS];
    unsigned char hb[14];     /* a frame head arriving in pieces */
    size_t hn;
    int in_frame, fop, ffin;
    unsigned long long left;  /* payload bytes of the current frame still to come */
    int msg;                  /* a data message is in progress */
    int chan;                 /* its channel; -1 before its first byte */
    unsigned long long msg_len;
    unsigned char ctl[125];
    size_t ctl_len;
    int close_code;           /* 1005: the close frame had none */
    char err[SBX__WS_ERR_MAX];
    size_t err_len;
    int bad;
    char why[160];
} sbx__wsd;

typedef struct sbx__wse {
    int port;
    const unsigned char *p;
    size_t n;
} sbx__wse;

SBX__PRIVATE void sbx__wsd_init(sbx__wsd *d, const int *ports, int nports)
{
    int i;
    memset(d, 0, sizeof *d);
    d->nports = nports < 0 ? 0 : nports > SBX__WS_MAX_PORTS ? SBX__WS_MAX_PORTS : nports;
    for (i = 0; i < d->nports; i++) d->port[i] = ports[i];
    d->chan = -1;
}

SBX__PRIVATE int sbx__wsd_fail(sbx__wsd *d, const char *why, size_t *used, size_t i)
{
    d->bad = 1;
    sbx__fmt(d->why, sizeof d->why, "%s", why);
    *used = i;
    return SBX__WSE_BAD;
}

/* The close frame's code and reason (control characters shown as '?'). */
SBX__PRIVATE int sbx__wsd_close(sbx__wsd *d)
{
    size_t i, o = 0;
    int c;
    d->close_code = 1005;
    d->why[0] = '\0';
    if (d->ctl_len == 0) return 0;
    if (d->ctl_len == 1) return -1;
    c = (d->ctl[0] << 8) | d->ctl[1];
    if (c < 1000 || (c >= 1004 && c <= 1006) || (c >= 1015 && c < 3000) || c >= 5000) return -1;
    d->close_code = c;
    for (i = 2; i < d->ctl_len && o + 1 < sizeof d->why; i++)
        d->why[o++] = (d->ctl[i] < 0x20 || d->ctl[i] == 0x7f) ? '?' : (char)d->ctl[i];
    d->why[o] = '\0';
    return 0;
}

SBX__PRIVATE int sbx__wsd_step(sbx__wsd *d, const unsigned char *in, size_t n, size_t max, size_t *used, sbx__wse *ev)
{
    size_t i = 0;
    ev->port = -1;
    ev->p = NULL;
    ev->n = 0;
    if (d->bad) { *used = 0; return SBX__WSE_BAD; }
    if (max == 0) max = 1;
    for (;;) {
        if (!d->in_frame) {
            sbx__ws_fh h;
            const char *why = NULL;
            int hr = 0;
            if (d->hn == 0 && n - i >= 14) {
                hr = sbx__ws_frame_head(in + i, n - i, &h, &why);
                if (hr > 0) i += (size_t)hr;
            } else {
                while (i < n) {
                    d->hb[d->hn++] = in[i++];
                    hr = sbx__ws_frame_head(d->hb, d->hn, &h, &why);
                    if (hr != 0) break;
                }
                if (hr > 0) d->hn = 0;
            }
            if (hr < 0) return sbx__wsd_fail(d, why, used, i);
            if (hr == 0) { *used = n; return SBX__WSE_MORE; }
            if (h.op == SBX__WS_TEXT)
                return sbx__wsd_fail(d, "a text message (the base64 channel protocol was not asked for)", used, i);
            if (h.op == SBX__WS_CONT && !d->msg) return sbx__wsd_fail(d, "a continuation frame outside a message", used, i);
            if (h.op == SBX__WS_BINARY) {
                if (d->msg) return sbx__wsd_fail(d, "a new message inside a fragmented one", used, i);
                d->msg = 1;
                d->chan = -1;
                d->msg_len = 0;
            }
            if (h.op < 8) {
                if (h.len > (unsigned long long)SBX_WS_MAX_MESSAGE - d->msg_len)
                    return sbx__wsd_fail(d, "a message longer than SBX_WS_MAX_MESSAGE", used, i);
                d->msg_len += h.len;
            }
            d->in_frame = 1;
            d->fop = h.op;
            d->ffin = h.fin;
            d->left = h.len;
            d->ctl_len = 0;
        }
        if (d->fop >= 8) {
            size_t k = (size_t)(d->left < (unsigned long long)(n - i) ? d->left : (unsigned long long)(n - i));
            memcpy(d->ctl + d->ctl_len, in + i, k);
            d->ctl_len += k;
            d->left -= k;
            i += k;
            if (d->left > 0) { *used = n; return SBX__WSE_MORE; }
            d->in_frame = 0;
            *used = i;
            if (d->fop == SBX__WS_PING) return SBX__WSE_PING;
            if (d->fop == SBX__WS_PONG) return SBX__WSE_PONG;
            if (sbx__wsd_close(d) != 0) return sbx__wsd_fail(d, "a close frame with a bad status code", used, i);
            return SBX__WSE_CLOSE;
        }
        /* a data frame: channel byte, port prefix, then payload */
        if (d->left > 0 && i < n && d->chan < 0) {
            d->chan = in[i++];
            d->left--;
            if (d->chan >= 2 * d->nports) {
                char w[96];
                sbx__fmt(w, sizeof w, "data on channel %d, but %d port(s) were asked for", d->chan, d->nports);
                return sbx__wsd_fail(d, w, used, i);
            }
            if (d->chan & 1) d->err_len = 0;
        }
        while (d->left > 0 && i < n && d->chan >= 0 && d->pfx_n[d->chan] < 2) {
            d->pfx_v[d->chan] |= (unsigned)in[i++] << (8 * d->pfx_n[d->chan]);
            d->left--;
            if (++d->pfx_n[d->chan] == 2 && (int)d->pfx_v[d->chan] != d->port[d->chan / 2]) {
                char w[96];
                sbx__fmt(w, sizeof w, "channel %d starts with port %u, but port %d was asked for", d->chan,
                         d->pfx_v[d->chan], d->port[d->chan / 2]);
                return sbx__wsd_fail(d, w, used, i);
            }
        }
        if (d->left > 0 && i < n) {
            size_t k = (size_t)(d->left < (unsigned long long)(n - i) ? d->left : (unsigned long long)(n - i));
            if (!(d->chan & 1)) {
                if (k > max) k = max;
                ev->port = d->chan / 2;
                ev->p = in + i;
                ev->n = k;
                d->left -= k;
                i += k;
                if (d->left == 0) {
                    d->in_frame = 0;
                    if (d->ffin) d->msg = 0;
                }
                *used = i;
                return SBX__WSE_DATA;
            }
            {
                size_t room = sizeof d->err - 1 - d->err_len, c = k < room ? k : room, j;
                for (j = 0; j < c; j++) {
                    unsigned char b = in[i + j];
                    d->err[d->err_len++] = (b < 0x20 || b == 0x7f) ? ' ' : (char)b;
                }
                d->err[d->err_len] = '\0';
            }
            d->left -= k;
            i += k;
        }
        if (d->left > 0) { *used = n; return SBX__WSE_MORE; }
        d->in_frame = 0;
        if (d->ffin) {
            d->msg = 0;
            if (d->chan >= 0 && (d->chan & 1) && d->err_len > 0) {
                ev->port = d->chan / 2;
                *used = i;
                return SBX__WSE_ERROR;
            }
        }
        if (i == n) { *used = n; return SBX__WSE_MORE; }
    }
}

/* ---- connection ----------------------------------------------------------- */

typedef struct sbx__ws {
    sbx_allocator a;
    sbx__conn up;             /* the upgrade goes through here; its buffer is our input */
    char *target;
    int ports[SBX__WS_MAX_PORTS];
    int nports;
    int fd;                   /* -1: no WebSocket open */
    sbx__wsd d;
    size_t ipos, ilen;        /* received, not yet decoded: up.buf[ipos, ilen) */
    unsigned char *out;       /* SBX__WS_OUT_SIZE: client frames are masked here */
    unsigned char rnd[256];   /* masking keys, refilled from /dev/urandom */
    size_t rnd_used;
    int close_sent, close_got;
    int refused;              /* the last open got a non-101 answer ... */
    int status;               /* ... with this status */
    char why[SBX_ERRMSG_SIZE / 2];
    sbx__transport tr;
} sbx__ws;

SBX__PRIVATE void sbx__ws_key(sbx__ws *ws, unsigned char mask[4])
{
    if (ws->rnd_used + 4 > sizeof ws->rnd) {
        sbx__random(ws->rnd, sizeof ws->rnd);
        ws->rnd_used = 0;
    }
    memcpy(mask, ws->rnd + ws->rnd_used, 4);
    ws->rnd_used += 4;
}

/* One client frame of op with payload pre[0..npre) + p[0..n), masked in the
   output buffer piece by piece. 0, -1 errno, -2 deadline. */
SBX__PRIVATE int sbx__ws_send_frame(sbx__ws *ws, int op, const unsigned char *pre, size_t npre, const unsigned char *p,
                                    size_t n, long long deadline)
{
    unsigned char mask[4];
    size_t h, off = 0, total = npre + n;
    int r;
    if (ws->fd < 0) { errno = ENOTCONN; return -1; }
    sbx__ws_key(ws, mask);
    h = sbx__ws_frame_build(ws->out, op, total, mask);
    while (off < total || h > 0) {
        size_t room = SBX__WS_OUT_SIZE - h, k = 0;
        while (k < room && off < total) {
            size_t take;
            const unsigned char *src;
            if (off < npre) { src = pre + off; take = npre - off; }
            else { src = p + (off - npre); take = total - off; }
            if (take > room - k) take = room - k;
            memcpy(ws->out + h + k, src, take);
            sbx__ws_mask(ws->out + h + k, take, mask, off);
            k += take;
            off += take;
        }
        r = sbx__http_send_all(ws->fd, (const char *)ws->out, h + k, deadline);
        if (r != 0) return r;
        h = 0;
    }
    return 0;
}

SBX__PRIVATE int sbx__ws_write(sbx__ws *ws, int port, const void *data, size_t n, long long deadline)
{
    const unsigned char *p = (const unsigned char *)data;
    unsigned char chan;
    if (port < 0 || port >= ws->nports) { errno = EINVAL; return -1; }
    if (ws->close_got || ws->close_sent) { errno = EPIPE; return -1; }
    chan = (unsigned char)(2 * port);
    while (n > 0) {
        size_t k = n > SBX__WS_OUT_SIZE - 15 ? SBX__WS_OUT_SIZE - 15 : n;
        int r = sbx__ws_send_frame(ws, SBX__WS_BINARY, &chan, 1, p, k, deadline);
        if (r != 0) return r;
        p += k;
        n -= k;
    }
    return 0;
}

/* Handle a control event; 1: the WebSocket ended (close frame). */
SBX__PRIVATE int sbx__ws_control(sbx__ws *ws, int ev, long long deadline)
{
    if (ev == SBX__WSE_PING && !ws->close_sent) {
        sbx__ws_send_frame(ws, SBX__WS_PONG, ws->d.ctl, ws->d.ctl_len, NULL, 0, deadline);
    } else if (ev == SBX__WSE_CLOSE) {
        ws->close_got = 1;
        if (!ws->close_sent) {
            unsigned char code[2];
            int c = ws->d.close_code == 1005 ? 1000 : ws->d.close_code;
            code[0] = (unsigned char)(c >> 8);
            code[1] = (unsigned char)c;
            ws->close_sent = 1;
            sbx__ws_send_frame(ws, SBX__WS_CLOSE, code, 2, NULL, 0, deadline);
        }
        if (ws->d.close_code != 1000 && ws->d.close_code != 1005)
            sbx__fmt(ws->why, sizeof ws->why, "the server closed the WebSocket with code %d%s%s", ws->d.close_code,
                     ws->d.why[0] ? ": " : "", ws->d.why);
        return 1;
    }
    return 0;
}

SBX__PRIVATE long sbx__ws_read(sbx__ws *ws, int *port, char *p, size_t n, long long deadline)
{
    unsigned char *in = (unsigned char *)ws->up.buf;
    for (;;) {
        long got;
        while (ws->ipos < ws->ilen) {
            sbx__wse ev;
            size_t used = 0;
            int r = sbx__wsd_step(&ws->d, in + ws->ipos, ws->ilen - ws->ipos, n, &used, &ev);
            ws->ipos += used;
            if (r == SBX__WSE_DATA) {
                memcpy(p, ev.p, ev.n);
                *port = ev.port;
                return (long)ev.n;
            }
            if (r == SBX__WSE_ERROR) {
                sbx__fmt(ws->why, sizeof ws->why, "port %d: %s", ws->ports[ev.port], ws->d.err);
                errno = ECONNRESET;
                return -1;
            }
            if (r == SBX__WSE_BAD) {
                sbx__fmt(ws->why, sizeof ws->why, "the server broke the WebSocket protocol: %s", ws->d.why);
                errno = strstr(ws->d.why, "SBX_WS_MAX_MESSAGE") ? EMSGSIZE : EPROTO;
                return -1;
            }
            if (sbx__ws_control(ws, r, deadline)) return 0;
        }
        if (ws->close_got || ws->fd < 0) return 0;
        ws->ipos = ws->ilen = 0;
        got = sbx__http_recv(ws->fd, (char *)in, SBX__HTTP_BUF_SIZE, deadline);
        if (got == 0) {
            ws->close_got = 1;
            if (!ws->why[0]) sbx__fmt(ws->why, sizeof ws->why, "the connection ended without a close frame");
            return 0;
        }
        if (got < 0) {
            /* a peer that closes with our data unread resets instead of ending:
               the same abrupt end, whichever the kernel reports */
            if (got == -1 && errno == ECONNRESET && !ws->why[0])
                sbx__fmt(ws->why, sizeof ws->why, "the connection ended without a close frame (reset)");
            return got;
        }
        ws->ilen = (size_t)got;
    }
}

SBX__PRIVATE void sbx__ws_say_close(sbx__ws *ws, long long deadline)
{
    static const unsigned char normal[2] = {0x03, 0xe8}; /* 1000 */
    ws->close_sent = 1;
    if (sbx__ws_send_frame(ws, SBX__WS_CLOSE, normal, 2, NULL, 0, deadline) != 0) ws->close_got = 1;
}

SBX__PRIVATE void sbx__ws_close(sbx__ws *ws)
{
    if (ws->fd < 0) return;
    if (!ws->close_got && !ws->d.bad) {
        long long deadline = sbx__deadline(SBX__WS_CLOSE_WAIT_MS);
        char sink[512];
        int port;
        if (!ws->close_sent) sbx__ws_say_close(ws, deadline);
        while (!ws->close_got && sbx__ws_read(ws, &port, sink, sizeof sink, deadline) > 0) {}
    }
    close(ws->fd);
    ws->fd = -1;
}

/* Our close frame if the socket takes it at once, and no wait for the
   server's: for a caller holding a lock that other calls wait on. The next
   sbx__ws_close only closes the descriptor. */
SBX__PRIVATE void sbx__ws_hangup(sbx__ws *ws)
{
    if (ws->fd >= 0 && !ws->close_sent && !ws->close_got && !ws->d.bad) sbx__ws_say_close(ws, sbx__deadline(1));
    ws->close_got = 1;
}

SBX__PRIVATE int sbx__ws_open(sbx__ws *ws, long long deadline, sbx_error *e)
{
    static const char guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
    unsigned char rnd[16], digest[20];
    char key[32], accept[32], hdrs[400], both[80];
    const char *v;
    size_t vn;
    sbx__http_req req;
    sbx__http_resp resp;
    int rc, fd;
    sbx__ws_close(ws);
    ws->refused = 0;
    ws->status = 0;
    ws->why[0] = '\0';
    sbx__random(rnd, sizeof rnd);
    sbx__base64(rnd, sizeof rnd, key);
    sbx__fmt(both, sizeof both, "%s%s", key, guid);
    sbx__sha1(both, strlen(both), digest);
    sbx__base64(digest, sizeof digest, accept);
    sbx__fmt(hdrs, sizeof hdrs, "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
             "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Protocol: " SBX__WS_PROTOCOL "\r\n", key);
    sbx__http_req_init(&req);
    req.target = ws->target;
    req.headers = hdrs;
    req.upgrade = 1;
    sbx__conn_close(&ws->up);  /* a fresh connection: it becomes the WebSocket */
    rc = sbx__http_send(&ws->up, &req, &resp, deadline, e);
    if (rc != SBX_OK) return rc;
    if (resp.status != 101) {
        sbx__buf body;
        char text[SBX_ERRMSG_SIZE / 2];
        ws->refused = 1;
        ws->status = resp.status;
        sbx__buf_init(&body, &ws->a);
        if (sbx__http_body_mem(&ws->up, &resp, &body, 65536, deadline, NULL) != SBX_OK) body.len = 0;
        sbx__http_error_text(resp.status, body.data ? body.data : "", body.len, text, sizeof text);
        sbx__fmt(ws->why, sizeof ws->why, "%s", text);
        sbx__buf_free(&body);
        sbx__conn_close(&ws->up);
        if (e) e->http_status = resp.status;
        return sbx__fail(e, resp.status == 404 ? SBX_ERR_NOT_FOUND : SBX_ERR_HTTP,
                         "WebSocket upgrade refused (%s)", text);
    }
    v = sbx__http_header(&resp, "upgrade", &vn);
    if (!v || !sbx__http_has_token(v, vn, "websocket")) {
        sbx__conn_close(&ws->up);
        return sbx__fail(e, SBX_ERR_PROTOCOL, "101 answer without \"Upgrade: websocket\"");
    }
    v = sbx__http_header(&resp, "sec-websocket-accept", &vn);
    if (!v || vn != strlen(accept) || memcmp(v, accept, vn) != 0) {
        sbx__conn_close(&ws->up);
        return sbx__fail(e, SBX_ERR_PROTOCOL, "101 answer with a wrong Sec-WebSocket-Accept (\"%.40s\", want \"%s\")",
                         v ? v : "", accept);
    }
    v = sbx__http_header(&resp, "sec-websocket-protocol", &vn);
    if (!v || !sbx__http_ieq(v, vn, SBX__WS_PROTOCOL)) {
        sbx__conn_close(&ws->up);
        return sbx__fail(e, SBX_ERR_PROTOCOL, "101 answer without the subprotocol " SBX__WS_PROTOCOL " (got \"%.60s\")",
                         v ? v : "");
    }
    /* take the socket over, with whatever came after the 101 */
    fd = ws->up.fd;
    ws->ilen = ws->up.rlen - ws->up.rpos;
    memmove(ws->up.buf, ws->up.buf + ws->up.rpos, ws->ilen);
    ws->ipos = 0;
    ws->up.fd = -1;
    ws->up.busy = 0;
    ws->fd = fd;
    ws->close_sent = ws->close_got = 0;
    sbx__wsd_init(&ws->d, ws->ports, ws->nports);
    return fd;
}

/* ---- the transport (port 0) ------------------------------------------------ */

SBX__PRIVATE int sbx__ws_tr_open(void *st, long long deadline, sbx_error *e)
{
    return sbx__ws_open((sbx__ws *)st, deadline, e);
}

SBX__PRIVATE void sbx__ws_tr_close(void *st)
{
    sbx__ws_close((sbx__ws *)st);
}

SBX__PRIVATE long sbx__ws_tr_recv(void *st, char *p, size_t n, long long deadline)
{
    sbx__ws *ws = (sbx__ws *)st;
    int port = 0;
    long r = sbx__ws_read(ws, &port, p, n, deadline);
    if (r > 0 && port != 0) {
        sbx__fmt(ws->why, sizeof ws->why, "data for port %d on a connection to port %d", ws->ports[port], ws->ports[0]);
        errno = EPROTO;
        return -1;
    }
    return r;
}

SBX__PRIVATE int sbx__ws_tr_send(void *st, const char *p, size_t n, long long deadline)
{
    return sbx__ws_write((sbx__ws *)st, 0, p, n, deadline);
}

/* Idle: a ping is answered (not stale); a close, EOF, data, an error or a
   broken rule is stale. Never blocks. */
SBX__PRIVATE int sbx__ws_tr_stale(void *st)
{
    sbx__ws *ws = (sbx__ws *)st;
    unsigned char *in = (unsigned char *)ws->up.buf;
    if (ws->fd < 0 || ws->close_got || ws->d.bad) return 1;
    for (;;) {
        ssize_t got;
        while (ws->ipos < ws->ilen) {
            sbx__wse ev;
            size_t used = 0;
            int r = sbx__wsd_step(&ws->d, in + ws->ipos, ws->ilen - ws->ipos, 1, &used, &ev);
            ws->ipos += used;
            if (r == SBX__WSE_PING) sbx__ws_control(ws, r, sbx__deadline(SBX__WS_CLOSE_WAIT_MS));
            else if (r == SBX__WSE_CLOSE) { sbx__ws_control(ws, r, sbx__deadline(SBX__WS_CLOSE_WAIT_MS)); return 1; }
            else if (r != SBX__WSE_PONG && r != SBX__WSE_MORE) return 1;
        }
        ws->ipos = ws->ilen = 0;
        got = recv(ws->fd, in, SBX__HTTP_BUF_SIZE, 0);
        if (got > 0) { ws->ilen = (size_t)got; continue; }
        if (got < 0 && errno == EINTR) continue;
        if (got < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return 0;
        return 1;
    }
}

SBX__PRIVATE void sbx__ws_free(sbx__ws *ws)
{
    sbx_allocator a;
    if (!ws) return;
    sbx__ws_close(ws);
    sbx__conn_free(&ws->up);
    a = ws->a;
    sbx__free(&a, ws->target);
    sbx__free(&a, ws->out);
    sbx__free(&a, ws);
}

/* sbx__ws_free without waiting for the server's close frame (sbx__ws_hangup),
   for a caller holding a lock: an HTTP/2 transport maker's drop (>>h2). */
SBX__PRIVATE void sbx__ws_drop(void *state)
{
    if (!state) return;
    sbx__ws_hangup((sbx__ws *)state);
    sbx__ws_free((sbx__ws *)state);
}

SBX__PRIVATE sbx__ws *sbx__ws_new(const sbx_allocator *alloc, const sbx__endpoint *api, const char *target,
                                   const int *ports, int nports)
{
    sbx_allocator a = sbx__allocator(alloc);
    sbx__ws *ws;
    int i;
    if (nports < 1 || nports > SBX__WS_MAX_PORTS) return NULL;
    ws = (sbx__ws *)sbx__malloc(&a, sizeof *ws);
    if (!ws) return NULL;
    memset(ws, 0, sizeof *ws);
    ws->a = a;
    ws->fd = -1;
    ws->rnd_used = sizeof ws->rnd;
    sbx__conn_init(&ws->up, api, &a);
    for (i = 0; i < nports; i++) ws->ports[i] = ports[i];
    ws->nports = nports;
    ws->target = sbx__strdup(&a, target);
    ws->out = (unsigned char *)sbx__malloc(&a, SBX__WS_OUT_SIZE);
    ws->up.buf = (char *)sbx__malloc(&a, SBX__HTTP_BUF_SIZE);
    ws->tr.open = sbx__ws_tr_open;
    ws->tr.close = sbx__ws_tr_close;
    ws->tr.recv = sbx__ws_tr_recv;
    ws->tr.send = sbx__ws_tr_send;
    ws->tr.stale = sbx__ws_tr_stale;
    if (!ws->target || !ws->out || !ws->up.buf) {
        sbx__ws_free(ws);
        return NULL;
    }
    sbx__wsd_init(&ws->d, ws->ports, ws->nports);
    return ws;
}

#ifndef SBX_NO_GRPC
/* ======================================================================== */
/* >>hpack: RFC 7541 header compression (decoder in full, small encoder)    */
/* ======================================================================== */
/* Everything below up to >>proc is the gRPC transport (>>hpack, >>h2, >>grpc);
   SBX_NO_GRPC removes it as a unit.

   DECODER (no allocation: the dynamic table lives inside the struct)
   void sbx__hpack_init(sbx__hpack *t, size_t limit);
       limit: the SETTINGS_HEADER_TABLE_SIZE we announced (at most
       SBX__HPACK_TABLE_MAX); a size update above it is an error.
   int sbx__hpack_decode(t, block, n, scratch, cap, max_list, cb, user);
       decodes one complete header block, calling cb(user, name, nlen, value,
       vlen) per field (views into scratch, valid during the call). 0 ok; -1
       malformed (t->why names the rule; the table is then out of step with the
       peer's and the connection must end); 1: the decoded list passed max_list
       (RFC 9113 counting, name + value + 32 per field) or a string passed cap:
       the block was still decoded to its end, so the table stays in step, but
       fields after the limit were not passed to cb.
   The table may be sized 0..limit by the peer (dynamic table size updates,
   only at the start of a block); inserting evicts from the oldest end.

   HUFFMAN (RFC 7541 5.2 and Appendix B; the code is canonical, so decoding
   walks per-length ranges, one bit at a time)
   long sbx__huff_decode(p, n, out, cap)  bytes written, -1 invalid (EOS in the
       string, padding longer than 7 bits or not all ones), -2 more than cap.
   size_t sbx__huff_len_of(p, n)         encoded length in bytes
   void sbx__huff_encode(p, n, out)      out holds sbx__huff_len_of bytes

   ENCODER (what a client's request needs: no dynamic table, so the peer's
   table size does not matter)
   int sbx__hpack_int(sbx__buf *b, unsigned first, int prefix, unsigned long v)
   int sbx__hpack_str(sbx__buf *b, const char *s, size_t n)   Huffman when shorter
   int sbx__hpack_field(sbx__buf *b, int static_name, const char *name,
                        const char *value, size_t vlen)
       literal without indexing; the name as a static-table index when
       static_name > 0, else as a literal. 0 ok, -1 out of memory. */

#define SBX__HPACK_TABLE_MAX 4096          /* the default SETTINGS_HEADER_TABLE_SIZE; we keep it */
#define SBX__HPACK_ENTRIES (SBX__HPACK_TABLE_MAX / 32)
#define SBX__HPACK_STATIC 61

/* RFC 7541 Appendix A, typed from the RFC text. */
static const char *const sbx__hpack_static[61][2] = {
    {":authority", ""}, {":method", "GET"}, {":method", "POST"}, {":path", "/"}, {":path", "/index.html"},
    {":scheme", "http"}, {":scheme", "https"}, {":status", "200"}, {":status", "204"}, {":status", "206"},
    {":status", "304"}, {":status", "400"}, {":status", "404"}, {":status", "500"}, {"accept-charset", ""},
    {"accept-encoding", "gzip, deflate"}, {"accept-language", ""}, {"accept-ranges", ""}, {"accept", ""},
    {"access-control-allow-origin", ""}, {"age", ""}, {"allow", ""}, {"authorization", ""},
    {"cache-control", ""}, {"content-disposition", ""}, {"content-encoding", ""}, {"content-language", ""},
    {"content-length", ""}, {"content-location", ""}, {"content-range", ""}, {"content-type", ""},
    {"cookie", ""}, {"date", ""}, {"etag", ""}, {"expect", ""}, {"expires", ""}, {"from", ""}, {"host", ""},
    {"if-match", ""}, {"if-modified-since", ""}, {"if-none-match", ""}, {"if-range", ""},
    {"if-unmodified-since", ""}, {"last-modified", ""}, {"link", ""}, {"location", ""}, {"max-forwards", ""},
    {"proxy-authenticate", ""}, {"proxy-authorization", ""}, {"range", ""}, {"referer", ""}, {"refresh", ""},
    {"retry-after", ""}, {"server", ""}, {"set-cookie", ""}, {"strict-transport-security", ""},
    {"transfer-encoding", ""}, {"user-agent", ""}, {"vary", ""}, {"via", ""}, {"www-authenticate", ""},
};
/* RFC 7541 Appendix B, typed from the RFC text (symbol 256 is EOS); below it,
   what is derived from it: the symbols in canonical order (length, then
   value) and, per length, the first code, the first position in that order
   and the count. tests/unit/test_h2.c recomputes the derived tables. */
static const unsigned int sbx__huff_code[257] = {
    0x1ff8, 0x7fffd8, 0xfffffe2, 0xfffffe3, 0xfffffe4, 0xfffffe5, 0xfffffe6, 0xfffffe7, 0xfffffe8, 0xffffea,
    0x3ffffffc, 0xfffffe9, 0xfffffea, 0x3ffffffd, 0xfffffeb, 0xfffffec, 0xfffffed, 0xfffffee, 0xfffffef,
    0xffffff0, 0xffffff1, 0xffffff2, 0x3ffffffe, 0xffffff3, 0xffffff4, 0xffffff5, 0xffffff6, 0xffffff7,
    0xffffff8, 0xffffff9, 0xffffffa, 0xffffffb, 0x14, 0x3f8, 0x3f9, 0xffa, 0x1ff9, 0x15, 0xf8, 0x7fa, 0x3fa,
    0x3fb, 0xf9, 0x7fb, 0xfa, 0x16, 0x17, 0x18, 0x0, 0x1, 0x2, 0x19, 0x1a, 0x1b, 0x1c, 0x1d, 0x1e, 0x1f, 0x5c,
    0xfb, 0x7ffc, 0x20, 0xffb, 0x3fc, 0x1ffa, 0x21, 0x5d, 0x5e, 0x5f, 0x60, 0x61, 0x62, 0x63, 0x64, 0x65,
    0x66, 0x67, 0x68, 0x69, 0x6a, 0x6b, 0x6c, 0x6d, 0x6e, 0x6f, 0x70, 0x71, 0x72, 0xfc, 0x73, 0xfd, 0x1ffb,
    0x7fff0, 0x1ffc, 0x3ffc, 0x22, 0x7ffd, 0x3, 0x23, 0x4, 0x24, 0x5, 0x25, 0x26, 0x27, 0x6, 0x74, 0x75, 0x28,
    0x29, 0x2a, 0x7, 0x2b, 0x76, 0x2c, 0x8, 0x9, 0x2d, 0x77, 0x78, 0x79, 0x7a, 0x7b, 0x7ffe, 0x7fc, 0x3ffd,
    0x1ffd, 0xffffffc, 0xfffe6, 0x3fffd2, 0xfffe7, 0xfffe8, 0x3fffd3, 0x3fffd4, 0x3fffd5, 0x7fffd9, 0x3fffd6,
    0x7fffda, 0x7fffdb, 0x7fffdc, 0x7fffdd, 0x7fffde, 0xffffeb, 0x7fffdf, 0xffffec, 0xffffed, 0x3fffd7,
    0x7fffe0, 0xffffee, 0x7fffe1, 0x7fffe2, 0x7fffe3, 0x7fffe4, 0x1fffdc, 0x3fffd8, 0x7fffe5, 0x3fffd9,
    0x7fffe6, 0x7fffe7, 0xffffef, 0x3fffda, 0x1fffdd, 0xfffe9, 0x3fffdb, 0x3fffdc, 0x7fffe8, 0x7fffe9,
    0x1fffde, 0x7fffea, 0x3fffdd, 0x3fffde, 0xfffff0, 0x1fffdf, 0x3fffdf, 0x7fffeb, 0x7fffec, 0x1fffe0,
    0x1fffe1, 0x3fffe0, 0x1fffe2, 0x7fffed, 0x3fffe1, 0x7fffee, 0x7fffef, 0xfffea, 0x3fffe2, 0x3fffe3,
    0x3fffe4, 0x7ffff0, 0x3fffe5, 0x3fffe6, 0x7ffff1, 0x3ffffe0, 0x3ffffe1, 0xfffeb, 0x7fff1, 0x3fffe7,
    0x7ffff2, 0x3fffe8, 0x1ffffec, 0x3ffffe2, 0x3ffffe3, 0x3ffffe4, 0x7ffffde, 0x7ffffdf, 0x3ffffe5, 0xfffff1,
    0x1ffffed, 0x7fff2, 0x1fffe3, 0x3ffffe6, 0x7ffffe0, 0x7ffffe1, 0x3ffffe7, 0x7ffffe2, 0xfffff2, 0x1fffe4,
    0x1fffe5, 0x3ffffe8, 0x3ffffe9, 0xffffffd, 0x7ffffe3, 0x7ffffe4, 0x7ffffe5, 0xfffec, 0xfffff3, 0xfffed,
    0x1fffe6, 0x3fffe9, 0x1fffe7, 0x1fffe8, 0x7ffff3, 0x3fffea, 0x3fffeb, 0x1ffffee, 0x1ffffef, 0xfffff4,
    0xfffff5, 0x3ffffea, 0x7ffff4, 0x3ffffeb, 0x7ffffe6, 0x3ffffec, 0x3ffffed, 0x7ffffe7, 0x7ffffe8,
    0x7ffffe9, 0x7ffffea, 0x7ffffeb, 0xffffffe, 0x7ffffec, 0x7ffffed, 0x7ffffee, 0x7ffffef, 0x7fffff0,
    0x3ffffee, 0x3fffffff,
};
static const unsigned char sbx__huff_len[257] = {
    13, 23, 28, 28, 28, 28, 28, 28, 28, 24, 30, 28, 28, 30, 28, 28, 28, 28, 28, 28, 28, 28, 30, 28, 28, 28,
    28, 28, 28, 28, 28, 28, 6, 10, 10, 12, 13, 6, 8, 11, 10, 10, 8, 11, 8, 6, 6, 6, 5, 5, 5, 6, 6, 6, 6, 6, 6,
    6, 7, 8, 15, 6, 12, 10, 13, 6, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 8, 7, 8,
    13, 19, 13, 14, 6, 15, 5, 6, 5, 6, 5, 6, 6, 6, 5, 7, 7, 6, 6, 6, 5, 6, 7, 6, 5, 5, 6, 7, 7, 7, 7, 7, 15,
    11, 14, 13, 28, 20, 22, 20, 20, 22, 22, 22, 23, 22, 23, 23, 23, 23, 23, 24, 23, 24, 24, 22, 23, 24, 23,
    23, 23, 23, 21, 22, 23, 22, 23, 23, 24, 22, 21, 20, 22, 22, 23, 23, 21, 23, 22, 22, 24, 21, 22, 23, 23,
    21, 21, 22, 21, 23, 22, 23, 23, 20, 22, 22, 22, 23, 22, 22, 23, 26, 26, 20, 19, 22, 23, 22, 25, 26, 26,
    26, 27, 27, 26, 24, 25, 19, 21, 26, 27, 27, 26, 27, 24, 21, 21, 26, 26, 28, 27, 27, 27, 20, 24, 20, 21,
    22, 21, 21, 23, 22, 22, 25, 25, 24, 24, 26, 23, 26, 27, 26, 26, 27, 27, 27, 27, 27, 28, 27, 27, 27, 27,
    27, 26, 30,
};
static const unsigned short sbx__huff_sym[257] = {
    48, 49, 50, 97, 99, 101, 105, 111, 115, 116, 32, 37, 45, 46, 47, 51, 52, 53, 54, 55, 56, 57, 61, 65, 95,
    98, 100, 102, 103, 104, 108, 109, 110, 112, 114, 117, 58, 66, 67, 68, 69, 70, 71, 72, 73, 74, 75, 76, 77,
    78, 79, 80, 81, 82, 83, 84, 85, 86, 87, 89, 106, 107, 113, 118, 119, 120, 121, 122, 38, 42, 44, 59, 88,
    90, 33, 34, 40, 41, 63, 39, 43, 124, 35, 62, 0, 36, 64, 91, 93, 126, 94, 125, 60, 96, 123, 92, 195, 208,
    128, 130, 131, 162, 184, 194, 224, 226, 153, 161, 167, 172, 176, 177, 179, 209, 216, 217, 227, 229, 230,
    129, 132, 133, 134, 136, 146, 154, 156, 160, 163, 164, 169, 170, 173, 178, 181, 185, 186, 187, 189, 190,
    196, 198, 228, 232, 233, 1, 135, 137, 138, 139, 140, 141, 143, 147, 149, 150, 151, 152, 155, 157, 158,
    165, 166, 168, 174, 175, 180, 182, 183, 188, 191, 197, 231, 239, 9, 142, 144, 145, 148, 159, 171, 206,
    215, 225, 236, 237, 199, 207, 234, 235, 192, 193, 200, 201, 202, 205, 210, 213, 218, 219, 238, 240, 242,
    243, 255, 203, 204, 211, 212, 214, 221, 222, 223, 241, 244, 245, 246, 247, 248, 250, 251, 252, 253, 254,
    2, 3, 4, 5, 6, 7, 8, 11, 12, 14, 15, 16, 17, 18, 19, 20, 21, 23, 24, 25, 26, 27, 28, 29, 30, 31, 127, 220,
    249, 10, 13, 22, 256,
};
static const unsigned int sbx__huff_first[31] = {0x0, 0x0, 0x0, 0x0, 0x0, 0x0, 0x14, 0x5c, 0xf8, 0x0, 0x3f8, 0x7fa, 0xffa, 0x1ff8, 0x3ffc, 0x7ffc, 0x0, 0x0, 0x0, 0x7fff0, 0xfffe6, 0x1fffdc, 0x3fffd2, 0x7fffd8, 0xffffea, 0x1ffffec, 0x3ffffe0, 0x7ffffde, 0xfffffe2, 0x0, 0x3ffffffc};
static const unsigned short sbx__huff_start[31] = {0, 0, 0, 0, 0, 0, 10, 36, 68, 0, 74, 79, 82, 84, 90, 92, 0, 0, 0, 95, 98, 106, 119, 145, 174, 186, 190, 205, 224, 0, 253};
static const unsigned short sbx__huff_count[31] = {0, 0, 0, 0, 0, 10, 26, 32, 6, 0, 5, 3, 2, 6, 2, 3, 0, 0, 0, 3, 8, 13, 26, 29, 12, 4, 15, 19, 29, 0, 4};

typedef struct sbx__hpack_ent {
    unsigned off, nlen, vlen;
} sbx__hpack_ent;

typedef struct sbx__hpack {
    size_t limit;                      /* largest size the peer may choose         */
    size_t max;                        /* current maximum (after size updates)     */
    size_t size;                       /* RFC 7541 4.1 size of the entries         */
    unsigned n;                        /* entries, oldest first in ent[]           */
    unsigned used;                     /* bytes of data[] in use                   */
    sbx__hpack_ent ent[SBX__HPACK_ENTRIES];
    unsigned char data[SBX__HPACK_TABLE_MAX];
    char why[120];
} sbx__hpack;

SBX__PRIVATE void sbx__hpack_init(sbx__hpack *t, size_t limit)
{
    t->limit = t->max = limit > SBX__HPACK_TABLE_MAX ? SBX__HPACK_TABLE_MAX : limit;
    t->size = 0;
    t->n = t->used = 0;
    t->why[0] = '\0';
}

SBX__PRIVATE void sbx__hpack_evict1(sbx__hpack *t)
{
    unsigned k = t->ent[0].nlen + t->ent[0].vlen, i;
    t->size -= (size_t)k + 32;
    memmove(t->data, t->data + k, t->used - k);
    t->used -= k;
    for (i = 1; i < t->n; i++) {
        t->ent[i - 1] = t->ent[i];
        t->ent[i - 1].off -= k;
    }
    t->n--;
}

SBX__PRIVATE void sbx__hpack_shrink(sbx__hpack *t)
{
    while (t->n > 0 && t->size > t->max) sbx__hpack_evict1(t);
}

/* RFC 7541 4.4: an entry larger than the table empties it and is not added. */
SBX__PRIVATE void sbx__hpack_insert(sbx__hpack *t, const unsigned char *name, size_t nlen,
                                     const unsigned char *val, size_t vlen)
{
    size_t need = nlen + vlen + 32;
    if (need > t->max) {
        t->n = t->used = 0;
        t->size = 0;
        return;
    }
    while (t->size + need > t->max) sbx__hpack_evict1(t);
    t->ent[t->n].off = t->used;
    t->ent[t->n].nlen = (unsigned)nlen;
    t->ent[t->n].vlen = (unsigned)vlen;
    memcpy(t->data + t->used, name, nlen);
    memcpy(t->data + t->used + nlen, val, vlen);
    t->used += (unsigned)(nlen + vlen);
    t->size += need;
    t->n++;
}

/* Entry `idx` (1-based, static then dynamic, newest dynamic first). */
SBX__PRIVATE int sbx__hpack_get(const sbx__hpack *t, unsigned long idx, const unsigned char **name, size_t *nlen,
                                const unsigned char **val, size_t *vlen)
{
    if (idx == 0) return -1;
    if (idx <= SBX__HPACK_STATIC) {
        *name = (const unsigned char *)sbx__hpack_static[idx - 1][0];
        *nlen = strlen(sbx__hpack_static[idx - 1][0]);
        *val = (const unsigned char *)sbx__hpack_static[idx - 1][1];
        *vlen = strlen(sbx__hpack_static[idx - 1][1]);
        return 0;
    }
    idx -= SBX__HPACK_STATIC;
    if (idx > t->n) return -1;
    {
        const sbx__hpack_ent *en = &t->ent[t->n - idx];
        *name = t->data + en->off;
        *nlen = en->nlen;
        *val = t->data + en->off + en->nlen;
        *vlen = en->vlen;
    }
    return 0;
}

/* ---- Huffman ------------------------------------------------------------- */

SBX__PRIVATE long sbx__huff_decode(const unsigned char *p, size_t n, unsigned char *out, size_t cap)
{
    unsigned long code = 0;
    unsigned len = 0;
    size_t i, o = 0;
    for (i = 0; i < n; i++) {
        int b;
        for (b = 7; b >= 0; b--) {
            code = (code << 1) | ((p[i] >> b) & 1u);
            len++;
            if (len >= 5) {
                unsigned long k = code - sbx__huff_first[len];
                if (k < sbx__huff_count[len]) {
                    unsigned sym = sbx__huff_sym[sbx__huff_start[len] + k];
                    if (sym == 256) return -1;
                    if (o >= cap) return -2;
                    out[o++] = (unsigned char)sym;
                    code = 0;
                    len = 0;
                }
            }
            if (len >= 30) return -1; /* cannot happen with the canonical code; keeps the loop bounded */
        }
    }
    /* padding: at most 7 bits, all ones (the start of EOS) */
    if (len > 7 || code != (1ul << len) - 1) return -1;
    return (long)o;
}

SBX__PRIVATE size_t sbx__huff_len_of(const unsigned char *p, size_t n)
{
    size_t i, bits = 0;
    for (i = 0; i < n; i++) bits += sbx__huff_len[p[i]];
    return (bits + 7) / 8;
}

SBX__PRIVATE void sbx__huff_encode(const unsigned char *p, size_t n, unsigned char *out)
{
    unsigned long long acc = 0;
    unsigned bits = 0;
    size_t i, o = 0;
    for (i = 0; i < n; i++) {
        acc = (acc << sbx__huff_len[p[i]]) | sbx__huff_code[p[i]];
        bits += sbx__huff_len[p[i]];
        while (bits >= 8) {
            bits -= 8;
            out[o++] = (unsigned char)(acc >> bits);
        }
    }
    if (bits > 0) out[o] = (unsigned char)((acc << (8 - bits)) | (0xffu >> bits));
}

/* ---- primitives ------------------------------------------------------------ */

/* RFC 7541 5.1; values above 2^28 are refused (nothing legitimate is that big). */
SBX__PRIVATE int sbx__hpack_get_int(const unsigned char **pp, const unsigned char *end, int prefix, unsigned long *v)
{
    const unsigned char *p = *pp;
    unsigned long max = (1ul << prefix) - 1, x;
    unsigned shift = 0;
    if (p >= end) return -1;
    x = *p++ & max;
    if (x == max) {
        for (;;) {
            unsigned char c;
            if (p >= end || shift > 21) return -1;
            c = *p++;
            x += (unsigned long)(c & 0x7f) << shift;
            shift += 7;
            if (!(c & 0x80)) break;
        }
        if (x > (1ul << 28)) return -1;
    }
    *pp = p;
    *v = x;
    return 0;
}

/* A string literal into out (at most cap bytes): its length, -1 malformed,
   -2 longer than cap (skipped, *pp advanced). */
SBX__PRIVATE long sbx__hpack_get_str(sbx__hpack *t, const unsigned char **pp, const unsigned char *end,
                                     unsigned char *out, size_t cap)
{
    const unsigned char *p = *pp;
    unsigned long n;
    int huff;
    long r;
    if (p >= end) {
        sbx__fmt(t->why, sizeof t->why, "a string is missing at the end of the block");
        return -1;
    }
    huff = (*p & 0x80) != 0;
    if (sbx__hpack_get_int(&p, end, 7, &n) != 0) {
        sbx__fmt(t->why, sizeof t->why, "bad string length");
        return -1;
    }
    if (n > (unsigned long)(end - p)) {
        sbx__fmt(t->why, sizeof t->why, "string of %lu bytes runs past the block", n);
        return -1;
    }
    *pp = p + n;
    if (huff) {
        r = sbx__huff_decode(p, n, out, cap);
        if (r == -1) sbx__fmt(t->why, sizeof t->why, "invalid Huffman code (EOS or bad padding)");
        if (r == -2) {
            /* still check it, so a bad code is reported the same whatever the cap */
            size_t i;
            unsigned long code = 0;
            unsigned len = 0;
            for (i = 0; i < n * 8; i++) {
                code = (code << 1) | ((p[i / 8] >> (7 - i % 8)) & 1u);
                if (++len >= 5 && code - sbx__huff_first[len] < sbx__huff_count[len]) {
                    if (sbx__huff_sym[sbx__huff_start[len] + (code - sbx__huff_first[len])] == 256) break;
                    code = 0;
                    len = 0;
                }
                if (len >= 30) break;
            }
            if (i < n * 8 || len > 7 || code != (1ul << len) - 1) {
                sbx__fmt(t->why, sizeof t->why, "invalid Huffman code (EOS or bad padding)");
                return -1;
            }
        }
        return r;
    }
    if (n > cap) return -2;
    memcpy(out, p, n);
    return (long)n;
}

SBX__PRIVATE int sbx__hpack_decode(sbx__hpack *t, const unsigned char *p, size_t n, unsigned char *scratch,
                                   size_t cap, size_t max_list,
                                   int (*cb)(void *u, const char *name, size_t nlen, const char *val, size_t vlen),
                                   void *u)
{
    const unsigned char *end = p + n;
    size_t list = 0;
    int fields = 0, over = 0;
    t->why[0] = '\0';
    while (p < end) {
        unsigned char c = *p;
        unsigned long idx;
        const unsigned char *name, *val;
        size_t nlen = 0, vlen = 0;
        int indexing = 0, have = 1; /* have: the field's bytes are in scratch */
        long r;
        if (c & 0x80) { /* 6.1 indexed field */
            if (sbx__hpack_get_int(&p, end, 7, &idx) != 0) {
                sbx__fmt(t->why, sizeof t->why, "bad indexed field (its index is cut short or over 2^28)");
                return -1;
            }
            if (sbx__hpack_get(t, idx, &name, &nlen, &val, &vlen) != 0) {
                sbx__fmt(t->why, sizeof t->why, "indexed field %lu is not in the table (%u dynamic entries)",
                         idx, t->n);
                return -1;
            }
            if (nlen + vlen > cap) have = 0;
            else {
                memcpy(scratch, name, nlen);
                memcpy(scratch + nlen, val, vlen);
            }
        } else if ((c & 0xe0) == 0x20) { /* 6.3 dynamic table size update */
            if (fields) {
                sbx__fmt(t->why, sizeof t->why, "table size update after a field");
                return -1;
            }
            if (sbx__hpack_get_int(&p, end, 5, &idx) != 0) {
                sbx__fmt(t->why, sizeof t->why, "bad table size update (its size is cut short or over 2^28)");
                return -1;
            }
            if (idx > t->limit) {
                sbx__fmt(t->why, sizeof t->why, "table size update to %lu passes our limit of %lu", idx,
                         (unsigned long)t->limit);
                return -1;
            }
            t->max = idx;
            sbx__hpack_shrink(t);
            continue;
        } else { /* 6.2 literals: with indexing (01), without (0000), never indexed (0001) */
            int prefix = (c & 0xc0) == 0x40 ? 6 : 4;
            indexing = prefix == 6;
            if (sbx__hpack_get_int(&p, end, prefix, &idx) != 0) {
                sbx__fmt(t->why, sizeof t->why, "bad literal field");
                return -1;
            }
            if (idx) {
                if (sbx__hpack_get(t, idx, &name, &nlen, &val, &vlen) != 0) {
                    sbx__fmt(t->why, sizeof t->why, "name index %lu is not in the table (%u dynamic entries)",
                             idx, t->n);
                    return -1;
                }
                if (nlen > cap) have = 0;
                else memcpy(scratch, name, nlen);
            } else {
                r = sbx__hpack_get_str(t, &p, end, scratch, cap);
                if (r == -1) return -1;
                if (r == -2) have = 0;
                else nlen = (size_t)r;
            }
            /* the value is read (and checked) even when it cannot be kept */
            r = sbx__hpack_get_str(t, &p, end, scratch + (have ? nlen : 0), have ? cap - nlen : 0);
            if (r == -1) return -1;
            if (r == -2 || !have) have = 0, vlen = 0;
            else vlen = (size_t)r;
        }
        fields++;
        if (!have) over = 1;
        if (have && !over) {
            list += nlen + vlen + 32;
            if (list > max_list) over = 1;
        }
        if (indexing) {
            /* cap >= the table's limit, so a field we could not keep is larger
               than the table: RFC 7541 4.4 empties the table for it */
            if (have) sbx__hpack_insert(t, scratch, nlen, scratch + nlen, vlen);
            else t->n = t->used = 0, t->size = 0;
        }
        if (!over && cb && cb(u, (const char *)scratch, nlen, (const char *)scratch + nlen, vlen) != 0) over = 1;
    }
    return over ? 1 : 0;
}

/* ---- encoder ----------------------------------------------------------------- */

SBX__PRIVATE int sbx__hpack_int(sbx__buf *b, unsigned first, int prefix, unsigned long v)
{
    unsigned long max = (1ul << prefix) - 1;
    unsigned char out[8];
    size_t k = 0;
    if (v < max) {
        out[k++] = (unsigned char)(first | v);
    } else {
        out[k++] = (unsigned char)(first | max);
        v -= max;
        while (v >= 128) {
            out[k++] = (unsigned char)(0x80 | (v & 0x7f));
            v >>= 7;
        }
        out[k++] = (unsigned char)v;
    }
    return sbx__buf_append(b, out, k);
}

SBX__PRIVATE int sbx__hpack_str(sbx__buf *b, const char *s, size_t n)
{
    size_t h = sbx__huff_len_of((const unsigned char *)s, n);
    if (h < n) {
        if (sbx__hpack_int(b, 0x80, 7, (unsigned long)h) != 0 || sbx__buf_reserve(b, h) != 0) return -1;
        sbx__huff_encode((const unsigned char *)s, n, (unsigned char *)b->data + b->len);
        b->len += h;
        b->data[b->len] = '\0';
        return 0;
    }
    if (sbx__hpack_int(b, 0, 7, (unsigned long)n) != 0) return -1;
    return sbx__buf_append(b, s, n);
}

SBX__PRIVATE int sbx__hpack_field(sbx__buf *b, int static_name, const char *name, const char *value, size_t vlen)
{
    if (static_name > 0) {
        if (sbx__hpack_int(b, 0x00, 4, (unsigned long)static_name) != 0) return -1;
    } else if (sbx__buf_append(b, "\0", 1) != 0 || sbx__hpack_str(b, name, strlen(name)) != 0) {
        return -1;
    }
    return sbx__hpack_str(b, value, vlen);
}

/* ======================================================================== */
/* >>h2: HTTP/2 client connections (RFC 9113, cleartext, prior knowledge)   */
/* ======================================================================== */
/* One sbx__h2 is a client of one endpoint. It holds at most one current
   connection (sbx__h2c) and makes a new one lazily when there is none, when
   the current one died, got a GOAWAY or used up its stream ids. A retired
   connection lives on while calls it carries run to their end, beside the
   new one. Over a transport (a WebSocket port-forward is one byte stream)
   every connection has a transport of its own, made with it by the handle's
   maker and closed and freed with it, so a retired connection drains on its
   own stream while new calls go over a new one at once.

   CONCURRENCY: leader/follower, no thread of our own. One lock (h->mu)
   guards all state; a connection's writes are serialised by its wmu (taken
   after mu, never the other way round). A thread that must wait for its
   stream (data, window, a free stream slot) and finds nobody reading the
   connection takes the read role: it reads with ITS deadline, outside the
   lock, dispatches whole frames to every stream's buffer under the lock and
   wakes the others (h->cv); else it sleeps on h->cv until its deadline. When
   the reader's own wait ends it gives the role up and wakes the others, one
   of which takes it over. So nobody spins, every wait has a deadline, and a
   connection nobody waits on is not read at all (its flow-control windows
   then stop the server). Why no background reader: it would be a thread per
   sandbox that outlives calls, needs its own shutdown protocol, and buys
   nothing here, as every byte has a waiting caller.
   Over a transport (the WebSocket port-forward), reads and writes must not
   overlap (a read may answer a ping), so the reader polls the descriptor
   the transport's open returned (the socket) without locks and reads under
   wmu with a 1 ms deadline.

   FLOW CONTROL: we announce a stream window of SBX__H2_STREAM_WINDOW and
   give bytes back (WINDOW_UPDATE) only as the caller consumes them, so a
   stream buffers at most that much; the connection window is given back as
   data is buffered (the stream windows already bound memory). Our sends wait
   for the server's windows.

   KEEPALIVE: a peer that vanishes without a FIN or RST (a NAT or load
   balancer dropping an idle flow, a frozen pod network) would otherwise be
   noticed only at each call's deadline, and a quiet process looks just like
   it. So while a stream is open and a reader waits, the reader stops its
   read when nothing has been received for SBX_H2_KEEPALIVE_MS and sends a
   PING (opaque data "sbxk" + a counter); if still nothing at all arrives
   within SBX_H2_PING_TIMEOUT_MS, the connection fails (SBX_ERR_CONNECT, "no
   answer to PING in ..."), and the next call makes a new one. Any bytes
   count as an answer, not only our ACK: a server whose ACK waits behind the
   DATA it is sending is alive, and it is silence that we look for. The ACK
   is matched by its opaque data (counted in c->ping_acks); an ACK we did not
   ask for is ignored, as RFC 9113 6.7 makes only a PING on a stream other
   than 0 or of other than 8 bytes an error. With no stream open or nobody
   reading, nothing is sent: no timer, no thread. Pings are at least the
   interval apart (the clock restarts at whatever arrives, ACKs included);
   a GOAWAY too_many_pings (ENHANCE_YOUR_CALM) says so in the failed calls'
   messages, and the handle's later connections wait twice as long.

   ERRORS: a connection error by the server (RFC 9113 5.4.1) sends GOAWAY and
   fails every unfinished stream with SBX_ERR_PROTOCOL naming the rule; a
   dead socket fails them with SBX_ERR_CONNECT; GOAWAY fails the streams
   above its last-stream-id with SBX_ERR_CONNECT (never processed: safe to
   retry) and lets the others finish. RST_STREAM fails one stream
   (REFUSED_STREAM: SBX_ERR_CONNECT, CANCEL: SBX_ERR_CLOSED, else
   SBX_ERR_PROTOCOL). */

#define SBX__H2_FRAME_MAX 16384u                  /* our SETTINGS_MAX_FRAME_SIZE (the default) */
#define SBX__H2_STREAM_WINDOW (256u * 1024u)      /* what one stream may buffer                */
#define SBX__H2_CONN_WINDOW (16u * 1024u * 1024u) /* connection receive window                 */
#define SBX__H2_MAX_HEADER_LIST 65536u            /* decoded header list (RFC 9113 counting)   */
#define SBX__H2_MAX_BLOCK 65536u                  /* one compressed header block               */
#define SBX__H2_RBUF (4u * (SBX__H2_FRAME_MAX + 9u))
#define SBX__H2_MSG_MAX 1024                      /* grpc-message bytes kept                   */
#define SBX__H2_CTL_WAIT_MS 5000                  /* control frames (acks, updates, resets)    */
#define SBX__H2_MAX_ID 0x7fffffffu
#define SBX__H2_NO_DEADLINE (365LL * 86400000LL)

/* Keepalive (see KEEPALIVE above). 5 minutes is the shortest interval a
   default gRPC server takes on a stream that sends nothing: grpc-go's
   EnforcementPolicy.MinTime and gRPC core's
   GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS both default to
   5 minutes and apply WITH active streams too; a ping sooner than that after
   the last one is a strike unless the server sent DATA or HEADERS in
   between (which resets the strikes), and the third strike (max 2) gets
   GOAWAY(ENHANCE_YOUR_CALM, "too_many_pings") and a closed connection. As we
   ping only after silence, the server has sent nothing in between, so every
   ping sooner than 5 minutes would be a strike: 30 s would kill a quiet
   stream after 2 minutes. Without streams those servers want 2 hours
   between pings unless PermitWithoutStream: we never ping then. 20 s to
   answer is gRPC's own GRPC_ARG_KEEPALIVE_TIMEOUT_MS default. */
#ifndef SBX_H2_KEEPALIVE_MS
#define SBX_H2_KEEPALIVE_MS 300000
#endif
#ifndef SBX_H2_PING_TIMEOUT_MS
#define SBX_H2_PING_TIMEOUT_MS 20000
#endif
#if SBX_H2_PING_TIMEOUT_MS < 1
#error "SBX_H2_PING_TIMEOUT_MS must be at least 1 (SBX_H2_KEEPALIVE_MS 0 turns keepalive off)"
#endif

enum {
    SBX__H2_DATA = 0, SBX__H2_HEADERS = 1, SBX__H2_PRIORITY = 2, SBX__H2_RST_STREAM = 3, SBX__H2_SETTINGS = 4,
    SBX__H2_PUSH_PROMISE = 5, SBX__H2_PING = 6, SBX__H2_GOAWAY = 7, SBX__H2_WINDOW_UPDATE = 8,
    SBX__H2_CONTINUATION = 9
};
enum { SBX__H2F_END_STREAM = 0x1, SBX__H2F_ACK = 0x1, SBX__H2F_END_HEADERS = 0x4, SBX__H2F_PADDED = 0x8,
       SBX__H2F_PRIORITY = 0x20 };
enum {
    SBX__H2E_NO_ERROR = 0, SBX__H2E_PROTOCOL = 1, SBX__H2E_INTERNAL = 2, SBX__H2E_FLOW_CONTROL = 3,
    SBX__H2E_SETTINGS_TIMEOUT = 4, SBX__H2E_STREAM_CLOSED = 5, SBX__H2E_FRAME_SIZE = 6, SBX__H2E_REFUSED = 7,
    SBX__H2E_CANCEL = 8, SBX__H2E_COMPRESSION = 9, SBX__H2E_CONNECT = 10, SBX__H2E_CALM = 11,
    SBX__H2E_SECURITY = 12, SBX__H2E_HTTP_1_1 = 13
};

SBX__PRIVATE const char *sbx__h2_errname(unsigned long code)
{
    static const char *const names[] = {"NO_ERROR", "PROTOCOL_ERROR", "INTERNAL_ERROR", "FLOW_CONTROL_ERROR",
                                        "SETTINGS_TIMEOUT", "STREAM_CLOSED", "FRAME_SIZE_ERROR",
                                        "REFUSED_STREAM", "CANCEL", "COMPRESSION_ERROR", "CONNECT_ERROR",
                                        "ENHANCE_YOUR_CALM", "INADEQUATE_SECURITY", "HTTP_1_1_REQUIRED"};
    return code < sizeof names / sizeof names[0] ? names[code] : "unknown error code";
}

typedef struct sbx__h2 sbx__h2;
typedef struct sbx__h2c sbx__h2c;
typedef struct sbx__h2s sbx__h2s;

/* The transports of a handle's connections: make(arg, &tr) makes the state
   of a new one (NULL: out of memory); the connection owns it and, when it is
   freed, hands it to drop(state), which closes it WITHOUT waiting on the peer
   and frees it. Both run with h->mu held (calls on other connections wait);
   make never once sbx__h2_free has begun, so arg must live until that
   returns. */
typedef struct sbx__h2_trmaker {
    void *(*make)(void *arg, const sbx__transport **tr);
    void (*drop)(void *state);
    void *arg;
} sbx__h2_trmaker;

/* One stream: the gRPC layer embeds it in its call. Fields are guarded by h->mu. */
struct sbx__h2s {
    sbx__h2c *c;               /* the connection (a reference held), NULL before open */
    sbx__h2s *next;            /* c->streams while open                              */
    unsigned id;
    int open;                  /* counted in c->nstreams, frames are dispatched to it */
    int local_end;             /* we sent END_STREAM                                 */
    int remote_end;            /* the server sent END_STREAM                         */
    int failed;                /* err/why say why                                    */
    sbx_result err;
    char why[320];
    long long send_window;
    long long recv_window;     /* what the server may still send                     */
    unsigned long unacked;     /* consumed, not yet given back                       */
    sbx__buf in;               /* received DATA, unconsumed: in.data[in_pos, in.len) */
    size_t in_pos;
    int heads;                 /* header blocks seen (1xx not counted)               */
    int http_status;
    int grpc_ct;               /* content-type is application/grpc[+...|;...]        */
    int grpc_status;           /* -1: none received                                  */
    char grpc_msg[SBX__H2_MSG_MAX]; /* as received (percent-encoded)                  */
};

struct sbx__h2c {
    sbx__h2 *h;
    sbx__h2c *next;            /* h->conns */
    int refs;                  /* h->cur, open calls, threads inside               */
    sbx__conn io;              /* io.trs: this connection's own transport, if any  */
    pthread_mutex_t wmu;
    int dead;
    sbx_result dead_code;
    char dead_why[320];
    int retired;               /* takes no new streams                              */
    int goaway;
    unsigned long goaway_last, goaway_code;
    int reading;
    int got_settings;
    int drain;                 /* transport: read again before polling             */
    int table_update;          /* the server changed SETTINGS_HEADER_TABLE_SIZE: our
                                  next block opens with a size update (to 0: we
                                  never index), RFC 7541 4.2                        */
    unsigned next_id;
    long long send_window;
    long long peer_window;     /* the server's SETTINGS_INITIAL_WINDOW_SIZE         */
    unsigned long peer_frame;  /* the server's SETTINGS_MAX_FRAME_SIZE              */
    unsigned long peer_streams;
    long long recv_window;
    unsigned long recv_pending;
    int nstreams;
    sbx__h2s *streams;
    unsigned char *rbuf;
    size_t rlen;
    sbx__hpack dec;
    sbx__buf block;            /* header block being gathered                       */
    unsigned block_sid;
    int block_end, in_block;
    unsigned char *scratch;    /* SBX__H2_MAX_HEADER_LIST bytes for HPACK           */
    sbx__buf ctl;              /* control frames waiting to be sent                 */
    unsigned long long frames; /* frames received                                   */
    long long quiet_since;     /* nothing received since (a stream open)            */
    long long ping_at;         /* our keepalive PING went out then, unanswered; 0   */
    unsigned long pings;       /* keepalive PINGs sent (the opaque data counts them) */
    unsigned long ping_acked;  /* the last of them the server acknowledged          */
    unsigned long ping_acks;   /* acknowledgements of ours received                 */
    unsigned long ping_stray;  /* PING acks we did not ask for (ignored)            */
    char goaway_why[300];      /* the GOAWAY's code and debug text, for messages    */
};

struct sbx__h2 {
    sbx_allocator a;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int mono;
    sbx__endpoint ep;
    sbx__h2_trmaker mk;        /* mk.make NULL: plain sockets */
    char *authority;
    sbx__h2c *cur;
    sbx__h2c *conns;
    int nconns;
    int connecting;
    int refs;                  /* the handle + calls */
    int closed;
    unsigned long connects;    /* connections made */
    long keepalive_ms;         /* SBX_H2_KEEPALIVE_MS, doubled by each too_many_pings */
    long ping_timeout_ms;      /* SBX_H2_PING_TIMEOUT_MS                            */
};

/* ---- small helpers --------------------------------------------------------- */

SBX__PRIVATE unsigned long sbx__h2_u32(const unsigned char *p)
{
    return ((unsigned long)p[0] << 24) | ((unsigned long)p[1] << 16) | ((unsigned long)p[2] << 8) | p[3];
}

SBX__PRIVATE void sbx__h2_put32(unsigned char *p, unsigned long v)
{
    p[0] = (unsigned char)(v >> 24);
    p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8);
    p[3] = (unsigned char)v;
}

SBX__PRIVATE void sbx__h2_head(unsigned char *p, size_t len, int type, int flags, unsigned long sid)
{
    p[0] = (unsigned char)(len >> 16);
    p[1] = (unsigned char)(len >> 8);
    p[2] = (unsigned char)len;
    p[3] = (unsigned char)type;
    p[4] = (unsigned char)flags;
    sbx__h2_put32(p + 5, sid & SBX__H2_MAX_ID);
}

SBX__PRIVATE int sbx__h2_frame(sbx__buf *b, int type, int flags, unsigned long sid, const void *payload, size_t n)
{
    unsigned char hd[9];
    sbx__h2_head(hd, n, type, flags, sid);
    if (sbx__buf_append(b, hd, 9) != 0) return -1;
    return n ? sbx__buf_append(b, payload, n) : 0;
}

SBX__PRIVATE int sbx__h2_window_update(sbx__buf *b, unsigned long sid, unsigned long inc)
{
    unsigned char v[4];
    sbx__h2_put32(v, inc & SBX__H2_MAX_ID);
    return sbx__h2_frame(b, SBX__H2_WINDOW_UPDATE, 0, sid, v, 4);
}

/* The server's text (GOAWAY debug data, header values) made safe for a message. */
SBX__PRIVATE void sbx__h2_clean(char *out, size_t cap, const unsigned char *p, size_t n)
{
    size_t i, o = 0;
    if (!cap) return;
    for (i = 0; i < n && o + 1 < cap; i++) out[o++] = (p[i] >= 0x20 && p[i] < 0x7f) ? (char)p[i] : '?';
    out[o] = '\0';
}

/* Wait on h->cv until woken or the deadline; mu held. */
SBX__PRIVATE void sbx__h2_sleep(sbx__h2 *h, long long deadline)
{
    long long left = deadline - sbx__now_ms();
    if (left <= 0) return;
    if (left > 86400000LL) left = 86400000LL;
    sbx__cond_wait_ms(&h->cv, &h->mu, h->mono, left);
}

/* ---- streams and connections: lifetime (mu held throughout) ------------------ */

SBX__PRIVATE SBX__PRINTF(3, 4) void sbx__h2s_fail(sbx__h2s *s, sbx_result code, const char *fmt, ...)
{
    va_list ap;
    if (s->failed) return;
    s->failed = 1;
    s->err = code;
    va_start(ap, fmt);
    vsnprintf(s->why, sizeof s->why, fmt, ap);
    va_end(ap);
}

/* The stream stops taking frames and stops counting against the server's limit. */
SBX__PRIVATE void sbx__h2s_unlink(sbx__h2s *s)
{
    sbx__h2s **pp;
    if (!s->open || !s->c) return;
    for (pp = &s->c->streams; *pp; pp = &(*pp)->next) {
        if (*pp == s) {
            *pp = s->next;
            break;
        }
    }
    s->next = NULL;
    s->open = 0;
    s->c->nstreams--;
}

SBX__PRIVATE sbx__h2s *sbx__h2c_find(sbx__h2c *c, unsigned long id)
{
    sbx__h2s *s;
    for (s = c->streams; s; s = s->next)
        if (s->id == id) return s;
    return NULL;
}

SBX__PRIVATE void sbx__h2c_free(sbx__h2c *c)
{
    sbx_allocator *a = &c->h->a;
    if (c->io.trs) { /* drop closes it: sbx__conn_close's transport close may wait on the peer */
        c->h->mk.drop(c->io.trs);
        c->io.fd = -1;
    }
    sbx__conn_free(&c->io);
    pthread_mutex_destroy(&c->wmu);
    sbx__buf_free(&c->block);
    sbx__buf_free(&c->ctl);
    sbx__free(a, c->rbuf);
    sbx__free(a, c->scratch);
    sbx__free(a, c);
}

SBX__PRIVATE void sbx__h2c_unref(sbx__h2c *c)
{
    sbx__h2 *h = c->h;
    sbx__h2c **pp;
    if (--c->refs > 0) return;
    for (pp = &h->conns; *pp; pp = &(*pp)->next) {
        if (*pp == c) {
            *pp = c->next;
            break;
        }
    }
    if (h->cur == c) h->cur = NULL;
    h->nconns--;
    sbx__h2c_free(c);
    pthread_cond_broadcast(&h->cv);
}

/* No new streams on c; drops the handle's reference (the caller holds one). */
SBX__PRIVATE void sbx__h2c_retire(sbx__h2c *c)
{
    if (c->retired) return;
    c->retired = 1;
    if (c->h->cur == c) {
        c->h->cur = NULL;
        sbx__h2c_unref(c);
    }
}

/* A dead connection lets go of its socket / transport stream as soon as no
   reader polls it (the reader does it on its way out), not when the last of
   its calls is freed, which may be much later. */
SBX__PRIVATE void sbx__h2c_close_io(sbx__h2c *c)
{
    if (c->reading || c->io.fd < 0) return;
    pthread_mutex_lock(&c->wmu);
    sbx__conn_close(&c->io);
    pthread_mutex_unlock(&c->wmu);
}

/* The connection is over: every stream that has not ended fails with code.
   The socket is shut down (not closed: the descriptor stays ours until the
   last reference goes) so that a reader blocked in recv returns. */
SBX__PRIVATE SBX__PRINTF(3, 4) void sbx__h2c_fail(sbx__h2c *c, sbx_result code, const char *fmt, ...)
{
    va_list ap;
    sbx__h2s *s;
    if (c->dead) return;
    c->dead = 1;
    c->dead_code = code;
    va_start(ap, fmt);
    vsnprintf(c->dead_why, sizeof c->dead_why, fmt, ap);
    va_end(ap);
    while ((s = c->streams) != NULL) {
        if (!s->remote_end) sbx__h2s_fail(s, code, "%s", c->dead_why);
        sbx__h2s_unlink(s);
    }
    if (c->io.fd >= 0) shutdown(c->io.fd, SHUT_RDWR);
    sbx__h2c_close_io(c);
    sbx__h2c_retire(c);
    pthread_cond_broadcast(&c->h->cv);
}

/* ---- writing ----------------------------------------------------------------- */

/* A send on c failed (r: -2 deadline, else errno err): c dies of it. */
SBX__PRIVATE int sbx__h2c_send_failed(sbx__h2c *c, int r, int err)
{
    if (r == -2) sbx__h2c_fail(c, SBX_ERR_TIMEOUT, "HTTP/2 connection to %s: sending timed out", c->h->ep.name);
    else sbx__h2c_fail(c, SBX_ERR_CONNECT, "HTTP/2 connection to %s: send: %s", c->h->ep.name, strerror(err));
    return c->dead_code;
}

/* Send with mu held (stream ids must go out in order). */
SBX__PRIVATE int sbx__h2c_send_locked(sbx__h2c *c, const void *p, size_t n, long long deadline)
{
    int r, err;
    if (c->dead) return c->dead_code;
    pthread_mutex_lock(&c->wmu);
    r = sbx__conn_send(&c->io, (const char *)p, n, deadline);
    err = errno; /* before the unlock, which may change it */
    pthread_mutex_unlock(&c->wmu);
    return r == 0 ? SBX_OK : sbx__h2c_send_failed(c, r, err);
}

/* Send, letting go of mu meanwhile (the caller holds a reference to c). */
SBX__PRIVATE int sbx__h2c_send(sbx__h2c *c, const void *p, size_t n, long long deadline)
{
    sbx__h2 *h = c->h;
    int r, err;
    if (c->dead) return c->dead_code;
    pthread_mutex_unlock(&h->mu);
    pthread_mutex_lock(&c->wmu);
    r = sbx__conn_send(&c->io, (const char *)p, n, deadline);
    err = errno;
    pthread_mutex_unlock(&c->wmu);
    pthread_mutex_lock(&h->mu);
    if (r == 0) return c->dead ? c->dead_code : SBX_OK;
    return sbx__h2c_send_failed(c, r, err);
}

/* Send the queued control frames (acks, window updates, resets). */
SBX__PRIVATE void sbx__h2c_flush(sbx__h2c *c)
{
    sbx__buf out;
    if (c->ctl.len == 0 || c->dead) return;
    out = c->ctl;
    sbx__buf_init(&c->ctl, &c->h->a);
    c->refs++;
    sbx__h2c_send(c, out.data, out.len, sbx__deadline(SBX__H2_CTL_WAIT_MS));
    sbx__buf_free(&out);
    sbx__h2c_unref(c);
}

/* A connection error of the server's making: GOAWAY with code, then fail. */
SBX__PRIVATE SBX__PRINTF(3, 4) int sbx__h2c_error(sbx__h2c *c, unsigned long code, const char *fmt, ...)
{
    char why[256];
    unsigned char ga[17];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    if (!c->dead && c->io.fd >= 0) {
        sbx__h2_head(ga, 8, SBX__H2_GOAWAY, 0, 0);
        sbx__h2_put32(ga + 9, 0);
        sbx__h2_put32(ga + 13, code);
        sbx__h2c_send_locked(c, ga, sizeof ga, sbx__deadline(100));
    }
    sbx__h2c_fail(c, SBX_ERR_PROTOCOL, "HTTP/2 connection to %s: the server broke the protocol (%s): %s",
                  c->h->ep.name, sbx__h2_errname(code), why);
    return -1;
}

/* A stream error: RST_STREAM(code) and the stream fails with result/why. */
SBX__PRIVATE void sbx__h2s_reset(sbx__h2s *s, unsigned long code, sbx_result result, const char *why)
{
    unsigned char v[4];
    sbx__h2_put32(v, code);
    if (s->open && s->c && !s->c->dead) sbx__h2_frame(&s->c->ctl, SBX__H2_RST_STREAM, 0, s->id, v, 4);
    sbx__h2s_fail(s, result, "%s", why);
    sbx__h2s_unlink(s);
}

/* The caller consumed n bytes of s->in: give them back to the server once a
   quarter of the window is waiting (queued; sbx__h2c_flush sends). */
SBX__PRIVATE void sbx__h2s_consumed(sbx__h2s *s, size_t n)
{
    s->in_pos += n;
    if (s->in_pos == s->in.len) s->in_pos = s->in.len = 0;
    s->unacked += (unsigned long)n;
    if (s->open && !s->remote_end && s->c && s->unacked >= SBX__H2_STREAM_WINDOW / 4) {
        if (sbx__h2_window_update(&s->c->ctl, s->id, s->unacked) == 0) {
            s->recv_window += (long long)s->unacked;
            s->unacked = 0;
        }
    }
}

/* ---- reading: frames from the server -------------------------------------------- */

typedef struct sbx__h2_hctx {
    sbx__h2s *s;
    int status;
    int ct;
    int grpc_status;
    int pseudo_after;          /* a pseudo-header after a regular field */
    int regular;
    const char *bad;
    char msg[SBX__H2_MSG_MAX];
    int has_msg;
} sbx__h2_hctx;

SBX__PRIVATE int sbx__h2_name_is(const char *n, size_t nl, const char *lit)
{
    return strlen(lit) == nl && memcmp(n, lit, nl) == 0;
}

SBX__PRIVATE int sbx__h2_on_header(void *u, const char *n, size_t nl, const char *v, size_t vl)
{
    sbx__h2_hctx *x = (sbx__h2_hctx *)u;
    size_t i;
    for (i = 0; i < nl; i++)
        if (n[i] >= 'A' && n[i] <= 'Z') x->bad = "an upper-case header name";
    if (nl == 0) x->bad = "an empty header name";
    if (nl > 0 && n[0] == ':') {
        if (x->regular) x->bad = "a pseudo-header after a regular field";
        if (sbx__h2_name_is(n, nl, ":status")) {
            if (x->status || vl != 3 || v[0] < '1' || v[0] > '5' || v[1] < '0' || v[1] > '9' || v[2] < '0' ||
                v[2] > '9')
                x->bad = "a bad or repeated :status";
            else x->status = (v[0] - '0') * 100 + (v[1] - '0') * 10 + (v[2] - '0');
        } else {
            x->bad = "a pseudo-header other than :status";
        }
        return 0;
    }
    x->regular = 1;
    if (sbx__h2_name_is(n, nl, "content-type")) {
        x->ct = vl >= 16 && memcmp(v, "application/grpc", 16) == 0 && (vl == 16 || v[16] == '+' || v[16] == ';');
    } else if (sbx__h2_name_is(n, nl, "grpc-status")) {
        int st = 0;
        /* at most five digits, checked before the loop so that a long
           digit string cannot overflow st */
        if (vl == 0 || vl > 5) {
            x->bad = "a bad grpc-status";
            vl = 0;
        }
        for (i = 0; i < vl; i++) {
            if (v[i] < '0' || v[i] > '9') {
                x->bad = "a bad grpc-status";
                break;
            }
            st = st * 10 + (v[i] - '0');
        }
        x->grpc_status = st;
    } else if (sbx__h2_name_is(n, nl, "grpc-message")) {
        size_t k = vl < sizeof x->msg - 1 ? vl : sizeof x->msg - 1;
        memcpy(x->msg, v, k);
        x->msg[k] = '\0';
        x->has_msg = 1;
    }
    return 0;
}

/* A whole header block arrived (HEADERS + CONTINUATION). */
SBX__PRIVATE int sbx__h2c_block(sbx__h2c *c)
{
    sbx__h2_hctx x;
    sbx__h2s *s = sbx__h2c_find(c, c->block_sid);
    int r;
    char why[200];
    memset(&x, 0, sizeof x);
    x.s = s;
    x.grpc_status = -1;
    c->in_block = 0;
    r = sbx__hpack_decode(&c->dec, (const unsigned char *)c->block.data, c->block.len, c->scratch,
                          SBX__H2_MAX_HEADER_LIST, SBX__H2_MAX_HEADER_LIST, sbx__h2_on_header, &x);
    c->block.len = 0;
    if (r < 0) return sbx__h2c_error(c, SBX__H2E_COMPRESSION, "HPACK: %s", c->dec.why);
    if (!s) return 0; /* a stream we reset or forgot: decoded only to keep the table in step */
    if (r == 1) {
        sbx__fmt(why, sizeof why, "stream %u: the server's header list passed %u bytes", s->id,
                 SBX__H2_MAX_HEADER_LIST);
        sbx__h2s_reset(s, SBX__H2E_PROTOCOL, SBX_ERR_TOO_BIG, why);
        return 0;
    }
    if (s->remote_end) {
        sbx__fmt(why, sizeof why, "stream %u: HEADERS after END_STREAM", s->id);
        sbx__h2s_reset(s, SBX__H2E_STREAM_CLOSED, SBX_ERR_PROTOCOL, why);
        return 0;
    }
    if (!x.bad && s->heads == 0 && x.status == 0) x.bad = "no :status";
    if (!x.bad && s->heads > 0 && !c->block_end) x.bad = "trailers without END_STREAM";
    if (!x.bad && s->heads > 0 && x.status) x.bad = ":status in trailers";
    if (x.bad) {
        sbx__fmt(why, sizeof why, "stream %u: malformed response headers from the server: %s", s->id, x.bad);
        sbx__h2s_reset(s, SBX__H2E_PROTOCOL, SBX_ERR_PROTOCOL, why);
        return 0;
    }
    if (s->heads == 0) {
        if (x.status >= 100 && x.status < 200) {
            if (c->block_end) {
                sbx__fmt(why, sizeof why, "stream %u: the server ended the stream with a %d", s->id, x.status);
                sbx__h2s_reset(s, SBX__H2E_PROTOCOL, SBX_ERR_PROTOCOL, why);
            }
            return 0; /* interim answer: the real one follows */
        }
        s->http_status = x.status;
        s->grpc_ct = x.ct;
    }
    s->heads++;
    if (x.grpc_status >= 0) s->grpc_status = x.grpc_status;
    if (x.has_msg) memcpy(s->grpc_msg, x.msg, sizeof s->grpc_msg);
    if (c->block_end) {
        s->remote_end = 1;
        if (s->local_end) sbx__h2s_unlink(s);
    }
    return 0;
}

SBX__PRIVATE int sbx__h2c_data(sbx__h2c *c, unsigned long sid, int flags, const unsigned char *p, size_t len)
{
    sbx__h2s *s;
    size_t pad = 0;
    const unsigned char *d = p;
    size_t dlen = len;
    char why[160];
    if (sid == 0) return sbx__h2c_error(c, SBX__H2E_PROTOCOL, "DATA on stream 0");
    if (flags & SBX__H2F_PADDED) {
        if (len < 1 || (size_t)p[0] >= len) return sbx__h2c_error(c, SBX__H2E_PROTOCOL, "DATA padding too long");
        pad = p[0];
        d = p + 1;
        dlen = len - 1 - pad;
    }
    if ((long long)len > c->recv_window)
        return sbx__h2c_error(c, SBX__H2E_FLOW_CONTROL, "DATA past the connection window");
    c->recv_window -= (long long)len;
    c->recv_pending += (unsigned long)len;
    if (c->recv_pending >= SBX__H2_CONN_WINDOW / 2 &&
        sbx__h2_window_update(&c->ctl, 0, c->recv_pending) == 0) {
        c->recv_window += (long long)c->recv_pending;
        c->recv_pending = 0;
    }
    if ((sid & 1) == 0 || sid >= c->next_id)
        return sbx__h2c_error(c, SBX__H2E_PROTOCOL, "DATA on stream %lu, which we never opened", sid);
    s = sbx__h2c_find(c, sid);
    if (!s) return 0; /* reset by us, or done: in flight when we let go */
    if (s->remote_end || s->heads == 0) {
        sbx__fmt(why, sizeof why, "stream %u: DATA %s", s->id,
                 s->remote_end ? "after END_STREAM" : "before the response headers");
        sbx__h2s_reset(s, s->remote_end ? SBX__H2E_STREAM_CLOSED : SBX__H2E_PROTOCOL, SBX_ERR_PROTOCOL, why);
        return 0;
    }
    if ((long long)len > s->recv_window) {
        sbx__fmt(why, sizeof why, "stream %u: the server sent DATA past the stream window", s->id);
        sbx__h2s_reset(s, SBX__H2E_FLOW_CONTROL, SBX_ERR_PROTOCOL, why);
        return 0;
    }
    s->recv_window -= (long long)len;
    if (dlen) {
        /* move the unconsumed bytes down rather than grow: the buffer stays
           within the window (plus a frame) however long the stream runs */
        if (s->in_pos > 0 && (s->in_pos >= s->in.len / 2 || s->in.len + dlen + 1 > s->in.cap)) {
            memmove(s->in.data, s->in.data + s->in_pos, s->in.len - s->in_pos);
            s->in.len -= s->in_pos;
            s->in_pos = 0;
        }
        if (sbx__buf_append(&s->in, d, dlen) != 0) {
            sbx__fmt(why, sizeof why, "stream %u: out of memory for %lu bytes of DATA", s->id, (unsigned long)dlen);
            sbx__h2s_reset(s, SBX__H2E_INTERNAL, SBX_ERR_NOMEM, why);
            return 0;
        }
    }
    /* padding and the pad length byte are consumed at once */
    if (len > dlen) {
        s->unacked += (unsigned long)(len - dlen);
        if (!(flags & SBX__H2F_END_STREAM) && s->unacked >= SBX__H2_STREAM_WINDOW / 4 &&
            sbx__h2_window_update(&c->ctl, s->id, s->unacked) == 0) {
            s->recv_window += (long long)s->unacked;
            s->unacked = 0;
        }
    }
    if (flags & SBX__H2F_END_STREAM) {
        s->remote_end = 1;
        if (s->local_end) sbx__h2s_unlink(s);
    }
    return 0;
}

SBX__PRIVATE int sbx__h2c_settings(sbx__h2c *c, int flags, const unsigned char *p, size_t len)
{
    size_t i;
    if (flags & SBX__H2F_ACK) {
        if (len != 0) return sbx__h2c_error(c, SBX__H2E_FRAME_SIZE, "SETTINGS ack with a payload");
        return 0;
    }
    if (len % 6) return sbx__h2c_error(c, SBX__H2E_FRAME_SIZE, "SETTINGS of %lu bytes", (unsigned long)len);
    for (i = 0; i < len; i += 6) {
        unsigned id = ((unsigned)p[i] << 8) | p[i + 1];
        unsigned long v = sbx__h2_u32(p + i + 2);
        if (id == 1) c->table_update = 1;
        if (id == 2 && v > 1) return sbx__h2c_error(c, SBX__H2E_PROTOCOL, "SETTINGS_ENABLE_PUSH %lu", v);
        if (id == 3) c->peer_streams = v;
        if (id == 4) {
            long long delta;
            sbx__h2s *s;
            if (v > SBX__H2_MAX_ID)
                return sbx__h2c_error(c, SBX__H2E_FLOW_CONTROL, "SETTINGS_INITIAL_WINDOW_SIZE %lu", v);
            delta = (long long)v - c->peer_window;
            c->peer_window = (long long)v;
            for (s = c->streams; s; s = s->next) {
                s->send_window += delta;
                if (s->send_window > (long long)SBX__H2_MAX_ID)
                    return sbx__h2c_error(c, SBX__H2E_FLOW_CONTROL, "a stream window passed 2^31-1");
            }
        }
        if (id == 5) {
            if (v < 16384 || v > 16777215)
                return sbx__h2c_error(c, SBX__H2E_PROTOCOL, "SETTINGS_MAX_FRAME_SIZE %lu", v);
            c->peer_frame = v;
        }
    }
    c->got_settings = 1;
    return sbx__h2_frame(&c->ctl, SBX__H2_SETTINGS, SBX__H2F_ACK, 0, NULL, 0);
}

SBX__PRIVATE int sbx__h2c_goaway(sbx__h2c *c, const unsigned char *p, size_t len)
{
    char debug[160];
    unsigned long last = sbx__h2_u32(p) & SBX__H2_MAX_ID, code = sbx__h2_u32(p + 4);
    sbx__h2s *s, *nx;
    sbx__h2 *h = c->h;
    sbx__h2_clean(debug, sizeof debug, p + 8, len - 8 > 150 ? 150 : len - 8);
    if (c->goaway && last > c->goaway_last)
        return sbx__h2c_error(c, SBX__H2E_PROTOCOL, "GOAWAY raised its last stream id");
    c->goaway = 1;
    c->goaway_last = last;
    c->goaway_code = code;
    sbx__fmt(c->goaway_why, sizeof c->goaway_why, "%s%s%s", sbx__h2_errname(code), debug[0] ? ": " : "", debug);
    if (code == SBX__H2E_CALM && strstr(debug, "too_many_pings") && c->pings > 0 && h->keepalive_ms > 0) {
        /* our keepalive broke the server's ping policy: say so, and back off
           as gRPC clients do (this connection is done; the next waits longer) */
        long was = h->keepalive_ms;
        if (h->keepalive_ms < 86400000L) h->keepalive_ms *= 2;
        sbx__fmt(c->goaway_why + strlen(c->goaway_why), sizeof c->goaway_why - strlen(c->goaway_why),
                 "; the server allows fewer keepalive PINGs than one per %ld ms of silence (SBX_H2_KEEPALIVE_MS): "
                 "the next connection waits %ld ms", was, h->keepalive_ms);
    }
    sbx__h2c_retire(c);
    for (s = c->streams; s; s = nx) {
        nx = s->next;
        if (s->id > last) {
            sbx__h2s_fail(s, SBX_ERR_CONNECT,
                          "HTTP/2 connection to %s: the server sent GOAWAY (%s) before it processed stream "
                          "%u; it may be retried",
                          h->ep.name, c->goaway_why, s->id);
            sbx__h2s_unlink(s);
        }
    }
    if (code != SBX__H2E_NO_ERROR && c->nstreams == 0)
        sbx__h2c_fail(c, SBX_ERR_CONNECT, "HTTP/2 connection to %s: GOAWAY (%s)", h->ep.name, c->goaway_why);
    return 0;
}

/* One frame (whole, payload p[0..len)). 0 or -1 (connection failed). */
SBX__PRIVATE int sbx__h2c_frame(sbx__h2c *c, int type, int flags, unsigned long sid, const unsigned char *p,
                                size_t len)
{
    sbx__h2s *s;
    char why[200];
    c->frames++;
    if (!c->got_settings && type != SBX__H2_SETTINGS)
        return sbx__h2c_error(c, SBX__H2E_PROTOCOL, "the first frame is not SETTINGS (type %d)", type);
    if (c->in_block && (type != SBX__H2_CONTINUATION || sid != c->block_sid))
        return sbx__h2c_error(c, SBX__H2E_PROTOCOL, "frame type %d inside a header block", type);
    switch (type) {
    case SBX__H2_DATA:
        return sbx__h2c_data(c, sid, flags, p, len);
    case SBX__H2_HEADERS: {
        size_t pad = 0, off = 0;
        if (sid == 0) return sbx__h2c_error(c, SBX__H2E_PROTOCOL, "HEADERS on stream 0");
        if ((sid & 1) == 0 || sid >= c->next_id)
            return sbx__h2c_error(c, SBX__H2E_PROTOCOL, "HEADERS on stream %lu, which we never opened", sid);
        if (flags & SBX__H2F_PADDED) {
            if (len < 1) return sbx__h2c_error(c, SBX__H2E_PROTOCOL, "HEADERS padding missing");
            pad = p[0];
            off = 1;
        }
        if (flags & SBX__H2F_PRIORITY) off += 5;
        if (off + pad > len) return sbx__h2c_error(c, SBX__H2E_PROTOCOL, "HEADERS padding too long");
        c->block.len = 0;
        if (sbx__buf_append(&c->block, p + off, len - off - pad) != 0)
            return sbx__h2c_error(c, SBX__H2E_INTERNAL, "out of memory for a header block");
        c->block_sid = (unsigned)sid;
        c->block_end = (flags & SBX__H2F_END_STREAM) != 0;
        c->in_block = 1;
        return (flags & SBX__H2F_END_HEADERS) ? sbx__h2c_block(c) : 0;
    }
    case SBX__H2_CONTINUATION:
        if (!c->in_block) return sbx__h2c_error(c, SBX__H2E_PROTOCOL, "CONTINUATION outside a header block");
        if (c->block.len + len > SBX__H2_MAX_BLOCK)
            return sbx__h2c_error(c, SBX__H2E_CALM, "a header block passed %u bytes", SBX__H2_MAX_BLOCK);
        if (sbx__buf_append(&c->block, p, len) != 0)
            return sbx__h2c_error(c, SBX__H2E_INTERNAL, "out of memory for a header block");
        return (flags & SBX__H2F_END_HEADERS) ? sbx__h2c_block(c) : 0;
    case SBX__H2_PRIORITY:
        if (sid == 0) return sbx__h2c_error(c, SBX__H2E_PROTOCOL, "PRIORITY on stream 0");
        if (len != 5) return sbx__h2c_error(c, SBX__H2E_FRAME_SIZE, "PRIORITY of %lu bytes", (unsigned long)len);
        return 0;
    case SBX__H2_RST_STREAM: {
        unsigned long code;
        if (sid == 0) return sbx__h2c_error(c, SBX__H2E_PROTOCOL, "RST_STREAM on stream 0");
        if (len != 4) return sbx__h2c_error(c, SBX__H2E_FRAME_SIZE, "RST_STREAM of %lu bytes", (unsigned long)len);
        if ((sid & 1) == 0 || sid >= c->next_id)
            return sbx__h2c_error(c, SBX__H2E_PROTOCOL, "RST_STREAM on stream %lu, which we never opened", sid);
        s = sbx__h2c_find(c, sid);
        if (!s) return 0;
        code = sbx__h2_u32(p);
        if (!(s->remote_end && code == SBX__H2E_NO_ERROR))
            sbx__h2s_fail(s,
                          code == SBX__H2E_REFUSED  ? SBX_ERR_CONNECT
                          : code == SBX__H2E_CANCEL ? SBX_ERR_CLOSED
                                                    : SBX_ERR_PROTOCOL,
                          "HTTP/2 connection to %s: the server reset stream %u (%s)%s", c->h->ep.name, s->id,
                          sbx__h2_errname(code), code == SBX__H2E_REFUSED ? "; it may be retried" : "");
        sbx__h2s_unlink(s);
        return 0;
    }
    case SBX__H2_SETTINGS:
        if (sid != 0) return sbx__h2c_error(c, SBX__H2E_PROTOCOL, "SETTINGS on stream %lu", sid);
        return sbx__h2c_settings(c, flags, p, len);
    case SBX__H2_PUSH_PROMISE:
        return sbx__h2c_error(c, SBX__H2E_PROTOCOL, "PUSH_PROMISE, but push is disabled");
    case SBX__H2_PING:
        if (sid != 0) return sbx__h2c_error(c, SBX__H2E_PROTOCOL, "PING on stream %lu", sid);
        if (len != 8) return sbx__h2c_error(c, SBX__H2E_FRAME_SIZE, "PING of %lu bytes", (unsigned long)len);
        if (!(flags & SBX__H2F_ACK)) {
            sbx__h2_frame(&c->ctl, SBX__H2_PING, SBX__H2F_ACK, 0, p, 8);
            return 0;
        }
        if (memcmp(p, "sbxk", 4) == 0 && sbx__h2_u32(p + 4) > c->ping_acked && sbx__h2_u32(p + 4) <= c->pings) {
            c->ping_acked = sbx__h2_u32(p + 4);
            c->ping_acks++;
            c->ping_at = 0;
        } else {
            c->ping_stray++; /* not ours: ignored (RFC 9113 6.7 names no error for it) */
        }
        return 0;
    case SBX__H2_GOAWAY:
        if (sid != 0) return sbx__h2c_error(c, SBX__H2E_PROTOCOL, "GOAWAY on stream %lu", sid);
        if (len < 8) return sbx__h2c_error(c, SBX__H2E_FRAME_SIZE, "GOAWAY of %lu bytes", (unsigned long)len);
        return sbx__h2c_goaway(c, p, len);
    case SBX__H2_WINDOW_UPDATE: {
        unsigned long inc;
        if (len != 4) return sbx__h2c_error(c, SBX__H2E_FRAME_SIZE, "WINDOW_UPDATE of %lu bytes", (unsigned long)len);
        inc = sbx__h2_u32(p) & SBX__H2_MAX_ID;
        if (sid == 0) {
            if (inc == 0) return sbx__h2c_error(c, SBX__H2E_PROTOCOL, "WINDOW_UPDATE of 0");
            c->send_window += (long long)inc;
            if (c->send_window > (long long)SBX__H2_MAX_ID)
                return sbx__h2c_error(c, SBX__H2E_FLOW_CONTROL, "the connection window passed 2^31-1");
            return 0;
        }
        if ((sid & 1) == 0 || sid >= c->next_id)
            return sbx__h2c_error(c, SBX__H2E_PROTOCOL, "WINDOW_UPDATE on stream %lu, which we never opened", sid);
        s = sbx__h2c_find(c, sid);
        if (!s) return 0;
        if (inc == 0 || s->send_window + (long long)inc > (long long)SBX__H2_MAX_ID) {
            sbx__fmt(why, sizeof why, "stream %u: %s", s->id,
                     inc == 0 ? "WINDOW_UPDATE of 0" : "the stream window passed 2^31-1");
            sbx__h2s_reset(s, inc == 0 ? SBX__H2E_PROTOCOL : SBX__H2E_FLOW_CONTROL, SBX_ERR_PROTOCOL, why);
            return 0;
        }
        s->send_window += (long long)inc;
        return 0;
    }
    default:
        return 0; /* unknown frame types are ignored (RFC 9113 4.1) */
    }
}

/* Dispatch the whole frames in c->rbuf[0, rlen); keep a partial one. */
SBX__PRIVATE int sbx__h2c_frames(sbx__h2c *c)
{
    size_t pos = 0;
    int r = 0;
    if (!c->got_settings && c->rlen >= 5 && memcmp(c->rbuf, "HTTP/", 5) == 0) {
        /* a common mistake deserves its own words: the REST port, or a proxy */
        char line[120];
        size_t n = 0;
        while (n < c->rlen && n < 100 && c->rbuf[n] != '\r' && c->rbuf[n] != '\n') n++;
        sbx__h2_clean(line, sizeof line, c->rbuf, n);
        sbx__h2c_fail(c, SBX_ERR_PROTOCOL,
                      "HTTP/2 connection to %s: the server answered in HTTP/1 (\"%s\"), not HTTP/2: is this "
                      "the gRPC port?", c->h->ep.name, line);
        c->rlen = 0;
        return -1;
    }
    while (!c->dead && c->rlen - pos >= 9) {
        const unsigned char *f = c->rbuf + pos;
        size_t len = ((size_t)f[0] << 16) | ((size_t)f[1] << 8) | f[2];
        if (len > SBX__H2_FRAME_MAX) {
            r = sbx__h2c_error(c, SBX__H2E_FRAME_SIZE, "a frame of %lu bytes (we take %u)", (unsigned long)len,
                               SBX__H2_FRAME_MAX);
            break;
        }
        if (c->rlen - pos < 9 + len) break;
        pos += 9 + len;
        if ((r = sbx__h2c_frame(c, f[3], f[4], sbx__h2_u32(f + 5) & SBX__H2_MAX_ID, f + 9, len)) != 0) break;
    }
    if (c->dead) {
        c->rlen = 0;
        return -1;
    }
    if (pos) {
        memmove(c->rbuf, c->rbuf + pos, c->rlen - pos);
        c->rlen -= pos;
    }
    pthread_cond_broadcast(&c->h->cv);
    return r;
}

/* ms as "20 s" or "300 ms", for messages. */
SBX__PRIVATE const char *sbx__h2_ms(char *out, size_t cap, long ms)
{
    if (ms >= 1000 && ms % 1000 == 0) sbx__fmt(out, cap, "%ld s", ms / 1000);
    else sbx__fmt(out, cap, "%ld ms", ms);
    return out;
}

/* Take the read role for one read (mu held, a reference held). The read
   ends at the deadline or at the next keepalive moment, whichever is first
   (the callers loop until their own deadline). */
SBX__PRIVATE void sbx__h2c_read(sbx__h2c *c, long long deadline)
{
    sbx__h2 *h = c->h;
    long got;
    int err = 0, sent = 0, sr = 0, serr = 0;
    unsigned char ping[17];
    long long now = sbx__now_ms(), rd = deadline, due;
    if (h->keepalive_ms > 0 && c->nstreams > 0 && !c->dead) {
        if (!c->ping_at && now - c->quiet_since >= h->keepalive_ms) {
            c->pings++;
            sbx__h2_head(ping, 8, SBX__H2_PING, 0, 0);
            memcpy(ping + 9, "sbxk", 4);
            sbx__h2_put32(ping + 13, c->pings);
            c->ping_at = now;
            sent = 1;
        }
        due = c->ping_at ? c->ping_at + h->ping_timeout_ms : c->quiet_since + h->keepalive_ms;
        /* past due (nobody read meanwhile): still look at what has come */
        if (due < now + 5) due = now + 5;
        if (due < rd) rd = due;
    }
    c->reading = 1;
    c->refs++;
    pthread_mutex_unlock(&h->mu);
    if (sent) {
        /* the ping timeout bounds the send too: a peer that reads nothing
           fills our socket buffer, which is the same silence */
        pthread_mutex_lock(&c->wmu);
        sr = sbx__conn_send(&c->io, (const char *)ping, sizeof ping, sbx__deadline(h->ping_timeout_ms));
        serr = errno;
        pthread_mutex_unlock(&c->wmu);
    }
    if (sr != 0) {
        got = -3;
    } else if (!c->io.tr) {
        got = sbx__http_recv(c->io.fd, (char *)c->rbuf + c->rlen, SBX__H2_RBUF - c->rlen, rd);
        err = errno;
    } else {
        int pr = 1;
        if (!c->drain) pr = sbx__poll1(c->io.fd, POLLIN, rd);
        if (pr > 0) {
            long long d = sbx__now_ms() + 1;
            pthread_mutex_lock(&c->wmu);
            got = c->io.tr->recv(c->io.trs, (char *)c->rbuf + c->rlen, SBX__H2_RBUF - c->rlen, d < rd ? d : rd);
            err = errno;
            pthread_mutex_unlock(&c->wmu);
            c->drain = got > 0;
        } else {
            got = pr == 0 ? -2 : -1;
            err = errno;
        }
    }
    pthread_mutex_lock(&h->mu);
    c->reading = 0;
    if (c->dead) sbx__h2c_close_io(c);
    if (got > 0) {
        c->quiet_since = sbx__now_ms();
        c->ping_at = 0;
        c->rlen += (size_t)got;
        sbx__h2c_frames(c);
    } else if (got == -3 && !c->dead) {
        char t[32];
        sbx__h2c_fail(c, SBX_ERR_CONNECT, "HTTP/2 connection to %s: a keepalive PING could not be sent in %s (%s)",
                      h->ep.name, sbx__h2_ms(t, sizeof t, h->ping_timeout_ms),
                      sr == -2 ? "the server reads nothing" : strerror(serr));
    } else if (got == -2 && c->ping_at && !c->dead && sbx__now_ms() >= c->ping_at + h->ping_timeout_ms &&
               sbx__poll1(c->io.fd, POLLIN, 0) == 0) {
        char t[32], q[32];
        sbx__h2c_fail(c, SBX_ERR_CONNECT,
                      "HTTP/2 connection to %s: no answer to PING in %s (nothing received for %s): the server or "
                      "the path to it is gone",
                      h->ep.name, sbx__h2_ms(t, sizeof t, h->ping_timeout_ms),
                      sbx__h2_ms(q, sizeof q, (long)(sbx__now_ms() - c->quiet_since)));
    } else if (got == 0) {
        if (c->goaway)
            sbx__h2c_fail(c, SBX_ERR_CONNECT, "HTTP/2 connection to %s: closed by the server after GOAWAY (%s)",
                          h->ep.name, c->goaway_why);
        else sbx__h2c_fail(c, SBX_ERR_CONNECT, "HTTP/2 connection to %s: closed by the server", h->ep.name);
    } else if (got == -1 && err == ECONNRESET && !c->dead) {
        /* a server that closes with our bytes unread resets instead of ending */
        sbx__h2c_fail(c, SBX_ERR_CONNECT, "HTTP/2 connection to %s: closed by the server (reset)%s%s%s", h->ep.name,
                      c->goaway ? " after GOAWAY (" : "", c->goaway ? c->goaway_why : "", c->goaway ? ")" : "");
    } else if (got == -1 && !c->dead) {
        sbx__h2c_fail(c, SBX_ERR_CONNECT, "HTTP/2 connection to %s: read: %s", h->ep.name, strerror(err));
    }
    sbx__h2c_flush(c);
    pthread_cond_broadcast(&h->cv);
    sbx__h2c_unref(c);
}

/* Wait for something to happen on c (mu held, a reference held): read if
   nobody is reading, else sleep until woken. Returns at the deadline. */
SBX__PRIVATE void sbx__h2c_wait(sbx__h2c *c, long long deadline)
{
    if (sbx__now_ms() >= deadline) return;
    if (!c->reading && !c->dead) sbx__h2c_read(c, deadline);
    else sbx__h2_sleep(c->h, deadline);
}

/* ---- connections: making one --------------------------------------------------- */

SBX__PRIVATE sbx__h2c *sbx__h2c_new(sbx__h2 *h)
{
    sbx__h2c *c = (sbx__h2c *)sbx__malloc(&h->a, sizeof *c);
    if (!c) return NULL;
    memset(c, 0, sizeof *c);
    c->h = h;
    sbx__conn_init(&c->io, &h->ep, &h->a);
    c->next_id = 1;
    c->send_window = 65535;
    c->peer_window = 65535;
    c->peer_frame = 16384;
    c->peer_streams = (unsigned long)-1;
    c->recv_window = SBX__H2_CONN_WINDOW;
    c->quiet_since = sbx__now_ms();
    sbx__hpack_init(&c->dec, SBX__HPACK_TABLE_MAX);
    sbx__buf_init(&c->block, &h->a);
    sbx__buf_init(&c->ctl, &h->a);
    c->rbuf = (unsigned char *)sbx__malloc(&h->a, SBX__H2_RBUF);
    c->scratch = (unsigned char *)sbx__malloc(&h->a, SBX__H2_MAX_HEADER_LIST);
    if (!c->rbuf || !c->scratch || pthread_mutex_init(&c->wmu, NULL) != 0) {
        sbx__free(&h->a, c->rbuf);
        sbx__free(&h->a, c->scratch);
        sbx__free(&h->a, c);
        return NULL;
    }
    if (h->mk.make) {
        const sbx__transport *tr = NULL;
        void *trs = h->mk.make(h->mk.arg, &tr);
        if (!trs) {
            sbx__h2c_free(c);
            return NULL;
        }
        sbx__conn_transport(&c->io, tr, trs);
    }
    return c;
}

/* Connect and send the preface: the magic, our SETTINGS (no push, our stream
   window, our header list limit) and the connection window raise. */
SBX__PRIVATE int sbx__h2c_start(sbx__h2c *c, long long deadline, sbx_error *e)
{
    static const char magic[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    unsigned char pre[24 + 9 + 18 + 13], *p = pre;
    int r;
    r = sbx__http_connect(&c->io, deadline, e);
    if (r != SBX_OK) return r;
    memcpy(p, magic, 24);
    p += 24;
    sbx__h2_head(p, 18, SBX__H2_SETTINGS, 0, 0);
    p += 9;
    p[0] = 0, p[1] = 2, sbx__h2_put32(p + 2, 0);
    p[6] = 0, p[7] = 4, sbx__h2_put32(p + 8, SBX__H2_STREAM_WINDOW);
    p[12] = 0, p[13] = 6, sbx__h2_put32(p + 14, SBX__H2_MAX_HEADER_LIST);
    p += 18;
    sbx__h2_head(p, 4, SBX__H2_WINDOW_UPDATE, 0, 0);
    sbx__h2_put32(p + 9, SBX__H2_CONN_WINDOW - 65535u);
    r = sbx__conn_send(&c->io, (const char *)pre, sizeof pre, deadline);
    if (r != 0) {
        int err = errno;
        sbx__conn_close(&c->io);
        if (r == -2) return sbx__fail(e, SBX_ERR_TIMEOUT, "HTTP/2 connection to %s: sending the preface timed out",
                                      c->h->ep.name);
        return sbx__fail_sys(e, SBX_ERR_CONNECT, err, "HTTP/2 connection to %s: sending the preface", c->h->ep.name);
    }
    return SBX_OK;
}

/* A connection that takes new streams, with a reference for the caller (mu held). */
SBX__PRIVATE sbx__h2c *sbx__h2_conn(sbx__h2 *h, long long deadline, sbx_error *e)
{
    for (;;) {
        sbx__h2c *c = h->cur;
        int r;
        if (h->closed) {
            sbx__fail(e, SBX_ERR_CLOSED, "HTTP/2 connection to %s: closed", h->ep.name);
            return NULL;
        }
        if (c && !c->retired) {
            /* an idle connection may hold a GOAWAY or an EOF: read that first,
               so a call is not sent into a connection the server has left */
            if (!c->reading && c->nstreams == 0 && c->io.fd >= 0 && sbx__poll1(c->io.fd, POLLIN, 0) == 1) {
                c->refs++;
                sbx__h2c_read(c, sbx__now_ms() + 1);
                if (!c->retired) return c;
                sbx__h2c_unref(c);
                continue;
            }
            c->refs++;
            return c;
        }
        /* one connect at a time; a retired connection is no reason to wait:
           it has its own socket or transport */
        if (h->connecting) {
            if (sbx__now_ms() >= deadline) {
                sbx__fail(e, SBX_ERR_TIMEOUT, "HTTP/2 connection to %s: timed out waiting for a connect", h->ep.name);
                return NULL;
            }
            sbx__h2_sleep(h, deadline);
            continue;
        }
        c = sbx__h2c_new(h);
        if (!c) {
            sbx__fail(e, SBX_ERR_NOMEM, "HTTP/2 connection to %s: out of memory", h->ep.name);
            return NULL;
        }
        h->connecting = 1;
        pthread_mutex_unlock(&h->mu);
        r = sbx__h2c_start(c, deadline, e);
        pthread_mutex_lock(&h->mu);
        h->connecting = 0;
        pthread_cond_broadcast(&h->cv);
        if (r == SBX_OK && h->closed) r = sbx__fail(e, SBX_ERR_CLOSED, "HTTP/2 connection to %s: closed", h->ep.name);
        if (r != SBX_OK) {
            sbx__h2c_free(c);
            return NULL;
        }
        c->next = h->conns;
        h->conns = c;
        h->nconns++;
        h->connects++;
        h->cur = c;
        c->refs = 2; /* h->cur and the caller */
        return c;
    }
}

/* ---- the handle ---------------------------------------------------------------- */

/* A client of ep (host/port, or anything sbx__conn takes); mk: NULL for
   plain sockets, else what makes each connection's transport (copied; see
   sbx__h2_trmaker). authority: the :authority value (NULL: ep's host).
   Connects lazily, on the first call, and again after the connection died or
   went away. NULL: out of memory. */
SBX__PRIVATE sbx__h2 *sbx__h2_new(const sbx_allocator *alloc, const sbx__endpoint *ep, const sbx__h2_trmaker *mk,
                                   const char *authority)
{
    sbx_allocator a = sbx__allocator(alloc);
    int rc;
    sbx__h2 *h = (sbx__h2 *)sbx__malloc(&a, sizeof *h);
    if (!h) return NULL;
    memset(h, 0, sizeof *h);
    h->a = a;
    h->ep = *ep;
    if (mk) h->mk = *mk;
    h->refs = 1;
    h->keepalive_ms = SBX_H2_KEEPALIVE_MS;
    h->ping_timeout_ms = SBX_H2_PING_TIMEOUT_MS;
    h->authority = sbx__strdup(&a, authority ? authority : ep->host);
    if (!h->authority) {
        sbx__free(&a, h);
        return NULL;
    }
    if (pthread_mutex_init(&h->mu, NULL) != 0) {
        sbx__free(&a, h->authority);
        sbx__free(&a, h);
        return NULL;
    }
    rc = sbx__cond_init(&h->cv, &h->mono);
    if (rc != 0) {
        pthread_mutex_destroy(&h->mu);
        sbx__free(&a, h->authority);
        sbx__free(&a, h);
        return NULL;
    }
    return h;
}

SBX__PRIVATE void sbx__h2_destroy(sbx__h2 *h)
{
    sbx_allocator a = h->a;
    pthread_mutex_destroy(&h->mu);
    pthread_cond_destroy(&h->cv);
    sbx__free(&a, h->authority);
    sbx__free(&a, h);
}

/* Drop a reference to the handle (mu held; unlocks it). */
SBX__PRIVATE void sbx__h2_unref_unlock(sbx__h2 *h)
{
    int last = --h->refs == 0;
    pthread_mutex_unlock(&h->mu);
    if (last) sbx__h2_destroy(h);
}

/* Cancel live calls (their waits return SBX_ERR_CLOSED at once; free them
   as usual, before or after) and close the connections: once this returns,
   the maker's arg is not used again and may be freed (a connection a live
   call still holds keeps its transport state, closed here, until it goes). */
SBX__PRIVATE void sbx__h2_free(sbx__h2 *h)
{
    sbx__h2c *c;
    if (!h) return;
    pthread_mutex_lock(&h->mu);
    h->closed = 1;
    for (c = h->conns; c; c = c->next) {
        c->refs++;
        sbx__h2c_fail(c, SBX_ERR_CLOSED, "HTTP/2 connection to %s: closed", h->ep.name);
        c->refs--;
    }
    /* readers leave once their socket is shut down */
    while (h->conns) {
        int busy = 0;
        for (c = h->conns; c; c = c->next) busy |= c->reading;
        if (!busy) break;
        sbx__h2_sleep(h, sbx__deadline(100));
    }
    /* close every socket / transport stream now, not when the last call is
       freed, which may be long after */
    for (c = h->conns; c;) {
        sbx__h2c *nx = c->next;
        pthread_mutex_lock(&c->wmu);
        sbx__conn_close(&c->io);
        pthread_mutex_unlock(&c->wmu);
        if (c->refs == 0) {
            c->refs = 1;
            sbx__h2c_unref(c);
        }
        c = nx;
    }
    sbx__h2_unref_unlock(h);
}

/* ---- streams: opening and sending ------------------------------------------------ */

/* Open stream s with a prebuilt header block; mu not held. The first data
   (data[0..dlen), END_STREAM after it when end) goes out in the same write
   when the windows take it whole, and *sent says so (1), else 0 and the
   caller sends it with sbx__h2_send. On success s holds references to its
   connection and the handle until sbx__h2_close(s); on failure nothing. */
SBX__PRIVATE int sbx__h2_open(sbx__h2 *h, sbx__h2s *s, const unsigned char *block, size_t blen, const void *data,
                              size_t dlen, int end, int *sent, long long deadline, sbx_error *e)
{
    sbx__h2c *c;
    sbx__buf out, hb;
    int r, err;
    memset(s, 0, sizeof *s);
    s->grpc_status = -1;
    sbx__buf_init(&s->in, &h->a);
    sbx__buf_init(&out, &h->a);
    sbx__buf_init(&hb, &h->a);
    pthread_mutex_lock(&h->mu);
    for (;;) {
        c = sbx__h2_conn(h, deadline, e);
        if (!c) {
            pthread_mutex_unlock(&h->mu);
            return e ? e->code : SBX_ERR_CONNECT;
        }
        if (c->next_id > SBX__H2_MAX_ID) { /* ids used up: the next connection takes over */
            sbx__h2c_retire(c);
            sbx__h2c_unref(c);
            continue;
        }
        if ((unsigned long)c->nstreams < c->peer_streams) break;
        if (sbx__now_ms() >= deadline) {
            sbx__h2c_unref(c);
            pthread_mutex_unlock(&h->mu);
            return sbx__fail(e, SBX_ERR_TIMEOUT, "HTTP/2 connection to %s: timed out waiting for a free stream (the server allows %lu)",
                             h->ep.name, c->peer_streams);
        }
        sbx__h2c_wait(c, deadline);
        sbx__h2c_unref(c);
    }
    s->c = c;
    s->id = c->next_id;
    c->next_id += 2;
    s->send_window = c->peer_window;
    s->recv_window = SBX__H2_STREAM_WINDOW;
    /* HEADERS, then CONTINUATION frames of at most the server's frame size */
    {
        size_t off = 0;
        int type = SBX__H2_HEADERS;
        r = 0;
        if (c->table_update) {
            r = sbx__buf_append(&hb, "\x20", 1) | sbx__buf_append(&hb, block, blen);
            c->table_update = 0;
            block = (const unsigned char *)hb.data;
            blen = hb.len;
        }
        do {
            size_t k = blen - off > c->peer_frame ? c->peer_frame : blen - off;
            r |= sbx__h2_frame(&out, type, off + k == blen ? SBX__H2F_END_HEADERS : 0, s->id, block + off, k);
            off += k;
            type = SBX__H2_CONTINUATION;
        } while (off < blen);
    }
    sbx__buf_free(&hb);
    *sent = 0;
    if (dlen <= c->peer_frame && (long long)dlen <= c->send_window && (long long)dlen <= s->send_window) {
        r |= sbx__h2_frame(&out, SBX__H2_DATA, end ? SBX__H2F_END_STREAM : 0, s->id, data, dlen);
        c->send_window -= (long long)dlen;
        s->send_window -= (long long)dlen;
        s->local_end = end;
        *sent = 1;
    }
    if (r != 0) {
        sbx__buf_free(&out);
        s->c = NULL;
        sbx__h2c_unref(c);
        pthread_mutex_unlock(&h->mu);
        return sbx__fail(e, SBX_ERR_NOMEM, "HTTP/2: out of memory");
    }
    if (c->nstreams == 0) {
        /* the keepalive clock counts silence while streams are open, not the
           idle time before (nor a ping of a stream long gone) */
        c->quiet_since = sbx__now_ms();
        c->ping_at = 0;
    }
    s->open = 1;
    s->next = c->streams;
    c->streams = s;
    c->nstreams++;
    h->refs++; /* the stream keeps the handle, and its reference to c */
    /* Stream ids must reach the server in order: take wmu before letting go
       of mu, so that no later id can be sent first; but do not hold mu while
       sending, or a full socket would stop the reader that could drain it. */
    pthread_mutex_lock(&c->wmu);
    pthread_mutex_unlock(&h->mu);
    r = sbx__conn_send(&c->io, out.data, out.len, deadline);
    err = errno;
    pthread_mutex_unlock(&c->wmu);
    pthread_mutex_lock(&h->mu);
    sbx__buf_free(&out);
    if (r != 0) {
        r = sbx__h2c_send_failed(c, r, err);
    } else if (s->failed) {
        r = s->err;
    }
    if (r != SBX_OK) {
        r = sbx__fail(e, (sbx_result)r, "%s", s->failed ? s->why : c->dead_why);
        sbx__h2s_unlink(s);
        s->c = NULL;
        sbx__h2c_unref(c);
        h->refs--;
        pthread_mutex_unlock(&h->mu);
        sbx__buf_free(&s->in);
        return r;
    }
    pthread_mutex_unlock(&h->mu);
    return SBX_OK;
}

/* Send p[0..n) as DATA on s within the windows, END_STREAM after it when end. */
SBX__PRIVATE int sbx__h2_send(sbx__h2s *s, const void *p, size_t n, int end, long long deadline, sbx_error *e)
{
    sbx__h2c *c = s->c;
    sbx__h2 *h = c->h;
    const unsigned char *d = (const unsigned char *)p;
    unsigned char hd[9];
    int r = SBX_OK, err;
    pthread_mutex_lock(&h->mu);
    c->refs++;
    for (;;) {
        long long avail;
        size_t k;
        if (s->failed) {
            r = sbx__fail(e, s->err, "%s", s->why);
            break;
        }
        if (!s->open || s->local_end) {
            r = sbx__fail(e, SBX_ERR_PROTOCOL, "HTTP/2 stream %u is closed", s->id);
            break;
        }
        avail = c->send_window < s->send_window ? c->send_window : s->send_window;
        if (avail > (long long)c->peer_frame) avail = (long long)c->peer_frame;
        if (n > 0 && avail <= 0) {
            if (sbx__now_ms() >= deadline) {
                r = sbx__fail(e, SBX_ERR_TIMEOUT, "HTTP/2 stream %u: timed out waiting for the server's flow-control window", s->id);
                break;
            }
            sbx__h2c_wait(c, deadline);
            continue;
        }
        k = n < (size_t)(avail > 0 ? avail : 0) ? n : (size_t)(avail > 0 ? avail : 0);
        c->send_window -= (long long)k;
        s->send_window -= (long long)k;
        sbx__h2_head(hd, k, SBX__H2_DATA, (end && k == n) ? SBX__H2F_END_STREAM : 0, s->id);
        if (end && k == n) s->local_end = 1;
        /* header and payload under one wmu hold, so no other frame lands between */
        pthread_mutex_unlock(&h->mu);
        pthread_mutex_lock(&c->wmu);
        r = sbx__conn_send(&c->io, (const char *)hd, 9, deadline);
        if (r == 0 && k) r = sbx__conn_send(&c->io, (const char *)d, k, deadline);
        err = errno; /* before the mutex calls, which may change it */
        pthread_mutex_unlock(&c->wmu);
        pthread_mutex_lock(&h->mu);
        if (r != 0) {
            sbx__h2c_send_failed(c, r, err);
            r = sbx__fail(e, s->failed ? s->err : c->dead_code, "%s", s->failed ? s->why : c->dead_why);
            break;
        }
        d += k;
        n -= k;
        if (n == 0) {
            if (s->local_end && s->remote_end) sbx__h2s_unlink(s);
            r = SBX_OK;
            break;
        }
    }
    sbx__h2c_unref(c);
    pthread_mutex_unlock(&h->mu);
    return r;
}

/* Let go of s: RST_STREAM(CANCEL) when it has not ended both ways; drops the
   stream's references to its connection and the handle. */
SBX__PRIVATE void sbx__h2_close(sbx__h2s *s)
{
    sbx__h2c *c = s->c;
    sbx__h2 *h;
    if (!c) {
        sbx__buf_free(&s->in);
        return;
    }
    h = c->h;
    pthread_mutex_lock(&h->mu);
    if (s->open) {
        if (!(s->local_end && s->remote_end)) sbx__h2s_reset(s, SBX__H2E_CANCEL, SBX_ERR_CLOSED, "cancelled");
        sbx__h2s_unlink(s);
    }
    sbx__h2c_flush(c);
    s->c = NULL;
    sbx__buf_free(&s->in);
    sbx__h2c_unref(c);
    pthread_cond_broadcast(&h->cv);
    sbx__h2_unref_unlock(h);
}

/* ======================================================================== */
/* >>grpc: protobuf wire format, gRPC calls over >>h2                       */
/* ======================================================================== */
/* PROTOBUF (proto3 wire format; the reader allocates nothing)
   int sbx__pb_varint(b, v) / sbx__pb_uint(b, field, v) / sbx__pb_bytes(b, field, p, n)
       append to an sbx__buf; 0 ok, -1 out of memory.
   sbx__pb_init(&r, msg, n); then sbx__pb_next(&r, &field, &wt, &v, &data, &len):
       1 a field (varint and fixed values in v, length-delimited bytes in
       data/len), 0 the end, -1 malformed (truncated, field 0, wire types 3/4
       (groups), 6, 7, a varint over 10 bytes or 64 bits).

   CALLS (see the comments beside each function): sbx__grpc_start, _recv,
   _status, _free, _unary; sbx__grpc_result and _status_name map a status.
   A message is length-prefixed (gRPC over HTTP/2: a flag byte, a 4-byte
   big-endian length); the compressed flag is refused (we send no
   grpc-accept-encoding, so a server must not compress), and a response
   message over the call's limit (SBX_GRPC_MAX_MESSAGE unless sbx__grpc_unary
   was given one) is SBX_ERR_TOO_BIG (the stream is cancelled). Threads: any number may start calls on one sbx__h2 at once;
   one call is used by one thread at a time. */

#ifndef SBX_GRPC_MAX_MESSAGE
#define SBX_GRPC_MAX_MESSAGE (4u * 1024u * 1024u)
#endif
#define SBX__GRPC_RESERVE (256u * 1024u) /* a message buffer's first size, at most */

/* ---- protobuf ----------------------------------------------------------------- */

SBX__PRIVATE int sbx__pb_varint(sbx__buf *b, unsigned long long v)
{
    unsigned char out[10];
    size_t k = 0;
    while (v >= 0x80) {
        out[k++] = (unsigned char)(0x80 | (v & 0x7f));
        v >>= 7;
    }
    out[k++] = (unsigned char)v;
    return sbx__buf_append(b, out, k);
}

SBX__PRIVATE int sbx__pb_uint(sbx__buf *b, int field, unsigned long long v)
{
    if (sbx__pb_varint(b, ((unsigned long long)field << 3) | 0) != 0) return -1;
    return sbx__pb_varint(b, v);
}

SBX__PRIVATE int sbx__pb_bytes(sbx__buf *b, int field, const void *p, size_t n)
{
    if (sbx__pb_varint(b, ((unsigned long long)field << 3) | 2) != 0) return -1;
    if (sbx__pb_varint(b, (unsigned long long)n) != 0) return -1;
    return sbx__buf_append(b, p, n);
}

typedef struct sbx__pb {
    const unsigned char *p, *end;
} sbx__pb;

SBX__PRIVATE void sbx__pb_init(sbx__pb *r, const void *msg, size_t n)
{
    r->p = (const unsigned char *)msg;
    r->end = r->p + n;
}

SBX__PRIVATE int sbx__pb_get_varint(sbx__pb *r, unsigned long long *v)
{
    unsigned long long x = 0;
    int i;
    for (i = 0; i < 10; i++) {
        unsigned char c;
        if (r->p >= r->end) return -1;
        c = *r->p++;
        if (i == 9 && c > 1) return -1; /* past 64 bits */
        x |= (unsigned long long)(c & 0x7f) << (7 * i);
        if (!(c & 0x80)) {
            *v = x;
            return 0;
        }
    }
    return -1;
}

SBX__PRIVATE int sbx__pb_next(sbx__pb *r, int *field, int *wt, unsigned long long *v, const unsigned char **data,
                              size_t *len)
{
    unsigned long long key, x;
    int i;
    *v = 0;
    *data = NULL;
    *len = 0;
    if (r->p >= r->end) return 0;
    if (sbx__pb_get_varint(r, &key) != 0) return -1;
    if ((key >> 3) == 0 || (key >> 3) > 0x1fffffffULL) return -1;
    *field = (int)(key >> 3);
    *wt = (int)(key & 7);
    switch (*wt) {
    case 0:
        return sbx__pb_get_varint(r, v) == 0 ? 1 : -1;
    case 1:
    case 5: {
        int n = *wt == 1 ? 8 : 4;
        if (r->end - r->p < n) return -1;
        for (x = 0, i = n - 1; i >= 0; i--) x = (x << 8) | r->p[i];
        r->p += n;
        *v = x;
        return 1;
    }
    case 2:
        if (sbx__pb_get_varint(r, &x) != 0 || x > (unsigned long long)(r->end - r->p)) return -1;
        *data = r->p;
        *len = (size_t)x;
        r->p += x;
        return 1;
    default:
        return -1; /* groups (3, 4) and the unused 6, 7 */
    }
}

/* ---- status codes ------------------------------------------------------------------ */

SBX__PRIVATE const char *sbx__grpc_status_name(int status)
{
    static const char *const names[] = {"OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED",
                                        "NOT_FOUND", "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED",
                                        "FAILED_PRECONDITION", "ABORTED", "OUT_OF_RANGE", "UNIMPLEMENTED",
                                        "INTERNAL", "UNAVAILABLE", "DATA_LOSS", "UNAUTHENTICATED"};
    return status >= 0 && status < (int)(sizeof names / sizeof names[0]) ? names[status] : "UNKNOWN_STATUS";
}

SBX__PRIVATE sbx_result sbx__grpc_result(int status)
{
    switch (status) {
    case 0: return SBX_OK;
    case 1: return SBX_ERR_CLOSED;
    case 3: case 9: case 11: return SBX_ERR_INVALID_ARG;
    case 4: return SBX_ERR_TIMEOUT;
    case 5: return SBX_ERR_NOT_FOUND;
    case 7: case 16: return SBX_ERR_DENIED;
    case 8: return SBX_ERR_TOO_BIG;
    case 12: return SBX_ERR_UNSUPPORTED;
    case 14: return SBX_ERR_CONNECT;
    default: return SBX_ERR_RPC;
    }
}

/* grpc-message is percent-encoded (gRPC over HTTP/2); bad escapes stay as they are. */
SBX__PRIVATE void sbx__grpc_pct_decode(char *out, size_t cap, const char *in)
{
    size_t o = 0;
    if (!cap) return;
    while (*in && o + 1 < cap) {
        int hi, lo;
        if (in[0] == '%' && in[1] && in[2] && (hi = sbx__json_hexval((unsigned char)in[1])) >= 0 &&
            (lo = sbx__json_hexval((unsigned char)in[2])) >= 0) {
            out[o++] = (char)(hi * 16 + lo);
            in += 3;
        } else {
            out[o++] = *in++;
        }
    }
    out[o] = '\0';
}

/* ---- calls ---------------------------------------------------------------------------- */

struct sbx__grpc_call {
    sbx__h2s s;                /* first: the stream */
    sbx__h2 *h;
    long long deadline;        /* the call's own, 0 = none */
    sbx__buf msg;              /* the message being gathered / last returned */
    size_t need;               /* its length, once the prefix is read */
    size_t max_msg;            /* a longer response message is SBX_ERR_TOO_BIG */
    const char *max_name;      /* the limit's name in that error */
    int in_msg;                /* the prefix was read */
    int ended;                 /* recv returned 0: status is known */
    int status;
    char message[SBX__H2_MSG_MAX];
    sbx_result fail;           /* sticky failure of the call (deadline, protocol, size) */
    char why[SBX_ERRMSG_SIZE];
    char path[160];
};
typedef struct sbx__grpc_call sbx__grpc_call;

/* Start a call: HEADERS (:method POST, :scheme http, :path, :authority,
   content-type application/grpc, te trailers, user-agent, grpc-timeout from
   the deadline when it is > 0) and one request message, with END_STREAM after
   it when end_input. deadline: absolute ms bounding the whole call, 0 = none.
   On failure *out is NULL and e says why. */
SBX__PRIVATE sbx_result sbx__grpc_start(sbx__h2 *h, const char *path, const void *msg, size_t len, int end_input,
                                        long long deadline, sbx__grpc_call **out, sbx_error *e)
{
    sbx__grpc_call *c;
    sbx__buf hb, body;
    size_t i, pl;
    unsigned char pre[5];
    int r;
    *out = NULL;
    pl = path ? strlen(path) : 0;
    if (pl < 2 || pl >= sizeof c->path || path[0] != '/')
        return sbx__fail(e, SBX_ERR_INVALID_ARG, "gRPC: bad method path \"%.100s\"", path ? path : "");
    for (i = 0; i < pl; i++)
        if ((unsigned char)path[i] <= 0x20 || (unsigned char)path[i] >= 0x7f)
            return sbx__fail(e, SBX_ERR_INVALID_ARG, "gRPC: bad method path \"%.100s\"", path);
    if (len > 0xffffffffu) return sbx__fail(e, SBX_ERR_INVALID_ARG, "gRPC %s: request message too big", path);
    c = (sbx__grpc_call *)sbx__malloc(&h->a, sizeof *c);
    if (!c) return sbx__fail(e, SBX_ERR_NOMEM, "gRPC %s: out of memory", path);
    memset(c, 0, sizeof *c);
    c->h = h;
    c->deadline = deadline;
    c->max_msg = SBX_GRPC_MAX_MESSAGE;
    c->max_name = "SBX_GRPC_MAX_MESSAGE";
    memcpy(c->path, path, pl + 1);
    sbx__buf_init(&c->msg, &h->a);
    sbx__buf_init(&hb, &h->a);
    sbx__buf_init(&body, &h->a);
    r = sbx__buf_append(&hb, "\x83\x86", 2); /* :method POST, :scheme http (static 3, 6) */
    r |= sbx__hpack_field(&hb, 4, ":path", path, pl);
    r |= sbx__hpack_field(&hb, 1, ":authority", h->authority, strlen(h->authority));
    r |= sbx__hpack_field(&hb, 31, "content-type", "application/grpc", 16);
    r |= sbx__hpack_field(&hb, 0, "te", "trailers", 8);
    r |= sbx__hpack_field(&hb, 58, "user-agent", "sandbox.h/" SANDBOX_VERSION_STRING,
                          strlen("sandbox.h/" SANDBOX_VERSION_STRING));
    if (deadline > 0) {
        char tv[24];
        long long left = deadline - sbx__now_ms();
        if (left < 1) left = 1;
        if (left <= 99999999LL) sbx__fmt(tv, sizeof tv, "%lldm", left);
        else sbx__fmt(tv, sizeof tv, "%lldS", (left + 999) / 1000 > 99999999LL ? 99999999LL : (left + 999) / 1000);
        r |= sbx__hpack_field(&hb, 0, "grpc-timeout", tv, strlen(tv));
    }
    pre[0] = 0;
    sbx__h2_put32(pre + 1, (unsigned long)len);
    r |= sbx__buf_append(&body, pre, 5);
    r |= sbx__buf_append(&body, msg, len);
    if (r != 0) {
        sbx__buf_free(&hb);
        sbx__buf_free(&body);
        sbx__free(&h->a, c);
        return sbx__fail(e, SBX_ERR_NOMEM, "gRPC %s: out of memory", path);
    }
    {
        long long d = deadline > 0 ? deadline : sbx__now_ms() + SBX__H2_NO_DEADLINE;
        int sent = 0;
        r = sbx__h2_open(h, &c->s, (const unsigned char *)hb.data, hb.len, body.data, body.len, end_input, &sent, d, e);
        sbx__buf_free(&hb);
        if (r == SBX_OK && !sent) r = sbx__h2_send(&c->s, body.data, body.len, end_input, d, e);
    }
    sbx__buf_free(&body);
    if (r != SBX_OK) {
        sbx__h2_close(&c->s);
        sbx__buf_free(&c->msg);
        sbx__free(&h->a, c);
        return (sbx_result)r;
    }
    *out = c;
    return SBX_OK;
}

/* The call failed for good (mu held): later recvs say the same. */
SBX__PRIVATE SBX__PRINTF(3, 4) int sbx__grpc_fail(sbx__grpc_call *c, sbx_result code, const char *fmt, ...)
{
    va_list ap;
    if (!c->fail) {
        c->fail = code;
        va_start(ap, fmt);
        vsnprintf(c->why, sizeof c->why, fmt, ap);
        va_end(ap);
    }
    return c->fail;
}

/* The stream ended: work out the status (gRPC over HTTP/2: trailers, or
   Trailers-Only; an HTTP error or a missing grpc-status has a status too). */
SBX__PRIVATE void sbx__grpc_finish(sbx__grpc_call *c)
{
    sbx__h2s *s = &c->s;
    c->ended = 1;
    if (s->grpc_status >= 0) {
        c->status = s->grpc_status;
        sbx__grpc_pct_decode(c->message, sizeof c->message, s->grpc_msg);
    } else if (s->http_status != 200) {
        int st = s->http_status;
        c->status = st == 400 ? 13 : st == 401 ? 16 : st == 403 ? 7 : st == 404 ? 12
                  : (st == 429 || st == 502 || st == 503 || st == 504) ? 14 : 2;
        sbx__fmt(c->message, sizeof c->message, "HTTP status %d from the server (no grpc-status)", st);
    } else {
        c->status = 13;
        sbx__fmt(c->message, sizeof c->message, "the server ended the call without a grpc-status%s",
                 s->grpc_ct ? "" : " (and its content-type is not application/grpc)");
    }
    /* gRPC core ends the calls of a client that pings too often with
       UNAVAILABLE "Too many pings" besides its GOAWAY: name our keepalive */
    if (c->status != 0 && s->c && s->c->goaway && s->c->goaway_code == SBX__H2E_CALM) {
        size_t n = strlen(c->message);
        sbx__fmt(c->message + n, sizeof c->message - n, " (GOAWAY %s)", s->c->goaway_why);
    }
}

/* Room in c->msg for `take` more bytes of the message being gathered. Its
   length is the server's word, so memory follows the bytes that arrived: at
   most SBX__GRPC_RESERVE before any, doubling after, and the exact remainder
   once doubling would pass it (a 256 MiB message is not put in 512 MiB). */
SBX__PRIVATE int sbx__grpc_room(sbx__grpc_call *c, size_t take)
{
    size_t want, cap = c->msg.cap; /* sizes with the NUL; need < 2^31 (max_msg) */
    char *p;
    if (c->msg.data && c->msg.len + take + 1 <= cap) return 0;
    want = cap < SBX__GRPC_RESERVE / 2 ? SBX__GRPC_RESERVE : cap > (size_t)-1 / 2 ? (size_t)-1 : cap * 2;
    if (want < c->msg.len + take + 1) want = c->msg.len + take + 1;
    if (want > c->need + 1) want = c->need + 1;
    p = (char *)sbx__realloc(c->msg.a, c->msg.data, want);
    if (!p) return -1;
    c->msg.data = p;
    c->msg.cap = want;
    return 0;
}

/* Next response message: 1 with *msg,*len (valid until the next recv or free
   on this call), 0 at the end of the call (status known), < 0 an sbx_result.
   wait_deadline: absolute ms, 0 = the call's deadline; passing it is
   SBX_ERR_TIMEOUT and leaves the call usable, passing the call's own deadline
   fails the call (cancelled, RST_STREAM). */
SBX__PRIVATE int sbx__grpc_recv(sbx__grpc_call *c, const unsigned char **msg, size_t *len, long long wait_deadline,
                                sbx_error *e)
{
    sbx__h2s *s = &c->s;
    sbx__h2 *h = c->h;
    long long wd = wait_deadline > 0 ? wait_deadline : c->deadline > 0 ? c->deadline : sbx__now_ms() + SBX__H2_NO_DEADLINE;
    int r;
    *msg = NULL;
    *len = 0;
    if (c->ended) return 0;
    if (c->deadline > 0 && wd > c->deadline) wd = c->deadline;
    pthread_mutex_lock(&h->mu);
    for (;;) {
        size_t avail = s->in.len - s->in_pos;
        if (c->fail) break;
        if (s->c && s->c->ctl.len && !s->c->dead) {
            sbx__h2c *cn = s->c;
            cn->refs++;
            sbx__h2c_flush(cn);
            sbx__h2c_unref(cn);
            continue;
        }
        if (!c->in_msg && avail >= 5) {
            const unsigned char *p = (const unsigned char *)s->in.data + s->in_pos;
            unsigned long n = sbx__h2_u32(p + 1);
            if (p[0] != 0) {
                sbx__grpc_fail(c, SBX_ERR_PROTOCOL, "gRPC %s: the server sent a %s message (flag 0x%02x), which we did not ask for",
                               c->path, (p[0] & 1) ? "compressed" : "flagged", p[0]);
                sbx__h2s_reset(s, SBX__H2E_CANCEL, SBX_ERR_PROTOCOL, c->why);
                break;
            }
            if (n > c->max_msg) {
                sbx__grpc_fail(c, SBX_ERR_TOO_BIG, "gRPC %s: a response message of %lu bytes passes %s (%lu)", c->path,
                               n, c->max_name, (unsigned long)c->max_msg);
                sbx__h2s_reset(s, SBX__H2E_CANCEL, SBX_ERR_TOO_BIG, c->why);
                break;
            }
            sbx__h2s_consumed(s, 5);
            c->in_msg = 1;
            c->need = n;
            c->msg.len = 0;
            continue;
        }
        if (c->in_msg) {
            size_t take = c->need - c->msg.len;
            if (take > avail) take = avail;
            if (sbx__grpc_room(c, take) != 0) {
                sbx__grpc_fail(c, SBX_ERR_NOMEM, "gRPC %s: out of memory for a %lu-byte message", c->path,
                               (unsigned long)c->need);
                sbx__h2s_reset(s, SBX__H2E_CANCEL, SBX_ERR_NOMEM, c->why);
                break;
            }
            if (take) {
                memcpy(c->msg.data + c->msg.len, s->in.data + s->in_pos, take);
                c->msg.len += take;
                sbx__h2s_consumed(s, take);
            }
            if (c->msg.len == c->need) {
                c->in_msg = 0;
                c->msg.data[c->msg.len] = '\0';
                if (s->c && s->c->ctl.len) {
                    sbx__h2c *cn = s->c;
                    cn->refs++;
                    sbx__h2c_flush(cn);
                    sbx__h2c_unref(cn);
                }
                pthread_mutex_unlock(&h->mu);
                *msg = (const unsigned char *)c->msg.data;
                *len = c->msg.len;
                return 1;
            }
            if (take) continue;
        }
        if (s->failed) {
            sbx__grpc_fail(c, s->err, "gRPC %s: %s", c->path, s->why);
            break;
        }
        if (s->remote_end) {
            if (c->in_msg || avail > 0) {
                sbx__grpc_fail(c, SBX_ERR_PROTOCOL, "gRPC %s: the server ended the stream inside a message", c->path);
                break;
            }
            sbx__grpc_finish(c);
            pthread_mutex_unlock(&h->mu);
            return 0;
        }
        if (c->deadline > 0 && sbx__now_ms() >= c->deadline) {
            sbx__grpc_fail(c, SBX_ERR_TIMEOUT, "gRPC %s: the call's deadline passed", c->path);
            sbx__h2s_reset(s, SBX__H2E_CANCEL, SBX_ERR_TIMEOUT, c->why);
            if (s->c) {
                sbx__h2c *cn = s->c;
                cn->refs++;
                sbx__h2c_flush(cn);
                sbx__h2c_unref(cn);
            }
            break;
        }
        if (sbx__now_ms() >= wd) {
            pthread_mutex_unlock(&h->mu);
            return sbx__fail(e, SBX_ERR_TIMEOUT, "gRPC %s: no message within the wait", c->path);
        }
        {
            sbx__h2c *cn = s->c;
            cn->refs++;
            sbx__h2c_wait(cn, wd);
            sbx__h2c_unref(cn);
        }
    }
    r = sbx__fail(e, c->fail, "%s", c->why);
    pthread_mutex_unlock(&h->mu);
    return r;
}

/* After recv returned 0: the gRPC status (0 OK) and its percent-decoded
   grpc-message (never NULL, "" if none). */
SBX__PRIVATE int sbx__grpc_status(const sbx__grpc_call *c, const char **message)
{
    if (message) *message = c->message;
    return c->status;
}

/* Free the call; if it has not ended, RST_STREAM(CANCEL) it. */
SBX__PRIVATE void sbx__grpc_free(sbx__grpc_call *c)
{
    sbx_allocator a;
    if (!c) return;
    a = c->h->a;
    sbx__h2_close(&c->s);
    sbx__buf_free(&c->msg);
    sbx__free(&a, c);
}

/* start + the one response message into *resp (replaced; its buffer may be
   swapped with the call's, never copied when both use one allocator) + the
   status. max_msg > 0 replaces SBX_GRPC_MAX_MESSAGE as the answer's limit
   (under 2 GiB), named max_name in the TOO_BIG message. A non-OK status is
   sbx__grpc_result(status) with e->grpc_status set and e->msg "gRPC PATH:
   STATUS_NAME: message". */
SBX__PRIVATE sbx_result sbx__grpc_unary(sbx__h2 *h, const char *path, const void *req, size_t n, sbx__buf *resp,
                                        size_t max_msg, const char *max_name, long long deadline, sbx_error *e)
{
    sbx__grpc_call *c = NULL;
    const unsigned char *m;
    size_t ml;
    int r, got = 0;
    const char *text;
    int st;
    r = sbx__grpc_start(h, path, req, n, 1, deadline, &c, e);
    if (r != SBX_OK) {
        sbx__err_prefix(e, "gRPC %s", path);
        return (sbx_result)r;
    }
    if (max_msg > 0) {
        c->max_msg = max_msg < 0x7fffffffu ? max_msg : 0x7fffffffu;
        c->max_name = max_name ? max_name : "this call's limit";
    }
    resp->len = 0;
    while ((r = sbx__grpc_recv(c, &m, &ml, 0, e)) == 1) {
        if (got++) {
            sbx__grpc_free(c);
            return sbx__fail(e, SBX_ERR_PROTOCOL, "gRPC %s: the server sent more than one response message", path);
        }
        if (m == (const unsigned char *)c->msg.data && sbx__same_allocator(resp->a, c->msg.a)) {
            sbx__buf t = *resp; /* the message moves instead of being copied */
            resp->data = c->msg.data;
            resp->len = ml;
            resp->cap = c->msg.cap;
            c->msg.data = t.data;
            c->msg.cap = t.cap;
            c->msg.len = 0;
        } else if (sbx__buf_append(resp, m, ml) != 0) {
            sbx__grpc_free(c);
            return sbx__fail(e, SBX_ERR_NOMEM, "gRPC %s: out of memory", path);
        }
    }
    if (r < 0) {
        sbx__grpc_free(c);
        return (sbx_result)r;
    }
    st = sbx__grpc_status(c, &text);
    if (st != 0) {
        r = sbx__fail(e, sbx__grpc_result(st), "gRPC %s: %s%s%s", path, sbx__grpc_status_name(st), text[0] ? ": " : "", text);
        if (e) e->grpc_status = st;
        sbx__grpc_free(c);
        return (sbx_result)r;
    }
    sbx__grpc_free(c);
    if (!got) return sbx__fail(e, SBX_ERR_PROTOCOL, "gRPC %s: OK without a response message", path);
    if (!resp->data && sbx__buf_reserve(resp, 0) != 0) return sbx__fail(e, SBX_ERR_NOMEM, "gRPC %s: out of memory", path);
    return SBX_OK;
}
#endif /* SBX_NO_GRPC */

/* ======================================================================== */
/* >>proc: child processes (kubectl proxy, kubectl port-forward)            */
/* ======================================================================== */
/* One child process (kubectl proxy / port-forward) plus a drainer thread that
   reads its stdout and stderr for the child's whole life, so the child never
   blocks on a full pipe nor dies of SIGPIPE on a closed one.

   A zeroed or stopped sbx__proc is safe to stop, describe and query; it must
   not move while a child runs; one thread at a time uses it. The child gets
   stdin from /dev/null, its own process group (so a stop reaches kubectl's
   own children too), default signal dispositions and an empty mask (the
   caller's may block or ignore anything), and no descriptor but 0, 1 and 2:
   an inherited socket would keep a peer or our supervisor waiting.
   A readiness line is found whether it came before the wait began (the first
   and the last SBX__PROC_KEEP_LINES lines are kept) or during it. A stop
   signals the group, waits grace_ms, then SIGKILLs it, and reaps by pid only
   (never another part of the program's children); a child stuck in the kernel
   is left to the detached drainer, which frees the state later with the
   allocator given to spawn (so that must outlive it). */

#include <dirent.h>

#ifndef SBX__PROC_KEEP_LINES
#define SBX__PROC_KEEP_LINES 8        /* first and last stdout lines kept for wait_line */
#endif
#ifndef SBX__PROC_LINE_MAX
#define SBX__PROC_LINE_MAX 512        /* bytes kept of one stdout line */
#endif
#ifndef SBX__PROC_ERR_TAIL
#define SBX__PROC_ERR_TAIL 2048       /* last stderr bytes kept */
#endif
#ifndef SBX__PROC_KILL_WAIT_MS
#define SBX__PROC_KILL_WAIT_MS 3000   /* after SIGKILL, wait this long for the reap */
#endif
#ifndef SBX__PROC_EXEC_WAIT_MS
#define SBX__PROC_EXEC_WAIT_MS 30000  /* fork to exec, at most */
#endif
#ifndef SBX__PROC_EXIT_WAIT_MS
#define SBX__PROC_EXIT_WAIT_MS 1000   /* after stdout EOF, wait for the exit status */
#endif
#ifndef SBX__PROC_STACK
#define SBX__PROC_STACK (128u * 1024u) /* drainer thread stack */
#endif

#ifdef __cplusplus
extern "C" {
#endif
extern char **environ;
#ifdef __cplusplus
}
#endif

struct sbx__sup;

struct sbx__proc_state {
    sbx_allocator a;
    struct sbx__sup *sup;       /* registered with it (a reference held) until reaped */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int mono;                   /* cv runs on CLOCK_MONOTONIC */
    pid_t pid;
    int out_fd, err_fd;         /* read ends, owned by the drainer */
    int wake_rd, wake_wr;       /* stop -> drainer: give up the pipes */
    /* drainer only */
    char cur[SBX__PROC_LINE_MAX + 1];
    size_t cur_len;
    int cur_any;                /* bytes seen since the last newline */
    /* guarded by mu */
    int out_eof, err_eof;
    int reaped;                 /* the child is collected; pid is no longer ours */
    int status_known, wstatus;
    int thread_done, orphaned;
    unsigned long long out_lines, err_bytes;
    char kept[SBX__PROC_KEEP_LINES][SBX__PROC_LINE_MAX + 1];   /* the first lines */
    int nkept;
    char recent[SBX__PROC_KEEP_LINES][SBX__PROC_LINE_MAX + 1]; /* ring of the later ones */
    int nrecent, recent_next;
    char want[SBX__PROC_LINE_MAX + 1];
    size_t want_len;
    int wanting, matched;
    char match[SBX__PROC_LINE_MAX + 1];
    char tail[SBX__PROC_ERR_TAIL];
    size_t tail_pos, tail_len;
};

typedef struct sbx__proc {
    struct sbx__proc_state *st; /* NULL: no child (never started or stopped) */
    pthread_t thread;           /* the drainer, while st != NULL */
    pid_t pid;                  /* the child, 0 when none */
    int started;                /* a spawn succeeded at least once */
    int status_known, wstatus;  /* recorded by stop */
    int stop_result;
    long long spawn_ms;
    char name[64];              /* basename of argv[0], for messages */
    char errline[256];          /* stderr summary recorded by stop */
    struct sbx__sup *sup;       /* optional, set before spawn: the child is registered
                                   with this supervisor until it is reaped */
} sbx__proc;

SBX__PRIVATE void sbx__proc_close_fd(int *fd)
{
    if (*fd >= 0) close(*fd);
    *fd = -1;
}

/* Move a descriptor above 2 (the child dup2s onto 0-2), keeping FD_CLOEXEC. */
SBX__PRIVATE int sbx__proc_fd_high(int *fd)
{
    int nfd;
    if (*fd > 2) return 0;
    nfd = fcntl(*fd, F_DUPFD_CLOEXEC, 3);
    if (nfd < 0) return -1;
    close(*fd);
    *fd = nfd;
    return 0;
}

SBX__PRIVATE int sbx__proc_pipe(int fds[2])
{
    if (sbx__pipe_cloexec(fds) != 0) {
        fds[0] = fds[1] = -1;
        return -1;
    }
    if (sbx__proc_fd_high(&fds[0]) != 0 || sbx__proc_fd_high(&fds[1]) != 0) {
        int err = errno;
        sbx__proc_close_fd(&fds[0]);
        sbx__proc_close_fd(&fds[1]);
        errno = err;
        return -1;
    }
    return 0;
}

/* argv[0] resolved as execvp would: a name holding '/' is used as is, else
   the first regular executable file on PATH. NULL with *err = ENOENT,
   EACCES (found, not executable) or ENOMEM. */
SBX__PRIVATE char *sbx__proc_which(const sbx_allocator *a, const char *name, int *err)
{
    const char *path, *p, *end;
    size_t nlen = strlen(name), dlen;
    int saw_eacces = 0;
    struct stat sb;
    if (strchr(name, '/')) {
        char *r = sbx__strdup(a, name);
        if (!r) *err = ENOMEM;
        return r;
    }
    if (nlen == 0) {
        *err = ENOENT;
        return NULL;
    }
    path = getenv("PATH");
    if (!path) path = "/usr/bin:/bin";
    for (p = path;; p = end + 1) {
        char *cand;
        end = strchr(p, ':');
        if (!end) end = p + strlen(p);
        dlen = (size_t)(end - p);
        if (dlen > (size_t)-1 - nlen - 3) {
            *err = ENOMEM;
            return NULL;
        }
        cand = (char *)sbx__malloc(a, dlen + nlen + 3);
        if (!cand) {
            *err = ENOMEM;
            return NULL;
        }
        if (dlen == 0) {
            memcpy(cand, "./", 2); /* an empty entry is the current directory */
            dlen = 2;
        } else {
            memcpy(cand, p, dlen);
            if (cand[dlen - 1] != '/') cand[dlen++] = '/';
        }
        memcpy(cand + dlen, name, nlen + 1);
        if (stat(cand, &sb) == 0) {
            if (S_ISREG(sb.st_mode)) {
                if (access(cand, X_OK) == 0) return cand;
                saw_eacces = 1;
            }
        } else if (errno == EACCES) {
            saw_eacces = 1;
        }
        sbx__free(a, cand);
        if (*end == '\0') break;
    }
    *err = saw_eacces ? EACCES : ENOENT;
    return NULL;
}

SBX__PRIVATE size_t sbx__proc_keylen(const char *s)
{
    return strcspn(s, "=");
}

/* The child's environment: environ minus the names env_extra mentions, then
   the env_extra entries holding '=' (the last one of a name wins). The array
   points into the existing strings; free only the array. */
SBX__PRIVATE char **sbx__proc_envp(const sbx_allocator *a, char *const extra[], int *err)
{
    size_t nenv = 0, nextra = 0, i, j, k = 0;
    char **envp;
    if (environ)
        while (environ[nenv]) nenv++;
    if (extra)
        while (extra[nextra]) nextra++;
    if (nenv > (size_t)-1 / sizeof(char *) - nextra - 1) {
        *err = ENOMEM;
        return NULL;
    }
    envp = (char **)sbx__malloc(a, (nenv + nextra + 1) * sizeof(char *));
    if (!envp) {
        *err = ENOMEM;
        return NULL;
    }
    for (i = 0; i < nenv; i++) {
        size_t kl = sbx__proc_keylen(environ[i]);
        int drop = 0;
        for (j = 0; j < nextra && !drop; j++)
            drop = sbx__proc_keylen(extra[j]) == kl && memcmp(extra[j], environ[i], kl) == 0;
        if (!drop) envp[k++] = environ[i];
    }
    for (i = 0; i < nextra; i++) {
        size_t kl = sbx__proc_keylen(extra[i]);
        int later = 0;
        if (extra[i][kl] != '=') continue; /* a bare name only removes */
        for (j = i + 1; j < nextra && !later; j++)
            later = sbx__proc_keylen(extra[j]) == kl && memcmp(extra[j], extra[i], kl) == 0;
        if (!later) envp[k++] = extra[i];
    }
    envp[k] = NULL;
    return envp;
}

/* Highest descriptor the child must close: the highest one open now (read
   from /proc/self/fd or /dev/fd) plus room for descriptors other threads may
   open before fork; without a listing, the descriptor limit (capped). */
SBX__PRIVATE int sbx__proc_max_fd(void)
{
    static const char *const dirs[] = {"/proc/self/fd", "/dev/fd"};
    size_t i;
    long lim;
    for (i = 0; i < sizeof dirs / sizeof dirs[0]; i++) {
        DIR *d = opendir(dirs[i]);
        struct dirent *de;
        int maxfd = -1, self, any = 0;
        if (!d) continue;
        self = dirfd(d);
        while ((de = readdir(d)) != NULL) {
            const char *s = de->d_name;
            int v = 0, ok = *s != '\0';
            for (; *s && ok; s++) {
                if (*s < '0' || *s > '9' || v > (INT_MAX - 9) / 10) ok = 0;
                else v = v * 10 + (*s - '0');
            }
            if (!ok) continue;
            any = 1;
            if (v != self && v > maxfd) maxfd = v;
        }
        closedir(d);
        if (any) return maxfd > INT_MAX - 257 ? INT_MAX - 1 : maxfd + 256;
    }
    lim = sysconf(_SC_OPEN_MAX);
    if (lim < 0 || lim > 65536) lim = 65536;
    return (int)lim - 1;
}

/* Everything the child needs, prepared before fork. */
struct sbx__proc_childctx {
    const char *path;
    char *const *argv;
    char *const *envp;
    int devnull, out_w, err_w, exec_w, maxfd;
    int new_session;          /* setsid() (the supervisor) instead of setpgid(0, 0) */
    sigset_t empty;
    struct sigaction dfl;
};

SBX__PRIVATE void sbx__proc_childctx_init(struct sbx__proc_childctx *cc, const char *path, char *const *argv,
                                          char *const *envp, int devnull, int out_w, int err_w, int exec_w)
{
    memset(cc, 0, sizeof *cc);
    cc->path = path;
    cc->argv = argv;
    cc->envp = envp;
    cc->devnull = devnull;
    cc->out_w = out_w;
    cc->err_w = err_w;
    cc->exec_w = exec_w;
    cc->maxfd = sbx__proc_max_fd();
    sigemptyset(&cc->empty);
    cc->dfl.sa_handler = SIG_DFL;
    sigemptyset(&cc->dfl.sa_mask);
    cc->dfl.sa_flags = 0;
}

/* The child between fork and exec: async-signal-safe calls only (no malloc,
   no locks). Failures go to the parent as {step, errno} on the error pipe. */
SBX__PRIVATE void sbx__proc_child(const struct sbx__proc_childctx *c)
{
    static const int sigs[] = {SIGHUP, SIGINT, SIGQUIT, SIGPIPE, SIGTERM, SIGALRM,
                               SIGCHLD, SIGUSR1, SIGUSR2, SIGTSTP, SIGTTIN, SIGTTOU};
    int report[2];
    int fd, step = 1;
    size_t i, off = 0;
    if (c->new_session ? setsid() >= 0 : setpgid(0, 0) == 0) {
        step = 2;
        for (i = 0; i < sizeof sigs / sizeof sigs[0]; i++) sigaction(sigs[i], &c->dfl, NULL);
        sigprocmask(SIG_SETMASK, &c->empty, NULL);
        if (dup2(c->devnull, 0) >= 0 && dup2(c->out_w, 1) >= 0 && dup2(c->err_w, 2) >= 0) {
            for (fd = 3; fd <= c->maxfd; fd++)
                if (fd != c->exec_w) close(fd);
            step = 0;
            execve(c->path, c->argv, c->envp);
        }
    }
    report[0] = step;
    report[1] = errno;
    while (off < sizeof report) {
        ssize_t w = write(c->exec_w, (const char *)report + off, sizeof report - off);
        if (w > 0) off += (size_t)w;
        else if (w < 0 && errno == EINTR) continue;
        else break;
    }
    _exit(127);
}

/* ---- the supervisor: nothing outlives the program ----------------------- */
/* Children (kubectl proxy, kubectl port-forward) and created claims must go
   when the owning process goes, however it goes (close, exit without close,
   crash, SIGKILL), without signal handlers in the caller and without relying
   on the thread that started them (PR_SET_PDEATHSIG follows a thread, and is
   Linux only). The one event every death delivers is the kernel closing the
   process's descriptors, so: one small supervisor process per client holds the
   other end of a socket that only this library holds (close-on-exec, and the
   kubectl children close every descriptor above 2). We tell it which process
   groups and claims are ours; it does nothing until it reads end-of-file, then
   sends SIGTERM to each registered group, SIGKILL after 1 s to what is left,
   says "k" back, and deletes the registered claims with `kubectl delete
   --wait=false --request-timeout=5s` (retried with backoff, 4 tries in about
   8 s, on errors that are not NotFound/Forbidden/Unauthorized).

   Why a shell script and not C in a forked child: a forked child of a big
   multi-threaded program may only make async-signal-safe calls, and, worse,
   it keeps the parent's whole address space copy-on-write: as the program
   keeps writing to its heap, the supervisor would pin a full copy of it. So
   the child execs /bin/sh at once (about 1 MB, a few ms); the script is fixed
   text and every value reaches it as a positional argument, never as code.
   The shell runs the loop in the background and exits, so the supervisor is
   never our child (nothing for the caller to reap, no zombie, however long
   the claim deletion takes) and sits in its own session and process group,
   ignoring SIGINT/SIGHUP/SIGPIPE: a Ctrl-C that kills the program does not
   kill its cleaner.

   No pid-reuse kill: a child is un-registered before it is reaped (the
   drainer sends "u PID" between waitid(WNOWAIT) and waitpid); the socket is a
   FIFO, so the supervisor reads that before any end-of-file. A claim is
   registered right after its create reached the server and un-registered after
   its DELETE succeeded or when it is detached.

   Protocol (one line each, fields separated by one space, all names checked
   RFC 1123 names and decimal pids):  p PID | u PID | c NS NAME VERSION |
   d NS NAME VERSION | r DIR (kubectl proxy's private directory: its
   proxy.sock and then the empty directory are removed after the kills).  The supervisor answers "PID\n" (its own pid) once at the
   start, and "k\n" once its kills are done. Limits: a fork() without exec in
   the program keeps the socket open in the forked copy (the supervisor then
   waits for both); with a unix: api_url the supervisor cannot reach the API
   (kubectl cannot speak over a unix socket) and only kills - use a lease. */

struct sbx__sup {
    sbx_allocator a;
    pthread_mutex_t mu;         /* one writer at a time; guards fd and refs */
    int fd;                     /* our end of the socket; -1 once finished */
    int refs;                   /* the client + each proc state registered with it */
    pid_t pid;                  /* the supervisor (not our child) */
};

static const char sbx__sup_script[] =
    "trap '' INT HUP PIPE\n"
    "set -f\n"
    "sup() {\n"
    "  pids= claims= dirs=\n"
    "  while IFS=' ' read -r op a b c; do\n"
    "    case $op in\n"
    "    r) dirs=\"$dirs $a\" ;;\n"
    "    p) pids=\"$pids $a\" ;;\n"
    "    u) n=; for x in $pids; do [ \"$x\" = \"$a\" ] || n=\"$n $x\"; done; pids=$n ;;\n"
    "    c) claims=\"$claims $a/$b/$c\" ;;\n"
    "    d) n=; for x in $claims; do [ \"$x\" = \"$a/$b/$c\" ] || n=\"$n $x\"; done; claims=$n ;;\n"
    "    esac\n"
    "  done\n"
    "  if [ -n \"$pids\" ]; then\n"
    "    for x in $pids; do kill -s TERM -- \"-$x\" 2>/dev/null || kill -s TERM \"$x\" 2>/dev/null; done\n"
    "    i=0\n"
    "    while [ $i -lt 10 ]; do\n"
    "      left=; for x in $pids; do kill -s 0 \"$x\" 2>/dev/null && left=\"$left $x\"; done\n"
    "      pids=$left; [ -z \"$pids\" ] && break\n"
    "      sleep 0.1 2>/dev/null || sleep 1; i=$((i + 1))\n"
    "    done\n"
    "    for x in $pids; do kill -s KILL -- \"-$x\" 2>/dev/null; kill -s KILL \"$x\" 2>/dev/null; done\n"
    "  fi\n"
    "  for x in $dirs; do rm -f \"$x/proxy.sock\"; rmdir \"$x\"; done 2>/dev/null\n"
    "  echo k\n"
    "  exec 1>/dev/null\n"
    "  [ \"$5\" = none ] && exit 0\n"
    "  for x in $claims; do del \"$@\" \"${x%%/*}\" \"${x#*/}\" & done\n"
    "  wait\n"
    "  exit 0\n"
    "}\n"
    "kube() {\n"
    "  kb=$1 kc=$2 cx=$3 srv=$4; shift 5\n"
    "  if [ -n \"$srv\" ]; then set -- \"--server=$srv\" \"$@\"; fi\n"
    "  if [ -n \"$cx\" ]; then set -- \"--context=$cx\" \"$@\"; fi\n"
    "  if [ -n \"$kc\" ]; then set -- \"--kubeconfig=$kc\" \"$@\"; fi\n"
    "  \"$kb\" \"$@\"\n"
    "}\n"
    "del() {\n"
    "  ns=$6 rest=$7; name=${rest%%/*} ver=${rest#*/} t=0 d=1\n"
    "  while :; do\n"
    "    out=$(kube \"$1\" \"$2\" \"$3\" \"$4\" \"$5\" delete \"sandboxclaims.$ver.extensions.agents.x-k8s.io\" \"$name\""
    " -n \"$ns\" --wait=false --ignore-not-found --request-timeout=5s 2>&1 </dev/null) && return 0\n"
    "    case $out in *NotFound*|*Forbidden*|*forbidden*|*Unauthorized*) return 1 ;; esac\n"
    "    t=$((t + d)); [ $t -gt 8 ] && return 1\n"
    "    sleep $d; d=$((d * 2))\n"
    "  done\n"
    "}\n"
    "sup \"$@\" <&1 2>/dev/null &\n"
    "echo \"$!\"\n";

SBX__PRIVATE void sbx__sup_ref(struct sbx__sup *s)
{
    pthread_mutex_lock(&s->mu);
    s->refs++;
    pthread_mutex_unlock(&s->mu);
}

SBX__PRIVATE void sbx__sup_unref(struct sbx__sup *s)
{
    int last;
    if (!s) return;
    pthread_mutex_lock(&s->mu);
    last = --s->refs == 0;
    pthread_mutex_unlock(&s->mu);
    if (last) {
        sbx_allocator a = s->a;
        if (s->fd >= 0) close(s->fd);
        pthread_mutex_destroy(&s->mu);
        sbx__free(&a, s);
    }
}

/* Send one line. Best effort: a supervisor that is gone (EPIPE) or stuck for
   SBX__SUP_SEND_MS cannot be helped from here; the caller's work goes on. */
#ifndef SBX__SUP_SEND_MS
#define SBX__SUP_SEND_MS 200
#endif
SBX__PRIVATE int sbx__sup_send(struct sbx__sup *s, const char *line)
{
    size_t n = strlen(line), off = 0;
    long long dl = sbx__deadline(SBX__SUP_SEND_MS);
    int flags = 0, ok = 1;
#ifdef MSG_NOSIGNAL
    flags = MSG_NOSIGNAL;
#endif
    if (!s) return -1;
    pthread_mutex_lock(&s->mu);
    if (s->fd < 0) ok = 0;
    while (ok && off < n) {
        ssize_t w = send(s->fd, line + off, n - off, flags);
        if (w > 0) off += (size_t)w;
        else if (w < 0 && errno == EINTR) continue;
        else if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) && sbx__poll1(s->fd, POLLOUT, dl) == 1) continue;
        else ok = 0;
    }
    pthread_mutex_unlock(&s->mu);
    return ok ? 0 : -1;
}

/* Register / un-register a child's process group (the child leads it). */
SBX__PRIVATE int sbx__sup_add_pid(struct sbx__sup *s, pid_t pid)
{
    char line[40];
    snprintf(line, sizeof line, "p %ld\n", (long)pid);
    return pid > 0 ? sbx__sup_send(s, line) : -1;
}

SBX__PRIVATE int sbx__sup_del_pid(struct sbx__sup *s, pid_t pid)
{
    char line[40];
    snprintf(line, sizeof line, "u %ld\n", (long)pid);
    return pid > 0 ? sbx__sup_send(s, line) : -1;
}

/* The private directory of kubectl proxy's socket (no blank or control
   character, or it is not sent: it would not survive the line format). */
SBX__PRIVATE int sbx__sup_add_dir(struct sbx__sup *s, const char *dir)
{
    char line[300];
    size_t i, n = strlen(dir);
    if (n == 0 || n > 250 || dir[0] != '/') return -1;
    for (i = 0; i < n; i++)
        if ((unsigned char)dir[i] <= 0x20 || dir[i] == 0x7f) return -1;
    snprintf(line, sizeof line, "r %s\n", dir);
    return sbx__sup_send(s, line);
}

/* Register (add = 1) / un-register a claim: names are checked, as they end up
   in a line of the protocol and in kubectl's arguments. */
SBX__PRIVATE int sbx__sup_claim(struct sbx__sup *s, int add, const char *ns, const char *name, const char *version)
{
    char line[600];
    size_t i;
    if (!version || !version[0] || strlen(version) > 40 || !sbx__valid_dns_name(ns, 0) ||
        !sbx__valid_dns_name(name, 1))
        return -1;
    for (i = 0; version[i]; i++)
        if (!((version[i] >= 'a' && version[i] <= 'z') || (version[i] >= '0' && version[i] <= '9'))) return -1;
    snprintf(line, sizeof line, "%c %s %s %s\n", add ? 'c' : 'd', ns, name, version);
    return sbx__sup_send(s, line);
}

/* ---- the drainer -------------------------------------------------------- */

SBX__PRIVATE void sbx__proc_state_free(struct sbx__proc_state *st)
{
    sbx_allocator a = st->a;
    sbx__sup_unref(st->sup);
    sbx__proc_close_fd(&st->out_fd);
    sbx__proc_close_fd(&st->err_fd);
    sbx__proc_close_fd(&st->wake_rd);
    sbx__proc_close_fd(&st->wake_wr);
    pthread_cond_destroy(&st->cv);
    pthread_mutex_destroy(&st->mu);
    sbx__free(&a, st);
}

/* A complete stdout line is in st->cur (mu held). */
SBX__PRIVATE void sbx__proc_line_done(struct sbx__proc_state *st)
{
    size_t n = st->cur_len;
    if (n > 0 && st->cur[n - 1] == '\r') n--;
    st->cur[n] = '\0';
    st->out_lines++;
    if (st->nkept < SBX__PROC_KEEP_LINES) {
        memcpy(st->kept[st->nkept++], st->cur, n + 1);
    } else {
        memcpy(st->recent[st->recent_next], st->cur, n + 1);
        st->recent_next = (st->recent_next + 1) % SBX__PROC_KEEP_LINES;
        if (st->nrecent < SBX__PROC_KEEP_LINES) st->nrecent++;
    }
    if (st->wanting && !st->matched && n >= st->want_len &&
        memcmp(st->cur, st->want, st->want_len) == 0) {
        memcpy(st->match, st->cur, n + 1);
        st->matched = 1;
        pthread_cond_broadcast(&st->cv);
    }
    st->cur_len = 0;
    st->cur_any = 0;
}

/* Split stdout bytes into lines; only the first SBX__PROC_LINE_MAX bytes of
   a line are kept. Any byte value is accepted (mu held). */
SBX__PRIVATE void sbx__proc_feed_out(struct sbx__proc_state *st, const char *p, size_t n)
{
    while (n > 0) {
        const char *nl = (const char *)memchr(p, '\n', n);
        size_t seg = nl ? (size_t)(nl - p) : n, room = SBX__PROC_LINE_MAX - st->cur_len;
        if (seg > 0) st->cur_any = 1;
        memcpy(st->cur + st->cur_len, p, seg < room ? seg : room);
        st->cur_len += seg < room ? seg : room;
        if (!nl) break;
        sbx__proc_line_done(st);
        p = nl + 1;
        n -= seg + 1;
    }
}

/* Keep the last SBX__PROC_ERR_TAIL stderr bytes in a ring (mu held). */
SBX__PRIVATE void sbx__proc_feed_err(struct sbx__proc_state *st, const char *p, size_t n)
{
    st->err_bytes += n;
    if (n >= SBX__PROC_ERR_TAIL) {
        memcpy(st->tail, p + n - SBX__PROC_ERR_TAIL, SBX__PROC_ERR_TAIL);
        st->tail_pos = 0;
        st->tail_len = SBX__PROC_ERR_TAIL;
        return;
    }
    while (n > 0) {
        size_t k = SBX__PROC_ERR_TAIL - st->tail_pos;
        if (k > n) k = n;
        memcpy(st->tail + st->tail_pos, p, k);
        st->tail_pos = (st->tail_pos + k) % SBX__PROC_ERR_TAIL;
        st->tail_len = st->tail_len + k > SBX__PROC_ERR_TAIL ? SBX__PROC_ERR_TAIL : st->tail_len + k;
        p += k;
        n -= k;
    }
}

/* The kept stderr bytes in order into out[SBX__PROC_ERR_TAIL]; *cut = 1 when
   older bytes were dropped, so the first line may be a fragment (mu held). */
SBX__PRIVATE size_t sbx__proc_tail_copy(const struct sbx__proc_state *st, char *out, int *cut)
{
    size_t start = (st->tail_pos + SBX__PROC_ERR_TAIL - st->tail_len) % SBX__PROC_ERR_TAIL;
    size_t first = SBX__PROC_ERR_TAIL - start;
    if (first > st->tail_len) first = st->tail_len;
    memcpy(out, st->tail + start, first);
    memcpy(out + first, st->tail, st->tail_len - first);
    if (cut) *cut = st->err_bytes > st->tail_len;
    return st->tail_len;
}

SBX__PRIVATE int sbx__proc_starts(const char *s, size_t n, const char *pre)
{
    size_t k = strlen(pre);
    return n >= k && memcmp(s, pre, k) == 0;
}

/* The stderr line worth showing: the last one starting with "error:" or
   "Error from server", else the last non-blank one. Copied into out (at most
   cap - 1 bytes, control bytes shown as '?', tabs as spaces); returns its
   length. `cut`: the first line is a fragment and is skipped. */
SBX__PRIVATE size_t sbx__proc_pick_line(const char *s, size_t n, int cut, char *out, size_t cap)
{
    const char *best = NULL, *last = NULL;
    size_t best_n = 0, last_n = 0, i = 0, k;
    if (cap == 0) return 0;
    if (cut) {
        const char *nl = (const char *)memchr(s, '\n', n);
        i = nl ? (size_t)(nl - s) + 1 : n;
    }
    while (i < n) {
        const char *b = s + i, *nl = (const char *)memchr(b, '\n', n - i);
        size_t len = nl ? (size_t)(nl - b) : n - i, t;
        i += len + 1;
        while (len > 0 && (b[len - 1] == '\r' || b[len - 1] == ' ' || b[len - 1] == '\t')) len--;
        for (t = 0; t < len && (b[t] == ' ' || b[t] == '\t'); t++) {}
        if (t == len) continue;
        last = b;
        last_n = len;
        if (sbx__proc_starts(b, len, "error:") || sbx__proc_starts(b, len, "Error from server")) {
            best = b;
            best_n = len;
        }
    }
    if (!best) {
        best = last;
        best_n = last_n;
    }
    if (best_n > cap - 1) best_n = cap - 1;
    for (k = 0; k < best_n; k++) {
        unsigned char c = (unsigned char)best[k];
        out[k] = c == '\t' ? ' ' : (c < 0x20 || c == 0x7f) ? '?' : (char)c;
    }
    out[best_n] = '\0';
    return best_n;
}

SBX__PRIVATE size_t sbx__proc_err_summary(const struct sbx__proc_state *st, char *out, size_t cap)
{
    char tail[SBX__PROC_ERR_TAIL];
    int cut = 0;
    size_t n = sbx__proc_tail_copy(st, tail, &cut);
    return sbx__proc_pick_line(tail, n, cut, out, cap);
}

/* The drainer thread: reads both pipes until both end (or stop asks it to
   give up), then waits for the child to exit and reaps it under mu, so
   nobody can signal a pid that is no longer ours. */
SBX__PRIVATE void *sbx__proc_drain(void *arg)
{
    struct sbx__proc_state *st = (struct sbx__proc_state *)arg;
    char buf[8192];
    int abandon = 0, r, status = 0, known = 0, orphan;
    siginfo_t si;
    pid_t w;
    while (!abandon && (st->out_fd >= 0 || st->err_fd >= 0)) {
        struct pollfd pf[3];
        int *fdp[3];
        int n = 0, i;
        if (st->out_fd >= 0) { pf[n].fd = st->out_fd; fdp[n++] = &st->out_fd; }
        if (st->err_fd >= 0) { pf[n].fd = st->err_fd; fdp[n++] = &st->err_fd; }
        pf[n].fd = st->wake_rd;
        fdp[n++] = NULL;
        for (i = 0; i < n; i++) {
            pf[i].events = POLLIN;
            pf[i].revents = 0;
        }
        r = poll(pf, (nfds_t)n, -1); /* bounded by the child's life and by stop's wake-up */
        if (r < 0) {
            if (errno == EINTR || errno == EAGAIN) continue;
            break;
        }
        for (i = 0; i < n; i++) {
            ssize_t got;
            int is_out;
            if (!pf[i].revents) continue;
            if (!fdp[i]) {
                abandon = 1;
                continue;
            }
            got = read(*fdp[i], buf, sizeof buf);
            if (got < 0 && (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK)) continue;
            is_out = fdp[i] == &st->out_fd;
            pthread_mutex_lock(&st->mu);
            if (got > 0) {
                if (is_out) sbx__proc_feed_out(st, buf, (size_t)got);
                else sbx__proc_feed_err(st, buf, (size_t)got);
            } else { /* end of file, or an error that ends this pipe */
                if (is_out) {
                    if (st->cur_any) sbx__proc_line_done(st);
                    st->out_eof = 1;
                } else {
                    st->err_eof = 1;
                }
                pthread_cond_broadcast(&st->cv);
            }
            pthread_mutex_unlock(&st->mu);
            if (got <= 0) sbx__proc_close_fd(fdp[i]);
        }
    }
    sbx__proc_close_fd(&st->out_fd);
    sbx__proc_close_fd(&st->err_fd);
    pthread_mutex_lock(&st->mu);
    st->out_eof = st->err_eof = 1;
    pthread_cond_broadcast(&st->cv);
    pthread_mutex_unlock(&st->mu);

    /* Wait for the exit without collecting it, then collect it under mu. */
    for (;;) {
        memset(&si, 0, sizeof si);
        r = waitid(P_PID, (id_t)st->pid, &si, WEXITED | WNOWAIT);
        if (r == 0 || errno != EINTR) break;
    }
    /* the pid stops being ours at the reap: the supervisor forgets it first */
    if (st->sup) sbx__sup_del_pid(st->sup, st->pid);
    if (r != 0 && errno != ECHILD) {
        /* A system without WNOWAIT: collect outside mu. Until `reaped` is
           set below, a stop could signal a pid that was just recycled; that
           window exists only on such systems. */
        do w = waitpid(st->pid, &status, 0);
        while (w < 0 && errno == EINTR);
        known = w == st->pid;
        pthread_mutex_lock(&st->mu);
    } else {
        pthread_mutex_lock(&st->mu);
        if (r == 0) {
            do w = waitpid(st->pid, &status, WNOHANG);
            while (w < 0 && errno == EINTR);
            known = w == st->pid;
        }
    }
    st->reaped = 1; /* ECHILD: someone else collected it; it is gone either way */
    st->status_known = known;
    st->wstatus = status;
    st->thread_done = 1;
    orphan = st->orphaned;
    pthread_cond_broadcast(&st->cv);
    pthread_mutex_unlock(&st->mu);
    if (orphan) sbx__proc_state_free(st);
    return NULL;
}

/* Wait on st->cv until woken or `deadline` (mu held). 1 when the deadline passed. */
SBX__PRIVATE int sbx__proc_cond_wait(struct sbx__proc_state *st, long long deadline)
{
    long long now = sbx__now_ms(), left = deadline - now;
    int r;
    if (left <= 0) return 1;
    if (left > 86400000LL) left = 86400000LL; /* a day per wait; callers loop */
    r = sbx__cond_wait_ms(&st->cv, &st->mu, st->mono, left);
    return r == ETIMEDOUT && sbx__now_ms() >= deadline;
}

/* A wait status as kind 0 unknown, 1 exited with `value`, 2 killed by signal `value`. */
SBX__PRIVATE void sbx__proc_decode(int known, int wstatus, int *kind, int *value)
{
    *kind = 0;
    *value = 0;
    if (!known) return;
    if (WIFEXITED(wstatus)) {
        *kind = 1;
        *value = WEXITSTATUS(wstatus);
    } else if (WIFSIGNALED(wstatus)) {
        *kind = 2;
        *value = WTERMSIG(wstatus);
    }
}

/* 1 when the child has exited (reaped, or a zombie not yet collected), with
   how it ended in kind/value (see sbx__proc_decode). mu held. */
SBX__PRIVATE int sbx__proc_exited(struct sbx__proc_state *st, int *kind, int *value)
{
    siginfo_t si;
    *kind = *value = 0;
    if (st->reaped) {
        sbx__proc_decode(st->status_known, st->wstatus, kind, value);
        return 1;
    }
    memset(&si, 0, sizeof si);
    if (waitid(P_PID, (id_t)st->pid, &si, WEXITED | WNOHANG | WNOWAIT) != 0) return errno == ECHILD;
    if (si.si_pid != st->pid) return 0;
    *kind = si.si_code == CLD_EXITED ? 1 : 2;
    *value = si.si_status;
    return 1;
}

SBX__PRIVATE void sbx__proc_status_text(int kind, int value, char *buf, size_t cap)
{
    if (kind == 1) snprintf(buf, cap, "exited with status %d", value);
    else if (kind == 2) snprintf(buf, cap, "killed by signal %d", value);
    else snprintf(buf, cap, "exited (status unknown)");
}

/* Send sig to the child's group (and to the child itself if the group is
   gone). Only while not reaped, under mu: the pid is still ours. */
SBX__PRIVATE void sbx__proc_signal(struct sbx__proc_state *st, int sig)
{
    if (st->reaped || st->pid <= 0) return;
    if (kill(-st->pid, sig) != 0 || sig == SIGKILL) kill(st->pid, sig);
}

/* ---- the interface -------------------------------------------------------- */

/* A fresh state with its lock and condition variable (CLOCK_MONOTONIC where
   possible); NULL when out of memory or locks. */
SBX__PRIVATE struct sbx__proc_state *sbx__proc_state_new(const sbx_allocator *al)
{
    int rc;
    struct sbx__proc_state *st = (struct sbx__proc_state *)sbx__malloc(al, sizeof *st);
    if (!st) return NULL;
    memset(st, 0, sizeof *st);
    st->a = *al;
    st->out_fd = st->err_fd = st->wake_rd = st->wake_wr = -1;
    if (pthread_mutex_init(&st->mu, NULL) != 0) {
        sbx__free(al, st);
        return NULL;
    }
    rc = sbx__cond_init(&st->cv, &st->mono);
    if (rc != 0) {
        pthread_mutex_destroy(&st->mu);
        sbx__free(al, st);
        return NULL;
    }
    return st;
}

/* After fork: 0 when the child reached exec (its error pipe closed with no
   report); else -1 with report = {step, errno}, step -1 meaning no exec
   within SBX__PROC_EXEC_WAIT_MS. */
SBX__PRIVATE int sbx__proc_exec_report(int fd, int report[2])
{
    size_t got = 0, want = 2 * sizeof(int);
    long long dl = sbx__deadline(SBX__PROC_EXEC_WAIT_MS);
    while (got < want) {
        ssize_t r;
        if (sbx__poll1(fd, POLLIN, dl) != 1) {
            report[0] = -1;
            report[1] = ETIMEDOUT;
            return -1;
        }
        r = read(fd, (char *)report + got, want - got);
        if (r > 0) got += (size_t)r;
        else if (r == 0 || (errno != EINTR && errno != EAGAIN)) break;
    }
    if (got == 0) return 0;
    if (got < want) {
        report[0] = 0;
        report[1] = EIO;
    }
    return -1;
}

#ifndef SBX__SUP_START_MS
#define SBX__SUP_START_MS 5000
#endif
#ifndef SBX__SUP_SHELL
#define SBX__SUP_SHELL "/bin/sh"      /* the tests point it elsewhere */
#endif

/* Start the supervisor. kubectl/kubeconfig/context/server say how it reaches
   the API to delete claims (server: an http:// API URL given by the user, used
   with an empty kubeconfig); can_delete = 0: it only kills. */
SBX__PRIVATE sbx_result sbx__sup_start(const sbx_allocator *a, const char *kubectl, const char *kubeconfig,
                                       const char *context, const char *server, int can_delete,
                                       struct sbx__sup **out, sbx_error *e)
{
    sbx_allocator al = sbx__allocator(a);
    struct sbx__sup *s;
    struct sbx__proc_childctx cc;
    char *argv[10], **envp = NULL, line[32], name[48];
    int sv[2] = {-1, -1}, execp[2] = {-1, -1}, devnull = -1, err = 0, report[2], rc, status, one = 1;
    int sock_type = SOCK_STREAM;
    size_t got = 0;
    long long dl;
    long v = 0;
    pid_t pid, w;
    union {
        const char *c;
        char *m;
    } u[9];
    *out = NULL;
    /* a system without a shell (a distroless image running IN_CLUSTER or
       DIRECT with an api_url) still works, unsupervised, as documented */
    if (access(SBX__SUP_SHELL, X_OK) != 0 && errno == ENOENT) return SBX_OK;
    s = (struct sbx__sup *)sbx__malloc(&al, sizeof *s);
    if (!s) return sbx__oom(e, "start the supervisor");
    memset(s, 0, sizeof *s);
    s->a = al;
    s->fd = -1;
    s->refs = 1;
    if (pthread_mutex_init(&s->mu, NULL) != 0) {
        sbx__free(&al, s);
        return sbx__fail(e, SBX_ERR_SYS, "start the supervisor: pthread_mutex_init failed");
    }
    envp = sbx__proc_envp(&al, NULL, &err);
    if (!envp) {
        rc = sbx__oom(e, "start the supervisor");
        goto fail;
    }
    devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
#ifdef SOCK_CLOEXEC
    sock_type |= SOCK_CLOEXEC; /* no window for another thread's fork+exec to inherit it */
#endif
    if (devnull < 0 || sbx__proc_fd_high(&devnull) != 0 || socketpair(AF_UNIX, sock_type, 0, sv) != 0 ||
        sbx__set_cloexec(sv[0]) != 0 || sbx__set_cloexec(sv[1]) != 0 || sbx__proc_fd_high(&sv[0]) != 0 ||
        sbx__proc_fd_high(&sv[1]) != 0 || sbx__proc_pipe(execp) != 0) {
        rc = sbx__fail_sys(e, SBX_ERR_SYS, errno, "start the supervisor: cannot create its socket");
        goto fail;
    }
#if !defined(MSG_NOSIGNAL) && defined(SO_NOSIGPIPE)
    setsockopt(sv[0], SOL_SOCKET, SO_NOSIGPIPE, &one, sizeof one);
#endif
    (void)one;
    u[0].c = SBX__SUP_SHELL;
    u[1].c = "-c";
    u[2].c = sbx__sup_script;
    snprintf(name, sizeof name, "sandbox.h-supervisor:%ld", (long)getpid()); /* $0: whose it is, for ps */
    u[3].c = name;
    u[4].c = kubectl ? kubectl : "kubectl";
    u[5].c = kubeconfig ? kubeconfig : "";
    u[6].c = context ? context : "";
    u[7].c = server ? server : "";
    u[8].c = can_delete ? "delete" : "none";
    for (rc = 0; rc < 9; rc++) argv[rc] = u[rc].m;
    argv[9] = NULL;
    /* the shell's stdout is the socket; stdin and stderr /dev/null */
    sbx__proc_childctx_init(&cc, SBX__SUP_SHELL, argv, envp, devnull, sv[1], devnull, execp[1]);
    cc.new_session = 1;       /* Ctrl-C to the program's group must not reach it */
    pid = fork();
    if (pid < 0) {
        rc = sbx__fail_sys(e, SBX_ERR_SPAWN, errno, "start the supervisor: fork");
        goto fail;
    }
    if (pid == 0) sbx__proc_child(&cc); /* never returns */
    sbx__proc_close_fd(&devnull);
    sbx__proc_close_fd(&sv[1]);
    sbx__proc_close_fd(&execp[1]);
    sbx__free(&al, envp);
    envp = NULL;
    rc = sbx__proc_exec_report(execp[0], report);
    sbx__proc_close_fd(&execp[0]);
    if (rc != 0) {
        if (report[0] < 0) kill(pid, SIGKILL);
        do w = waitpid(pid, &status, 0);
        while (w < 0 && errno == EINTR);
        rc = sbx__fail_sys(e, SBX_ERR_SPAWN, report[1], "start the supervisor: cannot run /bin/sh%s",
                           report[0] == 1 ? " (setsid)" : report[0] == 2 ? " (dup2)" : "");
        goto fail;
    }
    /* The shell prints the background loop's pid, then exits: reap it. */
    dl = sbx__deadline(SBX__SUP_START_MS);
    line[0] = '\0';
    while (got + 1 < sizeof line && sbx__poll1(sv[0], POLLIN, dl) == 1) {
        ssize_t r = read(sv[0], line + got, 1);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0 || line[got] == '\n') break;
        got++;
    }
    line[got] = '\0';
    for (rc = 0; line[rc] >= '0' && line[rc] <= '9' && v < 100000000L; rc++) v = v * 10 + (line[rc] - '0');
    for (;;) {
        w = waitpid(pid, &status, WNOHANG);
        if (w != 0 && !(w < 0 && errno == EINTR)) break;
        if (sbx__now_ms() >= dl) {
            kill(pid, SIGKILL);
            do w = waitpid(pid, &status, 0);
            while (w < 0 && errno == EINTR);
            break;
        }
        poll(NULL, 0, 1);
    }
    if (v <= 1 || line[rc] != '\0') {
        rc = sbx__fail(e, SBX_ERR_SPAWN, "start the supervisor: /bin/sh did not report the supervisor's pid");
        goto fail;
    }
    if (sbx__set_nonblock(sv[0], 1) != 0) {
        rc = sbx__fail_sys(e, SBX_ERR_SYS, errno, "start the supervisor: fcntl");
        goto fail;
    }
    s->pid = (pid_t)v;
    s->fd = sv[0];
    *out = s;
    return SBX_OK;
fail:
    sbx__proc_close_fd(&devnull);
    sbx__proc_close_fd(&sv[0]); /* a started loop reads end-of-file and exits */
    sbx__proc_close_fd(&sv[1]);
    sbx__proc_close_fd(&execp[0]);
    sbx__proc_close_fd(&execp[1]);
    sbx__free(&al, envp);
    pthread_mutex_destroy(&s->mu);
    sbx__free(&al, s);
    return (sbx_result)rc;
}

/* The owner lets go (sbx_client_close): end-of-file for the supervisor, which
   kills what is still registered (nothing, normally), answers "k", deletes
   claims still registered (in the background) and exits. Wait up to wait_ms
   for the "k", so the kills are done when close returns. */
SBX__PRIVATE void sbx__sup_finish(struct sbx__sup *s, int wait_ms)
{
    long long dl = sbx__deadline(wait_ms);
    char c;
    if (!s) return;
    pthread_mutex_lock(&s->mu);
    if (s->fd >= 0) {
        shutdown(s->fd, SHUT_WR);
        while (sbx__poll1(s->fd, POLLIN, dl) == 1) {
            ssize_t r = read(s->fd, &c, 1);
            if (r < 0 && (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK)) continue;
            if (r <= 0 || c == 'k') break;
        }
        close(s->fd);
        s->fd = -1;
    }
    pthread_mutex_unlock(&s->mu);
    sbx__sup_unref(s);
}

SBX__PRIVATE int sbx__proc_spawn(sbx__proc *p, char *const argv[], char *const env_extra[],
                                 const sbx_allocator *a, sbx_error *e)
{
    sbx_allocator al = sbx__allocator(a);
    struct sbx__proc_state *st = NULL;
    struct sbx__proc_childctx cc;
    char *path = NULL;
    char **envp = NULL;
    int outp[2] = {-1, -1}, errp[2] = {-1, -1}, execp[2] = {-1, -1}, wake[2] = {-1, -1};
    int devnull = -1, err = 0, report[2], rc, status;
    const char *base;
    pid_t pid, w;
    pthread_attr_t attr;

    if (!p) return sbx__fail(e, SBX_ERR_INVALID_ARG, "spawn: no process handle");
    if (p->st) return sbx__fail(e, SBX_ERR_INVALID_ARG, "spawn: a child is already running on this handle");
    if (!argv || !argv[0] || !argv[0][0])
        return sbx__fail(e, SBX_ERR_INVALID_ARG, "spawn: empty command");
    p->pid = 0;
    p->started = 0;
    p->status_known = 0;
    p->wstatus = 0;
    p->stop_result = SBX_OK;
    p->errline[0] = '\0';
    base = strrchr(argv[0], '/');
    base = base && base[1] ? base + 1 : argv[0];
    snprintf(p->name, sizeof p->name, "%s", base);

    path = sbx__proc_which(&al, argv[0], &err);
    if (!path) {
        if (err == ENOMEM) return sbx__fail(e, SBX_ERR_NOMEM, "spawn %s: out of memory", p->name);
        return sbx__fail_sys(e, SBX_ERR_SPAWN, err, "cannot run \"%s\"", argv[0]);
    }
    envp = sbx__proc_envp(&al, env_extra, &err);
    st = envp ? sbx__proc_state_new(&al) : NULL;
    if (!st) {
        sbx__free(&al, path);
        sbx__free(&al, envp);
        return sbx__fail(e, SBX_ERR_NOMEM, "spawn %s: out of memory", p->name);
    }

    devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (devnull < 0 || sbx__proc_fd_high(&devnull) != 0 || sbx__proc_pipe(outp) != 0 ||
        sbx__proc_pipe(errp) != 0 || sbx__proc_pipe(execp) != 0 || sbx__proc_pipe(wake) != 0 ||
        sbx__set_nonblock(outp[0], 1) != 0 || sbx__set_nonblock(errp[0], 1) != 0 ||
        sbx__set_nonblock(wake[1], 1) != 0) {
        err = errno;
        rc = sbx__fail_sys(e, SBX_ERR_SYS, err, "spawn %s: cannot create pipes", p->name);
        goto fail;
    }

    sbx__proc_childctx_init(&cc, path, argv, envp, devnull, outp[1], errp[1], execp[1]);

    pid = fork();
    if (pid < 0) {
        err = errno;
        rc = sbx__fail_sys(e, SBX_ERR_SPAWN, err, "cannot run \"%s\": fork", argv[0]);
        goto fail;
    }
    if (pid == 0) sbx__proc_child(&cc); /* never returns */
    if (p->sup) { /* from now on, the child dies with us */
        sbx__sup_ref(p->sup);
        st->sup = p->sup;
        sbx__sup_add_pid(st->sup, pid);
    }

    sbx__proc_close_fd(&devnull);
    sbx__proc_close_fd(&outp[1]);
    sbx__proc_close_fd(&errp[1]);
    sbx__proc_close_fd(&execp[1]);
    sbx__free(&al, path);
    sbx__free(&al, envp);
    path = NULL;
    envp = NULL;

    rc = sbx__proc_exec_report(execp[0], report);
    sbx__proc_close_fd(&execp[0]);
    if (rc != 0) {
        if (report[0] < 0) kill(pid, SIGKILL); /* stuck before exec */
        if (st->sup) sbx__sup_del_pid(st->sup, pid);
        do w = waitpid(pid, &status, 0);
        while (w < 0 && errno == EINTR);
        if (report[0] < 0)
            rc = sbx__fail(e, SBX_ERR_SPAWN, "cannot run \"%s\": no exec within %d ms", argv[0],
                           SBX__PROC_EXEC_WAIT_MS);
        else if (report[0] == 0)
            rc = sbx__fail_sys(e, SBX_ERR_SPAWN, report[1], "cannot run \"%s\"", argv[0]);
        else
            rc = sbx__fail_sys(e, SBX_ERR_SPAWN, report[1], "cannot run \"%s\": %s", argv[0],
                               report[0] == 1 ? "setpgid" : "dup2");
        goto fail;
    }

    st->pid = pid;
    st->out_fd = outp[0];
    st->err_fd = errp[0];
    st->wake_rd = wake[0];
    st->wake_wr = wake[1];
    outp[0] = errp[0] = wake[0] = wake[1] = -1;
    rc = pthread_attr_init(&attr);
    if (rc == 0) {
        pthread_attr_setstacksize(&attr, SBX__PROC_STACK); /* keeps the default if refused */
        rc = pthread_create(&p->thread, &attr, sbx__proc_drain, st);
        pthread_attr_destroy(&attr);
    }
    if (rc != 0) {
        kill(-pid, SIGKILL);
        kill(pid, SIGKILL);
        if (st->sup) sbx__sup_del_pid(st->sup, pid);
        do w = waitpid(pid, &status, 0);
        while (w < 0 && errno == EINTR);
        rc = sbx__fail_sys(e, SBX_ERR_SYS, rc, "spawn %s: cannot start the output reader thread", p->name);
        goto fail;
    }
    p->st = st;
    p->pid = pid;
    p->started = 1;
    p->spawn_ms = sbx__now_ms();
    return SBX_OK;

fail:
    sbx__proc_close_fd(&devnull);
    sbx__proc_close_fd(&outp[0]);
    sbx__proc_close_fd(&outp[1]);
    sbx__proc_close_fd(&errp[0]);
    sbx__proc_close_fd(&errp[1]);
    sbx__proc_close_fd(&execp[0]);
    sbx__proc_close_fd(&execp[1]);
    sbx__proc_close_fd(&wake[0]);
    sbx__proc_close_fd(&wake[1]);
    sbx__free(&al, path);
    sbx__free(&al, envp);
    sbx__proc_state_free(st);
    return rc;
}

/* Stdout line i of those kept (st->mu held): the first lines, then the
   recent ones, oldest first; i < nkept + nrecent. */
SBX__PRIVATE const char *sbx__proc_line_at(const struct sbx__proc_state *st, int i)
{
    return i < st->nkept ? st->kept[i]
                         : st->recent[(st->recent_next + SBX__PROC_KEEP_LINES - st->nrecent + i - st->nkept) %
                                      SBX__PROC_KEEP_LINES];
}

/* Append s to the NUL-terminated buf, cutting at cap - 1 bytes. */
SBX__PRIVATE void sbx__proc_cat(char *buf, size_t cap, const char *s)
{
    size_t n = strlen(buf), k = strlen(s);
    if (n + 1 >= cap) return;
    if (k > cap - 1 - n) k = cap - 1 - n;
    memcpy(buf + n, s, k);
    buf[n + k] = '\0';
}

SBX__PRIVATE int sbx__proc_wait_line(sbx__proc *p, const char *prefix, char *line, size_t cap,
                                     long long deadline, sbx_error *e)
{
    struct sbx__proc_state *st = p ? p->st : NULL;
    size_t plen, n;
    int i, rc, kind = 0, value = 0;
    char what[64], err[256];
    long long d2;
    if (line && cap) line[0] = '\0';
    if (!st) return sbx__fail(e, SBX_ERR_CLOSED, "no child process is running");
    if (!prefix) prefix = "";
    plen = strlen(prefix);
    if (plen > SBX__PROC_LINE_MAX)
        return sbx__fail(e, SBX_ERR_INVALID_ARG, "wait for a line: prefix longer than %d bytes",
                         SBX__PROC_LINE_MAX);
    pthread_mutex_lock(&st->mu);
    for (i = 0; i < st->nkept + st->nrecent; i++) {
        const char *l = sbx__proc_line_at(st, i);
        if (strncmp(l, prefix, plen) == 0) {
            if (line && cap) sbx__proc_cat(line, cap, l);
            pthread_mutex_unlock(&st->mu);
            return SBX_OK;
        }
    }
    if (!(st->matched && st->want_len == plen && memcmp(st->want, prefix, plen) == 0)) {
        memcpy(st->want, prefix, plen + 1);
        st->want_len = plen;
        st->matched = 0;
    }
    st->wanting = 1;
    for (;;) {
        if (st->matched) {
            if (line && cap) sbx__proc_cat(line, cap, st->match);
            st->wanting = 0;
            pthread_mutex_unlock(&st->mu);
            return SBX_OK;
        }
        if (st->out_eof) break;
        if (sbx__proc_cond_wait(st, deadline)) break;
    }
    st->wanting = 0;
    if (!st->out_eof) {
        /* Deadline. */
        n = sbx__proc_err_summary(st, err, sizeof err);
        pthread_mutex_unlock(&st->mu);
        return sbx__fail(e, SBX_ERR_TIMEOUT, "%s printed no line starting with \"%s\" within %lld ms%s%s",
                         p->name, prefix, sbx__now_ms() - p->spawn_ms, n ? "; its error output: " : "",
                         n ? err : "");
    }
    /* Standard output ended: the line will never come. Give the exit (and the
       last stderr bytes, read before the reap) a moment to arrive. */
    d2 = sbx__now_ms() + SBX__PROC_EXIT_WAIT_MS;
    if (d2 > deadline) d2 = deadline;
    while (!st->reaped)
        if (sbx__proc_cond_wait(st, d2)) break;
    rc = sbx__proc_exited(st, &kind, &value);
    n = sbx__proc_err_summary(st, err, sizeof err);
    pthread_mutex_unlock(&st->mu);
    if (!rc)
        return sbx__fail(e, SBX_ERR_SPAWN, "%s closed its output without printing a line starting with \"%s\"%s%s",
                         p->name, prefix, n ? ": " : "", n ? err : "");
    sbx__proc_status_text(kind, value, what, sizeof what);
    if (n) return sbx__fail(e, SBX_ERR_SPAWN, "%s %s: %s", p->name, what, err);
    return sbx__fail(e, SBX_ERR_SPAWN, "%s %s without printing a line starting with \"%s\"", p->name, what,
                     prefix);
}

/* Whether a stdout line seen so far starts with prefix and ends with end;
   copies it into line. Never waits. */
SBX__PRIVATE int sbx__proc_find_line(sbx__proc *p, const char *prefix, const char *end, char *line, size_t cap)
{
    struct sbx__proc_state *st = p ? p->st : NULL;
    size_t plen = strlen(prefix), elen = strlen(end);
    int i, found = 0;
    if (!st) return 0;
    pthread_mutex_lock(&st->mu);
    for (i = 0; i < st->nkept + st->nrecent && !found; i++) {
        const char *l = sbx__proc_line_at(st, i);
        size_t n = strlen(l);
        if (n >= plen + elen && strncmp(l, prefix, plen) == 0 && memcmp(l + n - elen, end, elen) == 0) {
            if (cap) line[0] = '\0';
            sbx__proc_cat(line, cap, l);
            found = 1;
        }
    }
    pthread_mutex_unlock(&st->mu);
    return found;
}

SBX__PRIVATE int sbx__proc_running(sbx__proc *p)
{
    struct sbx__proc_state *st = p ? p->st : NULL;
    int kind, value, r;
    if (!st) return 0;
    pthread_mutex_lock(&st->mu);
    r = !sbx__proc_exited(st, &kind, &value);
    pthread_mutex_unlock(&st->mu);
    return r;
}

/* Wait up to ms for the child to end on its own (no signal is sent) and be
   reaped, so that its last stderr bytes are in: 1 when it has ended, 0 when
   it still runs. */
SBX__PRIVATE int sbx__proc_wait_gone(sbx__proc *p, int ms)
{
    struct sbx__proc_state *st = p ? p->st : NULL;
    long long dl = sbx__deadline(ms);
    int kind, value, gone;
    if (!st) return 1;
    pthread_mutex_lock(&st->mu);
    while (!st->reaped)
        if (sbx__proc_cond_wait(st, dl)) break;
    gone = sbx__proc_exited(st, &kind, &value);
    pthread_mutex_unlock(&st->mu);
    return gone;
}

SBX__PRIVATE int sbx__proc_stop(sbx__proc *p, int first_signal, int grace_ms)
{
    struct sbx__proc_state *st = p ? p->st : NULL;
    long long dl;
    char one = 'x';
    ssize_t wr;
    int done;
    if (!st) return p ? p->stop_result : SBX_OK;
    pthread_mutex_lock(&st->mu);
    if (first_signal > 0) sbx__proc_signal(st, first_signal);
    dl = sbx__deadline(grace_ms);
    while (!st->reaped)
        if (sbx__proc_cond_wait(st, dl)) break;
    if (!st->reaped) {
        /* Too slow, or something else holds the pipes: kill the group and
           tell the drainer to stop reading and collect the child. */
        sbx__proc_signal(st, SIGKILL);
        do wr = write(st->wake_wr, &one, 1);
        while (wr < 0 && errno == EINTR);
        dl = sbx__deadline(SBX__PROC_KILL_WAIT_MS);
        while (!st->reaped)
            if (sbx__proc_cond_wait(st, dl)) break;
    }
    sbx__proc_err_summary(st, p->errline, sizeof p->errline);
    p->status_known = st->reaped && st->status_known;
    p->wstatus = st->wstatus;
    done = st->thread_done;
    if (!done) st->orphaned = 1; /* the drainer frees the state when the child finally goes */
    pthread_mutex_unlock(&st->mu);
    if (done) {
        pthread_join(p->thread, NULL);
        sbx__proc_state_free(st);
        p->stop_result = SBX_OK;
    } else {
        pthread_detach(p->thread);
        p->stop_result = SBX_ERR_TIMEOUT;
    }
    p->st = NULL;
    p->pid = 0;
    return p->stop_result;
}

SBX__PRIVATE void sbx__proc_describe(sbx__proc *p, char *buf, size_t cap)
{
    struct sbx__proc_state *st = p ? p->st : NULL;
    char what[64], err[256];
    int kind = 0, value = 0, exited;
    if (!buf || cap == 0) return;
    buf[0] = '\0';
    if (!st) {
        if (!p || !p->started) {
            sbx__proc_cat(buf, cap, "not started");
        } else if (p->stop_result != SBX_OK) {
            sbx__proc_cat(buf, cap, "did not end after SIGKILL (left to a reaper thread)");
        } else {
            sbx__proc_decode(p->status_known, p->wstatus, &kind, &value);
            sbx__proc_status_text(kind, value, what, sizeof what);
            sbx__proc_cat(buf, cap, what);
            if (p->errline[0]) sbx__proc_cat(buf, cap, ": ");
            sbx__proc_cat(buf, cap, p->errline);
        }
        return;
    }
    pthread_mutex_lock(&st->mu);
    exited = sbx__proc_exited(st, &kind, &value);
    sbx__proc_err_summary(st, err, sizeof err);
    pthread_mutex_unlock(&st->mu);
    if (!exited) {
        sbx__proc_cat(buf, cap, "running");
        return;
    }
    sbx__proc_status_text(kind, value, what, sizeof what);
    sbx__proc_cat(buf, cap, what);
    if (err[0]) sbx__proc_cat(buf, cap, ": ");
    sbx__proc_cat(buf, cap, err);
}

SBX__PRIVATE int sbx__proc_status(sbx__proc *p)
{
    struct sbx__proc_state *st = p ? p->st : NULL;
    int r = -1;
    if (!st) return p && p->started && p->status_known ? p->wstatus : -1;
    pthread_mutex_lock(&st->mu);
    if (st->reaped && st->status_known) r = st->wstatus;
    pthread_mutex_unlock(&st->mu);
    return r;
}

SBX__PRIVATE size_t sbx__proc_stderr_tail(sbx__proc *p, char *buf, size_t cap)
{
    struct sbx__proc_state *st = p ? p->st : NULL;
    char tail[SBX__PROC_ERR_TAIL];
    size_t n, skip = 0;
    if (!buf || cap == 0) return 0;
    buf[0] = '\0';
    if (!st) return 0;
    pthread_mutex_lock(&st->mu);
    n = sbx__proc_tail_copy(st, tail, NULL);
    pthread_mutex_unlock(&st->mu);
    if (n > cap - 1) skip = n - (cap - 1);
    memcpy(buf, tail + skip, n - skip);
    buf[n - skip] = '\0';
    return n - skip;
}

/* ======================================================================== */
/* >>kube: Kubernetes API access, the proxy, the pool, retries, leases      */
/* ======================================================================== */

/* The Kubernetes side: one client reaches the API server through a kubectl
   proxy child it starts (or a URL it is given), keeps a small pool of
   keep-alive connections to it, discovers which API version the cluster
   serves; >>claim below creates, watches, reads and deletes SandboxClaims.

   RETRIES. A request is re-sent only when it is idempotent: runtime GET/HEAD
   (read, list, exists), a sandboxd PUT of bytes in memory (write), and API
   GET/DELETE; the health check at open is sent once. Those are retried after a
   connection failure and after 502/503/504 (the API also 500) with a capped,
   jittered exponential backoff (SBX__RETRY_BASE_MS doubling up to
   SBX__RETRY_CAP_MS, +-25 %), at most SBX__RETRY_ATTEMPTS tries, never past the
   call's deadline; 429 waits for Retry-After (seconds), and when that is past
   the deadline the 429 is reported at once. An API request of any method whose
   connect() failed sent nothing and is sent again (sbx__conn.refused). Everything
   else (run, a python runtime upload, a write from a descriptor, delete of a
   file) is sent once: a command never runs twice. Redirects are never
   followed: a 3xx is an error naming its Location.
   Open makes its other steps safe to repeat and repeats them:
     claim create  POSTed again with the same name after 5xx, 429 (Retry-After
                   from the Status details) or a lost connection; a 409 after a
                   try that may have landed (claim_maybe) GETs the claim: the
                   open's nonce (SBX__NONCE_KEY) there means it is ours and it is
                   adopted (watched from its current state), else it is someone
                   else's and never touched. Rollback of a create that was never
                   answered deletes only a claim with our nonce, by UID
                   precondition (sbx__delete_if_ours).
     watch         a start answered 5xx/429 or refused backs off and starts again.
     port-forward  a kubectl port-forward that exited on a transient server
                   error (sbx__kubectl_transient reads its stderr) is started
                   again with backoff inside the tunnel deadline, at open and at
                   a restart; a final error (NotFound, Forbidden, not running)
                   is reported at once.
   The client's kubectl proxy is supervised: a request that finds it dead
   (SBX_ERR_CONNECT and the child gone) starts a new one on the same socket
   under pmu (sbx__proxy_ensure) and goes on inside its own deadline. */

#define SBX__GROUP_EXT "extensions.agents.x-k8s.io"
#define SBX__OWNER_LABEL "app.kubernetes.io/managed-by"
#define SBX__GROUP_CORE "agents.x-k8s.io"
#define SBX__GROUP_GATEWAY "gateway.networking.k8s.io"
#define SBX__POOL_MAX 8 /* idle keep-alive connections kept to the API */
#define SBX__MEMO_MAX 8 /* templates / pools whose warm pool and port a client remembers */
#define SBX__NONCE_KEY "sandbox.h/open-nonce" /* annotation: 16 random hex digits per open */
#define SBX__ROUTER_SVC "sandbox-router-svc"
#define SBX__ROUTER_PORT 8080

#ifndef SBX__RETRY_ATTEMPTS
#define SBX__RETRY_ATTEMPTS 5        /* tries of one idempotent request, at most */
#endif
#ifndef SBX__RETRY_BASE_MS
#define SBX__RETRY_BASE_MS 100       /* first backoff; doubled per retry */
#endif
#ifndef SBX__RETRY_CAP_MS
#define SBX__RETRY_CAP_MS 2000       /* longest backoff (before jitter) */
#endif
#ifndef SBX__ROUTER_GRACE_MS
#define SBX__ROUTER_GRACE_MS 1000    /* router modes: wait this long past X-Sandbox-Timeout */
#endif

struct sbx__lease;

/* What opens learned about a template or pool (key "t/NAME" or "p/NAME"): the
   one warm pool of a template (v1beta1; "" when several pools use it, so each
   open picks the readiest), and the runtime port of its Sandboxes' pod
   template (-1 unknown, 0 none given) */
typedef struct sbx__memo {
    char ns[64];
    char key[256];
    char pool[254];
    int port;
} sbx__memo;

struct sbx__client {
    sbx_allocator a;
    sbx_logger log;           /* set at open, never written again: read without a lock */
    char *kubectl;
    char *kubeconfig;
    char *context;
    char *ns;
    sbx__endpoint api;
    sbx__proc proxy;          /* pmu guards proxy and proxy_started */
    int proxy_started;
    unsigned proxy_restarts;  /* kubectl proxy restarted after it died */
    pthread_mutex_t pmu;
    char *sockdir;            /* private directory of the proxy's unix socket (set once) */
    int api_timeout_ms;
    pthread_mutex_t mu;       /* guards idle[], nidle, the versions, memo, gw_ok/router (GATEWAY) */
    sbx__conn *idle[SBX__POOL_MAX];
    int nidle;
    const char *ext_version;  /* "v1beta1" or "v1alpha1" once discovered */
    const char *core_version;
    sbx__memo memo[SBX__MEMO_MAX]; /* under mu; filled round-robin */
    int nmemo, memo_next;
    /* the route */
    sbx_mode mode;
    sbx_pod_route pod_route;  /* POD_TUNNEL, as configured */
    int pf_kubectl;           /* AUTO: the upgrade was refused, kubectl from now on (under mu) */
    char *router_ns;
    char *router_token;
    char *gateway_name;
    char *gateway_ns;
    int gateway_timeout_ms;
    sbx__endpoint router;     /* DIRECT: router_url; GATEWAY: once gw_ok */
    int gw_ok;
    /* ROUTER_TUNNEL: the shared port-forward; tmu guards all of it */
    pthread_mutex_t tmu;
    sbx__proc rtun;
    int rtun_started;
    int rtun_port;            /* 0 until the line was seen and /healthz answered */
    unsigned rtun_gen;        /* bumped at every start: sandboxes reconnect */
    /* ownership: the supervisor kills our children and deletes our claims when
       we go; the owner annotations of every claim (interfaces.md) */
    struct sbx__sup *sup;
    char owner_host[256];
    char owner_pid[24];
    char owner_start[24];     /* seconds since the epoch; "" where unknown */
    /* leases: one renewal thread, started by the first sandbox with a lease */
    pthread_mutex_t lmu;      /* guards leases, lbusy, lstop */
    pthread_cond_t lcv;
    int lmono;                /* lcv runs on CLOCK_MONOTONIC */
    struct sbx__lease *leases;
    struct sbx__lease *lbusy; /* being renewed right now (outside lmu) */
    int lstop, lthread_on;
    pthread_t lthread;
};

/* This process's start time in seconds since the epoch (Linux: starttime of
   /proc/self/stat in clock ticks after boot + btime of /proc/stat); "" where
   the system does not tell. With host and pid it names one process for good:
   a sweep can tell an orphan's claim from a live owner's. */
SBX__PRIVATE void sbx__owner_start(char *out, size_t cap)
{
    char buf[1024];
    const char *p;
    unsigned long long ticks = 0, btime = 0;
    long hz = sysconf(_SC_CLK_TCK);
    int fd, field;
    ssize_t n;
    out[0] = '\0';
    fd = open("/proc/self/stat", O_RDONLY | O_CLOEXEC);
    if (fd < 0) return;
    n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0) return;
    buf[n] = '\0';
    p = strrchr(buf, ')'); /* the command name may hold spaces and parentheses */
    if (!p) return;
    for (field = 2; *p && field < 22; p++)
        if (*p == ' ') field++;
    while (*p >= '0' && *p <= '9') ticks = ticks * 10 + (unsigned long long)(*p++ - '0');
    fd = open("/proc/stat", O_RDONLY | O_CLOEXEC);
    if (fd < 0) return;
    {
        /* line by line: the "intr" line before "btime" can be many kB long
           (pieces of it hold only digits and blanks, never "btime ") */
        FILE *f = fdopen(fd, "r");
        char line[256];
        if (!f) {
            close(fd);
            return;
        }
        while (!btime && fgets(line, sizeof line, f))
            if (strncmp(line, "btime ", 6) == 0)
                for (p = line + 6; *p >= '0' && *p <= '9'; p++) btime = btime * 10 + (unsigned long long)(*p - '0');
        fclose(f);
    }
    if (hz <= 0 || btime == 0 || ticks == 0) return;
    snprintf(out, cap, "%llu", btime + ticks / (unsigned long long)hz);
}

/* host name, pid and start time of this process, for the claims' annotations */
SBX__PRIVATE void sbx__owner_init(struct sbx__client *cl)
{
    size_t i;
    if (gethostname(cl->owner_host, sizeof cl->owner_host - 1) != 0) cl->owner_host[0] = '\0';
    cl->owner_host[sizeof cl->owner_host - 1] = '\0';
    for (i = 0; cl->owner_host[i]; i++) /* printable ASCII only: it goes into JSON */
        if ((unsigned char)cl->owner_host[i] < 0x21 || (unsigned char)cl->owner_host[i] > 0x7e ||
            cl->owner_host[i] == '"' || cl->owner_host[i] == '\\')
            cl->owner_host[i] = '?';
    snprintf(cl->owner_pid, sizeof cl->owner_pid, "%ld", (long)getpid());
    sbx__owner_start(cl->owner_start, sizeof cl->owner_start);
}

/* The member `key` of object token `obj`; -1 if absent. Works for keys with
   dots in them (annotation names), unlike a path lookup. */
SBX__PRIVATE int sbx__json_mem(const char *js, const sbx__jtok *t, int ntok, int obj, const char *key)
{
    return sbx__json_member(js, t, ntok, obj, key, strlen(key));
}

/* Parse an answer: *t gets its tokens (sbx__free them, also after a failure),
   *n what sbx__json_parse_alloc returned. The token at `path` ("": the
   document) if it is of `type`, else -1. */
SBX__PRIVATE int sbx__json_doc(const sbx_allocator *a, const sbx__buf *b, sbx__jtok **t, int *n, const char *path,
                               int type)
{
    int at;
    *n = sbx__json_parse_alloc(a, b->data, b->len, t);
    at = *n > 0 ? sbx__json_get(b->data, *t, *n, 0, path) : -1;
    return at >= 0 && (*t)[at].type == type ? at : -1;
}

/* Copy an identifier (string token i: a name, resourceVersion, IP) into out.
   "" when i is not a string or does not fit: a cut name would name another
   object, so it is never cut. (Text for messages: sbx__json_copy_text.) */
SBX__PRIVATE void sbx__json_copy(const char *js, const sbx__jtok *t, int i, char *out, size_t cap)
{
    size_t need = 0;
    out[0] = '\0';
    if (i < 0 || t[i].type != SBX__JSON_STRING) return;
    if (sbx__json_unescape(js, t, i, out, cap, &need) != 0) out[0] = '\0';
}

/* Copy server text (string token i) for a message: unescaped, control
   characters shown as '?', cut at a UTF-8 character boundary to fit cap. */
SBX__PRIVATE void sbx__json_copy_text(const sbx_allocator *a, const char *js, const sbx__jtok *t, int i, char *out,
                                      size_t cap)
{
    char *tmp = NULL;
    size_t n = 0, k;
    out[0] = '\0';
    if (i < 0 || t[i].type != SBX__JSON_STRING || sbx__json_strdup(a, js, t, i, &tmp, &n) != 0) return;
    if (n > cap - 1) {
        n = cap - 1;
        while (n > 0 && ((unsigned char)tmp[n] & 0xC0) == 0x80) n--; /* not inside a character */
    }
    for (k = 0; k < n; k++) out[k] = ((unsigned char)tmp[k] < 0x20 || tmp[k] == 0x7f) ? '?' : tmp[k];
    out[n] = '\0';
    sbx__free(a, tmp);
}

/* Append s as a JSON string; an invalid-UTF-8 input is a caller error. */
SBX__PRIVATE sbx_result sbx__jstr(sbx__buf *b, const char *s, const char *what, sbx_error *e)
{
    int r = sbx__json_write_str(b, s, strlen(s));
    if (r == -2) return sbx__fail(e, SBX_ERR_INVALID_ARG, "%s is not valid UTF-8", what);
    if (r != 0) return sbx__fail(e, SBX_ERR_NOMEM, "out of memory building a request");
    return SBX_OK;
}

/* Append {"k":"v",...} from a NULL-terminated key/value list. */
SBX__PRIVATE sbx_result sbx__json_kv(sbx__buf *b, const char *const *kv, const char *what, sbx_error *e)
{
    sbx_result r = SBX_OK;
    int first = 1;
    if (sbx__buf_puts(b, "{") != 0) return sbx__oom(e, NULL);
    for (; r == SBX_OK && kv && kv[0]; kv += 2, first = 0) {
        if (!kv[1]) return sbx__fail(e, SBX_ERR_INVALID_ARG, "%s: key \"%.80s\" has no value", what, kv[0]);
        if (!first) sbx__buf_puts(b, ",");
        r = sbx__jstr(b, kv[0], what, e);
        if (r == SBX_OK) sbx__buf_puts(b, ":");
        if (r == SBX_OK) r = sbx__jstr(b, kv[1], what, e);
    }
    if (r == SBX_OK && sbx__buf_puts(b, "}") != 0) r = sbx__oom(e, NULL);
    return r;
}

/* ---- argv for kubectl: owned strings, freed together ------------------- */

typedef struct sbx__argv {
    char *v[24];
    int n;
    int oom;
    const sbx_allocator *a;
} sbx__argv;

/* Append the concatenation a + b (b may be NULL) as one argument. */
SBX__PRIVATE void sbx__argv_add(sbx__argv *av, const char *a, const char *b)
{
    size_t la = strlen(a), lb = b ? strlen(b) : 0;
    char *s;
    if (av->n >= 23) { av->oom = 1; return; }
    s = (char *)sbx__malloc(av->a, la + lb + 1);
    if (!s) { av->oom = 1; return; }
    memcpy(s, a, la);
    if (lb) memcpy(s + la, b, lb);
    s[la + lb] = '\0';
    av->v[av->n++] = s;
    av->v[av->n] = NULL;
}

SBX__PRIVATE void sbx__argv_free(sbx__argv *av)
{
    int i;
    for (i = 0; i < av->n; i++) sbx__free(av->a, av->v[i]);
    av->n = 0;
}

/* "kubectl [--kubeconfig K] [--context C]" */
SBX__PRIVATE void sbx__argv_kubectl(sbx__argv *av, const struct sbx__client *cl)
{
    av->n = 0;
    av->oom = 0;
    av->a = &cl->a;
    av->v[0] = NULL;
    sbx__argv_add(av, cl->kubectl, NULL);
    if (cl->kubeconfig) sbx__argv_add(av, "--kubeconfig=", cl->kubeconfig);
    if (cl->context) sbx__argv_add(av, "--context=", cl->context);
}

/* ---- retries ----------------------------------------------------------- */

/* Backoff before retry number `n` (1 = the first retry): base * 2^(n-1),
   capped, with +-25 % jitter so that many clients do not retry in step. */
SBX__PRIVATE int sbx__backoff_ms(int n)
{
    unsigned char rnd[2];
    long ms = SBX__RETRY_BASE_MS, spread;
    int i;
    for (i = 1; i < n && ms < SBX__RETRY_CAP_MS; i++) ms *= 2;
    if (ms > SBX__RETRY_CAP_MS) ms = SBX__RETRY_CAP_MS;
    sbx__random(rnd, sizeof rnd);
    spread = (ms / 2) * (long)(((unsigned)rnd[0] << 8) | rnd[1]) / 65535L;
    return (int)(ms - ms / 4 + spread);
}

/* Retry-After as milliseconds (delta-seconds; an HTTP date or garbage counts
   as absent): -1 when absent. */
SBX__PRIVATE long long sbx__retry_after_ms(const sbx__http_resp *resp)
{
    size_t n = 0, i;
    long long v = 0;
    const char *s = sbx__http_header(resp, "retry-after", &n);
    if (!s) return -1;
    while (n && (*s == ' ' || *s == '\t')) { s++; n--; }
    while (n && (s[n - 1] == ' ' || s[n - 1] == '\t')) n--;
    if (n == 0 || n > 9) return -1;
    for (i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') return -1;
        v = v * 10 + (s[i] - '0');
    }
    return v * 1000;
}

/* Wait before a retry: 1 when waited, 0 when the wait would pass the deadline
   (then nothing is waited). */
SBX__PRIVATE int sbx__retry_wait(long long wait_ms, long long deadline)
{
    long long until;
    if (wait_ms < 0) wait_ms = 0;
    if (wait_ms >= sbx__ms_left(deadline)) return 0;
    until = sbx__now_ms() + wait_ms;
    for (;;) {
        long long left = until - sbx__now_ms();
        if (left <= 0) break;
        poll(NULL, 0, (int)left);
    }
    return 1;
}

/* A 3xx answer: redirects are never followed (a redirect could send the
   request, and its credentials, anywhere). */
SBX__PRIVATE sbx_result sbx__redirect_fail(sbx_error *e, const sbx__http_resp *resp, const char *what)
{
    size_t n = 0;
    const char *loc = sbx__http_header(resp, "location", &n);
    if (e) e->http_status = resp->status;
    if (n > 200) n = 200;
    return sbx__fail(e, SBX_ERR_HTTP, "%s%sHTTP %d redirect to \"%.*s\" (redirects are not followed)",
                     what ? what : "", what ? ": " : "", resp->status, loc ? (int)n : 0, loc ? loc : "");
}

/* ---- the client's kubectl proxy --------------------------------------- */

/* Spawn `kubectl proxy` on the socket of cl->sockdir and wait until it serves. */
SBX__PRIVATE sbx_result sbx__proxy_spawn(struct sbx__client *cl, long long deadline, sbx_error *e)
{
    char sock[300], line[512];
    sbx__argv av;
    sbx_result r;
    snprintf(sock, sizeof sock, "%s/proxy.sock", cl->sockdir);
    unlink(sock); /* a killed proxy leaves its socket behind, and kubectl will not bind over it */
    sbx__argv_kubectl(&av, cl);
    sbx__argv_add(&av, "proxy", NULL);
    sbx__argv_add(&av, "--unix-socket=", sock);
    /* kubectl proxy's default --reject-paths (any pod path with "/exec" or
       "/attach" in it) also refuses .../pods/POD:8888/proxy/execute; refuse
       only the real exec and attach subresources (the socket is private) */
    if (cl->mode == SBX_MODE_API_PROXY)
        sbx__argv_add(&av, "--reject-paths=^/api/.*/pods/[^/]*/exec,^/api/.*/pods/[^/]*/attach", NULL);
    if (av.oom) { sbx__argv_free(&av); return sbx__oom(e, NULL); }
    cl->proxy.sup = cl->sup; /* a restarted proxy is registered like the first */
    r = (sbx_result)sbx__proc_spawn(&cl->proxy, av.v, NULL, &cl->a, e);
    sbx__argv_free(&av);
    if (r != SBX_OK) return r;
    cl->proxy_started = 1;
    return (sbx_result)sbx__proc_wait_line(&cl->proxy, "Starting to serve on ", line, sizeof line, deadline, e);
}

/* The proxy is supervised like the tunnels: when the client's own kubectl
   proxy has died (killed, OOM, crashed), a new one is started on the same
   socket (so cl->api and every connection's endpoint stay valid), once under
   pmu however many threads find it dead, inside the caller's deadline.
   *restarted (may be NULL) says whether this call started one. A client given
   an api_url has no proxy to supervise. */
SBX__PRIVATE sbx_result sbx__proxy_ensure(struct sbx__client *cl, long long deadline, int *restarted, sbx_error *e)
{
    sbx_result r = SBX_OK;
    char why[256];
    long pid = 0;
    int did = 0, n = 0;
    if (restarted) *restarted = 0;
    if (!cl->sockdir) return SBX_OK;
    pthread_mutex_lock(&cl->pmu);
    if (!cl->proxy_started || !sbx__proc_running(&cl->proxy)) {
        sbx__proc_describe(&cl->proxy, why, sizeof why);
        if (cl->proxy_started) sbx__proc_stop(&cl->proxy, SIGTERM, 500); /* reap it */
        memset(&cl->proxy, 0, sizeof cl->proxy);
        cl->proxy_started = 0;
        r = sbx__proxy_spawn(cl, deadline, e);
        if (r == SBX_OK) {
            cl->proxy_restarts++;
            if (restarted) *restarted = 1;
            did = 1;
            n = cl->proxy_restarts;
            pid = (long)cl->proxy.pid;
        } else {
            if (cl->proxy_started) sbx__proc_stop(&cl->proxy, SIGTERM, 500);
            memset(&cl->proxy, 0, sizeof cl->proxy);
            cl->proxy_started = 0;
            sbx__err_prefix(e, "restart kubectl proxy (the last one %s)", why);
        }
    }
    pthread_mutex_unlock(&cl->pmu);
    if (did) /* after the unlock: the logger may take its time, or call in */
        sbx__log(&cl->log, SBX_LOG_WARN, SBX_EVENT_PROXY_STARTED, NULL, n, "kubectl proxy restarted (pid %ld): the last one %s",
                 pid, why);
    return r;
}

/* ---- connection pool to the API server --------------------------------- */

SBX__PRIVATE sbx__conn *sbx__pool_get(struct sbx__client *cl)
{
    sbx__conn *c = NULL;
    pthread_mutex_lock(&cl->mu);
    if (cl->nidle > 0) c = cl->idle[--cl->nidle];
    pthread_mutex_unlock(&cl->mu);
    if (c) return c;
    c = (sbx__conn *)sbx__malloc(&cl->a, sizeof *c);
    if (c) sbx__conn_init(c, &cl->api, &cl->a);
    return c;
}

SBX__PRIVATE void sbx__pool_put(struct sbx__client *cl, sbx__conn *c)
{
    if (!c) return;
    pthread_mutex_lock(&cl->mu);
    if (cl->nidle < SBX__POOL_MAX) {
        cl->idle[cl->nidle++] = c;
        c = NULL;
    }
    pthread_mutex_unlock(&cl->mu);
    if (c) {
        sbx__conn_free(c);
        sbx__free(&cl->a, c);
    }
}

/* Describe a failed answer with the server's own words (a Kubernetes
   Status "message", the runtime's or router's "message"/"detail", else the
   start of the body): 'read "a.txt": HTTP 404: File not found'. 404 gives
   SBX_ERR_NOT_FOUND, any other status SBX_ERR_HTTP. path may be NULL. */
SBX__PRIVATE sbx_result sbx__status_fail(sbx_error *e, int status, const sbx__buf *body, const char *what,
                                         const char *path)
{
    char text[SBX_ERRMSG_SIZE];
    sbx_result code = status == 404 ? SBX_ERR_NOT_FOUND : SBX_ERR_HTTP;
    sbx__http_error_text(status, body && body->data ? body->data : "", body ? body->len : 0, text, sizeof text);
    if (e) e->http_status = status;
    if (path) return sbx__fail(e, code, "%s \"%.200s\": %s", what, path, text);
    return sbx__fail(e, code, "%s: %s", what, text);
}

/* An API answer: "create SandboxClaim: HTTP 409: ... already exists". */
SBX__PRIVATE sbx_result sbx__api_fail(sbx_error *e, int status, const sbx__buf *body, const char *what)
{
    return sbx__status_fail(e, status, body, what, NULL);
}

/* One request to the API server with the body read into `out` (capped).
   GET and DELETE are retried (see RETRIES), any method when connect() failed
   (nothing was sent); a dead kubectl proxy is restarted first. *status is the
   last answer's. */
SBX__PRIVATE sbx_result sbx__api_call(struct sbx__client *cl, const char *method, const char *target,
                                      const char *body, size_t blen, const char *ctype,
                                      sbx__buf *out, int *status, long long deadline, sbx_error *e)
{
    sbx__http_req req;
    sbx__http_resp resp;
    char headers[160];
    sbx_result r = SBX_OK;
    int attempt, refused, idem = strcmp(method, "GET") == 0 || strcmp(method, "DELETE") == 0;
    *status = 0;
    sbx__http_req_init(&req);
    snprintf(headers, sizeof headers, "Accept: application/json\r\n%s%s%s",
             ctype ? "Content-Type: " : "", ctype ? ctype : "", ctype ? "\r\n" : "");
    req.method = method;
    req.target = target;
    req.headers = headers;
    req.body = body;
    req.body_len = blen;
    req.idempotent = idem;
    for (attempt = 1;; attempt++) {
        long long wait = -1;
        sbx__conn *c = sbx__pool_get(cl);
        if (!c) return sbx__oom(e, NULL);
        out->len = 0;
        *status = 0;
        r = (sbx_result)sbx__http_send(c, &req, &resp, deadline, e);
        if (r == SBX_OK) {
            *status = resp.status;
            if (resp.status >= 300 && resp.status < 400) {
                r = sbx__redirect_fail(e, &resp, NULL);
                sbx__http_body_discard(c, &resp, deadline, e);
            } else {
                if (idem && attempt < SBX__RETRY_ATTEMPTS &&
                    (resp.status == 429 || resp.status == 500 || resp.status == 502 || resp.status == 503 ||
                     resp.status == 504)) {
                    wait = sbx__retry_after_ms(&resp);
                    if (wait < 0) wait = sbx__backoff_ms(attempt);
                }
                r = (sbx_result)sbx__http_body_mem(c, &resp, out, SBX_MAX_API_BYTES, deadline, e);
                if (r != SBX_OK) wait = -1;
            }
        }
        sbx__http_resp_free(&resp);
        refused = c->refused;
        sbx__pool_put(cl, c);
        if (r == SBX_ERR_CONNECT) {
            int restarted = 0;
            sbx_result pr = sbx__proxy_ensure(cl, deadline, &restarted, e);
            if (pr != SBX_OK) {
                r = pr;
                break;
            }
            if ((idem || refused) && attempt < SBX__RETRY_ATTEMPTS) wait = restarted ? 0 : sbx__backoff_ms(attempt);
        }
        if (wait >= 0 && wait < sbx__ms_left(deadline)) {
            char why[160];
            if (r == SBX_OK) sbx__fmt(why, sizeof why, "HTTP %d", *status);
            else sbx__fmt(why, sizeof why, "%s", e ? e->msg : "failed");
            sbx__log(&cl->log, SBX_LOG_WARN, SBX_EVENT_RETRY, NULL, attempt, "%s %s: %s, again in %lld ms", method,
                     target, why, wait);
        }
        if (wait >= 0 && sbx__retry_wait(wait, deadline)) continue;
        break;
    }
    if (r != SBX_OK) sbx__err_prefix(e, "%s %s", method, target);
    return r;
}

/* Which version of `group` the cluster serves: v1beta1 preferred, else v1alpha1. */
SBX__PRIVATE sbx_result sbx__discover_group(struct sbx__client *cl, const char *group, const char **ver,
                                            long long deadline, sbx_error *e)
{
    char target[128];
    sbx__buf body;
    sbx__jtok *t = NULL;
    int status = 0, n, arr, i, k, beta = 0, alpha = 0;
    sbx_result r;
    snprintf(target, sizeof target, "/apis/%s", group);
    sbx__buf_init(&body, &cl->a);
    r = sbx__api_call(cl, "GET", target, NULL, 0, NULL, &body, &status, deadline, e);
    if (r == SBX_OK && status == 404) {
        r = sbx__fail(e, SBX_ERR_UNSUPPORTED,
                      "the cluster does not serve API group %s (%s): agent-sandbox is not installed%s. "
                      "Install the kubernetes-sigs/agent-sandbox controller with its extensions (the "
                      "release's manifest.yaml and extensions.yaml, or its Helm chart with "
                      "controller.extensions=true), then check with `kubectl api-resources --api-group=%s`",
                      group, strcmp(group, SBX__GROUP_EXT) == 0 ? "SandboxClaim, SandboxTemplate, SandboxWarmPool"
                                                                : "Sandbox",
                      strcmp(group, SBX__GROUP_EXT) == 0 ? ", or without its extensions" : "", group);
    } else if (r == SBX_OK && status != 200) {
        r = sbx__api_fail(e, status, &body, target);
    } else if (r == SBX_OK) {
        arr = sbx__json_doc(&cl->a, &body, &t, &n, "versions", SBX__JSON_ARRAY);
        if (arr < 0) {
            r = sbx__fail(e, SBX_ERR_PROTOCOL, "GET %s: not an APIGroup document", target);
        } else {
            SBX__JSON_FOREACH(t, arr, i, k) {
                int v = sbx__json_mem(body.data, t, n, i, "version");
                if (v >= 0 && sbx__json_eq(body.data, t, v, "v1beta1")) beta = 1;
                if (v >= 0 && sbx__json_eq(body.data, t, v, "v1alpha1")) alpha = 1;
            }
            if (!beta && !alpha)
                r = sbx__fail(e, SBX_ERR_UNSUPPORTED, "API group %s serves neither v1beta1 nor v1alpha1", group);
            else
                *ver = beta ? "v1beta1" : "v1alpha1";
        }
        sbx__free(&cl->a, t);
    }
    sbx__buf_free(&body);
    return r;
}

/* The first API request failed because no API server answered (kubectl proxy
   says "dial tcp ...: connection refused" as an HTTP 5xx, or our own connect
   failed): say so, with what was tried, instead of an internal-looking 500. */
SBX__PRIVATE sbx_result sbx__no_cluster(struct sbx__client *cl, sbx_result r, sbx_error *e)
{
    static const char *const words[] = {"dial tcp", "connection refused", "no such host", "i/o timeout",
                                        "network is unreachable", "no route to host", NULL};
    char kc[300], ctx[128], server[128], said[SBX_ERRMSG_SIZE];
    const char *src, *p, *home = getenv("HOME");
    struct stat st;
    int i, hit = 0, exists;
    if (!e || (r != SBX_ERR_CONNECT && !(r == SBX_ERR_HTTP && e->http_status >= 500))) return r;
    for (i = 0; words[i]; i++)
        if (strstr(e->msg, words[i])) hit = 1;
    if (!hit && r != SBX_ERR_CONNECT) return r;
    memcpy(said, e->msg, sizeof said);
    /* the kubeconfig kubectl used: ours, else $KUBECONFIG's first file, else ~/.kube/config */
    if (cl->kubeconfig) {
        src = "sbx_client_config.kubeconfig";
        sbx__fmt(kc, sizeof kc, "%s", cl->kubeconfig);
    } else if ((p = getenv("KUBECONFIG")) != NULL && *p) {
        src = "$KUBECONFIG";
        sbx__fmt(kc, sizeof kc, "%.*s", (int)(strchr(p, ':') ? (size_t)(strchr(p, ':') - p) : strlen(p)), p);
    } else {
        src = "kubectl's default";
        sbx__fmt(kc, sizeof kc, "%s/.kube/config", home ? home : "~");
    }
    exists = stat(kc, &st) == 0;
    /* the context: ours, else the file's top-level current-context */
    sbx__fmt(ctx, sizeof ctx, "%s", cl->context ? cl->context : exists ? "(none set)" : "(none)");
    if (!cl->context && exists) {
        FILE *f = fopen(kc, "r");
        char line[256];
        while (f && fgets(line, sizeof line, f))
            if (strncmp(line, "current-context:", 16) == 0) {
                size_t n;
                for (p = line + 16; *p == ' ' || *p == '"' || *p == '\''; p++) {}
                n = strcspn(p, "\"'\r\n");
                if (n) sbx__fmt(ctx, sizeof ctx, "%.*s", (int)n, p);
                break;
            }
        if (f) fclose(f);
    }
    /* the server: the address that was dialed, as the error names it */
    p = strstr(said, "dial tcp ");
    if (p) {
        const char *q = strstr(p + 9, ": ");
        sbx__fmt(server, sizeof server, "%.*s", (int)(q ? (size_t)(q - p - 9) : strlen(p + 9)), p + 9);
    } else if (cl->sockdir) {
        sbx__fmt(server, sizeof server, "%s", "(see `kubectl config view`)");
    } else {
        sbx__fmt(server, sizeof server, "%s (api_url)", cl->api.name);
    }
    r = sbx__fail(e, SBX_ERR_CONNECT,
                  "no Kubernetes cluster reachable: tried kubeconfig %s (%s%s), context %s, server %s%s: %s. "
                  "Point KUBECONFIG or sbx_client_config.kubeconfig (and .context) at a running cluster "
                  "(`kubectl cluster-info` must work)",
                  kc, src, exists ? "" : "; no such file", ctx, server,
                  exists ? "" : " (kubectl's default without a kubeconfig)",
                  strstr(said, "dial tcp ") ? strstr(said, "dial tcp ") : said);
    return r;
}

SBX__PRIVATE sbx_result sbx__discover(struct sbx__client *cl, long long deadline, sbx_error *e)
{
    const char *ext = NULL, *core = NULL;
    sbx_result r;
    pthread_mutex_lock(&cl->mu);
    ext = cl->ext_version;
    core = cl->core_version;
    pthread_mutex_unlock(&cl->mu);
    if (ext && core) return SBX_OK;
    r = sbx__discover_group(cl, SBX__GROUP_EXT, &ext, deadline, e);
    if (r == SBX_OK) r = sbx__discover_group(cl, SBX__GROUP_CORE, &core, deadline, e);
    if (r != SBX_OK) return sbx__no_cluster(cl, r, e);
    /* set once: threads read the versions without the lock after they have
       seen them set under it, so they must never be written again */
    pthread_mutex_lock(&cl->mu);
    if (!cl->ext_version || !cl->core_version) {
        cl->ext_version = ext;
        cl->core_version = core;
    }
    pthread_mutex_unlock(&cl->mu);
    return SBX_OK;
}

/* Start `kubectl proxy` on a unix socket in a private directory (0700), so no
   other local user can borrow our credentials through a TCP port. */
SBX__PRIVATE sbx_result sbx__start_proxy(struct sbx__client *cl, int timeout_ms, sbx_error *e)
{
    const char *tmp = getenv("TMPDIR");
    char dir[256], url[320];
    sbx_result r;
    if (!tmp || !*tmp || strlen(tmp) > 60) tmp = "/tmp";
    snprintf(dir, sizeof dir, "%s/sbx-proxy-XXXXXX", tmp);
    if (!mkdtemp(dir)) return sbx__fail_sys(e, SBX_ERR_SYS, errno, "mkdtemp %s", dir);
    cl->sockdir = sbx__strdup(&cl->a, dir);
    if (!cl->sockdir) { rmdir(dir); return sbx__oom(e, NULL); }
    if (cl->sup) sbx__sup_add_dir(cl->sup, dir); /* removed if we die */
    r = sbx__proxy_spawn(cl, sbx__deadline(timeout_ms), e);
    if (r != SBX_OK) return sbx__err_prefix(e, "start kubectl proxy");
    sbx__log(&cl->log, SBX_LOG_INFO, SBX_EVENT_PROXY_STARTED, NULL, 0, "kubectl proxy started (pid %ld) in %s",
             (long)cl->proxy.pid, dir);
    snprintf(url, sizeof url, "unix:%s/proxy.sock", dir);
    return (sbx_result)sbx__endpoint_parse(url, &cl->api, e);
}

/* ---- leases: shutdownTime renewed while we live (sbx__lease_add below) -- */
/* A claim with a lease carries spec.lifecycle.shutdownTime = now + lease; one
   thread per client (started by the first leased sandbox, joined at client
   close) moves it forward every lease/3 with a merge-patch, never past a TTL's
   fixed expiry. When the process, or the machine, is gone, the controller
   deletes the claim at most a lease later. A failed renewal is tried again
   after a second (the next ones still fit the lease); 404 ends the lease. */

struct sbx__lease {
    struct sbx__lease *next;
    char ns[64];
    char claim[254];
    int lease_s;
    long long expiry;         /* TTL's fixed end (epoch s), 0 = none */
    long long due;            /* next renewal (sbx__now_ms clock) */
    int done;                 /* no more renewals (gone, or at the TTL's end) */
    unsigned long long renewals;
};

/* wait on cl->lcv until woken or `deadline` (lmu held) */
SBX__PRIVATE void sbx__lease_wait(struct sbx__client *cl, long long deadline)
{
    long long left = deadline - sbx__now_ms();
    if (left <= 0) return;
    if (left > 3600000LL) left = 3600000LL;
    sbx__cond_wait_ms(&cl->lcv, &cl->lmu, cl->lmono, left);
}

/* PATCH spec.lifecycle.shutdownTime to `until` (epoch s); 1 = done, 0 = ok, -1 = failed */
SBX__PRIVATE int sbx__lease_patch(struct sbx__client *cl, const char *ns, const char *claim, long long until,
                                  long long deadline)
{
    char target[600], when[40], body[120];
    sbx__buf out;
    sbx_error e;
    int status = 0;
    sbx_result r;
    snprintf(target, sizeof target, "/apis/" SBX__GROUP_EXT "/%s/namespaces/%s/sandboxclaims/%s", cl->ext_version, ns,
             claim);
    sbx__rfc3339(when, until);
    snprintf(body, sizeof body, "{\"spec\":{\"lifecycle\":{\"shutdownTime\":\"%s\"}}}", when);
    sbx__buf_init(&out, &cl->a);
    r = sbx__api_call(cl, "PATCH", target, body, strlen(body), "application/merge-patch+json", &out, &status,
                      deadline, &e);
    sbx__buf_free(&out);
    if (r == SBX_OK && status == 404) return 1;
    return r == SBX_OK && status == 200 ? 0 : -1;
}

SBX__PRIVATE void *sbx__lease_thread(void *arg)
{
    struct sbx__client *cl = (struct sbx__client *)arg;
    pthread_mutex_lock(&cl->lmu);
    while (!cl->lstop) {
        struct sbx__lease *l, *due = NULL;
        long long next = sbx__now_ms() + 3600000LL, until, period;
        char ns[64], claim[254];
        int rc;
        for (l = cl->leases; l; l = l->next) {
            if (l->done) continue;
            if (!due || l->due < due->due) due = l;
        }
        if (due && due->due < next) next = due->due;
        if (!due || sbx__now_ms() < next) {
            sbx__lease_wait(cl, next);
            continue;
        }
        period = (long long)due->lease_s * 1000 / 3;
        if (period < 200) period = 200;
        until = sbx__epoch_up() + due->lease_s;
        if (due->expiry && until >= due->expiry) until = due->expiry;
        memcpy(ns, due->ns, sizeof ns);
        memcpy(claim, due->claim, sizeof claim);
        cl->lbusy = due;
        pthread_mutex_unlock(&cl->lmu);
        /* never longer than a period: the next renewal must still fit the lease */
        rc = sbx__lease_patch(cl, ns, claim, until,
                              sbx__deadline(cl->api_timeout_ms < period ? cl->api_timeout_ms : (int)period));
        pthread_mutex_lock(&cl->lmu);
        cl->lbusy = NULL;
        pthread_cond_broadcast(&cl->lcv);
        if (rc == 0) due->renewals++;
        if (rc == 1 || (rc == 0 && due->expiry && until >= due->expiry)) due->done = 1;
        due->due = sbx__now_ms() + (rc < 0 && period > 1000 ? 1000 : period);
    }
    pthread_mutex_unlock(&cl->lmu);
    return NULL;
}

/* Client close: stop and join the thread, drop what is left. */
SBX__PRIVATE void sbx__lease_stop(struct sbx__client *cl)
{
    pthread_mutex_lock(&cl->lmu);
    cl->lstop = 1;
    pthread_cond_broadcast(&cl->lcv);
    pthread_mutex_unlock(&cl->lmu);
    if (cl->lthread_on) pthread_join(cl->lthread, NULL);
    cl->lthread_on = 0;
    while (cl->leases) {
        struct sbx__lease *l = cl->leases;
        cl->leases = l->next;
        sbx__free(&cl->a, l);
    }
}

SBX__PRIVATE void sbx__client_free(struct sbx__client *cl)
{
    int i, n = 0, sup;
    if (!cl) return;
    sbx__lease_stop(cl); /* before the proxy goes: a renewal in flight ends on its own */
    for (i = 0; i < cl->nidle; i++) {
        sbx__conn_free(cl->idle[i]);
        sbx__free(&cl->a, cl->idle[i]);
    }
    /* SIGINT is kubectl port-forward's clean stop (GOAWAY, exit 0) */
    if (cl->rtun_started) {
        sbx__proc_stop(&cl->rtun, SIGINT, 2000);
        n++;
    }
    if (cl->proxy_started) {
        sbx__proc_stop(&cl->proxy, SIGTERM, 2000);
        n++;
    }
    sup = cl->sup != NULL;
    sbx__sup_finish(cl->sup, 3000); /* our children are stopped: it finds nothing to kill */
    cl->sup = NULL;
    if (n || sup)
        sbx__log(&cl->log, SBX_LOG_INFO, SBX_EVENT_CHILDREN_STOPPED, NULL, n, "client closed: %d kubectl child%s stopped%s",
                 n, n == 1 ? "" : "ren", sup ? ", supervisor done" : "");
    if (cl->sockdir) {
        char sock[300];
        snprintf(sock, sizeof sock, "%s/proxy.sock", cl->sockdir);
        unlink(sock);
        rmdir(cl->sockdir);
        sbx__free(&cl->a, cl->sockdir);
    }
    sbx__free(&cl->a, cl->kubectl);
    sbx__free(&cl->a, cl->kubeconfig);
    sbx__free(&cl->a, cl->context);
    sbx__free(&cl->a, cl->ns);
    sbx__free(&cl->a, cl->router_ns);
    sbx__free(&cl->a, cl->router_token);
    sbx__free(&cl->a, cl->gateway_name);
    sbx__free(&cl->a, cl->gateway_ns);
    pthread_mutex_destroy(&cl->mu);
    pthread_mutex_destroy(&cl->tmu);
    pthread_mutex_destroy(&cl->pmu);
    pthread_cond_destroy(&cl->lcv);
    pthread_mutex_destroy(&cl->lmu);
    {
        sbx_allocator a = cl->a;
        sbx__free(&a, cl);
    }
}

/* ======================================================================== */
/* >>claim: watching, the claim, what opens remember                        */
/* ======================================================================== */

/* ---- watching one object ------------------------------------------------ */

enum { SBX__EV_ADDED = 1, SBX__EV_MODIFIED = 2, SBX__EV_DELETED = 3 };

/* Called for each ADDED / MODIFIED / DELETED event of the watched object:
   1 = done, 0 = keep watching, negative = failed for good (e set). */
typedef int (*sbx__watch_fn)(void *ctx, int ev, const char *js, const sbx__jtok *t, int n, int obj, sbx_error *e);

/* Watch the object `name` of the collection `base` (".../namespaces/NS/PLURAL")
   from resourceVersion rv0 ("" = the current state first) until fn says done
   or the deadline passes. One watch at a time, re-opened on a clean end, from
   scratch after 410 Gone, with a bounded backoff on transient failures (5xx,
   429, broken streams). Returns SBX_OK (fn said done), fn's code, a hard error,
   or SBX_ERR_TIMEOUT (e may then describe the last transient failure). */
SBX__PRIVATE sbx_result sbx__watch(struct sbx__client *cl, const char *base, const char *name, const char *rv0,
                                   long long deadline, const char *what, sbx__watch_fn fn, void *ctx, sbx_error *e)
{
    char rv[64], target[640];
    sbx__conn conn;
    sbx__buf line;
    int backoff = 100, watches = 0;
    sbx_result result = SBX_ERR_TIMEOUT;
    snprintf(rv, sizeof rv, "%s", rv0 ? rv0 : "");
    sbx__conn_init(&conn, &cl->api, &cl->a);
    sbx__buf_init(&line, &cl->a);
    for (;;) {
        sbx__http_req req;
        sbx__http_resp resp;
        int left = sbx__ms_left(deadline), status, transient = 0, done = 0, events = 0;
        int from_scratch = !rv[0], expired = 0;
        const char *why = NULL;
        sbx_result r;
        if (left <= 0) break;
        snprintf(target, sizeof target,
                 "%s?watch=true&allowWatchBookmarks=true&fieldSelector=metadata.name%%3D%s&timeoutSeconds=%d%s%s",
                 base, name, left / 1000 + 1, rv[0] ? "&resourceVersion=" : "", rv);
        sbx__http_req_init(&req);
        req.method = "GET";
        req.target = target;
        req.headers = "Accept: application/json\r\n";
        req.idempotent = 1;
        watches++;
        r = (sbx_result)sbx__http_send(&conn, &req, &resp, deadline, e);
        status = resp.status;
        /* a dead kubectl proxy is restarted before watching again; one that
           cannot be restarted ends the watch with its reason */
        if (r == SBX_ERR_CONNECT) r = sbx__proxy_ensure(cl, deadline, NULL, e) == SBX_OK ? r : SBX_ERR_SPAWN;
        if (r != SBX_OK) {
            transient = r != SBX_ERR_TIMEOUT && r != SBX_ERR_NOMEM && r != SBX_ERR_SPAWN;
            if (!transient) result = r;
            done = r == SBX_ERR_SPAWN;
        } else if (status == 410 && !from_scratch) {
            expired = 1; /* too old: watch again from the current state */
            sbx__http_body_discard(&conn, &resp, deadline, e);
        } else if (status >= 300 && status < 400) {
            result = sbx__redirect_fail(e, &resp, what);
            done = 1;
        } else if (status != 200) {
            sbx__buf body;
            sbx__buf_init(&body, &cl->a);
            sbx__http_body_mem(&conn, &resp, &body, 65536, deadline, e);
            if (status == 429 || status >= 500 || status == 410) {
                transient = 1; /* (410 without a resourceVersion: a confused server) */
                sbx__api_fail(e, status, &body, what);
            } else {
                result = sbx__api_fail(e, status, &body, what);
                done = 1;
            }
            sbx__buf_free(&body);
        } else {
            for (;;) {
                sbx__jtok *t = NULL;
                int n, type, obj, ev = 0;
                line.len = 0;
                r = (sbx_result)sbx__http_body_line(&conn, &resp, &line, SBX_MAX_LINE_BYTES, deadline, e);
                if (r == 0) break;          /* clean end: watch again from rv */
                if (r < 0) {
                    if (r == SBX_ERR_TIMEOUT || r == SBX_ERR_NOMEM || r == SBX_ERR_TOO_BIG) {
                        result = r;
                        done = 1;
                    } else {
                        transient = 1;
                    }
                    break;
                }
                if (line.len == 0 || (line.len == 1 && line.data[0] == '\r')) continue;
                events++;
                n = sbx__json_parse_alloc(&cl->a, line.data, line.len, &t);
                type = n > 0 ? sbx__json_mem(line.data, t, n, 0, "type") : -1;
                obj = n > 0 ? sbx__json_mem(line.data, t, n, 0, "object") : -1;
                if (type < 0 || obj < 0) {
                    result = sbx__fail(e, SBX_ERR_PROTOCOL, "%s: malformed event: %.80s", what, line.data);
                    done = 1;
                } else if (sbx__json_eq(line.data, t, type, "ERROR")) {
                    long long code = 0;
                    char msg[256];
                    int c = sbx__json_mem(line.data, t, n, obj, "code");
                    if (c >= 0) sbx__json_int(line.data, t, c, &code);
                    sbx__json_copy_text(&cl->a, line.data, t, sbx__json_mem(line.data, t, n, obj, "message"), msg,
                                        sizeof msg);
                    if (code == 410 && !from_scratch) {
                        expired = 1;
                    } else if (code >= 500 || code == 429 || code == 410) {
                        transient = 1;
                        sbx__fail(e, SBX_ERR_HTTP, "%s: error event %lld: %s", what, code, msg);
                    } else {
                        if (e && code >= 100 && code <= 599) e->http_status = (int)code; /* else no status */
                        result = sbx__fail(e, SBX_ERR_HTTP, "%s: error event %lld: %s", what, code, msg);
                        done = 1;
                    }
                    sbx__free(&cl->a, t);
                    break;
                } else {
                    sbx__json_copy(line.data, t, sbx__json_get(line.data, t, n, obj, "metadata.resourceVersion"),
                                   rv, sizeof rv);
                    if (sbx__json_eq(line.data, t, type, "ADDED")) ev = SBX__EV_ADDED;
                    else if (sbx__json_eq(line.data, t, type, "MODIFIED")) ev = SBX__EV_MODIFIED;
                    else if (sbx__json_eq(line.data, t, type, "DELETED")) ev = SBX__EV_DELETED;
                    if (ev) {
                        int st = fn(ctx, ev, line.data, t, n, obj, e);
                        if (st != 0) {
                            result = st > 0 ? SBX_OK : (sbx_result)st;
                            done = 1;
                        }
                    }
                }
                sbx__free(&cl->a, t);
                if (done) break;
            }
            /* a stream that ends at once, again and again, must not spin */
            if (!done && !transient && !expired && events == 0) {
                transient = 1;
                why = "the stream ended with no event";
            }
            if (!done && !transient) backoff = 100;
        }
        sbx__http_resp_free(&resp);
        if (done || sbx__ms_left(deadline) <= 0) break;
        if (expired) {
            sbx__log(&cl->log, SBX_LOG_WARN, SBX_EVENT_RETRY, name, watches,
                     "%s: resourceVersion %s expired (410 Gone), watching again from the current state", what, rv);
            rv[0] = '\0';
        } else if (transient) {
            /* bounded backoff before watching again; never past the deadline */
            int wait = backoff < sbx__ms_left(deadline) ? backoff : sbx__ms_left(deadline);
            sbx__log(&cl->log, SBX_LOG_WARN, SBX_EVENT_RETRY, name, watches, "%s: %s, again in %d ms", what,
                     why ? why : e && e->msg[0] ? e->msg : "failed", wait);
            sbx__conn_close(&conn);
            if (wait > 0) poll(NULL, 0, wait);
            backoff = backoff * 2 > 2000 ? 2000 : backoff * 2;
        } else {
            sbx__log(&cl->log, SBX_LOG_WARN, SBX_EVENT_RETRY, name, watches,
                     "%s: the stream ended, watching again from resourceVersion %s", what, rv);
        }
    }
    sbx__conn_free(&conn);
    sbx__buf_free(&line);
    return result;
}

/* ---- the claim ---------------------------------------------------------- */

struct sbx__sandbox {
    struct sbx__client *cl;
    int own_client;           /* cl was started by sbx_open/sbx_attach(NULL client): closed with the handle */
    char *ns;
    char *claim;
    char *sandbox;
    char *pod;
    char *pod_ip;
    char *pool;               /* v1beta1: the warm pool the claim names */
    char *template_name;      /* v1alpha1: the template the claim names */
    char memo_key[256];       /* sbx_open: "t/TEMPLATE" or "p/POOL" in the client's memo ("" none) */
    int pool_memo;            /* s->pool came from the memo, not from a LIST */
    int pool_gone;            /* the claim said WarmPoolNotFound */
    int speculative;          /* the route is tried before the Sandbox is read: no fallback */
    int claim_created;        /* close (or a failed open) must delete it */
    int create_tries;         /* POSTs the create took (for the logger) */
    int tunnel_starts;        /* kubectl port-forward starts of this sandbox (for the logger) */
    int claim_maybe;          /* a create may have landed unseen: rollback deletes it if it is ours */
    int claim_owned;          /* registered with the supervisor (created by sbx_open) */
    char nonce[17];           /* sandbox.h/open-nonce of this open: proves a claim is ours */
    int lease_s;              /* lease_seconds; 0 = none */
    long long expiry;         /* ttl_seconds: fixed shutdownTime (epoch s); 0 = none */
    struct sbx__lease *lease; /* renewed by the client's lease thread */
    sbx_runtime want;         /* as configured */
    sbx_runtime runtime;      /* as found: PYTHON or SANDBOXD once connected */
    int server_port;          /* 0 until chosen (config, runtime or pod template) */
    int grpc_port;            /* sandboxd's gRPC port in the pod (config, default 9090) */
    int grpc_local;           /* kubectl route: the local port forwarded to grpc_port (0 none) */
    struct sbx__gchan *gchan; /* the gRPC connection, made on the first gRPC call */
    int template_port;        /* first containerPort of the Sandbox's pod template */
    /* the route */
    char *prefix;             /* API_PROXY: "/api/v1/namespaces/NS/pods/POD:PORT/proxy" */
    char *rhdr;               /* router modes: X-Sandbox-* and Authorization lines */
    sbx__conn rt;             /* keep-alive connection to the route's endpoint */
    int rt_ready;
    unsigned rt_gen;          /* ROUTER_TUNNEL: the tunnel generation rt points at */
    sbx__proc tunnel;         /* POD_TUNNEL over kubectl port-forward */
    int tunnel_started;
    int tunnel_fails;         /* connections failed in a row through the running tunnel */
    int pod_ws;               /* POD_TUNNEL: 1 WebSocket, 0 kubectl, -1 not chosen yet */
    sbx__ws *ws;              /* POD_TUNNEL over WebSocket: rt's transport */
    int local_port;
    int call_timeout_ms;
    int tunnel_timeout_ms;
    size_t max_output;
};

/* Reasons after which the claim will never become Ready. */
SBX__PRIVATE int sbx__terminal_reason(const char *reason)
{
    static const char *const terminal[] = {"InvalidMetadata", "EnvVarsInjectionRejected",
                                           "VolumeClaimTemplatesError", "ClaimExpired",
                                           "SandboxExpired", NULL};
    int i;
    for (i = 0; terminal[i]; i++)
        if (strcmp(reason, terminal[i]) == 0) return 1;
    return 0;
}

/* "/apis/extensions.agents.x-k8s.io/V/namespaces/NS/sandboxclaims" + suffix */
SBX__PRIVATE void sbx__claims_path(const struct sbx__client *cl, const char *ns, char *out, size_t cap,
                                   const char *suffix)
{
    snprintf(out, cap, "/apis/" SBX__GROUP_EXT "/%s/namespaces/%s/sandboxclaims%s", cl->ext_version, ns, suffix);
}

SBX__PRIVATE void sbx__claim_path(const struct sbx__sandbox *s, char *out, size_t cap, const char *suffix)
{
    sbx__claims_path(s->cl, s->ns, out, cap, suffix);
}

/* What a claim object says. */
typedef struct sbx__claim_info {
    char sandbox[254];        /* status.sandbox.name ("Name" before #440) */
    char ready[16];           /* the Ready condition's status: "True", "False", "" */
    char reason[128];
    char message[SBX_ERRMSG_SIZE / 2];
    int deleting;             /* metadata.deletionTimestamp is set */
} sbx__claim_info;

SBX__PRIVATE void sbx__claim_info_read(const sbx_allocator *a, const char *js, const sbx__jtok *t, int n, int obj,
                                       sbx__claim_info *ci)
{
    int conds, ready, sb;
    memset(ci, 0, sizeof *ci);
    sb = sbx__json_get(js, t, n, obj, "status.sandbox");
    if (sb >= 0) {
        int nm = sbx__json_mem(js, t, n, sb, "name");
        if (nm < 0) nm = sbx__json_mem(js, t, n, sb, "Name"); /* controllers before #440 */
        sbx__json_copy(js, t, nm, ci->sandbox, sizeof ci->sandbox);
    }
    conds = sbx__json_get(js, t, n, obj, "status.conditions");
    ready = conds >= 0 && t[conds].type == SBX__JSON_ARRAY ? sbx__json_find(js, t, n, conds, "type", "Ready") : -1;
    if (ready >= 0) {
        sbx__json_copy(js, t, sbx__json_mem(js, t, n, ready, "status"), ci->ready, sizeof ci->ready);
        sbx__json_copy_text(a, js, t, sbx__json_mem(js, t, n, ready, "reason"), ci->reason, sizeof ci->reason);
        sbx__json_copy_text(a, js, t, sbx__json_mem(js, t, n, ready, "message"), ci->message, sizeof ci->message);
    }
    ci->deleting = sbx__json_get(js, t, n, obj, "metadata.deletionTimestamp") >= 0;
}

/* Store the sandbox name of a Ready claim. */
SBX__PRIVATE sbx_result sbx__claim_take_sandbox(struct sbx__sandbox *s, const char *name, sbx_error *e)
{
    sbx__free(&s->cl->a, s->sandbox);
    s->sandbox = sbx__strdup(&s->cl->a, name);
    if (!s->sandbox) return sbx__oom(e, NULL);
    if (!sbx__valid_dns_name(s->sandbox, 1))
        return sbx__fail(e, SBX_ERR_PROTOCOL, "claim \"%s\" names an invalid sandbox \"%.80s\"", s->claim, name);
    return SBX_OK;
}

/* ---- what opens remember (cl->memo, under mu) ---------------------------- */

SBX__PRIVATE sbx__memo *sbx__memo_find(struct sbx__client *cl, const char *ns, const char *key)
{
    int i;
    if (!key[0]) return NULL;
    for (i = 0; i < cl->nmemo; i++)
        if (strcmp(cl->memo[i].ns, ns) == 0 && strcmp(cl->memo[i].key, key) == 0) return &cl->memo[i];
    return NULL;
}

/* The entry of (ns, key), made when absent (the oldest one goes); NULL when
   the names do not fit. */
SBX__PRIVATE sbx__memo *sbx__memo_slot(struct sbx__client *cl, const char *ns, const char *key)
{
    sbx__memo *m = sbx__memo_find(cl, ns, key);
    if (m || !key[0] || strlen(ns) >= sizeof m->ns || strlen(key) >= sizeof m->key) return m;
    if (cl->nmemo < SBX__MEMO_MAX) {
        m = &cl->memo[cl->nmemo++];
    } else {
        m = &cl->memo[cl->memo_next];
        cl->memo_next = (cl->memo_next + 1) % SBX__MEMO_MAX;
    }
    memset(m, 0, sizeof *m);
    memcpy(m->ns, ns, strlen(ns) + 1);
    memcpy(m->key, key, strlen(key) + 1);
    m->port = -1;
    return m;
}

/* The pod template's port last seen for this open's template or pool; -1 unknown. */
SBX__PRIVATE int sbx__memo_port(struct sbx__sandbox *s)
{
    sbx__memo *m;
    int port;
    pthread_mutex_lock(&s->cl->mu);
    m = sbx__memo_find(s->cl, s->ns, s->memo_key);
    port = m ? m->port : -1;
    pthread_mutex_unlock(&s->cl->mu);
    return port;
}

SBX__PRIVATE void sbx__memo_set_port(struct sbx__sandbox *s, int port)
{
    sbx__memo *m;
    pthread_mutex_lock(&s->cl->mu);
    m = sbx__memo_slot(s->cl, s->ns, s->memo_key);
    if (m) m->port = port;
    pthread_mutex_unlock(&s->cl->mu);
}

/* The pool a claim named is gone: the next open lists the pools again. */
SBX__PRIVATE void sbx__memo_forget_pool(struct sbx__sandbox *s)
{
    sbx__memo *m;
    pthread_mutex_lock(&s->cl->mu);
    m = sbx__memo_find(s->cl, s->ns, s->memo_key);
    if (m) m->pool[0] = '\0';
    pthread_mutex_unlock(&s->cl->mu);
}

/* v1beta1 claims name a warm pool. Given a template, pick the pool of that
   template in the namespace: most ready sandboxes first, then most replicas.
   When at most one pool of the template has replicas, that choice cannot
   change with readiness: it is remembered (one LIST per client, not per
   open) until a claim on that pool says WarmPoolNotFound. */
SBX__PRIVATE sbx_result sbx__resolve_pool(struct sbx__sandbox *s, const char *tmpl, long long deadline, sbx_error *e)
{
    char target[256], best[254];
    sbx__buf body;
    sbx__jtok *t = NULL;
    sbx__memo *m;
    int status = 0, n, items, i, k, live = 0;
    long long best_ready = -1, best_replicas = -1;
    sbx_result r;
    best[0] = '\0';
    s->pool_memo = 0;
    pthread_mutex_lock(&s->cl->mu);
    m = sbx__memo_find(s->cl, s->ns, s->memo_key);
    if (m && m->pool[0]) snprintf(best, sizeof best, "%s", m->pool);
    pthread_mutex_unlock(&s->cl->mu);
    if (best[0]) {
        s->pool = sbx__strdup(&s->cl->a, best);
        if (!s->pool) return sbx__oom(e, NULL);
        s->pool_memo = 1;
        return SBX_OK;
    }
    snprintf(target, sizeof target, "/apis/" SBX__GROUP_EXT "/%s/namespaces/%s/sandboxwarmpools",
             s->cl->ext_version, s->ns);
    sbx__buf_init(&body, &s->cl->a);
    r = sbx__api_call(s->cl, "GET", target, NULL, 0, NULL, &body, &status, deadline, e);
    if (r == SBX_OK && status != 200) r = sbx__api_fail(e, status, &body, "list SandboxWarmPools");
    if (r == SBX_OK) {
        items = sbx__json_doc(&s->cl->a, &body, &t, &n, "items", SBX__JSON_ARRAY);
        if (items < 0) {
            r = sbx__fail(e, SBX_ERR_PROTOCOL, "list SandboxWarmPools: not a list");
        } else {
            SBX__JSON_FOREACH(t, items, i, k) {
                long long ready = 0, replicas = 0;
                int tr = sbx__json_get(body.data, t, n, i, "spec.sandboxTemplateRef.name");
                int nm = sbx__json_get(body.data, t, n, i, "metadata.name");
                int rd = sbx__json_get(body.data, t, n, i, "status.readyReplicas");
                int rp = sbx__json_get(body.data, t, n, i, "spec.replicas");
                if (tr < 0 || nm < 0 || !sbx__json_eq(body.data, t, tr, tmpl)) continue;
                if (rd >= 0) sbx__json_int(body.data, t, rd, &ready);
                if (rp >= 0) sbx__json_int(body.data, t, rp, &replicas);
                if (replicas > 0) live++;
                if (ready > best_ready || (ready == best_ready && replicas > best_replicas)) {
                    best_ready = ready;
                    best_replicas = replicas;
                    sbx__json_copy(body.data, t, nm, best, sizeof best);
                }
            }
            if (!best[0])
                r = sbx__fail(e, SBX_ERR_NOT_FOUND,
                              "no SandboxWarmPool in namespace \"%s\" uses template \"%s\"; on v1beta1 "
                              "clusters a claim names a warm pool: create one with "
                              "spec.sandboxTemplateRef.name: %s (replicas: 0 gives cold starts) "
                              "or set warm_pool", s->ns, tmpl, tmpl);
        }
        sbx__free(&s->cl->a, t);
    }
    sbx__buf_free(&body);
    if (r == SBX_OK) {
        s->pool = sbx__strdup(&s->cl->a, best);
        if (!s->pool) r = sbx__oom(e, NULL);
    }
    if (r == SBX_OK) {
        pthread_mutex_lock(&s->cl->mu);
        m = sbx__memo_slot(s->cl, s->ns, s->memo_key);
        if (m) snprintf(m->pool, sizeof m->pool, "%s", live <= 1 ? best : "");
        pthread_mutex_unlock(&s->cl->mu);
    }
    return r;
}

/* The JSON body of a new claim. */
SBX__PRIVATE sbx_result sbx__claim_body(const struct sbx__sandbox *s, const sbx_sandbox_config *cfg, sbx__buf *b,
                                        sbx_error *e)
{
    char now[40], expiry[40];
    const char *const *kv;
    int has_created_by = 0, has_requested_at = 0, first;
    sbx_result r = SBX_OK;
    int beta = strcmp(s->cl->ext_version, "v1beta1") == 0;
    const struct sbx__client *cl = s->cl;
    for (kv = cfg->labels; kv && kv[0] && kv[1]; kv += 2)
        if (strcmp(kv[0], "agents.x-k8s.io/created-by") == 0) has_created_by = 1;
    for (kv = cfg->annotations; kv && kv[0] && kv[1]; kv += 2)
        if (strcmp(kv[0], "agents.x-k8s.io/client-first-requested-at") == 0) has_requested_at = 1;
    sbx__rfc3339(now, -1);
    if (sbx__buf_printf(b, "{\"apiVersion\":\"" SBX__GROUP_EXT "/%s\",\"kind\":\"SandboxClaim\","
                           "\"metadata\":{\"name\":\"%s\",\"labels\":{", s->cl->ext_version, s->claim) != 0)
        return sbx__oom(e, NULL);
    /* ours first; a user key of the same name is skipped (no duplicate keys) */
    sbx__buf_puts(b, "\"" SBX__OWNER_LABEL "\":\"sandbox.h\"");
    first = 0;
    if (!has_created_by) sbx__buf_puts(b, ",\"agents.x-k8s.io/created-by\":\"sandbox-h\"");
    for (kv = cfg->labels; r == SBX_OK && kv && kv[0]; kv += 2, first = 0) {
        if (!kv[1]) return sbx__fail(e, SBX_ERR_INVALID_ARG, "labels: key \"%.80s\" has no value", kv[0]);
        if (strcmp(kv[0], SBX__OWNER_LABEL) == 0) continue;
        if (!first) sbx__buf_puts(b, ",");
        r = sbx__jstr(b, kv[0], "a label key", e);
        if (r == SBX_OK) sbx__buf_puts(b, ":");
        if (r == SBX_OK) r = sbx__jstr(b, kv[1], "a label value", e);
    }
    sbx__buf_puts(b, "},\"annotations\":{");
    sbx__buf_printf(b, "\"sandbox.h/owner-host\":\"%s\",\"sandbox.h/owner-pid\":\"%s\","
                       "\"sandbox.h/owner-start\":\"%s\",\"" SBX__NONCE_KEY "\":\"%s\"",
                    cl->owner_host, cl->owner_pid, cl->owner_start, s->nonce);
    first = 0;
    if (!has_requested_at) sbx__buf_printf(b, ",\"agents.x-k8s.io/client-first-requested-at\":\"%s\"", now);
    for (kv = cfg->annotations; r == SBX_OK && kv && kv[0]; kv += 2, first = 0) {
        if (!kv[1]) return sbx__fail(e, SBX_ERR_INVALID_ARG, "annotations: key \"%.80s\" has no value", kv[0]);
        if (strncmp(kv[0], "sandbox.h/", 10) == 0) continue; /* ours */
        if (!first) sbx__buf_puts(b, ",");
        r = sbx__jstr(b, kv[0], "an annotation key", e);
        if (r == SBX_OK) sbx__buf_puts(b, ":");
        if (r == SBX_OK) r = sbx__jstr(b, kv[1], "an annotation value", e);
    }
    if (r != SBX_OK) return r;
    sbx__buf_puts(b, "}},\"spec\":{");
    if (beta) {
        sbx__buf_printf(b, "\"warmPoolRef\":{\"name\":\"%s\"}", s->pool);
    } else {
        sbx__buf_printf(b, "\"sandboxTemplateRef\":{\"name\":\"%s\"}", s->template_name);
        if (s->pool) sbx__buf_printf(b, ",\"warmpool\":\"%s\"", s->pool);
    }
    if (s->expiry || cfg->lease_seconds > 0) {
        /* the earlier of the TTL's end (fixed by sbx_open before the first
           create) and the lease's; the policy was checked against the three
           known values */
        long long at = s->expiry, lease_end = sbx__epoch_up() + cfg->lease_seconds;
        if (cfg->lease_seconds > 0 && (!at || lease_end < at)) at = lease_end;
        sbx__rfc3339(expiry, at);
        sbx__buf_printf(b, ",\"lifecycle\":{\"shutdownTime\":\"%s\",\"shutdownPolicy\":\"%s\"}", expiry,
                        cfg->shutdown_policy && *cfg->shutdown_policy ? cfg->shutdown_policy : "Delete");
    }
    if ((cfg->pod_labels && cfg->pod_labels[0]) || (cfg->pod_annotations && cfg->pod_annotations[0])) {
        static const char *const none[] = {NULL};
        sbx__buf_puts(b, ",\"additionalPodMetadata\":{\"labels\":");
        r = sbx__json_kv(b, cfg->pod_labels ? cfg->pod_labels : none, "pod_labels", e);
        if (r == SBX_OK) sbx__buf_puts(b, ",\"annotations\":");
        if (r == SBX_OK) r = sbx__json_kv(b, cfg->pod_annotations ? cfg->pod_annotations : none, "pod_annotations", e);
        if (r == SBX_OK) sbx__buf_puts(b, "}");
    }
    if (r == SBX_OK && cfg->env && cfg->env[0]) {
        sbx__buf_puts(b, ",\"env\":[");
        for (kv = cfg->env; r == SBX_OK && kv[0]; kv += 2) {
            if (!kv[1]) return sbx__fail(e, SBX_ERR_INVALID_ARG, "env: \"%.80s\" has no value", kv[0]);
            if (kv != cfg->env) sbx__buf_puts(b, ",");
            sbx__buf_puts(b, "{\"name\":");
            r = sbx__jstr(b, kv[0], "env", e);
            if (r == SBX_OK) sbx__buf_puts(b, ",\"value\":");
            if (r == SBX_OK) r = sbx__jstr(b, kv[1], "env", e);
            if (r == SBX_OK) sbx__buf_puts(b, "}");
        }
        if (r == SBX_OK) sbx__buf_puts(b, "]");
    }
    if (r != SBX_OK) return r;
    if (sbx__buf_puts(b, "}}") != 0) return sbx__oom(e, NULL);
    return SBX_OK;
}

/* GET the claim named s->claim and say whether it is the one this open
   created: *ours = 1 (its nonce is ours; uid, if given, is filled), 0
   (someone else's), -1 (there is none). */
SBX__PRIVATE sbx_result sbx__claim_is_ours(struct sbx__sandbox *s, int *ours, char *uid, size_t uidcap,
                                           long long deadline, sbx_error *e)
{
    char target[512], suffix[300], nonce[64];
    sbx__buf body;
    sbx__jtok *t = NULL;
    int status = 0, n;
    sbx_result r;
    *ours = 0;
    snprintf(suffix, sizeof suffix, "/%s", s->claim);
    sbx__claim_path(s, target, sizeof target, suffix);
    sbx__buf_init(&body, &s->cl->a);
    r = sbx__api_call(s->cl, "GET", target, NULL, 0, NULL, &body, &status, deadline, e);
    if (r == SBX_OK && status == 404) {
        *ours = -1;
    } else if (r == SBX_OK && status != 200) {
        r = sbx__api_fail(e, status, &body, "get SandboxClaim");
    } else if (r == SBX_OK) {
        if (sbx__json_doc(&s->cl->a, &body, &t, &n, "", SBX__JSON_OBJECT) < 0) {
            r = sbx__fail(e, n == SBX__JSON_ERR_NOMEM ? SBX_ERR_NOMEM : SBX_ERR_PROTOCOL,
                          "get SandboxClaim: the answer is not a JSON object");
        } else {
            int ann = sbx__json_get(body.data, t, n, 0, "metadata.annotations");
            sbx__json_copy(body.data, t, ann >= 0 ? sbx__json_mem(body.data, t, n, ann, SBX__NONCE_KEY) : -1, nonce,
                           sizeof nonce);
            *ours = s->nonce[0] && strcmp(nonce, s->nonce) == 0;
            if (*ours && uid)
                sbx__json_copy(body.data, t, sbx__json_get(body.data, t, n, 0, "metadata.uid"), uid, uidcap);
        }
        sbx__free(&s->cl->a, t);
    }
    sbx__buf_free(&body);
    return r;
}

/* POST the claim; remembers the resourceVersion to watch from. A create that
   got a 5xx, a 429 or lost its connection is sent again, with the same name
   and nonce, after a jittered backoff inside the deadline. A 409 after an
   attempt that may have landed is looked at: our own nonce means that attempt
   did land, and the claim is adopted; any other claim of that name is left
   alone and the 409 reported. */
SBX__PRIVATE sbx_result sbx__create_claim(struct sbx__sandbox *s, const sbx_sandbox_config *cfg, char *rv,
                                          size_t rvcap, long long deadline, sbx_error *e)
{
    char target[256];
    sbx__buf req, body;
    sbx__jtok *t = NULL;
    int status = 0, n, attempt;
    sbx_result r;
    sbx__buf_init(&req, &s->cl->a);
    sbx__buf_init(&body, &s->cl->a);
    r = sbx__claim_body(s, cfg, &req, e);
    sbx__claim_path(s, target, sizeof target, "");
    for (attempt = 1; r == SBX_OK; attempt++) {
        long long wait = -1;
        r = sbx__api_call(s->cl, "POST", target, req.data, req.len, "application/json", &body, &status, deadline, e);
        if (r == SBX_OK && (status == 201 || status == 200)) {
            s->claim_created = 1;
            s->claim_maybe = 0;
            n = sbx__json_parse_alloc(&s->cl->a, body.data, body.len, &t);
            rv[0] = '\0';
            if (n > 0) sbx__json_copy(body.data, t, sbx__json_get(body.data, t, n, 0, "metadata.resourceVersion"), rv, rvcap);
            sbx__free(&s->cl->a, t);
            break;
        }
        if (r == SBX_OK && status == 409 && s->claim_maybe) {
            int ours = 0;
            sbx_error ge;
            sbx__err_clear(&ge);
            r = sbx__claim_is_ours(s, &ours, NULL, 0, deadline, &ge);
            if (r != SBX_OK) {
                *e = ge;
                sbx__err_prefix(e, "create SandboxClaim answered 409 after an earlier try may have created it, "
                                "and looking at it failed");
                break;
            }
            if (ours == 1) { /* an earlier try landed: adopt it */
                s->claim_created = 1;
                s->claim_maybe = 0;
                rv[0] = '\0'; /* it may be Ready already: watch from its current state */
                break;
            }
            if (ours == 0) s->claim_maybe = 0; /* someone else's: never touched */
            r = sbx__api_fail(e, status, &body, "create SandboxClaim");
            if (ours == -1 && attempt < SBX__RETRY_ATTEMPTS) wait = sbx__backoff_ms(attempt); /* gone since */
        } else if (r == SBX_OK && status != 201 && status != 200) {
            /* 409 on a first try: the name is someone else's, never delete it.
               A 5xx may come after the claim was stored (rolled back if ours) */
            if (status >= 500) s->claim_maybe = 1;
            r = sbx__api_fail(e, status, &body, "create SandboxClaim");
            if ((status == 429 || status == 500 || status == 502 || status == 503 || status == 504) &&
                attempt < SBX__RETRY_ATTEMPTS) {
                long long secs = -1;
                if (status == 429) { /* Retry-After, as the Status repeats it */
                    n = sbx__json_parse_alloc(&s->cl->a, body.data, body.len, &t);
                    if (n > 0 && sbx__json_int(body.data, t, sbx__json_get(body.data, t, n, 0,
                                                                         "details.retryAfterSeconds"), &secs) != 0)
                        secs = -1;
                    sbx__free(&s->cl->a, t);
                    t = NULL;
                }
                wait = secs >= 0 && secs < 3600 ? secs * 1000 : sbx__backoff_ms(attempt);
            }
        } else if (r != SBX_OK && req.len && r != SBX_ERR_NOMEM && r != SBX_ERR_INVALID_ARG) {
            s->claim_maybe = 1; /* the request may have reached the server */
            if (r == SBX_ERR_CONNECT && attempt < SBX__RETRY_ATTEMPTS) wait = sbx__backoff_ms(attempt);
        }
        if (wait >= 0 && wait < sbx__ms_left(deadline))
            sbx__log(&s->cl->log, SBX_LOG_WARN, SBX_EVENT_RETRY, s->claim, attempt,
                     "create SandboxClaim: %s, again in %lld ms", e->msg, wait);
        if (wait >= 0 && sbx__retry_wait(wait, deadline)) r = SBX_OK;
        else break;
    }
    s->create_tries = attempt;
    sbx__buf_free(&req);
    sbx__buf_free(&body);
    return r;
}

/* Rollback of a create that may have landed unseen: the claim is deleted
   only when it carries our nonce, and only that object (UID precondition). */
SBX__PRIVATE sbx_result sbx__delete_if_ours(struct sbx__sandbox *s, long long deadline, sbx_error *e)
{
    char uid[128], target[512], suffix[300], pre[300];
    sbx__buf body;
    int ours = 0, status = 0;
    sbx_result r;
    uid[0] = '\0';
    r = sbx__claim_is_ours(s, &ours, uid, sizeof uid, deadline, e);
    if (r != SBX_OK || ours != 1) return r;
    snprintf(suffix, sizeof suffix, "/%s", s->claim);
    sbx__claim_path(s, target, sizeof target, suffix);
    snprintf(pre, sizeof pre, "{\"kind\":\"DeleteOptions\",\"apiVersion\":\"v1\",\"preconditions\":{\"uid\":\"%s\"}}",
             uid);
    sbx__buf_init(&body, &s->cl->a);
    r = sbx__api_call(s->cl, "DELETE", target, uid[0] ? pre : NULL, uid[0] ? strlen(pre) : 0,
                      uid[0] ? "application/json" : NULL, &body, &status, deadline, e);
    /* 404: gone; 409: the UID differs, so the claim of that name is not ours */
    if (r == SBX_OK && status != 200 && status != 202 && status != 404 && status != 409)
        r = sbx__api_fail(e, status, &body, "delete SandboxClaim");
    sbx__buf_free(&body);
    if (r == SBX_OK) s->claim_maybe = 0;
    return r;
}

/* Look at one claim object: 1 = Ready (sandbox name stored), 0 = not yet,
   negative = failed for good. `last` keeps the latest reason for messages. */
SBX__PRIVATE int sbx__claim_state(struct sbx__sandbox *s, const char *js, const sbx__jtok *t, int n, int obj,
                                  char *last, size_t lastcap, sbx_error *e)
{
    sbx__claim_info ci;
    sbx__claim_info_read(&s->cl->a, js, t, n, obj, &ci);
    if (ci.ready[0]) sbx__fmt(last, lastcap, "Ready=%s %s: %s", ci.ready, ci.reason, ci.message);
    if (strcmp(ci.ready, "True") == 0 && ci.sandbox[0]) {
        sbx_result r = sbx__claim_take_sandbox(s, ci.sandbox, e);
        return r == SBX_OK ? 1 : (int)r;
    }
    if (strcmp(ci.reason, "WarmPoolNotFound") == 0) s->pool_gone = 1;
    if (strcmp(ci.reason, "TemplateNotFound") == 0 || strcmp(ci.reason, "WarmPoolNotFound") == 0)
        return sbx__fail(e, SBX_ERR_NOT_FOUND, "claim \"%s\": %s: %s", s->claim, ci.reason, ci.message);
    if (sbx__terminal_reason(ci.reason))
        return sbx__fail(e, SBX_ERR_SANDBOX, "claim \"%s\" failed: %s: %s", s->claim, ci.reason, ci.message);
    return 0;
}

typedef struct sbx__ready_ctx {
    struct sbx__sandbox *s;
    char last[SBX_ERRMSG_SIZE / 2];
} sbx__ready_ctx;

SBX__PRIVATE int sbx__ready_event(void *ctx, int ev, const char *js, const sbx__jtok *t, int n, int obj, sbx_error *e)
{
    sbx__ready_ctx *rc = (sbx__ready_ctx *)ctx;
    if (ev == SBX__EV_DELETED) {
        rc->s->claim_created = 0;
        return sbx__fail(e, SBX_ERR_DELETED, "claim \"%s\" was deleted while waiting for it to become Ready",
                         rc->s->claim);
    }
    return sbx__claim_state(rc->s, js, t, n, obj, rc->last, sizeof rc->last, e);
}

/* Wait for the claim to become Ready by watching it (never polling), from
   the create's resourceVersion. */
SBX__PRIVATE sbx_result sbx__wait_ready(struct sbx__sandbox *s, const char *rv0, long long deadline, sbx_error *e)
{
    char base[256];
    sbx__ready_ctx rc;
    sbx_result r;
    rc.s = s;
    snprintf(rc.last, sizeof rc.last, "no status yet");
    sbx__claim_path(s, base, sizeof base, "");
    r = sbx__watch(s->cl, base, s->claim, rv0, deadline, "watch SandboxClaim", sbx__ready_event, &rc, e);
    if (r == SBX_ERR_TIMEOUT && sbx__ms_left(deadline) == 0)
        return sbx__fail(e, SBX_ERR_TIMEOUT, "claim \"%s\" not Ready in time (%s)", s->claim, rc.last);
    return r;
}

/* GET the claim into `body` (parsed into *t / *n on 200). */
SBX__PRIVATE sbx_result sbx__get_claim(struct sbx__sandbox *s, sbx__buf *body, int *status, long long deadline,
                                       sbx_error *e)
{
    char target[512], suffix[300];
    snprintf(suffix, sizeof suffix, "/%s", s->claim);
    sbx__claim_path(s, target, sizeof target, suffix);
    return sbx__api_call(s->cl, "GET", target, NULL, 0, NULL, body, status, deadline, e);
}

/* What the Sandbox behind a Ready claim says: pod name (annotation, else
   "": the sandbox name), pod IP (IPv4 preferred, else "") and the pod
   template's first containerPort (0: none). */
typedef struct sbx__podinfo {
    char pod[254];
    char ip[64];
    int port;
} sbx__podinfo;

/* GET the Sandbox into *pi; reads s (cl, ns, sandbox) and writes nothing
   else, so it may run beside a route being made. */
SBX__PRIVATE sbx_result sbx__fetch_pod(const struct sbx__sandbox *s, sbx__podinfo *pi, long long deadline,
                                       sbx_error *e)
{
    char target[512];
    sbx__buf body;
    sbx__jtok *t = NULL;
    int status = 0, n, ann, ips, port;
    sbx_result r;
    snprintf(target, sizeof target, "/apis/" SBX__GROUP_CORE "/%s/namespaces/%s/sandboxes/%s",
             s->cl->core_version, s->ns, s->sandbox);
    sbx__buf_init(&body, &s->cl->a);
    pi->pod[0] = pi->ip[0] = '\0';
    pi->port = 0;
    r = sbx__api_call(s->cl, "GET", target, NULL, 0, NULL, &body, &status, deadline, e);
    if (r == SBX_OK && status != 200) r = sbx__api_fail(e, status, &body, "get Sandbox");
    if (r == SBX_OK) {
        n = sbx__json_parse_alloc(&s->cl->a, body.data, body.len, &t);
        if (n <= 0) {
            r = sbx__fail(e, SBX_ERR_PROTOCOL, "get Sandbox %s: the answer is not JSON", s->sandbox);
        } else {
            ann = sbx__json_get(body.data, t, n, 0, "metadata.annotations");
            sbx__json_copy(body.data, t, sbx__json_mem(body.data, t, n, ann, "agents.x-k8s.io/pod-name"), pi->pod,
                           sizeof pi->pod);
            ips = sbx__json_get(body.data, t, n, 0, "status.podIPs");
            if (ips >= 0 && t[ips].type == SBX__JSON_ARRAY) {
                int i, k;
                SBX__JSON_FOREACH(t, ips, i, k) {
                    char cand[64];
                    unsigned char bin[16];
                    int is6;
                    sbx__json_copy(body.data, t, i, cand, sizeof cand);
                    if (t[i].type == SBX__JSON_OBJECT) /* {"ip": "..."} (core PodIP form) */
                        sbx__json_copy(body.data, t, sbx__json_mem(body.data, t, n, i, "ip"), cand, sizeof cand);
                    is6 = strchr(cand, ':') != NULL;
                    if (inet_pton(is6 ? AF_INET6 : AF_INET, cand, bin) != 1) continue; /* not an IP literal */
                    if (!pi->ip[0] || (strchr(pi->ip, ':') && !is6)) snprintf(pi->ip, sizeof pi->ip, "%s", cand);
                }
            }
            port = sbx__json_get(body.data, t, n, 0, "spec.podTemplate.spec.containers[0].ports[0].containerPort");
            if (port >= 0) {
                long long v = 0;
                if (sbx__json_int(body.data, t, port, &v) == 0 && v > 0 && v <= 65535) pi->port = (int)v;
            }
        }
        sbx__free(&s->cl->a, t);
    }
    sbx__buf_free(&body);
    return r;
}

/* Take what the Sandbox said. */
SBX__PRIVATE sbx_result sbx__apply_pod(struct sbx__sandbox *s, const sbx__podinfo *pi, sbx_error *e)
{
    const char *pod = pi->pod, *ip = pi->ip;
    if (pi->port > 0) s->template_port = pi->port;
    sbx__free(&s->cl->a, s->pod);
    sbx__free(&s->cl->a, s->pod_ip);
    s->pod = sbx__strdup(&s->cl->a, pod[0] ? pod : s->sandbox);
    s->pod_ip = ip[0] ? sbx__strdup(&s->cl->a, ip) : NULL;
    if (!s->pod || (ip[0] && !s->pod_ip)) return sbx__oom(e, NULL);
    if (!sbx__valid_dns_name(s->pod, 1))
        return sbx__fail(e, SBX_ERR_PROTOCOL, "Sandbox %s names an invalid pod \"%.80s\"", s->sandbox, s->pod);
    return SBX_OK;
}

/* The Sandbox behind a Ready claim: pod name, pod IP and port, taken. */
SBX__PRIVATE sbx_result sbx__resolve_pod(struct sbx__sandbox *s, long long deadline, sbx_error *e)
{
    sbx__podinfo pi;
    sbx_result r = sbx__fetch_pod(s, &pi, deadline, e);
    return r == SBX_OK ? sbx__apply_pod(s, &pi, e) : r;
}

/* A claim sbx_open created is registered with the supervisor (deleted if we
   die) until it is deleted or detached. Attached claims are not: we did not
   create them. */
SBX__PRIVATE void sbx__claim_own(struct sbx__sandbox *s)
{
    if (s->claim_owned || !s->cl->sup) return;
    if (sbx__sup_claim(s->cl->sup, 1, s->ns, s->claim, s->cl->ext_version) == 0) s->claim_owned = 1;
}

SBX__PRIVATE void sbx__claim_disown(struct sbx__sandbox *s)
{
    if (!s->claim_owned) return;
    sbx__sup_claim(s->cl->sup, 0, s->ns, s->claim, s->cl->ext_version);
    s->claim_owned = 0;
}

/* DELETE a claim by name; 404 counts as done (*gone = 1 then). */
SBX__PRIVATE sbx_result sbx__delete_claim_ns(struct sbx__client *cl, const char *ns, const char *name, int *gone,
                                             long long deadline, sbx_error *e)
{
    char target[512], suffix[300];
    sbx__buf body;
    int status = 0;
    sbx_result r;
    *gone = 0;
    snprintf(suffix, sizeof suffix, "/%s", name);
    sbx__claims_path(cl, ns, target, sizeof target, suffix);
    sbx__buf_init(&body, &cl->a);
    r = sbx__api_call(cl, "DELETE", target, NULL, 0, NULL, &body, &status, deadline, e);
    if (r == SBX_OK && status == 404) *gone = 1;
    else if (r == SBX_OK && status != 200 && status != 202)
        r = sbx__api_fail(e, status, &body, "delete SandboxClaim");
    sbx__buf_free(&body);
    return r;
}

SBX__PRIVATE sbx_result sbx__delete_claim(struct sbx__sandbox *s, long long deadline, sbx_error *e)
{
    int gone = 0;
    sbx_result r = sbx__delete_claim_ns(s->cl, s->ns, s->claim, &gone, deadline, e);
    if (r == SBX_OK) s->claim_created = 0;
    if (r == SBX_OK) sbx__claim_disown(s);
    return r;
}

/* Renew this sandbox's claim from now on (the first one starts the thread). */
SBX__PRIVATE sbx_result sbx__lease_add(struct sbx__sandbox *s, sbx_error *e)
{
    struct sbx__client *cl = s->cl;
    struct sbx__lease *l = (struct sbx__lease *)sbx__malloc(&cl->a, sizeof *l);
    int rc = 0;
    if (!l) return sbx__oom(e, "lease");
    memset(l, 0, sizeof *l);
    snprintf(l->ns, sizeof l->ns, "%s", s->ns);
    snprintf(l->claim, sizeof l->claim, "%s", s->claim);
    l->lease_s = s->lease_s;
    l->expiry = s->expiry;
    l->due = sbx__now_ms() + (long long)s->lease_s * 1000 / 3;
    pthread_mutex_lock(&cl->lmu);
    if (!cl->lthread_on) {
        pthread_attr_t attr;
        rc = pthread_attr_init(&attr);
        if (rc == 0) {
            pthread_attr_setstacksize(&attr, SBX__PROC_STACK);
            rc = pthread_create(&cl->lthread, &attr, sbx__lease_thread, cl);
            pthread_attr_destroy(&attr);
        }
        if (rc == 0) cl->lthread_on = 1;
    }
    if (rc == 0) {
        l->next = cl->leases;
        cl->leases = l;
        s->lease = l;
        pthread_cond_broadcast(&cl->lcv);
    }
    pthread_mutex_unlock(&cl->lmu);
    if (rc != 0) {
        sbx__free(&cl->a, l);
        return sbx__fail_sys(e, SBX_ERR_SYS, rc, "lease: cannot start the renewal thread");
    }
    return SBX_OK;
}

/* Stop renewing (waits for a renewal in flight: bounded by its deadline). */
SBX__PRIVATE void sbx__lease_del(struct sbx__sandbox *s)
{
    struct sbx__client *cl = s->cl;
    struct sbx__lease **pp;
    if (!s->lease) return;
    pthread_mutex_lock(&cl->lmu);
    while (cl->lbusy == s->lease) sbx__lease_wait(cl, sbx__now_ms() + 1000);
    for (pp = &cl->leases; *pp; pp = &(*pp)->next)
        if (*pp == s->lease) {
            *pp = s->lease->next;
            break;
        }
    pthread_mutex_unlock(&cl->lmu);
    sbx__free(&cl->a, s->lease);
    s->lease = NULL;
}

/* Take the lease off a claim: shutdownTime back to the TTL's end, or no lifecycle. */
SBX__PRIVATE sbx_result sbx__lease_lift(struct sbx__client *cl, const char *ns, const char *claim, long long expiry,
                                        long long deadline, sbx_error *e)
{
    char target[512], suffix[300], when[40], body[120];
    sbx__buf out;
    int status = 0;
    sbx_result r;
    snprintf(suffix, sizeof suffix, "/%s", claim);
    sbx__claims_path(cl, ns, target, sizeof target, suffix);
    if (expiry) {
        sbx__rfc3339(when, expiry);
        snprintf(body, sizeof body, "{\"spec\":{\"lifecycle\":{\"shutdownTime\":\"%s\"}}}", when);
    } else {
        snprintf(body, sizeof body, "{\"spec\":{\"lifecycle\":null}}");
    }
    sbx__buf_init(&out, &cl->a);
    r = sbx__api_call(cl, "PATCH", target, body, strlen(body), "application/merge-patch+json", &out, &status,
                      deadline, e);
    if (r == SBX_OK && status != 200) r = sbx__api_fail(e, status, &out, "patch SandboxClaim");
    sbx__buf_free(&out);
    return r;
}

/* ======================================================================== */
/* >>route: the Gateway, tunnels, the route, runtime calls                  */
/* ======================================================================== */

/* The runtime side of a sandbox (split from >>kube, which it uses).

   ROUTES. Runtime requests of a sandbox travel a route chosen by the client's
   mode; modes differ only in the endpoint, a path prefix, extra headers and how
   a tunnel is started (sbx__route_ensure); the request code is shared
   (sbx__rt_call):
     POD_TUNNEL     websocket: rt rides on an sbx__ws (>>ws) through the API
                    endpoint, opened before anything is sent (sbx__ws_route), so a
                    refused upgrade in AUTO can still switch the client (pf_kubectl,
                    under mu) and this sandbox to:
                    127.0.0.1:L  kubectl port-forward pod/POD 0:PORT (per sandbox)
     ROUTER_TUNNEL  127.0.0.1:L  kubectl port-forward svc/sandbox-router-svc 0:8080,
                                 one per client, started lazily under tmu, restarted
                                 when it died; router headers
     GATEWAY        http://ADDR:80 from the Gateway's status.addresses; router headers
     DIRECT         router_url; router headers
     IN_CLUSTER     http://POD_IP:PORT
     API_PROXY      the API endpoint + /api/v1/namespaces/NS/pods/POD:PORT/proxy
   Router headers: X-Sandbox-ID (sandbox name), -Namespace, -Port, -Pod-IP (when
   known), -Timeout (the call's timeout in seconds), Authorization: Bearer.
   sandboxd's gRPC port travels its own way (POD_TUNNEL and IN_CLUSTER only):
   see "gRPC" at the end of this section. */

/* ---- the Gateway (GATEWAY mode) ----------------------------------------- */

/* A Gateway address usable as HOST in http://HOST/: an IPv4 literal, an IPv6
   literal (bracketed in `host`), or a DNS name (RFC 1123 labels of 1-63
   letters, digits and inner hyphens, 253 characters at most, one trailing dot
   allowed) whose last label is not a number (so "1.2.3", "0x7f.1" and
   "999.1.1.1", which resolvers may read as addresses, are refused). Anything
   with '/', '?', '#', '@' or ':' (but an IPv6 literal) is refused. 1 = ok; 0 =
   refused with *why. */
SBX__PRIVATE int sbx__gateway_host(const char *v, char *host, size_t cap, const char **why)
{
    unsigned char bin[16];
    size_t n = strlen(v), i, last_start = 0;
    int last_digits = 1, last_hex = 0;
    *why = NULL;
    if (n == 0) { *why = "empty"; return 0; }
    if (n + 3 > cap) { *why = "too long"; return 0; }
    for (i = 0; i < n; i++)
        if (strchr("/?#@", v[i]) || (unsigned char)v[i] <= 0x20 || (unsigned char)v[i] >= 0x7f) {
            *why = "contains '/', '?', '#', '@', a blank or a non-ASCII byte";
            return 0;
        }
    if (strchr(v, ':')) {
        if (inet_pton(AF_INET6, v, bin) != 1) { *why = "has ':' but is not an IPv6 address"; return 0; }
        sbx__fmt(host, cap, "[%s]", v);
        return 1;
    }
    if (inet_pton(AF_INET, v, bin) == 1) {
        sbx__fmt(host, cap, "%s", v);
        return 1;
    }
    if (v[n - 1] == '.') n--; /* a fully qualified name */
    if ((*why = sbx__dns_why(v, n, 1, 1)) != NULL) return 0;
    for (i = 0; i < n; i++)
        if (v[i] == '.') last_start = i + 1;
    for (i = last_start; i < n; i++)
        if (v[i] < '0' || v[i] > '9') last_digits = 0;
    if (n - last_start > 2 && v[last_start] == '0' && (v[last_start + 1] == 'x' || v[last_start + 1] == 'X')) {
        last_hex = 1;
        for (i = last_start + 2; i < n; i++)
            if (!((v[i] >= '0' && v[i] <= '9') || (v[i] >= 'a' && v[i] <= 'f') || (v[i] >= 'A' && v[i] <= 'F')))
                last_hex = 0;
    }
    if (last_digits || last_hex) { *why = "looks like a number but is not an IPv4 address"; return 0; }
    sbx__fmt(host, cap, "%.*s", (int)n, v);
    return 1;
}

typedef struct sbx__gw_ctx {
    const struct sbx__client *cl;
    char host[300];
    char last[200];
} sbx__gw_ctx;

SBX__PRIVATE int sbx__gateway_event(void *ctx, int ev, const char *js, const sbx__jtok *t, int n, int obj, sbx_error *e)
{
    sbx__gw_ctx *g = (sbx__gw_ctx *)ctx;
    char bad[300], val[300];
    const char *why = NULL;
    int arr, i, k;
    if (ev == SBX__EV_DELETED) {
        snprintf(g->last, sizeof g->last, "the Gateway was deleted");
        return 0;
    }
    arr = sbx__json_get(js, t, n, obj, "status.addresses");
    if (arr < 0 || t[arr].type != SBX__JSON_ARRAY || t[arr].size == 0) {
        snprintf(g->last, sizeof g->last, "no status.addresses yet");
        return 0;
    }
    bad[0] = '\0';
    SBX__JSON_FOREACH(t, arr, i, k) {
        const char *w = NULL;
        sbx__json_copy(js, t, sbx__json_mem(js, t, n, i, "value"), val, sizeof val);
        if (sbx__gateway_host(val, g->host, sizeof g->host, &w)) return 1;
        if (!bad[0]) {
            sbx__json_copy_text(&g->cl->a, js, t, sbx__json_mem(js, t, n, i, "value"), bad, 200);
            why = w;
        }
    }
    return sbx__fail(e, SBX_ERR_PROTOCOL, "Gateway %s/%s: no usable address in status.addresses (\"%s\" %s)",
                     g->cl->gateway_ns, g->cl->gateway_name, bad, why ? why : "is invalid");
}

/* GATEWAY: the router's endpoint from the Gateway's status (once per client). */
SBX__PRIVATE sbx_result sbx__gateway_resolve(struct sbx__client *cl, sbx_error *e)
{
    char base[300], url[320];
    sbx__gw_ctx g;
    sbx__endpoint ep;
    long long deadline = sbx__deadline(cl->gateway_timeout_ms);
    int ok;
    sbx_result r;
    pthread_mutex_lock(&cl->mu);
    ok = cl->gw_ok;
    pthread_mutex_unlock(&cl->mu);
    if (ok) return SBX_OK;
    memset(&g, 0, sizeof g);
    g.cl = cl;
    snprintf(g.last, sizeof g.last, "no such Gateway yet");
    snprintf(base, sizeof base, "/apis/" SBX__GROUP_GATEWAY "/v1/namespaces/%s/gateways", cl->gateway_ns);
    r = sbx__watch(cl, base, cl->gateway_name, "", deadline, "watch Gateway", sbx__gateway_event, &g, e);
    if (r == SBX_ERR_TIMEOUT && sbx__ms_left(deadline) == 0)
        return sbx__fail(e, SBX_ERR_TIMEOUT, "Gateway %s/%s has no address after %d ms (%s)", cl->gateway_ns,
                         cl->gateway_name, cl->gateway_timeout_ms, g.last);
    if (r != SBX_OK) return r;
    snprintf(url, sizeof url, "http://%s", g.host);
    r = (sbx_result)sbx__endpoint_parse(url, &ep, e);
    if (r != SBX_OK) return sbx__err_prefix(e, "Gateway %s/%s", cl->gateway_ns, cl->gateway_name);
    pthread_mutex_lock(&cl->mu);
    cl->router = ep;
    cl->gw_ok = 1;
    pthread_mutex_unlock(&cl->mu);
    return SBX_OK;
}

/* ---- tunnels: kubectl port-forward -------------------------------------- */

/* Spawn `kubectl port-forward --namespace=NS TARGET 0:PORT [0:PORT2] --address=127.0.0.1`
   (port2 0: none). */
SBX__PRIVATE sbx_result sbx__pf_spawn_ports(struct sbx__client *cl, sbx__proc *p, const char *ns, const char *target,
                                            int port, int port2, sbx_error *e)
{
    char ports[32], ports2[32];
    sbx__argv av;
    sbx_result r;
    sbx__argv_kubectl(&av, cl);
    sbx__argv_add(&av, "port-forward", NULL);
    sbx__argv_add(&av, "--namespace=", ns);
    sbx__argv_add(&av, target, NULL);
    snprintf(ports, sizeof ports, "0:%d", port);
    sbx__argv_add(&av, ports, NULL);
    if (port2 > 0) {
        snprintf(ports2, sizeof ports2, "0:%d", port2);
        sbx__argv_add(&av, ports2, NULL);
    }
    sbx__argv_add(&av, "--address=127.0.0.1", NULL);
    if (av.oom) { sbx__argv_free(&av); return sbx__oom(e, NULL); }
    p->sup = cl->sup;
    r = (sbx_result)sbx__proc_spawn(p, av.v, NULL, &cl->a, e);
    sbx__argv_free(&av);
    if (r != SBX_OK) sbx__err_prefix(e, "start kubectl port-forward %s", target);
    return r;
}

/* The local port of a "Forwarding from 127.0.0.1:L -> ..." line. */
SBX__PRIVATE sbx_result sbx__pf_line_port(const char *line, int *port, sbx_error *e)
{
    const char *q;
    long v = 0;
    for (q = line + strlen("Forwarding from 127.0.0.1:"); *q >= '0' && *q <= '9' && v < 65536; q++)
        v = v * 10 + (*q - '0');
    if (v <= 0 || v > 65535)
        return sbx__fail(e, SBX_ERR_PROTOCOL, "kubectl port-forward printed an unexpected line: %.100s", line);
    *port = (int)v;
    return SBX_OK;
}

/* Wait for "Forwarding from 127.0.0.1:PORT" and return the local port. */
SBX__PRIVATE sbx_result sbx__pf_port(sbx__proc *p, const char *target, int *port, long long deadline, sbx_error *e)
{
    char line[512];
    sbx_result r = (sbx_result)sbx__proc_wait_line(p, "Forwarding from 127.0.0.1:", line, sizeof line, deadline, e);
    if (r != SBX_OK) return sbx__err_prefix(e, "kubectl port-forward %s", target);
    return sbx__pf_line_port(line, port, e);
}

/* The local port of the line "Forwarding from 127.0.0.1:L -> REMOTE" (a
   second forwarded port: its line follows the first one's at once). */
SBX__PRIVATE sbx_result sbx__pf_port2(sbx__proc *p, const char *target, int remote, int *port, long long deadline,
                                      sbx_error *e)
{
    char line[512], arrow[32];
    snprintf(arrow, sizeof arrow, " -> %d", remote);
    while (!sbx__proc_find_line(p, "Forwarding from 127.0.0.1:", arrow, line, sizeof line)) {
        if (!sbx__proc_running(p))
            return sbx__fail(e, SBX_ERR_SPAWN, "kubectl port-forward %s ended before it forwarded port %d", target,
                             remote);
        if (sbx__ms_left(deadline) == 0)
            return sbx__fail(e, SBX_ERR_TIMEOUT, "kubectl port-forward %s did not forward port %d in time", target,
                             remote);
        poll(NULL, 0, 2);
    }
    return sbx__pf_line_port(line, port, e);
}

/* Add kubectl's own words ("exited with status 1: error: lost connection to
   pod") to the message when the tunnel died. A tunnel is given `wait_ms` (at
   most SBX__PF_DIE_MS) to end on its own and be reaped: a connection the pod
   refused or reset ends kubectl port-forward within milliseconds, while one
   the runtime merely closed leaves it up. It is never stopped here. */
#ifndef SBX__PF_DIE_MS
#define SBX__PF_DIE_MS 300
#endif
SBX__PRIVATE void sbx__pf_explain(sbx__proc *p, int started, long long wait_ms, sbx_error *e)
{
    char why[256];
    const char *said;
    int ws;
    if (!started) return;
    if (wait_ms > 0 && !sbx__proc_wait_gone(p, wait_ms < SBX__PF_DIE_MS ? (int)wait_ms : SBX__PF_DIE_MS)) return;
    sbx__proc_describe(p, why, sizeof why);
    if (strcmp(why, "running") == 0 || strcmp(why, "not started") == 0) return;
    ws = sbx__proc_status(p);
    if (ws != -1 && (WIFSIGNALED(ws) || (WIFEXITED(ws) && WEXITSTATUS(ws) == 0))) {
        /* ended by us, or cleanly: only what it printed is news */
        said = strstr(why, ": ");
        if (said) sbx__err_prefix(e, "kubectl port-forward said \"%s\"", said + 2);
        return;
    }
    sbx__err_prefix(e, "kubectl port-forward %s", why);
}

/* Whether kubectl's words on a failed start say that trying again may help:
   the API server was briefly unable (5xx, 429, a timeout, a refused or reset
   connection). A NotFound, a Forbidden, a pod that is not running, or
   anything not known to be passing, is final. */
SBX__PRIVATE int sbx__kubectl_transient(const char *said)
{
    static const char *const final[] = {"(NotFound)", "(Forbidden)", "(Unauthorized)", "(BadRequest)", "(Invalid)",
                                        "not found", "forbidden", "not running", "is terminating",
                                        "doesn't have a resource type", "unable to listen", NULL};
    static const char *const passing[] = {"(InternalError)", "(ServiceUnavailable)", "(TooManyRequests)", "Timeout",
                                          "connection refused", "connection reset", "was refused",
                                          "Internal error", "Too many requests", "currently unable to handle",
                                          "an error on the server", "unable to return a response in the time",
                                          "Service Unavailable", "Bad Gateway", "Gateway Timeout", NULL};
    int i;
    for (i = 0; final[i]; i++)
        if (strstr(said, final[i])) return 0;
    for (i = 0; passing[i]; i++)
        if (strstr(said, passing[i])) return 1;
    return 0;
}

/* After a failed kubectl port-forward start: 1 when it failed on a transient
   server error and a backoff (retry number `attempt`) fitted the deadline,
   so that it may be started again; 0 when the failure is final. */
SBX__PRIVATE int sbx__pf_retry(sbx__proc *p, int started, int attempt, long long deadline)
{
    char said[SBX__PROC_ERR_TAIL];
    if (!started || sbx__proc_running(p)) return 0;
    sbx__proc_stderr_tail(p, said, sizeof said);
    return sbx__kubectl_transient(said) && sbx__retry_wait(sbx__backoff_ms(attempt), deadline);
}

/* POD_TUNNEL */
SBX__PRIVATE void sbx__tunnel_stop(struct sbx__sandbox *s)
{
    if (s->rt_ready) {
        sbx__conn_free(&s->rt);
        s->rt_ready = 0;
    }
    sbx__ws_free(s->ws);
    s->ws = NULL;
    if (s->tunnel_started) {
        /* SIGINT is kubectl port-forward's clean stop (GOAWAY, exit 0) */
        sbx__proc_stop(&s->tunnel, SIGINT, 2000);
        memset(&s->tunnel, 0, sizeof s->tunnel);
        s->tunnel_started = 0;
    }
    s->grpc_local = 0;
}

/* The gRPC port is forwarded by the same child as the runtime's port (unless
   the python runtime was asked for): kubectl prints one "Forwarding from"
   line per port, in the order given, both at once. */
SBX__PRIVATE sbx_result sbx__tunnel_start(struct sbx__sandbox *s, long long deadline, sbx_error *e)
{
    char target[300];
    sbx_result r;
    int gport = 0;
#ifndef SBX_NO_GRPC
    if (s->want != SBX_RUNTIME_PYTHON && s->grpc_port != s->server_port) gport = s->grpc_port;
#endif
    s->grpc_local = 0;
    snprintf(target, sizeof target, "pod/%s", s->pod);
    r = sbx__pf_spawn_ports(s->cl, &s->tunnel, s->ns, target, s->server_port, gport, e);
    if (r != SBX_OK) return r;
    s->tunnel_started = 1;
    s->tunnel_fails = 0;
    r = sbx__pf_port(&s->tunnel, target, &s->local_port, deadline, e);
    if (r == SBX_OK && gport) r = sbx__pf_port2(&s->tunnel, target, gport, &s->grpc_local, deadline, e);
    if (r == SBX_OK && !gport && s->grpc_port == s->server_port) s->grpc_local = s->local_port;
    return r;
}

/* ROUTER_TUNNEL, under tmu: a new shared tunnel unless one runs (no wait). */
SBX__PRIVATE sbx_result sbx__rtun_spawn(struct sbx__client *cl, sbx_error *e)
{
    sbx_result r = SBX_OK;
    if (!cl->rtun_started || !sbx__proc_running(&cl->rtun)) {
        if (cl->rtun_started) sbx__proc_stop(&cl->rtun, SIGINT, 500);
        memset(&cl->rtun, 0, sizeof cl->rtun);
        cl->rtun_started = 0;
        cl->rtun_port = 0;
        cl->rtun_gen++;
        r = sbx__pf_spawn_ports(cl, &cl->rtun, cl->router_ns, "svc/" SBX__ROUTER_SVC, SBX__ROUTER_PORT, 0, e);
        if (r == SBX_OK) cl->rtun_started = 1;
    }
    return r;
}

/* ROUTER_TUNNEL: start the shared tunnel early, so it starts while the claim
   becomes Ready. */
SBX__PRIVATE sbx_result sbx__rtun_begin(struct sbx__client *cl, sbx_error *e)
{
    sbx_result r;
    pthread_mutex_lock(&cl->tmu);
    r = sbx__rtun_spawn(cl, e);
    pthread_mutex_unlock(&cl->tmu);
    return r;
}

/* GET /healthz of the router through a fresh connection: proves the far end. */
SBX__PRIVATE sbx_result sbx__router_health(struct sbx__client *cl, int port, long long deadline, sbx_error *e)
{
    char url[64];
    sbx__endpoint ep;
    sbx__conn c;
    sbx__http_req req;
    sbx__http_resp resp;
    sbx__buf body;
    sbx_result r;
    snprintf(url, sizeof url, "http://127.0.0.1:%d", port);
    r = (sbx_result)sbx__endpoint_parse(url, &ep, e);
    if (r != SBX_OK) return r;
    sbx__conn_init(&c, &ep, &cl->a);
    sbx__buf_init(&body, &cl->a);
    sbx__http_req_init(&req);
    req.target = "/healthz";
    req.idempotent = 1;
    r = (sbx_result)sbx__http_do(&c, &req, &resp, &body, 65536, deadline, e);
    if (r == SBX_OK && resp.status != 200) {
        char text[300];
        sbx__http_error_text(resp.status, body.data ? body.data : "", body.len, text, sizeof text);
        r = sbx__fail(e, SBX_ERR_HTTP, "router health check GET /healthz: %s", text);
    }
    sbx__buf_free(&body);
    sbx__conn_free(&c);
    return r;
}

/* ROUTER_TUNNEL: the local port of a working shared tunnel, starting or
   restarting it when needed. Holds tmu while it waits, so concurrent callers
   wait for the same start instead of starting their own. */
SBX__PRIVATE sbx_result sbx__rtun_ensure(struct sbx__client *cl, long long deadline, int *port, unsigned *gen,
                                         sbx_error *e)
{
    sbx_result r = SBX_OK;
    int attempt = 1, started = 0;
    pthread_mutex_lock(&cl->tmu);
again:
    if (!(cl->rtun_started && cl->rtun_port > 0 && sbx__proc_running(&cl->rtun))) {
        r = sbx__rtun_spawn(cl, e);
        if (r == SBX_OK) {
            int p = 0;
            r = sbx__pf_port(&cl->rtun, "svc/" SBX__ROUTER_SVC, &p, deadline, e);
            if (r == SBX_OK) r = sbx__router_health(cl, p, deadline, e);
            if (r == SBX_OK) {
                cl->rtun_port = p;
                started = 1;
            }
        }
        if (r != SBX_OK) {
            /* a broken tunnel is not kept: the next call starts a new one (a
               failed start, SBX_ERR_SPAWN, already carries kubectl's words);
               one that failed on a transient server error is started again */
            if (r == SBX_ERR_SPAWN && sbx__pf_retry(&cl->rtun, cl->rtun_started, attempt, deadline)) {
                attempt++;
                r = SBX_OK;
                goto again;
            }
            if (cl->rtun_started) sbx__proc_stop(&cl->rtun, SIGINT, 500);
            if (r != SBX_ERR_SPAWN) sbx__pf_explain(&cl->rtun, cl->rtun_started, 0, e);
            memset(&cl->rtun, 0, sizeof cl->rtun);
            cl->rtun_started = 0;
            cl->rtun_port = 0;
            sbx__err_prefix(e, "router tunnel to %s/svc/" SBX__ROUTER_SVC, cl->router_ns);
        }
    }
    *port = cl->rtun_port;
    *gen = cl->rtun_gen;
    pthread_mutex_unlock(&cl->tmu);
    if (started) /* after the unlock, like every event */
        sbx__log(&cl->log, *gen > 1 ? SBX_LOG_WARN : SBX_LOG_INFO, SBX_EVENT_TUNNEL_STARTED, NULL, (long long)*gen,
                 "router tunnel kubectl port-forward svc/" SBX__ROUTER_SVC " %sstarted on 127.0.0.1:%d",
                 *gen > 1 ? "re" : "", *port);
    return r;
}

/* ---- the route ---------------------------------------------------------- */

/* POD_TUNNEL over WebSocket: s->rt rides on s->ws; a WebSocket that is not
   open (or went stale while idle) is opened here, before anything is sent,
   so a refused upgrade can still change the route. */
/* The in-process port-forward to one port of the sandbox's pod: its target
   (-1: out of memory), the WebSocket through the client's API connection
   (NULL: out of memory), and the endpoint that names it in messages. */
SBX__PRIVATE int sbx__pod_ws_target(const struct sbx__sandbox *s, int port, sbx__buf *t)
{
    return sbx__buf_printf(t, "/api/v1/namespaces/%s/pods/%s/portforward?ports=%d", s->ns, s->pod, port);
}

SBX__PRIVATE sbx__ws *sbx__pod_ws_new(struct sbx__sandbox *s, int port)
{
    sbx__buf t;
    sbx__ws *ws = NULL;
    sbx__buf_init(&t, &s->cl->a);
    if (sbx__pod_ws_target(s, port, &t) == 0) ws = sbx__ws_new(&s->cl->a, &s->cl->api, t.data, &port, 1);
    sbx__buf_free(&t);
    return ws;
}

SBX__PRIVATE void sbx__pod_ws_endpoint(const struct sbx__sandbox *s, int port, sbx__endpoint *ep)
{
    memset(ep, 0, sizeof *ep);
    sbx__fmt(ep->name, sizeof ep->name, "pod/%s:%d (websocket)", s->pod, port);
    strcpy(ep->host, "localhost");
}

SBX__PRIVATE sbx_result sbx__ws_route(struct sbx__sandbox *s, long long deadline, sbx_error *e)
{
    struct sbx__client *cl = s->cl;
    sbx_result r;
    if (!s->ws && !(s->ws = sbx__pod_ws_new(s, s->server_port))) return sbx__oom(e, NULL);
    if (!s->rt_ready) {
        sbx__endpoint ep;
        sbx__pod_ws_endpoint(s, s->server_port, &ep);
        sbx__conn_init(&s->rt, &ep, &cl->a);
        sbx__conn_transport(&s->rt, &s->ws->tr, s->ws);
        s->rt_ready = 1;
    }
    if (s->rt.fd >= 0 && sbx__conn_stale(&s->rt)) sbx__conn_close(&s->rt);
    if (s->rt.fd >= 0) {
        s->ws->why[0] = '\0';  /* only this exchange's words go into its message */
        return SBX_OK;
    }
    r = (sbx_result)sbx__http_connect(&s->rt, deadline, e);
    if (r != SBX_OK) sbx__err_prefix(e, "port-forward WebSocket GET %s%s", cl->api.prefix, s->ws->target);
    return r;
}

SBX__PRIVATE int sbx__mode_routed(sbx_mode m)
{
    return m == SBX_MODE_ROUTER_TUNNEL || m == SBX_MODE_GATEWAY || m == SBX_MODE_DIRECT;
}

SBX__PRIVATE const char *sbx__mode_name(sbx_mode m)
{
    switch (m) {
    case SBX_MODE_POD_TUNNEL: return "pod tunnel";
    case SBX_MODE_ROUTER_TUNNEL: return "router tunnel";
    case SBX_MODE_GATEWAY: return "gateway";
    case SBX_MODE_DIRECT: return "direct router URL";
    case SBX_MODE_IN_CLUSTER: return "in-cluster";
    case SBX_MODE_API_PROXY: return "API server proxy";
    }
    return "?";
}

SBX__PRIVATE const char *sbx__runtime_name(sbx_runtime r)
{
    return r == SBX_RUNTIME_SANDBOXD ? "sandboxd" : r == SBX_RUNTIME_PYTHON ? "python runtime" : "runtime";
}

/* Point s->rt at the route's current endpoint, (re)starting a tunnel that is
   not running. Nothing has been sent yet, so this is always safe. */
SBX__PRIVATE sbx_result sbx__route_ensure(struct sbx__sandbox *s, long long deadline, sbx_error *e)
{
    struct sbx__client *cl = s->cl;
    sbx__endpoint ep;
    char url[128];
    unsigned gen = 0;
    int port = 0, attempt;
    sbx_result r = SBX_OK;
    url[0] = '\0';
    switch (cl->mode) {
    case SBX_MODE_POD_TUNNEL:
        if (s->pod_ws < 0) {
            pthread_mutex_lock(&cl->mu);
            s->pod_ws = cl->pod_route == SBX_POD_ROUTE_WEBSOCKET ||
                        (cl->pod_route == SBX_POD_ROUTE_AUTO && !cl->pf_kubectl);
            pthread_mutex_unlock(&cl->mu);
        }
        if (s->pod_ws) {
            /* the upgrade travels the API connection: a dead kubectl proxy is
               restarted first, and a transient answer (5xx, 429) or a lost
               connection is the API server's trouble, not a refusal of
               WebSockets: tried again inside the deadline, never a fallback */
            for (attempt = 1;; attempt++) {
                int transient;
                r = sbx__proxy_ensure(cl, deadline, NULL, e);
                if (r != SBX_OK) return r;
                r = sbx__ws_route(s, deadline, e);
                transient = s->ws && s->ws->refused ? s->ws->status >= 500 || s->ws->status == 429
                                                    : r == SBX_ERR_CONNECT;
                if (!transient || attempt >= SBX__RETRY_ATTEMPTS) break;
                sbx__log(&cl->log, SBX_LOG_WARN, SBX_EVENT_RETRY, s->claim, attempt, "port-forward WebSocket: %s",
                         s->ws && s->ws->why[0] ? s->ws->why : e->msg);
                if (!sbx__retry_wait(sbx__backoff_ms(attempt), deadline)) break;
            }
            /* a refused upgrade in AUTO: this client uses kubectl port-forward
               from now on, and this sandbox tries it at once. Answers about
               the pod itself are not refusals of the upgrade: 404, and a 400
               that names the pod ("pod P is not running", while the pod is
               being made again); kubectl would fail the same way. */
            if (r == SBX_OK || s->speculative || cl->pod_route != SBX_POD_ROUTE_AUTO || !s->ws || !s->ws->refused ||
                s->ws->status == 404 || s->ws->status >= 500 || s->ws->status == 429 ||
                (s->ws->status == 400 && strstr(s->ws->why, s->pod)))
                return r;
            pthread_mutex_lock(&cl->mu);
            cl->pf_kubectl = 1;
            pthread_mutex_unlock(&cl->mu);
            sbx__log(&cl->log, SBX_LOG_WARN, SBX_EVENT_FALLBACK, s->claim, s->ws->status,
                     "WebSocket port-forward refused (%s): kubectl port-forward from now on", s->ws->why);
            sbx__tunnel_stop(s);
            s->pod_ws = 0;
            sbx__err_clear(e);
        }
        /* a tunnel that ended is started again, and so is one that is up but
           failed two connections in a row (see sbx__tunnel_failed) */
        if (s->tunnel_started && s->rt_ready && s->tunnel_fails < 2 && sbx__proc_running(&s->tunnel)) return SBX_OK;
        for (attempt = 1;; attempt++) { /* a start that failed on a transient server error is retried */
            sbx__tunnel_stop(s);
            r = sbx__tunnel_start(s, deadline, e);
            if (r == SBX_OK) {
                s->tunnel_starts++;
                sbx__log(&cl->log, s->tunnel_starts > 1 ? SBX_LOG_WARN : SBX_LOG_INFO, SBX_EVENT_TUNNEL_STARTED,
                         s->claim, s->tunnel_starts, "kubectl port-forward pod/%s %sstarted on 127.0.0.1:%d (pid %ld)",
                         s->pod, s->tunnel_starts > 1 ? "re" : "", s->local_port, (long)s->tunnel.pid);
                break;
            }
            if (r != SBX_ERR_SPAWN) sbx__pf_explain(&s->tunnel, s->tunnel_started, 0, e);
            if (!sbx__pf_retry(&s->tunnel, s->tunnel_started, attempt, deadline)) return r;
            sbx__log(&cl->log, SBX_LOG_WARN, SBX_EVENT_RETRY, s->claim, attempt, "start kubectl port-forward: %s",
                     e->msg);
        }
        snprintf(url, sizeof url, "http://127.0.0.1:%d", s->local_port);
        break;
    case SBX_MODE_ROUTER_TUNNEL:
        r = sbx__rtun_ensure(cl, deadline, &port, &gen, e);
        if (r != SBX_OK) return r;
        if (s->rt_ready && s->rt_gen == gen) return SBX_OK;
        snprintf(url, sizeof url, "http://127.0.0.1:%d", port);
        break;
    case SBX_MODE_GATEWAY:
    case SBX_MODE_DIRECT:
        if (s->rt_ready) return SBX_OK;
        pthread_mutex_lock(&cl->mu);
        ep = cl->router;
        pthread_mutex_unlock(&cl->mu);
        break;
    case SBX_MODE_IN_CLUSTER:
        if (s->rt_ready) return SBX_OK;
        if (!s->pod_ip)
            return sbx__fail(e, SBX_ERR_UNSUPPORTED, "Sandbox %s reports no pod IP (status.podIPs is empty): "
                             "the in-cluster mode needs one", s->sandbox);
        snprintf(url, sizeof url, strchr(s->pod_ip, ':') ? "http://[%s]:%d" : "http://%s:%d", s->pod_ip,
                 s->server_port);
        break;
    case SBX_MODE_API_PROXY:
        r = sbx__proxy_ensure(cl, deadline, NULL, e);
        if (r != SBX_OK || s->rt_ready) return r;
        ep = cl->api;
        break;
    }
    if (url[0]) {
        r = (sbx_result)sbx__endpoint_parse(url, &ep, e);
        if (r != SBX_OK) return r;
    }
    if (s->rt_ready) sbx__conn_free(&s->rt);
    sbx__conn_init(&s->rt, &ep, &cl->a);
    s->rt_ready = 1;
    s->rt_gen = gen;
    return SBX_OK;
}

/* The parts of the route that depend on the resolved pod: the API proxy
   prefix and the router headers (built once; the timeout is added per call). */
SBX__PRIVATE sbx_result sbx__route_prepare(struct sbx__sandbox *s, sbx_error *e)
{
    struct sbx__client *cl = s->cl;
    sbx__buf b;
    int bad = 0;
    sbx__free(&cl->a, s->prefix);
    sbx__free(&cl->a, s->rhdr);
    s->prefix = s->rhdr = NULL;
    sbx__buf_init(&b, &cl->a);
    if (cl->mode == SBX_MODE_API_PROXY) {
        bad = sbx__buf_printf(&b, "/api/v1/namespaces/%s/pods/%s:%d/proxy", s->ns, s->pod, s->server_port) != 0;
        s->prefix = b.data;
    } else if (sbx__mode_routed(cl->mode)) {
        bad = sbx__buf_printf(&b, "X-Sandbox-ID: %s\r\nX-Sandbox-Namespace: %s\r\nX-Sandbox-Port: %d\r\n",
                              s->sandbox, s->ns, s->server_port) != 0;
        if (!bad && s->pod_ip) bad = sbx__buf_printf(&b, "X-Sandbox-Pod-IP: %s\r\n", s->pod_ip) != 0;
        if (!bad && cl->router_token) bad = sbx__buf_printf(&b, "Authorization: Bearer %s\r\n", cl->router_token) != 0;
        s->rhdr = b.data;
    }
    if (bad) return sbx__oom(e, NULL);
    return SBX_OK;
}

/* "60", "1.5", "0.25": milliseconds as the shortest decimal of seconds. */
SBX__PRIVATE void sbx__secs(char *out, size_t cap, int ms)
{
    int frac = ms % 1000, digits = 3;
    if (frac == 0) {
        snprintf(out, cap, "%d", ms / 1000);
        return;
    }
    while (frac % 10 == 0) {
        frac /= 10;
        digits--;
    }
    snprintf(out, cap, "%d.%0*d", ms / 1000, digits, frac);
}

/* When a call on this sandbox must end: its timeout, plus a grace in router
   modes so the router's own timeout answer (504 with its words) arrives first. */
SBX__PRIVATE long long sbx__call_deadline(const struct sbx__sandbox *s)
{
    long long d = sbx__deadline(s->call_timeout_ms);
    if (sbx__mode_routed(s->cl->mode)) d += SBX__ROUTER_GRACE_MS;
    return d;
}

/* Where a runtime answer goes. */
typedef struct sbx__rtio {
    sbx__buf *mem;            /* the body (capped at max_output), or NULL to discard it */
    int fd;                   /* >= 0: a 2xx body is streamed here instead (-1: none) */
    int want;                 /* for a 2xx: 0 any, 1 JSON only, 2 not JSON; else it is discarded */
    int once;                 /* never retried, even if idempotent (the check at open) */
    int status;               /* out: the final answer's status */
    int mismatch;             /* out: a 2xx of the unwanted kind (its body was not read) */
} sbx__rtio;

SBX__PRIVATE void sbx__rtio_init(sbx__rtio *io, sbx__buf *mem, int fd, int want)
{
    memset(io, 0, sizeof *io);
    io->mem = mem;
    io->fd = fd;
    io->want = want;
}

/* A connection through the sandbox's kubectl port-forward failed. One that
   ended (the pod refused or reset the connection: kubectl exits) is started
   again by the next attempt. One that stays up (the runtime merely closed
   the connection) is kept after one failure, and with it the gRPC streams
   it also carries; after a second failure in a row it is taken for wedged
   and replaced (sbx__route_ensure). A response resets the count. */
SBX__PRIVATE void sbx__tunnel_failed(struct sbx__sandbox *s)
{
    if (s->cl->mode == SBX_MODE_POD_TUNNEL && s->pod_ws != 1 && s->tunnel_started) s->tunnel_fails++;
}

/* Explain a failed runtime call, adding kubectl's words if the tunnel died;
   after a connection failure the tunnel gets until the deadline (at most
   SBX__PF_DIE_MS) to end and say why. */
SBX__PRIVATE sbx_result sbx__rt_fail_context(struct sbx__sandbox *s, sbx_error *e, const char *what, sbx_result r,
                                             long long deadline)
{
    if (s->cl->mode == SBX_MODE_POD_TUNNEL && s->pod_ws == 1) {
        if (s->ws && s->ws->why[0]) sbx__err_prefix(e, "port-forward WebSocket: %s", s->ws->why);
    } else if (s->cl->mode == SBX_MODE_POD_TUNNEL) {
        if (r == SBX_ERR_CONNECT) sbx__tunnel_failed(s);
        sbx__pf_explain(&s->tunnel, s->tunnel_started, r == SBX_ERR_CONNECT ? sbx__ms_left(deadline) : 0, e);
    } else if (s->cl->mode == SBX_MODE_ROUTER_TUNNEL) {
        pthread_mutex_lock(&s->cl->tmu);
        if (s->cl->rtun_started && !sbx__proc_running(&s->cl->rtun))
            sbx__pf_explain(&s->cl->rtun, s->cl->rtun_started, 0, e);
        pthread_mutex_unlock(&s->cl->tmu);
    }
    return sbx__err_prefix(e, "%s", what);
}

/* Before a retry after a connection failure (see sbx__tunnel_failed). */
SBX__PRIVATE void sbx__route_reset(struct sbx__sandbox *s)
{
    if (s->rt_ready) sbx__conn_close(&s->rt);
    sbx__tunnel_failed(s);
}

/* A runtime call whose connection failed goes again on a fresh route: 1 after
   the backoff, 0 when the deadline came first. */
SBX__PRIVATE int sbx__rt_again(struct sbx__sandbox *s, const char *target, int attempt, long long deadline,
                               sbx_error *e)
{
    sbx__log(&s->cl->log, SBX_LOG_WARN, SBX_EVENT_RETRY, s->claim, attempt, "%s: %s", target, e->msg);
    sbx__route_reset(s);
    return sbx__retry_wait(sbx__backoff_ms(attempt), deadline);
}

/* One call to the runtime over the sandbox's route. `in->target` is the
   runtime's own path ("/execute"); the route adds its prefix and headers.
   Idempotent requests are retried (see RETRIES); the others are sent once. */
SBX__PRIVATE sbx_result sbx__rt_call(struct sbx__sandbox *s, const sbx__http_req *in, sbx__rtio *io,
                                     long long deadline, sbx_error *e)
{
    sbx__http_req req = *in;
    sbx__buf target, hdr;
    char secs[32];
    int attempt;
    sbx_result r = SBX_OK;
    io->status = 0;
    io->mismatch = 0;
    sbx__buf_init(&target, &s->cl->a);
    sbx__buf_init(&hdr, &s->cl->a);
    sbx__secs(secs, sizeof secs, s->call_timeout_ms);
    if (sbx__buf_printf(&target, "%s%s", s->prefix ? s->prefix : "", in->target) != 0 ||
        sbx__buf_puts(&hdr, "") != 0 || (s->rhdr && sbx__buf_printf(&hdr, "%sX-Sandbox-Timeout: %s\r\n", s->rhdr, secs) != 0) ||
        (in->headers && sbx__buf_puts(&hdr, in->headers) != 0))
        r = sbx__oom(e, NULL);
    req.target = target.data;
    req.headers = hdr.data;
    for (attempt = 1; r == SBX_OK; attempt++) {
        sbx__http_resp resp;
        long long wait = -1;
        int retry_ok = in->idempotent && !io->once && attempt < SBX__RETRY_ATTEMPTS;
        if (io->mem) io->mem->len = 0;
        r = sbx__route_ensure(s, deadline, e);
        if (r != SBX_OK) {
            if (r == SBX_ERR_CONNECT && retry_ok)
                sbx__log(&s->cl->log, SBX_LOG_WARN, SBX_EVENT_RETRY, s->claim, attempt, "%s: %s", in->target, e->msg);
            if (r == SBX_ERR_CONNECT && retry_ok && sbx__retry_wait(sbx__backoff_ms(attempt), deadline)) {
                r = SBX_OK;
                continue;
            }
            break;
        }
        r = (sbx_result)sbx__http_send(&s->rt, &req, &resp, deadline, e);
        if (r == SBX_OK) s->tunnel_fails = 0; /* the tunnel forwards */
        if (r != SBX_OK) {
            sbx__conn_close(&s->rt);
            if (r == SBX_ERR_CONNECT && retry_ok && sbx__ms_left(deadline) > 0 &&
                sbx__rt_again(s, in->target, attempt, deadline, e)) {
                r = SBX_OK;
                continue;
            }
            sbx__rt_fail_context(s, e, in->target, r, deadline);
            break;
        }
        io->status = resp.status;
        if (resp.status >= 300 && resp.status < 400) {
            r = sbx__redirect_fail(e, &resp, in->target);
            sbx__http_body_discard(&s->rt, &resp, deadline, e);
            break;
        }
        if (retry_ok && (resp.status == 429 || resp.status == 502 || resp.status == 503 || resp.status == 504)) {
            wait = sbx__retry_after_ms(&resp);
            if (wait < 0) wait = sbx__backoff_ms(attempt);
            if (wait < sbx__ms_left(deadline)) {
                sbx__log(&s->cl->log, SBX_LOG_WARN, SBX_EVENT_RETRY, s->claim, attempt, "%s: HTTP %d, again in %lld ms",
                         in->target, resp.status, wait);
                sbx__http_body_discard(&s->rt, &resp, deadline, e);
                sbx__retry_wait(wait, deadline);
                continue;
            }
        }
        if (resp.status >= 200 && resp.status < 300 && io->want) {
            size_t n = 0;
            const char *ct = sbx__http_header(&resp, "content-type", &n);
            int json = ct && n >= 16 && sbx__http_ieq(ct, 16, "application/json");
            if (json != (io->want == 1)) {
                io->mismatch = 1;
                sbx__http_body_discard(&s->rt, &resp, deadline, e);
                break;
            }
        }
        if (io->fd >= 0 && resp.status >= 200 && resp.status < 300)
            r = (sbx_result)sbx__http_body_fd(&s->rt, &resp, io->fd, deadline, e);
        else if (io->mem)
            r = (sbx_result)sbx__http_body_mem(&s->rt, &resp, io->mem, s->max_output, deadline, e);
        else
            r = (sbx_result)sbx__http_body_discard(&s->rt, &resp, deadline, e);
        if (r == SBX_ERR_CONNECT && retry_ok && (io->fd < 0 || resp.body_read == 0) && sbx__ms_left(deadline) > 0 &&
            sbx__rt_again(s, in->target, attempt, deadline, e)) {
            r = SBX_OK;
            continue;
        }
        if (r != SBX_OK) {
            sbx__conn_close(&s->rt);
            sbx__rt_fail_context(s, e, in->target, r, deadline);
        }
        break;
    }
    sbx__buf_free(&target);
    sbx__buf_free(&hdr);
    return r;
}

/* Paths inside the sandbox: relative to the runtime's base directory. A
   leading "/" is dropped, empty segments are folded; ".", "..", control
   characters and invalid UTF-8 are refused. */
SBX__PRIVATE sbx_result sbx__clean_path(const char *in, sbx__buf *out, int allow_root, sbx_error *e)
{
    const char *p = in, *seg;
    size_t n;
    sbx__buf scratch;
    int bad;
    if (!in) return sbx__fail(e, SBX_ERR_INVALID_ARG, "path is NULL");
    for (n = 0; in[n]; n++)
        if ((unsigned char)in[n] < 0x20 || in[n] == 0x7f)
            return sbx__fail(e, SBX_ERR_INVALID_ARG, "path \"%.80s\" contains a control character", in);
    sbx__buf_init(&scratch, out->a);
    bad = sbx__json_write_str(&scratch, in, n);
    sbx__buf_free(&scratch);
    if (bad == -2) return sbx__fail(e, SBX_ERR_INVALID_ARG, "path is not valid UTF-8");
    while (*p) {
        while (*p == '/') p++;
        if (!*p) break;
        seg = p;
        while (*p && *p != '/') p++;
        n = (size_t)(p - seg);
        if ((n == 1 && seg[0] == '.') || (n == 2 && seg[0] == '.' && seg[1] == '.'))
            return sbx__fail(e, SBX_ERR_INVALID_ARG, "path \"%.80s\" has a \".\" or \"..\" segment", in);
        if ((out->len && sbx__buf_append(out, "/", 1) != 0) || sbx__buf_append(out, seg, n) != 0)
            return sbx__oom(e, NULL);
    }
    if (out->len == 0 && !allow_root) return sbx__fail(e, SBX_ERR_INVALID_ARG, "path \"%.80s\" names no file", in);
    if (out->len == 0 && sbx__buf_puts(out, "") != 0) return sbx__oom(e, NULL);
    return SBX_OK;
}

/* endpoint + the path as ONE percent-encoded segment ("/" -> %2F).
   The legacy python runtime percent-decodes the path twice (its web server
   once, then the handler again), so for it the path is encoded twice: a file
   name with a literal "%41" in it stays "%41" instead of turning into "A";
   its root is sent as "." (%2E, twice: %252E). sandboxd decodes once; its root
   is the empty path. */
SBX__PRIVATE sbx_result sbx__rt_target_enc(const char *endpoint, const char *path, int allow_root, int twice,
                                           sbx__buf *target, sbx_error *e)
{
    sbx__buf clean, once;
    sbx_result r;
    size_t i;
    sbx__buf_init(&clean, target->a);
    sbx__buf_init(&once, target->a);
    r = sbx__clean_path(path, &clean, allow_root, e);
    if (r == SBX_OK) {
        int bad = sbx__buf_puts(target, endpoint) != 0 || sbx__buf_puts(&once, "") != 0;
        if (!bad && clean.len) bad = sbx__pct_encode_segment(&once, clean.data, clean.len) != 0;
        else if (!bad && twice) bad = sbx__buf_puts(&once, "%2E") != 0;
        for (i = 0; !bad && i < once.len; i++)
            bad = once.data[i] == '%' && twice ? sbx__buf_puts(target, "%25") != 0
                                               : sbx__buf_append(target, &once.data[i], 1) != 0;
        if (bad) r = sbx__oom(e, NULL);
    }
    sbx__buf_free(&clean);
    sbx__buf_free(&once);
    return r;
}

/* Ask the pod which runtime answers: GET / says {"status":"ok",...} on the
   python runtime, GET /v1/health says {"status":"ok",...} on sandboxd. With
   AUTO the likelier one (by port) is asked first and a 404 moves on to the
   other. Also the route's health check: the first request through it, sent
   once (no retries), so a broken route fails the open with its own words. */
SBX__PRIVATE sbx_result sbx__probe(struct sbx__sandbox *s, long long deadline, sbx_error *e)
{
    sbx_runtime order[2];
    int count, i, last_status = 0;
    sbx__buf body;
    sbx_result r = SBX_OK;
    if (s->want != SBX_RUNTIME_AUTO) {
        order[0] = s->want;
        count = 1;
    } else {
        order[0] = s->server_port == 8080 ? SBX_RUNTIME_SANDBOXD : SBX_RUNTIME_PYTHON;
        order[1] = order[0] == SBX_RUNTIME_SANDBOXD ? SBX_RUNTIME_PYTHON : SBX_RUNTIME_SANDBOXD;
        count = 2;
    }
    sbx__buf_init(&body, &s->cl->a);
    for (i = 0; i < count; i++) {
        sbx__http_req req;
        sbx__rtio io;
        const char *path = order[i] == SBX_RUNTIME_SANDBOXD ? "/v1/health" : "/";
        sbx__http_req_init(&req);
        req.target = path;
        req.headers = "Accept: application/json\r\n";
        req.idempotent = 1;
        sbx__rtio_init(&io, &body, -1, 0);
        io.once = 1; /* a route that fails its first request is reported as it is */
        r = sbx__rt_call(s, &req, &io, deadline, e);
        if (r != SBX_OK) break;
        last_status = io.status;
        if (io.status == 200) {
            sbx__jtok *t = NULL;
            int n, st = sbx__json_doc(&s->cl->a, &body, &t, &n, "status", SBX__JSON_STRING);
            int ok = st >= 0 && sbx__json_eq(body.data, t, st, "ok");
            sbx__free(&s->cl->a, t);
            if (ok) {
                s->runtime = order[i];
                break;
            }
            r = sbx__fail(e, SBX_ERR_PROTOCOL, "health check GET %s: the answer is not {\"status\":\"ok\"}: %.100s",
                          path, body.data ? body.data : "");
            break;
        }
        if (io.status == 404 && i + 1 < count) continue;
        if (io.status == 404) { /* some other server: not the runtime asked for */
            char text[SBX_ERRMSG_SIZE / 2];
            sbx__http_error_text(404, body.data ? body.data : "", body.len, text, sizeof text);
            if (e) e->http_status = 404;
            r = sbx__fail(e, SBX_ERR_UNSUPPORTED, "health check GET %s: %s: no %s on port %d of pod %s", path, text,
                          sbx__runtime_name(order[i]), s->server_port, s->pod);
        } else {
            char what[96];
            snprintf(what, sizeof what, "health check GET %s", path);
            r = sbx__status_fail(e, io.status, &body, what, NULL);
        }
        break;
    }
    if (r == SBX_OK && s->runtime == SBX_RUNTIME_AUTO)
        r = sbx__fail(e, SBX_ERR_UNSUPPORTED, "no known runtime answers on port %d of pod %s (GET / and GET "
                      "/v1/health answered HTTP %d)", s->server_port, s->pod, last_status);
    sbx__buf_free(&body);
    return r;
}

/* The runtime's port: as configured (cfg_port), else by the runtime asked
   for, else the pod template's, else the python runtime's. */
SBX__PRIVATE int sbx__route_port(const struct sbx__sandbox *s, int cfg_port, int template_port)
{
    return cfg_port ? cfg_port
         : s->want == SBX_RUNTIME_SANDBOXD ? 8080
         : s->want == SBX_RUNTIME_PYTHON ? 8888
         : template_port > 0 ? template_port : 8888;
}

/* Connect a sandbox whose pod is resolved: route, headers, runtime. */
SBX__PRIVATE sbx_result sbx__route_open(struct sbx__sandbox *s, sbx_error *e)
{
    long long deadline = sbx__deadline(s->tunnel_timeout_ms);
    sbx_result r;
    s->server_port = sbx__route_port(s, s->server_port, s->template_port);
    s->runtime = SBX_RUNTIME_AUTO;
    r = sbx__route_prepare(s, e);
    if (r == SBX_OK) r = sbx__route_ensure(s, deadline, e);
    if (r == SBX_OK) r = sbx__probe(s, deadline, e);
    if (r != SBX_OK) {
        if (s->cl->mode == SBX_MODE_POD_TUNNEL) return sbx__err_prefix(e, "tunnel to pod/%s", s->pod);
        return sbx__err_prefix(e, "%s route to sandbox %s", sbx__mode_name(s->cl->mode), s->sandbox);
    }
    return SBX_OK;
}

/* The Sandbox read by a helper thread (sbx__pod_route) */
typedef struct sbx__podjob {
    const struct sbx__sandbox *s;
    sbx__podinfo pi;
    long long deadline;
    sbx_result r;
    sbx_error e;
} sbx__podjob;

SBX__PRIVATE void *sbx__podjob_run(void *arg)
{
    sbx__podjob *j = (sbx__podjob *)arg;
    sbx__err_clear(&j->e);
    j->r = sbx__fetch_pod(j->s, &j->pi, j->deadline, &j->e);
    return NULL;
}

/* After Ready: read the Sandbox (pod name, IP, port) and connect the route.
   On the WebSocket pod route (and the API server proxy) with a known port,
   the Sandbox is read by a helper thread while this one already connects to
   the pod named after the sandbox (agent-sandbox names it so) and asks it for
   its health: one API round trip less. The result is used only when the Sandbox confirms pod and
   port; otherwise (or on any failure) that route is dropped and made again
   the ordinary way, whose failures are the ones reported. The guess never
   falls back to kubectl port-forward (s->speculative). */
SBX__PRIVATE sbx_result sbx__pod_route(struct sbx__sandbox *s, sbx_error *e)
{
    struct sbx__client *cl = s->cl;
    sbx__podjob job;
    pthread_t th;
    pthread_attr_t attr;
    sbx_error se;
    sbx_result r, sr;
    int cfg_port = s->server_port, guess_tp = -1, ws = 0, port, started = 0;
    long long deadline = sbx__deadline(cl->api_timeout_ms);
    if (cl->mode == SBX_MODE_POD_TUNNEL) {
        pthread_mutex_lock(&cl->mu);
        ws = cl->pod_route == SBX_POD_ROUTE_WEBSOCKET || (cl->pod_route == SBX_POD_ROUTE_AUTO && !cl->pf_kubectl);
        pthread_mutex_unlock(&cl->mu);
    }
    if ((ws || cl->mode == SBX_MODE_API_PROXY) && !cfg_port && s->want == SBX_RUNTIME_AUTO)
        guess_tp = sbx__memo_port(s);
    if ((!ws && cl->mode != SBX_MODE_API_PROXY) || (!cfg_port && s->want == SBX_RUNTIME_AUTO && guess_tp < 0)) {
        r = sbx__resolve_pod(s, deadline, e);
        return r == SBX_OK ? sbx__route_open(s, e) : r;
    }
    memset(&job, 0, sizeof job);
    job.s = s;
    job.deadline = deadline;
    if (pthread_attr_init(&attr) == 0) {
        pthread_attr_setstacksize(&attr, SBX__PROC_STACK);
        started = pthread_create(&th, &attr, sbx__podjob_run, &job) == 0;
        pthread_attr_destroy(&attr);
    }
    if (!started) {
        r = sbx__resolve_pod(s, deadline, e);
        return r == SBX_OK ? sbx__route_open(s, e) : r;
    }
    /* meanwhile: the route to pod/SANDBOX on the port the template had last time */
    port = sbx__route_port(s, cfg_port, guess_tp);
    sbx__err_clear(&se);
    sbx__free(&cl->a, s->pod);
    s->pod = sbx__strdup(&cl->a, s->sandbox);
    s->server_port = port;
    s->runtime = SBX_RUNTIME_AUTO;
    if (ws) s->pod_ws = 1;
    s->speculative = 1;
    sr = s->pod ? sbx__route_prepare(s, &se) : SBX_ERR_NOMEM;
    if (sr == SBX_OK && ws) sr = sbx__ws_route(s, sbx__deadline(s->tunnel_timeout_ms), &se);
    if (sr == SBX_OK) sr = sbx__probe(s, sbx__deadline(s->tunnel_timeout_ms), &se);
    s->speculative = 0;
    pthread_join(th, NULL);
    r = job.r;
    if (r != SBX_OK) {
        *e = job.e;
    } else {
        int same = strcmp(job.pi.pod[0] ? job.pi.pod : s->sandbox, s->sandbox) == 0 &&
                   sbx__route_port(s, cfg_port, job.pi.port) == port;
        r = sbx__apply_pod(s, &job.pi, e);
        if (r == SBX_OK && same && sr == SBX_OK) return SBX_OK;
        if (r == SBX_OK && same && sr == SBX_ERR_TIMEOUT) { /* the right pod: its time is up, not tried twice */
            *e = se;
            sbx__tunnel_stop(s);
            if (ws) return sbx__err_prefix(e, "tunnel to pod/%s", s->pod);
            return sbx__err_prefix(e, "%s route to sandbox %s", sbx__mode_name(cl->mode), s->sandbox);
        }
    }
    /* not confirmed: nothing of that route is kept */
    sbx__tunnel_stop(s);
    s->pod_ws = -1;
    s->server_port = cfg_port;
    s->runtime = SBX_RUNTIME_AUTO;
    return r == SBX_OK ? sbx__route_open(s, e) : r;
}

/* ---- gRPC: sandboxd's process API (grpc_port) -------------------------- */

/* sandboxd's processes are gRPC (HTTP/2, >>h2) on grpc_port. One connection
   per sandbox (sbx__gchan, made on the first gRPC call), shared by sbx_exec,
   sbx_run and every process of the sandbox:
     POD_TUNNEL websocket  a port-forward WebSocket (?ports=GRPC_PORT) per
                           HTTP/2 connection, made by h2 with the connection
                           (sbx__gchan_ws_make) and freed with it
     POD_TUNNEL kubectl    the sandbox's one kubectl port-forward child forwards
                           both ports (0:PORT 0:GRPC_PORT): 127.0.0.1:L2
     IN_CLUSTER            POD_IP:GRPC_PORT
   The router modes and the API proxy are HTTP/1.1 only: no gRPC there.
   A channel is reference-counted (the sandbox + each open process), so a
   process may outlive its sandbox's handle safely: sbx_close marks the
   channel closed (later process calls fail SBX_ERR_CLOSED) and the last
   process close frees it. The h2 connection itself reconnects after it died
   or got a GOAWAY, while the streams of a GOAWAY'd one go on: over their own
   WebSocket on the WebSocket route, their own TCP connection through kubectl
   (which forwards each as a stream of its own) on the kubectl route. There a
   restarted tunnel has a new local port, so the sandbox moves to a new
   channel (old processes keep the old). */
#ifndef SBX_NO_GRPC

#define SBX__GRPC_SVC "/process.v1.ProcessService/"
#define SBX__GRPC_WRITE_CHUNK (1024u * 1024u)  /* stdin per WriteStdin (grpc's default cap is 4 MiB) */

typedef struct sbx__gchan {
    sbx_allocator a;
    pthread_mutex_t mu;       /* refs, closed */
    int refs;                 /* the sandbox's + one per open process */
    int closed;               /* the sandbox handle is gone: calls fail SBX_ERR_CLOSED */
    sbx__h2 *h;               /* set at creation, freed with the last reference */
    char *ws_target;          /* WebSocket route: the port-forward target of every */
    int ws_port;              /* connection's WebSocket, through ws_api (h2 uses  */
    sbx__endpoint ws_api;     /* these until sbx__h2_free returns)                 */
    int local_port;           /* kubectl route: the local port h connects to */
} sbx__gchan;

/* h2's transport maker on the WebSocket route: a fresh port-forward
   WebSocket for each HTTP/2 connection. The connection owns it; h2 closes it
   and frees it (sbx__ws_drop) with the connection, under h->mu. */
SBX__PRIVATE void *sbx__gchan_ws_make(void *arg, const sbx__transport **tr)
{
    sbx__gchan *ch = (sbx__gchan *)arg;
    sbx__ws *ws = sbx__ws_new(&ch->a, &ch->ws_api, ch->ws_target, &ch->ws_port, 1);
    if (ws) *tr = &ws->tr;
    return ws;
}

SBX__PRIVATE void sbx__gchan_unref(sbx__gchan *ch)
{
    int last;
    sbx_allocator a;
    if (!ch) return;
    pthread_mutex_lock(&ch->mu);
    last = --ch->refs == 0;
    pthread_mutex_unlock(&ch->mu);
    if (!last) return;
    sbx__h2_free(ch->h);
    pthread_mutex_destroy(&ch->mu);
    a = ch->a;
    sbx__free(&a, ch->ws_target);
    sbx__free(&a, ch);
}

SBX__PRIVATE void sbx__gchan_ref(sbx__gchan *ch)
{
    pthread_mutex_lock(&ch->mu);
    ch->refs++;
    pthread_mutex_unlock(&ch->mu);
}

SBX__PRIVATE int sbx__gchan_closed(sbx__gchan *ch)
{
    int c;
    pthread_mutex_lock(&ch->mu);
    c = ch->closed;
    pthread_mutex_unlock(&ch->mu);
    return c;
}

/* The sandbox lets go of its channel (close, detach, a new tunnel). */
SBX__PRIVATE void sbx__gchan_drop(struct sbx__sandbox *s, int close_it)
{
    sbx__gchan *ch = s->gchan;
    if (!ch) return;
    s->gchan = NULL;
    if (close_it) {
        pthread_mutex_lock(&ch->mu);
        ch->closed = 1;
        pthread_mutex_unlock(&ch->mu);
    }
    sbx__gchan_unref(ch);
}

/* ws_target non-NULL: the WebSocket route, through api to ws_port. */
SBX__PRIVATE sbx__gchan *sbx__gchan_new(const sbx_allocator *a, const sbx__endpoint *ep, const char *ws_target,
                                         const sbx__endpoint *api, int ws_port, const char *auth)
{
    sbx__h2_trmaker mk;
    sbx__gchan *ch = (sbx__gchan *)sbx__malloc(a, sizeof *ch);
    if (!ch) return NULL;
    memset(ch, 0, sizeof *ch);
    ch->a = *a;
    ch->refs = 1;
    if (ws_target) {
        ch->ws_target = sbx__strdup(&ch->a, ws_target);
        ch->ws_api = *api;
        ch->ws_port = ws_port;
    }
    if ((ws_target && !ch->ws_target) || pthread_mutex_init(&ch->mu, NULL) != 0) {
        sbx__free(a, ch->ws_target);
        sbx__free(a, ch);
        return NULL;
    }
    mk.make = sbx__gchan_ws_make;
    mk.drop = sbx__ws_drop;
    mk.arg = ch;
    ch->h = sbx__h2_new(&ch->a, ep, ws_target ? &mk : NULL, auth);
    if (!ch->h) {
        sbx__gchan_unref(ch);
        return NULL;
    }
    return ch;
}

/* Routes that carry gRPC; the others answer SBX_ERR_UNSUPPORTED saying why. */
SBX__PRIVATE sbx_result sbx__grpc_route(const struct sbx__sandbox *s, const char *call, sbx_error *e)
{
    sbx_mode m = s->cl->mode;
    if (sbx__mode_routed(m))
        return sbx__fail(e, SBX_ERR_UNSUPPORTED, "%s: sandboxd's process API is gRPC (HTTP/2) and the %s mode "
                         "reaches the pod through the sandbox router, which is HTTP/1.1 only; use the pod tunnel "
                         "or in-cluster mode", call, sbx__mode_name(m));
    if (m == SBX_MODE_API_PROXY)
        return sbx__fail(e, SBX_ERR_UNSUPPORTED, "%s: sandboxd's process API is gRPC (HTTP/2) and the API server's "
                         "pod proxy carries HTTP/1.1 only; use the pod tunnel or in-cluster mode", call);
    return SBX_OK;
}

/* The sandbox's channel, made (and its route made ready) on the first call. */
SBX__PRIVATE sbx_result sbx__gchan_get(struct sbx__sandbox *s, long long deadline, sbx_error *e)
{
    struct sbx__client *cl = s->cl;
    sbx__endpoint ep;
    sbx__buf target;
    char url[128], auth[80];
    sbx_result r;
    int local = 0;
    url[0] = '\0';
    sbx__buf_init(&target, &cl->a);
    snprintf(auth, sizeof auth, "localhost:%d", s->grpc_port);
    if (cl->mode == SBX_MODE_POD_TUNNEL) {
        if (s->pod_ws < 0 ||
            (s->pod_ws == 0 && !(s->tunnel_started && s->grpc_local > 0 && sbx__proc_running(&s->tunnel)))) {
            r = sbx__route_ensure(s, deadline, e);
            if (r != SBX_OK) return sbx__err_prefix(e, "tunnel to pod/%s", s->pod);
        }
        if (s->pod_ws == 1) {
            /* the upgrade of a (re)connection travels the API connection */
            r = sbx__proxy_ensure(cl, deadline, NULL, e);
            if (r != SBX_OK || s->gchan) return r;
            if (sbx__pod_ws_target(s, s->grpc_port, &target) != 0) {
                sbx__buf_free(&target);
                return sbx__oom(e, NULL);
            }
            sbx__pod_ws_endpoint(s, s->grpc_port, &ep);
        } else {
            if (s->grpc_local <= 0)
                return sbx__fail(e, SBX_ERR_CONNECT, "kubectl port-forward pod/%s does not forward the gRPC port %d",
                                 s->pod, s->grpc_port);
            if (s->gchan && s->gchan->local_port == s->grpc_local) return SBX_OK;
            sbx__gchan_drop(s, 0); /* a tunnel started anew: its old port is gone */
            local = s->grpc_local;
            snprintf(url, sizeof url, "http://127.0.0.1:%d", local);
        }
    } else {
        if (s->gchan) return SBX_OK;
        if (!s->pod_ip)
            return sbx__fail(e, SBX_ERR_UNSUPPORTED, "Sandbox %s reports no pod IP (status.podIPs is empty): "
                             "the in-cluster mode needs one", s->sandbox);
        snprintf(url, sizeof url, strchr(s->pod_ip, ':') ? "http://[%s]:%d" : "http://%s:%d", s->pod_ip,
                 s->grpc_port);
        snprintf(auth, sizeof auth, strchr(s->pod_ip, ':') ? "[%s]:%d" : "%s:%d", s->pod_ip, s->grpc_port);
    }
    if (url[0]) {
        r = (sbx_result)sbx__endpoint_parse(url, &ep, e);
        if (r != SBX_OK) return r;
    }
    s->gchan = sbx__gchan_new(&cl->a, &ep, target.data, &cl->api, s->grpc_port, auth);
    sbx__buf_free(&target);
    if (!s->gchan) return sbx__oom(e, NULL);
    s->gchan->local_port = local;
    return SBX_OK;
}

/* ---- process.v1 messages (protocol.md 5.4.1) ----------------------------- */

/* proto3 strings must be UTF-8 (the server refuses the message otherwise). */
SBX__PRIVATE int sbx__pm_utf8(const char *s)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t n = strlen(s);
    while (n > 0) {
        int k = sbx__json_utf8_seq(p, n);
        if (k <= 0) return 0;
        p += k;
        n -= (size_t)k;
    }
    return 1;
}

/* String v as field of b; what[i] names it in the message (i < 0: what alone). */
SBX__PRIVATE sbx_result sbx__pm_str(sbx__buf *b, int field, const char *v, const char *what, int i, sbx_error *e)
{
    if (!sbx__pm_utf8(v))
        return i < 0 ? sbx__fail(e, SBX_ERR_INVALID_ARG, "%s is not valid UTF-8", what)
                     : sbx__fail(e, SBX_ERR_INVALID_ARG, "%s[%d] is not valid UTF-8", what, i);
    if (sbx__pb_bytes(b, field, v, strlen(v)) != 0) return sbx__oom(e, NULL);
    return SBX_OK;
}

/* ProcessConfig as field `field` of out: command (argv, or /bin/sh -c
   command), env_vars, cwd. */
SBX__PRIVATE sbx_result sbx__pm_config(sbx__buf *out, int field, const char *const *argv, const char *command,
                                       const char *const *env, const char *cwd, sbx_error *e)
{
    static const char *const sh[] = {"/bin/sh", "-c"};
    sbx__buf c, kv;
    sbx_result r = SBX_OK;
    int i;
    sbx__buf_init(&c, out->a);
    sbx__buf_init(&kv, out->a);
    if (command) {
        for (i = 0; i < 2 && r == SBX_OK; i++) r = sbx__pm_str(&c, 1, sh[i], "argv", i, e);
        if (r == SBX_OK) r = sbx__pm_str(&c, 1, command, "the command", -1, e);
    } else {
        for (i = 0; argv[i] && r == SBX_OK; i++) r = sbx__pm_str(&c, 1, argv[i], "argv", i, e);
    }
    for (i = 0; env && env[i] && r == SBX_OK; i += 2) {
        if (!env[i + 1]) {
            r = sbx__fail(e, SBX_ERR_INVALID_ARG, "env: \"%.80s\" has no value (pairs of name, value, then NULL)",
                          env[i]);
            break;
        }
        if (!env[i][0] || strchr(env[i], '=')) {
            r = sbx__fail(e, SBX_ERR_INVALID_ARG, "env: \"%.80s\" is not a variable name", env[i]);
            break;
        }
        kv.len = 0;
        r = sbx__pm_str(&kv, 1, env[i], "env", i, e);
        if (r == SBX_OK) r = sbx__pm_str(&kv, 2, env[i + 1], "env", i + 1, e);
        if (r == SBX_OK && sbx__pb_bytes(&c, 2, kv.data, kv.len) != 0) r = sbx__oom(e, NULL);
    }
    if (r == SBX_OK && cwd && *cwd) r = sbx__pm_str(&c, 3, cwd, "cwd", -1, e);
    if (r == SBX_OK && sbx__pb_bytes(out, field, c.data, c.len) != 0) r = sbx__oom(e, NULL);
    sbx__buf_free(&c);
    sbx__buf_free(&kv);
    return r;
}

/* StartRequest: config, and pty {cols, rows} when pty. */
SBX__PRIVATE sbx_result sbx__pm_start_req(sbx__buf *out, const sbx_process_config *cfg, sbx_error *e)
{
    sbx_result r = sbx__pm_config(out, 1, cfg->argv, cfg->command, cfg->env, cfg->cwd, e);
    if (r == SBX_OK && cfg->pty) {
        sbx__buf t;
        sbx__buf_init(&t, out->a);
        if (sbx__pb_uint(&t, 1, cfg->cols ? cfg->cols : 80) != 0 || sbx__pb_uint(&t, 2, cfg->rows ? cfg->rows : 24) != 0 ||
            sbx__pb_bytes(out, 2, t.data, t.len) != 0)
            r = sbx__oom(e, NULL);
        sbx__buf_free(&t);
    }
    return r;
}

/* int32 fields: negatives travel as 10-byte sign-extended varints. */
SBX__PRIVATE int sbx__pm_int32(unsigned long long v)
{
    unsigned long long low = v & 0xffffffffull;
    return low >= 0x80000000ull ? (int)((long long)low - 4294967296LL) : (int)low;
}

SBX__PRIVATE unsigned long long sbx__pm_enc32(int v)
{
    return (unsigned long long)(long long)v;
}

/* ExecuteResponse: 0, or -1 when malformed (a known field of the wrong
   wire type included). out/err point into msg. */
typedef struct sbx__pm_exec {
    int exit_code;
    const unsigned char *out, *err;
    size_t out_len, err_len;
} sbx__pm_exec;

SBX__PRIVATE int sbx__pm_exec_resp(const void *msg, size_t n, sbx__pm_exec *x)
{
    sbx__pb r;
    int f, wt, k;
    unsigned long long v;
    const unsigned char *d;
    size_t len;
    memset(x, 0, sizeof *x);
    sbx__pb_init(&r, msg, n);
    while ((k = sbx__pb_next(&r, &f, &wt, &v, &d, &len)) == 1) {
        if (f == 1) {
            if (wt != 0) return -1;
            x->exit_code = sbx__pm_int32(v);
        } else if (f == 2 || f == 3) {
            if (wt != 2) return -1;
            if (f == 2) { x->out = d; x->out_len = len; }
            else { x->err = d; x->err_len = len; }
        }
    }
    return k == 0 ? 0 : -1;
}

/* One StartResponse: which event (the oneof; the last one given wins). */
enum { SBX__PM_NONE = 0, SBX__PM_INIT, SBX__PM_STDOUT, SBX__PM_STDERR, SBX__PM_EXIT };
typedef struct sbx__pm_event {
    int kind;
    int value;                /* INIT: process_id; EXIT: exit_code */
    const unsigned char *data; /* STDOUT / STDERR: points into the message */
    size_t len;
} sbx__pm_event;

/* field 1 (int32) of a nested InitEvent / ExitEvent; 0 ok, -1 malformed */
SBX__PRIVATE int sbx__pm_inner_int(const unsigned char *d, size_t n, int *out)
{
    sbx__pb r;
    int f, wt, k;
    unsigned long long v;
    const unsigned char *x;
    size_t len;
    *out = 0;
    sbx__pb_init(&r, d, n);
    while ((k = sbx__pb_next(&r, &f, &wt, &v, &x, &len)) == 1) {
        if (f != 1) continue;
        if (wt != 0) return -1;
        *out = sbx__pm_int32(v);
    }
    return k == 0 ? 0 : -1;
}

SBX__PRIVATE int sbx__pm_start_event(const void *msg, size_t n, sbx__pm_event *ev)
{
    sbx__pb r;
    int f, wt, k;
    unsigned long long v;
    const unsigned char *d;
    size_t len;
    memset(ev, 0, sizeof *ev);
    sbx__pb_init(&r, msg, n);
    while ((k = sbx__pb_next(&r, &f, &wt, &v, &d, &len)) == 1) {
        if (f < 1 || f > 4) continue;
        if (wt != 2) return -1;
        memset(ev, 0, sizeof *ev);
        if (f == 1 || f == 4) {
            if (sbx__pm_inner_int(d, len, &ev->value) != 0) return -1;
            ev->kind = f == 1 ? SBX__PM_INIT : SBX__PM_EXIT;
        } else {
            ev->kind = f == 2 ? SBX__PM_STDOUT : SBX__PM_STDERR;
            ev->data = d;
            ev->len = len;
        }
    }
    return k == 0 ? 0 : -1;
}

#endif /* SBX_NO_GRPC */

/* ======================================================================== */
/* >>api: the public functions: clients, open, close, lifecycle             */
/* ======================================================================== */

SBX_API const char *sbx_strerror(sbx_result r)
{
    switch (r) {
    case SBX_OK: return "success";
    case SBX_ERR_INVALID_ARG: return "invalid argument";
    case SBX_ERR_NOMEM: return "out of memory";
    case SBX_ERR_SYS: return "system call failed";
    case SBX_ERR_SPAWN: return "kubectl could not be started or exited";
    case SBX_ERR_TIMEOUT: return "timed out";
    case SBX_ERR_CONNECT: return "connection failed";
    case SBX_ERR_HTTP: return "server returned an error";
    case SBX_ERR_PROTOCOL: return "protocol error";
    case SBX_ERR_TOO_BIG: return "response too big";
    case SBX_ERR_NOT_FOUND: return "not found";
    case SBX_ERR_SANDBOX: return "sandbox failed";
    case SBX_ERR_DELETED: return "claim deleted";
    case SBX_ERR_UNSUPPORTED: return "unsupported by this runtime";
    case SBX_ERR_CLOSED: return "handle closed";
    case SBX_ERR_DENIED: return "permission denied";
    case SBX_ERR_RPC: return "remote call failed";
    }
    return "unknown error";
}

SBX__PRIVATE char *sbx__opt_dup(const sbx_allocator *a, const char *s, int *oom)
{
    char *d;
    if (!s || !*s) return NULL;
    d = sbx__strdup(a, s);
    if (!d) *oom = 1;
    return d;
}

/* The mode settings of a client config: copied and checked. */
SBX__PRIVATE sbx_result sbx__client_mode(struct sbx__client *cl, const sbx_client_config *cfg, sbx_error *e)
{
    const char *s;
    int oom = 0;
    if ((int)cfg->mode < (int)SBX_MODE_POD_TUNNEL || (int)cfg->mode > (int)SBX_MODE_API_PROXY)
        return sbx__fail(e, SBX_ERR_INVALID_ARG, "mode %d is not an sbx_mode", (int)cfg->mode);
    cl->mode = cfg->mode;
    if ((int)cfg->pod_route < (int)SBX_POD_ROUTE_AUTO || (int)cfg->pod_route > (int)SBX_POD_ROUTE_KUBECTL)
        return sbx__fail(e, SBX_ERR_INVALID_ARG, "pod_route %d is not an sbx_pod_route", (int)cfg->pod_route);
    cl->pod_route = cfg->pod_route;
    if (cl->pod_route == SBX_POD_ROUTE_AUTO && (s = getenv("SANDBOX_POD_ROUTE")) != NULL && *s) {
        if (strcmp(s, "websocket") == 0) cl->pod_route = SBX_POD_ROUTE_WEBSOCKET;
        else if (strcmp(s, "kubectl") == 0) cl->pod_route = SBX_POD_ROUTE_KUBECTL;
        else if (strcmp(s, "auto") != 0)
            return sbx__fail(e, SBX_ERR_INVALID_ARG, "SANDBOX_POD_ROUTE=\"%.40s\": want auto, websocket or kubectl", s);
    }
    cl->router_ns = sbx__strdup(&cl->a, cfg->router_namespace && *cfg->router_namespace ? cfg->router_namespace
                                                                                        : "agent-sandbox-system");
    cl->gateway_name = sbx__strdup(&cl->a, cfg->gateway_name && *cfg->gateway_name ? cfg->gateway_name
                                                                                  : "external-http-gateway");
    cl->gateway_ns = sbx__strdup(&cl->a, cfg->gateway_namespace && *cfg->gateway_namespace ? cfg->gateway_namespace
                                                                                          : "default");
    cl->router_token = sbx__opt_dup(&cl->a, cfg->router_token, &oom);
    cl->gateway_timeout_ms = cfg->gateway_timeout_ms > 0 ? cfg->gateway_timeout_ms : 180000;
    if (oom || !cl->router_ns || !cl->gateway_name || !cl->gateway_ns) return sbx__oom(e, NULL);
    if (!sbx__valid_dns_name(cl->router_ns, 0))
        return sbx__fail(e, SBX_ERR_INVALID_ARG, "router_namespace \"%.80s\" is not a valid DNS label", cl->router_ns);
    if (!sbx__valid_dns_name(cl->gateway_ns, 0))
        return sbx__fail(e, SBX_ERR_INVALID_ARG, "gateway_namespace \"%.80s\" is not a valid DNS label", cl->gateway_ns);
    if (!sbx__valid_dns_name(cl->gateway_name, 1))
        return sbx__fail(e, SBX_ERR_INVALID_ARG, "gateway_name \"%.80s\" is not a valid name", cl->gateway_name);
    for (s = cl->router_token; s && *s; s++)
        if ((unsigned char)*s <= 0x20 || (unsigned char)*s >= 0x7f)
            return sbx__fail(e, SBX_ERR_INVALID_ARG, "router_token holds a blank, control or non-ASCII byte");
    if (cl->mode == SBX_MODE_DIRECT) {
        sbx_result r;
        if (!cfg->router_url || !*cfg->router_url)
            return sbx__fail(e, SBX_ERR_INVALID_ARG, "mode SBX_MODE_DIRECT needs router_url");
        if (strncmp(cfg->router_url, "unix:", 5) == 0)
            return sbx__fail(e, SBX_ERR_INVALID_ARG, "router_url \"%.200s\" must be an http:// URL", cfg->router_url);
        r = (sbx_result)sbx__endpoint_parse(cfg->router_url, &cl->router, e);
        if (r != SBX_OK) return sbx__err_prefix(e, "router_url");
    }
    return SBX_OK;
}

SBX_API sbx_result sbx_client_open(sbx_client *c, const sbx_client_config *cfg)
{
    sbx_client_config zero;
    struct sbx__client *cl;
    sbx_allocator a;
    const char *url, *kubectl;
    int oom = 0;
    sbx_result r;
    if (!c) return SBX_ERR_INVALID_ARG;
    c->impl = NULL;
    sbx__err_clear(&c->err);
    if (!cfg) {
        memset(&zero, 0, sizeof zero);
        cfg = &zero;
    }
    a = sbx__allocator(&cfg->allocator);
    cl = (struct sbx__client *)sbx__malloc(&a, sizeof *cl);
    if (!cl) return sbx__oom(&c->err, NULL);
    memset(cl, 0, sizeof *cl);
    cl->a = a;
    cl->log = cfg->logger;
    if (pthread_mutex_init(&cl->mu, NULL) != 0) {
        sbx__free(&a, cl);
        return sbx__fail(&c->err, SBX_ERR_SYS, "pthread_mutex_init failed");
    }
    if (pthread_mutex_init(&cl->tmu, NULL) != 0) {
        pthread_mutex_destroy(&cl->mu);
        sbx__free(&a, cl);
        return sbx__fail(&c->err, SBX_ERR_SYS, "pthread_mutex_init failed");
    }
    if (pthread_mutex_init(&cl->pmu, NULL) != 0) {
        pthread_mutex_destroy(&cl->mu);
        pthread_mutex_destroy(&cl->tmu);
        sbx__free(&a, cl);
        return sbx__fail(&c->err, SBX_ERR_SYS, "pthread_mutex_init failed");
    }
    {
        int rc = pthread_mutex_init(&cl->lmu, NULL);
        if (rc == 0) {
            rc = sbx__cond_init(&cl->lcv, &cl->lmono);
            if (rc != 0) pthread_mutex_destroy(&cl->lmu);
        }
        if (rc != 0) {
            pthread_mutex_destroy(&cl->mu);
            pthread_mutex_destroy(&cl->tmu);
            pthread_mutex_destroy(&cl->pmu);
            sbx__free(&a, cl);
            return sbx__fail(&c->err, SBX_ERR_SYS, "pthread_cond_init failed");
        }
    }
    kubectl = cfg->kubectl ? cfg->kubectl : getenv("SANDBOX_KUBECTL");
    cl->kubectl = sbx__strdup(&cl->a, kubectl && *kubectl ? kubectl : "kubectl");
    if (!cl->kubectl) oom = 1;
    cl->kubeconfig = sbx__opt_dup(&cl->a, cfg->kubeconfig, &oom);
    cl->context = sbx__opt_dup(&cl->a, cfg->context, &oom);
    cl->ns = sbx__strdup(&cl->a, cfg->ns && *cfg->ns ? cfg->ns : "default");
    if (!cl->ns) oom = 1;
    cl->api_timeout_ms = cfg->api_timeout_ms > 0 ? cfg->api_timeout_ms : 30000;
    c->impl = cl;
    if (oom) {
        r = sbx__oom(&c->err, NULL);
    } else if (!sbx__valid_dns_name(cl->ns, 0)) {
        r = sbx__fail(&c->err, SBX_ERR_INVALID_ARG, "namespace \"%.80s\" is not a valid DNS label", cl->ns);
    } else {
        r = sbx__client_mode(cl, cfg, &c->err);
    }
    url = cfg->api_url ? cfg->api_url : getenv("SANDBOX_API_URL");
    if (r == SBX_OK) {
        /* the supervisor starts before any child, so every child is covered.
           With an http:// API URL it deletes through that URL with an empty
           kubeconfig (no credentials sent over plain HTTP); with unix: it
           cannot reach the API */
        sbx__owner_init(cl);
        if (url && *url) {
            r = (sbx_result)sbx__endpoint_parse(url, &cl->api, &c->err);
            if (r == SBX_OK)
                r = sbx__sup_start(&cl->a, cl->kubectl, "/dev/null", NULL, url, strncmp(url, "http://", 7) == 0,
                                   &cl->sup, &c->err);
        } else {
            r = sbx__sup_start(&cl->a, cl->kubectl, cl->kubeconfig, cl->context, NULL, 1, &cl->sup, &c->err);
            if (r == SBX_OK)
                r = sbx__start_proxy(cl, cfg->proxy_timeout_ms > 0 ? cfg->proxy_timeout_ms : 15000, &c->err);
        }
    }
    if (r != SBX_OK) {
        sbx__client_free(cl);
        c->impl = NULL;
        c->err.code = r;
        return r;
    }
    return SBX_OK;
}

SBX_API void sbx_client_close(sbx_client *c)
{
    if (!c || !c->impl) return;
    sbx__client_free(c->impl);
    c->impl = NULL;
}

/* Free everything of a sandbox; the claim must already be dealt with. */
SBX__PRIVATE void sbx__sandbox_free(struct sbx__sandbox *s)
{
    const sbx_allocator *a = &s->cl->a;
#ifndef SBX_NO_GRPC
    sbx__gchan_drop(s, 1);
#endif
    sbx__lease_del(s);
    sbx__tunnel_stop(s);
    if (s->rt_ready) sbx__conn_free(&s->rt);
    sbx__free(a, s->ns);
    sbx__free(a, s->claim);
    sbx__free(a, s->sandbox);
    sbx__free(a, s->pod);
    sbx__free(a, s->pod_ip);
    sbx__free(a, s->pool);
    sbx__free(a, s->template_name);
    sbx__free(a, s->prefix);
    sbx__free(a, s->rhdr);
    sbx__free(a, s);
}

/* Stop the tunnel and delete the claim; keeps the first error. */
SBX__PRIVATE sbx_result sbx__sandbox_release(struct sbx__sandbox *s, sbx_error *e)
{
    sbx_result r = SBX_OK;
#ifndef SBX_NO_GRPC
    sbx__gchan_drop(s, 1); /* its processes' later calls fail SBX_ERR_CLOSED */
#endif
    sbx__lease_del(s);
    sbx__tunnel_stop(s);
    if (s->claim_created || s->claim_maybe) {
        sbx_error de;
        sbx__err_clear(&de);
        if (s->claim_created) {
            r = sbx__delete_claim(s, sbx__deadline(s->cl->api_timeout_ms), &de);
            if (r == SBX_OK)
                sbx__log(&s->cl->log, SBX_LOG_INFO, SBX_EVENT_CLAIM_DELETED, s->claim, 0, "SandboxClaim %s/%s deleted",
                         s->ns, s->claim);
        } else {
            r = sbx__delete_if_ours(s, sbx__deadline(s->cl->api_timeout_ms), &de);
            if (r == SBX_OK) sbx__claim_disown(s); /* deleted, gone, or not ours */
        }
        if (r != SBX_OK && e->code == SBX_OK) *e = de;
    }
    return r;
}

/* The connection settings shared by open and attach. */
SBX__PRIVATE sbx_result sbx__check_conn_cfg(const sbx_sandbox_config *cfg, const char *what, sbx_error *e)
{
    if (cfg->server_port < 0 || cfg->server_port > 65535)
        return sbx__fail(e, SBX_ERR_INVALID_ARG, "%s: server_port %d is out of range", what, cfg->server_port);
    if (cfg->grpc_port < 0 || cfg->grpc_port > 65535)
        return sbx__fail(e, SBX_ERR_INVALID_ARG, "%s: grpc_port %d is out of range", what, cfg->grpc_port);
    if ((int)cfg->runtime < (int)SBX_RUNTIME_AUTO || (int)cfg->runtime > (int)SBX_RUNTIME_SANDBOXD)
        return sbx__fail(e, SBX_ERR_INVALID_ARG, "%s: runtime %d is not an sbx_runtime", what, (int)cfg->runtime);
    if (cfg->ns && *cfg->ns && !sbx__valid_dns_name(cfg->ns, 0))
        return sbx__fail(e, SBX_ERR_INVALID_ARG, "%s: namespace \"%.80s\" is not a valid DNS label", what, cfg->ns);
    return SBX_OK;
}

/* A new handle for client cl (not yet connected). */
SBX__PRIVATE struct sbx__sandbox *sbx__sandbox_new(struct sbx__client *cl, const sbx_sandbox_config *cfg,
                                                   const char *ns, const char *claim)
{
    struct sbx__sandbox *s = (struct sbx__sandbox *)sbx__malloc(&cl->a, sizeof *s);
    if (!s) return NULL;
    memset(s, 0, sizeof *s);
    s->cl = cl;
    s->pod_ws = -1;
    s->want = cfg->runtime;
    s->server_port = cfg->server_port;
    s->grpc_port = cfg->grpc_port > 0 ? cfg->grpc_port : 9090;
    s->call_timeout_ms = cfg->call_timeout_ms > 0 ? cfg->call_timeout_ms : 60000;
    s->tunnel_timeout_ms = cfg->tunnel_timeout_ms > 0 ? cfg->tunnel_timeout_ms : 30000;
    s->max_output = cfg->max_output_bytes > 0 ? cfg->max_output_bytes : SBX_MAX_RESPONSE_BYTES;
    s->ns = sbx__strdup(&cl->a, ns && *ns ? ns : cl->ns);
    s->claim = sbx__strdup(&cl->a, claim);
    return s;
}

/* open/attach given no client: start a private one (cfg->client) for the handle to own */
SBX__PRIVATE sbx_result sbx__own_client(struct sbx__client **cl, const sbx_sandbox_config *cfg, const char *what,
                                        sbx_error *e)
{
    sbx_client c;
    sbx_result r = sbx_client_open(&c, cfg->client);
    if (r != SBX_OK) {
        *e = c.err;
        sbx__err_prefix(e, "%s: start its client", what);
        e->code = r;
        return r;
    }
    *cl = c.impl;
    return SBX_OK;
}

SBX_API sbx_result sbx_open(sbx_sandbox *sb, sbx_client *c, const sbx_sandbox_config *cfg)
{
    sbx_sandbox_config zero;
    struct sbx__sandbox *s;
    struct sbx__client *cl;
    char rv[64], name[64];
    long long api_deadline, t0;
    sbx_result r;
    int oom = 0, attempt;
    if (!sb) return SBX_ERR_INVALID_ARG;
    sb->impl = NULL;
    sbx__err_clear(&sb->err);
    if (c && !c->impl) return sbx__fail(&sb->err, SBX_ERR_CLOSED, "open sandbox: the client is not open");
    cl = c ? c->impl : NULL;
    if (!cfg) {
        memset(&zero, 0, sizeof zero);
        cfg = &zero;
    }
    if (!(cfg->template_name && *cfg->template_name) && !(cfg->warm_pool && *cfg->warm_pool))
        return sbx__fail(&sb->err, SBX_ERR_INVALID_ARG, "open sandbox: set template_name or warm_pool");
    if (cfg->template_name && *cfg->template_name && !sbx__valid_dns_name(cfg->template_name, 1))
        return sbx__fail(&sb->err, SBX_ERR_INVALID_ARG, "open sandbox: template_name \"%.80s\" is not a valid name",
                         cfg->template_name);
    if (cfg->warm_pool && *cfg->warm_pool && !sbx__valid_dns_name(cfg->warm_pool, 1))
        return sbx__fail(&sb->err, SBX_ERR_INVALID_ARG, "open sandbox: warm_pool \"%.80s\" is not a valid name",
                         cfg->warm_pool);
    if (cfg->claim_name && *cfg->claim_name && !sbx__valid_dns_name(cfg->claim_name, 1))
        return sbx__fail(&sb->err, SBX_ERR_INVALID_ARG, "open sandbox: claim_name \"%.80s\" is not a valid name",
                         cfg->claim_name);
    /* shutdownTime has whole seconds: a shorter lease could lapse between renewals */
    if (cfg->lease_seconds < 0 || (cfg->lease_seconds > 0 && cfg->lease_seconds < 3))
        return sbx__fail(&sb->err, SBX_ERR_INVALID_ARG, "open sandbox: lease_seconds %d: 0 (none) or at least 3",
                         cfg->lease_seconds);
    if (cfg->shutdown_policy && *cfg->shutdown_policy && strcmp(cfg->shutdown_policy, "Delete") != 0 &&
        strcmp(cfg->shutdown_policy, "DeleteForeground") != 0 && strcmp(cfg->shutdown_policy, "Retain") != 0)
        return sbx__fail(&sb->err, SBX_ERR_INVALID_ARG,
                         "open sandbox: shutdown_policy \"%.40s\" is not Delete, DeleteForeground or Retain",
                         cfg->shutdown_policy);
    r = sbx__check_conn_cfg(cfg, "open sandbox", &sb->err);
    if (r != SBX_OK) return r;
    if (cfg->claim_name && *cfg->claim_name) {
        name[0] = '\0';
    } else {
        unsigned char rnd[4];
        sbx__random(rnd, sizeof rnd);
        snprintf(name, sizeof name, "sandbox-claim-%02x%02x%02x%02x", rnd[0], rnd[1], rnd[2], rnd[3]);
    }
    if (!cl && (r = sbx__own_client(&cl, cfg, "open sandbox", &sb->err)) != SBX_OK) return r;
    s = sbx__sandbox_new(cl, cfg, cfg->ns, name[0] ? name : cfg->claim_name);
    if (!s) { if (!c) sbx__client_free(cl); return sbx__oom(&sb->err, "open sandbox"); }
    s->own_client = !c;
    s->template_name = sbx__opt_dup(&cl->a, cfg->template_name, &oom);
    s->pool = sbx__opt_dup(&cl->a, cfg->warm_pool, &oom);
    sb->impl = s;
    if (!s->ns || !s->claim || oom) {
        r = sbx__oom(&sb->err, NULL);
        goto fail;
    }
    snprintf(s->memo_key, sizeof s->memo_key, "%s/%s", s->pool ? "p" : "t", s->pool ? s->pool : s->template_name);
    api_deadline = sbx__deadline(cl->api_timeout_ms);
    r = sbx__discover(cl, api_deadline, &sb->err);
    if (r != SBX_OK) goto fail;
    if (strcmp(cl->ext_version, "v1beta1") != 0 && !s->template_name) {
        r = sbx__fail(&sb->err, SBX_ERR_INVALID_ARG,
                      "this cluster serves only v1alpha1, where a claim names a template: set template_name");
        goto fail;
    }
    for (attempt = 0;; attempt++) {
        if (strcmp(cl->ext_version, "v1beta1") == 0 && !s->pool) {
            r = sbx__resolve_pool(s, s->template_name, api_deadline, &sb->err);
            if (r != SBX_OK) goto fail;
        }
        if (attempt == 0) {
            /* before the claim exists: a gateway without an address costs no claim,
               and the shared router tunnel starts while the claim becomes Ready */
            if (cl->mode == SBX_MODE_GATEWAY) r = sbx__gateway_resolve(cl, &sb->err);
            else if (cl->mode == SBX_MODE_ROUTER_TUNNEL) r = sbx__rtun_begin(cl, &sb->err);
            if (r != SBX_OK) goto fail;
        }
        {
            unsigned char rnd[8];
            int i;
            sbx__random(rnd, sizeof rnd);
            for (i = 0; i < 8; i++) snprintf(s->nonce + 2 * i, 3, "%02x", rnd[i]);
        }
        s->lease_s = cfg->lease_seconds;
        s->expiry = cfg->ttl_seconds > 0 ? sbx__epoch_up() + cfg->ttl_seconds : 0;
        r = sbx__create_claim(s, cfg, rv, sizeof rv, api_deadline, &sb->err);
        t0 = sbx__now_ms();
        if (r == SBX_OK)
            sbx__log(&cl->log, SBX_LOG_INFO, SBX_EVENT_CLAIM_CREATED, s->claim, s->create_tries,
                     "SandboxClaim %s/%s created (%s %s)", s->ns, s->claim, s->pool ? "warm pool" : "template",
                     s->pool ? s->pool : s->template_name ? s->template_name : "?");
        /* it may exist (also after a lost answer): ours until deleted or proven
           someone else's (rollback below) */
        if (s->claim_created || s->claim_maybe) sbx__claim_own(s);
        if (r == SBX_OK && s->lease_s > 0) r = sbx__lease_add(s, &sb->err); /* renewed while it becomes Ready */
        if (r != SBX_OK) goto fail;
        r = sbx__wait_ready(s, rv, sbx__deadline(cfg->ready_timeout_ms > 0 ? cfg->ready_timeout_ms : 180000),
                            &sb->err);
        if (r == SBX_OK)
            sbx__log(&cl->log, SBX_LOG_INFO, SBX_EVENT_READY, s->claim, sbx__now_ms() - t0, "Ready after %lld ms",
                     sbx__now_ms() - t0);
        if (r == SBX_OK || !s->pool_gone || !s->pool_memo || attempt > 0) break;
        /* the remembered pool is gone: this claim goes, the pools are listed
           again, and a new claim names the pool of the template now */
        sbx__memo_forget_pool(s);
        sbx__err_clear(&sb->err);
        r = sbx__sandbox_release(s, &sb->err);
        if (r != SBX_OK) goto fail;
        sbx__err_clear(&sb->err);
        sbx__free(&cl->a, s->pool);
        s->pool = NULL;
        s->pool_gone = s->pool_memo = 0;
        if (name[0]) {
            unsigned char rnd[4];
            sbx__random(rnd, sizeof rnd);
            snprintf(name, sizeof name, "sandbox-claim-%02x%02x%02x%02x", rnd[0], rnd[1], rnd[2], rnd[3]);
            sbx__free(&cl->a, s->claim);
            s->claim = sbx__strdup(&cl->a, name);
            if (!s->claim) {
                r = sbx__oom(&sb->err, NULL);
                goto fail;
            }
        }
    }
    if (r != SBX_OK) goto fail;
    r = sbx__pod_route(s, &sb->err);
    if (r != SBX_OK) goto fail;
    sbx__memo_set_port(s, s->template_port);
    sbx__log(&cl->log, SBX_LOG_INFO, SBX_EVENT_ROUTE, s->claim, 0, "%s", sbx_route(sb));
    return SBX_OK;
fail:
    if (s->expiry && sbx__epoch_now() >= s->expiry &&
        (r == SBX_ERR_DELETED || r == SBX_ERR_NOT_FOUND || r == SBX_ERR_CONNECT || r == SBX_ERR_SPAWN ||
         r == SBX_ERR_TIMEOUT)) {
        /* the controller took the claim or its sandbox away at the TTL: say
           that, not only what was seen of it (deleted while we waited,
           kubectl's "pods ... not found", a closed connection) */
        sbx__err_prefix(&sb->err, "its ttl_seconds (%d s) ran out during the open", cfg->ttl_seconds);
        r = SBX_ERR_DELETED;
    }
    sbx__err_prefix(&sb->err, "open sandbox (claim %s)", s->claim ? s->claim : "?");
    sbx__sandbox_release(s, &sb->err);  /* rollback: tunnel stopped, claim deleted */
    sbx__sandbox_free(s);
    if (!c) sbx__client_free(cl);
    sb->impl = NULL;
    sb->err.code = r;
    return r;
}

SBX_API sbx_result sbx_attach(sbx_sandbox *sb, sbx_client *c, const sbx_sandbox_config *cfg)
{
    struct sbx__sandbox *s;
    struct sbx__client *cl;
    sbx__buf body;
    sbx__jtok *t = NULL;
    long long deadline;
    int status = 0, n;
    sbx_result r;
    if (!sb) return SBX_ERR_INVALID_ARG;
    sb->impl = NULL;
    sbx__err_clear(&sb->err);
    if (c && !c->impl) return sbx__fail(&sb->err, SBX_ERR_CLOSED, "attach: the client is not open");
    cl = c ? c->impl : NULL;
    if (!cfg || !cfg->claim_name || !*cfg->claim_name)
        return sbx__fail(&sb->err, SBX_ERR_INVALID_ARG, "attach: set claim_name in the config");
    if (!sbx__valid_dns_name(cfg->claim_name, 1))
        return sbx__fail(&sb->err, SBX_ERR_INVALID_ARG, "attach: claim name \"%.80s\" is not a valid name",
                         cfg->claim_name);
    r = sbx__check_conn_cfg(cfg, "attach", &sb->err);
    if (r != SBX_OK) return r;
    if (!cl && (r = sbx__own_client(&cl, cfg, "attach", &sb->err)) != SBX_OK) return r;
    s = sbx__sandbox_new(cl, cfg, cfg->ns, cfg->claim_name);
    if (!s) { if (!c) sbx__client_free(cl); return sbx__oom(&sb->err, "attach"); }
    s->own_client = !c;
    sb->impl = s;
    sbx__buf_init(&body, &cl->a);
    if (!s->ns || !s->claim) {
        r = sbx__oom(&sb->err, NULL);
        goto fail;
    }
    deadline = sbx__deadline(cl->api_timeout_ms);
    r = sbx__discover(cl, deadline, &sb->err);
    if (r == SBX_OK && cl->mode == SBX_MODE_GATEWAY) r = sbx__gateway_resolve(cl, &sb->err);
    if (r == SBX_OK) r = sbx__get_claim(s, &body, &status, deadline, &sb->err);
    if (r == SBX_OK && status == 404) {
        r = sbx__fail(&sb->err, SBX_ERR_NOT_FOUND, "no SandboxClaim \"%s\" in namespace \"%s\"", s->claim, s->ns);
        sb->err.http_status = 404;
    } else if (r == SBX_OK && status != 200) {
        r = sbx__api_fail(&sb->err, status, &body, "get SandboxClaim");
    } else if (r == SBX_OK) {
        sbx__claim_info ci;
        if (sbx__json_doc(&cl->a, &body, &t, &n, "", SBX__JSON_OBJECT) < 0) {
            r = sbx__fail(&sb->err, n == SBX__JSON_ERR_NOMEM ? SBX_ERR_NOMEM : SBX_ERR_PROTOCOL,
                          "get SandboxClaim: the answer is not a JSON object");
        } else {
            sbx__claim_info_read(&cl->a, body.data, t, n, 0, &ci);
            if (ci.deleting)
                r = sbx__fail(&sb->err, SBX_ERR_DELETED, "claim \"%s\" is being deleted", s->claim);
            else if (strcmp(ci.ready, "True") != 0 || !ci.sandbox[0])
                r = sbx__fail(&sb->err, SBX_ERR_SANDBOX, "claim \"%s\" is not Ready (Ready=%s %s: %s)", s->claim,
                              ci.ready[0] ? ci.ready : "unknown", ci.reason, ci.message);
            else
                r = sbx__claim_take_sandbox(s, ci.sandbox, &sb->err);
        }
        sbx__free(&cl->a, t);
    }
    if (r == SBX_OK) r = sbx__resolve_pod(s, sbx__deadline(cl->api_timeout_ms), &sb->err);
    if (r == SBX_OK) r = sbx__route_open(s, &sb->err);
    sbx__buf_free(&body);
    if (r == SBX_OK) {
        s->claim_created = 1; /* from now on the handle owns the claim: sbx_close deletes it */
        sbx__log(&cl->log, SBX_LOG_INFO, SBX_EVENT_ROUTE, s->claim, 0, "%s", sbx_route(sb));
        return SBX_OK;
    }
fail:
    sbx__buf_free(&body);
    sbx__err_prefix(&sb->err, "attach to claim %s", s->claim ? s->claim : "?");
    sbx__sandbox_free(s); /* never deletes the claim */
    if (!c) sbx__client_free(cl);
    sb->impl = NULL;
    sb->err.code = r;
    return r;
}

SBX_API sbx_result sbx_close(sbx_sandbox *sb)
{
    struct sbx__sandbox *s;
    struct sbx__client *own;
    sbx_result r;
    if (!sb || !sb->impl) return SBX_OK;
    s = sb->impl;
    sbx__err_clear(&sb->err);
    r = sbx__sandbox_release(s, &sb->err);
    if (r != SBX_OK) sbx__err_prefix(&sb->err, "close sandbox (claim %s)", s->claim);
    own = s->own_client ? s->cl : NULL;
    sbx__sandbox_free(s);
    if (own) sbx__client_free(own); /* a claim whose DELETE failed: its supervisor tries again */
    sb->impl = NULL;
    return r;
}

SBX_API sbx_result sbx_detach(sbx_sandbox *sb)
{
    struct sbx__sandbox *s;
    struct sbx__client *own;
    sbx_result r = SBX_OK;
    if (!sb || !sb->impl) return SBX_OK;
    s = sb->impl;
    sbx__err_clear(&sb->err);
    sbx__claim_disown(s); /* the supervisor never touches it again */
    if (s->lease) {
        /* a detached claim outlives us: lift the lease (back to the TTL's end, or none) */
        sbx__lease_del(s);
        r = sbx__lease_lift(s->cl, s->ns, s->claim, s->expiry, sbx__deadline(s->cl->api_timeout_ms), &sb->err);
        if (r != SBX_OK) sbx__err_prefix(&sb->err, "detach (claim %s): lift the lease", s->claim);
    }
    own = s->own_client ? s->cl : NULL;
    sbx__sandbox_free(s);
    if (own) sbx__client_free(own);
    sb->impl = NULL;
    return r;
}

/* Common entry of every call on a handle (a sandbox, a process): NULL is a
   caller mistake, a closed handle says which kind it is. */
#define SBX__ENTER_HANDLE(h, kind)                                                           \
    do {                                                                                     \
        if (!(h)) return SBX_ERR_INVALID_ARG;                                                \
        sbx__err_clear(&(h)->err);                                                           \
        if (!(h)->impl) return sbx__fail(&(h)->err, SBX_ERR_CLOSED, "the " kind " is not open"); \
    } while (0)
#define SBX__ENTER(sb) SBX__ENTER_HANDLE(sb, "sandbox")

SBX_API sbx_result sbx_status(sbx_sandbox *sb, sbx_claim_status *st)
{
    struct sbx__sandbox *s;
    sbx__buf body;
    sbx__jtok *t = NULL;
    int status = 0, n;
    sbx_result r;
    if (st) memset(st, 0, sizeof *st);
    SBX__ENTER(sb);
    s = sb->impl;
    if (!st) return sbx__fail(&sb->err, SBX_ERR_INVALID_ARG, "status: the status pointer is NULL");
    sbx__buf_init(&body, &s->cl->a);
    r = sbx__get_claim(s, &body, &status, sbx__deadline(s->cl->api_timeout_ms), &sb->err);
    if (r == SBX_OK && status == 404) {
        char text[SBX_ERRMSG_SIZE];
        st->state = SBX_STATE_GONE;
        snprintf(st->reason, sizeof st->reason, "NotFound");
        sbx__http_error_text(status, body.data ? body.data : "", body.len, text, sizeof text);
        sbx__fmt(st->message, sizeof st->message, "%s", text);
    } else if (r == SBX_OK && status != 200) {
        r = sbx__api_fail(&sb->err, status, &body, "get SandboxClaim");
    } else if (r == SBX_OK) {
        if (sbx__json_doc(&s->cl->a, &body, &t, &n, "", SBX__JSON_OBJECT) < 0) {
            r = sbx__fail(&sb->err, n == SBX__JSON_ERR_NOMEM ? SBX_ERR_NOMEM : SBX_ERR_PROTOCOL,
                          "get SandboxClaim: the answer is not a JSON object");
        } else {
            sbx__claim_info ci;
            sbx__claim_info_read(&s->cl->a, body.data, t, n, 0, &ci);
            st->state = ci.deleting ? SBX_STATE_GONE
                      : strcmp(ci.ready, "True") == 0 && ci.sandbox[0] ? SBX_STATE_READY : SBX_STATE_NOT_READY;
            if (ci.deleting && !ci.reason[0]) snprintf(ci.reason, sizeof ci.reason, "Deleting");
            sbx__fmt(st->reason, sizeof st->reason, "%s", ci.reason);
            sbx__fmt(st->message, sizeof st->message, "%s", ci.message);
        }
        sbx__free(&s->cl->a, t);
    }
    sbx__buf_free(&body);
    if (r != SBX_OK) sbx__err_prefix(&sb->err, "status of claim %s", s->claim);
    return r;
}

/* The client-level calls keep their error in `err` (may be NULL), never in
   the shared client handle, so several threads may call them at once. */
SBX__PRIVATE sbx_result sbx__client_enter(sbx_client *c, const char *ns, sbx_error *e, struct sbx__client **out,
                                          const char **nsout, const char *what)
{
    sbx__err_clear(e);
    if (!c || !c->impl) return sbx__fail(e, SBX_ERR_CLOSED, "%s: the client is not open", what);
    if (ns && *ns && !sbx__valid_dns_name(ns, 0))
        return sbx__fail(e, SBX_ERR_INVALID_ARG, "%s: namespace \"%.80s\" is not a valid DNS label", what, ns);
    *out = c->impl;
    *nsout = ns && *ns ? ns : c->impl->ns;
    return sbx__discover(c->impl, sbx__deadline(c->impl->api_timeout_ms), e);
}

SBX_API sbx_result sbx_delete_claim(sbx_client *c, const char *ns, const char *claim_name, sbx_error *err)
{
    struct sbx__client *cl = NULL;
    const char *use_ns = NULL;
    int gone = 0;
    sbx_result r;
    if (!claim_name || !sbx__valid_dns_name(claim_name, 1)) {
        sbx__err_clear(err);
        return sbx__fail(err, SBX_ERR_INVALID_ARG, "delete claim: \"%.80s\" is not a valid name",
                         claim_name ? claim_name : "(null)");
    }
    r = sbx__client_enter(c, ns, err, &cl, &use_ns, "delete claim");
    if (r == SBX_OK) r = sbx__delete_claim_ns(cl, use_ns, claim_name, &gone, sbx__deadline(cl->api_timeout_ms), err);
    if (r == SBX_OK && gone) {
        r = sbx__fail(err, SBX_ERR_NOT_FOUND, "no SandboxClaim \"%s\" in namespace \"%s\"", claim_name, use_ns);
        if (err) err->http_status = 404;
    }
    if (r != SBX_OK) sbx__err_prefix(err, "delete claim %s", claim_name);
    return r;
}

/* String token i (or "" when it is absent or not a string) copied into the
   block at *off; unescaping never grows a string, so its raw length + 1 fits. */
SBX__PRIVATE const char *sbx__claim_str(const char *js, const sbx__jtok *t, int i, char *blk, size_t *off)
{
    char *at = blk + *off;
    size_t got = 0;
    if (i < 0 || t[i].type != SBX__JSON_STRING) {
        *at = '\0';
        *off += 1;
        return at;
    }
    sbx__json_unescape(js, t, i, at, t[i].end - t[i].start + 1, &got);
    *off += got + 1;
    return at;
}

/* A decimal annotation ("1234"); 0 when absent or not all digits. */
SBX__PRIVATE long long sbx__claim_num(const char *js, const sbx__jtok *t, int i)
{
    char buf[24];
    long long v = 0;
    size_t k;
    sbx__json_copy(js, t, i, buf, sizeof buf);
    for (k = 0; buf[k]; k++) {
        if (buf[k] < '0' || buf[k] > '9' || v > (LLONG_MAX - 9) / 10) return 0;
        v = v * 10 + (buf[k] - '0');
    }
    return v;
}

SBX_API sbx_result sbx_list_claims(sbx_client *c, const char *ns, const char *label_selector,
                                   sbx_claim_entry **entries, size_t *count, sbx_error *err)
{
    struct sbx__client *cl = NULL;
    const char *use_ns = NULL;
    sbx__buf target, body;
    sbx__jtok *t = NULL;
    int status = 0, n, items, i, k, all = ns && strcmp(ns, "*") == 0;
    sbx_result r;
    if (entries) *entries = NULL;
    if (count) *count = 0;
    if (!entries || !count) {
        sbx__err_clear(err);
        return sbx__fail(err, SBX_ERR_INVALID_ARG, "list claims: entries and count are required");
    }
    r = sbx__client_enter(c, all ? NULL : ns, err, &cl, &use_ns, "list claims");
    if (r != SBX_OK) return r;
    sbx__buf_init(&target, &cl->a);
    sbx__buf_init(&body, &cl->a);
    if ((all ? sbx__buf_printf(&target, "/apis/" SBX__GROUP_EXT "/%s/sandboxclaims", cl->ext_version)
             : sbx__buf_printf(&target, "/apis/" SBX__GROUP_EXT "/%s/namespaces/%s/sandboxclaims", cl->ext_version,
                               use_ns)) != 0 ||
        (label_selector && *label_selector &&
         (sbx__buf_puts(&target, "?labelSelector=") != 0 ||
          sbx__pct_encode_segment(&target, label_selector, strlen(label_selector)) != 0)))
        r = sbx__oom(err, NULL);
    if (r == SBX_OK)
        r = sbx__api_call(cl, "GET", target.data, NULL, 0, NULL, &body, &status, sbx__deadline(cl->api_timeout_ms),
                          err);
    if (r == SBX_OK && status != 200) r = sbx__api_fail(err, status, &body, "list SandboxClaims");
    if (r == SBX_OK) {
        items = sbx__json_doc(&cl->a, &body, &t, &n, "items", SBX__JSON_ARRAY);
        if (items < 0) {
            r = sbx__fail(err, n == SBX__JSON_ERR_NOMEM ? SBX_ERR_NOMEM : SBX_ERR_PROTOCOL,
                          "list SandboxClaims: the answer is not a list");
        } else {
            /* one block: the entries, then their strings (name, namespace,
               reason, owner host: each at most its raw JSON length + 1) */
            static const char *const str_paths[] = {"metadata.name", "metadata.namespace"};
            size_t nitems = (size_t)t[items].size, bytes = 0, off, j = 0, q;
            char *blk = NULL;
            SBX__JSON_FOREACH(t, items, i, k) {
                int an = sbx__json_get(body.data, t, n, i, "metadata.annotations");
                int oh = an >= 0 ? sbx__json_mem(body.data, t, n, an, "sandbox.h/owner-host") : -1;
                for (q = 0; q < 2; q++) {
                    int v = sbx__json_get(body.data, t, n, i, str_paths[q]);
                    if (v >= 0 && t[v].type == SBX__JSON_STRING) bytes += t[v].end - t[v].start;
                }
                if (oh >= 0 && t[oh].type == SBX__JSON_STRING) bytes += t[oh].end - t[oh].start;
                bytes += 4 + sizeof ((sbx__claim_info *)0)->reason + strlen(use_ns);
            }
            if (nitems < ((size_t)-1 - bytes) / sizeof(sbx_claim_entry) - 1)
                blk = (char *)sbx__block_alloc(&cl->a, (nitems + 1) * sizeof(sbx_claim_entry) + bytes);
            if (!blk) {
                r = sbx__oom(err, "list claims");
            } else {
                sbx_claim_entry *arr = (sbx_claim_entry *)(void *)blk;
                off = (nitems + 1) * sizeof(sbx_claim_entry);
                SBX__JSON_FOREACH(t, items, i, k) {
                    int nm = sbx__json_get(body.data, t, n, i, "metadata.name");
                    int an = sbx__json_get(body.data, t, n, i, "metadata.annotations");
                    int ct = sbx__json_get(body.data, t, n, i, "metadata.creationTimestamp");
                    sbx__claim_info ci;
                    sbx_claim_entry *en = &arr[j];
                    size_t rl;
                    if (nm < 0 || t[nm].type != SBX__JSON_STRING) continue;
                    memset(en, 0, sizeof *en);
                    sbx__claim_info_read(&cl->a, body.data, t, n, i, &ci);
                    en->name = sbx__claim_str(body.data, t, nm, blk, &off);
                    en->ns = sbx__claim_str(body.data, t, sbx__json_get(body.data, t, n, i, "metadata.namespace"),
                                            blk, &off);
                    if (!en->ns[0] && !all) { /* a server that leaves it out: the one we asked */
                        rl = strlen(use_ns) + 1;
                        memcpy(blk + off - 1, use_ns, rl);
                        off += rl - 1;
                    }
                    en->ready = strcmp(ci.ready, "True") == 0 && ci.sandbox[0] && !ci.deleting;
                    en->deleting = ci.deleting;
                    rl = strlen(ci.reason) + 1;
                    memcpy(blk + off, ci.reason, rl);
                    en->reason = blk + off;
                    off += rl;
                    if (ct >= 0 && t[ct].type == SBX__JSON_STRING)
                        en->created = (long long)sbx__parse_rfc3339(body.data + t[ct].start, t[ct].end - t[ct].start);
                    en->owner_host = sbx__claim_str(
                        body.data, t, an >= 0 ? sbx__json_mem(body.data, t, n, an, "sandbox.h/owner-host") : -1, blk,
                        &off);
                    if (an >= 0) {
                        en->owner_pid = sbx__claim_num(body.data, t, sbx__json_mem(body.data, t, n, an,
                                                                                   "sandbox.h/owner-pid"));
                        en->owner_start = sbx__claim_num(body.data, t, sbx__json_mem(body.data, t, n, an,
                                                                                     "sandbox.h/owner-start"));
                    }
                    j++;
                }
                *entries = arr;
                *count = j;
            }
        }
        sbx__free(&cl->a, t);
    }
    sbx__buf_free(&target);
    sbx__buf_free(&body);
    return r;
}

/* ======================================================================== */
/* >>calls: the public functions on an open sandbox (run, files, processes) */
/* ======================================================================== */

/* ---- calls on a sandbox ------------------------------------------------- */

SBX_API unsigned sbx_capabilities(const sbx_sandbox *sb)
{
    if (!sb || !sb->impl) return 0;
    if (sb->impl->runtime == SBX_RUNTIME_SANDBOXD) {
        unsigned caps = SBX_CAP_WRITE | SBX_CAP_READ | SBX_CAP_LIST | SBX_CAP_EXISTS | SBX_CAP_REMOVE;
#ifndef SBX_NO_GRPC
        if (sb->impl->cl->mode == SBX_MODE_POD_TUNNEL || sb->impl->cl->mode == SBX_MODE_IN_CLUSTER)
            caps |= SBX_CAP_EXEC | SBX_CAP_PROCESS | SBX_CAP_EXEC_ENV;
#endif
        return caps;
    }
    return SBX_CAP_EXEC | SBX_CAP_WRITE | SBX_CAP_READ | SBX_CAP_LIST | SBX_CAP_EXISTS;
}

/* A call the runtime cannot do. */
SBX__PRIVATE sbx_result sbx__unsupported(sbx_sandbox *sb, const char *call, const char *why)
{
    return sbx__fail(&sb->err, SBX_ERR_UNSUPPORTED, "%s: the %s of sandbox %s %s", call,
                     sbx__runtime_name(sb->impl->runtime), sb->impl->sandbox, why);
}

/* The python runtime's POST /execute: one command line, split there like a
   shell's words (no shell). */
SBX__PRIVATE sbx_result sbx__run_python(sbx_sandbox *sb, const char *command, long long deadline, sbx_exec_result *res)
{
    struct sbx__sandbox *s = sb->impl;
    sbx__buf body, out;
    sbx__http_req req;
    sbx__rtio io;
    sbx__jtok *t = NULL;
    int n;
    sbx_result r;
    sbx__buf_init(&body, &s->cl->a);
    sbx__buf_init(&out, &s->cl->a);
    r = SBX_OK;
    if (sbx__buf_puts(&body, "{\"command\":") != 0) r = sbx__oom(&sb->err, NULL);
    if (r == SBX_OK) r = sbx__jstr(&body, command, "the command", &sb->err);
    if (r == SBX_OK && sbx__buf_puts(&body, "}") != 0) r = sbx__oom(&sb->err, NULL);
    sbx__rtio_init(&io, &out, -1, 0);
    if (r == SBX_OK) {
        sbx__http_req_init(&req);
        req.method = "POST";
        req.target = "/execute";
        req.headers = "Content-Type: application/json\r\nAccept: application/json\r\n";
        req.body = body.data;
        req.body_len = body.len;
        req.idempotent = 0; /* a command must never run twice */
        r = sbx__rt_call(s, &req, &io, deadline, &sb->err);
    }
    if (r == SBX_OK && io.status != 200) r = sbx__status_fail(&sb->err, io.status, &out, "run", NULL);
    if (r == SBX_OK) {
        int so, se, ec;
        long long code = 0;
        n = sbx__json_parse_alloc(&s->cl->a, out.data, out.len, &t);
        so = n > 0 ? sbx__json_mem(out.data, t, n, 0, "stdout") : -1;
        se = n > 0 ? sbx__json_mem(out.data, t, n, 0, "stderr") : -1;
        ec = n > 0 ? sbx__json_mem(out.data, t, n, 0, "exit_code") : -1;
        if (n == SBX__JSON_ERR_NOMEM) {
            r = sbx__oom(&sb->err, "run");
        } else if (so < 0 || se < 0 || ec < 0 || sbx__json_int(out.data, t, ec, &code) != 0 ||
                   code < INT_MIN || code > INT_MAX) {
            r = sbx__fail(&sb->err, SBX_ERR_PROTOCOL, "run: the runtime's answer is not {stdout, stderr, exit_code}: %.100s",
                          out.data ? out.data : "");
        } else {
            size_t need = 0;
            res->exit_code = (int)code;
            sbx__json_unescape(out.data, t, so, NULL, 0, &need);
            res->out = (char *)sbx__block_alloc(&s->cl->a, need);
            if (res->out) sbx__json_unescape(out.data, t, so, res->out, need + 1, &res->out_len);
            sbx__json_unescape(out.data, t, se, NULL, 0, &need);
            res->diag = (char *)sbx__block_alloc(&s->cl->a, need);
            if (res->diag) sbx__json_unescape(out.data, t, se, res->diag, need + 1, &res->diag_len);
            if (!res->out || !res->diag) {
                sbx_exec_result_free(res);
                r = sbx__oom(&sb->err, "run");
            }
        }
        sbx__free(&s->cl->a, t);
    }
    sbx__buf_free(&body);
    sbx__buf_free(&out);
    return r;
}

/* sandboxd's Execute (gRPC), sent once: argv or /bin/sh -c command. */
SBX__PRIVATE sbx_result sbx__exec_grpc(sbx_sandbox *sb, const char *what, const char *const *argv, const char *command,
                                       const char *const *env, const char *cwd, long long deadline, sbx_exec_result *res)
{
#ifdef SBX_NO_GRPC
    (void)argv;
    (void)command;
    (void)env;
    (void)cwd;
    (void)deadline;
    (void)res;
    return sbx__fail(&sb->err, SBX_ERR_UNSUPPORTED, "%s: this sandbox.h was built without gRPC (SBX_NO_GRPC), "
                     "which sandboxd needs to run commands", what);
#else
    struct sbx__sandbox *s = sb->impl;
    sbx__buf req, resp;
    sbx__pm_exec x;
    sbx_result r = sbx__grpc_route(s, what, &sb->err);
    if (r != SBX_OK) return r;
    sbx__buf_init(&req, &s->cl->a);
    sbx__buf_init(&resp, &s->cl->a);
    r = sbx__pm_config(&req, 1, argv, command, env, cwd, &sb->err);
    if (r == SBX_OK) r = sbx__gchan_get(s, deadline, &sb->err);
    if (r == SBX_OK) {
        /* the output is capped by max_output_bytes (stdout and stderr
           together), as on the python runtime, not by SBX_GRPC_MAX_MESSAGE;
           the slack is the answer's framing */
        size_t lim = s->max_output < 0x7fffffffu - 65536u ? s->max_output + 65536u : 0x7fffffffu;
        r = sbx__grpc_unary(s->gchan->h, SBX__GRPC_SVC "Execute", req.data, req.len, &resp, lim,
                            "max_output_bytes", deadline, &sb->err);
        if (r == SBX_ERR_CONNECT && s->cl->mode == SBX_MODE_POD_TUNNEL && s->pod_ws == 0)
            sbx__pf_explain(&s->tunnel, s->tunnel_started, 0, &sb->err);
    }
    if (r == SBX_OK && sbx__pm_exec_resp(resp.data, resp.len, &x) != 0)
        r = sbx__fail(&sb->err, SBX_ERR_PROTOCOL, "a malformed ExecuteResponse (%lu bytes)", (unsigned long)resp.len);
    if (r == SBX_OK && (x.out_len > s->max_output || x.err_len > s->max_output - x.out_len))
        r = sbx__fail(&sb->err, SBX_ERR_TOO_BIG, "the output (%lu bytes of stdout, %lu of stderr) is over "
                      "max_output_bytes (%lu)", (unsigned long)x.out_len, (unsigned long)x.err_len,
                      (unsigned long)s->max_output);
    if (r == SBX_OK) {
        res->exit_code = x.exit_code;
        res->out = (char *)sbx__block_alloc(&s->cl->a, x.out_len);
        res->diag = (char *)sbx__block_alloc(&s->cl->a, x.err_len);
        if (!res->out || !res->diag) {
            sbx_exec_result_free(res);
            r = sbx__oom(&sb->err, NULL);
        } else {
            if (x.out_len) memcpy(res->out, x.out, x.out_len);
            if (x.err_len) memcpy(res->diag, x.err, x.err_len);
            res->out_len = x.out_len;
            res->diag_len = x.err_len;
        }
    }
    sbx__buf_free(&req);
    sbx__buf_free(&resp);
    if (r != SBX_OK) sbx__err_prefix(&sb->err, "%s (sandbox %s)", what, s->sandbox);
    return r;
#endif
}

SBX_API sbx_result sbx_run(sbx_sandbox *sb, const char *command, sbx_exec_result *res)
{
    if (res) memset(res, 0, sizeof *res);
    SBX__ENTER(sb);
    if (!command || !res) return sbx__fail(&sb->err, SBX_ERR_INVALID_ARG, "run: command and result are required");
    if (sb->impl->runtime == SBX_RUNTIME_SANDBOXD)
        return sbx__exec_grpc(sb, "run", NULL, command, NULL, NULL, sbx__call_deadline(sb->impl), res);
    return sbx__run_python(sb, command, sbx__call_deadline(sb->impl), res);
}

/* argv as one command line that a POSIX shell-word split (the python
   runtime's) turns back into the same words: plain words as they are, others
   in single quotes, a quote inside as '"'"'. */
SBX__PRIVATE sbx_result sbx__quote_argv(const char *const *argv, sbx__buf *b, sbx_error *e)
{
    size_t i, k;
    int bad = 0;
    for (i = 0; argv[i]; i++) {
        const char *w = argv[i];
        int plain = *w != '\0';
        for (k = 0; w[k] && plain; k++)
            plain = (w[k] >= 'a' && w[k] <= 'z') || (w[k] >= 'A' && w[k] <= 'Z') || (w[k] >= '0' && w[k] <= '9') ||
                    strchr("_@%+=:,./-", w[k]) != NULL;
        if (i > 0) bad |= sbx__buf_puts(b, " ");
        if (plain) {
            bad |= sbx__buf_puts(b, w);
            continue;
        }
        bad |= sbx__buf_puts(b, "'");
        for (k = 0; w[k]; k++) bad |= w[k] == '\'' ? sbx__buf_puts(b, "'\"'\"'") : sbx__buf_append(b, w + k, 1);
        bad |= sbx__buf_puts(b, "'");
    }
    return bad ? sbx__oom(e, NULL) : SBX_OK;
}

SBX_API sbx_result sbx_exec(sbx_sandbox *sb, const sbx_process_config *cfg, sbx_exec_result *res)
{
    struct sbx__sandbox *s;
    long long deadline;
    sbx__buf line;
    sbx_result r;
    if (res) memset(res, 0, sizeof *res);
    SBX__ENTER(sb);
    s = sb->impl;
    if (!cfg || !res || (!cfg->command && (!cfg->argv || !cfg->argv[0])) || (cfg->command && cfg->argv))
        return sbx__fail(&sb->err, SBX_ERR_INVALID_ARG, "exec: a result and exactly one of argv (non-empty) and command are required");
    deadline = cfg->timeout_ms > 0 ? sbx__deadline(cfg->timeout_ms) : sbx__call_deadline(s);
    if (s->runtime == SBX_RUNTIME_SANDBOXD)
        return sbx__exec_grpc(sb, "exec", cfg->argv, cfg->command, cfg->env, cfg->cwd, deadline, res);
    if ((cfg->env && cfg->env[0]) || (cfg->cwd && *cfg->cwd))
        return sbx__unsupported(sb, "exec", "takes no environment or working directory (sandboxd's process API does)");
    if (cfg->command) return sbx__run_python(sb, cfg->command, deadline, res);
    sbx__buf_init(&line, &s->cl->a);
    r = sbx__quote_argv(cfg->argv, &line, &sb->err);
    if (r == SBX_OK) r = sbx__run_python(sb, line.data, deadline, res);
    sbx__buf_free(&line);
    return r;
}

/* ---- processes (sandboxd's gRPC ProcessService) ------------------------- */

#define SBX__PENTER(p) SBX__ENTER_HANDLE(p, "process")

#ifndef SBX_NO_GRPC
struct sbx__process {
    sbx__gchan *ch;           /* referenced: valid until sbx_process_close */
    sbx__grpc_call *call;     /* the Start stream (read by one thread at a time) */
    int id;
    int exited, exit_code;    /* the exit event came (every later read repeats it) */
    sbx_result end;           /* != SBX_OK: the stream failed so (end_err says how) */
    sbx_error end_err;
    int call_timeout_ms;      /* each unary call on the process (the sandbox's) */
    long long deadline;       /* the process's timeout_ms, absolute; 0 none */
};
#endif

SBX_API sbx_result sbx_process_start(sbx_process *p, sbx_sandbox *sb, const sbx_process_config *cfg)
{
    sbx_result r;
#ifndef SBX_NO_GRPC
    struct sbx__sandbox *s;
    struct sbx__process *pr = NULL;
    sbx__buf req;
    long long start_deadline, wait;
    const unsigned char *m;
    size_t n;
    int k;
#endif
    if (!p) return SBX_ERR_INVALID_ARG;
    memset(p, 0, sizeof *p);
    if (!sb) return sbx__fail(&p->err, SBX_ERR_INVALID_ARG, "process start: the sandbox is NULL");
    if (!sb->impl) return sbx__fail(&p->err, SBX_ERR_CLOSED, "process start: the sandbox is not open");
    if (!cfg || (!cfg->command && (!cfg->argv || !cfg->argv[0])) || (cfg->command && cfg->argv))
        return sbx__fail(&p->err, SBX_ERR_INVALID_ARG, "process start: exactly one of argv (non-empty) and command is required");
    if (sb->impl->runtime != SBX_RUNTIME_SANDBOXD) {
        r = sbx__unsupported(sb, "process start", "has no process API (sandboxd's gRPC ProcessService does)");
        p->err = sb->err;
        sbx__err_clear(&sb->err);
        return r;
    }
#ifdef SBX_NO_GRPC
    return sbx__fail(&p->err, SBX_ERR_UNSUPPORTED, "process start: this sandbox.h was built without gRPC (SBX_NO_GRPC), "
                     "which sandboxd's process API needs");
#else
    s = sb->impl;
    r = sbx__grpc_route(s, "process start", &p->err);
    if (r != SBX_OK) return r;
    start_deadline = sbx__deadline(s->call_timeout_ms);
    sbx__buf_init(&req, &s->cl->a);
    r = sbx__pm_start_req(&req, cfg, &p->err);
    if (r == SBX_OK) r = sbx__gchan_get(s, start_deadline, &p->err);
    if (r == SBX_OK) {
        pr = (struct sbx__process *)sbx__malloc(&s->cl->a, sizeof *pr);
        if (!pr) r = sbx__oom(&p->err, NULL);
    }
    if (r == SBX_OK) {
        memset(pr, 0, sizeof *pr);
        pr->ch = s->gchan;
        sbx__gchan_ref(pr->ch);
        pr->call_timeout_ms = s->call_timeout_ms;
        pr->deadline = cfg->timeout_ms > 0 ? sbx__deadline(cfg->timeout_ms) : 0;
        r = sbx__grpc_start(pr->ch->h, SBX__GRPC_SVC "Start", req.data, req.len, 1, pr->deadline, &pr->call, &p->err);
    }
    sbx__buf_free(&req);
    /* the server names the process first */
    wait = pr && pr->deadline && pr->deadline < start_deadline ? pr->deadline : start_deadline;
    while (r == SBX_OK) {
        sbx__pm_event ev;
        m = NULL;
        n = 0;
        k = sbx__grpc_recv(pr->call, &m, &n, wait, &p->err);
        if (k == 1) {
            if (sbx__pm_start_event(m, n, &ev) != 0) {
                r = sbx__fail(&p->err, SBX_ERR_PROTOCOL, "a malformed StartResponse (%lu bytes)", (unsigned long)n);
            } else if (ev.kind == SBX__PM_INIT) {
                pr->id = ev.value;
                break;
            } else if (ev.kind != SBX__PM_NONE) {
                r = sbx__fail(&p->err, SBX_ERR_PROTOCOL, "the first StartResponse is not the init event");
            }
        } else if (k == 0) {
            const char *msg = "";
            int st = sbx__grpc_status(pr->call, &msg);
            r = st == 0 ? SBX_ERR_PROTOCOL : sbx__grpc_result(st);
            p->err.grpc_status = st;
            sbx__fail(&p->err, r, "gRPC " SBX__GRPC_SVC "Start: %s%s%s", st ? sbx__grpc_status_name(st) : "",
                      st ? ": " : "", st ? msg : "the stream ended before the init event");
        } else {
            r = (sbx_result)k;
        }
    }
    if (r != SBX_OK) {
        if (pr) {
            if (pr->call) sbx__grpc_free(pr->call);
            sbx__gchan_unref(pr->ch);
            sbx__free(&s->cl->a, pr);
        }
        if (s->cl->mode == SBX_MODE_POD_TUNNEL && s->pod_ws == 0 && r == SBX_ERR_CONNECT)
            sbx__pf_explain(&s->tunnel, s->tunnel_started, 0, &p->err);
        return sbx__err_prefix(&p->err, "process start (sandbox %s)", s->sandbox);
    }
    p->impl = pr;
    return SBX_OK;
#endif
}

#ifndef SBX_NO_GRPC
/* The stream ended: every later read answers the same. */
SBX__PRIVATE sbx_result sbx__proc_end(sbx_process *p, sbx_result r)
{
    struct sbx__process *pr = p->impl;
    sbx__err_prefix(&p->err, "process %d", pr->id);
    pr->end = r;
    pr->end_err = p->err;
    return r;
}
#endif

SBX_API sbx_result sbx_process_read(sbx_process *p, sbx_process_event *ev, int timeout_ms)
{
#ifndef SBX_NO_GRPC
    struct sbx__process *pr;
    long long wait;
#endif
    if (ev) memset(ev, 0, sizeof *ev);
    SBX__PENTER(p);
    if (!ev) return sbx__fail(&p->err, SBX_ERR_INVALID_ARG, "process read: the event is NULL");
#ifdef SBX_NO_GRPC
    (void)timeout_ms;
    return SBX_ERR_CLOSED;
#else
    pr = p->impl;
    if (pr->exited) {
        ev->stream = SBX_STREAM_EXIT;
        ev->exit_code = pr->exit_code;
        return SBX_OK;
    }
    if (pr->end != SBX_OK) {
        p->err = pr->end_err;
        return pr->end;
    }
    if (sbx__gchan_closed(pr->ch))
        return sbx__fail(&p->err, SBX_ERR_CLOSED, "process %d: its sandbox was closed", pr->id);
    wait = timeout_ms >= 0 ? sbx__deadline(timeout_ms) : 0;
    if (wait && pr->deadline && wait >= pr->deadline) wait = 0; /* the process's own end comes first */
    for (;;) {
        const unsigned char *m = NULL;
        size_t n = 0;
        sbx__pm_event e;
        int k = sbx__grpc_recv(pr->call, &m, &n, wait, &p->err);
        if (k == 1) {
            if (sbx__pm_start_event(m, n, &e) != 0)
                return sbx__proc_end(p, sbx__fail(&p->err, SBX_ERR_PROTOCOL, "a malformed StartResponse (%lu bytes)",
                                                  (unsigned long)n));
            if (e.kind == SBX__PM_EXIT) {
                pr->exited = 1;
                pr->exit_code = e.value;
                ev->stream = SBX_STREAM_EXIT;
                ev->exit_code = e.value;
                return SBX_OK;
            }
            if ((e.kind == SBX__PM_STDOUT || e.kind == SBX__PM_STDERR) && e.len > 0) {
                ev->stream = e.kind == SBX__PM_STDOUT ? SBX_STREAM_STDOUT : SBX_STREAM_STDERR;
                ev->data = (const char *)e.data;
                ev->len = e.len;
                return SBX_OK;
            }
            continue; /* an empty chunk, a repeated init, a field we do not know */
        }
        if (k == 0) {
            const char *msg = "";
            int st = sbx__grpc_status(pr->call, &msg);
            sbx_result r;
            if (st == 0)
                return sbx__proc_end(p, sbx__fail(&p->err, SBX_ERR_PROTOCOL,
                                                  "the stream ended without an exit event"));
            r = sbx__grpc_result(st);
            p->err.grpc_status = st;
            sbx__fail(&p->err, r, "gRPC " SBX__GRPC_SVC "Start: %s: %s", sbx__grpc_status_name(st), msg);
            return sbx__proc_end(p, r);
        }
        if (k == SBX_ERR_TIMEOUT && wait)
            return sbx__fail(&p->err, SBX_ERR_TIMEOUT, "process %d: no output within %d ms (it goes on)", pr->id,
                             timeout_ms);
        if (k == SBX_ERR_TIMEOUT) sbx__err_prefix(&p->err, "its timeout_ms passed");
        return sbx__proc_end(p, (sbx_result)k);
    }
#endif
}

#ifndef SBX_NO_GRPC
/* One unary call about the process (WriteStdin, SendSignal, ResizeTTY). */
SBX__PRIVATE sbx_result sbx__proc_unary(sbx_process *p, const char *method, const sbx__buf *req, const char *what)
{
    struct sbx__process *pr = p->impl;
    sbx__buf resp;
    char path[96];
    sbx_result r;
    if (sbx__gchan_closed(pr->ch))
        return sbx__fail(&p->err, SBX_ERR_CLOSED, "process %d: %s: its sandbox was closed", pr->id, what);
    snprintf(path, sizeof path, SBX__GRPC_SVC "%s", method);
    sbx__buf_init(&resp, &pr->ch->a);
    r = sbx__grpc_unary(pr->ch->h, path, req->data, req->len, &resp, 0, NULL, sbx__deadline(pr->call_timeout_ms),
                        &p->err);
    sbx__buf_free(&resp);
    if (r != SBX_OK) sbx__err_prefix(&p->err, "process %d: %s", pr->id, what);
    return r;
}

/* WriteStdin with input (data, len) or, when eof, the eof marker. */
SBX__PRIVATE sbx_result sbx__proc_stdin(sbx_process *p, const void *data, size_t len, int eof)
{
    struct sbx__process *pr = p->impl;
    const char *d = (const char *)data;
    sbx__buf req;
    sbx_result r = SBX_OK;
    sbx__buf_init(&req, &pr->ch->a);
    do {
        size_t k = len > SBX__GRPC_WRITE_CHUNK ? SBX__GRPC_WRITE_CHUNK : len;
        req.len = 0;
        if (sbx__pb_uint(&req, 1, sbx__pm_enc32(pr->id)) != 0 ||
            (eof ? sbx__pb_bytes(&req, 3, "", 0) : sbx__pb_bytes(&req, 2, d, k)) != 0) {
            r = sbx__oom(&p->err, NULL);
            break;
        }
        r = sbx__proc_unary(p, "WriteStdin", &req, eof ? "close stdin" : "write stdin");
        d += k;
        len -= k;
    } while (r == SBX_OK && len > 0);
    sbx__buf_free(&req);
    return r;
}
#endif

#ifndef SBX_NO_GRPC
/* A unary call whose request is the process id (field 1) and then the numbers
   v (fields 2, 3, ...): SendSignal, ResizeTTY. */
SBX__PRIVATE sbx_result sbx__proc_id_call(sbx_process *p, const char *method, const char *what, const unsigned *v, int nv)
{
    sbx__buf req;
    sbx_result r;
    int i, bad;
    sbx__buf_init(&req, &p->impl->ch->a);
    bad = sbx__pb_uint(&req, 1, sbx__pm_enc32(p->impl->id));
    for (i = 0; i < nv; i++) bad |= sbx__pb_uint(&req, 2 + i, v[i]);
    r = bad ? sbx__oom(&p->err, NULL) : sbx__proc_unary(p, method, &req, what);
    sbx__buf_free(&req);
    return r;
}
#endif

SBX_API sbx_result sbx_process_write(sbx_process *p, const void *data, size_t len)
{
    SBX__PENTER(p);
    if (!data && len) return sbx__fail(&p->err, SBX_ERR_INVALID_ARG, "process write: data is NULL");
#ifdef SBX_NO_GRPC
    return SBX_ERR_CLOSED;
#else
    return sbx__proc_stdin(p, data ? data : "", len, 0);
#endif
}

SBX_API sbx_result sbx_process_close_stdin(sbx_process *p)
{
    SBX__PENTER(p);
#ifdef SBX_NO_GRPC
    return SBX_ERR_CLOSED;
#else
    return sbx__proc_stdin(p, NULL, 0, 1);
#endif
}

SBX_API sbx_result sbx_process_signal(sbx_process *p, int signal)
{
#ifndef SBX_NO_GRPC
    unsigned v = (unsigned)signal;
    char what[32];
#endif
    SBX__PENTER(p);
    if (signal != 2 && signal != 9 && signal != 15)
        return sbx__fail(&p->err, SBX_ERR_INVALID_ARG, "process signal: %d is not 2 (SIGINT), 9 (SIGKILL) or 15 "
                         "(SIGTERM)", signal);
#ifdef SBX_NO_GRPC
    return SBX_ERR_CLOSED;
#else
    snprintf(what, sizeof what, "signal %d", signal);
    return sbx__proc_id_call(p, "SendSignal", what, &v, 1);
#endif
}

SBX_API sbx_result sbx_process_resize(sbx_process *p, unsigned cols, unsigned rows)
{
#ifndef SBX_NO_GRPC
    unsigned v[2];
#endif
    SBX__PENTER(p);
#ifdef SBX_NO_GRPC
    (void)cols;
    (void)rows;
    return SBX_ERR_CLOSED;
#else
    v[0] = cols;
    v[1] = rows;
    return sbx__proc_id_call(p, "ResizeTTY", "resize", v, 2);
#endif
}

SBX_API int sbx_process_id(const sbx_process *p)
{
#ifdef SBX_NO_GRPC
    (void)p;
    return 0;
#else
    return p && p->impl ? p->impl->id : 0;
#endif
}

SBX_API sbx_result sbx_process_close(sbx_process *p)
{
#ifndef SBX_NO_GRPC
    struct sbx__process *pr;
    sbx_allocator a;
    sbx_result r = SBX_OK;
#endif
    if (!p) return SBX_ERR_INVALID_ARG;
    sbx__err_clear(&p->err);
#ifdef SBX_NO_GRPC
    return SBX_OK;
#else
    pr = p->impl;
    if (!pr) return SBX_OK;
    /* the stream goes first: a connection that got a GOAWAY is held by its
       streams, and lets go of its socket or WebSocket when the last ends */
    if (pr->call) sbx__grpc_free(pr->call);
    pr->call = NULL;
    /* still running as far as we know: SIGKILL (one that is gone already,
       NOT_FOUND, is what we wanted) */
    if (!pr->exited && pr->id > 0 && !sbx__gchan_closed(pr->ch)) {
        r = sbx_process_signal(p, 9);
        if (r == SBX_ERR_NOT_FOUND) {
            r = SBX_OK;
            sbx__err_clear(&p->err);
        }
        if (r != SBX_OK) sbx__err_prefix(&p->err, "process close: kill");
    }
    a = pr->ch->a;
    sbx__gchan_unref(pr->ch);
    sbx__free(&a, pr);
    p->impl = NULL;
    return r;
#endif
}

/* Upload from memory or from a descriptor (fd >= 0: stream it to its end).
   python runtime: multipart POST /upload with the path as the file name;
   sandboxd: PUT /v1/files/PATH with the raw bytes. */
SBX__PRIVATE sbx_result sbx__write_common(sbx_sandbox *sb, const char *path, const void *data, size_t len, int fd)
{
    struct sbx__sandbox *s = sb->impl;
    sbx__buf clean, out, target;
    sbx__http_req req;
    sbx__rtio io;
    sbx_result r;
    int sbd = s->runtime == SBX_RUNTIME_SANDBOXD;
    sbx__buf_init(&clean, &s->cl->a);
    sbx__buf_init(&out, &s->cl->a);
    sbx__buf_init(&target, &s->cl->a);
    sbx__rtio_init(&io, &out, -1, 0);
    sbx__http_req_init(&req);
    if (sbd) {
        r = sbx__rt_target_enc("/v1/files/", path, 0, 0, &target, &sb->err);
        req.method = "PUT";
        req.target = target.data;
        req.headers = "Content-Type: application/octet-stream\r\nAccept: application/json\r\n";
    } else {
        r = sbx__clean_path(path, &clean, 0, &sb->err);
        req.method = "POST";
        req.target = "/upload";
        req.headers = "Accept: application/json\r\n";
        req.multipart_name = "file";
        req.multipart_filename = clean.data;
    }
    if (r == SBX_OK) {
        if (fd >= 0) {
            struct stat st;
            off_t pos;
            req.body_fd = fd;
            req.body_fd_len = -1;
            if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && (pos = lseek(fd, 0, SEEK_CUR)) >= 0)
                req.body_fd_len = st.st_size > pos ? (long long)(st.st_size - pos) : 0;
        } else {
            req.body = data;
            req.body_len = len;
        }
        /* a PUT of bytes in memory can be repeated; a POST or a stream cannot */
        req.idempotent = sbd && fd < 0;
        r = sbx__rt_call(s, &req, &io, sbx__call_deadline(s), &sb->err);
    }
    if (r == SBX_OK && (io.status < 200 || io.status > 299))
        r = sbx__status_fail(&sb->err, io.status, &out, "write", path);
    else if (r != SBX_OK)
        sbx__err_prefix(&sb->err, "write \"%.200s\"", path ? path : "");
    sbx__buf_free(&clean);
    sbx__buf_free(&out);
    sbx__buf_free(&target);
    return r;
}

SBX_API sbx_result sbx_write(sbx_sandbox *sb, const char *path, const void *data, size_t len)
{
    SBX__ENTER(sb);
    if (!data && len) return sbx__fail(&sb->err, SBX_ERR_INVALID_ARG, "write: data is NULL");
    return sbx__write_common(sb, path, data ? data : "", len, -1);
}

SBX_API sbx_result sbx_write_fd(sbx_sandbox *sb, const char *path, int fd)
{
    SBX__ENTER(sb);
    if (fd < 0) return sbx__fail(&sb->err, SBX_ERR_INVALID_ARG, "write_fd: bad descriptor %d", fd);
    return sbx__write_common(sb, path, NULL, 0, fd);
}

/* One idempotent runtime request about `path`: method + endpoint + encoded
   path (+ query); the body goes to mem or fd as io says. *status is the
   runtime's answer; non-2xx answers are left to the caller. */
SBX__PRIVATE sbx_result sbx__path_call(sbx_sandbox *sb, const char *what, const char *method, const char *endpoint,
                                       const char *path, int allow_root, const char *query, const char *headers,
                                       sbx__rtio *io)
{
    struct sbx__sandbox *s = sb->impl;
    sbx__buf target;
    sbx__http_req req;
    sbx_result r;
    int sbd = s->runtime == SBX_RUNTIME_SANDBOXD;
    sbx__buf_init(&target, &s->cl->a);
    r = sbx__rt_target_enc(endpoint, path, allow_root, !sbd, &target, &sb->err);
    if (r == SBX_OK && query && sbx__buf_puts(&target, query) != 0) r = sbx__oom(&sb->err, NULL);
    if (r == SBX_OK) {
        sbx__http_req_init(&req);
        req.method = method;
        req.target = target.data;
        req.headers = headers;
        req.idempotent = strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0;
        r = sbx__rt_call(s, &req, io, sbx__call_deadline(s), &sb->err);
    }
    if (r != SBX_OK) sbx__err_prefix(&sb->err, "%s \"%.200s\"", what, path ? path : "");
    sbx__buf_free(&target);
    return r;
}

/* read into memory or a descriptor */
SBX__PRIVATE sbx_result sbx__read_common(sbx_sandbox *sb, const char *path, sbx__buf *mem, int fd)
{
    struct sbx__sandbox *s = sb->impl;
    sbx__buf errbody;
    sbx__rtio io;
    sbx_result r;
    int sbd = s->runtime == SBX_RUNTIME_SANDBOXD;
    sbx__buf_init(&errbody, &s->cl->a);
    /* sandboxd answers a directory with a JSON listing */
    sbx__rtio_init(&io, fd >= 0 ? &errbody : mem, fd, sbd ? 2 : 0);
    r = sbx__path_call(sb, "read", "GET", sbd ? "/v1/files/" : "/download/", path, 0, NULL, NULL, &io);
    if (r == SBX_OK && io.mismatch)
        r = sbx__fail(&sb->err, SBX_ERR_NOT_FOUND, "read \"%.200s\": it is a directory, not a file", path);
    else if (r == SBX_OK && io.status != 200)
        r = sbx__status_fail(&sb->err, io.status, io.mem, "read", path);
    sbx__buf_free(&errbody);
    return r;
}

SBX_API sbx_result sbx_read(sbx_sandbox *sb, const char *path, char **data, size_t *len)
{
    sbx__buf mem;
    sbx_result r;
    if (data) *data = NULL;
    if (len) *len = 0;
    SBX__ENTER(sb);
    if (!data) return sbx__fail(&sb->err, SBX_ERR_INVALID_ARG, "read: data is NULL");
    sbx__buf_init(&mem, &sb->impl->cl->a);
    r = sbx__read_common(sb, path, &mem, -1);
    if (r == SBX_OK) {
        *data = (char *)sbx__buf_to_block(&mem, len);
        if (!*data) r = sbx__oom(&sb->err, "read");
    }
    sbx__buf_free(&mem);
    return r;
}

SBX_API sbx_result sbx_read_fd(sbx_sandbox *sb, const char *path, int fd)
{
    SBX__ENTER(sb);
    if (fd < 0) return sbx__fail(&sb->err, SBX_ERR_INVALID_ARG, "read_fd: bad descriptor %d", fd);
    return sbx__read_common(sb, path, NULL, fd);
}

SBX_API sbx_result sbx_list_dir(sbx_sandbox *sb, const char *path, sbx_file_entry **entries, size_t *count)
{
    struct sbx__sandbox *s;
    sbx__buf mem;
    sbx__rtio io;
    sbx__jtok *t = NULL;
    sbx_result r;
    int n, arr = -1, sbd;
    if (entries) *entries = NULL;
    if (count) *count = 0;
    SBX__ENTER(sb);
    s = sb->impl;
    if (!entries || !count) return sbx__fail(&sb->err, SBX_ERR_INVALID_ARG, "list: entries and count are required");
    sbd = s->runtime == SBX_RUNTIME_SANDBOXD;
    if (!path) path = "";
    sbx__buf_init(&mem, &s->cl->a);
    sbx__rtio_init(&io, &mem, -1, sbd ? 1 : 0); /* sandboxd answers a file with its bytes */
    r = sbx__path_call(sb, "list", "GET", sbd ? "/v1/files/" : "/list/", path, 1, NULL, "Accept: application/json\r\n",
                       &io);
    if (r == SBX_OK && io.mismatch) {
        r = sbx__fail(&sb->err, SBX_ERR_NOT_FOUND, "list \"%.200s\": it is a file, not a directory", path);
    } else if (r == SBX_OK && io.status != 200) {
        r = sbx__status_fail(&sb->err, io.status, &mem, "list", path);
    } else if (r == SBX_OK) {
        n = sbx__json_parse_alloc(&s->cl->a, mem.data, mem.len, &t);
        if (n > 0) arr = sbd ? sbx__json_get(mem.data, t, n, 0, "entries") : 0;
        if (n == SBX__JSON_ERR_NOMEM) {
            r = sbx__oom(&sb->err, "list");
        } else if (arr < 0 || t[arr].type != SBX__JSON_ARRAY) {
            /* sandboxd lists an empty directory as "entries": null */
            if (sbd && arr >= 0 && t[arr].type == SBX__JSON_NULL) arr = -2;
            else r = sbx__fail(&sb->err, SBX_ERR_PROTOCOL, "list \"%.200s\": the runtime's answer is not %s", path,
                               sbd ? "{\"entries\": [...]}" : "a JSON array");
        }
        if (r == SBX_OK) {
            /* one block: the entries, then their names */
            size_t k, names = 0, nent = arr >= 0 ? (size_t)t[arr].size : 0, off;
            int i;
            char *blk;
            for (i = arr + 1, k = 0; k < nent; k++, i = t[i].next) {
                int nm = sbx__json_mem(mem.data, t, n, i, "name");
                names += (nm >= 0 ? t[nm].end - t[nm].start : 0) + 1;
            }
            if (nent > ((size_t)-1 - names) / sizeof(sbx_file_entry)) {
                blk = NULL;
            } else {
                blk = (char *)sbx__block_alloc(&s->cl->a, nent * sizeof(sbx_file_entry) + names);
            }
            if (!blk) {
                r = sbx__oom(&sb->err, "list");
            } else {
                sbx_file_entry *ent = (sbx_file_entry *)(void *)blk;
                off = nent * sizeof(sbx_file_entry);
                for (i = arr + 1, k = 0; k < nent; k++, i = t[i].next) {
                    int nm = sbx__json_mem(mem.data, t, n, i, "name");
                    int sz = sbx__json_mem(mem.data, t, n, i, "size");
                    int ty = sbx__json_mem(mem.data, t, n, i, "type");
                    int mt = sbx__json_mem(mem.data, t, n, i, sbd ? "modified_at" : "mod_time");
                    size_t got = 0, room = nm >= 0 ? t[nm].end - t[nm].start + 1 : 1;
                    blk[off] = '\0';
                    if (nm >= 0) sbx__json_unescape(mem.data, t, nm, blk + off, room, &got);
                    ent[k].name = blk + off;
                    off += room;
                    ent[k].size = 0;
                    if (sz >= 0) sbx__json_int(mem.data, t, sz, &ent[k].size);
                    ent[k].is_dir = ty >= 0 && sbx__json_eq(mem.data, t, ty, "directory");
                    ent[k].mod_time = 0;
                    if (mt >= 0 && sbd && t[mt].type == SBX__JSON_STRING)
                        ent[k].mod_time = sbx__parse_rfc3339(mem.data + t[mt].start, t[mt].end - t[mt].start);
                    else if (mt >= 0)
                        sbx__json_double(mem.data, t, mt, &ent[k].mod_time);
                }
                *entries = ent;
                *count = nent;
            }
        }
        sbx__free(&s->cl->a, t);
    }
    sbx__buf_free(&mem);
    return r;
}

SBX_API sbx_result sbx_exists(sbx_sandbox *sb, const char *path, int *exists)
{
    struct sbx__sandbox *s;
    sbx__buf mem;
    sbx__rtio io;
    sbx__jtok *t = NULL;
    sbx_result r;
    int n, ex;
    if (exists) *exists = 0;
    SBX__ENTER(sb);
    s = sb->impl;
    if (!exists) return sbx__fail(&sb->err, SBX_ERR_INVALID_ARG, "exists: result pointer is NULL");
    sbx__buf_init(&mem, &s->cl->a);
    sbx__rtio_init(&io, &mem, -1, 0);
    if (s->runtime == SBX_RUNTIME_SANDBOXD) {
        /* HEAD; routers may refuse HEAD (the python router answers 405), so
           through a router: a GET of at most one byte */
        int routed = sbx__mode_routed(s->cl->mode);
        io.mem = NULL;
        r = sbx__path_call(sb, "exists", routed ? "GET" : "HEAD", "/v1/files/", path, 1, NULL,
                           routed ? "Range: bytes=0-0\r\n" : NULL, &io);
        if (r == SBX_OK && io.status == 404) {
            *exists = 0;
        } else if (r == SBX_OK && ((io.status >= 200 && io.status < 300) || io.status == 416)) {
            *exists = 1;
        } else if (r == SBX_OK) {
            r = sbx__status_fail(&sb->err, io.status, NULL, "exists", path);
        }
        sbx__buf_free(&mem);
        return r;
    }
    r = sbx__path_call(sb, "exists", "GET", "/exists/", path, 1, NULL, "Accept: application/json\r\n", &io);
    if (r == SBX_OK && io.status != 200) {
        r = sbx__status_fail(&sb->err, io.status, &mem, "exists", path);
    } else if (r == SBX_OK) {
        n = sbx__json_parse_alloc(&s->cl->a, mem.data, mem.len, &t);
        ex = n > 0 ? sbx__json_mem(mem.data, t, n, 0, "exists") : -1;
        if (ex < 0 || (t[ex].type != SBX__JSON_TRUE && t[ex].type != SBX__JSON_FALSE))
            r = sbx__fail(&sb->err, SBX_ERR_PROTOCOL, "exists \"%.200s\": the runtime's answer has no \"exists\"",
                          path ? path : "");
        else
            *exists = t[ex].type == SBX__JSON_TRUE;
        sbx__free(&s->cl->a, t);
    }
    sbx__buf_free(&mem);
    return r;
}

SBX_API sbx_result sbx_remove_file(sbx_sandbox *sb, const char *path, int recursive)
{
    struct sbx__sandbox *s;
    sbx__buf mem;
    sbx__rtio io;
    sbx_result r;
    SBX__ENTER(sb);
    s = sb->impl;
    if (s->runtime != SBX_RUNTIME_SANDBOXD) return sbx__unsupported(sb, "delete", "has no delete endpoint");
    sbx__buf_init(&mem, &s->cl->a);
    sbx__rtio_init(&io, &mem, -1, 0);
    r = sbx__path_call(sb, "delete", "DELETE", "/v1/files/", path, 0, recursive ? "?recursive=true" : NULL,
                       "Accept: application/json\r\n", &io);
    if (r == SBX_OK && (io.status < 200 || io.status > 299))
        r = sbx__status_fail(&sb->err, io.status, &mem, "delete", path);
    sbx__buf_free(&mem);
    return r;
}

SBX_API void sbx_set_call_timeout(sbx_sandbox *sb, int timeout_ms)
{
    if (sb && sb->impl) sb->impl->call_timeout_ms = timeout_ms > 0 ? timeout_ms : 60000;
}

SBX_API const char *sbx_claim_name(const sbx_sandbox *sb) { return sb && sb->impl ? sb->impl->claim : NULL; }
SBX_API const char *sbx_sandbox_name(const sbx_sandbox *sb) { return sb && sb->impl ? sb->impl->sandbox : NULL; }
SBX_API const char *sbx_pod_name(const sbx_sandbox *sb) { return sb && sb->impl ? sb->impl->pod : NULL; }
SBX_API const char *sbx_namespace(const sbx_sandbox *sb) { return sb && sb->impl ? sb->impl->ns : NULL; }
SBX_API const char *sbx_pod_ip(const sbx_sandbox *sb) { return sb && sb->impl ? sb->impl->pod_ip : NULL; }

SBX_API const char *sbx_route(const sbx_sandbox *sb)
{
    const struct sbx__sandbox *s = sb ? sb->impl : NULL;
    if (!s) return "";
    switch (s->cl->mode) {
    case SBX_MODE_POD_TUNNEL: return s->pod_ws == 1 ? "websocket" : "kubectl port-forward";
    case SBX_MODE_ROUTER_TUNNEL: return "router tunnel";
    case SBX_MODE_GATEWAY: return "gateway";
    case SBX_MODE_DIRECT: return "direct";
    case SBX_MODE_IN_CLUSTER: return "in-cluster";
    case SBX_MODE_API_PROXY: return "api proxy";
    }
    return "";
}

SBX_API void sbx_exec_result_free(sbx_exec_result *res)
{
    if (!res) return;
    sbx_free(res->out);
    sbx_free(res->diag);
    res->out = res->diag = NULL;
    res->out_len = res->diag_len = 0;
}

#endif /* SANDBOX_IMPLEMENTATION_INCLUDED */
#endif /* SANDBOX_IMPLEMENTATION */

/*
REVISION HISTORY
    0.3.2  (2026-12-05)  fixes: a grpc-status of ten or more digits overflowed
                         an int (undefined behaviour on a hostile server's
                         answer); ttl_seconds and leases round shutdownTime
                         up, so a claim lives at least what it was given; a
                         TTL that runs out during sbx_open fails it as
                         SBX_ERR_DELETED and says so; on the kubectl route a
                         REST connection the runtime closed no longer
                         restarts a kubectl port-forward that stays up (its
                         gRPC process streams survive); two failures in a
                         row still replace it.
    0.3.1  (2026-12-05)  gRPC: keepalive PINGs notice a silently dead peer
                         (SBX_H2_KEEPALIVE_MS, SBX_H2_PING_TIMEOUT_MS); after a
                         GOAWAY new calls no longer wait for the old
                         connection's streams on the WebSocket route (one
                         port-forward WebSocket per HTTP/2 connection);
                         sandboxd's one-shot output is capped by
                         max_output_bytes like the python runtime's, not by
                         gRPC's 4 MiB message default.
    0.3.0  (2026-12-04)  processes on sandboxd over gRPC (a small HTTP/2 +
                         HPACK + protobuf client, compiled out by SBX_NO_GRPC):
                         sbx_run works there, sbx_exec (argv, env, cwd,
                         timeout) everywhere, sbx_process_* streams output and
                         takes stdin, signals and a PTY; SBX_ERR_DENIED,
                         SBX_ERR_RPC, err.grpc_status, grpc_port. Breaking:
                         sbx_list_claims returns sbx_claim_entry (owner, age,
                         Ready) instead of names. Watch restarts are logged.
                         The sbx command-line tool (examples/sbx.c).
    0.2.0  (2026-12-04)  one handle for the common case (sbx_open with a NULL
                         client owns a private one, cfg.client); renames:
                         sbx_exec_result.err/err_len -> diag/diag_len,
                         sbx_delete -> sbx_remove_file, sbx_list -> sbx_list_dir,
                         SBX_CAP_DELETE -> SBX_CAP_REMOVE; sbx_attach takes
                         claim name and namespace from its config; sbx_read
                         hands back char *; a logger hook; first failures
                         that say what to fix.
    0.1.0  (2026-11-26)  first release: client with kubectl proxy, v1beta1 and
                         v1alpha1 claims, watch to Ready, six connection modes,
                         python and sandboxd runtimes, run / write / read / list /
                         exists / delete, fd streaming, attach / detach / status,
                         claims by name and selector, idempotent-only retries.

------------------------------------------------------------------------------
MIT License

Copyright (c) 2026 The sandbox.h authors

Permission is hereby granted, free of charge, to any person obtaining a copy
of this software and associated documentation files (the "Software"), to deal
in the Software without restriction, including without limitation the rights
to use, copy, modify, merge, publish, distribute, sublicense, and/or sell
copies of the Software, and to permit persons to whom the Software is
furnished to do so, subject to the following conditions:

The above copyright notice and this permission notice shall be included in all
copies or substantial portions of the Software.

THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR
IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY,
FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE
AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER
LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM,
OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE
SOFTWARE.
------------------------------------------------------------------------------
*/
