import { describe, expect, it } from 'vitest';
import { landingHash, routeParts } from './router';
import { connectUrl } from './pages/session';

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

describe('connectUrl', () => {
  it('uses wss on https and ws on http, encoding the name', () => {
    expect(connectUrl({ protocol: 'https:', host: 'gw.example:8443' }, 'web 1')).toBe(
      'wss://gw.example:8443/api/v1/targets/web%201/connect',
    );
    expect(connectUrl({ protocol: 'http:', host: '127.0.0.1:8080' }, 'a/b')).toBe(
      'ws://127.0.0.1:8080/api/v1/targets/a%2Fb/connect',
    );
  });

  it('appends the wished desktop size as width and height', () => {
    expect(connectUrl({ protocol: 'https:', host: 'gw.example' }, 'rdp box', { width: 1120, height: 900 })).toBe(
      'wss://gw.example/api/v1/targets/rdp%20box/connect?width=1120&height=900',
    );
    expect(connectUrl({ protocol: 'http:', host: 'h:1' }, 'a?b', { width: 640, height: 480 })).toBe(
      'ws://h:1/api/v1/targets/a%3Fb/connect?width=640&height=480',
    );
    expect(connectUrl({ protocol: 'http:', host: 'h:1' }, 'x', undefined)).toBe('ws://h:1/api/v1/targets/x/connect');
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
