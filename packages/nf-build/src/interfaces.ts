/**
 * Turns NF analyses into the interfaces @galette/chain's arity checker consumes
 * (`checkNfInterfaces(chain, interfaces)`): per NF instance, its actions in order and its
 * #[maps] fields with key/value sizes where known.
 */
import path from "node:path";
import type { NfInterface } from "@galette/chain";
import { analyzeNf, NfAnalysisError } from "./analyze";
import type { NfAnalysis, NfDiagnostic } from "./types";

/** The interface shape @galette/chain's checkNfInterfaces consumes (re-exported for callers). */
export type { NfInterface };

export function nfInterfaceFromAnalysis(analysis: NfAnalysis): NfInterface {
  return {
    actions: analysis.actions.map((a) => ({ name: a.name, location: { ...a.location } })),
    maps: analysis.maps.map((m) => ({
      name: m.name,
      ...(m.key.size !== undefined ? { keySize: m.key.size } : {}),
      ...(m.value.size !== undefined ? { valueSize: m.value.size } : {}),
      ...(m.mapType !== undefined ? { mapType: m.mapType } : {}),
      ...(m.maxEntries !== undefined ? { maxEntries: m.maxEntries } : {}),
      location: { ...m.location },
    })),
    file: analysis.libFile,
  };
}

/** What resolveChainInterfaces needs of a chain: each NF instance and its crate path. */
export interface ChainFunctionsLike {
  functions: ReadonlyArray<{ name: string; path: string }>;
}

export interface ChainInterfaces {
  /** instance name → interface of its crate */
  interfaces: Map<string, NfInterface>;
  /** analyser warnings, each crate's once */
  warnings: NfDiagnostic[];
}

/**
 * Analyses every distinct crate of the chain once (instances of one crate share the result)
 * and returns instance name → NfInterface. Relative crate paths resolve against `baseDir`.
 * If any crate fails, throws one NfAnalysisError with the diagnostics of all of them.
 */
export async function resolveChainInterfaces(
  chain: ChainFunctionsLike,
  baseDir: string,
): Promise<Map<string, NfInterface>> {
  return (await resolveChainInterfacesWithWarnings(chain, baseDir)).interfaces;
}

/** resolveChainInterfaces, also returning the analyser's warnings (e.g. sizes it could not compute). */
export async function resolveChainInterfacesWithWarnings(
  chain: ChainFunctionsLike,
  baseDir: string,
): Promise<ChainInterfaces> {
  const byCrate = new Map<string, Promise<NfAnalysis>>();
  for (const fn of chain.functions) {
    const crateDir = path.resolve(baseDir, fn.path);
    if (!byCrate.has(crateDir)) byCrate.set(crateDir, analyzeNf(crateDir));
  }
  const settled = await Promise.allSettled(byCrate.values());
  const diagnostics: NfDiagnostic[] = [];
  const analyses = new Map<string, NfAnalysis>();
  [...byCrate.keys()].forEach((crateDir, i) => {
    const outcome = settled[i]!;
    if (outcome.status === "fulfilled") {
      analyses.set(crateDir, outcome.value);
      diagnostics.push(...(outcome.value.warnings ?? []));
    } else if (outcome.reason instanceof NfAnalysisError) {
      diagnostics.push(...outcome.reason.diagnostics);
    } else {
      throw outcome.reason;
    }
  });
  if (diagnostics.some((d) => d.severity === "error")) throw new NfAnalysisError(diagnostics);

  const interfaceByCrate = new Map<string, NfInterface>();
  const interfaces = new Map<string, NfInterface>();
  for (const fn of chain.functions) {
    const crateDir = path.resolve(baseDir, fn.path);
    let nfInterface = interfaceByCrate.get(crateDir);
    if (!nfInterface) {
      nfInterface = nfInterfaceFromAnalysis(analyses.get(crateDir)!);
      interfaceByCrate.set(crateDir, nfInterface);
    }
    interfaces.set(fn.name, nfInterface);
  }
  return { interfaces, warnings: diagnostics };
}
