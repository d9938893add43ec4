// One queued video: its upload (tus, tus.js: resumable, with upload progress), the job's progress
// (polled with If-None-Match, backing off, honouring Retry-After), then the MP4, fetched with the
// bearer header into a Blob that the <video> plays and the download link saves.

import {
  describeApiError,
  describeFailure,
  describeQueue,
  describeRetryWait,
  formatBytes,
  formatClock,
  parseRetryAfter,
} from './messages.js';
import { FileUpload } from './tus.js';

const POLL_FIRST_MS = 500;
const POLL_MAX_MS = 5000;
const TERMINAL = new Set(['succeeded', 'failed', 'canceled', 'expired']);

let rowCount = 0;

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

function parseJson(text) {
  try {
    return JSON.parse(text);
  } catch {
    return null;
  }
}

export class Row {
  /**
   * blob: the video; name: its file name; hooks: {credential(row) -> {kind, value} | {error},
   * release(row, used), enqueue(row), limit}
   */
  constructor(blob, name, hooks) {
    rowCount += 1;
    this.blob = blob;
    this.name = name;
    this.hooks = hooks;
    this.state = 'new';
    this.el = document.getElementById('row-template').content.firstElementChild.cloneNode(true);
    const q = (sel) => this.el.querySelector(sel);
    this.ui = {
      name: q('.row-name'),
      upload: q('.upload-progress'),
      uploadDetail: q('.upload-detail'),
      job: q('.job-progress'),
      jobDetail: q('.job-detail'),
      status: q('.row-status'),
      cancel: q('.cancel'),
      retry: q('.retry'),
      result: q('.result'),
      player: q('.player'),
      download: q('.download'),
    };
    for (const label of this.el.querySelectorAll('label[data-for]')) {
      const id = `${label.dataset.for}-${rowCount}`;
      this.el.querySelector(`progress[data-id="${label.dataset.for}"]`).id = id;
      label.htmlFor = id;
    }
    this.el.id = `video-${rowCount}`;
    this.ui.name.textContent = blob ? `${name} (${formatBytes(blob.size)})` : `${name} (recording)`;
    this.ui.player.setAttribute('aria-label', `Converted video: ${name}`);
    this.ui.cancel.addEventListener('click', () => this.cancel());
    this.ui.retry.addEventListener('click', () => this.retry());
  }

  setStatus(text, state) {
    if (state) {
      this.state = state;
      this.el.classList.remove('failed', 'succeeded', 'canceled');
      if (['failed', 'succeeded', 'canceled'].includes(state)) this.el.classList.add(state);
      this.el.dataset.state = state;
    }
    if (this.ui.status.textContent !== text) this.ui.status.textContent = text;
  }

  /** Waits in the upload queue (uploads run one at a time). */
  queue() {
    this.ui.upload.value = 0;
    this.ui.job.value = 0;
    this.ui.uploadDetail.textContent = '';
    this.ui.jobDetail.textContent = '';
    this.ui.retry.hidden = true;
    this.ui.cancel.hidden = false;
    this.job = null;
    this.etag = null;
    const limit = this.hooks.limit;
    if (limit && this.blob.size > limit) {
      this.fail(describeApiError('payload_too_large', null, { name: this.name, size: this.blob.size, limit }));
      return;
    }
    this.setStatus('Waiting to upload…', 'waiting');
    this.hooks.enqueue(this);
  }

  /**
   * Uploads with tus (tus.js `FileUpload`): resumes by itself after a dropped connection.
   * Resolves when the upload has ended, whatever its outcome.
   */
  async upload() {
    if (this.state !== 'waiting') return;
    const credential = this.hooks.credential(this);
    if (credential.error) {
      this.fail({ text: credential.error, retry: true });
      return;
    }
    this.credential = credential;
    this.setStatus(`Uploading ${this.name}…`, 'uploading');
    const started = performance.now();
    const samples = [];
    let created = false;
    this.transfer = new FileUpload(this.blob, this.name, credential, {
      created: (job) => {
        created = true;
        this.job = job;
        this.jobUrl = `/v1/jobs/${job.id}`;
      },
      progress: (loaded, total) => {
        const now = performance.now();
        samples.push([now, loaded]);
        while (samples.length > 2 && now - samples[0][0] > 3000) samples.shift();
        this.showUpload(loaded, total, samples, now - started);
      },
      resumed: () => {
        this.ui.uploadDetail.textContent = 'Connection lost: resuming where the server stopped…';
        this.el.dataset.resumed = 'true';
      },
    });
    try {
      await this.transfer.run();
    } catch (err) {
      this.transfer = null;
      this.hooks.release(this, created || err.status === 401);
      if (err.aborted) {
        this.setStatus(`Upload of ${this.name} canceled.`, 'canceled');
        this.offerRetry(true);
      } else if (err.status) {
        this.ui.uploadDetail.textContent = `Refused by the server (HTTP ${err.status})`;
        this.failWith(err.status, err.body, err.retryAfter);
      } else {
        this.fail(describeApiError('network', null, { name: this.name }));
      }
      return;
    }
    this.transfer = null;
    this.hooks.release(this, true);
    this.showUpload(this.blob.size, this.blob.size, [], performance.now() - started);
    this.ui.uploadDetail.textContent = `Uploaded ${formatBytes(this.blob.size)}`;
    if (this.job) this.showJob({ ...this.job, status: 'queued' });
    this.poll();
  }

