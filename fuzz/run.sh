#!/usr/bin/env bash
# Fuzzes every target (or the ones named) for a bounded time, two at a time (the machine has
# two cores), seeding each corpus from the checked-in fixtures and plans.
#
#   fuzz/run.sh [SECONDS] [TARGET...]      SECONDS per target, default 600
#
# Needs cargo-fuzz (`cargo install cargo-fuzz`); runs on the stable toolchain without a
# sanitizer. A crashing input lands in fuzz/artifacts/<target>/: fix the fault, then copy the
# input into fuzz/regressions/<target>/ so that `cargo test` replays it.
set -euo pipefail
cd "$(dirname "$0")"
secs=${1:-600}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(token certificate plan policy)
fixtures=../fixtures

seed() { # seed <target> <name> <bytes from stdin>
    mkdir -p "corpus/$1"
    cat > "corpus/$1/seed-$2"
}

# Token seeds: <CA byte><node/service>\n<token>. CA bytes: 0 RSA, 1 P-256, 2 Ed25519.
ca_byte=0
for fleet in openssl-rsa generated-p256 generated-ed25519; do
    for token in "$fixtures/$fleet"/nodes/*/*/token.jwt; do
        [ -f "$token" ] || continue
        id=${token%/token.jwt}; id=${id#"$fixtures/$fleet/nodes/"}
        { printf "\\x0$ca_byte%s\n" "$id"; cat "$token"; } | seed token "$fleet-${id//\//-}"
    done
    # Certificate seeds: <CA byte><cert.pem>[\0<key.pem>]; CA byte 3 loads the pair as a CA.
    for cert in "$fixtures/$fleet"/nodes/*/*/cert.pem; do
        [ -f "$cert" ] || continue
        dir=${cert%/cert.pem}; id=${dir#"$fixtures/$fleet/nodes/"}
        { printf "\\x0$ca_byte"; cat "$cert"
          if [ -f "$dir/key.pem" ]; then printf '\0'; cat "$dir/key.pem"; fi
        } | seed certificate "$fleet-${id//\//-}"
    done
    { printf '\x03'; cat "$fixtures/$fleet/ca/ca.crt"; printf '\0'; cat "$fixtures/$fleet/ca/ca.key"; } \
        | seed certificate "$fleet-ca"
    ca_byte=$((ca_byte + 1))
done
for plan in ../plans/*; do
    seed plan "$(basename "$plan")" < "$plan"
done
for policy in "$fixtures"/hostile/*/root/rekey.toml; do
    [ -f "$policy" ] || continue
    name=${policy#"$fixtures/"}
    seed policy "${name//\//-}" < "$policy"
done
printf 'version = 1\nvalidity_days = 90\nstalled_below_percent = 25\nmin_age_hours = 24\nkeys = "reuse"\n\n[services.mocctl]\nself_renews_cert = false\nself_rotates_token = true\n' \
    | seed policy full

cargo fuzz build -O -s none
mkdir -p logs
run() { # run <target>
    local t=$1
    mkdir -p "regressions/$t"
    cargo fuzz run -O -s none "$t" "corpus/$t" "regressions/$t" -- \
        -max_total_time="$secs" -max_len=65536 -timeout=10 -rss_limit_mb=2048 \
        -print_final_stats=1 > "logs/$t.log" 2>&1 \
        && echo "$t: no fault in ${secs}s ($(grep -o 'stat::number_of_executed_units: *[0-9]*' "logs/$t.log" | grep -o '[0-9]*$') runs)" \
        || echo "$t: FAULT, see fuzz/logs/$t.log and fuzz/artifacts/$t/"
}
for ((i = 0; i < ${#targets[@]}; i += 2)); do
    run "${targets[i]}" &
    if [ $((i + 1)) -lt ${#targets[@]} ]; then run "${targets[i + 1]}" & fi
    wait
done
