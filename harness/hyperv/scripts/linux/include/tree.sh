# dmh_tree SID [all]: the processes of one started app: its wrapper SID (a session leader,
# made with setsid) and every descendant, found through /proc/PID/task/TID/children so only
# the tree's own files are read. With `all`, also every process still in the session whose
# parent has gone (a scan of all of /proc: thorough, for stopping; too slow per sample).
# /proc/PID/stat is "pid (comm) state ppid pgrp session ...": comm may hold spaces and
# parentheses, so the fields are read after the last ") ".
dmh_tree() {
    _sid=$1
    _found=" $_sid "
    _todo=$_sid
    if [ "${2:-}" = all ]; then
        for _stat in /proc/[0-9]*/stat; do
            { read -r _line <"$_stat"; } 2>/dev/null || continue
            _pid=${_line%% *}
            # shellcheck disable=SC2086
            set -- ${_line##*) }
            if [ "$4" = "$_sid" ] && [ "$_pid" != "$_sid" ]; then
                _found="$_found$_pid "
                _todo="$_todo $_pid"
            fi
        done
    fi
    while [ -n "$_todo" ]; do
        _next=
        for _p in $_todo; do
            for _file in /proc/"$_p"/task/*/children; do
                _kids=
                { read -r _kids <"$_file"; } 2>/dev/null
                for _kid in $_kids; do
                    case $_found in
                        *" $_kid "*) ;;
                        *) _found="$_found$_kid " && _next="$_next $_kid" ;;
                    esac
                done
            done
        done
        _todo=$_next
    done
    echo $_found
}
