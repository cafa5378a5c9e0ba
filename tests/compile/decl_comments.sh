#!/bin/sh
# Every public declaration in sandbox.h has a comment beside it (issue 10): in
# the declarations part (up to "#endif /* SANDBOX_H */"), each line starting
# with SBX_API must follow a line that ends a comment ("*/"). Prints the ones
# without and exits 1 if any.
awk '
/^#endif \/\* SANDBOX_H \*\// { exit }
/^SBX_API / {
    n++
    if (prev !~ /\*\/[ \t]*$/) { bad++; printf "no comment before sandbox.h:%d: %s\n", NR, $0 }
}
{ if ($0 !~ /^[ \t]*$/) prev = $0 }
END { printf "declarations: %d, without a comment: %d\n", n, bad; exit bad > 0 }
' "${1:-sandbox.h}"
