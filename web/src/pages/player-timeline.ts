// The recording player's timeline: the scrub bar (played and buffered ranges, event markers, hover
// thumbnails, click/drag and keys), the time text, and the events list with its current row.
// Redrawn every animation frame, writing only what changed.

import { thumbnailUrl, type RecordingDetail, type RecordingEvent } from '../api';
import { h, replace } from '../dom';
import { currentEventIndex, describeEvent, eventClasses, formatClock, fractionOf, markers, rangesMs, thumbnailFor, timeAtX } from '../model/recording';
import type { PlayerDom } from './player-dom';

/** Arrow keys on the scrub bar move this far; Page Up/Down ten times as far. */
const KEY_STEP_MS = 5000;

const pct = (f: number): string => `${(f * 100).toFixed(3)}%`;

export interface PlayerTimelineOptions {
  dom: PlayerDom;
  recordingId: string;
  /** The recording's detail as last loaded (thumbnails). */
  detail: () => RecordingDetail;
  /** The events as last loaded, in time order. */
  events: () => RecordingEvent[];
  /** The timeline's length in ms. */
  durationMs: () => number;
  /** A seek asked for in the UI, to this time in ms. */
  seekTo: (ms: number) => void;
  /** The reviewer points at this time in ms (hover): a seek there may follow. */
  pointAt: (ms: number) => void;
  /** Where the player is, or is going, in ms (the arrow keys step from there). */
  positionMs: () => number;
  /** The page goes: stop redrawing. */
  signal: AbortSignal;
}

export class PlayerTimeline {
  private readonly o: PlayerTimelineOptions;
  /** Index of the highlighted event row (-2: none computed yet). */
  private currentRow = -2;
  private eventTimes: number[] = [];
  private eventRows: HTMLElement[] = [];
  private shownEvents = '';
  private dragging = false;
  private dragMs = 0;
  private lastTimeText = '';
  private lastPlayed = '';
  private lastBuffered = '';
  private thumbSeq: number | null = null;
  private raf = 0;

  constructor(options: PlayerTimelineOptions) {
    this.o = options;
    this.renderEvents();
    const frame = () => {
      this.renderTimeline();
      this.raf = window.requestAnimationFrame(frame);
    };
    this.raf = window.requestAnimationFrame(frame);
    options.signal.addEventListener('abort', () => window.cancelAnimationFrame(this.raf));
    this.listen();
  }

  /** The events list and the markers, rebuilt when the duration or the events changed. */
  renderEvents(): void {
    const { dom, seekTo, pointAt } = this.o;
    const events = this.o.events();
    const d = this.o.durationMs();
    const key = `${d}|${events.length}|${events.length ? events[events.length - 1]!.t_ms : ''}`;
    if (key === this.shownEvents) return;
    this.shownEvents = key;
    const ms = markers(events, d);
    replace(
      dom.scrub.markerBox,
      ...ms.map((m) => {
        const el = h('button', { type: 'button', class: `marker ${m.classes}`, 'data-t-ms': m.tMs, title: m.label, 'aria-label': m.label, tabindex: -1 });
        el.style.left = pct(m.fraction);
        el.addEventListener('click', (e) => {
          e.stopPropagation();
          seekTo(m.tMs);
        });
        return el;
      }),
    );
    this.eventTimes = events.map((e) => e.t_ms);
    this.eventRows = events.map((ev) => {
      const full = describeEvent(ev, 4000);
      const row = h(
        'li',
        { class: `event-row ${eventClasses(ev, 'event')}`, 'data-t-ms': ev.t_ms, role: 'button', tabindex: 0, title: `${formatClock(ev.t_ms)} ${full}` },
        h('span', { class: 'event-time mono' }, formatClock(ev.t_ms)),
        h('span', { class: 'event-text' }, describeEvent(ev)),
      );
      const go = () => seekTo(ev.t_ms);
      row.addEventListener('pointerenter', () => pointAt(ev.t_ms));
      row.addEventListener('focus', () => pointAt(ev.t_ms));
      row.addEventListener('click', go);
      row.addEventListener('keydown', (e) => {
        if (e.key === 'Enter' || e.key === ' ') {
          e.preventDefault();
          go();
        }
      });
      return row;
    });
    replace(dom.eventsList, ...this.eventRows);
    dom.eventsNote.textContent = events.length ? '' : 'No events recorded.';
    dom.eventsNote.hidden = events.length > 0;
    this.currentRow = -2;
  }

