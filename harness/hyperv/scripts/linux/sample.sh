# dmh-linux: sample
# One sampling tick in one round trip (POSIX sh and coreutils only): the guest's memory as
# its programs read it (/proc/meminfo; hv_balloon's debugfs when readable, reference §5.1)
# and, given a started app (the KEY start-process printed: its directory), its tree's
# memory, whether it runs, its exit status and its output from a byte offset.
# Arguments: [KEY OFFSET]. Prints key=value lines, then "--" and the output's new bytes.
#
# Order: the exit state first (output read after it is complete once the app has exited),
# then how far the output goes, then the guest's memory: a line the app printed from what
# it read in /proc/meminfo is never newer than the memory this sample reports.
dir=${1:-}
offset=${2:-0}
out="$dir/output"
sid=0
[ -n "$dir" ] && [ -r "$dir/pid" ] && read -r sid <"$dir/pid"
# dmh-include: tree
size=0
if [ "$sid" -gt 0 ] 2>/dev/null; then
    status=
    [ -r "$dir/status" ] && read -r status <"$dir/status"
    running=0
    if [ -z "$status" ] && [ -r "/proc/$sid/stat" ]; then
        { read -r line <"/proc/$sid/stat"; } 2>/dev/null
        set -- ${line##*) }
        [ "${1:-Z}" != Z ] && [ "${1:-X}" != X ] && running=1
    fi
    rss=0
    anon=0
    count=0
    for pid in $(dmh_tree "$sid"); do
        [ -r "/proc/$pid/status" ] || continue
        count=$((count + 1))
        while read -r key value _unit; do
            case $key in
                VmRSS:) rss=$((rss + value)) ;;
                RssAnon:) anon=$((anon + value)) ;;
            esac
        done <"/proc/$pid/status" 2>/dev/null
    done
    [ -f "$out" ] && size=$(wc -c <"$out")
    size=$((size + 0))
    echo "running=$running"
    echo "exit=$status"
    # Killed by a signal: did the kernel's OOM killer do it? Both the global and the memory
    # cgroup OOM killer log "Killed process PID (NAME)"; a pid logged before the app started
    # was another process. Without read access to the kernel log (kernel.dmesg_restrict for
    # users other than root) nothing is said and the exit status stands alone.
    if [ "${status:-0}" -gt 128 ] 2>/dev/null && [ -r "$dir/app" ] && [ -r "$dir/since" ]; then
        read -r app <"$dir/app"
        read -r since <"$dir/since"
        dmesg 2>/dev/null | awk -v pid="$app" -v since="$since" '
            {
                at = $0
                sub(/^\[ */, "", at)
                marker = "Killed process " pid " ("
                i = index($0, marker)
                if (at + 0 >= since && i) {
                    name = substr($0, i + length(marker))
                    sub(/\).*/, "", name)
                }
            }
            END { if (name != "") print "oom=" name }'
    fi
    echo "rss_kb=$rss"
    echo "anon_kb=$anon"
    echo "processes=$count"
    echo "offset=$offset"
    echo "size=$size"
fi
while read -r key value _unit; do
    case $key in
        MemTotal: | MemFree: | MemAvailable: | Committed_AS: | CommitLimit:) echo "${key%:}=$value" ;;
    esac
done </proc/meminfo
if [ -r /sys/kernel/debug/hv-balloon ]; then
    while IFS=: read -r key value; do
        set -- $key
        [ $# -eq 1 ] && echo "balloon.$1=$(echo $value)"
    done </sys/kernel/debug/hv-balloon 2>/dev/null
fi
echo "--"
# At most 1 MiB of output per tick: a chatty app's backlog comes over the next ticks (the
# client's reader holds a bounded buffer), and its exit is reported once all is read.
if [ "$size" -gt "$offset" ]; then
    count=$((size - offset))
    [ "$count" -gt 1048576 ] && count=1048576
    tail -c +"$((offset + 1))" "$out" | head -c "$count"
fi
