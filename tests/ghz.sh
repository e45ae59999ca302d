#!/usr/bin/env bash
# Provides ghz, the gRPC load tester written in Go (a real gRPC client, the one with which the
# delayed-ACK defect of the inference server was found). Prints the binary's path.
exec bash "$(dirname "$0")/go-tool.sh" ghz github.com/bojand/ghz/cmd/ghz "${GHZ_VERSION:-v0.121.0}"
