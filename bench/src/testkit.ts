// The bench CLI runs outside vitest, and @galette/testkit's index also exports its vitest
// helpers (importing vitest outside a test run throws): take its vitest-free subpaths.
export { attachXdpPass } from "@galette/testkit/frames";
export { createVethPair, inNs, nsRun, run, type VethPair } from "@galette/testkit/netns";
export { sleep } from "@galette/testkit/time";
