import { relative } from "node:path";
import type { Chain, Diagnostic, NfInterface } from "@galette/chain";
import { NfAnalysisError, resolveChainInterfacesWithWarnings } from "@galette/nf-build";
import type { ResolveInterfaces } from "./commands/chain";

/**
 * `galette chain validate` checks arity against the NF crates: crate paths in a chain are
 * relative to the directory galette runs in. A crate that cannot be analysed becomes
 * located diagnostics next to the chain's own, never a stack trace. Source paths are shown
 * relative to that directory, as the chain's own paths are.
 */
export function crateInterfaceResolver(baseDir: string = process.cwd()): ResolveInterfaces {
  const shown = (file: string) => {
    const r = relative(baseDir, file);
    return r && !r.startsWith("..") ? r : file;
  };
  const located = <T extends { file: string }>(l: T): T => ({ ...l, file: shown(l.file) });
  const diagnostic = (d: Diagnostic): Diagnostic => ({ ...located(d), related: d.related?.map(located) });
  const iface = (i: NfInterface): NfInterface => ({
    file: shown(i.file),
    actions: i.actions.map((a) => ({ ...a, location: located(a.location) })),
    maps: i.maps.map((m) => ({ ...m, location: located(m.location) })),
  });
  return async (chain: Chain) => {
    try {
      const { interfaces, warnings } = await resolveChainInterfacesWithWarnings(chain, baseDir);
      return {
        interfaces: new Map([...interfaces].map(([name, i]) => [name, iface(i)])),
        diagnostics: (warnings as Diagnostic[]).map(diagnostic),
      };
    } catch (err) {
      if (!(err instanceof NfAnalysisError)) throw err;
      return { interfaces: new Map(), diagnostics: (err.diagnostics as Diagnostic[]).map(diagnostic) };
    }
  };
}
