import { describe, expect, it } from 'vitest';
import { ACTION_CHOICES, actionFor, choiceTakesBytes, formatPolicy, parseLabels, parsePolicyText, ruleCount, verdictText } from './policy';

describe('actionFor', () => {
  it('maps every choice to the gateway Action JSON', () => {
    expect(actionFor('open_browser')).toEqual({ action: 'open', entry: 'browser' });
    expect(actionFor('open_native')).toEqual({ action: 'open', entry: 'native' });
    expect(actionFor('clipboard_to_target', '42')).toEqual({ action: 'clipboard', direction: 'client_to_target', kind: 'text', bytes: 42 });
    expect(actionFor('clipboard_to_client', ' ')).toEqual({ action: 'clipboard', direction: 'target_to_client', kind: 'text', bytes: 0 });
    expect(actionFor('file_upload')).toEqual({ action: 'file_transfer', direction: 'client_to_target' });
    expect(actionFor('file_download')).toEqual({ action: 'file_transfer', direction: 'target_to_client' });
    expect(actionFor('printing')).toEqual({ action: 'printing' });
    expect(actionFor('audio')).toEqual({ action: 'audio' });
    for (const c of ACTION_CHOICES) expect(() => actionFor(c.value)).not.toThrow();
  });

  it('refuses a size that is not a whole number, and unknown choices', () => {
    expect(() => actionFor('clipboard_to_target', '-1')).toThrow(/whole number/);
    expect(() => actionFor('clipboard_to_target', '1.5')).toThrow(/whole number/);
    expect(() => actionFor('clipboard_to_target', '99999999999999999999')).toThrow(/too large/);
    expect(() => actionFor('teleport')).toThrow(/Unknown action/);
  });

  it('asks for a size only for the clipboard', () => {
    expect(ACTION_CHOICES.filter((c) => choiceTakesBytes(c.value)).map((c) => c.value)).toEqual(['clipboard_to_target', 'clipboard_to_client']);
  });
});

describe('parseLabels', () => {
  it('splits on commas, trims, drops empty ones and repeats', () => {
    expect(parseLabels('')).toEqual([]);
    expect(parseLabels(' prod, db ,,prod, ')).toEqual(['prod', 'db']);
    expect(parseLabels('a b')).toEqual(['a b']); // the gateway says what is wrong with it
  });
});

describe('policy text', () => {
  it('round-trips a document', () => {
    const doc = { groups: { vendors: ['vic'] }, rules: [{ name: 'r', subjects: ['*'], targets: ['*'] }] };
    expect(parsePolicyText(formatPolicy(doc))).toEqual(doc);
    expect(formatPolicy({ rules: [] })).toBe('{\n  "rules": []\n}\n');
  });

  it('explains what is wrong with the text', () => {
    expect(() => parsePolicyText('{"rules": [')).toThrow(/not valid JSON/);
    expect(() => parsePolicyText('[]')).toThrow(/JSON object/);
    expect(() => parsePolicyText('null')).toThrow(/JSON object/);
  });
});

describe('verdictText', () => {
  it('names the rule, or says no rule matched', () => {
    expect(verdictText({ allowed: true, rule: 'ops' })).toBe('Allowed by rule "ops"');
    expect(verdictText({ allowed: false, rule: 'no-vendors' })).toBe('Denied by rule "no-vendors"');
    expect(verdictText({ allowed: false, rule: null })).toBe('Denied: no rule matched (deny by default)');
  });
});

describe('ruleCount', () => {
  it('counts the rules of a document, 0 for anything else', () => {
    expect(ruleCount({ rules: [{}, {}] })).toBe(2);
    expect(ruleCount({ groups: {} })).toBe(0);
    expect(ruleCount(null)).toBe(0);
    expect(ruleCount({ rules: 'x' })).toBe(0);
  });
});
