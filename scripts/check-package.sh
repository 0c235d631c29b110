#!/usr/bin/env bash
# Checks the deployment package scripts/package.sh built; CI runs it right after package.sh.
#
#   bash scripts/check-package.sh [zip]      (default: dist/keyflip.zip; needs python3, unzip, readelf)
#
# Fails with a message naming what is wrong when:
# - the zip's entries are not exactly host.json, the binary and <Name>/function.json for every
#   functions/<Name>/function.json of this repository (nothing missing or extra, no root folder),
#   or one of them differs from the repository's copy, or host.json's defaultExecutablePath does
#   not name the binary;
# - the binary's mode in the zip is not executable, or is lost when unzipped;
# - the binary is not a statically linked x86-64 ELF (a PT_INTERP header or a NEEDED entry);
# - started as the Functions host starts it (host.json's arguments, FUNCTIONS_CUSTOMHANDLER_PORT,
#   a minimal configuration, no Azure credentials, Azure's host names sent to a closed port)
#   it does not answer GET / with 200 within 10 s, or does not exit 0 within 10 s of SIGTERM;
# - the zip or the binary is larger than MAX_MIB.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
zip=${1:-$root/dist/keyflip.zip}
binary=keyflip
# Measured: the binary is 13.6 MiB and the zip 5.3 MiB (release, musl, not stripped); a debug
# build with the demo is ~155 MiB. The limit leaves room to grow and still catches accidents.
MAX_MIB=40

fail() {
  echo "check-package.sh: FAILED: $*" >&2
  exit 1
}

for tool in python3 unzip readelf; do
  command -v "$tool" >/dev/null 2>&1 \
    || fail "$tool not found: install it (Debian: apt-get install python3 unzip binutils)"
done
[ -f "$zip" ] || fail "$zip does not exist: run scripts/package.sh first"
zip=$(cd "$(dirname "$zip")" && pwd)/$(basename "$zip")

