#!/usr/bin/env bash
# Make a Debian bookworm base image without any image registry: debootstrap + docker import.
# Usage: stacks/images/base/debootstrap.sh [TAG]   (default mlflowkit/base:bookworm)
# Use it with BASE_IMAGE=<TAG> (mlflowkit build reads that variable).
set -euo pipefail
tag=${1:-mlflowkit/base:bookworm}
# What this script puts in the image, as a number: raise it when that changes, and a base made by an older recipe is
# made again (then `mlflowkit build` rebuilds every image on it).
recipe=2
made=$(docker image inspect --format '{{index .Config.Labels "org.mlflowkit.base-recipe"}}' "$tag" 2>/dev/null || true)
if [ "$made" = "$recipe" ]; then
  echo "base: $tag already exists" >&2; exit 0
elif docker image inspect "$tag" >/dev/null 2>&1; then
  echo "base: $tag was made by an older recipe (${made:-1}); making it again (recipe $recipe)" >&2
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
# python3-venv brings pip's wheel, which every image's `python3 -m venv` installs from; no system pip is needed.
debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates,curl \
  bookworm "$rootfs" "$mirror" >/tmp/mlflowkit-debootstrap.log 2>&1 \
  || { tail -n 20 /tmp/mlflowkit-debootstrap.log >&2; exit 1; }
# Lean, like Debian's own slim images: no documentation but the copyright files, no man pages, no translations —
# removed here and never installed by the images' apt-get (dpkg's path-exclude). ~50 MB of every image.
printf '%s\n' 'path-exclude=/usr/share/doc/*' 'path-include=/usr/share/doc/*/copyright' 'path-exclude=/usr/share/man/*' \
  'path-exclude=/usr/share/info/*' 'path-exclude=/usr/share/locale/*/LC_MESSAGES/*.mo' \
  > "$rootfs"/etc/dpkg/dpkg.cfg.d/mlflowkit-lean
find "$rootfs"/usr/share/doc -mindepth 1 ! -name copyright ! -type d -delete
find "$rootfs"/usr/share/doc -mindepth 1 -type d -empty -delete
rm -rf "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/* "$rootfs"/usr/share/locale/*/LC_MESSAGES/*.mo
rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
tar --numeric-owner -C "$rootfs" -c . \
  | docker import -c 'ENV LANG=C.UTF-8' -c "LABEL org.mlflowkit.base-recipe=$recipe" - "$tag" >/dev/null
echo "base: $tag ready" >&2
