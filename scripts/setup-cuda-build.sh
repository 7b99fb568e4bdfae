#!/usr/bin/env bash
# Prepares this machine for `cargo build --release --features cuda` with no download.
#
# Why: burn 0.22's CUDA backend depends on cubecl-cuda, which always links cubecl-llvm, whose build
# script (tracel-llvm-bundler) downloads a prebuilt LLVM 23 from GitHub unless it finds an
# installed bundle, i.e. the sentinel file `.tracel-llvm-installed` in
# `${XDG_DATA_HOME:-~/.local/share}/tracel/tracel-llvm-<version>/`. The bundle is only ever read
# through `<dir>/bin/llvm-config`, so this script installs Debian's LLVM 22 and puts a small
# `llvm-config` wrapper plus the sentinel there. Our `cuda` feature selects cubecl-cuda's CUDA C++
# path (NVRTC at run time), so the linked LLVM code is never executed (docs/gpu.md).
#
# Idempotent; touches nothing outside that directory except installing Debian packages
# (llvm-22-dev libpolly-22-dev libzstd-dev libz3-dev libxml2-dev; as root or through sudo; Debian 12
# has LLVM 22 in bookworm-security). Leaves a real
# downloaded bundle alone. Usage: scripts/setup-cuda-build.sh [--check]
#   --check  only report whether the build is ready (exit 0) or not (exit 1); change nothing.
set -euo pipefail
cd "$(dirname "$0")/.."

LLVM_MAJOR=22
# libpolly: Debian's LLVM links Polly in, so `llvm-config --libs` names libPolly.a/libPollyISL.a.
PACKAGES=(llvm-${LLVM_MAJOR}-dev libpolly-${LLVM_MAJOR}-dev libzstd-dev libz3-dev libxml2-dev)
LLVM_PREFIX=/usr/lib/llvm-${LLVM_MAJOR}
MARKER=.ava-dino-local-llvm
check_only=false
[[ "${1:-}" == "--check" ]] && check_only=true

say() { echo "setup-cuda-build: $*" >&2; }
die() {
    say "$*"
    exit 1
}

# The bundle version the lock file asks for names the directory the bundler looks in.
bundle=$(awk '/^name = "tracel-llvm-bundler"$/ { getline; gsub(/version = |"/, ""); print; exit }' Cargo.lock)
[[ -n "$bundle" ]] || die "Cargo.lock has no tracel-llvm-bundler entry: nothing to prepare (did the burn version change?)"
dir="${XDG_DATA_HOME:-$HOME/.local/share}/tracel/tracel-llvm-${bundle}"

missing=()
for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

ours=false
[[ -f "$dir/$MARKER" ]] && ours=true
# A real bundle (downloaded elsewhere, or copied here) is used as it is. A symlink is the earlier
# hand-made recipe (the directory pointing at Debian's LLVM, which also needed a liblibz3.so
# symlink to link): it is replaced by the wrapper below.
foreign=false
if [[ ! -L "$dir" && -f "$dir/.tracel-llvm-installed" ]] && ! $ours; then
    foreign=true
fi

if $check_only; then
    if $foreign; then
        say "ready: an LLVM bundle is installed at $dir (not made by this script)"
        exit 0
    fi
    ((${#missing[@]} == 0)) || die "not ready: missing packages ${missing[*]} (run scripts/setup-cuda-build.sh)"
    $ours && [[ -f "$dir/.tracel-llvm-installed" ]] || die "not ready: no LLVM at $dir (run scripts/setup-cuda-build.sh)"
    say "ready: Debian LLVM ${LLVM_MAJOR} stands in for tracel-llvm ${bundle} at $dir"
    exit 0
fi

if $foreign; then
    say "an LLVM bundle is already installed at $dir (not made by this script); leaving it alone"
    say "next: cargo build --release --features cuda"
    exit 0
fi

if ((${#missing[@]} > 0)); then
    if [[ $(id -u) -eq 0 ]]; then
        sudo=()
    elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
        sudo=(sudo -n)
    else
        die "missing Debian packages: ${missing[*]}; install them as root: apt-get install ${missing[*]}"
    fi
    say "installing ${missing[*]}"
    "${sudo[@]}" apt-get install -y --no-install-recommends "${missing[@]}" >&2 ||
        die "apt-get install ${missing[*]} failed (Debian 12 has llvm-22-dev in bookworm-security; run apt-get update first)"
fi
[[ -x "$LLVM_PREFIX/bin/llvm-config" ]] || die "$LLVM_PREFIX/bin/llvm-config is missing although llvm-${LLVM_MAJOR}-dev is installed"

if [[ -L "$dir" ]]; then
    say "replacing the symlink $dir -> $(readlink "$dir") with a wrapper directory"
    rm "$dir"
fi
mkdir -p "$dir/bin"
# The bundler turns every library *path* that `llvm-config --system-libs` prints into
# `-l<file stem>` (`/usr/lib/x86_64-linux-gnu/libz3.so` -> `-llibz3`, which no linker finds);
# the official bundle prints names only. The wrapper rewrites paths to names, nothing else.
cat >"$dir/bin/llvm-config.tmp" <<EOF
#!/bin/sh
# Made by ava-dino scripts/setup-cuda-build.sh: Debian's LLVM ${LLVM_MAJOR} in place of tracel-llvm ${bundle}.
out=\$("$LLVM_PREFIX/bin/llvm-config" "\$@") || exit \$?
case " \$* " in
*" --system-libs "*) ;;
*) printf '%s\n' "\$out"; exit 0 ;;
esac
set -f
res=
for tok in \$out; do
    case \$tok in
    /*/lib*.so | /*/lib*.a) name=\${tok##*/lib}; tok=-l\${name%.*} ;;
    esac
    res="\$res\${res:+ }\$tok"
done
printf '%s\n' "\$res"
EOF
chmod +x "$dir/bin/llvm-config.tmp"
# Files are only replaced when they change, and the sentinel only created once: the bundler's
# build script reruns when the sentinel's mtime changes, which rebuilds everything above it.
if cmp -s "$dir/bin/llvm-config.tmp" "$dir/bin/llvm-config"; then
    rm "$dir/bin/llvm-config.tmp"
else
    mv "$dir/bin/llvm-config.tmp" "$dir/bin/llvm-config"
fi
[[ -f "$dir/$MARKER" ]] ||
    echo "Debian LLVM ${LLVM_MAJOR} ($LLVM_PREFIX) for tracel-llvm ${bundle}; made by scripts/setup-cuda-build.sh" >"$dir/$MARKER"

version=$("$dir/bin/llvm-config" --version)
libs=$("$dir/bin/llvm-config" --link-static --system-libs)
[[ "$version" == ${LLVM_MAJOR}.* ]] || die "$dir/bin/llvm-config reports version $version, expected ${LLVM_MAJOR}.x"
[[ "$libs" != */* ]] || die "$dir/bin/llvm-config --system-libs still prints paths: $libs"
# Every static library the link will ask for must exist (a missing one fails late, at link time).
libdir=$("$dir/bin/llvm-config" --libdir)
absent=()
for a in $("$dir/bin/llvm-config" --link-static --libnames); do
    [[ -f "$libdir/$a" ]] || absent+=("$a")
done
((${#absent[@]} == 0)) || die "$libdir lacks ${absent[*]}: which Debian package ships them? (apt-file search ${absent[0]})"
# The sentinel last: it tells the bundler the directory is complete.
[[ -f "$dir/.tracel-llvm-installed" ]] || touch "$dir/.tracel-llvm-installed"
say "ready: LLVM $version at $dir (system libs: $libs)"
say "next: cargo build --release --features cuda"
