// The desktop canvas shared by the session page (`#/session/<target>`) and the security team's
// watch page (`#/watch/<id>`): both get exactly the same server messages, so both decode and paint
// the binary frames here, in arrival order, and acknowledge each frame once it is painted.

import { fitSize } from './model/pointer';
import { StreamImages } from './model/inflate';
import { ENC_FILL, ENC_ZLIB, insideDesktop, mimeOf, parseBinary, unbatch } from './model/protocol';

export interface DesktopCanvasOptions {
  canvas: HTMLCanvasElement;
  /** The element the canvas is scaled to fit (it gets the `fit` / `actual` class). */
  viewport: HTMLElement;
  /** Scale to fit the viewport (else 1:1). Asked at every layout. */
  fit: () => boolean;
  /** A frame is fully painted: acknowledge it (and count it). */
  onFramePainted: (seq: number) => void;
  /** A copy within the canvas is painted (counted for the tests). */
  onCopyPainted?: () => void;
  /** The connection's pixel stream is broken (a bug): the view cannot be trusted any more. */
  onBroken?: (err: Error) => void;
}

/** Paints the gateway's binary messages onto a canvas and keeps it scaled. */
export class DesktopCanvas {
  /** The desktop's size in pixels (0 before the first `init`/`resize` has been applied). */
  width = 0;
  height = 0;
  /** Draws and acks, strictly in arrival order. Never rejects. */
  private chain: Promise<void> = Promise.resolve();
  private readonly o: DesktopCanvasOptions;
  private readonly g: CanvasRenderingContext2D | null;
  private readonly observer: ResizeObserver;
  /** The connection's deflate stream (one page, one connection). */
  private readonly stream = new StreamImages();

  constructor(options: DesktopCanvasOptions) {
    this.o = options;
    this.g = options.canvas.getContext('2d', { alpha: false });
    this.observer = new ResizeObserver(() => this.applyScale());
    this.observer.observe(options.viewport);
  }

  /** Sizes the canvas element for the viewport (fit) or 1:1. */
  applyScale(): void {
    if (this.width === 0) return;
    const { canvas, viewport } = this.o;
    const fit = this.o.fit();
    viewport.classList.toggle('fit', fit);
    viewport.classList.toggle('actual', !fit);
    if (fit) {
      const s = fitSize(this.width, this.height, viewport.clientWidth, viewport.clientHeight);
      canvas.style.width = `${s.width}px`;
      canvas.style.height = `${s.height}px`;
    } else {
      canvas.style.width = `${this.width}px`;
      canvas.style.height = `${this.height}px`;
    }
  }

  /** An `init` or `resize`: in turn, the canvas takes the new size, black (a full repaint follows). */
  resize(width: number, height: number): void {
    this.enqueue(() => {
      this.width = width;
      this.height = height;
      const { canvas } = this.o;
      canvas.width = width; // also clears it
      canvas.height = height;
      if (this.g) {
        this.g.fillStyle = '#000';
        this.g.fillRect(0, 0, width, height);
      }
      this.applyScale();
    });
  }

  /**
   * One binary message: a rectangle to paint, a copy within the canvas, an end-of-frame to
   * acknowledge once painted, or a batch of these (a whole frame in one message).
   */
  binary(buf: ArrayBuffer): void {
    let parts;
    try {
      parts = unbatch(buf);
    } catch (err) {
      // A whole frame lost (its pixels, perhaps stream chunks, and its end): what the canvas
      // shows can no longer be trusted, and the frame would never be acknowledged.
      this.o.onBroken?.(err instanceof Error ? err : new Error(String(err)));
      return;
    }
    for (const [start, length] of parts) this.one(buf, start, length, parts.length > 1);
  }

  private one(buf: ArrayBuffer, start: number, length: number, inBatch: boolean): void {
    let m;
    try {
      m = parseBinary(buf, start, length);
    } catch (err) {
      // In a batch it may have been the frame's end: the frame would never be acknowledged.
      if (inBatch) this.o.onBroken?.(err instanceof Error ? err : new Error(String(err)));
      else console.warn('portcullis: bad binary message', err);
      return;
    }
    if (m.kind === 'frameEnd') {
      const seq = m.seq;
      this.enqueue(() => this.o.onFramePainted(seq));
      return;
    }
    const g = this.g;
    if (m.kind === 'copy') {
      const { dx, dy, sx, sy, width, height } = m;
      // Checked in turn, against the size the canvas has then (a resize may come before it).
      this.enqueue(() => {
        if (
          !insideDesktop(sx, sy, width, height, this.width, this.height) ||
          !insideDesktop(dx, dy, width, height, this.width, this.height)
        ) {
          console.warn('portcullis: copy outside the desktop');
          return;
        }
        // A canvas drawn onto itself reads its source as it was before the draw.
        g?.drawImage(this.o.canvas, sx, sy, width, height, dx, dy, width, height);
        this.o.onCopyPainted?.();
      });
      return;
    }
    const { x, y, width, height, encoding, data } = m;
    if (encoding === ENC_FILL) {
      if (data.length < 3) {
        console.warn('portcullis: short fill rectangle');
        return;
      }
      const colour = `rgb(${data[0]},${data[1]},${data[2]})`;
      this.enqueue(() => {
        if (g) {
          g.fillStyle = colour;
          g.fillRect(x, y, width, height);
        }
      });
      return;
    }
    if (encoding === ENC_ZLIB) {
      // Inflated now (after earlier stream rectangles), drawn in arrival order.
      const pixels = this.stream.image(data, width, height);
      pixels.catch((err: unknown) => {
        this.o.onBroken?.(err instanceof Error ? err : new Error(String(err)));
      });
      this.enqueue(async () => {
        const image = new ImageData(await pixels, width, height);
        g?.putImageData(image, x, y);
      });
      return;
    }
    const type = mimeOf(encoding);
    if (type === null) {
      console.warn(`portcullis: unknown rectangle encoding ${encoding}`);
      return;
    }
    // Decode now (in parallel with earlier rectangles), draw in arrival order.
    const bitmap = createImageBitmap(new Blob([data], { type }));
    bitmap.catch(() => {}); // reported when its turn comes
    this.enqueue(async () => {
      const bm = await bitmap;
      try {
        g?.drawImage(bm, x, y);
      } finally {
        bm.close();
      }
    });
  }

  /** Stops following the viewport's size. */
  dispose(): void {
    this.observer.disconnect();
  }

  private enqueue(step: () => void | Promise<void>): void {
    this.chain = this.chain.then(step).catch((err: unknown) => {
      console.warn('portcullis: drawing step failed', err);
    });
  }
}
