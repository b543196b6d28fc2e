#!/usr/bin/env bash
# Captures a scripted 1920x1080 xterm workload losslessly (x11grab at 5 fps, libx264rgb qp 0) for
# re-encoding experiments (crates/portcullis-recorder/examples/reencode.rs). Writes OUT_DIR/source.mkv
# and OUT_DIR/marks.txt (seconds from the capture's start: "after-page" and "after-typing" moments).
#
# usage: benches/recording-capture.sh OUT_DIR [DISPLAY_NUMBER]
set -euo pipefail
out=${1:?out dir}
num=${2:-77}
mkdir -p "$out"
Xvfb ":$num" -screen 0 1920x1080x24 -nolisten tcp >"$out/xvfb.log" 2>&1 &
xvfb=$!
trap 'kill $xvfb ${ff:-} ${xt:-} 2>/dev/null || true' EXIT
export DISPLAY=":$num"
for _ in $(seq 1 50); do xdpyinfo >/dev/null 2>&1 && break; sleep 0.1; done
xsetroot -solid '#204060'
xterm -geometry 100x30+40+40 -fa Monospace -fs 12 -bg white -fg black -T portcullis-xterm -e bash --norc &
xt=$!
sleep 1.5
id=$(xdotool search --name portcullis-xterm | head -1)
xdotool windowmove "$id" 20 20 windowsize "$id" 1760 960 mousemove 60 60
sleep 0.5
xdotool type --delay 70 'clear'; xdotool key Return
sleep 0.5
ffmpeg -v error -y -f x11grab -framerate 5 -video_size 1920x1080 -i ":$num" -c:v libx264rgb -qp 0 -preset ultrafast "$out/source.mkv" &
ff=$!
t0=$(date +%s.%N)
mark() { echo "$1 $(echo "$(date +%s.%N) - $t0" | bc)" >>"$out/marks.txt"; }
: >"$out/marks.txt"
ty() { xdotool type --delay 70 "$1"; xdotool key Return; }
for round in 1 2; do
  ty 'ls -la /usr/bin | head -45'; sleep 2
  ty 'ps aux | head -30'; sleep 2
  xdotool type --delay 80 '# rotate the backups before the maintenance window tonight, then check the mounts'
  sleep 1.5; mark "typing$round"; sleep 0.5; xdotool key ctrl+u; sleep 0.5
  xterm -geometry 80x24+860+320 -bg '#ffffe0' -fa Monospace -fs 11 -T bench-second -hold -e sh -c 'ls -la /etc | head -40; uptime' &
  second=$!; sleep 1.5
  sid=$(xdotool search --name bench-second | head -1 || true)
  if [ -n "$sid" ]; then x=860; y=320; for i in $(seq 0 29); do d=1; [ "$i" -ge 15 ] && d=-1; x=$((x+14*d)); y=$((y+6*d)); xdotool windowmove "$sid" $x $y; sleep 0.1; done; fi
  sleep 1; kill $second 2>/dev/null || true; sleep 0.5
  ty 'seq 1 20000'; sleep 2.5
  ty 'ls -la /usr/lib/x86_64-linux-gnu /usr/share/doc | less'; sleep 1
  for i in 1 2 3 4 5 6; do xdotool key Next; sleep 0.6; done
  sleep 1.5; mark "pager$round"; sleep 0.3
  for i in $(seq 1 15); do xdotool key j; sleep 0.12; done
  xdotool key q; sleep 0.5
  ty 'clear; head -45 /proc/cpuinfo'; sleep 2; mark "page$round"; sleep 0.5
  for i in 1 2 3 4; do xdotool key shift+Prior; sleep 0.3; done
  for i in 1 2 3 4; do xdotool key shift+Next; sleep 0.3; done
  ty 'df -h; free -m; uname -a'; sleep 2
done
ty 'clear'; sleep 30; mark idle
kill -INT $ff; wait $ff || true
