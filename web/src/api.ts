// The gateway's HTTP API (docs/browser-protocol.md, "HTTP API").

import type { PolicyAction } from './model/policy';

export interface Me {
  name: string;
  role: string;
  /** Two-factor authentication (TOTP) is on. */
  mfa?: boolean;
  /** The role requires two-factor authentication. */
  mfa_required_by_role?: boolean;
  /** This login may only set up two-factor authentication (the role requires it): `#/me`. */
  mfa_enrol_required?: boolean;
  /** TOTP (a code from an app) is on. */
  totp?: boolean;
  /** Passkeys registered. */
  passkeys?: number;
  /** The role requires a passkey (phishing-resistant). */
  passkey_required_by_role?: boolean;
}

/** A registered passkey. */
export interface PasskeyInfo {
  id: string;
  name: string;
  created_at: number;
  last_used_at: number;
}
export const listPasskeys = () =>
  api<{ passkeys: PasskeyInfo[]; required_by_role: boolean; available: boolean }>('GET', '/me/passkeys');
export const passkeyOptions = () => api<{ publicKey: Record<string, unknown> }>('POST', '/me/passkeys/options');
/** Proof of a second factor the caller has, to change their passkeys: a code from the app or a passkey's assertion. */
export interface SecondFactorProof {
  code?: string;
  credential?: unknown;
}
export const passkeyProofOptions = () => api<{ publicKey: Record<string, unknown> }>('POST', '/me/passkeys/proof');
export const addPasskey = (name: string, credential: unknown, proof?: SecondFactorProof) =>
  api<{ id: string; name: string }>('POST', '/me/passkeys', { name, credential, proof });
export const removePasskey = (id: string, proof?: SecondFactorProof) => api<null>('DELETE', `/me/passkeys/${seg(id)}`, { proof });
export const passkeyLoginOptions = () => api<{ publicKey: Record<string, unknown> }>('POST', '/auth/mfa/passkey/options');
export const passkeyLogin = (credential: unknown) => api<Me>('POST', '/auth/mfa/passkey', { credential });

/** `POST /auth/login`: the user, or the word that a code must follow (`POST /auth/mfa`). */
export type LoginAnswer = Me | { mfa_required: true };

/** `POST /me/mfa/enrol`: the new secret, shown this once. */
export interface MfaEnrolment {
  secret: string;
  otpauth_uri: string;
  /** The QR code of `otpauth_uri`, as an SVG document. */
  qr_svg: string;
  digits: number;
  period: number;
}

/** An API token as `GET /tokens` lists it (never its secret). */
export interface ApiToken {
  id: string;
  user: string;
  name: string;
  scopes: string[];
  created_at: number;
  expires_at: number;
  created_by: string;
  expired: boolean;
}

export interface Target {
  name: string;
  kind: string;
  description?: string | null;
  /** Only admins see it. */
  address?: string | null;
  /** RDP: the account the gateway logs in with (`user` or `DOMAIN\user`). Only admins see it. */
  account?: string | null;
  /** Labels the policy refers to (`label:prod`). Only admins see them. */
  labels?: string[];
  /** RDP: what the gateway knows of the target's identity. Only admins see it. */
  identity?: TargetIdentity;
}

/** An RDP target's identity: checked before any credential is sent to it. */
export interface TargetIdentity {
  /** SHA-256 of the certificate it must present; null: pinned at the next connection. */
  tls_sha256: string | null;
  /** It did NLA before: answering without NLA is refused as a downgrade. */
  nla_seen: boolean;
  /** It must select NLA. */
  require_nla: boolean;
  /** The certificate last refused (not the pinned one), for an admin to accept. */
  refused_sha256: string | null;
  /** The last connection was refused because the target answered without NLA. */
  refused_downgrade: boolean;
  /** Verified against this CA bundle and the address's host name instead of the pin. */
  tls_ca_file?: string | null;
}

/** The body of `POST /api/v1/targets`. `account` only for RDP (empty or absent for VNC). */
export interface NewTarget {
  name: string;
  kind: TargetKind;
  address: string;
  account?: string;
  password: string;
  description?: string;
  labels?: string[];
}

export type TargetKind = 'vnc' | 'rdp';

export interface User {
  name: string;
  role: string;
  /** Locked by the security team: no login, no session until unlocked. */
  locked?: boolean;
  /** Two-factor authentication is on. */
  mfa?: boolean;
  /** The identity provider the account signs in with (no password), and its groups there. */
  sso?: string;
  groups?: string[];
}

