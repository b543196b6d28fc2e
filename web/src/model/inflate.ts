// Stream rectangles (encoding 4, docs/browser-protocol.md): each is a chunk of the connection's one
// deflate stream, flushed, that inflates to a palette or RGB image. One `StreamImages` per
// connection; chunks must be given in the order they arrived.

/** Inflated layouts (the image's first byte). */
const LAYOUT_RGB = 0;
const LAYOUT_PALETTE = 1;
/** Largest rectangle accepted (8K UHD, the gateway's largest desktop). */
export const MAX_STREAM_PIXELS = 7680 * 4320;
/**
 * A chunk's image must come out of the inflater within two windows of this long: a chunk that
 * inflates to less than its image would otherwise wait for bytes that never come. Two windows,
 * so that a main thread stalled for a while (the timer and the data both due when it wakes)
 * does not count as a broken stream.
 */
export const STALL_MS = 5000;

/** Bits per palette index for a palette of `n` colours. */
export function indexBits(n: number): number {
  if (n <= 2) return 1;
  if (n <= 4) return 2;
  if (n <= 16) return 4;
  return 8;
}

/** Whether this machine stores a 32-bit word's low byte first (every browser platform today). */
const LITTLE_ENDIAN = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;

/**
 * Expands an inflated palette image's rows (after its colours) into RGBA. `rows` holds `height`
 * rows of `width` indices, `bits` each, most significant bits first, each row starting on a byte.
 * Throws on an index beyond the palette.
 *
 * One 32-bit word is written per pixel from a table of the palette's RGBA words, and each row
 * byte is unpacked once (a large change from x11vnc is several such images, expanded on the
 * page's main thread before the next message is handled: benches/LATENCY-NOTES.md, item 7).
 */
export function expandPalette(
  colours: Uint8Array,
  rows: Uint8Array,
  width: number,
  height: number,
  out: Uint8ClampedArray,
): void {
  const n = colours.length / 3;
  const bits = indexBits(n);
  const rowBytes = Math.ceil((width * bits) / 8);
  if (!LITTLE_ENDIAN || out.byteOffset % 4 !== 0) {
    expandPaletteBytes(colours, rows, width, height, bits, out);
    return;
  }
  const table = new Uint32Array(n);
  for (let i = 0; i < n; i++) {
    table[i] = (0xff000000 | (colours[3 * i + 2] << 16) | (colours[3 * i + 1] << 8) | colours[3 * i]) >>> 0;
  }
  const words = new Uint32Array(out.buffer, out.byteOffset, width * height);
  const perByte = 8 / bits;
  const mask = (1 << bits) - 1;
  let o = 0;
  for (let y = 0; y < height; y++) {
    let r = y * rowBytes;
    let x = 0;
    if (bits === 8) {
      for (; x < width; x++) {
        const index = rows[r++];
        if (index >= n) throw new Error(`palette index ${index} of ${n} colours`);
        words[o++] = table[index];
      }
      continue;
    }
    while (x < width) {
      const byte = rows[r++];
      const count = Math.min(perByte, width - x);
      for (let k = 0, shift = 8 - bits; k < count; k++, shift -= bits) {
        const index = (byte >> shift) & mask;
        if (index >= n) throw new Error(`palette index ${index} of ${n} colours`);
        words[o++] = table[index];
      }
      x += count;
    }
  }
}

/** The same, a byte at a time (a big-endian machine, or an unaligned output). */
function expandPaletteBytes(
  colours: Uint8Array,
  rows: Uint8Array,
  width: number,
  height: number,
  bits: number,
  out: Uint8ClampedArray,
): void {
  const n = colours.length / 3;
  const rowBytes = Math.ceil((width * bits) / 8);
  const mask = (1 << bits) - 1;
  let o = 0;
  for (let y = 0; y < height; y++) {
    const row = y * rowBytes;
    for (let x = 0; x < width; x++) {
      const bit = x * bits;
      const index = (rows[row + (bit >> 3)] >> (8 - bits - (bit & 7))) & mask;
      if (index >= n) throw new Error(`palette index ${index} of ${n} colours`);
      const c = index * 3;
      out[o] = colours[c];
      out[o + 1] = colours[c + 1];
      out[o + 2] = colours[c + 2];
      out[o + 3] = 255;
      o += 4;
    }
  }
}

