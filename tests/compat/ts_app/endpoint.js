// Durable endpoints served by the official Inngest TypeScript SDK (inngest.endpoint), run against
// eagerstep dev in tests. Usage: node endpoint.js <port, or 0 for a free one> <engine url>
const http = require("node:http");
const { Inngest, step } = require("inngest");
const { endpointAdapter, serveEndpoint } = require("inngest/node");

const [port, engineUrl] = [Number(process.argv[2]), process.argv[3]];
const inngest = new Inngest({ id: "ts-endpoints", baseUrl: engineUrl, isDev: true, endpointAdapter });
const counts = {};
const count = (name) => {
  counts[name] = (counts[name] || 0) + 1;
};

const handler = inngest.endpoint(async (req) => {
  const url = new URL(req.url);
  const a = await step.run("a", async () => {
    count(`${url.pathname}:a`);
    return "hello";
  });
  if (url.pathname === "/flaky") {
    await step.run("flaky", async () => {
      count(`${url.pathname}:flaky`);
      if (counts[`${url.pathname}:flaky`] === 1) throw new Error("first attempt fails");
      return 1;
    });
  }
  if (url.pathname === "/nap") {
    await step.sleep("nap", "1h");
  }
  const b = await step.run("b", async () => {
    count(`${url.pathname}:b`);
    return "world";
  });
  return Response.json({ text: `${a} ${b}`, q: url.searchParams.get("q") }, { status: 201 });
});

const endpoint = serveEndpoint(handler);
const server = http.createServer((req, res) => {
  if (req.url === "/counts") {
    res.writeHead(200, { "content-type": "application/json" });
    res.end(JSON.stringify(counts));
    return;
  }
  endpoint(req, res);
});
// Port 0: the system picks a free port; the line below tells the test which one.
server.listen(port, "127.0.0.1", () => console.log(`ready ${server.address().port}`));
