import type { NfBuilder } from "./nf-publish";

/**
 * The NF builder `galette controller serve` hands the server: it compiles a published
 * crate to its BPF object and per-CPU native libraries. This is the single place where
 * @galette/nf-build's compiler is wired in; until it is, publish stores the crate and
 * its analysed interface (enough to push and validate chains) with build "stored-unbuilt".
 */
export function nfBuilderForServe(): NfBuilder | undefined {
  return undefined;
}
