#!/usr/bin/env bash
# Regenerates plugins/proto from rotator.proto with protoc and the pinned Go
# plugins, and records the checksums that plugins/proto's tests check, so a
# .proto edited without regenerating, or generated code edited by hand,
# fails the suite. Installs what is missing: Debian's protobuf-compiler,
# protoc-gen-go and protoc-gen-go-grpc at the versions below (into
# bin/tools).
#
#   scripts/proto.sh          regenerate
#   scripts/proto.sh --check  regenerate into a temporary directory and
#                             compare with the checked-in code
set -euo pipefail
cd "$(dirname "$0")/.."

PROTOC_GEN_GO_VERSION=v1.36.12
PROTOC_GEN_GO_GRPC_VERSION=v1.6.0
DIR=plugins/proto
TOOLS="$PWD/bin/tools"

if ! command -v protoc >/dev/null; then
	echo "installing protoc (protobuf-compiler)" >&2
	sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
	$sudo apt-get install -y protobuf-compiler >/dev/null
fi
mkdir -p "$TOOLS"
if [ "$("$TOOLS/protoc-gen-go" --version 2>/dev/null || true)" != "protoc-gen-go $PROTOC_GEN_GO_VERSION" ]; then
	GOBIN="$TOOLS" go install "google.golang.org/protobuf/cmd/protoc-gen-go@$PROTOC_GEN_GO_VERSION"
fi
if [ "$("$TOOLS/protoc-gen-go-grpc" --version 2>/dev/null || true)" != "protoc-gen-go-grpc ${PROTOC_GEN_GO_GRPC_VERSION#v}" ]; then
	GOBIN="$TOOLS" go install "google.golang.org/grpc/cmd/protoc-gen-go-grpc@$PROTOC_GEN_GO_GRPC_VERSION"
fi

gen() { # gen OUTDIR
	PATH="$TOOLS:$PATH" protoc -I "$DIR" \
		--go_out="$1" --go_opt=paths=source_relative \
		--go-grpc_out="$1" --go-grpc_opt=paths=source_relative \
		"$DIR/rotator.proto"
}

if [ "${1:-}" = "--check" ]; then
	tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
	gen "$tmp"
	for f in rotator.pb.go rotator_grpc.pb.go; do
		diff -u "$DIR/$f" "$tmp/$f" || { echo "$DIR/$f is stale: run make proto" >&2; exit 1; }
	done
	echo "plugins/proto is up to date"
	exit 0
fi

gen "$DIR"
(cd "$DIR" && sha256sum rotator.proto rotator.pb.go rotator_grpc.pb.go > generated.sha256)
echo "regenerated $DIR"
