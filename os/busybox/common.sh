# Shared helpers of the busybox test-guest OS definition (sourced by every script).
#
# Why: the scripts are Ganeti OS API scripts (see ganeti-os-interface(7)); they must run
# under any POSIX sh with the environment Herd (or Ganeti) gives them and nothing else.
# The disk format written here is read by tools/guest/init and herd/lab/guest_records.py.

BLOCK=4096
HEADER_MAGIC="HERD-DISK v1"
# Header area (16 blocks) plus the first window of record slots the guest scans (4096);
# create zeroes this much so a reinstalled disk shows no stale records.
CLEAR_BLOCKS=4112

log() { echo "${0##*/}: $*" >&2; }
die() { log "error: $*"; exit 1; }

case "${DEBUG_LEVEL:-0}" in 0|"") ;; *) set -x ;; esac

usage_check() {
    case "${1:-}" in
        -h|--help)
            echo "usage: ${0##*/}   (Ganeti OS API script; input comes from the environment)" >&2
            exit 0 ;;
    esac
}

# need_var NAME: fail clearly when a variable the OS API promises is missing.
need_var() {
    eval "_v=\${$1:-}"
    [ -n "$_v" ] || die "environment variable $1 is not set (is this run by Herd/Ganeti?)"
}

# disk0: the path of the instance's first disk, refusing instances without disks.
disk0() {
    [ "${DISK_COUNT:-0}" -gt 0 ] 2>/dev/null ||
        die "instance ${INSTANCE_NAME:-?} has no disks (DISK_COUNT=${DISK_COUNT:-unset}); this OS needs one"
    need_var DISK_0_PATH
    [ -e "$DISK_0_PATH" ] || die "disk 0 path $DISK_0_PATH does not exist"
    echo "$DISK_0_PATH"
}

# check_banner VALUE: the banner goes into one header line and one console line.
check_banner() {
    _b=$1
    [ "${#_b}" -le 200 ] || { log "banner is longer than 200 characters"; return 1; }
    case "$_b" in
        *[![:print:]]*) log "banner must be printable text on one line"; return 1 ;;
    esac
    return 0
}

# blocks_of PATH: size of a file or block device in 4 KiB blocks.
blocks_of() {
    if [ -b "$1" ]; then
        _bytes=$(blockdev --getsize64 "$1") || die "cannot read the size of $1"
    else
        _bytes=$(wc -c <"$1") || die "cannot read the size of $1"
    fi
    echo $((_bytes / BLOCK))
}

# write_header PATH TEXT: write TEXT (the header lines) as the header block, zero padded and
# synced. TEXT goes out in one printf (< PIPE_BUF bytes, so one atomic pipe write) because dd
# reads a pipe only once per block: several writes could leave lines out.
write_header() {
    [ "${#2}" -lt $BLOCK ] || die "header for $1 is longer than one block"
    printf '%s\n' "$2" | dd of="$1" bs=$BLOCK count=1 conv=sync,notrunc,fsync 2>/dev/null ||
        die "cannot write the header to $1"
}

# header_text INSTANCE CREATED OS [EXTRA_LINE...]: the header lines, without the final newline.
header_text() {
    _t="$HEADER_MAGIC instance=$1 os=$3 created=$2"
    shift 3
    for _line in "$@"; do
        [ -n "$_line" ] && _t="$_t
$_line"
    done
    printf '%s' "$_t"
}
