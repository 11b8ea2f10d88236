"""``python3 .ci/still_running.py [--after SECONDS] [PID]``: print the processes under PID
(every process without it) as a tree: pid, state, seconds running, command line, read from
/proc; kernel threads are left out. ``--after``: wait that long first. CI (.ci/run) starts it
beside the suite, so that a suite that runs past its limit names what hung. No dependency
beyond Python."""

import argparse
import os
import sys
import time


def processes() -> dict[int, dict]:
    ticks, uptime = os.sysconf("SC_CLK_TCK"), float(open("/proc/uptime").read().split()[0])
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = open(f"/proc/{entry}/stat").read()
            cmdline = open(f"/proc/{entry}/cmdline", "rb").read().replace(b"\0", b" ").decode(
                errors="replace").strip()
        except OSError:
            continue
        if not cmdline:  # a kernel thread
            continue
        rest = stat[stat.rindex(")") + 2:].split()  # the fields after "(name)"
        found[int(entry)] = {"ppid": int(rest[1]), "state": rest[0],
                             "seconds": int(uptime - int(rest[19]) / ticks),
                             "command": cmdline}
    return found


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--after", type=float, default=0)
    parser.add_argument("pid", type=int, nargs="?")
    args = parser.parse_args()
    if args.after:
        time.sleep(args.after)
        print(f"CI: the suite has run {args.after:.0f} s; what is running under it:")
    procs = processes()
    children: dict[int, list[int]] = {}
    for pid, p in procs.items():
        children.setdefault(p["ppid"] if p["ppid"] in procs else 0, []).append(pid)

    def show(pid: int, depth: int) -> None:
        p = procs[pid]
        print(f"{pid:>7} {p['state']} {p['seconds']:>6}s {'  ' * depth}{p['command'][:160]}")
        for child in sorted(children.get(pid, [])):
            show(child, depth + 1)

    print(f"{'pid':>7} S {'age':>7} command")
    roots = [args.pid] if args.pid else sorted(children.get(0, []))
    for root in roots:
        if root in procs:
            show(root, 0)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
