#!/usr/bin/env bash
# Fault scripts (`make faults`; README, "Fault scripts"). Three faults against
# the real binary on 127.0.0.1, each checked against what the README promises:
#
#   a) kill -9 at a random moment under concurrent signed load, FAULT_ROUNDS
#      rounds: after each, every acknowledged delivery (its seq from the 200)
#      is in the log with its exact body, and `registrar verify` passes; at
#      the end the live projection store equals a rebuild from a copy of the
#      log.
#   b) the database's filesystem full (a small tmpfs; needs root, else
#      skipped): no answer but 200 or 503, a run of 503s once the space is
#      gone, nothing acknowledged lost, ingest recovers once space is freed.
#   c) the log file read-only (chattr +i on the log and its WAL; needs root
#      and a filesystem that supports it, else skipped): ingest answers 503.
#
# Every loop is bounded in count and time, the whole run by FAULT_MAX_SECONDS;
# servers, mounts and attributes are cleaned up on exit.
set -euo pipefail
cd "$(dirname "$0")/.."

# The whole run is bounded: past FAULT_MAX_SECONDS, timeout stops it (the
# trap below still cleans up).
if [ -z "${FAULTS_BOUNDED:-}" ]; then
    FAULTS_BOUNDED=1 exec timeout --kill-after=30 "${FAULT_MAX_SECONDS:-300}" "$0" "$@"
fi

ROUNDS=${FAULT_ROUNDS:-20}
# Deliveries offered per round: more than the server takes before the kill.
PER_ROUND=${FAULT_DELIVERIES:-3000}
CONCURRENCY=${FAULT_CONCURRENCY:-16}
MAX_SECONDS=${FAULT_MAX_SECONDS:-300}
# A 503 run this long means "the disk is full", not a passing hiccup.
FULL_RUN=20

export REGISTRAR_JODO_SECRET=fault-jodo-secret
export REGISTRAR_TOOLZZ_TOKEN=fault-toolzz-token
export RUST_LOG=${RUST_LOG:-warn}

for tool in python3 curl openssl; do
    command -v "$tool" >/dev/null || { echo "faults: $tool is needed" >&2; exit 2; }
done

cargo build --quiet --bin registrar --example fault_load
BIN=$PWD/target/debug/registrar
LOAD=$PWD/target/debug/examples/fault_load

WORK=$(mktemp -d "${TMPDIR:-/tmp}/registrar-faults.XXXXXX")
SERVER=""
MOUNTS=()
IMMUTABLE=()
cleanup() {
    local rc=$?
    set +e
    [ -n "$SERVER" ] && kill -9 "$SERVER" 2>/dev/null && wait "$SERVER" 2>/dev/null
    for f in "${IMMUTABLE[@]}"; do chattr -i "$f" 2>/dev/null; done
    for m in "${MOUNTS[@]}"; do umount -l "$m" 2>/dev/null; done
    rm -rf "$WORK"
    exit "$rc"
}
trap cleanup EXIT
trap 'echo "faults: interrupted or over ${MAX_SECONDS}s; stopping" >&2; exit 1' INT TERM

LOG=""
fail() {
    echo "faults: FAILED: $*" >&2
    [ -n "$LOG" ] && [ -f "$LOG" ] && { echo "--- the server's log, last lines:" >&2; tail -15 "$LOG" >&2; }
    exit 1
}

# free_port, wait_for
. scripts/lib.sh

# start_server DIR: serves DIR/registrar.db on a free port; sets SERVER, BASE.
start_server() {
    local dir=$1 port
    port=$(free_port)
    LOG=$WORK/$(basename "$dir").server.log
    "$BIN" serve --db "$dir/registrar.db" --listen "127.0.0.1:$port" >>"$LOG" 2>&1 &
    SERVER=$!
    BASE="http://127.0.0.1:$port"
    for _ in $(seq 1 400); do
        curl -sf --max-time 1 "$BASE/healthz" >/dev/null 2>&1 && return 0
        kill -0 "$SERVER" 2>/dev/null || fail "the server exited at start"
        sleep 0.05
    done
    fail "the server did not answer within 20 s"
}

kill9_server() {
    kill -9 "$SERVER" 2>/dev/null || true
    wait "$SERVER" 2>/dev/null || true
    SERVER=""
}

term_server() {
    kill -TERM "$SERVER"
    local rc=0
    wait "$SERVER" || rc=$?
    SERVER=""
    [ "$rc" -eq 0 ] || fail "the server exited $rc after SIGTERM"
}

# check_acked DB ACKED: every `seq sha256` line names a row with that body.
check_acked() {
    python3 - "$1" "$2" <<'EOF'
import hashlib, sqlite3, sys
db, acked = sys.argv[1], sys.argv[2]
conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
lines = [l.split() for l in open(acked) if l.strip()]
lost = []
for seq, digest in lines:
    row = conn.execute("SELECT body FROM events WHERE seq = ?", (int(seq),)).fetchone()
    if row is None or hashlib.sha256(bytes(row[0])).hexdigest() != digest:
        lost.append(seq)
if lost:
    sys.exit(f"{len(lost)} of {len(lines)} acknowledged deliveries are not in the log, e.g. seq {lost[:5]}")
print(f"{len(lines)} acknowledged, all in the log")
EOF
}

