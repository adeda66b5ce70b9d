/**
 * Galette scenarios plug in here: replace the pending placeholders of scenarios.ts by
 * registering the same names with a real `setup` (see docs/benchmarks.md, "Adding a
 * Galette scenario"). cli.ts imports this module before the suite runs.
 */
export {};
