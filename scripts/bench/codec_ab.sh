#!/usr/bin/env bash
# Issue 12's "decode no slower than before", measured in one process: the codec at an
# old commit (renamed isoswitch-codec-old) and the working tree's codec linked into one
# release binary (scripts/bench/codec_ab/main.rs), timed in alternating short rounds so
# that other load on the machine falls on both versions alike.
#
#   scripts/bench/codec_ab.sh [OLD_COMMIT] [ROUNDS]     e.g. scripts/bench/codec_ab.sh 47eae7d 200
set -euo pipefail
old=${1:-47eae7d}
rounds=${2:-200}
root=$(git rev-parse --show-toplevel)
work=${CODEC_AB_DIR:-/tmp/isoswitch-codec-ab}
mkdir -p "$work"
rm -rf "$work/old" "$work/new" "$work/ab"
git -C "$root" archive "$old" crates/codec | tar -x -C "$work" --transform 's|^crates/codec|old|'
cp -r "$root/crates/codec" "$work/new"
sed -i 's/^name = "isoswitch-codec"$/name = "isoswitch-codec-old"/' "$work/old/Cargo.toml"
mkdir -p "$work/ab/src"
cp "$root/scripts/bench/codec_ab/main.rs" "$work/ab/src/main.rs"
cp "$root/tests/vectors/samples/purchase-0200.json" "$work/ab/src/"
# The workspace's package fields and the codec's dependencies, as the root declares them.
{
  echo '[workspace]'
  echo 'members = ["old", "new", "ab"]'
  echo 'resolver = "2"'
  sed -n '/^\[workspace.package\]/,/^$/p' "$root/Cargo.toml"
  echo '[workspace.dependencies]'
  sed -n '/^\[workspace.dependencies\]/,/^\[/p' "$root/Cargo.toml" \
    | grep -E '^(bytes|nom|chrono|serde|serde_json|toml|rust_decimal|thiserror|proptest) '
  echo
  echo '[profile.release]'
  echo 'debug = 1'
} > "$work/Cargo.toml"
cat > "$work/ab/Cargo.toml" <<TOML
[package]
name = "codec-ab"
version = "0.0.0"
edition = "2021"
publish = false

[dependencies]
isoswitch-codec = { path = "../new" }
isoswitch-codec-old = { path = "../old" }
bytes.workspace = true
serde_json.workspace = true
TOML
cp "$root/Cargo.lock" "$work/Cargo.lock" 2>/dev/null || true
cd "$work"
echo "old: $old ($(git -C "$root" rev-parse --short "$old")), new: working tree of $(git -C "$root" rev-parse --short HEAD)"
cargo build --release -q -p codec-ab
"$work/target/release/codec-ab" "$rounds"
