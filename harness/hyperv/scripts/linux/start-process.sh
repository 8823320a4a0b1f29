# dmh-linux: start-process
# Start a program in its own session (setsid) with its output and error output captured in
# one file and its exit status kept by a wrapper shell; print its key (the directory that
# keeps them), its session id and its output path. Arguments: WORKDIR [NAME=VALUE...] PROGRAM [ARGUMENT...]. Every value arrives as its
# own argument and is only ever expanded in double quotes: nothing is parsed twice.
set -u
workdir=$1
shift
if [ -n "$workdir" ]; then
    mkdir -p -- "$workdir" && cd -- "$workdir" || exit 2
fi
# The program is the first argument that is not NAME=VALUE (the client checks the names).
for arg in "$@"; do
    case $arg in
        *=*) ;;
        *) program=$arg && break ;;
    esac
done
case ${program:-} in
    */*) [ -f "$program" ] && [ -x "$program" ] ;;
    *) command -v -- "$program" >/dev/null 2>&1 ;;
esac || { echo "error=the program '${program:-}' was not found or is not executable"; exit 3; }
dir=$(mktemp -d "${TMPDIR:-/tmp}/dmh-app-XXXXXXXX") || exit 2
: >"$dir/output"
# The wrapper traps TERM/INT/HUP (traps are reset in the program), so a stop reaches the
# program and the wrapper lives on to write its exit status. The program's own pid and the
# guest's uptime at its start are kept for `sample`, which looks for its OOM kill.
setsid sh -c '
    d=$1
    shift
    echo $$ >"$d/pid.new" && mv "$d/pid.new" "$d/pid"
    read -r up _ </proc/uptime && echo "${up%%.*}" >"$d/since"
    trap : TERM INT HUP
    sh -c "echo \$\$ >\"\$1/app\"; shift; exec env -- \"\$@\"" dmh-app "$d" "$@" \
        </dev/null >>"$d/output" 2>&1
    echo $? >"$d/status.new" && mv "$d/status.new" "$d/status"
' dmh-app "$dir" "$@" </dev/null >/dev/null 2>&1 &
tries=0
while [ ! -f "$dir/pid" ] && [ "$tries" -lt 500 ]; do
    sleep 0.01 2>/dev/null || sleep 1
    tries=$((tries + 1))
done
[ -f "$dir/pid" ] || { echo "error=the program did not start within 5 s"; exit 4; }
read -r sid <"$dir/pid"
echo "key=$dir"
echo "pid=$sid"
echo "output=$dir/output"
