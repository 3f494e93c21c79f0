#!/usr/bin/env bash
# The audit console in a real browser (README, "The audit console"): starts
# registrar on a fresh seeded database with read and admin tokens, starts
# chromedriver, and runs the ignored WebDriver test in tests/e2e.rs against
# them. Screenshots of every page land in target/e2e/; the README's four
# are copied to docs/screenshots/.
#
# Needs Debian's chromium and chromium-driver (and curl, python3): installed
# with apt-get when /usr/bin/chromium or /usr/bin/chromedriver is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

CHROMIUM=/usr/bin/chromium
CHROMEDRIVER=/usr/bin/chromedriver
# curl waits for the server, python3 finds free ports.
if [ ! -x "$CHROMIUM" ] || [ ! -x "$CHROMEDRIVER" ] || ! command -v curl >/dev/null ||
    ! command -v python3 >/dev/null; then
    echo "e2e: installing chromium, chromium-driver, curl and python3 with apt-get"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver curl python3 >/dev/null
fi

cargo build --bin registrar --example console_seed
cargo test --test e2e --no-run

work=$(mktemp -d)
server_pid=""
driver_pid=""
cleanup() {
    # Only the two processes this script started, by their ids.
    [ -n "$driver_pid" ] && kill "$driver_pid" 2>/dev/null || true
    [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null || true
    wait 2>/dev/null || true
    rm -rf "$work" 2>/dev/null || true
}
trap cleanup EXIT

# free_port, wait_for
. scripts/lib.sh

port=$(free_port)
export REGISTRAR_JODO_SECRET="e2e-jodo-secret"
export REGISTRAR_TOOLZZ_TOKEN="e2e-toolzz-token"
export REGISTRAR_READ_TOKEN="e2e-read-token"
export REGISTRAR_ADMIN_TOKEN="e2e-admin-token"
target/debug/registrar serve --db "$work/registrar.db" --listen "127.0.0.1:$port" \
    >"$work/server.log" 2>&1 &
server_pid=$!
wait_for "http://127.0.0.1:$port/healthz" e2e
target/debug/examples/console_seed "http://127.0.0.1:$port"

driver_port=$(free_port)
"$CHROMEDRIVER" --port="$driver_port" >"$work/chromedriver.log" 2>&1 &
driver_pid=$!
wait_for "http://127.0.0.1:$driver_port/status" e2e

rm -rf target/e2e
mkdir -p target/e2e "$work/profile"
status=0
E2E_BASE="http://127.0.0.1:$port" \
E2E_WEBDRIVER="http://127.0.0.1:$driver_port" \
E2E_CHROMIUM="$CHROMIUM" \
E2E_PROFILE="$work/profile" \
E2E_OUT="$PWD/target/e2e" \
E2E_READ_TOKEN="$REGISTRAR_READ_TOKEN" \
E2E_ADMIN_TOKEN="$REGISTRAR_ADMIN_TOKEN" \
    cargo test --test e2e -- --ignored --nocapture || status=$?

# The server logged no personal data and no token, checked whether the test
# passed or not (a failing run is when an error path is most likely to log a
# value). The seeded students (examples/console_seed.rs): Jodo ids,
# identifiers, custom identifiers, registration numbers, contacts. Matched
# as whole words, so `1001` is not found inside another number.
leaked=0
for secret in \
    stu_1001 stu_1002 stu_evil \
    1001 1002 "<script>alert(1)</script>" \
    ADM-2023-1001 ADM-2023-1002 '"><img src=x onerror=alert(2)>' \
    REG-1001 REG-1002 \
    parent.1001@example.com parent.1002@example.com x@example.com \
    9876500001 9876500002 9876500003 \
    "$REGISTRAR_READ_TOKEN" "$REGISTRAR_ADMIN_TOKEN" "not-the-token"; do
    if grep -qwF -- "$secret" "$work/server.log"; then
        echo "e2e: the server log holds $secret" >&2
        leaked=1
    fi
done

if [ "$status" -ne 0 ]; then
    echo "e2e: failed; the server's log:" >&2
    tail -n 50 "$work/server.log" >&2 || true
    exit "$status"
fi
if [ "$leaked" -ne 0 ]; then
    exit 1
fi

mkdir -p docs/screenshots
for page in overview student payment day-book; do
    cp "target/e2e/$page.png" "docs/screenshots/$page.png"
done
echo "e2e: screenshots in target/e2e/, the README's four copied to docs/screenshots/"
