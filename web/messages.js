// Sentences a person understands, for every error code the API returns (README "Stable codes")
// and every code a failed job carries (README "A job that fails carries one of these codes"),
// and the small formatting helpers they need.

/** 1536 -> "1.5 KiB" (binary units, as the server's limits are configured). */
export function formatBytes(n) {
  if (!Number.isFinite(n)) return 'an unknown size';
  const units = ['bytes', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i += 1;
  }
  const digits = i === 0 || n >= 100 ? 0 : n >= 10 ? 1 : 2;
  return `${Number(n.toFixed(digits))} ${units[i]}`;
}

/** Seconds -> "0:07", "12:03", "1:02:03". */
export function formatClock(seconds) {
  const s = Math.max(0, Math.round(seconds));
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const pad = (v) => String(v).padStart(2, '0');
  return h > 0 ? `${h}:${pad(m)}:${pad(s % 60)}` : `${m}:${pad(s % 60)}`;
}

/** Seconds -> "3 seconds", "2 minutes", "about 1 hour". */
export function formatWait(seconds) {
  const s = Math.max(1, Math.ceil(seconds));
  if (s < 90) return `${s} second${s === 1 ? '' : 's'}`;
  const m = Math.round(s / 60);
  if (m < 90) return `${m} minutes`;
  const h = Math.round(m / 60);
  return `about ${h} hour${h === 1 ? '' : 's'}`;
}

/** 3 -> "3rd". */
function ordinal(n) {
  const tens = n % 100;
  const suffix = tens >= 11 && tens <= 13 ? 'th' : ({ 1: 'st', 2: 'nd', 3: 'rd' })[n % 10] || 'th';
  return `${n}${suffix}`;
}

/**
 * A job's place in line and estimate (its `queue`), as "3rd in line, ready in about 40 seconds",
 * "converting, ready in about 12 seconds", "waiting for more of the upload"; null when it has none.
 */
export function describeQueue(job, now = Date.now()) {
  const q = job && job.queue;
  if (!q) return null;
  if (q.waiting_for_bytes) return 'waiting for more of the upload';
  const finish = q.estimated_finish_at ? Date.parse(q.estimated_finish_at) : NaN;
  const ready = Number.isFinite(finish)
    ? (finish - now < 2000 ? 'ready in a moment' : `ready in about ${formatWait((finish - now) / 1000)}`)
    : null;
  let place;
  if (job.status === 'processing') place = 'converting';
  else if (q.position === 0) place = 'next in line';
  else if (Number.isInteger(q.position)) place = `${ordinal(q.position + 1)} in line`;
  else return ready;
  if (ready) return `${place}, ${ready}`;
  return q.workers === 0 ? `${place} (no converter is running)` : place;
}

/** "Retry-After" (delta-seconds or an HTTP date) -> seconds, or null. */
export function parseRetryAfter(value) {
  if (!value) return null;
  if (/^\d+$/.test(value.trim())) return Number(value.trim());
  const at = Date.parse(value);
  return Number.isNaN(at) ? null : Math.max(0, (at - Date.now()) / 1000);
}

function clockTime(date) {
  return date.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit', second: '2-digit' });
}

function whenToRetry(seconds) {
  if (seconds == null) return 'in a moment';
  return `in ${formatWait(seconds)} (at ${clockTime(new Date(Date.now() + seconds * 1000))})`;
}

/**
 * An API error (`{error: {code, message}, request_id}`) met while uploading or reading a job, as
 * `{text, retry}`: the sentence to show and whether a "Try again" makes sense.
 * ctx: {name, size, limit, retryAfter, credential: 'token' | 'key', requestId, status}
 */