  /**
   * A recording sent while it is made (tus.js `LiveUpload`): the row follows its job from the
   * first bytes on, so it shows the conversion during the recording. False: no credential.
   */
  startLive(live) {
    const credential = this.hooks.credential(this);
    if (credential.error) {
      this.fail({ text: credential.error, retry: false });
      return false;
    }
    this.credential = credential;
    this.live = live;
    this.setStatus(`Recording ${this.name}…`, 'uploading');
    live.hooks = {
      created: (_location, job) => {
        this.jobUrl = `/v1/jobs/${job.id}`;
        this.showJob(job);
        this.poll();
      },
      sent: (bytes) => {
        this.ui.uploadDetail.textContent = `Sent ${formatBytes(bytes)} so far`;
      },
      resumed: () => {
        this.ui.uploadDetail.textContent = 'Connection lost: resuming where the server stopped…';
      },
      failed: (err) => {
        if (this.state !== 'canceled') this.failWith(err.status, err.body, err.retryAfter);
      },
    };
    live.start(credential);
    return true;
  }

  /** The recording stopped: its last chunk goes out with the length. */
  async finishLive(blob) {
    this.blob = blob;
    this.ui.name.textContent = `${this.name} (${formatBytes(blob.size)})`;
    try {
      await this.live.end();
    } catch {
      return; // `failed` said why
    }
    this.hooks.release(this, true);
    this.ui.upload.value = 100;
    this.ui.uploadDetail.textContent = `Uploaded ${formatBytes(blob.size)}`;
    if (this.job) this.showJob(this.job);
  }

  showUpload(loaded, total, samples, elapsedMs) {
    const percent = total > 0 ? Math.min(100, (loaded / total) * 100) : 0;
    this.ui.upload.value = percent;
    let speed = 0;
    if (samples.length >= 2) {
      const [t0, b0] = samples[0];
      const [t1, b1] = samples[samples.length - 1];
      speed = t1 > t0 ? ((b1 - b0) * 1000) / (t1 - t0) : 0;
    } else if (elapsedMs > 0) {
      speed = (loaded * 1000) / elapsedMs;
    }
    const parts = [`${Math.floor(percent)} %`, `${formatBytes(loaded)} of ${formatBytes(total)}`];
    if (speed > 0) {
      parts.push(`${formatBytes(speed)}/s`);
      if (loaded < total) parts.push(`about ${formatClock((total - loaded) / speed)} left`);
    }
    this.ui.uploadDetail.textContent = parts.join(' · ');
  }

  showJob(job) {
    this.job = job;
    const percent = job.status === 'succeeded' ? 100 : Math.round((job.progress ?? 0) * 100);
    this.ui.job.value = percent;
    const line = TERMINAL.has(job.status) ? null : describeQueue(job);
    this.ui.jobDetail.textContent = line ? `${percent} % · ${line}` : `${percent} %`;
    const recording = this.live && !this.live.complete;
    switch (job.status) {
      case 'receiving':
        this.setStatus(recording
          ? `Recording ${this.name}; it is converted as it arrives…`
          : `${this.name} is arriving; waiting for the converter…`, 'converting');
        break;
      case 'queued':
        this.setStatus(job.error
          ? describeRetryWait(job.error, job.next_attempt_at)
          : `${this.name} is uploaded and waits for the converter…`, 'converting');
        break;
      case 'processing':
        this.setStatus(recording ? `Converting ${this.name} while you record…` : `Converting ${this.name}…`, 'converting');
        break;
      case 'succeeded':
        this.showOutput();
        break;
      case 'failed':
        this.fail(describeFailure(job.error, this.name));
        break;
      case 'canceled':
        this.setStatus(`The conversion of ${this.name} was canceled.`, 'canceled');
        this.offerRetry(true);
        break;
      case 'expired':
        this.fail(describeApiError('output_gone', null, { name: this.name }));
        break;
      default:
        break;
    }
  }

  async poll() {
    let delay = POLL_FIRST_MS;
    const token = (this.pollToken = {});
    while (this.pollToken === token && this.job && !TERMINAL.has(this.job.status)) {
      await sleep(delay);
      if (this.pollToken !== token) return;
      let resp;
      try {
        const headers = { Authorization: `Bearer ${this.credential.value}` };
        if (this.etag) headers['If-None-Match'] = this.etag;
        resp = await fetch(this.jobUrl, { headers, cache: 'no-store' });
      } catch {
        this.ui.jobDetail.textContent = 'Connection lost; still trying…';
        delay = Math.min(delay * 2, POLL_MAX_MS);
        continue;
      }
      if (this.pollToken !== token) return;
      const retryAfter = parseRetryAfter(resp.headers.get('Retry-After'));
      if (resp.status === 304) {
        delay = Math.min(delay * 1.5, POLL_MAX_MS);
      } else if (resp.ok) {
        this.etag = resp.headers.get('ETag');
        const job = await resp.json();
        delay = POLL_FIRST_MS;
        this.showJob(job);
      } else if (resp.status === 429 || resp.status === 503) {
        delay = POLL_MAX_MS;
      } else {
        this.failWith(resp.status, parseJson(await resp.text()), resp.headers.get('Retry-After'));
        return;
      }
      if (retryAfter != null) delay = Math.max(delay, retryAfter * 1000);
    }
  }

