# dmh-linux: facts
# What Dynamic Memory needs in a Linux guest (reference §5.1, §5.2, §1.8): the hv_balloon
# driver and its hot_add parameter, how hot-added memory is onlined (auto_online_blocks,
# memhp_default_state or a udev rule), the KVP daemon, the kernel and architecture.
echo "kernel=$(uname -r)"
echo "machine=$(uname -m)"
if [ -d /sys/module/hv_balloon ]; then echo "hv_balloon=1"; else echo "hv_balloon=0"; fi
hot_add=
[ -r /sys/module/hv_balloon/parameters/hot_add ] && read -r hot_add </sys/module/hv_balloon/parameters/hot_add
echo "hot_add=$hot_add"
auto_online=
[ -r /sys/devices/system/memory/auto_online_blocks ] && read -r auto_online </sys/devices/system/memory/auto_online_blocks
echo "auto_online=$auto_online"
cmdline=
[ -r /proc/cmdline ] && read -r cmdline </proc/cmdline
set -f  # the command line's words are not patterns
for word in $cmdline; do
    case $word in memhp_default_state=*) echo "memhp_default_state=${word#*=}" ;; esac
done
set +f
# A udev rule that onlines memory: it names the memory subsystem (RHEL's file starts with
# SUBSYSTEM!="memory", GOTO=...) and sets ATTR{state}="online..." on some line.
udev=0
for rules in /etc/udev/rules.d/*.rules /lib/udev/rules.d/*.rules /usr/lib/udev/rules.d/*.rules; do
    [ -r "$rules" ] || continue
    memory=0
    online=0
    while read -r line; do
        case $line in
            \#*) continue ;;
        esac
        case $line in *'SUBSYSTEM=="memory"'* | *'SUBSYSTEM!="memory"'*) memory=1 ;; esac
        case $line in *'ATTR{state}="online'*) online=1 ;; esac
    done <"$rules"
    if [ "$memory" = 1 ] && [ "$online" = 1 ]; then
        udev=1
        echo "udev_rule=$rules"
        break
    fi
done
echo "udev_online=$udev"
kvp=0
for comm in /proc/[0-9]*/comm; do
    { read -r name <"$comm"; } 2>/dev/null || continue
    case $name in hv_kvp_daemon | hypervkvpd | hv-kvp-daemon) kvp=1 && break ;; esac
done
echo "kvp_daemon=$kvp"
