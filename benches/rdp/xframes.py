#!/usr/bin/env python3
"""Frame source and frame counters for the RDP benchmark (benches/rdp.mjs).

Xlib, XDamage and nothing else, through ctypes (like benches/xpoke.py), so it needs only libX11
and libXdamage. Times are wall-clock milliseconds (time.time(), the clock of Date.now() in node).

  xframes.py animate X Y W H FPS [solid|blocks]
      On $DISPLAY (the target): an override-redirect window at X,Y of W x H, filled with one solid
      colour per frame. Frame n shows code (n % 62) + 1, one of 62 colours whose channels are each
      0, 85, 170 or 255 (never all 0 or all 255, so a black or white screen is no code). With
      "blocks", every frame is instead a new picture of 16x16 blocks of random colours (sent with
      XPutImage: no codec or drawing order makes it small; bands of 16 rows come from a pool of
      256 random rows, shifted by a random 0-255 pixels, so that drawing stays cheap) with the code colour only in 32x32
      squares at the four corners and the centre, where `count` looks. FPS > 0
      paces the frames on a fixed clock (a late frame is not made up); 0 draws as fast as the X
      server takes them. Each frame ends with XSync: it counts once the server has drawn it.
      Commands on stdin, answered with one line each:
        count   ->  "ok T N"   (frames drawn so far)
        pause / run  -> "ok T N"   (stop / resume drawing; the window keeps its colour)
        quit

  xframes.py count X Y W H
      On $DISPLAY (the client's screen), waiting for the display to exist: watches the screen with
      XDamage and, after each batch of damage, reads 5 pixels of the region (its four corners,
      inset by 8, and its centre). A frame is counted when all 5 decode to the same code and it
      differs from the last counted one: a torn picture (half old, half new) is not a frame, and
      damage events are not frames either. Prints "ready T" and then, per frame, "f T CODE"; at
      the end (stdin closed or "quit") "stats EVENTS READS TORN".

  xframes.py sample X Y W H NX NY
      On $DISPLAY: prints NX x NY pixels on a grid over the region, as "RRGGBB ..." on one line
      (the reference for `match`).

  xframes.py match X Y W H NX NY
      Reads a `sample` line on stdin, then waits for $DISPLAY to exist and, after each batch of
      damage (at most every 5 ms), samples the same grid; prints "ready T" and then, once at
      least 99% of the points are within 10% colour distance of the reference (like ImageMagick
      `compare -fuzz 10%`), "match T DIFFERING" and exits. Prints "timeout" after 60 s.
"""
import ctypes
import ctypes.util
import os
import select
import sys
import time

xlib = ctypes.CDLL(ctypes.util.find_library("X11") or "libX11.so.6")
xdamage = ctypes.CDLL(ctypes.util.find_library("Xdamage") or "libXdamage.so.1")

c_dpy = ctypes.c_void_p
xlib.XOpenDisplay.restype = c_dpy
xlib.XOpenDisplay.argtypes = [ctypes.c_char_p]
xlib.XDefaultRootWindow.restype = ctypes.c_ulong
xlib.XDefaultRootWindow.argtypes = [c_dpy]
xlib.XDefaultScreen.argtypes = [c_dpy]
xlib.XDefaultVisual.restype = ctypes.c_void_p
xlib.XDefaultVisual.argtypes = [c_dpy, ctypes.c_int]
xlib.XDefaultDepth.argtypes = [c_dpy, ctypes.c_int]
xlib.XConnectionNumber.argtypes = [c_dpy]
xlib.XPending.argtypes = [c_dpy]
xlib.XNextEvent.argtypes = [c_dpy, ctypes.c_void_p]
xlib.XSync.argtypes = [c_dpy, ctypes.c_int]
xlib.XFlush.argtypes = [c_dpy]
xlib.XCreateGC.restype = ctypes.c_void_p
xlib.XCreateGC.argtypes = [c_dpy, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_void_p]
xlib.XSetForeground.argtypes = [c_dpy, ctypes.c_void_p, ctypes.c_ulong]
xlib.XFillRectangle.argtypes = [c_dpy, ctypes.c_ulong, ctypes.c_void_p,
                                ctypes.c_int, ctypes.c_int, ctypes.c_uint, ctypes.c_uint]
xlib.XMapRaised.argtypes = [c_dpy, ctypes.c_ulong]
xlib.XGetImage.restype = ctypes.c_void_p
xlib.XGetImage.argtypes = [c_dpy, ctypes.c_ulong, ctypes.c_int, ctypes.c_int, ctypes.c_uint,
                           ctypes.c_uint, ctypes.c_ulong, ctypes.c_int]
