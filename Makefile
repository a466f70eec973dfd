# Quick start: `make demo` (build and run the samples end to end), `make test` (every test).
# Shipping: `make install [PREFIX=/usr/local]`, `make uninstall`, `make dist` (release tarball).
.PHONY: setup build-deps build demo test bench clean release install uninstall dist

PREFIX ?= /usr/local

setup:
	scripts/setup

# What compiling needs, nothing more (release, install and dist on a fresh machine).
build-deps:
	scripts/setup --build

build: setup
	swift build

demo: build
	scripts/demo

test: setup
	scripts/test

bench: setup
	swift build -c release
	Benchmarks/run

release: build-deps
	scripts/package release

install: build-deps
	scripts/package install "$(DESTDIR)$(PREFIX)"

uninstall:
	scripts/package uninstall "$(DESTDIR)$(PREFIX)"

dist: build-deps
	scripts/package dist

clean:
	rm -rf .build .lathe-demo dist
