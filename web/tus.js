// A recording sent while it is made: tus 1.0 (`/v1/uploads`, deferred length). Each
// MediaRecorder chunk is PATCHed as soon as it exists, one request at a time; the last one says
// the total length. A dropped request is resumed where the server says the upload stands (HEAD).
// The server starts converting from the first bytes, so the MP4 is ready soon after Stop.

const TUS = { 'Tus-Resumable': '1.0.0' };
const RETRY_DELAYS_MS = [500, 1000, 2000, 4000, 8000];
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

function base64(text) {
  return btoa(String.fromCharCode(...new TextEncoder().encode(text)));
}

/** A refusal of the server's, with its JSON body (`{error: {code, message}}`) when it sent one. */
export class TusError extends Error {
  constructor(status, body, retryAfter) {
    super(body?.error?.message ?? `HTTP ${status}`);
    this.status = status;
    this.body = body;
    this.retryAfter = retryAfter;
  }
}

async function refusal(resp) {
  let body = null;
  try {
    body = await resp.json();
  } catch {
    // not JSON
  }
  return new TusError(resp.status, body, resp.headers.get('Retry-After'));
}

export class LiveUpload {
  /** name: the file name; hooks: {created(location, job), resumed(), failed(error), sent(bytes)} */
  constructor(name, hooks) {
    this.name = name;
    this.hooks = hooks;
    this.chunks = [];
    this.total = 0;
    this.offset = 0;
    this.url = null;
    this.ended = false;
    this.complete = false;
    this.failed = null;
    this.running = null;
  }

  /** Starts with `credential` ({value}); chunks pushed before creation wait for it. */
  start(credential) {
    this.credential = credential;
    this.kick();
  }

  /** Adds one recorded chunk. */
  push(blob) {
    if (blob.size === 0 || this.failed) return;
    this.chunks.push(blob);
    this.total += blob.size;
    this.kick();
  }

  /** No more chunks: the last PATCH says the length. Resolves once every byte is acknowledged. */
  async end() {
    this.ended = true;
    this.kick();
    while (this.running) await this.running;
    if (this.failed) throw this.failed;
  }

  kick() {
    if (this.running || !this.credential || this.failed) return;
    this.running = this.drain()
      .catch((err) => {
        this.failed = err;
        this.hooks.failed?.(err);
      })
      .finally(() => {
        this.running = null;
        if (!this.failed && (this.chunks.length > 0 || (this.ended && !this.complete))) this.kick();
      });
  }

  headers(extra = {}) {
    return { Authorization: `Bearer ${this.credential.value}`, ...TUS, ...extra };
  }

  async drain() {
    if (!this.url) await this.create();
    while (this.chunks.length > 0) {
      const chunk = this.chunks[0];
      const last = this.ended && this.chunks.length === 1;
      await this.send(chunk, last);
      this.chunks.shift();
      if (last) this.complete = true;
    }
    if (this.ended && !this.complete) {
      // Stop came after the last chunk was sent: an empty PATCH tells the length.
      await this.send(new Blob([]), true);
      this.complete = true;
    }
  }

  async create() {
    const resp = await fetch('/v1/uploads', {
      method: 'POST',
      headers: this.headers({
        'Upload-Defer-Length': '1',
        'Upload-Metadata': `filename ${base64(this.name)},filetype ${base64('video/webm')}`,
      }),
    });
    if (resp.status !== 201) throw await refusal(resp);
    this.url = resp.headers.get('Location');
    this.hooks.created?.(this.url, await resp.json());
  }

  /** PATCHes `chunk` (which starts at this.offset), resuming from the server's offset on errors. */
  async send(chunk, last) {
    const start = this.offset;
    for (let attempt = 0; ; attempt += 1) {
      const skip = this.offset - start;
      const headers = this.headers({
        'Content-Type': 'application/offset+octet-stream',
        'Upload-Offset': String(this.offset),
      });
      if (last) headers['Upload-Length'] = String(start + chunk.size);
      let resp = null;
      try {
        resp = await fetch(this.url, { method: 'PATCH', headers, body: chunk.slice(skip) });
      } catch {
        // The connection dropped: ask where the upload stands, then go on from there.
      }
      if (resp?.status === 204) {
        this.offset = Number(resp.headers.get('Upload-Offset'));
        this.hooks.sent?.(this.offset);
        return;
      }
      const retryable = !resp || resp.status === 409 || resp.status === 423 || resp.status >= 500;
      if (!retryable || attempt >= RETRY_DELAYS_MS.length) throw resp ? await refusal(resp) : new TusError(0, null);
      this.hooks.resumed?.();
      await sleep(RETRY_DELAYS_MS[attempt]);
      try {
        const head = await fetch(this.url, { method: 'HEAD', headers: this.headers(), cache: 'no-store' });
        if (head.ok) this.offset = Math.max(start, Number(head.headers.get('Upload-Offset')));
      } catch {
        // Still offline: the next attempt asks again.
      }
      if (this.offset >= start + chunk.size && !last) return;
    }
  }
}