verify() {
    "$BIN" verify --db "$1/registrar.db" >"$WORK/verify.out" 2>&1 || { cat "$WORK/verify.out" >&2; fail "verify: $1"; }
}

# recover_and_check LABEL WHEN DIR ACKED TAG FIRST LAST: once a fault is
# lifted, posts deliveries TAG FIRST..LAST, 0.1 s apart, until one is
# acknowledged; then kills the server, checks that every acknowledged
# delivery is in the log exactly once, and verifies the log. Sets TRIES (the
# posts recovery took) and CHECKED (check_acked's summary).
recover_and_check() {
    local label=$1 when=$2 dir=$3 acked=$4 tag=$5 first=$6 last=$7 i
    TRIES=""
    for i in $(seq "$first" "$last"); do
        [ "$(post_jodo "$(jodo_body "$tag" "$i")" "$acked")" = 200 ] && { TRIES=$((i - first + 1)); break; }
        sleep 0.1
    done
    [ -n "$TRIES" ] || fail "$label: ingest did not recover within $((last - first + 1)) tries $when"
    kill9_server
    CHECKED=$(check_acked "$dir/registrar.db" "$acked") || fail "$label: $CHECKED"
    verify "$dir"
}

# jodo_body TAG I [PAD]: a student registration, padded with PAD bytes.
jodo_body() {
    local pad=""
    [ "${3:-0}" -gt 0 ] && pad=$(head -c "$3" /dev/zero | tr '\0' x)
    printf '{"event":"masterdata.student.registered","event_id":"%s-%s","version":"1.0","timestamp":%s,"note":"%s","payload":{"jodo_student_id":"%s-%s","student":{"identifier":"id-%s-%s","custom_identifier":null,"collector_code":null,"grade":{"code":"G1","name":"Grade 1"},"academic_year_start":2024,"academic_year_end":2025}}}' \
        "$1" "$2" $((1700000000 + $2)) "$pad" "$1" "$2" "$1" "$2"
}

# post_jodo BODY ACKED: signs and posts BODY; prints the status code; a 200's
# `seq sha256` goes to ACKED.
post_jodo() {
    local body=$1 sig code
    sig=$(printf '%s' "$body" | openssl dgst -sha256 -hmac "$REGISTRAR_JODO_SECRET" -r | cut -d' ' -f1)
    code=$(curl -s -o "$WORK/answer" -w '%{http_code}' --max-time 10 \
        -H "X-Jodo-Signature: $sig" --data-binary "$body" "$BASE/webhooks/jodo" || true)
    if [ "${code:0:1}" = 2 ]; then
        local seq
        seq=$(sed -n 's/.*"seq":\([0-9]*\).*/\1/p' "$WORK/answer")
        [ -n "$seq" ] || fail "a $code without a seq: $(cat "$WORK/answer")"
        echo "$seq $(printf '%s' "$body" | sha256sum | cut -d' ' -f1)" >>"$2"
    fi
    echo "${code:-000}"
}