export interface Grant {
  user: string;
  target: string;
}

export interface SessionInfo {
  id: string;
  user: string;
  target: string;
  client_addr: string;
  started_at: string;
  state: string;
  /** `browser` or `rdp` (a native client). */
  entry?: string;
  /** The security team holds the user's input. */
  frozen?: boolean;
  /** The session's risk score so far (0 to 100): the risk rules that fired, each once. */
  risk_score?: number;
  /** The risk rules that fired, in order. */
  risk_rules?: string[];
  /** Clipboard text that crossed so far (either way), bytes. */
  clipboard_bytes?: number;
  /** Files that crossed so far (either way), bytes. */
  file_bytes?: number;
}

/** A session recording (docs/browser-protocol.md, "Recordings"). */
export interface Recording {
  id: string;
  user: string;
  target: string;
  client_addr: string;
  started_at_ms: number;
  ended_at_ms: number | null;
  duration_ms: number;
  /** `recording` (live), `complete` or `incomplete`. */
  state: string;
  bytes: number;
  end_reason: string | null;
  /** The session's risk score (0 to 100). */
  risk_score?: number;
  /** The risk rules that fired. */
  risk_rules?: string[];
  /** Where the review stands (admins, reviewers and the security team only). */
  review?: { state: 'reviewed' | 'reopened'; by: string; at_ms: number } | null;
  /** How many moments were flagged (admins, reviewers and the security team only). */
  flags?: number;
}

/** A reviewer's mark on a whole recording. */
export interface ReviewMark {
  state: 'reviewed' | 'reopened';
  by: string;
  at_ms: number;
  comment: string;
}

/** A moment a reviewer flagged. */
export interface ReviewFlag {
  id: string;
  t_ms: number;
  note: string;
  by: string;
  at_ms: number;
}

/** Where a recording's review stands: the mark in force (reviewed) or null, every mark, the flags by time. */
export interface RecordingReview {
  recording: string;
  reviewed: ReviewMark | null;
  marks: ReviewMark[];
  flags: ReviewFlag[];
}

export interface InitInfo {
  part: number;
  seq: number;
  width: number;
  height: number;
  codec: string;
}

export interface SegmentInfo {
  seq: number;
  part: number;
  start_ms: number;
  end_ms: number;
  /** Starts with a key frame: playback and seeks start from one. */
  key: boolean;
}

export interface ThumbnailInfo {
  seq: number;
  t_ms: number;
}

export interface RecordingDetail {
  recording: Recording;
  /** The first part's codec; null before the first init segment. */
  codec: string | null;
  inits: InitInfo[];
  segments: SegmentInfo[];
  thumbnails: ThumbnailInfo[];
  /** How long it is kept (admins, reviewers, the security team): until (Unix ms; null: for ever or still recording), the deciding `[[retention]]` entry (null: the gateway's default), its days. */
  keep?: { until_ms: number | null; rule: string | null; days: number };
}

/** One entry of the event track; the other fields depend on `type`. */
export interface RecordingEvent {
  t_ms: number;
  type: string;
  [field: string]: unknown;
}

/** A failed API call: `message` is the gateway's `error` text when it gave one. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
    this.name = 'ApiError';
  }
}

let unauthorized: () => void = () => {};

/** Called on every 401 (except a failed login): the app goes to the login page. */
export function onUnauthorized(fn: () => void): void {
  unauthorized = fn;
}

const BASE = '/api/v1';

/** Percent-encodes one path segment. */
export const seg = (s: string): string => encodeURIComponent(s);

async function errorText(res: Response): Promise<string> {
  try {
    const body: unknown = await res.json();
    if (typeof body === 'object' && body !== null && 'error' in body) {
      const e = (body as { error: unknown }).error;
      if (typeof e === 'string' && e !== '') return e;
    }
  } catch {
    // not JSON
  }
  return `The gateway answered ${res.status}${res.statusText ? ` ${res.statusText}` : ''}.`;
}

function checkUnauthorized(res: Response, path: string): void {
  if (res.status === 401 && path !== '/auth/login' && !path.startsWith('/auth/mfa')) unauthorized();
}

