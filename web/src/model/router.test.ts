import { describe, expect, it } from 'vitest';
import { landingHash, routeParts } from './router';

describe('routeParts', () => {
  it('splits and decodes hash routes', () => {
    expect(routeParts('')).toEqual([]);
    expect(routeParts('#/')).toEqual([]);
    expect(routeParts('#/targets')).toEqual(['targets']);
    expect(routeParts('#/admin/users')).toEqual(['admin', 'users']);
    expect(routeParts('#/session/my%20box')).toEqual(['session', 'my box']);
    expect(routeParts('#/session/a%2Fb')).toEqual(['session', 'a/b']);
    expect(routeParts('#/session/%E2%82%AC')).toEqual(['session', '€']);
    expect(routeParts('#/session/%zz')).toEqual(['session', '%zz']);
  });
});

describe('landingHash', () => {
  it('sends reviewers to the recordings and everyone else to the targets', () => {
    expect(landingHash({ role: 'reviewer' })).toBe('#/recordings');
    expect(landingHash({ role: 'admin' })).toBe('#/targets');
    expect(landingHash({ role: 'user' })).toBe('#/targets');
  });

  it('sends the security team to its console', () => {
    expect(landingHash({ role: 'soc' })).toBe('#/soc');
  });
});

describe('security team routes', () => {
  it('splits the console and watch routes', () => {
    expect(routeParts('#/soc')).toEqual(['soc']);
    expect(routeParts('#/watch/0190a1b2-c3d4')).toEqual(['watch', '0190a1b2-c3d4']);
  });
});

describe('recording routes', () => {
  it('splits the player route', () => {
    expect(routeParts('#/recordings')).toEqual(['recordings']);
    expect(routeParts('#/recordings/0190a1b2-c3d4')).toEqual(['recordings', '0190a1b2-c3d4']);
  });
});