/** The connection's deflate stream, read as images. */
export class StreamImages {
  /** Created with the first chunk, so a browser without it fails with a clear message. */
  private writer: WritableStreamDefaultWriter<BufferSource> | null = null;
  private reader: ReadableStreamDefaultReader<Uint8Array> | null = null;
  /** A read of the inflater still under way (a stall check may have stopped waiting for it). */
  private reading: Promise<ReadableStreamReadResult<Uint8Array>> | null = null;
  /** Inflated bytes not yet used, oldest first; `start` is how much of the first is used. */
  private held: Uint8Array[] = [];
  private start = 0;
  private heldBytes = 0;
  /** Images are read strictly one after the other. */
  private chain: Promise<unknown> = Promise.resolve();
  /** Once the stream broke, every later image fails with this. */
  private broken: Error | null = null;
  private readonly stallMs: number;

  constructor(stallMs = STALL_MS) {
    this.stallMs = stallMs;
  }

  /**
   * Inflates the next chunk into the RGBA pixels of a `width`×`height` image. Starts at once
   * (after the chunks given before); resolves in order. A bad chunk breaks the stream: this and
   * every later image reject.
   */
  image(chunk: Uint8Array<ArrayBuffer>, width: number, height: number): Promise<Uint8ClampedArray<ArrayBuffer>> {
    const next = this.chain.then(() => this.read(chunk, width, height));
    this.chain = next.catch(() => {});
    return next;
  }

  private async read(chunk: Uint8Array<ArrayBuffer>, width: number, height: number): Promise<Uint8ClampedArray<ArrayBuffer>> {
    if (this.broken) throw this.broken;
    try {
      if (width < 1 || height < 1 || width * height > MAX_STREAM_PIXELS) {
        throw new Error(`stream rectangle of ${width}x${height}`);
      }
      if (!this.writer) {
        if (typeof DecompressionStream === 'undefined') {
          throw new Error('this browser cannot inflate (no DecompressionStream): use a current Chrome, Edge, Firefox or Safari');
        }
        const stream = new DecompressionStream('deflate');
        this.writer = stream.writable.getWriter();
        this.reader = stream.readable.getReader();
      }
      // Not awaited: the write completes as the inflated bytes are read below.
      this.writer.write(chunk).catch(() => {});
      const layout = (await this.take(1))[0];
      if (layout !== LAYOUT_RGB && layout !== LAYOUT_PALETTE) {
        throw new Error(`unknown stream image layout ${layout}`);
      }
      const out = new Uint8ClampedArray(width * height * 4);
      if (layout === LAYOUT_RGB) {
        const rgb = await this.take(width * height * 3);
        for (let i = 0, o = 0; i < rgb.length; i += 3, o += 4) {
          out[o] = rgb[i];
          out[o + 1] = rgb[i + 1];
          out[o + 2] = rgb[i + 2];
          out[o + 3] = 255;
        }
      } else {
        const n = (await this.take(1))[0] + 1;
        const colours = await this.take(n * 3);
        const rows = await this.take(Math.ceil((width * indexBits(n)) / 8) * height);
        expandPalette(colours, rows, width, height, out);
      }
      // A flushed chunk inflates exactly to its image: anything more is out of step. (Bytes
      // of this chunk that come out in a later read surface as the next image's error.)
      if (this.heldBytes !== 0) throw new Error('stream chunk longer than its image');
      return out;
    } catch (err) {
      this.broken = err instanceof Error ? err : new Error(String(err));
      throw this.broken;
    }
  }

  /** The next `n` inflated bytes, waiting for the stream to produce them. */
  private async take(n: number): Promise<Uint8Array> {
    while (this.heldBytes < n) {
      const value = await this.readSome();
      this.held.push(value);
      this.heldBytes += value.length;
    }
    const out = new Uint8Array(n);
    let filled = 0;
    while (filled < n) {
      const first = this.held[0];
      const use = Math.min(first.length - this.start, n - filled);
      out.set(first.subarray(this.start, this.start + use), filled);
      filled += use;
      this.start += use;
      if (this.start === first.length) {
        this.held.shift();
        this.start = 0;
      }
    }
    this.heldBytes -= n;
    return out;
  }

  /** The inflater's next output; throws once it has given nothing for two stall windows. */
  private async readSome(): Promise<Uint8Array> {
    const reader = this.reader;
    if (!reader) throw new Error('no deflate stream');
    for (let quiet = 0; quiet < 2; quiet++) {
      this.reading ??= reader.read();
      let timer: ReturnType<typeof setTimeout> | undefined;
      const stalled = new Promise<null>((resolve) => {
        timer = setTimeout(() => resolve(null), this.stallMs);
      });
      const result = await Promise.race([this.reading, stalled]);
      clearTimeout(timer);
      if (result === null) continue;
      this.reading = null;
      if (result.done) throw new Error('the deflate stream ended');
      return result.value;
    }
    throw new Error(`a stream chunk gave less than its image (nothing inflated for ${(2 * this.stallMs) / 1000} s)`);
  }
}
