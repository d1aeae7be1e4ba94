#!/usr/bin/env python3
"""Seeds fuzz/corpus/<target>/ from the tests' inputs: the unit files of
tests/units and units.example, the fixture images (tests/fixtures/
make-images.sh OUT, as root), the crafted and hostile layers, and real
control API requests and answers. Files are named by their SHA-1, as
libFuzzer names its own. Run `fuzz/run.sh` (or `cargo fuzz cmin`) after it
to keep only what adds coverage.

Usage: fuzz/seed.py [FIXTURES]   (FIXTURES: the output of make-images.sh)"""
import glob
import gzip
import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
MAX = 64 << 10


def put(target, data):
    if isinstance(data, str):
        data = data.encode()
    if len(data) > MAX:
        return
    d = os.path.join(HERE, "corpus", target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, hashlib.sha1(data).hexdigest()), "wb") as f:
        f.write(data)


def units():
    for p in sorted(glob.glob(f"{ROOT}/tests/units/**/*.toml", recursive=True) + glob.glob(f"{ROOT}/units.example/*.toml")):
        put("unit_file", open(p, "rb").read())
    for p in sorted(glob.glob(f"{ROOT}/tests/units/**/*.env", recursive=True) + glob.glob(f"{ROOT}/units.example/**/*.env", recursive=True)):
        put("env_file", open(p, "rb").read())
    put("env_file", "# comment\n\nA=1\n  B=two \nC=\"q\"\nD=\nE=x=y\r\n")
    put("env_file", "A=1\nBARE\n1X=2\n")
    put("env_file", "PATH=/usr/bin:/bin\nLANG=C.UTF-8\nEMPTY=\n")
    values = [
        (0, "512m"), (0, "1.5G"), (0, "100"), (1, "1m30s"), (1, "500ms"), (1, "2h"), (2, "SIGTERM"), (2, "HUP"),
        (2, "9"), (3, "CAP_NET_ADMIN"), (3, "sys_time"), (4, "8080:80"), (4, "127.0.0.1:53:53/udp"),
        (4, "8000-8010:8000-8010"), (4, "80"), (5, "./data:/data:ro"), (5, "cache:/var/cache"),
        (6, "/run:size=64m,mode=1777"), (7, "/dev/fuse:/dev/fuse:rwm"), (8, "docker.io/library/busybox:1.36"),
        (8, "oci:./layout:base"), (8, "alpine@sha256:" + "a" * 64), (9, "nofile=1024:4096"),
        (10, "/var/../lib//x/"), (11, "web-1"), (11, "net.ipv4.ip_forward"),
    ]
    for pick, s in values:
        put("values", bytes([pick]) + s.encode())


def layer(entries):
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as t:
        for ti, data in entries:
            t.addfile(ti, data)
    return out.getvalue()


def entry(name, kind=tarfile.REGTYPE, data=b"", **kw):
    ti = tarfile.TarInfo(name)
    ti.type, ti.mode, ti.mtime = kind, kw.pop("mode", 0o644), 1700000000
    for k, v in kw.items():
        setattr(ti, k, v)
    if kind == tarfile.REGTYPE:
        ti.size = len(data)
        return ti, io.BytesIO(data)
    return ti, None


def layers(fixtures):
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, f"{ROOT}/tests/fixtures/crafted-layer.py", f"{tmp}/crafted.tar"], check=True)
        put("tar_layer", open(f"{tmp}/crafted.tar", "rb").read())
    D, S, L = tarfile.DIRTYPE, tarfile.SYMTYPE, tarfile.LNKTYPE
    # Hostile layers: each tries to write outside the layer one way.
    put("tar_layer", layer([entry("../escape", data=b"x")]))
    put("tar_layer", layer([entry("/abs/file", data=b"x")]))
    put("tar_layer", layer([entry("up", S, linkname="../outside"), entry("up/canary", data=b"overwritten")]))
    put("tar_layer", layer([entry("abs", S, linkname="/tmp"), entry("abs/escape", data=b"x")]))
    put("tar_layer", layer([entry("hard", L, linkname="../outside/canary")]))
    put("tar_layer", layer([entry("d", D, mode=0o755), entry("d/l", S, linkname="../.."), entry("d/l/x", data=b"x")]))
    put("tar_layer", layer([entry("f", data=b"first"), entry("f", data=b"again"), entry("h", L, linkname="f")]))
    put("tar_layer", layer([entry("a/b/c/.wh..wh..opq"), entry("a/.wh.b"), entry("a/.wh.."), entry(".wh.x")]))
    put("tar_layer", layer([entry("locked", D, mode=0o000), entry("locked/f", data=b"x")]))
    put("tar_layer", layer([entry("p", tarfile.FIFOTYPE), entry("c", tarfile.CHRTYPE, devmajor=1, devminor=3)]))
    put("tar_layer", layer([entry("x" * 300 + "/y", data=b"long"), entry("l", S, linkname="z" * 5000)]))
    if fixtures:
        # The fixtures' small layers (the busybox one is too large to keep).
        for p in glob.glob(f"{fixtures}/layout/blobs/sha256/*"):
            raw = open(p, "rb").read()
            try:
                raw = gzip.decompress(raw)
            except OSError:
                pass
            if raw[257:262] == b"ustar":
                put("tar_layer", raw)


