#!/usr/bin/env bash
# Long fuzz run: the workflow-document fuzz suites and the model-file fuzz, with many examples and fixed seeds.
#
#   scripts/fuzz.sh [DOCUMENTS] [MODEL_FILES]     defaults: 100000 documents, 5000 model files
#
# DOCUMENTS is exported as NODEGRAPH_FUZZ_DOCUMENTS: tests/core/test_fuzz.py's fuzz() scales the example count of
# every document fuzz test (there and in test_fuzz_entry_points.py) so that together they run about DOCUMENTS.
# MODEL_FILES is split evenly over the tests of tests/models/test_fuzz_model_files.py via NODEGRAPH_FUZZ_EXAMPLES.
# Every suite is derandomized (hypothesis' derandomize=True): the same examples on every run, so a failure repeats.
# Prints the examples each test ran (hypothesis statistics) and the failures; exits non-zero when any suite fails.
set -uo pipefail

DOCUMENTS="${1:-100000}"
MODEL_FILES="${2:-5000}"
for value in "$DOCUMENTS" "$MODEL_FILES"; do
    if ! [[ "$value" =~ ^[0-9]+$ ]] || [ "$value" -lt 1 ]; then
        echo "usage: $0 [DOCUMENTS] [MODEL_FILES]  (positive integers)" >&2
        exit 2
    fi
done

cd "$(dirname "$0")/.." || exit 2
PYTEST="${PYTEST:-.venv/bin/pytest}"
DOC_SUITES=(tests/core/test_fuzz.py tests/core/test_fuzz_entry_points.py)
MODEL_SUITE=tests/models/test_fuzz_model_files.py
MODEL_TESTS=$(grep -c '^def test_' "$MODEL_SUITE")
PER_MODEL_TEST=$(( (MODEL_FILES + MODEL_TESTS - 1) / MODEL_TESTS ))
LOG_DIR="$(mktemp -d "${TMPDIR:-/tmp}/nodegraph-fuzz.XXXXXX")"
status=0

run_suite() {  # label, env assignment, files...
    local label="$1" assignment="$2"
    shift 2
    local log="$LOG_DIR/$label.log"
    echo "== $label: $*"
    local start=$SECONDS
    env "$assignment" "$PYTEST" -q -p no:cacheprovider --hypothesis-show-statistics "$@" >"$log" 2>&1
    local rc=$?
    echo "   examples run per test:"
    awk '/::test_.*:$/ { test = $0; sub(/:$/, "", test) }
         /during generate phase/ { generating = 1; next }
         /during [a-z]+ phase/ { generating = 0 }
         generating && /passing, / { sub(/^ *- /, ""); printf "     %-90s %s\n", test, $0 }' "$log"
    echo "   result: $(tail -n 1 "$log")  ($(( SECONDS - start )) s; full log: $log)"
    if [ "$rc" -ne 0 ]; then
        status=1
        echo "   FAILURES:"
        grep -E '^(FAILED|ERROR) |Falsifying example|Failing test case|^E  ' "$log" | head -n 60 | sed 's/^/     /'
    fi
}

echo "document examples requested: $DOCUMENTS; model-file examples: $MODEL_FILES ($PER_MODEL_TEST per test x $MODEL_TESTS)"
run_suite documents "NODEGRAPH_FUZZ_DOCUMENTS=$DOCUMENTS" "${DOC_SUITES[@]}"
run_suite model-files "NODEGRAPH_FUZZ_EXAMPLES=$PER_MODEL_TEST" "$MODEL_SUITE"
if [ "$status" -eq 0 ]; then echo "fuzz: all passed"; else echo "fuzz: FAILURES (see above)"; fi
exit "$status"
