// Drives tus-js-client (Node) against the real API for tests/tests/tus.rs.
// Usage: node tus.mjs '<json>'; prints one JSON line: { url, offset, progress: [...], error? }.
//   endpoint      http://127.0.0.1:PORT/v1/uploads
//   credential    API key or upload token (Authorization: Bearer)
//   file          path of the file to send
//   chunkSize     bytes per PATCH (default: the whole file in one)
//   deferred      send the length only with the last PATCH (Upload-Defer-Length), like a recorder
//   stopAfter     abort (like a closed tab) once this many bytes are acknowledged
//   uploadUrl     resume this upload instead of creating one
//   terminate     terminate `uploadUrl` instead of uploading
//   metadata      Upload-Metadata (default: filename and filetype from the file name)
import fs from "node:fs";
import path from "node:path";
import * as tus from "tus-js-client";

const opts = JSON.parse(process.argv[2]);
const headers = { Authorization: `Bearer ${opts.credential}` };

function print(result) {
  process.stdout.write(JSON.stringify(result) + "\n");
}

if (opts.terminate) {
  try {
    await tus.Upload.terminate(opts.uploadUrl, { headers, retryDelays: [] });
    print({ terminated: true });
  } catch (e) {
    print({ error: String(e), status: e.originalResponse ? e.originalResponse.getStatus() : null });
  }
  process.exit(0);
}

const size = fs.statSync(opts.file).size;
// (A Buffer even when deferred: tus-js-client 4's Node stream source stalls on a short last chunk.)
const input = fs.readFileSync(opts.file);
const progress = [];
let upload;
const done = new Promise((resolve) => {
  upload = new tus.Upload(input, {
    endpoint: opts.endpoint,
    uploadUrl: opts.uploadUrl || null,
    headers,
    chunkSize: opts.chunkSize || Infinity,
    uploadLengthDeferred: !!opts.deferred,
    uploadSize: opts.deferred ? null : size,
    retryDelays: [0, 200, 500, 1000, 2000],
    removeFingerprintOnSuccess: true,
    metadata: opts.metadata || { filename: path.basename(opts.file), filetype: "video/webm" },
    onChunkComplete(_chunk, accepted) {
      progress.push(accepted);
      if (opts.stopAfter && accepted >= opts.stopAfter) {
        upload.abort(false).then(() => resolve({ url: upload.url, offset: accepted, progress, stopped: true }));
      }
    },
    onError(e) {
      resolve({
        url: upload.url,
        progress,
        error: String(e),
        status: e.originalResponse ? e.originalResponse.getStatus() : null,
        body: e.originalResponse ? e.originalResponse.getBody() : null,
      });
    },
    onSuccess() {
      resolve({ url: upload.url, offset: size, progress });
    },
  });
});
upload.start();
print(await done);
process.exit(0);
