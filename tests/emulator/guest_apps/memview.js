// What Node sees of the machine's memory: one JSON line now and after every input line.
const os = require("os");
const readline = require("readline");

function say() {
  const constrained = process.constrainedMemory ? process.constrainedMemory() : null;
  console.log(JSON.stringify({ total: os.totalmem(), free: os.freemem(), constrained }));
}

say();
readline.createInterface({ input: process.stdin }).on("line", say);