# ---------------------------------------------------------------- a) kill -9
kill_rounds() {
    local dir=$WORK/kill acked=$WORK/kill/acked
    mkdir -p "$dir"
    : >"$acked"
    echo "faults: kill -9 under load, $ROUNDS rounds"
    for round in $(seq 1 "$ROUNDS"); do
        start_server "$dir"
        "$LOAD" "$BASE" "r$round" "$PER_ROUND" "$CONCURRENCY" "$acked" >"$WORK/load.out" 2>&1 &
        local load=$!
        # A random moment 50-1000 ms into the load.
        sleep "0.$(printf '%03d' $((RANDOM % 950 + 50)))"
        kill9_server
        wait "$load" || fail "the load generator failed: $(cat "$WORK/load.out")"
        local checked
        checked=$(check_acked "$dir/registrar.db" "$acked") || fail "round $round: $checked"
        verify "$dir"
        echo "  round $round: $(cat "$WORK/load.out"); $checked; verify ok"
    done
    # The projections, caught up after the last crash, equal a rebuild.
    start_server "$dir"
    local file="" status
    for _ in $(seq 1 600); do
        status=$(curl -s --max-time 2 "$BASE/v1/admin/status" || true)
        file=$(printf '%s' "$status" | python3 -c '
import json, sys
try:
    s = json.load(sys.stdin)
except ValueError:
    sys.exit()
p = s["projections"]
if p["file"] and p["last_seq"] == s["log"]["seq"] and not p["rebuilding"]:
    print(p["file"])')
        [ -n "$file" ] && break
        sleep 0.1
    done
    [ -n "$file" ] || fail "the projections did not catch up with the log within 60 s"
    term_server
    mkdir -p "$WORK/copy"
    cp "$dir/registrar.db" "$WORK/copy/"
    [ -f "$dir/registrar.db-wal" ] && cp "$dir/registrar.db-wal" "$WORK/copy/"
    "$BIN" rebuild --db "$WORK/copy/registrar.db" --projections "$WORK/copy/rebuilt.db" >"$WORK/rebuild.out" 2>&1 \
        || { cat "$WORK/rebuild.out" >&2; fail "rebuild"; }
    python3 - "$file" "$WORK/copy/rebuilt.db" <<'EOF' || fail "the live projections differ from a rebuild"
import sqlite3, sys
# Bookkeeping of how the store was built, not projected state.
OMIT = {"projection_state": {"generation", "complete"}}
def dump(path):
    conn = sqlite3.connect(path)
    tables = [r[0] for r in conn.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name")]
    out = {}
    for t in tables:
        cols = [r[1] for r in conn.execute(f"PRAGMA table_info({t})") if r[1] not in OMIT.get(t, ())]
        rows = conn.execute(f"SELECT {', '.join(cols)} FROM {t}").fetchall()
        out[t] = (cols, sorted(rows, key=repr))
    return out
live, rebuilt = dump(sys.argv[1]), dump(sys.argv[2])
if live.keys() != rebuilt.keys():
    sys.exit(f"tables differ: {sorted(live.keys() ^ rebuilt.keys())}")
bad = [t for t in live if live[t] != rebuilt[t]]
if bad:
    for t in bad:
        print(f"{t}: {len(live[t][1])} live rows, {len(rebuilt[t][1])} rebuilt", file=sys.stderr)
    sys.exit(1)
print(f"projections equal a rebuild: {len(live)} tables, {sum(len(v[1]) for v in live.values())} rows")
EOF
}

# ------------------------------------------------------------ b) disk full
disk_full() {
    if [ "$(id -u)" -ne 0 ]; then
        echo "faults: disk full: skipped (mounting a tmpfs needs root)"
        return
    fi
    local dir=$WORK/full acked=$WORK/full/acked
    mkdir -p "$dir"
    mount -t tmpfs -o size=16m tmpfs "$dir" || { echo "faults: disk full: skipped (cannot mount a tmpfs)"; return; }
    MOUNTS+=("$dir")
    : >"$acked"
    echo "faults: the database's filesystem full"
    start_server "$dir"
    for i in $(seq 1 10); do
        [ "$(post_jodo "$(jodo_body full "$i")" "$acked")" = 200 ] || fail "disk full: a first delivery was refused"
    done
    # Fill what is left; the server's files keep what they hold.
    dd if=/dev/zero of="$dir/filler" bs=64k >/dev/null 2>&1 || true
    local run=0 ok_full=0 code
    for i in $(seq 11 1000); do
        code=$(post_jodo "$(jodo_body full "$i" 4000)" "$acked")
        case $code in
            200) ok_full=$((ok_full + 1)); run=0 ;;
            503) run=$((run + 1)) ;;
            *) fail "disk full: answered $code: $(cat "$WORK/answer")" ;;
        esac
        [ "$run" -ge "$FULL_RUN" ] && break
    done
    [ "$run" -ge "$FULL_RUN" ] || fail "disk full: no run of $FULL_RUN 503s"
    rm -f "$dir/filler"
    recover_and_check "disk full" "once space was freed" "$dir" "$acked" full 2001 2100
    echo "  $ok_full acknowledged while filling (durable: space SQLite already held), then $FULL_RUN x 503;" \
        "recovered after $TRIES tries; $CHECKED; verify ok"
}

# -------------------------------------------------------- c) read-only log
read_only_log() {
    local dir=$WORK/ro acked=$WORK/ro/acked
    mkdir -p "$dir"
    : >"$acked"
    if [ "$(id -u)" -ne 0 ] || ! { touch "$dir/probe" && chattr +i "$dir/probe" 2>/dev/null; }; then
        echo "faults: read-only log: skipped (chattr +i needs root and a filesystem that supports it)"
        return
    fi
    chattr -i "$dir/probe"
    rm -f "$dir/probe"
    echo "faults: the log file read-only"
    start_server "$dir"
    for i in $(seq 1 5); do
        [ "$(post_jodo "$(jodo_body ro "$i")" "$acked")" = 200 ] || fail "read-only: a first delivery was refused"
    done
    # The log is the database and its WAL (where commits go first). Root
    # ignores permission bits; the immutable attribute binds it, even
    # through descriptors already open.
    IMMUTABLE+=("$dir/registrar.db" "$dir/registrar.db-wal")
    chattr +i "$dir/registrar.db" "$dir/registrar.db-wal"
    local code
    for i in $(seq 6 25); do
        code=$(post_jodo "$(jodo_body ro "$i")" "$acked")
        [ "$code" = 503 ] || fail "read-only log: answered $code: $(cat "$WORK/answer")"
    done
    chattr -i "$dir/registrar.db" "$dir/registrar.db-wal"
    recover_and_check "read-only log" "once writable again" "$dir" "$acked" ro 101 150
    echo "  20 x 503 while read-only; recovered after $TRIES tries; $CHECKED; verify ok"
}

started=$SECONDS
kill_rounds
disk_full
read_only_log
echo "faults: ok ($((SECONDS - started)) s)"
