// A ten-step function served by the official Inngest TypeScript SDK (checkpointing is on by default in v4).
// Usage: node app.js <port, or 0 for a free one> <engine url>
const express = require("express");
const { Inngest } = require("inngest");
const { serve } = require("inngest/express");

const [port, engineUrl] = [Number(process.argv[2]), process.argv[3]];
const inngest = new Inngest({ id: "ts-compat", baseUrl: engineUrl, isDev: true });

const tenSteps = inngest.createFunction(
  { id: "ten-steps", retries: 1, triggers: [{ event: "ts/run" }] },
  async ({ event, step }) => {
    let total = 0;
    for (let i = 0; i < 10; i++) {
      total += await step.run(`s${i}`, () => i);
    }
    return { total, n: event.data.n };
  },
);

const pauses = inngest.createFunction(
  { id: "pauses", retries: 2, triggers: [{ event: "ts/pauses" }] },
  async ({ event, step, attempt }) => {
    const before = await step.run("before", () => "b");
    const flaky = await step.run("flaky", () => {
      if (attempt === 0) throw new Error("first attempt fails");
      return attempt;
    });
    await step.sleep("nap", "1h");
    const approval = await step.waitForEvent("approval", {
      event: "ts/approved",
      timeout: "1h",
      if: "async.data.id == event.data.id",
    });
    const child = await step.invoke("call-child", { function: tenSteps, data: { n: 7 } });
    return { before, flaky, approved: approval ? approval.data : null, child };
  },
);

// A parallel group whose step ids test the numbering: the same id in two branches, and a branch of
// two steps in a row (eagerstep's compat tests compare these ids with its own and inngest-py's).
const ids = inngest.createFunction(
  { id: "ids", triggers: [{ event: "ts/ids" }] },
  async ({ step }) =>
    Promise.all([
      step.run("dup", () => "x"),
      (async () => (await step.run("b1", () => "b1")) + (await step.run("b2", () => "b2")))(),
      step.run("dup", () => "y"),
    ]),
);

const app = express();
app.use(express.json({ limit: "10mb" }));
app.use("/api/inngest", serve({ client: inngest, functions: [tenSteps, pauses, ids] }));
// Port 0: the system picks a free port; the line below tells the test which one.
const server = app.listen(port, "127.0.0.1", () => console.log(`ready ${server.address().port}`));
