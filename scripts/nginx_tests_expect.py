#!/usr/bin/python3
"""Write tests/nginx-tests.expect from one or more nginx-tests runs.

    OUT=/tmp/r1 bash ../shared/nginx-tests/run.sh build/streamgate   # run twice or more,
    OUT=/tmp/r2 bash ../shared/nginx-tests/run.sh build/streamgate   # each with its own OUT
    scripts/nginx_tests_expect.py /tmp/r1 /tmp/r2 > tests/nginx-tests.expect

(A run made in shards, as scripts/test.sh does, is one run: give its OUT
folders joined with commas, /tmp/s0,/tmp/s1,/tmp/s2.)

A test is listed when it passed in every run given (a test that passed in
only some is flaky against streamgate, and a ratchet line for it would make
CI flaky). Files a run stopped (TIMEOUT) are left out: where such a file
stops depends on the machine's speed. The format is run.sh's EXPECT one:
"FILE.t N  # name".

Files in LEAVE_OUT are not listed at all: which of their tests pass
depends on timing (docs/nginx-tests.md says why for each)."""
import os
import sys

LEAVE_OUT = {
    "grpc.t",                       # stopped by run.sh after 300 s (waits on its fake backend)
    "proxy_h2.t", "proxy_h2_headers.t", "proxy_h2_request_buffering.t", "proxy_h2_body_discard.t",
    "upstream_keepalive.t", "proxy_ssl_keepalive.t",   # which kept upstream connection a request takes
    "proxy_h2_early_hints.t",       # whether the 103 the backend sends first is seen before the 200
    "http_resolver_cname.t",        # "CNAME in progress": whether two worker threads share one lookup
    "upstream_zone_ssl.t",          # which thread's TLS session cache a connection meets
    "stream_limit_conn_dry_run.t",  # its log checks race the sessions that its HTTP/0.9 requests leave open
}
# Single tests whose results depend on timing: the order in which worker
# threads write access log lines of requests made one after another; the
# byte counts logged for pipelined upgrades; least_conn's count of a session
# that is closing while the next one is placed.
LEAVE_OUT_TESTS = {("access_log.t", 3), ("access_log.t", 4), ("access_log.t", 5), ("ssl_proxy_upgrade.t", 30),
                   ("stream_upstream_least_conn.t", 1),
                   # which thread's keep-alive pool the second connection meets
                   ("upstream_sticky.t", 62), ("upstream_sticky.t", 66),
                   ("upstream_zone_ssl.t", 4), ("upstream_zone_ssl.t", 5),
                   # the response time logged for a client that closed: whether the close is seen first
                   ("proxy.t", 28),
                   # a connection opened just before the next request, on another worker
                   # thread: whether it was accepted (stub_status counts it) or its request
                   # seen (limit_conn counts it) before the next one is answered
                   ("stub_status.t", 10), ("stub_status.t", 11), ("limit_conn.t", 1), ("limit_conn.t", 2)}


def passes(outs):
    ok = {}
    for out in outs.split(","):
        ok.update(passes_in(out))
    return ok


def passes_in(out):
    stopped = set(LEAVE_OUT)
    with open(os.path.join(out, "summary.tsv")) as f:
        for line in f:
            cols = line.rstrip("\n").split("\t")
            if len(cols) > 7 and cols[7] == "TIMEOUT":
                stopped.add(cols[0])
    ok = {}
    with open(os.path.join(out, "tests.tsv")) as f:
        for line in f:
            cols = line.rstrip("\n").split("\t")
            if len(cols) >= 3 and cols[2] == "ok" and cols[0] not in stopped and \
                    (cols[0], int(cols[1])) not in LEAVE_OUT_TESTS:
                ok[(cols[0], int(cols[1]))] = cols[3] if len(cols) > 3 else ""
    return ok


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    runs = [passes(d) for d in sys.argv[1:]]
    common = set(runs[0])
    for r in runs[1:]:
        common &= set(r)
    dropped = sorted(set().union(*runs) - common)
    print("# nginx-tests that pass against streamgate in every one of %d runs" % len(runs))
    print("# (scripts/nginx_tests_expect.py; checked by scripts/test.sh:")
    print("#   EXPECT=tests/nginx-tests.expect bash ../shared/nginx-tests/run.sh build/streamgate)")
    print("# not listed, their results depend on timing: %s, and %s" % (
        " ".join(sorted(LEAVE_OUT)), " ".join("%s %d" % t for t in sorted(LEAVE_OUT_TESTS))))
    for file, n in sorted(common):
        print("%s %d  # %s" % (file, n, runs[0][(file, n)]))
    for file, n in dropped:
        print("passed in some runs only, not listed: %s %d" % (file, n), file=sys.stderr)


if __name__ == "__main__":
    main()
