#!/usr/bin/env python3
"""Run a directory (or module) of unittest tests and print the closing line
`<suite>: N passed, N failed, N skipped` that `make test` aggregates.

usage: python3 tests/pyrun.py PATH_OR_MODULE SUITE_NAME [-k PATTERN]
"""
import os
import sys
import unittest


def main(argv):
    if len(argv) < 3:
        print(__doc__, file=sys.stderr)
        return 2
    target, suite_name = argv[1], argv[2]
    pattern = None
    if len(argv) >= 5 and argv[3] == "-k":
        pattern = argv[4]
    loader = unittest.TestLoader()
    if pattern:
        loader.testNamePatterns = ["*%s*" % pattern]
    if os.path.isdir(target):
        top = os.path.dirname(os.path.abspath(target.rstrip("/")))
        suite = loader.discover(target, pattern="test_*.py", top_level_dir=top)
    else:
        suite = loader.loadTestsFromName(target)
    result = unittest.TextTestRunner(verbosity=2, stream=sys.stdout).run(suite)
    failed = len(result.failures) + len(result.errors) + len(result.unexpectedSuccesses)
    skipped = len(result.skipped)
    passed = result.testsRun - failed - skipped
    for test, why in result.skipped:
        print("SKIP %s: %s" % (test.id(), why))
    print("%s: %d passed, %d failed, %d skipped" % (suite_name, passed, failed, skipped))
    return 0 if failed == 0 and result.testsRun > 0 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
