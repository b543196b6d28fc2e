import { describe, expect, it } from 'vitest';
import { parseBoxes, playerHash, splitHighlights } from './search';

describe('search hits', () => {
  it('cuts a fragment at byte ranges, also past multi-byte characters', () => {
    // "é" is two bytes: "net" starts at byte 6.
    expect(splitHighlights('café net user', [[6, 9]])).toEqual([
      ['café ', false],
      ['net', true],
      [' user', false],
    ]);
    expect(splitHighlights('abc', [[2, 1], [0, 99], [1, 2]])).toEqual([
      ['a', false],
      ['b', true],
      ['c', false],
    ]);
  });

  it('goes to the player at the moment with its boxes, and reads them back bounded', () => {
    const hash = playerHash({ recording: 'a/b', t_ms: 1234.6, boxes: [{ word: 'x', x: 1, y: 2, w: 3, h: 4 }] });
    expect(hash).toBe('#/recordings/a%2Fb/at/1235/boxes/1,2,3,4');
    expect(parseBoxes('1,2,3,4;bad;5,6,7;-1,0,0,0;9,9,9,9')).toEqual([
      { x: 1, y: 2, w: 3, h: 4 },
      { x: 9, y: 9, w: 9, h: 9 },
    ]);
    expect(parseBoxes(undefined)).toEqual([]);
    expect(parseBoxes(Array(50).fill('1,1,1,1').join(';')).length).toBe(20);
  });
});
