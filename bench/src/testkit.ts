// The bench CLI runs outside vitest, and @galette/testkit's index also exports its vitest
// helpers (importing vitest outside a test run throws). Take the vitest-free modules directly
// until testkit exports them as subpaths.
export { attachXdpPass } from "../../packages/testkit/src/frames";
export { createVethPair, inNs, nsRun, run, type VethPair } from "../../packages/testkit/src/netns";