/** Sends one API request; rejects with an ApiError when it fails or the answer is not 2xx. */
async function send(method: string, path: string, body: unknown, accept: string): Promise<Response> {
  const headers: Record<string, string> = { accept };
  const changing = method !== 'GET' && method !== 'HEAD';
  if (changing) {
    headers['x-portcullis-csrf'] = '1';
    headers['content-type'] = 'application/json';
  }
  let res: Response;
  try {
    res = await fetch(BASE + path, {
      method,
      headers,
      credentials: 'same-origin',
      cache: 'no-store',
      body: changing ? JSON.stringify(body ?? {}) : undefined,
    });
  } catch {
    throw new ApiError(0, 'Cannot reach the gateway. Check your network connection and try again.');
  }
  if (!res.ok) {
    const message = await errorText(res);
    checkUnauthorized(res, path);
    throw new ApiError(res.status, message);
  }
  return res;
}

/** One API call. Resolves to the parsed JSON answer (null for 204). */
export async function api<T>(method: string, path: string, body?: unknown): Promise<T> {
  const res = await send(method, path, body, 'application/json');
  if (res.status === 204) return null as T;
  const text = await res.text();
  if (text === '') return null as T;
  try {
    return JSON.parse(text) as T;
  } catch {
    throw new ApiError(res.status, 'The gateway sent an answer that is not JSON.');
  }
}

export const getMe = () => api<Me>('GET', '/me');
export const login = (username: string, password: string) =>
  api<LoginAnswer>('POST', '/auth/login', { username, password });
/** The second login step: the code from the authenticator app. */
export const loginCode = (code: string) => api<Me>('POST', '/auth/mfa', { code });
export const enrolMfa = () => api<MfaEnrolment>('POST', '/me/mfa/enrol');
export const confirmMfa = (code: string, proof?: SecondFactorProof) =>
  api<{ mfa: boolean; recovery_codes: string[] }>('POST', '/me/mfa/confirm', { code, proof });
/** A new set of recovery codes (shown once) for a code from the app now. */
export const newRecoveryCodes = (code: string) => api<{ recovery_codes: string[] }>('POST', '/me/mfa/recovery-codes', { code });
export const resetMfa = (name: string) => api<null>('DELETE', `/users/${seg(name)}/mfa`);
export const listTokens = () => api<ApiToken[]>('GET', '/tokens');
export const revokeToken = (id: string) => api<null>('DELETE', `/tokens/${seg(id)}`);
/** A scope an API token may have, as `GET /tokens/scopes` lists it. */
export interface TokenScope {
  name: string;
  /** What the scope allows, for people. */
  description: string;
}
/** Every scope a token may have, in the gateway's order. */
export const listTokenScopes = () => api<{ scopes: TokenScope[] }>('GET', '/tokens/scopes');
/** What `POST /tokens` asks for. */
export interface NewToken {
  user: string;
  name: string;
  scopes: string[];
  expires_in_days: number;
}
/** The new token, with its secret (shown this once). */
export const createToken = (t: NewToken) => api<ApiToken & { token: string }>('POST', '/tokens', t);
/** Logs out; a login made through an identity provider answers where its sign-out is. */
export const logout = () => api<{ logout_url?: string } | null>('POST', '/auth/logout');

/** A request for access to a target (just in time). */
export interface AccessRequest {
  id: string;
  user: string;
  target: string;
  reason: string;
  ticket?: string;
  duration_secs: number;
  rule: string;
  approvals_needed: number;
  created_at: number;
  decide_by: number;
  state: 'pending' | 'approved' | 'denied' | 'expired' | 'cancelled';
  approvals: { by: string; at: number; comment: string }[];
  denial?: { by: string; at: number; comment: string };
  grant_until?: number;
  ended?: [number, string];
  remaining_secs: number | null;
  can_decide: boolean;
  /** The caller may take it back (not their own: an administrator, the security team, an approver). */
  can_revoke?: boolean;
}
export interface Requestable {
  target: string;
  rule: string;
  approvers: string[];
  approvals: number;
  max_duration_secs: number;
}
export const listRequests = () => api<{ requests: AccessRequest[] }>('GET', '/requests');
export const requestableTargets = () => api<{ targets: Requestable[] }>('GET', '/requests/targets');
export const createRequest = (body: { target: string; duration_secs: number; reason: string; ticket?: string }) =>
  api<AccessRequest>('POST', '/requests', body);
export const decideRequest = (id: string, verdict: 'approve' | 'deny', comment: string) =>
  api<AccessRequest>('POST', `/requests/${seg(id)}/${verdict}`, { comment });
