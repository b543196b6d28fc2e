import { describe, expect, it } from 'vitest';
import type { AccessRequest } from '../api';
import { duration, status } from './requests';

const base: AccessRequest = {
  id: 'req_1', user: 'alice', target: 'db', reason: 'x', duration_secs: 3600, rule: 'r', approvals_needed: 2,
  created_at: 0, decide_by: 0, state: 'pending', approvals: [], remaining_secs: 600, can_decide: false,
};

describe('requests', () => {
  it('says durations shortly', () => {
    expect(duration(40)).toBe('40 s');
    expect(duration(12 * 60 + 5)).toBe('12 min');
    expect(duration(3 * 3600 + 5 * 60)).toBe('3 h 05 min');
    expect(duration(26 * 3600)).toBe('1 d 2 h');
    expect(duration(-5)).toBe('0 s');
  });
  it('says where a request stands', () => {
    expect(status(base)).toBe('waiting: 0 of 2 approvals, 10 min left to decide');
    expect(status({ ...base, state: 'approved', remaining_secs: 90 })).toBe('approved: access for 1 min more');
    expect(status({ ...base, state: 'denied', denial: { by: 'bob', at: 0, comment: 'not now' } })).toBe('denied by bob: not now');
    expect(status({ ...base, state: 'expired', ended: [0, 'nobody decided in time'] })).toBe('expired (nobody decided in time)');
  });
});
