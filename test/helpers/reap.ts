/**
 * Child processes a test started must not outlive it: a test file that times out or whose
 * teardown throws would leave a gateway or broker running, holding tap's output pipe open (the
 * whole run then never ends) and ports and queues in use. Kills registered here run when the test
 * process exits, however it exits short of SIGKILL.
 */
const kills = new Set<() => void>();
let installed = false;

/** Runs `kill` (synchronous) when this process exits; returns a function that forgets it. */
export function killOnExit(kill: () => void): () => void {
  if (!installed) {
    installed = true;
    process.once('exit', () => {
      for (const k of kills) {
        try {
          k();
        } catch {
          // Already gone.
        }
      }
    });
  }
  kills.add(kill);
  return () => kills.delete(kill);
}
