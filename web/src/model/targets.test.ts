import { describe, expect, it } from 'vitest';
import { rdpFileName, rdpFileNote, sessionHref } from './targets';

describe('rdpFileName', () => {
  it('is NAME.rdp for valid target names', () => {
    expect(rdpFileName('web01')).toBe('web01.rdp');
    expect(rdpFileName('db_2.prod-eu')).toBe('db_2.prod-eu.rdp');
  });

  it('never yields a path, a hidden file or an empty name', () => {
    expect(rdpFileName('a/b\\c')).toBe('a_b_c.rdp');
    expect(rdpFileName('../x')).toBe('_x.rdp');
    expect(rdpFileName('.hidden')).toBe('hidden.rdp');
    expect(rdpFileName('my box €')).toBe('my_box__.rdp');
    expect(rdpFileName('')).toBe('target.rdp');
    expect(rdpFileName('...')).toBe('target.rdp');
  });
});

describe('rdpFileNote', () => {
  it('names the file and its one-time password, and says it works once, soon', () => {
    const note = rdpFileNote('web01.rdp', 'Xy7-secret');
    expect(note).toContain('one-time password when it asks: Xy7-secret');
    expect(note.startsWith('web01.rdp downloaded')).toBe(true);
    expect(note).toContain('RDP client');
    expect(note).toContain('within a few minutes');
    expect(note).toContain('works once');
  });
});

describe('sessionHref', () => {
  it('encodes the target name', () => {
    expect(sessionHref('web01')).toBe('#/session/web01');
    expect(sessionHref('a b')).toBe('#/session/a%20b');
  });
});
