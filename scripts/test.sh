#!/usr/bin/env bash
# streamgate's whole test run (what CI runs, through .ci/run):
#   1. install dependencies (Debian 12 packages; skipped when all present)
#   2. build with gcc (-Werror), check the layer order of src/'s includes
#      (scripts/check_layers.py), build with clang (build-clang/)
#   3. unit tests (Criterion) and integration tests (pytest) on build/; a
#      skipped or xfailed test fails the run unless its reason is declared in
#      tests/integration/allowed_skips.txt (printed before each pytest run)
#   3b. nginx's own test suite (../shared/nginx-tests, the files with tests
#      listed in tests/nginx-tests.expect, in parallel shards) against
#      build/streamgate: every test listed in tests/nginx-tests.expect
#      must still pass (a ratchet; rewrite the list with WRITE_EXPECT, see
#      ../shared/nginx-tests/README.md). Runs once, on the normal build.
#   4. ASan+UBSan build (build-asan/): unit + integration tests again
#   5. libFuzzer targets (build-fuzz/fuzz_*), FUZZ_SECONDS each (default 15)
# Stops at the first failure.  Environment:
#   SG_QUICK=1       skip steps 4 and 5 (local iteration)
#   FUZZ_SECONDS=N   time per fuzz target
#   PYTEST_ARGS=...  extra pytest arguments (e.g. "-k balancing -x")
set -euo pipefail
cd "$(dirname "$0")/.."

FUZZ_SECONDS=${FUZZ_SECONDS:-15}
PYTEST_TIMEOUT=${PYTEST_TIMEOUT:-1500}   # hard bound on one pytest run, seconds
export PYTHONDONTWRITEBYTECODE=1         # keep the tree clean
START=$SECONDS
STEP="setup"
SUMMARY=()

step() {
    STEP="$*"
    STEP_START=$SECONDS
    echo
    echo "==== [$(( SECONDS - START ))s] $STEP"
}
done_step() {
    SUMMARY+=("ok   $(printf '%5ss' $(( SECONDS - STEP_START )))  $STEP")
}
finish() {
    local rc=$?
    echo
    echo "==== summary ($(( SECONDS - START ))s total)"
    for line in "${SUMMARY[@]+"${SUMMARY[@]}"}"; do echo "  $line"; done
    if [[ $rc -ne 0 ]]; then
        echo "  FAIL        $STEP (exit code $rc)"
        echo "TESTS FAILED"
    else
        echo "ALL TESTS PASSED"
    fi
}
trap finish EXIT

run_pytest() {   # run_pytest BUILD_DIR
    local rc=0
    # conftest.py fails the run on any skip not declared here, and on any xfail.
    echo "skips allowed (tests/integration/allowed_skips.txt), every other skip or xfail fails:"
    grep -v '^[[:space:]]*#' tests/integration/allowed_skips.txt | sed '/^[[:space:]]*$/d; s/^/  - /'
    SG_BUILD="$1" timeout -k 30 "$PYTEST_TIMEOUT" \
        /usr/bin/python3 -m pytest -q tests/integration ${PYTEST_ARGS:-} || rc=$?
    if [[ $rc -eq 5 ]]; then
        echo "pytest collected no tests: that is a failure"
    fi
    return $rc
}

step "install dependencies"
bash scripts/install-deps.sh
done_step

step "build with gcc (-Werror)"
make -j2 CC=gcc all
done_step

step "layering check (scripts/check_layers.py: includes point down)"
/usr/bin/python3 scripts/check_layers.py
done_step

step "build with clang (build-clang/)"
make -j2 BUILD=build-clang CC=clang all
done_step

step "unit tests (build/unit-tests)"
make -j2 CC=gcc unit
build/unit-tests
done_step

step "integration tests (SG_BUILD=build)"
run_pytest build
done_step

