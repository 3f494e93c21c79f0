# registrar: the two commands a new user needs are `make run` and `make test`.
.PHONY: run build test lint fmt e2e openapi-check bench bench-quick faults fuzz clean

# Builds, then serves on 127.0.0.1:8080 with the database at ./data/registrar.db.
run:
	cargo run --release -- serve

build:
	cargo build --release

# Lint, then every test (unit, integration, property). Not --all-targets:
# that would also run the benchmark binary (see `bench`).
test: lint
	cargo test --lib --bins --tests

lint:
	cargo fmt --check
	cargo clippy --all-targets -- -D warnings

fmt:
	cargo fmt

# The audit console in headless Chromium (README, The audit console): installs
# chromium and chromium-driver with apt-get when missing, saves a screenshot
# of every page under target/e2e/ and the README's four in docs/screenshots/.
e2e:
	scripts/e2e.sh

# Schemathesis against GET /openapi.json on a seeded server, every read,
# report and admin operation with its token, --checks all (README, The
# OpenAPI document). Installs schemathesis from PyPI in target/.
openapi-check:
	scripts/schemathesis.sh

# Fault scripts (README, Fault scripts): kill -9 under load, a full disk, a
# read-only log. Some parts need root (CI runs as root); they say when skipped.
faults:
	scripts/faults.sh

# Fuzzing (README, Fuzzing): each target for FUZZ_SECONDS (default 60).
FUZZ_SECONDS ?= 60
fuzz:
	FUZZ_SECONDS=$(FUZZ_SECONDS) scripts/fuzz.sh

# The benchmark: figures beside floors measured in the same run (see README).
bench:
	cargo bench --bench registrar_bench -- $(ARGS)

bench-quick:
	cargo bench --bench registrar_bench -- --quick $(ARGS)

clean:
	cargo clean
