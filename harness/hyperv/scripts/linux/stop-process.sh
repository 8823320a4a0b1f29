# dmh-linux: stop-process
# Stop a started program and everything it started: TERM to its session's tree, KILL to
# what is left after GRACE seconds; print its exit status (an app killed this way gets
# 128+signal). Arguments: KEY (the directory start-process made) [GRACE].
dir=$1
grace=${2:-5}
# dmh-include: tree
sid=
[ -r "$dir/pid" ] && read -r sid <"$dir/pid"
[ -n "$sid" ] || { echo "error=no started program has the key '$dir'"; exit 3; }
tree=$(dmh_tree "$sid" all)
[ -r "/proc/$sid/stat" ] && kill -TERM -- "-$sid" 2>/dev/null
kill -TERM $tree 2>/dev/null
kill -CONT $tree 2>/dev/null
waited=0
while [ "$waited" -lt "$((grace * 20))" ]; do
    alive=
    for pid in $tree; do
        [ -r "/proc/$pid/stat" ] || continue
        { read -r line <"/proc/$pid/stat"; } 2>/dev/null
        set -- ${line##*) }
        [ "${1:-Z}" = Z ] || alive="$alive $pid"
    done
    [ -z "$alive" ] && break
    sleep 0.05 2>/dev/null || sleep 1
    waited=$((waited + 1))
done
if [ -n "$alive" ]; then
    kill -KILL $alive 2>/dev/null
    [ -f "$dir/status" ] || { echo 137 >"$dir/status.new" && mv "$dir/status.new" "$dir/status"; }
fi
# The wrapper writes the status once the program has gone (it traps TERM).
waited=0
while [ ! -f "$dir/status" ] && [ -r "/proc/$sid/stat" ] && [ "$waited" -lt 40 ]; do
    sleep 0.05 2>/dev/null || sleep 1
    waited=$((waited + 1))
done
status=
[ -r "$dir/status" ] && read -r status <"$dir/status"
echo "exit=$status"
