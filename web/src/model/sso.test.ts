import { describe, expect, it } from 'vitest';
import { parseMappings } from './sso';

describe('parseMappings', () => {
  it('reads one group = role per line, in order, skipping blank lines', () => {
    expect(parseMappings('psm-admins = admin\n\n  CN=Ops,OU=Groups = soc  \npsm-users=user')).toEqual([
      { group: 'psm-admins', role: 'admin' },
      { group: 'CN=Ops,OU=Groups', role: 'soc' },
      { group: 'psm-users', role: 'user' },
    ]);
  });
  it('names the first bad line', () => {
    expect(parseMappings('a = admin\nb = root')).toMatch(/^line 2:/);
    expect(parseMappings('just-a-group')).toMatch(/^line 1:/);
  });
});
