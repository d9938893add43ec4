// The upload page: credentials (an upload token from the URL fragment, or a pasted API key, both
// in memory only), choosing, dropping or recording videos, and the queue of rows (row.js).

import { describeMediaError, formatBytes, formatClock } from './messages.js';
import { Row } from './row.js';
import { LiveUpload } from './tus.js';

const $ = (id) => document.getElementById(id);

const limitMeta = Number(document.querySelector('meta[name="mediaq-max-upload-bytes"]')?.content);
const maxUploadBytes = Number.isFinite(limitMeta) && limitMeta > 0 ? limitMeta : null;

// ---- Credentials: plain variables, never written anywhere the browser keeps.

const credentials = { token: null, tokenBusy: false, tokenUsed: false, apiKey: null };

function takeTokenFromFragment() {
  if (!location.hash) return;
  const params = new URLSearchParams(location.hash.slice(1));
  const token = params.get('token');
  if (!token) return;
  credentials.token = token.trim();
  // Read once: the token leaves the address bar (and the history entry) at once.
  history.replaceState(history.state, '', location.pathname + location.search);
}

function showAccess() {
  const status = $('access-status');
  const forget = $('forget-key');
  forget.hidden = !credentials.apiKey;
  if (credentials.apiKey) {
    status.textContent = `Using the API key ${credentials.apiKey.slice(0, 7)}… (in this tab's memory only).`;
  } else if (credentials.token && !credentials.tokenUsed) {
    status.textContent = 'This upload link lets you convert one video.';
  } else if (credentials.token) {
    status.textContent = 'This upload link has been used. To convert more videos, ask for a new link or paste an API key.';
  } else {
    status.textContent = 'To upload, open the link you were given, or paste an API key below.';
  }
}

/** The credential a row uploads (and then polls and downloads) with. */
function credentialFor() {
  if (credentials.apiKey) return { kind: 'key', value: credentials.apiKey };
  if (credentials.token && !credentials.tokenUsed && !credentials.tokenBusy) {
    credentials.tokenBusy = true;
    return { kind: 'token', value: credentials.token };
  }
  if (credentials.token && !credentials.tokenUsed) {
    return { error: 'The upload link is busy with another video. Try again when that upload has finished.' };
  }
  if (credentials.token) {
    return { error: 'The upload link allows one video, and it has been used. Paste an API key above, then try again.' };
  }
  $('api-key').focus();
  return { error: 'No credentials: paste an API key above (or open the upload link you were given), then try again.' };
}

function releaseCredential(row, used) {
  if (row.credential?.kind !== 'token') return;
  credentials.tokenBusy = false;
  if (used) credentials.tokenUsed = true;
  showAccess();
}

$('key-form').addEventListener('submit', (event) => {
  event.preventDefault();
  const input = $('api-key');
  const key = input.value.trim();
  input.value = '';
  if (!/^mq_[A-Za-z0-9_-]+$/.test(key)) {
    $('access-status').textContent = key
      ? 'That does not look like an API key (they start with mq_). Check it and paste it again.'
      : 'Paste an API key first.';
    input.focus();
    return;
  }
  credentials.apiKey = key;
  showAccess();
});

$('forget-key').addEventListener('click', () => {
  credentials.apiKey = null;
  showAccess();
  $('api-key').focus();
});

// ---- The queue: uploads run one at a time; each row then polls on its own.

const pending = [];
let pumping = false;

async function pump() {
  if (pumping) return;
  pumping = true;
  while (pending.length > 0) {
    await pending.shift().upload();
  }
  pumping = false;
}

const hooks = {
  credential: credentialFor,
  release: releaseCredential,
  enqueue: (row) => {
    pending.push(row);
    pump();
  },
  limit: maxUploadBytes,
};

function addRow(blob, name) {
  const row = new Row(blob, name, hooks);
  $('queue-empty').hidden = true;
  $('queue').append(row.el);
  return row;
}

function addVideo(blob, name) {
  addRow(blob, name).queue();
}

function addFiles(files) {
  for (const file of files) addVideo(file, file.name);
}

// ---- Choosing and dropping files.

const dropZone = $('drop-zone');
const fileInput = $('file-input');

dropZone.addEventListener('click', () => fileInput.click());
fileInput.addEventListener('change', () => {
  addFiles(Array.from(fileInput.files));
  fileInput.value = '';
});