export const cancelRequest = (id: string) => api<AccessRequest>('POST', `/requests/${seg(id)}/cancel`);
export interface RequestSettings {
  webhook_url: string | null;
  webhook_secret_set: boolean;
  decide_within_secs: number;
}
export const getRequestSettings = () => api<RequestSettings>('GET', '/requests/settings');
export const putRequestSettings = (body: { webhook_url: string | null; webhook_secret?: string; decide_within_secs: number }) =>
  api<RequestSettings>('PUT', '/requests/settings', body);

/** An identity provider the sign-in page offers. */
export interface SsoButton {
  id: string;
  display_name: string;
}
export const ssoProviders = () => api<{ providers: SsoButton[] }>('GET', '/auth/sso/providers');
/** Server-sent session changes for the SOC console (`EventSource`). */
export const sessionChangesUrl = `${BASE}/sessions/events`;
/** Where a browser starts a single sign-on at provider `id` (a navigation, not a fetch). */
export const ssoStartUrl = (id: string) => `${BASE}/auth/sso/${seg(id)}/start`;

export type RoleName = 'admin' | 'reviewer' | 'soc' | 'user';
/** One OpenID Connect provider, as administrators see it (never its secret). */
export interface SsoProvider {
  id: string;
  display_name: string;
  issuer: string;
  client_id: string;
  scopes: string[];
  username_claim: string;
  groups_claim: string;
  role_mapping: { group: string; role: RoleName }[];
  default_role: RoleName | null;
  client_secret_set: boolean;
}
export interface SsoSettings {
  public_url: string | null;
  required_for_roles: RoleName[];
  passkey_required_for_roles: RoleName[];
  /** Register this with each provider. */
  redirect_uri: string | null;
  providers: SsoProvider[];
}
export const getSsoSettings = () => api<SsoSettings>('GET', '/sso/settings');
export const putSsoSettings = (public_url: string | null, required_for_roles: RoleName[], passkey_required_for_roles: RoleName[]) =>
  api<SsoSettings>('PUT', '/sso/settings', { public_url, required_for_roles, passkey_required_for_roles });
export const putSsoProvider = (
  id: string,
  body: Omit<SsoProvider, 'id' | 'client_secret_set'> & { client_secret?: string },
) => api<SsoSettings>('PUT', `/sso/providers/${seg(id)}`, body);
export const deleteSsoProvider = (id: string) => api<null>('DELETE', `/sso/providers/${seg(id)}`);
export const testSsoProvider = (id: string) =>
  api<{ ok: boolean; error?: string }>('GET', `/sso/providers/${seg(id)}/test`);

export const listTargets = () => api<Target[]>('GET', '/targets');
export const createTarget = (t: NewTarget) =>
  api<Target>('POST', '/targets', t);
export const deleteTarget = (name: string) => api<null>('DELETE', `/targets/${seg(name)}`);
/** Pins an RDP target's certificate ahead of time (null: forget it) and/or sets `require_nla`. */
export const setTargetIdentity = (name: string, body: { tls_sha256?: string | null; require_nla?: boolean }) =>
  api<Target>('PUT', `/targets/${seg(name)}/identity`, body);
/** After a refusal: accepts the target's new certificate and/or its answering without NLA. */
export const acceptTargetIdentity = (name: string, body: { sha256?: string; allow_without_nla?: boolean }) =>
  api<Target>('POST', `/targets/${seg(name)}/identity/accept`, body);
/** A one-time `.rdp` file and the one-time password the RDP client will ask for. */
export async function rdpFile(name: string): Promise<{ file: Blob; password: string }> {
  const res = await send('POST', `/targets/${seg(name)}/rdp-file`, undefined, '*/*');
  const password = res.headers.get('x-portcullis-rdp-password') ?? '';
  try {
    return { file: await res.blob(), password };
  } catch {
    throw new ApiError(0, 'The connection to the gateway broke while downloading the file.');
  }
}

export const listUsers = () => api<User[]>('GET', '/users');
export const createUser = (u: { name: string; password: string; role: string }) => api<User>('POST', '/users', u);
export const deleteUser = (name: string) => api<null>('DELETE', `/users/${seg(name)}`);

export const listGrants = () => api<Grant[]>('GET', '/grants');
export const createGrant = (g: Grant) => api<Grant>('POST', '/grants', g);
export const deleteGrant = (g: Grant) => api<null>('DELETE', `/grants/${seg(g.user)}/${seg(g.target)}`);

