# poold — the two commands a newcomer needs are `make run` and `make test`.
SWIFT ?= swift
# Debian packages the build and the tests need; installed by `make deps` when absent.
DEB_PACKAGES := ca-certificates git
BENCH_DIR := Benchmarks

.PHONY: test deps build bench clean

deps:
	@scripts/ensure-packages.sh $(DEB_PACKAGES)

build: deps
	$(SWIFT) build --build-tests

# One debug build, then every test against it.
test: build
	$(SWIFT) test --skip-build

# Pool benchmarks (ordo-one/benchmark) in their own package, so `make test` never builds them:
# our pool against PostgresNIO's ConnectionPool on the same workload, in the same run.
bench: deps
	cd $(BENCH_DIR) && $(SWIFT) package --allow-writing-to-package-directory benchmark --format markdown --no-progress

clean:
	rm -rf .build .build-* $(BENCH_DIR)/.build
