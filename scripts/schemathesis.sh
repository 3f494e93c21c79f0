#!/usr/bin/env bash
# Schemathesis against the OpenAPI document (README, "The OpenAPI document"):
# starts registrar on a fresh database seeded through its own webhooks, then
# runs schemathesis (from PyPI, in a virtual environment under target/) with
# --checks all over every read, report and admin operation, each run with
# the token its operations take. Any failure fails the script, except the
# one answer the document declares and schemathesis's not_a_server_error
# would still count: 503 with Retry-After for a min_seq the projections have
# not reached, and 400 for a tree size past the newest checkpoint
# (scripts/schemathesis_hooks.py).
#
# Needs python3 (with venv) and curl: installed with apt-get when missing.
# SCHEMATHESIS_EXAMPLES (default 50) bounds the cases per operation; the seed
# is fixed so a run is repeatable (SCHEMATHESIS_ARGS="--seed N" for another,
# or e.g. "--report ndjson" for every request and answer).
set -euo pipefail
cd "$(dirname "$0")/.."

SCHEMATHESIS_VERSION=4.32.5
EXAMPLES="${SCHEMATHESIS_EXAMPLES:-50}"

if ! command -v curl >/dev/null || ! python3 -c 'import venv, ensurepip' 2>/dev/null; then
    echo "schemathesis: installing curl, python3 and python3-venv with apt-get"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq curl python3 python3-venv >/dev/null
fi

venv=target/schemathesis-venv
if [ "$("$venv/bin/st" --version 2>/dev/null | awk '{print $NF}')" != "$SCHEMATHESIS_VERSION" ]; then
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION"
fi

cargo build --bin registrar --example console_seed

work=$(mktemp -d)
server_pid=""
cleanup() {
    # Only the process this script started, by its id.
    [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null || true
    wait 2>/dev/null || true
    rm -rf "$work" 2>/dev/null || true
}
trap cleanup EXIT

# free_port, wait_for
. scripts/lib.sh

port=$(free_port)
base="http://127.0.0.1:$port"
export REGISTRAR_JODO_SECRET="st-jodo-secret"
export REGISTRAR_TOOLZZ_TOKEN="st-toolzz-token"
export REGISTRAR_READ_TOKEN="st-read-token"
export REGISTRAR_ADMIN_TOKEN="st-admin-token"
# A short wait for min_seq: schemathesis asks for seqs far past the head,
# each answered 503 once the wait is over.
# Signed checkpoints every second, so the log's proofs and bundles answer.
target/debug/registrar key generate --out "$work/signing.key" --name registrar/schemathesis >/dev/null
REGISTRAR_SIGNING_KEY_FILE="$work/signing.key" \
    target/debug/registrar serve --db "$work/registrar.db" --listen "127.0.0.1:$port" \
    --min-seq-wait-ms 50 --log-origin registrar/schemathesis --checkpoint-interval-secs 1 \
    >"$work/server.log" 2>&1 &
server_pid=$!
wait_for "$base/healthz" schemathesis

# Jodo students and payments (with revisions and a cancellation), and a
# Toolzz learner with an enrollment, so lookups find something.
target/debug/examples/console_seed "$base"
curl -sf -o /dev/null -H 'Content-Type: application/json' \
    --data-binary @scripts/schemathesis_toolzz.json "$base/webhooks/toolzz/$REGISTRAR_TOOLZZ_TOKEN"

# A checkpoint over the seeded log (made within the interval).
head=$(curl -sf -H "Authorization: Bearer $REGISTRAR_READ_TOKEN" "$base/v1/audit/head" | python3 -c 'import json, sys; print(json.load(sys.stdin)["seq"])')
for _ in $(seq 1 100); do
    size=$(curl -sf -H "Authorization: Bearer $REGISTRAR_READ_TOKEN" "$base/v1/log/checkpoint" | sed -n 2p || true)
    [ "$size" = "$head" ] && break
    sleep 0.1
done

st() {
    "$venv/bin/st" --config-file scripts/schemathesis.toml run "$base/openapi.json" \
        --checks all --max-examples "$EXAMPLES" --seed 1 ${SCHEMATHESIS_ARGS:-} "$@"
}

status=0
echo "schemathesis: read and report operations, with the read token"
st \
    --include-path-regex '^/(v1/(?!admin/)|healthz|readyz|metrics|openapi\.json)' \
    -H "Authorization: Bearer $REGISTRAR_READ_TOKEN" || status=$?
echo "schemathesis: admin operations, with the admin token"
st \
    --include-path-regex '^/v1/admin/' \
    -H "Authorization: Bearer $REGISTRAR_ADMIN_TOKEN" || status=$?

if [ "$status" -ne 0 ]; then
    echo "schemathesis: failed; the server's log follows" >&2
    tail -n 50 "$work/server.log" >&2
fi
exit "$status"
