// A Node service's cache: a quarter of os.freemem() in 8 MB Buffers, re-checked every
// 500 ms; it reports os.totalmem() (and process.constrainedMemory() where Node has it).
const os = require("os");
const CHUNK = 8 * 1024 * 1024;
let chunks = [];
setInterval(() => {
  const want = Math.floor((os.freemem() + chunks.length * CHUNK) / 4 / CHUNK);
  while (chunks.length < want) chunks.push(Buffer.alloc(CHUNK, 1));
  if (chunks.length > want) chunks = chunks.slice(0, want);
  const line = { metric: "total_mb", value: Math.round(os.totalmem() / 1048576) };
  console.log(JSON.stringify(line));
  if (process.constrainedMemory) {
    const limit = process.constrainedMemory();
    if (limit) console.log(JSON.stringify({ metric: "constrained_mb", value: Math.round(limit / 1048576) }));
  }
}, 500);
