#!/usr/bin/env bash
# Prints the guest bundle's version: the same hash as recipeHash() in
# src/guest/bundle.ts (sha256 over "NAME\0CONTENT\0" of each recipe file, in order).
set -euo pipefail
cd "$(dirname "$0")"
for name in build.sh init shutdown hyper-exec.c hyper-log.c hyper-connect.c hyper-relay.c hyper-reseed.c hyper-resume.c hyper-tools.c; do
  printf '%s\0' "$name"
  cat "$name"
  printf '\0'
done | sha256sum | cut -c1-16
