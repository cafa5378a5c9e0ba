#!/bin/sh
# tests/run.sh NAME=COMMAND ... : run each suite, keep its output in build/logs/NAME.log,
# read its closing "N passed, N failed[, N skipped]" line, and print the total as the
# last line. Exit status 1 if any suite failed or printed no closing line.
set -u
mkdir -p build/logs
tp=0; tf=0; ts=0; bad=0
for spec in "$@"; do
    name=${spec%%=*}
    cmd=${spec#*=}
    log=build/logs/$name.log
    start=$(date +%s)
    sh -c "$cmd" >"$log" 2>&1
    rc=$?
    secs=$(( $(date +%s) - start ))
    line=$(grep -E '^[A-Za-z0-9_.:/ -]*: [0-9]+ passed, [0-9]+ failed' "$log" | tail -n 1)
    if [ -z "$line" ]; then
        echo "$name: no result line (exit $rc, ${secs}s); last lines of $log:"
        tail -n 30 "$log" | sed 's/^/    /'
        tf=$((tf + 1)); bad=1
        continue
    fi
    p=$(echo "$line" | sed -E 's/.*: ([0-9]+) passed.*/\1/')
    f=$(echo "$line" | sed -E 's/.* ([0-9]+) failed.*/\1/')
    s=$(echo "$line" | sed -nE 's/.* ([0-9]+) skipped.*/\1/p'); s=${s:-0}
    tp=$((tp + p)); tf=$((tf + f)); ts=$((ts + s))
    if [ "$rc" -ne 0 ] || [ "$f" -ne 0 ]; then
        bad=1
        echo "$name: FAILED ($line; exit $rc, ${secs}s); failures:"
        grep -E 'FAIL|Error|error:|Traceback' "$log" | head -n 40 | sed 's/^/    /'
    else
        echo "$line (${secs}s)"
    fi
    grep -E '^ *SKIP' "$log" | sed 's/^ */    /'
done
echo "total: $tp passed, $tf failed, $ts skipped"
exit $bad