  // The MP4 plays through its signed link (`links.play`): a URL that needs no header, so the
  // <video> streams it with Range requests and shows the first frame after the first bytes,
  // never after the whole file. The link opens only this job's files, expires, and dies with the
  // key behind the credential; the credential itself never goes in a URL.
  async showOutput() {
    const play = this.job.links.play || await this.freshLinks();
    if (!play) return;
    const mp4Name = this.name.replace(/\.[^.]*$/, '') + '.mp4';
    this.playLinks(play);
    this.ui.download.download = mp4Name;
    this.ui.download.textContent = `Download ${mp4Name}`;
    this.ui.result.hidden = false;
    this.ui.cancel.hidden = true;
    this.setStatus(`${this.name} is converted: play it below or download ${mp4Name}.`, 'succeeded');
  }

  playLinks(play) {
    if (play.poster) this.ui.player.poster = play.poster;
    this.ui.player.src = play.output;
    this.ui.download.href = play.output;
    this.linksExpire = Date.parse(play.expires_at);
    if (!this.refreshOnError) {
      // A page left open past the links' expiry gets new ones when the player next fails to load
      // (403 link_expired), at the position it was at.
      this.refreshOnError = async () => {
        if (!(Date.now() >= this.linksExpire - 60_000)) return;
        const at = this.ui.player.currentTime;
        const fresh = await this.freshLinks();
        if (!fresh) return;
        this.playLinks(fresh);
        this.ui.player.currentTime = at;
      };
      this.ui.player.addEventListener('error', this.refreshOnError);
    }
  }

  // Links from `GET /v1/jobs/{id}/links`, with the credential in its header; null after a failure
  // (shown in the row).
  async freshLinks() {
    try {
      const resp = await fetch(`${this.jobUrl}/links`, {
        headers: { Authorization: `Bearer ${this.credential.value}` },
        cache: 'no-store',
      });
      const body = parseJson(await resp.text());
      if (resp.ok && body?.output) return body;
      this.failWith(resp.status, body, resp.headers.get('Retry-After'));
    } catch {
      this.fail(describeApiError('network', null, { name: this.name }));
    }
    return null;
  }

  failWith(status, body, retryAfterHeader) {
    const ctx = {
      name: this.name,
      size: this.blob?.size,
      limit: this.hooks.limit,
      retryAfter: parseRetryAfter(retryAfterHeader),
      credential: this.credential?.kind,
      requestId: body?.request_id,
      status,
    };
    this.fail(describeApiError(body?.error?.code, body?.error?.message, ctx));
  }

  fail({ text, retry }) {
    this.pollToken = null;
    this.setStatus(text, 'failed');
    this.offerRetry(retry);
  }

  offerRetry(retry) {
    this.ui.cancel.hidden = true;
    this.ui.retry.hidden = !retry;
  }

  retry() {
    const wasFocused = document.activeElement === this.ui.retry;
    if (this.job && !TERMINAL.has(this.job.status) && this.state === 'failed') {
      // Polling failed (e.g. rate limited): the job itself may be fine; resume polling it.
      this.ui.retry.hidden = true;
      this.ui.cancel.hidden = false;
      this.setStatus(`Checking on ${this.name} again…`, 'converting');
      this.poll();
    } else {
      this.queue();
    }
    if (wasFocused) this.ui.cancel.focus();
  }

  async cancel() {
    const wasFocused = document.activeElement === this.ui.cancel;
    if (this.transfer) {
      this.transfer.abort();
    } else if (this.state === 'waiting') {
      this.setStatus(`Upload of ${this.name} canceled.`, 'canceled');
      this.offerRetry(true);
    } else if (this.job && !TERMINAL.has(this.job.status)) {
      this.pollToken = null;
      this.setStatus(`Canceling the conversion of ${this.name}…`, 'converting');
      try {
        const resp = await fetch(this.jobUrl, {
          method: 'DELETE',
          headers: { Authorization: `Bearer ${this.credential.value}` },
        });
        const body = parseJson(await resp.text());
        if (!resp.ok) {
          this.failWith(resp.status, body, resp.headers.get('Retry-After'));
        } else if (body?.status === 'canceled') {
          this.showJob(body);
        } else {
          this.etag = null;
          this.poll();
        }
      } catch {
        this.fail(describeApiError('network', null, { name: this.name }));
      }
    }
    if (wasFocused && !this.ui.retry.hidden) this.ui.retry.focus();
  }
}
