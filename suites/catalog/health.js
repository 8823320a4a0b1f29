// A Node service as such services are commonly written: an HTTP server whose /health endpoint
// reports the process's and the machine's memory (os.totalmem(), V8's heap statistics), as
// health-check middlewares do. Nothing in it knows about Dynamic Memory.
const http = require("http");
const os = require("os");
const v8 = require("v8");

const port = Number(process.env.PORT || 3000);

http
  .createServer((req, res) => {
    if (req.url !== "/health") {
      res.statusCode = 404;
      res.end();
      return;
    }
    const heap = v8.getHeapStatistics();
    res.setHeader("content-type", "application/json");
    res.end(
      JSON.stringify({
        status: "ok",
        uptime: process.uptime(),
        memory: {
          totalmem: os.totalmem(),
          freemem: os.freemem(),
          rss: process.memoryUsage().rss,
          heap_size_limit: heap.heap_size_limit,
        },
      }) + "\n",
    );
  })
  .listen(port, "127.0.0.1", () => console.log(`listening on ${port}`));
