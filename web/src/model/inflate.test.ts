import { describe, expect, it } from 'vitest';
import { expandPalette, indexBits, StreamImages } from './inflate';
import { parseBinary } from './protocol';
import { STREAM_FIXTURE_HEX } from './testdata/stream-fixture';

/**
 * The gateway's side, simplified: one zlib stream, each image in its own chunk of stored
 * (uncompressed) deflate blocks, which like the gateway's flushed chunks end on a byte boundary.
 */
class Deflater {
  private first = true;
  chunk(image: Uint8Array): Promise<Uint8Array<ArrayBuffer>> {
    const parts: number[] = [];
    if (this.first) parts.push(0x78, 0x01);
    this.first = false;
    for (let at = 0; at < image.length || at === 0; at += 65535) {
      const block = image.subarray(at, at + 65535);
      const len = block.length;
      parts.push(0, len & 255, len >> 8, ~len & 255, (~len >> 8) & 255, ...block);
      if (image.length === 0) break;
    }
    return Promise.resolve(new Uint8Array(parts));
  }
}

/** A palette image as the gateway lays it out (its colours are [i, 2i, 3i] mod 256 for index i). */
function paletteImage(n: number, width: number, height: number, index: (x: number, y: number) => number): Uint8Array {
  const bits = indexBits(n);
  const rowBytes = Math.ceil((width * bits) / 8);
  const img = new Uint8Array(2 + n * 3 + rowBytes * height);
  img[0] = 1;
  img[1] = n - 1;
  for (let i = 0; i < n; i++) img.set([i, 2 * i, 3 * i], 2 + i * 3);
  const rows = 2 + n * 3;
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const bit = x * bits;
      img[rows + y * rowBytes + (bit >> 3)] |= index(x, y) << (8 - bits - (bit & 7));
    }
  }
  return img;
}

describe('StreamImages', () => {
  it('inflates palette images of every index width and RGB, in order, from one stream', async () => {
    const d = new Deflater();
    const s = new StreamImages();
    const [w, h] = [13, 5]; // rows end mid-byte
    for (const n of [2, 3, 4, 16, 17, 128]) {
      const idx = (x: number, y: number) => (x * 7 + y * 3) % n;
      const rgba = await s.image(await d.chunk(paletteImage(n, w, h, idx)), w, h);
      for (let y = 0; y < h; y++) {
        for (let x = 0; x < w; x++) {
          const i = idx(x, y);
          const o = (y * w + x) * 4;
          expect([...rgba.subarray(o, o + 4)]).toEqual([i, (2 * i) & 255, (3 * i) & 255, 255]);
        }
      }
    }
    const rgb = new Uint8Array(1 + w * h * 3);
    for (let i = 1; i < rgb.length; i++) rgb[i] = i % 251;
    const rgba = await s.image(await d.chunk(rgb), w, h);
    expect([...rgba.subarray(0, 8)]).toEqual([1, 2, 3, 255, 4, 5, 6, 255]);
  });

  it('serves images started together in the order they were given', async () => {
    const d = new Deflater();
    const chunks = [];
    for (let n = 2; n < 40; n++) chunks.push(await d.chunk(paletteImage(n, 64, 64, (x) => x % n)));
    const s = new StreamImages();
    const images = await Promise.all(chunks.map((c) => s.image(c, 64, 64)));
    images.forEach((rgba, k) => {
      // Pixel 1 is index 1 of a palette of k + 2 colours: [1, 2, 3].
      expect([...rgba.subarray(4, 8)]).toEqual([1, 2, 3, 255]);
      const last = 63 * 4;
      const i = 63 % (k + 2);
      expect([...rgba.subarray(last, last + 3)]).toEqual([i, 2 * i, 3 * i]);
    });
  });

  it('a chunk that does not match its rectangle breaks the stream for good', async () => {
    const d = new Deflater();
    const s = new StreamImages();
    // An image of 4×4 announced as 2×2: bytes left over.
    const first = s.image(await d.chunk(paletteImage(2, 4, 4, () => 1)), 2, 2);
    await expect(first).rejects.toThrow(/longer than its image/);
    const later = s.image(await d.chunk(paletteImage(2, 2, 2, () => 1)), 2, 2);
    await expect(later).rejects.toThrow();
  });

  it('a chunk that inflates to less than its image fails after the stall windows, not never', async () => {
    const d = new Deflater();
    const s = new StreamImages(20);
    // A 2×2 palette image announced as 4×4: its rows end early.
    const short = s.image(await d.chunk(paletteImage(2, 2, 2, () => 1)), 4, 4);
    await expect(short).rejects.toThrow(/less than its image/);
    await expect(s.image(await d.chunk(paletteImage(2, 2, 2, () => 1)), 2, 2)).rejects.toThrow();
  });

  it('rejects garbage, unknown layouts and oversized rectangles', async () => {
    await expect(new StreamImages().image(new Uint8Array([1, 2, 3, 4]), 2, 2)).rejects.toThrow();
    const d = new Deflater();
    await expect(new StreamImages().image(await d.chunk(new Uint8Array([7, 0, 0])), 1, 1)).rejects.toThrow(
      /layout 7/,
    );
    await expect(new StreamImages().image(new Uint8Array(), 8000, 8000)).rejects.toThrow(/8000x8000/);
  });
});

