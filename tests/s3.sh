#!/usr/bin/env bash
# Provides an S3-compatible server for the object-storage tests: the Versity S3 Gateway
# (versitygw, Apache-2.0), which serves a directory over the S3 protocol and checks AWS
# Signature V4 against its root credentials. Prints the binary's path.
exec bash "$(dirname "$0")/go-tool.sh" versitygw github.com/versity/versitygw/cmd/versitygw "${VERSITYGW_VERSION:-v1.8.0}"
