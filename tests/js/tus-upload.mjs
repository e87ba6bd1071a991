// Uploads a file with the stock tus-js-client through debrief's /v1/tus/,
// cutting the transfer after the first chunk and resuming it from the
// upload URL, as a browser does after a dropped connection.
//
//   node tus-upload.mjs <endpoint> <token> <meeting> <file>
//
// Prints {"url": ..., "resumedAt": <bytes the server already had>}.
import { readFileSync } from "node:fs";
import { Upload } from "tus-js-client";

const [endpoint, token, meeting, path] = process.argv.slice(2);
const file = readFileSync(path);
const chunkSize = 300 * 1024;
const options = {
  endpoint,
  chunkSize,
  retryDelays: [0, 250, 1000],
  headers: { Authorization: `Bearer ${token}` },
  metadata: { filename: "standup.wav", filetype: "audio/wav", meeting },
};

const url = await new Promise((resolve, reject) => {
  const upload = new Upload(file, {
    ...options,
    onChunkComplete(_size, accepted) {
      if (accepted >= chunkSize) {
        // Drop the connection mid-transfer, keeping the upload.
        upload.abort(false).then(() => resolve(upload.url), reject);
      }
    },
    onError: reject,
    onSuccess: () => reject(new Error("the upload finished before it was cut")),
  });
  upload.start();
});

let resumedAt = null;
await new Promise((resolve, reject) => {
  const upload = new Upload(file, {
    ...options,
    uploadUrl: url,
    onProgress(sent) {
      if (resumedAt === null) resumedAt = sent;
    },
    onError: reject,
    onSuccess: resolve,
  });
  upload.start();
});
console.log(JSON.stringify({ url, resumedAt }));