step "nginx-tests ratchet (tests/nginx-tests.expect must keep passing)"
NT=../shared/nginx-tests/run.sh
if [[ ! -f "$NT" ]]; then
    echo "$NT not found: nginx's test suite is expected in ../shared beside the clone"
    exit 1
fi
[[ -f tests/nginx-tests.expect ]] || { echo "tests/nginx-tests.expect is missing"; exit 1; }
rm -rf build/nginx-tests
mkdir -p build/nginx-tests
# The harness's work folders go under a short /tmp path, not the checkout:
# tests listen on "unix:unix.sock" inside them, and a socket path has at
# most 107 bytes (sun_path), which a CI runner's long checkout path plus
# run.sh's run/tmp/FILE/nginx-test-XXXXXXXXXX folders overran (a CI run
# failed stream_realip_hostname.t and upstream_ip_hash_ipv6.t that way).
NT_WORK=$(mktemp -d /tmp/sgnt.XXXXXX)
trap 'rc=$?; rm -rf "$NT_WORK"; (exit $rc); finish' EXIT
# Only the files with listed tests run (the ratchet checks nothing else;
# scripts/nginx_tests_expect.py, which writes the list, leaves out the
# files whose results depend on timing, docs/nginx-tests.md), in
# NT_SHARDS runs side by side: most of a file's time is waiting (on
# timeouts its tests expect), not CPU, and Test::Nginx takes its ports
# under a lock, so runs may share the machine. The slow files are dealt
# out first so that each shard gets some.
NT_SHARDS=${NT_SHARDS:-3}
NT_SLOW=(h2_headers.t h2_host.t grpc_ssl.t h2.t h2_keepalive.t h2_proxy_request_buffering.t ssl.t
         h2_error_page.t proxy.t)
mapfile -t nt_listed < <(sed 's/#.*//' tests/nginx-tests.expect | awk 'NF { print $1 }' | sort -u)
nt_files=()
for f in "${NT_SLOW[@]}" "${nt_listed[@]}"; do
    [[ " ${nt_listed[*]} " == *" $f "* ]] || continue          # slow but not listed
    [[ " ${nt_files[*]-} " == *" $f "* ]] && continue          # dealt already
    nt_files+=("$f")
