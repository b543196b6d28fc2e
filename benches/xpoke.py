#!/usr/bin/env python3
"""Changes the picture of an X display on command, with as little delay as possible.

One long-lived process (no spawn per change), talking to the X server through Xlib and XTest
with ctypes, so it needs only libX11 and libXtst. Reads commands on stdin, one per line, and
answers each with a line "ok T0 T1 M0 M1": milliseconds just before the X calls (T0, M0) and once
the X server has processed them (after XSync: T1, M1), T on the wall clock (time.time(), the clock
of Date.now()), M on CLOCK_MONOTONIC (time.monotonic(), the clock of node's process.hrtime and of
Chromium's performance.now(); not slewed apart from them as the wall clock can be).

  fill X Y W H RRGGBB   fill a rectangle of the root window (outside other windows)
  bg RRGGBB             set the root background colour and repaint it (like xsetroot -solid)
  key KEYSYM            press and release a key (XTest; goes to the focused window)
  move X Y              move the pointer (XTest)
  quit

The display comes from $DISPLAY.
"""
import ctypes
import ctypes.util
import sys
import time

xlib = ctypes.CDLL(ctypes.util.find_library("X11") or "libX11.so.6")
xtst = ctypes.CDLL(ctypes.util.find_library("Xtst") or "libXtst.so.6")

xlib.XOpenDisplay.restype = ctypes.c_void_p
xlib.XOpenDisplay.argtypes = [ctypes.c_char_p]
xlib.XDefaultRootWindow.restype = ctypes.c_ulong
xlib.XDefaultRootWindow.argtypes = [ctypes.c_void_p]
xlib.XCreateGC.restype = ctypes.c_void_p
xlib.XCreateGC.argtypes = [ctypes.c_void_p, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_void_p]
xlib.XSetForeground.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_ulong]
xlib.XFillRectangle.argtypes = [ctypes.c_void_p, ctypes.c_ulong, ctypes.c_void_p,
                                ctypes.c_int, ctypes.c_int, ctypes.c_uint, ctypes.c_uint]
xlib.XSetWindowBackground.argtypes = [ctypes.c_void_p, ctypes.c_ulong, ctypes.c_ulong]
xlib.XClearWindow.argtypes = [ctypes.c_void_p, ctypes.c_ulong]
xlib.XSync.argtypes = [ctypes.c_void_p, ctypes.c_int]
xlib.XKeysymToKeycode.restype = ctypes.c_ubyte
xlib.XKeysymToKeycode.argtypes = [ctypes.c_void_p, ctypes.c_ulong]
xtst.XTestFakeKeyEvent.argtypes = [ctypes.c_void_p, ctypes.c_uint, ctypes.c_int, ctypes.c_ulong]
xtst.XTestFakeMotionEvent.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_int, ctypes.c_int,
                                      ctypes.c_ulong]

dpy = xlib.XOpenDisplay(None)
if not dpy:
    sys.stderr.write("xpoke: cannot open display\n")
    sys.exit(1)
root = xlib.XDefaultRootWindow(dpy)
gc = xlib.XCreateGC(dpy, root, 0, None)


def now_ms():
    return time.time() * 1000.0


def mono_ms():
    return time.monotonic() * 1000.0


for line in sys.stdin:
    parts = line.split()
    if not parts:
        continue
    cmd, args = parts[0], parts[1:]
    if cmd == "quit":
        break
    t0, m0 = now_ms(), mono_ms()
    if cmd == "fill":
        x, y, w, h = (int(a) for a in args[:4])
        xlib.XSetForeground(dpy, gc, int(args[4], 16))
        xlib.XFillRectangle(dpy, root, gc, x, y, w, h)
    elif cmd == "bg":
        xlib.XSetWindowBackground(dpy, root, int(args[0], 16))
        xlib.XClearWindow(dpy, root)
    elif cmd == "key":
        code = xlib.XKeysymToKeycode(dpy, int(args[0], 0))
        xtst.XTestFakeKeyEvent(dpy, code, 1, 0)
        xtst.XTestFakeKeyEvent(dpy, code, 0, 0)
    elif cmd == "move":
        xtst.XTestFakeMotionEvent(dpy, -1, int(args[0]), int(args[1]), 0)
    else:
        sys.stdout.write("error unknown command %s\n" % cmd)
        sys.stdout.flush()
        continue
    xlib.XSync(dpy, 0)
    t1, m1 = now_ms(), mono_ms()
    sys.stdout.write("ok %.3f %.3f %.3f %.3f\n" % (t0, t1, m0, m1))
    sys.stdout.flush()