let dragDepth = 0;
window.addEventListener('dragenter', (e) => {
  e.preventDefault();
  dragDepth += 1;
  dropZone.classList.add('dragging');
});
window.addEventListener('dragleave', () => {
  dragDepth = Math.max(0, dragDepth - 1);
  if (dragDepth === 0) dropZone.classList.remove('dragging');
});
window.addEventListener('dragover', (e) => e.preventDefault());
window.addEventListener('drop', (e) => {
  // Anywhere on the page: the browser must not navigate away to the dropped file.
  e.preventDefault();
  dragDepth = 0;
  dropZone.classList.remove('dragging');
  addFiles(Array.from(e.dataTransfer?.files ?? []));
});

if (maxUploadBytes) $('limit-text').textContent = formatBytes(maxUploadBytes);

// ---- Recording with the camera and microphone.

const recorderUi = {
  start: $('record-start'),
  stop: $('record-stop'),
  time: $('record-time'),
  status: $('record-status'),
  preview: $('camera-preview'),
};
let recording = null;

function recordingType() {
  const types = ['video/webm;codecs=vp8,opus', 'video/webm;codecs=vp9,opus', 'video/webm'];
  return typeof MediaRecorder === 'undefined' ? null : types.find((t) => MediaRecorder.isTypeSupported(t)) ?? null;
}

async function startRecording() {
  const mimeType = recordingType();
  if (!mimeType || !navigator.mediaDevices?.getUserMedia) {
    recorderUi.status.textContent = describeMediaError({ name: 'NotSupportedError' });
    return;
  }
  recorderUi.start.disabled = true;
  recorderUi.status.textContent = 'Asking for the camera and microphone…';
  let stream;
  try {
    stream = await navigator.mediaDevices.getUserMedia({
      video: { width: { ideal: 640 }, height: { ideal: 480 } },
      audio: true,
    });
  } catch (err) {
    recorderUi.status.textContent = describeMediaError(err);
    recorderUi.start.disabled = false;
    return;
  }
  const chunks = [];
  const recorder = new MediaRecorder(stream, { mimeType });
  // Sent while it is recorded (tus, deferred length), one chunk a second: the server converts as
  // it arrives, so only the last second is left to send when the person presses Stop.
  const stamp = new Date().toISOString().replace(/[-:]/g, '').replace('T', '-').slice(0, 15);
  const name = `recording-${stamp}.webm`;
  const live = new LiveUpload(name, {});
  const row = addRow(null, name);
  if (!row.startLive(live)) {
    for (const track of stream.getTracks()) track.stop();
    recorderUi.start.disabled = false;
    return;
  }
  recorder.addEventListener('dataavailable', (e) => {
    if (e.data.size > 0) {
      chunks.push(e.data);
      live.push(e.data);
    }
  });
  recorder.addEventListener('stop', () => finishRecording(chunks, row, name));
  recorderUi.preview.srcObject = stream;
  recorderUi.preview.hidden = false;
  recorderUi.preview.play().catch(() => {});
  recording = { recorder, stream, started: performance.now(), timer: null };
  recording.timer = setInterval(showRecordingTime, 250);
  recorder.start(1000);
  showRecordingTime();
  recorderUi.stop.disabled = false;
  recorderUi.stop.focus();
  recorderUi.status.textContent = 'Recording. Press “Stop recording” when you are done.';
}

function showRecordingTime() {
  if (recording) recorderUi.time.textContent = formatClock((performance.now() - recording.started) / 1000);
}

function stopRecording() {
  if (!recording || recording.recorder.state === 'inactive') return;
  showRecordingTime();
  recording.seconds = (performance.now() - recording.started) / 1000;
  clearInterval(recording.timer);
  recording.recorder.stop();
  recorderUi.stop.disabled = true;
}

function finishRecording(chunks, row, name) {
  const { stream, seconds } = recording;
  recording = null;
  for (const track of stream.getTracks()) track.stop();
  recorderUi.preview.srcObject = null;
  recorderUi.preview.hidden = true;
  recorderUi.start.disabled = false;
  const blob = new Blob(chunks, { type: 'video/webm' });
  recorderUi.status.textContent = `Recorded ${formatClock(seconds)} (${formatBytes(blob.size)}): it is in your videos.`;
  recorderUi.start.focus();
  row.finishLive(blob);
}

recorderUi.start.addEventListener('click', startRecording);
recorderUi.stop.addEventListener('click', stopRecording);

takeTokenFromFragment();
showAccess();
document.documentElement.dataset.ready = 'true';
