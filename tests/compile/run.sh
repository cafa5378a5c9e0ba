#!/bin/sh
# The compile matrix: every build that must stay warning-free. Prints one line
# per build and the closing "compile: N passed, N failed" line.
set -u
OUT=${OUT:-build/compile}
mkdir -p "$OUT"
WARN="-Wall -Wextra -Werror -pedantic -Wshadow -Wstrict-prototypes -Wmissing-prototypes -Wcast-qual -Wwrite-strings -Wundef -Wformat=2"
WARNXX="-Wall -Wextra -Werror -pedantic -Wshadow -Wcast-qual -Wundef -Wformat=2"
pass=0; fail=0
try() { # name, command...
    name=$1; shift
    if "$@" >"$OUT/$name.log" 2>&1; then
        pass=$((pass + 1)); echo "ok   $name"
    else
        fail=$((fail + 1)); echo "FAIL $name: $*"; sed 's/^/    /' "$OUT/$name.log" | head -n 20
    fi
}
for cc in gcc clang; do
    command -v $cc >/dev/null 2>&1 || { echo "SKIP $cc: not installed"; continue; }
    for std in c99 c11; do
        try "$cc-$std" $cc -std=$std $WARN -I. tests/compile/impl.c -o "$OUT/$cc-$std" -pthread
        try "$cc-$std-O2" $cc -std=$std -O2 $WARN -I. -c tests/compile/impl.c -o "$OUT/$cc-$std-O2.o"
    done
    try "$cc-link2tu" $cc -std=c99 $WARN -I. tests/compile/link_decl.c tests/compile/link_impl.c -o "$OUT/$cc-link" -pthread
    try "$cc-static2tu" $cc -std=c99 $WARN -I. tests/compile/static_a.c tests/compile/static_b.c -o "$OUT/$cc-static" -pthread
    try "$cc-twice" $cc -std=c99 $WARN -I. -c tests/compile/twice.c -o "$OUT/$cc-twice.o"
    # without the gRPC transport (>>hpack, >>h2, >>grpc compiled out)
    try "$cc-c99-nogrpc" $cc -std=c99 -DSBX_NO_GRPC $WARN -I. tests/compile/impl.c -o "$OUT/$cc-c99-nogrpc" -pthread
    try "$cc-c99-O2-nogrpc" $cc -std=c99 -O2 -DSBX_NO_GRPC $WARN -I. -c tests/compile/impl.c -o "$OUT/$cc-c99-O2-nogrpc.o"
done
for cxx in g++ clang++; do
    command -v $cxx >/dev/null 2>&1 || { echo "SKIP $cxx: not installed"; continue; }
    for std in c++11 c++17; do
        try "$cxx-$std" $cxx -std=$std $WARNXX -I. tests/compile/impl.cc -o "$OUT/$cxx-$std" -pthread
        try "$cxx-$std-nogrpc" $cxx -std=$std -DSBX_NO_GRPC $WARNXX -I. tests/compile/impl.cc -o "$OUT/$cxx-$std-nogrpc" -pthread
    done
done
# The README's quickstart is real code: extract its (first) C block and build it.
awk '/^```c$/{on=1; next} /^```$/{if (on) exit} on' README.md > "$OUT/readme_quickstart.c"
try "readme-quickstart" gcc -std=c99 $WARN -I. "$OUT/readme_quickstart.c" -o "$OUT/readme_quickstart" -pthread
# ... and as C++ (no cast anywhere in the one-handle quickstart), like examples/quickstart.c.
for cxx in g++ clang++; do
    command -v $cxx >/dev/null 2>&1 || continue
    try "readme-quickstart-$cxx" $cxx -x c++ -std=c++11 $WARNXX -I. "$OUT/readme_quickstart.c" -o "$OUT/readme_quickstart_$cxx" -pthread
    try "example-quickstart-$cxx" $cxx -x c++ -std=c++11 $WARNXX -I. examples/quickstart.c -o "$OUT/quickstart_$cxx" -pthread
done
try "example-quickstart-c99" gcc -std=c99 $WARN -I. examples/quickstart.c -o "$OUT/quickstart_c99" -pthread
# sbx, the command-line tool, as it is shipped (-Os) with both compilers.
for cc in gcc clang; do
    command -v $cc >/dev/null 2>&1 || continue
    try "example-sbx-$cc" $cc -std=c99 -Os $WARN -I. examples/sbx.c -o "$OUT/sbx_$cc" -pthread
done
# Every public declaration has a comment beside it.
try "decl-comments" sh tests/compile/decl_comments.sh sandbox.h
# The programs built above must also run (links resolved, SBX_STATIC copies independent).
for b in gcc-c99 gcc-link gcc-static; do
    [ -x "$OUT/$b" ] && try "run-$b" "$OUT/$b"
done
echo "compile: $pass passed, $fail failed"
[ $fail -eq 0 ]
