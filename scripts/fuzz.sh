#!/usr/bin/env bash
# Fuzzes keyflip's parsers of untrusted input for a bounded time: the fuzzing step of CI.
#
#   scripts/fuzz.sh [seconds-per-target]        (default 30)
#
# Installs cargo-fuzz if it is missing, builds every target in fuzz/ once, runs each for the
# given number of seconds starting from its committed seeds, and exits non-zero if any target
# crashed (a panic, a failed invariant, a hang past 10 s on one input, or memory past 2 GiB),
# naming each crashing input. The seeds (fuzz/seeds/<target>/) are copied into a scratch corpus
# (fuzz/corpus/<target>/, git-ignored, kept between local runs) so that what the fuzzer finds
# never pollutes them; crashing inputs land in fuzz/artifacts/<target>/ (git-ignored).
#
# Toolchain: the project's machines have only stable Rust (no nightly can be fetched).
# cargo-fuzz's default build passes -Zsanitizer=address, which stable rustc refuses; with
# `--sanitizer none` every flag it passes is a stable -C flag (sancov coverage, debug assertions,
# overflow checks), so the targets build and fuzz on stable as they are (checked with rustc
# 1.95 and cargo-fuzz 0.13.2). keyflip forbids unsafe code, so AddressSanitizer would mostly
# watch its dependencies; panics, failed asserts, overflows, stack overflows, hangs and memory
# blow-ups are caught without it. For a run with AddressSanitizer, set
# KEYFLIP_FUZZ_SANITIZER=address: the script then sets RUSTC_BOOTSTRAP=1, which makes stable
# rustc accept -Z flags, unless the toolchain is already nightly.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${1:-30}
if ! [[ $seconds =~ ^[1-9][0-9]*$ ]]; then
  echo "usage: $0 [seconds-per-target]   (a whole number of seconds, default 30)" >&2
  exit 2
fi

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "cargo-fuzz not found: installing it from crates.io" >&2
  cargo install cargo-fuzz --locked
fi

sanitizer=${KEYFLIP_FUZZ_SANITIZER:-none}
if [ "$sanitizer" != none ] && ! rustc --version | grep -q nightly; then
  export RUSTC_BOOTSTRAP=1
fi
# The same flags for the build and every run, or `cargo fuzz run` would rebuild.
build_flags=(--sanitizer "$sanitizer")
cargo fuzz --version

mapfile -t targets < <(cargo fuzz list)
if [ "${#targets[@]}" -eq 0 ]; then
  echo "cargo fuzz list found no fuzz targets in fuzz/" >&2
  exit 1
fi

started=$(date +%s)
cargo fuzz build "${build_flags[@]}"
echo "built ${#targets[@]} fuzz targets (${targets[*]}) in $(($(date +%s) - started)) s"

# The end of a failed run's log, from the panic (or libFuzzer's own report) on: the message,
# the crashing input and how to reproduce it.
report_of() {
  local report
  report=$(awk '/panicked at|ERROR: libFuzzer|ERROR: AddressSanitizer/ { on = 1 } on' "$1" | head -n 60) || true
  if [ -n "$report" ]; then
    printf '%s\n' "$report"
  else
    tail -n 40 "$1"
  fi
}

stamp=$(mktemp)
trap 'rm -f "$stamp"' EXIT
crashes=()
failed=()
for target in "${targets[@]}"; do
  corpus=$PWD/fuzz/corpus/$target
  artifacts=$PWD/fuzz/artifacts/$target
  log=$PWD/fuzz/logs/$target.log
  mkdir -p "$corpus" "$artifacts" "$(dirname "$log")"
  cp fuzz/seeds/"$target"/* "$corpus"/
  touch "$stamp"
  echo "fuzzing $target for $seconds s from $(find "$corpus" -type f | wc -l) inputs (log: ${log#"$PWD"/})"
  status=0
  # libFuzzer prints a line per new input: thousands a minute, so they go to the log only.
  # A panic's location and message tell enough; the backtraces of the target and of cargo-fuzz
  # itself would bury them.
  RUST_BACKTRACE=0 cargo fuzz run "${build_flags[@]}" "$target" "$corpus" -- \
    -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
    -artifact_prefix="$artifacts/" -print_final_stats=1 >"$log" 2>&1 || status=$?
  mapfile -t found < <(find "$artifacts" -type f -newer "$stamp")
  if [ "$status" -ne 0 ] || [ "${#found[@]}" -gt 0 ]; then
    failed+=("$target")
    crashes+=("${found[@]}")
    echo "$target FAILED (exit status $status); from the log:"
    report_of "$log"
  else
    echo "$target: no crash; $(grep -E '^stat::(number_of_executed_units|new_units_added|peak_rss_mb)' "$log" | tr -s ' ' | paste -sd ' ' -)"
  fi
done

echo "fuzzed ${#targets[@]} targets for $seconds s each; $(($(date +%s) - started)) s in all"
if [ "${#failed[@]}" -gt 0 ]; then
  echo "FUZZING FAILED in: ${failed[*]}" >&2
  for input in "${crashes[@]}"; do
    echo "crashing input: ${input#"$PWD"/}" >&2
  done
  echo "reproduce one with: cargo fuzz run ${build_flags[*]} <target> <crashing input>" >&2
  exit 1
fi
echo "no crash"
