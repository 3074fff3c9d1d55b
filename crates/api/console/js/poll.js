// Periodic refresh that pauses while the page is hidden and never overlaps itself.

/** Run `tick` now and every `intervalMs` until the returned stop() is called. */
export function poll(tick, intervalMs) {
  let timer = null;
  let stopped = false;
  let running = false;

  const schedule = () => {
    clearTimeout(timer);
    if (!stopped && !document.hidden) timer = setTimeout(run, intervalMs);
  };
  const run = async () => {
    if (stopped || running) return;
    running = true;
    try {
      await tick();
    } finally {
      running = false;
      schedule();
    }
  };
  const onVisibility = () => {
    if (!document.hidden) run();
    else clearTimeout(timer);
  };
  document.addEventListener("visibilitychange", onVisibility);
  run();
  return () => {
    stopped = true;
    clearTimeout(timer);
    document.removeEventListener("visibilitychange", onVisibility);
  };
}