xlib.XDestroyImage.argtypes = [ctypes.c_void_p]
xlib.XCreateImage.restype = ctypes.c_void_p
xlib.XCreateImage.argtypes = [c_dpy, ctypes.c_void_p, ctypes.c_uint, ctypes.c_int, ctypes.c_int,
                              ctypes.c_void_p, ctypes.c_uint, ctypes.c_uint, ctypes.c_int,
                              ctypes.c_int]
xlib.XPutImage.argtypes = [c_dpy, ctypes.c_ulong, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int,
                           ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_uint, ctypes.c_uint]
xlib.XSetErrorHandler.restype = ctypes.c_void_p


class XSetWindowAttributes(ctypes.Structure):
    _fields_ = [
        ("background_pixmap", ctypes.c_ulong), ("background_pixel", ctypes.c_ulong),
        ("border_pixmap", ctypes.c_ulong), ("border_pixel", ctypes.c_ulong),
        ("bit_gravity", ctypes.c_int), ("win_gravity", ctypes.c_int),
        ("backing_store", ctypes.c_int), ("backing_planes", ctypes.c_ulong),
        ("backing_pixel", ctypes.c_ulong), ("save_under", ctypes.c_int),
        ("event_mask", ctypes.c_long), ("do_not_propagate_mask", ctypes.c_long),
        ("override_redirect", ctypes.c_int), ("colormap", ctypes.c_ulong),
        ("cursor", ctypes.c_ulong),
    ]


class XImage(ctypes.Structure):
    # Only the leading fields are read.
    _fields_ = [
        ("width", ctypes.c_int), ("height", ctypes.c_int), ("xoffset", ctypes.c_int),
        ("format", ctypes.c_int), ("data", ctypes.c_void_p), ("byte_order", ctypes.c_int),
        ("bitmap_unit", ctypes.c_int), ("bitmap_bit_order", ctypes.c_int),
        ("bitmap_pad", ctypes.c_int), ("depth", ctypes.c_int),
        ("bytes_per_line", ctypes.c_int), ("bits_per_pixel", ctypes.c_int),
    ]


xlib.XCreateWindow.restype = ctypes.c_ulong
xlib.XCreateWindow.argtypes = [c_dpy, ctypes.c_ulong, ctypes.c_int, ctypes.c_int, ctypes.c_uint,
                               ctypes.c_uint, ctypes.c_uint, ctypes.c_int, ctypes.c_uint,
                               ctypes.c_void_p, ctypes.c_ulong,
                               ctypes.POINTER(XSetWindowAttributes)]
xdamage.XDamageQueryExtension.argtypes = [c_dpy, ctypes.POINTER(ctypes.c_int),
                                          ctypes.POINTER(ctypes.c_int)]
xdamage.XDamageCreate.restype = ctypes.c_ulong
xdamage.XDamageCreate.argtypes = [c_dpy, ctypes.c_ulong, ctypes.c_int]
xdamage.XDamageSubtract.argtypes = [c_dpy, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]

ZPIXMAP = 2
ALL_PLANES = 0xFFFFFFFF
DAMAGE_REPORT_NON_EMPTY = 3
CW_OVERRIDE_REDIRECT = 1 << 9
CW_BACK_PIXEL = 1 << 1

LEVELS = (0, 85, 170, 255)
TOLERANCE = 28
CODES = 62

# X errors (e.g. a read while the screen is being resized) are not fatal.
ERROR_HANDLER = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p)(lambda d, e: 0)
xlib.XSetErrorHandler(ERROR_HANDLER)


def now_ms():
    return time.time() * 1000.0


def say(line):
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def code_rgb(code):
    return (LEVELS[(code >> 4) & 3], LEVELS[(code >> 2) & 3], LEVELS[code & 3])


def rgb_code(rgb):
    code = 0
    for v in rgb:
        best = min(range(4), key=lambda i: abs(LEVELS[i] - v))
        if abs(LEVELS[best] - v) > TOLERANCE:
            return None
        code = code * 4 + best
    return code if 1 <= code <= CODES else None


def open_display(wait_s):
    end = time.time() + wait_s
    while True:
        dpy = xlib.XOpenDisplay(None)
        if dpy:
            return dpy
        if time.time() > end:
            sys.stderr.write("xframes: cannot open display %s\n" % os.environ.get("DISPLAY"))
            sys.exit(1)
        time.sleep(0.005)


