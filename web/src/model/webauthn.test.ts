import { describe, expect, it } from 'vitest';
import { creationOptions, fromB64url, requestOptions, toB64url } from './webauthn';

describe('webauthn', () => {
  it('round-trips base64url without padding', () => {
    for (const bytes of [[], [0], [251, 255], [1, 2, 3, 4, 5, 254]]) {
      const text = toB64url(new Uint8Array(bytes));
      expect(text).not.toMatch(/[+/=]/);
      expect([...fromB64url(text)]).toEqual(bytes);
    }
    expect(toB64url(new Uint8Array([251, 255]))).toBe('-_8');
  });
  it('turns the binary fields of the options into bytes', () => {
    const c = creationOptions({ publicKey: { challenge: 'AQI', user: { id: 'Aw', name: 'a' }, excludeCredentials: [{ type: 'public-key', id: 'BA' }] } });
    const pk = c.publicKey as unknown as { challenge: Uint8Array; user: { id: Uint8Array; name: string }; excludeCredentials: { id: Uint8Array }[] };
    expect([...pk.challenge]).toEqual([1, 2]);
    expect([...pk.user.id]).toEqual([3]);
    expect(pk.user.name).toBe('a');
    expect([...pk.excludeCredentials[0].id]).toEqual([4]);
    const r = requestOptions({ publicKey: { challenge: 'BQ', allowCredentials: [] } });
    expect([...(r.publicKey as unknown as { challenge: Uint8Array }).challenge]).toEqual([5]);
  });
});