def images(fixtures):
    docs = []
    if fixtures:
        for p in glob.glob(f"{fixtures}/layout/blobs/sha256/*") + [f"{fixtures}/layout/index.json"]:
            raw = open(p, "rb").read()
            try:
                docs.append((raw, json.loads(raw)))
            except (ValueError, UnicodeDecodeError):
                pass
        for archive in (f"{fixtures}/layered-docker.tar", f"{fixtures}/layered-oci.tar"):
            with tarfile.open(archive) as t:
                for m in t.getmembers():
                    if m.isfile() and m.size < MAX:
                        raw = t.extractfile(m).read()
                        try:
                            docs.append((raw, json.loads(raw)))
                        except (ValueError, UnicodeDecodeError):
                            pass
    for raw, doc in docs:
        if isinstance(doc, dict) and ("layers" in doc or "manifests" in doc):
            put("image_manifest", raw)
        if isinstance(doc, dict) and "rootfs" in doc:
            put("image_config", raw)
    put("image_manifest", '{"schemaVersion":1}')
    put("image_manifest", '{"schemaVersion":2,"manifests":[]}')
    put("image_config", '{"architecture":"amd64","os":"linux","config":{"Env":["PATH=/bin"],"Cmd":["sh"],'
        '"ExposedPorts":{"80/tcp":{}},"StopSignal":"SIGQUIT","Healthcheck":{"Test":["CMD-SHELL","wget -q localhost"],'
        '"Interval":5000000000,"Retries":2}},"rootfs":{"type":"layers","diff_ids":['
        '"sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"]}}')


def registry():
    for c in [
        'Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull"',
        'Basic realm="Registry Realm"',
        'Bearer realm="http://127.0.0.1:5000/token", service=reg , scope="repository:x:pull,push"',
        'bearer realm=https://auth,service=x',
        'Bearer realm="unterminated',
    ]:
        put("www_authenticate", c)
    import base64
    me = base64.b64encode(b"me:secret").decode()
    put("auth_json", json.dumps({"auths": {"https://index.docker.io/v1/": {"auth": me}, "127.0.0.1:5000": {"auth": me}}}))
    put("auth_json", '{"auths":{"x":{"auth":"!!"}}}')
    put("auth_json", '{"auths":{"ghcr.io":{}},"credHelpers":{"x":"y"}}')


def control():
    id_ = "X-Request-Id: 9-9\r\n"
    for method, target in [
        ("GET", "/v1/version"), ("GET", "/v1/units"), ("GET", "/v1/units/web"), ("POST", "/v1/units/web/start"),
        ("POST", "/v1/units/web/start?no_block=1"), ("POST", "/v1/units/web/kill?signal=SIGHUP"),
        ("GET", "/v1/units/web/logs?tail=10&since=2026-11-23T07%3A00%3A00Z&follow=1"),
        ("GET", "/v1/units/web/logs?since=10m"), ("POST", "/v1/reload?dry_run=1"), ("GET", "/v1/events"),
        ("DELETE", "/v1/volumes/data"), ("POST", "/v1/images/pull?reference=docker.io%2Flibrary%2Fbusybox"),
        ("POST", "/v1/images/prune"),
    ]:
        req = f"{method} {target} HTTP/1.1\r\nHost: supervisord\r\n{id_}Content-Length: 0\r\n\r\n"
        put("control_request", req)
        put("serial_framing", req)
    body = '{"x": 1}'
    post = f"POST /v1/reload HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n\r\n{body}"
    put("control_request", post)
    put("serial_framing", post + "GET / HTTP/1.1\r\n")
    put("serial_framing", "POST /v1/x HTTP/1.1\r\ncontent-length: 4\r\n\r\nab")
    status = json.dumps({"name": "web", "state": "running", "pid": 42, "health": None, "restarts": 0}, indent=2)
    answers = [
        f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {len(status) + 1}\r\nConnection: close\r\n\r\n{status}\n",
        'HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\nContent-Length: 31\r\n\r\n{"error": "no unit named web"}\n',
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\n2026-11-23T07:00:00Z stdout hello\n",
        f"HTTP/1.1 200 OK\r\nContent-Type: application/x-ndjson\r\n{id_}Transfer-Encoding: chunked\r\n\r\n"
        '11\r\n{"unit": "web"}\n\r\n5;x=1\r\nhello\r\n0\r\n\r\n',
        # The tail of an earlier client's answer, then another id's head, then ours.
        "ld\r\n0\r\n\r\nHTTP/1.1 200 OK\r\nX-Request-Id: 1-2\r\nContent-Length: 2\r\n\r\n{}"
        f"HTTP/1.1 200 OK\r\n{id_}Content-Length: 2\r\n\r\n{{}}",
    ]
    for a in answers:
        put("client_response", a)
        put("serial_framing", a)


fixtures = sys.argv[1] if len(sys.argv) > 1 else None
units()
layers(fixtures)
images(fixtures)
registry()
control()
for d in sorted(os.listdir(os.path.join(HERE, "corpus"))):
    files = os.listdir(os.path.join(HERE, "corpus", d))
    size = sum(os.path.getsize(os.path.join(HERE, "corpus", d, f)) for f in files)
    print(f"{d}: {len(files)} inputs, {size} bytes")
