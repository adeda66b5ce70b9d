import type { Chain, Diagnostic } from "@galette/chain";
import { NfAnalysisError, resolveChainInterfacesWithWarnings } from "@galette/nf-build";
import type { ResolveInterfaces } from "./commands/chain";

/**
 * `galette chain validate` checks arity against the NF crates: crate paths in a chain are
 * relative to the directory galette runs in. A crate that cannot be analysed becomes
 * located diagnostics next to the chain's own, never a stack trace.
 */
export function crateInterfaceResolver(baseDir: string = process.cwd()): ResolveInterfaces {
  return async (chain: Chain) => {
    try {
      const { interfaces, warnings } = await resolveChainInterfacesWithWarnings(chain, baseDir);
      return { interfaces, diagnostics: warnings as Diagnostic[] };
    } catch (err) {
      if (!(err instanceof NfAnalysisError)) throw err;
      return { interfaces: new Map(), diagnostics: err.diagnostics as Diagnostic[] };
    }
  };
}
