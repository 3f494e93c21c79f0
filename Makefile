# registrar: the two commands a new user needs are `make run` and `make test`.
.PHONY: run build test lint fmt bench bench-quick faults fuzz clean

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