def read_pixels(dpy, root, points):
    """RGB of each point: one XGetImage of their bounding box."""
    x0 = min(p[0] for p in points)
    y0 = min(p[1] for p in points)
    x1 = max(p[0] for p in points)
    y1 = max(p[1] for p in points)
    out = []
    # Small boxes (the 5 counter points span the region) would copy too much; per point then.
    if (x1 - x0 + 1) * (y1 - y0 + 1) > 2_000_000 or len(points) <= 8:
        for (x, y) in points:
            img = xlib.XGetImage(dpy, root, x, y, 1, 1, ALL_PLANES, ZPIXMAP)
            if not img:
                return None
            im = XImage.from_address(img)
            b = ctypes.string_at(im.data, 4)
            xlib.XDestroyImage(img)
            out.append((b[2], b[1], b[0]))
        return out
    img = xlib.XGetImage(dpy, root, x0, y0, x1 - x0 + 1, y1 - y0 + 1, ALL_PLANES, ZPIXMAP)
    if not img:
        return None
    im = XImage.from_address(img)
    if im.bits_per_pixel != 32:
        xlib.XDestroyImage(img)
        sys.stderr.write("xframes: %d bits per pixel not supported\n" % im.bits_per_pixel)
        sys.exit(1)
    data = ctypes.string_at(im.data, im.bytes_per_line * im.height)
    bpl = im.bytes_per_line
    xlib.XDestroyImage(img)
    for (x, y) in points:
        i = (y - y0) * bpl + (x - x0) * 4
        out.append((data[i + 2], data[i + 1], data[i]))
    return out


class Damage:
    """Waits for damage anywhere on the screen (root window, inferiors included)."""

    def __init__(self, dpy, root):
        ev, er = ctypes.c_int(), ctypes.c_int()
        if not xdamage.XDamageQueryExtension(dpy, ctypes.byref(ev), ctypes.byref(er)):
            sys.stderr.write("xframes: no DAMAGE extension\n")
            sys.exit(1)
        self.dpy = dpy
        self.damage = xdamage.XDamageCreate(dpy, root, DAMAGE_REPORT_NON_EMPTY)
        self.fd = xlib.XConnectionNumber(dpy)
        self.event = ctypes.create_string_buffer(192)
        self.events = 0
        xlib.XSync(dpy, 0)

    def wait(self, timeout_s, extra_fds=()):
        """True once damage came (and is reset: later damage makes a new event)."""
        if not xlib.XPending(self.dpy):
            r, _, _ = select.select([self.fd, *extra_fds], [], [], timeout_s)
            if self.fd not in r and not xlib.XPending(self.dpy):
                return False
        got = False
        while xlib.XPending(self.dpy):
            xlib.XNextEvent(self.dpy, self.event)
            got = True
            self.events += 1
        # Reset before reading pixels: anything drawn after the read raises a new event.
        xdamage.XDamageSubtract(self.dpy, self.damage, 0, 0)
        xlib.XFlush(self.dpy)
        return got


BLOCK = 16


