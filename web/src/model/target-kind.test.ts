import { describe, expect, it } from 'vitest';
import { kindSecurityNote } from './target-kind';

describe('kindSecurityNote', () => {
  it('warns that VNC authenticates no server, that VncAuth is DES challenge-response and that nothing is encrypted', () => {
    const note = kindSecurityNote('vnc') ?? '';
    expect(note).toContain('no server authentication');
    expect(note).toContain('DES challenge-response');
    expect(note).toContain('brute-forced');
    expect(note).toContain('password itself never crosses the wire');
    expect(note).toContain('Nothing is encrypted');
  });

  it('says nothing for RDP (its certificate is checked)', () => {
    expect(kindSecurityNote('rdp')).toBeNull();
  });
});
