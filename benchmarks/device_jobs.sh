# Jobs longer than one device call (sourced by device_env.sh). The device kills what a call leaves
# running when it returns, except a process in a session of its own, which runs on while the machine
# is held; the machine goes back after ~30 s without a call. So: start the job with `detach NAME CMD...`
# in one call, then make every next call, at once, `await NAME SECONDS` (at most the call's limit less
# a margin): it waits for the job up to SECONDS, prints its log's tail and returns the job's exit status,
# or 124 while it still runs. The job's log and exit status are under /tmp/jobs/NAME.
detach() {
    local name=$1
    shift
    rm -rf "/tmp/jobs/$name" && mkdir -p "/tmp/jobs/$name"
    setsid bash -c '"${@:2}" >"$1/log" 2>&1; echo $? >"$1/rc"' _ "/tmp/jobs/$name" "$@" </dev/null >/dev/null 2>&1 &
}
await() {
    local dir=/tmp/jobs/$1 deadline=$((SECONDS + $2))
    while [ ! -f "$dir/rc" ] && [ "$SECONDS" -lt "$deadline" ]; do sleep 2; done
    tail -n 20 "$dir/log"
    if [ -f "$dir/rc" ]; then return "$(cat "$dir/rc")"; fi
    echo "[await] $1 still runs after $2 s" && return 124
}