  /** One animation frame: played part, time text, buffered ranges, current event row. */
  private renderTimeline(): void {
    const { video, timeText } = this.o.dom;
    const { scrub, played, head, bufferedBox } = this.o.dom.scrub;
    const d = this.o.durationMs();
    const cur = this.dragging ? this.dragMs : video.currentTime * 1000;
    const f = pct(fractionOf(cur, d));
    if (f !== this.lastPlayed) {
      this.lastPlayed = f;
      played.style.width = f;
      head.style.left = f;
    }
    const text = `${formatClock(cur)} / ${formatClock(d)}`;
    if (text !== this.lastTimeText) {
      this.lastTimeText = text;
      timeText.textContent = text;
      scrub.setAttribute('aria-valuemax', String(Math.round(d / 1000)));
      scrub.setAttribute('aria-valuenow', String(Math.round(cur / 1000)));
      scrub.setAttribute('aria-valuetext', text);
    }
    let ranges: [number, number][] = [];
    try {
      ranges = rangesMs(video.buffered).map(([s, e]) => [fractionOf(s, d), fractionOf(e, d)]);
    } catch {
      // detached
    }
    const bkey = ranges.map(([s, e]) => `${s.toFixed(4)}-${e.toFixed(4)}`).join(',');
    if (bkey !== this.lastBuffered) {
      this.lastBuffered = bkey;
      replace(
        bufferedBox,
        ...ranges.map(([s, e]) => {
          const el = h('div', { class: 'scrub-range' });
          el.style.left = pct(s);
          el.style.width = pct(Math.max(0, e - s));
          return el;
        }),
      );
    }
    const row = currentEventIndex(this.eventTimes, video.currentTime * 1000);
    if (row !== this.currentRow) {
      if (this.currentRow >= 0) this.eventRows[this.currentRow]?.classList.remove('current');
      if (row >= 0) this.eventRows[row]?.classList.add('current');
      this.currentRow = row;
    }
  }

  /** Shows the hover thumbnail for the time under `clientX`; returns that time in ms. */
  private showThumb(clientX: number): number {
    const { scrub, thumbImg, thumbTime, thumbPop } = this.o.dom.scrub;
    const rect = scrub.getBoundingClientRect();
    const t = timeAtX(clientX, rect.left, rect.width, this.o.durationMs());
    const th = thumbnailFor(this.o.detail().thumbnails, t);
    if (th) {
      if (th.seq !== this.thumbSeq) {
        this.thumbSeq = th.seq;
        thumbImg.src = thumbnailUrl(this.o.recordingId, th.seq);
      }
      thumbImg.hidden = false;
    } else {
      thumbImg.hidden = true;
    }
    thumbTime.textContent = formatClock(t);
    thumbPop.hidden = false;
    const half = thumbPop.offsetWidth / 2;
    const x = Math.min(Math.max(clientX - rect.left, half), Math.max(half, rect.width - half));
    thumbPop.style.left = `${x}px`;
    return t;
  }

  /** The scrub bar: click/drag, hover thumbnails, keyboard. */
  private listen(): void {
    const { scrub, thumbImg, thumbPop } = this.o.dom.scrub;
    const { seekTo, pointAt } = this.o;
    thumbImg.addEventListener('error', () => {
      thumbImg.hidden = true;
    });
    thumbImg.addEventListener('load', () => {
      if (!thumbPop.hidden) thumbImg.hidden = false;
    });
    const onMarker = (e: Event) => e.target instanceof Element && e.target.closest('.marker') !== null;
    scrub.addEventListener('pointerdown', (e) => {
      if (e.button !== 0 || onMarker(e)) return;
      e.preventDefault();
      scrub.focus();
      this.dragging = true;
      this.dragMs = this.showThumb(e.clientX);
      try {
        scrub.setPointerCapture(e.pointerId);
      } catch {
        // synthetic pointer
      }
    });
    scrub.addEventListener('pointermove', (e) => {
      const t = this.showThumb(e.clientX);
      if (this.dragging) this.dragMs = t;
      // Over a marker, its click seeks to the marker's time.
      const marker = e.target instanceof Element ? e.target.closest<HTMLElement>('.marker') : null;
      const markerMs = Number(marker?.dataset.tMs);
      pointAt(marker && Number.isFinite(markerMs) ? markerMs : t);
    });
    scrub.addEventListener('pointerup', (e) => {
      if (!this.dragging) return;
      this.dragging = false;
      seekTo(this.showThumb(e.clientX));
    });
    scrub.addEventListener('pointercancel', () => {
      this.dragging = false;
      thumbPop.hidden = true;
    });
    scrub.addEventListener('pointerleave', () => {
      if (!this.dragging) thumbPop.hidden = true;
    });
    scrub.addEventListener('keydown', (e) => {
      const cur = this.o.positionMs();
      const steps: Record<string, number> = {
        ArrowLeft: cur - KEY_STEP_MS,
        ArrowRight: cur + KEY_STEP_MS,
        PageDown: cur - 10 * KEY_STEP_MS,
        PageUp: cur + 10 * KEY_STEP_MS,
        Home: 0,
        End: this.o.durationMs(),
      };
      const t = steps[e.key];
      if (t === undefined) return;
      e.preventDefault();
      seekTo(t);
    });
  }
}