/** `GET /policy`: the document (portcullis-policy `PolicyDoc`) and the file managing it, if any. */
export interface PolicyInfo {
  policy: unknown;
  managed_by_file: string | null;
  /** What will not work as meant with the accounts there are now (e.g. a four-eyes rule nobody can observe). */
  warnings?: string[];
}

/** One rule as an explanation saw it. */
export interface RuleCheck {
  index: number;
  rule: string;
  subject: string | null;
  target: string | null;
  matched: boolean;
  note: string;
}

/** `POST /policy/explain`'s answer (portcullis-policy `Explanation` + `has_grant`). */
export interface Explanation {
  user: string;
  role: string;
  groups: string[];
  target: string;
  labels: string[];
  action: PolicyAction;
  at_unix_secs: number;
  at: string;
  allowed: boolean;
  rule: string | null;
  reason: string | null;
  message: string;
  considered: RuleCheck[];
  grant: unknown;
  /** Whether the user has a grant for the target (checked too when a session opens). */
  has_grant: boolean;
  /** The identity provider's groups of the user (single sign-on). */
  sso_groups?: string[];
  /** The deciding rule gives access by approved request only: who approves, how many, how long. */
  request?: { rule: string; approvers: string[]; approvals: number; max_duration_secs: number };
  /** What access the user holds: a grant, or (request-only rules) the request approved now. */
  access?: {
    by: 'grant' | 'request';
    has_grant?: boolean;
    request?: { id: string; approved_by: string[]; until: number | null } | null;
    opens: boolean;
  };
}

export const getPolicy = () => api<PolicyInfo>('GET', '/policy');
export const putPolicy = (doc: unknown) => api<PolicyInfo>('PUT', '/policy', doc);
export const explainPolicy = (q: { user: string; target: string; action: PolicyAction; at?: number }) =>
  api<Explanation>('POST', '/policy/explain', q);

export const listSessions = () => api<SessionInfo[]>('GET', '/sessions');
export const closeSession = (id: string) => api<null>('DELETE', `/sessions/${seg(id)}`);

// The security team's controls (roles soc and admin).
export const killSession = (id: string, reason: string) => api<null>('POST', `/sessions/${seg(id)}/kill`, { reason });
export const freezeSession = (id: string) => api<null>('POST', `/sessions/${seg(id)}/freeze`);
export const unfreezeSession = (id: string) => api<null>('POST', `/sessions/${seg(id)}/unfreeze`);
export const lockUser = (name: string, reason: string) => api<null>('POST', `/users/${seg(name)}/lock`, { reason });
export const unlockUser = (name: string) => api<null>('POST', `/users/${seg(name)}/unlock`);

/**
 * The live thumbnail of a session (`GET /sessions/{id}/thumbnail`, JPEG), or null when the session
 * is gone or has no picture yet (404). Rejects with an ApiError, or the abort error.
 */
export async function sessionThumbnail(id: string, signal: AbortSignal): Promise<Blob | null> {
  const url = `${BASE}/sessions/${seg(id)}/thumbnail`;
  let res: Response;
  try {
    res = await fetch(url, { credentials: 'same-origin', cache: 'no-store', signal });
  } catch (err) {
    if (signal.aborted) throw err;
    throw new ApiError(0, 'Cannot reach the gateway. Check your network connection and try again.');
  }
  if (res.status === 404) return null;
  if (!res.ok) {
    const message = await errorText(res);
    checkUnauthorized(res, url);
    throw new ApiError(res.status, message);
  }
  return res.blob();
}

export const recordingsPath = (id: string): string => `${BASE}/recordings/${seg(id)}`;
export const initUrl = (id: string, part: number): string => `${recordingsPath(id)}/init/${part}`;
export const segmentUrl = (id: string, seq: number): string => `${recordingsPath(id)}/segments/${seq}`;
/** Media segments `from`..=`to` (manifest seqs) of one part, back to back, in one response. */
export const runUrl = (id: string, from: number, to: number): string => `${recordingsPath(id)}/run/${from}/${to}`;
export const thumbnailUrl = (id: string, seq: number): string => `${recordingsPath(id)}/thumbnails/${seq}`;
export const exportUrl = (id: string): string => `${recordingsPath(id)}/export`;
/** The session's report for auditors (HTML, downloaded). */
export const reportUrl = (id: string): string => `${recordingsPath(id)}/report`;
export const getReview = (id: string) => api<RecordingReview>('GET', `/recordings/${seg(id)}/review`);
export const markReview = (id: string, state: 'reviewed' | 'reopened', comment: string) =>
  api<RecordingReview>('POST', `/recordings/${seg(id)}/review`, { state, comment });
