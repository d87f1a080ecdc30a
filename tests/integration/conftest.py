"""pytest fixtures for streamgate's integration tests.

Binaries come from $SG_BUILD (default "build", relative to the repo root):
SG_BUILD=build-asan runs the same tests against the ASan+UBSan build, where
Proxy.stop() also fails on any sanitizer report.

Fixtures (every process they start is killed at teardown, even on failure):

  tmp_prefix          a fresh prefix dir (Path) with a logs/ subfolder
  start_backend       factory: start_backend(ports=None, threads=1, quiet=True) → Backend
                      (ports=None: one free port; backend.port / backend.ports)
  backend             one started Backend on a free port
  start_proxy         factory: start_proxy(conf_text=None, conf_file=None, prefix=None,
                      ports=None, start=True, extra_args=()) → Proxy
                      (prefix=None: a new dir under tmp_path; the proxy is stopped
                      at teardown with the exit-code/sanitizer check)
  simple_proxy        factory: simple_proxy(upstream_ports, location_extra="",
                      upstream_extra="", server_extra="", http_extra="")
                      → (Proxy, listen_port): one server proxying / to an upstream
                      group "backend" made of the given ports
  seed_dir            Path of the seed configs (fails if absent)
  seed_conf           factory: seed_conf(num) → sgtest.Seed (the seed copied into
                      tmp_prefix on free ports; seed[8080] → the port used for 8080)
  start_nginx         factory: start_nginx(conf_text, ports) → sgtest.Nginx (the installed
                      nginx as a reference; fails the test if it cannot start)
  start_echo          factory: start_echo(port=None) → EchoServer (Python backend whose
                      body is the raw request head it received; see sgtest)
  start_stub          factory: start_stub(port=None, mode="close") → TcpStub (a failing
                      peer counting connections: close / rst / hold / raw)
  h2c_backends        factory: h2c_backends(n=1) → h2c ports of n sgbacks (gRPC chat.Chat)
  grpc_channels       factory: grpc_channels(port, host="127.0.0.1", root_cert=None)
                      → a grpcio channel without size limits, closed at teardown

A skip whose reason is not in allowed_skips.txt, and any xfail or xpass,
fails the run (see the hooks below).

Helpers to import from sgtest: free_port, free_ports, port_busy, wait_for,
http_conf, HttpConn, build_request, get, Backend, Proxy, run_streamgate.
"""

from pathlib import Path

import pytest

import sgtest
from sgtest import Backend, Proxy, free_port, http_conf


# ---------------------------------------------------------------- skips fail the run
# A skipped test is a test that did not run: the run fails on any skip whose
# reason is not declared in allowed_skips.txt (tools a machine may lack), and
# on every xfail or xpass, so that a green run means every test ran.

ALLOWED_SKIPS_FILE = Path(__file__).with_name("allowed_skips.txt")


def allowed_skip_reasons():
    lines = ALLOWED_SKIPS_FILE.read_text().splitlines()
    return [l.strip() for l in lines if l.strip() and not l.lstrip().startswith("#")]


_skip_outcomes = []      # (nodeid, kind, reason, allowed)


def _skip_reason(report):
    if isinstance(report.longrepr, tuple) and len(report.longrepr) == 3:
        reason = report.longrepr[2]
    else:
        reason = str(report.longrepr)
    return reason[len("Skipped: "):] if reason.startswith("Skipped: ") else reason


def pytest_runtest_logreport(report):
    if hasattr(report, "wasxfail"):
        kind = "xfailed" if report.skipped else "xpassed"
        _skip_outcomes.append((report.nodeid, kind, report.wasxfail, False))
    elif report.skipped:
        reason = _skip_reason(report)
        ok = any(reason.startswith(a) for a in allowed_skip_reasons())
        _skip_outcomes.append((report.nodeid, "skipped", reason, ok))


def pytest_collectreport(report):
    """A module that skips as a whole (pytest.importorskip) skips at collection."""
    if report.skipped:
        reason = _skip_reason(report)
        ok = any(reason.startswith(a) for a in allowed_skip_reasons())
        _skip_outcomes.append((report.nodeid, "skipped", reason, ok))


def pytest_sessionfinish(session, exitstatus):
    if exitstatus in (pytest.ExitCode.OK, pytest.ExitCode.NO_TESTS_COLLECTED) and \
            any(not ok for _, _, _, ok in _skip_outcomes):
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter):
    if not _skip_outcomes:
        return
    tr = terminalreporter
    tr.section("skips and xfails")
    for nodeid, kind, reason, ok in _skip_outcomes:
        tr.write_line("%s %s %s: %s" % ("allowed:" if ok else "FAILS THE RUN:", kind, nodeid, reason))
    bad = sum(1 for o in _skip_outcomes if not o[3])
    if bad:
        tr.write_line("%d test(s) did not run for a reason not declared in %s: the run fails"
                      % (bad, ALLOWED_SKIPS_FILE.name), red=True, bold=True)


@pytest.fixture(scope="session", autouse=True)
def _binaries_exist():
    for b in (sgtest.STREAMGATE, sgtest.SGBACK):
        if not b.exists():
            pytest.fail("missing %s: run `make` (or set SG_BUILD)" % b, pytrace=False)


