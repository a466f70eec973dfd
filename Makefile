# Quick start: `make demo` (build and run the samples end to end), `make test` (every test).
.PHONY: setup build demo test bench clean

setup:
	scripts/setup

build: setup
	swift build

demo: build
	scripts/demo

test: setup
	scripts/test

bench: setup
	swift build -c release
	Benchmarks/run

clean:
	rm -rf .build .lathe-demo
