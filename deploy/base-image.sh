#!/usr/bin/env bash
# Build a pristine Debian image from Debian's own packages, without any registry of images, and
# print its name. The image is what a stock Debian system is: debootstrap's minbase variant plus
# the packages named, nothing else (no pip configuration, Debian's EXTERNALLY-MANAGED marker kept).
#
#   deploy/base-image.sh [PACKAGE...]     default packages: python3 python3-venv python3-pip
#
# It is cached: the tag carries a hash of the suite, the mirror, the packages and this script, so
# a second call with the same inputs only prints the name (about a second); a change of any
# input builds a new image. Needs root, podman and debootstrap (apt-get install podman runc
# debootstrap). Environment: ARROYO_DEBIAN_SUITE (bookworm), ARROYO_DEBIAN_MIRROR
# (http://deb.debian.org/debian), CONTAINERS_CONF (deploy/containers.conf beside this script).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
export CONTAINERS_CONF=${CONTAINERS_CONF:-$here/containers.conf}
suite=${ARROYO_DEBIAN_SUITE:-bookworm}
mirror=${ARROYO_DEBIAN_MIRROR:-http://deb.debian.org/debian}
(($#)) || set -- python3 python3-venv python3-pip
packages=$(printf '%s\n' "$@" | sort -u | paste -sd, -)

key=$( { echo "$suite $mirror $packages"; cat "$0"; } | sha256sum | cut -c1-12)
image=localhost/arroyo-debian:$suite-$key

# one build at a time on a machine: a second caller waits, then finds the image made
exec 9>"/var/tmp/arroyo-base-image.lock"
flock 9
if podman image exists "$image"; then
  echo "$image"
  exit 0
fi

root=$(mktemp -d /var/tmp/arroyo-rootfs.XXXXXX)
trap 'rm -rf "$root"' EXIT
echo "base-image: debootstrap $suite ($packages) from $mirror" >&2
debootstrap --variant=minbase --include="$packages" "$suite" "$root" "$mirror" \
  > "$root.log" 2>&1 || { tail -n 20 "$root.log" >&2; rm -f "$root.log"; exit 1; }
rm -f "$root.log"
# as Debian's own images: no downloaded packages or package lists kept in the image
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
tar -C "$root" --numeric-owner -c . \
  | podman import --quiet --change 'CMD ["/bin/bash"]' \
      --message "debootstrap --variant=minbase --include=$packages $suite" - "$image" >/dev/null
echo "$image"
