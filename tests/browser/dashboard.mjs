// Drives headless Chromium (Debian's /usr/bin/chromium, never a downloaded
// browser) against a running ember-ci while job JOB_ID runs:
//   1. the dashboard lists the job as running;
//   2. the job page streams the running step's log;
//   3. without a reload, the dashboard shows the job finished with success;
//   4. the dashboard's link leads to the job page, which shows the result
//      and the steps.
// Assertions are on text; screenshots go to ARTIFACTS_DIR for people.
//
// Usage: node dashboard.mjs BASE_URL JOB_ID ARTIFACTS_DIR
import { mkdirSync, writeFileSync } from "node:fs";
import { chromium } from "playwright-core";

const [baseUrl, jobId, artifacts] = process.argv.slice(2);
if (!baseUrl || !jobId || !artifacts) {
  console.error("usage: node dashboard.mjs BASE_URL JOB_ID ARTIFACTS_DIR");
  process.exit(2);
}
const executablePath = process.env.CHROMIUM_PATH || "/usr/bin/chromium";
// A whole real job (sandbox, image build, plugin, suite) on a slow CI host.
const JOB_TIMEOUT_MS = 10 * 60 * 1000;
const PAGE_TIMEOUT_MS = 60 * 1000;

mkdirSync(artifacts, { recursive: true });

function check(condition, message) {
  if (!condition) throw new Error(message);
  console.log(`ok: ${message}`);
}

// playwright-core gives each launch a fresh temporary --user-data-dir.
const browser = await chromium.launch({
  executablePath,
  headless: true,
  args: [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
  ],
});

const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
context.setDefaultTimeout(PAGE_TIMEOUT_MS);
try {
  const dashboard = await context.newPage();
  await dashboard.goto(`${baseUrl}/`);
  const row = dashboard.locator(`#job-${jobId}`);
  await row.waitFor();
  check((await row.getAttribute("data-state")) === "running", "dashboard lists the job as running");
  check((await row.innerText()).includes("running"), "its row says running");
  await dashboard.screenshot({ path: `${artifacts}/dashboard-running.png`, fullPage: true });
  // A reload would lose this; it must still be there when the job is done.
  await dashboard.evaluate(() => { window.__loadedOnce = "same page"; });

  const jobPage = await context.newPage();
  await jobPage.goto(`${baseUrl}/jobs/${jobId}`);
  const liveLog = jobPage.locator("#live-log");
  await liveLog.waitFor();
  await jobPage.waitForFunction(
    () => document.getElementById("live-log")?.textContent.includes("── "),
    null,
    { timeout: JOB_TIMEOUT_MS, polling: 250 },
  );
  check(true, "the job page's live log receives a step over server-sent events");
  await jobPage.screenshot({ path: `${artifacts}/job-live.png`, fullPage: true });

  await dashboard.waitForFunction(
    (id) => document.getElementById(`job-${id}`)?.dataset.state === "finished",
    jobId,
    { timeout: JOB_TIMEOUT_MS, polling: 500 },
  );
  check(
    (await dashboard.evaluate(() => window.__loadedOnce)) === "same page",
    "the dashboard updated without a reload",
  );
  const finishedText = await dashboard.locator(`#job-${jobId}`).innerText();
  check(finishedText.includes("success"), `the finished row says success: ${finishedText.replace(/\s+/g, " ")}`);
  await dashboard.screenshot({ path: `${artifacts}/dashboard-finished.png`, fullPage: true });

  await jobPage.waitForFunction(
    () => document.getElementById("live-step")?.textContent === "finished: success",
    null,
    { timeout: PAGE_TIMEOUT_MS, polling: 250 },
  );
  const streamed = await liveLog.innerText();
  check(streamed.includes("── post-run ──"), "the live log followed the job into post-run");
  check(streamed.includes("post-run: job result 0"), "and showed post-run's output as written");

  await dashboard.locator(`#job-${jobId} a`).first().click();
  await dashboard.waitForURL(`**/jobs/${jobId}`);
  const summary = await dashboard.locator("#summary").innerText();
  check(summary.includes("#129"), "the job page names PR #129");
  check(summary.includes("success") && summary.includes("CSI sanity passed"), "and its result");
  const steps = await dashboard.locator("#steps").innerText();
  for (const step of ["fetch", "sandbox", "pre-run", "build", "sanity", "post-run"]) {
    check(steps.includes(step), `the steps table lists ${step}`);
  }
  check(!steps.includes("failed"), "no step failed");
  await dashboard.screenshot({ path: `${artifacts}/job-finished.png`, fullPage: true });

  await dashboard.goto(`${baseUrl}/backends`);
  await dashboard.locator("#backends a[href$='/history']").first().click();
  await dashboard.waitForURL("**/backends/*/history");
  const passRate = await dashboard.locator("#pass-rate").innerText();
  check(passRate.includes("100%") && passRate.includes("1 of 1 jobs passed"), `the history page shows the pass rate: ${passRate}`);
  const recent = await dashboard.locator("#recent-jobs").innerText();
  check(recent.includes(jobId) && recent.includes("success"), "and lists the job among recent jobs");
  check((await dashboard.locator("#failing-specs").innerText()).includes("no spec failed"), "with no failing spec");
  await dashboard.screenshot({ path: `${artifacts}/history.png`, fullPage: true });
  console.log("browser checks passed");
} catch (error) {
  // Leave what each page showed for whoever reads the failure.
  for (const [index, page] of context.pages().entries()) {
    const name = `${artifacts}/failure-${index}`;
    await page.screenshot({ path: `${name}.png`, fullPage: true }).catch(() => {});
    const html = await page.content().catch((e) => `(no content: ${e})`);
    writeFileSync(`${name}.html`, html);
    console.error(`page ${index} at ${page.url()} saved as ${name}.png/.html`);
  }
  throw error;
} finally {
  await browser.close();
}