export function describeApiError(code, message, ctx) {
  const name = `“${ctx.name}”`;
  const again = (text) => ({ text, retry: true });
  const final = (text) => ({ text, retry: false });
  switch (code) {
    case 'payload_too_large': {
      const limit = limitFrom(message) ?? ctx.limit;
      const size = ctx.size != null ? ` is ${formatBytes(ctx.size)}, which` : '';
      return final(`${name}${size} is larger than the ${limit ? formatBytes(limit) : 'upload'} limit. `
        + 'Choose a shorter or smaller video.');
    }
    case 'unsupported_media_type':
      return final(`${name} is not a WebM or MP4 video. `
        + 'Only WebM, MP4 and MOV videos can be converted: choose one, or record a video here.');
    case 'not_webm':
      return final(`${name} is not a WebM or MP4 video: its contents are another format. `
        + 'Only WebM, MP4 and MOV videos can be converted: choose one, or record a video here.');
    case 'extension_mismatch':
      return final(`${name} is not a WebM or MP4 video: only files whose names end in .webm, .weba, .mkv, .mka, `
        + '.mp4, .m4v, .m4a or .mov are accepted.');
    case 'empty_upload':
      return final(`${name} is empty. Choose another file.`);
    case 'missing_file':
    case 'too_many_files':
    case 'malformed_multipart':
    case 'bad_request':
      return again(`The server did not understand the upload of ${name}. Try again; if it keeps failing, reload the page.`);
    case 'upload_incomplete':
      return again(`The upload of ${name} stopped before the whole file arrived. Try again.`);
    case 'upload_timeout':
      return again(`The upload of ${name} stalled: the server waited for data that never came. `
        + 'Check your connection and try again.');
    case 'upload_too_slow':
      return again(`The upload of ${name} was too slow for the server to keep waiting. `
        + 'Try again on a faster connection.');
    case 'too_many_uploads':
      return again(`Too many uploads are in progress for this account at once. Try again ${whenToRetry(ctx.retryAfter)}, `
        + 'when one has finished.');
    case 'invalid_job_id':
    case 'job_not_found':
      return again(`The server no longer knows the conversion of ${name}. Upload it again.`);
    case 'job_not_ready':
      return again(`The MP4 of ${name} is not ready yet. Try again in a moment.`);
    case 'poster_not_available':
      return final(`${name} has no preview picture (it is sound only, or not converted yet).`);
    case 'range_not_satisfiable':
      return again(`The MP4 of ${name} could not be read from where the player asked. Try again.`);
    case 'job_not_requeueable':
    case 'job_not_failed':
      return final(`The conversion of ${name} cannot be restarted: only failed conversions can.`);
    case 'input_gone':
      return final(`The conversion of ${name} cannot be restarted: the uploaded file is no longer kept. Upload it again.`);
    case 'not_found':
    case 'method_not_allowed':
      return final('The page asked the server for something it does not offer. Reload the page; if it persists, the page and the server do not match.');
    case 'output_gone':
      return again(`The converted MP4 of ${name} was deleted from the server (files are kept for a limited time). `
        + 'Upload the video again to convert it anew.');
    case 'link_invalid':
      return again(`The playback link of ${name} is not valid on this server (it was altered, or the server's link key changed). Reload the page to get a new one.`);
    case 'link_expired':
      return again(`The playback link of ${name} has expired. Reload the page to get a new one.`);
    case 'link_revoked':
      return final(`The playback link of ${name} no longer works: the key it was made with was revoked.`);
    case 'database_unavailable':
    case 'storage_unavailable':
      return again(`The service is temporarily unavailable. Try again ${whenToRetry(ctx.retryAfter)}.`);
    case 'server_busy':
      return again(`The server is busy with other uploads. Try again ${whenToRetry(ctx.retryAfter)}.`);
    case 'insufficient_storage':
      return again('The server has run out of space for uploads. Try again later.');
    case 'webhook_url_refused':
      return final('The notification address (webhook URL) was refused: it must be a public https address.');
    case 'webhook_secret_missing':
      return final('A notification address needs a signing secret first: register a webhook endpoint, then try again.');
    case 'webhook_not_found':
    case 'delivery_not_found':
      return final('That webhook endpoint or delivery does not exist.');
    case 'idempotency_key_reused':
      return again(`The upload of ${name} clashed with an earlier upload. Try again.`);
    case 'idempotency_request_in_progress':
      return again(`An earlier attempt to upload ${name} is still being received. Wait a moment, then try again.`);
    case 'unauthorized':
      return again(ctx.credential === 'token'
        ? 'This upload link has expired or has already been used. Ask for a new link, or paste an API key above, then try again.'
        : 'The API key was refused: it is wrong, revoked or expired. Paste a valid key above, then try again.');
    case 'insufficient_scope':
      return final(ctx.credential === 'token'
        ? 'This upload link does not allow that.'
        : 'This API key is not allowed to upload and read videos (it needs the jobs:write and jobs:read scopes).');
    case 'credentials_in_url':
      return again('The page sent its credentials the wrong way. Reload the page and try again.');
    case 'rate_limited':
      return again(`Too many requests in a short time. Try again ${whenToRetry(ctx.retryAfter)}.`);
    case 'quota_exceeded':
      return again('This account has reached its quota (too many unfinished videos, or too much uploaded today). '
        + `Try again ${whenToRetry(ctx.retryAfter)}.`);
    case 'tus_version_unsupported':
      return again('The page and the server speak different versions of the upload protocol. Reload the page and try again.');
    case 'upload_not_found':
      return again(`The server no longer has the upload of ${name} (it was stopped, or waited too long for the rest). `
        + 'Try again to send it from the start.');
    case 'upload_offset_mismatch':
      return again(`The upload of ${name} got out of step with the server. Try again; it resumes where the server stopped.`);
    case 'upload_length_exceeded':
      return final(`${name} grew past the size it was announced with. Record or choose it again.`);
    case 'upload_closed':
      return final(`The server takes no more of ${name}: its conversion has already ended.`);
    case 'upload_busy':
      return again(`Another request is still sending part of ${name}. Try again in a moment; it resumes where the server stopped.`);
    case 'too_many_segments':
      return final(`${name} was sent in more pieces than the server accepts for one upload. Send it again in larger pieces.`);
    case 'internal_error':
      return again('Something went wrong on the server. Try again; if it keeps failing, give support this '
        + `reference: ${ctx.requestId ?? 'none'}.`);
    case 'network':
      return again(`Could not reach the server while sending ${name}. Check your connection and try again.`);
    default:
      return again(`The server refused the request (${code ?? `HTTP ${ctx.status}`}): ${message ?? 'no details'}.`);
  }
}