work=$(mktemp -d)
pid=
cleanup() {
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then kill -KILL "$pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

# ---- layout, contents, modes --------------------------------------------------------------
python3 - "$zip" "$root" "$binary" <<'PY' || fail "the zip's layout, contents or modes are wrong (see above)"
import glob, json, os, stat, sys, zipfile

zip_path, root, binary = sys.argv[1], sys.argv[2], sys.argv[3]
problems = []

def repo_bytes(rel):
    with open(os.path.join(root, rel), "rb") as f:
        return f.read()

functions = sorted(
    os.path.basename(os.path.dirname(p))
    for p in glob.glob(os.path.join(root, "functions", "*", "function.json"))
)
if not functions:
    problems.append("the repository has no functions/<Name>/function.json")
expected = {"host.json": "host.json", binary: None}
expected.update({f"{n}/function.json": f"functions/{n}/function.json" for n in functions})

with zipfile.ZipFile(zip_path) as z:
    infos = z.infolist()
    names = [i.filename for i in infos]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        problems.append(f"entries appear more than once: {dupes}")
    missing = sorted(set(expected) - set(names))
    extra = sorted(set(names) - set(expected))
    if missing:
        problems.append(f"missing entries: {missing}")
    if extra:
        problems.append(
            f"unexpected entries: {extra} (the zip's root must be the app root: host.json, "
            f"{binary} and <Name>/function.json only; a root folder or other files do not belong)"
        )
    for name, rel in expected.items():
        if rel is None or name not in names:
            continue
        if z.read(name) != repo_bytes(rel):
            problems.append(f"{name} in the zip differs from the repository's {rel}: rebuild the package")
    if "host.json" in names:
        try:
            host = json.loads(z.read("host.json"))
            path = host["customHandler"]["description"]["defaultExecutablePath"]
            if path != binary:
                problems.append(
                    f"host.json's customHandler.description.defaultExecutablePath is {path!r}, not {binary!r}"
                )
        except (ValueError, KeyError, TypeError) as e:
            problems.append(f"host.json has no customHandler.description.defaultExecutablePath: {e!r}")
    if binary in names:
        info = z.getinfo(binary)
        mode = info.external_attr >> 16
        if info.create_system != 3:
            problems.append(f"{binary} was not stored with Unix attributes (create_system {info.create_system})")
        if not stat.S_ISREG(mode) or (mode & 0o111) != 0o111:
            problems.append(f"{binary} is stored with mode {oct(mode)}: it must be a regular file with mode 0755")
        else:
            print(f"ok: {binary} is stored with mode {oct(stat.S_IMODE(mode))}")

if problems:
    for p in problems:
        print(f"  - {p}", file=sys.stderr)
    sys.exit(1)
print(f"ok: the zip holds exactly host.json, {binary} and {len(functions)} function folders: {', '.join(functions)}")
PY

# ---- unzipped as the platform unzips it -------------------------------------------------------
unzip -q "$zip" -d "$work/app"
exe="$work/app/$binary"
[ -x "$exe" ] || fail "$binary is not executable once unzipped"

# ---- statically linked ------------------------------------------------------------------------
header=$(readelf -hW "$exe") || fail "$binary is not an ELF file"
grep -q 'Class:[[:space:]]*ELF64' <<<"$header" || fail "$binary is not a 64-bit ELF"
grep -q 'Machine:[[:space:]]*Advanced Micro Devices X86-64' <<<"$header" || fail "$binary is not an x86-64 binary"
if readelf -lW "$exe" | grep -q 'INTERP'; then
  fail "$binary has a program interpreter (PT_INTERP): it is dynamically linked; build it for x86_64-unknown-linux-musl"
fi
needed=$(readelf -dW "$exe" | grep '(NEEDED)' || true)
[ -z "$needed" ] || fail "$binary needs shared libraries, it must be static:
$needed"
echo "ok: $binary is a statically linked x86-64 ELF (no PT_INTERP, no NEEDED)"

# ---- sizes --------------------------------------------------------------------------------
zip_size=$(wc -c <"$zip")
bin_size=$(wc -c <"$exe")
limit=$((MAX_MIB * 1024 * 1024))
mib() { awk -v b="$1" 'BEGIN { printf "%d bytes (%.1f MiB)", b, b / 1048576 }'; }
echo "sizes: zip $(mib "$zip_size"), $binary $(mib "$bin_size"); limit $MAX_MIB MiB each"
[ "$zip_size" -le "$limit" ] || fail "the zip is $zip_size bytes, above the $MAX_MIB MiB limit"
[ "$bin_size" -le "$limit" ] || fail "$binary is $bin_size bytes, above the $MAX_MIB MiB limit"

# ---- it starts and answers GET / ------------------------------------------------------------
# The arguments the host passes, from host.json (this check runs the binary as the host would).
mapfile -t args < <(python3 -c '
import json, sys
for a in json.load(open(sys.argv[1], encoding="utf-8"))["customHandler"]["description"].get("arguments", []):
    print(a)
' "$work/app/host.json")
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')
closed="127.0.0.1:9"
log="$work/serve.log"
# A clean environment: no Azure credential variables reach it, the lease is in-process (no
# storage at start), and every Azure host name connects to a closed local port, so no call can
# reach Azure even if one were made.
(
  cd "$work/app"
  exec env -i PATH=/usr/bin:/bin HOME="$work" \
    FUNCTIONS_CUSTOMHANDLER_PORT="$port" \
    FUNCTIONS_APP_ROOT_PATH="$work/app" \
    KEYFLIP_VAULTS=kv-package-check \
    KEYFLIP_ALLOWED_SCOPES=/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/rg-package-check \
    KEYFLIP_LEASE=in-process \
    KEYFLIP_CONNECT_TO="management.azure.com=$closed,login.microsoftonline.com=$closed,*.vault.azure.net=$closed,*.blob.core.windows.net=$closed" \
    "./$binary" "${args[@]}"
) >"$log" 2>&1 &
pid=$!

if ! python3 - "$port" "$pid" <<'PY'; then
import os, sys, time, urllib.error, urllib.request
port, pid = int(sys.argv[1]), int(sys.argv[2])
deadline = time.monotonic() + 10
last = "no answer"
while time.monotonic() < deadline:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        sys.exit("it exited before answering")
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=1) as r:
            if r.status == 200:
                print(f"ok: GET / answered 200 ({r.read(64).decode(errors='replace')!r}) on port {port}")
                sys.exit(0)
            last = f"status {r.status}"
    except urllib.error.HTTPError as e:
        last = f"status {e.code}"
    except OSError as e:
        last = repr(e)
    time.sleep(0.1)
sys.exit(f"no 200 from GET / within 10 s (last: {last})")
PY
  echo "--- its output:" >&2
  cat "$log" >&2
  fail "$binary ${args[*]} did not answer GET / on FUNCTIONS_CUSTOMHANDLER_PORT=$port"
fi

kill -TERM "$pid"
for _ in $(seq 100); do
  kill -0 "$pid" 2>/dev/null || break
  sleep 0.1
done
if kill -0 "$pid" 2>/dev/null; then
  cat "$log" >&2
  fail "$binary did not exit within 10 s of SIGTERM"
fi
status=0
wait "$pid" || status=$?
pid=
if [ "$status" -ne 0 ]; then
  echo "--- its output:" >&2
  cat "$log" >&2
  fail "$binary exited with status $status after SIGTERM (expected a graceful exit, 0)"
fi
echo "ok: it stopped on SIGTERM with status 0"
echo "check-package.sh: $zip passed every check"