def code_squares(w, h):
    """Where the code colour stays in a "blocks" frame: around the points `count` reads."""
    return [(0, 0), (w - 32, 0), (w // 2 - 16, h // 2 - 16), (0, h - 32), (w - 32, h - 32)]


def blocks_pool(w):
    """256 pixel rows (BGRX) of BLOCK-wide squares of random colours, 256 pixels longer than W."""
    bw = (w + 256) // BLOCK + 1
    pool = []
    for _ in range(256):
        rnd = os.urandom(3 * bw)
        pool.append(b"".join((rnd[3 * k:3 * k + 3] + b"\0") * BLOCK for k in range(bw)))
    return pool


def blocks_frame(w, h, pool):
    """A W x H picture (BGRX) of BLOCK x BLOCK squares: each band of BLOCK rows is a random
    pool row shifted by a random 0-255 pixels, so no band lines up with an earlier one."""
    bands = (h + BLOCK - 1) // BLOCK
    rnd = os.urandom(2 * bands)
    parts = []
    for i in range(bands):
        off = 4 * rnd[2 * i + 1]
        parts.append(pool[rnd[2 * i]][off:off + 4 * w] * BLOCK)
    return b"".join(parts)[:4 * w * h]


def animate(x, y, w, h, fps, texture="solid"):
    dpy = open_display(10)
    root = xlib.XDefaultRootWindow(dpy)
    scr = xlib.XDefaultScreen(dpy)
    attrs = XSetWindowAttributes()
    attrs.override_redirect = 1
    attrs.background_pixel = 0
    win = xlib.XCreateWindow(dpy, root, x, y, w, h, 0, xlib.XDefaultDepth(dpy, scr), 1,
                             xlib.XDefaultVisual(dpy, scr), CW_OVERRIDE_REDIRECT | CW_BACK_PIXEL,
                             ctypes.byref(attrs))
    xlib.XMapRaised(dpy, win)
    gc = xlib.XCreateGC(dpy, win, 0, None)
    image = None
    if texture == "blocks":
        buf = ctypes.create_string_buffer(4 * w * h)
        image = xlib.XCreateImage(dpy, xlib.XDefaultVisual(dpy, scr), xlib.XDefaultDepth(dpy, scr),
                                  ZPIXMAP, 0, ctypes.addressof(buf), w, h, 32, 4 * w)
        squares = code_squares(w, h)
        pool = blocks_pool(w)
    xlib.XSync(dpy, 0)
    n = 0
    running = True
    period = 1.0 / fps if fps > 0 else 0.0
    next_t = time.time()
    stdin = sys.stdin.fileno()
    while True:
        # Commands, without blocking the drawing.
        timeout = 0 if running and period == 0 else (max(0.0, next_t - time.time()) if running else None)
        r, _, _ = select.select([stdin], [], [], timeout)
        if r:
            line = sys.stdin.readline()
            if not line:
                return
            cmd = line.strip()
            if cmd == "quit":
                return
            if cmd == "pause":
                running = False
            elif cmd == "run":
                running = True
                next_t = time.time()
            say("ok %.3f %d" % (now_ms(), n))
            continue
        if not running:
            continue
        if period and time.time() < next_t:
            continue
        n += 1
        r_, g_, b_ = code_rgb(n % CODES + 1)
        xlib.XSetForeground(dpy, gc, (r_ << 16) | (g_ << 8) | b_)
        if image:
            ctypes.memmove(buf, blocks_frame(w, h, pool), 4 * w * h)
            xlib.XPutImage(dpy, win, gc, image, 0, 0, 0, 0, w, h)
            for (sx, sy) in squares:
                xlib.XFillRectangle(dpy, win, gc, sx, sy, 32, 32)
        else:
            xlib.XFillRectangle(dpy, win, gc, 0, 0, w, h)
        xlib.XSync(dpy, 0)
        if period:
            next_t += period
            # Behind by more than a frame: skip ahead rather than burst.
            if next_t < time.time() - period:
                next_t = time.time() + period


def count(x, y, w, h):
    dpy = open_display(30)
    root = xlib.XDefaultRootWindow(dpy)
    points = [(x + 8, y + 8), (x + w - 9, y + 8), (x + w // 2, y + h // 2),
              (x + 8, y + h - 9), (x + w - 9, y + h - 9)]
    damage = Damage(dpy, root)
    say("ready %.3f" % now_ms())
    last = None
    reads = torn = 0
    stdin = sys.stdin.fileno()
    while True:
        got = damage.wait(1.0, (stdin,))
        if select.select([stdin], [], [], 0)[0]:
            line = sys.stdin.readline()
            if not line or line.strip() == "quit":
                break
        if not got:
            continue
        px = read_pixels(dpy, root, points)
        if px is None:
            continue
        reads += 1
        codes = {rgb_code(p) for p in px}
        if len(codes) != 1 or None in codes:
            torn += 1
            continue
        code = codes.pop()
        if code != last:
            say("f %.3f %d" % (now_ms(), code))
            last = code
    say("stats %d %d %d" % (damage.events, reads, torn))


def grid(x, y, w, h, nx, ny):
    return [(x + (w - 1) * i // max(1, nx - 1), y + (h - 1) * j // max(1, ny - 1))
            for j in range(ny) for i in range(nx)]


def sample(x, y, w, h, nx, ny):
    dpy = open_display(10)
    root = xlib.XDefaultRootWindow(dpy)
    px = read_pixels(dpy, root, grid(x, y, w, h, nx, ny))
    say(" ".join("%02x%02x%02x" % p for p in px))


def match(x, y, w, h, nx, ny):
    ref = [tuple(int(s[i:i + 2], 16) for i in (0, 2, 4)) for s in sys.stdin.readline().split()]
    points = grid(x, y, w, h, nx, ny)
    if len(ref) != len(points):
        sys.stderr.write("xframes: reference has %d points, want %d\n" % (len(ref), len(points)))
        sys.exit(1)
    limit = (0.10 * 255) ** 2 * 3
    dpy = open_display(30)
    root = xlib.XDefaultRootWindow(dpy)
    damage = Damage(dpy, root)
    say("ready %.3f" % now_ms())
    end = time.time() + 60
    while time.time() < end:
        # A first check without damage: the screen may already show it.
        px = read_pixels(dpy, root, points)
        t = now_ms()
        if px is not None:
            differing = sum(1 for a, b in zip(px, ref)
                            if sum((a[i] - b[i]) ** 2 for i in range(3)) > limit)
            if differing <= len(points) // 100:
                say("match %.3f %d" % (t, differing))
                return
        time.sleep(0.005)
        damage.wait(1.0)
    say("timeout")


def main():
    mode = sys.argv[1]
    args = [int(a) if a.isdigit() else a for a in sys.argv[2:]]
    {"animate": animate, "count": count, "sample": sample, "match": match}[mode](*args)


if __name__ == "__main__":
    main()
