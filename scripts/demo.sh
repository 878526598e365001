#!/usr/bin/env bash
# The quick-start demo: a sample volume with realistic mixed content (text,
# binaries, zeros, random) is backed up through the fleet (coordinator,
# reader and compressors in one process on an embedded NATS server),
# restored, and verified against the source. Prints throughput and ratio.
set -euo pipefail
dir="${1:-.demo}"
size="${2:-512MiB}"
bin="$(cd "$(dirname "$0")/.." && pwd)/bin"
mkdir -p "$dir"
cd "$dir"
rm -rf repo restored.img
# The repository's password, for this demo only: in a file only you can
# read, named by BULK_PASSWORD_FILE (secrets never go in flags).
[ -s password ] || { (umask 077 && head -c 18 /dev/urandom | base64 > password); }
export BULK_PASSWORD_FILE="$PWD/password"

echo "== 1. sample volume ($size): text, binary, zeros, random"
[ -f volume.img ] && [ "$(cat volume.size 2>/dev/null)" = "$size" ] || {
  "$bin/mkvolume" -size "$size" -seed 1 -o volume.img
  echo "$size" > volume.size
}
echo
echo "== 2. an encrypted repository ./repo, and a backup through the fleet into it"
"$bin/bulkctl" init -r repo
"$bin/bulkctl" backup volume.img -r repo
echo
echo "== 3. restore the snapshot to restored.img"
"$bin/bulkctl" restore latest restored.img -r repo
echo
echo "== 4. verify: read every chunk back and compare with the source"
"$bin/bulkctl" verify latest -r repo --compare volume.img
cmp volume.img restored.img && echo "restored.img is byte-identical to volume.img"
echo
echo "== snapshots"
"$bin/bulkctl" snapshots -r repo
echo
echo "demo files are in $dir (make clean removes them)"