const CHUNK_BYTES = 5 * 1024 * 1024;

/** One request through XMLHttpRequest (fetch cannot report upload progress). */
function request(method, url, headers, body, onProgress, track) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    track(xhr);
    xhr.open(method, url);
    for (const [name, value] of Object.entries(headers)) xhr.setRequestHeader(name, value);
    if (onProgress) xhr.upload.addEventListener('progress', (e) => onProgress(e.loaded));
    xhr.addEventListener('load', () => resolve(xhr));
    xhr.addEventListener('error', () => reject(new TusError(0, null)));
    xhr.addEventListener('abort', () => reject(Object.assign(new TusError(0, null), { aborted: true })));
    xhr.send(body ?? null);
  });
}

function bodyOf(xhr) {
  try {
    return JSON.parse(xhr.responseText);
  } catch {
    return null;
  }
}

/**
 * A picked file sent with tus: created with its length, then PATCHed in 5 MiB chunks with upload
 * progress; a dropped connection resumes where the server says the upload stands.
 * hooks: {created(job), progress(loaded, total), resumed()}
 */
export class FileUpload {
  constructor(blob, name, credential, hooks) {
    Object.assign(this, { blob, name, credential, hooks, url: null, offset: 0, xhr: null, aborted: false });
  }

  headers(extra = {}) {
    return { Authorization: `Bearer ${this.credential.value}`, ...TUS, ...extra };
  }

  abort() {
    this.aborted = true;
    this.xhr?.abort();
    if (this.url) {
      // The upload will not be finished: the server drops its bytes and cancels its job.
      fetch(this.url, { method: 'DELETE', headers: this.headers() }).catch(() => {});
    }
  }

  /** Resolves when every byte is acknowledged; rejects with a TusError. */
  async run() {
    const track = (xhr) => {
      this.xhr = xhr;
    };
    const type = this.blob.type.split(';')[0].trim() || 'video/webm';
    const created = await request('POST', '/v1/uploads', this.headers({
      'Upload-Length': String(this.blob.size),
      'Upload-Metadata': `filename ${base64(this.name)},filetype ${base64(type)}`,
    }), null, null, track);
    if (created.status !== 201) throw new TusError(created.status, bodyOf(created), created.getResponseHeader('Retry-After'));
    this.url = created.getResponseHeader('Location');
    this.hooks.created?.(bodyOf(created));
    let failures = 0;
    while (this.offset < this.blob.size) {
      if (this.aborted) throw Object.assign(new TusError(0, null), { aborted: true });
      const start = this.offset;
      const chunk = this.blob.slice(start, Math.min(this.blob.size, start + CHUNK_BYTES));
      let xhr = null;
      try {
        xhr = await request('PATCH', this.url, this.headers({
          'Content-Type': 'application/offset+octet-stream',
          'Upload-Offset': String(start),
        }), chunk, (loaded) => this.hooks.progress?.(start + loaded, this.blob.size), track);
      } catch (err) {
        if (err.aborted) throw err;
      }
      if (xhr?.status === 204) {
        this.offset = Number(xhr.getResponseHeader('Upload-Offset'));
        this.hooks.progress?.(this.offset, this.blob.size);
        failures = 0;
        continue;
      }
      const retryable = !xhr || xhr.status === 409 || xhr.status === 423 || xhr.status >= 500;
      if (!retryable || failures >= RETRY_DELAYS_MS.length) {
        throw xhr ? new TusError(xhr.status, bodyOf(xhr), xhr.getResponseHeader('Retry-After')) : new TusError(0, null);
      }
      this.hooks.resumed?.();
      await sleep(RETRY_DELAYS_MS[failures]);
      failures += 1;
      try {
        const head = await fetch(this.url, { method: 'HEAD', headers: this.headers(), cache: 'no-store' });
        if (head.ok) this.offset = Number(head.headers.get('Upload-Offset'));
      } catch {
        // Still offline: the next attempt asks again.
      }
    }
  }
}
