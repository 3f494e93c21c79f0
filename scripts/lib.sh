# Shell helpers the test scripts share (sourced by e2e.sh, faults.sh and
# schemathesis.sh): a free port on loopback, and waiting for a URL.

# A port free on 127.0.0.1 now.
free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# wait_for URL NAME: waits (at most 30 s) until URL answers; NAME prefixes
# the complaint when it never does.
wait_for() {
    for _ in $(seq 1 300); do
        curl -s -o /dev/null "$1" && return 0
        sleep 0.1
    done
    echo "$2: $1 did not answer" >&2
    return 1
}
