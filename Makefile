# Quick start: `make demo` (build and run the samples end to end), `make test` (every test).
# Shipping: `make install [PREFIX=/usr/local]`, `make uninstall`, `make dist` (release tarball).
.PHONY: setup build demo test bench clean release install uninstall dist

PREFIX ?= /usr/local

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

release:
	scripts/package release

install:
	scripts/package install "$(DESTDIR)$(PREFIX)"

uninstall:
	scripts/package uninstall "$(DESTDIR)$(PREFIX)"

dist:
	scripts/package dist

clean:
	rm -rf .build .lathe-demo dist
