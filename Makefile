# sandbox.h - build, test, fuzz, demo.  `make test` is the test command; `make demo`
# runs the quickstart against a freshly started dev cluster.
CC      ?= cc
CLANG   ?= clang
PYTHON  ?= python3
B       := build
CSTD    := -std=c99 -D_POSIX_C_SOURCE=200809L
WARN    := -Wall -Wextra -Werror -pedantic -Wshadow -Wstrict-prototypes -Wmissing-prototypes \
           -Wcast-qual -Wwrite-strings -Wundef -Wformat=2
SAN     := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all
CFLAGS  ?= -g -O1
ALLFLAGS = $(CSTD) $(WARN) $(CFLAGS) -I. -Itests/lib
LDLIBS  := -pthread
FUZZ_SECONDS ?= 60
STATE   ?= $(B)/devcluster
PREFIX  ?= /usr/local

export ASAN_OPTIONS  := detect_leaks=1:abort_on_error=0:detect_stack_use_after_return=1
export UBSAN_OPTIONS := print_stacktrace=1:halt_on_error=1

# Where each kind of test lives: tests/README.md. A suite left at the old top
# level would silently not run, so say so.
ifneq ($(wildcard tests/test_*.c),)
$(error $(wildcard tests/test_*.c): suites live in tests/unit or tests/e2e now (git mv; see tests/README.md))
endif
UNIT_SRCS := $(sort $(wildcard tests/unit/test_*.c tests/e2e/test_*.c))
UNIT_BINS := $(patsubst %.c,$(B)/%,$(notdir $(UNIT_SRCS)))
TEST_HDRS := sandbox.h $(wildcard tests/lib/*.h tests/fakes/*.h)
FUZZ_SRCS := $(sort $(wildcard tests/fuzz/fuzz_*.c))
FUZZ_NAMES := $(patsubst tests/fuzz/fuzz_%.c,%,$(FUZZ_SRCS))
REPLAY_BINS := $(patsubst %,$(B)/replay_%,$(FUZZ_NAMES))
TSAN_BINS := $(B)/tsan_test_proc $(B)/tsan_test_h2 $(B)/tsan_test_e2e $(B)/tsan_test_e2e_modes $(B)/tsan_test_e2e_transient \
             $(B)/tsan_test_e2e_owner $(B)/tsan_test_e2e_events $(B)/tsan_test_e2e_grpc
EXAMPLE_SRCS := $(sort $(wildcard examples/*.c))
EXAMPLE_BINS := $(patsubst examples/%.c,$(B)/%,$(EXAMPLE_SRCS))

.PHONY: all test unit fuzz examples demo bench faults clean install devcluster-up devcluster-down sbx-size

all: $(UNIT_BINS) $(REPLAY_BINS) $(EXAMPLE_BINS) $(TSAN_BINS) $(B)/faults

$(B):
	@mkdir -p $(B)

# Unit and end-to-end suites: each test_*.c includes the implementation, built with ASan+UBSan.
vpath test_%.c tests/unit tests/e2e
$(B)/test_%: test_%.c $(TEST_HDRS) | $(B)
	$(CC) $(ALLFLAGS) $(SAN) $< -o $@ $(LDLIBS)

# The multi-threaded suites again under ThreadSanitizer (clang): no data races
# between sandboxes, clients and the drainer threads.
$(B)/tsan_%: %.c $(TEST_HDRS) | $(B)
	$(CLANG) $(CSTD) -g -O1 -I. -Itests/lib -fsanitize=thread $< -o $@ $(LDLIBS)

# Fuzz targets replayed over their corpus (no libFuzzer needed): make test runs these.
$(B)/replay_%: tests/fuzz/fuzz_%.c tests/fuzz/replay.c $(TEST_HDRS) | $(B)
	$(CC) $(ALLFLAGS) $(SAN) tests/fuzz/replay.c $< -o $@ $(LDLIBS)

# libFuzzer builds (clang only).
$(B)/fuzz_%: tests/fuzz/fuzz_%.c $(TEST_HDRS) | $(B)
	$(CLANG) $(CSTD) -g -O1 -I. -Itests/lib -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all $< -o $@ $(LDLIBS)

# The flat-memory client of test_e2e_grpc: -O2, no sanitizers, so its peak RSS
# is the library's own.
$(B)/grpc_rss: tests/e2e/grpc_rss.c sandbox.h | $(B)
	$(CC) $(CSTD) -O2 -I. $< -o $@ $(LDLIBS)
$(B)/test_e2e_grpc $(B)/tsan_test_e2e_grpc: $(B)/grpc_rss

$(B)/%: examples/%.c sandbox.h | $(B)
	$(CC) $(ALLFLAGS) $< -o $@ $(LDLIBS)

examples: $(EXAMPLE_BINS)

# sbx as shipped: -Os, stripped (make install installs this one).
# `make sbx-size` prints its size in bytes (README.md quotes it).
$(B)/sbx-min: examples/sbx.c sandbox.h | $(B)
	$(CC) $(CSTD) $(WARN) -Os -s -I. $< -o $@ $(LDLIBS)

sbx-size: $(B)/sbx-min
	@echo "stripped -Os sbx: $$(wc -c < $(B)/sbx-min) bytes ($(CC), dynamically linked to libc)"

# The sbx suite drives the built binary: this copy, with ASan+UBSan (leaks
# change its exit code, which the suite checks everywhere).
$(B)/sbx-asan: examples/sbx.c sandbox.h | $(B)
	$(CC) $(ALLFLAGS) $(SAN) $< -o $@ $(LDLIBS)

$(B)/test_e2e_sbx: $(B)/sbx $(B)/sbx-asan

# Performance, measured not asserted: optimised build, no sanitizers.
$(B)/bench: tests/bench/bench.c $(TEST_HDRS) | $(B)
	$(CC) $(CSTD) -O2 -g -I. -Itests/lib $< -o $@ $(LDLIBS)

bench: $(B)/bench
	@$(B)/bench

# The fault matrix (issue 8): the seed workflow under each fault against one dev
# cluster with the real kubectl; one table of outcomes and leftovers. About a
# minute, so `make test` runs the whole matrix too (suite "faults"); `make faults`
# runs it alone and prints the table (build/faults NAME... runs the rows naming NAME).
$(B)/faults: tests/e2e/faults.c $(TEST_HDRS) | $(B)
	$(CC) $(ALLFLAGS) $(SAN) $< -o $@ $(LDLIBS)

faults: $(B)/faults
	@$(B)/faults

# The pod-tunnel suites again on the kubectl port-forward route (the default
# is the in-process WebSocket route).
KUBECTL_ROUTE_SUITES := test_e2e test_e2e_alpha test_e2e_lifecycle test_e2e_retry test_e2e_modes test_e2e_sbx \
                        test_e2e_grpc test_e2e_keepalive

SUITES = compile="sh tests/compile/run.sh" \
         $(foreach t,$(UNIT_BINS),$(notdir $(t))="$(t)") \
         $(foreach t,$(KUBECTL_ROUTE_SUITES),$(t)_kubectl="SANDBOX_POD_ROUTE=kubectl $(B)/$(t)") \
         $(foreach t,$(TSAN_BINS),$(notdir $(t))="TSAN_OPTIONS=halt_on_error=1 $(t)") \
         $(foreach f,$(FUZZ_NAMES),replay_$(f)="$(B)/replay_$(f) tests/fuzz/corpus/$(f)") \
         devcluster="$(PYTHON) tests/pyrun.py tests/devcluster devcluster" \
         faults="$(B)/faults"

test: all
	@sh tests/run.sh $(SUITES)

# Run each libFuzzer target for FUZZ_SECONDS on a copy of its corpus; findings land in build/.
# One rule per target, so `make -j2 fuzz` runs two at once (CI does); each line says
# which target it is about.
FUZZ_RUNS := $(patsubst %,fuzz-run-%,$(FUZZ_NAMES))
.PHONY: $(FUZZ_RUNS)
fuzz: $(FUZZ_RUNS)
$(FUZZ_RUNS): fuzz-run-%: $(B)/fuzz_%
	@mkdir -p $(B)/corpus_$*; cp -r tests/fuzz/corpus/$*/. $(B)/corpus_$*/; \
	 dict=""; [ -f tests/fuzz/$*.dict ] && dict="-dict=tests/fuzz/$*.dict"; \
	 echo "fuzz $* for $(FUZZ_SECONDS)s"; \
	 $(B)/fuzz_$* $$dict -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 \
	    -artifact_prefix=$(B)/crash_$*- $(B)/corpus_$* 2>&1 | \
	    grep -E '^(stat::number_of_executed_units|stat::average_exec_per_sec|SUMMARY|Done |==[0-9]+==ERROR)' | \
	    sed 's/^/fuzz $*: /'; \
	 ! ls $(B)/crash_$*-* >/dev/null 2>&1 || { echo "fuzz $* found a crash"; exit 1; }

# The quickstart against a freshly started dev cluster, which is stopped again
# whatever happens. Uses the real kubectl, or the shim where kubectl is missing.
demo: $(B)/quickstart
	@rm -rf $(B)/demo; \
	 if ! command -v kubectl >/dev/null 2>&1; then \
	   echo "demo: kubectl is not installed; using tests/fakes/kubectl-shim/kubectl"; \
	   export SANDBOX_KUBECTL=$(CURDIR)/tests/fakes/kubectl-shim/kubectl; fi; \
	 $(PYTHON) tests/devcluster/cluster.py up --state $(B)/demo >/dev/null || exit 1; \
	 KUBECONFIG=$(CURDIR)/$(B)/demo/kubeconfig KUBECACHEDIR=$(CURDIR)/$(B)/demo/kubecache $(B)/quickstart; rc=$$?; \
	 $(PYTHON) tests/devcluster/cluster.py down --state $(B)/demo >/dev/null; exit $$rc

devcluster-up:
	@$(PYTHON) tests/devcluster/cluster.py up --state $(STATE)

devcluster-down:
	@$(PYTHON) tests/devcluster/cluster.py down --state $(STATE)

install: $(B)/sbx-min
	install -d $(DESTDIR)$(PREFIX)/include $(DESTDIR)$(PREFIX)/lib/pkgconfig $(DESTDIR)$(PREFIX)/bin
	install -m 644 sandbox.h $(DESTDIR)$(PREFIX)/include/sandbox.h
	install -m 755 $(B)/sbx-min $(DESTDIR)$(PREFIX)/bin/sbx
	printf 'prefix=%s\nincludedir=$${prefix}/include\n\nName: sandbox.h\nDescription: agent sandboxes on Kubernetes from C (single header)\nVersion: %s\nCflags: -I$${includedir}\nLibs: -pthread\n' \
	  "$(PREFIX)" "$$(sed -n 's/^#define SANDBOX_VERSION_STRING "\(.*\)"/\1/p' sandbox.h)" \
	  > $(DESTDIR)$(PREFIX)/lib/pkgconfig/sandbox.pc

clean:
	rm -rf $(B)