@pytest.fixture
def tmp_prefix(tmp_path):
    p = tmp_path / "prefix"
    (p / "logs").mkdir(parents=True)
    return p


@pytest.fixture
def start_backend(tmp_path):
    started = []

    def start(ports=None, threads=1, quiet=True, extra_args=()):
        b = Backend(ports, threads=threads, logdir=tmp_path, quiet=quiet,
                    extra_args=extra_args)
        started.append(b)
        return b.start()

    yield start
    errors = []
    for b in reversed(started):
        try:
            b.stop(check=True)
        except Exception as e:  # keep stopping the others
            errors.append(e)
    if errors:
        raise errors[0]


@pytest.fixture
def backend(start_backend):
    return start_backend()


@pytest.fixture
def start_proxy(tmp_path):
    started = []
    count = [0]

    def start(conf_text=None, conf_file=None, prefix=None, ports=None, start=True,
              extra_args=(), env=None):
        if prefix is None:
            count[0] += 1
            prefix = tmp_path / ("sg%d" % count[0])
        p = Proxy(conf_text, prefix=prefix, conf_file=conf_file, ports=ports,
                  extra_args=extra_args, env=env)
        started.append(p)
        return p.start() if start else p

    yield start
    errors = []
    for p in reversed(started):
        try:
            p.stop(check=True)
        except Exception as e:
            errors.append(e)
        finally:
            p.kill()
    if errors:
        raise errors[0]


@pytest.fixture
def simple_proxy(start_proxy):
    def make(upstream_ports, location_extra="", upstream_extra="", server_extra="",
             http_extra="", main=""):
        port = free_port()
        servers = "".join("    server 127.0.0.1:%d;\n" % p for p in upstream_ports)
        conf = http_conf("""
  upstream backend {
%s    %s
  }
  %s
  server {
    listen 127.0.0.1:%d;
    %s
    location / {
      proxy_pass http://backend;
      %s
    }
  }
""" % (servers, upstream_extra, http_extra, port, server_extra, location_extra), main=main)
        return start_proxy(conf), port
    return make


@pytest.fixture
def seed_dir():
    if not sgtest.SEED_DIR.is_dir():
        pytest.fail("seed configs not found at %s (they live in ../shared/seed-configs "
                    "beside the clone; SG_SEED_DIR names another folder)" % sgtest.SEED_DIR,
                    pytrace=False)
    return sgtest.SEED_DIR


@pytest.fixture
def seed_conf(seed_dir, tmp_prefix):
    """factory: seed_conf(num) → sgtest.Seed: seed NUM copied into tmp_prefix
    with its fixed ports replaced by free ones (seed[8080] is the port that
    stands for 8080); start it with start_proxy(conf_file=seed.path,
    prefix=tmp_prefix)."""
    def make(num):
        return sgtest.seed_with_free_ports(seed_dir, num, tmp_prefix)
    return make


@pytest.fixture
def start_nginx(tmp_path):
    """factory: start_nginx(conf_text, ports) → started sgtest.Nginx (the
    installed nginx, the reference; fails the test when it is missing or
    does not start).  Stopped at teardown."""
    started = []

    def start(conf_text, ports):
        n = sgtest.Nginx(conf_text, tmp_path / ("nginx%d" % len(started)), ports)
        started.append(n)
        try:
            return n.start()
        except sgtest.SgTestError as e:
            pytest.fail(str(e), pytrace=False)
    yield start
    for n in started:
        n.stop()


@pytest.fixture
def start_echo():
    """factory: start_echo(port=None) → sgtest.EchoServer (Python; echoes the raw
    request head the proxy sent).  Stopped at teardown."""
    started = []

    def start(port=None):
        e = sgtest.EchoServer(port)
        started.append(e)
        return e
    yield start
    for e in started:
        e.stop()


@pytest.fixture
def start_stub():
    """factory: start_stub(port=None, mode="close"|"rst"|"hold"|"raw", reply=b"")
    → sgtest.TcpStub (counts connections in .accepted).  Stopped at teardown."""
    started = []

    def start(port=None, mode="close", reply=b""):
        s = sgtest.TcpStub(port, mode, reply)
        started.append(s)
        return s
    yield start
    for s in started:
        s.stop()


@pytest.fixture
def h2c_backends(start_backend):
    """factory: h2c_backends(n=1) → the h2c ports of n sgbacks (their gRPC
    service chat.Chat, `sgback -2`), each accepting."""
    def start(n=1):
        ports = sgtest.free_ports(n)
        for p in ports:
            sgtest.start_h2c_backend(start_backend, p)
        return ports
    return start


@pytest.fixture
def grpc_channels():
    """factory: grpc_channels(port, host="127.0.0.1", root_cert=None) → a
    grpcio channel without message size limits (TLS with root_cert),
    closed at teardown."""
    opened = []

    def make(port, host="127.0.0.1", root_cert=None):
        ch = sgtest.open_grpc_channel(port, host, root_cert)
        opened.append(ch)
        return ch
    yield make
    for ch in opened:
        ch.close()
