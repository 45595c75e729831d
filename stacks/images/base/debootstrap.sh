#!/usr/bin/env bash
# Make a Debian bookworm base image without any image registry: debootstrap + docker import.
# Usage: stacks/images/base/debootstrap.sh [TAG]   (default mlflowkit/base:bookworm)
# Use it with BASE_IMAGE=<TAG> (mlflowkit build reads that variable).
set -euo pipefail
tag=${1:-mlflowkit/base:bookworm}
if docker image inspect "$tag" >/dev/null 2>&1; then
  echo "base: $tag already exists" >&2; exit 0
fi
command -v debootstrap >/dev/null 2>&1 || {
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null; }
# The mirror this machine's apt uses (deb822 "URIs:" or one-line "deb" entries), unless DEBIAN_MIRROR is set.
mirror=${DEBIAN_MIRROR:-$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.sources 2>/dev/null \
  | sed -nE 's#^(URIs:|deb)[[:space:]]+(https?://[^[:space:]]+/debian)/?([[:space:]].*)?$#\2#p' | head -n1 || true)}
mirror=${mirror:-http://deb.debian.org/debian}
rootfs=$(mktemp -d /tmp/mlflowkit-rootfs.XXXXXX)
trap 'rm -rf "$rootfs"' EXIT
echo "base: debootstrap bookworm from $mirror" >&2
debootstrap --variant=minbase --include=python3,python3-venv,python3-pip,ca-certificates,curl \
  bookworm "$rootfs" "$mirror" >/tmp/mlflowkit-debootstrap.log 2>&1 \
  || { tail -n 20 /tmp/mlflowkit-debootstrap.log >&2; exit 1; }
rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
tar --numeric-owner -C "$rootfs" -c . | docker import -c 'ENV LANG=C.UTF-8' - "$tag" >/dev/null
echo "base: $tag ready" >&2
