#!/usr/bin/env bash
# Builds the deployment package: dist/keyflip.zip, the flat layout the Azure Functions host runs.
#
#   bash scripts/package.sh            (from any directory; needs cargo, rustup, musl-gcc, python3)
#
# The binary is built for x86_64-unknown-linux-musl, statically linked, so it does not depend on
# the glibc of the Functions Linux image it lands on. Every dependency builds for musl: the only
# C code in the release tree is aws-lc-sys (the crypto under rustls), which compiles with
# musl-gcc from Debian's musl-tools (ring, in Cargo.lock, is not part of this build).
#
# The zip's root is the app root: host.json, the binary under the name host.json's
# customHandler.description.defaultExecutablePath gives (mode 0755), and <Name>/function.json for
# every functions/<Name>/ holding a function.json. Nothing else (no local.settings.json).
# Entries are written in sorted order with a fixed timestamp, so the same inputs give the same zip.
# scripts/check-package.sh checks the result.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

target=x86_64-unknown-linux-musl
binary=keyflip
dist="$root/dist"
pkg="$dist/pkg"
zip="$dist/keyflip.zip"

fail() {
  echo "package.sh: $*" >&2
  exit 1
}

command -v cargo >/dev/null 2>&1 || fail "cargo not found: install Rust with rustup (https://rustup.rs)"
command -v python3 >/dev/null 2>&1 || fail "python3 not found (it reads host.json and writes the zip): install it, e.g. apt-get install python3"

# The musl target's standard library.
if command -v rustup >/dev/null 2>&1; then
  if ! rustup target list --installed | grep -qx "$target"; then
    echo "installing the Rust target $target" >&2
    rustup target add "$target"
  fi
else
  echo "rustup not found: assuming the toolchain already has the $target standard library" >&2
fi

# aws-lc-sys compiles C for the target. For musl the cc crate runs x86_64-linux-musl-gcc (seen in
# aws-lc-sys's build output here; musl-tools installs it, musl-gcc is its alias) unless
# CC_x86_64_unknown_linux_musl or TARGET_CC names another compiler. Without it the build stops
# deep in aws-lc-sys's build-script output (cc-rs: failed to find tool "x86_64-linux-musl-gcc").
if [ -z "${CC_x86_64_unknown_linux_musl:-}${TARGET_CC:-}" ] \
  && ! command -v x86_64-linux-musl-gcc >/dev/null 2>&1 && ! command -v musl-gcc >/dev/null 2>&1; then
  fail "musl-gcc not found: aws-lc-sys (the TLS crypto) compiles C code for $target with it.
Install it with: apt-get install musl-tools (Debian/Ubuntu), or set CC_x86_64_unknown_linux_musl
to a musl C compiler."
fi

# The name the Functions host starts, read from host.json; the package ships the binary under it.
executable=$(python3 - host.json <<'PY'
import json, sys
try:
    with open(sys.argv[1], encoding="utf-8") as f:
        host = json.load(f)
    print(host["customHandler"]["description"]["defaultExecutablePath"])
except (OSError, ValueError, KeyError, TypeError) as e:
    sys.exit(f"cannot read customHandler.description.defaultExecutablePath from host.json: {e!r}")
PY
) || fail "host.json must set customHandler.description.defaultExecutablePath"
if [ "$executable" != "$binary" ]; then
  fail "host.json's customHandler.description.defaultExecutablePath is '$executable', but the binary is '$binary': set it to \"$binary\""
fi

# The function folders: every functions/<Name>/ holding a function.json.
functions=()
for json in functions/*/function.json; do
  [ -f "$json" ] || continue
  name=$(basename "$(dirname "$json")")
  # The folder name is the function's name and the path the host posts to.
  if ! [[ "$name" =~ ^[A-Za-z][A-Za-z0-9_-]*$ ]]; then
    fail "functions/$name: a function's folder name must start with a letter and hold only letters, digits, '-' and '_'"
  fi
  if [ "$name" = "$binary" ]; then
    fail "functions/$name: a function folder cannot be named like the binary ($binary)"
  fi
  python3 -c 'import json, sys; json.load(open(sys.argv[1], encoding="utf-8"))' "$json" 2>/dev/null \
    || fail "$json is not valid JSON"
  functions+=("$name")
done
[ "${#functions[@]}" -gt 0 ] || fail "no functions/<Name>/function.json found: nothing for the host to run"

echo "building $binary for $target (release, without the demo)" >&2
cargo build --release --locked --no-default-features --target "$target" --bin "$binary"

# Where cargo put it: honours CARGO_TARGET_DIR and any build.target-dir configuration.
target_dir=$(cargo metadata --format-version 1 --no-deps --locked \
  | python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
built="$target_dir/$target/release/$binary"
[ -f "$built" ] || fail "the build finished but $built does not exist"

rm -rf "$pkg"
mkdir -p "$pkg"
cp host.json "$pkg/host.json"
install -m 0755 "$built" "$pkg/$binary"
for name in "${functions[@]}"; do
  mkdir -p "$pkg/$name"
  cp "functions/$name/function.json" "$pkg/$name/function.json"
done

# The zip: file entries only, sorted, with Unix modes (0755 for the binary, 0644 for the JSON)
# and a fixed timestamp. Written beside the target and moved into place.
python3 - "$pkg" "$zip.tmp" "$binary" <<'PY'
import os, sys, zipfile
pkg, out, binary = sys.argv[1], sys.argv[2], sys.argv[3]
names = []
for dirpath, _dirs, files in os.walk(pkg):
    for f in files:
        names.append(os.path.relpath(os.path.join(dirpath, f), pkg).replace(os.sep, "/"))
with zipfile.ZipFile(out, "w") as z:
    for name in sorted(names):
        info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
        info.create_system = 3  # Unix: unzip and the host read the mode from external_attr
        info.external_attr = ((0o100755 if name == binary else 0o100644) << 16)
        with open(os.path.join(pkg, name), "rb") as f:
            z.writestr(info, f.read(), compress_type=zipfile.ZIP_DEFLATED, compresslevel=9)
PY
mv "$zip.tmp" "$zip"

mib() { awk -v b="$1" 'BEGIN { printf "%d bytes (%.1f MiB)", b, b / 1048576 }'; }
echo "packaged functions: ${functions[*]}"
echo "$binary: $(mib "$(wc -c <"$pkg/$binary")")"
echo "$zip: $(mib "$(wc -c <"$zip")")"
