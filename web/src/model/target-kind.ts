// What the admin target form says about a target kind (pure text, no DOM).

import type { TargetKind } from '../api';

/**
 * What the gateway can and cannot promise about a target of this kind, shown when an admin
 * creates one. VNC (RFB) has no server authentication and no channel encryption: whoever takes
 * over the target's address answers for it.
 */
export function kindSecurityNote(kind: TargetKind): string | null {
  if (kind !== 'vnc') return null;
  return (
    'VNC cannot prove who the server is: RFB has no server authentication, so anything that ' +
    "takes over this address is answered as the target and receives the VNC password's " +
    'challenge-response. The password itself never crosses the wire, but VNC authentication ' +
    'is DES challenge-response: a captured exchange can be brute-forced offline. Nothing is ' +
    'encrypted between the gateway and the target. Use VNC only on a network path you trust ' +
    '(the same host, an isolated segment or a tunnel).'
  );
}