export const flagMoment = (id: string, tMs: number, note: string) => api<ReviewFlag>('POST', `/recordings/${seg(id)}/flags`, { t_ms: tMs, note });
export const unflagMoment = (id: string, flag: string) => api<null>('DELETE', `/recordings/${seg(id)}/flags/${seg(flag)}`);

/** `query` is '' or `?…` (see `recordingsQuery`). */
export const listRecordings = (query: string) => api<Recording[]>('GET', `/recordings${query}`);
export const getRecording = (id: string) => api<RecordingDetail>('GET', `/recordings/${seg(id)}`);

/** A word read off the screen and its box, in desktop pixels. */
export interface WordBox {
  word: string;
  x: number;
  y: number;
  w: number;
  h: number;
}
/** A place in a recording where searched words were found. */
export interface SearchHit {
  recording: string;
  user: string;
  target: string;
  entry: string;
  kind: 'typed' | 'clipboard' | 'file' | 'screen';
  at_ms: number;
  t_ms: number;
  fragment: string;
  /** Byte ranges of `fragment` (UTF-8) that matched. */
  highlights: [number, number][];
  boxes: WordBox[];
  thumbnail_seq: number | null;
  desktop: { width: number; height: number } | null;
}
export interface SearchFilters {
  q: string;
  user?: string;
  target?: string;
  kind?: string;
  from?: number;
  to?: number;
}
export const searchRecordings = (f: SearchFilters) => {
  const params = new URLSearchParams();
  for (const [k, v] of Object.entries(f)) if (v !== undefined && v !== '') params.set(k, String(v));
  return api<{ hits: SearchHit[]; took_ms: number; indexed: number | null }>('GET', `/search?${params}`);
};
export const getRecordingEvents = (id: string) => api<RecordingEvent[]>('GET', `/recordings/${seg(id)}/events`);

/**
 * Fetches binary data (a media segment) from an absolute `/api/v1/…` URL. Rejects with an ApiError
 * (401 → login page), or with the abort error when `signal` fires.
 */
export async function fetchBytes(url: string, signal: AbortSignal): Promise<ArrayBuffer> {
  let res: Response;
  try {
    // Segments never change once listed: the browser may cache them if the gateway allows it.
    res = await fetch(url, { credentials: 'same-origin', signal });
  } catch (err) {
    if (signal.aborted) throw err;
    throw new ApiError(0, 'Cannot reach the gateway. Check your network connection and try again.');
  }
  if (!res.ok) {
    const message = await errorText(res);
    checkUnauthorized(res, url);
    throw new ApiError(res.status, message);
  }
  try {
    return await res.arrayBuffer();
  } catch (err) {
    if (signal.aborted) throw err;
    throw new ApiError(0, 'The connection to the gateway broke while loading the recording.');
  }
}

// The audit trail (roles soc and admin).

/** One record of the tamper-evident audit trail, as `GET /audit` returns it. */
export interface AuditEntry {
  /** Position in the trail: 1 for the first record. */
  seq: number;
  /** When the gateway accepted it (Unix ms). */
  ts_ms: number;
  /** The hash of the record before it (64 hex digits). */
  prev: string;
  /** SHA-256 of this record's canonical bytes (64 hex digits). */
  hash: string;
  kind: string;
  /** Who acted: a user name, or `system`. */
  actor: string;
  target?: string | null;
  session?: string | null;
  /** Depends on `kind` (reason, address, before/after, …). */
  detail?: Record<string, unknown> | null;
}

/** `GET /audit`: a page of records, newest first; `next_before_seq` continues to older ones. */
export interface AuditPage {
  entries: AuditEntry[];
  next_before_seq: number | null;
}

/** `GET /audit/verify`: the whole chain checked now. */
export type AuditVerify =
  | {
      ok: true;
      records: number;
      files: number;
      last_seq: number | null;
      last_hash: string;
      /** False when records were sealed as found: no seal made when they were written vouches for them. */
      vouched?: boolean;
      /** Why not vouched for. */
      warning?: string | null;
    }
  | { ok: false; error: string };

/** `query` is '' or `?…` (see `auditQuery`). */
export const listAudit = (query: string) => api<AuditPage>('GET', `/audit${query}`);
export const verifyAudit = () => api<AuditVerify>('GET', '/audit/verify');