/** The limit in bytes from a `payload_too_large` message ("... limit of 1000 bytes"). */
function limitFrom(message) {
  const m = /(\d+) bytes/.exec(message ?? '');
  return m ? Number(m[1]) : null;
}

const FAILURES = {
  invalid_media: [false, 'the file could not be read as a video: it is damaged, or has neither picture nor sound'],
  unsupported_codec: [false, 'the video inside the file uses a format that cannot be converted '
    + '(only VP8, VP9, AV1, H.264 or HEVC video with Opus, Vorbis, AAC or PCM sound can)'],
  damaged_input: [false, 'most of the file is damaged: too little of it could be read to make a video of it'],
  dimensions_exceeded: [false, 'the picture is wider or taller than the service allows'],
  pixels_exceeded: [false, 'the picture has more pixels than the service allows'],
  duration_exceeded: [false, 'the video is longer than the service allows'],
  streams_exceeded: [false, 'the file has more audio and video tracks than the service allows'],
  frame_rate_exceeded: [false, 'the video has more frames per second than the service allows'],
  output_size_exceeded: [false, 'the MP4 would be larger than the service allows'],
  transcode_error: [false, 'the converter met a problem in the file it could not get past'],
  sandbox_violation: [false, 'the file made the converter try something forbidden, so it was stopped'],
  resource_limit: [true, 'the conversion needed more memory or processing time than allowed for a video this long'],
  timeout: [true, 'the conversion took too long and was stopped'],
  transcoder_crashed: [true, 'the converter crashed, on every attempt'],
  stalled: [true, 'the conversion stopped making progress, on every attempt'],
  storage_error: [true, 'the server could not store the result, on every attempt'],
  worker_crashed: [true, 'the server converting it stopped, on every attempt'],
  sandbox_unavailable: [true, 'the server could not isolate the converter safely, so it did not start it'],
  upload_abandoned: [true, 'the rest of the video never arrived, so the server gave up waiting for it'],
};

/** A failed job's `error {code, message}` as `{text, retry}` (retry: upload the file again). */
export function describeFailure(error, name) {
  const [retry, reason] = FAILURES[error?.code] ?? [true, 'an unexpected problem occurred'];
  const details = error?.message ? ` (Details: ${error.message})` : '';
  const text = `“${name}” could not be converted: ${reason}.${details}`;
  return { text: retry ? `${text} You can try again.` : text, retry };
}

/** A job that waits for a retry after a transient failure. */
export function describeRetryWait(error, nextAttemptAt) {
  const reason = FAILURES[error?.code]?.[1]?.replace(/, on every attempt$/, '') ?? 'a temporary problem occurred';
  const at = nextAttemptAt ? ` at ${clockTime(new Date(nextAttemptAt))}` : ' shortly';
  return `The conversion was interrupted (${reason}); it will try again${at}.`;
}

/** A getUserMedia / MediaRecorder failure as a sentence. */
export function describeMediaError(err) {
  switch (err?.name) {
    case 'NotAllowedError':
    case 'SecurityError':
      return 'Camera or microphone access was refused. Allow it in the browser\'s site settings, then try again.';
    case 'NotFoundError':
    case 'OverconstrainedError':
      return 'No camera or microphone was found. Connect one, or choose a file instead.';
    case 'NotReadableError':
    case 'AbortError':
      return 'The camera or microphone is busy (another application may be using it). Close it and try again.';
    case 'NotSupportedError':
      return 'This browser cannot record WebM video. Choose a file instead.';
    default:
      return `Recording is not possible here (${err?.message ?? err}). Choose a file instead.`;
  }
}
