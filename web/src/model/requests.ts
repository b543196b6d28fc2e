// Access requests as the Requests page shows them: the time left, the state in words.

import type { AccessRequest } from '../api';

/** `3 h 05 min`, `12 min`, `40 s`: a duration in seconds, coarse and short. */
export function duration(secs: number): string {
  const s = Math.max(0, Math.floor(secs));
  if (s < 60) return `${s} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min`;
  const h = Math.floor(m / 60);
  const d = Math.floor(h / 24);
  if (d >= 1) return `${d} d ${h % 24} h`;
  return `${h} h ${String(m % 60).padStart(2, '0')} min`;
}

/** Where a request stands, in words: approvals so far, time left. */
export function status(r: AccessRequest): string {
  switch (r.state) {
    case 'pending':
      return `waiting: ${r.approvals.length} of ${r.approvals_needed} approvals, ${duration(r.remaining_secs ?? 0)} left to decide`;
    case 'approved':
      return `approved: access for ${duration(r.remaining_secs ?? 0)} more`;
    case 'denied':
      return `denied by ${r.denial?.by ?? '?'}${r.denial?.comment ? `: ${r.denial.comment}` : ''}`;
    case 'expired':
      return `expired${r.ended ? ` (${r.ended[1]})` : ''}`;
    case 'cancelled':
      return 'withdrawn';
  }
}
