# dmh-linux: write-file
# Write standard input to PATH (its directory made first). Arguments: PATH.
path=$1
case $path in
    */*) mkdir -p -- "${path%/*}" || exit 2 ;;
esac
cat >"$path" || exit 2
echo "length=$(wc -c <"$path")"
