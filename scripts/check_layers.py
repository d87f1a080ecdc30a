#!/usr/bin/python3
"""Check that streamgate's source layers point down.

Every file under src/ belongs to the layer named by its top folder
(src/main.c is the layer "main"). A file may include headers of its own
layer or of a lower one; including a higher layer's header is a
violation, printed as

    src/FILE:LINE: LAYER includes HIGHER_LAYER header "X"

A folder under src/ that is not in the order below is itself an error,
so that a new folder has to be placed in the order before it builds.
Exit status: 0 clean, 1 violations, 2 usage error.

Standard library only (run it with /usr/bin/python3).
"""

import argparse
import os
import re
import sys

# The layer order, lowest first: the only place it is written down here.
# "main" is src/main.c (any file directly under src/ other than main.c is
# an error).
LAYERS = (
    "core",      # loop, timers, buffers, str, log, thread primitives
    "conf",      # lexer, parser, directive engine, compiled config
    "net",       # sockets, TLS transport
    "exchange",  # neutral request/response heads, exchange, upstream link
    "observe",   # access log
    "upstream",  # peers, balancers, pools
    "http",      # HTTP/1.1 and HTTP/2 codecs, ws frames
    "proxy",     # router, exchange driver, proxy core, tunnels, stream proxy
    "server",    # listeners, accept dispatch, generations, reload
    "main",      # src/main.c
)
RANK = {name: i for i, name in enumerate(LAYERS)}

INCLUDE_RE = re.compile(r'^\s*#\s*include\s*"([^"]+)"')
SOURCE_SUFFIXES = (".c", ".h")


def order_text():
    return " < ".join(LAYERS)


def layer_of(rel):
    """Layer of a path relative to src/ (with '/' separators), or None."""
    parts = rel.split("/")
    if len(parts) == 1:
        return "main" if parts[0] == "main.c" else None
    return parts[0] if parts[0] in RANK and parts[0] != "main" else None


def resolve(src, rel, target):
    """Path (relative to src/) of the header that `#include "target"` in the
    file src/rel names, or None when it is not a file under src/ (a system
    or library header). A quoted include is looked up next to the including
    file first, then under src/ (the -Isrc of the Makefile)."""
    here = os.path.dirname(rel)
    for cand in (os.path.join(here, target), target):
        norm = os.path.normpath(cand)
        if norm.startswith(".."):
            continue
        if os.path.isfile(os.path.join(src, norm)):
            return norm.replace(os.sep, "/")
    return None


def check(src, shown):
    """Return the list of error lines for the tree at src; `shown` is the
    prefix printed in front of paths relative to src."""
    errors = []
    files = []
    for dirpath, dirnames, filenames in os.walk(src):
        dirnames.sort()
        for name in sorted(filenames):
            if name.endswith(SOURCE_SUFFIXES):
                full = os.path.join(dirpath, name)
                files.append(os.path.relpath(full, src).replace(os.sep, "/"))
    unknown = set()
    for rel in files:
        own = layer_of(rel)
        if own is None:
            top = rel.split("/")[0] if "/" in rel else rel
            if top not in unknown:
                unknown.add(top)
                what = "folder" if "/" in rel else "file"
                errors.append('%s/%s: %s "%s" is not in the layer order '
                              '(%s); place it in LAYERS in '
                              'scripts/check_layers.py'
                              % (shown, rel, what, top, order_text()))
            continue
        with open(os.path.join(src, rel), encoding="utf-8",
                  errors="replace") as f:
            for lineno, line in enumerate(f, 1):
                m = INCLUDE_RE.match(line)
                if not m:
                    continue
                target = resolve(src, rel, m.group(1))
                if target is None:
                    continue
                theirs = layer_of(target)
                if theirs is None:
                    continue   # reported once as an unknown folder
                if RANK[theirs] > RANK[own]:
                    errors.append('%s/%s:%d: %s includes %s header "%s"'
                                  % (shown, rel, lineno, own, theirs,
                                     m.group(1)))
    return errors, len(files)


def main(argv):
    here = os.path.dirname(os.path.abspath(__file__))
    default_src = os.path.normpath(os.path.join(here, "..", "src"))
    ap = argparse.ArgumentParser(
        description="Fail when a file under src/ includes a header of a "
                    "higher layer. Layer order, lowest first (a file may "
                    "include its own layer or a lower one): " + order_text()
                    + ". The layer is the file's top folder under src/; "
                    "src/main.c is \"main\".")
    ap.add_argument("--src", default=default_src,
                    help="source tree to check (default: %(default)s)")
    args = ap.parse_args(argv)
    src = os.path.abspath(args.src)
    if not os.path.isdir(src):
        ap.error("no such directory: %s" % args.src)
    errors, nfiles = check(src, os.path.basename(src))
    for e in errors:
        print(e)
    if errors:
        print("check_layers: %d violation(s) in %d files; order: %s"
              % (len(errors), nfiles, order_text()))
        return 1
    if nfiles == 0:
        print("check_layers: no .c/.h files under %s" % args.src)
        return 1
    print("check_layers: %d files, every include points down (%s)"
          % (nfiles, order_text()))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