describe('the gateway encoder\'s own output', () => {
  it('inflates to the images the Rust test encoded (same formula as its fixture_images)', async () => {
    const bytes = new Uint8Array(STREAM_FIXTURE_HEX.match(/../g)!.map((h) => Number.parseInt(h, 16)));
    const images: [number, number, number][] = [[13, 7, 2], [13, 7, 2], [40, 9, 20], [40, 9, 20], [17, 5, 1000]];
    const s = new StreamImages();
    let at = 0;
    for (const [w, h, colours] of images) {
      const len = new DataView(bytes.buffer).getUint32(at);
      const m = parseBinary(bytes.slice(at + 4, at + 4 + len).buffer);
      at += 4 + len;
      if (m.kind !== 'rect') throw new Error('not a rectangle');
      expect([m.encoding, m.width, m.height]).toEqual([4, w, h]);
      const rgba = await s.image(m.data, w, h);
      for (let y = 0; y < h; y++) {
        for (let x = 0; x < w; x++) {
          const c = (x * 7 + y * 13 + x * y) % colours;
          const o = (y * w + x) * 4;
          expect([...rgba.subarray(o, o + 4)]).toEqual([(c * 37) & 255, (c * 91 + 7) & 255, (c >> 3) & 255, 255]);
        }
      }
    }
    expect(at).toBe(bytes.length);
  });
});

describe('expandPalette', () => {
  it('gives every pixel its colour, for every index width, row end and output alignment', () => {
    for (const n of [2, 3, 4, 5, 16, 17, 255, 256]) {
      for (const width of [1, 2, 3, 7, 8, 9, 13, 64]) {
        const height = 3;
        const idx = (x: number, y: number) => (x * 5 + y * 11 + (x >> 2)) % n;
        const img = paletteImage(n, width, height, idx);
        const colours = img.subarray(2, 2 + n * 3);
        const rows = img.subarray(2 + n * 3);
        for (const offset of [0, 4, 1]) {
          // An offset of 1 is an output that cannot be written a word at a time.
          const out = new Uint8ClampedArray(new ArrayBuffer(offset + width * height * 4), offset, width * height * 4);
          expandPalette(colours, rows, width, height, out);
          for (let y = 0; y < height; y++) {
            for (let x = 0; x < width; x++) {
              const i = idx(x, y);
              const o = (y * width + x) * 4;
              expect([...out.subarray(o, o + 4)], `n ${n}, ${width} wide, at ${x},${y}, offset ${offset}`)
                .toEqual([i, (2 * i) & 255, (3 * i) & 255, 255]);
            }
          }
        }
      }
    }
  });

  it('refuses an index beyond the palette', () => {
    // 3 colours use 2 bits: index 3 does not exist.
    const out = new Uint8ClampedArray(4);
    expect(() => expandPalette(new Uint8Array(9), new Uint8Array([0b11000000]), 1, 1, out)).toThrow(/index 3/);
  });
});
