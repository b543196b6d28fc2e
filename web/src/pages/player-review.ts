// The player's review panel (administrators, reviewers, the security team): where the review
// stands, marking the recording reviewed or reopening it with a comment, flagging the moment the
// player is at with a note (the flags become markers on the scrub bar and rows in the events
// list), taking a flag back, and the report for auditors.

import { flagMoment, getReview, markReview, reportUrl, unflagMoment, type RecordingEvent, type RecordingReview, type ReviewFlag } from '../api';
import type { Me } from '../api';
import { h, replace } from '../dom';
import { formatClock } from '../model/recording';
import { formatStart } from './recordings-page';
import { errorMessage } from './util';

export interface ReviewPanelOptions {
  me: Me;
  id: string;
  /** The moment the player is at (ms on the recording's clock). */
  positionMs: () => number;
  seekTo: (ms: number) => void;
  /** The recording has not ended yet (it cannot be marked reviewed). */
  isLive: () => boolean;
  /** The flags changed: as events for the timeline. */
  flagsChanged: (asEvents: RecordingEvent[]) => void;
  signal: AbortSignal;
}

/** The flags as timeline events (`type: 'flag'`). */
export function flagEvents(flags: readonly ReviewFlag[]): RecordingEvent[] {
  return flags.map((f) => ({ t_ms: f.t_ms, type: 'flag', note: f.note, by: f.by, flag: f.id }));
}

/** Builds the panel (an aside section) and loads the review. */
export function reviewPanel(o: ReviewPanelOptions): HTMLElement {
  const status = h('p', { id: 'review-status', class: 'review-status' }, 'Loading the review…');
  const error = h('p', { id: 'review-error', class: 'form-error', role: 'alert', hidden: true });
  const comment = h('textarea', { id: 'review-comment', rows: 2, maxlength: 2000, placeholder: 'Comment (what you found)', 'aria-label': 'Review comment' });
  const markBtn = h('button', { id: 'review-mark', type: 'button', class: 'btn btn-small btn-primary' }, 'Mark reviewed');
  const reopenBtn = h('button', { id: 'review-reopen', type: 'button', class: 'btn btn-small' }, 'Reopen');
  const note = h('input', { id: 'flag-note', type: 'text', maxlength: 2000, placeholder: 'What is at this moment', 'aria-label': 'Note for the flagged moment' });
  const flagBtn = h('button', { id: 'flag-add', type: 'button', class: 'btn btn-small' }, 'Flag this moment');
  const flagList = h('ol', { id: 'review-flags', class: 'review-flags' });
  const report = h('a', { id: 'player-report', class: 'btn btn-small', href: reportUrl(o.id), download: true, title: 'Download the session report for auditors (HTML; print it for a PDF)' }, 'Report');

  const fail = (err: unknown) => {
    if (o.signal.aborted) return;
    error.textContent = typeof err === 'string' ? err : errorMessage(err);
    error.hidden = false;
  };
  const show = (r: RecordingReview) => {
    if (o.signal.aborted) return;
    error.hidden = true;
    const last = r.marks[r.marks.length - 1];
    status.textContent = !last
      ? 'Not reviewed.'
      : `${last.state === 'reviewed' ? 'Reviewed' : 'Reopened'} by ${last.by} on ${formatStart(last.at_ms)}${last.comment ? `: ${last.comment}` : ''}`;
    status.dataset.state = last?.state ?? 'none';
    replace(
      flagList,
      ...r.flags.map((f) => {
        const go = h('button', { type: 'button', class: 'link-button mono' }, formatClock(f.t_ms));
        go.addEventListener('click', () => o.seekTo(f.t_ms));
        const row = h('li', { class: 'flag-row', 'data-flag': f.id }, go, ' ', h('span', { class: 'flag-note' }, f.note), h('span', { class: 'muted' }, ` — ${f.by}`));
        if (f.by === o.me.name || o.me.role === 'admin') {
          const remove = h('button', { type: 'button', class: 'btn btn-small flag-remove', 'aria-label': `Take back the flag at ${formatClock(f.t_ms)}` }, 'Remove');
          remove.addEventListener('click', () => {
            remove.disabled = true;
            unflagMoment(o.id, f.id).then(load, (err) => {
              remove.disabled = false;
              fail(err);
            });
          });
          row.append(' ', remove);
        }
        return row;
      }),
    );
    o.flagsChanged(flagEvents(r.flags));
  };
  const load = () => getReview(o.id).then(show, fail);

  const mark = (state: 'reviewed' | 'reopened') => {
    if (state === 'reviewed' && o.isLive()) {
      fail('The session is still being recorded: mark it reviewed once it has ended.');
      return;
    }
    markBtn.disabled = reopenBtn.disabled = true;
    markReview(o.id, state, comment.value)
      .then((r) => {
        comment.value = '';
        show(r);
      }, fail)
      .finally(() => {
        markBtn.disabled = reopenBtn.disabled = false;
      });
  };
  markBtn.addEventListener('click', () => mark('reviewed'));
  reopenBtn.addEventListener('click', () => mark('reopened'));
  const addFlag = () => {
    const text = note.value.trim();
    if (!text) {
      fail('Say what is at this moment first.');
      return;
    }
    flagBtn.disabled = true;
    flagMoment(o.id, Math.floor(o.positionMs()), text)
      .then(() => {
        note.value = '';
        return load();
      }, fail)
      .finally(() => {
        flagBtn.disabled = false;
      });
  };
  flagBtn.addEventListener('click', addFlag);
  note.addEventListener('keydown', (e) => {
    if (e.key === 'Enter') {
      e.preventDefault();
      addFlag();
    }
  });
  void load();

  return h(
    'section',
    { id: 'review-panel', class: 'review-panel card', 'aria-label': 'Review' },
    h('div', { class: 'review-head' }, h('h2', null, 'Review'), h('span', { class: 'toolbar-spacer' }), report),
    status,
    error,
    comment,
    h('div', { class: 'review-actions' }, markBtn, reopenBtn),
    h('div', { class: 'review-actions' }, note, flagBtn),
    flagList,
  );
}
