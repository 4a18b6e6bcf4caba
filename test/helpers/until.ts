/**
 * The one polling wait of the tests: `until(what, cond)` polls `cond` (sync or async) until it holds, and fails
 * naming `what` after `ms` — a liveness bound (a wait that never ends), never a speed one.
 */
export async function until(what: string, cond: () => boolean | Promise<boolean>, ms = 60_000, everyMs = 20): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`never within ${ms} ms: ${what}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}