done
nt_pids=()
for (( i = 0; i < NT_SHARDS; i++ )); do
    shard=()
    for (( k = i; k < ${#nt_files[@]}; k += NT_SHARDS )); do shard+=("${nt_files[k]}"); done
    (( ${#shard[@]} > 0 )) || break   # run.sh without files would run them all
    NGINX_TESTS_WORK="$NT_WORK/$i" OUT="build/nginx-tests/out$i" \
        EXPECT=tests/nginx-tests.expect bash "$NT" build/streamgate "${shard[@]}" \
        > "build/nginx-tests/shard$i.txt" 2>&1 &
    nt_pids+=($!)
done
nt_rc=0
for (( i = 0; i < ${#nt_pids[@]}; i++ )); do
    wait "${nt_pids[i]}" || nt_rc=1
    echo "-- shard $i"
    cat "build/nginx-tests/shard$i.txt"
done
awk '/^nginx-tests: [0-9]+ passed of [0-9]+ tests/ { p += $2; t += $5; f += $8 }
     END { printf "nginx-tests (the files with listed tests, %d shards): %d passed of %d tests in %d files\n", '"$NT_SHARDS"', p, t, f }' \
    build/nginx-tests/shard*.txt
if (( nt_rc != 0 )); then
    # A listed test that failed is run again, once, in a run of its own
    # file(s) with nothing else beside it: the nginx-tests files check
    # log lines and timings that a loaded 2-core machine can miss (see
    # docs/nginx-tests.md). A test that passes on the second run is named
    # as flaky here, and in the summary, so that it can be looked into;
    # only a test that fails twice fails the run.
    mapfile -t nt_lost < <(sed -n '/^ratchet: [0-9]* of [0-9]* expected tests no longer pass/,/^ratchet:.*EXPECT does not list/p' \
        build/nginx-tests/shard*.txt | awk '/^  [^ ]+\.t [0-9]+/ { print $1, $2 }')
    mapfile -t nt_again < <(printf '%s\n' "${nt_lost[@]+"${nt_lost[@]}"}" | awk 'NF { print $1 }' | sort -u)
    if grep -q "run.sh could not\|^usage" build/nginx-tests/shard*.txt || (( ${#nt_again[@]} == 0 )); then
        echo "nginx-tests: a shard failed without naming a listed test (run.sh could not run)"; exit 1
    fi
    echo
    echo "-- listed tests that failed: ${nt_lost[*]}; running ${nt_again[*]} again, alone"
    nt_rc=0
    NGINX_TESTS_WORK="$NT_WORK/a" OUT="build/nginx-tests/out-again" \
        EXPECT=tests/nginx-tests.expect bash "$NT" build/streamgate "${nt_again[@]}" \
        > build/nginx-tests/again.txt 2>&1 || nt_rc=1
    cat build/nginx-tests/again.txt
    if (( nt_rc != 0 )); then
        echo "nginx-tests: listed tests no longer pass (failed twice):"
        sed -n '/expected tests no longer pass/,/EXPECT does not list/p' build/nginx-tests/again.txt | grep '^  '
        exit 1
    fi
    SUMMARY+=("note          nginx-tests flaky (failed once, passed alone): ${nt_lost[*]}")
fi
done_step

if [[ "${SG_QUICK:-0}" == "1" ]]; then
    echo
    echo "SG_QUICK=1: skipping the ASan+UBSan pass and fuzzing"
    exit 0
fi

export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1

step "ASan+UBSan build (build-asan/)"
make -j2 CC=gcc BUILD=build-asan SAN=1 all
make -j2 CC=gcc BUILD=build-asan SAN=1 unit
done_step

step "unit tests under ASan+UBSan"
build-asan/unit-tests
done_step

step "integration tests under ASan+UBSan (SG_BUILD=build-asan)"
run_pytest build-asan
done_step

step "fuzz targets (make fuzz, ${FUZZ_SECONDS}s each)"
make -j2 fuzz
shopt -s nullglob
targets=(build-fuzz/fuzz_*)
FUZZ_TMP=$(mktemp -d)
trap 'rc=$?; rm -rf "$FUZZ_TMP" "${NT_WORK-}"; (exit $rc); finish' EXIT
ran=0
for t in "${targets[@]}"; do
    [[ "$t" != *.* && -x "$t" && -f "$t" ]] || continue   # skip fuzz_X.log
    name=$(basename "$t"); name=${name#fuzz_}
    corpus="$FUZZ_TMP/corpus-$name"
    mkdir -p "$corpus" "build-fuzz/artifacts/$name"
    if [[ -d "tests/fuzz/corpus/$name" ]]; then
        cp -r "tests/fuzz/corpus/$name/." "$corpus/"
    fi
    log="build-fuzz/fuzz_$name.log"
    echo "-- fuzz_$name for ${FUZZ_SECONDS}s (log: $log)"
    rc=0
    ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    timeout -k 10 $(( FUZZ_SECONDS + 120 )) "$t" -max_total_time="$FUZZ_SECONDS" \
        -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
        -artifact_prefix="build-fuzz/artifacts/$name/" "$corpus" >"$log" 2>&1 || rc=$?
    if [[ $rc -ne 0 ]]; then
        tail -n 60 "$log"
        echo "fuzz_$name failed (exit $rc); reproducer in build-fuzz/artifacts/$name/"
        exit 1
    fi
    grep -E "stat::number_of_executed_units|Done [0-9]+ runs" "$log" | tail -n 1 || true
    ran=$(( ran + 1 ))
done
echo "$ran fuzz target(s) ran without a crash"
done_step
