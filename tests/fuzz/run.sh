#!/bin/bash
# Bounded fuzzing of every libFuzzer target, for CI (scripts/test.sh --sanitize):
#   tests/fuzz/run.sh BUILD_DIR [SECONDS_PER_TARGET (default 20)]
# Each target starts from its checked-in corpus (copied: the tree is not
# changed) for SECONDS of one process; a crash, leak or time-out fails the
# run, and the input that caused it is kept in BUILD_DIR/fuzz-artifacts.
set -uo pipefail
src=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
build=${1:?usage: tests/fuzz/run.sh BUILD_DIR [SECONDS]}
seconds=${2:-20}
targets=(kmip_ttlv kmip_msg keys_config luks2_load luks1_parse volume_token)
artifacts=$build/fuzz-artifacts
mkdir -p "$artifacts"
work=$(mktemp -d "${TMPDIR:-/tmp}/nbdcrypt-fuzz.XXXXXX")
trap 'rm -rf "$work"' EXIT
status=0
for t in "${targets[@]}"; do
  bin=$build/tests/fuzz/fuzz_$t
  if [ ! -x "$bin" ]; then
    echo "fuzz: $bin not built" >&2
    status=1
    continue
  fi
  dict=()
  case $t in
    kmip_*) dict=(-dict="$src/kmip.dict") ;;
    luks2_load) dict=(-dict="$src/luks2.dict") ;;
  esac
  mkdir -p "$work/$t"
  cp "$src/corpus/$t"/* "$work/$t/"
  if "$bin" "${dict[@]}" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
    -print_final_stats=1 -artifact_prefix="$artifacts/$t-" "$work/$t" \
    >"$work/$t.log" 2>&1; then
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$work/$t.log")
    echo "fuzz: $t: ${runs:-?} runs in ${seconds} s, no crash"
  else
    echo "fuzz: $t FAILED; the end of its log:" >&2
    tail -40 "$work/$t.log" >&2
    status=1
  fi
done
exit $status
