#!/usr/bin/env bash
# Run every fuzz target for N seconds each (default 60) on the stable toolchain, without a
# sanitizer, starting from corpora seeded with the wire snapshots. Prints executions per
# target; exits non-zero on the first crash (its input is left in fuzz/artifacts/).
#
#   fuzz/run-all.sh [SECONDS]
set -euo pipefail
cd "$(dirname "$0")"
seconds="${1:-60}"
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked

# Seed corpora: every request body in the snapshots (whole envelopes) for the envelope and
# callback targets; amounts and times from the same fixtures.
mkdir -p corpus/envelope corpus/callback corpus/amount corpus/time corpus/config corpus/apply_sequence corpus/api corpus/wal corpus/console corpus/masking corpus/announce
n=0
for snap in ../engine/tests/snapshots/wire__*.snap; do
  body="$(sed -n '/^{"appId"/p' "$snap")"
  [ -n "$body" ] || continue
  n=$((n + 1))
  printf '%s' "$body" > "corpus/envelope/snap$n"
  printf '\x02%s' "$body" > "corpus/callback/snap$n"
done
for a in 0 0.01 100.00 12.5 999999999999999.99; do printf '%s' "$a" > "corpus/amount/$a"; done
printf '20261126120000123' > corpus/time/ts
printf '2026-11-26 12:00:00' > corpus/time/wire
printf '2026-11-6 12:00:60' > corpus/time/leap          # found once: a leap second
printf '2026-11-27 10:10:10.0' > corpus/time/java       # Java's Timestamp.toString()
printf '{"app_id":"APP001","key":"k","base_url":"http://x","callback_base_url":"http://y","poll":{"grace_ms":99999}}' > corpus/config/min

# API requests: a route selector byte, then a body or a query string.
printf '\x02{"transNo":"T1","amount":"40.00","outType":"OUT","payeeName":"Li","payeeAccount":"6222020200112233445","bankName":"ICBC","bankCnaps":"102100000030"}' > corpus/api/payout
printf '\x01{"transNo":"T1","amount":"1.00","prodCatalog":"01"}' > corpus/api/deposit
printf '\x05status=needs-attention&transNo=T1&limit=2' > corpus/api/orders

# Console requests: a route selector byte (high bit: with the session's CSRF token), then a
# query string or a form; message bodies to mask, from the snapshots.
printf '\x81listing=NEEDS_ATTENTION&direction=out&from=2026-11-01&to=2026-11-30' > corpus/console/orders
printf '\x86status=FAILURE&note=checked&confirm=APP001-x&version=3' > corpus/console/resolve
printf '\x87step=decide&o=APP001-x:3&o=APP001-y:1&status=SUCCESS&note=n&confirm=2' > corpus/console/several
printf '\x8afrom=6222020200112233445&note=x' > corpus/console/resend
cp corpus/envelope/snap1 corpus/masking/ 2>/dev/null || true
printf '{"appId":"APP001","data":"{\\"bankAccNum\\":\\"6222020200112233445\\"}","sign":"x"}' > corpus/masking/nested
printf 'ed1764417600000' > corpus/announce/both

# A log header, and a log written before format 5 (one group, then an empty record).
printf 'protopay-wal/2\n\0\1\0\0\0\0\0\0\0' > corpus/wal/header
printf '\x0a\0\0\0\0\0\0\0\1\1\0\0\0k\0\0\0\0' > corpus/wal/legacy

for target in envelope callback amount time config apply_sequence api wal console masking announce; do
  log="$(mktemp)"
  if ! cargo fuzz run -s none "$target" "corpus/$target" -- -max_total_time="$seconds" -print_final_stats=1 >"$log" 2>&1; then
    tail -40 "$log"
    echo "FUZZ FAILURE in $target"
    exit 1
  fi
  runs="$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo '?')"
  echo "fuzz $target: $runs executions in ${seconds}s, no findings"
  rm -f "$log"
done
