"""scripts/check_layers.py: the layering check fails when a lower layer
includes a higher one, names file and line, and passes a tree whose
includes all point down. It runs on fake trees here (the real tree is
checked by its own step in scripts/test.sh)."""

import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "check_layers.py"
PYTHON = "/usr/bin/python3" if Path("/usr/bin/python3").exists() else sys.executable


def write(root, files):
    for rel, text in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)


def run(src):
    r = subprocess.run([PYTHON, str(SCRIPT), "--src", str(src)],
                       capture_output=True, text=True, timeout=60)
    return r.returncode, r.stdout + r.stderr


CLEAN = {
    "core/buf.h": "#include <stddef.h>\n",
    "core/buf.c": '#include "core/buf.h"\n',
    "conf/conf.h": '#include "core/buf.h"\n',
    "exchange/exchange.h": '#include "conf/conf.h"\n#include "core/buf.h"\n',
    "http/x.h": '#include "exchange/exchange.h"\n',
    "http/x.c": '#include "http/x.h"\n#include "x.h"\n#include <nghttp2/nghttp2.h>\n',
    "proxy/proxy.h": '#include "http/x.h"\n',
    "proxy/proxy.c": '#include "proxy/proxy.h"\n',
    "server/server.c": '#include "proxy/proxy.h"\n#include "core/buf.h"\n',
    "main.c": '#include "server/server.c"\n#include "proxy/proxy.h"\n',
}


def test_clean_tree_passes(tmp_path):
    src = tmp_path / "src"
    write(src, CLEAN)
    rc, out = run(src)
    assert rc == 0, out
    assert "every include points down" in out


def test_codec_including_a_proxy_header_fails_with_file_and_line(tmp_path):
    src = tmp_path / "src"
    write(src, CLEAN)
    write(src, {"http/x.c": '#include "http/x.h"\n\n#include "proxy/proxy.h"\n'})
    rc, out = run(src)
    assert rc != 0, out
    assert 'src/http/x.c:3: http includes proxy header "proxy/proxy.h"' in out
    assert out.count(" includes ") == 1, out


def test_every_violation_is_listed_and_same_folder_includes_resolve(tmp_path):
    src = tmp_path / "src"
    write(src, CLEAN)
    write(src, {
        "core/loop.c": '#include "conf/conf.h"\n#include "server/server.c"\n',
        # a bare name resolves next to the including file: proxy/proxy.h
        "proxy/p2.h": '#include "proxy.h"\n',
        "exchange/link.h": '#include "proxy/p2.h"\n',
    })
    rc, out = run(src)
    assert rc != 0, out
    assert 'src/core/loop.c:1: core includes conf header "conf/conf.h"' in out
    assert 'src/core/loop.c:2: core includes server header "server/server.c"' in out
    assert 'src/exchange/link.h:1: exchange includes proxy header "proxy/p2.h"' in out
    assert "proxy/p2.h:1" not in out


def test_unknown_folder_is_an_error(tmp_path):
    src = tmp_path / "src"
    write(src, CLEAN)
    write(src, {"quic/quic.c": '#include "core/buf.h"\n'})
    rc, out = run(src)
    assert rc != 0, out
    assert 'src/quic/quic.c: folder "quic" is not in the layer order' in out


def test_help_prints_the_order():
    r = subprocess.run([PYTHON, str(SCRIPT), "--help"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0
    flat = " ".join(r.stdout.split())
    assert ("core < conf < net < exchange < observe < upstream < http < proxy "
            "< server < main") in flat
