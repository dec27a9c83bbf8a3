# Sourced by the HTTP benchmarks (bench-http.sh, bench-round-robin.sh, bench-create.sh,
# bench-embedded.sh, bench-compare.sh); not run alone.
#
# need_tools TOOL...: installs each missing tool from the Debian package of its name.
need_tools() {
  local tool
  for tool in "$@"; do
    if ! command -v "$tool" >/dev/null; then
      echo "installing $tool (Debian package)"
      apt-get update && apt-get install -y "$tool"
    fi
  done
}

# wrk_put_script DIR: writes DIR/value (1 KiB of random bytes) and DIR/put.lua, a wrk
# script that PUTs a 1 KiB value as attribute `payload` of the sessions listed in the
# DRS_IDS environment variable (comma-separated `<id>` or `<id>.<route>`), in turn. Every
# request sends a value of its own (its first 16 bytes are the wrk thread and a counter,
# the rest DIR/value): a PUT of the value a session already holds changes nothing, so
# nothing would be replicated and the benchmark would measure a no-op.
wrk_put_script() {
  local dir=$1
  head -c 1024 /dev/urandom > "$dir/value"
  cat > "$dir/put.lua" <<LUA
local f = io.open("$dir/value", "rb"); local value = f:read("*all"):sub(17); f:close()
local ids = {}
for id in string.gmatch(os.getenv("DRS_IDS"), "[^,]+") do table.insert(ids, id) end
local threads = 0
function setup(thread)
  threads = threads + 1
  thread:set("tid", threads)
end
local i = 0
request = function()
  i = i + 1
  local body = string.format("%04d%012d", tid or 0, i) .. value
  return wrk.format("PUT", "/sessions/" .. ids[(i % #ids) + 1] .. "/attributes/payload", nil, body)
end
LUA
}

# wrk_cart_script DIR: writes DIR/cart.lua, a wrk script for the cart example: each
# connection keeps its own cart (its cookie), adds items with POST /cart/items/<item> and
# empties the cart every 50th request (DELETE /cart), so carts stay small and are made
# anew.
wrk_cart_script() {
  cat > "$1/cart.lua" <<'LUA'
local cookie = nil
local n = 0
request = function()
  n = n + 1
  local headers = {}
  if cookie then headers["Cookie"] = cookie end
  if n % 50 == 0 then return wrk.format("DELETE", "/cart", headers) end
  return wrk.format("POST", "/cart/items/item" .. n % 50, headers)
end
response = function(status, headers, body)
  local c = headers["Set-Cookie"] or headers["set-cookie"]
  if c then cookie = string.match(c, "^[^;]+") end
end
LUA
}

# new_sessions URL COUNT: creates COUNT sessions with POST URL/sessions and prints their
# ids, comma-separated (the form DRS_IDS takes).
new_sessions() {
  local ids="" id
  for _ in $(seq 1 "$2"); do
    id=$(curl -s -X POST "$1/sessions" | sed -n 's/.*"id":"\([0-9a-f]*\)".*/\1/p')
    ids="$ids,$id"
  done
  echo "${ids#,}"
}

# wrk_run NAME URL SCRIPT THREADS CONNECTIONS: one wrk run of SECONDS_PER_RUN seconds with
# the lua SCRIPT (DRS_IDS passed through), printed as "NAME run $r: ..." and its req/s
# appended to $WORK/NAME.rps for `median`.
wrk_run() {
  local out
  out=$(wrk -t"$4" -c"$5" -d"${SECONDS_PER_RUN}s" --latency -s "$3" "$2")
  echo "$1 run $r: $(wrk_field "$out" rps) req/s, p50 $(wrk_field "$out" p50), p99 $(wrk_field "$out" p99), non-2xx $(wrk_field "$out" non2xx)"
  wrk_field "$out" rps >> "$WORK/$1.rps"
}

# wrk_field OUTPUT NAME: from wrk's --latency output, `rps` (requests/s), `p50`, `p99`,
# or `non2xx` (0 when wrk printed none).
wrk_field() {
  case $2 in
    rps) echo "$1" | awk '/Requests\/sec/ {print $2}' ;;
    p50) echo "$1" | awk '$1=="50%" {print $2}' ;;
    p99) echo "$1" | awk '$1=="99%" {print $2}' ;;
    non2xx) local n; n=$(echo "$1" | awk '/Non-2xx/ {print $NF}'); echo "${n:-0}" ;;
  esac
}

# median FILE: the median of the numbers in FILE, one per line.
median() { sort -n "$1" | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

# ratio A B: A / B with two decimals.
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", a/b}'; }
