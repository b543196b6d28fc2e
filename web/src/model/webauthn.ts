// Passkeys in the browser: the gateway's WebAuthn options (JSON, binary fields in base64url) turned
// into what navigator.credentials wants, and the browser's answer turned back into JSON.

/** base64url (no padding) → bytes. */
export function fromB64url(text: string): Uint8Array {
  const b64 = text.replace(/-/g, '+').replace(/_/g, '/');
  const padded = b64 + '='.repeat((4 - (b64.length % 4)) % 4);
  const bin = atob(padded);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

/** bytes → base64url (no padding). */
export function toB64url(bytes: ArrayBuffer | Uint8Array): string {
  const u8 = bytes instanceof Uint8Array ? bytes : new Uint8Array(bytes);
  let bin = '';
  for (const b of u8) bin += String.fromCharCode(b);
  return btoa(bin).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

type Json = Record<string, unknown>;
type Descriptor = { type: string; id: string; transports?: string[] };

const descriptors = (list: unknown) =>
  Array.isArray(list) ? (list as Descriptor[]).map((d) => ({ ...d, id: fromB64url(d.id) })) : undefined;

/** The gateway's registration options (`{publicKey: …}`) → `navigator.credentials.create` options. */
export function creationOptions(options: { publicKey: Json }): CredentialCreationOptions {
  const pk = options.publicKey;
  const user = pk.user as Json;
  return {
    publicKey: {
      ...(pk as object),
      challenge: fromB64url(pk.challenge as string),
      user: { ...(user as object), id: fromB64url(user.id as string) },
      excludeCredentials: descriptors(pk.excludeCredentials),
    } as unknown as PublicKeyCredentialCreationOptions,
  };
}

/** The gateway's assertion options (`{publicKey: …}`) → `navigator.credentials.get` options. */
export function requestOptions(options: { publicKey: Json }): CredentialRequestOptions {
  const pk = options.publicKey;
  return {
    publicKey: {
      ...(pk as object),
      challenge: fromB64url(pk.challenge as string),
      allowCredentials: descriptors(pk.allowCredentials),
    } as unknown as PublicKeyCredentialRequestOptions,
  };
}

/** A new credential → the JSON the gateway checks. */
export function registrationJson(cred: PublicKeyCredential): Json {
  const r = cred.response as AuthenticatorAttestationResponse;
  return {
    id: cred.id,
    rawId: toB64url(cred.rawId),
    type: cred.type,
    response: {
      attestationObject: toB64url(r.attestationObject),
      clientDataJSON: toB64url(r.clientDataJSON),
      ...(typeof r.getTransports === 'function' ? { transports: r.getTransports() } : {}),
    },
    extensions: {},
  };
}

/** An assertion → the JSON the gateway checks. */
export function assertionJson(cred: PublicKeyCredential): Json {
  const r = cred.response as AuthenticatorAssertionResponse;
  return {
    id: cred.id,
    rawId: toB64url(cred.rawId),
    type: cred.type,
    response: {
      authenticatorData: toB64url(r.authenticatorData),
      clientDataJSON: toB64url(r.clientDataJSON),
      signature: toB64url(r.signature),
      userHandle: r.userHandle ? toB64url(r.userHandle) : null,
    },
    extensions: {},
  };
}
